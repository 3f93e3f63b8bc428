/**
 * Wire format and JetStream layout of fairline's scale-out mode (`fairline ingest` ->
 * N x `fairline worker`), shared by both roles. See docs/scaleout.md for the delivery semantics.
 *
 * Per production line `<line>`:
 *
 * | what | name / subject |
 * |---|---|
 * | frames, work-queue stream | `FAIRLINE_FRAMES_<line>` on `fairline.frames.<line>.<camera>` |
 * | workers' shared durable pull consumer | `fairline-workers-<line>` (filter `fairline.frames.<line>.>`) |
 * | verdict audit stream (one verdict per frame) | `FAIRLINE_VERDICTS_<line>` on `fairline.verdicts.<line>.<camera>` |
 * | verdicts for subscribers (core NATS) | `fairline.<line>.<camera>.verdict` and `.reject` (src/verdict.ts) |
 *
 * Why frames and the audit live under `fairline.frames.` / `fairline.verdicts.` and not under
 * `fairline.<line>.`: a single-station audit stream (`FAIRLINE_<line>` of src/streams/nats.ts)
 * binds `fairline.<line>.>`, JetStream refuses streams with overlapping subjects, and image
 * payloads must not end up in a verdict archive. The price is two reserved line names,
 * `frames` and `verdicts` ({@link checkLine}).
 *
 * A frame message: body = the frame bytes (an encoded image, or raw pixels), headers
 * {@link FRAME_HEADERS}, and `Nats-Msg-Id: <camera>:<seq>` so the frames stream drops a frame
 * that ingest publishes twice (a retried publish) within its duplicate window.
 */
import { headers as natsHeaders, nanos, type MsgHdrs } from '@nats-io/transport-node';
import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  RetentionPolicy,
  StorageType,
  type ConsumerConfig,
  type ConsumerInfo,
  type JetStreamManager,
  type StreamConfig,
  type StreamInfo,
} from '@nats-io/jetstream';
import { BadInputError, ConfigError } from '../errors.js';
import type { Frame, PixelFormat } from '../streams/frame.js';

/** Header names of a frame message. */
export const FRAME_HEADERS = {
  camera: 'Fairline-Camera',
  seq: 'Fairline-Seq',
  /** Capture time, ms since the Unix epoch. */
  captureTs: 'Fairline-Capture-Ts',
  /** `image/png`, `image/jpeg`, ... for encoded frames; {@link RAW_CONTENT_TYPE} for raw pixels. */
  contentType: 'Content-Type',
  /** Raw frames: `rgb` | `bgr` | `gray`. */
  format: 'Fairline-Format',
  /** Raw frames: pixel size (optional for encoded frames). */
  width: 'Fairline-Width',
  height: 'Fairline-Height',
  /** Source file, URI-encoded (header values must stay on one line). */
  path: 'Fairline-Path',
  /** Ground-truth label 0/1 (replay). */
  label: 'Fairline-Label',
} as const;

/** Headers the worker adds to verdict messages (audit stream and core subjects). */
export const VERDICT_HEADERS = {
  /** The worker that decided the verdict. */
  worker: 'Fairline-Worker',
  /** JetStream delivery count of the frame when it was decided (1 = first delivery). */
  deliveries: 'Fairline-Deliveries',
  /**
   * `true` on a core verdict re-sent for a redelivered frame whose audit entry already existed:
   * the previous worker may or may not have sent it on core NATS before it died.
   */
  possibleDuplicate: 'Fairline-Possible-Duplicate',
} as const;

/** The JetStream message-id header (deduplication within a stream's duplicate window). */
export const MSG_ID_HEADER = 'Nats-Msg-Id';

export const RAW_CONTENT_TYPE = 'application/x-fairline-raw';

const TOKEN = /^[A-Za-z0-9_-]+$/;
const RESERVED_LINES = new Set(['frames', 'verdicts']);

/**
 * Validate a line id for scale-out use.
 * @throws ConfigError when it is not a subject token or is one of the reserved names `frames`, `verdicts`.
 */
