/**
 * GStreamer frame sources: any GStreamer pipeline (camera, RTSP, video file, image sequence,
 * test pattern) as an RxJS `Observable<RawFrame>` of packed RGB frames, via the thin NAN
 * binding gstreamer-superficial.
 *
 * Things the binding does not do for us, and how this module handles them (measured on
 * GStreamer 1.22 / gstreamer-superficial 1.7.4, see docs in the repo notes):
 *
 * - **No PTS.** `appsink.pull()` yields `(buffer, caps)` only, so `captureTs` is derived (see
 *   {@link RawFrame.captureTs}).
 * - **Drops are invisible.** appsink `drop=true` discards old buffers inside GStreamer. We read
 *   the sink's `stats` property (a GstStructure with `rendered` = buffers that reached the sink
 *   and `dropped` = buffers basesink dropped as late) after every pull. Every buffer that reached
 *   the sink was either pulled by us, is still queued in appsink (at most `max-buffers`), or was
 *   dropped; so `dropped >= rendered + lateDropped - pulled - maxBuffers`, exact once the queue is
 *   empty (EOS). The count is a lower bound while running and never over-counts.
 * - **Errors hang pulls.** A pending `pull()` never returns after a pipeline error, so the bus
 *   callback stops the pipeline, which makes the pull return `null`, and the observable errors
 *   with a {@link SourceError}. A watchdog errors with code `stalled` when no frame arrives.
 * - **Threadpool.** Every pending `pull()` and the (single) `pollBus()` wait each hold one libuv
 *   threadpool thread for as long as they block. See {@link recommendedThreadpoolSize}.
 * - **Bus thread at exit.** Pipelines run with `auto-flush-bus=false`, so stopping always leaves a
 *   message that wakes (and ends) the bus wait, even when that wait starts after the stop.
 * - **Pipelines are never freed** by the binding (about +0.5 MB RSS each); every subscription
 *   creates one, so prefer long-lived subscriptions over many short ones.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { AppSink, BusMessage, Caps, Pipeline } from 'gstreamer-superficial';
import { Observable, type Subscription } from 'rxjs';
import { ConfigError, SourceError } from '../errors.js';
import type { Frame } from './frame.js';

type GstModule = typeof import('gstreamer-superficial').default;

let gstModule: GstModule | undefined;
/** Load the addon lazily: importing this file must not need GStreamer (e.g. for `--help`). */
function gst(): GstModule {
  if (!gstModule) {
    try {
      gstModule = createRequire(import.meta.url)('gstreamer-superficial') as GstModule;
    } catch (err) {
      throw new SourceError('gstreamer_unavailable', `cannot load gstreamer-superficial: ${(err as Error).message}`, { cause: err });
    }
  }
  return gstModule;
}

/**
 * One packed RGB frame as it leaves a source. (The lead reconciles this with the project-wide
 * `Frame` type in src/streams/frame.ts.)
 */
export interface RawFrame {
  /** Identifies the camera / file (e.g. `cam0`). */
  sourceId: string;
  /** Monotonic per source: 0, 1, 2, ... over delivered frames (drops do not leave gaps). */
  seq: number;
  /**
   * Capture time in ms since the Unix epoch. GStreamer's PTS is not exposed by the binding, so:
   * - `live` mode: wall clock when the pull returned (the frame is at most `max-buffers` frames
   *   old, since the sink keeps only the newest);
   * - `replay` mode: wall clock of the first frame + `(seq - firstSeq) * 1000 / fps`, with fps from
   *   the negotiated caps (`framerate`), i.e. media time laid out from the start; when the caps
   *   carry no framerate (`0/1`), the wall clock at pull.
   */
  captureTs: number;
  width: number;
  height: number;
  format: 'rgb';
  /** `width * height * 3` bytes, rows packed (GStreamer's 4-byte row padding removed). */
  data: Buffer;
}

/**
 * The graph's {@link Frame} for a raw frame (the pixel buffer is shared, not copied).
 *
 * @example
 * const frames$ = source.frames$().pipe(map(toFrame));
 */
export function toFrame(raw: RawFrame): Frame {
  return {
    sourceId: raw.sourceId,
    seq: raw.seq,
    captureTs: raw.captureTs,
    payload: { data: raw.data, width: raw.width, height: raw.height, format: raw.format },
  };
}

