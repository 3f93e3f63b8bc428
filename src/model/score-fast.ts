/**
 * FAIR scoring on typed arrays, for the tfjs fallback (the onnx engine scores inside its graph):
 * the same map as `scoreBatch` (src/model/tfjs/score.ts; fair-reference.md section 6) without a
 * tensor op per step. Per image:
 *
 * - MSGMS, one pass over the rows per scale: Prewitt/3 gradients of the three channels of
 *   restored and original from the interleaved rows (separable: column sums and differences in
 *   a sliding window), the GMS ratio summed over channels in the same pass; each coarser scale
 *   (2x2 average pool) is summed at its own size first and upsampled once (half-pixel bilinear;
 *   the channel mean and the linear upsampling commute): along its rows, then down the columns
 *   inside the full-size row pass;
 * - colour: Lab a/b per pixel in the same row pass as MSGMS scale 0. The sRGB linearisation
 *   `((v+0.055)/1.055)^2.4` is a table of chords on a 1/4096 grid (error < 3e-8), the cube root
 *   a 1/1024 table of chords and one Newton step (relative error < 2e-7); values outside the
 *   tables (unclamped restorations above 1.5) use Math.pow / Math.cbrt;
 * - the k x k zero-padded mean as a box filter: running sums, vertical then horizontal, O(1) per
 *   pixel whatever k;
 * - score = max of the map.
 *
 * Arithmetic is float64 on float32 inputs; maps agree with the tensor path and the official
 * golden map to ~1e-7 (test/score-fast.test.ts). Synchronous; the module-level row buffers
 * below make it one call at a time per thread (as JavaScript runs it anyway).
 *
 * Speed notes (V8 11, Node 20; instruction counts under callgrind): what V8 does per array
 * access matters more than the arithmetic. A typed array that is a parameter costs a map check
 * and three field loads per loop iteration and a few instructions per access; a module-level
 * `const` typed array is a constant address. So the row kernels read a three-row ring of image
 * rows and write row accumulators that are module constants (image rows are copied in with
 * `set`, a memcpy), in strips of at most {@link STRIP} pixels (two for the usual 256 x 256).
 * Number parameters arrive boxed: the hot functions unbox them once at the top (`x | 0`, `+x`)
 * instead of on every loop iteration. Literal constants in the loops for the same reason (a
 * module-level number is re-read with a hole check on every use). Per 256 x 256 frame: 191 M
 * instructions before these changes (a padded plane per channel, helper calls), 67 M now, of
 * which colour 33 M, MSGMS scale 0 14 M, the coarser scale 12 M, the box filter 4 M.
 */
import { BadInputError } from '../errors.js';
import { checkSpec, D65_WHITE, RGB_TO_XYZ } from './score.js';
import type { ScoringSpec } from './types.js';
import { DEFAULT_SCORING } from './types.js';

// ---------------------------------------------------------------------------------------------
// Row buffers (module constants, see the speed notes)

/** Widest strip of an image row the row kernels take, in pixels. */
const STRIP = 128;
/** Floats per ring row: the strip plus one halo pixel on each side (zero at the image border). */
const RW = (STRIP + 2) * 3;
/** Rows r-1, r, r+1 of restored / original, slot (q+1) % 3 for image row q. */
const RING_Y = new Float32Array(3 * RW);
const RING_X = new Float32Array(3 * RW);
/** Channel-summed GMS ratio of the current row. */
const ACC = new Float64Array(STRIP);
/** Colour of the current row: XYZ, then f(XYZ), of restored [0, 3w) and original [3w, 6w). */
const LAB = new Float64Array(6 * STRIP);
/** The finished raw-map row (1 - MSGMS + colour). */
const ROW = new Float64Array(STRIP);
/** 2x2 pooling: two input rows of up to 2 STRIP pixels, and the pooled row. */
const POOL_IN = new Float32Array(12 * STRIP);
const POOL_OUT = new Float32Array(3 * STRIP);
/** sRGB -> XYZ/white of the current call, 3x3, channel order folded in. */
const XYZ_M = new Float64Array(9);

