/**
 * Reverse-mode differentiation of a {@link Graph}'s tape: `gradients(g, loss, wrt)` appends the
 * backward pass as ordinary ONNX nodes and returns the name of each gradient. Pure graph
 * construction: the result runs on any onnxruntime provider (or any ONNX runtime) as one
 * inference graph, which is how fairline trains on onnxruntime-node (it has no training API).
 *
 * Each taped op type has a vector-Jacobian rule (`RULES`): given the gradients of its outputs it
 * emits the gradients of the inputs that need one. A new layer or loss costs one rule; each rule
 * is tested on its own against tfjs's gradient (test/onnx-autodiff.test.ts).
 *
 * Conv weight gradients (dW) have several formulations; they are the weak op of CPU training
 * (shared/notes/ort-training.md), so {@link GradOptions.convWeightGrad} picks one:
 * - 'im2col': standard ops only (portable: CUDA, TensorRT, DirectML, WebGPU): the 3x3
 *   neighbourhoods by a depthwise Conv with a constant one-hot kernel, then a batched MatMul
 *   against the transposed output gradient and a sum over the batch;
 * - 'im2col-fused': the same with com.microsoft FusedMatMul (transB), which saves the transpose;
 * - 'taps-fused': per tap, a Slice of the padded input and a FusedMatMul (best at small images).
 * - 'auto': the fastest measured on CPU per level: taps-fused at <= 32 x 32, im2col-fused above.
 *
 * Memory ({@link GradOptions.recompute}): a backward pass normally keeps every activation a rule
 * reads alive from the forward to its use: per BN layer x-hat and the ReLU output, plus each
 * MaxPool, skip sum and upsampling output that a conv's dW reads. With `recompute`, the rules read
 * those activations through `fwd()`, which rebuilds them in the backward from x-hat alone
 * (`relu(beta + gamma xhat)`, then MaxPool / Add / Resize again), so only x-hat stays saved: at
 * c = 32, 256 px, batch 8 that is about half the saved activations. The recomputed values are
 * bit-identical to the forward's (the same float ops, the commutative ones with their operands
 * swapped so that onnxruntime's common-subexpression pass does not merge them back).
 */
import { ModelError } from '../../errors.js';
import { broadcastShapes, staticSize, type Dim, type Graph, type TapeEntry } from './graph.js';
import { concat, convAttrs, reduce, reshape, split, transpose, upsampleMatrix } from './ops.js';

/** How some gradients are formulated (see the module doc). */
export interface GradOptions {
  convWeightGrad?: 'im2col' | 'im2col-fused' | 'taps-fused' | 'auto';
  /** Rebuild activations in the backward instead of keeping them (module doc); default false. */
  recompute?: boolean;
}

interface RuleContext {
  g: Graph;
  e: TapeEntry;
  /** Gradient of each output (undefined: no gradient reached it). */
  dy: (string | undefined)[];
  /** Whether each input needs a gradient. */
  need: boolean[];
  opts: Required<GradOptions>;
  /** A forward activation as the backward may read it: itself, or recomputed (module doc). */
  fwd: (value: string) => string;
}

type Rule = (ctx: RuleContext) => (string | undefined)[];

const sameShape = (a: readonly Dim[], b: readonly Dim[]): boolean => a.length === b.length && a.every((d, i) => d === b[i]);

/** Sum a broadcast gradient back to `shape` (numpy broadcasting, right-aligned). */
export function unbroadcast(g: Graph, d: string, shape: readonly Dim[]): string {
  const ds = g.shape(d);
  if (sameShape(ds, shape)) return d;
  const offset = ds.length - shape.length;
  const axes: number[] = [];
  ds.forEach((dim, i) => {
    const t = i - offset < 0 ? undefined : shape[i - offset];
    if ((t === undefined || t === 1) && dim !== 1) axes.push(i);
  });
  let r = axes.length ? reduce(g, 'ReduceSum', d, axes, true) : d;
  if (offset > 0 || !sameShape(g.shape(r), shape)) r = reshape(g, r, [...shape]);
  return r;
}

