/**
 * Loading a model artefact for the station: checks against the deployment and the artefact's own
 * consistency, threshold resolution, and the decode step (identical to the evaluation path).
 */
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { ConfigError, ModelError } from '../../src/errors.js';
import { readManifest, writeManifest } from '../../src/io/artefact.js';
import { decodeImage, loadModelImage } from '../../src/io/image.js';
import { useBackend } from '../../src/model/tfjs/backend.js';
import { checkModel, frameDecoder, loadInspectModel, resolveThreshold } from '../../src/runtime/model.js';
import type { Frame } from '../../src/streams/frame.js';
import { makeModel, tempDir, TEST_DIR } from './fixture.js';

const isModelError = (code: string) => (e: unknown) => e instanceof ModelError && e.code === code;

describe('runtime/model', function () {
  this.timeout(60000);
  let dir: string;
  before(async () => {
    await useBackend('cpu');
    dir = tempDir('model');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('loads an artefact as an InspectModel whose outputs are the detector\'s, without leaking tensors', async () => {
    const d = join(dir, 'ok');
    const manifest = makeModel(d, { threshold: 0.7 });
    const m = await loadInspectModel({ dir: d, engine: 'tfjs' });
    assert.equal(m.id, manifest.id);
    assert.equal(m.size, 64);
    assert.equal(m.engine, 'tfjs');
    assert.equal(m.engineName, 'tfjs-cpu');
    assert.deepEqual([m.threshold, m.thresholdSource], [0.7, 'artefact']);
    const img = await loadModelImage(join(TEST_DIR, 'good', '04.png'), 64);
    const [det] = await m.detect([img]);
    const before = tf.memory().numTensors;
    for (let i = 0; i < 5; i++) {
      const [out] = await m.inferBatch([img]);
      assert.equal(out!.score, det!.score);
      assert.equal(out!.map!.length, 64 * 64);
    }
    assert.equal(tf.memory().numTensors, before);
    await m.dispose();
  });

  it('model/config mismatch (size, channels) is a ModelError before anything runs', async () => {
    const d = join(dir, 'mismatch');
    makeModel(d, { threshold: 1 });
    await assert.rejects(loadInspectModel({ dir: d, engine: 'tfjs', expect: { size: 128 } }), (e: unknown) => isModelError('model_mismatch')(e) && /size is 64.*expects 128/.test((e as Error).message));
    await assert.rejects(loadInspectModel({ dir: d, engine: 'tfjs', expect: { channels: 2 } }), isModelError('model_mismatch'));
    const ok = await loadInspectModel({ dir: d, engine: 'tfjs', expect: { size: 64, channels: 1 } });
    await ok.dispose();
  });

  it('catches manifests that disagree with their weights or themselves', () => {
    const d = join(dir, 'edited');
    makeModel(d, { threshold: 1 });
    const m = readManifest(d);
    const tensors = {} as Parameters<typeof checkModel>[0]['tensors'];
    // Shapes are all checkModel reads from the weights.
    for (const [k, e] of Object.entries(m.weights.tensors)) tensors[k] = { shape: e.shape, data: new Float32Array(0) };
    checkModel({ dir: d, manifest: m, tensors });
    const wider = { ...m, spec: { ...m.spec, unet: { ...m.spec.unet, baseWidth: 8 } } };
    assert.throws(() => checkModel({ dir: d, manifest: wider, tensors }), isModelError('model_mismatch'));
    const sobel = { ...m, spec: { ...m.spec, filter: { ...m.spec.filter, kind: 'sobel' as const } } };
    assert.throws(() => checkModel({ dir: d, manifest: sobel, tensors }), isModelError('bad_spec'));
    const odd = { ...m, spec: { ...m.spec, size: 72 } };
    assert.throws(() => checkModel({ dir: d, manifest: odd, tensors }), isModelError('bad_spec'));
    // Through the loader too (a re-stamped manifest passes its checksum but not the weights check).
    writeManifest(d, wider);
    return assert.rejects(loadInspectModel({ dir: d, engine: 'tfjs' }), isModelError('model_mismatch'));
  });

  it('requires a threshold unless told otherwise, and says how to get one', async () => {
    const d = join(dir, 'uncalibrated');
    makeModel(d);
    await assert.rejects(loadInspectModel({ dir: d, engine: 'tfjs' }), (e: unknown) => isModelError('no_threshold')(e) && /fairline calibrate/.test((e as Error).message));
    const m = await loadInspectModel({ dir: d, engine: 'tfjs', requireThreshold: false });
    assert.deepEqual([m.threshold, m.thresholdSource], [undefined, 'none']);
    await m.dispose();
    await assert.rejects(loadInspectModel({ dir: join(dir, 'absent'), engine: 'tfjs' }), isModelError('missing'));
    assert.deepEqual(resolveThreshold({ image: 0.3, method: 'x', computedAt: '' }, 0.4), { value: 0.4, source: 'override' });
    assert.deepEqual(resolveThreshold({ image: 0.3, method: 'x', computedAt: '' }), { value: 0.3, source: 'artefact' });
    assert.throws(() => resolveThreshold(undefined, Number.NaN), ConfigError);
  });

  it('decodes encoded and raw frames exactly like the evaluation path', async () => {
    const decode = frameDecoder(64);
    const path = join(TEST_DIR, 'colour', '02.png');
    const bytes = readFileSync(path);
    const frame: Frame = { sourceId: 'c', seq: 0, captureTs: 0, payload: { data: bytes, width: 0, height: 0, format: 'encoded' } };
    const out = (await decode(frame)) as { image: { data: Float32Array }; sourceWidth: number; sourceHeight: number };
    const ref = await loadModelImage(path, 64);
    assert.deepEqual(out.image.data, ref.data);
    assert.deepEqual([out.sourceWidth, out.sourceHeight], [512, 512]);
    // The same pixels as a raw RGB camera buffer decode to the same model input.
    const bgr = await decodeImage(path);
    const rgb = new Uint8Array(bgr.data.length);
    for (let i = 0; i < rgb.length; i += 3) {
      rgb[i] = bgr.data[i + 2]!;
      rgb[i + 1] = bgr.data[i + 1]!;
      rgb[i + 2] = bgr.data[i]!;
    }
    const raw = (await decode({ ...frame, payload: { data: rgb, width: 512, height: 512, format: 'rgb' } })) as typeof out;
    assert.deepEqual(raw.image.data, ref.data);
  });
});
