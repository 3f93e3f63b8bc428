/**
 * Reject capture (src/streams/recorder.ts) and its folder format (src/io/captures.ts): what is
 * written and in which layout, sampling, rotation by size and age (marked captures last), a full
 * disk and a slow disk (dropped and counted, `offer` never waits), review labels, ids that cannot
 * leave the folder, and the frame pictures at source resolution.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { BadInputError, type FairlineError } from '../src/errors.js';
import {
  CAPTURES_MARKER, captureDir, captureId, decodeNpy, encodeNpy, isCaptureRoot, labelledCaptures, scanCaptures,
} from '../src/io/captures.js';
import { decodeImage, encodeFramePicture } from '../src/io/image.js';
import { Recorder, type CaptureData, type RecorderOptions } from '../src/streams/recorder.js';
import type { Verdict } from '../src/verdict.js';

const DAY = 86_400_000;
const T0 = Date.UTC(2026, 11, 1, 8, 0, 0);

function verdict(seq: number, kind: Verdict['verdict'], over: Partial<Verdict> = {}): Verdict {
  const v: Verdict = {
    schema: 'fairline.verdict/v1', line: 'L1', station: 'S1', camera: 'cam0', seq, captureTs: T0 + seq * 100, decidedTs: T0 + seq * 100 + 40, latencyMs: 40,
    model: 'm-1', score: kind === 'reject' ? 0.9 : 0.1, threshold: 0.5, verdict: kind, regions: kind === 'reject' ? [{ x: 1, y: 2, w: 3, h: 4, area: 12, peak: 0.9 }] : [],
  };
  return { ...v, ...over };
}

/** A BGR frame of deterministic noise (noise keeps PNGs near their raw size, for the size tests). */
function frame(w: number, h: number, seed = 1): CaptureData {
  const data = new Uint8Array(w * h * 3);
  let x = Math.imul(seed, 2654435761) >>> 0;
  for (let i = 0; i < data.length; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    data[i] = x >>> 24;
  }
  const map = new Float32Array(16 * 16).map((_, i) => i / 256);
  return { payload: { data, width: w, height: h, format: 'bgr' }, map, mapSize: 16 };
}

const waitFor = async (cond: () => boolean, ms = 10000): Promise<void> => {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
};

