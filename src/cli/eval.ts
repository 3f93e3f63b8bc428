/**
 * `fairline eval`: evaluate models on a dataset's test split as in the paper (per category
 * I-AUROC, P-AUROC, AUPRO, plus F1-max and reject-gate operating points), through the same
 * inspection graph as live inspection, and write report.json / .csv / .md, pictures and
 * index.html.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Option, type Command } from 'commander';
import * as tf from '@tensorflow/tfjs';
import { backendOptions, checkOutputDir, intOption, log, startBackend } from './common.js';
import { createProgress, type Progress } from './progress.js';
import { ConfigError, DatasetError, ModelError } from '../errors.js';
import { listCategories, readDataset, type Dataset } from '../io/datasets.js';
import { loadModel, readManifest, type ModelManifest } from '../io/artefact.js';
import { evaluateCategory, type PictureMode } from '../eval/evaluate.js';
import { createDetector } from '../runtime/detector-engine.js';
import type { EngineChoice } from '../runtime/restorers.js';
import { guardOf } from '../runtime/model.js';
import { buildReport, formatTable, summariseCategory, writeCategoryPictures, writeReport, type CategorySummary, type EvalReport } from '../eval/report.js';

export interface EvalCliOptions {
  data: string;
  category?: string;
  all?: boolean;
  model?: string;
  models?: string;
  report: string;
  pictures: PictureMode;
  batch: number;
  backend?: string;
  threads?: number;
  json?: boolean;
  /** Detection engine: auto (default: the whole ONNX graph when onnxruntime loads), onnx, tfjs. */
  engine?: EngineChoice;
}

interface Job {
  category: string;
  dataset: Dataset;
  modelDir: string;
  manifest: ModelManifest;
}

/**
 * Check everything before any long work: categories, datasets (with a test split) and one model
 * per category. Errors name what is missing.
 * @throws ConfigError (bad option combination), DatasetError, ModelError
 */
export function planEval(o: Pick<EvalCliOptions, 'data' | 'category' | 'all' | 'model' | 'models'>): Job[] {
  if (!o.category === !o.all) throw new ConfigError('give exactly one of --category NAME or --all');
  if (!o.model === !o.models) throw new ConfigError('give exactly one of --model DIR or --models DIR (one model per category: DIR/<category>)');
  const root = resolve(o.data);
  let categories: string[];
  if (o.all) {
    categories = listCategories(root);
    if (categories.length === 0) throw new DatasetError('missing', `no categories under ${root} (expected <root>/<category>/train/good or VisA's split_csv/1cls.csv)`);
    if (o.model && categories.length > 1) {
      throw new ConfigError(`--all found ${categories.length} categories (${categories.join(', ')}); FAIR models are per category: use --models DIR with DIR/<category>`);
    }
  } else categories = [o.category!];
  const jobs: Job[] = [];
  const missing: string[] = [];
  for (const category of categories) {
    const dataset = readDataset(root, category, { needTest: true });
    const modelDir = resolve(o.model ?? join(o.models!, category));
    if (!existsSync(join(modelDir, 'model.json'))) {
      missing.push(`${category}: ${modelDir}`);
      continue;
    }
    const manifest = readManifest(modelDir);
    const trained = manifest.training?.category;
    if (trained && trained !== category) log(`warning: model ${modelDir} was trained on '${trained}', evaluating it on '${category}'`);
    jobs.push({ category, dataset, modelDir, manifest });
  }
  if (missing.length) {
    throw new ModelError('missing', `no model for ${missing.length} categor${missing.length === 1 ? 'y' : 'ies'}: ${missing.join('; ')} (train with 'fairline train' or import with 'fairline import')`);
  }
  return jobs;
}

/** The model's guard statistics for evaluateCategory (none when it has none, or of another version). */
function guardArg(manifest: ModelManifest, dir: string): { guard?: NonNullable<ModelManifest['guard']> } {
  const { guard } = guardOf(manifest, dir);
  return guard ? { guard } : {};
}

/**
 * Run an evaluation and write the report. Returns the report (the CLI prints its table).
 * Sets no exit code: the caller decides what failed images mean.
 * @param env.backend backend name for the report (default: tfjs' current one)
 * @param env.progress false = no progress output (tests, library use)
 */
