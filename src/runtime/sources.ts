/**
 * Frame sources of a station: a configured camera (src/config.ts `SourceSpec`) as an
 * `Observable<Frame>` for the inspection graph.
 *
 * - GStreamer types (`gstreamer`, `v4l2`, `rtsp`, `file`) run through {@link GstSource}; live
 *   cameras are wrapped in {@link withReconnect} so an unplugged or restarting camera comes back
 *   by itself (seq keeps increasing across reconnects).
 * - `images`: files of a folder (glob pattern), emitted as their encoded bytes; decoding happens
 *   in the graph (decode stage, bounded concurrency), so a corrupt file becomes an `error`
 *   verdict instead of stopping the source.
 * - `synthetic`: generated BGR frames of a textured part with occasional defects, labelled, for
 *   soak tests and demos without a camera.
 *
 * Replay-mode sources can be paced by the consumer: with `ack$`, at most `window` frames are out
 * before the first acknowledgement and one more per acknowledgement (the station acknowledges
 * every verdict), so replaying a folder of 100k images never holds more than `window` of them
 * in memory.
 */
import { accessSync, constants, existsSync, readdirSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { Observable, defer, map, repeat, throwError, type Subscription } from 'rxjs';
import type { CameraConfig, SourceSpec } from '../config.js';
import { ConfigError, SourceError } from '../errors.js';
import { createRng } from '../model/synthesis/rng.js';
import type { Frame } from '../streams/frame.js';
import { GstSource, aviTotalFrames, gstQuote, toFrame, withReconnect, type RawFrame, type ReconnectOptions } from '../streams/gstreamer.js';

/** Source events for metrics (`fairline_source_up`, `fairline_source_reconnects_total`) and logs. */
export interface SourceHooks {
  /** The camera delivers frames (again). */
  onUp?(camera: string): void;
  /** The camera went down (`err` undefined at end of stream). */
  onDown?(camera: string, err: unknown): void;
  /** A reconnect attempt is scheduled. */
  onReconnect?(camera: string, attempt: number, delayMs: number, err: unknown): void;
  /** GStreamer dropped frames inside the pipeline (live mode: the consumer was too slow). */
  onDrop?(camera: string, frames: number): void;
}

export interface CameraSourceOptions {
  hooks?: SourceHooks;
  /** Consumer pacing for replay-mode sources (images, file, synthetic without fps): one more frame per emission. */
  ack$?: Observable<unknown>;
  /** Frames allowed out before the first ack (default 8). */
  window?: number;
  /** Backoff of live reconnects (defaults of {@link withReconnect}). */
  reconnect?: Pick<ReconnectOptions, 'initialDelayMs' | 'maxDelayMs' | 'factor' | 'maxAttempts'>;
  /** Labels for image files (replay/evaluation). */
  labelFor?: (path: string) => 0 | 1 | undefined;
  /** Wall clock (ms epoch) for captureTs of file and synthetic frames (default `Date.now`). */
  now?: () => number;
}

/** The image-file extensions the images source picks up by default. */
export const IMAGE_PATTERN = '*.{png,jpg,jpeg,bmp,tif,tiff,webp}';

/**
 * A glob as a RegExp over `/`-separated relative paths: `*` (not across `/`), `?`, `**` (any
 * depth, `**\/` may match nothing), `{a,b}` alternatives and `[...]` classes (`[!...]` negated).
 * Case-insensitive, so `*.png` also finds `IMG.PNG` from a camera's SD card.
 *
 * @example
 * globToRegExp('**\/*.{png,jpg}').test('good/04.png'); // true
 */
export function globToRegExp(glob: string): RegExp {
  let re = '';
  let depth = 0;
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') {
      if (glob[i + 1] === '*') {
        i++;
        if (glob[i + 1] === '/') {
          i++;
          re += '(?:[^/]*/)*';
        } else re += '.*';
      } else re += '[^/]*';
    } else if (c === '?') re += '[^/]';
    else if (c === '{') {
      depth++;
      re += '(?:';
    } else if (c === '}' && depth > 0) {
      depth--;
      re += ')';
    } else if (c === ',' && depth > 0) re += '|';
    else if (c === '[') {
      const end = glob.indexOf(']', i + 2);
      if (end < 0) re += '\\[';
      else {
        let body = glob.slice(i + 1, end);
        if (body.startsWith('!')) body = `^${body.slice(1)}`;
        re += `[${body.replace(/\\/g, '\\\\')}]`;
        i = end;
      }
    } else re += c.replace(/[.+^$()|\\]/g, '\\$&');
  }
  if (depth !== 0) throw new ConfigError(`glob '${glob}': unbalanced '{'`);
  return new RegExp(`^${re}$`, 'i');
}

