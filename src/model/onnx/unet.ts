/**
 * The FAIR UNet (reference section 2) emitted into an ONNX {@link Graph}, NCHW, from the one
 * layer definition in src/model/layout.ts. Used by the inference export (eval mode, weights as
 * initializers) and by the training step (train mode, weights as graph inputs).
 *
 * - conv 3x3 pads 1 + bias; BatchNorm (eps 1e-5) + ReLU after every conv but `fin_out`;
 * - 2x2 max-pool before encoder blocks 2..5;
 * - decoder: bilinear align_corners x2 upsampling, conv + BN + ReLU, additive skip, two more
 *   conv + BN + ReLU; final conv to the output channels.
 */
import type { UNetSpec } from '../types.js';
import { unetLayout, type ConvDef } from '../layout.js';
import type { Graph } from './graph.js';
import { bnReluTrain, conv, maxPool2, upsample2 } from './ops.js';

/** BatchNorm epsilon of `nn.BatchNorm2d`. */
export const BN_EPSILON = 1e-5;

/** How a conv's BatchNorm is emitted. */
export type BnMode =
  /** Running statistics, ONNX BatchNormalization (eval mode). */
  | 'eval'
  /** Already folded into the conv weights: no BN node. */
  | 'folded'
  /** Batch statistics (training mode), composite op with its own gradient rule. */
  | 'train';

/** Per-BN-layer batch statistics of a training-mode forward (value names, [C] each). */
export type BatchStatValues = Map<string, { mean: string; variance: string }>;

/**
 * Emit the UNet on `x` ([N, Cin, H, W]); `param(name)` gives the graph value of a state_dict
 * tensor in PyTorch layout (an initializer or a graph input).
 *
 * @returns the restoration [N, Cout, H, W] and, in 'train' mode, the batch statistics.
 * @example
 * const { y } = emitUNet(g, 'input', spec, (n) => weightValue.get(n)!, 'eval');
 */
export function emitUNet(g: Graph, x: string, spec: UNetSpec, param: (name: string) => string, bn: BnMode, eps = BN_EPSILON): { y: string; stats: BatchStatValues } {
  const stats: BatchStatValues = new Map();
  const layer = (h: string, d: ConvDef): string => {
    const y = conv(g, h, param(`${d.conv}.weight`), param(`${d.conv}.bias`));
    if (!d.bn) return y;
    if (bn === 'train') {
      const out = bnReluTrain(g, y, param(`${d.bn}.weight`), param(`${d.bn}.bias`), eps);
      stats.set(d.bn, { mean: out.mean, variance: out.variance });
      return out.y;
    }
    if (bn === 'folded') return g.op('Relu', [y]);
    const names = ['weight', 'bias', 'running_mean', 'running_var'].map((p) => param(`${d.bn}.${p}`));
    return g.op('Relu', [g.op('BatchNormalization', [y, ...names], g.shape(y), { epsilon: eps })]);
  };
  const defs = new Map(unetLayout(spec).map((d) => [d.conv, d]));
  const at = (name: string): ConvDef => defs.get(name)!;

  let h = x;
  const skips: string[] = [];
  for (let b = 1; b <= 5; b++) {
    if (b > 1) h = maxPool2(g, h);
    h = layer(layer(h, at(`encoder.block${b}.0`)), at(`encoder.block${b}.3`));
    skips.push(h);
  }
  for (let k = 1; k <= 4; k++) {
    h = layer(upsample2(g, h), at(`decoder.up${k}.1`));
    h = g.op('Add', [h, skips[4 - k]!]);
    h = layer(layer(h, at(`decoder.db${k}.0`)), at(`decoder.db${k}.3`));
  }
  return { y: layer(h, at('decoder.fin_out.0')), stats };
}