/** Half of a static, even spatial size (the 2x2 windows of the MaxPool rule). */
function halfStatic(d: Dim): number {
  if (typeof d !== 'number' || d % 2 !== 0) throw new ModelError('bad_model', `MaxPool gradient: spatial size must be even and static, got ${String(d)}`);
  return d / 2;
}

/** Element count of `x` over `axes` as a float scalar: a constant when static, else computed. */
function countOver(g: Graph, x: string, axes: number[]): string {
  const s = g.shape(x);
  const part = axes.map((a) => s[a]!);
  const n = staticSize(part);
  if (n !== undefined) return g.scalar(n);
  let known = 1;
  let count: string | undefined;
  for (const a of axes) {
    const d = s[a]!;
    if (typeof d === 'number') {
      known *= d;
      continue;
    }
    const dim = g.node('Gather', [g.node('Shape', [x], [[s.length]], {}, { tape: false })[0]!, g.int64([a])], [[1]], { axis: 0 }, { tape: false })[0]!;
    const f = g.node('Cast', [dim], [[1]], { to: 1 }, { tape: false })[0]!;
    count = count ? g.op('Mul', [count, f]) : f;
  }
  return known === 1 ? count! : g.op('Mul', [count!, g.scalar(known)]);
}

/** Broadcast `d` (reduced over `axes`) back to the shape of `x`. */
function expandBack(g: Graph, d: string, x: string, axes: number[], keepdims: boolean): string {
  const xs = g.shape(x);
  let k = d;
  if (!keepdims) {
    const kept: Dim[] = xs.map((dim, i) => (axes.includes(i) ? 1 : dim));
    k = g.node('Unsqueeze', [d, g.int64(axes)], [kept], {}, { tape: false })[0]!;
  }
  const shape = g.node('Shape', [x], [[xs.length]], {}, { tape: false })[0]!;
  return g.node('Expand', [k, shape], [[...xs]], {}, { tape: false })[0]!;
}

/** Conv weight [Co, Ci/group, kh, kw] flipped 180 degrees (and in/out swapped when group = 1). */
function adjointKernel(g: Graph, w: string, group: number): string {
  const [co, ci, kh, kw] = g.shape(w) as number[];
  const kk = kh! * kw!;
  if (kk === 1) return group === 1 ? transpose(g, w, [1, 0, 2, 3]) : w;
  // Reversing the flattened taps reverses both spatial axes.
  const flat = reshape(g, w, [co!, ci!, kk]);
  const rev = g.int64(Array.from({ length: kk }, (_, i) => kk - 1 - i), 'reverse_taps');
  const flipped = reshape(g, g.node('Gather', [flat, rev], [[co!, ci!, kk]], { axis: 2 }, { tape: false })[0]!, [co!, ci!, kh!, kw!]);
  return group === 1 ? transpose(g, flipped, [1, 0, 2, 3]) : flipped;
}

/** One-hot depthwise kernel [9 Ci, 1, 3, 3]: output channel ci*9 + t copies tap t of channel ci. */
function oneHotKernel(g: Graph, ci: number, k: number): string {
  const kk = k * k;
  const data = new Float32Array(ci * kk * kk);
  for (let c = 0; c < ci; c++) for (let t = 0; t < kk; t++) data[(c * kk + t) * kk + t] = 1;
  return g.constant(data, [ci * kk, 1, k, k], `onehot_${ci}x${k}`);
}

function fusedMatMul(g: Graph, a: string, b: string, shape: Dim[], transA: number, transB: number): string {
  return g.node('FusedMatMul', [a, b], [shape], { transA, transB, alpha: 1 }, { domain: 'com.microsoft', tape: false })[0]!;
}

