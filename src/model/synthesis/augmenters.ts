/**
 * The texture augmenters of the DTD-Perlin branch (fair-reference.md sections 4.2 and 4.4):
 * imgaug 0.4.0 semantics on uint8 HWC images, re-implemented on typed arrays.
 *
 * Every augmenter exists twice: a deterministic function with explicit parameters (tested for
 * its semantics) and a random version in {@link AUGMENTERS} that draws the parameters as imgaug
 * does. {@link randAugment} picks 3 distinct augmenters and applies them in drawn order, like
 * `np.random.choice(len(augmenters), 3, replace=False)` + `iaa.Sequential`.
 *
 * Channel order: imgaug assumes RGB but FAIR passes BGR; the colour-space augmenters read
 * channel 0 as "R" exactly like imgaug did, so the quirk is preserved.
 */
import { BadInputError } from '../../errors.js';
import type { ImageU8 } from '../types.js';
import { BRIGHTNESS_CHANNEL, BRIGHTNESS_SPACES, type ColourSpace, rgbFrom, rgbTo } from './colorspace.js';
import type { Rng } from './rng.js';
import { rotateImage } from './warp.js';

export type AugmenterName =
  | 'gammaContrast'
  | 'hueAdd'
  | 'dropout2d'
  | 'multiplyAndAddToBrightness'
  | 'enhanceSharpness'
  | 'addToHueAndSaturation'
  | 'solarize'
  | 'posterize'
  | 'invert'
  | 'autocontrast'
  | 'equalize'
  | 'affineRotate';

/** The 10 augmenters of `data_loaderbhpf.py` (DTD textures), in list order. */
export const DTD_AUGMENTERS: readonly AugmenterName[] = [
  'gammaContrast', 'multiplyAndAddToBrightness', 'enhanceSharpness', 'addToHueAndSaturation', 'solarize',
  'posterize', 'invert', 'autocontrast', 'equalize', 'affineRotate',
];

/** The 12 augmenters of `data_loaderbhpfnoDTD.py` (training images as textures), in list order. */
export const NO_DTD_AUGMENTERS: readonly AugmenterName[] = [
  'gammaContrast', 'hueAdd', 'dropout2d', 'multiplyAndAddToBrightness', 'enhanceSharpness', 'addToHueAndSaturation',
  'solarize', 'posterize', 'invert', 'autocontrast', 'equalize', 'affineRotate',
];

function copy(img: ImageU8, data: Uint8Array = new Uint8Array(img.data)): ImageU8 {
  return { width: img.width, height: img.height, channels: img.channels, data };
}

function check(img: ImageU8, needRgb = false): void {
  const { width: w, height: h, channels: c, data } = img;
  if (!(data instanceof Uint8Array) || !(w > 0 && h > 0 && c > 0) || data.length !== w * h * c) {
    throw new BadInputError('bad_image', `texture ${w}x${h}x${c} does not match its ${data?.length} values`);
  }
  if (needRgb && c !== 3) throw new BadInputError('bad_image', `colour-space augmenter needs 3 channels, got ${c}`);
}

/** Apply one 256-entry lookup table per channel. */
function applyLuts(img: ImageU8, luts: Uint8Array[]): ImageU8 {
  const c = img.channels, src = img.data, out = new Uint8Array(src.length);
  for (let i = 0; i < src.length; i += c) for (let k = 0; k < c; k++) out[i + k] = luts[k]![src[i + k]!]!;
  return copy(img, out);
}

/**
 * imgaug `GammaContrast`: v' = 255 (v/255)^gamma (float32, truncated to uint8), one gamma per
 * channel (`per_channel=True`).
 *
 * @example
 * gammaContrast(tex, [0.5, 1, 2]); // brighten channel 0, keep 1, darken 2
 */
export function gammaContrast(img: ImageU8, gammas: readonly number[]): ImageU8 {
  check(img);
  if (gammas.length !== img.channels) throw new BadInputError('bad_param', `need ${img.channels} gammas, got ${gammas.length}`);
  const luts = gammas.map((g) => {
    const lut = new Uint8Array(256);
    const g32 = Math.fround(g);
    for (let v = 0; v < 256; v++) {
      const t = Math.fround(Math.fround(Math.fround(v / 255) ** g32) * 255);
      lut[v] = t >= 255 ? 255 : t <= 0 ? 0 : Math.trunc(t);
    }
    return lut;
  });
  return applyLuts(img, luts);
}

