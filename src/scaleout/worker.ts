/**
 * A scale-out inspection worker: pulls frames from the line's frames work queue (JetStream,
 * shared durable pull consumer, see src/scaleout/protocol.ts), runs them through the same
 * inspection graph as a station (`inspect()`: decode -> batch -> infer -> threshold -> verdict),
 * publishes one verdict per frame and only then acks the frame.
 *
 * Per batch of up to `batch` frames:
 * 1. fetch: wait (up to `fetchWaitMs`) for one frame, then take as many more as the server says
 *    are pending, up to the batch size (full batches under load, no waiting when idle);
 * 2. run the batch through `inspect()` (replay mode: nothing dropped, no deadline); every frame
 *    gives exactly one verdict, failures (undecodable bytes, model errors) give `error` verdicts;
 *    `msg.working()` keeps the frames from being redelivered while a long batch runs;
 * 3. publish each verdict to the audit stream with msgID `<camera>:<seq>` and wait for the
 *    PubAck; if the PubAck is not a duplicate (or the frame is a redelivery, see below), send the
 *    verdict on core NATS (`fairline.<line>.<camera>.verdict`, plus `.reject` when the reject gate
 *    should act) and flush;
 * 4. ack the frames (a frame whose verdict could not be published is nak'ed with a delay instead).
 *
 * Guarantees (docs/scaleout.md):
 * - audit stream: exactly one verdict per frame, provided the stream's duplicate window is longer
 *   than a frame's redelivery span (checked at start: window > ack wait x max deliver). A worker
 *   that dies between publishing and acking leaves its frames unacked; they are redelivered after
 *   the ack wait to another worker, whose publish is then dropped by the server as a duplicate.
 * - core subjects: every frame at least once. A verdict is sent once on first delivery; for a
 *   redelivered frame whose audit entry already existed the previous worker may or may not have
 *   sent it before dying, so it is sent again, marked `Fairline-Possible-Duplicate: true`.
 *   Subscribers that need exactly-once dedup by `camera:seq` (also the `Nats-Msg-Id` header).
 * - a frame that hits the consumer's max deliver (e.g. it crashes every worker) produces a
 *   MAX_DELIVERIES advisory; one worker (queue group) answers it with an `error` verdict
 *   (reason `max_deliver`) and deletes the frame from the work queue.
 * - a message without a usable camera/seq cannot have a verdict: it is terminated (`term`).
 */
import { hostname } from 'node:os';
import { from, lastValueFrom, toArray } from 'rxjs';
import { connect, headers as natsHeaders, type MsgHdrs, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, JetStreamApiCodes, JetStreamApiError, type Consumer, type JetStreamClient, type JetStreamManager, type JsMsg } from '@nats-io/jetstream';
import { ConfigError, FairlineError, SinkError, asFairlineError } from '../errors.js';
import { inspect, type InspectDeps, type InspectModel } from '../operators/inspect.js';
import type { DecodeFn } from '../operators/decode.js';
import { errorVerdict, type VerdictContext } from '../operators/verdict.js';
import { DEFAULT_GUARD } from '../config.js';
import type { GuardPolicy } from '../operators/guard.js';
import { frameDecoder } from '../runtime/model.js';
import type { Frame } from '../streams/frame.js';
import { natsConnectionOptions, verdictMsgId, type NatsConnectOptions } from '../streams/nats.js';
import { gateRejects, rejectSubject, verdictSubject, type Verdict } from '../verdict.js';
import {
  MSG_ID_HEADER,
  VERDICT_HEADERS,
  auditSubject,
  checkLine,
  decodeFrameMessage,
  ensureFramesStream,
  ensureVerdictsStream,
  ensureWorkerConsumer,
  framesStreamName,
  maxDeliveriesAdvisory,
  workersDurable,
  type ScaleoutStreamOptions,
  type WorkerConsumerOptions,
} from './protocol.js';

