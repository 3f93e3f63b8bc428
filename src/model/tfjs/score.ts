/**
 * FAIR anomaly scoring on tensors, the tfjs engine's (docs/fair-reference.md §6, §12). The
 * constants and the settings check shared by every engine are in src/model/score.ts.
 *
 *   map   = mean21x21_zero_padded( MSGMS(restored, original) + w * ((Δa)² + (Δb)²) )
 *   score = max(map)
 *
 * All tensors are NHWC, float32, channel order BGR (fairline convention). The restored image
 * is the raw network output: it is **not** clamped, exactly as in the official `test.py`.
 *
 * Performance notes (this runs once per frame):
 * - restored and original are concatenated along the batch axis so every gradient / Lab op runs
 *   once on a 2N batch instead of twice on N.
 * - the Prewitt x and y kernels are one depthwise conv with channel multiplier 2.
 * - sRGB->XYZ, the white-point division and Lab's a/b differences are 3x3 / 3x2 matMuls.
 * - the 21x21 zero-padded mean is two separable 1-D convolutions (21+21 instead of 441 MACs
 *   per pixel); with zero padding the separable box filter is exactly the 2-D one up to float
 *   rounding (~1e-8 here).
 * - constant kernels are built once per (backend, channel count / kernel size) and cached.
 */
import * as tf from '@tensorflow/tfjs';
import { BadInputError, ConfigError } from '../../errors.js';
import { checkSpec, D65_WHITE, RGB_TO_XYZ } from '../score.js';
import type { ColourMode, ScoringSpec } from '../types.js';
import { DEFAULT_SCORING } from '../types.js';

// ---------------------------------------------------------------------------------------------
// Constant kernels, cached per backend (a tensor belongs to the backend it was created on).

const kernelCache = new Map<string, tf.Tensor>();

function cached<T extends tf.Tensor>(key: string, make: () => T): T {
  const full = `${tf.getBackend()}:${key}`;
  let t = kernelCache.get(full) as T | undefined;
  if (t === undefined || t.isDisposed) {
    // tf.keep: the kernel must outlive whatever tidy scope happens to build it first.
    t = tf.keep(tf.tidy(make));
    kernelCache.set(full, t);
  }
  return t;
}

/** Dispose the cached constant kernels (tests, backend switches). Safe to call any time. */
export function disposeScoreKernels(): void {
  for (const t of kernelCache.values()) if (!t.isDisposed) t.dispose();
  kernelCache.clear();
}

/**
 * Depthwise filter [3, 3, C, 2]: multiplier 0 = Prewitt x / 3, multiplier 1 = Prewitt y / 3.
 * TF filters are indexed [kh][kw] and tf.conv is cross-correlation like torch's F.conv2d, so the
 * official kernels ([[1,0,-1]]*3 and [[1,1,1],[0,0,0],[-1,-1,-1]]) are copied verbatim.
 */
function prewittKernel(channels: number): tf.Tensor4D {
  return cached(`prewitt:${channels}`, () => {
    const kx = [[1, 0, -1], [1, 0, -1], [1, 0, -1]];
    const ky = [[1, 1, 1], [0, 0, 0], [-1, -1, -1]];
    const data = new Float32Array(3 * 3 * channels * 2);
    for (let i = 0; i < 3; i++)
      for (let j = 0; j < 3; j++)
        for (let c = 0; c < channels; c++) {
          const base = ((i * 3 + j) * channels + c) * 2;
          data[base] = kx[i]![j]! / 3;
          data[base + 1] = ky[i]![j]! / 3;
        }
    return tf.tensor4d(data, [3, 3, channels, 2]);
  });
}

/** Separable 1-D box kernels of value 1/k: [k,1,1,1] (vertical) and [1,k,1,1] (horizontal). */
function boxKernels(k: number): [tf.Tensor4D, tf.Tensor4D] {
  const v = cached(`boxv:${k}`, () => tf.fill([k, 1, 1, 1], 1 / k) as tf.Tensor4D);
  const h = cached(`boxh:${k}`, () => tf.fill([1, k, 1, 1], 1 / k) as tf.Tensor4D);
  return [v, h];
}

