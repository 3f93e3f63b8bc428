/**
 * The wasm training kernels (src/model/tfjs/wasm/kernels.ts) against the tfjs cpu backend: each
 * kernel on several shapes, then a tiny UNet-like training graph whose gradients and Adam step
 * must match across backends. Inputs are typed arrays; tensors are built after each switch
 * because a tensor cannot move between backends.
 */
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { useBackend } from '../src/model/tfjs/backend.js';
import { WASM_TRAINING_KERNELS } from '../src/model/tfjs/wasm/kernels.js';
import { diffStats, expectArraysCloseRel } from './helpers.js';

/** Deterministic pseudo-random floats in [-1, 1) (LCG), so both backends see the same data. */
function rand(n: number, seed: number): Float32Array {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

type Inputs = Record<string, { data: Float32Array; shape: number[] }>;

/** Run `kernel` through the engine on one backend and read every output. */
async function runOn(backend: 'cpu' | 'wasm', kernel: string, inputs: Inputs, attrs: object): Promise<{ data: Float32Array; shape: number[] }[]> {
  await useBackend(backend);
  const ts: tf.NamedTensorMap = {};
  for (const [k, v] of Object.entries(inputs)) ts[k] = tf.tensor(v.data, v.shape);
  const out = tf.engine().runKernel(kernel, ts, attrs as tf.NamedAttrMap) as tf.Tensor | tf.Tensor[];
  const outs = Array.isArray(out) ? out : [out];
  const res = [];
  for (const o of outs) res.push({ data: (await o.data()) as Float32Array, shape: o.shape });
  tf.dispose([...Object.values(ts), ...outs]);
  return res;
}

const worstByKernel = new Map<string, number>();

/** Compare a kernel on wasm vs cpu; returns the worst relative error. */
async function compareKernel(kernel: string, inputs: Inputs, attrs: object, rtol = 1e-5): Promise<number> {
  const ref = await runOn('cpu', kernel, inputs, attrs);
  const got = await runOn('wasm', kernel, inputs, attrs);
  assert.equal(got.length, ref.length, `${kernel}: number of outputs`);
  let worst = 0;
  got.forEach((g, i) => {
    assert.deepEqual(g.shape, ref[i]!.shape, `${kernel}: shape of output ${i}`);
    worst = Math.max(worst, expectArraysCloseRel(g.data, ref[i]!.data, rtol, `${kernel} ${JSON.stringify(attrs)}`).maxRel);
  });
  worstByKernel.set(kernel, Math.max(worst, worstByKernel.get(kernel) ?? 0));
  return worst;
}

const inp = (shape: number[], seed: number) => ({ data: rand(shape.reduce((a, b) => a * b, 1), seed), shape });

interface ConvCase { x: number[]; k: [number, number]; cout: number; strides: number | [number, number]; pad: 'same' | 'valid' | tf.backend_util.ExplicitPadding }

/** dy shape for a conv case, computed with tfjs' own shape logic. */
function convOutShape(c: ConvCase): number[] {
  const info = tf.backend_util.computeConv2DInfo(c.x as [number, number, number, number], [c.k[0], c.k[1], c.x[3]!, c.cout], c.strides, 1, c.pad);
  return info.outShape;
}

const convCases: ConvCase[] = [
  { x: [2, 8, 8, 1], k: [3, 3], cout: 4, strides: 1, pad: 'same' },
  { x: [2, 8, 8, 4], k: [3, 3], cout: 8, strides: 1, pad: 'same' },
  { x: [1, 9, 7, 3], k: [3, 3], cout: 5, strides: 1, pad: 'valid' },
  { x: [2, 10, 10, 4], k: [5, 5], cout: 2, strides: 1, pad: 'same' },
  { x: [2, 6, 6, 4], k: [1, 1], cout: 3, strides: 1, pad: 'valid' },
  { x: [2, 9, 8, 2], k: [3, 3], cout: 4, strides: 2, pad: 'same' },
  { x: [1, 8, 8, 3], k: [2, 2], cout: 4, strides: 2, pad: 'valid' },
  { x: [1, 7, 7, 2], k: [3, 3], cout: 3, strides: 1, pad: [[0, 0], [2, 0], [1, 2], [0, 0]] },
];

describe('wasm training kernels vs cpu', function () {
  this.timeout(60000);

  after(() => {
    const parts = [...worstByKernel].map(([k, v]) => `${k} ${v.toExponential(1)}`);
    console.log(`      worst max|diff|/max|ref| per kernel: ${parts.join(', ')}`);
  });

  it('registers every kernel it names on the wasm backend', async () => {
    await useBackend('wasm');
    for (const name of WASM_TRAINING_KERNELS) assert.ok(tf.getKernel(name, 'wasm'), `${name} on wasm`);
  });

  it('Conv2DBackpropFilter matches on 3x3 same/valid, 1x1, 5x5, stride 2 and explicit pads', async () => {
    let worst = 0;
    for (const [i, c] of convCases.entries()) {
      const attrs = { strides: c.strides, pad: c.pad, dataFormat: 'NHWC', dimRoundingMode: undefined, filterShape: [c.k[0], c.k[1], c.x[3]!, c.cout] };
      worst = Math.max(worst, await compareKernel('Conv2DBackpropFilter', { x: inp(c.x, 11 + i), dy: inp(convOutShape(c), 97 + i) }, attrs));
    }
    assert.ok(worst < 1e-5);
  });

  it('Conv2DBackpropInput matches (fast stride-1 path and stock fallback)', async () => {
    for (const [i, c] of convCases.entries()) {
      const attrs = { strides: c.strides, pad: c.pad, dataFormat: 'NHWC', dimRoundingMode: undefined, inputShape: c.x };
      await compareKernel('Conv2DBackpropInput', { dy: inp(convOutShape(c), 31 + i), filter: inp([c.k[0], c.k[1], c.x[3]!, c.cout], 7 + i) }, attrs);
    }
  });

  it('depthwise conv backprop (input and filter) matches for an 11x11 window, multiplier 1 and 2, stride 1 and 2', async () => {
    const cases = [
      { x: [2, 16, 16, 3], k: 11, m: 1, strides: 1, pad: 'valid' as const },
      { x: [1, 12, 12, 3], k: 11, m: 1, strides: 1, pad: 'same' as const },
      { x: [1, 9, 9, 2], k: 3, m: 2, strides: 1, pad: 'same' as const },
      { x: [1, 9, 9, 2], k: 3, m: 1, strides: 2, pad: 'same' as const },
    ];
    for (const [i, c] of cases.entries()) {
      const fShape = [c.k, c.k, c.x[3]!, c.m];
      const info = tf.backend_util.computeConv2DInfo(c.x as [number, number, number, number], fShape as [number, number, number, number], c.strides, 1, c.pad, undefined, true);
      const common = { strides: c.strides, pad: c.pad, dilations: 1, dimRoundingMode: undefined };
      await compareKernel('DepthwiseConv2dNativeBackpropInput', { dy: inp(info.outShape, 5 + i), filter: inp(fShape, 9 + i) }, { ...common, inputShape: c.x });
      await compareKernel('DepthwiseConv2dNativeBackpropFilter', { x: inp(c.x, 3 + i), dy: inp(info.outShape, 13 + i) }, { ...common, filterShape: fShape });
    }
  });

  it('Slice, SplitV and Tile are bit-identical to cpu', async () => {
    const x4 = inp([2, 5, 6, 3], 1);
    for (const [begin, size] of [[[0, 1, 2, 0], [2, 3, 3, 3]], [[1, 0, 0, 1], [1, 5, 6, 2]], [[0, 0, 0, 0], [2, 5, 6, 3]], [[1, 4, 5, 2], [1, 1, 1, 1]]]) {
      assert.equal(await compareKernel('Slice', { x: x4 }, { begin, size }, 0), 0);
    }
    assert.equal(await compareKernel('Slice', { x: inp([2, 3, 2, 2, 4], 2) }, { begin: [1, 1, 0, 1, 1], size: [1, 2, 2, 1, 3] }, 0), 0);
    assert.equal(await compareKernel('Slice', { x: inp([7], 3) }, { begin: [2], size: [4] }, 0), 0);
    assert.equal(await compareKernel('SplitV', { x: x4 }, { numOrSizeSplits: [1, 2], axis: 3 }, 0), 0);
    assert.equal(await compareKernel('SplitV', { x: x4 }, { numOrSizeSplits: [2, -1], axis: 1 }, 0), 0);
    for (const [shape, reps] of [[[3], [4]], [[1, 1, 1, 3], [2, 4, 5, 1]], [[2, 1, 3, 1], [1, 3, 1, 2]], [[2, 3], [1, 1]]]) {
      assert.equal(await compareKernel('Tile', { x: inp(shape!, 4) }, { reps }, 0), 0);
    }
  });

  it('the stock ResizeBilinear and ResizeBilinearGrad (alignCorners) match cpu', async () => {
    const attrs = { alignCorners: true, halfPixelCenters: false, size: [16, 16] };
    await compareKernel('ResizeBilinear', { images: inp([2, 8, 8, 3], 21) }, attrs);
    await compareKernel('ResizeBilinearGrad', { images: inp([2, 8, 8, 3], 22), dy: inp([2, 16, 16, 3], 23) }, { alignCorners: true });
  });

  it('leaks no tensors or wasm buffers', async () => {
    await useBackend('wasm');
    const run = () => tf.tidy(() => {
      const x = tf.tensor4d(rand(2 * 8 * 8 * 4, 1), [2, 8, 8, 4]);
      const w = tf.tensor4d(rand(9 * 4 * 8, 2), [3, 3, 4, 8]);
      const [gx, gw] = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, 1, 'same').square().sum())([x, w]);
      const s = tf.split(x, [1, 3], 3);
      return tf.addN([gx!.sum(), gw!.sum(), s[1]!.tile([1, 1, 1, 2]).sum()]);
    });
    run().dispose();
    const before = tf.memory().numTensors;
    const ids = tf.engine().backend.numDataIds();
    for (let i = 0; i < 5; i++) run().dispose();
    assert.equal(tf.memory().numTensors, before);
    assert.equal(tf.engine().backend.numDataIds(), ids);
  });
});

