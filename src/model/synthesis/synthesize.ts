/**
 * Per-sample training-time anomaly synthesis (fair-reference.md section 4.1, steps 3-6).
 *
 * One call of {@link prepareSample} per training sample:
 * 1. with p = 0.3 rotate the resized uint8 image by U(-90, 90) degrees (this is also the target);
 * 2. /255 to float32;
 * 3. `what_anomaly > 0.5` -> CutPaste, else DTD-Perlin; each branch returns the clean image with
 *    p = 0.5 -> 50% clean, 25% CutPaste, 25% Perlin.
 *
 * Difference from the official RNG order (not from its distribution): the branch's "stay clean"
 * coin is drawn before the branch's work rather than after it, so clean samples cost nothing and
 * the texture source is only called when a Perlin anomaly is actually made.
 */
import { BadInputError } from '../../errors.js';
import type { ImageF32, ImageU8 } from '../types.js';
import { randAugment } from './augmenters.js';
import { type CutPasteMode, cutPaste } from './cutpaste.js';
import { perlinMask } from './perlin.js';
import type { Rng } from './rng.js';
import { rotateImage } from './warp.js';

export type AnomalyKind = 'clean' | 'cutpaste' | 'perlin';

/** Options of the synthesis. */
export interface SynthesisOptions {
  /**
   * Returns the texture for the Perlin branch: an S x S uint8 BGR image (a DTD image, or a
   * training image for the no-DTD variant), already resized to the model size. Called at most
   * once per sample, and only when a Perlin anomaly is made.
   */
  textureSource: () => ImageU8;
  /** CutPaste as coded (default) or as the paper describes it. */
  cutpaste?: CutPasteMode;
  /** The 10 DTD-variant augmenters (default) or the 12 of the no-DTD variant. */
  augmenters?: 'dtd' | 'no-dtd';
  /** Probability of the training rotation (0.3). */
  rotationProbability?: number;
}

/** A synthesized sample. */
export interface SynthesisResult {
  image: ImageF32;
  /** S x S, 1 where the image was changed by the anomaly (all 0 for 'clean'). */
  mask: Uint8Array;
  /** Which branch produced the image. A 'perlin' result can have an empty mask (rare). */
  kind: AnomalyKind;
}

/**
 * The branch decision of steps 5-6 alone: 50% clean, 25% CutPaste, 25% Perlin. Consumes exactly
 * two uniforms.
 *
 * @example
 * drawBranch(rng); // 'clean' | 'cutpaste' | 'perlin'
 */
export function drawBranch(rng: Rng): AnomalyKind {
  const whatAnomaly = rng.uniform();
  const noAnomaly = rng.uniform();
  if (noAnomaly > 0.5) return 'clean';
  return whatAnomaly > 0.5 ? 'cutpaste' : 'perlin';
}

function checkF32(img: ImageF32): void {
  const { width: w, height: h, channels: c, data } = img;
  if (!(data instanceof Float32Array) || !(w > 0 && h > 0 && c > 0) || data.length !== w * h * c) {
    throw new BadInputError('bad_image', `image ${w}x${h}x${c} does not match its ${data?.length} values`);
  }
}

/**
 * The DTD-Perlin anomaly: a Perlin mask m (noise > 0.5), texture = 3 random augmenters applied
 * to the texture source, beta ~ U(0, 0.8), A = X (1 - m) + (1 - beta) tex m + beta X m.
 *
 * @example
 * const { image, mask } = perlinAnomaly(x, dtdTexture, rng, 'dtd');
 */
export function perlinAnomaly(target: ImageF32, texture: ImageU8, rng: Rng, augmenters: 'dtd' | 'no-dtd' = 'dtd'): { image: ImageF32; mask: Uint8Array } {
  checkF32(target);
  const { width: S, height: H, channels: c } = target;
  if (S !== H) throw new BadInputError('bad_size', `Perlin synthesis needs a square image, got ${S}x${H}`);
  if (texture.width !== S || texture.height !== S || texture.channels !== c || texture.data.length !== S * S * c) {
    throw new BadInputError('bad_size', `texture ${texture.width}x${texture.height}x${texture.channels} must match the image ${S}x${S}x${c}`);
  }
  const tex = randAugment(texture, rng, augmenters).image;
  const { mask } = perlinMask(S, rng);
  const beta = rng.uniform() * 0.8;
  return { image: blendTexture(target, tex, mask, beta), mask };
}

/**
 * The Perlin blend: A = X (1 - m) + (1 - beta) (tex / 255) m + beta X m, per pixel mask m in {0, 1}.
 *
 * @example
 * const a = blendTexture(x, augmentedTexture, mask, 0.3);
 */
