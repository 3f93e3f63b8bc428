import { map, type OperatorFunction } from 'rxjs';
import { BadInputError, ConfigError, asFairlineError } from '../errors.js';
import { failed, ok, type Frame, type JudgedFrame, type Result, type ScoredFrame } from '../streams/frame.js';

/** A fixed threshold, or one per frame (e.g. per camera). */
export type ThresholdSpec = number | ((frame: Frame) => number);

/**
 * Decide pass/reject per frame: **reject if `score >= threshold`** (the same convention as
 * `calibrateNormalOnly` in src/thresholds.ts), or if the domain guard flagged the frame with
 * action `reject` (src/operators/guard.ts): the model cannot judge it, so its score must not
 * open the gate. A non-finite score fails the frame (stage `threshold`, code `bad_score`) rather
 * than passing it, because NaN compares false with everything and would otherwise slip through
 * as a pass.
 *
 * @example
 * ```ts
 * scored$.pipe(thresholdScores(0.42)); // Result<JudgedFrame>, decision 'pass' | 'reject'
 * scored$.pipe(thresholdScores((f) => perCamera[f.sourceId] ?? 0.42));
 * ```
 */
export function thresholdScores(threshold: ThresholdSpec): OperatorFunction<Result<ScoredFrame>, Result<JudgedFrame>> {
  if (typeof threshold === 'number' && !Number.isFinite(threshold)) throw new ConfigError(`thresholdScores: threshold must be finite, got ${threshold}`);
  return map((r) => {
    if (!r.ok) return r;
    const s = r.value;
    try {
      // A swappable model brings the threshold of the model that scored the frame.
      const t = s.threshold ?? (typeof threshold === 'number' ? threshold : threshold(s.frame));
      if (!Number.isFinite(t)) throw new ConfigError(`threshold for ${s.frame.sourceId} is ${t}`);
      if (!Number.isFinite(s.score)) throw new BadInputError('bad_score', `frame ${s.frame.sourceId}#${s.frame.seq}: score ${s.score} is not finite`);
      const guardRejects = s.guard !== undefined && s.guard.status !== 'ok' && s.guard.action === 'reject';
      return ok<JudgedFrame>({ ...s, threshold: t, decision: s.score >= t || guardRejects ? 'reject' : 'pass' });
    } catch (err) {
      return failed(s.frame, asFairlineError(err), 'threshold');
    }
  });
}