/**
 * Files under `dir` whose path relative to `dir` matches `pattern` (see {@link globToRegExp}),
 * sorted by relative path. Hidden entries are skipped; subfolders are only walked when the
 * pattern contains `/`.
 *
 * @throws SourceError `no_images` when `dir` is not a readable folder.
 */
export function listImageFiles(dir: string, pattern = IMAGE_PATTERN): string[] {
  const re = globToRegExp(pattern);
  const recursive = pattern.includes('/');
  const out: string[] = [];
  const walk = (d: string): void => {
    let entries;
    try {
      entries = readdirSync(d, { withFileTypes: true });
    } catch (err) {
      throw new SourceError('no_images', `cannot read image folder ${d}: ${(err as Error).message}`, { cause: err });
    }
    for (const e of entries) {
      if (e.name.startsWith('.')) continue;
      const p = join(d, e.name);
      const isDir = e.isDirectory() || (e.isSymbolicLink() && safeIsDir(p));
      if (isDir) {
        if (recursive) walk(p);
      } else if (re.test(relative(dir, p).split(sep).join('/'))) out.push(p);
    }
  };
  walk(dir);
  return out.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

function safeIsDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/** A file to emit, with its optional ground-truth label. */
export interface ImageFile {
  path: string;
  label?: 0 | 1;
}

export interface ImageFilesOptions {
  sourceId: string;
  /** Emit at most this many frames per second (default: as fast as paced by `ack$`, or as read). */
  fps?: number;
  /** Start again at the first file after the last (seq keeps increasing). */
  loop?: boolean;
  ack$?: Observable<unknown>;
  /** Frames out before the first ack (default 8). */
  window?: number;
  /** First seq (default 0). */
  seqStart?: number;
  now?: () => number;
}

/**
 * Image files as encoded frames (`format: 'encoded'`, size 0x0 until decoded), read one at a time.
 * A file that cannot be read is emitted with an empty payload, so it ends as an `error` verdict
 * (`bad_frame`, with its `path`) rather than silently missing.
 *
 * @example
 * ```ts
 * imageFilesSource([{ path: 'a.png', label: 0 }], { sourceId: 'replay', ack$: verdictAck$ })
 *   .pipe(inspect(deps)).subscribe(publish);
 * ```
 */
export function imageFilesSource(files: readonly ImageFile[], opts: ImageFilesOptions): Observable<Frame> {
  if (opts.fps !== undefined && !(opts.fps > 0)) throw new ConfigError(`fps must be > 0, got ${opts.fps}`);
  const window = opts.window ?? 8;
  if (!Number.isInteger(window) || window < 1) throw new ConfigError(`window must be an integer >= 1, got ${window}`);
  const now = opts.now ?? Date.now;
  return new Observable<Frame>((subscriber) => {
    let index = 0;
    let seq = opts.seqStart ?? 0;
    let credits = opts.ack$ ? window : Infinity;
    // One pump at a time: true while a file is being read or the fps timer waits.
    let busy = false;
    let nextDue = 0;
    let timer: NodeJS.Timeout | undefined;
    let ackSub: Subscription | undefined;

    const pump = async (): Promise<void> => {
      if (busy) return;
      busy = true;
      try {
        while (!subscriber.closed && credits > 0) {
          if (index >= files.length) {
            if (opts.loop && files.length > 0) index = 0;
            else {
              subscriber.complete();
              return;
            }
          }
          if (opts.fps) {
            const wait = nextDue - Date.now();
            if (wait > 0) {
              timer = setTimeout(() => {
                timer = undefined;
                busy = false;
                void pump();
              }, wait);
              return; // keep `busy` until the timer fires
            }
            nextDue = Math.max(nextDue, Date.now()) + 1000 / opts.fps;
          }
          const file = files[index++]!;
          let data: Uint8Array;
          try {
            data = await readFile(file.path);
          } catch {
            data = new Uint8Array(0);
          }
          if (subscriber.closed) return;
          if (credits !== Infinity) credits--;
          const frame: Frame = { sourceId: opts.sourceId, seq: seq++, captureTs: now(), payload: { data, width: 0, height: 0, format: 'encoded' }, path: file.path };
          if (file.label !== undefined) frame.label = file.label;
          subscriber.next(frame);
        }
        busy = false;
      } catch (err) {
        busy = false;
        subscriber.error(err);
      }
    };

    if (opts.ack$) {
      ackSub = opts.ack$.subscribe(() => {
        if (credits !== Infinity) credits++;
        void pump();
      });
    }
    void pump();
    return () => {
      clearTimeout(timer);
      ackSub?.unsubscribe();
    };
  });
}

export interface SyntheticOptions {
  sourceId: string;
  width: number;
  height: number;
  /** Frames per second; a frame is generated on each tick. */
  fps: number;
  /** Stop after this many frames (default: never). */
  count?: number;
  /** Fraction of frames with a defect (label 1). */
  defectRate: number;
  seed: number;
  now?: () => number;
}

/**
 * One synthetic BGR frame: a textured ellipse ("the part") on a dark background with mild noise;
 * with `defect`, a dark spot of 3-8% of the frame size somewhere on the part. Deterministic in
 * (seed, seq).
 */
export function syntheticFrameData(width: number, height: number, seed: number, seq: number, defect: boolean): Uint8Array {
  const rng = createRng(`${seed}:${seq}`);
  const data = new Uint8Array(width * height * 3);
  const cx = width / 2, cy = height / 2, rx = width * 0.38, ry = height * 0.34;
  const s = Math.min(width, height);
  const r = defect ? s * rng.uniform(0.03, 0.08) : 0;
  const ang = rng.uniform(0, 2 * Math.PI), rad = rng.uniform(0, 0.6);
  const dx = cx + Math.cos(ang) * rad * rx, dy = cy + Math.sin(ang) * rad * ry;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const o = (y * width + x) * 3;
      const e = ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2;
      const noise = rng.normal(0, 3);
      let b: number, g: number, rr: number;
      if (e <= 1) {
        // A hazelnut-brown part with a fine stripe texture.
        const t = 12 * Math.sin((x + 0.5 * y) * 0.35);
        b = 40 + t; g = 90 + t; rr = 150 + t;
        if (defect && (x - dx) ** 2 + (y - dy) ** 2 <= r * r) {
          b = 25; g = 25; rr = 40;
        }
      } else {
        b = 18; g = 18; rr = 20;
      }
      data[o] = clamp8(b + noise);
      data[o + 1] = clamp8(g + noise);
      data[o + 2] = clamp8(rr + noise);
    }
  }
  return data;
}

