/**
 * ONNX export of the FAIR UNet (docs/fair-reference.md section 2), built in TypeScript with the
 * `onnx-proto` protobuf bindings. Pure: takes PyTorch-layout weights, returns the ModelProto
 * bytes; no file I/O (src/io/onnx-engine.ts runs the bytes with onnxruntime-node).
 *
 * Why ONNX: on CPU, onnxruntime runs this network at ~85% of native FP32 peak, about 4x the
 * threaded tfjs-wasm backend (shared/notes/compute.md section 3), so it is the fast inference
 * path when `onnxruntime-node` is installed.
 *
 * Graph (opset 13+, NCHW inside):
 * - every conv: `Conv` 3x3, pads 1, bias; all but `fin_out` followed by `BatchNormalization`
 *   (eps 1e-5, running statistics = eval mode) and `Relu`. With `foldBatchNorm` the BN is folded
 *   into the conv weights instead (W' = W*s, b' = (b-mean)*s + beta, s = gamma/sqrt(var+eps),
 *   computed in float64); onnxruntime fuses Conv+BN itself at load time, so folding mainly makes
 *   the file smaller and helps runtimes that do not fuse.
 * - `MaxPool` 2x2 stride 2 between encoder blocks.
 * - decoder upsampling: `Resize` mode 'linear', coordinate_transformation_mode 'align_corners',
 *   scales [1,1,2,2] (= PyTorch `Upsample(scale_factor=2, mode='bilinear', align_corners=True)`).
 * - additive skips: `Add(up_k, b_{5-k})`.
 * - batch, height and width are symbolic (`N`, `H`, `W`); H and W must be multiples of 16.
 */
import { ConfigError, ModelError } from '../errors.js';
import { unetLayout } from './layout.js';
import { Graph, tensorProto } from './onnx/graph.js';
import { emitUNet } from './onnx/unet.js';
import type { UNetSpec } from './types.js';

/** A tensor in PyTorch layout (conv weights OIHW), row-major float32. */
export interface TorchTensor {
  shape: number[];
  data: Float32Array;
}

/** A PyTorch-style state_dict: names as in the official checkpoint (`encoder.block1.0.weight`, ...). */
export type TorchTensors = Record<string, TorchTensor>;

/** Options of {@link exportUNetOnnx}. */
export interface OnnxExportOptions {
  /** Fold eval-mode BatchNorm into the preceding conv (default false: explicit BN nodes). */
  foldBatchNorm?: boolean;
  /** ONNX opset, 13..21 (default 13). */
  opset?: number;
  /**
   * Tensor layout of the graph's input and output (default 'nchw', as PyTorch). 'nhwc' adds a
   * Transpose at each end so fairline's NHWC buffers can be fed and read without a JS transpose.
   */
  layout?: 'nchw' | 'nhwc';
  /** BatchNorm epsilon (PyTorch default 1e-5). */
  epsilon?: number;
}

/** Input and output names of the exported graph. */
export const ONNX_INPUT_NAME = 'input';
export const ONNX_OUTPUT_NAME = 'output';
/** Spatial dims must be divisible by this (4 max-pool levels). */
export const UNET_SPATIAL_MULTIPLE = 16;

/**
 * Names and PyTorch shapes of every tensor the exporter reads for `spec` (the eval-mode
 * state_dict without `num_batches_tracked`).
 *
 * @example
 * const shapes = unetTorchShapes({ baseWidth: 4, inChannels: 1, outChannels: 3 });
 * shapes['encoder.block1.0.weight']; // [4, 1, 3, 3]
 */
export function unetTorchShapes(spec: UNetSpec): Record<string, number[]> {
  checkSpec(spec);
  const out: Record<string, number[]> = {};
  for (const l of unetLayout(spec)) {
    out[`${l.conv}.weight`] = [l.cout, l.cin, 3, 3];
    out[`${l.conv}.bias`] = [l.cout];
    if (l.bn) for (const p of ['weight', 'bias', 'running_mean', 'running_var']) out[`${l.bn}.${p}`] = [l.cout];
  }
  return out;
}

function checkSpec(spec: UNetSpec): void {
  for (const k of ['baseWidth', 'inChannels', 'outChannels'] as const) {
    const v = spec[k];
    if (!Number.isInteger(v) || v < 1) throw new ModelError('bad_model', `UNet spec ${k} must be a positive integer, got ${v}`);
  }
}

/** Look a tensor up and check its shape against the network's. */
function take(tensors: TorchTensors, name: string, shape: number[]): Float32Array {
  const t = tensors[name];
  if (!t) throw new ModelError('bad_weights', `ONNX export: tensor '${name}' missing from the weights`);
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i]))
    throw new ModelError('bad_weights', `ONNX export: '${name}' has shape [${t.shape}], the spec needs [${shape}]`);
  if (t.data.length !== shape.reduce((a, b) => a * b, 1))
    throw new ModelError('bad_weights', `ONNX export: '${name}' has ${t.data.length} values for shape [${shape}]`);
  return t.data;
}

