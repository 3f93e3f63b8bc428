/**
 * Reject capture: a sink beside the verdict sink that keeps each reject's frame at source
 * resolution, its verdict and its anomaly map (and every N-th pass) in the folder layout of
 * src/io/captures.ts, rotated by age and size, for the operator page and for retraining.
 *
 * Off the hot path by construction: {@link Recorder.offer} only decides and queues (O(1), never
 * throws, never waits); a few writers work through a bounded queue in the background (PNG
 * encoding in libvips' threads, file writes through fs promises). When the queue is full (a slow
 * disk) or a write fails (a full disk), the capture is dropped and counted by reason; verdicts
 * never wait for a disk.
 *
 * Each capture is written into `<day>/.<id>.partial/` and renamed into place, so a crash or a
 * full disk never leaves a half capture that looks complete. Rotation: unlabelled captures older
 * than `keepDays` go (checked at start and every `rotateEveryMs`); before a write would pass
 * `maxBytes`, the oldest go, unlabelled first: a capture an operator marked is training data and
 * outlives unmarked ones.
 */
import { mkdir, readdir, rename, rm, rmdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { RecordConfig } from '../config.js';
import { BadInputError, ConfigError, asFairlineError } from '../errors.js';
import {
  CAPTURES_FORMAT, CAPTURES_MARKER, captureDir, captureId, captureTime, encodeNpy, readCapture, scanCaptures, writeLabel,
  type CaptureEntry, type ReviewLabel,
} from '../io/captures.js';
import { encodeFramePicture } from '../io/image.js';
import type { Verdict } from '../verdict.js';
import type { FramePayload } from './frame.js';

/** What the graph knows about a frame beyond its verdict (see `onJudged` in src/operators/inspect.ts). */
export interface CaptureData {
  /** The frame as the source delivered it (source resolution). */
  payload: FramePayload;
  /** Model-size anomaly map, row-major `mapSize` x `mapSize`. */
  map?: Float32Array;
  mapSize?: number;
}

/** Why a capture was not written. */
export type CaptureDropReason = 'queue_full' | 'disk_full' | 'write_error' | 'too_large' | 'bad_frame' | 'closed';

/** The file operations the recorder uses (node:fs/promises); tests inject slow or full disks. */
export interface CaptureIo {
  mkdir(path: string, opts: { recursive: true }): Promise<unknown>;
  writeFile(path: string, data: Uint8Array | string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  rm(path: string, opts: { recursive: true; force: true }): Promise<void>;
}

const nodeIo: CaptureIo = { mkdir, writeFile, rename, rm };

export interface RecorderHooks {
  /** A capture is complete on disk. */
  onWritten?(entry: CaptureEntry, v: Verdict): void;
  /** A capture was dropped. */
  onDropped?(reason: CaptureDropReason, v: Verdict): void;
  /** Captures were deleted by rotation. */
  onRemoved?(entries: readonly CaptureEntry[], why: 'age' | 'size'): void;
}

export interface RecorderOptions extends RecordConfig {
  /** Captures waiting for the writer before new ones are dropped (default 16). */
  queueLimit?: number;
  /** Captures written at once (default 4): each takes a few event-loop turns, which a busy model makes scarce. */
  concurrency?: number;
  /** Age rotation period (default 10 min). */
  rotateEveryMs?: number;
  hooks?: RecorderHooks;
  log?: (msg: string) => void;
  /** Clock (ms epoch) for age rotation and label times (default Date.now). */
  now?: () => number;
  io?: Partial<CaptureIo>;
}

export interface RecorderStats {
  /** Captures on disk and their bytes. */
  captures: number;
  bytes: number;
  /** Waiting for the writer. */
  queued: number;
  written: number;
  dropped: Partial<Record<CaptureDropReason, number>>;
  /** Deleted by rotation. */
  removed: number;
}

interface Job {
  id: string;
  v: Verdict;
  data: CaptureData;
}

const DAY_MS = 86_400_000;

/** The reason a failed write counts under: a full disk or quota, or anything else. */
function writeFailure(err: unknown): CaptureDropReason {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT' ? 'disk_full' : 'write_error';
}

/**
 * @example
 * ```ts
 * const rec = await Recorder.open({ ...cfg.record, hooks: { onDropped: (r) => dropped.inc({ reason: r }) } });
 * rec.offer(verdict, { payload: judged.frame.payload, map: judged.map, mapSize: judged.image.width });
 * await rec.close();
 * ```
 */
export class Recorder {
  private readonly io: CaptureIo;
  private readonly now: () => number;
  private readonly queue: Job[] = [];
  private readonly index: CaptureEntry[];
  private readonly byId = new Map<string, CaptureEntry>();
  private readonly passes = new Map<string, number>();
  private readonly statsCounters: Omit<RecorderStats, 'captures' | 'bytes' | 'queued'> = { written: 0, dropped: {}, removed: 0 };
  private totalBytes: number;
  private readonly inFlight = new Set<Promise<void>>();
  private rotateDue = true;
  private closed = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly lastLogged = new Map<string, number>();

  private constructor(readonly opts: RecorderOptions, existing: CaptureEntry[]) {
    this.io = { ...nodeIo, ...opts.io };
    this.now = opts.now ?? Date.now;
    this.index = existing;
    for (const e of existing) this.byId.set(e.id, e);
    this.totalBytes = existing.reduce((a, e) => a + e.bytes, 0);
  }

  /**
   * Create (or reopen) the capture folder, index what is there and start the age rotation.
   * @throws ConfigError when the folder cannot be created or written (before the station starts).
   */
  static async open(opts: RecorderOptions): Promise<Recorder> {
    try {
      await mkdir(opts.dir, { recursive: true });
      await writeFile(join(opts.dir, CAPTURES_MARKER), `${JSON.stringify({ format: CAPTURES_FORMAT })}\n`);
    } catch (err) {
      throw new ConfigError(`record.dir ${opts.dir}: cannot write captures there: ${(err as Error).message}`, { cause: err });
    }
    // Captures a crash or a full disk left half-written.
    for (const day of await readdir(opts.dir)) {
      if (!/^\d{4}-\d{2}-\d{2}$/.test(day)) continue;
      for (const f of await readdir(join(opts.dir, day)).catch(() => [] as string[])) {
        if (f.endsWith('.partial')) await rm(join(opts.dir, day, f), { recursive: true, force: true }).catch(() => undefined);
      }
    }
    const rec = new Recorder(opts, await scanCaptures(opts.dir));
    const every = opts.rotateEveryMs ?? 600_000;
    rec.timer = setInterval(() => {
      rec.rotateDue = true;
      rec.pump();
    }, every);
    rec.timer.unref();
    rec.pump();
    return rec;
  }

  /**
   * Queue the capture of a verdict's frame if the config wants it (model rejects; every
   * `passEvery`-th pass per camera). Returns at once; never throws.
   * @returns the capture id when queued
   */
  offer(v: Verdict, data: CaptureData | undefined): string | undefined {
    if (this.closed || !data || v.late) return undefined;
    if (v.verdict === 'reject') {
      if (!this.opts.rejects) return undefined;
    } else if (v.verdict === 'pass' && this.opts.passEvery > 0 && !v.failSafe) {
      const n = (this.passes.get(v.camera) ?? 0) + 1;
      this.passes.set(v.camera, n % this.opts.passEvery);
      if (n % this.opts.passEvery !== 0) return undefined;
    } else return undefined;
    if (this.queue.length >= (this.opts.queueLimit ?? 16)) {
      this.drop('queue_full', v);
      return undefined;
    }
    const id = captureId(v);
    this.queue.push({ id, v, data });
    this.pump();
    return id;
  }

  stats(): RecorderStats {
    return { captures: this.index.length, bytes: this.totalBytes, queued: this.queue.length, ...this.statsCounters, dropped: { ...this.statsCounters.dropped } };
  }

  /** A capture on disk, by id. */
  entry(id: string): CaptureEntry | undefined {
    return this.byId.get(id);
  }

  /**
   * Mark a capture (the operator page's review).
   * @throws BadInputError `unknown_capture` when it is not (or not yet) on disk, `bad_label`.
   */
  async label(id: string, label: ReviewLabel): Promise<CaptureEntry> {
    const e = this.byId.get(id);
    if (!e) throw new BadInputError('unknown_capture', `no capture ${id} on disk (not captured, dropped, still queued or rotated away)`);
    await writeLabel(this.opts.dir, id, label, this.now);
    e.label = label;
    // The label file counts towards maxBytes like the rest of the capture.
    const bytes = (await readCapture(this.opts.dir, id).catch(() => e)).bytes;
    if (this.byId.get(id) === e) this.totalBytes += bytes - e.bytes;
    e.bytes = bytes;
    return e;
  }

  /** Stop taking captures; finish the queue for at most `timeoutMs`, drop the rest. */
  async close(timeoutMs = 5000): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.closed = true;
    this.rotateDue = false;
    let t: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((r) => (t = setTimeout(r, timeoutMs)));
    while (this.inFlight.size > 0 && (await Promise.race([Promise.race(this.inFlight).then(() => true), deadline.then(() => false)])));
    clearTimeout(t);
    for (const j of this.queue.splice(0)) this.drop('closed', j.v);
  }

  private drop(reason: CaptureDropReason, v: Verdict): void {
    this.statsCounters.dropped[reason] = (this.statsCounters.dropped[reason] ?? 0) + 1;
    this.opts.hooks?.onDropped?.(reason, v);
  }

  /** Log a problem at most once a minute per kind (a full disk must not flood the log). */
  private warn(kind: string, msg: string): void {
    const t = this.now();
    if (t - (this.lastLogged.get(kind) ?? -Infinity) < 60_000) return;
    this.lastLogged.set(kind, t);
    this.opts.log?.(`record: ${msg}`);
  }

  private track(p: Promise<void>): void {
    const q = p.catch((err: unknown) => this.warn('internal', `writer: ${(err as Error).message}`)).finally(() => {
      this.inFlight.delete(q);
      this.pump();
    });
    this.inFlight.add(q);
  }

  /** Start what can start: the age rotation when due, and writes up to `concurrency`. */
  private pump(): void {
    if (this.rotateDue) {
      this.rotateDue = false;
      this.track(this.rotateByAge());
    }
    // Rotation is bookkept synchronously (victims leave the index before their files go), so
    // it never races a write; the queue drains while closing too.
    while (this.inFlight.size < (this.opts.concurrency ?? 4) && this.queue.length > 0) this.track(this.write(this.queue.shift()!));
  }

  private async write(job: Job): Promise<void> {
    const { id, v, data } = job;
    let files: [string, Uint8Array | string][];
    try {
      const pic = await encodeFramePicture(data.payload);
      files = [[`frame.${pic.ext}`, pic.data], ['verdict.json', `${JSON.stringify(v, null, 2)}\n`]];
      if (data.map && data.mapSize) files.push(['map.npy', encodeNpy(data.map, [data.mapSize, data.mapSize])]);
    } catch (err) {
      this.warn('bad_frame', `capture ${id} dropped: ${asFairlineError(err).message}`);
      this.drop('bad_frame', v);
      return;
    }
    const bytes = files.reduce((a, [, d]) => a + (typeof d === 'string' ? Buffer.byteLength(d) : d.byteLength), 0);
    if (bytes > this.opts.maxBytes) {
      this.warn('too_large', `capture ${id} (${bytes} bytes) is larger than record.maxBytes (${this.opts.maxBytes}); dropped`);
      this.drop('too_large', v);
      return;
    }
    const room = this.rotateBySize(bytes);
    // Counted now, so writes in flight together stay under maxBytes.
    this.totalBytes += bytes;
    const dir = captureDir(this.opts.dir, id);
    const tmp = join(dirname(dir), `.${id}.partial`);
    try {
      await room;
      await this.io.mkdir(tmp, { recursive: true });
      await Promise.all(files.map(([name, d]) => this.io.writeFile(join(tmp, name), d)));
      const old = this.byId.get(id);
      if (old) {
        // The same frame captured by an earlier run (a replay of the same file).
        this.forget([old]);
        await this.io.rm(dir, { recursive: true, force: true });
      }
      await this.io.rename(tmp, dir);
    } catch (err) {
      const reason = writeFailure(err);
      this.warn(reason, `capture ${id} dropped (${reason}): ${(err as Error).message}`);
      await this.io.rm(tmp, { recursive: true, force: true }).catch(() => undefined);
      this.totalBytes -= bytes;
      this.drop(reason, v);
      return;
    }
    const frameName = files[0]![0];
    const entry: CaptureEntry = { id, dir, ts: captureTime(id), frame: join(dir, frameName), bytes };
    // Keep the index in time order; captures almost always arrive in order.
    let i = this.index.length;
    while (i > 0 && this.index[i - 1]!.id > id) i--;
    this.index.splice(i, 0, entry);
    this.byId.set(id, entry);
    this.statsCounters.written++;
    this.opts.hooks?.onWritten?.(entry, v);
  }

  private forget(entries: readonly CaptureEntry[]): void {
    const gone = new Set(entries);
    for (let i = this.index.length - 1; i >= 0; i--) if (gone.has(this.index[i]!)) this.index.splice(i, 1);
    for (const e of entries) {
      this.byId.delete(e.id);
      this.totalBytes -= e.bytes;
    }
  }

  /** Take `entries` out of the index at once, then delete their files. */
  private async remove(entries: CaptureEntry[], why: 'age' | 'size'): Promise<void> {
    if (entries.length === 0) return;
    this.forget(entries);
    this.statsCounters.removed += entries.length;
    this.opts.hooks?.onRemoved?.(entries, why);
    for (const e of entries) await this.io.rm(e.dir, { recursive: true, force: true }).catch(() => undefined);
    // Day folders left empty (rmdir refuses non-empty ones).
    for (const day of new Set(entries.map((e) => dirname(e.dir)))) await rmdir(day).catch(() => undefined);
  }

  private rotateByAge(): Promise<void> {
    const cutoff = this.now() - this.opts.keepDays * DAY_MS;
    return this.remove(this.index.filter((e) => e.ts < cutoff && e.label === undefined), 'age');
  }

  /** Make room for `bytes` more: the oldest unlabelled captures first, then the oldest labelled. */
  private rotateBySize(bytes: number): Promise<void> {
    if (this.totalBytes + bytes <= this.opts.maxBytes) return Promise.resolve();
    const victims: CaptureEntry[] = [];
    let total = this.totalBytes;
    for (const labelled of [false, true]) {
      for (const e of this.index) {
        if (total + bytes <= this.opts.maxBytes) break;
        if ((e.label !== undefined) !== labelled) continue;
        victims.push(e);
        total -= e.bytes;
      }
    }
    if (victims.some((e) => e.label !== undefined)) this.warn('labelled_rotated', `record.maxBytes reached: deleting labelled captures too (move them out with 'fairline train --add-normal' or raise maxBytes)`);
    return this.remove(victims, 'size');
  }
}
