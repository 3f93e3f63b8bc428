/**
 * Gradient accuracy of both training engines at real scale, against a float64 PyTorch step:
 * one real training batch (synthesis included) through the onnxruntime step (both formulations)
 * and the tfjs step, then `bench/torch_fair_grads.py` recomputes the same step in float64 and
 * float32 PyTorch and prints each engine's worst error per parameter.
 *
 *   node --import tsx bench/grad_check.ts --data ../shared/data/tire_mvtec3d --category tire \
 *     [--model DIR | --checkpoint DIR] [--width 8] [--size 256] [--batch 8] [--zero-bn-biases] [--out /tmp/fairline-gradcheck]
 *   /usr/bin/python3 bench/torch_fair_grads.py /tmp/fairline-gradcheck
 *
 * Unit tests compare the engines on tiny random inputs; this is the check that found the MaxPool
 * tie rule (flat image regions, which random inputs do not have). Weights: a model, a training
 * checkpoint, or a fresh seeded init.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command } from 'commander';
import * as tf from '@tensorflow/tfjs';
import { loadModel } from '../src/io/artefact.js';
import { readDataset } from '../src/io/datasets.js';
import { loadOrt } from '../src/io/onnx-engine.js';
import { initUNetWeights } from '../src/model/layout.js';
import { buildTrainStep } from '../src/model/onnx/train-step.js';
import { firstStepFeeds } from '../src/model/onnx/trainer.js';
import { useBackend } from '../src/model/tfjs/backend.js';
import { Trainer } from '../src/model/tfjs/trainer.js';
import type { FilterSpec } from '../src/model/types.js';
import { unetLayout } from '../src/model/tfjs/unet.js';
import { tfValuesFromTorch, torchFromTfValues, unetFromTorch, type TorchTensors } from '../src/model/weights.js';
import { loadCheckpoint } from '../src/train/checkpoint.js';
import { loadBank } from '../src/train/loop.js';
import { epochBatches } from '../src/train/plan.js';
import { createPreparer } from '../src/train/pool.js';

const num = (v: string): number => Number(v);
const o = new Command('grad_check')
  .requiredOption('--data <root>', 'dataset root')
  .requiredOption('--category <name>', 'category')
  .option('--model <dir>', 'weights from a model artefact')
  .option('--checkpoint <dir>', 'weights from a training checkpoint folder')
  .option('--width <c>', 'UNet base width (fresh init)', num, 8)
  .option('--size <px>', 'input size', num, 256)
  .option('--batch <n>', 'batch size', num, 8)
  .option('--seed <n>', 'init seed and batch plan seed', num, 0)
  .option('--out <dir>', 'where the tensors go', '/tmp/fairline-gradcheck')
  .option('--zero-bn-biases', 'set the conv biases directly before a BN to 0: the same function in train mode, without the float32 cancellation of a large bias over a small signal in the first BN layer (which dominates every engine\'s error otherwise)')
  .parse(process.argv)
  .opts<{ data: string; category: string; model?: string; checkpoint?: string; width: number; size: number; batch: number; seed: number; out: string; zeroBnBiases?: boolean }>();

let weights: TorchTensors;
let width = o.width;
// The high-pass the weights were trained with (a fresh init: the CLI's default).
let filter: FilterSpec = { kind: 'butterworth', cutoff: 30, order: 2 };
if (o.model) {
  const m = loadModel(o.model);
  weights = m.tensors as TorchTensors;
  width = m.manifest.spec.unet.baseWidth;
  filter = m.manifest.spec.filter;
} else if (o.checkpoint) {
  const ck = loadCheckpoint(o.checkpoint);
  weights = ck.weights;
  width = ck.spec.unet.baseWidth;
  filter = ck.spec.filter;
} else weights = torchFromTfValues(initUNetWeights({ baseWidth: width, inChannels: 1, outChannels: 3 }, o.seed), { baseWidth: width, inChannels: 1, outChannels: 3 });
const spec = { baseWidth: width, inChannels: 1, outChannels: 3 };
if (o.zeroBnBiases) for (const d of unetLayout(spec)) if (d.bn) weights[`${d.conv}.bias`]!.data.fill(0);
const S = o.size, N = o.batch;

await useBackend('wasm');
const ort = await loadOrt();
if (!ort) throw new Error('onnxruntime-node does not load');
const ds = readDataset(o.data, o.category);
const { bank } = await loadBank(ds.train.map((s) => s.path), S, 'training');
const prep = createPreparer(bank, { size: S, filter, cutpaste: 'faithful' }, 0);
const samples = await Promise.all(epochBatches(o.seed, 0, bank.count, N)[0]!.samples.map((r) => prep.prepare(r)));
await prep.close();
const x = new Float32Array(N * S * S), t = new Float32Array(N * S * S * 3);
samples.forEach((s, i) => { x.set(s.input, i * S * S); t.set(s.target, i * S * S * 3); });

mkdirSync(o.out, { recursive: true });
const index: Record<string, number[]> = {};
const dump = (name: string, a: Float32Array, shape: number[]): void => {
  writeFileSync(join(o.out, `${name}.bin`), Buffer.from(a.buffer, a.byteOffset, a.byteLength));
  index[name] = shape;
};
dump('x', x, [N, S, S, 1]);
dump('t', t, [N, S, S, 3]);
for (const [k, v] of Object.entries(weights)) dump(`w_${k}`, v.data, v.shape);

// tfjs: the reference engine's gradients (trainable tensors; the rest as zeros for the layout).
const unet = unetFromTorch(weights, spec);
const trainer = new Trainer(unet, { epochs: 1 });
const ref = trainer.computeGradients(tf.tensor4d(x, [N, S, S, 1]), tf.tensor4d(t, [N, S, S, 3]));
const full = new Map<string, Float32Array>();
for (const [k, v] of tfValuesFromTorch(weights, spec)) full.set(k, (ref.grads.get(k)?.dataSync() as Float32Array | undefined) ?? new Float32Array(v.length));
for (const [k, v] of Object.entries(torchFromTfValues(full, spec))) dump(`g_tfjs_${k}`, v.data, v.shape);
const losses: Record<string, number> = { tfjs: ref.loss };

for (const [name, how] of [['onnx_fast', 'auto'], ['onnx_portable', 'im2col']] as const) {
  const step = buildTrainStep(spec, { size: S, exposeGradients: true, convWeightGrad: how, separableSsim: how === 'auto' });
  const session = await ort.InferenceSession.create(step.bytes);
  const feeds = firstStepFeeds(ort, step, { x, target: t, n: N, size: S, spec }, weights, { stepSize: 1e-4, bc2Sqrt: 1 });
  const out = await session.run(feeds);
  for (const k of step.trainable) dump(`g_${name}_${k}`, out[`grad:${k}`]!.data as Float32Array, weights[k]!.shape);
  losses[name] = (out.loss!.data as Float32Array)[0]!;
  await session.release();
}
writeFileSync(join(o.out, 'index.json'), JSON.stringify({ width, engines: ['tfjs', 'onnx_fast', 'onnx_portable'], losses, tensors: index }));
console.log(JSON.stringify({ out: o.out, width, size: S, batch: N, losses }));