// ---------------------------------------------------------------------------------------------
// Tables

/*
 * Chords on a uniform grid: on cell i, f(v) ~ A[i] + B[i] v, the chord through f(i h) and
 * f((i+1) h). Grid steps and ranges are literals in the lookups below.
 */
function chords(f: (v: number) => number, steps: number, max: number): [Float64Array, Float64Array] {
  const n = Math.ceil(max * steps);
  const a = new Float64Array(n), b = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const v0 = i / steps, y0 = f(v0), slope = (f((i + 1) / steps) - y0) * steps;
    a[i] = y0 - slope * v0;
    b[i] = slope;
  }
  return [a, b];
}

/** sRGB -> linear, ((v+0.055)/1.055)^2.4 on [0, 1.5) by 1/4096 (chord error < 3e-8). */
const LIN = chords((v) => Math.pow((v + 0.055) / 1.055, 2.4), 4096, 1.5);
const LIN_A = LIN[0];
const LIN_B = LIN[1];
/** Cube root on [0, 2) by 1/1024, refined by one Newton step (relative error < 2e-7). */
const CBRT = chords(Math.cbrt, 1024, 2);
const CBRT_A = CBRT[0];
const CBRT_B = CBRT[1];
/** The cube-root loop's constants, read into registers (as literals V8 re-materialises each one
 * on every iteration: 9 of its 43 instructions). */
const F_CONST = new Float64Array([0.008856, 2, 1024, 1 / 3]);

/** [9] matrix: xyz_j = sum_k lin_k m[k*3+j], channel order folded in (see score.ts xyzMatrix). */
function xyzMatrix(mode: ScoringSpec['colourMode']): Float64Array {
  const m = new Float64Array(9);
  for (let k = 0; k < 3; k++) {
    const rgbIndex = mode === 'rgb' ? 2 - k : k;
    for (let j = 0; j < 3; j++) m[k * 3 + j] = RGB_TO_XYZ[j]![rgbIndex]! / D65_WHITE[j]!;
  }
  return m;
}

// ---------------------------------------------------------------------------------------------
// Row kernels (ring -> ACC / ROW)

/**
 * Copy columns [c0, c1) of row q of an L x L x 3 image, with one halo pixel each side, into ring
 * slot `slot` (ring column k = image column c0 - 1 + k). Rows and columns outside the image are
 * zeros: the zero padding of the Prewitt convolution.
 */
function loadRow(img: Float32Array, ring: Float32Array, slot: number, q: number, L: number, c0: number, c1: number): void {
  const base = slot * RW, w = c1 - c0;
  if (q < 0 || q >= L) {
    ring.fill(0, base, base + (w + 2) * 3);
    return;
  }
  const row = q * L * 3, a = c0 > 0 ? c0 - 1 : 0, b = c1 < L ? c1 + 1 : L;
  ring.set(img.subarray(row + a * 3, row + b * 3), base + (a - c0 + 1) * 3);
  if (c0 === 0) ring.fill(0, base, base + 3);
  if (c1 === L) ring.fill(0, base + (w + 1) * 3, base + (w + 2) * 3);
}

/**
 * Add the GMS ratio of one channel of the ring's middle row to ACC[0 .. w). `u`, `m`, `d`: ring
 * offsets of the rows above, at and below, at column 0 of the channel. Prewitt/3 is separable:
 * with column sums v = up + mid + down and differences e = up - down, 3 gx = v[i-1] - v[i+1] and
 * 3 gy = e[i-1] + e[i] + e[i+1], kept in a sliding window of three columns. With a = 9 gm^2 =
 * (3gx)^2 + (3gy)^2 + 9e-12, the ratio (2 gmY gmX + c) / (gmY^2 + gmX^2 + c + 1e-12) is
 * (2 sqrt(aY aX) + 9c) / (aY + aX + 9(c + 1e-12)): one square root instead of two.
 */