export function checkLine(line: string): string {
  if (typeof line !== 'string' || !TOKEN.test(line)) throw new ConfigError(`line must match ${TOKEN}, got ${JSON.stringify(line)}`);
  if (RESERVED_LINES.has(line)) throw new ConfigError(`line id '${line}' is reserved in scale-out mode (subjects fairline.${line}.> hold frames/verdicts of all lines)`);
  return line;
}

/** @throws ConfigError when `camera` is not a subject token (`[A-Za-z0-9_-]+`). */
export function checkCamera(camera: string): string {
  if (typeof camera !== 'string' || !TOKEN.test(camera)) throw new ConfigError(`camera must match ${TOKEN}, got ${JSON.stringify(camera)}`);
  return camera;
}

/** `fairline.frames.<line>.<camera>`: where ingest publishes a camera's frames. */
export function framesSubject(line: string, camera: string): string {
  return `fairline.frames.${line}.${camera}`;
}

/** The workers' consumer filter: every camera of a line. */
export function framesFilter(line: string): string {
  return `fairline.frames.${line}.>`;
}

/** `fairline.verdicts.<line>.<camera>`: the audit subject (JetStream, one verdict per frame). */
export function auditSubject(line: string, camera: string): string {
  return `fairline.verdicts.${line}.${camera}`;
}

/** `FAIRLINE_FRAMES_<line>`: the frames work-queue stream. */
export function framesStreamName(line: string): string {
  return `FAIRLINE_FRAMES_${line}`;
}

/** `FAIRLINE_VERDICTS_<line>`: the verdict audit stream. */
export function verdictsStreamName(line: string): string {
  return `FAIRLINE_VERDICTS_${line}`;
}

/** The durable pull consumer all workers of a line share. */
export function workersDurable(line: string): string {
  return `fairline-workers-${line}`;
}

/** `<camera>:<seq>`: the frame's identity, its `Nats-Msg-Id`, and its verdict's audit msgID. */
export function frameMsgId(camera: string, seq: number): string {
  return `${camera}:${seq}`;
}

/** The MAX_DELIVERIES advisory subject of the workers' consumer. */
export function maxDeliveriesAdvisory(stream: string, durable: string): string {
  return `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.${stream}.${durable}`;
}

/**
 * Content type of encoded image bytes from their magic number (`application/octet-stream` when
 * unknown: the worker still tries to decode it).
 */
export function sniffContentType(b: Uint8Array): string {
  const at = (i: number) => b[i] ?? -1;
  if (at(0) === 0x89 && at(1) === 0x50 && at(2) === 0x4e && at(3) === 0x47) return 'image/png';
  if (at(0) === 0xff && at(1) === 0xd8 && at(2) === 0xff) return 'image/jpeg';
  if (at(0) === 0x42 && at(1) === 0x4d) return 'image/bmp';
  if ((at(0) === 0x49 && at(1) === 0x49 && at(2) === 0x2a) || (at(0) === 0x4d && at(1) === 0x4d && at(3) === 0x2a)) return 'image/tiff';
  if (at(0) === 0x52 && at(1) === 0x49 && at(2) === 0x46 && at(3) === 0x46 && at(8) === 0x57 && at(9) === 0x45) return 'image/webp';
  return 'application/octet-stream';
}

/** A frame as a JetStream publish: subject, body, headers and msgID. */
export interface FrameMessage {
  subject: string;
  data: Uint8Array;
  headers: MsgHdrs;
  msgID: string;
}

/**
 * Encode a frame for the frames stream. The frame's `sourceId` is the camera.
 *
 * @example
 * ```ts
 * const m = encodeFrameMessage('L1', frame);
 * await js.publish(m.subject, m.data, { msgID: m.msgID, headers: m.headers });
 * ```
 * @throws BadInputError (`bad_frame`) for a camera id that is not a subject token, a bad seq or
 *   captureTs, or (with `maxPayload`) a frame larger than the server accepts (`frame_too_large`).
 */