describe('streams/recorder (reject capture)', function () {
  this.timeout(30000);
  let root: string;
  let n = 0;
  const fresh = (): string => join(root, `r${n++}`);
  const open = (o: Partial<RecorderOptions> & { dir: string }): Promise<Recorder> =>
    Recorder.open({ rejects: true, passEvery: 0, keepDays: 7, maxBytes: 2 ** 30, ...o });

  before(() => {
    root = mkdtempSync(join(tmpdir(), 'fairline-recorder-'));
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  it('writes a reject as frame (source resolution, exact pixels), verdict JSON and .npy map, atomically into <day>/<id>/', async () => {
    const dir = fresh();
    const written: string[] = [];
    const rec = await open({ dir, hooks: { onWritten: (e) => written.push(e.id) } });
    const v = verdict(7, 'reject');
    const data = frame(40, 30);
    const id = rec.offer(v, data);
    assert.equal(id, captureId(v));
    assert.equal(id, '20261201T080000700Z_cam0_7');
    await rec.close();
    assert.deepEqual(written, [id]);
    assert.ok(isCaptureRoot(dir));
    assert.equal(JSON.parse(readFileSync(join(dir, CAPTURES_MARKER), 'utf8')).format, 'fairline.captures/v1');
    const cdir = join(dir, '2026-12-01', id!);
    assert.equal(captureDir(dir, id!), cdir);
    assert.deepEqual(readdirSync(cdir).sort(), ['frame.png', 'map.npy', 'verdict.json']);
    assert.deepEqual(readdirSync(join(dir, '2026-12-01')), [id], 'no .partial folder left');
    const img = await decodeImage(join(cdir, 'frame.png'));
    assert.deepEqual([img.width, img.height], [40, 30]);
    assert.deepEqual(Buffer.from(img.data), Buffer.from(data.payload.data), 'BGR pixels round-trip exactly');
    assert.deepEqual(JSON.parse(readFileSync(join(cdir, 'verdict.json'), 'utf8')), v);
    const npy = decodeNpy(readFileSync(join(cdir, 'map.npy')));
    assert.deepEqual(npy.shape, [16, 16]);
    assert.deepEqual(npy.data, data.map);
    const st = rec.stats();
    assert.equal(st.captures, 1);
    assert.equal(st.written, 1);
    const [entry] = await scanCaptures(dir);
    assert.equal(entry!.id, id);
    assert.equal(entry!.bytes, st.bytes, 'the index counts exactly the bytes on disk');
    assert.equal(entry!.ts, v.captureTs);
  });

  it('captures what the config asks for: rejects, every N-th pass per camera; never late, fail-safe or error verdicts or frames without pixels', async () => {
    const dir = fresh();
    const rec = await open({ dir, passEvery: 3 });
    const ids: (string | undefined)[] = [];
    for (let i = 0; i < 9; i++) ids.push(rec.offer(verdict(i, 'pass'), frame(8, 8)));
    for (let i = 0; i < 3; i++) ids.push(rec.offer(verdict(100 + i, 'pass', { camera: 'cam1' }), frame(8, 8)));
    assert.deepEqual(ids.map((x) => x !== undefined), [false, false, true, false, false, true, false, false, true, false, false, true]);
    assert.equal(rec.offer(verdict(20, 'reject', { late: true }), frame(8, 8)), undefined);
    assert.equal(rec.offer(verdict(21, 'reject', { failSafe: true, reason: 'deadline', score: null, threshold: null }), undefined), undefined);
    assert.equal(rec.offer(verdict(22, 'error', { reason: 'bad_frame' }), frame(8, 8)), undefined);
    assert.equal(rec.offer(verdict(23, 'reject'), undefined), undefined, 'a reject without pixels (fail-safe, guard before decode) has nothing to capture');
    assert.ok(rec.offer(verdict(24, 'reject'), frame(8, 8)));
    await rec.close();
    assert.equal(rec.stats().written, 5);
    const off = await open({ dir: fresh(), rejects: false, passEvery: 1 });
    assert.equal(off.offer(verdict(1, 'reject'), frame(8, 8)), undefined);
    assert.ok(off.offer(verdict(2, 'pass'), frame(8, 8)));
    await off.close();
  });

  it('rotates by size, oldest first and marked captures last; reopening indexes what is there', async () => {
    const dir = fresh();
    const removed: string[] = [];
    // 300x300 noise: ~270 KB per PNG, so 1 MiB holds three.
    const rec = await open({ dir, maxBytes: 2 ** 20, hooks: { onRemoved: (es, why) => removed.push(...es.map((e) => `${why}:${e.id.split('_')[2]}`)) } });
    for (let i = 0; i < 3; i++) rec.offer(verdict(i, 'reject'), frame(300, 300, i + 1));
    await waitFor(() => rec.stats().written === 3);
    await rec.label(captureId(verdict(0, 'reject')), 'good');
    for (let i = 3; i < 6; i++) {
      rec.offer(verdict(i, 'reject'), frame(300, 300, i + 1));
      await waitFor(() => rec.stats().written === i + 1);
    }
    // With only marked captures left to delete, they go too.
    const big = await open({ dir: fresh(), maxBytes: 2 ** 20 });
    for (let i = 0; i < 3; i++) big.offer(verdict(i, 'reject'), frame(300, 300, i + 1));
    await waitFor(() => big.stats().written === 3);
    for (let i = 0; i < 3; i++) await big.label(captureId(verdict(i, 'reject')), 'good');
    big.offer(verdict(3, 'reject'), frame(300, 300, 4));
    await big.close();
    assert.deepEqual((await scanCaptures(big.opts.dir)).map((e) => e.id.split('_')[2]), ['1', '2', '3']);
    await rec.close();
    const st = rec.stats();
    assert.ok(st.bytes <= 2 ** 20, `${st.bytes} bytes`);
    // Seq 0 was marked: it outlives the unmarked ones, even newer ones.
    assert.deepEqual(removed, ['size:1', 'size:2', 'size:3']);
    const onDisk = await scanCaptures(dir);
    assert.deepEqual(onDisk.map((e) => [e.id.split('_')[2], e.label]), [['0', 'good'], ['4', undefined], ['5', undefined]]);
    assert.equal(onDisk.reduce((a, e) => a + e.bytes, 0), st.bytes);
    const again = await open({ dir, maxBytes: 2 ** 20 });
    assert.equal(again.stats().captures, 3);
    assert.equal(again.stats().bytes, st.bytes);
    await again.close();
  });

  it('rotates by age on start and on its timer, keeping marked captures', async () => {
    const dir = fresh();
    let now = T0;
    const rec = await open({ dir, keepDays: 2, now: () => now, rotateEveryMs: 50 });
    for (let i = 0; i < 3; i++) rec.offer(verdict(i, 'reject'), frame(8, 8));
    await waitFor(() => rec.stats().written === 3);
    await rec.label(captureId(verdict(1, 'reject')), 'defect');
    now = T0 + 3 * DAY;
    await waitFor(() => rec.stats().captures === 1);
    await rec.close();
    const left = await scanCaptures(dir);
    assert.deepEqual(left.map((e) => [e.id.split('_')[2], e.label]), [['1', 'defect']]);
    // An old unmarked capture found at start goes at once.
    const dir2 = fresh();
    const r1 = await open({ dir: dir2 });
    r1.offer(verdict(5, 'reject'), frame(8, 8));
    await r1.close();
    const r2 = await open({ dir: dir2, keepDays: 1, now: () => T0 + 2 * DAY });
    await waitFor(() => r2.stats().captures === 0);
    await r2.close();
    assert.deepEqual(readdirSync(dir2), [CAPTURES_MARKER], 'empty day folders go too');
  });

  it('a full disk drops the capture and counts it; nothing half-written stays; capture resumes when space is back', async () => {
    const dir = fresh();
    let full = true;
    const dropped: string[] = [];
    const logs: string[] = [];
    const rec = await open({
      dir,
      log: (m) => logs.push(m),
      hooks: { onDropped: (r) => dropped.push(r) },
      io: {
        writeFile: async (p, d) => {
          if (full && p.endsWith('frame.png')) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
          await writeFile(p, d);
        },
      },
    });
    for (let i = 0; i < 3; i++) rec.offer(verdict(i, 'reject'), frame(16, 16));
    await waitFor(() => dropped.length === 3);
    assert.deepEqual(dropped, ['disk_full', 'disk_full', 'disk_full']);
    assert.equal(logs.length, 1, 'a full disk is logged once a minute, not per frame');
    assert.match(logs[0]!, /disk_full.*ENOSPC/);
    assert.deepEqual(readdirSync(join(dir, '2026-12-01')), [], 'no partial capture left behind');
    assert.equal(rec.stats().bytes, 0);
    full = false;
    rec.offer(verdict(9, 'reject'), frame(16, 16));
    await rec.close();
    assert.equal(rec.stats().written, 1);
    assert.deepEqual(rec.stats().dropped, { disk_full: 3 });
  });

  it('a slow disk fills the bounded queue: further captures are dropped, offer() never waits, nothing is lost from the count', async () => {
    const dir = fresh();
    const rec = await open({ dir, queueLimit: 4, concurrency: 1, io: { writeFile: async (p, d) => (await new Promise((r) => setTimeout(r, 150)), writeFile(p, d)) } });
    await new Promise((r) => setTimeout(r, 50)); // the start-up age rotation is done
    const took: number[] = [];
    let queued = 0;
    for (let i = 0; i < 40; i++) {
      const t = performance.now();
      if (rec.offer(verdict(i, 'reject'), frame(64, 64))) queued++;
      took.push(performance.now() - t);
    }
    // An offer that waited for the disk would take its 150 ms in every call past the queue's
    // limit; the 90th percentile ignores the odd call a loaded machine preempts (16 ms seen).
    const p90 = [...took].sort((a, b) => a - b)[Math.floor(0.9 * took.length)]!;
    assert.ok(p90 < 5, `offer took ${p90.toFixed(2)} ms (90th percentile of 40)`);
    assert.ok(rec.stats().queued <= 4);
    assert.equal(queued, 5, 'one in the writer and four waiting');
    await rec.close(10000);
    const st = rec.stats();
    assert.equal(st.dropped.queue_full, 35);
    assert.equal(st.written + (st.dropped.queue_full ?? 0) + (st.dropped.closed ?? 0), 40);
  });

  it('writes review labels into the capture folder; ids cannot name anything outside it', async () => {
    const dir = fresh();
    const rec = await open({ dir });
    const id = rec.offer(verdict(3, 'reject'), frame(8, 8))!;
    const other = rec.offer(verdict(4, 'reject'), frame(8, 8))!;
    await waitFor(() => rec.stats().written === 2);
    const e = await rec.label(id, 'good');
    assert.equal(e.label, 'good');
    const label = JSON.parse(readFileSync(join(captureDir(dir, id), 'label.json'), 'utf8'));
    assert.equal(label.label, 'good');
    assert.ok(!Number.isNaN(Date.parse(label.markedAt)));
    await rec.label(other, 'defect');
    await rec.label(other, 'good'); // a second mark replaces the first
    await assert.rejects(rec.label('20261201T080000000Z_cam0_999', 'good'), (err: FairlineError) => err.code === 'unknown_capture');
    await assert.rejects(rec.label(id, 'maybe' as 'good'), (err: FairlineError) => err.code === 'bad_label');
    await rec.close();
    assert.deepEqual((await labelledCaptures(dir)).map((x) => [x.id, x.label]), [[id, 'good'], [other, 'good']]);
    assert.deepEqual(await labelledCaptures(dir, 'defect'), []);
    await assert.rejects(labelledCaptures(root), (err: FairlineError) => err.code === 'not_captures');
    for (const bad of ['../x', '..', '20261201T080000000Z_cam0_1/../../etc', '20261201T080000000Z_../_1', '/etc/passwd', '20261201T080000000Z_cam0_1\u0000', '']) {
      assert.throws(() => captureDir(dir, bad), (err: unknown) => err instanceof BadInputError && err.code === 'bad_capture_id', JSON.stringify(bad));
    }
  });

  it('frame pictures: PNG and JPEG payloads kept as they came, raw rgb / bgr / gray as lossless PNG', async () => {
    const jpeg = await sharp({ create: { width: 20, height: 10, channels: 3, background: { r: 200, g: 30, b: 10 } } }).jpeg().toBuffer();
    const j = await encodeFramePicture({ data: jpeg, width: 0, height: 0, format: 'encoded' });
    assert.equal(j.type, 'image/jpeg');
    assert.equal(Buffer.compare(j.data, jpeg), 0, 'the same bytes, not compressed again');
    const webp = await sharp({ create: { width: 6, height: 4, channels: 3, background: { r: 1, g: 2, b: 3 } } }).webp({ lossless: true }).toBuffer();
    const w = await encodeFramePicture({ data: webp, width: 0, height: 0, format: 'encoded' });
    assert.equal(w.ext, 'png');
    assert.deepEqual((await decodeImage(w.data)).data.slice(0, 3), new Uint8Array([3, 2, 1]));
    const rgb = new Uint8Array([255, 0, 0, 0, 0, 255]);
    assert.deepEqual((await decodeImage((await encodeFramePicture({ data: rgb, width: 2, height: 1, format: 'rgb' })).data)).data, new Uint8Array([0, 0, 255, 255, 0, 0]));
    const gray = await decodeImage((await encodeFramePicture({ data: new Uint8Array([9, 99]), width: 2, height: 1, format: 'gray' })).data);
    assert.deepEqual(gray.data, new Uint8Array([9, 9, 9, 99, 99, 99]));
    await assert.rejects(encodeFramePicture({ data: new Uint8Array(5), width: 2, height: 1, format: 'bgr' }), (err: FairlineError) => err.code === 'wrong_size');
    await assert.rejects(encodeFramePicture({ data: new Uint8Array([1, 2, 3]), width: 0, height: 0, format: 'encoded' }), (err: FairlineError) => err instanceof BadInputError);
  });

  it('.npy maps: NumPy v1.0 layout (header padded to 64), round trip, clear errors', () => {
    const a = new Float32Array([1, -2.5, 3e-8, 4, 5, 6]);
    const buf = encodeNpy(a, [2, 3]);
    assert.equal(buf.toString('latin1', 0, 6), '\x93NUMPY');
    assert.equal((10 + buf.readUInt16LE(8)) % 64, 0);
    assert.match(buf.toString('latin1', 10, 10 + buf.readUInt16LE(8)), /^\{'descr': '<f4', 'fortran_order': False, 'shape': \(2, 3\), \} *\n$/);
    assert.deepEqual(decodeNpy(buf), { data: a, shape: [2, 3] });
    assert.throws(() => decodeNpy(Buffer.from('nope')), (e: FairlineError) => e.code === 'bad_npy');
    assert.throws(() => decodeNpy(buf.subarray(0, buf.length - 4)), (e: FairlineError) => e.code === 'bad_npy');
    assert.ok(!existsSync(join(root, 'nothing')));
  });
});