/** dW of a stride-1 'same' conv, group 1 (see the module doc for the formulations). */
function convWeightGrad(g: Graph, x: string, dy: string, w: string, how: Required<GradOptions>['convWeightGrad']): string {
  const [n, ci, h, wd] = g.shape(x) as [Dim, number, number, number];
  const [co, , k] = g.shape(w) as number[];
  const hw = h * wd;
  const kk = k! * k!;
  const pad = (k! - 1) / 2;
  const mode = how === 'auto' ? (h <= 32 ? 'taps-fused' : 'im2col-fused') : how;
  const dyR = reshape(g, dy, [n, co!, hw]);
  if (mode === 'taps-fused') {
    const xp = g.node('Pad', [x, g.int64([0, 0, pad, pad, 0, 0, pad, pad])], [[n, ci, h + 2 * pad, wd + 2 * pad]], { mode: 'constant' }, { tape: false })[0]!;
    const taps: string[] = [];
    for (let ky = 0; ky < k!; ky++) {
      for (let kx = 0; kx < k!; kx++) {
        const s = g.node('Slice', [xp, g.int64([ky, kx]), g.int64([ky + h, kx + wd]), g.int64([2, 3])], [[n, ci, h, wd]], {}, { tape: false })[0]!;
        const prod = fusedMatMul(g, dyR, reshape(g, s, [n, ci, hw]), [n, co!, ci], 0, 1);
        taps.push(reshape(g, reduce(g, 'ReduceSum', prod, [0], false), [co!, ci, 1]));
      }
    }
    return reshape(g, concat(g, taps, 2), [co!, ci, k!, k!]);
  }
  const cols = g.node('Conv', [x, oneHotKernel(g, ci, k!)], [[n, ci * kk, h, wd]], {
    kernel_shape: [k!, k!], pads: [pad, pad, pad, pad], strides: [1, 1], group: ci,
  }, { tape: false })[0]!;
  const colsR = reshape(g, cols, [n, ci * kk, hw]);
  if (mode === 'im2col-fused') {
    const prod = fusedMatMul(g, dyR, colsR, [n, co!, ci * kk], 0, 1);
    return reshape(g, reduce(g, 'ReduceSum', prod, [0], false), [co!, ci, k!, k!]);
  }
  // Standard ops: [N, 9Ci, HW] x [N, HW, Co] (transposing dy is cheaper than the 9x larger cols).
  const prod = g.op('MatMul', [colsR, transpose(g, dyR, [0, 2, 1])]);
  return reshape(g, transpose(g, reduce(g, 'ReduceSum', prod, [0], false), [1, 0]), [co!, ci, k!, k!]);
}

