/**
 * One FAIR training step as ONE ONNX inference graph (reference section 5; tfjs twin:
 * src/model/tfjs/trainer.ts): the UNet forward in training mode, `MSE + (1 - SSIM)` with DRAEM's SSIM
 * (11x11 Gaussian window, sigma 1.5, dynamic range L from the prediction, treated as a constant),
 * the backward pass derived by src/model/onnx/autodiff.ts, PyTorch's Adam update and the
 * BatchNorm running statistics (momentum 0.1, unbiased batch variance).
 *
 * Graph inputs:  `x` [N, S, S, Cin] and `target` [N, S, S, Cout] (fairline's NHWC buffers),
 *                `step_size` = lr / (1 - beta1^t) and `bc2_sqrt` = sqrt(1 - beta2^t) (scalars),
 *                and for every state tensor `<name>` (PyTorch layout): the parameter or running
 *                statistic, and `m:<name>` / `v:<name>` (Adam moments) of every trainable one.
 * Graph outputs: `loss`, `mse`, `ssim_loss` (scalars) and `next:<input name>` for every state
 *                input, so the outputs of one step are the inputs of the next.
 * N is symbolic (the last batch of an epoch is smaller); S is fixed per graph.
 */
import { ConfigError } from '../../errors.js';
import { gaussian1d } from '../ssim-window.js';
import { paramDefs } from '../layout.js';
import type { UNetSpec } from '../types.js';
import { gradients, type GradOptions } from './autodiff.js';
import { Graph, type Dim } from './graph.js';
import { concat, conv, meanAll, reduce, reshape, split, stopGradient, transpose } from './ops.js';
import { emitUNet } from './unet.js';

/** Adam and BatchNorm constants (PyTorch defaults, as FAIR). */
export interface StepHyper {
  beta1: number;
  beta2: number;
  eps: number;
  bnMomentum: number;
}

export const DEFAULT_HYPER: StepHyper = { beta1: 0.9, beta2: 0.999, eps: 1e-8, bnMomentum: 0.1 };

/** A state tensor of the step: its input name, output name and PyTorch shape. */
export interface StateSlot {
  /** state_dict name (`encoder.block1.0.weight`), or `m:`/`v:` + name for Adam moments. */
  name: string;
  shape: number[];
  next: string;
}

/** What {@link buildTrainStep} returns. */
export interface TrainStepGraph {
  bytes: Uint8Array;
  /** Every state input in a fixed order: parameters and buffers (state_dict order), then m, v. */
  state: StateSlot[];
  /** Trainable parameter names (state_dict order). */
  trainable: string[];
  nodeCount: number;
}

/** Options of {@link buildTrainStep}. */
export interface TrainStepOptions extends GradOptions {
  size: number;
  hyper?: Partial<StepHyper>;
  /** Emit the per-sample loss pieces too (tests): adds outputs `pred` [N, Cout, S, S]. */
  exposePrediction?: boolean;
  /** Also output every gradient as `grad:<name>` (tests compare them with tfjs). */
  exposeGradients?: boolean;
  /** Separable 11-tap SSIM window (see {@link emitSsim}); default false (the 2-D window). */
  separableSsim?: boolean;
}

const torchShape = (shape: number[]): number[] => (shape.length === 4 ? [shape[3]!, shape[2]!, shape[0]!, shape[1]!] : shape);

/**
 * DRAEM's SSIM of `pred` against `target` (NCHW, same shape) with constants c1, c2 (values).
 *
 * The five windowed maps are two depthwise convs: one over the maps that depend on the
 * prediction (mu1, E[p^2], E[pt]: the only ones the gradient flows through) and one over the
 * target's (mu2, E[t^2]). `separable` filters with the 11-tap Gaussian along H, then W
 * (22 taps instead of 121: the 11x11 depthwise conv is a quarter of a c = 8 step on CPU); the
 * sums differ from the 2-D window's by float32 rounding only.
 */
