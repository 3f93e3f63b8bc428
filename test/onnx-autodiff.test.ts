/**
 * Every vector-Jacobian rule of src/model/onnx/autodiff.ts against tfjs's gradient of the same
 * function, on small shapes: a graph `loss = sum(op(inputs) * R)` (R random) is differentiated
 * by fairline's differentiator, run on onnxruntime, and compared with `tf.grads` on the cpu
 * backend. Also a dot-product (adjoint) test of the upsampling rule.
 */
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { loadOrt, type OrtModule } from '../src/io/onnx-engine.js';
import { useBackend } from '../src/model/tfjs/backend.js';
import { DIFFERENTIABLE_OPS, gradients, type GradOptions } from '../src/model/onnx/autodiff.js';
import { Graph, type Dim } from '../src/model/onnx/graph.js';
import { bnReluTrain, concat, conv, maxPool2, reduce, reshape, split, transpose, upsample2 } from '../src/model/onnx/ops.js';
import { createRng } from '../src/model/synthesis/rng.js';
import { diffStats } from './helpers.js';

type Build = (g: Graph, xs: string[]) => string;
type TfFn = (xs: tf.Tensor[]) => tf.Tensor;

const rng = createRng('autodiff-test');
const randn = (n: number, scale = 1): Float32Array => Float32Array.from({ length: n }, () => scale * (rng.uniform() * 2 - 1));
const size = (s: number[]): number => s.reduce((a, b) => a * b, 1);

/** NCHW <-> NHWC for tfjs ops that only take NHWC. */
const toNhwc = (t: tf.Tensor): tf.Tensor4D => tf.transpose(t, [0, 2, 3, 1]) as tf.Tensor4D;
const toNchw = (t: tf.Tensor): tf.Tensor4D => tf.transpose(t, [0, 3, 1, 2]) as tf.Tensor4D;

let ort: OrtModule;

/**
 * Gradients of `sum(op(xs) * R)` by fairline's differentiator on onnxruntime and by tfjs; returns
 * the worst |diff| / max|g| over the inputs.
 */
async function compare(shapes: number[][], build: Build, tfFn: TfFn, opts: GradOptions & { values?: Float32Array[] } = {}): Promise<number> {
  const g = new Graph();
  const names = shapes.map((s, i) => g.input(`x${i}`, s as Dim[]));
  const out = build(g, names);
  const outShape = g.shape(out) as number[];
  const r = randn(size(outShape));
  const loss = reduce(g, 'ReduceSum', g.op('Mul', [out, g.constant(r, outShape, 'R')]), outShape.map((_, i) => i), false);
  const grads = gradients(g, loss, names, opts);
  g.untaped(() => names.forEach((n) => g.output(g.op('Identity', [grads.get(n)!]), `d_${n}`)));
  const values = opts.values ?? shapes.map((s) => randn(size(s)));
  const session = await ort.InferenceSession.create(g.toModel({ name: 'rule' }), { executionProviders: ['cpu'], intraOpNumThreads: 1 });
  const feeds = Object.fromEntries(names.map((n, i) => [n, new ort.Tensor('float32', values[i]!, shapes[i]!)]));
  const res = await session.run(feeds);
  await session.release();
  const expected = tf.tidy(() => {
    const rt = tf.tensor(r, outShape);
    const f = (...xs: tf.Tensor[]): tf.Scalar => tf.sum(tf.mul(tfFn(xs), rt));
    return tf.grads(f)(values.map((v, i) => tf.tensor(v, shapes[i]!))).map((t) => t.dataSync() as Float32Array);
  });
  let worst = 0;
  names.forEach((n, i) => {
    const got = res[`d_${n}`]!.data as Float32Array;
    const st = diffStats(got, expected[i]!);
    const scale = Math.max(...Array.from(expected[i]!, Math.abs), 1e-12);
    worst = Math.max(worst, st.maxAbs / scale);
  });
  return worst;
}

const TOL = 1e-5;

