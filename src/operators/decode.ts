import { Observable, from, isObservable, type ObservableInput, type OperatorFunction, type Subscription } from 'rxjs';
import { BadInputError, asFairlineError } from '../errors.js';
import type { ImageF32 } from '../model/types.js';
import { failed, ok, validateFrame, type DecodedFrame, type Frame, type Result } from '../streams/frame.js';

/** What a decode function may return: the model-size image, optionally with the original frame size. */
export type DecodeOutput = ImageF32 | { image: ImageF32; sourceWidth: number; sourceHeight: number };

/**
 * Turns a frame into a model-size image. May be synchronous, return a Promise or an Observable
 * (the first value is used; an Observable lets tests run in virtual time).
 */
export type DecodeFn = (frame: Frame) => DecodeOutput | PromiseLike<DecodeOutput> | Observable<DecodeOutput>;

export interface DecodeOptions {
  /** Frames decoded at the same time (default 2). Output order is still input order. */
  concurrency?: number;
  /** Called with each decode's duration in seconds (for `fairline_stage_duration_seconds`). */
  onDuration?: (seconds: number) => void;
  /** Clock in ms for durations (default `performance.now`). */
  now?: () => number;
}

function isImage(x: unknown): x is ImageF32 {
  return typeof x === 'object' && x !== null && (x as ImageF32).data instanceof Float32Array && typeof (x as ImageF32).width === 'number';
}

/** Check the decoder's output so a broken decoder fails the frame here, not inside the model. */
function checkImage(img: ImageF32, frame: Frame): void {
  const { width, height, channels, data } = img;
  if (!(width > 0 && height > 0 && channels > 0) || data.length !== width * height * channels) {
    throw new BadInputError('bad_image', `frame ${frame.sourceId}#${frame.seq}: decoder returned ${width}x${height}x${channels} with ${data.length} values`);
  }
  for (let i = 0; i < data.length; i++) {
    // NaN fails `v >= 0` as well, so one comparison pair catches NaN, Inf and out-of-range values.
    const v = data[i]!;
    if (!(v >= 0 && v <= 1)) throw new BadInputError('bad_image', `frame ${frame.sourceId}#${frame.seq}: pixel ${i} = ${v} outside [0,1]`);
  }
}

function toDecoded(out: DecodeOutput, frame: Frame): DecodedFrame {
  const image = isImage(out) ? out : out.image;
  checkImage(image, frame);
  const sourceWidth = isImage(out) ? frame.payload.width || image.width : out.sourceWidth;
  const sourceHeight = isImage(out) ? frame.payload.height || image.height : out.sourceHeight;
  return { frame, image, sourceWidth, sourceHeight };
}

/**
 * Decode frames with bounded concurrency. A frame that is malformed, or whose decode throws,
 * rejects or returns a bad image, becomes a `Failed` result with stage `decode`; the stream goes
 * on. Results come out in input order even when decodes finish out of order. Upstream errors and
 * completion are forwarded after the decodes in flight have finished.
 *
 * @example
 * ```ts
 * frames$.pipe(
 *   decodeFrames((f) => loadModelImage(Buffer.from(f.payload.data), 256), { concurrency: 2 }),
 * ).subscribe((r) => (r.ok ? use(r.value.image) : log(r.error.code)));
 * ```
 */
export function decodeFrames(decode: DecodeFn, opts: DecodeOptions = {}): OperatorFunction<Frame, Result<DecodedFrame>> {
  const concurrency = opts.concurrency ?? 2;
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new BadInputError('bad_option', `decodeFrames: concurrency must be an integer >= 1, got ${concurrency}`);
  const now = opts.now ?? (() => performance.now());

  return (source) =>
    new Observable<Result<DecodedFrame>>((subscriber) => {
      const waiting: { frame: Frame; index: number }[] = [];
      const done = new Map<number, Result<DecodedFrame>>();
      const inner = new Set<Subscription>();
      let nextIn = 0;
      let nextOut = 0;
      let active = 0;
      let upstreamDone = false;
      let upstreamError: { err: unknown } | undefined;

      const finishIfIdle = (): void => {
        if (upstreamDone && active === 0 && waiting.length === 0) {
          if (upstreamError) subscriber.error(upstreamError.err);
          else subscriber.complete();
        }
      };

      // Emit every result that is next in input order.
      const drain = (): void => {
        while (done.has(nextOut)) {
          const r = done.get(nextOut)!;
          done.delete(nextOut);
          nextOut++;
          subscriber.next(r);
        }
      };

      const settle = (index: number, r: Result<DecodedFrame>): void => {
        done.set(index, r);
        active--;
        drain();
        startNext();
        finishIfIdle();
      };

      const start = (frame: Frame, index: number): void => {
        active++;
        const t0 = now();
        let settled = false;
        const finish = (r: Result<DecodedFrame>): void => {
          if (settled) return;
          settled = true;
          opts.onDuration?.((now() - t0) / 1000);
          settle(index, r);
        };
        let out: ReturnType<DecodeFn>;
        try {
          validateFrame(frame);
          out = decode(frame);
        } catch (err) {
          finish(failed(frame, asFairlineError(err), 'decode'));
          return;
        }
        const handle = (value: DecodeOutput): void => {
          try {
            finish(ok(toDecoded(value, frame)));
          } catch (err) {
            finish(failed(frame, asFairlineError(err), 'decode'));
          }
        };
        if (!isObservable(out) && !(typeof (out as PromiseLike<unknown>).then === 'function')) {
          handle(out as DecodeOutput);
          return;
        }
        let sub: Subscription | undefined;
        sub = from(out as ObservableInput<DecodeOutput>).subscribe({
          next: (v) => {
            handle(v);
            sub?.unsubscribe();
          },
          error: (err: unknown) => finish(failed(frame, asFairlineError(err), 'decode')),
          complete: () => finish(failed(frame, new BadInputError('bad_image', `frame ${frame.sourceId}#${frame.seq}: decoder produced no image`), 'decode')),
        });
        if (settled) sub.unsubscribe();
        else {
          const s = sub;
          inner.add(s);
          s.add(() => inner.delete(s));
        }
      };

      const startNext = (): void => {
        while (!subscriber.closed && active < concurrency && waiting.length > 0) {
          const w = waiting.shift()!;
          start(w.frame, w.index);
        }
      };

      const upstream = source.subscribe({
        next: (frame) => {
          waiting.push({ frame, index: nextIn++ });
          startNext();
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
        for (const s of [...inner]) s.unsubscribe();
        waiting.length = 0;
        done.clear();
      };
    });
}
