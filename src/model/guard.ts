/**
 * The domain guard: can the model judge this frame at all?
 *
 * FAIR restores the high-pass of the grey image, so a frame with little structure (a lens cap, a
 * failed light, an empty conveyor, a test pattern) restores to something close to itself and
 * scores *low*: the reject gate would pass it. The guard compares cheap global statistics of
 * each model-size frame with the range those statistics took on the normal images the model was
 * fitted on (stored in the model artefact) and flags a frame outside that range as
 * `out_of_domain`, naming the feature that failed. Pure math on typed arrays, no I/O.
 *
 * Features (see {@link GUARD_FEATURES}; all on the decoded model-size BGR image in [0, 1], the
 * same `ImageF32` the detector gets), two passes over the pixels:
 *
 * | name | what | catches |
 * |---|---|---|
 * | `mean_b`, `mean_g`, `mean_r` | channel means | black/white/grey/colour frames, exposure, other products |
 * | `std_gray` | global contrast of the grey image | uniform frames, exposure |
 * | `log_laplacian` | log mean abs 4-neighbour Laplacian of grey: high-pass energy, what the UNet sees | uniform frames, blur, missing part, snow |
 * | `log_gradient` | log mean gradient magnitude (central differences) | uniform frames, blur, snow |
 * | `log_sharpness` | `log_laplacian - log_gradient`: fine vs coarse structure, independent of contrast | blur (also when the contrast is unchanged) |
 * | `orient_cos`, `orient_sin` | dominant gradient orientation (structure tensor, doubled angle) | rotated oriented parts and textures |
 * | `clip_high`, `clip_low` | share of pixels with a channel >= 0.99 / <= 0.01 | over- and under-exposure, white/black frames, test patterns |
 * | `tilt_x`, `tilt_y` | least-squares slope of grey across the frame (illumination direction) | rotated parts/cameras (light and shadow move with the image) |
 * | `grid_gray_<r>_<c>` | mean grey in each cell of a 4 x 4 grid | layout: missing part, wrong position, rotation |
 * | `grid_by_<r>_<c>` | mean blue-yellow opponent `b - (r + g) / 2` per cell | a part whose grey matches the background (hazelnut on yellow) |
 * | `grid_rg_<r>_<c>` | mean red-green opponent `r - g` per cell | colour layout |
 *
 * Test (see {@link judgeGuard}): per feature, the excess beyond the learned range [min, max] of
 * the normal images in units of a robust spread (1.4826 x MAD, at least a per-feature floor that
 * keeps a nearly constant feature, e.g. a dark background, from flagging sub-grey-level drift);
 * the frame's in-domain measure is the largest excess, out of domain when it exceeds k. k comes
 * from the fit: 1.5 x the largest leave-one-out excess of the normal images (how far outside
 * the others' range a normal image can fall), at least {@link GUARD_K_MIN}.
 *
 * The frozen-camera check ({@link frameSignature}) compares a 32 x 32 point sample of grey with
 * the previous frame's.
 */
import { BadInputError } from '../errors.js';
import type { ImageF32 } from './types.js';

/** Version of the feature set; artefacts with another version run with the guard off. */
export const GUARD_VERSION = 1;
/** Cells per side of the layout grid. */
export const GUARD_GRID = 4;
/** Smallest k: the measure must exceed the learned range by this many robust SDs. */
export const GUARD_K_MIN = 2.5;
/** k = max(GUARD_K_MIN, GUARD_K_LOO_FACTOR x the largest leave-one-out excess). */
export const GUARD_K_LOO_FACTOR = 1.5;
/** Fewer normal images than this give weak statistics (callers warn). */
export const GUARD_MIN_IMAGES = 20;

const GLOBAL_FEATURES = [
  'mean_b', 'mean_g', 'mean_r', 'std_gray', 'log_laplacian', 'log_gradient', 'log_sharpness',
  'orient_cos', 'orient_sin', 'clip_high', 'clip_low', 'tilt_x', 'tilt_y',
] as const;
const GRID_FAMILIES = ['gray', 'by', 'rg'] as const;

