/**
 * Evaluation metrics of the official FAIR evaluation (docs/fair-reference.md §7) and the
 * reject-gate operating points. Pure functions on typed arrays; accumulation in float64.
 *
 * Conventions:
 * - Scores are "higher = more anomalous". A gate **rejects when `score >= threshold`**; every
 *   threshold returned here is meant for exactly that comparison.
 * - Labels: any nonzero / true value is an anomaly (positive), 0 / false is good.
 * - Ground-truth masks are in [0, 1] (resized uint8 mask / 255, as the official loader makes
 *   them; pass `maskMax: 255` for raw uint8 masks). The two official binarisations differ:
 *   P-AUROC counts a pixel positive only if its mask value is the full `maskMax` (numpy's
 *   `.astype(uint8)` truncation), AUPRO uses every nonzero pixel.
 *
 * Memory: nothing is O(pixels x thresholds). P-AUROC keeps one float32 copy of the scores
 * (split into positive / negative pixels) and sorts it; AUPRO keeps the OK-pixel scores and the
 * component-pixel scores (one float32 copy in total) plus a component id per pixel of one image.
 */
import { BadInputError, ConfigError } from '../errors.js';

/** Labels: 0/false = good, anything else = anomalous. */
export type Labels = ArrayLike<number> | ArrayLike<boolean>;

/** Anomaly maps: one array per image, or all images concatenated row-major. */
export type MapSet = Float32Array | readonly Float32Array[];
/** Ground-truth masks, same layout as the maps, values in [0, maskMax]. */
export type MaskSet = ArrayLike<number> | readonly ArrayLike<number>[];

/** Geometry and mask scale of a map set. */
export interface MapOptions {
  /** Image width. Required for a concatenated map set; per-image arrays default to square. */
  width?: number;
  /** Image height (default: width, or square). */
  height?: number;
  /** Mask value of a fully anomalous pixel (1 for masks in [0,1], 255 for raw uint8). */
  maskMax?: number;
}

// ---------------------------------------------------------------------------------------------
// Helpers

function isPositive(v: number | boolean): boolean {
  return typeof v === 'boolean' ? v : v !== 0;
}

function checkFinite(x: number, what: string, i: number): void {
  if (!Number.isFinite(x)) throw new BadInputError('bad_score', `${what}: non-finite score ${x} at index ${i}`);
}

/** Split scores into sorted positive and negative arrays (float32, ascending). */
function splitSorted(scores: ArrayLike<number>, labels: Labels, what: string): { pos: Float32Array; neg: Float32Array } {
  if (scores.length !== labels.length) throw new BadInputError('bad_shape', `${what}: ${scores.length} scores but ${labels.length} labels`);
  let nPos = 0;
  for (let i = 0; i < labels.length; i++) if (isPositive(labels[i]!)) nPos++;
  const pos = new Float32Array(nPos);
  const neg = new Float32Array(scores.length - nPos);
  let p = 0, q = 0;
  for (let i = 0; i < scores.length; i++) {
    const s = scores[i]!;
    checkFinite(s, what, i);
    if (isPositive(labels[i]!)) pos[p++] = s;
    else neg[q++] = s;
  }
  pos.sort();
  neg.sort();
  return { pos, neg };
}

/**
 * Mann-Whitney AUC from ascending-sorted positives and negatives:
 * P(pos > neg) + 0.5 P(pos == neg). One merged sweep, O(nPos + nNeg).
 */
function aucSorted(pos: Float32Array, neg: Float32Array, what: string): number {
  if (pos.length === 0 || neg.length === 0)
    throw new BadInputError('single_class', `${what}: needs both classes (${pos.length} positive, ${neg.length} negative); AUROC is undefined`);
  let below = 0; // negatives strictly below the current positive value
  let j = 0;
  let acc = 0; // sum over positives of (#neg < v + 0.5 #neg == v), exact in float64 up to 2^53
  let i = 0;
  while (i < pos.length) {
    const v = pos[i]!;
    let run = 0;
    while (i < pos.length && pos[i] === v) { i++; run++; }
    while (j < neg.length && neg[j]! < v) { j++; below++; }
    let eq = 0;
    let k = j;
    while (k < neg.length && neg[k] === v) { k++; eq++; }
    acc += run * (below + 0.5 * eq);
  }
  return acc / pos.length / neg.length;
}

