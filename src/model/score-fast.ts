/**
 * FAIR scoring on typed arrays, for the tfjs fallback (the onnx engine scores inside its graph):
 * the same map as {@link scoreBatch} (src/model/score.ts; fair-reference.md section 6) without a
 * tensor op per step. Per image:
 *
 * - MSGMS: Prewitt/3 gradients with zero padding on a padded plane per channel, the GMS ratio
 *   averaged over channels at each scale, then **one** half-pixel bilinear upsampling per scale
 *   (the channel mean and the linear upsampling commute);
 * - colour: Lab a/b per pixel. The two transcendental steps use tables: the sRGB linearisation
 *   `((v+0.055)/1.055)^2.4` is linearly interpolated on a 1/4096 grid (error < 3e-8), the cube
 *   root starts from a 1/1024 table and takes one Newton step (relative error < 2e-7); values
 *   outside the tables fall back to Math.pow / Math.cbrt;
 * - the k x k zero-padded mean as a box filter: running sums, vertical then horizontal, O(1) per
 *   pixel whatever k;
 * - score = max of the map.
 *
 * Arithmetic is float64 on float32 inputs; maps agree with the tensor path and the official
 * golden map to ~1e-7 (test/score-fast.test.ts). Pure and synchronous.
 */
import { BadInputError } from '../errors.js';
import { checkSpec, D65_WHITE, RGB_TO_XYZ } from './score.js';
import type { ScoringSpec } from './types.js';
import { DEFAULT_SCORING } from './types.js';


const LIN_STEPS = 4096;
const LIN_MAX = 1.5;
const LIN_TABLE = (() => {
  const n = Math.ceil(LIN_MAX * LIN_STEPS) + 2;
  const t = new Float64Array(n);
  for (let i = 0; i < n; i++) t[i] = Math.pow((i / LIN_STEPS + 0.055) / 1.055, 2.4);
  return t;
})();

/** sRGB -> linear (kornia: v > 0.04045 ? ((v+0.055)/1.055)^2.4 : v/12.92). */
function linearise(v: number): number {
  if (!(v > 0.04045)) return v / 12.92;
  if (v >= LIN_MAX) return Math.pow((v + 0.055) / 1.055, 2.4);
  const p = v * LIN_STEPS;
  const i = p | 0;
  const a = LIN_TABLE[i]!;
  return a + (LIN_TABLE[i + 1]! - a) * (p - i);
}

const CBRT_STEPS = 1024;
const CBRT_MAX = 2;
const CBRT_TABLE = (() => {
  const n = CBRT_MAX * CBRT_STEPS + 2;
  const t = new Float64Array(n);
  for (let i = 0; i < n; i++) t[i] = Math.cbrt(i / CBRT_STEPS);
  return t;
})();

const LAB_T = 0.008856;
/** Lab's f(t): t > 0.008856 ? cbrt(t) : 7.787 t + 4/29. */
function labF(x: number): number {
  if (!(x > LAB_T)) return x * 7.787 + 4 / 29;
  if (x >= CBRT_MAX) return Math.cbrt(x);
  const p = x * CBRT_STEPS;
  const i = p | 0;
  const a = CBRT_TABLE[i]!;
  const y = a + (CBRT_TABLE[i + 1]! - a) * (p - i);
  return (2 * y + x / (y * y)) / 3;
}

/** Work buffers for one image size, reused across calls (one call at a time per size). */
interface Work {
  pad: Float64Array;
  gmY: Float64Array;
  gmX: Float64Array;
  acc: Float64Array;
  low: Float64Array;
  tmp: Float64Array;
  poolY: Float32Array;
  poolX: Float32Array;
  raw: Float64Array;
}
const works = new Map<number, Work>();
function work(S: number): Work {
  let w = works.get(S);
  if (!w) {
    const px = S * S;
    w = {
      pad: new Float64Array((S + 2) * (S + 2)),
      gmY: new Float64Array(px),
      gmX: new Float64Array(px),
      acc: new Float64Array(px),
      low: new Float64Array(px),
      tmp: new Float64Array(px),
      poolY: new Float32Array(px * 3),
      poolX: new Float32Array(px * 3),
      raw: new Float64Array(px),
    };
    works.set(S, w);
  }
  return w;
}

/** Gradient magnitude of channel `c` of an L x L x 3 image (Prewitt/3, zero padding) into `out`. */
function gradMag(img: Float32Array, c: number, L: number, pad: Float64Array, out: Float64Array): void {
  const W = L + 2;
  pad.fill(0, 0, W * W);
  for (let y = 0; y < L; y++) {
    const row = (y + 1) * W + 1;
    for (let x = 0, s = y * L * 3 + c; x < L; x++, s += 3) pad[row + x] = img[s]!;
  }
  for (let y = 0; y < L; y++) {
    let i = (y + 1) * W + 1;
    const o = y * L;
    for (let x = 0; x < L; x++, i++) {
      const tl = pad[i - W - 1]!, tc = pad[i - W]!, tr = pad[i - W + 1]!;
      const ml = pad[i - 1]!, mr = pad[i + 1]!;
      const bl = pad[i + W - 1]!, bc = pad[i + W]!, br = pad[i + W + 1]!;
      const gx = (tl + ml + bl - tr - mr - br) / 3;
      const gy = (tl + tc + tr - bl - bc - br) / 3;
      out[o + x] = Math.sqrt(gx * gx + gy * gy + 1e-12);
    }
  }
}

