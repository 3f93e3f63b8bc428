/**
 * The values that travel through the inspection graph, source to verdict.
 *
 * A camera (or file, or image folder) emits {@link Frame}s. Every later stage carries a
 * {@link Result}: either the stage's value or a {@link Failed} record holding the original frame,
 * a typed error and the stage that failed. Failures are data, not stream errors, so one corrupt
 * frame never terminates a camera's stream and never disappears: it ends as an `error` verdict.
 */
import { BadInputError, type FairlineError } from '../errors.js';
import type { ImageF32 } from '../model/types.js';
import type { VerdictGuard } from '../verdict.js';

/** Pixel layout of a frame's bytes. `encoded` = a compressed image (PNG/JPEG/...) to be decoded. */
export type PixelFormat = 'rgb' | 'bgr' | 'gray' | 'encoded';

/** The raw bytes of a frame as the source delivered them (a Node Buffer is a Uint8Array). */
export interface FramePayload {
  data: Uint8Array;
  /** Width in pixels; for `encoded` payloads the source's best knowledge, or 0 if unknown. */
  width: number;
  /** Height in pixels; 0 if unknown (encoded). */
  height: number;
  format: PixelFormat;
}

/** One frame from one source. */
export interface Frame {
  /** Camera / source id (the `camera` token of the NATS subjects). */
  sourceId: string;
  /** Per-source sequence number, monotonically increasing from 0 or 1. */
  seq: number;
  /** Capture time, ms since the Unix epoch (the source's clock). */
  captureTs: number;
  /** Absolute time (ms epoch) by which a verdict is due; overrides the configured deadline. */
  deadlineTs?: number;
  payload: FramePayload;
  /** Ground-truth label for replay/evaluation: 0 = good, 1 = defective. */
  label?: 0 | 1;
  /** File the frame came from (image-folder sources, replay). */
  path?: string;
  /** The line's id of the part in the picture (trigger subject or file name), when it gives one. */
  partId?: string;
}

/** A frame decoded and resized to the model input (HWC, BGR, float32 [0,1]). */
export interface DecodedFrame {
  frame: Frame;
  /** Model-size image. */
  image: ImageF32;
  /** Size of the original frame, for mapping model-size regions back to frame pixels. */
  sourceWidth: number;
  sourceHeight: number;
  /** The domain guard's reading (src/operators/guard.ts), when the graph runs one. */
  guard?: FrameGuard;
}

/** The guard's reading of a decoded frame: the verdict's `guard` plus a sentence for `detail`. */
export interface FrameGuard extends VerdictGuard {
  /** Why a flagged frame was flagged, for the verdict's `detail`. */
  detail?: string;
}

/** What the model returns per image. `map` (optional) is the anomaly map at model size (H*W of the image, row-major). */
export interface ModelOutput {
  score: number;
  map?: Float32Array;
  /** The model that judged the frame, when it can change while frames flow (src/runtime/models.ts); the verdict's `model`. */
  model?: string;
  /** That model's threshold, which then decides the frame (over the graph's `threshold`). */
  threshold?: number;
}

/** A decoded frame with its model output. */
export type ScoredFrame = DecodedFrame & ModelOutput;

/** A scored frame after the threshold decision (reject if score >= threshold). */
export interface JudgedFrame extends ScoredFrame {
  threshold: number;
  decision: 'pass' | 'reject';
}

/** Where a frame failed; used as the `stage` metrics label and in error verdicts. */
export type Stage = 'source' | 'decode' | 'guard' | 'batch' | 'queue' | 'infer' | 'threshold' | 'verdict' | 'deadline';

/** A stage's success value. */
export interface Ok<T> {
  readonly ok: true;
  readonly value: T;
}

/** A frame that failed at `stage`; it keeps flowing so it can become an `error` verdict. */
export interface Failed {
  readonly ok: false;
  readonly frame: Frame;
  readonly error: FairlineError;
  readonly stage: Stage;
}

/** The unit that flows between operators after the source. */
export type Result<T> = Ok<T> | Failed;

export function ok<T>(value: T): Ok<T> {
  return { ok: true, value };
}

export function failed(frame: Frame, error: FairlineError, stage: Stage): Failed {
  return { ok: false, frame, error, stage };
}

/** Stable identity of a frame within a run: source id + sequence number. */
export function frameKey(frame: Pick<Frame, 'sourceId' | 'seq'>): string {
  // NUL cannot occur in a sanitised source id, so keys never collide.
  return `${frame.sourceId}\u0000${frame.seq}`;
}

/** Bytes per pixel of a raw format (undefined for encoded and unknown formats). */
export function bytesPerPixel(format: PixelFormat): number | undefined {
  // Explicit: an unknown format string (a misconfigured source, 'yuv', 'rgba') must not pass as 3 bytes/pixel.
  return format === 'gray' ? 1 : format === 'rgb' || format === 'bgr' ? 3 : undefined;
}

/**
 * Check a frame's structure before it costs any decode time.
 * @throws BadInputError (`bad_frame`) on a malformed frame: empty payload, non-integer or
 *   non-positive size for raw formats, or a byte count that does not match width*height*channels.
 */
export function validateFrame(frame: Frame): void {
  const p = frame.payload;
  if (!p || !(p.data instanceof Uint8Array)) throw new BadInputError('bad_frame', `frame ${frame.sourceId}#${frame.seq}: payload.data must be a Uint8Array`);
  if (p.data.byteLength === 0) throw new BadInputError('bad_frame', `frame ${frame.sourceId}#${frame.seq}: empty payload`);
  const bpp = bytesPerPixel(p.format);
  if (bpp === undefined) {
    if (p.format !== 'encoded') throw new BadInputError('bad_frame', `frame ${frame.sourceId}#${frame.seq}: unknown format '${String(p.format)}'`);
    return;
  }
  if (!Number.isInteger(p.width) || !Number.isInteger(p.height) || p.width <= 0 || p.height <= 0) {
    throw new BadInputError('bad_frame', `frame ${frame.sourceId}#${frame.seq}: bad size ${p.width}x${p.height}`);
  }
  const expected = p.width * p.height * bpp;
  if (p.data.byteLength !== expected) {
    throw new BadInputError('bad_frame', `frame ${frame.sourceId}#${frame.seq}: ${p.format} ${p.width}x${p.height} needs ${expected} bytes, got ${p.data.byteLength}`);
  }
}