function imageGeometry(len: number, opts: MapOptions, what: string): { width: number; height: number } {
  if (opts.width !== undefined) {
    const height = opts.height ?? opts.width;
    if (!Number.isInteger(opts.width) || !Number.isInteger(height) || opts.width < 1 || height < 1)
      throw new ConfigError(`${what}: width/height must be positive integers`);
    return { width: opts.width, height };
  }
  const side = Math.round(Math.sqrt(len));
  if (side * side !== len) throw new ConfigError(`${what}: a map of ${len} values is not square; pass width and height`);
  return { width: side, height: side };
}

interface ImagePair { map: Float32Array; mask: ArrayLike<number>; width: number; height: number }

/** Normalise the two accepted layouts into per-image (map, mask) views without copying maps. */
function pairs(maps: MapSet, masks: MaskSet, opts: MapOptions, what: string): ImagePair[] {
  const out: ImagePair[] = [];
  if (maps instanceof Float32Array) {
    if (opts.width === undefined) throw new ConfigError(`${what}: a concatenated map set needs options.width (and height)`);
    const { width, height } = imageGeometry(0, opts, what);
    const px = width * height;
    if (maps.length % px !== 0) throw new BadInputError('bad_shape', `${what}: ${maps.length} values is not a multiple of ${width}x${height}`);
    if (isMaskList(masks) || masks.length !== maps.length) throw new BadInputError('bad_shape', `${what}: masks must be one array of ${maps.length} values like the maps`);
    for (let i = 0; i < maps.length / px; i++)
      out.push({ map: maps.subarray(i * px, (i + 1) * px), mask: sliceLike(masks, i * px, px), width, height });
    return out;
  }
  if (!isMaskList(masks) || masks.length !== maps.length) throw new BadInputError('bad_shape', `${what}: ${maps.length} maps need as many masks`);
  for (let i = 0; i < maps.length; i++) {
    const map = maps[i]!;
    const mask = masks[i]!;
    if (mask.length !== map.length) throw new BadInputError('bad_shape', `${what}: image ${i}: map has ${map.length} values, mask ${mask.length}`);
    const { width, height } = imageGeometry(map.length, opts, what);
    if (width * height !== map.length) throw new BadInputError('bad_shape', `${what}: image ${i}: ${map.length} values is not ${width}x${height}`);
    out.push({ map, mask, width, height });
  }
  return out;
}

function isMaskList(m: MaskSet): m is readonly ArrayLike<number>[] {
  return Array.isArray(m) && (m.length === 0 || typeof m[0] !== 'number');
}

/** A zero-copy view for typed arrays; a plain array is sliced. */
function sliceLike(a: ArrayLike<number>, start: number, len: number): ArrayLike<number> {
  if (ArrayBuffer.isView(a)) return (a as unknown as Float32Array).subarray(start, start + len);
  return Array.prototype.slice.call(a, start, start + len) as number[];
}

function maskMaxOf(opts: MapOptions): number {
  const m = opts.maskMax ?? 1;
  if (!(m > 0)) throw new ConfigError(`maskMax must be > 0, got ${m}`);
  return m;
}

// ---------------------------------------------------------------------------------------------
// AUROC

/**
 * Image AUROC: tie-aware Mann-Whitney statistic, equal to sklearn's `roc_auc_score`.
 * @param scores image scores (higher = more anomalous)
 * @param labels 0 = good, nonzero = anomalous
 * @throws BadInputError `single_class` when one class is missing, `bad_score` on NaN/inf
 */
export function imageAuroc(scores: ArrayLike<number>, labels: Labels): number {
  const { pos, neg } = splitSorted(scores, labels, 'imageAuroc');
  return aucSorted(pos, neg, 'imageAuroc');
}

