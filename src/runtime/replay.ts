/**
 * Replay: recorded images (a folder or one file) or a video file through the same inspection
 * graph as a live station (decode -> batch -> model -> threshold -> verdict, in `replay` mode:
 * nothing dropped, no deadlines), with a validation report: confusion matrix at the threshold,
 * latency percentiles, throughput and every image's score. Optionally the verdicts go to NATS
 * exactly as a live station publishes them.
 *
 * Labels (0 = good, 1 = defective) come from a test-folder layout (`good/` next to one folder
 * per defect type, as MVTec AD's `test/`) or from a `--labels` CSV/JSON file.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { basename, extname, join, relative, resolve, sep } from 'node:path';
import { EMPTY, Observable, Subject, catchError, lastValueFrom, tap, toArray } from 'rxjs';
import { ConfigError, DatasetError, asFairlineError } from '../errors.js';
import { imageAuroc } from '../eval/metrics.js';
import { DEFAULT_GUARD } from '../config.js';
import type { GuardPolicy } from '../operators/guard.js';
import { inspect, type InspectHooks } from '../operators/inspect.js';
import type { Frame } from '../streams/frame.js';
import { decisionDigits, quantileSorted } from '../thresholds.js';
import type { Verdict, VerdictKind } from '../verdict.js';
import { frameDecoder, type RuntimeModel } from './model.js';
import { cameraSource, imageFilesSource, listImageFiles } from './sources.js';
import type { VerdictSink } from './station.js';

/** One image to replay. `key` is its path relative to the replay root (`/`-separated), used in reports and label lookups. */
export interface ReplayItem {
  path: string;
  key: string;
  label?: 0 | 1;
}

const IMAGE_EXT = new Set(['.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp']);
const GOOD_DIRS = new Set(['good', 'ok', 'normal', 'pass']);
const LABEL_WORDS: Record<string, 0 | 1> = {
  '0': 0, good: 0, ok: 0, normal: 0, pass: 0, false: 0,
  '1': 1, bad: 1, defect: 1, defective: 1, anomaly: 1, anomalous: 1, ng: 1, nok: 1, reject: 1, true: 1,
};

/** Whether a file name looks like an image fairline can decode. */
export function isImageFile(path: string): boolean {
  return IMAGE_EXT.has(extname(path).toLowerCase());
}

/**
 * Label from a test-folder layout: the first folder of `key` is `good` (or `ok`, `normal`,
 * `pass`) -> 0, any other folder (a defect type) -> 1, a file at the root -> unknown.
 *
 * @example
 * labelFromLayout('good/04.png'); // 0
 * labelFromLayout('colour/02.png'); // 1
 */
export function labelFromLayout(key: string): 0 | 1 | undefined {
  const parts = key.split('/');
  if (parts.length < 2) return undefined;
  return GOOD_DIRS.has(parts[0]!.toLowerCase()) ? 0 : 1;
}

/**
 * A label value from a labels file: 0/1, booleans, or words (`good`, `ok`, `normal`, `pass` ->
 * 0; `bad`, `defect`, `anomaly`, `ng`, `reject`, ... -> 1). Undefined when not a label.
 */
export function parseLabel(v: unknown): 0 | 1 | undefined {
  if (v === 0 || v === 1) return v;
  if (typeof v === 'boolean') return v ? 1 : 0;
  if (typeof v === 'string') return LABEL_WORDS[v.trim().toLowerCase()];
  return undefined;
}

