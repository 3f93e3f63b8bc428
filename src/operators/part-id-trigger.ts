import { Observable, asyncScheduler, type ObservableInput, type OperatorFunction, type SchedulerLike, type Subscription, from } from 'rxjs';
import type { Frame } from '../streams/frame.js';

/** A part passing the line's sensor: the PLC's id for it and when (ms epoch, the cameras' clock). */
export interface PartTrigger {
  partId: string;
  ts: number;
}

export interface MatchTriggersOptions {
  /** A trigger belongs to a frame when |trigger.ts - frame.captureTs| <= windowMs (default 50). */
  windowMs?: number;
  /**
   * How long a frame waits for its trigger at most (default 2 x windowMs): triggers travel over
   * the network and may arrive after the frame. The wait ends early once a trigger later than
   * the window has arrived (triggers come in time order), so a matched frame rarely waits long.
   */
  holdMs?: number;
  scheduler?: SchedulerLike;
  /** A frame left without a part id (no trigger in its window). */
  onUnmatchedFrame?: (frame: Frame) => void;
  /** A trigger no frame took (expired, or left at the end). */
  onUnmatchedTrigger?: (t: PartTrigger) => void;
  onMatched?: (frame: Frame, t: PartTrigger) => void;
}

/**
 * Give frames the part ids of a trigger stream: each frame takes the nearest trigger within
 * ±`windowMs` of its capture time that no earlier frame took and no waiting frame is nearer to; frames stay in order, wait at
 * most `holdMs` for their trigger, and a frame without one goes on without `partId` (absent
 * stays absent). Unmatched frames and triggers are reported. Triggers that end (or fail) simply
 * stop matching; the frames go on.
 *
 * @example
 * ```ts
 * frames$.pipe(matchTriggers(natsTriggers(nc, 'L1', 'cam1'), { windowMs: 40, onUnmatchedFrame: (f) => unmatched.inc() }));
 * // frames with partId, e.g. { sourceId: 'cam1', seq: 42, captureTs: 1700000000040, partId: 'P-17', ... }
 * ```
 */
export function matchTriggers(triggers: ObservableInput<PartTrigger>, opts: MatchTriggersOptions = {}): OperatorFunction<Frame, Frame> {
  const windowMs = opts.windowMs ?? 50;
  const holdMs = opts.holdMs ?? 2 * windowMs;
  const scheduler = opts.scheduler ?? asyncScheduler;
  return (source) =>
    new Observable<Frame>((subscriber) => {
      const pending: Array<{ frame: Frame; expired: boolean; timer: Subscription }> = [];
      let waiting: PartTrigger[] = []; // unused triggers, in arrival order
      let latestTs = -Infinity;
      let done = false;

      const expireTriggers = (before: number): void => {
        const keep: PartTrigger[] = [];
        for (const t of waiting) {
          if (t.ts < before) opts.onUnmatchedTrigger?.(t);
          else keep.push(t);
        }
        waiting = keep;
      };

      const release = (force: boolean): void => {
        while (pending.length > 0) {
          const head = pending[0]!;
          const f = head.frame;
          // Final once held long enough, or once a trigger beyond its window has arrived.
          if (!force && !head.expired && !(latestTs > f.captureTs + windowMs)) return;
          pending.shift();
          head.timer.unsubscribe();
          let best = -1;
          for (let i = 0; i < waiting.length; i++) {
            const t = waiting[i]!;
            const d = Math.abs(t.ts - f.captureTs);
            if (d > windowMs || (best >= 0 && d >= Math.abs(waiting[best]!.ts - f.captureTs))) continue;
            // The trigger belongs to its nearest frame: leave it to a waiting frame nearer to it.
            if (pending.some((p) => Math.abs(t.ts - p.frame.captureTs) < d)) continue;
            best = i;
          }
          if (best >= 0) {
            const t = waiting.splice(best, 1)[0]!;
            opts.onMatched?.(f, t);
            subscriber.next({ ...f, partId: t.partId });
          } else {
            opts.onUnmatchedFrame?.(f);
            subscriber.next(f);
          }
          // No later frame (later capture) can take a trigger older than this frame's window.
          expireTriggers(f.captureTs - windowMs);
        }
        if (done) {
          expireTriggers(Infinity);
          subscriber.complete();
        }
      };

      const trig = from(triggers).subscribe({
        next: (t) => {
          waiting.push(t);
          if (t.ts > latestTs) latestTs = t.ts;
          release(false);
        },
        error: () => undefined, // no more part ids; frames go on
      });
      const frames = source.subscribe({
        next: (frame) => {
          const entry = { frame, expired: false, timer: undefined as unknown as Subscription };
          entry.timer = scheduler.schedule(() => {
            entry.expired = true;
            release(false);
          }, holdMs);
          pending.push(entry);
          release(false);
        },
        error: (err: unknown) => {
          release(true);
          subscriber.error(err);
        },
        complete: () => {
          done = true;
          release(true);
        },
      });
      return () => {
        frames.unsubscribe();
        trig.unsubscribe();
        for (const p of pending) p.timer.unsubscribe();
      };
    });
}