/**
 * Pixel AUROC over all pixels of all images (official: `roc_auc_score(gt.astype(uint8), map)`).
 * A pixel is positive only when its mask value is the full `maskMax` (soft edges count as good).
 * Exact, with ties; O(P log P) time and one float32 copy of the scores.
 */
export function pixelAuroc(maps: MapSet, masks: MaskSet, opts: MapOptions = {}): number {
  const list = pairs(maps, masks, opts, 'pixelAuroc');
  const full = maskMaxOf(opts);
  let total = 0, nPos = 0;
  for (const { mask } of list) {
    total += mask.length;
    for (let i = 0; i < mask.length; i++) if (mask[i]! >= full) nPos++;
  }
  const pos = new Float32Array(nPos);
  const neg = new Float32Array(total - nPos);
  let p = 0, q = 0;
  for (const { map, mask } of list) {
    for (let i = 0; i < map.length; i++) {
      const s = map[i]!;
      checkFinite(s, 'pixelAuroc', i);
      if (mask[i]! >= full) pos[p++] = s;
      else neg[q++] = s;
    }
  }
  pos.sort();
  neg.sort();
  return aucSorted(pos, neg, 'pixelAuroc');
}

// ---------------------------------------------------------------------------------------------
// AUPRO

/**
 * 8-connected component labelling of `mask > 0` (scipy.ndimage.label with a 3x3 structure).
 * Labels are 1..n in raster order of each component's first pixel, like scipy; 0 = background.
 * Two-pass union-find; `labels` is reused across images.
 */
export function label8(mask: ArrayLike<number>, width: number, height: number, labels = new Int32Array(width * height)): { labels: Int32Array; count: number } {
  const n = width * height;
  if (mask.length !== n) throw new BadInputError('bad_shape', `label8: mask has ${mask.length} values, expected ${width}x${height}`);
  const parent: number[] = [0];
  const find = (x: number): number => {
    while (parent[x] !== x) { parent[x] = parent[parent[x]!]!; x = parent[x]!; }
    return x;
  };
  const union = (a: number, b: number): number => {
    const ra = find(a), rb = find(b);
    if (ra === rb) return ra;
    // Keep the smaller (earlier) root so final labels follow raster order.
    if (ra < rb) { parent[rb] = ra; return ra; }
    parent[ra] = rb;
    return rb;
  };
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = y * width + x;
      if (!(mask[i]! > 0)) { labels[i] = 0; continue; }
      // Already-visited neighbours: W, NW, N, NE (merging their sets when they differ).
      let l = 0;
      let lj = x > 0 ? labels[i - 1]! : 0;
      if (lj !== 0) l = find(lj);
      if (y > 0) {
        const up = i - width;
        lj = x > 0 ? labels[up - 1]! : 0;
        if (lj !== 0) l = l === 0 ? find(lj) : union(l, lj);
        lj = labels[up]!;
        if (lj !== 0) l = l === 0 ? find(lj) : union(l, lj);
        lj = x + 1 < width ? labels[up + 1]! : 0;
        if (lj !== 0) l = l === 0 ? find(lj) : union(l, lj);
      }
      if (l === 0) { l = parent.length; parent.push(l); }
      labels[i] = l;
    }
  }
  // Compact roots to 1..count in order of first appearance (= raster order of first pixel,
  // because a root is always the smallest provisional label of its set).
  const remap = new Int32Array(parent.length);
  let count = 0;
  for (let k = 1; k < parent.length; k++) {
    const r = find(k);
    if (r === k) remap[k] = ++count;
  }
  for (let i = 0; i < n; i++) if (labels[i] !== 0) labels[i] = remap[find(labels[i]!)]!;
  return { labels, count };
}

/** PRO curve in ascending FPR order, as returned by the official `compute_pro`. */
export interface ProCurve {
  /** Ascending; the official (1, 1) point is last. */
  fprs: Float64Array;
  pros: Float64Array;
  /** Threshold of each point (the point at fpr 1 has -Infinity). Pixel counts as anomalous if score > threshold. */
  thresholds: Float64Array;
  /** Number of ground-truth components pooled over the category. */
  components: number;
  /** Number of OK (label 0) pixels. */
  okPixels: number;
}

