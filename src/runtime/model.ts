/**
 * The model as the live graph, replay and calibration use it: a model artefact loaded into a
 * {@link FairDetector} (tfjs UNet, or onnxruntime when available), wrapped as the graph's
 * {@link InspectModel}, together with everything a station must know about it: id, size,
 * engine, the effective reject threshold and where that threshold came from.
 *
 * One loader for every entry point (inspect, replay, calibrate), so a score computed while
 * calibrating is the score the line later compares with the threshold.
 */
import * as tf from '@tensorflow/tfjs';
import { BackendError, ConfigError, ModelError } from '../errors.js';
import { loadModel, type LoadedModel, type ModelManifest, type ThresholdInfo } from '../io/artefact.js';
import { decodeImage } from '../io/image.js';
import { initBackend, type BackendName } from '../model/tfjs/backend.js';
import { FairDetector, type Detection, type DetectorGraph, type Restorer } from '../model/detector.js';
import { UNET_SPATIAL_MULTIPLE } from '../model/onnx-export.js';
import { resizeLinearU8, resizeRawLinearU8, u8ToF32 } from '../model/resize.js';
import { guardStatsProblems, type GuardStats } from '../model/guard.js';
import { filterChannels, type FairSpec, type ImageF32 } from '../model/types.js';
import type { ScoreRange } from '../thresholds.js';
import { THRESHOLD_RANGE, thresholdBelowNormal } from '../thresholds.js';
import { inferUNetSpec } from '../model/weights.js';
import { createDetectorEngine } from './detector-engine.js';
import type { DecodeFn, DecodeOutput } from '../operators/decode.js';
import type { InspectModel } from '../operators/inspect.js';
import type { Frame, ModelOutput } from '../streams/frame.js';

/** Restoration engine: `auto` = onnxruntime when `onnxruntime-node` loads, else tfjs. */
export type EngineChoice = 'auto' | 'tfjs' | 'onnx';

/** What the caller (config, CLI) expects of the model; a mismatch is a `ModelError('model_mismatch')`. */
export interface ModelExpectation {
  /** Model input size S (square). */
  size?: number;
  /** Network input channels (1 for the FFT high-pass filters, 2 for Sobel). */
  channels?: number;
}

export interface LoadInspectModelOptions {
  /** Model artefact folder (with `model.json`). */
  dir: string;
  /** Default `auto`. */
  engine?: EngineChoice;
  /**
   * tfjs backend to initialise first (scoring always runs on tfjs). Omit to keep the backend
   * that is active (the CLI starts one with `startBackend`, tests pick 'cpu').
   */
  backend?: BackendName | 'auto';
  /** Backend / onnxruntime threads. */
  threads?: number;
  /** onnxruntime execution providers in order (default ['cpu']). */
  executionProviders?: string[];
  /** Overrides the artefact's calibrated threshold. */
  threshold?: number;
  /** Throw `ModelError('no_threshold')` when neither the artefact nor `threshold` gives one (default true). */
  requireThreshold?: boolean;
  /** How the caller's user sets a threshold, for that error (default: the station config's `threshold`). */
  thresholdHint?: string;
  expect?: ModelExpectation;
  log?: (msg: string) => void;
}

/** A loaded model, ready for the inspection graph. Call {@link dispose} when done. */
export interface RuntimeModel extends InspectModel {
  /** Artefact id (written into every verdict). */
  readonly id: string;
  readonly dir: string;
  readonly manifest: ModelManifest;
  readonly spec: FairSpec;
  /** Model input size S. */
  readonly size: number;
  /** `tfjs` or `onnx`. */
  readonly engine: 'tfjs' | 'onnx';
  /** Engine detail for logs and `fairline_model_info{engine}`, e.g. `tfjs-wasm`, `onnxruntime-cpu`. */
  readonly engineName: string;
  /** tfjs backend used for the high-pass/scoring tensors. */
  readonly backend: string;
  /** Effective reject threshold (score >= threshold rejects); undefined only with `requireThreshold: false`. */
  readonly threshold: number | undefined;
  /** Where the threshold came from. */
  readonly thresholdSource: 'override' | 'artefact' | 'none';
  /** The domain guard's statistics of this model; undefined = guard off (see `guardNote`). */
  readonly guard: GuardStats | undefined;
  /** One line on the guard for start-up logs: on (images, k) or off and how to turn it on. */
  readonly guardNote: string;
  /** Anchors of the verdicts' `normScore`: the artefact's `scoreRange`, else the training scores' range. */
  readonly scoreRange: ScoreRange | undefined;
  readonly detector: FairDetector;
  /** Detect on model-size images (the evaluation path). */
  detect(images: readonly ImageF32[]): Promise<Detection[]>;
  inferBatch(images: ImageF32[]): Promise<ModelOutput[]>;
  dispose(): Promise<void>;
}

