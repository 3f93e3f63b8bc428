import { asyncScheduler, pipe, tap, type ObservableInput, type OperatorFunction, type SchedulerLike } from 'rxjs';
import type { GuardStats } from '../model/guard.js';
import type { ImageF32 } from '../model/types.js';
import type { DecodedFrame, Frame, FrameGuard, JudgedFrame, ModelOutput } from '../streams/frame.js';
import type { ScoreRange } from '../thresholds.js';
import type { Verdict } from '../verdict.js';
import { batchFrames } from './batch.js';
import { decodeFrames, type DecodeFn } from './decode.js';
import { failSafe, type FailSafeOptions } from './failsafe.js';
import { guardFrames, type GuardPolicy } from './guard.js';
import { inferBatches, type QueuePolicy } from './infer.js';
import { thresholdScores, type ThresholdSpec } from './threshold.js';
import { toVerdicts, type VerdictContext } from './verdict.js';

/**
 * The model as the graph sees it: one call per batch of model-size images, one output per image.
 * High-pass filtering, UNet restoration and scoring all happen inside `inferBatch`.
 */
export interface InspectModel {
  /** Written into every verdict's `model` field. */
  id: string;
  inferBatch(images: ImageF32[]): ObservableInput<ModelOutput[]>;
  /** What the model has seen (artefact `guard`), for the domain guard; absent = guard off. */
  guard?: GuardStats;
  /** Anchors of the verdicts' `normScore` (artefact `scoreRange`). */
  scoreRange?: Pick<ScoreRange, 'min' | 'max'>;
}

/** Observation points for metrics and logs; all optional, all synchronous and cheap. */
export interface InspectHooks {
  /** A frame entered the graph. */
  onFrame?(frame: Frame): void;
  /** A stage finished for a frame (decode, guard) or a batch (infer). */
  onStageDuration?(stage: 'decode' | 'guard' | 'infer', seconds: number): void;
  /** The domain guard flagged a frame (`out_of_domain`, `stale_frame`), whatever its action. */
  onGuard?(frame: Frame, guard: FrameGuard): void;
  /** A batch was formed. */
  onBatch?(size: number): void;
  /** Frames waiting for the model changed. */
  onQueueDepth?(frames: number): void;
  /** A frame was dropped because the model was busy (live mode). */
  onDrop?(frame: Frame, reason: 'queue_full'): void;
  /**
   * A frame was scored and decided, just before its verdict is built: the source frame, the
   * model-size image and the anomaly map, for reject capture and the operator page (which keep
   * a reference only for the frames they show or record; nothing is copied here).
   */
  onJudged?(j: JudgedFrame): void;
  /** A verdict left the graph (including error and fail-safe verdicts). */
  onVerdict?(v: Verdict): void;
  /** A real verdict came after its fail-safe verdict. */
  onLate?(v: Verdict): void;
}

export interface InspectDeps {
  decode: DecodeFn;
  model: InspectModel;
  /** Reject if score >= threshold (a number, or per frame/camera). */
  threshold: ThresholdSpec;
  /** Verdict fields; `model` comes from `model.id`. */
  context: Omit<VerdictContext, 'model'>;
  batch: { maxSize: number; maxWaitMs: number };
  /** `live` drops the oldest waiting batch when the model falls behind; `replay` loses nothing. Default `live`. */
  mode?: 'live' | 'replay';
  /** Overrides the queue policy implied by `mode`. */
  policy?: QueuePolicy;
  /** Batches allowed to wait for the model under `drop-oldest` (default 1). */
  queueLimit?: number;
  /** Concurrent decodes (default 2). */
  decodeConcurrency?: number;
  /** Per-frame deadline with a fail-safe verdict; omit or `false` for none (typical for replay). */
  deadline?: Omit<FailSafeOptions, 'context' | 'scheduler' | 'onLate'> | false;
  /**
   * The domain guard (src/operators/guard.ts) between decode and batch: `stats` default to
   * `model.guard` (none = only the frozen-camera check). Omit for no guard at all.
   */
  guard?: { stats?: GuardStats; policy: GuardPolicy | ((frame: Frame) => GuardPolicy) };
  /** Scheduler for batch and deadline timers, and the clock of verdicts (default `asyncScheduler`). */
  scheduler?: SchedulerLike;
  hooks?: InspectHooks;
}

