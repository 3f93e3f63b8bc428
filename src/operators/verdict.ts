import { map, type OperatorFunction } from 'rxjs';
import { asFairlineError, type FairlineError } from '../errors.js';
import type { Frame, JudgedFrame, Result, Stage } from '../streams/frame.js';
import { normaliseScore, type ScoreRange } from '../thresholds.js';
import { VERDICT_SCHEMA, defectRegions, type RegionOptions, type Verdict, type VerdictKind } from '../verdict.js';

/** What a verdict needs beyond the frame. */
export interface VerdictContext {
  line: string;
  station: string;
  /** Model id written into every verdict. */
  model: string;
  /** Clock in ms epoch for `decidedTs` (default `Date.now`; `scheduler.now` in virtual-time tests). */
  now?: () => number;
  /** Region extraction for reject verdicts; `false` to skip it. */
  regions?: RegionOptions | false;
  /** Anchors of `normScore` (the model's `scoreRange`; without it the lower anchor is 0). */
  scoreRange?: Pick<ScoreRange, 'min' | 'max'>;
}

/** The fields every verdict shares, from the frame and the context. */
function base(frame: Frame, ctx: VerdictContext): Omit<Verdict, 'score' | 'threshold' | 'verdict' | 'regions'> {
  const decidedTs = (ctx.now ?? Date.now)();
  const v: Omit<Verdict, 'score' | 'threshold' | 'verdict' | 'regions'> = {
    schema: VERDICT_SCHEMA,
    line: ctx.line,
    station: ctx.station,
    camera: frame.sourceId,
    seq: frame.seq,
    captureTs: frame.captureTs,
    decidedTs,
    latencyMs: decidedTs - frame.captureTs,
    model: ctx.model,
  };
  if (frame.path !== undefined) v.path = frame.path;
  if (frame.partId !== undefined) v.partId = frame.partId;
  if (frame.label !== undefined) v.label = frame.label;
  return v;
}

/** The `error` verdict of a frame that failed at `stage`. */
export function errorVerdict(frame: Frame, error: FairlineError, stage: Stage, ctx: VerdictContext): Verdict {
  return { ...base(frame, ctx), score: null, threshold: null, verdict: 'error', reason: error.code, stage, detail: error.message.slice(0, 200), regions: [] };
}

/** A fail-safe verdict (`kind` = the configured fail-safe decision) for a frame the model did not decide in time. */
export function failSafeVerdict(frame: Frame, kind: Exclude<VerdictKind, 'error'>, reason: string, ctx: VerdictContext): Verdict {
  return { ...base(frame, ctx), score: null, threshold: null, verdict: kind, reason, failSafe: true, regions: [] };
}

/**
 * The verdict of a judged frame, with `normScore`; regions are extracted for rejects that carry
 * an anomaly map. A frame the domain guard flagged carries `guard`, and when the guard decided
 * the reject, `reason` (its status) and `detail` (which feature, how far outside).
 */
export function judgedVerdict(j: JudgedFrame, ctx: VerdictContext): Verdict {
  const regions =
    j.decision === 'reject' && j.map && ctx.regions !== false
      ? defectRegions(j.map, j.image.width, j.threshold, j.sourceWidth, j.sourceHeight, ctx.regions ?? {})
      : [];
  const v: Verdict = { ...base(j.frame, ctx), ...(j.model !== undefined ? { model: j.model } : {}), score: j.score, threshold: j.threshold, normScore: normaliseScore(j.score, j.threshold, ctx.scoreRange), verdict: j.decision, regions };
  if (j.guard) {
    const { detail, ...guard } = j.guard;
    v.guard = guard;
    if (guard.status !== 'ok' && guard.action === 'reject') {
      v.reason = guard.status;
      if (detail) v.detail = detail.slice(0, 200);
    }
  }
  return v;
}

/**
 * Turn results into verdicts: judged frames become `pass`/`reject` (with defect regions),
 * `Failed` results become `error` verdicts whose `reason` is the error code (`bad_frame`,
 * `dropped`, `inference_failed`, ...) and `stage` the failing stage. A verdict that cannot be
 * built (e.g. an anomaly map of the wrong size) becomes an `error` verdict with stage `verdict`.
 *
 * @example
 * ```ts
 * judged$.pipe(toVerdicts({ line: 'L1', station: 'S3', model: 'hazelnut-2f9c' }))
 *   .subscribe((v) => nats.publish(verdictSubject(v.line, v.camera), JSON.stringify(v)));
 * ```
 */
export function toVerdicts(ctx: VerdictContext): OperatorFunction<Result<JudgedFrame>, Verdict> {
  return map((r) => {
    if (!r.ok) return errorVerdict(r.frame, r.error, r.stage, ctx);
    try {
      return judgedVerdict(r.value, ctx);
    } catch (err) {
      return errorVerdict(r.value.frame, asFairlineError(err), 'verdict', ctx);
    }
  });
}