// ---------------------------------------------------------------------------------------------
// End to end: a tiny UNet-like graph with the op mix of FAIR training.

const PARAM_SHAPES: Record<string, number[]> = {
  w1: [3, 3, 1, 4], gamma: [4], beta: [4],
  w2: [3, 3, 4, 8], b2: [8], w3: [1, 1, 8, 4], w4: [3, 3, 4, 3], b4: [3],
};

function gaussian11(channels: number): tf.Tensor4D {
  const g: number[] = [];
  for (let i = 0; i < 11; i++) g.push(Math.exp(-((i - 5) ** 2) / (2 * 1.5 * 1.5)));
  const s = g.reduce((a, b) => a + b, 0);
  const k = new Float32Array(121 * channels);
  for (let i = 0; i < 11; i++) for (let j = 0; j < 11; j++) for (let c = 0; c < channels; c++) k[(i * 11 + j) * channels + c] = (g[i]! * g[j]!) / (s * s);
  return tf.tensor4d(k, [11, 11, channels, 1]);
}

/** conv3x3 -> BN(train) -> relu -> maxpool -> conv(+bias) -> relu -> resize(alignCorners) -> 1x1 -> + skip -> conv3x3. */
function forward(p: Record<string, tf.Tensor>, x: tf.Tensor4D): tf.Tensor4D {
  // No bias before BN: its gradient is zero up to rounding, so a relative check means nothing.
  const c1 = tf.conv2d(x, p['w1'] as tf.Tensor4D, 1, 'same');
  const { mean, variance } = tf.moments(c1, [0, 1, 2]);
  const bn = tf.batchNorm(c1, mean, variance, p['beta'] as tf.Tensor1D, p['gamma'] as tf.Tensor1D, 1e-5);
  const skip = tf.relu(bn) as tf.Tensor4D;
  const down = tf.maxPool(skip, 2, 2, 'valid');
  const c2 = tf.relu(tf.add(tf.conv2d(down, p['w2'] as tf.Tensor4D, 1, 'same'), p['b2']!)) as tf.Tensor4D;
  const up = tf.image.resizeBilinear(c2, [x.shape[1], x.shape[2]], true);
  const merged = tf.add(tf.conv2d(up, p['w3'] as tf.Tensor4D, 1, 'valid'), skip) as tf.Tensor4D;
  return tf.add(tf.conv2d(merged, p['w4'] as tf.Tensor4D, 1, 'same'), p['b4']!) as tf.Tensor4D;
}