function clamp8(v: number): number {
  return v < 0 ? 0 : v > 255 ? 255 : Math.round(v);
}

/**
 * Synthetic frames at `fps` (raw BGR, labelled), for soak tests and demos.
 *
 * @example
 * ```ts
 * syntheticSource({ sourceId: 'sim0', width: 256, height: 256, fps: 10, count: 100, defectRate: 0.1, seed: 1 })
 * ```
 */
export function syntheticSource(opts: SyntheticOptions): Observable<Frame> {
  if (!(opts.fps > 0)) throw new ConfigError(`synthetic fps must be > 0, got ${opts.fps}`);
  const now = opts.now ?? Date.now;
  return new Observable<Frame>((subscriber) => {
    const decide = createRng(opts.seed);
    let seq = 0;
    const period = 1000 / opts.fps;
    const t0 = Date.now();
    let timer: NodeJS.Timeout | undefined;
    const tick = (): void => {
      if (subscriber.closed) return;
      if (opts.count !== undefined && seq >= opts.count) {
        subscriber.complete();
        return;
      }
      const defect = decide.uniform() < opts.defectRate;
      const data = syntheticFrameData(opts.width, opts.height, opts.seed, seq, defect);
      subscriber.next({ sourceId: opts.sourceId, seq, captureTs: now(), payload: { data, width: opts.width, height: opts.height, format: 'bgr' }, label: defect ? 1 : 0 });
      seq++;
      // Schedule against the start time so the rate does not drift with generation time.
      timer = setTimeout(tick, Math.max(0, t0 + seq * period - Date.now()));
    };
    timer = setTimeout(tick, 0);
    return () => clearTimeout(timer);
  });
}