/** Names of the guard features, in the order {@link guardFeatures} returns them. */
export const GUARD_FEATURES: readonly string[] = [
  ...GLOBAL_FEATURES,
  ...GRID_FAMILIES.flatMap((f) => Array.from({ length: GUARD_GRID * GUARD_GRID }, (_, i) => `grid_${f}_${Math.floor(i / GUARD_GRID)}_${i % GUARD_GRID}`)),
];

/**
 * Smallest robust spread per feature, in the feature's units: below it a difference is noise
 * (2.5 grey levels for means, 5 % for the log energies, 2 % of the frame for clipped shares).
 */
function spreadFloor(name: string): number {
  if (name.startsWith('log_')) return 0.05;
  if (name.startsWith('clip_') || name.startsWith('orient_')) return 0.02;
  if (name.startsWith('tilt_') || name === 'std_gray') return 0.005;
  return 0.01;
}

/** Offset inside the logs, so a perfectly flat frame gives a finite (very low) value. */
const LOG_EPS = 1e-4;
/** A channel at or beyond these counts as clipped. */
const CLIP_HIGH = 0.99;
const CLIP_LOW = 0.01;

/** Frames of at least twice this side are binned down to it (or to just above it). */
export const GUARD_SAMPLE_SIDE = 128;

/** Three rows of grey (a ring) for the Laplacian and gradients; grows with the widest image seen. */
let rows = new Float32Array(0);
/** The binned frame of a large image. */
let sampled = new Float32Array(0);

/**
 * The guard features of one image (HWC BGR in [0, 1], at least 3 x 3), in
 * {@link GUARD_FEATURES} order.
 *
 * Cost is bounded whatever the model size: an image of at least 2 x {@link GUARD_SAMPLE_SIDE}
 * px per side is first binned, each `floor(side / 128)`-square block to its mean (a 256 px frame
 * becomes 128 x 128; statistics are fitted at the model size, so on the same grid). Then
 * one pass: each row gives its colour sums per grid cell, clipped pixels and illumination
 * moments, and its grey goes into a ring of three rows; the row above it then gets its Laplacian
 * and gradients from the ring when it is an odd row (half the rows, at full horizontal
 * resolution: the energies are means). docs/faults.md has the measured cost.
 *
 * @example
 * ```ts
 * const f = guardFeatures(await loadModelImage('good/04.png', 256)); // Float64Array(61)
 * ```
 * @throws BadInputError (`wrong_size`) for a buffer that does not hold width x height x 3
 *   values, or an image smaller than 3 x 3.
 */
export function guardFeatures(img: ImageF32): Float64Array {
  if (img.channels !== 3 || img.data.length !== img.width * img.height * 3 || img.width < 3 || img.height < 3) {
    throw new BadInputError('wrong_size', `guardFeatures: need a 3-channel image of at least 3x3, got ${img.width}x${img.height}x${img.channels} with ${img.data.length} values`);
  }
  const stride = Math.max(1, Math.floor(Math.min(img.width, img.height) / GUARD_SAMPLE_SIDE));
  return featuresOf(stride > 1 ? binned(img, stride) : img);
}

