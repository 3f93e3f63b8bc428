/**
 * The offline training graph: dataset -> decode/resize (once) -> [workers: rotation + anomaly
 * synthesis + high-pass] -> batches -> train step, with a checkpoint after every epoch.
 *
 * Reproducibility: which image each sample draws and every random choice of its synthesis are
 * functions of (seed, epoch, index) (src/train/plan.ts), batches are consumed strictly in order,
 * and the checkpoint holds weights, BN statistics and Adam moments; so a run resumed after a
 * crash continues exactly as if it had never stopped (same backend).
 */
import { cpus } from 'node:os';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join, relative } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { concatMap, from, lastValueFrom, reduce } from 'rxjs';
import { ConfigError, DatasetError, FairlineError } from '../errors.js';
import { contentHash, saveModel, type ModelManifest } from '../io/artefact.js';
import { scoreStats } from '../thresholds.js';
import { listImages, readDataset } from '../io/datasets.js';
import { decodeImage } from '../io/image.js';
import { FairDetector } from '../model/detector.js';
import { resizeLinearU8, u8ToF32 } from '../model/resize.js';
import { OnnxTrainer } from '../model/onnx/trainer.js';
import { TfjsTrainer, Trainer } from '../model/tfjs/trainer.js';
import type { TrainingEngine } from '../model/training-engine.js';
import { isOnnxRuntimeAvailable } from '../io/onnx-engine.js';
import { createRestorer } from '../runtime/restorers.js';
import { defaultSpec, type FairSpec, type FilterSpec } from '../model/types.js';
import { createUNet } from '../model/tfjs/unet.js';
import { unetFromTorch, type TorchTensors } from '../model/weights.js';
import type { CutPasteMode } from '../model/synthesis/cutpaste.js';
import { prefetch } from '../operators/prefetch.js';
import { hasCheckpoint, loadCheckpoint, saveCheckpoint } from './checkpoint.js';
import { checkResume, describeChange, noCheckpointError } from './resume.js';
import { trainingGuard } from './guard.js';
import { epochBatches } from './plan.js';
import { createPreparer } from './pool.js';
import type { ImageBank, PreparedSample } from './prep.js';

export interface TrainOptions {
  dataRoot: string;
  category: string;
  out: string;
  epochs: number;
  batch: number;
  width: number;
  size: number;
  filter: FilterSpec;
  seed: number;
  lr: number;
  cutpaste: CutPasteMode;
  /** DTD-style texture folder; absent = the no-extra-data variant (textures from the training set). */
  textures?: string;
  /** Samples per forward/backward on the tfjs engine (gradient accumulation); default: automatic for the backend. */
  microBatch?: number;
  /**
   * Training engine: 'onnx' (onnxruntime-node, the fast path), 'tfjs' (the reference, on the
   * active tfjs backend) or 'auto' (default: onnx when onnxruntime-node loads, else tfjs).
   */
  engine?: TrainEngineChoice;
  /** onnxruntime execution providers in order (default ['cpu']); a non-CPU first provider picks the portable graph. */
  providers?: string[];
  /** onnxruntime intra-op threads (default: all cores). */
  threads?: number;
  /** Data workers; default: spare cores (at least 1). */
  workers?: number;
  /** Continue from `<out>/checkpoint` if it exists. */
  resume: boolean;
  /** Batches prepared ahead of the train step (default 2). */
  prefetch?: number;
  /** Cap on texture images loaded into memory (default 2000). */
  maxTextures?: number;
  /** More normal images beside the dataset's training split (`--add-normal`: captures marked good on the operator page). */
  addNormal?: string[];
}

export type TrainEngineChoice = 'auto' | 'onnx' | 'tfjs';
export const TRAIN_ENGINES: readonly TrainEngineChoice[] = ['auto', 'onnx', 'tfjs'];

export interface BatchProgress {
  /** The training engine ('onnxruntime-cpu', 'tfjs-wasm', ...). */
  engine: string;
  epoch: number;
  batch: number;
  batches: number;
  loss: number;
  mse: number;
  ssimLoss: number;
  imagesPerSecond: number;
}

export interface EpochSummary {
  epoch: number;
  epochs: number;
  loss: number;
  mse: number;
  ssimLoss: number;
  lr: number;
  images: number;
  seconds: number;
  imagesPerSecond: number;
  /** Share of the epoch the train step waited for data (0..1). */
  dataWaitShare: number;
  etaSeconds: number;
}

export interface TrainHooks {
  log?(msg: string): void;
  onBatch?(p: BatchProgress): void;
  onEpoch?(s: EpochSummary): void;
}

