/**
 * Loaded by bench/record_batches.mjs into `fairline train`: instead of training, the onnx engine's
 * `step` appends each batch (x, target, NHWC float32, exactly what the step would get) to
 * `$FAIRLINE_RECORD_DIR/{x,t}.bin` with a line per batch in `index.jsonl`, and the first call
 * writes the initial weights (import format) to `init/`. The data pipeline, the seeds and the
 * batch plan are `fairline train`'s own, so bench/torch_replay.py can train PyTorch on the very
 * batches and initial weights a fairline run used. The returned losses are placeholders.
 */
import { appendFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { OnnxTrainer } from '../../src/model/onnx/trainer.js';
import { writeTorchWeights } from '../../src/io/weights.js';
import type { StepResult } from '../../src/model/training-engine.js';

const dir = process.env.FAIRLINE_RECORD_DIR;
if (!dir) throw new Error('record-batches: set FAIRLINE_RECORD_DIR');
mkdirSync(dir, { recursive: true });
let first = true;
const bytes = (a: Float32Array, count: number): Buffer => Buffer.from(a.buffer, a.byteOffset, count * 4);
OnnxTrainer.prototype.step = async function (this: OnnxTrainer, x: Float32Array, target: Float32Array, n: number): Promise<StepResult> {
  if (first) {
    first = false;
    await writeTorchWeights(join(dir, 'init'), this.weights(), { baseWidth: this.spec.baseWidth, inChannels: this.spec.inChannels, size: this.size });
  }
  const px = this.size * this.size;
  appendFileSync(join(dir, 'x.bin'), bytes(x, n * px * this.spec.inChannels));
  appendFileSync(join(dir, 't.bin'), bytes(target, n * px * this.spec.outChannels));
  appendFileSync(join(dir, 'index.jsonl'), JSON.stringify({ epoch: this.epoch, n, size: this.size, in: this.spec.inChannels, out: this.spec.outChannels }) + '\n');
  return { loss: 1, mse: 0.5, ssimLoss: 0.5 };
};