/** The model as a worker needs it; a `RuntimeModel` (src/runtime/model.ts) fits. */
export interface WorkerModel extends InspectModel {
  /** Model input size S (frames are decoded and resized to S x S). */
  readonly size: number;
  /** The artefact's calibrated threshold, if any. */
  readonly threshold: number | undefined;
}

/** Events for logs and metrics; all optional, synchronous and cheap. */
export interface WorkerHooks {
  /** Connected, streams and consumer ensured, about to fetch. */
  onReady?(info: { name: string; stream: string; durable: string }): void;
  /** A batch was published and acked. */
  onBatch?(frames: number, seconds: number): void;
  /** A verdict was published; `duplicate`: the audit stream already had it (a redelivered frame). */
  onVerdict?(v: Verdict, info: { duplicate: boolean; deliveries: number }): void;
  /** A frame exceeded max deliver and got a `max_deliver` error verdict. */
  onDeadLetter?(streamSeq: number, deliveries: number): void;
  /** A handled failure (frame nak'ed or terminated, fetch retried). */
  onError?(err: FairlineError): void;
}

export interface WorkerOptions {
  nats: NatsConnectOptions;
  /** Production line id (subject token; not `frames` / `verdicts`). */
  line: string;
  model: WorkerModel;
  /** Worker name: NATS connection name and `Fairline-Worker` header (default `<hostname>-<pid>`). */
  name?: string;
  /** `station` field of the verdicts (default: the worker name). */
  station?: string;
  /** Frames per fetch and model batch (default 8). */
  batch?: number;
  /** Overrides the model's threshold. */
  threshold?: number;
  /** Frame -> model image (default `frameDecoder(model.size)`, the station's decode). */
  decode?: DecodeFn;
  /**
   * The domain guard on the model's statistics (default action `reject`, the model's k). No
   * frozen-camera check: a camera's frames are spread over the workers, so none sees them all.
   */
  guard?: Partial<Pick<GuardPolicy, 'action' | 'k'>>;
  /** The shared consumer (ack wait, max deliver, ...). */
  consumer?: WorkerConsumerOptions;
  /** Stream names and limits (must match ingest's). */
  streams?: ScaleoutStreamOptions;
  /** How long an idle fetch waits for a frame (default 1000 ms, the client's minimum). */
  fetchWaitMs?: number;
  /** PubAck timeout of verdict publishes (default 5000 ms). */
  ackTimeoutMs?: number;
  /** Redelivery delay of a frame whose verdict could not be published (default 1000 ms). */
  retryDelayMs?: number;
  /** Whether `error` verdicts trigger the reject gate (default `reject`, the safe side). */
  failSafe?: 'reject' | 'pass';
  hooks?: WorkerHooks;
}

/** Counters since start. */
export interface WorkerStats {
  batches: number;
  /** Frames taken from the queue (including redeliveries). */
  frames: number;
  /** Verdicts newly stored in the audit stream. */
  verdicts: number;
  /** Verdict publishes the audit stream dropped as duplicates (redelivered frames). */
  duplicates: number;
  /** Core verdicts re-sent with `Fairline-Possible-Duplicate`. */
  coreResent: number;
  /** `error` verdicts among `verdicts`. */
  errorVerdicts: number;
  /** Frames nak'ed because their verdict could not be published. */
  naks: number;
  /** Messages terminated because they carry no usable camera/seq. */
  terminated: number;
  /** Frames answered with a `max_deliver` verdict. */
  deadLetters: number;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * One worker process's loop. Start with {@link ScaleoutWorker.start}, end with {@link stop}
 * (SIGTERM): the batch in progress is finished, published and acked, then the connection drains.
 *
 * @example
 * ```ts
 * const model = await loadInspectModel({ dir: 'models/hazelnut' });
 * const w = await ScaleoutWorker.start({ nats: { servers: 'nats://nats:4222' }, line: 'L1', model, batch: 8 });
 * process.once('SIGTERM', () => void w.stop());
 * await w.done;
 * ```
 */
export class ScaleoutWorker {
  readonly name: string;
  readonly line: string;
  private loop: Promise<void> = Promise.resolve();
  private readonly o: WorkerOptions;
  private readonly nc: NatsConnection;
  private readonly js: JetStreamClient;
  private readonly jsm: JetStreamManager;
  private consumer: Consumer;
  private readonly deps: InspectDeps;
  private readonly ctx: VerdictContext;
  private readonly batch: number;
  private readonly ackWaitMs: number;
  private readonly fetchWaitMs: number;
  private readonly ackTimeoutMs: number;
  private readonly retryDelayMs: number;
  private readonly framesStream: string;
  private readonly durable: string;
  private readonly counts: WorkerStats = { batches: 0, frames: 0, verdicts: 0, duplicates: 0, coreResent: 0, errorVerdicts: 0, naks: 0, terminated: 0, deadLetters: 0 };
  private stopping = false;
  private stopped: Promise<void> | undefined;
  private advisory: Subscription | undefined;
  private readonly side = new Set<Promise<void>>();