/** MSE + a Gaussian-window (SSIM-style) term through depthwise conv + an avgPool term. */
function loss(pred: tf.Tensor4D, target: tf.Tensor4D): tf.Scalar {
  const g = gaussian11(3);
  const mse = tf.mean(tf.squaredDifference(pred, target));
  const mu = tf.depthwiseConv2d(pred, g, 1, 'valid');
  const muT = tf.depthwiseConv2d(target, g, 1, 'valid');
  const sig = tf.depthwiseConv2d(tf.square(pred), g, 1, 'valid');
  const local = tf.mean(tf.square(tf.sub(mu, muT))).add(tf.mean(tf.abs(tf.sub(sig, tf.square(mu)))));
  const pooled = tf.mean(tf.abs(tf.sub(tf.avgPool(pred, 2, 2, 'valid'), tf.avgPool(target, 2, 2, 'valid'))));
  return tf.addN([mse, local, pooled]) as tf.Scalar;
}

interface StepResult { loss: number; grads: Record<string, Float32Array>; afterAdam: Record<string, Float32Array>; kernels: Set<string> }

async function trainStep(backend: 'cpu' | 'wasm'): Promise<StepResult> {
  await useBackend(backend);
  const names = Object.keys(PARAM_SHAPES);
  const vars: Record<string, tf.Variable> = {};
  names.forEach((n, i) => {
    const shape = PARAM_SHAPES[n]!;
    const init = n === 'gamma' ? new Float32Array(shape[0]!).fill(1) : rand(shape.reduce((a, b) => a * b, 1), 100 + i).map((v) => v * 0.5);
    vars[n] = tf.variable(tf.tensor(init, shape), true, `${backend}_${n}_${Date.now()}_${i}`);
  });
  const x = tf.tensor4d(rand(2 * 24 * 24, 7).map((v) => 0.5 + 0.5 * v), [2, 24, 24, 1]);
  const target = tf.tensor4d(rand(2 * 24 * 24 * 3, 8).map((v) => 0.5 + 0.5 * v), [2, 24, 24, 3]);
  let step: ReturnType<typeof tf.variableGrads> | undefined;
  const profile = await tf.profile(() => {
    step = tf.variableGrads(() => loss(forward(vars, x), target), Object.values(vars));
  });
  const { value, grads } = step!;
  const out: StepResult = { loss: (await value.data())[0]!, grads: {}, afterAdam: {}, kernels: new Set(profile.kernelNames) };
  for (const n of names) out.grads[n] = (await grads[vars[n]!.name]!.data()) as Float32Array;
  const opt = tf.train.adam(1e-2, 0.9, 0.999, 1e-8);
  opt.applyGradients(Object.entries(grads).map(([name, tensor]) => ({ name, tensor })));
  for (const n of names) out.afterAdam[n] = (await vars[n]!.data()) as Float32Array;
  opt.dispose();
  tf.dispose([value, x, target, ...Object.values(grads), ...Object.values(vars)]);
  return out;
}

