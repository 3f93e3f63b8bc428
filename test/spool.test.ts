/**
 * The on-disk spool: order, bound with drop-oldest, crash safety (a child process killed with
 * SIGKILL mid-run), torn and corrupt records, segment rotation.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { appendFileSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, SinkError } from '../src/errors.js';
import { Spool } from '../src/streams/spool.js';
import { REPO_ROOT } from './helpers.js';

interface Rec {
  camera: string;
  seq: number;
  verdict: string;
}
const rec = (seq: number): Rec => ({ camera: 'cam0', seq, verdict: seq % 3 === 0 ? 'reject' : 'pass' });

describe('streams/spool', function () {
  let root: string;
  let n = 0;
  const freshDir = () => join(root, `s${n++}`);

  before(() => {
    root = mkdtempSync(join(tmpdir(), 'fairline-spool-'));
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  it('is a FIFO: peek does not consume, commit does, and the order survives reopening', function () {
    const dir = freshDir();
    const s = Spool.open<Rec>({ dir });
    for (let i = 0; i < 10; i++) s.append(rec(i));
    assert.equal(s.length, 10);
    const first = s.peek(4);
    assert.deepEqual(first.map((r) => r.value.seq), [0, 1, 2, 3]);
    assert.deepEqual(s.peek(4).map((r) => r.value.seq), [0, 1, 2, 3], 'peek is idempotent');
    s.commit(first[2]!.id);
    assert.equal(s.length, 7);
    s.commit(first[0]!.id); // already consumed: no-op
    assert.equal(s.length, 7);
    s.close();
    assert.throws(() => s.append(rec(99)), (e: unknown) => e instanceof SinkError && e.code === 'spool_closed');

    const again = Spool.open<Rec>({ dir });
    assert.equal(again.length, 7);
    assert.deepEqual(again.peek(100).map((r) => r.value), [3, 4, 5, 6, 7, 8, 9].map(rec));
    again.append(rec(10));
    const all = again.peek(100);
    assert.deepEqual(all.map((r) => r.value.seq), [3, 4, 5, 6, 7, 8, 9, 10]);
    again.commit(all[all.length - 1]!.id);
    assert.equal(again.length, 0);
    assert.equal(again.bytes, 0);
    assert.deepEqual(again.peek(10), []);
    again.close();
    assert.equal(Spool.open({ dir }).length, 0);
  });

  it('rotates segments and deletes consumed ones', function () {
    const dir = freshDir();
    const s = Spool.open<Rec>({ dir, maxBytes: 64 * 1024, segmentBytes: 1024 });
    for (let i = 0; i < 100; i++) s.append(rec(i));
    const files = s.segmentFiles();
    assert.ok(files.length >= 5, `${files.length} segments`);
    let expected = 0;
    for (let i = 0; i < 100; i++) expected += Buffer.byteLength(JSON.stringify(rec(i)) + '\n');
    assert.equal(s.bytes, expected);
    assert.equal(s.diskBytes(), expected);
    let seen = 0;
    while (s.length > 0) {
      const batch = s.peek(7);
      for (const r of batch) assert.equal(r.value.seq, seen++);
      s.commit(batch[batch.length - 1]!.id);
    }
    assert.equal(seen, 100);
    assert.equal(s.segmentFiles().length, 1, 'only the tail segment is left');
    s.close();
  });

  it('is bounded by maxBytes and drops the OLDEST records, counting them', function () {
    const dir = freshDir();
    const drops: number[] = [];
    const s = Spool.open<Rec>({ dir, maxBytes: 2048, segmentBytes: 512, fsync: 'always', onDrop: (k, why) => { assert.equal(why, 'full'); drops.push(k); } });
    for (let i = 0; i < 200; i++) {
      s.append(rec(i));
      assert.ok(s.bytes <= 2048, `bytes ${s.bytes}`);
    }
    const kept = s.peek(1000).map((r) => r.value.seq);
    assert.equal(kept.length, s.length);
    assert.equal(s.dropped, 200 - kept.length);
    assert.equal(drops.reduce((a, b) => a + b, 0), s.dropped);
    assert.ok(kept.length > 20 && kept.length < 200);
    assert.deepEqual(kept, Array.from({ length: kept.length }, (_, i) => 200 - kept.length + i), 'the newest survive, in order');
    assert.ok(s.diskBytes() <= 2048 + 512 + 64, `disk ${s.diskBytes()}`);
    s.close();
    // the drop is persistent: reopening does not resurrect dropped records
    const re = Spool.open<Rec>({ dir, maxBytes: 2048, segmentBytes: 512 });
    assert.deepEqual(re.peek(1000).map((r) => r.value.seq), kept);
    re.close();
    // reopening with a smaller bound drops the oldest again, and says so
    const smallerDrops: number[] = [];
    const small = Spool.open<Rec>({ dir, maxBytes: 1024, segmentBytes: 512, onDrop: (k) => smallerDrops.push(k) });
    const keptSmall = small.peek(1000).map((r) => r.value.seq);
    assert.ok(small.bytes <= 1024);
    assert.equal(smallerDrops[0], kept.length - keptSmall.length);
    assert.deepEqual(keptSmall, kept.slice(kept.length - keptSmall.length));
    small.close();
    assert.throws(() => Spool.open({ dir: freshDir(), maxBytes: 1024 }).append({ big: 'x'.repeat(2000) }), (e: unknown) => e instanceof SinkError && e.code === 'spool_record_too_large');
  });

  it('survives a SIGKILL: a new process replays what the killed one left, after its cursor', function () {
    const dir = freshDir();
    const script = `
      import { Spool } from ${JSON.stringify(join(REPO_ROOT, 'src/streams/spool.ts'))};
      const s = Spool.open({ dir: ${JSON.stringify(dir)}, segmentBytes: 4096 });
      for (let i = 0; i < 50; i++) s.append({ camera: 'cam0', seq: i, verdict: 'pass' });
      const head = s.peek(10);
      s.commit(head[9].id);
      process.kill(process.pid, 'SIGKILL'); // no close(), no exit handlers
    `;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: REPO_ROOT, encoding: 'utf8', timeout: 30000 });
    assert.equal(r.signal, 'SIGKILL', r.stderr);
    const s = Spool.open<Rec>({ dir });
    assert.equal(s.length, 40);
    assert.deepEqual(s.peek(100).map((x) => x.value.seq), Array.from({ length: 40 }, (_, i) => 10 + i));
    s.close();
  });

  it('cuts a torn last record and skips a corrupt one, reporting it', function () {
    const dir = freshDir();
    const s = Spool.open<Rec>({ dir });
    for (let i = 0; i < 3; i++) s.append(rec(i));
    s.close();
    const seg = join(dir, readdirSync(dir).find((f) => f.startsWith('seg-'))!);
    appendFileSync(seg, '\0\0\0garbage-from-a-power-loss\n');
    appendFileSync(seg, JSON.stringify(rec(3)) + '\n');
    appendFileSync(seg, '{"camera":"cam0","se'); // torn: the process died mid-write
    const corrupt: number[] = [];
    const re = Spool.open<Rec>({ dir, onDrop: (k, why) => why === 'corrupt' && corrupt.push(k) });
    assert.deepEqual(corrupt, [1]);
    assert.equal(re.corrupt, 1);
    assert.equal(re.length, 4);
    assert.ok(readFileSync(seg, 'utf8').endsWith('\n'), 'torn tail truncated');
    re.append(rec(4));
    const all = re.peek(100);
    assert.deepEqual(all.map((x) => x.value.seq), [0, 1, 2, 3, 4]);
    re.commit(all[3]!.id); // commits past the corrupt record too
    assert.equal(re.length, 1);
    re.close();
    const third = Spool.open<Rec>({ dir });
    assert.equal(third.corrupt, 0, 'the corrupt record was consumed with its neighbours');
    assert.deepEqual(third.peek(10).map((x) => x.value.seq), [4]);
    third.close();
  });

  it('supports the interval and never fsync policies and rejects bad options', function () {
    for (const fsync of ['interval', 'never'] as const) {
      const dir = freshDir();
      const s = Spool.open<Rec>({ dir, fsync, fsyncIntervalMs: 50 });
      for (let i = 0; i < 5; i++) s.append(rec(i));
      s.close();
      assert.equal(Spool.open({ dir }).length, 5);
    }
    assert.throws(() => Spool.open({ dir: freshDir(), maxBytes: 10 }), ConfigError);
    assert.throws(() => Spool.open({ dir: freshDir(), fsync: 'sometimes' as 'always' }), ConfigError);
  });
});