const RULES: Record<string, Rule> = {
  Identity: ({ dy }) => [dy[0]],
  Neg: ({ g, dy }) => [g.op('Neg', [dy[0]!])],
  Add: ({ g, e, dy, need }) => e.inputs.map((x, i) => (need[i] ? unbroadcast(g, dy[0]!, g.shape(x)) : undefined)),
  Sub: ({ g, e, dy, need }) => [
    need[0] ? unbroadcast(g, dy[0]!, g.shape(e.inputs[0]!)) : undefined,
    need[1] ? unbroadcast(g, g.op('Neg', [dy[0]!]), g.shape(e.inputs[1]!)) : undefined,
  ],
  Mul: ({ g, e, dy, need }) => {
    const [a, b] = e.inputs as [string, string];
    return [
      need[0] ? unbroadcast(g, g.op('Mul', [dy[0]!, b]), g.shape(a)) : undefined,
      need[1] ? unbroadcast(g, g.op('Mul', [dy[0]!, a]), g.shape(b)) : undefined,
    ];
  },
  Div: ({ g, e, dy, need }) => {
    const [a, b] = e.inputs as [string, string];
    const q = g.op('Div', [dy[0]!, b]);
    return [
      need[0] ? unbroadcast(g, q, g.shape(a)) : undefined,
      // d(a/b)/db = -(a/b)/b
      need[1] ? unbroadcast(g, g.op('Neg', [g.op('Mul', [q, e.outputs[0]!])]), g.shape(b)) : undefined,
    ];
  },
  Relu: ({ g, e, dy }) => [g.op('Where', [g.op('Greater', [e.outputs[0]!, g.scalar(0)]), dy[0]!, g.scalar(0)])],
  Reshape: ({ g, e, dy }) => [reshape(g, dy[0]!, g.shape(e.inputs[0]!)), undefined],
  Transpose: ({ g, e, dy }) => {
    const perm = e.attrs.perm as number[];
    const inv = perm.map((_, i) => perm.indexOf(i));
    return [transpose(g, dy[0]!, inv)];
  },
  ReduceMean: ({ g, e, dy }) => {
    const axes = e.meta.axes as number[];
    const keep = e.attrs.keepdims === 1;
    const x = e.inputs[0]!;
    return [g.op('Div', [expandBack(g, dy[0]!, x, axes, keep), countOver(g, x, axes)]), undefined];
  },
  ReduceSum: ({ g, e, dy }) => [expandBack(g, dy[0]!, e.inputs[0]!, e.meta.axes as number[], e.attrs.keepdims === 1), undefined],
  Concat: ({ g, e, dy, need }) => {
    const axis = e.attrs.axis as number;
    const parts = split(g, dy[0]!, axis, e.inputs.map((x) => g.shape(x)[axis] as number));
    return parts.map((p, i) => (need[i] ? p : undefined));
  },
  Split: ({ g, e, dy }) => {
    const axis = e.attrs.axis as number;
    const parts = e.outputs.map((o, i) => dy[i] ?? zerosLike(g, o));
    return [concat(g, parts, axis), undefined];
  },
  Conv: ({ g, e, dy, need, opts, fwd }) => {
    const [x, w, b] = e.inputs as [string, string, string | undefined];
    const group = (e.attrs.group as number | undefined) ?? 1;
    const [, ci] = g.shape(x) as number[];
    const [co, cig, kh, kw] = g.shape(w) as number[];
    if (group !== 1 && !(group === ci && cig === 1 && co === ci)) throw new ModelError('bad_model', `Conv gradient: only group 1 or depthwise (group = channels), got group ${group}`);
    const out: (string | undefined)[] = [undefined, undefined, undefined];
    if (need[0]) {
      const wt = adjointKernel(g, w, group);
      out[0] = g.node('Conv', [dy[0]!, wt], [g.shape(x)], convAttrs(g.shape(wt) as number[], group), { tape: false })[0]!;
    }
    if (need[1]) {
      if (group !== 1) throw new ModelError('bad_model', 'Conv gradient: depthwise weights are constants here (no dW rule)');
      if (kh !== kw || kh! % 2 !== 1) throw new ModelError('bad_model', `Conv weight gradient: square odd kernels only, got ${kh}x${kw}`);
      out[1] = convWeightGrad(g, fwd(x), dy[0]!, w, opts.convWeightGrad);
    }
    if (b && need[2]) out[2] = reduce(g, 'ReduceSum', dy[0]!, [0, 2, 3], false);
    return out;
  },
  MaxPool: ({ g, e, dy, fwd }) => {
    // The whole gradient goes to the FIRST input (row-major within its 2x2 window) that equals
    // the window's maximum, as PyTorch's max_pool2d backward routes it. Ties are common here:
    // where a conv sees only ReLU zeros (flat, dark parts of an image) it outputs its bias, and
    // the BN + ReLU of that constant is a positive constant over the region; a mask of every
    // maximum would give such a window 4 times the gradient (measured at 256 px: encoder
    // gradients off by up to 2 % of their largest against a float64 PyTorch step).
    const x = fwd(e.inputs[0]!);
    const [n, c, h, w] = g.shape(x) as Dim[];
    const h2 = halfStatic(h!), w2 = halfStatic(w!);
    const win = reshape(g, transpose(g, reshape(g, x, [n!, c!, h2, 2, w2, 2]), [0, 1, 2, 4, 3, 5]), [n!, c!, h2, w2, 4]);
    const max = reshape(g, fwd(e.outputs[0]!), [n!, c!, h2, w2, 1]);
    const isMax = g.op('Cast', [g.op('Equal', [win, max])], g.shape(win), { to: 1 });
    const maxesSoFar = g.op('CumSum', [isMax, g.int64([4])], g.shape(win));
    const first = g.op('Equal', [g.op('Mul', [isMax, maxesSoFar]), g.scalar(1)]);
    const routed = g.op('Where', [first, reshape(g, dy[0]!, [n!, c!, h2, w2, 1]), g.scalar(0)]);
    return [reshape(g, transpose(g, reshape(g, routed, [n!, c!, h2, w2, 2, 2]), [0, 1, 2, 4, 3, 5]), [n!, c!, h!, w!])];
  },
  Resize: ({ g, e, dy }) => {
    if (e.attrs.mode !== 'linear' || e.attrs.coordinate_transformation_mode !== 'align_corners')
      throw new ModelError('bad_model', 'Resize gradient: only bilinear align_corners x2');
    // Resize is not its own adjoint: the transposed interpolation matrices are.
    const [, , h, w] = g.shape(e.inputs[0]!) as number[];
    const ahT = g.constant(transpose2d(upsampleMatrix(h!), 2 * h!, h!), [h!, 2 * h!], `upT_${h}`);
    const aw = g.constant(upsampleMatrix(w!), [2 * w!, w!], `up_${w}`);
    return [g.op('MatMul', [g.op('MatMul', [ahT, dy[0]!]), aw]), undefined, undefined];
  },
  BatchNormReluTrain: ({ g, e, dy, need, fwd }) => {
    if (dy[1] || dy[2]) throw new ModelError('bad_model', 'BatchNorm batch statistics are not differentiable here');
    const [x, gamma] = e.inputs as [string, string];
    const { xhat, rstd, gamma4 } = e.saved as { xhat: string; rstd: string; gamma4: string };
    const c = g.shape(gamma)[0] as number;
    const gr = g.op('Where', [g.op('Greater', [fwd(e.outputs[0]!), g.scalar(0)]), dy[0]!, g.scalar(0)]);
    const dbeta = reduce(g, 'ReduceSum', gr, [0, 2, 3], true);
    const dgamma = reduce(g, 'ReduceSum', g.op('Mul', [gr, xhat]), [0, 2, 3], true);
    let dx: string | undefined;
    if (need[0]) {
      // The count from gr (x's shape), not x: with a symbolic batch, a Shape node on x would keep
      // that activation alive until the backward reaches this layer (a tensor lives until its
      // last consumer, Shape included).
      const cnt = countOver(g, gr, [0, 2, 3]);
      const centred = g.op('Sub', [gr, g.op('Div', [g.op('Add', [g.op('Mul', [xhat, dgamma]), dbeta]), cnt])]);
      dx = g.op('Mul', [centred, g.op('Mul', [gamma4, rstd])]);
    }
    return [dx, need[1] ? reshape(g, dgamma, [c]) : undefined, need[2] ? reshape(g, dbeta, [c]) : undefined];
  },
};