/**
 * [3, 3] matrix M with xyz_normalised = pixel(channels in tensor order) @ M.
 * 'bgr-as-rgb' maps tensor channel k to r,g,b index k (the official code's behaviour: the BGR
 * tensor is read as RGB); 'rgb' maps tensor channel k (B,G,R) to rgb index 2-k. Folding the channel
 * order into the matrix avoids a reverse op on the image.
 */
function xyzMatrix(mode: ColourMode): tf.Tensor2D {
  return cached(`xyz:${mode}`, () => {
    const m = new Float32Array(9);
    for (let k = 0; k < 3; k++) {
      const rgbIndex = mode === 'rgb' ? 2 - k : k;
      for (let j = 0; j < 3; j++) m[k * 3 + j] = RGB_TO_XYZ[j]![rgbIndex]! / D65_WHITE[j]!;
    }
    return tf.tensor2d(m, [3, 3]);
  });
}

/** [3, 2] matrix taking (fx, fy, fz) to (a, b) = (500 (fx - fy), 200 (fy - fz)). */
function abMatrix(): tf.Tensor2D {
  return cached('ab', () => tf.tensor2d([500, 0, -500, 200, 0, -200], [3, 2]));
}

// ---------------------------------------------------------------------------------------------
// Validation

function checkPair(restored: tf.Tensor, original: tf.Tensor, what: string): void {
  if (restored.rank !== 4 || original.rank !== 4)
    throw new BadInputError('bad_shape', `${what}: expected NHWC rank-4 tensors, got [${restored.shape}] and [${original.shape}]`);
  if (restored.shape.some((d, i) => d !== original.shape[i]))
    throw new BadInputError('bad_shape', `${what}: restored [${restored.shape}] and original [${original.shape}] differ`);
  if (restored.shape[0] === 0) throw new BadInputError('bad_shape', `${what}: empty batch`);
}

// ---------------------------------------------------------------------------------------------
// MSGMS

/** Gradient magnitude sqrt(gx² + gy² + 1e-12) per channel: [B,H,W,C] -> [B,H,W,C]. */
function gradientMagnitude(x: tf.Tensor4D): tf.Tensor4D {
  const [b, h, w, c] = x.shape;
  // 'same' with a 3x3 kernel pads 1 zero on each side, as torch's padding=1.
  const g = tf.depthwiseConv2d(x, prewittKernel(c), 1, 'same'); // [B,H,W,C*2], (c, {x,y}) pairs
  const sq = tf.square(g).reshape([b, h, w, c, 2]).sum(4) as tf.Tensor4D;
  return tf.sqrt(tf.add(sq, 1e-12)) as tf.Tensor4D;
}

/**
 * Multi-scale gradient magnitude similarity *anomaly* map (official `MSGMSLoss(as_loss=False)`).
 *
 * For each scale s (s > 0: 2x2 average pool, valid), per channel:
 * `gms = (2 gY gX + c) / (gY² + gX² + c)` with Prewitt/3 gradients (zero padding), upsampled to
 * full size with half-pixel bilinear (torch align_corners=False); result `mean_c(1 - Σ_s gms / scales)`.
 *
 * @param restored network output, NHWC [N,S,S,C] (not clamped)
 * @param original input image, NHWC [N,S,S,C] in [0,1]
 * @returns [N,S,S,1], 0 where the gradients agree, up to ~1 where they do not
 * @example
 * const m = tf.tidy(() => msgms(restored, original)); // [1,256,256,1]
 */
export function msgms(restored: tf.Tensor4D, original: tf.Tensor4D, opts: { c?: number; scales?: number } = {}): tf.Tensor4D {
  checkPair(restored, original, 'msgms');
  const c = opts.c ?? DEFAULT_SCORING.msgmsC;
  const scales = opts.scales ?? DEFAULT_SCORING.msgmsScales;
  if (!Number.isInteger(scales) || scales < 1) throw new ConfigError(`msgms scales must be a positive integer, got ${scales}`);
  return tf.tidy(() => msgmsStacked(tf.concat([restored, original], 0), c, scales));
}

/**
 * MSGMS on both images stacked along the batch axis: rows [0, n) restored (torch img1),
 * [n, 2n) original (img2). One conv / pool / resize for both instead of one each.
 */