export function blendTexture(target: ImageF32, texture: ImageU8, mask: Uint8Array, beta: number): ImageF32 {
  const { width: S, height: H, channels: c } = target;
  if (texture.data.length !== target.data.length || mask.length !== S * H) {
    throw new BadInputError('bad_size', 'texture and mask must match the image');
  }
  const x = target.data, tex = texture.data, out = new Float32Array(x);
  const a = (1 - beta) / 255;
  for (let p = 0; p < mask.length; p++) {
    if (mask[p] === 0) continue;
    for (let k = 0, i = p * c; k < c; k++, i++) out[i] = a * tex[i]! + beta * x[i]!;
  }
  return { width: S, height: H, channels: c, data: out };
}

/**
 * Steps 5-6 on the (already rotated) float target: returns the synthesized input.
 *
 * @example
 * const { image, mask, kind } = synthesize(x, rng, { textureSource: () => dtd.next() });
 */
export function synthesize(target: ImageF32, rng: Rng, opts: SynthesisOptions): SynthesisResult {
  checkF32(target);
  const kind = drawBranch(rng);
  if (kind === 'clean') {
    return { image: { ...target, data: new Float32Array(target.data) }, mask: new Uint8Array(target.width * target.height), kind };
  }
  if (kind === 'cutpaste') {
    const r = cutPaste(target, rng, opts.cutpaste ?? 'faithful');
    return { image: r.image, mask: r.mask, kind };
  }
  const r = perlinAnomaly(target, opts.textureSource(), rng, opts.augmenters ?? 'dtd');
  return { image: r.image, mask: r.mask, kind };
}

/**
 * Step 3's coin and angle: with probability p (0.3, `torch.rand > 0.7`) an angle ~ U(-90, 90)
 * degrees, otherwise null.
 *
 * @example
 * const angle = drawTrainingRotation(rng); // null 70% of the time
 */
export function drawTrainingRotation(rng: Rng, probability = 0.3): number | null {
  if (!(rng.uniform() > 1 - probability)) return null;
  return rng.uniform(-90, 90);
}

/**
 * Step 3: with p = 0.3 rotate by U(-90, 90) degrees about the centre (imgaug Affine, bilinear,
 * black corners). Returns the input object itself when not rotated.
 *
 * @example
 * const img = trainingRotation(resizedU8, rng);
 */
export function trainingRotation<T extends ImageU8 | ImageF32>(img: T, rng: Rng, probability = 0.3): T {
  const angle = drawTrainingRotation(rng, probability);
  return angle === null ? img : rotateImage(img, angle);
}

/** uint8 -> float32 / 255 (the official `astype(np.float32) / 255.0`). */
function toF32(img: ImageU8): ImageF32 {
  const out = new Float32Array(img.data.length);
  for (let i = 0; i < out.length; i++) out[i] = img.data[i]! / 255;
  return { width: img.width, height: img.height, channels: img.channels, data: out };
}

/** One prepared training sample. */
export interface PreparedSample {
  /** Synthesized network input (before gray + high-pass), BGR float32 in [0, 1]. */
  input: ImageF32;
  /** Restoration target: the (possibly rotated) clean image. */
  target: ImageF32;
  mask: Uint8Array;
  kind: AnomalyKind;
  /** Training rotation in degrees, or null. */
  rotation: number | null;
}

/**
 * Steps 3-6 for one training sample: rotation (p = 0.3, applied on uint8 like the official code,
 * and kept in the target), /255, then anomaly synthesis.
 *
 * @example
 * const rng = createRng(7);
 * const s = prepareSample(resized256, rng, { textureSource: () => dtdImages[rng.int(0, dtdImages.length)] });
 * // s.input -> gray -> BHPF -> UNet; s.target -> loss
 */
export function prepareSample(imageU8Resized: ImageU8, rng: Rng, opts: SynthesisOptions): PreparedSample {
  const { width: w, height: h, channels: c, data } = imageU8Resized;
  if (!(data instanceof Uint8Array) || !(w > 0 && h > 0 && c > 0) || data.length !== w * h * c) {
    throw new BadInputError('bad_image', `image ${w}x${h}x${c} does not match its ${data?.length} values`);
  }
  const rotation = drawTrainingRotation(rng, opts.rotationProbability ?? 0.3);
  const rotated = rotation === null ? imageU8Resized : rotateImage(imageU8Resized, rotation);
  const target = toF32(rotated);
  const { image, mask, kind } = synthesize(target, rng, opts);
  return { input: image, target, mask, kind, rotation };
}