function normKey(k: string): string {
  return k.trim().replace(/\\/g, '/').replace(/^\.\//, '');
}

/**
 * Read a labels file: CSV (`path,label` with an optional header naming the columns `path` /
 * `file` / `image` and `label` / `class`) or JSON (`{ "good/04.png": 0, ... }` or
 * `[{ "path": ..., "label": ... }]`). Keys are paths relative to the replay root, absolute
 * paths, base names, or frame numbers for a video.
 *
 * @throws DatasetError `bad_labels` naming the first bad line/entry.
 */
export function readLabels(file: string): Map<string, 0 | 1> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new DatasetError('missing', `cannot read labels file ${file}: ${(err as Error).message}`, { cause: err });
  }
  const out = new Map<string, 0 | 1>();
  const put = (k: unknown, v: unknown, where: string): void => {
    const label = parseLabel(v);
    if (typeof k !== 'string' && typeof k !== 'number') throw new DatasetError('bad_labels', `${file} ${where}: missing path`);
    if (label === undefined) throw new DatasetError('bad_labels', `${file} ${where}: ${JSON.stringify(v)} is not a label (0/1, good/defect)`);
    out.set(normKey(String(k)), label);
  };
  if (/\.json$/i.test(file) || /^\s*[[{]/.test(text)) {
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch (err) {
      throw new DatasetError('bad_labels', `${file}: invalid JSON: ${(err as Error).message}`, { cause: err });
    }
    if (Array.isArray(data)) {
      data.forEach((e: unknown, i) => {
        const o = (e ?? {}) as Record<string, unknown>;
        put(o.path ?? o.file ?? o.image ?? o.frame, o.label ?? o.class ?? o.defect, `[${i}]`);
      });
    } else if (typeof data === 'object' && data !== null) {
      for (const [k, v] of Object.entries(data)) put(k, v, `"${k}"`);
    } else throw new DatasetError('bad_labels', `${file}: expected an object or an array`);
  } else {
    const lines = text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
    const split = (l: string): string[] => l.split(/[,;\t]/).map((f) => f.trim().replace(/^"(.*)"$/, '$1'));
    let pathCol = 0, labelCol = 1, start = 0;
    const head = split(lines[0] ?? '');
    // A header names its columns; a first line that does not is data (and is checked as such).
    const find = (names: string[]): number => head.findIndex((h) => names.includes(h.toLowerCase()));
    const p = find(['path', 'file', 'filename', 'image', 'frame']);
    const l = find(['label', 'class', 'target']); // not 'defect': that is also a label word
    if (p >= 0 || l >= 0) {
      start = 1;
      if (p >= 0) pathCol = p;
      if (l >= 0) labelCol = l;
    }
    for (let i = start; i < lines.length; i++) {
      const f = split(lines[i]!);
      put(f[pathCol], f[labelCol], `line ${i + 1}`);
    }
  }
  if (out.size === 0) throw new DatasetError('bad_labels', `${file}: no labels`);
  return out;
}

/** Look up an item's label: relative key, absolute path, then base name. */
function lookup(labels: Map<string, 0 | 1>, item: { path: string; key: string }): 0 | 1 | undefined {
  return labels.get(item.key) ?? labels.get(normKey(item.path)) ?? labels.get(basename(item.path));
}

/** What a replay source resolved to. */
export type ReplayInput = { kind: 'images'; root: string; items: ReplayItem[] } | { kind: 'video'; path: string };

/**
 * Resolve a replay source: a folder (all images below it, recursively, labelled by layout or by
 * `labels`), an MVTec-style category folder (its `test/` is used), one image, or a video file.
 *
 * @throws DatasetError `missing` / `empty_split` when there is nothing to replay.
 */
export function resolveReplayInput(source: string, labels?: Map<string, 0 | 1>): ReplayInput {
  let root = resolve(source);
  if (!existsSync(root)) throw new DatasetError('missing', `replay source ${source} does not exist`);
  if (statSync(root).isFile()) {
    if (!isImageFile(root)) return { kind: 'video', path: root };
    const item: ReplayItem = { path: root, key: basename(root) };
    const label = labels ? lookup(labels, item) : undefined;
    if (label !== undefined) item.label = label;
    return { kind: 'images', root: resolve(root, '..'), items: [item] };
  }
  // A category folder (train/ + test/): replaying train images or masks would be meaningless.
  if (existsSync(join(root, 'test')) && existsSync(join(root, 'train'))) root = join(root, 'test');
  const files = listImageFiles(root, '**/*.{png,jpg,jpeg,bmp,tif,tiff,webp}');
  if (files.length === 0) throw new DatasetError('empty_split', `no images under ${root}`);
  const items = files.map((path): ReplayItem => {
    const item: ReplayItem = { path, key: relative(root, path).split(sep).join('/') };
    const label = labels ? lookup(labels, item) : labelFromLayout(item.key);
    if (label !== undefined) item.label = label;
    return item;
  });
  return { kind: 'images', root, items };
}

export interface ReplayOptions {
  model: RuntimeModel;
  /** A folder, an image or a video file (see {@link resolveReplayInput}); or give `input`. */
  source?: string;
  input?: ReplayInput;
  /** Labels file (CSV/JSON); default: the folder layout. */
  labels?: string;
  /** Reject threshold; default the model's. */
  threshold?: number;
  line?: string;
  station?: string;
  /** Camera id in verdicts and subjects (default `replay`). */
  camera?: string;
  batch?: { maxSize: number; maxWaitMs: number };
  /** Frames in flight (default 2 * batch + 2). */
  window?: number;
  decodeConcurrency?: number;
  /** Defect regions in reject verdicts (default true). */
  regions?: boolean;
  /** Publish every verdict here, as a station does (the caller closes it). */
  sink?: VerdictSink;
  onVerdict?: (v: Verdict) => void;
  /** Observation hooks of the graph (the operator page of `fairline replay --ui`). */
  hooks?: InspectHooks;
  /**
   * The domain guard (the model's statistics; frames are a recording, so no frozen-camera
   * check unless `staleFrames` says so). Default: action `reject`.
   */
  guard?: Partial<GuardPolicy>;
}

/** One replayed frame. */
export interface ReplayResult {
  seq: number;
  /** Path relative to the replay root (images), or undefined (video). */
  key?: string;
  label?: 0 | 1;
  score: number | null;
  verdict: VerdictKind;
  reason?: string;
  /** The score normalised to [0, 1], threshold at 0.5. */
  normScore?: number;
  /** The guard's status when it flagged the frame (`out_of_domain`, `stale_frame`). */
  guard?: string;
  latencyMs: number;
}

/** Confusion matrix at the threshold; positive = defective = reject. */
export interface Confusion {
  tp: number;
  fp: number;
  tn: number;
  fn: number;
  precision: number;
  recall: number;
  f1: number;
  accuracy: number;
  /** Good parts rejected / good parts. */
  falseRejectRate: number;
  /** Defective parts passed / defective parts. */
  escapeRate: number;
}

export interface ReplayReport {
  source: string;
  model: string;
  engine: string;
  backend: string;
  threshold: number;
  frames: number;
  /** Frames with a model score (pass/reject). */
  scored: number;
  /** `error` verdicts (unreadable or corrupt images). */
  errors: number;
  /** Scored frames with a label (the confusion matrix counts these). */
  labelled: number;
  seconds: number;
  framesPerSecond: number;
  /** Capture (= read) to verdict, ms. */
  latencyMs: { mean: number; p50: number; p95: number; p99: number; max: number };
  confusion?: Confusion;
  /** Image AUROC when both classes are present. */
  auroc?: number;
  /** Frames lost without a verdict: inside the source (GStreamer, live pacing) and in the model queue. */
  dropped: { source: number; queue: number };
  /** The domain guard: on (the model has statistics) or off, its action, and the frames it flagged by reason. */
  guard: { on: boolean; note: string; action: GuardPolicy['action']; flagged: Record<string, number> };
  /** The source ended with an error (a damaged or truncated file): the replay stopped there. */
  sourceError?: { code: string; message: string; afterFrames: number };
  results: ReplayResult[];
}

/** Confusion matrix of labelled, scored results (reject = positive). */
export function confusion(results: readonly Pick<ReplayResult, 'label' | 'verdict'>[]): Confusion {
  let tp = 0, fp = 0, tn = 0, fn = 0;
  for (const r of results) {
    if (r.label === undefined || r.verdict === 'error') continue;
    const rej = r.verdict === 'reject';
    if (r.label === 1) rej ? tp++ : fn++;
    else rej ? fp++ : tn++;
  }
  const div = (a: number, b: number): number => (b > 0 ? a / b : 0);
  const precision = div(tp, tp + fp), recall = div(tp, tp + fn);
  return {
    tp, fp, tn, fn, precision, recall,
    f1: div(2 * tp, 2 * tp + fp + fn),
    accuracy: div(tp + tn, tp + tn + fp + fn),
    falseRejectRate: div(fp, fp + tn),
    escapeRate: div(fn, fn + tp),
  };
}

/**
 * Replay through the live graph and report.
 *
 * @example
 * ```ts
 * const model = await loadInspectModel({ dir: 'models/hazelnut' });
 * const report = await replay({ model, source: 'data/hazelnut/test' });
 * console.log(formatReport(report));
 * ```
 * @throws ConfigError when there is no threshold; DatasetError for an empty/missing source or a bad labels file.
 */
export async function replay(opts: ReplayOptions): Promise<ReplayReport> {
  const { model } = opts;
  const threshold = opts.threshold ?? model.threshold;
  if (threshold === undefined || !Number.isFinite(threshold)) {
    throw new ConfigError(`no threshold: model ${model.id} is not calibrated; pass --threshold or run 'fairline calibrate' first`);
  }
  const labels = opts.labels ? readLabels(opts.labels) : undefined;
  if (!opts.input && !opts.source) throw new ConfigError('replay needs a source or an input');
  const input = opts.input ?? resolveReplayInput(opts.source!, labels);
  const camera = opts.camera ?? 'replay';
  const batch = opts.batch ?? { maxSize: 8, maxWaitMs: 20 };
  const window = opts.window ?? 2 * batch.maxSize + 2;
  const ack$ = new Subject<void>();
  const dropped = { source: 0, queue: 0 };

  let frames$: Observable<Frame>;
  const keys = new Map<number, ReplayItem>();
  if (input.kind === 'images') {
    input.items.forEach((it, i) => keys.set(i, it));
    frames$ = imageFilesSource(input.items, { sourceId: camera, ack$, window });
  } else {
    frames$ = cameraSource({ id: camera, mode: 'replay', source: { type: 'file', path: input.path, loop: false } }, { ack$, window, hooks: { onDrop: (_c, n) => (dropped.source += n) } });
    if (labels) {
      // Video frames are labelled by frame number.
      const base = frames$;
      frames$ = new Observable<Frame>((sub) =>
        base.subscribe({
          next: (f) => {
            const l = labels.get(String(f.seq));
            sub.next(l === undefined ? f : { ...f, label: l });
          },
          error: (e: unknown) => sub.error(e),
          complete: () => sub.complete(),
        }),
      );
    }
  }

  // A source that fails (a damaged or truncated video) ends the replay there, but the frames
  // already read still get their verdicts, and the report says where and why it stopped.
  let taken = 0;
  let sourceError: ReplayReport['sourceError'];
  frames$ = frames$.pipe(
    tap(() => taken++),
    catchError((err: unknown) => {
      const e = asFairlineError(err);
      sourceError = { code: e.code, message: e.message, afterFrames: taken };
      return EMPTY;
    }),
  );

  const guardPolicy: GuardPolicy = { ...DEFAULT_GUARD, staleFrames: 0, ...opts.guard };
  const guardFlagged: Record<string, number> = {};
  const t0 = performance.now();
  const verdicts = await lastValueFrom(
    frames$.pipe(
      inspect({
        decode: frameDecoder(model.size),
        model,
        threshold,
        context: { line: opts.line ?? 'replay', station: opts.station ?? 'replay', ...(opts.regions === false ? { regions: false as const } : {}) },
        batch,
        mode: 'replay',
        decodeConcurrency: opts.decodeConcurrency ?? 2,
        guard: { policy: guardPolicy },
        hooks: {
          ...opts.hooks,
          onDrop: (f, reason) => {
            dropped.queue++;
            opts.hooks?.onDrop?.(f, reason);
          },
        },
      }),
      tap((v) => {
        ack$.next();
        opts.sink?.publish(v);
        opts.onVerdict?.(v);
      }),
      toArray(),
    ),
  );
  const seconds = (performance.now() - t0) / 1000;
  verdicts.sort((a, b) => a.seq - b.seq);

  const results = verdicts.map((v): ReplayResult => {
    const r: ReplayResult = { seq: v.seq, score: v.score, verdict: v.verdict, latencyMs: v.latencyMs };
    if (v.normScore !== undefined) r.normScore = v.normScore;
    const flag = v.guard && v.guard.status !== 'ok' ? v.guard.status : v.stage === 'guard' ? v.reason : undefined;
    if (flag) {
      r.guard = flag;
      guardFlagged[flag] = (guardFlagged[flag] ?? 0) + 1;
    }
    const it = keys.get(v.seq);
    if (it) r.key = it.key;
    if (v.label !== undefined) r.label = v.label;
    if (v.reason !== undefined) r.reason = v.reason;
    return r;
  });
  const lat = results.map((r) => r.latencyMs).sort((a, b) => a - b);
  const q = (p: number): number => (lat.length ? quantileSorted(lat, p) : 0);
  const scored = results.filter((r) => r.verdict !== 'error');
  const labelled = scored.filter((r) => r.label !== undefined);
  const report: ReplayReport = {
    source: input.kind === 'images' ? input.root : input.path,
    model: model.id,
    engine: model.engineName,
    backend: model.backend,
    threshold,
    frames: results.length,
    scored: scored.length,
    errors: results.length - scored.length,
    labelled: labelled.length,
    seconds,
    framesPerSecond: seconds > 0 ? results.length / seconds : 0,
    latencyMs: { mean: lat.length ? lat.reduce((a, b) => a + b, 0) / lat.length : 0, p50: q(0.5), p95: q(0.95), p99: q(0.99), max: lat.length ? lat[lat.length - 1]! : 0 },
    dropped,
    guard: { on: model.guard !== undefined, note: model.guardNote, action: guardPolicy.action, flagged: guardFlagged },
    results,
  };
  if (sourceError) report.sourceError = sourceError;
  if (labelled.length > 0) report.confusion = confusion(labelled);
  const nPos = labelled.filter((r) => r.label === 1).length;
  if (nPos > 0 && nPos < labelled.length) {
    report.auroc = imageAuroc(labelled.map((r) => r.score!), labelled.map((r) => r.label!));
  }
  return report;
}

/** `dropped 394 at the source, 0 in the queue` (frames that got no verdict, so no frame count hides them). */
export function formatDropped(d: { source: number; queue: number }): string {
  return `dropped ${d.source} at the source, ${d.queue} in the queue`;
}

/** `guard: on (...); action reject; flagged 2 out_of_domain` (or `guard: off (...)`). */
export function formatGuard(g: ReplayReport['guard']): string {
  const flagged = Object.entries(g.flagged).map(([k, n]) => `${n} ${k}`).join(', ') || 'none';
  return g.on ? `${g.note}; action ${g.action}; flagged ${flagged}` : `${g.note}${Object.keys(g.flagged).length ? `; flagged ${flagged}` : ''}`;
}

/** The report as text for a terminal. */
export function formatReport(r: ReplayReport, opts: { perImage?: boolean } = {}): string {
  const f = (x: number, d = 4): string => x.toFixed(d);
  // Enough digits that no shown score equals the shown threshold unless they are equal.
  const digits = Math.max(6, ...r.results.map((x) => (x.score === null ? 6 : decisionDigits(x.score, r.threshold, 6))));
  const lines: string[] = [];
  lines.push(`replay of ${r.source}`);
  if (r.sourceError) lines.push(`warning: the source ended with an error after ${r.sourceError.afterFrames} frame(s), the replay stopped there: ${r.sourceError.code}: ${r.sourceError.message}`);
  lines.push(`model ${r.model} (${r.engine}, backend ${r.backend}), threshold ${r.threshold.toPrecision(digits)} (reject if score >= threshold)`);
  lines.push(`frames ${r.frames}: ${r.scored} scored, ${r.errors} error(s); ${r.labelled} labelled; ${formatDropped(r.dropped)}`);
  lines.push(formatGuard(r.guard));
  lines.push(`throughput ${f(r.framesPerSecond, 2)} frames/s over ${f(r.seconds, 2)} s`);
  lines.push(`latency ms: p50 ${f(r.latencyMs.p50, 1)}  p95 ${f(r.latencyMs.p95, 1)}  p99 ${f(r.latencyMs.p99, 1)}  max ${f(r.latencyMs.max, 1)}`);
  const c = r.confusion;
  if (c) {
    lines.push('');
    lines.push('                 predicted pass   predicted reject');
    lines.push(`actual good      ${String(c.tn).padStart(14)}   ${String(c.fp).padStart(16)}`);
    lines.push(`actual defective ${String(c.fn).padStart(14)}   ${String(c.tp).padStart(16)}`);
    lines.push(`precision ${f(c.precision)}  recall ${f(c.recall)}  F1 ${f(c.f1)}  accuracy ${f(c.accuracy)}`);
    lines.push(`false-reject rate ${f(c.falseRejectRate)}  escape rate ${f(c.escapeRate)}${r.auroc !== undefined ? `  image AUROC ${f(r.auroc)}` : ''}`);
  }
  if (opts.perImage ?? true) {
    lines.push('');
    const width = Math.max(10, digits + 4);
    const shown = (x: ReplayResult): string => x.verdict + (x.reason ? `/${x.reason}` : '');
    // `reject/out_of_domain` and the like are wider than the column's name.
    const vw = Math.max(7, ...r.results.map((x) => shown(x).length));
    lines.push(`seq  label  ${'score'.padEnd(width)}  ${'verdict'.padEnd(vw)}  image`);
    for (const x of r.results) {
      const score = (x.score === null ? '-' : x.score.toPrecision(digits)).padEnd(width);
      lines.push(`${String(x.seq).padStart(3)}  ${String(x.label ?? '-').padStart(5)}  ${score}  ${shown(x).padEnd(vw)}  ${x.key ?? ''}`);
    }
  }
  return lines.join('\n');
}