function msgmsStacked(stacked: tf.Tensor4D, c: number, scales: number): tf.Tensor4D {
  const [, h, w] = stacked.shape;
  let both = stacked;
  let acc: tf.Tensor4D | undefined;
  for (let s = 0; s < scales; s++) {
    if (s > 0) both = tf.avgPool(both, 2, 2, 'valid');
    const gm = gradientMagnitude(both);
    const [gmY, gmX] = tf.split(gm, 2, 0) as [tf.Tensor4D, tf.Tensor4D];
    const num = tf.add(tf.mul(tf.mul(gmY, gmX), 2), c);
    // The official denominator is (gY² + gX² + c) + 1e-12; folding 1e-12 into the constant
    // saves an op and is bit-identical for c = 0.0026 (1e-12 is below ulp(c) ~ 2e-10).
    const den = tf.add(tf.add(tf.square(gmY), tf.square(gmX)), c + 1e-12);
    let gms = tf.div(num, den) as tf.Tensor4D;
    // Upsampling a same-size map with half-pixel bilinear is the identity, so scale 0 skips it.
    if (s > 0) gms = tf.image.resizeBilinear(gms, [h, w], false, true);
    acc = acc === undefined ? gms : (tf.add(acc, gms) as tf.Tensor4D);
  }
  // mean_c(1 - acc/scales) = 1 - mean_c(acc)/scales
  return tf.sub(1, tf.div(tf.mean(acc!, 3, true), scales)) as tf.Tensor4D;
}

// ---------------------------------------------------------------------------------------------
// Colour

/**
 * CIELAB a and b channels (kornia 0.6.7 `rgb_to_lab`, L dropped) of an NHWC BGR tensor.
 *
 * `mode = 'bgr-as-rgb'` reads the BGR tensor as if it were RGB (the official code, faithful);
 * `mode = 'rgb'` reverses the channels first (colourimetrically correct).
 *
 * @returns [N,H,W,2] = (a, b)
 * @example
 * const ab = tf.tidy(() => labAB(img, 'bgr-as-rgb'));
 */
export function labAB(img: tf.Tensor4D, mode: ColourMode = 'bgr-as-rgb'): tf.Tensor4D {
  if (img.rank !== 4 || img.shape[3] !== 3) throw new BadInputError('bad_shape', `labAB: expected NHWC with 3 channels, got [${img.shape}]`);
  if (mode !== 'bgr-as-rgb' && mode !== 'rgb') throw new ConfigError(`labAB: unknown colour mode ${String(mode)}`);
  const [n, h, w] = img.shape;
  return tf.tidy(() => {
    // sRGB -> linear; tf.where evaluates both branches, the NaN of pow on the unused branch
    // (negative, unclamped network outputs) is discarded.
    const lin = tf.where(tf.greater(img, 0.04045), tf.pow(tf.div(tf.add(img, 0.055), 1.055), 2.4), tf.div(img, 12.92));
    const xyz = tf.matMul(lin.reshape([n * h * w, 3]), xyzMatrix(mode));
    const thr = 0.008856;
    const f = tf.where(tf.greater(xyz, thr), tf.pow(tf.maximum(xyz, thr), 1 / 3), tf.add(tf.mul(xyz, 7.787), 4 / 29));
    return tf.matMul(f, abMatrix()).reshape([n, h, w, 2]) as tf.Tensor4D;
  });
}

/**
 * Colour term `weight * ((a_X - a_Y)² + (b_X - b_Y)²)` (squared, no sqrt), [N,H,W,1].
 * @example
 * const col = tf.tidy(() => colourTerm(restored, original, 0.0003, 'bgr-as-rgb'));
 */
export function colourTerm(restored: tf.Tensor4D, original: tf.Tensor4D, weight = DEFAULT_SCORING.colourWeight, mode: ColourMode = DEFAULT_SCORING.colourMode): tf.Tensor4D {
  checkPair(restored, original, 'colourTerm');
  if (mode !== 'bgr-as-rgb' && mode !== 'rgb') throw new ConfigError(`colourTerm: unknown colour mode ${String(mode)}`);
  return tf.tidy(() => colourStacked(tf.concat([restored, original], 0), weight, mode));
}