describe('ONNX autodiff: vector-Jacobian rules against tfjs', function () {
  this.timeout(60000);
  const covered = new Set<string>();
  const check = async (op: string, shapes: number[][], build: Build, tfFn: TfFn, opts?: GradOptions & { values?: Float32Array[] }): Promise<void> => {
    covered.add(op);
    const worst = await compare(shapes, build, tfFn, opts);
    assert.ok(worst < TOL, `${op}: worst gradient error ${worst.toExponential(2)} of the largest (limit ${TOL})`);
  };

  before(async () => {
    await useBackend('cpu');
    const m = await loadOrt();
    assert.ok(m, 'onnxruntime-node must load (it is installed by npm ci)');
    ort = m;
  });

  const S4 = [2, 3, 4, 5];
  it('elementwise: Add, Sub, Mul, Div with and without broadcasting; Neg, Relu, Identity', async () => {
    await check('Add', [S4, [1, 3, 1, 1]], (g, [a, b]) => g.op('Add', [a!, b!]), ([a, b]) => tf.add(a!, b!));
    await check('Sub', [S4, [5]], (g, [a, b]) => g.op('Sub', [a!, b!]), ([a, b]) => tf.sub(a!, b!));
    await check('Mul', [S4, S4], (g, [a, b]) => g.op('Mul', [a!, b!]), ([a, b]) => tf.mul(a!, b!));
    await check('Mul', [S4, [2, 1, 4, 1]], (g, [a, b]) => g.op('Mul', [a!, b!]), ([a, b]) => tf.mul(a!, b!));
    const pos = [randn(size(S4)), Float32Array.from(randn(size(S4)), (v) => 1.5 + v)];
    await check('Div', [S4, S4], (g, [a, b]) => g.op('Div', [a!, b!]), ([a, b]) => tf.div(a!, b!), { values: pos });
    await check('Neg', [S4], (g, [a]) => g.op('Neg', [a!]), ([a]) => tf.neg(a!));
    await check('Relu', [S4], (g, [a]) => g.op('Relu', [a!]), ([a]) => tf.relu(a!));
    await check('Identity', [S4], (g, [a]) => g.op('Identity', [a!]), ([a]) => a!);
  });

  it('reductions: ReduceMean and ReduceSum over some or all axes, keepdims or not; a symbolic batch', async () => {
    await check('ReduceMean', [S4], (g, [a]) => reduce(g, 'ReduceMean', a!, [0, 2, 3], true), ([a]) => tf.mean(a!, [0, 2, 3], true));
    await check('ReduceMean', [S4], (g, [a]) => reduce(g, 'ReduceMean', a!, [1], false), ([a]) => tf.mean(a!, [1]));
    await check('ReduceSum', [S4], (g, [a]) => reduce(g, 'ReduceSum', a!, [0, 3], false), ([a]) => tf.sum(a!, [0, 3]));
    // A dynamic N: the count of a mean over N is computed at run time.
    const g = new Graph();
    const x = g.input('x', ['N', 3]);
    const loss = reduce(g, 'ReduceMean', x, [0, 1], false);
    const d = gradients(g, loss, [x]).get(x)!;
    g.untaped(() => g.output(g.op('Identity', [d]), 'dx'));
    const s = await ort.InferenceSession.create(g.toModel({ name: 'dyn' }));
    const out = await s.run({ x: new ort.Tensor('float32', new Float32Array(12), [4, 3]) });
    assert.deepEqual(Array.from(out.dx!.data as Float32Array), new Array(12).fill(Math.fround(1 / 12)));
  });

  it('shape ops: Reshape, Transpose, Concat, Split', async () => {
    await check('Reshape', [S4], (g, [a]) => reshape(g, a!, [6, 20]), ([a]) => tf.reshape(a!, [6, 20]));
    await check('Transpose', [S4], (g, [a]) => transpose(g, a!, [0, 2, 3, 1]), ([a]) => tf.transpose(a!, [0, 2, 3, 1]));
    await check('Concat', [S4, [2, 2, 4, 5]], (g, [a, b]) => concat(g, [a!, b!], 1), ([a, b]) => tf.concat([a!, b!], 1));
    // Only the second piece reaches the loss: the first gets zeros.
    await check('Split', [[2, 5, 4, 5]], (g, [a]) => split(g, a!, 1, [2, 3])[1]!, ([a]) => tf.split(a!, [2, 3], 1)[1]!);
  });

  for (const how of ['im2col', 'im2col-fused', 'taps-fused'] as const) {
    it(`Conv 3x3 'same' with bias: dX, dW (${how}), dB`, async () => {
      await check('Conv', [[2, 3, 8, 8], [4, 3, 3, 3], [4]], (g, [x, w, b]) => conv(g, x!, w!, b!), ([x, w, b]) =>
        toNchw(tf.add(tf.conv2d(toNhwc(x!), tf.transpose(w!, [2, 3, 1, 0]) as tf.Tensor4D, 1, 'same'), b!)), { convWeightGrad: how });
    });
  }

  it('depthwise Conv (SSIM window) : dX', async () => {
    const win = randn(3 * 25, 0.3);
    await check('Conv', [[2, 3, 7, 7]], (g, [x]) => conv(g, x!, g.constant(win, [3, 1, 5, 5], 'win'), undefined, 3), ([x]) =>
      toNchw(tf.depthwiseConv2d(toNhwc(x!), tf.transpose(tf.tensor(win, [3, 1, 5, 5]), [2, 3, 0, 1]) as tf.Tensor4D, 1, 'same')));
  });

  it('MaxPool 2x2 (inputs without ties)', async () => {
    await check('MaxPool', [[2, 3, 8, 8]], (g, [x]) => maxPool2(g, x!), ([x]) => toNchw(tf.maxPool(toNhwc(x!), 2, 2, 'valid')));
  });

  it('MaxPool 2x2 with ties: the whole gradient to the first maximum of each window, as PyTorch and tfjs', async () => {
    // A ReLU output over a flat image region: whole windows of one positive value (a conv that
    // sees only zeros outputs its bias), and windows with two or three equal maxima.
    const shape = [2, 3, 8, 8];
    const values = Float32Array.from({ length: size(shape) }, (_, i) => {
      const [yy, xx] = [Math.floor(i / 8) % 8, i % 8];
      if (yy < 4 && xx < 4) return 0.75; // constant 4x4 patch: 4 windows of 4 ties each
      if (yy >= 4 && xx < 4) return [0, 0.5][(yy + xx) % 2]!; // 2 ties per window
      return Math.max(0, rng.uniform() * 2 - 1);
    });
    await check('MaxPool', [shape], (g, [x]) => maxPool2(g, x!), ([x]) => toNchw(tf.maxPool(toNhwc(x!), 2, 2, 'valid')), { values: [values] });
  });

  for (const n of [2, 4, 8, 16]) {
    it(`Resize: bilinear align_corners x2 from ${n} x ${n}`, async () => {
      await check('Resize', [[2, 3, n, n]], (g, [x]) => upsample2(g, x!), ([x]) => toNchw(tf.image.resizeBilinear(toNhwc(x!), [2 * n, 2 * n], true)));
    });
  }

  it('BatchNormReluTrain: dX, dGamma, dBeta of training-mode BN + ReLU', async () => {
    const eps = 1e-5;
    await check('BatchNormReluTrain', [[3, 4, 5, 5], [4], [4]], (g, [x, gm, bt]) => bnReluTrain(g, x!, gm!, bt!, eps).y, ([x, gm, bt]) => {
      const { mean, variance } = tf.moments(x!, [0, 2, 3], true);
      const xhat = tf.div(tf.sub(x!, mean), tf.sqrt(tf.add(variance, eps)));
      return tf.relu(tf.add(tf.mul(xhat, tf.reshape(gm!, [1, 4, 1, 1])), tf.reshape(bt!, [1, 4, 1, 1])));
    });
  });

  it('recompute: the backward reads no BN-ReLU, MaxPool, skip-sum or upsampling output of the forward, and gives the same gradients', async () => {
    // One UNet level: conv-BN-ReLU (skip), MaxPool, conv-BN-ReLU, upsampling, skip sum, conv.
    const [n, c, s] = [2, 3, 8];
    const shapes = [[n, 1, s, s], [c, 1, 3, 3], [c], [c], [c], [c, c, 3, 3], [c], [c], [c], [3, c, 3, 3], [3]];
    const build = (g: Graph, v: string[]): string => {
      const [x, w1, b1, g1, t1, w2, b2, g2, t2, w3, b3] = v as string[];
      const skip = bnReluTrain(g, conv(g, x!, w1!, b1!), g1!, t1!, 1e-5).y;
      const low = bnReluTrain(g, conv(g, maxPool2(g, skip), w2!, b2!), g2!, t2!, 1e-5).y;
      return conv(g, g.op('Add', [upsample2(g, low), skip]), w3!, b3!);
    };
    const values = shapes.map((sh) => randn(size(sh)));
    const weightsR = randn(n * 3 * s * s);
    const run = async (recompute: boolean): Promise<{ grads: Float32Array[]; backwardReadsForward: string[] }> => {
      const g = new Graph();
      const names = shapes.map((sh, i) => g.input(`x${i}`, sh as Dim[]));
      const out = build(g, names);
      const outShape = g.shape(out) as number[];
      const loss = reduce(g, 'ReduceSum', g.op('Mul', [out, g.constant(weightsR, outShape, 'R')]), [0, 1, 2, 3], false);
      const activations = new Set(g.tape.filter((e) => ['BatchNormReluTrain', 'MaxPool', 'Add', 'Resize'].includes(e.type)).map((e) => e.outputs[0]!));
      const forwardNodes = g.nodes.length;
      const grads = gradients(g, loss, names, { recompute });
      const backwardReadsForward = [...new Set(g.nodes.slice(forwardNodes).flatMap((nd) => (nd.input ?? []).filter((i) => activations.has(i))))];
      g.untaped(() => names.forEach((nm) => g.output(g.op('Identity', [grads.get(nm)!]), `d_${nm}`)));
      const session = await ort.InferenceSession.create(g.toModel({ name: 'recompute' }), { executionProviders: ['cpu'], intraOpNumThreads: 1 });
      const res = await session.run(Object.fromEntries(names.map((nm, i) => [nm, new ort.Tensor('float32', values[i]!, shapes[i]!)])));
      await session.release();
      return { grads: names.map((nm) => res[`d_${nm}`]!.data as Float32Array), backwardReadsForward };
    };
    const kept = await run(false), rebuilt = await run(true);
    assert.ok(kept.backwardReadsForward.length >= 4, `without recompute the backward reads the activations (${kept.backwardReadsForward.join(', ')})`);
    assert.deepEqual(rebuilt.backwardReadsForward, [], 'with recompute the backward reads only x-hat');
    rebuilt.grads.forEach((d, i) => assert.deepEqual(d, kept.grads[i], `gradient of input ${i} is not bit-identical`));
  });

  it('covers every op type that has a rule', () => {
    assert.deepEqual([...covered].sort(), [...DIFFERENTIABLE_OPS].sort());
  });
});