/**
 * `live`: keep only the newest frames (`max-buffers` 1..2, `drop=true`); drops are counted.
 * `replay`: never drop (`drop=false`): when the queue is full the decoder blocks, so frames are
 * pulled at the pipeline's (or the consumer's, see {@link FramesOptions.ack$}) pace.
 */
export type SourceMode = 'live' | 'replay';

export interface GstSourceOptions {
  /** `sourceId` on every frame. */
  sourceId: string;
  /** Default `live`. */
  mode?: SourceMode;
  /** Output size; when set, `videoscale` resizes to exactly this (no borders, aspect not kept). */
  width?: number;
  height?: number;
  /** appsink `max-buffers`: default 1 for live, 4 for replay. Must be >= 1 (0 = unbounded is refused). */
  maxBuffers?: number;
  /** appsink `sync`: default false (live sources pace themselves; files run as fast as consumed). */
  sync?: boolean;
  /**
   * Watchdog: error with `SourceError('stalled')` when no frame arrives for this long while a
   * pull is pending. Default 5000 ms for live, 30000 ms for replay; 0 disables.
   */
  stallTimeoutMs?: number;
  /** First `seq` (default 0). */
  seqStart?: number;
  /** Called with the number of newly detected drops and the running total (live mode). */
  onDrop?: (newDrops: number, total: number) => void;
  /**
   * Frames the file says it holds (e.g. {@link aviTotalFrames}). A stream that ends with fewer,
   * or with fewer than its duration at the caps framerate implies, errors with
   * `SourceError('truncated')` instead of completing: demuxers end a cut-off file with a plain EOS.
   */
  expectedFrames?: number;
  /** Wall clock, injectable for tests. Default `Date.now`. */
  now?: () => number;
}

export interface FramesOptions {
  /**
   * Consumer-driven pacing (replay): each emission of `ack$` allows one more frame to be pulled
   * beyond the first `window` frames. Without it the next pull starts as soon as a frame has been
   * emitted, which is enough when the consumer is synchronous.
   */
  ack$?: Observable<unknown>;
  /** Frames that may be emitted before the first ack. Default 1. */
  window?: number;
}

export interface SourceStats {
  /** Frames delivered by the current / last run. */
  frames: number;
  /** Buffers that reached appsink (from its `stats`). */
  rendered: number;
  /** Frames known to be dropped (lower bound while running, exact after EOS). */
  dropped: number;
}

/** How long a pipeline that ended without a frame may take to say (on its bus) whether that was EOS or an error. */
const START_FAILURE_WAIT_MS = 500;