/** Convert every pixel to `space`, let `fn` edit the 3 components, convert back. */
function inColourSpace(img: ImageU8, space: ColourSpace, fn: (c: Float64Array) => void): ImageU8 {
  check(img, true);
  const src = img.data, out = new Uint8Array(src.length);
  const t = new Float64Array(3), o = new Float64Array(3);
  for (let i = 0; i < src.length; i += 3) {
    rgbTo(space, src[i]!, src[i + 1]!, src[i + 2]!, t);
    fn(t);
    rgbFrom(space, t[0]!, t[1]!, t[2]!, o);
    out[i] = o[0]!; out[i + 1] = o[1]!; out[i + 2] = o[2]!;
  }
  return copy(img, out);
}

const sat8 = (v: number): number => (v <= 0 ? 0 : v >= 255 ? 255 : Math.round(v));

/**
 * imgaug `MultiplyAndAddToBrightness`: in `space`, the brightness channel becomes
 * round(v * mul) then + round(add) (or the other order), saturated to uint8.
 *
 * @example
 * multiplyAndAddToBrightness(tex, 'YCrCb', 1.1, -12, true);
 */
export function multiplyAndAddToBrightness(img: ImageU8, space: ColourSpace, mul: number, add: number, mulFirst: boolean): ImageU8 {
  const ch = BRIGHTNESS_CHANNEL[space];
  const a = Math.round(add);
  return inColourSpace(img, space, (c) => {
    let v = c[ch]!;
    if (mulFirst) v = sat8(sat8(v * mul) + a);
    else v = sat8(sat8(v + a) * mul);
    c[ch] = v;
  });
}

/**
 * PIL `ImageEnhance.Sharpness(img).enhance(factor)`: blend of the SMOOTH-filtered image
 * (3x3 kernel [[1,1,1],[1,5,1],[1,1,1]]/13, border pixels copied unchanged) with the image,
 * out = degenerate + factor (img - degenerate), truncated to uint8 as PIL's ImagingBlend does.
 *
 * @example
 * enhanceSharpness(tex, 2); // sharpen; 0 gives the smoothed image, 1 the original
 */
export function enhanceSharpness(img: ImageU8, factor: number): ImageU8 {
  check(img);
  const { width: w, height: h, channels: c, data: src } = img;
  const deg = new Uint8Array(src);
  const stride = w * c;
  for (let y = 1; y < h - 1; y++) {
    for (let x = 1; x < w - 1; x++) {
      for (let k = 0; k < c; k++) {
        const p = y * stride + x * c + k;
        const s = src[p - stride - c]! + src[p - stride]! + src[p - stride + c]! + src[p - c]! + 5 * src[p]! + src[p + c]!
          + src[p + stride - c]! + src[p + stride]! + src[p + stride + c]!;
        // Pillow adds 0.5 before truncating (rounds half up).
        deg[p] = Math.min(255, Math.trunc(s / 13 + 0.5));
      }
    }
  }
  const out = new Uint8Array(src.length);
  for (let i = 0; i < src.length; i++) {
    const v = deg[i]! + factor * (src[i]! - deg[i]!);
    out[i] = v <= 0 ? 0 : v >= 255 ? 255 : Math.trunc(v);
  }
  return copy(img, out);
}

/**
 * imgaug `AddToHueAndSaturation(per_channel=True)` with given integer offsets in [-255, 255]:
 * in OpenCV HSV (H in 0..179) hue += trunc(dh/255*180) modulo 180, saturation += ds clipped.
 *
 * @example
 * addToHueAndSaturation(tex, 30, -20);
 */
export function addToHueAndSaturation(img: ImageU8, dh: number, ds: number): ImageU8 {
  const shift = Math.trunc((dh / 255) * 180);
  return inColourSpace(img, 'HSV', (c) => {
    c[0] = (((c[0]! + shift) % 180) + 180) % 180;
    c[1] = sat8(c[1]! + ds);
  });
}

