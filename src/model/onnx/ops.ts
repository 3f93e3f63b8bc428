/**
 * The ops fairline's ONNX graphs are made of, as typed helpers over {@link Graph} (NCHW
 * tensors). Each helper emits the forward node(s) with their shapes; the differentiable ones
 * are taped and have a vector-Jacobian rule in src/model/onnx/autodiff.ts.
 */
import { ModelError } from '../../errors.js';
import type { Dim, Graph } from './graph.js';

/** kh x kw convolution (odd sizes), stride 1, 'same' zero padding; `group` = channels for depthwise. */
export function conv(g: Graph, x: string, w: string, b?: string, group = 1): string {
  return g.op('Conv', b ? [x, w, b] : [x, w], undefined, convAttrs(g.shape(w) as number[], group));
}

/** Conv attributes for a weight of shape [Co, Ci/group, kh, kw] with 'same' padding. */
export function convAttrs(wShape: readonly number[], group: number): { kernel_shape: number[]; pads: number[]; strides: number[]; group: number } {
  const [, , kh, kw] = wShape as [number, number, number, number];
  const ph = (kh - 1) / 2, pw = (kw - 1) / 2;
  return { kernel_shape: [kh, kw], pads: [ph, pw, ph, pw], strides: [1, 1], group };
}

/** Reduce over `axes` (ReduceMean / ReduceSum / ReduceMax / ReduceMin, axes as an input: opset 18). */
export function reduce(g: Graph, type: 'ReduceMean' | 'ReduceSum' | 'ReduceMax' | 'ReduceMin', x: string, axes: number[], keepdims: boolean): string {
  const s = g.shape(x);
  const norm = axes.map((a) => (a < 0 ? a + s.length : a));
  const shape: Dim[] = [];
  s.forEach((d, i) => {
    if (!norm.includes(i)) shape.push(d);
    else if (keepdims) shape.push(1);
  });
  return g.op(type, [x, g.int64(norm)], shape, { keepdims: keepdims ? 1 : 0 }, { axes: norm });
}

/** Mean of every element, as the mean of row means (one long float32 sum loses accuracy). */
export function meanAll(g: Graph, x: string): string {
  const rank = g.shape(x).length;
  const rows = reduce(g, 'ReduceMean', x, [rank - 1], true);
  return reduce(g, 'ReduceMean', rows, Array.from({ length: rank }, (_, i) => i), false);
}

/** Reshape to a shape with at most one symbolic dim, passed as 0 (copy) at the same position. */
export function reshape(g: Graph, x: string, shape: Dim[]): string {
  const src = g.shape(x);
  const spec = shape.map((d, i) => {
    if (typeof d === 'number') return d;
    if (src[i] !== d) throw new ModelError('bad_model', `reshape: symbolic dim ${d} must stay at position ${i}`);
    return 0;
  });
  return g.op('Reshape', [x, g.int64(spec)], shape);
}

export function transpose(g: Graph, x: string, perm: number[]): string {
  return g.op('Transpose', [x], undefined, { perm });
}

export function concat(g: Graph, xs: string[], axis: number): string {
  const shapes = xs.map((x) => g.shape(x));
  const out = [...shapes[0]!];
  out[axis] = shapes.reduce((a, s) => {
    if (typeof a !== 'number' || typeof s[axis] !== 'number') throw new ModelError('bad_model', 'concat along a symbolic axis');
    return a + (s[axis] as number);
  }, 0 as Dim);
  return g.op('Concat', xs, out, { axis });
}

/** Split `x` along `axis` into pieces of the given sizes. */
export function split(g: Graph, x: string, axis: number, sizes: number[]): string[] {
  const s = g.shape(x);
  const shapes = sizes.map((n) => s.map((d, i) => (i === axis ? n : d)));
  return g.node('Split', [x, g.int64(sizes)], shapes, { axis });
}