/** The mean of each stride x stride block (what a camera binning pixels would give). */
function binned(img: ImageF32, stride: number): ImageF32 {
  const W = Math.floor(img.width / stride), H = Math.floor(img.height / stride);
  if (sampled.length < W * H * 3) sampled = new Float32Array(W * H * 3);
  const out = sampled, d = img.data, row = img.width * 3, inv = 1 / (stride * stride);
  if (stride === 2) {
    // The common case (256 px models), unrolled.
    for (let y = 0, o = 0; y < H; y++) {
      for (let x = 0, j = 2 * y * row; x < W; x++, o += 3, j += 6) {
        const k = j + row;
        out[o] = (d[j]! + d[j + 3]! + d[k]! + d[k + 3]!) * 0.25;
        out[o + 1] = (d[j + 1]! + d[j + 4]! + d[k + 1]! + d[k + 4]!) * 0.25;
        out[o + 2] = (d[j + 2]! + d[j + 5]! + d[k + 2]! + d[k + 5]!) * 0.25;
      }
    }
    return { width: W, height: H, channels: 3, data: out.subarray(0, W * H * 3) };
  }
  for (let y = 0, o = 0; y < H; y++) {
    const top = y * stride * row;
    for (let x = 0; x < W; x++, o += 3) {
      let b = 0, g = 0, r = 0;
      for (let dy = 0, j0 = top + x * stride * 3; dy < stride; dy++, j0 += row) {
        for (let dx = 0, j = j0; dx < stride; dx++, j += 3) {
          b += d[j]!;
          g += d[j + 1]!;
          r += d[j + 2]!;
        }
      }
      out[o] = b * inv;
      out[o + 1] = g * inv;
      out[o + 2] = r * inv;
    }
  }
  return { width: W, height: H, channels: 3, data: out.subarray(0, W * H * 3) };
}

function featuresOf(img: ImageF32): Float64Array {
  const { width: W, height: H, data: d } = img;
  const n = W * H;
  if (rows.length < 3 * W) rows = new Float32Array(3 * W);
  const ring = rows;
  const G = GUARD_GRID;
  // Channel sums per grid cell; grey and the opponent colours are linear in them, so their cell
  // means follow without per-pixel work.
  const cb = new Float64Array(G * G), cgr = new Float64Array(G * G), cr = new Float64Array(G * G), cnt = new Float64Array(G * G);
  let syy = 0, hi = 0, lo = 0, sxv = 0, syv = 0;
  let lap = 0, grad = 0, sxx = 0, syy2 = 0, sxy = 0, m = 0;
  for (let y = 0; y < H; y++) {
    const rowCell = Math.floor((y * G) / H) * G;
    const cur = (y % 3) * W;
    let rowGray = 0;
    for (let c = 0; c < G; c++) {
      const x0 = Math.ceil((c * W) / G), x1 = Math.ceil(((c + 1) * W) / G);
      let sb = 0, sg = 0, sr = 0;
      for (let x = x0, j = 3 * (y * W + x0); x < x1; x++, j += 3) {
        const b = d[j]!, g = d[j + 1]!, r = d[j + 2]!;
        const v = 0.299 * r + 0.587 * g + 0.114 * b;
        ring[cur + x] = v;
        sb += b; sg += g; sr += r;
        syy += v * v;
        sxv += x * v;
        if (b >= CLIP_HIGH || g >= CLIP_HIGH || r >= CLIP_HIGH) hi++;
        if (b <= CLIP_LOW || g <= CLIP_LOW || r <= CLIP_LOW) lo++;
      }
      const cell = rowCell + c;
      cb[cell] += sb; cgr[cell] += sg; cr[cell] += sr; cnt[cell] += x1 - x0;
      rowGray += 0.299 * sr + 0.587 * sg + 0.114 * sb;
    }
    syv += y * rowGray;
    // Odd interior row y - 1: its neighbours above and below are in the ring now.
    if (y < 2 || (y & 1) === 1) continue;
    const up = ((y - 2) % 3) * W, mid = ((y - 1) % 3) * W;
    for (let x = 1; x < W - 1; x++) {
      const v = ring[mid + x]!, l = ring[mid + x - 1]!, rt = ring[mid + x + 1]!, u = ring[up + x]!, b = ring[cur + x]!;
      const gx = rt - l, gy = b - u;
      lap += Math.abs(4 * v - l - rt - u - b);
      grad += Math.sqrt(gx * gx + gy * gy);
      sxx += gx * gx; syy2 += gy * gy; sxy += gx * gy;
    }
    m += W - 2;
  }
  let sb = 0, sg = 0, sr = 0;
  for (let c = 0; c < G * G; c++) {
    sb += cb[c]!; sg += cgr[c]!; sr += cr[c]!;
  }
  const sy = 0.299 * sr + 0.587 * sg + 0.114 * sb;
  const mean = sy / n;
  // Central differences are (right - left) / 2: the factor is applied once here.
  const lapMean = lap / m, gradMean = (0.5 * grad) / m;
  const energy = sxx + syy2;
  const f = new Float64Array(GUARD_FEATURES.length);
  let k = 0;
  f[k++] = sb / n;
  f[k++] = sg / n;
  f[k++] = sr / n;
  f[k++] = Math.sqrt(Math.max(0, syy / n - mean * mean));
  f[k++] = Math.log(lapMean + LOG_EPS);
  f[k++] = Math.log(gradMean + LOG_EPS);
  f[k++] = Math.log(lapMean + LOG_EPS) - Math.log(gradMean + LOG_EPS);
  f[k++] = energy > 0 ? (sxx - syy2) / energy : 0;
  f[k++] = energy > 0 ? (2 * sxy) / energy : 0;
  f[k++] = hi / n;
  f[k++] = lo / n;
  // Least-squares slope of grey over the pixel centres u = (x + 0.5) / W - 0.5 (mean 0,
  // variance (1 - 1/W^2) / 12): mean(v * u) / var(u), in grey units per frame width (height).
  f[k++] = (12 * ((sxv + 0.5 * sy) / W - 0.5 * sy)) / n / (1 - 1 / (W * W));
  f[k++] = (12 * ((syv + 0.5 * sy) / H - 0.5 * sy)) / n / (1 - 1 / (H * H));
  const cells = G * G;
  // A frame smaller than the grid leaves cells empty: they read as the frame's mean colour.
  const cellMean = (c: number, sum: (b: number, g: number, r: number) => number): number =>
    cnt[c]! > 0 ? sum(cb[c]!, cgr[c]!, cr[c]!) / cnt[c]! : sum(sb, sg, sr) / n;
  for (let c = 0; c < cells; c++) f[k++] = cellMean(c, (b, g, r) => 0.299 * r + 0.587 * g + 0.114 * b);
  for (let c = 0; c < cells; c++) f[k++] = cellMean(c, (b, g, r) => b - 0.5 * (r + g));
  for (let c = 0; c < cells; c++) f[k++] = cellMean(c, (b, g, r) => r - g);
  return f;
}

