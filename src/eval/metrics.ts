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

/** Below this many values the built-in comparison sort is as fast as the radix passes. */
const RADIX_MIN = 2048;
/** Radix digits: 11 + 11 + 10 bits (the top digit of a 32-bit key has 10), three passes. */
const RADIX_BITS = 11;
const RADIX = 1 << RADIX_BITS;
const RADIX_MASK = RADIX - 1;

/**
 * Sort finite float32 values ascending, in place, in exactly the order of
 * `Float32Array.prototype.sort` (-0 before +0): an LSD radix sort on the IEEE bits mapped to
 * order-preserving unsigned keys, 3 passes of 11 bits, O(n) - the metrics sort millions of
 * pixel scores (97 maps of 256x256 are 6.4 M), where the built-in O(n log n) sort took most of
 * an evaluation's metric time. Passes where every key has the same digit are skipped (scores in a
 * narrow range share their top bits). NaN must be rejected before (the callers check finiteness).
 * Returns `a`.
 *
 * @example
 * sortF32(Float32Array.of(0.5, -1, 0, -0)); // Float32Array [-1, -0, 0, 0.5]
 */
export function sortF32(a: Float32Array): Float32Array {
  const n = a.length;
  if (n < RADIX_MIN) return a.sort();
  // The same memory as integers (a Float32Array's offset is always 4-byte aligned).
  const bits = new Int32Array(a.buffer, a.byteOffset, n);
  const hist = new Uint32Array(3 * RADIX);
  toKeys(bits, 0, n, hist);
  sortKeys(bits, n, hist);
  return a;
}

/**
 * Float bits -> radix keys in place over `[from, to)`, counting each key's three digits into
 * `hist`. Key: the sign bit flipped for a non-negative value, every bit for a negative one, so
 * unsigned key order is numeric order (-0 = 0x7fffffff just below +0 = 0x80000000, as sort()
 * has it).
 */
function toKeys(bits: Int32Array, from: number, to: number, hist: Uint32Array): void {
  for (let i = from; i < to; i++) {
    const x = bits[i]!;
    const k = x ^ ((x >> 31) | 0x80000000);
    bits[i] = k;
    hist[k & RADIX_MASK]!++;
    hist[RADIX + ((k >>> RADIX_BITS) & RADIX_MASK)]!++;
    hist[2 * RADIX + (k >>> (2 * RADIX_BITS))]!++;
  }
}

/** Sort the first `n` keys of `bits` (digit counts in `hist`) and turn them back into float bits. */
function sortKeys(bits: Int32Array, n: number, hist: Uint32Array): void {
  if (n === 0) return;
  let src: Int32Array = bits;
  let dst: Int32Array = new Int32Array(n);
  const offs = new Uint32Array(RADIX);
  for (let pass = 0; pass < 3; pass++) {
    const h = pass * RADIX;
    const shift = pass * RADIX_BITS;
    // All keys in one bucket: this digit orders nothing.
    if (hist[h + ((src[0]! >>> shift) & RADIX_MASK)] === n) continue;
    let sum = 0;
    for (let d = 0; d < RADIX; d++) {
      offs[d] = sum;
      sum += hist[h + d]!;
    }
    for (let i = 0; i < n; i++) {
      const k = src[i]!;
      dst[offs[(k >>> shift) & RADIX_MASK]!++] = k;
    }
    const t = src;
    src = dst;
    dst = t;
  }
  // Back to the float bits (inverse of the key map), into `bits`.
  for (let i = 0; i < n; i++) {
    const k = src[i]!;
    bits[i] = k ^ (~(k >> 31) | 0x80000000);
  }
}

/**
 * Float32 values gathered for one radix sort: each value is keyed and its digits counted as it
 * comes in (so that pass runs while images are still being scored), leaving the scatter passes
 * for {@link SortBuffer.sorted}. Grows by doubling past `capacity`.
 */
class SortBuffer {
  private f32: Float32Array;
  private bits: Int32Array;
  private readonly hist = new Uint32Array(3 * RADIX);
  /** Values [0, keyed) are radix keys: 0 while the buffer is below RADIX_MIN, else all of them. */
  private keyed = 0;
  private done: Float32Array | undefined;
  n = 0;

  constructor(capacity: number) {
    this.f32 = new Float32Array(Math.max(16, capacity));
    this.bits = new Int32Array(this.f32.buffer);
  }

  /** Append `values[idx[i]]` for i < count. */
  pushAt(values: ArrayLike<number>, idx: Int32Array, count: number): void {
    if (this.done) throw new Error('SortBuffer: push after sorted()');
    const n0 = this.n;
    if (n0 + count > this.f32.length) {
      const grown = new Float32Array(Math.max(2 * this.f32.length, n0 + count));
      grown.set(this.f32.subarray(0, n0));
      this.f32 = grown;
      this.bits = new Int32Array(grown.buffer);
    }
    const f = this.f32;
    for (let i = 0; i < count; i++) f[n0 + i] = values[idx[i]!]!;
    this.n = n0 + count;
    if (this.n >= RADIX_MIN) {
      toKeys(this.bits, this.keyed, this.n, this.hist);
      this.keyed = this.n;
    }
  }