/** 2x2 average pool (valid) of an L x L x 3 image into an (L/2) x (L/2) x 3 one. */
function pool2(src: Float32Array, L: number, dst: Float32Array): void {
  const H = L >> 1;
  for (let y = 0; y < H; y++)
    for (let x = 0; x < H; x++)
      for (let c = 0; c < 3; c++) {
        const a = ((2 * y) * L + 2 * x) * 3 + c;
        dst[(y * H + x) * 3 + c] = (src[a]! + src[a + 3]! + src[a + L * 3]! + src[a + L * 3 + 3]!) / 4;
      }
}

/** Half-pixel bilinear (torch align_corners=False) source indices and weights from L to S. */
function upsampleTaps(L: number, S: number): { i0: Int32Array; i1: Int32Array; w: Float64Array } {
  const i0 = new Int32Array(S), i1 = new Int32Array(S), w = new Float64Array(S);
  const scale = L / S;
  for (let o = 0; o < S; o++) {
    const src = Math.max(0, (o + 0.5) * scale - 0.5);
    const a = Math.min(Math.floor(src), L - 1);
    i0[o] = a;
    i1[o] = Math.min(a + 1, L - 1);
    w[o] = src - a;
  }
  return { i0, i1, w };
}

/** MSGMS map of one image pair (restored y, original x; S x S x 3) into `out` (S*S). */
function msgmsInto(y: Float32Array, x: Float32Array, S: number, c: number, scales: number, wk: Work, out: Float64Array): void {
  out.fill(0);
  let curY = y, curX = x, L = S;
  for (let s = 0; s < scales; s++) {
    if (s > 0) {
      const nY = s % 2 === 1 ? wk.poolY : new Float32Array((L >> 1) * (L >> 1) * 3);
      const nX = s % 2 === 1 ? wk.poolX : new Float32Array((L >> 1) * (L >> 1) * 3);
      pool2(curY, L, nY);
      pool2(curX, L, nX);
      curY = nY;
      curX = nX;
      L >>= 1;
    }
    const n = L * L;
    const low = s === 0 ? wk.acc : wk.low;
    low.fill(0, 0, n);
    for (let ch = 0; ch < 3; ch++) {
      gradMag(curY, ch, L, wk.pad, wk.gmY);
      gradMag(curX, ch, L, wk.pad, wk.gmX);
      for (let i = 0; i < n; i++) {
        const a = wk.gmY[i]!, b = wk.gmX[i]!;
        low[i] += (2 * a * b + c) / (a * a + b * b + c);
      }
    }
    if (s === 0) {
      for (let i = 0; i < n; i++) out[i] += low[i]!;
    } else {
      // Rows then columns, L x L -> S x S.
      const t = upsampleTaps(L, S);
      const tmp = wk.tmp;
      for (let r = 0; r < L; r++)
        for (let o = 0; o < S; o++) {
          const a = low[r * L + t.i0[o]!]!, b = low[r * L + t.i1[o]!]!;
          tmp[r * S + o] = a + (b - a) * t.w[o]!;
        }
      for (let o = 0; o < S; o++) {
        const r0 = t.i0[o]! * S, r1 = t.i1[o]! * S, w = t.w[o]!;
        for (let col = 0; col < S; col++) {
          const a = tmp[r0 + col]!, b = tmp[r1 + col]!;
          out[o * S + col] += a + (b - a) * w;
        }
      }
    }
  }
  // mean_c(1 - sum_s gms / scales) = 1 - sum_s sum_c gms / (3 scales)
  const k = 1 / (3 * scales);
  for (let i = 0; i < S * S; i++) out[i] = 1 - out[i]! * k;
}

/** [9] matrix: xyz_j = sum_k lin_k m[k*3+j], channel order folded in (see score.ts xyzMatrix). */
function xyzMatrix(mode: ScoringSpec['colourMode']): Float64Array {
  const m = new Float64Array(9);
  for (let k = 0; k < 3; k++) {
    const rgbIndex = mode === 'rgb' ? 2 - k : k;
    for (let j = 0; j < 3; j++) m[k * 3 + j] = RGB_TO_XYZ[j]![rgbIndex]! / D65_WHITE[j]!;
  }
  return m;
}