/**
 * Why a GStreamer source cannot start, where that is visible without GStreamer: a v4l2 device
 * that is missing or not accessible (GStreamer reports that only as a failed start, with no
 * message this binding can read). Undefined when nothing is known to be wrong.
 */
export function sourcePreflight(spec: SourceSpec): SourceError | undefined {
  if (spec.type !== 'v4l2') return undefined;
  if (!existsSync(spec.device)) return new SourceError('no_device', `${spec.device} does not exist (camera unplugged, or at another /dev/videoN)`);
  try {
    accessSync(spec.device, constants.R_OK | constants.W_OK);
  } catch {
    return new SourceError('no_device', `${spec.device}: permission denied (the user needs to be in the 'video' group)`);
  }
  return undefined;
}

/** The source's frames, or at once the reason it cannot start (see {@link sourcePreflight}). */
export function checkedFrames(src: GstSource, spec: SourceSpec, opts: Parameters<GstSource['frames$']>[0] = {}): Observable<RawFrame> {
  const problem = sourcePreflight(spec);
  return problem ? throwError(() => problem) : src.frames$(opts);
}

/** SourceError codes that retrying cannot fix. */
const FATAL_SOURCE = new Set(['bad_pipeline', 'no_sink', 'gstreamer_unavailable']);

/** The GStreamer source of a camera (not yet subscribed). */
export function gstSourceFor(camera: Pick<CameraConfig, 'id' | 'mode'>, spec: Exclude<SourceSpec, { type: 'images' } | { type: 'synthetic' }>, hooks: SourceHooks = {}): GstSource {
  const base = {
    sourceId: camera.id,
    mode: camera.mode,
    onDrop: (n: number) => hooks.onDrop?.(camera.id, n),
  };
  switch (spec.type) {
    case 'gstreamer':
      return new GstSource(spec.pipeline, base);
    case 'v4l2': {
      // Capture size and rate are asked of the camera after decoding (raw or MJPEG cameras alike).
      const caps: string[] = [];
      if (spec.width !== undefined && spec.height !== undefined) caps.push(`width=${spec.width},height=${spec.height}`);
      const rate = spec.fps !== undefined ? ` ! videorate drop-only=true ! video/x-raw,framerate=${Math.round(spec.fps * 1000)}/1000` : '';
      const size = caps.length ? ` ! videoscale ! video/x-raw,${caps.join(',')}` : '';
      return new GstSource(`v4l2src device=${gstQuote(spec.device)} ! decodebin${rate}${size}`, base);
    }
    case 'rtsp':
      return new GstSource(`rtspsrc location=${gstQuote(spec.url)} protocols=${spec.transport} latency=${spec.latencyMs} ! decodebin`, base);
    case 'file':
      // A recording played as a live camera keeps real time (sync); a replay runs as fast as consumed.
      return new GstSource(`filesrc location=${gstQuote(spec.path)} ! decodebin`, {
        ...base,
        sync: camera.mode === 'live',
        expectedFrames: aviTotalFrames(spec.path),
      });
  }
}