  /** The values, ascending in sort() order; sorted once, then cached. */
  sorted(): Float32Array {
    if (this.done) return this.done;
    const out = this.f32.subarray(0, this.n);
    if (this.keyed === 0) out.sort();
    else sortKeys(this.bits, this.n, this.hist);
    this.done = out;
    return out;
  }
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
  sortF32(pos);
  sortF32(neg);
  return { pos, neg };
}

const NO_VALUES = new Float32Array(0);

/**
 * Mann-Whitney AUC from ascending-sorted positives and negatives:
 * P(pos > neg) + 0.5 P(pos == neg). One merged sweep, O(nPos + nNeg). The negatives may come as
 * two sorted arrays (`neg2`: pixel AUROC's soft mask edges beside the OK pixels); the counts,
 * and so every floating-point operation, are those of their merged array.
 */
function aucSorted(pos: Float32Array, neg: Float32Array, what: string, neg2: Float32Array = NO_VALUES): number {
  const nNeg = neg.length + neg2.length;
  if (pos.length === 0 || nNeg === 0)
    throw new BadInputError('single_class', `${what}: needs both classes (${pos.length} positive, ${nNeg} negative); AUROC is undefined`);
  let j = 0, j2 = 0; // negatives strictly below the current positive value: j + j2
  let acc = 0; // sum over positives of (#neg < v + 0.5 #neg == v), exact in float64 up to 2^53
  let i = 0;
  while (i < pos.length) {
    const v = pos[i]!;
    let run = 0;
    while (i < pos.length && pos[i] === v) { i++; run++; }
    while (j < neg.length && neg[j]! < v) j++;
    while (j2 < neg2.length && neg2[j2]! < v) j2++;
    let eq = 0;
    for (let k = j; k < neg.length && neg[k] === v; k++) eq++;
    for (let k = j2; k < neg2.length && neg2[k] === v; k++) eq++;
    acc += run * (j + j2 + 0.5 * eq);
  }
  return acc / pos.length / nNeg;
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
 * Exact, with ties; O(P) time (radix sort) and one float32 copy of the scores.
 */
export function pixelAuroc(maps: MapSet, masks: MaskSet, opts: MapOptions = {}): number {
  const list = pairs(maps, masks, opts, 'pixelAuroc');
  const acc = new PixelMetrics({ maskMax: opts.maskMax, what: 'pixelAuroc', capacity: list.reduce((a, p) => a + p.map.length, 0) });
  list.forEach((p, i) => acc.add(i, p.map, p.mask, p.width, p.height));
  return acc.pixelAuroc();
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
 * Cost: O(P) for the (radix) sorts plus O(components x thresholds); memory one float32 per pixel.
 */
export function proCurve(maps: MapSet, masks: MaskSet, opts: MapOptions & { thresholds?: number } = {}): ProCurve {
  const numThresholds = checkThresholds(opts.thresholds);
  const list = pairs(maps, masks, opts, 'proCurve');
  // PRO binarises at mask > 0 whatever maskMax says.
  const acc = new PixelMetrics({ what: 'proCurve', capacity: list.reduce((a, p) => a + p.map.length, 0) });
  list.forEach((p, i) => acc.add(i, p.map, p.mask, p.width, p.height));
  return acc.proCurve(numThresholds);
}

function checkThresholds(t: number | undefined): number {
  const numThresholds = t ?? 5000;
  if (!Number.isInteger(numThresholds) || numThresholds < 1) throw new ConfigError(`proCurve: thresholds must be a positive integer, got ${numThresholds}`);
  return numThresholds;
}

/** Options of {@link PixelMetrics}. */
export interface PixelMetricsOptions {
  /** Mask value of a fully anomalous pixel (default 1), for pixel AUROC's positives. */
  maskMax?: number;
  /** Pixels expected over all images (memory is reserved up front; it grows past that). */
  capacity?: number;
  /** Name in the error messages of {@link PixelMetrics.add} (default 'pixelMetrics'). */
  what?: string;
}

/**
 * Pixel AUROC and the PRO curve (AUPRO) of a set of images, gathered image by image: `add` sorts
 * each pixel into its class (OK = mask 0, soft edge, full anomaly), labels the image's GT
 * components and does the first radix pass on the OK scores, so an evaluation can feed each
 * image while the model scores the next ones; the two metrics then share one sort of the OK
 * pixels (pixel AUROC's negatives are the OK pixels plus the soft edges). The results are those
 * of {@link pixelAuroc} and {@link aupro} on the same images, bit for bit, whatever order the
 * images come in: components are pooled in image-index order, as the official code does.
 *
 * @example
 * const pm = new PixelMetrics({ capacity: n * 256 * 256 });
 * pm.add(0, map0, mask0, 256, 256); // ... one call per image, any order
 * const pAuroc = pm.pixelAuroc(), auPro = pm.aupro();
 */
export class PixelMetrics {
  private readonly full: number;
  private readonly what: string;
  /** mask <= 0 (or NaN): AUPRO's OK pixels; pixel AUROC negatives. */
  private readonly ok: SortBuffer;
  /** 0 < mask < maskMax: component pixels; pixel AUROC negatives. */
  private readonly edge = new SortBuffer(1024);
  /** mask >= maskMax: component pixels; pixel AUROC positives. */
  private readonly pos = new SortBuffer(1024);
  /** Each image's GT components (their sorted scores), by image index. */
  private readonly comps = new Map<number, Float32Array[]>();
  private readonly seen = new Set<number>();
  private labels = new Int32Array(0);
  private idxOk = new Int32Array(0);
  private idxEdge = new Int32Array(0);
  private idxPos = new Int32Array(0);

  constructor(opts: PixelMetricsOptions = {}) {
    this.full = maskMaxOf(opts);
    this.what = opts.what ?? 'pixelMetrics';
    this.ok = new SortBuffer(opts.capacity ?? 1 << 16);
  }

  /** Images added so far. */
  get images(): number {
    return this.seen.size;
  }

  /**
   * Add image `index` (its place among the images: orders the pooled components): anomaly map
   * and mask of `width` x `height`, row-major.
   * @throws BadInputError `bad_shape` (sizes differ, index added twice), `bad_score` (NaN/inf score)
   */
  add(index: number, map: ArrayLike<number>, mask: ArrayLike<number>, width: number, height: number): void {
    const n = width * height;
    if (map.length !== n || mask.length !== n) throw new BadInputError('bad_shape', `${this.what}: image ${index}: map has ${map.length} values, mask ${mask.length}, expected ${width}x${height}`);
    if (this.seen.has(index)) throw new BadInputError('bad_shape', `${this.what}: image ${index} added twice`);
    if (this.idxOk.length < n) {
      this.idxOk = new Int32Array(n);
      this.idxEdge = new Int32Array(n);
      this.idxPos = new Int32Array(n);
    }
    const { idxOk, idxEdge, idxPos, full } = this;
    let nOk = 0, nEdge = 0, nPos = 0;
    for (let i = 0; i < n; i++) {
      checkFinite(map[i]!, this.what, i);
      const m = mask[i]!;
      if (m >= full) idxPos[nPos++] = i;
      else if (m > 0) idxEdge[nEdge++] = i;
      else idxOk[nOk++] = i;
    }
    this.seen.add(index);
    this.ok.pushAt(map, idxOk, nOk);
    this.edge.pushAt(map, idxEdge, nEdge);
    this.pos.pushAt(map, idxPos, nPos);
    if (nEdge + nPos === 0) return;
    // GT components: 8-connected regions of mask > 0, each one's scores sorted.
    if (this.labels.length < n) this.labels = new Int32Array(n);
    const lab = label8(mask, width, height, this.labels.subarray(0, n));
    const sizes = new Int32Array(lab.count + 1);
    for (let i = 0; i < n; i++) sizes[lab.labels[i]!]!++;
    const mine: Float32Array[] = [];
    for (let k = 1; k <= lab.count; k++) mine.push(new Float32Array(sizes[k]!));
    const fill = new Int32Array(lab.count + 1);
    for (let i = 0; i < n; i++) {
      const l = lab.labels[i]!;
      if (l !== 0) mine[l - 1]![fill[l]!++] = map[i]!;
    }
    for (const c of mine) sortF32(c);
    this.comps.set(index, mine);
  }

  /**
   * Pixel AUROC of the images added (see {@link pixelAuroc}).
   * @throws BadInputError `single_class` without positive or without negative pixels
   */
  pixelAuroc(): number {
    return aucSorted(this.pos.sorted(), this.ok.sorted(), 'pixelAuroc', this.edge.sorted());
  }

  /**
   * The PRO curve of the images added (see {@link proCurve}).
   * @throws BadInputError `no_components`, `no_ok_pixels`; ConfigError for a bad `numThresholds`
   */
  proCurve(numThresholds = 5000): ProCurve {
    checkThresholds(numThresholds);
    const comps: Float32Array[] = [];
    for (const i of [...this.comps.keys()].sort((a, b) => a - b)) comps.push(...this.comps.get(i)!);
    const nComp = comps.length;
    if (nComp === 0) throw new BadInputError('no_components', 'proCurve: no ground-truth components (no anomalous pixels); PRO is undefined');
    const nOk = this.ok.n;
    if (nOk === 0) throw new BadInputError('no_ok_pixels', 'proCurve: every pixel is anomalous; FPR is undefined');
    const okSorted = this.ok.sorted();

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

  /** AUPRO of the images added (see {@link aupro}). */
  aupro(opts: { fprLimit?: number; thresholds?: number } = {}): number {
    const limit = checkFprLimit(opts.fprLimit);
    const curve = this.proCurve(opts.thresholds ?? 5000);
    return trapezoid(curve.fprs, curve.pros, limit) / limit;
  }
}

function checkFprLimit(l: number | undefined): number {
  const limit = l ?? 0.3;
  if (!(limit > 0 && limit <= 1)) throw new ConfigError(`aupro: fprLimit must be in (0, 1], got ${limit}`);
  return limit;
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
  const limit = checkFprLimit(opts.fprLimit);
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
