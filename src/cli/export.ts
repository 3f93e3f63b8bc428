/**
 * `fairline export --model DIR --onnx OUT.onnx [--fold-bn] [--layout nhwc|nchw]`: write a model
 * artefact's UNet as ONNX (src/model/onnx-export.ts), then check it: one random input through
 * onnxruntime and through the tfjs UNet, and print the largest difference.
 *
 * The .onnx file is written atomically (temp file + rename) so a serving process watching the
 * path never reads half a model.
 */
import { randomBytes } from 'node:crypto';
import { renameSync, rmSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { Option, type Command } from 'commander';
import { ModelError } from '../errors.js';
import { loadModel } from '../io/artefact.js';
import { OnnxEngine, isOnnxRuntimeAvailable } from '../io/onnx-engine.js';
import { exportUNetOnnx } from '../model/onnx-export.js';
import { unetFromTorch } from '../model/weights.js';
import { backendOptions, checkOutputFile, intOption, log, startBackend } from './common.js';

export interface ExportOptions {
  /** Model artefact folder (model.json + weights). */
  model: string;
  /** Output .onnx path. */
  onnx: string;
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
  layout: 'nhwc' | 'nchw';
  foldBatchNorm: boolean;
  /** Absent when the check was skipped (`verify: false` or onnxruntime missing). */
  verify?: { maxAbsDiff: number; maxAbsRef: number; values: number; tfjsBackend: string; onnxProvider: string };
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
  const layout = o.layout ?? 'nhwc';
  const foldBatchNorm = o.foldBn ?? false;
  const bytes = exportUNetOnnx(tensors, spec.unet, { foldBatchNorm, layout, opset: o.opset });
  const tmp = `${path}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    writeFileSync(tmp, bytes);
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
  const result: ExportResult = { path, bytes: bytes.byteLength, modelId: manifest.id, layout, foldBatchNorm };
  if (o.verify === false) return { ...result, verifySkipped: 'disabled (--no-verify)' };
  if (!(await isOnnxRuntimeAvailable())) return { ...result, verifySkipped: 'onnxruntime-node is not available here' };

  const backend = await startBackend({ backend: o.backend, threads: o.threads });
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

export function register(program: Command): void {
  const cmd = program
    .command('export')
    .description('export a model artefact to ONNX (for onnxruntime, TensorRT, ...) and check it against tfjs')
    .requiredOption('--model <dir>', 'model artefact folder (from fairline train or import)')
    .requiredOption('--onnx <file>', 'ONNX file to write')
    .option('--fold-bn', 'fold BatchNorm into the convolutions (smaller graph, same outputs)', false)
    .addOption(new Option('--layout <layout>', 'tensor layout of the graph input/output').choices(['nhwc', 'nchw']).default('nhwc'))
    .option('--opset <n>', 'ONNX opset (13..21)', intOption('--opset', 13), 13)
    .option('--no-verify', 'skip the onnxruntime-vs-tfjs check')
    .option('--verify-batch <n>', 'images in the check batch', intOption('--verify-batch'), 1);
  backendOptions(cmd);
  cmd.action(async (o: ExportOptions) => {
      const r = await exportModel(o);
      log(`export: ${r.modelId} -> ${r.path} (${(r.bytes / 2 ** 20).toFixed(1)} MiB, ${r.layout}${r.foldBatchNorm ? ', BatchNorm folded' : ''})`);
      if (r.verify) {
        process.stdout.write(`verify: max |onnxruntime - tfjs| = ${r.verify.maxAbsDiff.toExponential(2)} over ${r.verify.values} values (outputs up to ${r.verify.maxAbsRef.toFixed(3)}; onnxruntime-${r.verify.onnxProvider} vs tfjs-${r.verify.tfjsBackend})\n`);
      } else {
        process.stdout.write(`verify: skipped (${r.verifySkipped})\n`);
      }
    });
}