/**
 * Check a manifest's spec for internal consistency, against its weights, and against what the
 * caller expects.
 *
 * @throws ModelError `bad_spec` (size not a multiple of 16, filter/UNet channel disagreement,
 *   output channels not 3), `model_mismatch` (weights shaped for another UNet than the manifest
 *   says, or size/channels different from `expect`).
 */
export function checkModel(loaded: Pick<LoadedModel, 'dir' | 'manifest' | 'tensors'>, expect: ModelExpectation = {}): void {
  const { spec } = loaded.manifest;
  const where = `model ${loaded.dir}`;
  if (!Number.isInteger(spec.size) || spec.size < UNET_SPATIAL_MULTIPLE || spec.size % UNET_SPATIAL_MULTIPLE !== 0) {
    throw new ModelError('bad_spec', `${where}: size ${spec.size} is not a positive multiple of ${UNET_SPATIAL_MULTIPLE} (the UNet pools 4 times)`);
  }
  const cin = filterChannels(spec.filter.kind);
  if (spec.unet.inChannels !== cin) {
    throw new ModelError('bad_spec', `${where}: filter '${spec.filter.kind}' gives ${cin} channel(s) but the UNet takes ${spec.unet.inChannels}`);
  }
  if (spec.unet.outChannels !== 3) throw new ModelError('bad_spec', `${where}: the UNet restores ${spec.unet.outChannels} channels, FAIR needs 3 (BGR)`);
  // The weights decide what the network really is; a hand-edited manifest must not disagree.
  const fromWeights = inferUNetSpec(loaded.tensors);
  if (fromWeights.baseWidth !== spec.unet.baseWidth || fromWeights.inChannels !== spec.unet.inChannels || fromWeights.outChannels !== spec.unet.outChannels) {
    throw new ModelError(
      'model_mismatch',
      `${where}: weights are a UNet c=${fromWeights.baseWidth}, in=${fromWeights.inChannels}, out=${fromWeights.outChannels} but model.json says c=${spec.unet.baseWidth}, in=${spec.unet.inChannels}, out=${spec.unet.outChannels}`,
    );
  }
  if (expect.size !== undefined && expect.size !== spec.size) {
    throw new ModelError('model_mismatch', `${where}: model input size is ${spec.size} but the configuration expects ${expect.size}`);
  }
  if (expect.channels !== undefined && expect.channels !== spec.unet.inChannels) {
    throw new ModelError('model_mismatch', `${where}: model takes ${spec.unet.inChannels} input channel(s) (${spec.filter.kind}) but the configuration expects ${expect.channels}`);
  }
}

/**
 * The threshold to use: an explicit override, else the artefact's calibrated `thresholds.image`.
 * @throws ConfigError for a non-finite override.
 */
export function resolveThreshold(thresholds: ThresholdInfo | undefined, override?: number): { value: number; source: 'override' | 'artefact' } | undefined {
  if (override !== undefined) {
    if (!(Number.isFinite(override) && override > 0)) throw new ConfigError(`threshold must be a number > 0, got ${override}: ${THRESHOLD_RANGE}`);
    return { value: override, source: 'override' };
  }
  const t = thresholds?.image;
  return typeof t === 'number' && Number.isFinite(t) ? { value: t, source: 'artefact' } : undefined;
}

/**
 * The guard statistics of a manifest, checked: undefined with a note when the model has none or
 * has them for another feature set (the guard is then off, the model still runs).
 * @throws ModelError `bad_manifest` for malformed statistics (a damaged or hand-edited artefact).
 */
export function guardOf(manifest: ModelManifest, dir: string): { guard?: GuardStats; note: string } {
  const howTo = `run 'fairline calibrate --model ${dir} --normal <good images> --guard-only' to fit it`;
  if (manifest.guard === undefined) return { note: `guard: off (model ${manifest.id} has no statistics of normal images; ${howTo})` };
  const { version, problems } = guardStatsProblems(manifest.guard, manifest.spec.size);
  if (version) return { note: `guard: off (${version}; ${howTo})` };
  if (problems.length > 0) throw new ModelError('bad_manifest', `model ${dir}: ${problems.join('; ')}`);
  const g = manifest.guard;
  return { guard: g, note: `guard: on (${g.features.length} features of ${g.n} normal images from ${g.source}, k ${g.k})` };
}

/** The normScore anchors of a manifest: its `scoreRange`, else the range of its training scores. */
export function scoreRangeOf(manifest: ModelManifest): ScoreRange | undefined {
  if (manifest.scoreRange) return manifest.scoreRange;
  const t = manifest.trainScoreStats;
  return t ? { min: t.min, max: t.max, n: t.n, source: 'training' } : undefined;
}

/**
 * The detection engine for a loaded model (src/runtime/detector-engine.ts does the choosing): the
 * whole-detector ONNX graph on onnxruntime, or the tfjs UNet with the TypeScript high-pass/scoring.
 */