/**
 * The official PRO curve (`pro_curve_util.compute_pro`): GT components are the 8-connected
 * components of `mask > 0` per image; thresholds are `S[p]` for the sorted OK-pixel scores `S`
 * at `p = floor(linspace(0, M-1, numThresholds))`; `fpr = 1 - (p+1)/M`; `pro` = mean over all
 * components of the fraction of the component's pixels scoring `> t`. (1, 1) is prepended and
 * the result reversed to ascending FPR.
 *
 * Cost: O(P log P) for the sorts plus O(components x thresholds); memory one float32 per pixel.
 */
export function proCurve(maps: MapSet, masks: MaskSet, opts: MapOptions & { thresholds?: number } = {}): ProCurve {
  const numThresholds = opts.thresholds ?? 5000;
  if (!Number.isInteger(numThresholds) || numThresholds < 1) throw new ConfigError(`proCurve: thresholds must be a positive integer, got ${numThresholds}`);
  const list = pairs(maps, masks, opts, 'proCurve');
  let total = 0;
  for (const { map } of list) total += map.length;

  // One pass per image: label it, copy its OK scores, and gather each component's scores into
  // its own array (memory: one float32 per pixel overall, one int32 label per pixel of one image).
  const ok = new Float32Array(total);
  const comps: Float32Array[] = [];
  let nOk = 0;
  let labels = new Int32Array(0);
  for (const { map, mask, width, height } of list) {
    if (labels.length < map.length) labels = new Int32Array(map.length);
    const lab = label8(mask, width, height, labels.subarray(0, map.length));
    const sizes = new Int32Array(lab.count + 1);
    for (let i = 0; i < map.length; i++) {
      const s = map[i]!;
      checkFinite(s, 'proCurve', i);
      const l = lab.labels[i]!;
      if (l === 0) ok[nOk++] = s;
      else sizes[l]!++;
    }
    if (lab.count === 0) continue;
    const mine: Float32Array[] = [];
    for (let k = 1; k <= lab.count; k++) mine.push(new Float32Array(sizes[k]!));
    const fill = new Int32Array(lab.count + 1);
    for (let i = 0; i < map.length; i++) {
      const l = lab.labels[i]!;
      if (l !== 0) mine[l - 1]![fill[l]!++] = map[i]!;
    }
    for (const c of mine) comps.push(c.sort());
  }
  const nComp = comps.length;
  if (nComp === 0) throw new BadInputError('no_components', 'proCurve: no ground-truth components (no anomalous pixels); PRO is undefined');
  if (nOk === 0) throw new BadInputError('no_ok_pixels', 'proCurve: every pixel is anomalous; FPR is undefined');
  const okSorted = ok.subarray(0, nOk).sort();

  // Sweep thresholds in increasing order with one pointer per component (the official
  // GroundTruthComponent.compute_overlap): pointer = #scores <= threshold.
  const ptr = new Int32Array(nComp);
  const fprs = new Float64Array(numThresholds + 1);
  const pros = new Float64Array(numThresholds + 1);
  const thr = new Float64Array(numThresholds + 1);
  // numpy linspace(0, M-1, num): step = (M-1)/(num-1), y_i = i*step, last = M-1 exactly, then
  // floor (astype(int)). Same float64 operations, same positions.
  const step = numThresholds > 1 ? (nOk - 1) / (numThresholds - 1) : 0;
  for (let i = 0; i < numThresholds; i++) {
    const pos = i === numThresholds - 1 ? nOk - 1 : Math.floor(i * step);
    const t = okSorted[pos]!;
    let pro = 0;
    for (let c = 0; c < nComp; c++) {
      const cs = comps[c]!;
      let k = ptr[c]!;
      while (k < cs.length && cs[k]! <= t) k++;
      ptr[c] = k;
      pro += 1.0 - k / cs.length;
    }
    pro /= nComp;
    // Stored reversed: index numThresholds - 1 - i of the ascending arrays.
    fprs[numThresholds - 1 - i] = 1.0 - (pos + 1) / nOk;
    pros[numThresholds - 1 - i] = pro;
    thr[numThresholds - 1 - i] = t;
  }
  fprs[numThresholds] = 1.0;
  pros[numThresholds] = 1.0;
  thr[numThresholds] = -Infinity;
  return { fprs, pros, thresholds: thr, components: nComp, okPixels: nOk };
}

