/**
 * `fairline calibrate`: choose the reject threshold of a model from held-out images and write it
 * into the model artefact (`model.json` -> `thresholds`).
 *
 * - `--normal DIR_OR_DATASET [--target-frr 0.01]`: good images only (how a new line starts, no
 *   defective parts needed): the threshold lies just above the (1 - target) quantile of their
 *   scores, so at most `target` of them would be rejected (src/thresholds.ts calibrateNormalOnly).
 * - `--labelled DIR [--labels FILE]`: good and defective images; the F1-maximising threshold.
 *   DIR may be a capture folder (`record` in the station config): its captures marked on the
 *   operator page, "good part" as good and "defect" as defective.
 *
 * Both also write the anchors of the verdicts' `normScore` (`scoreRange`) and, for a model
 * without them (an imported one), the domain guard's statistics of the good images
 * (src/model/guard.ts); `--refit-guard` replaces existing ones, `--guard-only` fits them and
 * leaves the threshold as it is.
 *
 * Scores come from the same graph and decode as `fairline inspect` (src/runtime/replay.ts), so
 * the line compares exactly these numbers with the threshold.
 */
import { existsSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { Option, type Command } from 'commander';
import { ConfigError, DatasetError } from '../errors.js';
import { isCaptureRoot, labelledCaptures } from '../io/captures.js';
import { listImages, readDataset } from '../io/datasets.js';
import { updateManifest, type ModelManifest, type ThresholdInfo } from '../io/artefact.js';
import { loadModelImage } from '../io/image.js';
import { GUARD_MIN_IMAGES, fitGuard, guardFeatures, type GuardStats } from '../model/guard.js';
import { calibrateF1, calibrateNormalOnly, scoreStats, type ScoreStats } from '../thresholds.js';
import { loadInspectModel, type EngineChoice, type RuntimeModel } from '../runtime/model.js';
import { readLabels, replay, resolveReplayInput, type ReplayItem } from '../runtime/replay.js';
import { floatOption, intOption, log, startBackend, type BackendCliOptions } from './common.js';
import { backendOptions } from './inspect.js';

/**
 * Held-out normal images: `category` given -> the dataset's normal test images (MVTec `test/good`,
 * VisA normal test rows); else one image, the images directly in the folder, or its `good/`, or
 * its `test/good/`.
 *
 * @throws DatasetError when none are found.
 */
export function normalImages(source: string, category?: string): string[] {
  const root = resolve(source);
  if (category) {
    const ds = readDataset(root, category);
    const good = ds.test.filter((s) => s.label === 0).map((s) => s.path);
    if (good.length === 0) throw new DatasetError('empty_split', `${category}: the dataset has no held-out normal (good) test images under ${root}`);
    return good;
  }
  if (!existsSync(root)) throw new DatasetError('missing', `normal images: ${root} does not exist`);
  if (statSync(root).isFile()) return [root];
  for (const dir of [root, join(root, 'good'), join(root, 'test', 'good')]) {
    const files = listImages(dir);
    if (files.length > 0) return files;
  }
  throw new DatasetError('empty_split', `no normal images in ${root} (looked in it, in good/ and in test/good/; for a dataset root pass --category)`);
}

export interface CalibrateOptions {
  /** Model folder (the threshold is written there). */
  modelDir: string;
  /** An already loaded model of `modelDir` (tests); else loaded with `engine`. */
  model?: RuntimeModel;
  engine?: EngineChoice;
  /** Normal-only calibration source. */
  normal?: string;
  category?: string;
  /** Target false-reject rate for normal-only (default 0.01). */
  targetFrr?: number;
  /** Labelled calibration folder (good/ + defect folders) for F1-max. */
  labelled?: string;
  labels?: string;
  batch?: number;
  /** Compute and report, do not write. */
  dryRun?: boolean;
  /** Guard statistics: `auto` (default) fits them when the model has none, `refit` replaces them, `only` fits them and leaves the threshold alone. */
  guard?: 'auto' | 'refit' | 'only';
  log?: (msg: string) => void;
}

export interface CalibrationResult {
  method: 'normal-quantile' | 'f1-max';
  threshold: number;
  /** Calibration images scored. */
  n: number;
  /** Images that could not be scored (corrupt files), excluded. */
  errors: number;
  targetFalseRejectRate?: number;
  /** On the calibration set at the threshold. */
  falseRejectRate: number;
  f1?: number;
  precision?: number;
  recall?: number;
  /** Scores of the good calibration images. */
  normalStats: ScoreStats;
  /** Guard statistics fitted on the good calibration images (absent when the model kept its own). */
  guard?: GuardStats;
  /** Calibration images the model's existing guard flagged out of domain (a sign the images or the guard do not fit). */
  guardFlagged: number;
  /** Whether the threshold was written (not with `guard: 'only'` or `dryRun`). */
  thresholdWritten: boolean;
  written: boolean;
  manifest?: ModelManifest;
}

/**
 * Score the calibration images through the inspection graph and compute (and unless `dryRun`,
 * write) the threshold.
 *
 * @example
 * ```ts
 * const r = await calibrateModel({ modelDir: 'models/hazelnut', normal: 'data/hazelnut/test/good', targetFrr: 0.01 });
 * // r.threshold is now manifest.thresholds.image
 * ```
 * @throws ConfigError for conflicting options, DatasetError for missing/empty image sets or a
 *   labelled set without defective images, ModelError for the model.
 */
export async function calibrateModel(o: CalibrateOptions): Promise<CalibrationResult> {
  const say = o.log ?? (() => undefined);
  if ((o.normal === undefined) === (o.labelled === undefined)) throw new ConfigError('calibrate: give exactly one of --normal (good images only) or --labelled (good + defective)');
  const target = o.targetFrr ?? 0.01;
  if (!(target >= 0 && target < 1)) throw new ConfigError(`--target-frr must be in [0, 1), got ${target}`);

  let items: ReplayItem[];
  let root: string;
  if (o.normal !== undefined) {
    const files = normalImages(o.normal, o.category);
    root = resolve(o.normal);
    items = files.map((path) => ({ path, key: path, label: 0 }));
  } else if (isCaptureRoot(resolve(o.labelled!))) {
    // Captures marked on the operator page (src/io/captures.ts): "good part" -> 0, "defect" -> 1.
    root = resolve(o.labelled!);
    items = (await labelledCaptures(root)).map((e) => ({ path: e.frame, key: relative(root, e.frame), label: e.label === 'good' ? 0 : 1 }));
    say(`calibrate: ${items.length} marked capture(s) in ${root}`);
    if (!items.some((i) => i.label === 1)) throw new DatasetError('single_class', `no capture in ${root} is marked 'defect' (mark some on the operator page; for good images only use --normal)`);
    if (!items.some((i) => i.label === 0)) throw new DatasetError('single_class', `no capture in ${root} is marked 'good part'`);
  } else {
    const input = resolveReplayInput(o.labelled!, o.labels ? readLabels(o.labels) : undefined);
    if (input.kind !== 'images') throw new ConfigError('--labelled must be a folder of images');
    root = input.root;
    const unlabelled = input.items.filter((i) => i.label === undefined).length;
    if (unlabelled > 0) say(`calibrate: ${unlabelled} image(s) without a label ignored`);
    items = input.items.filter((i) => i.label !== undefined);
    if (!items.some((i) => i.label === 1)) throw new DatasetError('single_class', `no defective images in ${root}: use --normal for good-only calibration`);
    if (!items.some((i) => i.label === 0)) throw new DatasetError('single_class', `no good images in ${root}`);
  }

  const model = o.model ?? (await loadInspectModel({ dir: o.modelDir, engine: o.engine ?? 'auto', requireThreshold: false, log: say }));
  try {
    say(`calibrate: scoring ${items.length} image(s) from ${root} with ${model.id} (${model.engineName})`);
    const batch = o.batch ?? 8;
    // The largest finite threshold: nothing is rejected, so no time goes into defect regions.
    const report = await replay({ model, input: { kind: 'images', root, items }, threshold: Number.MAX_VALUE, regions: false, batch: { maxSize: batch, maxWaitMs: 20 } });
    const scored = report.results.filter((r) => r.score !== null);
    const errors = report.results.length - scored.length;
    if (errors > 0) say(`calibrate: ${errors} image(s) could not be scored and are left out (${report.results.filter((r) => r.score === null).slice(0, 3).map((r) => `${r.key}: ${r.reason}`).join('; ')})`);
    if (scored.length === 0) throw new DatasetError('empty_split', 'calibrate: no image could be scored');
    const scores = scored.map((r) => r.score!);
    const labels = scored.map((r) => r.label ?? 0);
    const normalScores = scores.filter((_, i) => labels[i] === 0);
    if (normalScores.length === 0) throw new DatasetError('single_class', 'calibrate: no good image could be scored');

    const guardMode = o.guard ?? 'auto';
    if (guardMode === 'only' && o.normal === undefined) throw new ConfigError('calibrate: --guard-only fits the guard on good images: use it with --normal');
    const guardFlagged = Object.values(report.guard.flagged).reduce((a, b) => a + b, 0);
    if (guardFlagged > 0) say(`calibrate: the model's guard flags ${guardFlagged} of these image(s) as out of domain (${scored.filter((r) => r.guard).slice(0, 3).map((r) => r.key).join(', ')}): are they from this line and camera?`);
    let guard: GuardStats | undefined;
    if (guardMode !== 'auto' || model.guard === undefined) {
      const good = scored.filter((r) => (r.label ?? 0) === 0);
      const byKey = new Map(items.map((it) => [it.key, it.path]));
      // The same decode as the graph's (frameDecoder of an encoded file = loadModelImage).
      const rows = await Promise.all(good.map(async (r) => guardFeatures(await loadModelImage(byKey.get(r.key!)!, model.size))));
      if (rows.length < 2) say(`calibrate: ${rows.length} good image(s) cannot give guard statistics (need at least 2); the guard stays ${model.guard ? 'as it was' : 'off'}`);
      else {
        guard = fitGuard(rows, { size: model.size, source: 'calibrate' });
        say(`calibrate: guard statistics of ${guard.n} good image(s): k ${guard.k} (largest leave-one-out excess ${guard.looMax.toFixed(2)})${guard.n < GUARD_MIN_IMAGES ? `; fewer than ${GUARD_MIN_IMAGES} images give a loose guard: fit it on more (e.g. the training images, --guard-only)` : ''}`);
      }
    }
    const extra = { guardFlagged, thresholdWritten: false, ...(guard ? { guard } : {}) };

    let result: CalibrationResult;
    if (o.normal !== undefined) {
      const c = calibrateNormalOnly(scores, target);
      if (Math.floor(target * c.n + 1e-9) === 0 && target > 0) {
        say(`calibrate: ${c.n} images cannot resolve a ${target} false-reject rate (needs >= ${Math.ceil(1 / target)}); the threshold is just above the highest normal score`);
      }
      result = { method: 'normal-quantile', threshold: c.threshold, n: c.n, errors, targetFalseRejectRate: target, falseRejectRate: c.falseRejectRate, normalStats: scoreStats(normalScores), ...extra, written: false };
    } else {
      const c = calibrateF1(scores, labels);
      result = { method: 'f1-max', threshold: c.threshold, n: scores.length, errors, falseRejectRate: c.falseRejectRate, f1: c.f1, precision: c.precision, recall: c.recall, normalStats: scoreStats(normalScores), ...extra, written: false };
    }
    if (!o.dryRun) {
      const patch: Parameters<typeof updateManifest>[1] = {};
      if (guardMode !== 'only') {
        const info: ThresholdInfo = { image: result.threshold, method: result.method, images: result.n, computedAt: new Date().toISOString() };
        if (result.targetFalseRejectRate !== undefined) info.targetFalseRejectRate = result.targetFalseRejectRate;
        patch.thresholds = info;
        result.thresholdWritten = true;
      }
      // normScore's anchors: the lowest good score, the highest score seen.
      if (guardMode !== 'only' || !model.scoreRange) patch.scoreRange = { min: result.normalStats.min, max: Math.max(...scores), n: scores.length, source: 'calibrate' };
      if (guard) patch.guard = guard;
      result.manifest = updateManifest(o.modelDir, patch);
      result.written = true;
    }
    return result;
  } finally {
    if (!o.model) await model.dispose();
  }
}

interface CalibrateCliOptions extends BackendCliOptions {
  model: string;
  normal?: string;
  category?: string;
  targetFrr: number;
  labelled?: string;
  labels?: string;
  engine: EngineChoice;
  batch: number;
  dryRun: boolean;
  guardOnly: boolean;
  refitGuard: boolean;
  json: boolean;
}

export function register(program: Command): void {
  backendOptions(
    program
      .command('calibrate')
      .description('set the reject threshold of a model from held-out images (written into model.json)')
      .requiredOption('--model <dir>', 'model folder')
      .option('--normal <dir>', 'good held-out images: a folder (or its good/ or test/good/), or a dataset root with --category')
      .option('--category <name>', 'dataset category when --normal is a dataset root (uses its good test images)')
      .option('--target-frr <rate>', 'largest false-reject rate on the good images (normal-only)', floatOption('--target-frr', { min: 0 }), 0.01)
      .option('--labelled <dir>', 'good/ + defect-type folders, or a capture folder with marks from the operator page: maximise F1 instead')
      .option('--labels <file>', 'labels CSV/JSON for --labelled instead of the folder layout')
      .addOption(new Option('--engine <name>', 'restoration engine').choices(['auto', 'tfjs', 'onnx']).default('auto'))
      .option('--batch <n>', 'images per model batch', intOption('--batch'), 8)
      .option('--dry-run', 'compute and print, do not write the model', false)
      .option('--guard-only', 'fit the domain guard on the --normal images (e.g. the training images) and keep the threshold', false)
      .option('--refit-guard', 'also replace the guard statistics the model already has (default: fit them only when it has none)', false)
      .option('--json', 'print the result as JSON', false),
  ).action(async (o: CalibrateCliOptions) => {
    await startBackend(o);
    const modelDir = resolve(o.model);
    const opts: CalibrateOptions = { modelDir, engine: o.engine, targetFrr: o.targetFrr, batch: o.batch, dryRun: o.dryRun, log };
    if (o.normal !== undefined) opts.normal = o.normal;
    if (o.category !== undefined) opts.category = o.category;
    if (o.labelled !== undefined) opts.labelled = o.labelled;
    if (o.labels !== undefined) opts.labels = o.labels;
    if (o.guardOnly && o.refitGuard) throw new ConfigError('calibrate: --guard-only already fits the guard; drop --refit-guard');
    if (o.guardOnly) opts.guard = 'only';
    else if (o.refitGuard) opts.guard = 'refit';
    const r = await calibrateModel(opts);
    const { manifest: _m, guard: g, ...rest } = r;
    const shown = g ? { ...rest, guard: { n: g.n, k: g.k, looMax: g.looMax, features: g.features.length } } : rest;
    if (o.json) {
      process.stdout.write(`${JSON.stringify(shown)}\n`);
      return;
    }
    const s = r.normalStats;
    const lines = [
      `${r.thresholdWritten || !r.written ? '' : 'not written (--guard-only): '}threshold ${r.threshold} (${r.method}${r.targetFalseRejectRate !== undefined ? `, target false-reject rate ${r.targetFalseRejectRate}` : ''}) from ${r.n} image(s)${r.errors ? `, ${r.errors} unreadable left out` : ''}`,
      `false-reject rate on the calibration images: ${r.falseRejectRate.toFixed(4)}${r.f1 !== undefined ? `; F1 ${r.f1.toFixed(4)} (precision ${r.precision!.toFixed(4)}, recall ${r.recall!.toFixed(4)})` : ''}`,
      `good-image scores: mean ${s.mean.toPrecision(5)}, std ${s.std.toPrecision(3)}, p95 ${s.p95.toPrecision(5)}, p99 ${s.p99.toPrecision(5)}, max ${s.max.toPrecision(5)}`,
      g ? `guard statistics: ${g.features.length} features of ${g.n} good image(s), k ${g.k}` : `guard statistics: unchanged${r.guardFlagged ? ` (${r.guardFlagged} calibration image(s) flagged out of domain)` : ''}`,
      r.written ? `written to ${join(modelDir, 'model.json')}` : 'dry run: model not changed',
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  });
}
