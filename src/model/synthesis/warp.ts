/**
 * Affine warps on typed-array images (HWC, any channel count), bilinear with constant 0 fill.
 *
 * Emulates `cv2.warpAffine(src, M, dsize, INTER_LINEAR, BORDER_CONSTANT, 0)`, which is also what
 * imgaug's `Affine(order=1, mode='constant', cval=0)` calls for uint8 and float images:
 * - `M` is the forward (source -> destination) matrix; it is inverted in double precision.
 * - Source coordinates are computed in OpenCV's fixed point (AB_BITS = 10) and quantised to
 *   1/32 pixel (INTER_BITS = 5), exactly as OpenCV does; the 4 bilinear weights are then
 *   applied in floating point (OpenCV uses 15-bit integer weights for uint8, so uint8 results may
 *   differ by 1 level at rare pixels).
 * - A neighbour outside the source counts as 0; a destination pixel whose whole 2x2 footprint is
 *   outside gets 0.
 */
import { BadInputError } from '../../errors.js';
import type { ImageF32, ImageU8 } from '../types.js';

/** Row-major 2x3 affine matrix [a, b, c, d, e, f]: x' = a x + b y + c, y' = d x + e y + f. */
export type Affine2x3 = [number, number, number, number, number, number];

/** Inverse of an affine map (throws BadInputError when singular). */
export function invertAffine(m: Affine2x3): Affine2x3 {
  const [a, b, c, d, e, f] = m;
  const det = a * e - b * d;
  if (det === 0 || !Number.isFinite(det)) throw new BadInputError('bad_transform', 'singular affine matrix');
  const ia = e / det, ib = -b / det, id = -d / det, ie = a / det;
  return [ia, ib, -(ia * c + ib * f), id, ie, -(id * c + ie * f)];
}

/**
 * Forward rotation by `deg` degrees about (cx, cy), in the convention of skimage/imgaug
 * (`[[cos, -sin], [sin, cos]]` in x-right, y-down pixel coordinates).
 */
export function rotationAbout(cx: number, cy: number, deg: number): Affine2x3 {
  const r = (deg * Math.PI) / 180;
  const cs = Math.cos(r), sn = Math.sin(r);
  return [cs, -sn, cx - cs * cx + sn * cy, sn, cs, cy - sn * cx - cs * cy];
}

/** OpenCV's cvRound for doubles: round half to even. */
function rint(v: number): number {
  const r = Math.round(v);
  // Math.round rounds .5 up; fix the exact-half case to even.
  if (r - v === 0.5 && (r & 1) !== 0) return r - 1;
  return r;
}

type Pixels = Float32Array | Uint8Array;

function checkImage(img: ImageF32 | ImageU8): void {
  const { width: w, height: h, channels: c, data } = img;
  if (!(w > 0 && h > 0 && c > 0) || !Number.isInteger(w) || !Number.isInteger(h) || !Number.isInteger(c) || data.length !== w * h * c) {
    throw new BadInputError('bad_image', `image ${w}x${h}x${c} does not match its ${data.length} values`);
  }
}

/**
 * Core warp: `inv` maps destination pixel coordinates to source coordinates.
 * Writes into `out` (outW x outH x c); `round` saturates and rounds for uint8 output.
 */
function warpCore(src: Pixels, w: number, h: number, c: number, inv: Affine2x3, out: Pixels, outW: number, outH: number, round: boolean): void {
  const AB = 1024; // 1 << AB_BITS
  const adx = new Int32Array(outW), ady = new Int32Array(outW);
  for (let x = 0; x < outW; x++) {
    adx[x] = rint(inv[0] * x * AB);
    ady[x] = rint(inv[3] * x * AB);
  }
  const stride = w * c;
  for (let y = 0; y < outH; y++) {
    const X0 = rint((inv[1] * y + inv[2]) * AB) + 16; // + round_delta = AB / INTER_TAB_SIZE / 2
    const Y0 = rint((inv[4] * y + inv[5]) * AB) + 16;
    let o = y * outW * c;
    for (let x = 0; x < outW; x++, o += c) {
      const X = (X0 + adx[x]!) >> 5; // coordinates in 1/32 pixel
      const Y = (Y0 + ady[x]!) >> 5;
      const ix = X >> 5, iy = Y >> 5;
      const fx = (X & 31) / 32, fy = (Y & 31) / 32;
      if (ix < -1 || ix >= w || iy < -1 || iy >= h) {
        for (let k = 0; k < c; k++) out[o + k] = 0;
        continue;
      }
      const w00 = (1 - fx) * (1 - fy), w01 = fx * (1 - fy), w10 = (1 - fx) * fy, w11 = fx * fy;
      const p = iy * stride + ix * c;
      if (ix >= 0 && iy >= 0 && ix < w - 1 && iy < h - 1) {
        for (let k = 0; k < c; k++) {
          const v = src[p + k]! * w00 + src[p + c + k]! * w01 + src[p + stride + k]! * w10 + src[p + stride + c + k]! * w11;
          out[o + k] = round ? (v >= 255 ? 255 : v <= 0 ? 0 : Math.round(v)) : v;
        }
      } else {
        // Border: neighbours outside the image contribute the constant 0.
        const in0x = ix >= 0, in1x = ix + 1 < w, in0y = iy >= 0, in1y = iy + 1 < h;
        for (let k = 0; k < c; k++) {
          let v = 0;
          if (in0y && in0x) v += src[p + k]! * w00;
          if (in0y && in1x) v += src[p + c + k]! * w01;
          if (in1y && in0x) v += src[p + stride + k]! * w10;
          if (in1y && in1x) v += src[p + stride + c + k]! * w11;
          out[o + k] = round ? (v >= 255 ? 255 : v <= 0 ? 0 : Math.round(v)) : v;
        }
      }
    }
  }
}

/**
 * Warp an image with a forward affine matrix, bilinear, constant 0 outside (cv2.warpAffine).
 * The output has the input's type and channel count.
 *
 * @example
 * // rotate a patch by 2 rad about its top-left corner, as CutPaste does
 * const t = 2, m: Affine2x3 = [Math.cos(t), -Math.sin(t), 0, Math.sin(t), Math.cos(t), 0];
 * const out = warpAffine(patch, m);
 */
export function warpAffine<T extends ImageF32 | ImageU8>(img: T, forward: Affine2x3, outW = img.width, outH = img.height): T {
  checkImage(img);
  const inv = invertAffine(forward);
  const isU8 = img.data instanceof Uint8Array;
  const data = isU8 ? new Uint8Array(outW * outH * img.channels) : new Float32Array(outW * outH * img.channels);
  warpCore(img.data, img.width, img.height, img.channels, inv, data, outW, outH, isU8);
  return { width: outW, height: outH, channels: img.channels, data } as T;
}

/**
 * Rotate by `deg` degrees about the centre ((W-1)/2, (H-1)/2), bilinear, black corners:
 * imgaug `Affine(rotate=deg)` with its defaults (order 1, constant 0, same output size).
 *
 * @example
 * const rotated = rotateImage(imgU8, 30);
 */
export function rotateImage<T extends ImageF32 | ImageU8>(img: T, deg: number): T {
  return warpAffine(img, rotationAbout((img.width - 1) / 2, (img.height - 1) / 2, deg));
}
