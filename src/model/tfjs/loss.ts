/**
 * FAIR's training loss (`train.py:62-64`, `loss.py:88-174`, DRAEM's SSIM; reference section 5):
 * `loss = MSE(pred, target) + (1 - SSIM(pred, target))`, NHWC tensors.
 *
 * SSIM details that matter for matching the official numbers:
 * - 11x11 Gaussian window, sigma 1.5, normalised, applied per channel (depthwise) with zero
 *   padding 5 (TF 'same');
 * - `sigma^2 = E[x^2] - mu^2` (not the two-pass variance);
 * - C1 = (0.01 L)^2, C2 = (0.03 L)^2 with the dynamic range L read from the PREDICTION of the
 *   whole batch: `max_val = 255 if max(pred) > 128 else 1`, `min_val = -1 if min(pred) < -0.5
 *   else 0`, `L = max_val - min_val` (so L = 2 as soon as one output pixel dips below -0.5);
 * - the SSIM map is averaged over everything (batch, channels, pixels).
 */
import * as tf from '@tensorflow/tfjs';
import { BadInputError } from '../../errors.js';

export { SSIM_WINDOW, SSIM_SIGMA, gaussian1d, ssimRange } from '../ssim-window.js';
import { SSIM_WINDOW, gaussian1d, ssimRange } from '../ssim-window.js';

/** The three scalars of the FAIR loss; the caller owns (and disposes) them. */
export interface FairLoss {
  loss: tf.Scalar;
  mse: tf.Scalar;
  ssimLoss: tf.Scalar;
}

function checkPair(pred: tf.Tensor, target: tf.Tensor): void {
  if (pred.rank !== 4 || target.rank !== 4 || pred.shape.some((d, i) => d !== target.shape[i])) {
    throw new BadInputError('bad_shape', `loss needs two NHWC tensors of equal shape, got [${pred.shape.join(',')}] and [${target.shape.join(',')}]`);
  }
}

/**
 * Mean SSIM of `pred` against `target` (NHWC), DRAEM's formula. `range` overrides L (else it
 * is read from `pred`, which costs one small synchronous read-back). Differentiable in both
 * inputs; L is a constant for the gradient, as in PyTorch.
 *
 * @example
 * const s = ssim(restored, original); // tf.Scalar, 1 for identical images
 */
export function ssim(pred: tf.Tensor4D, target: tf.Tensor4D, range?: number): tf.Scalar {
  checkPair(pred, target);
  const L = range ?? predRange(pred);
  const c1 = (0.01 * L) ** 2;
  const c2 = (0.03 * L) ** 2;
  return tf.tidy(() => {
    const ch = pred.shape[3];
    const g = gaussian1d();
    const win = new Float32Array(SSIM_WINDOW * SSIM_WINDOW);
    for (let y = 0; y < SSIM_WINDOW; y++) for (let x = 0; x < SSIM_WINDOW; x++) win[y * SSIM_WINDOW + x] = g[y]! * g[x]!;
    // One depthwise pass over the five stacked maps instead of five convolutions.
    const stacked = tf.concat([pred, target, tf.mul(pred, pred), tf.mul(target, target), tf.mul(pred, target)], 3);
    const k = 5 * ch;
    const filter = tf.tile(tf.tensor4d(win, [SSIM_WINDOW, SSIM_WINDOW, 1, 1]), [1, 1, k, 1]);
    const f = tf.depthwiseConv2d(stacked as tf.Tensor4D, filter as tf.Tensor4D, 1, 'same');
    const [mu1, mu2, e11, e22, e12] = tf.split(f, 5, 3);
    const mu1Sq = tf.mul(mu1!, mu1!);
    const mu2Sq = tf.mul(mu2!, mu2!);
    const mu12 = tf.mul(mu1!, mu2!);
    const s1 = tf.sub(e11!, mu1Sq);
    const s2 = tf.sub(e22!, mu2Sq);
    const s12 = tf.sub(e12!, mu12);
    const v1 = tf.add(tf.mul(s12, 2), c2);
    const v2 = tf.add(tf.add(s1, s2), c2);
    const num = tf.mul(tf.add(tf.mul(mu12, 2), c1), v1);
    const den = tf.mul(tf.add(tf.add(mu1Sq, mu2Sq), c1), v2);
    return meanAll(tf.div(num, den) as tf.Tensor4D);
  });
}

/**
 * Mean of every element of an NHWC tensor as the mean of row means. Why: the wasm backend's
 * Mean/Sum kernels accumulate in float32 one element after another, which loses ~1e-3
 * (relative) over a 256x256x3 map; row sums of W*C elements keep it near float32 rounding.
 * All rows have the same length, so this is the plain mean (and its gradient) mathematically.
 */
export function meanAll(t: tf.Tensor4D): tf.Scalar {
  const [n, h, w, c] = t.shape;
  return tf.tidy(() => tf.mean(tf.mean(tf.reshape(t, [n * h, w * c]), 1)) as tf.Scalar);
}

function predRange(pred: tf.Tensor): number {
  const mm = tf.tidy(() => tf.stack([tf.max(pred), tf.min(pred)]));
  const [mx, mn] = mm.dataSync();
  mm.dispose();
  return ssimRange(mx!, mn!);
}

/**
 * The FAIR training loss `MSE + (1 - SSIM)` of a restoration `pred` against the clean
 * `target` (both NHWC, same shape). Returns tf scalars owned by the caller.
 *
 * @throws BadInputError when the shapes differ or are not rank 4.
 * @example
 * const { loss, mse, ssimLoss } = fairLoss(unet.predict(x), target);
 */
export function fairLoss(pred: tf.Tensor4D, target: tf.Tensor4D): FairLoss {
  checkPair(pred, target);
  const L = predRange(pred);
  return tf.tidy(() => {
    const mse = meanAll(tf.squaredDifference(pred, target) as tf.Tensor4D);
    const ssimLoss = tf.sub(1, ssim(pred, target, L)) as tf.Scalar;
    const loss = tf.add(mse, ssimLoss) as tf.Scalar;
    return { loss, mse, ssimLoss };
  });
}