/** What a model has seen: per-feature ranges of its normal images (stored in the artefact as `guard`). */
export interface GuardStats {
  version: typeof GUARD_VERSION;
  /** Model input size the features were computed at. */
  size: number;
  /** Normal images fitted. */
  n: number;
  /** Feature names ({@link GUARD_FEATURES} of this version). */
  features: string[];
  /** Learned range per feature: the smallest and largest value over the normal images. */
  lo: number[];
  hi: number[];
  /** Robust spread per feature (1.4826 x MAD, at least the feature's floor): the unit of the excess. */
  scale: number[];
  median: number[];
  /** Largest leave-one-out excess of a normal image (how far outside the others' range one fell). */
  looMax: number;
  /** Default limit: out of domain when the measure exceeds k. */
  k: number;
  /** Where the statistics came from: `training` (the training images) or `calibrate` (`fairline calibrate`). */
  source: string;
  fittedAt: string;
}

function median(sorted: ArrayLike<number>): number {
  const n = sorted.length;
  const h = n >> 1;
  return n % 2 ? sorted[h]! : 0.5 * (sorted[h - 1]! + sorted[h]!);
}

/**
 * Fit the guard on the features of normal images (rows of {@link guardFeatures}).
 *
 * @example
 * ```ts
 * const stats = fitGuard(goodImages.map(guardFeatures), { size: 256, source: 'training' });
 * ```
 * @throws BadInputError (`too_few_images`) for fewer than 2 rows, (`wrong_size`) for rows of
 *   another length, (`non_finite`) for a NaN/Inf feature.
 */