/**
 * Area under y(x) by the trapezoidal rule up to `xMax` (official `generic_util.trapezoid`):
 * `x` ascending (duplicates allowed); when `xMax` is not a sample, the last segment is closed at
 * `xMax` with y linearly interpolated between its neighbours.
 */
export function trapezoid(x: ArrayLike<number>, y: ArrayLike<number>, xMax?: number): number {
  if (x.length !== y.length) throw new BadInputError('bad_shape', `trapezoid: ${x.length} x values, ${y.length} y values`);
  let n = x.length;
  let correction = 0;
  if (xMax !== undefined) {
    let present = false;
    for (let i = 0; i < n; i++) if (x[i] === xMax) { present = true; break; }
    if (!present) {
      // bisect_right
      let lo = 0, hi = n;
      while (lo < hi) { const mid = (lo + hi) >>> 1; if (xMax < x[mid]!) hi = mid; else lo = mid + 1; }
      const ins = lo;
      if (!(ins > 0 && ins < n)) throw new BadInputError('bad_range', `trapezoid: xMax ${xMax} is outside [${x[0]}, ${x[n - 1]}]`);
      const yInterp = y[ins - 1]! + ((y[ins]! - y[ins - 1]!) * (xMax - x[ins - 1]!)) / (x[ins]! - x[ins - 1]!);
      correction = 0.5 * (yInterp + y[ins - 1]!) * (xMax - x[ins - 1]!);
    }
    // x is sorted, so "x <= xMax" is a prefix.
    let m = 0;
    while (m < n && x[m]! <= xMax) m++;
    n = m;
  }
  let area = 0;
  for (let i = 1; i < n; i++) area += 0.5 * (y[i]! + y[i - 1]!) * (x[i]! - x[i - 1]!);
  return area + correction;
}

/**
 * AUPRO: area under the PRO curve up to `fprLimit`, divided by `fprLimit` (official `test.py`:
 * `trapezoid(fprs, pros, x_max=0.3) / 0.3`, 5000 thresholds). 1.0 = perfect.
 * @example
 * const a = aupro(maps, masks, { fprLimit: 0.3 }); // maps: Float32Array[] of 256*256
 */
export function aupro(maps: MapSet, masks: MaskSet, opts: MapOptions & { fprLimit?: number; thresholds?: number } = {}): number {
  const limit = opts.fprLimit ?? 0.3;
  if (!(limit > 0 && limit <= 1)) throw new ConfigError(`aupro: fprLimit must be in (0, 1], got ${limit}`);
  const curve = proCurve(maps, masks, opts);
  return trapezoid(curve.fprs, curve.pros, limit) / limit;
}

// ---------------------------------------------------------------------------------------------
// ROC and reject-gate operating points

/** ROC curve: one point per distinct score, thresholds descending (reject if score >= t). */
export interface RocCurve {
  /** Descending; the first is +Infinity (reject nothing). */
  thresholds: Float64Array;
  fpr: Float64Array;
  tpr: Float64Array;
  /** True / false positives at each threshold (counts). */
  tp: Float64Array;
  fp: Float64Array;
  positives: number;
  negatives: number;
}

/**
 * Full ROC curve (no dropped points): for each distinct score t, descending,
 * tpr = P(score >= t | anomalous), fpr = P(score >= t | good).
 */