/** Quote a value for a gst-launch description (`location="..."`). */
export function gstQuote(value: string): string {
  return `"${value.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

function positiveInt(name: string, v: number | undefined): void {
  if (v !== undefined && !(Number.isInteger(v) && v > 0)) throw new ConfigError(`${name} must be a positive integer, got ${v}`);
}

/** Parse a caps framerate `"30/1"` into frames per second (0 when unknown). */
export function parseFramerate(value: unknown): number {
  if (typeof value !== 'string') return 0;
  const m = /^(\d+)\/(\d+)$/.exec(value);
  if (!m) return 0;
  const den = Number(m[2]);
  return den > 0 ? Number(m[1]) / den : 0;
}

/** Parse basesink `stats` (`"application/x-gst-base-sink-stats, ..., dropped=(guint64)0, rendered=(guint64)89;"`). */
function parseSinkStats(value: unknown): { rendered: number; dropped: number } | undefined {
  if (typeof value !== 'string') return undefined;
  const r = /rendered=\(guint64\)(\d+)/.exec(value);
  const d = /dropped=\(guint64\)(\d+)/.exec(value);
  if (!r) return undefined;
  return { rendered: Number(r[1]), dropped: d ? Number(d[1]) : 0 };
}

let activePipelines = 0;
let warnedThreadpool = false;

/**
 * libuv threadpool size to give a process running `nPipelines` GStreamer sources: each running
 * source blocks 2 threads (a pending `pull()` and the `pollBus()` wait), plus 4 for fs, sharp,
 * dns and crypto. The pool is sized once, at its first use, from `UV_THREADPOOL_SIZE`, so the
 * CLI must set it in the environment or as the very first statement of the entry file, before
 * any import that touches fs/crypto asynchronously. Too small a pool starves everything else
 * (measured: `fs.readFile` 1 ms -> 1.7 s with 4 live pipelines on the default pool of 4).
 *
 * @example
 * process.env.UV_THREADPOOL_SIZE ??= String(recommendedThreadpoolSize(cameras.length));
 */
export function recommendedThreadpoolSize(nPipelines: number): number {
  if (!(Number.isInteger(nPipelines) && nPipelines >= 0)) throw new ConfigError(`nPipelines must be a non-negative integer, got ${nPipelines}`);
  return Math.min(1024, 2 * nPipelines + 4);
}

/** Number of GStreamer pipelines currently running in this process (each holds 2 pool threads). */
export function runningPipelines(): number {
  return activePipelines;
}

function checkThreadpool(): void {
  const size = Number(process.env.UV_THREADPOOL_SIZE) || 4;
  if (!warnedThreadpool && 2 * activePipelines > size - 1) {
    warnedThreadpool = true;
    process.emitWarning(
      `${activePipelines} GStreamer pipelines hold ${2 * activePipelines} of ${size} libuv threads; ` +
        `set UV_THREADPOOL_SIZE=${recommendedThreadpoolSize(activePipelines)} before start-up`,
      'FairlineThreadpoolWarning',
    );
  }
}

/**
 * A GStreamer pipeline as a cold Observable of RGB frames: every subscription builds, plays
 * and (on unsubscribe, error or EOS) stops its own pipeline.
 *
 * `upstream` is a gst-launch description producing raw or decodable video, e.g.
 * `videotestsrc is-live=true` or `filesrc location=a.avi ! decodebin`; this class appends
 * `! videoscale ! videoconvert ! video/x-raw,format=RGB[,width,height] ! appsink name=sink ...`
 * with the mode's settings. A trailing `! appsink ...` in `upstream` is replaced by ours.
 *
 * @example
 * const src = GstSource.videoFile('line1.avi', { sourceId: 'cam0', width: 256, height: 256 });
 * src.frames$().pipe(take(10)).subscribe((f) => console.log(f.seq, f.captureTs, f.data.length));
 */
export class GstSource {
  readonly sourceId: string;
  readonly mode: SourceMode;
  /** The full gst-launch description that is run. */
  readonly description: string;
  private readonly maxBuffers: number;
  private readonly stallTimeoutMs: number;
  private readonly opts: GstSourceOptions;
  private lastStats: SourceStats = { frames: 0, rendered: 0, dropped: 0 };

  constructor(upstream: string, options: GstSourceOptions) {
    if (!options.sourceId) throw new ConfigError('GstSource needs a sourceId');
    positiveInt('width', options.width);
    positiveInt('height', options.height);
    positiveInt('maxBuffers', options.maxBuffers);
    if ((options.width === undefined) !== (options.height === undefined)) throw new ConfigError('give both width and height, or neither');
    if (options.stallTimeoutMs !== undefined && !(options.stallTimeoutMs >= 0)) throw new ConfigError(`stallTimeoutMs must be >= 0`);
    this.opts = options;
    this.sourceId = options.sourceId;
    this.mode = options.mode ?? 'live';
    this.maxBuffers = options.maxBuffers ?? (this.mode === 'live' ? 1 : 4);
    this.stallTimeoutMs = options.stallTimeoutMs ?? (this.mode === 'live' ? 5000 : 30000);
    const head = upstream.trim().replace(/!\s*appsink\b[^!]*$/, '').trim().replace(/!$/, '').trim();
    if (!head) throw new ConfigError('empty pipeline description');
    const size = options.width ? `,width=${options.width},height=${options.height},pixel-aspect-ratio=1/1` : '';
    const drop = this.mode === 'live';
    // videoscale before videoconvert: scaling in YUV then converting the smaller frame is ~2.5x faster.
    this.description =
      `${head} ! videoscale add-borders=false ! videoconvert ! video/x-raw,format=RGB${size} ! ` +
      `appsink name=sink max-buffers=${this.maxBuffers} drop=${drop} sync=${options.sync ?? false} emit-signals=false`;
  }

  /** Camera `/dev/videoN` through v4l2src (raw or MJPEG, decoded by decodebin); live. */
  static v4l2(device: string, options: Omit<GstSourceOptions, 'mode'> & { mode?: SourceMode }): GstSource {
    return new GstSource(`v4l2src device=${gstQuote(device)} ! decodebin`, { ...options, mode: options.mode ?? 'live' });
  }

  /** RTSP camera over TCP with no jitter buffer latency; live. */
  static rtsp(url: string, options: Omit<GstSourceOptions, 'mode'> & { mode?: SourceMode }): GstSource {
    return new GstSource(`rtspsrc location=${gstQuote(url)} protocols=tcp latency=0 ! decodebin`, { ...options, mode: options.mode ?? 'live' });
  }

  /** A video file of any container/codec decodebin knows (MJPEG AVI/MKV need only plugins-good); replay. */
  static videoFile(path: string, options: Omit<GstSourceOptions, 'mode'> & { mode?: SourceMode }): GstSource {
    return new GstSource(`filesrc location=${gstQuote(path)} ! decodebin`, { ...options, mode: options.mode ?? 'replay' });
  }

  /**
   * An image sequence such as `img_%05d.png` (printf pattern) via multifilesrc; PNG or JPEG is
   * chosen from the extension (decodebin otherwise). `fps` (default 30) only sets the caps
   * framerate, which `captureTs` uses in replay mode.
   */
  static imageSequence(
    pattern: string,
    options: Omit<GstSourceOptions, 'mode'> & { mode?: SourceMode; startIndex?: number; stopIndex?: number; fps?: number },
  ): GstSource {
    const fps = options.fps ?? 30;
    positiveInt('fps', fps);
    const start = options.startIndex ?? 0;
    const stop = options.stopIndex !== undefined ? ` stop-index=${options.stopIndex}` : '';
    const ext = pattern.toLowerCase().split('.').pop();
    const [mime, dec] =
      ext === 'png' ? ['image/png', 'pngdec'] : ext === 'jpg' || ext === 'jpeg' ? ['image/jpeg', 'jpegdec'] : [undefined, 'decodebin'];
    const caps = mime ? ` caps=${gstQuote(`${mime},framerate=${fps}/1`)}` : '';
    return new GstSource(`multifilesrc location=${gstQuote(pattern)} index=${start}${stop}${caps} ! ${dec}`, { ...options, mode: options.mode ?? 'replay' });
  }

  /**
   * videotestsrc. `live` (default true) paces at `fps` like a camera (`is-live=true`); otherwise
   * frames come as fast as pulled. `numBuffers` ends the stream (EOS) after that many frames.
   */
  static testPattern(
    options: Omit<GstSourceOptions, 'mode'> & { mode?: SourceMode; pattern?: string; fps?: number; numBuffers?: number; live?: boolean },
  ): GstSource {
    const fps = options.fps ?? 30;
    positiveInt('fps', fps);
    positiveInt('numBuffers', options.numBuffers);
    const live = options.live ?? true;
    if (options.pattern !== undefined && !/^[a-z0-9-]+$/i.test(options.pattern)) throw new ConfigError(`bad videotestsrc pattern ${JSON.stringify(options.pattern)}`);
    const nb = options.numBuffers !== undefined ? ` num-buffers=${options.numBuffers}` : '';
    const w = options.width ?? 64;
    const h = options.height ?? 64;
    return new GstSource(
      `videotestsrc is-live=${live} pattern=${options.pattern ?? 'smpte'}${nb} ! video/x-raw,width=${w},height=${h},framerate=${fps}/1`,
      { ...options, mode: options.mode ?? (live ? 'live' : 'replay') },
    );
  }

  /**
   * At EOS: the frames a complete stream would have had, when that is known and more than arrived
   * (one frame of slack for rounding of the duration).
   */
  private missingFrames(pipeline: Pipeline, stats: SourceStats, fps: number): { expected: number; from: string } | undefined {
    const got = stats.frames + stats.dropped;
    const header = this.opts.expectedFrames ?? 0;
    if (header > got + 1) return { expected: header, from: 'as its header says' };
    const duration = pipeline.queryDuration();
    const fromDuration = duration > 0 && fps > 0 ? Math.round(duration * fps) : 0;
    if (fromDuration > got + 1) return { expected: fromDuration, from: `${duration.toFixed(2)} s at ${+fps.toFixed(3)} fps` };
    return undefined;
  }

  /** Counters of the current (or last) run. */
  stats(): SourceStats {
    return { ...this.lastStats };
  }

  /**
   * The frames. Errors with a `SourceError` (`bad_pipeline`, `no_sink`, `pipeline_error`,
   * `stalled`, `bad_frame`); completes at EOS; unsubscribing stops the pipeline.
   */
  frames$(framesOptions: FramesOptions = {}): Observable<RawFrame> {
    return new Observable<RawFrame>((subscriber) => {
      const now = this.opts.now ?? Date.now;
      let pipeline: Pipeline;
      try {
        pipeline = new (gst().Pipeline)(this.description);
      } catch (err) {
        subscriber.error(
          err instanceof SourceError ? err : new SourceError('bad_pipeline', `bad pipeline "${this.description}": ${(err as Error).message}`, { cause: err }),
        );
        return;
      }
      // Keep state-change messages on the bus when going to NULL. With the default
      // auto-flush-bus, a pollBus work item that starts only after stop() (all libuv threads were
      // busy) finds an empty bus, blocks in gst_bus_timed_pop forever, and process.exit() then
      // hangs joining that thread (reproduced in test/gstreamer.test.ts).
      pipeline['auto-flush-bus'] = false;
      const sinkEl = pipeline.findChild('sink');
      if (!sinkEl || typeof (sinkEl as Partial<AppSink>).pull !== 'function') {
        pipeline.stop();
        subscriber.error(new SourceError('no_sink', `pipeline has no appsink named "sink": ${this.description}`));
        return;
      }
      const sink = sinkEl as AppSink;
      const stats: SourceStats = { frames: 0, rendered: 0, dropped: 0 };
      this.lastStats = stats;
      let seq = this.opts.seqStart ?? 0;
      let finished = false; // no more emissions (error, complete or unsubscribe)
      let stopped = false;
      let busError: BusMessage | undefined;
      let pulling = false;
      let credits = framesOptions.ack$ ? Math.max(1, framesOptions.window ?? 1) : Infinity;
      let ackSub: Subscription | undefined;
      let firstTs = 0;
      let fps = 0;
      let capsFps = 0;
      let stallTimer: NodeJS.Timeout | undefined;
      let busEos = false;
      /** Set while a pull ended without frames and the bus has to tell EOS from a failed start. */
      let awaitingBus: NodeJS.Timeout | undefined;

      const stop = (): void => {
        if (stopped) return;
        stopped = true;
        clearTimeout(stallTimer);
        clearTimeout(awaitingBus);
        awaitingBus = undefined;
        ackSub?.unsubscribe();
        // NULL state: a pending pull returns null and pollBus does not re-arm (frees both threads).
        pipeline.stop();
        activePipelines--;
      };
      const fail = (err: SourceError): void => {
        if (finished) return;
        finished = true;
        stop();
        subscriber.error(err);
      };
      const armWatchdog = (): void => {
        if (this.stallTimeoutMs <= 0) return;
        clearTimeout(stallTimer);
        stallTimer = setTimeout(() => {
          fail(new SourceError('stalled', `no frame from ${this.sourceId} for ${this.stallTimeoutMs} ms`));
        }, this.stallTimeoutMs);
      };

      const updateDrops = (): void => {
        if (this.mode !== 'live') return;
        const s = parseSinkStats(sink['stats']);
        if (!s) return;
        stats.rendered = s.rendered;
        const atLeast = Math.max(0, s.rendered + s.dropped - stats.frames - this.maxBuffers);
        if (atLeast > stats.dropped) {
          const delta = atLeast - stats.dropped;
          stats.dropped = atLeast;
          this.opts.onDrop?.(delta, stats.dropped);
        }
      };

      const onSample = (buf: Buffer | null, caps: Caps): void => {
        pulling = false;
        if (finished) return;
        if (buf) {
          onFrame(buf, caps);
          return;
        }
        if (busError) {
          fail(new SourceError('pipeline_error', `${this.sourceId}: ${busError.message ?? 'error'} (${busError.name ?? busError._src_element_name})`, { cause: busError }));
          return;
        }
        if (stats.frames === 0 && !busEos) {
          // No frame at all: an empty stream (the bus says 'eos') or a pipeline whose start
          // failed. A failed start can leave the pipeline in NULL, where the binding stops
          // polling the bus before the error message, so silence means that.
          awaitingBus = setTimeout(() => {
            awaitingBus = undefined;
            fail(new SourceError('start_failed', `${this.sourceId}: GStreamer could not start the pipeline and gave no reason (try: gst-launch-1.0 ${this.description.replace(/ ! appsink .*$/, ' ! fakesink')})`));
          }, START_FAILURE_WAIT_MS);
          return;
        }
        endOfStream();
      };

      const endOfStream = (): void => {
        if (finished) return;
        // EOS: the appsink queue is empty now, so the drop count becomes exact.
        if (this.mode === 'live') {
          const s = parseSinkStats(sink['stats']);
          if (s) {
            stats.rendered = s.rendered;
            const exact = Math.max(0, s.rendered + s.dropped - stats.frames);
            if (exact > stats.dropped) {
              this.opts.onDrop?.(exact - stats.dropped, exact);
              stats.dropped = exact;
            }
          }
        }
        // After the exact drop count: a dropped frame is not a missing one.
        const missing = this.missingFrames(pipeline, stats, capsFps);
        if (missing) {
          fail(new SourceError('truncated', `${this.sourceId}: the video ended after ${stats.frames} of ${missing.expected} frames (${missing.from}): the file is truncated or damaged`));
          return;
        }
        finished = true;
        stop();
        subscriber.complete();
      };

      const onFrame = (buf: Buffer, caps: Caps): void => {
        const width = Number(caps['width']);
        const height = Number(caps['height']);
        const row = width * 3;
        let data = buf;
        if (!(width > 0 && height > 0) || buf.length < row * height) {
          fail(new SourceError('bad_frame', `${this.sourceId}: ${buf.length} bytes for ${width}x${height} RGB`));
          return;
        }
        if (buf.length !== row * height) {
          // GStreamer pads RGB rows to 4 bytes (e.g. width 50 -> stride 152): repack.
          const stride = buf.length / height;
          if (!Number.isInteger(stride)) {
            fail(new SourceError('bad_frame', `${this.sourceId}: ${buf.length} bytes is not ${height} rows`));
            return;
          }
          data = Buffer.allocUnsafe(row * height);
          for (let y = 0; y < height; y++) buf.copy(data, y * row, y * stride, y * stride + row);
        }
        if (stats.frames === 0) capsFps = parseFramerate(caps['framerate']);
        const wall = now();
        let captureTs = wall;
        if (this.mode === 'replay') {
          if (stats.frames === 0) {
            firstTs = wall;
            fps = parseFramerate(caps['framerate']);
          }
          if (fps > 0) captureTs = firstTs + (stats.frames * 1000) / fps;
        }
        stats.frames++;
        updateDrops();
        if (credits !== Infinity) credits--;
        subscriber.next({ sourceId: this.sourceId, seq: seq++, captureTs, width, height, format: 'rgb', data });
        pullNext();
      };

      const pullNext = (): void => {
        if (finished || pulling || credits <= 0) {
          if (credits <= 0) clearTimeout(stallTimer); // waiting on the consumer, not the pipeline
          return;
        }
        pulling = true;
        armWatchdog();
        sink.pull(onSample);
      };

      // Exactly one pollBus per pipeline (it re-arms itself until the NULL state).
      pipeline.pollBus((msg) => {
        if (msg.type === 'error' && !stopped) {
          busError = msg;
          // Without this stop a pending pull never returns.
          stop();
          if (!pulling) fail(new SourceError('pipeline_error', `${this.sourceId}: ${msg.message ?? 'error'} (${msg.name ?? msg._src_element_name})`, { cause: msg }));
        } else if (msg.type === 'eos') {
          busEos = true;
          if (awaitingBus) endOfStream();
        }
      });
      activePipelines++;
      checkThreadpool();
      if (framesOptions.ack$) {
        ackSub = framesOptions.ack$.subscribe(() => {
          credits++;
          pullNext();
        });
      }
      pipeline.play();
      pullNext();

      return () => {
        finished = true;
        stop();
      };
    });
  }
}

/**
 * The frame count an AVI file's main header (`avih.dwTotalFrames`) declares, or undefined when
 * the file is not a RIFF AVI or does not say (0, e.g. a recorder that died before finishing it).
 * OpenDML files over 1 GB count only their first RIFF chunk there, which errs on the low side.
 *
 * @example
 * aviTotalFrames('line1.avi'); // 20
 */
export function aviTotalFrames(path: string): number | undefined {
  let head: Buffer;
  try {
    const fd = openSync(path, 'r');
    try {
      head = Buffer.alloc(64);
      readSync(fd, head, 0, 64, 0);
    } finally {
      closeSync(fd);
    }
  } catch {
    return undefined; // the pipeline reports a missing or unreadable file itself
  }
  if (head.toString('latin1', 0, 4) !== 'RIFF' || head.toString('latin1', 8, 12) !== 'AVI ' || head.toString('latin1', 24, 28) !== 'avih') return undefined;
  const n = head.readUInt32LE(48);
  return n > 0 ? n : undefined;
}

/** Options for {@link withReconnect}. */
export interface ReconnectOptions {
  /** First retry delay (default 500 ms). */
  initialDelayMs?: number;
  /** Cap on the delay (default 30000 ms). */
  maxDelayMs?: number;
  /** Multiplier per failed attempt (default 2). */
  factor?: number;
  /** Give up (error) after this many consecutive failed attempts (default Infinity). */
  maxAttempts?: number;
  /** First `seq` of the output (default 0). */
  seqStart?: number;
  /** Whether an error is worth retrying (default: all except `bad_pipeline` / `no_sink`, which retrying cannot fix). */
  retryable?: (err: unknown) => boolean;
  /** The source delivered its first frame after (re)subscribing. */
  onUp?: () => void;
  /** A source that was up went down; `err` is undefined at EOS. */
  onDown?: (err: unknown) => void;
  /** A resubscription is scheduled: attempt 1, 2, ... since the source was last up. */
  onReconnect?: (attempt: number, delayMs: number, err: unknown) => void;
}

/**
 * Keep a live source running: on error or EOS, resubscribe to `sourceFactory()` after an
 * exponential backoff (`initialDelayMs * factor^(attempt-1)`, capped at `maxDelayMs`; reset once
 * a frame arrives). `seq` is renumbered so it keeps increasing across reconnects.
 *
 * @example
 * const frames$ = withReconnect(() => GstSource.rtsp(url, { sourceId: 'cam0' }).frames$(), {
 *   onDown: (e) => log.warn({ e }, 'camera down'), onUp: () => log.info('camera up'),
 * });
 */
export function withReconnect(sourceFactory: () => Observable<RawFrame>, options: ReconnectOptions = {}): Observable<RawFrame> {
  const initial = options.initialDelayMs ?? 500;
  const max = options.maxDelayMs ?? 30000;
  const factor = options.factor ?? 2;
  const maxAttempts = options.maxAttempts ?? Infinity;
  if (!(initial >= 0 && max >= initial && factor >= 1)) throw new ConfigError('withReconnect: need 0 <= initialDelayMs <= maxDelayMs and factor >= 1');
  const retryable =
    options.retryable ?? ((err: unknown) => !(err instanceof SourceError && (err.code === 'bad_pipeline' || err.code === 'no_sink')));
  return new Observable<RawFrame>((subscriber) => {
    let seq = options.seqStart ?? 0;
    let attempt = 0;
    let up = false;
    let closed = false;
    let inner: Subscription | undefined;
    let timer: NodeJS.Timeout | undefined;

    const down = (err: unknown): void => {
      inner = undefined;
      if (closed) return;
      if (up) {
        up = false;
        options.onDown?.(err);
      }
      if (err !== undefined && !retryable(err)) {
        closed = true;
        subscriber.error(err);
        return;
      }
      attempt++;
      if (attempt > maxAttempts) {
        closed = true;
        subscriber.error(new SourceError('reconnect_exhausted', `source still down after ${maxAttempts} attempts`, { cause: err }));
        return;
      }
      const delay = Math.min(max, initial * factor ** (attempt - 1));
      options.onReconnect?.(attempt, delay, err);
      timer = setTimeout(connect, delay);
    };
    const connect = (): void => {
      if (closed) return;
      let ended = false;
      const sub = sourceFactory().subscribe({
        next: (frame) => {
          if (!up) {
            up = true;
            attempt = 0;
            options.onUp?.();
          }
          subscriber.next({ ...frame, seq: seq++ });
        },
        error: (err: unknown) => {
          ended = true;
          down(err);
        },
        complete: () => {
          ended = true;
          down(undefined);
        },
      });
      if (!ended) inner = sub;
    };
    connect();
    return () => {
      closed = true;
      clearTimeout(timer);
      inner?.unsubscribe();
    };
  });
}