/** Colour term on both images stacked along the batch axis (restored first, then original). */
function colourStacked(stacked: tf.Tensor4D, weight: number, mode: ColourMode): tf.Tensor4D {
  const n = stacked.shape[0] / 2;
  const ab = labAB(stacked, mode);
  const [abY, abX] = tf.split(ab, [n, n], 0);
  return tf.mul(tf.sum(tf.square(tf.sub(abX, abY)), 3, true), weight) as tf.Tensor4D;
}

// ---------------------------------------------------------------------------------------------
// Smoothing and the final map

/**
 * k x k mean filter with **zero padding** (torch `conv2d(ones(k,k)/k², padding=k//2)`): border
 * pixels are attenuated (a corner of a 21x21 filter keeps 121/441 of the weight). Not
 * `avgPool(..., 'same')`, which would renormalise by the valid count.
 *
 * @param map [N,H,W,1]
 * @param k odd kernel side (21)
 * @example
 * const smooth = tf.tidy(() => meanFilter(rawMap, 21));
 */
export function meanFilter(map: tf.Tensor4D, k = DEFAULT_SCORING.smoothKernel): tf.Tensor4D {
  if (map.rank !== 4 || map.shape[3] !== 1) throw new BadInputError('bad_shape', `meanFilter: expected [N,H,W,1], got [${map.shape}]`);
  if (!Number.isInteger(k) || k < 1 || k % 2 === 0) throw new ConfigError(`meanFilter: k must be an odd positive integer, got ${k}`);
  if (k === 1) return tf.clone(map);
  return tf.tidy(() => {
    const [v, h] = boxKernels(k);
    return tf.conv2d(tf.conv2d(map, v, 1, 'same'), h, 1, 'same');
  });
}

/** Result of {@link scoreBatch}. The caller owns (and disposes) both tensors. */
export interface ScoreResult {
  /** Smoothed anomaly map, [N,S,S]. */
  map: tf.Tensor3D;
  /** Image scores = max of each map, [N]. Higher = more anomalous. */
  scores: tf.Tensor1D;
}

/**
 * Full FAIR scoring of a batch.
 *
 * @param restored UNet output, NHWC BGR [N,S,S,3], raw (not clamped)
 * @param original the input image, NHWC BGR [N,S,S,3] in [0,1]
 * @param spec scoring settings (stored with the model artefact)
 * @example
 * const { map, scores } = scoreBatch(restored, original, DEFAULT_SCORING);
 * const s = await scores.data(); map.dispose(); scores.dispose();
 */
export function scoreBatch(restored: tf.Tensor4D, original: tf.Tensor4D, spec: ScoringSpec = DEFAULT_SCORING): ScoreResult {
  checkPair(restored, original, 'scoreBatch');
  if (restored.shape[3] !== 3) throw new BadInputError('bad_shape', `scoreBatch: expected 3 (BGR) channels, got [${restored.shape}]`);
  checkSpec(spec);
  const [n, h, w] = restored.shape;
  return tf.tidy(() => {
    const stacked = tf.concat([restored, original], 0);
    let raw = msgmsStacked(stacked, spec.msgmsC, spec.msgmsScales);
    if (spec.colourWeight > 0) raw = tf.add(raw, colourStacked(stacked, spec.colourWeight, spec.colourMode));
    const map = meanFilter(raw, spec.smoothKernel).reshape([n, h, w]) as tf.Tensor3D;
    const scores = tf.max(map, [1, 2]) as tf.Tensor1D;
    return { map, scores };
  });
}

/** Typed-array result of {@link scoreToArrays}. */
export interface ScoreArrays {
  /** Smoothed maps, N*S*S row-major (image i at offset i*S*S). */
  maps: Float32Array;
  /** Image scores, length N. */
  scores: Float32Array;
}

/**
 * {@link scoreBatch}, then download to typed arrays and dispose every tensor it made.
 * @example
 * const { maps, scores } = await scoreToArrays(restored, original, spec);
 */
export async function scoreToArrays(restored: tf.Tensor4D, original: tf.Tensor4D, spec: ScoringSpec = DEFAULT_SCORING): Promise<ScoreArrays> {
  const { map, scores } = scoreBatch(restored, original, spec);
  try {
    const [maps, s] = await Promise.all([map.data<'float32'>(), scores.data<'float32'>()]);
    return { maps: maps as Float32Array, scores: s as Float32Array };
  } finally {
    map.dispose();
    scores.dispose();
  }
}
