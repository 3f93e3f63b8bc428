/** FLOP counts of the FAIR UNet, for GFLOP/s figures next to images/s. */
import { unetLayout } from '../../src/model/tfjs/unet.js';
import type { UNetSpec } from '../../src/model/types.js';

/** Side of the feature map a conv runs at, as a divisor of the input size. */
function scaleOf(conv: string): number {
  const enc = /^encoder\.block(\d)\./.exec(conv);
  if (enc) return 2 ** (Number(enc[1]) - 1);
  const dec = /^decoder\.(?:up|db)(\d)\./.exec(conv);
  if (dec) return 2 ** (4 - Number(dec[1]));
  return 1; // fin_out
}

/**
 * Forward FLOPs of one image (3x3 convolutions, 2 per multiply-add; BN, ReLU, pooling and
 * upsampling are <1% and left out, as in shared/notes/compute.md). A training step is counted
 * as 3x forward.
 *
 * @example
 * unetForwardFlops({ baseWidth: 32, inChannels: 1, outChannels: 3 }, 256) / 1e9 // ~19.9
 */
export function unetForwardFlops(spec: UNetSpec, size: number): number {
  let macs = 0;
  for (const d of unetLayout(spec)) {
    const side = size / scaleOf(d.conv);
    macs += 9 * d.cin * d.cout * side * side;
  }
  return 2 * macs;
}
