import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { BadInputError, ModelError } from '../src/errors.js';
import { useBackend } from '../src/model/tfjs/backend.js';
import { readTorchWeights, writeTorchWeights } from '../src/io/weights.js';
import { createUNet, parameterCount, paramDefs, UNet } from '../src/model/tfjs/unet.js';
import { tensorsFromFlat, unetFromTorch, unetToTorch, type TorchTensors } from '../src/model/weights.js';
import { expectArraysCloseRel, GOLDEN_DIR, golden, goldenIndex, nchwToNhwc, readF32 } from './helpers.js';

/** NHWC -> NCHW, to compare with PyTorch-layout golden tensors. */
function nhwcToNchw(data: Float32Array, n: number, h: number, w: number, c: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let b = 0; b < n; b++)
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++)
        for (let ch = 0; ch < c; ch++) out[((b * c + ch) * h + y) * w + x] = data[((b * h + y) * w + x) * c + ch]!;
  return out;
}

function goldenTensors(): TorchTensors {
  const entries = goldenIndex().cases.unet_c4!.weights!.tensors!;
  return tensorsFromFlat(entries, readF32('unet_c4.weights.f32'));
}

function goldenInput(): tf.Tensor4D {
  const g = golden('unet_c4', 'input');
  const [n, c, h, w] = g.shape as [number, number, number, number];
  return tf.tensor4d(nchwToNhwc(g.data, n, c, h, w), [n, h, w, c]);
}

/** Run the golden checks on a UNet; returns the eval output (NCHW) for cross-checks. */
function checkGolden(unet: UNet): Float32Array {
  const x = goldenInput();
  try {
    const yEval = unet.predict(x);
    const evalNchw = nhwcToNchw(yEval.dataSync() as Float32Array, 2, 64, 64, 3);
    yEval.dispose();
    const sEval = expectArraysCloseRel(evalNchw, golden('unet_c4', 'output_eval').data, 1e-4, 'eval output');

    const rmBefore = unet.params.get('encoder.block1.1.running_mean')!.dataSync().slice();
    const rvBefore = unet.params.get('encoder.block1.1.running_var')!.dataSync().slice();
    const { y, batchStats } = unet.forward(x, true);
    const trainNchw = nhwcToNchw(y.dataSync() as Float32Array, 2, 64, 64, 3);
    const sTrain = expectArraysCloseRel(trainNchw, golden('unet_c4', 'output_train').data, 1e-4, 'train output');
    // The train output must not simply equal the eval output (BN mode really switched).
    let modeDiff = 0;
    for (let i = 0; i < trainNchw.length; i++) modeDiff = Math.max(modeDiff, Math.abs(trainNchw[i]! - evalNchw[i]!));
    assert.ok(modeDiff > 1e-3, `train and eval outputs differ (${modeDiff})`);
    assert.ok(batchStats);
    unet.updateRunningStats(batchStats);
    y.dispose();
    for (const s of batchStats.values()) tf.dispose([s.mean, s.variance]);
    const rm = unet.params.get('encoder.block1.1.running_mean')!.dataSync();
    const rv = unet.params.get('encoder.block1.1.running_var')!.dataSync();
    assert.notDeepEqual(Array.from(rm), Array.from(rmBefore), 'running mean was updated');
    assert.notDeepEqual(Array.from(rv), Array.from(rvBefore), 'running var was updated');
    const sMean = expectArraysCloseRel(rm, golden('unet_c4', 'block1_bn0_running_mean_after').data, 1e-4, 'running mean');
    const sVar = expectArraysCloseRel(rv, golden('unet_c4', 'block1_bn0_running_var_after').data, 1e-4, 'running var');
    if (process.env.FAIRLINE_TEST_VERBOSE) console.log({ sEval, sTrain, sMean, sVar });
    return evalNchw;
  } finally {
    x.dispose();
  }
}