export function rocCurve(scores: ArrayLike<number>, labels: Labels): RocCurve {
  if (scores.length !== labels.length) throw new BadInputError('bad_shape', `rocCurve: ${scores.length} scores but ${labels.length} labels`);
  const n = scores.length;
  const s = new Float64Array(n);
  const order = new Uint32Array(n);
  let positives = 0;
  for (let i = 0; i < n; i++) {
    s[i] = scores[i]!;
    checkFinite(s[i]!, 'rocCurve', i);
    order[i] = i;
    if (isPositive(labels[i]!)) positives++;
  }
  const negatives = n - positives;
  order.sort((a, b) => s[b]! - s[a]!);
  const th: number[] = [Infinity], tps: number[] = [0], fps: number[] = [0];
  let tp = 0, fp = 0;
  for (let i = 0; i < n;) {
    const v = s[order[i]!]!;
    while (i < n && s[order[i]!] === v) {
      if (isPositive(labels[order[i]!]!)) tp++;
      else fp++;
      i++;
    }
    th.push(v); tps.push(tp); fps.push(fp);
  }
  const m = th.length;
  const fpr = new Float64Array(m), tpr = new Float64Array(m);
  for (let i = 0; i < m; i++) {
    fpr[i] = negatives > 0 ? fps[i]! / negatives : NaN;
    tpr[i] = positives > 0 ? tps[i]! / positives : NaN;
  }
  return { thresholds: Float64Array.from(th), fpr, tpr, tp: Float64Array.from(tps), fp: Float64Array.from(fps), positives, negatives };
}

/** An operating point of the reject gate: reject when `score >= threshold`. */
export interface OperatingPoint {
  threshold: number;
  tpr: number;
  fpr: number;
  precision: number;
  f1: number;
}

function pointAt(roc: RocCurve, i: number): OperatingPoint {
  const tp = roc.tp[i]!, fp = roc.fp[i]!;
  const fn = roc.positives - tp;
  const precision = tp + fp > 0 ? tp / (tp + fp) : 1;
  const f1 = tp > 0 ? (2 * tp) / (2 * tp + fp + fn) : 0;
  return { threshold: roc.thresholds[i]!, tpr: roc.tpr[i]!, fpr: roc.fpr[i]!, precision, f1 };
}

/**
 * Largest F1 over all thresholds (anomalib's F1Max / F1AdaptiveThreshold). Among thresholds with
 * the same F1 the highest one (fewest rejects) is returned. The threshold is an observed score.
 * @throws BadInputError `single_class` if there are no anomalous samples
 */
export function f1Max(scores: ArrayLike<number>, labels: Labels): OperatingPoint {
  const roc = rocCurve(scores, labels);
  if (roc.positives === 0) throw new BadInputError('single_class', 'f1Max: no anomalous samples; F1 is undefined');
  let best = 1;
  let bestF1 = -1;
  for (let i = 1; i < roc.thresholds.length; i++) {
    const f1 = pointAt(roc, i).f1;
    if (f1 > bestF1) { bestF1 = f1; best = i; }
  }
  return pointAt(roc, best);
}

/**
 * The operating point with the largest TPR whose FPR is <= `maxFpr` (e.g. 0.01, 0.001); among
 * equal TPR the lowest FPR (highest threshold). If no observed score qualifies, the point
 * "reject nothing" is returned with `threshold = +Infinity`, tpr = fpr = 0.
 * @throws BadInputError `single_class` if a class is missing
 */
export function tprAtFpr(scores: ArrayLike<number>, labels: Labels, maxFpr: number): OperatingPoint {
  if (!(maxFpr >= 0 && maxFpr <= 1)) throw new ConfigError(`tprAtFpr: maxFpr must be in [0, 1], got ${maxFpr}`);
  const roc = rocCurve(scores, labels);
  if (roc.positives === 0 || roc.negatives === 0) throw new BadInputError('single_class', `tprAtFpr: needs both classes (${roc.positives} anomalous, ${roc.negatives} good)`);
  let best = 0;
  // FPR is non-decreasing along descending thresholds: stop at the first point past the limit.
  for (let i = 1; i < roc.thresholds.length && roc.fpr[i]! <= maxFpr; i++) if (roc.tpr[i]! > roc.tpr[best]!) best = i;
  return pointAt(roc, best);
}
