import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { useBackend } from '../src/model/tfjs/backend.js';
import { loadModel } from '../src/io/artefact.js';
import { train, type TrainOptions } from '../src/train/loop.js';
import { epochBatches } from '../src/train/plan.js';
import { prefetch } from '../src/operators/prefetch.js';
import { hasCheckpoint, loadCheckpoint } from '../src/train/checkpoint.js';
import { ConfigError, DatasetError } from '../src/errors.js';
import { concatMap, lastValueFrom, toArray } from 'rxjs';

/** A tiny MVTec-layout category of smooth coloured images. */
async function makeCategory(root: string, n: number): Promise<void> {
  const dir = join(root, 'toy', 'train', 'good');
  mkdirSync(dir, { recursive: true });
  for (let i = 0; i < n; i++) {
    const px = Buffer.alloc(48 * 48 * 3);
    for (let y = 0; y < 48; y++)
      for (let x = 0; x < 48; x++) {
        const o = (y * 48 + x) * 3;
        px[o] = 120 + 60 * Math.sin((x + i * 3) / 7);
        px[o + 1] = 100 + 50 * Math.cos((y - i) / 5);
        px[o + 2] = 80 + ((x * y + i) % 40);
      }
    await sharp(px, { raw: { width: 48, height: 48, channels: 3 } }).png().toFile(join(dir, `${String(i).padStart(3, '0')}.png`));
  }
}