describe('UNet (model_unetskip.py)', () => {
  before(async () => {
    await tf.setBackend('cpu');
  });

  it('has the reference parameter counts', () => {
    const spec = (c: number, cin = 1) => ({ baseWidth: c, inChannels: cin, outChannels: 3 });
    assert.equal(parameterCount(spec(32)), 4_322_307);
    assert.equal(parameterCount(spec(64)), 17_270_787);
    assert.equal(parameterCount(spec(128)), 69_046_275);
    // Sobel input (2 channels) adds 9c; BN buffers add 2 * 84c.
    assert.equal(parameterCount(spec(128, 2)) - parameterCount(spec(128)), 9 * 128);
    assert.equal(parameterCount(spec(128), { includeBuffers: true }) - parameterCount(spec(128)), 21_504);
    // The layout lists every golden state_dict key, in the same order.
    const names = paramDefs(spec(4)).map((d) => d.name);
    assert.deepEqual(names, Object.keys(goldenIndex().cases.unet_c4!.weights!.tensors!));
  });

  it('matches the golden unet_c4 (eval, train, BN running stats) from index.json', () => {
    const unet = unetFromTorch(goldenTensors());
    try {
      assert.deepEqual(unet.spec, { baseWidth: 4, inChannels: 1, outChannels: 3 });
      checkGolden(unet);
    } finally {
      unet.dispose();
    }
  });

  it('matches the golden unet_c4 on the wasm backend too', async function () {
    this.timeout(60_000);
    const unet = unetFromTorch(goldenTensors());
    try {
      await useBackend('wasm');
      assert.equal(tf.getBackend(), 'wasm');
      checkGolden(unet);
    } finally {
      unet.dispose();
      await useBackend('cpu');
    }
  });

  it('loads the import format (unet_c4_weights/) with its metadata and gives the same outputs', async () => {
    const { tensors, meta } = await readTorchWeights(join(GOLDEN_DIR, 'unet_c4_weights'));
    assert.deepEqual(meta, { baseWidth: 4, inChannels: 1, outChannels: 3, size: 64, filter: { kind: 'butterworth', cutoff: 30, order: 2 } });
    const a = unetFromTorch(tensors, { baseWidth: meta.baseWidth!, inChannels: meta.inChannels!, outChannels: 3 });
    const b = unetFromTorch(goldenTensors());
    try {
      const ya = checkGolden(a);
      const yb = checkGolden(b);
      assert.deepEqual(ya, yb, 'both imports give bit-identical outputs');
    } finally {
      a.dispose();
      b.dispose();
    }
  });

  it('round-trips through unetToTorch and writeTorchWeights/readTorchWeights exactly', async () => {
    const src = goldenTensors();
    const unet = unetFromTorch(src);
    const dir = await mkdtemp(join(tmpdir(), 'fairline-weights-'));
    try {
      const back = unetToTorch(unet);
      assert.deepEqual(Object.keys(back), Object.keys(src));
      for (const k of Object.keys(src)) {
        assert.deepEqual(back[k]!.shape, src[k]!.shape, k);
        assert.deepEqual(back[k]!.data, src[k]!.data, k);
      }
      await writeTorchWeights(dir, back, { baseWidth: 4, inChannels: 1, outChannels: 3, size: 64, filter: { kind: 'butterworth', cutoff: 30, order: 2 } });
      const { tensors, meta } = await readTorchWeights(join(dir, 'weights.json'));
      assert.equal(meta.size, 64);
      assert.equal(meta.filter?.kind, 'butterworth');
      for (const k of Object.keys(src)) assert.deepEqual(tensors[k]!.data, src[k]!.data, k);
    } finally {
      unet.dispose();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('rejects missing, unknown and misshapen tensors with their names, and accepts num_batches_tracked', () => {
    const base = goldenTensors();
    const without = { ...base };
    delete without['decoder.db2.3.bias'];
    assert.throws(() => unetFromTorch(without), (e: unknown) => e instanceof ModelError && /missing: decoder\.db2\.3\.bias/.test(e.message));
    const extra = { ...base, 'decoder.extra.weight': { shape: [1], data: new Float32Array(1) } };
    assert.throws(() => unetFromTorch(extra), (e: unknown) => e instanceof ModelError && /unknown: decoder\.extra\.weight/.test(e.message));
    const bad = { ...base, 'encoder.block3.0.weight': { shape: [16, 8, 3, 2], data: new Float32Array(16 * 8 * 6) } };
    assert.throws(() => unetFromTorch(bad), (e: unknown) => e instanceof ModelError && /wrong shape: encoder\.block3\.0\.weight/.test(e.message));
    // A spec that disagrees with the tensors is a shape error too.
    assert.throws(() => unetFromTorch(base, { baseWidth: 8, inChannels: 1, outChannels: 3 }), ModelError);
    const withCounters = { ...base, 'encoder.block1.1.num_batches_tracked': { shape: [], data: new Float32Array([7]) } };
    const u = unetFromTorch(withCounters);
    u.dispose();
  });

  it('reports missing or short weight files as ModelError', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fairline-weights-'));
    try {
      await assert.rejects(readTorchWeights(join(dir, 'nope')), ModelError);
      const json = await readFile(join(GOLDEN_DIR, 'unet_c4_weights', 'weights.json'), 'utf8');
      await writeFile(join(dir, 'weights.json'), json);
      await assert.rejects(readTorchWeights(dir), (e: unknown) => e instanceof ModelError && e.code === 'not_found');
      const data = await readFile(join(GOLDEN_DIR, 'unet_c4_weights', 'weights.f32'));
      await writeFile(join(dir, 'weights.f32'), data.subarray(0, data.byteLength - 8));
      await assert.rejects(readTorchWeights(dir), (e: unknown) => e instanceof ModelError && /too short for decoder\.fin_out\.0\.bias/.test(e.message));
      await writeFile(join(dir, 'weights.json'), '{"tensors": ');
      await assert.rejects(readTorchWeights(dir), ModelError);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('createUNet follows the reference init and is seeded', () => {
    const spec = { baseWidth: 8, inChannels: 2, outChannels: 3 };
    const a = createUNet(spec, 3), b = createUNet(spec, 3), c = createUNet(spec, 4);
    try {
      const w = a.params.get('encoder.block4.3.weight')!.dataSync();
      assert.deepEqual(a.params.get('encoder.block4.3.weight')!.shape, [3, 3, 64, 64]);
      let s = 0, s2 = 0;
      for (const v of w) { s += v; s2 += v * v; }
      const mean = s / w.length, std = Math.sqrt(s2 / w.length - mean * mean);
      assert.ok(Math.abs(mean) < 0.002 && Math.abs(std - 0.02) < 0.001, `conv init mean ${mean} std ${std}`);
      const bias = a.params.get('encoder.block4.3.bias')!.dataSync();
      const bound = 1 / Math.sqrt(9 * 64);
      assert.ok(bias.every((v) => Math.abs(v) <= bound) && bias.some((v) => Math.abs(v) > bound / 2));
      const gamma = a.params.get('decoder.db1.1.weight')!.dataSync();
      assert.ok(gamma.every((v) => Math.abs(v - 1) < 0.1) && gamma.some((v) => v !== 1));
      assert.ok(a.params.get('decoder.db1.1.bias')!.dataSync().every((v) => v === 0));
      assert.ok(a.params.get('decoder.db1.1.running_var')!.dataSync().every((v) => v === 1));
      assert.equal(a.params.get('decoder.db1.1.running_var')!.trainable, false);
      assert.equal(a.trainableVariables().length, 23 * 2 + 22 * 2);
      assert.deepEqual(a.params.get('decoder.fin_out.0.weight')!.dataSync(), b.params.get('decoder.fin_out.0.weight')!.dataSync());
      assert.notDeepEqual(a.params.get('decoder.fin_out.0.weight')!.dataSync(), c.params.get('decoder.fin_out.0.weight')!.dataSync());
    } finally {
      a.dispose(); b.dispose(); c.dispose();
    }
  });

  it('validates its input and does not leak tensors per call', () => {
    const unet = createUNet({ baseWidth: 2, inChannels: 1, outChannels: 3 });
    const x = tf.randomUniform([1, 32, 32, 1], 0, 1, 'float32', 5) as tf.Tensor4D;
    const bad = tf.zeros([1, 32, 32, 2]) as tf.Tensor4D;
    const odd = tf.zeros([1, 24, 24, 1]) as tf.Tensor4D;
    const tiny = tf.zeros([1, 16, 16, 1]) as tf.Tensor4D;
    try {
      assert.throws(() => unet.predict(bad), BadInputError);
      assert.throws(() => unet.predict(odd), BadInputError);
      // One value per channel at the bottleneck: PyTorch refuses to train BN on it, so do we.
      assert.throws(() => unet.forward(tiny, true), BadInputError);
      tf.dispose(unet.predict(tiny));
      tf.dispose(unet.predict(x));
      const before = tf.memory().numTensors;
      for (let i = 0; i < 3; i++) {
        tf.dispose(unet.predict(x));
        const r = unet.forward(x, true);
        assert.equal(r.batchStats!.size, 22);
        assert.equal(r.batchStats!.get('encoder.block5.1')!.count, 4);
        assert.equal(r.batchStats!.get('decoder.db4.4')!.count, 32 * 32);
        unet.updateRunningStats(r.batchStats!);
        tf.dispose([r.y, ...[...r.batchStats!.values()].flatMap((s) => [s.mean, s.variance])]);
      }
      assert.equal(tf.memory().numTensors, before, 'no tensors leaked');
    } finally {
      tf.dispose([x, bad, odd, tiny]);
      unet.dispose();
    }
  });
});