function gmsRow(u_: number, m_: number, d_: number, w_: number, cN_: number, cD_: number): void {
  const u = u_ | 0, m = m_ | 0, d = d_ | 0, w = w_ | 0, cN = +cN_, cD = +cD_;
  let t = RING_Y[u]!, b = RING_Y[d]!;
  let vyP = t + RING_Y[m]! + b, eyP = t - b;
  t = RING_X[u]!; b = RING_X[d]!;
  let vxP = t + RING_X[m]! + b, exP = t - b;
  t = RING_Y[(u + 3) | 0]!; b = RING_Y[(d + 3) | 0]!;
  let vyC = t + RING_Y[(m + 3) | 0]! + b, eyC = t - b;
  t = RING_X[(u + 3) | 0]!; b = RING_X[(d + 3) | 0]!;
  let vxC = t + RING_X[(m + 3) | 0]! + b, exC = t - b;
  for (let i = 0, j = 6; i < w; i = (i + 1) | 0, j = (j + 3) | 0) {
    t = RING_Y[(u + j) | 0]!; b = RING_Y[(d + j) | 0]!;
    const vyN = t + RING_Y[(m + j) | 0]! + b, eyN = t - b;
    t = RING_X[(u + j) | 0]!; b = RING_X[(d + j) | 0]!;
    const vxN = t + RING_X[(m + j) | 0]! + b, exN = t - b;
    const gxY = vyP - vyN, gyY = eyP + eyC + eyN, gxX = vxP - vxN, gyX = exP + exC + exN;
    const aY = gxY * gxY + gyY * gyY + 9e-12, aX = gxX * gxX + gyX * gyX + 9e-12;
    ACC[i] += (2 * Math.sqrt(aY * aX) + cN) / (aY + aX + cD);
    vyP = vyC; vyC = vyN; eyP = eyC; eyC = eyN;
    vxP = vxC; vxC = vxN; exP = exC; exC = exN;
  }
}

/** ACC[0 .. w) = sum over the 3 channels of the GMS ratio of the ring's middle row (image row r). */
function gmsRowSum(r: number, w: number, c: number): void {
  ACC.fill(0, 0, w);
  const u = ((r + 3) % 3) * RW, m = ((r + 1) % 3) * RW, d = ((r + 2) % 3) * RW;
  const cN = 9 * c, cD = 9 * (c + 1e-12);
  for (let ch = 0; ch < 3; ch++) gmsRow(u + ch, m + ch, d + ch, w, cN, cD);
}

/**
 * ROW[0 .. w) = 1 - k ACC + weight ((a_X - a_Y)^2 + (b_X - b_Y)^2) of the ring's middle row
 * (ring offset `m` of its first pixel). Flat loops over LAB, each with the table lookup written
 * out: linearise restored and original, XYZ in place, f() in place, then the a/b differences.
 * (Helper calls would depend on V8's inlining budget, which the callers of this function use up
 * when they inline it: measured twice the instructions.)
 */