export function encodeFrameMessage(line: string, frame: Frame, maxPayload?: number): FrameMessage {
  if (!TOKEN.test(frame.sourceId)) throw new BadInputError('bad_frame', `camera id ${JSON.stringify(frame.sourceId)} is not a subject token`);
  if (!Number.isSafeInteger(frame.seq) || frame.seq < 0) throw new BadInputError('bad_frame', `seq must be a non-negative integer, got ${frame.seq}`);
  if (!Number.isFinite(frame.captureTs)) throw new BadInputError('bad_frame', `captureTs must be finite, got ${frame.captureTs}`);
  const p = frame.payload;
  if (maxPayload !== undefined && p.data.byteLength > maxPayload) {
    throw new BadInputError('frame_too_large', `frame ${frame.sourceId}#${frame.seq}: ${p.data.byteLength} bytes exceed the server's max_payload ${maxPayload}`);
  }
  const h = natsHeaders();
  h.set(FRAME_HEADERS.camera, frame.sourceId);
  h.set(FRAME_HEADERS.seq, String(frame.seq));
  h.set(FRAME_HEADERS.captureTs, String(frame.captureTs));
  if (p.format === 'encoded') {
    h.set(FRAME_HEADERS.contentType, sniffContentType(p.data));
    if (p.width > 0 && p.height > 0) {
      h.set(FRAME_HEADERS.width, String(p.width));
      h.set(FRAME_HEADERS.height, String(p.height));
    }
  } else {
    h.set(FRAME_HEADERS.contentType, RAW_CONTENT_TYPE);
    h.set(FRAME_HEADERS.format, p.format);
    h.set(FRAME_HEADERS.width, String(p.width));
    h.set(FRAME_HEADERS.height, String(p.height));
  }
  if (frame.path !== undefined) h.set(FRAME_HEADERS.path, encodeURIComponent(frame.path));
  if (frame.label !== undefined) h.set(FRAME_HEADERS.label, String(frame.label));
  const msgID = frameMsgId(frame.sourceId, frame.seq);
  return { subject: framesSubject(line, frame.sourceId), data: p.data, headers: h, msgID };
}

/** What {@link decodeFrameMessage} needs of a received message (a `JsMsg` or a `StoredMsg`). */
export interface ReceivedFrameMessage {
  subject: string;
  data: Uint8Array;
  headers?: MsgHdrs | undefined;
}

const RAW_FORMATS: ReadonlySet<string> = new Set(['rgb', 'bgr', 'gray']);

/**
 * Rebuild the {@link Frame} of a frame message. Only the identity (camera, seq) is required
 * here; a frame whose bytes are bad still decodes to a `Frame` so that the inspection graph
 * turns it into an `error` verdict.
 *
 * The camera is the `Fairline-Camera` header when it is a subject token, else the subject's last
 * token.
 *
 * @example
 * ```ts
 * const frame = decodeFrameMessage(jsMsg); // { sourceId: 'cam0', seq: 17, payload: { format: 'encoded', ... } }
 * ```
 * @throws BadInputError (`bad_message`) without a usable seq or camera: such a message cannot
 *   be given a verdict (the worker terminates it).
 */
export function decodeFrameMessage(msg: ReceivedFrameMessage): Frame {
  const h = msg.headers;
  const get = (k: string): string => (h?.has(k) ? h.get(k) : '');
  const fromSubject = msg.subject.slice(msg.subject.lastIndexOf('.') + 1);
  const hdrCamera = get(FRAME_HEADERS.camera);
  const camera = TOKEN.test(hdrCamera) ? hdrCamera : fromSubject;
  if (!TOKEN.test(camera)) throw new BadInputError('bad_message', `frame message on ${msg.subject}: no camera id`);
  const seqText = get(FRAME_HEADERS.seq);
  const seq = /^\d+$/.test(seqText) ? Number(seqText) : NaN;
  if (!Number.isSafeInteger(seq)) throw new BadInputError('bad_message', `frame message on ${msg.subject}: header ${FRAME_HEADERS.seq} missing or not an integer (${JSON.stringify(seqText)})`);
  const ts = Number(get(FRAME_HEADERS.captureTs));
  // A missing capture time must not fail the frame: latency is then measured from receipt.
  const captureTs = get(FRAME_HEADERS.captureTs) !== '' && Number.isFinite(ts) ? ts : Date.now();
  const ct = get(FRAME_HEADERS.contentType);
  let format: PixelFormat = 'encoded';
  if (ct === RAW_CONTENT_TYPE) {
    const f = get(FRAME_HEADERS.format);
    // An unknown raw format is left for validateFrame to reject (-> error verdict, stage decode).
    format = (RAW_FORMATS.has(f) ? f : f || 'unknown') as PixelFormat;
  }
  const width = Number(get(FRAME_HEADERS.width)) || 0;
  const height = Number(get(FRAME_HEADERS.height)) || 0;
  const frame: Frame = { sourceId: camera, seq, captureTs, payload: { data: msg.data, width, height, format } };
  const path = get(FRAME_HEADERS.path);
  if (path) {
    try {
      frame.path = decodeURIComponent(path);
    } catch {
      frame.path = path;
    }
  }
  const label = get(FRAME_HEADERS.label);
  if (label === '0' || label === '1') frame.label = Number(label) as 0 | 1;
  return frame;
}