/**
 * The whole inspection graph, frames in, verdicts out:
 * decode -> guard -> batch -> model (high-pass + restore + score) -> threshold -> verdict,
 * optionally wrapped in a fail-safe deadline. Every frame yields exactly one verdict (plus, with
 * `deadline.late: 'mark'`, a late-marked second one); failures become `error` verdicts and never
 * end the stream.
 *
 * @example
 * ```ts
 * const verdicts$ = frames$.pipe(inspect({
 *   decode: (f) => loadModelImage(Buffer.from(f.payload.data), 256),
 *   model: { id: artefact.id, inferBatch: (imgs) => runner.inferBatch(imgs) },
 *   threshold: artefact.threshold,
 *   context: { line: 'L1', station: 'S3' },
 *   batch: { maxSize: 8, maxWaitMs: 20 },
 *   mode: 'live',
 *   deadline: { deadlineMs: 500, verdict: 'reject' },
 *   hooks: metricsHooks(metrics),
 * }));
 * ```
 */
export function inspect(deps: InspectDeps): OperatorFunction<Frame, Verdict> {
  const hooks = deps.hooks ?? {};
  const scheduler = deps.scheduler ?? asyncScheduler;
  // Durations on the real monotonic clock, unless a (virtual) scheduler was injected.
  const durationClock = deps.scheduler ? () => scheduler.now() : () => performance.now();
  const context: VerdictContext = { ...deps.context, model: deps.model.id, now: deps.context.now ?? (() => scheduler.now()) };
  // Read at verdict time: a swappable model (src/runtime/models.ts) changes its id, score anchors
  // and statistics while frames flow; error and fail-safe verdicts name the model serving then.
  Object.defineProperty(context, 'model', { get: () => deps.model.id, enumerable: true });
  if (!context.scoreRange) Object.defineProperty(context, 'scoreRange', { get: () => deps.model.scoreRange, enumerable: true });
  const guard = deps.guard;
  const statsNow = (): GuardStats | undefined => (guard ? (guard.stats ?? deps.model.guard) : undefined);
  const policy = deps.policy ?? (deps.mode === 'replay' ? 'wait' : 'drop-oldest');

  const core: OperatorFunction<Frame, Verdict> = pipe(
    tap((f: Frame) => hooks.onFrame?.(f)),
    decodeFrames(deps.decode, {
      concurrency: deps.decodeConcurrency ?? 2,
      now: durationClock,
      onDuration: (s) => hooks.onStageDuration?.('decode', s),
    }),
    guard
      ? guardFrames({
          // A getter: after a model swap the guard judges frames against the new model's images.
          get stats() {
            return statsNow();
          },
          policy: guard.policy,
          now: durationClock,
          onFlag: (f, g) => hooks.onGuard?.(f, g),
          onDuration: (s) => hooks.onStageDuration?.('guard', s),
        })
      : (r$) => r$,
    batchFrames<DecodedFrame>({ ...deps.batch, scheduler }),
    tap((r) => {
      if (r.ok) hooks.onBatch?.(r.value.length);
    }),
    inferBatches((batch: DecodedFrame[]) => deps.model.inferBatch(batch.map((d) => d.image)), {
      policy,
      queueLimit: deps.queueLimit ?? 1,
      now: durationClock,
      onDrop: (f, reason) => hooks.onDrop?.(f, reason),
      onQueueDepth: (n) => hooks.onQueueDepth?.(n),
      onDuration: (s) => hooks.onStageDuration?.('infer', s),
    }),
    thresholdScores(deps.threshold),
    tap((r) => {
      if (r.ok) hooks.onJudged?.(r.value);
    }),
    toVerdicts(context),
  );

  const graph = deps.deadline
    ? failSafe(core, { ...deps.deadline, context, scheduler, onLate: (v) => hooks.onLate?.(v) })
    : core;
  return pipe(
    graph,
    tap((v: Verdict) => hooks.onVerdict?.(v)),
  );
}