/**
 * A configured camera as frames.
 *
 * - live GStreamer cameras reconnect with backoff forever (or `reconnect.maxAttempts`), except
 *   for errors retrying cannot fix (bad pipeline, no GStreamer);
 * - replay-mode sources (files, images, GStreamer in `replay` mode) honour `ack$` pacing;
 * - `file`/`images` with `loop: true` start over at the end, seq keeps increasing.
 *
 * @example
 * ```ts
 * const frames$ = cameraSource(cfg.cameras[0], { hooks: { onUp: (c) => up.set({ camera: c }, 1) } });
 * ```
 * @throws ConfigError synchronously for an impossible source spec.
 */
export function cameraSource(camera: CameraConfig, opts: CameraSourceOptions = {}): Observable<Frame> {
  const spec = camera.source;
  const hooks = opts.hooks ?? {};
  const paced = camera.mode === 'replay' && opts.ack$ ? { ack$: opts.ack$, window: opts.window ?? 8 } : undefined;
  switch (spec.type) {
    case 'images': {
      const io: ImageFilesOptions = { sourceId: camera.id, loop: spec.loop };
      if (spec.fps !== undefined) io.fps = spec.fps;
      if (paced) Object.assign(io, paced);
      if (opts.now) io.now = opts.now;
      return defer(() => {
        const files = listImageFiles(spec.dir, spec.pattern);
        if (files.length === 0) throw new SourceError('no_images', `camera ${camera.id}: no files match '${spec.pattern}' in ${spec.dir}`);
        hooks.onUp?.(camera.id);
        return imageFilesSource(
          files.map((path) => {
            const label = opts.labelFor?.(path);
            return label === undefined ? { path } : { path, label };
          }),
          io,
        );
      });
    }
    case 'synthetic': {
      const so: SyntheticOptions = { sourceId: camera.id, width: spec.width, height: spec.height, fps: spec.fps, defectRate: spec.defectRate, seed: spec.seed };
      if (spec.count !== undefined) so.count = spec.count;
      if (opts.now) so.now = opts.now;
      return defer(() => {
        hooks.onUp?.(camera.id);
        return syntheticSource(so);
      });
    }
    default: {
      const src = gstSourceFor(camera, spec, hooks);
      if (camera.mode === 'live' && spec.type !== 'file') {
        const ro: ReconnectOptions = {
          ...opts.reconnect,
          retryable: (err) => !(err instanceof SourceError && FATAL_SOURCE.has(err.code)),
          onUp: () => hooks.onUp?.(camera.id),
          onDown: (err) => hooks.onDown?.(camera.id, err),
          onReconnect: (attempt, delay, err) => hooks.onReconnect?.(camera.id, attempt, delay, err),
        };
        return withReconnect(() => defer(() => checkedFrames(src, spec)), ro).pipe(map(toFrame));
      }
      const once = (): Observable<RawFrame> =>
        defer(() => {
          hooks.onUp?.(camera.id);
          return checkedFrames(src, spec, paced ?? {});
        });
      if (spec.type === 'file' && spec.loop) {
        // Renumber: each pass of the file starts at seq 0 inside GstSource.
        let seq = 0;
        return once().pipe(
          repeat(),
          map((raw) => toFrame({ ...raw, seq: seq++ })),
        );
      }
      return once().pipe(map(toFrame));
    }
  }
}
