/**
 * From review marks back to the model: captures marked on the operator page feed
 * `fairline calibrate --labelled DIR` (good part = 0, defect = 1) and `fairline train
 * --add-normal DIR` (the good-part captures become training images).
 */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { calibrateModel } from '../../src/cli/calibrate.js';
import { type FairlineError } from '../../src/errors.js';
import { captureId } from '../../src/io/captures.js';
import { extraNormalImages } from '../../src/io/datasets.js';
import { loadModel } from '../../src/io/artefact.js';
import { useBackend } from '../../src/model/tfjs/backend.js';
import { loadInspectModel } from '../../src/runtime/model.js';
import { Recorder } from '../../src/streams/recorder.js';
import type { Verdict } from '../../src/verdict.js';
import { runFairline } from '../helpers.js';
import { TEST_DIR, makeModel, tempDir } from '../runtime/fixture.js';

function reject(seq: number): Verdict {
  return { schema: 'fairline.verdict/v1', line: 'L1', station: 'S1', camera: 'cam0', seq, captureTs: Date.UTC(2026, 11, 1) + seq, decidedTs: Date.UTC(2026, 11, 1) + seq, latencyMs: 1, model: 'm', score: 1, threshold: 0.5, verdict: 'reject', regions: [] };
}

describe('review marks -> calibrate --labelled and train --add-normal', function () {
  this.timeout(120000);
  let dir: string;
  let caps: string;
  const good = readdirSync(join(TEST_DIR, 'good')).sort().slice(0, 3).map((f) => join(TEST_DIR, 'good', f));
  const bad = readdirSync(join(TEST_DIR, 'colour')).sort().slice(0, 3).map((f) => join(TEST_DIR, 'colour', f));

  before(async () => {
    await useBackend('cpu');
    dir = tempDir('review');
    caps = join(dir, 'captures');
    // Six rejects captured as an images camera delivers them (encoded PNG bytes); an operator
    // marks the three good nuts "good part" (false rejects) and the three colour defects "defect".
    const rec = await Recorder.open({ dir: caps, rejects: true, passEvery: 0, keepDays: 7, maxBytes: 2 ** 30 });
    const files = [...good, ...bad];
    files.forEach((f, i) => rec.offer(reject(i), { payload: { data: readFileSync(f), width: 0, height: 0, format: 'encoded' } }));
    rec.offer(reject(99), { payload: { data: readFileSync(good[0]!), width: 0, height: 0, format: 'encoded' } }); // unmarked
    while (rec.stats().written < 7) await new Promise((r) => setTimeout(r, 10));
    for (let i = 0; i < 6; i++) await rec.label(captureId(reject(i)), i < 3 ? 'good' : 'defect');
    await rec.close();
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('calibrate --labelled takes the marked captures as good and defective images', async () => {
    const modelDir = join(dir, 'model');
    makeModel(modelDir);
    const model = await loadInspectModel({ dir: modelDir, engine: 'tfjs', requireThreshold: false });
    try {
      const logs: string[] = [];
      const r = await calibrateModel({ modelDir, model, labelled: caps, dryRun: true, log: (m) => logs.push(m) });
      assert.equal(r.method, 'f1-max');
      assert.equal(r.n, 6, 'the six marked captures, not the unmarked one');
      assert.equal(r.normalStats.n, 3);
      assert.ok(logs.some((l) => /6 marked capture\(s\)/.test(l)));
    } finally {
      await model.dispose();
    }
    // Only good marks: F1 needs both classes, and says what to do.
    const onlyGood = join(dir, 'only-good');
    const rec = await Recorder.open({ dir: onlyGood, rejects: true, passEvery: 0, keepDays: 7, maxBytes: 2 ** 30 });
    rec.offer(reject(1), { payload: { data: readFileSync(good[0]!), width: 0, height: 0, format: 'encoded' } });
    while (rec.stats().written < 1) await new Promise((r) => setTimeout(r, 10));
    await rec.label(captureId(reject(1)), 'good');
    await rec.close();
    await assert.rejects(calibrateModel({ modelDir, labelled: onlyGood, dryRun: true }), (e: FairlineError) => e.code === 'single_class' && /marked 'defect'/.test(e.message));
  });

  it('train --add-normal adds the captures marked good part to the training images', async () => {
    const extra = await extraNormalImages(caps);
    assert.equal(extra.length, 3);
    for (const [i, f] of extra.entries()) assert.ok(readFileSync(f).equals(readFileSync(good[i]!)), 'the frame as captured, at source resolution');
    assert.deepEqual(await extraNormalImages(join(TEST_DIR, 'good')), readdirSync(join(TEST_DIR, 'good')).sort().map((f) => join(TEST_DIR, 'good', f)));
    await assert.rejects(extraNormalImages(join(dir, 'nope')), (e: FairlineError) => e.code === 'missing');

    // A tiny MVTec-layout category of four images, and the CLI as an operator runs it.
    const data = join(dir, 'data');
    mkdirSync(join(data, 'toy', 'train', 'good'), { recursive: true });
    for (let i = 0; i < 4; i++) {
      await sharp({ create: { width: 48, height: 48, channels: 3, background: { r: 100 + 20 * i, g: 90, b: 60 } } }).png().toFile(join(data, 'toy', 'train', 'good', `${i}.png`));
    }
    const out = join(dir, 'retrained');
    const run = await runFairline(['train', '--data', data, '--category', 'toy', '--out', out, '--epochs', '1', '--batch', '4', '--width', '4', '--size', '32', '--workers', '0', '--add-normal', caps], { timeoutMs: 100000 });
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stderr, /--add-normal: 3 more normal image\(s\)/);
    assert.match(run.stderr, /plan: 7 training images/);
    const m = loadModel(out).manifest;
    assert.equal(m.training?.files, 7, '4 of the dataset + 3 marked good');
    assert.equal(m.trainScoreStats?.n, 7);
  });
});