  private constructor(o: WorkerOptions, nc: NatsConnection, jsm: JetStreamManager, consumer: Consumer, name: string, ackWaitMs: number) {
    this.o = o;
    this.nc = nc;
    this.jsm = jsm;
    this.js = jetstream(nc, { timeout: o.ackTimeoutMs ?? 5000 });
    this.consumer = consumer;
    this.name = name;
    this.line = o.line;
    this.batch = o.batch ?? 8;
    this.ackWaitMs = ackWaitMs;
    this.fetchWaitMs = o.fetchWaitMs ?? 1000;
    this.ackTimeoutMs = o.ackTimeoutMs ?? 5000;
    this.retryDelayMs = o.retryDelayMs ?? 1000;
    this.framesStream = o.consumer?.framesStream ?? o.streams?.framesStream ?? framesStreamName(o.line);
    this.durable = o.consumer?.durable ?? workersDurable(o.line);
    const threshold = o.threshold ?? o.model.threshold;
    if (threshold === undefined || !Number.isFinite(threshold)) throw new ConfigError(`worker: model ${o.model.id} has no threshold; calibrate it or pass threshold`);
    const station = o.station ?? name;
    this.ctx = { line: o.line, station, model: o.model.id };
    this.deps = {
      decode: o.decode ?? frameDecoder(o.model.size),
      model: o.model,
      threshold,
      context: { line: o.line, station },
      // One model call per fetched batch: the batch closes when the fetched frames are all decoded.
      batch: { maxSize: this.batch, maxWaitMs: Infinity },
      mode: 'replay',
      guard: { policy: { ...DEFAULT_GUARD, ...o.guard, staleFrames: 0 } },
    };
  }

  /** Resolves when the fetch loop has ended (after {@link stop}). */
  get done(): Promise<void> {
    return this.loop;
  }