export function emitSsim(g: Graph, pred: string, target: string, c1: string, c2: string, separable = false): string {
  const [, ch] = g.shape(pred) as [Dim, number];
  const taps = gaussian1d();
  const k = taps.length;
  const window = (channels: number): string[] => {
    if (separable) {
      const col = new Float32Array(channels * k), row = new Float32Array(channels * k);
      for (let c = 0; c < channels; c++) for (let i = 0; i < k; i++) col[c * k + i] = row[c * k + i] = taps[i]!;
      return [g.constant(col, [channels, 1, k, 1], 'ssim_window_h'), g.constant(row, [channels, 1, 1, k], 'ssim_window_w')];
    }
    const win = new Float32Array(channels * k * k);
    for (let c = 0; c < channels; c++) for (let y = 0; y < k; y++) for (let x = 0; x < k; x++) win[(c * k + y) * k + x] = taps[y]! * taps[x]!;
    return [g.constant(win, [channels, 1, k, k], 'ssim_window')];
  };
  const filter = (x: string): string => {
    const c = g.shape(x)[1] as number;
    return window(c).reduce((h, w) => conv(g, h, w, undefined, c), x);
  };
  const fp = filter(concat(g, [pred, g.op('Mul', [pred, pred]), g.op('Mul', [pred, target])], 1));
  const ft = filter(concat(g, [target, g.op('Mul', [target, target])], 1));
  const [mu1, e11, e12] = split(g, fp, 1, [ch, ch, ch]) as [string, string, string];
  const [mu2, e22] = split(g, ft, 1, [ch, ch]) as [string, string];
  const mu1Sq = g.op('Mul', [mu1, mu1]);
  const mu2Sq = g.op('Mul', [mu2, mu2]);
  const mu12 = g.op('Mul', [mu1, mu2]);
  const s1 = g.op('Sub', [e11, mu1Sq]);
  const s2 = g.op('Sub', [e22, mu2Sq]);
  const s12 = g.op('Sub', [e12, mu12]);
  const two = g.scalar(2);
  const v1 = g.op('Add', [g.op('Mul', [s12, two]), c2]);
  const v2 = g.op('Add', [g.op('Add', [s1, s2]), c2]);
  const num = g.op('Mul', [g.op('Add', [g.op('Mul', [mu12, two]), c1]), v1]);
  const den = g.op('Mul', [g.op('Add', [g.op('Add', [mu1Sq, mu2Sq]), c1]), v2]);
  return meanAll(g, g.op('Div', [num, den]));
}

/** C1, C2 of DRAEM's SSIM from the prediction's range (a constant for the gradient). */
export function emitSsimConstants(g: Graph, pred: string): { c1: string; c2: string } {
  const p = stopGradient(g, pred);
  const rank = g.shape(p).length;
  const all = Array.from({ length: rank }, (_, i) => i);
  const mx = reduce(g, 'ReduceMax', p, all, false);
  const mn = reduce(g, 'ReduceMin', p, all, false);
  const maxVal = g.op('Where', [g.op('Greater', [mx, g.scalar(128)]), g.scalar(255), g.scalar(1)]);
  const minVal = g.op('Where', [g.op('Less', [mn, g.scalar(-0.5)]), g.scalar(-1), g.scalar(0)]);
  const L = g.op('Sub', [maxVal, minVal]);
  const L2 = g.op('Mul', [L, L]);
  return { c1: g.op('Mul', [L2, g.scalar(0.0001)]), c2: g.op('Mul', [L2, g.scalar(0.0009)]) };
}

/**
 * Build the training-step graph for a UNet of `spec` at `size` px.
 *
 * @example
 * const step = buildTrainStep({ baseWidth: 8, inChannels: 1, outChannels: 3 }, { size: 256 });
 * const session = await ort.InferenceSession.create(step.bytes);
 */
