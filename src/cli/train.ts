/** `fairline train`: train a FAIR model on the normal images of one category. */
import { resolve } from 'node:path';
import { Option, type Command } from 'commander';
import { backendOptions, floatOption, intOption, log, startBackend, type BackendCliOptions } from './common.js';
import { createProgress } from './progress.js';
import { train } from '../train/loop.js';
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
  seed: number;
  lr: number;
  cutpaste: 'faithful' | 'corrected';
  microBatch?: number;
  workers?: number;
  resume: boolean;
  json: boolean;
}

export function register(program: Command): void {
  backendOptions(
    program
      .command('train')
      .description('train a FAIR model from normal images (defaults: the paper\'s settings)')
      .requiredOption('--data <root>', 'dataset root (MVTec AD or VisA layout)')
      .requiredOption('--category <name>', 'category to train, e.g. hazelnut')
      .requiredOption('--out <dir>', 'model folder to write (checkpoint in <dir>/checkpoint)')
      .option('--epochs <n>', 'epochs (paper: 800 MVTec AD, 400 VisA)', intOption('--epochs'), 800)
      .option('--batch <n>', 'batch size', intOption('--batch'), 8)
      .option('--width <c>', 'UNet base width c', intOption('--width'), 128)
      .option('--size <s>', 'model input size (multiple of 16)', intOption('--size', 16), 256)
      .addOption(new Option('--filter <kind>', 'high-pass extractor').choices(['butterworth', 'gaussian', 'ideal', 'sobel', 'sobel-x']).default('butterworth'))
      .option('--cutoff <d0>', 'filter cut-off D0 (DFT index units)', floatOption('--cutoff', { min: 0, exclusiveMin: true }), 30)
      .option('--order <n>', 'Butterworth order n', intOption('--order'), 2)
      .option('--textures <dir>', 'texture images (DTD layout) for Perlin anomalies; default: the training images (no-extra-data variant)')
      .option('--seed <n>', 'random seed (runs are reproducible on one backend)', intOption('--seed', 0), 0)
      .option('--lr <lr>', 'Adam learning rate', floatOption('--lr', { min: 0, exclusiveMin: true }), 1e-4)
      .addOption(new Option('--cutpaste <mode>', 'CutPaste as coded, or as the paper describes it').choices(['faithful', 'corrected']).default('faithful'))
      .option('--micro-batch <n>', 'samples per forward/backward (gradient accumulation); default: what the backend fits', intOption('--micro-batch'))
      .option('--workers <n>', 'data-preparation worker threads (default: spare cores, at least 1)', intOption('--workers', 0))
      .option('--resume', 'continue from <out>/checkpoint', false)
      .option('--json', 'JSON lines even on a terminal', false),
  ).action(async (o: TrainCliOptions) => {
    await startBackend(o);
    const batchesPerEpoch = Math.max(1, o.epochs);
    let progress: ReturnType<typeof createProgress> | undefined;
    const result = await train(
      {
        dataRoot: resolve(o.data),
        category: o.category,
        out: resolve(o.out),
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
      },
      {
        log,
        onBatch: (p) => {
          progress ??= createProgress({ total: batchesPerEpoch, label: 'train', json: o.json });
          progress.update(p.epoch + p.batch / p.batches, { epoch: `${p.epoch + 1}/${o.epochs}`, loss: p.loss.toFixed(4), 'img/s': p.imagesPerSecond.toFixed(2) });
        },
        onEpoch: (s) => {
          progress ??= createProgress({ total: batchesPerEpoch, label: 'train', json: o.json });
          progress.update(s.epoch);
          progress.event({ event: 'epoch', value: s.epoch, ...roundAll(s) });
        },
      },
    );
    progress?.stop();
    log(`model: ${result.manifest.id} written to ${o.out} in ${result.seconds.toFixed(1)} s (training-image scores: mean ${result.manifest.trainScoreStats?.mean.toFixed(4)}, max ${result.manifest.trainScoreStats?.max.toFixed(4)})`);
  });
}

function roundAll(o: object): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, typeof v === 'number' ? +v.toPrecision(6) : v]));
}
