/**
 * The evaluation graph: a category's test images go through the SAME RxJS inspection graph as a
 * live camera (`inspect()` from src/operators: decode -> batch -> model -> threshold -> verdict),
 * in `replay` mode (nothing dropped) and without a deadline. The only evaluation-specific part is
 * the model adapter, which also keeps what the verdicts do not carry: the anomaly map of every
 * image (for pixel metrics) and, for pictures, the model-size input and the restoration.
 *
 * Metrics follow the official evaluation (docs/fair-reference.md section 7) through
 * src/eval/metrics.ts, with anomalib's names: `image_AUROC`, `pixel_AUROC`, `AUPRO`,
 * `image_F1Max`; plus the reject-gate operating points (F1-max threshold, best TPR at
 * FPR <= 1 % and <= 0.1 %, and the rates at the model's own threshold).
 */
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { Subject, concatMap, from, lastValueFrom, merge, range, tap, toArray, zip } from 'rxjs';
import { DEFAULT_GUARD } from '../config.js';
import { BadInputError, DatasetError, FairlineError, ModelError } from '../errors.js';
import type { Dataset, Sample } from '../io/datasets.js';
import type { LoadedModel } from '../io/artefact.js';
import { decodeModelImage, loadMaskSized } from '../io/image.js';
import { FairDetector } from '../model/detector.js';
import { TfjsRestorer } from '../model/tfjs/restorer.js';
import type { GuardStats } from '../model/guard.js';
import type { ImageF32, ImageU8 } from '../model/types.js';
import { unetFromTorch } from '../model/weights.js';
import { inspect, type DecodeFn, type InspectModel } from '../operators/index.js';
import { frameKey, type Frame } from '../streams/frame.js';
import type { Verdict } from '../verdict.js';
import { PixelMetrics, aupro, f1Max, imageAuroc, pixelAuroc, tprAtFpr, type OperatingPoint } from './metrics.js';
import { toU8 } from './heatmap.js';

/** Which test images keep their input and restoration for pictures. */
export type PictureMode = 'all' | 'anomalous' | 'none';

/** What the adapter keeps per frame besides the verdict. */
export interface Captured {
  score: number;
  map: Float32Array;
  /** Model-size input (8-bit BGR), when pictures are wanted for this frame. */
  input?: ImageU8;
  /** Restoration (8-bit BGR, clipped), when pictures are wanted for this frame. */
  restored?: ImageU8;
  /** Size of the image file before resizing. */
  sourceWidth: number;
  sourceHeight: number;
}

export interface EvalAdapter {
  decode: DecodeFn;
  model: InspectModel;
  /** Remove and return what was captured for a frame (after its verdict). */
  take(frame: Pick<Frame, 'sourceId' | 'seq'>): Captured | undefined;
}

/**
 * Decoder + model for `inspect()` that behave exactly like the live ones (decode = the model's
 * view of an encoded image, `loadModelImage`; model = `FairDetector.detect`), and capture each
 * frame's anomaly map (and, when `keep(frame)` says so, its input and restoration).
 *
 * Images are matched back to frames by object identity: the decoder records which frame produced
 * each image object, and the model receives those same objects.
 *
 * @example
 * ```ts
 * const a = evalAdapter(detector, 'hazelnut-1a2b', { keep: (f) => f.label === 1 });
 * frames$.pipe(inspect({ decode: a.decode, model: a.model, threshold: 0.4, context, batch, mode: 'replay' }))
 *   .subscribe((v) => {
 *     const c = a.take({ sourceId: v.camera, seq: v.seq }); // map (+ input, restoration) of this frame
 *   });
 * ```
 */