/** Stream settings shared by ingest and workers. */
export interface ScaleoutStreamOptions {
  /** Frames stream name (default {@link framesStreamName}). */
  framesStream?: string;
  /** Verdict audit stream name (default {@link verdictsStreamName}). */
  verdictsStream?: string;
  /** Default `file`. */
  storage?: 'file' | 'memory';
  /** Duplicate window of the frames stream: ingest's retries and re-runs (default 2 min). */
  duplicateWindowMs?: number;
  /**
   * Duplicate window of the verdict stream (default 10 min). It must be longer than the time
   * from a frame's first delivery to its last redelivery (ack wait x max deliver; the worker
   * checks), or a redelivered frame could get a second verdict.
   */
  verdictsDuplicateWindowMs?: number;
  /** Drop frames no worker took within this time (default 24 h; 0 = keep). */
  framesMaxAgeMs?: number;
  /** Bound of the frames stream in bytes; beyond it ingest's publishes fail (default unbounded). */
  framesMaxBytes?: number;
  /** Keep verdicts this long (default 7 days; 0 = forever). */
  verdictsMaxAgeMs?: number;
}

export const DEFAULT_DUPLICATE_WINDOW_MS = 120_000;
export const DEFAULT_VERDICTS_DUPLICATE_WINDOW_MS = 600_000;

function isNotFound(err: unknown, code: number): boolean {
  return err instanceof JetStreamApiError && err.code === code;
}

/** Create a stream, or check and widen an existing one; tolerant of a concurrent create. */
async function ensureStream(jsm: JetStreamManager, cfg: Partial<StreamConfig> & { name: string; subjects: string[] }): Promise<StreamInfo> {
  for (let attempt = 0; ; attempt++) {
    try {
      const info = await jsm.streams.info(cfg.name);
      const want = cfg.retention ?? RetentionPolicy.Limits;
      if (info.config.retention !== want) {
        throw new ConfigError(`stream ${cfg.name} exists with retention '${info.config.retention}', scale-out needs '${want}'; delete it or use another name`);
      }
      const missing = cfg.subjects.filter((s) => !info.config.subjects?.includes(s));
      if (missing.length === 0) return info;
      return await jsm.streams.update(cfg.name, { ...info.config, subjects: [...(info.config.subjects ?? []), ...missing] });
    } catch (err) {
      if (!isNotFound(err, JetStreamApiCodes.StreamNotFound)) throw err;
    }
    try {
      return await jsm.streams.add(cfg);
    } catch (err) {
      // Another ingest/worker created it between our info and add: read it again.
      if (attempt < 2) continue;
      throw err;
    }
  }
}

/**
 * The frames work-queue stream of a line: WorkQueue retention (a frame is deleted once a worker
 * acks it), `fairline.frames.<line>.>`, duplicate window for ingest's `Nats-Msg-Id`.
 *
 * @throws ConfigError when a stream of that name exists with another retention policy.
 */