/** A dimension halved / doubled; symbolic ones as `H/2`, `H*2` (so doubling `H/2` gives `H` back). */
export function halfDim(d: Dim): Dim {
  if (typeof d === 'number') return d / 2;
  return d.endsWith('*2') ? d.slice(0, -2) : `${d}/2`;
}
export function doubleDim(d: Dim): Dim {
  if (typeof d === 'number') return d * 2;
  return d.endsWith('/2') ? d.slice(0, -2) : `${d}*2`;
}

/** 2x2 max-pool, stride 2. */
export function maxPool2(g: Graph, x: string): string {
  const [n, c, h, w] = g.shape(x);
  return g.op('MaxPool', [x], [n!, c!, halfDim(h!), halfDim(w!)], { kernel_shape: [2, 2], strides: [2, 2] });
}

/** Bilinear x2 upsampling with align_corners (PyTorch `Upsample(scale_factor=2, 'bilinear', True)`). */
export function upsample2(g: Graph, x: string): string {
  const [n, c, h, w] = g.shape(x);
  const scales = g.constant([1, 1, 2, 2], [4], 'upsample_scales');
  return g.op('Resize', [x, '', scales], [n!, c!, doubleDim(h!), doubleDim(w!)], {
    mode: 'linear',
    coordinate_transformation_mode: 'align_corners',
  });
}

/** A value the differentiator treats as a constant (PyTorch's `.detach()`; an Identity node). */
export function stopGradient(g: Graph, x: string): string {
  return g.node('Identity', [x], [g.shape(x)], {}, { tape: false, hint: `${x}_detached` })[0]!;
}

/**
 * Row-interpolation matrix of bilinear align_corners upsampling from `n` to `2n`:
 * `up(x) = A x` along one axis, A is [2n, n] (float64 weights rounded to float32).
 */
export function upsampleMatrix(n: number): Float32Array {
  const m = 2 * n;
  const a = new Float32Array(m * n);
  for (let i = 0; i < m; i++) {
    const src = m === 1 || n === 1 ? 0 : (i * (n - 1)) / (m - 1);
    const i0 = Math.min(n - 1, Math.floor(src));
    const f = src - i0;
    a[i * n + i0] += 1 - f;
    if (f > 0) a[i * n + i0 + 1] += f;
  }
  return a;
}

/** Outputs of {@link bnReluTrain}. */
export interface BnTrainOutputs {
  y: string;
  /** Per-channel batch mean [C]. */
  mean: string;
  /** Per-channel biased batch variance [C]. */
  variance: string;
}

/**
 * Training-mode BatchNorm (batch statistics, eps) followed by ReLU, as one composite op with
 * the closed-form backward (rule 'BatchNormReluTrain'): two-pass statistics as PyTorch, the
 * biased variance normalises; the batch mean and variance are outputs for the running stats.
 */
export function bnReluTrain(g: Graph, x: string, gamma: string, beta: string, eps: number): BnTrainOutputs {
  const [, c] = g.shape(x);
  const C = c as number;
  const outs = g.composite('BatchNormReluTrain', [x, gamma, beta], { epsilon: eps }, () => {
    const mean4 = reduce(g, 'ReduceMean', x, [0, 2, 3], true);
    const xc = g.op('Sub', [x, mean4]);
    const var4 = reduce(g, 'ReduceMean', g.op('Mul', [xc, xc]), [0, 2, 3], true);
    const rstd = g.op('Reciprocal', [g.op('Sqrt', [g.op('Add', [var4, g.scalar(eps)])])]);
    const xhat = g.op('Mul', [xc, rstd]);
    const gamma4 = reshape(g, gamma, [1, C, 1, 1]);
    const beta4 = reshape(g, beta, [1, C, 1, 1]);
    const y = g.op('Relu', [g.op('Add', [g.op('Mul', [xhat, gamma4]), beta4])]);
    const mean = reshape(g, mean4, [C]);
    const variance = reshape(g, var4, [C]);
    return { outputs: [y, mean, variance], saved: { xhat, rstd, gamma4, beta4 } };
  });
  return { y: outs[0]!, mean: outs[1]!, variance: outs[2]! };
}