export function evalAdapter(detector: FairDetector, id: string, opts: { keep?: (frame: Frame) => boolean } = {}): EvalAdapter {
  const size = detector.spec.size;
  const owner = new Map<ImageF32, { frame: Frame; sourceWidth: number; sourceHeight: number; bytes?: ImageU8 }>();
  const captured = new Map<string, Captured>();
  const decode: DecodeFn = async (frame) => {
    const p = frame.payload;
    // loadModelImage (decode -> OpenCV INTER_LINEAR -> /255), keeping the source size.
    const out = await decodeModelImage(Buffer.from(p.data.buffer, p.data.byteOffset, p.data.byteLength), size);
    // The 8-bit input of a picture is the decoder's (toU8 of the float image gives the same bytes).
    owner.set(out.image, { frame, sourceWidth: out.sourceWidth, sourceHeight: out.sourceHeight, ...(opts.keep?.(frame) ? { bytes: out.bytes } : {}) });
    return { image: out.image, sourceWidth: out.sourceWidth, sourceHeight: out.sourceHeight };
  };
  const model: InspectModel = {
    id,
    inferBatch: async (images) => {
      const owners = images.map((img) => owner.get(img));
      for (const img of images) owner.delete(img);
      const keepFlags = owners.map((o) => (o ? (opts.keep?.(o.frame) ?? false) : false));
      const dets = await detector.detect(images, { keepRestored: keepFlags.some(Boolean) });
      dets.forEach((d, i) => {
        const o = owners[i];
        if (!o) return;
        const c: Captured = { score: d.score, map: d.map, sourceWidth: o.sourceWidth, sourceHeight: o.sourceHeight };
        if (keepFlags[i]) {
          c.input = o.bytes ?? toU8(images[i]!);
          if (d.restored) c.restored = toU8({ width: size, height: size, channels: 3, data: d.restored });
        }
        captured.set(frameKey(o.frame), c);
      });
      return dets.map((d) => ({ score: d.score, map: d.map }));
    },
  };
  return {
    decode,
    model,
    take: (f) => {
      const k = frameKey(f);
      const c = captured.get(k);
      captured.delete(k);
      return c;
    },
  };
}

/**
 * The detector of a loaded model artefact: its UNet (tfjs, current backend) behind the shared
 * high-pass and scoring.
 * @throws ModelError when the weights do not fit the manifest's spec.
 */
export function detectorFromModel(model: LoadedModel): FairDetector {
  const spec = model.manifest.spec;
  const unet = unetFromTorch(model.tensors, spec.unet);
  try {
    return new FairDetector(spec, new TfjsRestorer(unet));
  } catch (err) {
    unet.dispose();
    if (err instanceof FairlineError) throw new ModelError('bad_model', `model ${model.dir}: ${err.message}`, { cause: err });
    throw err;
  }
}

/** One evaluated test image. */
export interface EvalItem {
  index: number;
  path: string;
  defect: string;
  label: 0 | 1;
  /** Image score; null when the image failed (see `error`). */
  score: number | null;
  /** Verdict at the report threshold: pass / reject, or error. */
  verdict: 'pass' | 'reject' | 'error';
  /** The domain guard flagged the image (`out_of_domain`): rejected whatever its score. */
  guard?: string;
  error?: { code: string; stage: string; message: string };
  /** Anomaly map at model size (S*S), absent for failed images. */
  map?: Float32Array;
  /** Ground truth at model size in [0, 1] (zeros for good images); null for an anomalous image without mask. */
  mask?: Float32Array | null;
  input?: ImageU8;
  restored?: ImageU8;
  sourceWidth?: number;
  sourceHeight?: number;
}

/** A reject-gate operating point in report form (threshold null = "reject nothing"). */
export interface GatePoint {
  threshold: number | null;
  tpr: number;
  fpr: number;
  precision: number;
  f1: number;
}

/** The metric names of the report, anomalib's spelling. */
export const METRIC_NAMES = ['image_AUROC', 'pixel_AUROC', 'AUPRO', 'image_F1Max'] as const;
export type MetricName = (typeof METRIC_NAMES)[number];

export interface CategoryMetrics {
  image_AUROC: number | null;
  pixel_AUROC: number | null;
  AUPRO: number | null;
  image_F1Max: number | null;
  /** Reject-gate operating points (null when not computable; see `reasons`). */
  gate: {
    f1Max: GatePoint | null;
    tprAtFpr1pct: GatePoint | null;
    tprAtFpr01pct: GatePoint | null;
  };
  /** Why a metric or gate point is null, by its name. */
  reasons: Record<string, string>;
}

/** Thresholds come with where they came from. */
export interface ThresholdChoice {
  value: number | null;
  /** 'model:<method>' (the artefact's), 'f1-max' (model has none), or 'none'. */
  source: string;
}

export interface CategoryEvaluation {
  category: string;
  layout: Dataset['layout'];
  modelId: string;
  modelDir?: string;
  size: number;
  threshold: ThresholdChoice;
  items: EvalItem[];
  metrics: CategoryMetrics;
  /** At `threshold`: good images rejected / good, anomalous images passed / anomalous. */
  atThreshold: { falseRejectRate: number | null; escapeRate: number | null };
  /** The domain guard: on (the model has statistics) and the test images it flagged (rejected whatever their score), good and defective. */
  guarded: { on: boolean; good: number; defective: number };
  seconds: number;
}