function colourRow(m_: number, w_: number, weight_: number, k_: number): void {
  const m = m_ | 0, w = w_ | 0, weight = +weight_, k = +k_, R = (w * 3) | 0, n = (2 * R) | 0;
  // sRGB -> linear (kornia: v > 0.04045 ? ((v+0.055)/1.055)^2.4 : v/12.92); Math.pow beyond
  // the table (unclamped restorations above 1.5).
  for (let p = 0; p < R; p = (p + 1) | 0) {
    const v = RING_Y[(m + p) | 0]!;
    if (v > 0.04045 && v < 1.5) {
      const j = (v * 4096) | 0;
      LAB[p] = LIN_A[j]! + LIN_B[j]! * v;
    } else LAB[p] = v > 0.04045 ? Math.pow((v + 0.055) / 1.055, 2.4) : v / 12.92;
  }
  for (let p = 0; p < R; p = (p + 1) | 0) {
    const v = RING_X[(m + p) | 0]!;
    if (v > 0.04045 && v < 1.5) {
      const j = (v * 4096) | 0;
      LAB[(R + p) | 0] = LIN_A[j]! + LIN_B[j]! * v;
    } else LAB[(R + p) | 0] = v > 0.04045 ? Math.pow((v + 0.055) / 1.055, 2.4) : v / 12.92;
  }
  const m0 = XYZ_M[0]!, m1 = XYZ_M[1]!, m2 = XYZ_M[2]!, m3 = XYZ_M[3]!, m4 = XYZ_M[4]!, m5 = XYZ_M[5]!, m6 = XYZ_M[6]!, m7 = XYZ_M[7]!, m8 = XYZ_M[8]!;
  for (let p = 0; p < n; p = (p + 3) | 0) {
    const l0 = LAB[p]!, l1 = LAB[(p + 1) | 0]!, l2 = LAB[(p + 2) | 0]!;
    LAB[p] = l0 * m0 + l1 * m3 + l2 * m6;
    LAB[(p + 1) | 0] = l0 * m1 + l1 * m4 + l2 * m7;
    LAB[(p + 2) | 0] = l0 * m2 + l1 * m5 + l2 * m8;
  }
  // Lab's f(t) = t > 0.008856 ? cbrt(t) : 7.787 t + 4/29: chord, one Newton step; Math.cbrt
  // beyond the table.
  const knee = F_CONST[0]!, top = F_CONST[1]!, steps = F_CONST[2]!, third = F_CONST[3]!;
  for (let p = 0; p < n; p = (p + 1) | 0) {
    const x = LAB[p]!;
    if (x > knee && x < top) {
      const j = (x * steps) | 0;
      const y = CBRT_A[j]! + CBRT_B[j]! * x;
      LAB[p] = (2 * y + x / (y * y)) * third;
    } else LAB[p] = x > 0.008856 ? Math.cbrt(x) : x * 7.787 + 4 / 29;
  }
  for (let i = 0, p = 0; i < w; i = (i + 1) | 0, p = (p + 3) | 0) {
    const fy = LAB[(R + p + 1) | 0]! - LAB[(p + 1) | 0]!;
    const da = 500 * (LAB[(R + p) | 0]! - LAB[p]! - fy), db = 200 * (fy - LAB[(R + p + 2) | 0]! + LAB[(p + 2) | 0]!);
    ROW[i] = 1 - k * ACC[i]! + weight * (da * da + db * db);
  }
}

/** ROW[0 .. w) = 1 - k ACC (no colour term). */
function plainRow(w_: number, k_: number): void {
  const w = w_ | 0, k = +k_;
  for (let i = 0; i < w; i = (i + 1) | 0) ROW[i] = 1 - k * ACC[i]!;
}

// ---------------------------------------------------------------------------------------------
// Image passes

/** Work buffers for one image size, reused across calls (one call at a time per size). */
interface Work {
  /** The raw map (MSGMS + colour) of the current image, S*S. */
  raw: Float64Array;
  /** Channel-summed GMS of a coarser scale, (S/2)^2. */
  low: Float64Array;
  /** Coarse scale s (1 ..), upsampled along the rows: (S/2^s) x S; the columns are done per row. */
  up: Float64Array[];
  /** Pooled images, ping-pong for scale 2, 3, ...: [restored, original] x 2. */
  pool: Float32Array[];
  /** Box filter: the vertical k-sums of the current row, S. */
  col: Float64Array;
  /** Upsampling taps per coarse size L. */
  taps: Map<number, Taps>;
}
const works = new Map<number, Work>();
function work(S: number): Work {
  let w = works.get(S);
  if (!w) {
    const px = S * S, q = Math.max(1, (px >> 2) * 3);
    w = {
      raw: new Float64Array(px),
      low: new Float64Array(Math.max(1, px >> 2)),
      up: [],
      pool: [new Float32Array(q), new Float32Array(q), new Float32Array(q), new Float32Array(q)],
      col: new Float64Array(S),
      taps: new Map(),
    };
    works.set(S, w);
  }
  return w;
}

/**
 * The raw map, row by row and strip by strip: `raw = 1 - k sum_s sum_c gms_s + weight ((a_X -
 * a_Y)^2 + (b_X - b_Y)^2)` (k = 1 / (3 scales)), scale 0 computed here and the coarser scales
 * (`coarse`, already upsampled along the rows) interpolated between two of their rows.
 */