export function buildTrainStep(spec: UNetSpec, opts: TrainStepOptions): TrainStepGraph {
  const S = opts.size;
  if (!Number.isInteger(S) || S < 16 || S % 16 !== 0) throw new ConfigError(`training size must be a multiple of 16, got ${S}`);
  const hyper = { ...DEFAULT_HYPER, ...opts.hyper };
  const g = new Graph({ opset: 18 });
  const xIn = g.input('x', ['N', S, S, spec.inChannels]);
  const tIn = g.input('target', ['N', S, S, spec.outChannels]);
  const stepSize = g.input('step_size', []);
  const bc2Sqrt = g.input('bc2_sqrt', []);

  const defs = paramDefs(spec);
  const value = new Map<string, string>();
  for (const d of defs) value.set(d.name, g.input(d.name, torchShape(d.shape)));
  const trainable = defs.filter((d) => d.trainable).map((d) => d.name);

  const x = spec.inChannels === 1 ? reshape(g, xIn, ['N', 1, S, S]) : transpose(g, xIn, [0, 3, 1, 2]);
  const target = transpose(g, tIn, [0, 3, 1, 2]);
  const { y: pred, stats } = emitUNet(g, x, spec, (n) => value.get(n)!, 'train');

  const d = g.op('Sub', [pred, target]);
  const mse = meanAll(g, g.op('Mul', [d, d]));
  const { c1, c2 } = emitSsimConstants(g, pred);
  const ssimLoss = g.op('Sub', [g.scalar(1), emitSsim(g, pred, target, c1, c2, opts.separableSsim ?? false)]);
  const loss = g.op('Add', [mse, ssimLoss]);

  const grads = gradients(g, loss, trainable, opts);
  const state: StateSlot[] = [];
  g.untaped(() => {
    const nBatch = batchSize(g, xIn);
    g.output(loss, 'loss');
    g.output(mse, 'mse');
    g.output(ssimLoss, 'ssim_loss');
    if (opts.exposePrediction) g.output(pred, 'pred');
    const moments: StateSlot[] = [];
    for (const def of defs) {
      const shape = torchShape(def.shape);
      const p = value.get(def.name)!;
      if (def.trainable) {
        const grad = grads.get(def.name);
        if (!grad) throw new ConfigError(`training graph: no gradient reaches ${def.name}`);
        if (opts.exposeGradients) g.output(g.op('Identity', [grad]), `grad:${def.name}`);
        const m = g.input(`m:${def.name}`, shape);
        const v = g.input(`v:${def.name}`, shape);
        // PyTorch's single-tensor Adam, in the float order of src/model/tfjs/trainer.ts.
        const m1 = g.op('Add', [g.op('Mul', [m, g.scalar(hyper.beta1)]), g.op('Mul', [grad, g.scalar(1 - hyper.beta1)])]);
        const v1 = g.op('Add', [g.op('Mul', [v, g.scalar(hyper.beta2)]), g.op('Mul', [g.op('Mul', [grad, grad]), g.scalar(1 - hyper.beta2)])]);
        const denom = g.op('Add', [g.op('Div', [g.op('Sqrt', [v1]), bc2Sqrt]), g.scalar(hyper.eps)]);
        const p1 = g.op('Sub', [p, g.op('Mul', [g.op('Div', [m1, denom]), stepSize])]);
        state.push({ name: def.name, shape, next: g.output(p1, `next:${def.name}`) });
        moments.push({ name: `m:${def.name}`, shape, next: g.output(m1, `next:m:${def.name}`) });
        moments.push({ name: `v:${def.name}`, shape, next: g.output(v1, `next:v:${def.name}`) });
      } else {
        // BatchNorm running statistics: (1 - momentum) * running + momentum * batch (unbiased variance).
        const bn = def.name.replace(/\.running_(mean|var)$/, '');
        const st = stats.get(bn)!;
        const isVar = def.name.endsWith('running_var');
        let batch = isVar ? st.variance : st.mean;
        if (isVar) {
          const cnt = bnCount(g, nBatch, S, bn);
          batch = g.op('Mul', [batch, g.op('Div', [cnt, g.op('Sub', [cnt, g.scalar(1)])])]);
        }
        const r1 = g.op('Add', [g.op('Mul', [p, g.scalar(1 - hyper.bnMomentum)]), g.op('Mul', [batch, g.scalar(hyper.bnMomentum)])]);
        state.push({ name: def.name, shape, next: g.output(r1, `next:${def.name}`) });
      }
    }
    state.push(...moments);
  });
  return { bytes: g.toModel({ name: 'fair_train_step', doc: 'FAIR training step: forward (train mode), MSE + (1 - SSIM), backward, Adam, BN running stats', props: { 'fairline.unet': JSON.stringify(spec), 'fairline.size': String(S) } }), state, trainable, nodeCount: g.nodes.length };
}

/** N * H * W of a BN layer's input (its level's size from the layer name), as a float value. */
function bnCount(g: Graph, batch: string, S: number, bn: string): string {
  const side = S / 2 ** bnLevel(bn);
  return g.op('Mul', [batch, g.scalar(side * side)]);
}

/** The batch size N of `x` as a float32 [1] value. */
function batchSize(g: Graph, x: string): string {
  const shape = g.node('Shape', [x], [[g.shape(x).length]], {}, { tape: false })[0]!;
  const n = g.node('Gather', [shape, g.int64([0])], [[1]], { axis: 0 }, { tape: false })[0]!;
  return g.node('Cast', [n], [[1]], { to: 1 }, { tape: false })[0]!;
}

/** Pooling level (0..4) at which a BN layer works, from its state_dict name. */
export function bnLevel(bn: string): number {
  const enc = /^encoder\.block(\d)\./.exec(bn);
  if (enc) return Number(enc[1]) - 1;
  const dec = /^decoder\.(up|db)(\d)\./.exec(bn);
  if (dec) return 4 - Number(dec[2]);
  throw new ConfigError(`not a BatchNorm layer of the UNet: ${bn}`);
}
