/**
 * The fairline config file (YAML or JSON): one file describes a station, its cameras, the model,
 * batching, deadlines, NATS, metrics and the spool.
 *
 * Validated by hand (no schema library): every problem is collected with its path
 * (`cameras[1].source.pipeline: required string`) and reported together in one
 * {@link ConfigValidationError}; unknown keys are errors (a typo must not silently fall back to a
 * default); defaults are filled; file paths are resolved relative to the config file and checked.
 *
 * Example:
 * ```yaml
 * line: L1
 * station: S3
 * model: models/hazelnut            # relative to this file
 * cameras:
 *   - id: cam0
 *     source: { type: rtsp, url: rtsp://10.0.0.5/stream }
 *   - id: replay0
 *     source: { type: images, dir: data/hazelnut_toy/test }
 *     mode: replay
 * batch: { maxSize: 8, maxWaitMs: 20 }
 * deadlineMs: 500
 * failSafe: reject
 * nats: { servers: [nats://127.0.0.1:4222], credsFile: secrets/station.creds, jetstream: { enabled: true } }
 * metrics: { port: 9464 }
 * ui: { listen: 127.0.0.1:8080, token: "${FAIRLINE_UI_TOKEN}" }   # the operator page (src/ui/)
 * record: { dir: captures, rejects: true, passEvery: 100, keepDays: 7, maxBytes: 2GiB }
 * guard: { action: reject, staleFrames: 5 }   # frames the model cannot judge (docs/faults.md)
 * ```
 */
import { existsSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { ConfigError } from './errors.js';
import type { GuardPolicy } from './operators/guard.js';
import { THRESHOLD_RANGE } from './thresholds.js';

export type SourceSpec =
  /** A gst-launch description ending in (or fed into) an appsink. */
  | { type: 'gstreamer'; pipeline: string }
  | { type: 'v4l2'; device: string; width?: number; height?: number; fps?: number }
  | { type: 'rtsp'; url: string; latencyMs: number; transport: 'tcp' | 'udp' }
  | { type: 'file'; path: string; loop: boolean }
  | { type: 'images'; dir: string; pattern: string; fps?: number; loop: boolean }
  | { type: 'synthetic'; width: number; height: number; fps: number; count?: number; defectRate: number; seed: number };

export type SourceType = SourceSpec['type'];

export interface CameraConfig {
  /** Camera id: a NATS subject token (letters, digits, `_`, `-`). */
  id: string;
  source: SourceSpec;
  /** `live` drops stale frames when behind; `replay` loses none. Default: replay for file/images, else live. */
  mode: 'live' | 'replay';
  /** Per-camera threshold override. */
  threshold?: number;
  /** Per-camera deadline override (ms). */
  deadlineMs?: number;
  /** Per-camera guard overrides (each key falls back to the station's `guard`). */
  guard?: Partial<GuardConfig>;
  /**
   * This camera's model artefact (absolute after loading), over the station's `model`. Cameras on
   * the same artefact share one loaded model (src/runtime/models.ts). Without `threshold`, the
   * camera uses this model's calibrated threshold (the station's `threshold` is for its `model`).
   */
  model?: string;
  /**
   * Where the camera's part ids come from: `{ trigger: { windowMs, holdMs } }` = the NATS subject
   * `fairline.<line>.<camera>.trigger` (`{partId, ts}`, matched to the nearest frame within
   * ±windowMs, default 50; a frame waits at most holdMs for its trigger, default 2 x windowMs), or
   * `{ fileName: '<regex>' }` = the named group `partId` (else the first group) of an image's file name.
   */
  partId?: { trigger: { windowMs: number; holdMs: number } } | { fileName: string };
}

/**
 * The domain guard (src/operators/guard.ts): what happens to a frame the model cannot judge
 * (outside what its normal images spanned, or a frozen camera). `action` `reject` (default):
 * verdict reject with reason `out_of_domain` / `stale_frame`; `error`: an error verdict (the gate
 * follows `failSafe`); `pass`: the model decides, the verdict only carries `guard`. `k`: limit of
 * the in-domain measure (default: the model's). `staleFrames`: consecutive near-identical frames
 * of a live camera that mean it is frozen (default 5; 0 = off; replay cameras are never
 * checked). `staleTolerance`: mean absolute grey difference (0..1) up to which two frames count
 * as identical (default 1/1024, a quarter grey level).
 */
export type GuardConfig = GuardPolicy;

/** The guard's defaults. */
export const DEFAULT_GUARD: Readonly<GuardConfig> = { action: 'reject', staleFrames: 5, staleTolerance: 1 / 1024 };

/**
 * A camera's effective guard: its overrides over the station's; the frozen-camera check only on
 * live cameras (a recorded folder may hold the same picture twice on purpose).
 */
export function cameraGuard(cfg: Pick<FairlineConfig, 'guard'>, cam: Pick<CameraConfig, 'mode' | 'guard'>): GuardConfig {
  const g: GuardConfig = { ...cfg.guard, ...cam.guard };
  if (cam.mode !== 'live') g.staleFrames = 0;
  return g;
}

export interface NatsConfig {
  servers: string[];
  user?: string;
  pass?: string;
  token?: string;
  /** NKey user seed (`SU...`). */
  nkey?: string;
  /** JWT credentials file (absolute after loading). */
  credsFile?: string;
  tls?: { ca?: string; cert?: string; key?: string };
  jetstream: { enabled: boolean; stream: string };
}

/** The operator page (src/ui/server.ts). */
export interface UiConfig {
  /** Where the page is served: 127.0.0.1 unless configured (`0.0.0.0:8080` exposes it on every interface). */
  listen: { host: string; port: number };
  /** Bearer token that allows review marks (`${ENV}` keeps it out of the file); absent = a read-only page. */
  token?: string;
}

/** Reject capture (src/streams/recorder.ts): frames, verdicts and maps under `dir`, rotated by age and size. */
export interface RecordConfig {
  /** Capture folder (absolute after loading). */
  dir: string;
  /** Capture every reject (default true). */
  rejects: boolean;
  /** Also capture every N-th pass per camera (0 = none, the default). */
  passEvery: number;
  /** Unlabelled captures older than this are deleted (default 7). */
  keepDays: number;
  /** The folder never grows past this; the oldest captures go first (default 1 GiB). */
  maxBytes: number;
}

export interface FairlineConfig {
  line: string;
  station: string;
  /** Model artefact path (absolute after loading). */
  model: string;
  backend: 'auto' | 'tensorflow' | 'wasm' | 'cpu';
  engine: 'auto' | 'tfjs' | 'onnx';
  cameras: CameraConfig[];
  batch: { maxSize: number; maxWaitMs: number };
  /** Batches allowed to wait for the model in live mode (drop-oldest beyond). */
  queueLimit: number;
  /** Capture-to-verdict deadline (ms). */
  deadlineMs: number;
  /** Decision published when a deadline passes. */
  failSafe: 'reject' | 'pass';
  /** Overrides the model artefact's calibrated threshold. */
  threshold?: number;
  /** What the deployment expects of the model (input size, channels): a mismatch stops start-up. */
  expect?: { size?: number; channels?: number };
  nats: NatsConfig;
  metrics: { enabled: boolean; host: string; port: number };
  spool: { dir: string; maxBytes: number };
  /** The operator page; absent = not served. */
  ui?: UiConfig;
  /** Reject capture; absent = nothing captured. */
  record?: RecordConfig;
  /** The domain guard, station-wide (defaults {@link DEFAULT_GUARD}). */
  guard: GuardConfig;
}

/** A config that failed validation; `problems` lists every finding (`path: message`). */
export class ConfigValidationError extends ConfigError {
  override name = 'ConfigValidationError';
  readonly problems: readonly string[];
  constructor(source: string, problems: string[]) {
    super(`invalid config ${source}: ${problems.length} problem${problems.length === 1 ? '' : 's'}\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.problems = problems;
  }
}

export interface ParseOptions {
  /** Directory relative paths are resolved against (the config file's folder). */
  baseDir: string;
  /** Check that referenced files exist (default true). */
  checkFiles?: boolean;
  /** Name used in the error message (default `<config>`). */
  source?: string;
}

// ---------------------------------------------------------------------------------------------
// A tiny validation kit. Each reader records a problem and returns undefined on bad input, so
// validation continues and reports everything at once.

type Obj = Record<string, unknown>;

const TOKEN = /^[A-Za-z0-9_-]+$/;

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'string') return `'${v.length > 40 ? `${v.slice(0, 40)}...` : v}'`;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return typeof v;
}

function join(path: string, key: string | number): string {
  return typeof key === 'number' ? `${path}[${key}]` : path ? `${path}.${key}` : key;
}

/** A reject threshold: scores are >= 0, so 0 or less would reject every part. */
function thresholdOf(c: Checker, o: Obj, path: string): number | undefined {
  const t = c.number(o, 'threshold', path);
  if (t !== undefined && t <= 0) return c.add(join(path, 'threshold'), `${t} would reject every part: ${THRESHOLD_RANGE}`);
  return t;
}

class Checker {
  readonly problems: string[] = [];
  constructor(readonly opts: Required<ParseOptions>) {}

  add(path: string, msg: string): undefined {
    this.problems.push(`${path || '<root>'}: ${msg}`);
    return undefined;
  }

  /** An object with only `allowed` keys (undefined if absent and not required). */
  object(v: unknown, path: string, allowed: readonly string[], required = true): Obj | undefined {
    if (v === undefined) return required ? this.add(path, 'required object') : undefined;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return this.add(path, `expected object, got ${describe(v)}`);
    const o = v as Obj;
    for (const k of Object.keys(o)) if (!allowed.includes(k)) this.add(join(path, k), `unknown key (allowed: ${allowed.join(', ')})`);
    return o;
  }

  string(o: Obj, key: string, path: string, opts: { required?: boolean; token?: boolean; pattern?: [RegExp, string] } = {}): string | undefined {
    const p = join(path, key);
    const v = o[key];
    if (v === undefined) return opts.required ? this.add(p, 'required string') : undefined;
    if (typeof v !== 'string') return this.add(p, `expected string, got ${describe(v)}`);
    if (v.trim() === '') return this.add(p, 'must not be empty');
    if (opts.token && !TOKEN.test(v)) return this.add(p, `'${v}' must contain only letters, digits, '_' and '-' (it is a NATS subject token)`);
    if (opts.pattern && !opts.pattern[0].test(v)) return this.add(p, opts.pattern[1]);
    return v;
  }

  oneOf<T extends string>(o: Obj, key: string, path: string, values: readonly T[], dflt?: T): T | undefined {
    const v = o[key];
    if (v === undefined) return dflt ?? this.add(join(path, key), `required, one of ${values.map((x) => `'${x}'`).join(' | ')}`);
    if (typeof v !== 'string' || !values.includes(v as T)) return this.add(join(path, key), `expected one of ${values.map((x) => `'${x}'`).join(' | ')}, got ${describe(v)}`);
    return v as T;
  }

  number(o: Obj, key: string, path: string, opts: { required?: boolean; int?: boolean; min?: number; max?: number; above?: number } = {}): number | undefined {
    const p = join(path, key);
    const v = o[key];
    if (v === undefined) return opts.required ? this.add(p, `required ${opts.int ? 'integer' : 'number'}`) : undefined;
    if (typeof v !== 'number' || !Number.isFinite(v)) return this.add(p, `expected ${opts.int ? 'integer' : 'number'}, got ${describe(v)}`);
    if (opts.int && !Number.isInteger(v)) return this.add(p, `expected integer, got ${v}`);
    if (opts.min !== undefined && v < opts.min) return this.add(p, `must be >= ${opts.min}, got ${v}`);
    if (opts.above !== undefined && v <= opts.above) return this.add(p, `must be > ${opts.above}, got ${v}`);
    if (opts.max !== undefined && v > opts.max) return this.add(p, `must be <= ${opts.max}, got ${v}`);
    return v;
  }

  boolean(o: Obj, key: string, path: string, dflt: boolean): boolean {
    const v = o[key];
    if (v === undefined) return dflt;
    if (typeof v !== 'boolean') {
      this.add(join(path, key), `expected true or false, got ${describe(v)}`);
      return dflt;
    }
    return v;
  }

  /** A byte count (`268435456`, `'256MiB'`) of at least `min` bytes. */
  bytes(o: Obj, key: string, path: string, min: number): number | undefined {
    const v = o[key];
    if (v === undefined) return undefined;
    const b = parseBytes(v);
    if (b === undefined) return this.add(join(path, key), `expected a positive byte count like 268435456 or '256MiB', got ${describe(v)}`);
    if (b < min) return this.add(join(path, key), `must be at least ${min} bytes (${min >= 2 ** 20 ? `${min / 2 ** 20}MiB` : `${min / 1024}KiB`}), got ${b}`);
    return b;
  }

  /** A path relative to the config file, made absolute; `must` = 'file' | 'dir' | 'exists' | 'none'. */
  path(o: Obj, key: string, path: string, must: 'file' | 'dir' | 'exists' | 'none', required = false): string | undefined {
    const s = this.string(o, key, path, { required });
    if (s === undefined) return undefined;
    const abs = isAbsolute(s) ? s : resolve(this.opts.baseDir, s);
    if (must === 'none' || !this.opts.checkFiles) return abs;
    if (!existsSync(abs)) return this.add(join(path, key), `not found: ${abs}`);
    const st = statSync(abs);
    if (must === 'file' && !st.isFile()) return this.add(join(path, key), `not a file: ${abs}`);
    if (must === 'dir' && !st.isDirectory()) return this.add(join(path, key), `not a directory: ${abs}`);
    return abs;
  }
}

/** `256MiB`, `1GB`, `1048576` -> bytes. */
export function parseBytes(v: unknown): number | undefined {
  if (typeof v === 'number') return Number.isInteger(v) && v > 0 ? v : undefined;
  if (typeof v !== 'string') return undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)?\s*$/.exec(v);
  if (!m) return undefined;
  const unit = m[2] ?? 'B';
  const mult: Record<string, number> = { B: 1, KB: 1e3, MB: 1e6, GB: 1e9, TB: 1e12, KiB: 2 ** 10, MiB: 2 ** 20, GiB: 2 ** 30, TiB: 2 ** 40 };
  const n = Math.floor(Number(m[1]) * mult[unit]!);
  return n > 0 ? n : undefined;
}

const SOURCE_KEYS: Record<SourceType, readonly string[]> = {
  gstreamer: ['type', 'pipeline'],
  v4l2: ['type', 'device', 'width', 'height', 'fps'],
  rtsp: ['type', 'url', 'latencyMs', 'transport'],
  file: ['type', 'path', 'loop'],
  images: ['type', 'dir', 'pattern', 'fps', 'loop'],
  synthetic: ['type', 'width', 'height', 'fps', 'count', 'defectRate', 'seed'],
};
const SOURCE_TYPES = Object.keys(SOURCE_KEYS) as SourceType[];

function parseSource(c: Checker, v: unknown, path: string): SourceSpec | undefined {
  if (v === undefined) return c.add(path, 'required object');
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return c.add(path, `expected object, got ${describe(v)}`);
  const type = c.oneOf(v as Obj, 'type', path, SOURCE_TYPES);
  if (!type) return undefined;
  const o = c.object(v, path, SOURCE_KEYS[type])!;
  const size = (key: string) => c.number(o, key, path, { int: true, min: 1, max: 16384 });
  switch (type) {
    case 'gstreamer': {
      const pipeline = c.string(o, 'pipeline', path, { required: true });
      return pipeline === undefined ? undefined : { type, pipeline };
    }
    case 'v4l2': {
      const device = c.string(o, 'device', path, { required: true, pattern: [/^\/dev\//, "must be a device path like '/dev/video0'"] });
      const s: SourceSpec = { type, device: device ?? '' };
      const width = size('width'), height = size('height'), fps = c.number(o, 'fps', path, { above: 0, max: 1000 });
      if (width !== undefined) s.width = width;
      if (height !== undefined) s.height = height;
      if (fps !== undefined) s.fps = fps;
      return device === undefined ? undefined : s;
    }
    case 'rtsp': {
      const url = c.string(o, 'url', path, { required: true, pattern: [/^rtsps?:\/\/[^\s]+$/, "must be an rtsp:// or rtsps:// URL"] });
      const latencyMs = c.number(o, 'latencyMs', path, { int: true, min: 0, max: 10000 }) ?? 0;
      const transport = c.oneOf(o, 'transport', path, ['tcp', 'udp'] as const, 'tcp') ?? 'tcp';
      return url === undefined ? undefined : { type, url, latencyMs, transport };
    }
    case 'file': {
      const p = c.path(o, 'path', path, 'file', true);
      return p === undefined ? undefined : { type, path: p, loop: c.boolean(o, 'loop', path, false) };
    }
    case 'images': {
      const dir = c.path(o, 'dir', path, 'dir', true);
      const pattern = c.string(o, 'pattern', path) ?? '*.{png,jpg,jpeg,bmp}';
      const fps = c.number(o, 'fps', path, { above: 0, max: 1000 });
      const s: SourceSpec = { type, dir: dir ?? '', pattern, loop: c.boolean(o, 'loop', path, false) };
      if (fps !== undefined) s.fps = fps;
      return dir === undefined ? undefined : s;
    }
    case 'synthetic': {
      const s: SourceSpec = {
        type,
        width: size('width') ?? 256,
        height: size('height') ?? 256,
        fps: c.number(o, 'fps', path, { above: 0, max: 1000 }) ?? 10,
        defectRate: c.number(o, 'defectRate', path, { min: 0, max: 1 }) ?? 0.1,
        seed: c.number(o, 'seed', path, { int: true }) ?? 1,
      };
      const count = c.number(o, 'count', path, { int: true, min: 1 });
      if (count !== undefined) s.count = count;
      return s;
    }
  }
}

const NATS_URL = /^(nats|tls|ws|wss):\/\/[^\s/]+$|^[A-Za-z0-9.-]+:\d+$/;

function parseNats(c: Checker, v: unknown): NatsConfig {
  const path = 'nats';
  const o = c.object(v, path, ['servers', 'user', 'pass', 'token', 'nkey', 'credsFile', 'tls', 'jetstream'], false) ?? {};
  let servers = ['nats://127.0.0.1:4222'];
  const sv = o.servers;
  if (typeof sv === 'string') servers = [sv];
  else if (Array.isArray(sv)) servers = sv as string[];
  else if (sv !== undefined) c.add('nats.servers', `expected string or list of strings, got ${describe(sv)}`);
  if (Array.isArray(sv) && sv.length === 0) c.add('nats.servers', 'must list at least one server');
  servers.forEach((s, i) => {
    const p = typeof sv === 'string' ? 'nats.servers' : `nats.servers[${i}]`;
    if (typeof s !== 'string') c.add(p, `expected string, got ${describe(s)}`);
    else if (!NATS_URL.test(s)) c.add(p, `'${s}' is not a NATS server URL (nats://host:port, tls://host:port or host:port)`);
  });
  const n: NatsConfig = { servers, jetstream: { enabled: false, stream: 'FAIRLINE' } };
  const user = c.string(o, 'user', path), pass = c.string(o, 'pass', path), token = c.string(o, 'token', path);
  const nkey = c.string(o, 'nkey', path, { pattern: [/^SU[A-Z2-7]{56}$/, "must be an NKey user seed ('SU' + 56 base32 characters)"] });
  const credsFile = c.path(o, 'credsFile', path, 'file');
  if (user !== undefined) n.user = user;
  if (pass !== undefined) n.pass = pass;
  if (token !== undefined) n.token = token;
  if (nkey !== undefined) n.nkey = nkey;
  if (credsFile !== undefined) n.credsFile = credsFile;
  if ((o.user === undefined) !== (o.pass === undefined)) c.add(o.user === undefined ? 'nats.user' : 'nats.pass', `required together with nats.${o.user === undefined ? 'pass' : 'user'}`);
  const methods = [o.user !== undefined || o.pass !== undefined ? 'user/pass' : '', o.token !== undefined ? 'token' : '', o.nkey !== undefined ? 'nkey' : '', o.credsFile !== undefined ? 'credsFile' : ''].filter(Boolean);
  if (methods.length > 1) c.add('nats', `choose one authentication method, got ${methods.join(' + ')}`);

  const tls = c.object(o.tls, 'nats.tls', ['ca', 'cert', 'key'], false);
  if (tls) {
    n.tls = {};
    const ca = c.path(tls, 'ca', 'nats.tls', 'file'), cert = c.path(tls, 'cert', 'nats.tls', 'file'), key = c.path(tls, 'key', 'nats.tls', 'file');
    if (ca !== undefined) n.tls.ca = ca;
    if (cert !== undefined) n.tls.cert = cert;
    if (key !== undefined) n.tls.key = key;
    if ((tls.cert === undefined) !== (tls.key === undefined)) c.add(tls.cert === undefined ? 'nats.tls.cert' : 'nats.tls.key', `required together with nats.tls.${tls.cert === undefined ? 'key' : 'cert'}`);
  }
  const js = c.object(o.jetstream, 'nats.jetstream', ['enabled', 'stream'], false);
  if (js) {
    n.jetstream.enabled = c.boolean(js, 'enabled', 'nats.jetstream', true);
    n.jetstream.stream = c.string(js, 'stream', 'nats.jetstream', { token: true }) ?? 'FAIRLINE';
  }
  return n;
}

/**
 * A listen address: `127.0.0.1:8080`, `0.0.0.0:8080`, `[::1]:8080`, `localhost:8080`, or a bare
 * port `8080` (host 127.0.0.1: the page shows camera pictures, so other interfaces are an
 * explicit choice). Port 0 picks a free one. Undefined when `v` is not an address.
 */
export function parseListen(v: string): { host: string; port: number } | undefined {
  const m = /^(?:(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):)?(\d{1,5})$/.exec(v.trim());
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port > 65535) return undefined;
  return { host: m[1] ?? m[2] ?? '127.0.0.1', port };
}

/** Shortest accepted `ui.token`: a guessable token would make the review marks anyone's. */
export const MIN_UI_TOKEN_LENGTH = 16;

function parseUi(c: Checker, v: unknown): UiConfig | undefined {
  const o = c.object(v, 'ui', ['listen', 'token'], false);
  if (!o) return undefined;
  let listen = { host: '127.0.0.1', port: 8080 };
  // A bare port may come as a YAML number.
  const s = typeof o.listen === 'number' ? String(o.listen) : c.string(o, 'listen', 'ui');
  if (s !== undefined) {
    const l = parseListen(s);
    if (l) listen = l;
    else c.add('ui.listen', `'${s}' is not a listen address (host:port like 127.0.0.1:8080, [::1]:8080, or a port)`);
  }
  const ui: UiConfig = { listen };
  const token = c.string(o, 'token', 'ui');
  if (token !== undefined) {
    if (token.length < MIN_UI_TOKEN_LENGTH) c.add('ui.token', `must be at least ${MIN_UI_TOKEN_LENGTH} characters (e.g. the output of 'openssl rand -hex 16'), got ${token.length}`);
    else ui.token = token;
  }
  return ui;
}

/** `cameras[i].partId`: a trigger subject or a file-name pattern. */
function parsePartId(c: Checker, v: unknown, path: string): CameraConfig['partId'] {
  const o = c.object(v, path, ['trigger', 'fileName'], false);
  if (!o) return undefined;
  if ((o.trigger === undefined) === (o.fileName === undefined)) return c.add(path, 'give exactly one of trigger or fileName');
  if (o.fileName !== undefined) {
    const s = c.string(o, 'fileName', path);
    if (s === undefined) return undefined;
    try {
      const re = new RegExp(s);
      if (!/\((?!\?[:=!<])|\(\?<partId>/.test(re.source)) return c.add(join(path, 'fileName'), `'${s}' has no group: mark the id with (?<partId>...) or (...)`);
    } catch (err) {
      return c.add(join(path, 'fileName'), `not a regular expression: ${(err as Error).message}`);
    }
    return { fileName: s };
  }
  const t = c.object(o.trigger === true ? {} : o.trigger, join(path, 'trigger'), ['windowMs', 'holdMs']);
  if (!t) return undefined;
  const windowMs = c.number(t, 'windowMs', join(path, 'trigger'), { above: 0, max: 60_000 }) ?? 50;
  const holdMs = c.number(t, 'holdMs', join(path, 'trigger'), { min: 0, max: 60_000 }) ?? 2 * windowMs;
  return { trigger: { windowMs, holdMs } };
}

/** `guard` or `cameras[i].guard`: only the keys that are set (defaults are filled by the caller). */
function parseGuard(c: Checker, v: unknown, path: string): Partial<GuardConfig> | undefined {
  const o = c.object(v, path, ['action', 'k', 'staleFrames', 'staleTolerance'], false);
  if (!o) return undefined;
  const g: Partial<GuardConfig> = {};
  const action = c.oneOf(o, 'action', path, ['reject', 'error', 'pass'] as const, 'reject');
  if (o.action !== undefined && action) g.action = action;
  const k = c.number(o, 'k', path, { above: 0, max: 1000 });
  if (k !== undefined) g.k = k;
  const n = c.number(o, 'staleFrames', path, { int: true, min: 0, max: 1_000_000 });
  if (n === 1) c.add(join(path, 'staleFrames'), 'must be 0 (off) or at least 2: one frame cannot repeat');
  else if (n !== undefined) g.staleFrames = n;
  const tol = c.number(o, 'staleTolerance', path, { min: 0, max: 1 });
  if (tol !== undefined) g.staleTolerance = tol;
  return g;
}

function parseRecord(c: Checker, v: unknown, baseDir: string): RecordConfig | undefined {
  const o = c.object(v, 'record', ['dir', 'rejects', 'passEvery', 'keepDays', 'maxBytes'], false);
  if (!o) return undefined;
  const record: RecordConfig = {
    dir: c.path(o, 'dir', 'record', 'none') ?? resolve(baseDir, 'captures'),
    rejects: c.boolean(o, 'rejects', 'record', true),
    passEvery: c.number(o, 'passEvery', 'record', { int: true, min: 0 }) ?? 0,
    keepDays: c.number(o, 'keepDays', 'record', { above: 0, max: 36500 }) ?? 7,
    maxBytes: c.bytes(o, 'maxBytes', 'record', 2 ** 20) ?? 2 ** 30,
  };
  if (!record.rejects && record.passEvery === 0) c.add('record', 'captures nothing: set rejects: true or passEvery > 0 (or remove the section)');
  return record;
}

/**
 * Validate a parsed config object, fill defaults and resolve paths.
 * @throws ConfigValidationError listing every problem.
 */
export function parseConfig(raw: unknown, opts: ParseOptions): FairlineConfig {
  const c = new Checker({ checkFiles: true, source: '<config>', ...opts });
  const root = c.object(raw, '', ['line', 'station', 'model', 'backend', 'engine', 'cameras', 'batch', 'queueLimit', 'deadlineMs', 'failSafe', 'threshold', 'expect', 'nats', 'metrics', 'spool', 'ui', 'record', 'guard']);
  if (!root) throw new ConfigValidationError(c.opts.source, c.problems);

  const line = c.string(root, 'line', '', { required: true, token: true });
  const station = c.string(root, 'station', '', { required: true, token: true });
  const model = c.path(root, 'model', '', 'exists', true);
  const backend = c.oneOf(root, 'backend', '', ['auto', 'tensorflow', 'wasm', 'cpu'] as const, 'auto');
  const engine = c.oneOf(root, 'engine', '', ['auto', 'tfjs', 'onnx'] as const, 'auto');
  const deadlineMs = c.number(root, 'deadlineMs', '', { above: 0, max: 600_000 }) ?? 500;
  const failSafe = c.oneOf(root, 'failSafe', '', ['reject', 'pass'] as const, 'reject');
  const threshold = thresholdOf(c, root, '');
  const ex = c.object(root.expect, 'expect', ['size', 'channels'], false);
  const expect = ex ? { size: c.number(ex, 'size', 'expect', { int: true, min: 16, max: 4096 }), channels: c.number(ex, 'channels', 'expect', { int: true, min: 1, max: 2 }) } : undefined;
  const queueLimit = c.number(root, 'queueLimit', '', { int: true, min: 0, max: 1000 }) ?? 1;

  const cameras: CameraConfig[] = [];
  const seen = new Map<string, number>();
  if (root.cameras === undefined) c.add('cameras', 'required list of cameras');
  else if (!Array.isArray(root.cameras)) c.add('cameras', `expected list, got ${describe(root.cameras)}`);
  else if (root.cameras.length === 0) c.add('cameras', 'must list at least one camera');
  else
    root.cameras.forEach((cv: unknown, i) => {
      const path = `cameras[${i}]`;
      const co = c.object(cv, path, ['id', 'source', 'mode', 'threshold', 'deadlineMs', 'guard', 'model', 'partId']);
      if (!co) return;
      const id = c.string(co, 'id', path, { required: true, token: true });
      if (id !== undefined) {
        if (seen.has(id)) c.add(`${path}.id`, `duplicate camera id '${id}' (also cameras[${seen.get(id)}])`);
        else seen.set(id, i);
      }
      const source = parseSource(c, co.source, `${path}.source`);
      const replayish = source?.type === 'file' || source?.type === 'images';
      const mode = c.oneOf(co, 'mode', path, ['live', 'replay'] as const, replayish ? 'replay' : 'live');
      const cam: CameraConfig = { id: id ?? '', source: source!, mode: mode ?? 'live' };
      const t = thresholdOf(c, co, path);
      const d = c.number(co, 'deadlineMs', path, { above: 0, max: 600_000 });
      if (t !== undefined) cam.threshold = t;
      if (d !== undefined) cam.deadlineMs = d;
      const g = parseGuard(c, co.guard, `${path}.guard`);
      if (g) cam.guard = g;
      const m = c.path(co, 'model', path, 'exists');
      if (m !== undefined) cam.model = m;
      const pid = parsePartId(c, co.partId, `${path}.partId`);
      if (pid) cam.partId = pid;
      cameras.push(cam);
    });

  const bo = c.object(root.batch, 'batch', ['maxSize', 'maxWaitMs'], false) ?? {};
  const batch = {
    maxSize: c.number(bo, 'maxSize', 'batch', { int: true, min: 1, max: 256 }) ?? 8,
    maxWaitMs: c.number(bo, 'maxWaitMs', 'batch', { min: 0, max: 60_000 }) ?? 20,
  };
  if (batch.maxWaitMs >= deadlineMs) c.add('batch.maxWaitMs', `(${batch.maxWaitMs} ms) must be less than deadlineMs (${deadlineMs} ms), or every partial batch would miss its deadline`);

  const nats = parseNats(c, root.nats);

  const mo = c.object(root.metrics, 'metrics', ['enabled', 'host', 'port'], false) ?? {};
  const metrics = {
    enabled: c.boolean(mo, 'enabled', 'metrics', true),
    host: c.string(mo, 'host', 'metrics') ?? '127.0.0.1',
    port: c.number(mo, 'port', 'metrics', { int: true, min: 0, max: 65535 }) ?? 9464,
  };

  const so = c.object(root.spool, 'spool', ['dir', 'maxBytes'], false) ?? {};
  // The spool's own minimum (src/streams/spool.ts): caught here so it names the key before start-up.
  const maxBytes = c.bytes(so, 'maxBytes', 'spool', 1024) ?? 256 * 2 ** 20;
  const spool = { dir: c.path(so, 'dir', 'spool', 'none') ?? resolve(opts.baseDir, 'spool'), maxBytes };
  const ui = parseUi(c, root.ui);
  const record = parseRecord(c, root.record, opts.baseDir);
  const guard: GuardConfig = { ...DEFAULT_GUARD, ...parseGuard(c, root.guard, 'guard') };

  if (c.problems.length > 0) throw new ConfigValidationError(c.opts.source, c.problems);
  const cfg: FairlineConfig = {
    line: line!, station: station!, model: model!, backend: backend!, engine: engine!, cameras, batch, queueLimit,
    deadlineMs, failSafe: failSafe!, nats, metrics, spool, guard,
  };
  if (threshold !== undefined) cfg.threshold = threshold;
  if (expect) cfg.expect = Object.fromEntries(Object.entries(expect).filter(([, v]) => v !== undefined));
  if (ui) cfg.ui = ui;
  if (record) cfg.record = record;
  return cfg;
}

/**
 * Read, parse (YAML, of which JSON is a subset) and validate a config file.
 * @throws ConfigError if the file cannot be read or parsed; ConfigValidationError if invalid.
 */
export async function loadConfig(file: string): Promise<FairlineConfig> {
  const abs = resolve(file);
  let text: string;
  try {
    text = await readFile(abs, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config ${abs}: ${(err as Error).message}`, { cause: err });
  }
  let raw: unknown;
  try {
    // uniqueKeys (default) makes a duplicated key an error instead of last-one-wins.
    raw = parseYaml(text, { prettyErrors: true });
  } catch (err) {
    throw new ConfigError(`cannot parse config ${abs}: ${(err as Error).message}`, { cause: err });
  }
  return parseConfig(expandEnv(raw, ''), { baseDir: dirname(abs), source: abs });
}

/**
 * Replace `${NAME}` in string values with the environment variable NAME, so secrets (NATS
 * passwords, tokens) stay out of config files: `pass: ${FAIRLINE_NATS_PASSWORD}`. An unset
 * variable is a ConfigError naming the key; `$${...}` keeps a literal `${...}`.
 */
export function expandEnv(value: unknown, path: string, env: NodeJS.ProcessEnv = process.env): unknown {
  if (typeof value === 'string') {
    return value.replace(/\$?\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (m, name: string) => {
      if (m.startsWith('$$')) return m.slice(1);
      const v = env[name];
      if (v === undefined) throw new ConfigError(`${path || 'config'}: environment variable ${name} is not set`);
      return v;
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => expandEnv(v, `${path}[${i}]`, env));
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, expandEnv(v, path ? `${path}.${k}` : k, env)]));
  }
  return value;
}