/**
 * The no-DTD hue add: `WithColorspace("HSV", WithChannels(0, Add(v)))`. H (0..179) gets
 * + round(v) **clipped at 255** (uint8 saturation, not wrapped at 180); OpenCV's HSV->RGB then
 * reads hue 2H degrees modulo 360.
 *
 * @example
 * hueAdd(tex, 45);
 */
export function hueAdd(img: ImageU8, value: number): ImageU8 {
  const a = Math.round(value);
  return inColourSpace(img, 'HSV', (c) => {
    c[0] = sat8(c[0]! + a);
  });
}

/**
 * imgaug `Dropout2d`: channels with keep[k] = false are set to 0.
 *
 * @example
 * dropout2d(tex, [true, false, true]); // zero channel 1 (G)
 */
export function dropout2d(img: ImageU8, keep: readonly boolean[]): ImageU8 {
  check(img);
  if (keep.length !== img.channels) throw new BadInputError('bad_param', `need ${img.channels} keep flags, got ${keep.length}`);
  const c = img.channels, out = new Uint8Array(img.data);
  for (let k = 0; k < c; k++) if (!keep[k]) for (let i = k; i < out.length; i += c) out[i] = 0;
  return copy(img, out);
}

/**
 * imgaug `Solarize` / `Invert(threshold=t)`: every value v >= t becomes 255 - v.
 *
 * @example
 * solarize(tex, 100);
 */
export function solarize(img: ImageU8, threshold: number): ImageU8 {
  check(img);
  const lut = new Uint8Array(256);
  for (let v = 0; v < 256; v++) lut[v] = v >= threshold ? 255 - v : v;
  return applyLuts(img, Array.from({ length: img.channels }, () => lut));
}

/**
 * imgaug `Posterize` (= PIL posterize): keep the `bits` most significant bits.
 *
 * @example
 * posterize(tex, 3); // v & 0b11100000
 */
export function posterize(img: ImageU8, bits: number): ImageU8 {
  check(img);
  if (!Number.isInteger(bits) || bits < 1 || bits > 8) throw new BadInputError('bad_param', `posterize bits must be 1..8, got ${bits}`);
  const mask = (0xff << (8 - bits)) & 0xff;
  const lut = new Uint8Array(256);
  for (let v = 0; v < 256; v++) lut[v] = v & mask;
  return applyLuts(img, Array.from({ length: img.channels }, () => lut));
}

/**
 * imgaug `Invert`: 255 - v.
 *
 * @example
 * invert(invert(tex)); // == tex
 */
export function invert(img: ImageU8): ImageU8 {
  return solarize(img, 0);
}

function channelHistograms(img: ImageU8): Uint32Array[] {
  const c = img.channels, src = img.data;
  const hs = Array.from({ length: c }, () => new Uint32Array(256));
  for (let i = 0; i < src.length; i += c) for (let k = 0; k < c; k++) hs[k]![src[i + k]!]!++;
  return hs;
}

/**
 * PIL `ImageOps.autocontrast(img, cutoff)` per channel: drop cutoff% of the pixels at each end
 * of the histogram, then stretch [lo, hi] to [0, 255] (int() truncation as PIL).
 *
 * @example
 * autocontrast(tex, 2);
 */
export function autocontrast(img: ImageU8, cutoffPercent: number): ImageU8 {
  check(img);
  const luts = channelHistograms(img).map((h) => {
    if (cutoffPercent > 0) {
      let n = 0;
      for (let i = 0; i < 256; i++) n += h[i]!;
      const cut0 = Math.floor((n * cutoffPercent) / 100);
      let cut = cut0;
      for (let lo = 0; lo < 256 && cut > 0; lo++) {
        if (cut > h[lo]!) { cut -= h[lo]!; h[lo] = 0; } else { h[lo] = h[lo]! - cut; cut = 0; }
      }
      cut = cut0;
      for (let hi = 255; hi >= 0 && cut > 0; hi--) {
        if (cut > h[hi]!) { cut -= h[hi]!; h[hi] = 0; } else { h[hi] = h[hi]! - cut; cut = 0; }
      }
    }
    let lo = 0, hi = 255;
    while (lo < 256 && h[lo] === 0) lo++;
    while (hi >= 0 && h[hi] === 0) hi--;
    const lut = new Uint8Array(256);
    if (hi <= lo) { for (let v = 0; v < 256; v++) lut[v] = v; return lut; }
    const scale = 255 / (hi - lo), offset = -lo * scale;
    for (let v = 0; v < 256; v++) {
      const t = Math.trunc(v * scale + offset);
      lut[v] = t < 0 ? 0 : t > 255 ? 255 : t;
    }
    return lut;
  });
  return applyLuts(img, luts);
}