function fullScalePass(y: Float32Array, x: Float32Array, S: number, c: number, weight: number, k: number, coarse: Coarse[], raw: Float64Array): void {
  gmsRows(y, x, S, c, (r, c0, w) => {
    for (const { up, taps } of coarse) addRowMix(up, taps.i0[r]! * S + c0, taps.i1[r]! * S + c0, taps.w[r]!, w);
    if (weight > 0) colourRow(((r + 1) % 3) * RW + 3, w, weight, k);
    else plainRow(w, k);
    raw.set(ROW.subarray(0, w), r * S + c0);
  });
}

/**
 * Walk two L x L x 3 images strip by strip and row by row, the 3-row rings loaded around row r
 * and the row's channel-summed GMS in ACC, then call `row(r, c0, w)` for the strip's w columns.
 */
function gmsRows(y: Float32Array, x: Float32Array, L: number, c: number, row: (r: number, c0: number, w: number) => void): void {
  for (let c0 = 0; c0 < L; c0 += STRIP) {
    const c1 = Math.min(L, c0 + STRIP), w = c1 - c0;
    for (let q = -1; q <= 0; q++) {
      loadRow(y, RING_Y, (q + 1) % 3, q, L, c0, c1);
      loadRow(x, RING_X, (q + 1) % 3, q, L, c0, c1);
    }
    for (let r = 0; r < L; r++) {
      loadRow(y, RING_Y, (r + 2) % 3, r + 1, L, c0, c1);
      loadRow(x, RING_X, (r + 2) % 3, r + 1, L, c0, c1);
      gmsRowSum(r, w, c);
      row(r, c0, w);
    }
  }
}

/** ACC[0 .. w) += (1 - t) up[a ..] + t up[b ..]: the column step of the bilinear upsampling. */
function addRowMix(up: Float64Array, a_: number, b_: number, t_: number, w_: number): void {
  const a = a_ | 0, b = b_ | 0, t = +t_, w = w_ | 0;
  for (let i = 0; i < w; i = (i + 1) | 0) {
    const u = up[(a + i) | 0]!;
    ACC[i] += u + (up[(b + i) | 0]! - u) * t;
  }
}

/** low = channel-summed GMS of two L x L x 3 images (a coarser scale), row by row. */
function coarsePass(y: Float32Array, x: Float32Array, L: number, c: number, low: Float64Array): void {
  gmsRows(y, x, L, c, (r, c0, w) => low.set(ACC.subarray(0, w), r * L + c0));
}

/** 2x2 average pool (valid) of an L x L x 3 image into an (L/2) x (L/2) x 3 one, by row strips. */
function pool2(src: Float32Array, L: number, dst: Float32Array): void {
  const H = L >> 1, R = L * 3;
  for (let r = 0; r < H; r++) {
    for (let c0 = 0; c0 < H; c0 += STRIP) {
      const w = Math.min(STRIP, H - c0), a = 2 * r * R + 6 * c0;
      POOL_IN.set(src.subarray(a, a + 6 * w), 0);
      POOL_IN.set(src.subarray(a + R, a + R + 6 * w), 6 * STRIP);
      poolRow(w);
      dst.set(POOL_OUT.subarray(0, 3 * w), (r * H + c0) * 3);
    }
  }
}

/** POOL_OUT[0 .. 3w) = 2x2 means of the two rows in POOL_IN (2w pixels each). */
function poolRow(w_: number): void {
  const w = w_ | 0;
  for (let i = 0, a = 0, o = 0; i < w; i = (i + 1) | 0, a = (a + 6) | 0, o = (o + 3) | 0) {
    const b = (a + 6 * STRIP) | 0;
    POOL_OUT[o] = (POOL_IN[a]! + POOL_IN[(a + 3) | 0]! + POOL_IN[b]! + POOL_IN[(b + 3) | 0]!) * 0.25;
    POOL_OUT[(o + 1) | 0] = (POOL_IN[(a + 1) | 0]! + POOL_IN[(a + 4) | 0]! + POOL_IN[(b + 1) | 0]! + POOL_IN[(b + 4) | 0]!) * 0.25;
    POOL_OUT[(o + 2) | 0] = (POOL_IN[(a + 2) | 0]! + POOL_IN[(a + 5) | 0]! + POOL_IN[(b + 2) | 0]! + POOL_IN[(b + 5) | 0]!) * 0.25;
  }
}

