/**
 * DRAEM's SSIM constants as FAIR uses them (reference section 5), pure: the 11x11 Gaussian
 * window (sigma 1.5) and the dynamic range L read from the prediction. Shared by the tfjs loss
 * (src/model/tfjs/loss.ts) and the ONNX training step (src/model/onnx/train-step.ts).
 */

/** Window side and sigma of DRAEM's SSIM. */
export const SSIM_WINDOW = 11;
export const SSIM_SIGMA = 1.5;

/**
 * Normalised 1-D Gaussian of `size` taps (DRAEM's `gaussian()`); the 2-D window is its outer
 * product.
 *
 * @example
 * gaussian1d(11, 1.5).reduce((a, b) => a + b) // 1 (up to rounding)
 */
export function gaussian1d(size = SSIM_WINDOW, sigma = SSIM_SIGMA): Float64Array {
  const g = new Float64Array(size);
  const c = Math.floor(size / 2);
  let sum = 0;
  for (let i = 0; i < size; i++) {
    g[i] = Math.exp(-((i - c) ** 2) / (2 * sigma * sigma));
    sum += g[i]!;
  }
  for (let i = 0; i < size; i++) g[i]! /= sum;
  return g;
}

/**
 * DRAEM's dynamic range L from the prediction's extremes (a host-side decision in PyTorch too:
 * `torch.max(img1) > 128` is a Python bool).
 *
 * @example
 * ssimRange(0.9, -0.6) // 2
 */
export function ssimRange(maxPred: number, minPred: number): number {
  const maxVal = maxPred > 128 ? 255 : 1;
  const minVal = minPred < -0.5 ? -1 : 0;
  return maxVal - minVal;
}

