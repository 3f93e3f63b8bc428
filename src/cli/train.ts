/** `fairline train`: train a FAIR model on the normal images of one category. */
import { rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Option, type Command } from 'commander';
import { backendOptions, checkOutputDir, floatOption, intOption, log, startBackend, type BackendCliOptions } from './common.js';
import { createProgress, formatDuration, type Progress } from './progress.js';
import { extraNormalImages, readDataset } from '../io/datasets.js';
import { train, TRAIN_ENGINES, type TrainEngineChoice } from '../train/loop.js';
import { batchesPerEpoch } from '../train/plan.js';
import { checkTrainOut, trainOutState } from '../train/resume.js';
import type { FilterKind } from '../model/types.js';

interface TrainCliOptions extends BackendCliOptions {
  data: string;
  category: string;
  out: string;
  epochs: number;
  batch: number;
  width: number;
  size: number;
  filter: FilterKind;
  cutoff: number;
  order: number;
  textures?: string;
  addNormal?: string;
  seed: number;
  lr: number;
  cutpaste: 'faithful' | 'corrected';
  microBatch?: number;
  workers?: number;
  engine: TrainEngineChoice;
  providers: string[];
  resume: boolean;
  force: boolean;
  json: boolean;
}

/** An estimate above this many hours comes with a warning and what would shorten it. */
export const LONG_RUN_HOURS = 4;

/** Steps timed for the estimate (after the first, which includes warm-up). */
const ESTIMATE_STEPS = 5;
/** ... or fewer steps when they take this long. */
const ESTIMATE_AFTER_MS = 60000;
/** Off a terminal, a progress line at least this often (an epoch can take many minutes). */
const HEARTBEAT_MS = 60000;

/** What the run will do: `plan: 28 training images, 4 steps per epoch (batch 8) x 800 epochs = 3200 steps`. */
export function planLine(images: number, batch: number, epochs: number, startEpoch: number): string {
  const perEpoch = batchesPerEpoch(images, batch);
  const left = perEpoch * (epochs - startEpoch);
  return (
    `plan: ${images} training images, ${perEpoch} step(s) per epoch (batch ${batch}) x ${epochs} epochs = ${perEpoch * epochs} steps` +
    (startEpoch > 0 ? `, ${left} left after epoch ${startEpoch}` : '')
  );
}

/**
 * The estimate once the first steps are timed, and a warning (with what shortens the run) when
 * it is many hours.
 */
export function estimateLines(secondsPerStep: number, stepsLeft: number, o: { backend: string; width: number; epochs: number }): string[] {
  const total = secondsPerStep * stepsLeft;
  const lines = [`estimate: ${secondsPerStep.toPrecision(3)} s per step on ${o.backend} -> about ${formatDuration(total)} for the ${stepsLeft} steps left`];
  if (total > LONG_RUN_HOURS * 3600) {
    lines.push(
      `warning: this run will take many hours (about ${formatDuration(total)}). A smaller UNet (--width ${Math.max(8, o.width / 4)}), fewer --epochs ` +
        `(now ${o.epochs}) or a faster engine (onnxruntime-node: --engine onnx; on a GPU machine --providers cuda,cpu) shorten it; a checkpoint is written after every epoch, ` +
        `so Ctrl-C and --resume lose at most one epoch`,
    );
  }
  return lines;
}