async function restorerFor(loaded: LoadedModel, opts: LoadInspectModelOptions): Promise<{ restorer: Restorer | DetectorGraph; engine: 'tfjs' | 'onnx' }> {
  try {
    const { engine, kind } = await createDetectorEngine(loaded.tensors, loaded.manifest.spec, {
      engine: opts.engine ?? 'auto',
      threads: opts.threads,
      providers: opts.executionProviders,
      log: opts.log,
    });
    return { restorer: engine, engine: kind };
  } catch (err) {
    throw err instanceof BackendError || err instanceof ModelError || err instanceof ConfigError ? err : new BackendError('onnx_session', `onnx engine: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * Load a model artefact for inspection, replay or calibration.
 *
 * @example
 * ```ts
 * const model = await loadInspectModel({ dir: 'models/hazelnut', engine: 'auto', threshold: cfg.threshold });
 * frames$.pipe(inspect({ decode: frameDecoder(model.size), model, threshold: model.threshold!, ... }));
 * await model.dispose();
 * ```
 * @throws ModelError `missing` / `checksum` / `bad_manifest` (artefact), `bad_spec` /
 *   `model_mismatch` ({@link checkModel}), `no_threshold` (no calibrated threshold and no
 *   override, unless `requireThreshold: false`); BackendError when a forced engine/backend
 *   cannot start.
 */
export async function loadInspectModel(opts: LoadInspectModelOptions): Promise<RuntimeModel> {
  const loaded = loadModel(opts.dir);
  checkModel(loaded, opts.expect);
  const thr = resolveThreshold(loaded.manifest.thresholds, opts.threshold);
  const guard = guardOf(loaded.manifest, opts.dir);
  if (!thr && (opts.requireThreshold ?? true)) {
    throw new ModelError(
      'no_threshold',
      `model ${opts.dir} has no calibrated threshold: run 'fairline calibrate --model ${opts.dir} --normal <good images>' or ${opts.thresholdHint ?? "set 'threshold' in the config"}`,
    );
  }
  if (thr?.source === 'override') {
    const low = thresholdBelowNormal(thr.value, loaded.manifest.trainScoreStats);
    if (low) opts.log?.(`warning: ${low}`);
  }
  if (opts.backend !== undefined) {
    const bo: Parameters<typeof initBackend>[0] = { backend: opts.backend };
    if (opts.threads !== undefined) bo.threads = opts.threads;
    if (opts.log) bo.log = opts.log;
    await initBackend(bo);
  }
  const { restorer, engine } = await restorerFor(loaded, opts);
  const spec = loaded.manifest.spec;
  let detector: FairDetector;
  try {
    detector = new FairDetector(spec, restorer);
  } catch (err) {
    restorer.dispose();
    throw new ModelError('bad_spec', `model ${opts.dir}: ${(err as Error).message}`, { cause: err });
  }
  let disposed = false;
  const model: RuntimeModel = {
    id: loaded.manifest.id,
    dir: opts.dir,
    manifest: loaded.manifest,
    spec,
    size: spec.size,
    engine,
    engineName: restorer.engine,
    backend: tf.getBackend(),
    threshold: thr?.value,
    thresholdSource: thr?.source ?? 'none',
    guard: guard.guard,
    guardNote: guard.note,
    scoreRange: scoreRangeOf(loaded.manifest),
    detector,
    detect: (images) => detector.detect(images),
    async inferBatch(images: ImageF32[]): Promise<ModelOutput[]> {
      const out = await detector.detect(images);
      return out.map((d) => ({ score: d.score, map: d.map }));
    },
    async dispose(): Promise<void> {
      if (disposed) return;
      disposed = true;
      detector.dispose();
    },
  };
  return model;
}

/**
 * The graph's decode step for a model of input size `size`: encoded bytes (PNG, JPEG, ...) are
 * decoded like `cv2.imread(IMREAD_COLOR)`, raw camera buffers (`rgb`/`bgr`/`gray`) are wrapped
 * as BGR, then both are resized with OpenCV's INTER_LINEAR and scaled to [0, 1]. For a file this
 * is exactly `loadModelImage(path, size)`, the evaluation path, so replay scores equal eval scores.
 *
 * @example
 * ```ts
 * frames$.pipe(inspect({ decode: frameDecoder(256), ... }));
 * ```
 */
export function frameDecoder(size: number): DecodeFn {
  if (!Number.isInteger(size) || size < 1) throw new ConfigError(`frameDecoder: size must be a positive integer, got ${size}`);
  return async (f: Frame): Promise<DecodeOutput> => {
    const p = f.payload;
    if (p.format !== 'encoded') {
      // Raw camera frames: no encode/decode, and no full-size BGR copy (resized in place).
      const channels = p.format === 'gray' ? 1 : 3;
      return { image: u8ToF32(resizeRawLinearU8(p.data, p.width, p.height, channels, p.format, size, size)), sourceWidth: p.width, sourceHeight: p.height };
    }
    const u8 = await decodeImage(Buffer.from(p.data.buffer, p.data.byteOffset, p.data.byteLength));
    return { image: u8ToF32(resizeLinearU8(u8, size, size)), sourceWidth: u8.width, sourceHeight: u8.height };
  };
}
