/**
 * Threshold calibration: turning held-out anomaly scores into the reject threshold.
 *
 * Convention everywhere in fairline: **reject if `score >= threshold`** (see
 * src/operators/threshold.ts). Pure functions on plain arrays, no I/O.
 */
import { BadInputError } from './errors.js';

export interface ScoreStats {
  n: number;
  mean: number;
  /** Sample standard deviation (n - 1 in the denominator; 0 for n = 1). */
  std: number;
  min: number;
  max: number;
  /** Quantiles by linear interpolation (NumPy's default 'linear' method). */
  p50: number;
  p90: number;
  p95: number;
  p99: number;
  p999: number;
}

function checkScores(scores: ArrayLike<number>, what = 'scores'): number[] {
  if (scores.length === 0) throw new BadInputError('empty_scores', `${what}: need at least one score`);
  const out = Array.from(scores);
  const bad = out.findIndex((s) => !Number.isFinite(s));
  if (bad >= 0) throw new BadInputError('bad_score', `${what}[${bad}] = ${out[bad]} is not finite`);
  return out;
}

/**
 * The q-quantile (0..1) of ascending-sorted values, linear interpolation between order
 * statistics at position q*(n-1) (NumPy `np.quantile(..., method='linear')`).
 */
export function quantileSorted(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) throw new BadInputError('empty_scores', 'quantile of no values');
  if (!(q >= 0 && q <= 1)) throw new BadInputError('bad_option', `quantile q must be in [0,1], got ${q}`);
  const pos = q * (sorted.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

/** Summary statistics of a score set (for the model artefact, reports and drift checks). */
export function scoreStats(scores: ArrayLike<number>): ScoreStats {
  const s = checkScores(scores).sort((a, b) => a - b);
  const n = s.length;
  const mean = s.reduce((a, b) => a + b, 0) / n;
  const std = n > 1 ? Math.sqrt(s.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1)) : 0;
  const q = (p: number) => quantileSorted(s, p);
  return { n, mean, std, min: s[0]!, max: s[n - 1]!, p50: q(0.5), p90: q(0.9), p95: q(0.95), p99: q(0.99), p999: q(0.999) };
}

/** Fraction of `scores` that would be rejected at `threshold` (score >= threshold). */
export function rejectRate(scores: ArrayLike<number>, threshold: number): number {
  const s = checkScores(scores);
  return s.filter((v) => v >= threshold).length / s.length;
}

export interface NormalOnlyCalibration {
  method: 'normal-only';
  threshold: number;
  /** The requested maximum false-reject rate. */
  target: number;
  /** False-reject rate on the calibration scores at `threshold` (<= target). */
  falseRejectRate: number;
  /** Calibration scores that are rejected at `threshold` (= floor(target * n) unless ties). */
  rejected: number;
  n: number;
}

/**
 * Threshold from good (normal) held-out images only: no defective samples needed, which is how
 * a new line starts. With n scores sorted ascending s_1..s_n and k = floor(target * n) (the most
 * good images allowed to be rejected), the threshold lies strictly above the order statistic
 * s_(n-k) — the empirical (1 - target) quantile — so with `score >= threshold` rejects, at most k
 * of the n calibration images are rejected. Placement: the midpoint between s_(n-k) and s_(n-k+1)
 * when they differ (a margin on both sides for unseen data); otherwise (ties, or k = 0 with no
 * higher score) the next float64 above s_(n-k). With k = 0 (target < 1/n) the threshold is just
 * above the highest normal score: collect more normal images to calibrate smaller rates.
 *
 * @example
 * ```ts
 * const { threshold } = calibrateNormalOnly(goodScores, 0.01); // <= 1% of good parts rejected
 * ```
 * @throws BadInputError on no scores, non-finite scores, or a target outside [0, 1).
 */
export function calibrateNormalOnly(scores: ArrayLike<number>, targetFalseRejectRate: number): NormalOnlyCalibration {
  if (!(targetFalseRejectRate >= 0 && targetFalseRejectRate < 1)) throw new BadInputError('bad_option', `targetFalseRejectRate must be in [0, 1), got ${targetFalseRejectRate}`);
  const s = checkScores(scores).sort((a, b) => a - b);
  const n = s.length;
  // The epsilon absorbs binary rounding of target * n (0.29 * 100 = 28.999999999999996 must give 29).
  const k = Math.min(n - 1, Math.floor(targetFalseRejectRate * n + 1e-9));
  const below = s[n - k - 1]!; // must pass
  const above = k > 0 ? s[n - k]! : undefined; // first that may be rejected
  const threshold = above !== undefined && above > below ? below + (above - below) / 2 : nextUp(below);
  const rejected = s.filter((v) => v >= threshold).length;
  return { method: 'normal-only', threshold, target: targetFalseRejectRate, falseRejectRate: rejected / n, rejected, n };
}

export interface F1Calibration {
  method: 'f1';
  threshold: number;
  f1: number;
  precision: number;
  recall: number;
  /** Good images rejected at the threshold / good images. */
  falseRejectRate: number;
}

/**
 * Threshold maximising F1 on labelled held-out scores (label 1 = defective = positive = reject).
 * The threshold is one of the scores (the lowest score that is still rejected), matching
 * `score >= threshold`; among equal F1 the higher threshold (fewer false rejects) wins.
 *
 * @throws BadInputError on length mismatch, non-finite scores or no defective sample.
 */