export async function ensureFramesStream(jsm: JetStreamManager, line: string, o: ScaleoutStreamOptions = {}): Promise<StreamInfo> {
  checkLine(line);
  return ensureStream(jsm, {
    name: o.framesStream ?? framesStreamName(line),
    subjects: [framesFilter(line)],
    retention: RetentionPolicy.Workqueue,
    storage: o.storage === 'memory' ? StorageType.Memory : StorageType.File,
    duplicate_window: nanos(o.duplicateWindowMs ?? DEFAULT_DUPLICATE_WINDOW_MS),
    max_age: nanos(o.framesMaxAgeMs ?? 24 * 3600 * 1000),
    max_bytes: o.framesMaxBytes ?? -1,
    // Full stream: refuse new frames (ingest sees the error) instead of silently dropping old ones.
    discard: DiscardPolicy.New,
  });
}

/** The verdict audit stream of a line (Limits retention, `fairline.verdicts.<line>.>`). */
export async function ensureVerdictsStream(jsm: JetStreamManager, line: string, o: ScaleoutStreamOptions = {}): Promise<StreamInfo> {
  checkLine(line);
  return ensureStream(jsm, {
    name: o.verdictsStream ?? verdictsStreamName(line),
    subjects: [`fairline.verdicts.${line}.>`],
    retention: RetentionPolicy.Limits,
    storage: o.storage === 'memory' ? StorageType.Memory : StorageType.File,
    duplicate_window: nanos(o.verdictsDuplicateWindowMs ?? DEFAULT_VERDICTS_DUPLICATE_WINDOW_MS),
    max_age: nanos(o.verdictsMaxAgeMs ?? 7 * 24 * 3600 * 1000),
  });
}

/** Settings of the workers' shared consumer. */
export interface WorkerConsumerOptions {
  /** Durable name (default {@link workersDurable}). */
  durable?: string;
  /** Frames stream name (default {@link framesStreamName}). */
  framesStream?: string;
  /** Time a worker has to ack a frame before it is redelivered (default 30 s). */
  ackWaitMs?: number;
  /** Deliveries per frame before the server gives up and sends a MAX_DELIVERIES advisory (default 5). */
  maxDeliver?: number;
  /** Frames out to all workers together, unacked (default 1000). */
  maxAckPending?: number;
}

/**
 * Create the durable pull consumer the workers share, or bring an existing one to the given
 * ack wait / max deliver / max ack pending (the last worker started wins).
 */
export async function ensureWorkerConsumer(jsm: JetStreamManager, line: string, o: WorkerConsumerOptions = {}): Promise<ConsumerInfo> {
  checkLine(line);
  const stream = o.framesStream ?? framesStreamName(line);
  const durable = o.durable ?? workersDurable(line);
  const ackWaitMs = o.ackWaitMs ?? 30_000;
  const maxDeliver = o.maxDeliver ?? 5;
  const maxAckPending = o.maxAckPending ?? 1000;
  if (!(Number.isInteger(ackWaitMs) && ackWaitMs >= 100)) throw new ConfigError(`ackWaitMs must be an integer >= 100, got ${ackWaitMs}`);
  if (!(Number.isInteger(maxDeliver) && maxDeliver >= 1)) throw new ConfigError(`maxDeliver must be an integer >= 1, got ${maxDeliver}`);
  if (!(Number.isInteger(maxAckPending) && maxAckPending >= 1)) throw new ConfigError(`maxAckPending must be an integer >= 1, got ${maxAckPending}`);
  const cfg: Partial<ConsumerConfig> = {
    durable_name: durable,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    filter_subject: framesFilter(line),
    ack_wait: nanos(ackWaitMs),
    max_deliver: maxDeliver,
    max_ack_pending: maxAckPending,
  };
  for (let attempt = 0; ; attempt++) {
    try {
      const info = await jsm.consumers.info(stream, durable);
      const c = info.config;
      if (c.ack_wait === cfg.ack_wait && c.max_deliver === cfg.max_deliver && c.max_ack_pending === cfg.max_ack_pending) return info;
      return await jsm.consumers.update(stream, durable, { ack_wait: cfg.ack_wait!, max_deliver: maxDeliver, max_ack_pending: maxAckPending });
    } catch (err) {
      if (!isNotFound(err, JetStreamApiCodes.ConsumerNotFound)) throw err;
    }
    try {
      return await jsm.consumers.add(stream, cfg);
    } catch (err) {
      if (attempt < 2) continue;
      throw err;
    }
  }
}