function gatePoint(p: OperatingPoint): GatePoint {
  return { threshold: Number.isFinite(p.threshold) ? p.threshold : null, tpr: p.tpr, fpr: p.fpr, precision: p.precision, f1: p.f1 };
}

/** Run `fn`; a BadInputError (e.g. single class) becomes null with its message as the reason. */
function attempt<T>(name: string, reasons: Record<string, string>, fn: () => T): T | null {
  try {
    return fn();
  } catch (err) {
    if (err instanceof BadInputError) {
      reasons[name] = err.message;
      return null;
    }
    throw err;
  }
}

/**
 * Metrics of one category from scored items (items without a score are skipped). Image metrics
 * need both good and anomalous images; pixel metrics also need a mask for every anomalous image.
 * What cannot be computed is null with a reason. P-AUROC counts a pixel positive only when its
 * mask value is exactly 1, AUPRO uses every nonzero pixel (the official binarisations).
 *
 * `pixels`: the scored items' maps and masks already gathered (evaluateCategory feeds them while
 * the model runs); used when it holds exactly the scored items, else the pixel metrics are
 * computed from the items (same values either way).
 */
export function categoryMetrics(items: readonly Pick<EvalItem, 'label' | 'score' | 'map' | 'mask'>[], pixels?: PixelMetrics): CategoryMetrics {
  const reasons: Record<string, string> = {};
  const scored = items.filter((it) => it.score !== null && it.map);
  const scores = scored.map((it) => it.score!);
  const labels = scored.map((it) => it.label);
  const nAnom = labels.filter((l) => l === 1).length;
  const nGood = labels.length - nAnom;
  const image = (name: string): boolean => {
    if (nAnom > 0 && nGood > 0) return true;
    reasons[name] = nAnom === 0 ? 'no anomalous test images' : 'no good test images';
    return false;
  };
  const m: CategoryMetrics = { image_AUROC: null, pixel_AUROC: null, AUPRO: null, image_F1Max: null, gate: { f1Max: null, tprAtFpr1pct: null, tprAtFpr01pct: null }, reasons };
  if (image('image_AUROC')) m.image_AUROC = attempt('image_AUROC', reasons, () => imageAuroc(scores, labels));
  if (nAnom > 0) {
    const f1 = attempt('image_F1Max', reasons, () => f1Max(scores, labels));
    if (f1) {
      m.image_F1Max = f1.f1;
      m.gate.f1Max = gatePoint(f1);
    }
  } else {
    reasons.image_F1Max = 'no anomalous test images';
    reasons.f1Max = reasons.image_F1Max;
  }
  if (image('tprAtFpr1pct')) m.gate.tprAtFpr1pct = attempt('tprAtFpr1pct', reasons, () => gatePoint(tprAtFpr(scores, labels, 0.01)));
  if (image('tprAtFpr01pct')) m.gate.tprAtFpr01pct = attempt('tprAtFpr01pct', reasons, () => gatePoint(tprAtFpr(scores, labels, 0.001)));

  const withoutMask = scored.filter((it) => it.label === 1 && !it.mask).length;
  if (nAnom === 0) {
    reasons.pixel_AUROC = reasons.AUPRO = 'no anomalous test images';
  } else if (withoutMask > 0) {
    reasons.pixel_AUROC = reasons.AUPRO = `${withoutMask} anomalous test image(s) have no ground-truth mask`;
  } else {
    if (pixels && pixels.images === scored.length) {
      m.pixel_AUROC = attempt('pixel_AUROC', reasons, () => pixels.pixelAuroc());
      m.AUPRO = attempt('AUPRO', reasons, () => pixels.aupro());
    } else {
      const maps = scored.map((it) => it.map!);
      const masks = scored.map((it) => it.mask ?? new Float32Array(it.map!.length));
      m.pixel_AUROC = attempt('pixel_AUROC', reasons, () => pixelAuroc(maps, masks));
      m.AUPRO = attempt('AUPRO', reasons, () => aupro(maps, masks));
    }
  }
  return m;
}

export interface EvaluateOptions {
  /** Images per model call (default 4). */
  batch?: number;
  /** Pictures to keep data for (default 'none'). */
  pictures?: PictureMode;
  /** Test images read ahead of the model (default 4 x batch); bounds memory for big test sets. */
  readAhead?: number;
  /** Called after each image's verdict. */
  onImage?: (done: number, total: number, item: EvalItem) => void;
}