export function fitGuard(rows: readonly ArrayLike<number>[], opts: { size: number; source: string; now?: () => Date }): GuardStats {
  const n = rows.length;
  const F = GUARD_FEATURES.length;
  if (n < 2) throw new BadInputError('too_few_images', `guard: need at least 2 normal images to learn a range, got ${n}`);
  rows.forEach((r, i) => {
    if (r.length !== F) throw new BadInputError('wrong_size', `guard: feature row ${i} has ${r.length} values, expected ${F}`);
    for (let j = 0; j < F; j++) if (!Number.isFinite(r[j]!)) throw new BadInputError('non_finite', `guard: feature ${GUARD_FEATURES[j]} of image ${i} is ${r[j]}`);
  });
  const lo: number[] = [], hi: number[] = [], scale: number[] = [], med: number[] = [];
  // Leave-one-out range of each feature without image i: the min/max of the others.
  const loo = new Float64Array(n);
  const col = new Float64Array(n);
  for (let j = 0; j < F; j++) {
    for (let i = 0; i < n; i++) col[i] = rows[i]![j]!;
    const sorted = Float64Array.from(col).sort();
    const m = median(sorted);
    const dev = Float64Array.from(sorted, (v) => Math.abs(v - m)).sort();
    const s = Math.max(1.4826 * median(dev), spreadFloor(GUARD_FEATURES[j]!));
    const min = sorted[0]!, min2 = sorted[1]!, max = sorted[n - 1]!, max2 = sorted[n - 2]!;
    lo.push(min); hi.push(max); scale.push(s); med.push(m);
    for (let i = 0; i < n; i++) {
      const v = col[i]!;
      const l = v === min ? min2 : min, h = v === max ? max2 : max;
      const e = Math.max(0, l - v, v - h) / s;
      if (e > loo[i]!) loo[i] = e;
    }
  }
  const looMax = loo.reduce((a, b) => Math.max(a, b), 0);
  return {
    version: GUARD_VERSION,
    size: opts.size,
    n,
    features: [...GUARD_FEATURES],
    lo, hi, scale, median: med,
    looMax,
    k: Math.max(GUARD_K_MIN, Math.round(GUARD_K_LOO_FACTOR * looMax * 100) / 100),
    source: opts.source,
    fittedAt: (opts.now ?? (() => new Date()))().toISOString(),
  };
}

/** The guard's reading of one frame. */
export interface GuardJudgement {
  /** Largest excess of a feature beyond its learned range, in robust spreads (0 = inside every range). */
  measure: number;
  /** The feature that gave `measure` (the one nearest its range's edge when all are inside). */
  feature: string;
  /** That feature's value and learned range. */
  value: number;
  lo: number;
  hi: number;
  /** The limit used. */
  k: number;
  inDomain: boolean;
}

/**
 * Judge a frame's features against the learned ranges: out of domain when the largest excess
 * exceeds `k` (default: the fitted `stats.k`).
 *
 * @example
 * ```ts
 * const j = judgeGuard(stats, guardFeatures(img));
 * if (!j.inDomain) console.log(`${j.feature} = ${j.value} outside [${j.lo}, ${j.hi}] by ${j.measure} SD`);
 * ```
 */
export function judgeGuard(stats: GuardStats, features: ArrayLike<number>, k = stats.k): GuardJudgement {
  let best = -Infinity, at = 0;
  for (let j = 0; j < stats.lo.length; j++) {
    const v = features[j]!;
    // Signed: > 0 outside the range, <= 0 inside (how far from the nearer edge); NaN counts as infinitely far.
    const e = Number.isNaN(v) ? Infinity : Math.max(stats.lo[j]! - v, v - stats.hi[j]!) / stats.scale[j]!;
    if (e > best) {
      best = e;
      at = j;
    }
  }
  const measure = Math.max(0, best);
  return { measure, feature: stats.features[at]!, value: features[at]!, lo: stats.lo[at]!, hi: stats.hi[at]!, k, inDomain: measure <= k };
}