describe('training graph (fairline train)', function () {
  this.timeout(180000);
  let root: string;
  const base = (out: string): TrainOptions => ({
    dataRoot: root, category: 'toy', out, epochs: 3, batch: 2, width: 4, size: 32,
    filter: { kind: 'butterworth', cutoff: 30 * 32 / 256, order: 2 }, seed: 7, lr: 1e-3, cutpaste: 'faithful', resume: false, workers: 1,
  });

  before(async () => {
    await useBackend('wasm');
    root = mkdtempSync(join(tmpdir(), 'fairline-train-'));
    await makeCategory(root, 5);
  });
  after(async () => {
    rmSync(root, { recursive: true, force: true });
    await useBackend('cpu');
  });

  it('draws every epoch from (seed, epoch) alone and keeps the last partial batch', () => {
    const a = epochBatches(3, 2, 5, 2);
    assert.deepEqual(a.map((b) => b.samples.length), [2, 2, 1]);
    assert.deepEqual(epochBatches(3, 2, 5, 2), a);
    assert.notDeepEqual(epochBatches(3, 3, 5, 2).map((b) => b.samples.map((s) => s.image)), a.map((b) => b.samples.map((s) => s.image)));
  });

  it('prefetches at most `ahead` items and emits them in order', async () => {
    let started = 0;
    let maxAhead = 0;
    let consumed = 0;
    const out = await lastValueFrom(
      prefetch(10, async (i) => {
        started++;
        maxAhead = Math.max(maxAhead, started - consumed);
        await new Promise((r) => setTimeout(r, (10 - i) % 3));
        return i;
      }, 3).pipe(
        concatMap(async ({ value, done }) => {
          await new Promise((r) => setTimeout(r, 2));
          consumed++;
          done();
          return value;
        }),
        toArray(),
      ),
    );
    assert.deepEqual(out, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.ok(maxAhead <= 3, `started ${maxAhead} ahead`);
  });

  it('is reproducible with a seed, and resuming after a crash gives the same weights as an uninterrupted run', async () => {
    const outA = join(root, 'a');
    const outB = join(root, 'b');
    const outC = join(root, 'c');
    const a = await train(base(outA));
    assert.equal(a.epochs.length, 3);
    assert.ok(a.epochs.every((e) => Number.isFinite(e.loss) && e.dataWaitShare >= 0 && e.dataWaitShare <= 1));
    // Same seed, separate run, other worker count: identical weights.
    await train({ ...base(outB), workers: 0 });
    // Crash after the second epoch's checkpoint, then resume.
    await assert.rejects(
      train(base(outC), { onEpoch: (s) => { if (s.epoch === 2) throw new Error('simulated crash'); } }),
      /simulated crash/,
    );
    assert.ok(hasCheckpoint(join(outC, 'checkpoint')));
    assert.equal(loadCheckpoint(join(outC, 'checkpoint')).epochsDone, 2);
    const c = await train({ ...base(outC), resume: true });
    assert.equal(c.resumedFrom, 2);
    const wa = readFileSync(join(outA, loadModel(outA).manifest.weights.file));
    const wb = readFileSync(join(outB, loadModel(outB).manifest.weights.file));
    const wc = readFileSync(join(outC, loadModel(outC).manifest.weights.file));
    assert.ok(wa.equals(wb), 'same seed must give identical weights');
    assert.ok(wa.equals(wc), 'resumed run must equal the uninterrupted run');
    const m = loadModel(outA).manifest;
    assert.equal(m.training?.files, 5);
    assert.match(m.training!.contentSha256, /^[0-9a-f]{64}$/);
    assert.equal(m.trainScoreStats?.n, 5);
    assert.ok(m.thresholds && m.thresholds.image > 0);
    // A different seed changes the result.
    const outD = join(root, 'd');
    await train({ ...base(outD), seed: 8, epochs: 1 });
    assert.ok(!readFileSync(join(outD, loadModel(outD).manifest.weights.file)).equals(wa));
  });

  it('resumes after kill -9 of the CLI to the same weights as an uninterrupted run', async () => {
    const { spawn } = await import('node:child_process');
    const { existsSync } = await import('node:fs');
    const out = join(root, 'killed');
    const ref = join(root, 'ref');
    const args = (o: string, extra: string[] = []) => ['bin/fairline.js', 'train', '--data', root, '--category', 'toy', '--out', o, '--epochs', '4', '--batch', '2',
      '--width', '4', '--size', '32', '--cutoff', String(30 * 32 / 256), '--seed', '7', '--lr', '0.001', '--backend', 'wasm', '--workers', '1', '--json', ...extra];
    const run = (a: string[]) => new Promise<number | null>((resolve) => {
      const p = spawn(process.execPath, a, { stdio: 'ignore', env: { ...process.env, FAIRLINE_LOG: 'silent' } });
      p.on('exit', (code) => resolve(code));
    });
    const child = spawn(process.execPath, args(out), { stdio: 'ignore' });
    const ck = join(out, 'checkpoint', 'checkpoint.json');
    const t0 = Date.now();
    while (!(existsSync(ck) && JSON.parse(readFileSync(ck, 'utf8')).epochsDone >= 1)) {
      if (Date.now() - t0 > 120000) throw new Error('no checkpoint appeared');
      await new Promise((r) => setTimeout(r, 50));
    }
    child.kill('SIGKILL');
    await new Promise((r) => child.on('exit', r));
    assert.ok(!existsSync(join(out, 'model.json')), 'killed before the end');
    assert.equal(await run(args(out, ['--resume'])), 0);
    assert.equal(await run(args(ref)), 0);
    const w = (o: string) => readFileSync(join(o, loadModel(o).manifest.weights.file));
    assert.ok(w(out).equals(w(ref)), 'weights after kill -9 + resume differ from the uninterrupted run');
  });

  it('refuses to resume with other options', async () => {
    const out = join(root, 'e');
    await train({ ...base(out), epochs: 1 });
    await assert.rejects(train({ ...base(out), epochs: 1, lr: 5e-4, resume: true }), (e: unknown) => e instanceof ConfigError && /other options/.test(e.message));
  });

  it('names unreadable images before training starts', async () => {
    const bad = join(root, 'bad');
    mkdirSync(join(bad, 'toy', 'train', 'good'), { recursive: true });
    writeFileSync(join(bad, 'toy', 'train', 'good', 'broken.png'), Buffer.from('not a png'));
    writeFileSync(join(bad, 'toy', 'train', 'good', 'empty.png'), Buffer.alloc(0));
    await assert.rejects(train({ ...base(join(root, 'x')), dataRoot: bad }), (e: unknown) => e instanceof DatasetError && /broken\.png/.test(e.message) && /empty\.png/.test(e.message));
    await assert.rejects(train({ ...base(join(root, 'x')), dataRoot: join(root, 'nope') }), (e: unknown) => e instanceof DatasetError && e.code === 'missing');
    await assert.rejects(train({ ...base(join(root, 'x')), size: 40 }), (e: unknown) => e instanceof ConfigError && /multiple of 16/.test(e.message));
  });
});