  /**
   * Connect, ensure the frames stream, the verdict stream and the shared consumer, subscribe to
   * the MAX_DELIVERIES advisory and start fetching.
   *
   * @throws ConfigError for bad options (batch, line, a verdict duplicate window too short for
   *   ack wait x max deliver, a model without threshold); SinkError (`nats_connect`) when NATS
   *   cannot be reached; JetStream API errors when streams/consumer cannot be created.
   */
  static async start(o: WorkerOptions): Promise<ScaleoutWorker> {
    checkLine(o.line);
    const batch = o.batch ?? 8;
    if (!Number.isInteger(batch) || batch < 1) throw new ConfigError(`batch must be an integer >= 1, got ${batch}`);
    const fetchWaitMs = o.fetchWaitMs ?? 1000;
    if (!(Number.isInteger(fetchWaitMs) && fetchWaitMs >= 1000)) throw new ConfigError(`fetchWaitMs must be an integer >= 1000, got ${fetchWaitMs}`);
    const name = o.name ?? `${hostname()}-${process.pid}`;
    const ackWaitMs = o.consumer?.ackWaitMs ?? 30_000;
    const maxDeliver = o.consumer?.maxDeliver ?? 5;
    const copts = { ...natsConnectionOptions({ ...o.nats, name: o.nats.name ?? `fairline-worker-${name}` }), waitOnFirstConnect: false };
    let nc: NatsConnection;
    try {
      nc = await connect(copts);
    } catch (err) {
      throw new SinkError('nats_connect', `worker: cannot connect to ${String(o.nats.servers)}: ${(err as Error).message}`, { cause: err });
    }
    try {
      const jsm = await jetstreamManager(nc, { timeout: o.ackTimeoutMs ?? 5000 });
      await ensureFramesStream(jsm, o.line, o.streams);
      const vs = await ensureVerdictsStream(jsm, o.line, o.streams);
      // The audit stream only deduplicates within its window: a redelivery after it would store
      // a second verdict for the frame.
      const windowMs = vs.config.duplicate_window / 1e6;
      if (windowMs <= ackWaitMs * maxDeliver) {
        throw new ConfigError(
          `verdict stream ${vs.config.name}: duplicate window ${windowMs} ms must exceed ack wait x max deliver = ${ackWaitMs * maxDeliver} ms, or a redelivered frame could get a second verdict; lower --ack-wait/--max-deliver or raise the stream's duplicate_window`,
        );
      }
      const ci = await ensureWorkerConsumer(jsm, o.line, { ...o.consumer, framesStream: o.consumer?.framesStream ?? o.streams?.framesStream });
      const js = jetstream(nc, { timeout: o.ackTimeoutMs ?? 5000 });
      const consumer = await js.consumers.get(ci.stream_name, ci.name);
      const w = new ScaleoutWorker(o, nc, jsm, consumer, name, ackWaitMs);
      w.advisory = nc.subscribe(maxDeliveriesAdvisory(ci.stream_name, ci.name), {
        // A queue group: one worker answers each advisory.
        queue: `${ci.name}-dlq`,
        callback: (err, msg) => {
          if (err) return;
          w.track(w.onMaxDeliveries(msg.data));
        },
      });
      await nc.flush();
      o.hooks?.onReady?.({ name, stream: ci.stream_name, durable: ci.name });
      // Fetch only now: the dead-letter subscription is in place and `w` is the caller's.
      w.loop = w.run();
      return w;
    } catch (err) {
      await nc.close().catch(() => undefined);
      throw err;
    }
  }

  stats(): WorkerStats {
    return { ...this.counts };
  }

  /**
   * Graceful stop: no new fetches; the batch in progress is finished (verdicts published, frames
   * acked); pending dead-letter answers complete; the connection drains. Idempotent.
   */
  stop(): Promise<void> {
    this.stopped ??= (async () => {
      this.stopping = true;
      await this.done;
      await Promise.allSettled([...this.side]);
      // No new dead-letter work once stopping (drain would still deliver queued advisories).
      this.advisory?.unsubscribe();
      await this.nc.drain().catch(() => undefined);
    })();
    return this.stopped;
  }

  // ---- internals ----

  private track(p: Promise<void>): void {
    const t = p.catch((err: unknown) => this.o.hooks?.onError?.(asFairlineError(err))).finally(() => this.side.delete(t));
    this.side.add(t);
  }

  private async run(): Promise<void> {
    while (!this.stopping) {
      let msgs: JsMsg[];
      try {
        msgs = await this.fetchBatch();
      } catch (err) {
        if (this.stopping || this.nc.isClosed()) break;
        this.o.hooks?.onError?.(new SinkError('fetch', `worker ${this.name}: fetch failed: ${(err as Error).message}`, { cause: err }));
        if (err instanceof JetStreamApiError && err.code === JetStreamApiCodes.ConsumerNotFound) {
          // Someone deleted the consumer: put it back rather than spin.
          await this.recreateConsumer().catch(() => undefined);
        }
        await sleep(this.retryDelayMs);
        continue;
      }
      if (msgs.length === 0) continue;
      await this.processBatch(msgs);
    }
  }