/**
 * Every way `x` is not usable guard statistics for a model of input size `size` (empty when
 * valid). A different {@link GUARD_VERSION} or feature list is reported as `version`, which
 * callers treat as "guard off" rather than a corrupt artefact.
 */
export function guardStatsProblems(x: unknown, size: number): { version?: string; problems: string[] } {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) return { problems: ['guard: not an object'] };
  const o = x as Record<string, unknown>;
  if (o.version !== GUARD_VERSION || !Array.isArray(o.features) || o.features.length !== GUARD_FEATURES.length || o.features.some((f, i) => f !== GUARD_FEATURES[i])) {
    return { version: `guard statistics are version ${JSON.stringify(o.version)} with ${Array.isArray(o.features) ? o.features.length : '?'} features; this fairline uses version ${GUARD_VERSION} with ${GUARD_FEATURES.length}`, problems: [] };
  }
  const p: string[] = [];
  const F = GUARD_FEATURES.length;
  for (const key of ['lo', 'hi', 'scale', 'median'] as const) {
    const a = o[key];
    if (!Array.isArray(a) || a.length !== F || a.some((v) => typeof v !== 'number' || !Number.isFinite(v))) p.push(`guard.${key}: expected ${F} finite numbers`);
  }
  if (p.length === 0) {
    const lo = o.lo as number[], hi = o.hi as number[], scale = o.scale as number[];
    for (let j = 0; j < F; j++) {
      if (!(scale[j]! > 0)) p.push(`guard.scale[${j}] (${GUARD_FEATURES[j]}) must be > 0`);
      if (!(lo[j]! <= hi[j]!)) p.push(`guard.lo[${j}] > guard.hi[${j}] (${GUARD_FEATURES[j]})`);
    }
  }
  if (!(typeof o.k === 'number' && o.k > 0 && Number.isFinite(o.k))) p.push('guard.k: expected a positive number');
  if (!(typeof o.looMax === 'number' && o.looMax >= 0)) p.push('guard.looMax: expected a number >= 0');
  if (!Number.isInteger(o.n) || (o.n as number) < 2) p.push('guard.n: expected an integer >= 2');
  if (o.size !== size) p.push(`guard.size: statistics were computed at ${JSON.stringify(o.size)} px but the model takes ${size} px`);
  if (typeof o.source !== 'string' || typeof o.fittedAt !== 'string') p.push('guard.source / guard.fittedAt: expected strings');
  return { problems: p };
}

/** Points per side of the frozen-camera signature. */
export const SIGNATURE_SIDE = 32;

/**
 * A small fingerprint of a frame for the frozen-camera check: grey at a 32 x 32 grid of points
 * (no averaging, so sensor noise stays visible: two real frames never match exactly).
 */
export function frameSignature(img: ImageF32, side = SIGNATURE_SIDE): Float32Array {
  const { width: W, height: H, data: d } = img;
  const out = new Float32Array(side * side);
  for (let sy = 0; sy < side; sy++) {
    const y = Math.min(H - 1, Math.floor(((sy + 0.5) * H) / side));
    for (let sx = 0; sx < side; sx++) {
      const x = Math.min(W - 1, Math.floor(((sx + 0.5) * W) / side));
      const j = (y * W + x) * 3;
      out[sy * side + sx] = 0.299 * d[j + 2]! + 0.587 * d[j + 1]! + 0.114 * d[j]!;
    }
  }
  return out;
}

/** Mean absolute difference of two signatures (grey units, 0 = identical). */
export function signatureDistance(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return Infinity;
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs(a[i]! - b[i]!);
  return s / a.length;
}
