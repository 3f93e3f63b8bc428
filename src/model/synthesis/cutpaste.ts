/**
 * The "large CutPaste" branch (fair-reference.md section 4.3, `CutpasteAugment.py`) on float32
 * HWC images, in two modes:
 *
 * - `'faithful'`: the official code exactly, quirks included. The patch is clipped at the image
 *   border (mean pasted area ~24%), rotated by an integer number of RADIANS in {-6..5} about its
 *   top-left corner with black fill (half of the angles give an all-black rectangle), and
 *   hard-pasted at randrange(1, S - ph - 1).
 * - `'corrected'`: the paper's intent. A square patch covering 50-80% of the image area, taken
 *   as a rotated crop from inside the image (rotation about its centre by a random angle in
 *   degrees; the crop's footprint is kept inside the image, so no black appears), pasted fully
 *   inside at a random position.
 *
 * The constants are those of the 256x256 code scaled with the image size (round(0.8 S),
 * round(0.9 S), using Python's round-half-even).
 */
import { BadInputError } from '../../errors.js';
import type { ImageF32 } from '../types.js';
import type { Rng } from './rng.js';
import { type Affine2x3, warpAffine } from './warp.js';

export type CutPasteMode = 'faithful' | 'corrected';

/** Result of one CutPaste draw. */
export interface CutPasteResult {
  image: ImageF32;
  /** 1 inside the pasted rectangle. */
  mask: Uint8Array;
  /** Pasted rectangle: top-left (y, x) and size. */
  y: number;
  x: number;
  height: number;
  width: number;
  /** Rotation: radians (integer) in faithful mode, degrees in corrected mode. */
  angle: number;
}

/** Python's round(): half to even. */
export function pyRound(v: number): number {
  const r = Math.round(v);
  if (r - v === 0.5 && r % 2 !== 0) return r - 1;
  return r;
}

function checkSquare(img: ImageF32): number {
  const { width: w, height: h, channels: c, data } = img;
  if (!(data instanceof Float32Array) || !(w > 0 && c > 0) || data.length !== w * h * c) {
    throw new BadInputError('bad_image', `image ${w}x${h}x${c} does not match its ${data?.length} values`);
  }
  if (w !== h) throw new BadInputError('bad_size', `CutPaste needs a square image, got ${w}x${h}`);
  // randrange(1, S - ph - 1) needs S - round(0.9 S) > 2.
  if (w < 16) throw new BadInputError('bad_size', `CutPaste needs an image of at least 16x16, got ${w}x${h}`);
  return w;
}

function crop(img: ImageF32, top: number, left: number, ph: number, pw: number): ImageF32 {
  const c = img.channels, out = new Float32Array(ph * pw * c);
  for (let y = 0; y < ph; y++) {
    const s = ((top + y) * img.width + left) * c;
    out.set(img.data.subarray(s, s + pw * c), y * pw * c);
  }
  return { width: pw, height: ph, channels: c, data: out };
}

function paste(img: ImageF32, patch: ImageF32, py: number, px: number): { image: ImageF32; mask: Uint8Array } {
  const { width: S, channels: c } = img;
  const out = new Float32Array(img.data);
  const mask = new Uint8Array(S * img.height);
  for (let y = 0; y < patch.height; y++) {
    out.set(patch.data.subarray(y * patch.width * c, (y + 1) * patch.width * c), ((py + y) * S + px) * c);
    mask.fill(1, (py + y) * S + px, (py + y) * S + px + patch.width);
  }
  return { image: { width: S, height: img.height, channels: c, data: out }, mask };
}

/**
 * Side range of the faithful patch: randrange(round(0.8 S), round(0.9 S)), i.e. [lo, hi).
 * For S = 256: [205, 230).
 */
export function faithfulSideRange(size: number): [number, number] {
  return [pyRound(0.8 * size), pyRound(0.9 * size)];
}

/**
 * Faithful `cut_patch` + `paste_patch` of the official code.
 *
 * @example
 * const { image, mask, angle } = cutPasteFaithful(x, rng); // angle in {-6..5} radians
 */
export function cutPasteFaithful(img: ImageF32, rng: Rng): CutPasteResult {
  const S = checkSquare(img);
  const [lo, hi] = faithfulSideRange(S);
  // cut_patch: same draw order as the Python code.
  const top = rng.int(0, S);
  let bottom = top + rng.int(lo, hi);
  const left = rng.int(0, S);
  let right = left + rng.int(lo, hi);
  if ((bottom - top) % 2 === 1) bottom -= 1;
  if ((right - left) % 2 === 1) right -= 1;
  // numpy slicing clips at the border: this is why the mean area is ~24% and not >50%.
  const ph = Math.min(bottom, S) - top, pw = Math.min(right, S) - left;
  const patch = crop(img, top, left, ph, pw);
  // paste_patch: randrange(-2*round(pi), 2*round(pi)) -> integer radians in {-6..5}.
  const angle = rng.int(-6, 6);
  // The matrix is np.float32 in the official code.
  const cs = Math.fround(Math.cos(angle)), sn = Math.fround(Math.sin(angle));
  const m: Affine2x3 = [cs, Math.fround(-sn), 0, sn, cs, 0];
  const rotated = warpAffine(patch, m, pw, ph);
  const py = rng.int(1, S - ph - 1);
  const px = rng.int(1, S - pw - 1);
  const { image, mask } = paste(img, rotated, py, px);
  return { image, mask, y: py, x: px, height: ph, width: pw, angle };
}