/**
 * Build the ONNX model of a FAIR UNet from PyTorch-layout weights.
 *
 * @param tensors state_dict-style tensors (conv weights OIHW); extra entries such as
 *   `num_batches_tracked` are ignored. See {@link unetTorchShapes} for what is needed.
 * @param spec base width, input and output channels.
 * @returns the serialised `ModelProto` (producer 'fairline'); input `input` [N,Cin,H,W]
 *   (or [N,H,W,Cin] with layout 'nhwc'), output `output` [N,3,H,W] (or NHWC).
 * @throws ModelError (`bad_weights`) when a tensor is missing or mis-shaped;
 *   ModelError (`bad_model`) for an invalid spec; ConfigError for a bad opset or layout.
 *
 * @example
 * const bytes = exportUNetOnnx(tensors, { baseWidth: 32, inChannels: 1, outChannels: 3 }, { foldBatchNorm: true });
 * writeFileSync('fair.onnx', bytes);
 */
export function exportUNetOnnx(tensors: TorchTensors, spec: UNetSpec, opts: OnnxExportOptions = {}): Uint8Array {
  checkSpec(spec);
  const opset = opts.opset ?? 13;
  // Resize's optional roi input and BN without training outputs need opset 13.
  if (!Number.isInteger(opset) || opset < 13 || opset > 21) throw new ConfigError(`ONNX opset must be 13..21, got ${opset}`);
  const fold = opts.foldBatchNorm ?? false;
  const layout = opts.layout ?? 'nchw';
  if (layout !== 'nchw' && layout !== 'nhwc') throw new ConfigError(`ONNX layout must be 'nchw' or 'nhwc', got ${String(layout)}`);
  const eps = opts.epsilon ?? 1e-5;

  const g = new Graph({ opset });
  const param = addUNetWeights(g, tensors, spec, fold, eps);
  const nhwc = layout === 'nhwc';
  const input = g.input(ONNX_INPUT_NAME, nhwc ? ['N', 'H', 'W', spec.inChannels] : ['N', spec.inChannels, 'H', 'W']);
  const x = nhwc ? g.op('Transpose', [input], ['N', spec.inChannels, 'H', 'W'], { perm: [0, 3, 1, 2] }) : input;
  const { y } = emitUNet(g, x, spec, param, fold ? 'folded' : 'eval', eps);
  g.output(nhwc ? g.op('Transpose', [y], ['N', 'H', 'W', spec.outChannels], { perm: [0, 2, 3, 1] }) : y, ONNX_OUTPUT_NAME);
  return g.toModel({
    name: 'fair_unet',
    doc: 'FAIR UNet (frequency-aware image restoration), eval mode',
    props: { 'fairline.unet': JSON.stringify(spec), 'fairline.layout': layout, 'fairline.foldBatchNorm': String(fold) },
  });
}

/**
 * Add a UNet's weights to `g` as initializers named by their state_dict names (BatchNorm folded
 * into the convs when `fold`), and return the `param` lookup {@link emitUNet} takes. Shared by
 * the UNet-only export and the whole-detector export (src/model/onnx/detector.ts).
 *
 * @throws ModelError (`bad_weights`) when a tensor is missing or mis-shaped.
 * @example
 * const { y } = emitUNet(g, x, spec, addUNetWeights(g, tensors, spec, true), 'folded');
 */
export function addUNetWeights(g: Graph, tensors: TorchTensors, spec: UNetSpec, fold: boolean, eps = 1e-5): (name: string) => string {
  checkSpec(spec);
  const shapes = unetTorchShapes(spec);
  const value = new Map<string, string>();
  for (const l of unetLayout(spec)) {
    let w = take(tensors, `${l.conv}.weight`, shapes[`${l.conv}.weight`]!);
    let b = take(tensors, `${l.conv}.bias`, shapes[`${l.conv}.bias`]!);
    const bn = l.bn ? ['weight', 'bias', 'running_mean', 'running_var'].map((p) => take(tensors, `${l.bn}.${p}`, [l.cout])) : undefined;
    if (bn && fold) [w, b] = foldBn(w, b, bn, eps);
    else if (bn) ['weight', 'bias', 'running_mean', 'running_var'].forEach((p, i) => value.set(`${l.bn}.${p}`, named(g, `${l.bn}.${p}`, bn[i]!, [l.cout])));
    value.set(`${l.conv}.weight`, named(g, `${l.conv}.weight`, w, shapes[`${l.conv}.weight`]!));
    value.set(`${l.conv}.bias`, named(g, `${l.conv}.bias`, b, [l.cout]));
  }
  return (name: string): string => {
    const v = value.get(name);
    if (v) return v;
    throw new ModelError('bad_weights', `ONNX export: tensor '${name}' missing from the weights`);
  };
}

/** A float32 initializer under a fixed name (the state_dict name). */
function named(g: Graph, name: string, data: Float32Array, dims: number[]): string {
  g.initializers.push(tensorProto(name, dims, data));
  g.shapes.set(name, [...dims]);
  return name;
}

/** Fold eval-mode BN (gamma, beta, mean, var) into conv weights OIHW and bias, in float64. */
function foldBn(w: Float32Array, b: Float32Array, bn: Float32Array[], eps: number): [Float32Array, Float32Array] {
  const [gamma, beta, mean, variance] = bn as [Float32Array, Float32Array, Float32Array, Float32Array];
  const cout = b.length;
  const per = w.length / cout;
  const w2 = new Float32Array(w.length);
  const b2 = new Float32Array(cout);
  for (let o = 0; o < cout; o++) {
    const s = gamma[o]! / Math.sqrt(variance[o]! + eps);
    b2[o] = (b[o]! - mean[o]!) * s + beta[o]!;
    for (let i = o * per; i < (o + 1) * per; i++) w2[i] = w[i]! * s;
  }
  return [w2, b2];
}
