/**
 * `fairline export --model DIR --onnx OUT.onnx [--part detector|unet] ...`: write a model artefact
 * as ONNX, then check the written file in onnxruntime against the TypeScript path and print the
 * largest difference.
 *
 * - `--part detector` (default): the whole detector (src/model/onnx/detector.ts), BGR images at
 *   model size in (`--input float32|uint8`), `score` [N] and `map` [N,S,S] out (`--restored` adds
 *   the restoration); the threshold, score anchors, spec, model id and fairline version go into
 *   metadata_props (docs/serving.md). Checked: seeded test images through the file vs
 *   FairDetector (tfjs UNet + TypeScript high-pass and scoring).
 * - `--part unet`: the UNet alone (src/model/onnx-export.ts, `--layout`, `--opset`); checked: one
 *   random input through onnxruntime and the tfjs UNet.
 *
 * The .onnx file is written atomically (temp file + rename) so a serving process watching the
 * path never reads half a model.
 */
import { randomBytes } from 'node:crypto';
import { renameSync, rmSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { Option, type Command } from 'commander';
import { ConfigError, ModelError } from '../errors.js';
import { loadModel } from '../io/artefact.js';
import { OnnxEngine, isOnnxRuntimeAvailable } from '../io/onnx-engine.js';
import { exportUNetOnnx } from '../model/onnx-export.js';
import { DETECTOR_INPUT, DETECTOR_MAP, DETECTOR_SCORE, exportDetectorOnnx, type DetectorInputType } from '../model/onnx/detector.js';
import { FairDetector } from '../model/detector.js';
import { TfjsRestorer } from '../model/tfjs/restorer.js';
import type { ImageF32 } from '../model/types.js';
import { unetFromTorch } from '../model/weights.js';
import { loadOrt, type OrtTensor } from '../io/onnx-engine.js';
import type { LoadedModel } from '../io/artefact.js';
import { backendOptions, checkOutputFile, intOption, log, startBackend } from './common.js';

export interface ExportOptions {
  /** Model artefact folder (model.json + weights). */
  model: string;
  /** Output .onnx path. */
  onnx: string;
  /** What to export: the whole detector (default) or the UNet alone. */
  part?: 'detector' | 'unet';
  /** Detector input element type (default float32 in [0,1]; uint8 = bytes 0..255). */
  input?: DetectorInputType;
  /** Detector: also output the restoration. */
  restored?: boolean;
  /** Detector: scoring one image at a time (default, fastest on CPUs) or the whole batch per op (GPUs). */
  scoring?: 'per-image' | 'batch';
  /** Fold eval-mode BatchNorm into the convs (smaller file, same outputs to ~1e-6). */
  foldBn?: boolean;
  layout?: 'nhwc' | 'nchw';
  opset?: number;
  /** Run the onnxruntime-vs-tfjs check (default true). */
  verify?: boolean;
  /** Images in the check batch (default 1). */
  verifyBatch?: number;
  backend?: string;
  threads?: number;
}

export interface ExportResult {
  path: string;
  bytes: number;
  modelId: string;
  part: 'detector' | 'unet';
  layout: 'nhwc' | 'nchw';
  foldBatchNorm: boolean;
  /**
   * Absent when the check was skipped (`verify: false` or onnxruntime missing). For the detector,
   * `maxAbsDiff` is over the maps and `scoreRelDiff` over the scores.
   */
  verify?: { maxAbsDiff: number; maxAbsRef: number; values: number; tfjsBackend: string; onnxProvider: string; scoreRelDiff?: number };
  /** Why the check did not run. */
  verifySkipped?: string;
}

/** Differences above this (absolute, outputs are ~[0,1] images) mean the export is wrong. */
export const EXPORT_TOLERANCE = 1e-3;

/**
 * Export and verify. Used by the `export` command; callable directly (tests, scripts).
 *
 * @throws ModelError for a missing or corrupt artefact, or (`export_mismatch`) when onnxruntime
 *   and tfjs disagree by more than {@link EXPORT_TOLERANCE}; the .onnx file is kept for
 *   inspection in that case.
 * @example
 * const r = await exportModel({ model: 'models/hazelnut', onnx: 'hazelnut.onnx', foldBn: true });
 * console.log(r.verify?.maxAbsDiff); // ~1e-7
 */
export async function exportModel(o: ExportOptions): Promise<ExportResult> {
  const path = checkOutputFile(o.onnx, '--onnx');
  const { manifest, tensors } = loadModel(resolve(o.model));
  const spec = manifest.spec;
  const part = o.part ?? 'detector';
  if (part !== 'detector' && part !== 'unet') throw new ConfigError(`--part must be detector or unet, got ${String(part)}`);
  const layout = o.layout ?? 'nhwc';
  const foldBatchNorm = o.foldBn ?? false;
  const bytes =
    part === 'unet'
      ? exportUNetOnnx(tensors, spec.unet, { foldBatchNorm, layout, opset: o.opset })
      : exportDetectorOnnx(tensors, spec, { input: o.input ?? 'float32', restored: o.restored ?? false, foldBatchNorm, scoring: o.scoring ?? 'per-image', props: detectorProps(manifest) });
  const tmp = `${path}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    writeFileSync(tmp, bytes);
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
  const result: ExportResult = { path, bytes: bytes.byteLength, modelId: manifest.id, part, layout, foldBatchNorm };
  if (o.verify === false) return { ...result, verifySkipped: 'disabled (--no-verify)' };
  if (!(await isOnnxRuntimeAvailable())) return { ...result, verifySkipped: 'onnxruntime-node is not available here' };

  const backend = await startBackend({ backend: o.backend, threads: o.threads });
  if (part === 'detector') {
    const verify = await verifyDetector(path, { manifest, tensors }, o.input ?? 'float32', o.verifyBatch ?? 2, o.threads, backend.name);
    if (!(verify.maxAbsDiff <= EXPORT_TOLERANCE) || !((verify.scoreRelDiff ?? 0) <= EXPORT_TOLERANCE)) {
      throw new ModelError('export_mismatch', `${path}: onnxruntime and the TypeScript detector (tfjs ${backend.name}) differ by up to ${verify.maxAbsDiff} in the maps, ${verify.scoreRelDiff} (relative) in the scores (tolerance ${EXPORT_TOLERANCE}); the file was kept for inspection`);
    }
    return { ...result, verify };
  }
  const n = o.verifyBatch ?? 1;
  const S = spec.size;
  const cin = spec.unet.inChannels;
  // A high-pass-like input: zero-mean, small amplitude (seeded, so reruns compare alike).
  const x = tf.tidy(() => tf.randomNormal([n, S, S, cin], 0, 0.1, 'float32', 42).dataSync() as Float32Array);
  const engine = await OnnxEngine.create(path, { threads: o.threads });
  let got: Float32Array;
  try {
    got = await engine.run(x, n, S, cin);
  } finally {
    await engine.dispose();
  }
  const unet = unetFromTorch(tensors, spec.unet);
  let ref: Float32Array;
  try {
    const y = tf.tidy(() => unet.predict(tf.tensor4d(x, [n, S, S, cin])));
    ref = (await y.data()) as Float32Array;
    y.dispose();
  } finally {
    unet.dispose();
  }
  let maxAbsDiff = 0;
  let maxAbsRef = 0;
  for (let i = 0; i < ref.length; i++) {
    maxAbsDiff = Math.max(maxAbsDiff, Math.abs(got[i]! - ref[i]!));
    maxAbsRef = Math.max(maxAbsRef, Math.abs(ref[i]!));
  }
  if (!(maxAbsDiff <= EXPORT_TOLERANCE)) {
    throw new ModelError('export_mismatch', `${path}: onnxruntime and tfjs (${backend.name}) differ by up to ${maxAbsDiff} (tolerance ${EXPORT_TOLERANCE}); the file was kept for inspection`);
  }
  return { ...result, verify: { maxAbsDiff, maxAbsRef, values: ref.length, tfjsBackend: backend.name, onnxProvider: engine.executionProvider } };
}

/** metadata_props of an exported detector: what a server needs to turn outputs into verdicts. */
function detectorProps(manifest: LoadedModel['manifest']): Record<string, string> {
  const props: Record<string, string> = { 'fairline.modelId': manifest.id, 'fairline.version': FAIRLINE_VERSION };
  const t = manifest.thresholds?.image;
  if (typeof t === 'number') props['fairline.threshold'] = String(t);
  if (manifest.scoreRange) props['fairline.scoreRange'] = JSON.stringify(manifest.scoreRange);
  else if (manifest.trainScoreStats) {
    const s = manifest.trainScoreStats;
    props['fairline.scoreRange'] = JSON.stringify({ min: s.min, max: s.max, n: s.n, source: 'training' });
  }
  return props;
}

/** fairline's version, written into exported models (kept equal to package.json by the CLI test). */
export const FAIRLINE_VERSION = '0.1.0';

/** Smooth seeded test images with structure at every scale (the check batch). */
function checkImages(n: number, size: number, input: DetectorInputType): ImageF32[] {
  return Array.from({ length: n }, (_, k) => {
    const data = new Float32Array(size * size * 3);
    for (let i = 0; i < data.length; i++) {
      const v = 0.5 + 0.4 * Math.sin(i * 0.013 + k) * Math.cos(i * 0.0007 * (k + 1));
      data[i] = input === 'uint8' ? Math.round(v * 255) / 255 : v;
    }
    return { width: size, height: size, channels: 3, data };
  });
}

/** The written detector file in a plain onnxruntime session vs FairDetector on tfjs. */
async function verifyDetector(path: string, model: Pick<LoadedModel, 'manifest' | 'tensors'>, input: DetectorInputType, n: number, threads: number | undefined, tfjsBackend: string): Promise<NonNullable<ExportResult['verify']>> {
  const spec = model.manifest.spec;
  const S = spec.size;
  const images = checkImages(n, S, input);
  const ort = (await loadOrt())!;
  const session = await ort.InferenceSession.create(path, { intraOpNumThreads: threads ?? 0, graphOptimizationLevel: 'all' });
  let scores: Float32Array, maps: Float32Array;
  try {
    const x = new Float32Array(n * S * S * 3);
    images.forEach((im, i) => x.set(im.data, i * S * S * 3));
    const Tensor = ort.Tensor as unknown as new (type: string, data: Float32Array | Uint8Array, dims: number[]) => OrtTensor;
    const feed = input === 'uint8' ? new Tensor('uint8', Uint8Array.from(x, (v) => Math.round(v * 255)), [n, S, S, 3]) : new Tensor('float32', x, [n, S, S, 3]);
    const out = await session.run({ [DETECTOR_INPUT]: feed });
    scores = out[DETECTOR_SCORE]!.data as Float32Array;
    maps = out[DETECTOR_MAP]!.data as Float32Array;
  } finally {
    await session.release();
  }
  const det = new FairDetector(spec, new TfjsRestorer(unetFromTorch(model.tensors, spec.unet)));
  let maxAbsDiff = 0, maxAbsRef = 0, scoreRelDiff = 0;
  try {
    const ref = await det.detect(images);
    ref.forEach((d, i) => {
      scoreRelDiff = Math.max(scoreRelDiff, Math.abs(scores[i]! - d.score) / Math.max(Math.abs(d.score), 1e-12));
      for (let p = 0; p < S * S; p++) {
        maxAbsDiff = Math.max(maxAbsDiff, Math.abs(maps[i * S * S + p]! - d.map[p]!));
        maxAbsRef = Math.max(maxAbsRef, Math.abs(d.map[p]!));
      }
    });
  } finally {
    det.dispose();
  }
  return { maxAbsDiff, maxAbsRef, values: n * S * S, tfjsBackend, onnxProvider: 'cpu', scoreRelDiff };
}

export function register(program: Command): void {
  const cmd = program
    .command('export')
    .description('export a model artefact to ONNX (for onnxruntime, TensorRT, ...) and check it against tfjs')
    .requiredOption('--model <dir>', 'model artefact folder (from fairline train or import)')
    .requiredOption('--onnx <file>', 'ONNX file to write')
    .addOption(new Option('--part <part>', 'what to export: the whole detector (image in, score and map out) or the UNet alone').choices(['detector', 'unet']).default('detector'))
    .addOption(new Option('--input <type>', 'detector input: float32 BGR in [0,1] or uint8 BGR 0..255 (NHWC, model size)').choices(['float32', 'uint8']).default('float32'))
    .option('--restored', 'detector: also output the restoration [N,S,S,3]', false)
    .addOption(new Option('--scoring <mode>', 'detector: score one image at a time (fastest on CPUs) or the whole batch in each op (GPUs); same scores').choices(['per-image', 'batch']).default('per-image'))
    .option('--fold-bn', 'fold BatchNorm into the convolutions (smaller graph, same outputs)', false)
    .addOption(new Option('--layout <layout>', 'UNet part: tensor layout of the graph input/output').choices(['nhwc', 'nchw']).default('nhwc'))
    .option('--opset <n>', 'UNet part: ONNX opset (13..21; the detector is opset 17)', intOption('--opset', 13), 13)
    .option('--no-verify', 'skip the onnxruntime-vs-TypeScript check')
    .option('--verify-batch <n>', 'images in the check batch (default 2 for the detector, 1 for the UNet)', intOption('--verify-batch'));
  backendOptions(cmd);
  cmd.action(async (o: ExportOptions) => {
      const r = await exportModel(o);
      log(`export: ${r.modelId} -> ${r.path} (${r.part === 'detector' ? 'whole detector' : `UNet, ${r.layout}`}, ${(r.bytes / 2 ** 20).toFixed(1)} MiB${r.foldBatchNorm ? ', BatchNorm folded' : ''})`);
      if (r.verify?.scoreRelDiff !== undefined) {
        process.stdout.write(`verify: max |onnxruntime - TypeScript| = ${r.verify.maxAbsDiff.toExponential(2)} over ${r.verify.values} map values (maps up to ${r.verify.maxAbsRef.toFixed(3)}), scores within ${r.verify.scoreRelDiff.toExponential(2)} relative (onnxruntime-${r.verify.onnxProvider} vs tfjs-${r.verify.tfjsBackend})\n`);
      } else if (r.verify) {
        process.stdout.write(`verify: max |onnxruntime - tfjs| = ${r.verify.maxAbsDiff.toExponential(2)} over ${r.verify.values} values (outputs up to ${r.verify.maxAbsRef.toFixed(3)}; onnxruntime-${r.verify.onnxProvider} vs tfjs-${r.verify.tfjsBackend})\n`);
      } else {
        process.stdout.write(`verify: skipped (${r.verifySkipped})\n`);
      }
    });
}
