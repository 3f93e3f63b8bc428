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
import onnxPkg from 'onnx-proto';
import type { onnx as OnnxTypes } from 'onnx-proto';
import { ConfigError, ModelError } from '../errors.js';
import type { UNetSpec } from './types.js';

const { onnx } = onnxPkg;

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

/** One conv of the network, with its optional BatchNorm (PyTorch module names). */
interface ConvSpec {
  conv: string;
  bn?: string;
  cin: number;
  cout: number;
}

/** Conv (+BN) layers of one encoder block / decoder block: `.0`,`.1`, `.3`,`.4`. */
function pairBlock(prefix: string, cin: number, cmid: number, cout: number): ConvSpec[] {
  return [
    { conv: `${prefix}.0`, bn: `${prefix}.1`, cin, cout: cmid },
    { conv: `${prefix}.3`, bn: `${prefix}.4`, cin: cmid, cout },
  ];
}

/** Every conv of the FAIR UNet in forward order, grouped by stage. */
function unetLayers(spec: UNetSpec): { enc: ConvSpec[][]; up: ConvSpec[]; db: ConvSpec[][]; fin: ConvSpec } {
  const c = spec.baseWidth;
  const w = [c, 2 * c, 4 * c, 8 * c, 8 * c];
  const enc = w.map((cout, i) => pairBlock(`encoder.block${i + 1}`, i === 0 ? spec.inChannels : w[i - 1]!, cout, cout));
  // Decoder level k works at width w[4-k] and ends at the next skip's width.
  const dec = [8 * c, 4 * c, 2 * c, c];
  const decOut = [4 * c, 2 * c, c, c];
  const up = dec.map((ch, k) => ({ conv: `decoder.up${k + 1}.1`, bn: `decoder.up${k + 1}.2`, cin: ch, cout: ch }));
  const db = dec.map((ch, k) => pairBlock(`decoder.db${k + 1}`, ch, ch, decOut[k]!));
  const fin = { conv: 'decoder.fin_out.0', cin: c, cout: spec.outChannels };
  return { enc, up, db, fin };
}

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
  const { enc, up, db, fin } = unetLayers(spec);
  const out: Record<string, number[]> = {};
  for (const l of [...enc.flat(), ...up.flatMap((u, k) => [u, ...db[k]!]), fin]) {
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

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** float32 initialiser stored as little-endian raw_data (zero-copy view on LE hosts). */
function initializer(name: string, dims: number[], data: Float32Array): OnnxTypes.ITensorProto {
  let raw: Uint8Array;
  if (LITTLE_ENDIAN) raw = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  else {
    raw = new Uint8Array(data.length * 4);
    const dv = new DataView(raw.buffer);
    for (let i = 0; i < data.length; i++) dv.setFloat32(i * 4, data[i]!, true);
  }
  return { name, dims, dataType: onnx.TensorProto.DataType.FLOAT, rawData: raw };
}

const A = onnx.AttributeProto.AttributeType;
const ints = (name: string, v: number[]): OnnxTypes.IAttributeProto => ({ name, type: A.INTS, ints: v });
const float = (name: string, v: number): OnnxTypes.IAttributeProto => ({ name, type: A.FLOAT, f: v });
const str = (name: string, v: string): OnnxTypes.IAttributeProto => ({ name, type: A.STRING, s: new TextEncoder().encode(v) });

/** IR version that goes with an opset (onnx releases 1.8..1.16). */
function irVersionFor(opset: number): number {
  return opset <= 18 ? 8 : opset <= 20 ? 9 : 10;
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

  const nodes: OnnxTypes.INodeProto[] = [];
  const inits: OnnxTypes.ITensorProto[] = [];
  const node = (opType: string, inputs: string[], output: string, attribute: OnnxTypes.IAttributeProto[] = []): string => {
    nodes.push({ opType, input: inputs, output: [output], name: output, attribute });
    return output;
  };

  const conv = (x: string, l: ConvSpec): string => {
    let w = take(tensors, `${l.conv}.weight`, [l.cout, l.cin, 3, 3]);
    let b = take(tensors, `${l.conv}.bias`, [l.cout]);
    let bn: Float32Array[] | undefined;
    if (l.bn) bn = ['weight', 'bias', 'running_mean', 'running_var'].map((p) => take(tensors, `${l.bn}.${p}`, [l.cout]));
    if (bn && fold) [w, b] = foldBn(w, b, bn, eps);
    inits.push(initializer(`${l.conv}.weight`, [l.cout, l.cin, 3, 3], w), initializer(`${l.conv}.bias`, [l.cout], b));
    let y = node('Conv', [x, `${l.conv}.weight`, `${l.conv}.bias`], l.conv, [ints('kernel_shape', [3, 3]), ints('pads', [1, 1, 1, 1]), ints('strides', [1, 1])]);
    if (!l.bn) return y;
    if (!fold) {
      const names = ['weight', 'bias', 'running_mean', 'running_var'].map((p) => `${l.bn}.${p}`);
      names.forEach((n, i) => inits.push(initializer(n, [l.cout], bn![i]!)));
      y = node('BatchNormalization', [y, ...names], l.bn, [float('epsilon', eps)]);
    }
    return node('Relu', [y], `${l.bn}.relu`);
  };

  const { enc, up, db, fin } = unetLayers(spec);
  let x = ONNX_INPUT_NAME;
  if (layout === 'nhwc') x = node('Transpose', [x], 'input_nchw', [ints('perm', [0, 3, 1, 2])]);

  // Encoder: block outputs are the skips, pooled before the next block.
  const skips: string[] = [];
  enc.forEach((block, i) => {
    if (i > 0) x = node('MaxPool', [x], `encoder.mp${i}`, [ints('kernel_shape', [2, 2]), ints('strides', [2, 2])]);
    for (const l of block) x = conv(x, l);
    skips.push(x);
  });

  inits.push(initializer('upsample_scales', [4], new Float32Array([1, 1, 2, 2])));
  up.forEach((u, k) => {
    const name = `decoder.up${k + 1}.0`;
    x = node('Resize', [x, '', 'upsample_scales'], name, [str('mode', 'linear'), str('coordinate_transformation_mode', 'align_corners')]);
    x = conv(x, u);
    x = node('Add', [x, skips[3 - k]!], `decoder.db${k + 1}.skip`);
    for (const l of db[k]!) x = conv(x, l);
  });
  x = conv(x, fin);
  if (layout === 'nhwc') node('Transpose', [x], ONNX_OUTPUT_NAME, [ints('perm', [0, 2, 3, 1])]);
  else nodes.push({ opType: 'Identity', input: [x], output: [ONNX_OUTPUT_NAME], name: ONNX_OUTPUT_NAME });

  const dim = (d: number | string): OnnxTypes.TensorShapeProto.IDimension => (typeof d === 'number' ? { dimValue: d } : { dimParam: d });
  const valueInfo = (name: string, ch: number): OnnxTypes.IValueInfoProto => ({
    name,
    type: {
      tensorType: {
        elemType: onnx.TensorProto.DataType.FLOAT,
        shape: { dim: (layout === 'nhwc' ? ['N', 'H', 'W', ch] : ['N', ch, 'H', 'W']).map(dim) },
      },
    },
  });

  const model: OnnxTypes.IModelProto = {
    irVersion: irVersionFor(opset),
    opsetImport: [{ domain: '', version: opset }],
    producerName: 'fairline',
    producerVersion: '0.1.0',
    docString: 'FAIR UNet (frequency-aware image restoration), eval mode',
    metadataProps: [
      { key: 'fairline.unet', value: JSON.stringify(spec) },
      { key: 'fairline.layout', value: layout },
      { key: 'fairline.foldBatchNorm', value: String(fold) },
    ],
    graph: {
      name: 'fair_unet',
      node: nodes,
      initializer: inits,
      input: [valueInfo(ONNX_INPUT_NAME, spec.inChannels)],
      output: [valueInfo(ONNX_OUTPUT_NAME, spec.outChannels)],
    },
  };
  return onnx.ModelProto.encode(model).finish();
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