  private async recreateConsumer(): Promise<void> {
    const ci = await ensureWorkerConsumer(this.jsm, this.line, { ...this.o.consumer, framesStream: this.framesStream, durable: this.durable });
    this.consumer = await this.js.consumers.get(ci.stream_name, ci.name);
  }

  /**
   * One frame (waiting up to fetchWaitMs), then up to batch-1 more of those the server reported
   * pending at that delivery: full batches under load, no linger when the queue is short.
   */
  private async fetchBatch(): Promise<JsMsg[]> {
    const first = await this.consumer.next({ expires: this.fetchWaitMs });
    if (!first) return [];
    const msgs = [first];
    const more = Math.min(this.batch - 1, first.info.pending);
    if (more > 0) {
      try {
        const it = await this.consumer.fetch({ max_messages: more, expires: this.fetchWaitMs });
        for await (const m of it) msgs.push(m);
      } catch (err) {
        // Keep what we have; the frames already received are processed and acked.
        this.o.hooks?.onError?.(new SinkError('fetch', `worker ${this.name}: fetch failed: ${(err as Error).message}`, { cause: err }));
      }
    }
    return msgs;
  }

  private async processBatch(msgs: JsMsg[]): Promise<void> {
    const t0 = performance.now();
    this.counts.frames += msgs.length;
    const open = new Set(msgs);
    // Tell the server we are still on it, so a long batch is not redelivered under our feet.
    const keepAlive = setInterval(() => {
      for (const m of open) m.working();
    }, Math.max(100, Math.floor(this.ackWaitMs / 3)));
    try {
      const frames: Frame[] = [];
      const byId = new Map<string, { msgs: JsMsg[]; deliveries: number; redelivered: boolean }>();
      for (const m of msgs) {
        let frame: Frame;
        try {
          frame = decodeFrameMessage(m);
        } catch (err) {
          // No identity -> no verdict possible; retrying cannot help. `term` stops redelivery
          // (and emits the server's MSG_TERMINATED advisory) but a WorkQueue stream keeps a
          // terminated message, so it is deleted as well.
          m.term(asFairlineError(err).message.slice(0, 200));
          open.delete(m);
          const seq = m.info.streamSequence;
          this.track(this.jsm.streams.deleteMessage(m.info.stream, seq).then(() => undefined));
          this.counts.terminated++;
          this.o.hooks?.onError?.(asFairlineError(err));
          continue;
        }
        const id = verdictMsgId({ camera: frame.sourceId, seq: frame.seq, verdict: 'pass' });
        const e = byId.get(id);
        if (e) {
          // The same frame twice in one batch (ingest republished outside the dedup window): one verdict.
          e.msgs.push(m);
          e.redelivered ||= m.info.redelivered;
          continue;
        }
        byId.set(id, { msgs: [m], deliveries: m.info.deliveryCount, redelivered: m.info.redelivered });
        frames.push(frame);
      }
      const verdicts = frames.length ? await lastValueFrom(from(frames).pipe(inspect(this.deps), toArray())) : [];
      const acked: JsMsg[] = [];
      await Promise.all(
        verdicts.map(async (v) => {
          const id = verdictMsgId(v);
          const e = byId.get(id);
          if (!e) return; // cannot happen: inspect() keeps camera/seq
          byId.delete(id);
          try {
            await this.publishVerdict(v, e);
            acked.push(...e.msgs);
          } catch (err) {
            this.o.hooks?.onError?.(new SinkError('verdict_publish', `worker ${this.name}: verdict ${id} not published, frame will be retried: ${(err as Error).message}`, { cause: err }));
            for (const m of e.msgs) {
              m.nak(this.retryDelayMs);
              open.delete(m);
              this.counts.naks++;
            }
          }
        }),
      );
      // Frames the graph gave no verdict (a bug, not a bad frame): let another delivery try.
      for (const e of byId.values()) {
        for (const m of e.msgs) {
          m.nak(this.retryDelayMs);
          open.delete(m);
          this.counts.naks++;
        }
      }
      // Core verdicts must have reached the server before the frames are released.
      await this.nc.flush();
      for (const m of acked) {
        m.ack();
        open.delete(m);
      }
      await this.nc.flush().catch(() => undefined);
      this.counts.batches++;
      this.o.hooks?.onBatch?.(msgs.length, (performance.now() - t0) / 1000);
    } catch (err) {
      // E.g. the connection closed during flush: unacked frames are redelivered after ack wait.
      this.o.hooks?.onError?.(asFairlineError(err));
    } finally {
      clearInterval(keepAlive);
    }
  }

