import { Observable, from, type ObservableInput, type OperatorFunction, type Subscription } from 'rxjs';
import { BadInputError, FairlineError, ModelError } from '../errors.js';
import { failed, ok, type Frame, type Result } from '../streams/frame.js';

/** What to do with batches that arrive while the model is busy. */
export type QueuePolicy = 'drop-oldest' | 'wait';

/**
 * Runs the model on one batch; returns one output per input, in order. May return a Promise or
 * an Observable (the first value is used), which lets tests run the model in virtual time.
 */
export type BatchModelFn<T, O> = (batch: T[]) => ObservableInput<O[]>;

export interface InferOptions {
  /**
   * `wait` (replay): every batch is queued and inferred, nothing is lost; the queue is unbounded,
   * so the source must be paced (see `onQueueDepth`). `drop-oldest` (live): at most `queueLimit`
   * batches wait; when another arrives the OLDEST waiting batch is dropped, because on a live line
   * a stale frame is worth less than a fresh one. Default `wait`.
   */
  policy?: QueuePolicy;
  /** Batches allowed to wait under `drop-oldest` (>= 0; default 1). 0 = drop anything arriving while busy. */
  queueLimit?: number;
  /** Called once per dropped frame (wire it to `fairline_frames_dropped_total{reason="queue_full"}`). */
  onDrop?: (frame: Frame, reason: 'queue_full') => void;
  /**
   * Also emit a `Failed` result (stage `queue`, code `dropped`) per dropped frame, so it gets an
   * `error` verdict with reason `dropped` at once instead of waiting for its deadline. Default true.
   */
  emitDropped?: boolean;
  /** Called with the number of frames waiting (not counting the batch in the model) after each change. */
  onQueueDepth?: (frames: number) => void;
  /** Called with each model call's duration in seconds. */
  onDuration?: (seconds: number) => void;
  /** Clock in ms for durations (default `performance.now`). */
  now?: () => number;
}

/** Wrap a model failure: keep typed errors, make anything else a ModelError with the cause attached. */
function modelError(err: unknown): FairlineError {
  if (err instanceof FairlineError) return err;
  const msg = err instanceof Error ? err.message : String(err);
  return new ModelError('inference_failed', `model failed: ${msg}`, { cause: err });
}

/**
 * Run a model on batches, one batch at a time, and split its outputs back into per-frame results
 * (`{...input, ...output}`). A model that throws, rejects or returns the wrong number of outputs
 * fails every frame of that batch (stage `infer`) and the stream continues. `Failed` inputs pass
 * through untouched. On completion (or upstream error) the queue is drained first.
 *
 * @example
 * ```ts
 * batches$.pipe(
 *   inferBatches((b) => model.inferBatch(b.map((d) => d.image)), {
 *     policy: 'drop-oldest', queueLimit: 1, onDrop: (f) => metrics.framesDropped.inc({ camera: f.sourceId, reason: 'queue_full' }),
 *   }),
 * ); // Result<DecodedFrame & { score; map? }>
 * ```
 */
export function inferBatches<T extends { frame: Frame }, O extends object>(
  model: BatchModelFn<T, O>,
  opts: InferOptions = {},
): OperatorFunction<Result<T[]>, Result<T & O>> {
  const policy = opts.policy ?? 'wait';
  const queueLimit = opts.queueLimit ?? 1;
  if (policy !== 'wait' && policy !== 'drop-oldest') throw new BadInputError('bad_option', `inferBatches: unknown policy '${String(policy)}'`);
  if (!Number.isInteger(queueLimit) || queueLimit < 0) throw new BadInputError('bad_option', `inferBatches: queueLimit must be an integer >= 0, got ${queueLimit}`);
  const emitDropped = opts.emitDropped ?? true;
  const now = opts.now ?? (() => performance.now());

  return (source) =>
    new Observable<Result<T & O>>((subscriber) => {
      const queue: T[][] = [];
      let queuedFrames = 0;
      let running: Subscription | undefined;
      let busy = false;
      let upstreamDone = false;
      let upstreamError: { err: unknown } | undefined;

      const depthChanged = (): void => opts.onQueueDepth?.(queuedFrames);

      const finishIfIdle = (): void => {
        if (upstreamDone && !busy && queue.length === 0) {
          if (upstreamError) subscriber.error(upstreamError.err);
          else subscriber.complete();
        }
      };

      const drop = (batch: T[]): void => {
        for (const item of batch) {
          opts.onDrop?.(item.frame, 'queue_full');
          if (emitDropped) {
            subscriber.next(failed(item.frame, new FairlineError('dropped', `frame ${item.frame.sourceId}#${item.frame.seq} dropped: model busy and queue full`), 'queue'));
          }
        }
      };

      const run = (batch: T[]): void => {
        busy = true;
        const t0 = now();
        let settled = false;
        const finish = (results: Result<T & O>[]): void => {
          if (settled) return;
          settled = true;
          opts.onDuration?.((now() - t0) / 1000);
          running = undefined;
          for (const r of results) subscriber.next(r);
          busy = false;
          next();
        };
        const failAll = (err: unknown): void => {
          const e = modelError(err);
          finish(batch.map((item) => failed(item.frame, e, 'infer')));
        };
        const accept = (outputs: O[]): void => {
          if (!Array.isArray(outputs) || outputs.length !== batch.length) {
            failAll(new ModelError('bad_model_output', `model returned ${Array.isArray(outputs) ? outputs.length : typeof outputs} outputs for a batch of ${batch.length}`));
            return;
          }
          finish(batch.map((item, i) => ok({ ...item, ...outputs[i]! })));
        };
        let input: ObservableInput<O[]>;
        try {
          input = model(batch);
        } catch (err) {
          failAll(err);
          return;
        }
        let sub: Subscription | undefined;
        sub = from(input).subscribe({
          next: (outputs) => {
            accept(outputs);
            sub?.unsubscribe();
          },
          error: failAll,
          complete: () => failAll(new ModelError('bad_model_output', 'model completed without output')),
        });
        if (settled) sub.unsubscribe();
        else running = sub;
      };

      const next = (): void => {
        if (subscriber.closed) return;
        const batch = queue.shift();
        if (batch) {
          queuedFrames -= batch.length;
          depthChanged();
          run(batch);
        } else finishIfIdle();
      };

      const upstream = source.subscribe({
        next: (r) => {
          if (!r.ok) {
            subscriber.next(r);
            return;
          }
          if (!busy) {
            run(r.value);
            return;
          }
          queue.push(r.value);
          queuedFrames += r.value.length;
          if (policy === 'drop-oldest') {
            while (queue.length > queueLimit) {
              const old = queue.shift()!;
              queuedFrames -= old.length;
              drop(old);
            }
          }
          depthChanged();
        },
        error: (err: unknown) => {
          upstreamDone = true;
          upstreamError = { err };
          finishIfIdle();
        },
        complete: () => {
          upstreamDone = true;
          finishIfIdle();
        },
      });

      return () => {
        upstream.unsubscribe();
        running?.unsubscribe();
        queue.length = 0;
      };
    });
}
