import { Observable, asyncScheduler, type OperatorFunction, type SchedulerLike, type Subscription } from 'rxjs';
import { BadInputError } from '../errors.js';
import { ok, type Result } from '../streams/frame.js';

export interface BatchOptions {
  /** Emit as soon as this many values are collected (>= 1). */
  maxSize: number;
  /**
   * Emit at most this long (ms) after the FIRST value of the current batch arrived (>= 0;
   * `Infinity` = size and completion only). 0 still collects values that arrive synchronously.
   */
  maxWaitMs: number;
  /** Scheduler for the wait timer (default `asyncScheduler`; a `TestScheduler` in tests). */
  scheduler?: SchedulerLike;
}

/**
 * Collect successful results into batches, the way DeepStream's `nvstreammux` does: a batch is
 * pushed when `maxSize` values are collected or `maxWaitMs` after its first value, whichever is
 * first. Unlike `bufferTime`, the timer starts with the batch's first value (not at buffer
 * creation) and an empty batch is never emitted. On completion the partial batch is flushed; on
 * an upstream error the partial batch is flushed and then the error is forwarded, so no frame is
 * lost silently.
 *
 * `Failed` results are not batched: they pass through at once (and may overtake frames waiting
 * in the current batch; verdicts carry `seq`, so consumers never rely on arrival order).
 *
 * @example
 * ```ts
 * // at most 8 frames, and never more than 20 ms of waiting for the first frame of a batch
 * decoded$.pipe(batchFrames({ maxSize: 8, maxWaitMs: 20 }))
 *   .subscribe((r) => r.ok && console.log('batch of', r.value.length));
 * ```
 */
export function batchFrames<T>(opts: BatchOptions): OperatorFunction<Result<T>, Result<T[]>> {
  const { maxSize, maxWaitMs } = opts;
  if (!Number.isInteger(maxSize) || maxSize < 1) throw new BadInputError('bad_option', `batchFrames: maxSize must be an integer >= 1, got ${maxSize}`);
  if (!(maxWaitMs >= 0)) throw new BadInputError('bad_option', `batchFrames: maxWaitMs must be >= 0, got ${maxWaitMs}`);
  const scheduler = opts.scheduler ?? asyncScheduler;

  return (source) =>
    new Observable<Result<T[]>>((subscriber) => {
      let buffer: T[] = [];
      let timer: Subscription | undefined;

      const flush = (): void => {
        timer?.unsubscribe();
        timer = undefined;
        if (buffer.length === 0) return;
        const batch = buffer;
        buffer = [];
        subscriber.next(ok(batch));
      };

      const upstream = source.subscribe({
        next: (r) => {
          if (!r.ok) {
            subscriber.next(r);
            return;
          }
          buffer.push(r.value);
          if (buffer.length >= maxSize) flush();
          else if (buffer.length === 1 && Number.isFinite(maxWaitMs)) timer = scheduler.schedule(flush, maxWaitMs);
        },
        error: (err: unknown) => {
          flush();
          subscriber.error(err);
        },
        complete: () => {
          flush();
          subscriber.complete();
        },
      });

      return () => {
        upstream.unsubscribe();
        timer?.unsubscribe();
        buffer = [];
      };
    });
}