export interface TrainResult {
  manifest: ModelManifest;
  seconds: number;
  epochs: EpochSummary[];
  resumedFrom: number;
}

/** Largest micro-batch that fits the wasm backend's 4 GB heap (measured: ~131k px at c = 32). */
export function autoMicroBatch(backend: string, size: number, width: number, batch: number): number {
  if (backend !== 'wasm') return batch;
  const fit = Math.floor((131072 * 32) / (size * size * width));
  return Math.max(1, Math.min(batch, fit));
}

/** Decode and resize a list of images once; every unreadable file is named in one error. */
export async function loadBank(paths: string[], size: number, what: string): Promise<{ bank: ImageBank; hash: string }> {
  const n = size * size * 3;
  const data = new Uint8Array(paths.length * n);
  const failures: string[] = [];
  const files: { name: string; bytes: Uint8Array }[] = [];
  await Promise.all(
    paths.map(async (p, i) => {
      try {
        const bytes = readFileSync(p);
        files.push({ name: basename(p), bytes });
        const img = await decodeImage(bytes);
        data.set(resizeLinearU8(img, size, size).data, i * n);
      } catch (err) {
        failures.push(`${p}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }),
  );
  if (failures.length > 0) {
    throw new DatasetError('bad_image', `${failures.length} ${what} image(s) cannot be used:\n  ${failures.sort().join('\n  ')}`);
  }
  return { bank: { size, count: paths.length, data }, hash: contentHash(files) };
}

/** Texture images in a DTD-style folder (`images/<class>/*.jpg`) or a flat folder, sorted. */
export function listTextures(dir: string): string[] {
  const isDir = (p: string): boolean => {
    try {
      return statSync(p).isDirectory();
    } catch {
      return false;
    }
  };
  if (!isDir(dir)) throw new DatasetError('missing', `texture folder ${dir} does not exist`);
  const root = isDir(join(dir, 'images')) ? join(dir, 'images') : dir;
  const out = listImages(root);
  for (const d of readdirSync(root).sort()) if (isDir(join(root, d))) out.push(...listImages(join(root, d)));
  return out;
}

function validate(opts: TrainOptions): void {
  const bad: string[] = [];
  const posInt = (name: string, v: number): void => {
    if (!Number.isInteger(v) || v < 1) bad.push(`--${name} must be a positive integer (got ${v})`);
  };
  posInt('epochs', opts.epochs);
  posInt('batch', opts.batch);
  posInt('width', opts.width);
  posInt('size', opts.size);
  if (opts.size % 16 !== 0) bad.push(`--size must be a multiple of 16 (4 poolings), got ${opts.size}`);
  if (!(opts.lr > 0)) bad.push(`--lr must be > 0 (got ${opts.lr})`);
  if (!Number.isInteger(opts.seed)) bad.push(`--seed must be an integer (got ${opts.seed})`);
  if (opts.microBatch !== undefined) posInt('micro-batch', opts.microBatch);
  if (bad.length) throw new ConfigError(bad.join('; '));
}

function runOptions(opts: TrainOptions, spec: FairSpec): Record<string, unknown> {
  return { epochs: opts.epochs, batch: opts.batch, seed: opts.seed, lr: opts.lr, cutpaste: opts.cutpaste, textures: opts.textures ?? null, spec };
}

/** Train a FAIR model; writes `<out>/checkpoint/` every epoch and the model artefact at the end. */
export async function train(opts: TrainOptions, hooks: TrainHooks = {}): Promise<TrainResult> {
  validate(opts);
  const log = hooks.log ?? (() => undefined);
  const backend = tf.getBackend();
  const ds = readDataset(opts.dataRoot, opts.category);
  const trainPaths = [...ds.train.map((s) => s.path), ...(opts.addNormal ?? [])];
  if (opts.addNormal?.length) log(`data: ${opts.addNormal.length} more normal image(s) (--add-normal)`);
  const t0 = Date.now();
  const { bank, hash } = await loadBank(trainPaths, opts.size, 'training');
  let textures: ImageBank | undefined;
  if (opts.textures) {
    const all = listTextures(opts.textures);
    if (all.length === 0) throw new DatasetError('empty_split', `no texture images in ${opts.textures}`);
    const cap = opts.maxTextures ?? 2000;
    const step = Math.max(1, Math.ceil(all.length / cap));
    const chosen = all.filter((_, i) => i % step === 0);
    textures = (await loadBank(chosen, opts.size, 'texture')).bank;
    log(`textures: ${chosen.length} of ${all.length} images from ${opts.textures}`);
  }
  log(`data: ${bank.count} training images of ${ds.category} (${ds.layout}), decoded in ${((Date.now() - t0) / 1000).toFixed(1)} s`);

  const spec = defaultSpec({ size: opts.size, baseWidth: opts.width, filter: opts.filter });
  const runOpts = runOptions(opts, spec);
  const ckDir = `${opts.out}/checkpoint`;
  let startEpoch = 0;
  let history: Record<string, number>[] = [];
  let priorSeconds = 0;
  const microBatch = opts.microBatch ?? autoMicroBatch(backend, opts.size, opts.width, opts.batch);
  if (opts.resume && !hasCheckpoint(ckDir)) throw noCheckpointError(ckDir);
  let initial: TorchTensors | undefined;
  let resumeState: Parameters<TrainingEngine['setState']>[0] | undefined;
  if (opts.resume) {
    const ck = loadCheckpoint(ckDir);
    const epochsChange = checkResume(ckDir, ck, runOpts);
    if (epochsChange) log(`resume: ${describeChange(epochsChange)}: the ${ck.epochsDone} epoch(s) done ran at the learning rates of a ${opts.epochs}-epoch schedule, so this continues as an uninterrupted ${opts.epochs}-epoch run`);
    initial = ck.weights;
    resumeState = { step: ck.step, epoch: ck.epochsDone, m: ck.m, v: ck.v };
    startEpoch = ck.epochsDone;
    history = ck.history;
    priorSeconds = ck.seconds;
    log(`resume: ${ckDir} at epoch ${startEpoch}/${opts.epochs}`);
  }
  const trainer = await createTrainingEngine(opts, spec, microBatch, initial, log);
  if (resumeState) trainer.setState(resumeState, initial);

  const spare = Math.max(0, cpus().length - 1);
  const workers = opts.workers ?? Math.max(1, spare);
  const preparer = createPreparer(bank, { size: opts.size, filter: opts.filter, cutpaste: opts.cutpaste, textures }, workers);
  const batching = trainer instanceof TfjsTrainer ? ` (micro-batch ${microBatch})` : '';
  log(`train: engine ${trainer.name}, c=${opts.width}, ${opts.size}px, batch ${opts.batch}${batching}, ${opts.epochs} epochs, ${workers} data worker(s), seed ${opts.seed}`);

  const S = opts.size;
  const cin = spec.unet.inChannels;
  const summaries: EpochSummary[] = [];
  const tStart = Date.now();
  try {
    const epochs = Array.from({ length: opts.epochs - startEpoch }, (_, i) => startEpoch + i);
    await lastValueFrom(
      from(epochs).pipe(
        concatMap(async (epoch) => {
          const batches = epochBatches(opts.seed, epoch, bank.count, opts.batch);
          const te = Date.now();
          let waited = 0;
          let lastDone = Date.now();
          let seen = 0;
          const sums = { loss: 0, mse: 0, ssimLoss: 0 };
          await lastValueFrom(
            prefetch(batches.length, (i) => Promise.all(batches[i]!.samples.map((r) => preparer.prepare(r))), opts.prefetch ?? 2).pipe(
              concatMap(async ({ index, value, done }) => {
                waited += Date.now() - lastDone;
                const n = value.length;
                const { x, y } = packBatch(value, S, cin);
                trainer.epoch = epoch;
                const r = await trainer.step(x, y, n);
                if (!Number.isFinite(r.loss)) throw new FairlineError('diverged', `training diverged at epoch ${epoch} batch ${index}: loss ${r.loss}`);
                sums.loss += r.loss * n;
                sums.mse += r.mse * n;
                sums.ssimLoss += r.ssimLoss * n;
                seen += n;
                hooks.onBatch?.({ engine: trainer.name, epoch, batch: index, batches: batches.length, ...r, imagesPerSecond: seen / ((Date.now() - te) / 1000) });
                lastDone = Date.now();
                done();
              }),
              reduce((a) => a, undefined),
            ),
            { defaultValue: undefined },
          );
          const seconds = (Date.now() - te) / 1000;
          const doneEpochs = epoch + 1 - startEpoch;
          const perEpoch = (Date.now() - tStart) / 1000 / doneEpochs;
          const s: EpochSummary = {
            epoch: epoch + 1,
            epochs: opts.epochs,
            loss: sums.loss / seen,
            mse: sums.mse / seen,
            ssimLoss: sums.ssimLoss / seen,
            lr: trainer.lrForEpoch(epoch),
            images: seen,
            seconds,
            imagesPerSecond: seen / seconds,
            dataWaitShare: waited / 1000 / seconds,
            etaSeconds: perEpoch * (opts.epochs - epoch - 1),
          };
          summaries.push(s);
          history.push({ epoch: s.epoch, loss: s.loss, mse: s.mse, ssimLoss: s.ssimLoss });
          const st = trainer.getState();
          saveCheckpoint(ckDir, {
            spec,
            epochsDone: epoch + 1,
            step: st.step,
            options: runOpts,
            history,
            seconds: priorSeconds + (Date.now() - tStart) / 1000,
            weights: trainer.weights(),
            m: st.m,
            v: st.v,
          });
          hooks.onEpoch?.(s);
        }),
      ),
      { defaultValue: undefined },
    );
  } finally {
    await preparer.close();
  }

  // Score statistics of the (clean) training images in eval mode, for threshold calibration.
  const finalWeights = trainer.weights();
  trainer.dispose();
  const restorer = await createRestorer(finalWeights, spec.unet, { engine: trainer instanceof OnnxTrainer ? 'auto' : 'tfjs', threads: opts.threads, log });
  const detector = new FairDetector(spec, restorer);
  const scores: number[] = [];
  const px = S * S * 3;
  for (let i = 0; i < bank.count; i += 4) {
    const imgs = [];
    for (let j = i; j < Math.min(bank.count, i + 4); j++) {
      imgs.push(u8ToF32({ width: S, height: S, channels: 3, data: bank.data.subarray(j * px, (j + 1) * px) }));
    }
    for (const d of await detector.detect(imgs)) scores.push(d.score);
  }
  const stats = scoreStats(scores);
  const seconds = priorSeconds + (Date.now() - tStart) / 1000;
  const manifest = saveModel(opts.out, {
    spec,
    tensors: finalWeights,
    idPrefix: ds.category,
    trainScoreStats: stats,
    ...trainingGuard(bank, stats),
    // Provisional threshold until `fairline calibrate` sets one from held-out images: the
    // largest training score (training scores are optimistic, so expect some false rejects).
    thresholds: { image: stats.max, method: 'train-max', images: stats.n, computedAt: new Date().toISOString() },
    training: {
      category: ds.category,
      dataRoot: relative(process.cwd(), opts.dataRoot) || '.',
      files: bank.count,
      contentSha256: hash,
      options: { ...runOpts, ...(trainer instanceof TfjsTrainer ? { microBatch } : {}), workers },
      epochsDone: opts.epochs,
      backend: trainer.name,
      seconds,
      finalLoss: summaries.at(-1)?.loss ?? history.at(-1)?.loss,
    },
  });
  detector.dispose();
  return { manifest, seconds, epochs: summaries, resumedFrom: startEpoch };
}

/**
 * The training engine `opts.engine` asks for: onnxruntime ('onnx', or 'auto' when it loads) or
 * tfjs. `initial` weights (PyTorch layout) come from a checkpoint; otherwise the seeded init.
 *
 * @throws BackendError when 'onnx' is forced and onnxruntime cannot train here.
 */
export async function createTrainingEngine(
  opts: Pick<TrainOptions, 'engine' | 'providers' | 'threads' | 'epochs' | 'lr' | 'size' | 'seed'>,
  spec: FairSpec,
  microBatch: number,
  initial: TorchTensors | undefined,
  log: (msg: string) => void,
): Promise<TrainingEngine> {
  const choice = opts.engine ?? 'auto';
  if (!TRAIN_ENGINES.includes(choice)) throw new ConfigError(`--engine must be one of ${TRAIN_ENGINES.join(', ')}, got ${String(choice)}`);
  let why = 'engine tfjs requested';
  if (choice !== 'tfjs') {
    if (choice === 'onnx' || (await isOnnxRuntimeAvailable())) {
      try {
        return await OnnxTrainer.create({ spec: spec.unet, size: opts.size, epochs: opts.epochs, lr: opts.lr, threads: opts.threads, providers: opts.providers, log }, initial, opts.seed);
      } catch (err) {
        if (choice === 'onnx') throw err;
        why = `onnxruntime cannot train here: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`;
      }
    } else why = 'onnxruntime-node is not installed or its binding does not load';
  }
  const unet = initial ? unetFromTorch(initial, spec.unet) : createUNet(spec.unet, opts.seed);
  const engine = new TfjsTrainer(unet, new Trainer(unet, { epochs: opts.epochs, lr: opts.lr, microBatch }));
  log(`training engine: ${engine.name} (${why})`);
  return engine;
}

function packBatch(samples: PreparedSample[], S: number, cin: number): { x: Float32Array; y: Float32Array } {
  const n = samples.length;
  const x = new Float32Array(n * S * S * cin);
  const y = new Float32Array(n * S * S * 3);
  samples.forEach((s, i) => {
    x.set(s.input, i * S * S * cin);
    y.set(s.target, i * S * S * 3);
  });
  return { x, y };
}
