import { defer, map, type OperatorFunction } from 'rxjs';
import { BadInputError, ConfigError } from '../errors.js';
import { frameSignature, guardFeatures, judgeGuard, signatureDistance, type GuardStats } from '../model/guard.js';
import { failed, ok, type DecodedFrame, type Frame, type FrameGuard, type Result } from '../streams/frame.js';
import type { GuardAction } from '../verdict.js';

/** How a camera's frames are guarded (config `guard`, station-wide and per camera). */
export interface GuardPolicy {
  /** A flagged frame: `reject` it (verdict reject, reason = the guard's status), turn it into an `error` verdict, or `pass` it on to the model's decision (the verdict still carries `guard`). */
  action: GuardAction;
  /** Overrides the model's limit `k` for the in-domain measure. */
  k?: number;
  /** This many consecutive (near-)identical frames make a frozen camera (`stale_frame`); 0 = off. */
  staleFrames: number;
  /** Two frames are near-identical when the mean absolute grey difference of their signatures is at most this (grey in [0, 1]). */
  staleTolerance: number;
}

export interface GuardFramesOptions {
  /** The model's guard statistics; without them only the frozen-camera check runs. */
  stats?: GuardStats;
  /** One policy, or one per frame (e.g. per camera). */
  policy: GuardPolicy | ((frame: Frame) => GuardPolicy);
  /** Called for every flagged frame (metrics: `fairline_frames_guarded_total{camera,reason}`). */
  onFlag?: (frame: Frame, guard: FrameGuard) => void;
  /** Called with each frame's guard time in seconds. */
  onDuration?: (seconds: number) => void;
  /** Clock in ms for durations (default `performance.now`). */
  now?: () => number;
}

function fmt(x: number): string {
  return Number.isFinite(x) ? x.toPrecision(4) : String(x);
}

/**
 * The domain guard on decoded frames: can the model judge this frame at all? Each frame gets
 * a `guard` reading: its in-domain measure against the model's statistics
 * (src/model/guard.ts; `out_of_domain` when it exceeds k) and, per source, a frozen-camera check
 * (`stale_frame` from the `staleFrames`-th consecutive near-identical frame on). A flagged frame
 * with action `error` becomes a `Failed` result (stage `guard`, code = the status); with
 * `reject` or `pass` it goes on to the model with its reading, and the threshold stage rejects
 * it (`reject`) or leaves the decision to the score (`pass`). `Failed` results pass untouched.
 * Synchronous: order and timing are those of the input.
 *
 * @example
 * ```ts
 * decoded$.pipe(guardFrames({ stats: model.guard, policy: { action: 'reject', staleFrames: 5, staleTolerance: 1 / 1024 } }));
 * ```
 * @throws ConfigError for a fixed policy with a bad action, k, staleFrames or tolerance.
 */
export function guardFrames(opts: GuardFramesOptions): OperatorFunction<Result<DecodedFrame>, Result<DecodedFrame>> {
  if (typeof opts.policy !== 'function') checkPolicy(opts.policy);
  const now = opts.now ?? (() => performance.now());
  return (source) =>
    defer(() => {
      // Per subscription: the previous frame's signature and run length, per source.
      const last = new Map<string, { signature: Float32Array; repeats: number }>();
      return source.pipe(
        map((r): Result<DecodedFrame> => {
          if (!r.ok) return r;
          const t0 = now();
          const { frame, image } = r.value;
          const policy = typeof opts.policy === 'function' ? opts.policy(frame) : opts.policy;
          // Nothing to check (no statistics, no frozen-camera check): no reading either.
          if (!opts.stats && policy.staleFrames === 0) return r;
          const guard: FrameGuard = { status: 'ok', action: policy.action };
          if (policy.staleFrames > 0) {
            const signature = frameSignature(image);
            const prev = last.get(frame.sourceId);
            const repeats = prev && signatureDistance(signature, prev.signature) <= policy.staleTolerance ? prev.repeats + 1 : 1;
            last.set(frame.sourceId, { signature, repeats });
            if (repeats > 1) guard.repeats = repeats;
            if (repeats >= policy.staleFrames) {
              guard.status = 'stale_frame';
              guard.detail = `frozen camera: ${repeats} consecutive identical frames (limit ${policy.staleFrames})`;
            }
          }
          if (opts.stats) {
            const j = judgeGuard(opts.stats, guardFeatures(image), policy.k ?? opts.stats.k);
            guard.measure = j.measure;
            guard.feature = j.feature;
            guard.k = j.k;
            if (!j.inDomain && guard.status === 'ok') {
              guard.status = 'out_of_domain';
              guard.detail = `out of domain: ${j.feature} = ${fmt(j.value)} lies ${fmt(j.measure)} robust SD outside the range of the model's normal images [${fmt(j.lo)}, ${fmt(j.hi)}] (k ${fmt(j.k)})`;
            }
          }
          opts.onDuration?.((now() - t0) / 1000);
          if (guard.status === 'ok') return ok({ ...r.value, guard });
          opts.onFlag?.(frame, guard);
          if (policy.action === 'error') return failed(frame, new BadInputError(guard.status, guard.detail ?? guard.status), 'guard');
          return ok({ ...r.value, guard });
        }),
      );
    });
}

/** @throws ConfigError naming the bad field of a guard policy. */
export function checkPolicy(p: GuardPolicy): void {
  if (p.action !== 'reject' && p.action !== 'error' && p.action !== 'pass') throw new ConfigError(`guard.action must be 'reject', 'error' or 'pass', got ${JSON.stringify(p.action)}`);
  if (p.k !== undefined && !(Number.isFinite(p.k) && p.k > 0)) throw new ConfigError(`guard.k must be a number > 0, got ${p.k}`);
  if (!(Number.isInteger(p.staleFrames) && (p.staleFrames === 0 || p.staleFrames >= 2))) throw new ConfigError(`guard.staleFrames must be 0 (off) or an integer >= 2, got ${p.staleFrames}`);
  if (!(p.staleTolerance >= 0 && p.staleTolerance <= 1)) throw new ConfigError(`guard.staleTolerance must be in [0, 1], got ${p.staleTolerance}`);
}