  /** Audit first (dedup by msgID), then core NATS; see the module doc. */
  private async publishVerdict(v: Verdict, d: { deliveries: number; redelivered: boolean }): Promise<void> {
    const data = JSON.stringify(v);
    const id = verdictMsgId(v);
    const hdrs = (extra: Record<string, string>): MsgHdrs => {
      const h = natsHeaders();
      h.set(VERDICT_HEADERS.worker, this.name);
      h.set(VERDICT_HEADERS.deliveries, String(d.deliveries));
      for (const [k, val] of Object.entries(extra)) h.set(k, val);
      return h;
    };
    const ack = await this.js.publish(auditSubject(this.line, v.camera), data, { msgID: id, headers: hdrs({}), timeout: this.ackTimeoutMs });
    if (ack.duplicate) this.counts.duplicates++;
    else {
      this.counts.verdicts++;
      if (v.verdict === 'error') this.counts.errorVerdicts++;
    }
    this.o.hooks?.onVerdict?.(v, { duplicate: ack.duplicate, deliveries: d.deliveries });
    if (ack.duplicate && !d.redelivered) return;
    const extra: Record<string, string> = ack.duplicate ? { [VERDICT_HEADERS.possibleDuplicate]: 'true' } : {};
    if (ack.duplicate) this.counts.coreResent++;
    // Nats-Msg-Id also on core: a single-station audit stream bound to fairline.<line>.> dedups them.
    this.nc.publish(verdictSubject(this.line, v.camera), data, { headers: hdrs({ ...extra, [MSG_ID_HEADER]: id }) });
    if (gateRejects(v, this.o.failSafe ?? 'reject')) {
      this.nc.publish(rejectSubject(this.line, v.camera), data, { headers: hdrs({ ...extra, [MSG_ID_HEADER]: `${id}:reject` }) });
    }
  }

  /** A frame was delivered max_deliver times without an ack: give it an error verdict and remove it. */
  private async onMaxDeliveries(data: Uint8Array): Promise<void> {
    let adv: { stream_seq?: unknown; deliveries?: unknown };
    try {
      adv = JSON.parse(new TextDecoder().decode(data)) as typeof adv;
    } catch {
      return;
    }
    const seq = Number(adv.stream_seq);
    const deliveries = Number(adv.deliveries) || 0;
    if (!Number.isSafeInteger(seq) || seq <= 0) return;
    const sm = await this.jsm.streams.getMessage(this.framesStream, { seq });
    if (!sm) return; // acked late or already handled
    let frame: Frame | undefined;
    try {
      frame = decodeFrameMessage({ subject: sm.subject, data: sm.data, headers: sm.header });
    } catch {
      frame = undefined; // no identity: nothing to give a verdict to, just remove it
    }
    if (frame) {
      const err = new FairlineError('max_deliver', `frame delivered ${deliveries} time(s) without an ack (workers crashed or timed out on it)`);
      const v = errorVerdict(frame, err, 'queue', this.ctx);
      await this.publishVerdict(v, { deliveries, redelivered: true });
      await this.nc.flush();
    }
    await this.jsm.streams.deleteMessage(this.framesStream, seq).catch((e: unknown) => {
      // Already deleted (another answer, or a late ack of a WorkQueue message) is fine.
      if (!(e instanceof JetStreamApiError)) throw e;
    });
    this.counts.deadLetters++;
    this.o.hooks?.onDeadLetter?.(seq, deliveries);
  }
}