/**
 * Evaluate one category: every test image through the inspection graph, then ground truth and
 * metrics. The verdict threshold is the model's (`model.threshold`) or, for a model without one,
 * the F1-max threshold of this evaluation (reported as `threshold.source`).
 *
 * Images that fail (corrupt file, ...) get an `error` item and are left out of the metrics; the
 * caller decides whether that is fatal.
 *
 * @throws DatasetError when the category has no test images, or a mask's size differs from its
 *   image's (they would not line up).
 * @example
 * ```ts
 * const det = detectorFromModel(loadModel('models/hazelnut'));
 * const ev = await evaluateCategory(readDataset('data/mvtec', 'hazelnut', { needTest: true }), det,
 *   { id: manifest.id, threshold: manifest.thresholds }, { batch: 4, pictures: 'anomalous' });
 * console.log(ev.metrics.image_AUROC, ev.metrics.AUPRO);
 * ```
 */
export async function evaluateCategory(
  ds: Dataset,
  detector: FairDetector,
  model: { id: string; dir?: string; threshold?: { image: number; method: string }; guard?: GuardStats },
  opts: EvaluateOptions = {},
): Promise<CategoryEvaluation> {
  const t0 = performance.now();
  const samples = ds.test;
  if (samples.length === 0) throw new DatasetError('empty_split', `${ds.category}: no test images under ${ds.root}`);
  const size = detector.spec.size;
  const batch = opts.batch ?? 4;
  const pictures = opts.pictures ?? 'none';
  const readAhead = Math.max(batch, opts.readAhead ?? 4 * batch);
  const sourceId = ds.category;
  const adapter = evalAdapter(detector, model.id, {
    keep: (f) => pictures === 'all' || (pictures === 'anomalous' && f.label === 1),
  });

  // Pull-driven source: a frame is read from disk only when fewer than `readAhead` frames are
  // waiting for their verdict, so a large test set never sits in memory as encoded bytes.
  const done$ = new Subject<void>();
  const readErrors = new Map<number, string>();
  const frames$ = zip(from(samples.map((s, i) => [s, i] as const)), merge(range(0, readAhead), done$)).pipe(
    concatMap(async ([[s, i]]): Promise<Frame> => {
      let data: Buffer;
      try {
        data = await readFile(s.path);
      } catch (err) {
        // An unreadable file still makes a (empty) frame, so it ends as an error verdict like a
        // corrupt one; the read error replaces the graph's 'empty payload' message.
        data = Buffer.alloc(0);
        readErrors.set(i, `cannot read ${s.path}: ${(err as Error).message}`);
      }
      return { sourceId, seq: i, captureTs: Date.now(), payload: { data, width: 0, height: 0, format: 'encoded' }, label: s.label, path: s.path };
    }),
  );

  const items: EvalItem[] = new Array(samples.length);
  // Ground truth at model size, as the official loader reads it. GT is not part of the inspection
  // graph, but each mask is read as soon as its image's verdict is in, so mask decoding (sharp's
  // threads) overlaps the model instead of following it. A load's outcome is kept as a value (no
  // rejected promise waits unobserved); errors are raised after the graph, in image order.
  const masks = new Map<number, Promise<{ mask: Float32Array; width: number; height: number } | { error: unknown }>>();
  // Pixel metrics gathered per image as its map and mask are in (see PixelMetrics); dropped on a
  // bad map, and categoryMetrics then computes them from the items (with their usual errors).
  let pixels: PixelMetrics | undefined = new PixelMetrics({ capacity: samples.length * size * size });
  const gather = (item: EvalItem, mask: Float32Array): void => {
    if (!pixels || !item.map) return;
    try {
      pixels.add(item.index, item.map, mask, size, size);
    } catch {
      pixels = undefined;
    }
  };
  const startMask = (item: EvalItem): void => {
    if (item.score === null) return;
    if (item.label === 0) {
      item.mask = new Float32Array(size * size);
      gather(item, item.mask);
      return;
    }
    const path = samples[item.index]!.maskPath;
    if (!path) return;
    masks.set(item.index, loadMaskSized(path, size).then(
      (m) => {
        if (m.width === item.sourceWidth && m.height === item.sourceHeight) gather(item, m.mask);
        return m;
      },
      (error: unknown) => ({ error }),
    ));
  };
  let count = 0;
  // The graph's threshold: the model's, or a placeholder that passes everything until the
  // F1-max threshold is known (verdicts are then recomputed with the same `score >= t` rule).
  const graphThreshold = model.threshold?.image ?? Number.MAX_VALUE;
  const verdicts: Verdict[] = await lastValueFrom(
    frames$.pipe(
      inspect({
        decode: adapter.decode,
        model: adapter.model,
        threshold: graphThreshold,
        context: { line: 'eval', station: ds.category, regions: false },
        // Full batches only (the last one is flushed at completion): decodes finish one by one,
        // and a batch timer would hand the model batches of 1-2 while it is busy anyway; the
        // pull-driven source keeps `readAhead` >= `batch` frames coming, so a batch always fills.
        batch: { maxSize: batch, maxWaitMs: Infinity },
        mode: 'replay',
        deadline: false,
        ...(model.guard ? { guard: { stats: model.guard, policy: { ...DEFAULT_GUARD, staleFrames: 0 } } } : {}),
      }),
      tap((v) => {
        const s = samples[v.seq]!;
        const c = adapter.take({ sourceId, seq: v.seq });
        const item = toItem(v, s, c, readErrors.get(v.seq));
        items[v.seq] = item;
        startMask(item);
        count++;
        opts.onImage?.(count, samples.length, item);
        done$.next();
      }),
      toArray(),
    ),
  );
  done$.complete();
  if (verdicts.length !== samples.length) throw new ModelError('internal', `${ds.category}: ${verdicts.length} verdicts for ${samples.length} images`);

  for (const item of items) {
    if (item.label === 0) continue; // zeros, set with its verdict
    const s = samples[item.index]!;
    if (!s.maskPath) {
      item.mask = null;
      continue;
    }
    if (item.score === null) continue;
    const m = await masks.get(item.index)!;
    if ('error' in m) throw m.error;
    if (item.sourceWidth !== undefined && (m.width !== item.sourceWidth || m.height !== item.sourceHeight)) {
      throw new DatasetError('mask_size', `${ds.category}: mask ${s.maskPath} is ${m.width}x${m.height} but its image ${s.path} is ${item.sourceWidth}x${item.sourceHeight}; they would not line up`);
    }
    item.mask = m.mask;
  }

  const metrics = categoryMetrics(items, pixels);
  let threshold: ThresholdChoice;
  if (model.threshold) threshold = { value: model.threshold.image, source: `model:${model.threshold.method}` };
  else if (metrics.gate.f1Max?.threshold != null) threshold = { value: metrics.gate.f1Max.threshold, source: 'f1-max' };
  else threshold = { value: null, source: 'none' };
  let goodN = 0, goodRej = 0, anomN = 0, anomPass = 0;
  const guarded = { on: model.guard !== undefined, good: 0, defective: 0 };
  for (const it of items) {
    if (it.guard) guarded[it.label === 0 ? 'good' : 'defective']++;
    if (it.score === null) continue;
    if (!model.threshold) it.verdict = it.guard || (threshold.value !== null && it.score >= threshold.value) ? 'reject' : 'pass';
    if (it.label === 0) {
      goodN++;
      if (it.verdict === 'reject') goodRej++;
    } else {
      anomN++;
      if (it.verdict === 'pass') anomPass++;
    }
  }
  const known = threshold.value !== null;
  return {
    category: ds.category,
    layout: ds.layout,
    modelId: model.id,
    ...(model.dir ? { modelDir: model.dir } : {}),
    size,
    threshold,
    items,
    metrics,
    atThreshold: { falseRejectRate: known && goodN ? goodRej / goodN : null, escapeRate: known && anomN ? anomPass / anomN : null },
    guarded,
    seconds: (performance.now() - t0) / 1000,
  };
}