/**
 * Corrected CutPaste (the paper's description): a square patch of 50-80% of the image area
 * (side s = round(sqrt(U(0.5, 0.8)) S), at least ceil(sqrt(0.5) S)), rotated about its centre
 * by k*90 + U(-d, d) degrees where d is the largest tilt for which the rotated crop still lies
 * inside the image, sampled bilinearly from inside the image (so no fill value is ever used),
 * and hard-pasted at a uniformly random position fully inside the image. Draws where the
 * pasted content would nearly coincide with its source (tilt < 5 deg, k = 0 and shift < 5% of S)
 * are redrawn, so the paste is always a visible change.
 *
 * @example
 * const { image, mask } = cutPasteCorrected(x, rng); // mask covers >= 50% of the image
 */
export function cutPasteCorrected(img: ImageF32, rng: Rng): CutPasteResult {
  const S = checkSquare(img);
  const c = img.channels;
  const minSide = Math.ceil(Math.SQRT1_2 * S);
  for (let attempt = 0; ; attempt++) {
    const s = Math.min(S - 1, Math.max(minSide, Math.round(Math.sqrt(rng.uniform(0.5, 0.8)) * S)));
    // Rotated half-extent of the pixel centres: (s-1)/2 * (|cos| + |sin|) <= (S-1)/2.
    const ratio = (S - 1) / (s - 1);
    const maxTilt = ratio >= Math.SQRT2 ? 45 : Math.max(0, (Math.asin(ratio / Math.SQRT2) * 180) / Math.PI - 45);
    const quarter = rng.int(0, 4);
    const tilt = rng.uniform(-maxTilt, maxTilt);
    const deg = quarter * 90 + tilt;
    const r = (deg * Math.PI) / 180, cs = Math.cos(r), sn = Math.sin(r);
    const half = ((s - 1) / 2) * (Math.abs(cs) + Math.abs(sn));
    // Source centre: any point that keeps the rotated footprint inside [0, S-1]^2.
    const cyS = rng.uniform(half, S - 1 - half), cxS = rng.uniform(half, S - 1 - half);
    const py = rng.int(0, S - s + 1), px = rng.int(0, S - s + 1);
    const cyD = py + (s - 1) / 2, cxD = px + (s - 1) / 2;
    const trivial = quarter === 0 && Math.abs(tilt) < 5 && Math.hypot(cyD - cyS, cxD - cxS) < 0.05 * S;
    if (trivial && attempt < 20) continue;
    const patch = new Float32Array(s * s * c);
    const src = img.data, stride = S * c, o2 = (s - 1) / 2;
    for (let i = 0; i < s; i++) {
      for (let j = 0; j < s; j++) {
        const u = j - o2, v = i - o2;
        // Clamp guards against rounding just outside the image; the footprint is inside by construction.
        let sx = cxS + cs * u - sn * v, sy = cyS + sn * u + cs * v;
        sx = sx < 0 ? 0 : sx > S - 1 ? S - 1 : sx;
        sy = sy < 0 ? 0 : sy > S - 1 ? S - 1 : sy;
        const x0 = Math.min(S - 2, Math.floor(sx)), y0 = Math.min(S - 2, Math.floor(sy));
        const fx = sx - x0, fy = sy - y0;
        const p = y0 * stride + x0 * c, o = (i * s + j) * c;
        for (let k = 0; k < c; k++) {
          const a = src[p + k]! + (src[p + c + k]! - src[p + k]!) * fx;
          const b = src[p + stride + k]! + (src[p + stride + c + k]! - src[p + stride + k]!) * fx;
          patch[o + k] = a + (b - a) * fy;
        }
      }
    }
    const { image, mask } = paste(img, { width: s, height: s, channels: c, data: patch }, py, px);
    return { image, mask, y: py, x: px, height: s, width: s, angle: deg };
  }
}

/**
 * CutPaste in the given mode.
 *
 * @example
 * const r = cutPaste(x, rng, 'corrected');
 */
export function cutPaste(img: ImageF32, rng: Rng, mode: CutPasteMode = 'faithful'): CutPasteResult {
  return mode === 'corrected' ? cutPasteCorrected(img, rng) : cutPasteFaithful(img, rng);
}