describe('wasm training step vs cpu (tiny UNet-like graph)', function () {
  this.timeout(60000);

  it('has the same loss, gradients (1e-4 relative) and Adam update', async () => {
    const ref = await trainStep('cpu');
    const got = await trainStep('wasm');
    assert.ok(Math.abs(got.loss - ref.loss) <= 1e-5 * Math.abs(ref.loss), `loss ${got.loss} vs ${ref.loss}`);
    let worst = 0;
    for (const n of Object.keys(PARAM_SHAPES)) {
      assert.ok(diffStats(ref.grads[n]!, new Float32Array(ref.grads[n]!.length)).maxAbs > 0, `gradient of ${n} is not all zero`);
      worst = Math.max(worst, expectArraysCloseRel(got.grads[n]!, ref.grads[n]!, 1e-4, `grad ${n}`).maxRel);
      expectArraysCloseRel(got.afterAdam[n]!, ref.afterAdam[n]!, 1e-4, `Adam-updated ${n}`);
    }
    assert.ok(worst <= 1e-4);
    // The step really went through the kernels this suite checks one by one.
    for (const k of ['Conv2DBackpropFilter', 'Conv2DBackpropInput', 'DepthwiseConv2dNativeBackpropInput', 'ResizeBilinearGrad', 'MaxPoolGrad', 'AvgPoolGrad']) {
      assert.ok(got.kernels.has(k), `wasm step used ${k}`);
    }
    console.log(`      loss ${got.loss} (cpu ${ref.loss}), worst gradient max|diff|/max|ref| ${worst.toExponential(2)}`);
  });
});