export async function runEval(o: EvalCliOptions, env: { backend?: string; progress?: boolean } = {}): Promise<{ report: EvalReport; paths: Awaited<ReturnType<typeof writeReport>> }> {
  const reportDir = checkOutputDir(o.report, '--report');
  const jobs = planEval(o);
  const total = jobs.reduce((a, j) => a + j.dataset.test.length, 0);
  let progress: Progress | undefined;
  const summaries: CategorySummary[] = [];
  let doneBefore = 0;
  try {
    progress = env.progress === false ? silentProgress() : createProgress({ total, label: 'eval', json: o.json });
    for (const job of jobs) {
      const model = loadModel(job.modelDir);
      // No onnxruntime spinning: the main thread decodes and resizes the next images (and sharp
      // reads masks) while the graph runs, and spinning pool threads would take their cores.
      const detector = await createDetector(model, { engine: o.engine ?? 'auto', threads: o.threads, spinning: false, log: env.progress === false ? undefined : log });
      try {
        const t0 = performance.now();
        const ev = await evaluateCategory(job.dataset, detector, { id: model.manifest.id, dir: job.modelDir, threshold: model.manifest.thresholds, ...guardArg(model.manifest, job.modelDir) }, {
          batch: o.batch,
          pictures: o.pictures,
          onImage: (done) => {
            const s = (performance.now() - t0) / 1000;
            progress!.update(doneBefore + done, { category: job.category, 'img/s': (done / Math.max(s, 1e-9)).toFixed(2) });
          },
        });
        doneBefore += job.dataset.test.length;
        const pics = o.pictures === 'none' ? undefined : await writeCategoryPictures(ev, reportDir);
        const summary = summariseCategory(ev, pics);
        summaries.push(summary);
        progress.event({
          event: 'category', category: job.category, images: summary.images.total, errors: summary.images.errors,
          image_AUROC: summary.image_AUROC, pixel_AUROC: summary.pixel_AUROC, AUPRO: summary.AUPRO, seconds: summary.seconds,
        });
        for (const it of summary.items) if (it.error) log(`warning: ${job.category}: ${it.path} failed (${it.error.code}): ${it.error.message}`);
      } finally {
        detector.dispose();
      }
    }
  } finally {
    progress?.stop();
  }
  const report = buildReport(summaries, { data: resolve(o.data), backend: env.backend ?? tf.getBackend(), pictures: o.pictures });
  const paths = await writeReport(report, reportDir);
  return { report, paths };
}

function silentProgress(): Progress {
  return { update: () => undefined, event: () => undefined, note: () => undefined, stop: () => undefined };
}

export function register(program: Command): void {
  const cmd = program
    .command('eval')
    .description('evaluate models on a test split as in the paper; writes report.json/.csv/.md, pictures and index.html')
    .requiredOption('--data <root>', 'dataset root (MVTec AD, VisA, or prepared VisA 1cls layout)')
    .option('--category <name>', 'category to evaluate, e.g. hazelnut')
    .option('--all', 'every category under --data (needs --models)')
    .option('--model <dir>', 'model folder (with --category)')
    .option('--models <dir>', 'folder of models, one per category: <dir>/<category>')
    .requiredOption('--report <dir>', 'folder to write the report into')
    .addOption(new Option('--pictures <which>', 'pictures to write: input | restoration | heatmap | ground truth').choices(['all', 'anomalous', 'none']).default('all'))
    .option('--batch <n>', 'images per model call', intOption('--batch'), 4)
    .addOption(new Option('--engine <name>', 'detection engine (auto: the whole detector on onnxruntime when it loads)').choices(['auto', 'tfjs', 'onnx']).default('auto'))
    .option('--json', 'JSON lines instead of a progress bar, even on a terminal', false);
  backendOptions(cmd);
  cmd.action(async (o: EvalCliOptions) => {
      // Validate options, data, models and the report folder before the (slow) backend start.
      checkOutputDir(o.report, '--report');
      planEval(o);
      const backend = await startBackend(o);
      const { report, paths } = await runEval(o, { backend: backend.name });
      process.stdout.write(formatTable(report));
      for (const c of report.categories) log(`speed: ${c.category}: ${c.images.total} images in ${c.seconds.toFixed(1)} s, ${c.imagesPerSecond.toFixed(1)} images/s`);
      const errors = report.categories.reduce((a, c) => a + c.images.errors, 0);
      log(`report: ${paths.md}, ${paths.csv}, ${paths.json}${report.categories.some((c) => c.items.some((it) => it.picture)) ? `, pictures in ${paths.html}` : ''}`);
      if (errors > 0) {
        log(`${errors} test image(s) failed and are not in the metrics (see report.md)`);
        process.exitCode = 1;
      }
    });
}