export function calibrateF1(scores: ArrayLike<number>, labels: ArrayLike<number | boolean>): F1Calibration {
  const s = checkScores(scores);
  if (labels.length !== s.length) throw new BadInputError('length_mismatch', `${s.length} scores but ${labels.length} labels`);
  const y = Array.from(labels, (l) => (l ? 1 : 0));
  const nPos = y.reduce<number>((a, b) => a + b, 0);
  const nNeg = s.length - nPos;
  if (nPos === 0) throw new BadInputError('single_class', 'calibrateF1 needs at least one defective (label 1) score; use calibrateNormalOnly');
  const order = s.map((_, i) => i).sort((a, b) => s[b]! - s[a]!);
  let tp = 0, fp = 0;
  let best: F1Calibration | undefined;
  for (let i = 0; i < order.length; ) {
    const t = s[order[i]!]!;
    // Take all scores equal to t together: a threshold cannot split ties.
    while (i < order.length && s[order[i]!] === t) {
      if (y[order[i]!]) tp++;
      else fp++;
      i++;
    }
    const f1 = (2 * tp) / (2 * tp + fp + (nPos - tp));
    if (!best || f1 > best.f1) best = { method: 'f1', threshold: t, f1, precision: tp / (tp + fp), recall: tp / nPos, falseRejectRate: nNeg ? fp / nNeg : 0 };
  }
  return best!;
}

/** The smallest float64 greater than x (Math.nextUp). */
export function nextUp(x: number): number {
  if (Number.isNaN(x) || x === Infinity) return x;
  if (x === 0) return Number.MIN_VALUE;
  const buf = new DataView(new ArrayBuffer(8));
  buf.setFloat64(0, x);
  const bits = buf.getBigUint64(0);
  buf.setBigUint64(0, x > 0 ? bits + 1n : bits - 1n);
  return buf.getFloat64(0);
}

/** What a sensible reject threshold is, for error messages. */
export const THRESHOLD_RANGE =
  "scores are >= 0 (0 = perfectly restored), so a threshold must be > 0; normally it is the one 'fairline calibrate' writes into the model, " +
  'just above the scores of good parts (model.json trainScoreStats shows the training images\' scores)';

/**
 * Significant digits to print a score and a threshold with so that the printed numbers agree
 * with the decision (reject when score >= threshold): the fewest, at least `minDigits`, at which
 * the two differ when the numbers differ. Rounding is monotonic, so once the printed values
 * differ their order is the true order.
 *
 * @example
 * const p = decisionDigits(0.98841312, 0.98841349); // 7
 * `${(0.98841312).toPrecision(p)} < ${(0.98841349).toPrecision(p)}`; // '0.9884131 < 0.9884135'
 */
export function decisionDigits(score: number, threshold: number, minDigits = 4): number {
  if (!Number.isFinite(score) || !Number.isFinite(threshold) || score === threshold) return minDigits;
  for (let p = minDigits; p < 17; p++) if (Number(score.toPrecision(p)) !== Number(threshold.toPrecision(p))) return p;
  return 17;
}

/**
 * Why a threshold would reject nearly everything, judged by the normal training images' scores
 * (`trainScoreStats` of the model): undefined when it is above the lowest of them.
 */
export function thresholdBelowNormal(threshold: number, train: Pick<ScoreStats, 'min' | 'mean' | 'n'> | undefined): string | undefined {
  if (!train || !(train.n > 0) || !(threshold < train.min)) return undefined;
  return `threshold ${threshold} is below every normal training score the model has seen (${train.n} images, lowest ${train.min.toPrecision(4)}, mean ${train.mean.toPrecision(4)}): nearly every part will be rejected`;
}

/** The score range a model's normalised scores are anchored to (stored in the artefact as `scoreRange`). */
export interface ScoreRange {
  /** Lowest score of the normal images: normScore 0. */
  min: number;
  /** Highest score seen (normal, or defective with a labelled calibration): normScore 1 when above the threshold. */
  max: number;
  /** Images it came from. */
  n: number;
  /** `training` (the training images) or `calibrate` (`fairline calibrate`). */
  source: string;
}

/**
 * The normalised score: in [0, 1] with the threshold at exactly 0.5 (anomalib's convention), so
 * dashboards compare models without knowing their raw scales. Min-max, piecewise around the
 * threshold t: `0.5 * (s - min) / (t - min)` below t, `0.5 + 0.5 * (s - t) / (max - t)` from t
 * on, clipped to [0, 1]. `max` is the range's when it lies above t; otherwise (the usual case for
 * a normal-only calibration, whose highest score is just below t) the span above t mirrors the
 * span below: `max = 2t - min`. Without a range `min` is 0 (FAIR scores are >= 0).
 * `normScore >= 0.5` exactly when `score >= threshold`.
 *
 * @example
 * ```ts
 * normaliseScore(0.42, 0.57, { min: 0.27, max: 0.57 }); // 0.25
 * ```
 */
export function normaliseScore(score: number, threshold: number, range?: Pick<ScoreRange, 'min' | 'max'>): number {
  let min = range?.min ?? 0;
  let low = threshold - min;
  if (!(low > 0)) {
    // A threshold at or below every normal score: anchor the span on the threshold's own size.
    low = Math.abs(threshold) || 1;
    min = threshold - low;
  }
  const max = range?.max;
  const high = max !== undefined && max > threshold ? max - threshold : low;
  if (score >= threshold) return Math.min(1, 0.5 + (0.5 * (score - threshold)) / high);
  const v = Math.max(0, (0.5 * (score - min)) / low);
  // Rounding must not lift a passing score onto the reject side of 0.5.
  return v < 0.5 ? v : 0.49999999999999994;
}
