/**
 * `fairline calibrate`: thresholds from held-out images written into the model artefact.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { calibrateModel, normalImages } from '../../src/cli/calibrate.js';
import { ConfigError, DatasetError } from '../../src/errors.js';
import { readManifest } from '../../src/io/artefact.js';
import { loadModelImage } from '../../src/io/image.js';
import { listImages } from '../../src/io/datasets.js';
import { useBackend } from '../../src/model/tfjs/backend.js';
import { loadInspectModel, type RuntimeModel } from '../../src/runtime/model.js';
import { calibrateF1 } from '../../src/thresholds.js';
import { SAMPLE_DATA } from '../helpers.js';
import { makeModel, tempDir, TEST_DIR } from './fixture.js';

describe('runtime/calibrate', function () {
  this.timeout(60000);
  let dir: string;
  let modelDir: string;
  let model: RuntimeModel;
  const good = listImages(join(TEST_DIR, 'good'));
  const colour = listImages(join(TEST_DIR, 'colour'));
  const scoreOf = async (files: string[]): Promise<number[]> => {
    const out: number[] = [];
    for (const f of files) out.push((await model.detect([await loadModelImage(f, 64)]))[0]!.score);
    return out;
  };

  before(async () => {
    await useBackend('cpu');
    dir = tempDir('calibrate');
    modelDir = join(dir, 'model');
    makeModel(modelDir, { seed: 5 });
    model = await loadInspectModel({ dir: modelDir, engine: 'tfjs', requireThreshold: false });
  });
  after(async () => {
    await model?.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  it('finds normal images in a folder, its good/, its test/good/, or a dataset category', () => {
    assert.deepEqual(normalImages(join(TEST_DIR, 'good')), good);
    assert.deepEqual(normalImages(TEST_DIR), good);
    assert.deepEqual(normalImages(join(TEST_DIR, '..')), good);
    assert.deepEqual(normalImages(SAMPLE_DATA, 'hazelnut'), good);
    assert.throws(() => normalImages(join(TEST_DIR, 'nope')), DatasetError);
  });

  it('normal-only: writes a threshold that meets the target on the good images (no defective images needed)', async () => {
    assert.equal(model.threshold, undefined);
    const r = await calibrateModel({ modelDir, model, normal: join(TEST_DIR, 'good'), targetFrr: 0.2 });
    const scores = await scoreOf(good);
    const rejected = scores.filter((s) => s >= r.threshold).length;
    // floor(0.2 * 6) = 1 good image may be rejected, and exactly the highest one is.
    assert.equal(rejected, 1);
    assert.ok(rejected / scores.length <= 0.2);
    const sorted = [...scores].sort((a, b) => a - b);
    assert.ok(r.threshold > sorted[4]! && r.threshold <= sorted[5]!, `${r.threshold} not between ${sorted[4]} and ${sorted[5]}`);
    assert.equal(r.falseRejectRate, 1 / 6);
    assert.equal(r.n, 6);
    assert.equal(r.written, true);

    const m = readManifest(modelDir);
    assert.equal(m.thresholds!.image, r.threshold);
    assert.equal(m.thresholds!.method, 'normal-quantile');
    assert.equal(m.thresholds!.targetFalseRejectRate, 0.2);
    assert.equal(m.thresholds!.images, 6);
    assert.ok(Date.now() - Date.parse(m.thresholds!.computedAt) < 60000);
    // A station loading the model now uses it, unless the config overrides it.
    const again = await loadInspectModel({ dir: modelDir, engine: 'tfjs' });
    assert.equal(again.threshold, r.threshold);
    assert.equal(again.thresholdSource, 'artefact');
    await again.dispose();
    const over = await loadInspectModel({ dir: modelDir, engine: 'tfjs', threshold: 0.25 });
    assert.deepEqual([over.threshold, over.thresholdSource], [0.25, 'override']);
    await over.dispose();

    // target 0 rejects none of them.
    const zero = await calibrateModel({ modelDir, model, normal: join(TEST_DIR, 'good'), targetFrr: 0, dryRun: true });
    assert.ok(scores.every((s) => s < zero.threshold));
    assert.equal(zero.written, false);
    assert.equal(readManifest(modelDir).thresholds!.image, r.threshold, 'dry run leaves the model alone');
  });

  it('labelled: writes the F1-maximising threshold', async () => {
    const r = await calibrateModel({ modelDir, model, labelled: TEST_DIR });
    const scores = [...(await scoreOf(colour)), ...(await scoreOf(good))];
    const labels = [...colour.map(() => 1), ...good.map(() => 0)];
    const want = calibrateF1(scores, labels);
    assert.ok(Math.abs(r.threshold - want.threshold) <= 1e-6, `${r.threshold} vs ${want.threshold}`);
    assert.ok(Math.abs(r.f1! - want.f1) < 1e-9);
    assert.equal(r.method, 'f1-max');
    assert.equal(readManifest(modelDir).thresholds!.method, 'f1-max');
  });

  it('refuses ambiguous options and single-class labelled sets', async () => {
    await assert.rejects(calibrateModel({ modelDir, model }), ConfigError);
    await assert.rejects(calibrateModel({ modelDir, model, normal: TEST_DIR, labelled: TEST_DIR }), ConfigError);
    await assert.rejects(calibrateModel({ modelDir, model, normal: TEST_DIR, targetFrr: 1 }), ConfigError);
    await assert.rejects(calibrateModel({ modelDir, model, labelled: join(TEST_DIR, 'good') }), (e: unknown) => e instanceof DatasetError);
  });
});