/** Add `weight * ((a_X - a_Y)^2 + (b_X - b_Y)^2)` of one image pair to `out`. */
function addColour(y: Float32Array, x: Float32Array, S: number, weight: number, m: Float64Array, out: Float64Array): void {
  const m0 = m[0]!, m1 = m[1]!, m2 = m[2]!, m3 = m[3]!, m4 = m[4]!, m5 = m[5]!, m6 = m[6]!, m7 = m[7]!, m8 = m[8]!;
  for (let i = 0, p = 0; i < S * S; i++, p += 3) {
    let l0 = linearise(y[p]!), l1 = linearise(y[p + 1]!), l2 = linearise(y[p + 2]!);
    let fx = labF(l0 * m0 + l1 * m3 + l2 * m6), fy = labF(l0 * m1 + l1 * m4 + l2 * m7), fz = labF(l0 * m2 + l1 * m5 + l2 * m8);
    const aY = 500 * (fx - fy), bY = 200 * (fy - fz);
    l0 = linearise(x[p]!); l1 = linearise(x[p + 1]!); l2 = linearise(x[p + 2]!);
    fx = labF(l0 * m0 + l1 * m3 + l2 * m6); fy = labF(l0 * m1 + l1 * m4 + l2 * m7); fz = labF(l0 * m2 + l1 * m5 + l2 * m8);
    const da = 500 * (fx - fy) - aY, db = 200 * (fy - fz) - bY;
    out[i] += weight * (da * da + db * db);
  }
}

/** k x k zero-padded mean of `src` (S x S) into `dst` (float32), via running sums; returns the max. */
function boxMeanInto(src: Float64Array, S: number, k: number, tmp: Float64Array, dst: Float32Array): number {
  const r = (k - 1) / 2;
  const inv = 1 / (k * k);
  // Vertical sums: tmp[y][x] = sum_{|dy|<=r} src[y+dy][x] (zero outside).
  for (let x = 0; x < S; x++) {
    let s = 0;
    for (let y = 0; y <= Math.min(r, S - 1); y++) s += src[y * S + x]!;
    for (let y = 0; y < S; y++) {
      tmp[y * S + x] = s;
      const add = y + r + 1, sub = y - r;
      if (add < S) s += src[add * S + x]!;
      if (sub >= 0) s -= src[sub * S + x]!;
    }
  }
  let max = -Infinity;
  for (let y = 0; y < S; y++) {
    const row = y * S;
    let s = 0;
    for (let x = 0; x <= Math.min(r, S - 1); x++) s += tmp[row + x]!;
    for (let x = 0; x < S; x++) {
      const v = Math.fround(s * inv);
      dst[row + x] = v;
      if (v > max) max = v;
      const add = x + r + 1, sub = x - r;
      if (add < S) s += tmp[row + add]!;
      if (sub >= 0) s -= tmp[row + sub]!;
    }
  }
  return max;
}

/**
 * Full FAIR scoring of a batch on typed arrays (same result as {@link scoreBatch}).
 *
 * @param restored UNet output, NHWC BGR, n*S*S*3 (not clamped)
 * @param original input images, NHWC BGR in [0,1], n*S*S*3
 * @returns maps n*S*S (image i at offset i*S*S) and scores (max of each map)
 * @throws BadInputError `bad_shape` for mismatched buffers; ConfigError for bad settings.
 * @example
 * const { maps, scores } = scoreArrays(restored, batch, 8, 256, spec.scoring);
 */
export function scoreArrays(restored: Float32Array, original: Float32Array, n: number, S: number, spec: ScoringSpec = DEFAULT_SCORING): { maps: Float32Array; scores: Float32Array } {
  checkSpec(spec);
  const k = spec.smoothKernel;
  const px = S * S * 3;
  if (!Number.isInteger(n) || n < 1 || restored.length !== n * px || original.length !== n * px)
    throw new BadInputError('bad_shape', `scoreArrays: expected ${n} images of ${S}x${S}x3 (${n * px} values), got ${restored.length} and ${original.length}`);
  if (S % 2 ** (spec.msgmsScales - 1) !== 0) throw new BadInputError('bad_shape', `scoreArrays: size ${S} is not divisible by 2^${spec.msgmsScales - 1} (MSGMS scales)`);
  const wk = work(S);
  const m = xyzMatrix(spec.colourMode);
  const maps = new Float32Array(n * S * S);
  const scores = new Float32Array(n);
  for (let b = 0; b < n; b++) {
    const y = restored.subarray(b * px, (b + 1) * px);
    const x = original.subarray(b * px, (b + 1) * px);
    msgmsInto(y, x, S, spec.msgmsC, spec.msgmsScales, wk, wk.raw);
    if (spec.colourWeight > 0) addColour(y, x, S, spec.colourWeight, m, wk.raw);
    const dst = maps.subarray(b * S * S, (b + 1) * S * S);
    if (k === 1) {
      let max = -Infinity;
      for (let i = 0; i < S * S; i++) {
        dst[i] = wk.raw[i]!;
        if (dst[i]! > max) max = dst[i]!;
      }
      scores[b] = max;
    } else scores[b] = boxMeanInto(wk.raw, S, k, wk.tmp, dst);
  }
  return { maps, scores };
}