/**
 * PIL `ImageOps.equalize` per channel: lut[i] = (step/2 + sum(h[<i])) // step with
 * step = (N - count of the last non-empty bin) // 255.
 *
 * @example
 * equalize(tex);
 */
export function equalize(img: ImageU8): ImageU8 {
  check(img);
  const luts = channelHistograms(img).map((h) => {
    const lut = new Uint8Array(256);
    let nonEmpty = 0, total = 0, last = 0;
    for (let i = 0; i < 256; i++) if (h[i]! > 0) { nonEmpty++; total += h[i]!; last = h[i]!; }
    const step = Math.floor((total - last) / 255);
    if (nonEmpty <= 1 || step === 0) { for (let v = 0; v < 256; v++) lut[v] = v; return lut; }
    let n = Math.floor(step / 2);
    for (let i = 0; i < 256; i++) {
      lut[i] = Math.min(255, Math.floor(n / step));
      n += h[i]!;
    }
    return lut;
  });
  return applyLuts(img, luts);
}

/**
 * imgaug `Affine(rotate=deg)`: bilinear rotation about the centre with black corners.
 *
 * @example
 * affineRotate(tex, -30);
 */
export function affineRotate(img: ImageU8, deg: number): ImageU8 {
  check(img);
  return rotateImage(img, deg);
}

/** Random versions: parameters drawn as imgaug draws them for the FAIR augmenter lists. */
export const AUGMENTERS: Record<AugmenterName, (img: ImageU8, rng: Rng) => ImageU8> = {
  gammaContrast: (img, rng) => gammaContrast(img, Array.from({ length: img.channels }, () => rng.uniform(0.5, 2))),
  hueAdd: (img, rng) => hueAdd(img, rng.uniform(0, 90)),
  dropout2d: (img, rng) => {
    const keep = Array.from({ length: img.channels }, () => rng.bernoulli(0.5));
    // nb_keep_channels = 1: if every channel was dropped, one random channel survives.
    if (!keep.some(Boolean)) keep[rng.int(0, img.channels)] = true;
    return dropout2d(img, keep);
  },
  multiplyAndAddToBrightness: (img, rng) => {
    const space = BRIGHTNESS_SPACES[rng.int(0, BRIGHTNESS_SPACES.length)]!;
    const mul = rng.uniform(0.8, 1.2), add = rng.uniform(-30, 30);
    return multiplyAndAddToBrightness(img, space, mul, add, rng.bernoulli(0.5));
  },
  enhanceSharpness: (img, rng) => enhanceSharpness(img, rng.uniform(0, 2)),
  addToHueAndSaturation: (img, rng) => addToHueAndSaturation(img, rng.int(-50, 51), rng.int(-50, 51)),
  solarize: (img, rng) => (rng.bernoulli(0.5) ? solarize(img, rng.uniform(32, 128)) : copy(img)),
  posterize: (img, rng) => posterize(img, rng.int(1, 9)),
  invert: (img) => invert(img),
  autocontrast: (img, rng) => autocontrast(img, rng.int(0, 21)),
  equalize: (img) => equalize(img),
  affineRotate: (img, rng) => affineRotate(img, rng.uniform(-45, 45)),
};

/**
 * Draw 3 distinct augmenters of the variant's list and apply them in drawn order.
 *
 * @example
 * const { image, applied } = randAugment(dtdTexture, rng, 'dtd');
 */
export function randAugment(img: ImageU8, rng: Rng, variant: 'dtd' | 'no-dtd' = 'dtd'): { image: ImageU8; applied: AugmenterName[] } {
  check(img);
  const list = variant === 'no-dtd' ? NO_DTD_AUGMENTERS : DTD_AUGMENTERS;
  const applied = rng.choice(list.length, 3).map((i) => list[i]!);
  let out = img;
  for (const name of applied) out = AUGMENTERS[name](out, rng);
  return { image: out, applied };
}