/** Half-pixel bilinear (torch align_corners=False) source indices and weights from L to S. */
interface Taps { i0: Int32Array; i1: Int32Array; w: Float64Array }
function upsampleTaps(L: number, S: number): Taps {
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

/** A coarser scale's channel-summed GMS upsampled along the rows, and its taps down the columns. */
interface Coarse { up: Float64Array; taps: Taps }

/** The row step of the bilinear upsampling (L x L -> L x S) of `low` into `up`. */
function upsampleRows(low: Float64Array, L_: number, S_: number, t: Taps, up: Float64Array): void {
  const L = L_ | 0, S = S_ | 0;
  if (S === 2 * L && L > 1) {
    // Factor 2 (two scales): outputs 2j and 2j+1 sit 1/4 pixel either side of input j, the same
    // a + (b - a) w as the taps give (w = 0.75 from j-1, 0.25 towards j+1; clamped at the ends).
    for (let r = 0; r < L; r = (r + 1) | 0) {
      const src = (r * L) | 0, dst = (r * S) | 0;
      let a = low[src]!, b = low[(src + 1) | 0]!;
      up[dst] = a;
      up[(dst + 1) | 0] = a + (b - a) * 0.25;
      for (let j = 1, o = (dst + 2) | 0; j < L - 1; j = (j + 1) | 0, o = (o + 2) | 0) {
        const c = low[(src + j + 1) | 0]!;
        up[o] = a + (b - a) * 0.75;
        up[(o + 1) | 0] = b + (c - b) * 0.25;
        a = b;
        b = c;
      }
      up[(dst + S - 2) | 0] = a + (b - a) * 0.75;
      up[(dst + S - 1) | 0] = b;
    }
    return;
  }
  const { i0, i1, w } = t;
  for (let r = 0; r < L; r = (r + 1) | 0) {
    const src = (r * L) | 0, dst = (r * S) | 0;
    for (let o = 0; o < S; o = (o + 1) | 0) {
      const a = low[(src + i0[o]!) | 0]!;
      up[(dst + o) | 0] = a + (low[(src + i1[o]!) | 0]! - a) * w[o]!;
    }
  }
}

/** k x k zero-padded mean of `src` (S x S) into `dst` (float32), via running sums; returns the max. */
function boxMeanInto(src: Float64Array, S_: number, k_: number, col: Float64Array, dst: Float32Array): number {
  const S = S_ | 0, k = k_ | 0, r = (k - 1) >> 1, inv = 1 / (k * k);
  // col[x] = sum over rows y-r .. y+r (inside the image) of src[.][x], updated row by row.
  col.fill(0);
  const r0 = Math.min(r, S);
  for (let yy = 0; yy < r0; yy++) for (let x = 0, o = yy * S; x < S; x = (x + 1) | 0) col[x] += src[(o + x) | 0]!;
  // Horizontal sum of col[x-r .. x+r]: the added column x+r exists for x < S-r, the removed
  // x-r-1 for x > r; three segments so that the inner loops do not test.
  const addEnd = Math.max(0, S - r), subStart = Math.min(S, r + 1);
  const e1 = Math.min(addEnd, subStart), e2 = Math.max(addEnd, subStart);
  let max = -Infinity;
  for (let y = 0; y < S; y++) {
    const add = y + r, sub = y - r - 1;
    if (add < S && sub >= 0) for (let x = 0, a = add * S, b = sub * S; x < S; x = (x + 1) | 0) col[x] += src[(a + x) | 0]! - src[(b + x) | 0]!;
    else if (add < S) for (let x = 0, a = add * S; x < S; x = (x + 1) | 0) col[x] += src[(a + x) | 0]!;
    else if (sub >= 0) for (let x = 0, b = sub * S; x < S; x = (x + 1) | 0) col[x] -= src[(b + x) | 0]!;
    let s = 0;
    for (let x = 0; x < r0; x = (x + 1) | 0) s += col[x]!;
    const row = y * S;
    let x = 0;
    // [0, e1): add only (or neither when the kernel is wider than the image, r >= S).
    for (; x < e1; x = (x + 1) | 0) {
      s += col[(x + r) | 0]!;
      const v = Math.fround(s * inv);
      dst[(row + x) | 0] = v;
      if (v > max) max = v;
    }
    // [e1, e2): add and remove (addEnd > subStart), or neither (kernel wider than the image).
    if (addEnd > subStart) {
      for (; x < e2; x = (x + 1) | 0) {
        s += col[(x + r) | 0]! - col[(x - r - 1) | 0]!;
        const v = Math.fround(s * inv);
        dst[(row + x) | 0] = v;
        if (v > max) max = v;
      }
    } else {
      for (; x < e2; x = (x + 1) | 0) {
        const v = Math.fround(s * inv);
        dst[(row + x) | 0] = v;
        if (v > max) max = v;
      }
    }
    // [e2, S): remove only.
    for (; x < S; x = (x + 1) | 0) {
      s -= col[(x - r - 1) | 0]!;
      const v = Math.fround(s * inv);
      dst[(row + x) | 0] = v;
      if (v > max) max = v;
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
  if (!Number.isInteger(n) || n < 1 || !Number.isInteger(S) || S < 1 || restored.length !== n * px || original.length !== n * px)
    throw new BadInputError('bad_shape', `scoreArrays: expected ${n} images of ${S}x${S}x3 (${n * px} values), got ${restored.length} and ${original.length}`);
  if (S % 2 ** (spec.msgmsScales - 1) !== 0) throw new BadInputError('bad_shape', `scoreArrays: size ${S} is not divisible by 2^${spec.msgmsScales - 1} (MSGMS scales)`);
  const wk = work(S);
  XYZ_M.set(xyzMatrix(spec.colourMode));
  const maps = new Float32Array(n * S * S);
  const scores = new Float32Array(n);
  const raw = wk.raw;
  // mean_c(1 - sum_s gms / scales) = 1 - (sum_s sum_c gms) / (3 scales)
  const norm = 1 / (3 * spec.msgmsScales);
  for (let b = 0; b < n; b++) {
    const y = restored.subarray(b * px, (b + 1) * px);
    const x = original.subarray(b * px, (b + 1) * px);
    // Coarser scales first (2x2 average pools), so that the row pass at full size can add them.
    const coarse: Coarse[] = [];
    let curY = y, curX = x, L = S;
    for (let s = 1; s < spec.msgmsScales; s++) {
      const nY = wk.pool[((s - 1) % 2) * 2]!, nX = wk.pool[((s - 1) % 2) * 2 + 1]!;
      pool2(curY, L, nY);
      pool2(curX, L, nX);
      curY = nY;
      curX = nX;
      L >>= 1;
      coarsePass(curY, curX, L, spec.msgmsC, wk.low);
      let taps = wk.taps.get(L);
      if (!taps) wk.taps.set(L, (taps = upsampleTaps(L, S)));
      const up = (wk.up[s - 1] ??= new Float64Array(L * S));
      upsampleRows(wk.low, L, S, taps, up);
      coarse.push({ up, taps });
    }
    fullScalePass(y, x, S, spec.msgmsC, spec.colourWeight, norm, coarse, raw);
    const dst = maps.subarray(b * S * S, (b + 1) * S * S);
    if (k === 1) {
      let max = -Infinity;
      for (let i = 0; i < S * S; i++) {
        const v = Math.fround(raw[i]!);
        dst[i] = v;
        if (v > max) max = v;
      }
      scores[b] = max;
    } else scores[b] = boxMeanInto(raw, S, k, wk.col, dst);
  }
  return { maps, scores };
}