function toItem(v: Verdict, s: Sample, c: Captured | undefined, readError?: string): EvalItem {
  const item: EvalItem = { index: v.seq, path: s.path, defect: s.defect, label: s.label, score: v.score, verdict: v.verdict };
  if (v.verdict === 'error' || v.score === null || !c) {
    item.score = null;
    item.verdict = 'error';
    item.error = readError
      ? { code: 'unreadable_image', stage: 'source', message: readError }
      : { code: v.reason ?? 'internal', stage: v.stage ?? 'unknown', message: v.detail ?? (c ? 'no score' : 'no anomaly map captured') };
    return item;
  }
  if (v.guard && v.guard.status !== 'ok') item.guard = v.guard.status;
  item.map = c.map;
  item.sourceWidth = c.sourceWidth;
  item.sourceHeight = c.sourceHeight;
  if (c.input) item.input = c.input;
  if (c.restored) item.restored = c.restored;
  return item;
}

/** A short, file-name-safe id for a test image: `<defect>_<stem>`. */
export function itemName(item: Pick<EvalItem, 'defect' | 'path'>): string {
  const stem = basename(item.path).replace(/\.[^.]*$/, '');
  return `${item.defect}_${stem}`.replace(/[^A-Za-z0-9_.-]/g, '_');
}
