import { Observable, Subject, asyncScheduler, type OperatorFunction, type SchedulerLike, type Subscription } from 'rxjs';
import { BadInputError } from '../errors.js';
import { frameKey, type Frame } from '../streams/frame.js';
import type { Verdict } from '../verdict.js';
import { failSafeVerdict, type VerdictContext } from './verdict.js';

export interface FailSafeOptions {
  /** Time allowed from the frame's start (see `clock`) to its verdict, ms. `frame.deadlineTs` overrides it. */
  deadlineMs: number;
  /** Decision published when the deadline passes (default `reject`: an uninspected part is not passed). */
  verdict?: 'reject' | 'pass';
  /**
   * What happens to the real verdict if it arrives after the fail-safe one:
   * `suppress` (default): it is not emitted (`onLate` still sees it), so each frame has exactly one
   * verdict and a reject gate never acts twice; `mark`: it is emitted with `late: true`, for audit
   * trails that want the model's opinion too (the gate must ignore `late` verdicts).
   */
  late?: 'suppress' | 'mark';
  /** Called with every late real verdict (count it: `fairline_errors_total{stage="deadline",reason="late"}`). */
  onLate?: (v: Verdict) => void;
  /**
   * Where the deadline counts from: `capture` (default) = `frame.captureTs`, the right thing on a
   * live line whose clocks agree; `arrival` = when the frame entered this operator (replays of old
   * recordings, or sources whose clock is not synchronised).
   */
  clock?: 'capture' | 'arrival';
  /** Verdict fields (line, station, model, clock for decidedTs). */
  context: VerdictContext;
  /** Scheduler for the deadline timers (default `asyncScheduler`). Its `now()` is the clock. */
  scheduler?: SchedulerLike;
  /** How many expired frames to remember for recognising late verdicts (default 10000). */
  lateMemory?: number;
}

/**
 * Guarantee a verdict per frame by its deadline. Wraps the inspection graph `inner`: every frame
 * entering is registered with a deadline (`frame.deadlineTs`, or start + `deadlineMs`); if `inner`
 * has not produced its verdict by then, a fail-safe verdict is emitted (`verdict` = the configured
 * decision, `reason: 'deadline'`, `failSafe: true`, score null). The late real verdict is then
 * suppressed or marked (`late` option). When `inner` completes or errors, frames still without a
 * verdict get a fail-safe verdict with reason `no_verdict` first, so no frame is ever lost.
 * Verdicts are matched to frames by `camera` + `seq`.
 *
 * @example
 * ```ts
 * frames$.pipe(
 *   failSafe(inspectCore, { deadlineMs: 500, verdict: 'reject', context: { line: 'L1', station: 'S3', model: id } }),
 * ).subscribe(publish);
 * ```
 */
export function failSafe(inner: OperatorFunction<Frame, Verdict>, opts: FailSafeOptions): OperatorFunction<Frame, Verdict> {
  if (!(opts.deadlineMs >= 0)) throw new BadInputError('bad_option', `failSafe: deadlineMs must be >= 0, got ${opts.deadlineMs}`);
  const kind = opts.verdict ?? 'reject';
  const lateMode = opts.late ?? 'suppress';
  const scheduler = opts.scheduler ?? asyncScheduler;
  const lateMemory = opts.lateMemory ?? 10000;
  const now = (): number => scheduler.now();
  // The fail-safe verdict's decidedTs should come from the same clock as the timers.
  const ctx: VerdictContext = { ...opts.context, now: opts.context.now ?? now };
  // The model can change while frames flow (src/runtime/models.ts): name the one serving now.
  Object.defineProperty(ctx, 'model', { get: () => opts.context.model, enumerable: true });

  return (source) =>
    new Observable<Verdict>((subscriber) => {
      const pending = new Map<string, { frame: Frame; timer: Subscription }>();
      const expired = new Set<string>();
      const frames = new Subject<Frame>();

      const expire = (key: string, reason: string): void => {
        const p = pending.get(key);
        if (!p) return;
        p.timer.unsubscribe();
        pending.delete(key);
        expired.add(key);
        if (expired.size > lateMemory) expired.delete(expired.values().next().value!);
        subscriber.next(failSafeVerdict(p.frame, kind, reason, ctx));
      };
      const expireAll = (): void => {
        for (const key of [...pending.keys()]) expire(key, 'no_verdict');
      };

      const innerSub = inner(frames).subscribe({
        next: (v) => {
          const key = frameKey({ sourceId: v.camera, seq: v.seq });
          const p = pending.get(key);
          if (p) {
            p.timer.unsubscribe();
            pending.delete(key);
            subscriber.next(v);
          } else if (expired.delete(key)) {
            opts.onLate?.(v);
            if (lateMode === 'mark') subscriber.next({ ...v, late: true });
          } else {
            subscriber.next(v); // not a frame we registered (e.g. a duplicate seq): pass it on
          }
        },
        error: (err: unknown) => {
          expireAll();
          subscriber.error(err);
        },
        complete: () => {
          expireAll();
          subscriber.complete();
        },
      });

      const upstream = source.subscribe({
        next: (frame) => {
          const key = frameKey(frame);
          if (!pending.has(key)) {
            const start = opts.clock === 'arrival' ? now() : frame.captureTs;
            const deadline = frame.deadlineTs ?? start + opts.deadlineMs;
            const timer = scheduler.schedule(() => expire(key, 'deadline'), Math.max(0, deadline - now()));
            pending.set(key, { frame, timer });
          }
          // Register before forwarding: a synchronous inner graph may answer at once.
          frames.next(frame);
        },
        error: (err: unknown) => frames.error(err),
        complete: () => frames.complete(),
      });

      return () => {
        upstream.unsubscribe();
        innerSub.unsubscribe();
        for (const p of pending.values()) p.timer.unsubscribe();
        pending.clear();
        expired.clear();
      };
    });
}
