/**
 * The ingest role of scale-out mode: frames (a camera, an image folder replay, ...) into the
 * line's frames work queue on JetStream, for `fairline worker` processes to inspect.
 *
 * Every frame is published with `Nats-Msg-Id: <camera>:<seq>` and its PubAck awaited; a failed
 * or timed-out publish is retried with the same id, so a frame the server did store is not
 * queued twice (within the stream's duplicate window). At most `window` publishes are in flight,
 * and the source is paced by the acks, so replaying a large folder never holds more than
 * `window` frames in memory. A frame too large for the server's `max_payload` is skipped and
 * counted (it cannot be queued; raise max_payload or send encoded frames).
 */
import { Subject, defer, mergeMap, takeUntil, fromEvent, type Observable } from 'rxjs';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, type JetStreamClient, type PubAck } from '@nats-io/jetstream';
import { BadInputError, ConfigError, SinkError, asFairlineError, type FairlineError } from '../errors.js';
import type { Frame } from '../streams/frame.js';
import { natsConnectionOptions, type NatsConnectOptions } from '../streams/nats.js';
import { checkLine, encodeFrameMessage, ensureFramesStream, type ScaleoutStreamOptions } from './protocol.js';

/** What the source factory gets: one `ack$` emission per finished publish, and the window. */
export interface IngestPacing {
  ack$: Observable<unknown>;
  window: number;
}

export interface IngestHooks {
  /** A frame was stored (or found already stored: `ack.duplicate`). */
  onPublished?(frame: Frame, ack: PubAck): void;
  /** A frame was skipped (too large, malformed) or a publish is being retried. */
  onError?(err: FairlineError): void;
}

export interface IngestOptions {
  /** Connection settings, or an open connection (left open). */
  nats: NatsConnectOptions | { connection: NatsConnection };
  line: string;
  /**
   * The frames, built with the pacing to honour (e.g. `imageFilesSource(files, { ...pacing })`);
   * a source that ignores it is still bounded by `window` publishes in flight, but buffers.
   */
  source: (pacing: IngestPacing) => Observable<Frame>;
  /** Publishes in flight (default 16). */
  window?: number;
  streams?: ScaleoutStreamOptions;
  /** PubAck timeout per attempt (default 5000 ms). */
  ackTimeoutMs?: number;
  /** Attempts per frame before ingest fails (default 5; backoff 250 ms doubling to 4 s). */
  attempts?: number;
  /** Stop early: no new frames; publishes in flight complete. */
  signal?: AbortSignal;
  hooks?: IngestHooks;
}

export interface IngestSummary {
  /** Frames the source produced. */
  frames: number;
  /** Frames newly stored in the frames stream. */
  published: number;
  /** Frames the stream already had (same camera:seq within its duplicate window). */
  duplicates: number;
  /** Frames that could not be queued (too large, malformed). */
  skipped: number;
  bytes: number;
  durationMs: number;
  stream: string;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Publish every frame of `source` to the line's frames stream (created if missing); resolves
 * when the source has completed and every frame is acknowledged by the server.
 *
 * @example
 * ```ts
 * const files = listImageFiles('recordings/cam0').map((path) => ({ path }));
 * const summary = await runIngest({
 *   nats: { servers: 'nats://nats:4222' }, line: 'L1',
 *   source: (p) => imageFilesSource(files, { sourceId: 'cam0', ...p }),
 * });
 * ```
 * @throws ConfigError for bad options; SinkError `nats_connect` (unreachable server) or
 *   `ingest_publish` (a frame still failing after `attempts` tries; frames before it are queued).
 */
export async function runIngest(o: IngestOptions): Promise<IngestSummary> {
  checkLine(o.line);
  const window = o.window ?? 16;
  if (!Number.isInteger(window) || window < 1) throw new ConfigError(`window must be an integer >= 1, got ${window}`);
  const attempts = o.attempts ?? 5;
  if (!Number.isInteger(attempts) || attempts < 1) throw new ConfigError(`attempts must be an integer >= 1, got ${attempts}`);
  const ackTimeoutMs = o.ackTimeoutMs ?? 5000;
  const own = !('connection' in o.nats);
  let nc: NatsConnection;
  if ('connection' in o.nats) nc = o.nats.connection;
  else {
    try {
      nc = await connect({ ...natsConnectionOptions({ ...o.nats, name: o.nats.name ?? 'fairline-ingest' }), waitOnFirstConnect: false });
    } catch (err) {
      throw new SinkError('nats_connect', `ingest: cannot connect to ${String(o.nats.servers)}: ${(err as Error).message}`, { cause: err });
    }
  }
  const t0 = performance.now();
  const summary: IngestSummary = { frames: 0, published: 0, duplicates: 0, skipped: 0, bytes: 0, durationMs: 0, stream: '' };
  try {
    const jsm = await jetstreamManager(nc, { timeout: ackTimeoutMs });
    const info = await ensureFramesStream(jsm, o.line, o.streams);
    summary.stream = info.config.name;
    const js = jetstream(nc, { timeout: ackTimeoutMs });
    const maxPayload = nc.info?.max_payload;
    const ack$ = new Subject<void>();
    const frames$ = defer(() => o.source({ ack$, window }));
    const stopped$ = o.signal ? fromEvent(o.signal, 'abort') : undefined;
    await new Promise<void>((resolve, reject) => {
      (stopped$ ? frames$.pipe(takeUntil(stopped$)) : frames$)
        .pipe(
          mergeMap(async (frame) => {
            summary.frames++;
            try {
              await publishFrame(js, o, frame, maxPayload, attempts, ackTimeoutMs, summary);
            } finally {
              // One more frame may come: keeps the source `window` ahead of the acks.
              ack$.next();
            }
          }, window),
        )
        .subscribe({ error: (err: unknown) => reject(err), complete: () => resolve() });
    });
  } finally {
    summary.durationMs = performance.now() - t0;
    if (own) await nc.drain().catch(() => undefined);
  }
  return summary;
}

async function publishFrame(
  js: JetStreamClient,
  o: IngestOptions,
  frame: Frame,
  maxPayload: number | undefined,
  attempts: number,
  ackTimeoutMs: number,
  summary: IngestSummary,
): Promise<void> {
  let m;
  try {
    m = encodeFrameMessage(o.line, frame, maxPayload);
  } catch (err) {
    if (err instanceof BadInputError) {
      summary.skipped++;
      o.hooks?.onError?.(err);
      return;
    }
    throw err;
  }
  let delay = 250;
  for (let attempt = 1; ; attempt++) {
    try {
      // Fresh headers per attempt: the client adds Nats-Msg-Id to the object it is given.
      const headers = encodeFrameMessage(o.line, frame).headers;
      const ack = await js.publish(m.subject, m.data, { msgID: m.msgID, headers, timeout: ackTimeoutMs });
      if (ack.duplicate) summary.duplicates++;
      else {
        summary.published++;
        summary.bytes += m.data.byteLength;
      }
      o.hooks?.onPublished?.(frame, ack);
      return;
    } catch (err) {
      const e = new SinkError('ingest_publish', `ingest: frame ${m.msgID} not stored (attempt ${attempt}/${attempts}): ${(err as Error).message}`, { cause: err });
      if (attempt >= attempts) throw e;
      o.hooks?.onError?.(asFairlineError(e));
      await sleep(delay);
      delay = Math.min(4000, delay * 2);
    }
  }
}