/**
 * How a forward activation is rebuilt in the backward ({@link GradOptions.recompute}), from the
 * recomputed inputs (`fwd`). Only output 0 of these ops is ever rebuilt.
 */
const RECOMPUTE: Record<string, (g: Graph, e: TapeEntry, fwd: (v: string) => string) => string> = {
  // relu(beta + gamma xhat): the forward's relu(xhat gamma + beta) with the operands swapped.
  BatchNormReluTrain: (g, e) => {
    const { xhat, gamma4, beta4 } = e.saved as { xhat: string; gamma4: string; beta4: string };
    return g.op('Relu', [g.op('Add', [beta4, g.op('Mul', [gamma4, xhat])])]);
  },
  MaxPool: (g, e, fwd) => g.node('MaxPool', [fwd(e.inputs[0]!)], [g.shape(e.outputs[0]!)], e.attrs, { tape: false })[0]!,
  Add: (g, e, fwd) => g.op('Add', [fwd(e.inputs[1]!), fwd(e.inputs[0]!)]),
  Resize: (g, e, fwd) => g.node('Resize', [fwd(e.inputs[0]!), ...e.inputs.slice(1)], [g.shape(e.outputs[0]!)], e.attrs, { tape: false })[0]!,
};

function transpose2d(a: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(a.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = a[r * cols + c]!;
  return t;
}

function zerosLike(g: Graph, x: string): string {
  return g.op('Mul', [x, g.scalar(0)]);
}

/** Op types that have a vector-Jacobian rule. */
export const DIFFERENTIABLE_OPS: readonly string[] = Object.keys(RULES);

/**
 * Append the backward pass of scalar `loss` to `g` and return the gradient of each `wrt` value
 * (a value no path connects to the loss gets no entry).
 *
 * @throws ModelError when a taped op on the path has no rule.
 * @example
 * const grads = gradients(g, loss, ['w', 'b']);
 * g.output(grads.get('w')!, 'dw');
 */
export function gradients(g: Graph, loss: string, wrt: readonly string[], opts: GradOptions = {}): Map<string, string> {
  const full: Required<GradOptions> = { convWeightGrad: opts.convWeightGrad ?? 'auto', recompute: opts.recompute ?? false };
  // Forward reachability: which values depend on a wrt value.
  const depends = new Set<string>(wrt);
  for (const e of g.tape) if (e.inputs.some((i) => depends.has(i))) for (const o of e.outputs) depends.add(o);
  if (!depends.has(loss)) return new Map();
  const grad = new Map<string, string>();
  // Recomputable activations (module doc): value -> the tape entry that made it.
  const producer = new Map<string, TapeEntry>();
  // BN outputs always; MaxPool, Resize and Add only over recomputable inputs (otherwise their
  // inputs would have to stay alive instead, which saves nothing).
  if (full.recompute) {
    for (const e of g.tape) {
      const activations = e.type === 'BatchNormReluTrain' ? [] : e.type === 'Add' ? e.inputs : e.inputs.slice(0, 1);
      if (RECOMPUTE[e.type] && depends.has(e.outputs[0]!) && activations.every((x) => producer.has(x))) producer.set(e.outputs[0]!, e);
    }
  }
  const rebuilt = new Map<string, string>();
  const fwd = (v: string): string => {
    const e = producer.get(v);
    if (!e) return v;
    let r = rebuilt.get(v);
    if (!r) rebuilt.set(v, (r = RECOMPUTE[e.type]!(g, e, fwd)));
    return r;
  };
  return g.untaped(() => {
    grad.set(loss, g.constant([1], g.shape(loss).map(() => 1), 'dloss'));
    for (let i = g.tape.length - 1; i >= 0; i--) {
      const e = g.tape[i]!;
      const dy = e.outputs.map((o) => grad.get(o));
      if (dy.every((d) => d === undefined)) continue;
      const need = e.inputs.map((x) => depends.has(x));
      if (!need.some(Boolean)) continue;
      const rule = RULES[e.type];
      if (!rule) throw new ModelError('bad_model', `no gradient rule for op ${e.type} (output ${e.outputs[0]})`);
      const dx = rule({ g, e, dy, need, opts: full, fwd });
      e.inputs.forEach((x, k) => {
        const d = dx[k];
        if (!need[k] || d === undefined) return;
        if (!sameShape(g.shape(d), g.shape(x)) && !sameShape(broadcastShapes(g.shape(d), g.shape(x)), g.shape(x)))
          throw new ModelError('bad_model', `gradient of ${x} has shape [${g.shape(d).join(',')}], want [${g.shape(x).join(',')}] (rule ${e.type})`);
        const prev = grad.get(x);
        grad.set(x, prev ? g.op('Add', [prev, d]) : d);
      });
    }
    const out = new Map<string, string>();
    for (const w of wrt) {
      const d = grad.get(w);
      if (d) out.set(w, d);
    }
    return out;
  });
}