function shellQuote(a: string): string {
  return /^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`;
}

/**
 * The command that continues this run: the same arguments with `--resume` (and without
 * `--force`, which started it over).
 *
 * @example
 * resumeCommand(['node', 'bin/fairline.js', 'train', '--out', 'm', '--force']); // 'fairline train --out m --resume'
 */
export function resumeCommand(argv: readonly string[]): string {
  const args = argv.slice(2).filter((a) => a !== '--force');
  if (!args.includes('--resume')) args.push('--resume');
  return ['fairline', ...args].map(shellQuote).join(' ');
}

/**
 * Ctrl-C (SIGINT) or SIGTERM during training: give the terminal back (the bar hides the cursor
 * and turns line wrap off), say where the last complete checkpoint is and how to resume, exit
 * 130 / 143 as a shell expects. The data workers end with the process; 'exit' handlers (the
 * wasm backend's temp files) still run.
 */
function onInterrupt(out: string, epochs: number, stopProgress: () => void): () => void {
  const handler = (sig: NodeJS.Signals): void => {
    stopProgress();
    if (process.stderr.isTTY) process.stderr.write('\x1b[?25h\x1b[?7h'); // cursor on, line wrap on
    const ck = trainOutState(out).checkpoint;
    const ckDir = join(out, 'checkpoint');
    log(`\n${sig === 'SIGINT' ? 'interrupted (Ctrl-C)' : `stopped (${sig})`}: ${ck ? `the checkpoint in ${ckDir} holds epoch ${ck.epochsDone} of ${epochs}` : 'no checkpoint yet (the first is written after epoch 1)'}`);
    log(ck ? `resume with: ${resumeCommand(process.argv)}` : `start again with the same command`);
    process.exit(sig === 'SIGINT' ? 130 : 143);
  };
  process.once('SIGINT', handler);
  process.once('SIGTERM', handler);
  return () => {
    process.off('SIGINT', handler);
    process.off('SIGTERM', handler);
  };
}

export function register(program: Command): void {
  backendOptions(
    program
      .command('train')
      .description('train a FAIR model from normal images (defaults: the paper\'s settings)')
      .requiredOption('--data <root>', 'dataset root (MVTec AD or VisA layout)')
      .requiredOption('--category <name>', 'category to train, e.g. hazelnut')
      .requiredOption('--out <dir>', 'model folder to write (checkpoint in <dir>/checkpoint); one that holds a model or checkpoint needs --resume or --force')
      .option('--epochs <n>', 'epochs (paper: 800 MVTec AD, 400 VisA)', intOption('--epochs'), 800)
      .option('--batch <n>', 'batch size', intOption('--batch'), 8)
      .option('--width <c>', 'UNet base width c', intOption('--width'), 128)
      .option('--size <s>', 'model input size (multiple of 16)', intOption('--size', 16), 256)
      .addOption(new Option('--filter <kind>', 'high-pass extractor').choices(['butterworth', 'gaussian', 'ideal', 'sobel', 'sobel-x']).default('butterworth'))
      .option('--cutoff <d0>', 'filter cut-off D0 (DFT index units)', floatOption('--cutoff', { min: 0, exclusiveMin: true }), 30)
      .option('--order <n>', 'Butterworth order n', intOption('--order'), 2)
      .option('--textures <dir>', 'texture images (DTD layout) for Perlin anomalies; default: the training images (no-extra-data variant)')
      .option('--add-normal <dir>', 'more normal images: a capture folder (its captures marked "good part" on the operator page) or a folder of images')
      .option('--seed <n>', 'random seed (runs are reproducible on one backend)', intOption('--seed', 0), 0)
      .option('--lr <lr>', 'Adam learning rate', floatOption('--lr', { min: 0, exclusiveMin: true }), 1e-4)
      .addOption(new Option('--cutpaste <mode>', 'CutPaste as coded, or as the paper describes it').choices(['faithful', 'corrected']).default('faithful'))
      .addOption(new Option('--engine <name>', 'training engine: onnx (onnxruntime-node, fast), tfjs (the reference, on --backend), auto: onnx when it loads').choices([...TRAIN_ENGINES]).default('auto'))
      .option('--providers <list>', 'onnxruntime execution providers in order, e.g. cuda,cpu (a GPU provider first selects the portable graph)', (v: string) => v.split(',').map((p) => p.trim()).filter(Boolean), ['cpu'])
      .option('--micro-batch <n>', 'tfjs engine: samples per forward/backward (gradient accumulation); default: what the backend fits', intOption('--micro-batch'))
      .option('--workers <n>', 'data-preparation worker threads (default: spare cores, at least 1)', intOption('--workers', 0))
      .option(
        '--resume',
        'continue from <out>/checkpoint with the same options. --epochs may change only while the epochs done ran at the rates of the new schedule ' +
          '(the rate drops x0.2 at 80% and 90% of the epochs): e.g. 40 -> 60 after 10 epochs continues as a 60-epoch run, after a finished 40-epoch run it is refused',
        false,
      )
      .option('--force', 'start over in an --out that holds a model or checkpoint (the checkpoint is removed, the model replaced at the end)', false)
      .option('--json', 'JSON lines even on a terminal', false),
  ).action(async (o: TrainCliOptions) => {
    // Everything that can refuse does so before the backend starts and the images are decoded.
    const out = checkOutputDir(o.out, '--out');
    const replacing = checkTrainOut(out, o);
    const addNormal = o.addNormal ? await extraNormalImages(o.addNormal) : [];
    if (addNormal.length) log(`--add-normal: ${addNormal.length} more normal image(s) from ${resolve(o.addNormal!)}`);
    const images = readDataset(resolve(o.data), o.category).train.length + addNormal.length;
    const startEpoch = o.resume ? (trainOutState(out).checkpoint?.epochsDone ?? 0) : 0;
    const backend = await startBackend(o);
    if (replacing) {
      rmSync(join(out, 'checkpoint'), { recursive: true, force: true });
      log(`--force: starting over in ${out} (old checkpoint removed; the model there is replaced when this run ends)`);
    }
    log(planLine(images, o.batch, o.epochs, startEpoch));

    let progress: Progress | undefined;
    const bar = (): Progress => (progress ??= createProgress({ total: o.epochs, label: 'train', json: o.json }));
    const stopSignals = onInterrupt(out, o.epochs, () => progress?.stop());
    const stepsLeft = batchesPerEpoch(images, o.batch) * (o.epochs - startEpoch);
    let steps = 0;
    let firstStepDone = 0;
    let estimated = false;
    let lastBeat = Date.now();
    try {
      const result = await train(
        {
          dataRoot: resolve(o.data),
          category: o.category,
          out,
          epochs: o.epochs,
          batch: o.batch,
          width: o.width,
          size: o.size,
          filter: { kind: o.filter, cutoff: o.cutoff, order: o.order },
          seed: o.seed,
          lr: o.lr,
          cutpaste: o.cutpaste,
          textures: o.textures ? resolve(o.textures) : undefined,
          microBatch: o.microBatch,
          workers: o.workers,
          resume: o.resume,
          engine: o.engine,
          providers: o.providers,
          threads: o.threads,
          ...(addNormal.length ? { addNormal } : {}),
        },
        {
          log: (msg) => (progress ? progress.note(msg) : log(msg)),
          onBatch: (p) => {
            steps++;
            const t = Date.now();
            if (steps === 1) firstStepDone = t;
            else if (!estimated && (steps > ESTIMATE_STEPS || t - firstStepDone > ESTIMATE_AFTER_MS)) {
              estimated = true;
              for (const line of estimateLines((t - firstStepDone) / 1000 / (steps - 1), stepsLeft - steps, { backend: p.engine, width: o.width, epochs: o.epochs })) bar().note(line);
            }
            const fields = { epoch: `${p.epoch + 1}/${o.epochs}`, loss: p.loss.toFixed(4), 'img/s': p.imagesPerSecond.toFixed(2) };
            bar().update(p.epoch + (p.batch + 1) / p.batches, fields);
            if ((o.json || !process.stderr.isTTY) && t - lastBeat >= HEARTBEAT_MS) {
              lastBeat = t;
              bar().event({ event: 'batch', epoch: p.epoch + 1, batch: p.batch + 1, batches: p.batches, loss: +p.loss.toPrecision(6), 'img/s': +p.imagesPerSecond.toPrecision(4) });
            }
          },
          onEpoch: (s) => {
            bar().update(s.epoch);
            bar().event(
              { event: 'epoch', value: s.epoch, ...roundAll(s) },
              `epoch ${s.epoch}/${s.epochs}  loss ${s.loss.toFixed(4)}  ${s.imagesPerSecond.toFixed(2)} img/s  ${s.seconds.toFixed(1)} s  (${formatDuration(s.etaSeconds)} left)`,
            );
          },
        },
      );
      progress?.stop();
      const st = result.manifest.trainScoreStats;
      log(`model: ${result.manifest.id} written to ${out} in ${formatDuration(result.seconds)} (training-image scores: mean ${st?.mean.toFixed(4)}, max ${st?.max.toFixed(4)})`);
    } finally {
      progress?.stop();
      stopSignals();
    }
  });
}

function roundAll(o: object): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, typeof v === 'number' ? +v.toPrecision(6) : v]));
}
