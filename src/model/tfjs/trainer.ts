/**
 * One FAIR training step (`train.py:40-81`, reference section 5): forward in BN-training mode,
 * `MSE + (1 - SSIM)`, backward, Adam (lr 1e-4, betas 0.9/0.999, eps 1e-8, no weight decay) and
 * the MultiStepLR schedule (x0.2 at 80% and 90% of the epochs, stepped once per epoch).
 *
 * Adam is implemented here with tf ops on our own `m` / `v` variables, in PyTorch's exact form
 * (`p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)`), so the optimiser state can be
 * saved and restored exactly (tf.train.adam keeps its slots private and puts eps elsewhere).
 *
 * ## Micro-batching and BatchNorm
 * With `microBatch` smaller than the batch, the batch is split into consecutive micro-batches
 * that run one after another (the wasm backend's 4 GB heap holds at most about 256^2 x 2 at
 * c = 32), and their gradients are accumulated:
 *
 * - Gradient: `sum_k (n_k / N) * grad(loss_k)`, i.e. each micro-batch's mean loss weighted by its
 *   share of the batch. MSE and the SSIM mean are means over samples, so for a network without
 *   BatchNorm this is exactly the gradient of the batch loss.
 * - BatchNorm normalises each micro-batch with ITS OWN batch statistics (a micro-batch forward
 *   cannot see the others). This differs from batch-8 BN training: the noise of BN statistics
 *   is larger and the gradient no longer couples samples of different micro-batches. Likewise
 *   SSIM's dynamic range L is decided per micro-batch rather than per batch.
 * - Running statistics are updated ONCE per step, with the statistics of all micro-batches
 *   pooled into batch statistics (count-weighted mean; within-plus-between variance; unbiased
 *   with the total count), so one step advances the running stats by one PyTorch momentum update
 *   of batch-N statistics, not by one update per micro-batch. The first BN layer's pooled
 *   statistics are therefore exactly those of batch-N training; deeper layers see activations
 *   that were normalised per micro-batch.
 *
 * With `microBatch >= N` (the default), a step is exactly PyTorch's batch-N step.
 */
import * as tf from '@tensorflow/tfjs';
import { BadInputError, ConfigError, ModelError } from '../../errors.js';
import { fairLoss } from './loss.js';
import type { BatchStat, UNet } from './unet.js';
import { tfValuesFromTorch, unetToTorch, type TorchTensors } from '../weights.js';

export interface TrainerOptions {
  /** Base learning rate (1e-4). */
  lr?: number;
  /** Total epochs E; sets the schedule's milestones. */
  epochs: number;
  /** Largest number of samples per forward/backward; default: the whole batch. */
  microBatch?: number;
  /** Adam betas (0.9, 0.999) and eps (1e-8, PyTorch's default, not TF.js's 1e-7). */
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** Decay factor at each milestone (0.2). */
  gamma?: number;
}

export type { StepResult, TrainerState } from '../training-engine.js';
import type { StepResult, TrainerState, TrainingEngine } from '../training-engine.js';

/** Gradients of one batch plus the pooled BN statistics (see `Trainer.computeGradients`). */
export interface BatchGradients extends StepResult {
  /** Gradient per trainable parameter (state_dict name), TF layout. Owned by the caller. */
  grads: Map<string, tf.Tensor>;
  /** Pooled batch statistics per BN layer. Owned by the caller. */
  stats: Map<string, BatchStat>;
}

/** A non-trainable zero variable; the temporary tensor is freed (the variable holds its own ref). */
function zerosVariable(shape: number[]): tf.Variable {
  const z = tf.zeros(shape);
  const v = tf.variable(z, false);
  z.dispose();
  return v;
}

/**
 * Pool per-micro-batch BN statistics into statistics of the whole batch: count-weighted mean,
 * biased variance = weighted mean of (variance + (mean_k - mean)^2). Returns new tensors.
 */
export function poolBatchStats(parts: readonly Map<string, BatchStat>[]): Map<string, BatchStat> {
  const out = new Map<string, BatchStat>();
  if (parts.length === 0) return out;
  for (const name of parts[0]!.keys()) {
    const items = parts.map((p) => {
      const s = p.get(name);
      if (!s) throw new ModelError('bad_model', `BatchNorm ${name} missing from a micro-batch`);
      return s;
    });
    const total = items.reduce((a, s) => a + s.count, 0);
    const pooled = tf.tidy(() => {
      if (items.length === 1) return { mean: items[0]!.mean.clone(), variance: items[0]!.variance.clone() };
      let mean = tf.zerosLike(items[0]!.mean);
      for (const s of items) mean = tf.add(mean, tf.mul(s.mean, s.count / total));
      let variance = tf.zerosLike(items[0]!.variance);
      for (const s of items) {
        variance = tf.add(variance, tf.mul(tf.add(s.variance, tf.squaredDifference(s.mean, mean)), s.count / total));
      }
      return { mean, variance };
    });
    out.set(name, { mean: pooled.mean as tf.Tensor1D, variance: pooled.variance as tf.Tensor1D, count: total });
  }
  return out;
}

export { multiStepLr } from '../schedule.js';
import { multiStepLr } from '../schedule.js';

/**
 * Trains a UNet in place. Call `step` once per batch; set `epoch` at the start of each epoch
 * (it selects the learning rate).
 *
 * @example
 * const trainer = new Trainer(unet, { epochs: 800, microBatch: 2 });
 * for (let e = 0; e < 800; e++) {
 *   trainer.epoch = e;
 *   for (const { x, target } of batches()) await trainer.step(x, target);
 * }
 */
export class Trainer {
  readonly unet: UNet;
  readonly epochs: number;
  readonly lr: number;
  readonly microBatch: number;
  /** Current 0-based epoch; selects the learning rate. */
  epoch = 0;
  private readonly beta1: number;
  private readonly beta2: number;
  private readonly eps: number;
  private readonly gamma: number;
  private t = 0;
  private readonly m = new Map<string, tf.Variable>();
  private readonly v = new Map<string, tf.Variable>();
  private readonly names: string[];

  constructor(unet: UNet, opts: TrainerOptions) {
    if (!Number.isInteger(opts.epochs) || opts.epochs < 1) throw new ConfigError(`epochs must be a positive integer, got ${opts.epochs}`);
    const lr = opts.lr ?? 1e-4;
    if (!(lr > 0)) throw new ConfigError(`lr must be > 0, got ${lr}`);
    const mb = opts.microBatch ?? Number.POSITIVE_INFINITY;
    if (!(mb >= 1) || (Number.isFinite(mb) && !Number.isInteger(mb))) throw new ConfigError(`microBatch must be a positive integer, got ${mb}`);
    this.unet = unet;
    this.epochs = opts.epochs;
    this.lr = lr;
    this.microBatch = mb;
    this.beta1 = opts.beta1 ?? 0.9;
    this.beta2 = opts.beta2 ?? 0.999;
    this.eps = opts.eps ?? 1e-8;
    this.gamma = opts.gamma ?? 0.2;
    this.names = [];
    for (const [name, p] of unet.params) {
      if (!p.trainable) continue;
      this.names.push(name);
      this.m.set(name, zerosVariable(p.shape));
      this.v.set(name, zerosVariable(p.shape));
    }
  }

  /** Learning rate for a 0-based epoch (MultiStepLR, see `multiStepLr`). */
  lrForEpoch(epoch: number): number {
    return multiStepLr(epoch, this.epochs, this.lr, this.gamma);
  }

  /** Adam steps taken so far. */
  get stepCount(): number {
    return this.t;
  }

  /**
   * Forward + backward over the batch (micro-batched, see the module doc) without touching the
   * weights or running stats. The returned tensors are the caller's.
   *
   * @throws BadInputError when x / target are not NHWC of matching N, H, W with the UNet's
   *   input channels and 3 target channels.
   */
  computeGradients(x: tf.Tensor4D, target: tf.Tensor4D): BatchGradients {
    this.checkBatch(x, target);
    const n = x.shape[0];
    const mb = Math.min(n, this.microBatch);
    const vars = this.names.map((k) => this.unet.params.get(k)!);
    const byVarName = new Map(vars.map((v, i) => [v.name, this.names[i]!]));
    let grads: Map<string, tf.Tensor> | undefined;
    const statParts: Map<string, BatchStat>[] = [];
    let loss = 0, mse = 0, ssimLoss = 0;
    try {
      for (let start = 0; start < n; start += mb) {
        const size = Math.min(mb, n - start);
        const w = size / n;
        const xs = size === n ? x : tf.slice(x, [start, 0, 0, 0], [size, -1, -1, -1]);
        const ts = size === n ? target : tf.slice(target, [start, 0, 0, 0], [size, -1, -1, -1]);
        const kept: tf.Tensor[] = [];
        let stats: Map<string, BatchStat> | undefined;
        try {
          const res = tf.variableGrads(() => {
            const out = this.unet.forward(xs, true);
            stats = out.batchStats!;
            for (const s of stats.values()) kept.push(tf.keep(s.mean), tf.keep(s.variance));
            const l = fairLoss(out.y, ts);
            kept.push(tf.keep(l.mse), tf.keep(l.ssimLoss));
            return tf.mul(l.loss, w) as tf.Scalar;
          }, vars);
          loss += res.value.dataSync()[0]!;
          res.value.dispose();
          mse += w * kept[kept.length - 2]!.dataSync()[0]!;
          ssimLoss += w * kept[kept.length - 1]!.dataSync()[0]!;
          tf.dispose(kept.splice(kept.length - 2, 2));
          if (!grads) {
            grads = new Map();
            for (const [vn, g] of Object.entries(res.grads)) grads.set(byVarName.get(vn)!, g);
          } else {
            for (const [vn, g] of Object.entries(res.grads)) {
              const key = byVarName.get(vn)!;
              const prev = grads.get(key)!;
              grads.set(key, tf.add(prev, g));
              prev.dispose();
              g.dispose();
            }
          }
          statParts.push(stats!);
        } catch (err) {
          tf.dispose(kept);
          throw err;
        } finally {
          if (xs !== x) xs.dispose();
          if (ts !== target) ts.dispose();
        }
      }
      const stats = poolBatchStats(statParts);
      return { grads: grads!, stats, loss, mse, ssimLoss };
    } catch (err) {
      if (grads) tf.dispose([...grads.values()]);
      throw err;
    } finally {
      for (const p of statParts) for (const s of p.values()) tf.dispose([s.mean, s.variance]);
    }
  }

  /**
   * One optimisation step on a batch: gradients (micro-batched), one running-stat update with
   * the pooled batch statistics, one Adam update at `lrForEpoch(this.epoch)`.
   *
   * @returns the batch loss, MSE and 1 - SSIM before the update.
   */
  async step(x: tf.Tensor4D, target: tf.Tensor4D): Promise<StepResult> {
    const g = this.computeGradients(x, target);
    try {
      this.unet.updateRunningStats(g.stats);
      this.applyAdam(g.grads, this.lrForEpoch(this.epoch));
    } finally {
      tf.dispose([...g.grads.values()]);
      for (const s of g.stats.values()) tf.dispose([s.mean, s.variance]);
    }
    return { loss: g.loss, mse: g.mse, ssimLoss: g.ssimLoss };
  }

  /** PyTorch's single-tensor Adam update for every trainable parameter. */
  applyAdam(grads: ReadonlyMap<string, tf.Tensor>, lr: number): void {
    this.t += 1;
    const bc1 = 1 - this.beta1 ** this.t;
    const bc2 = 1 - this.beta2 ** this.t;
    const stepSize = lr / bc1;
    const bc2Sqrt = Math.sqrt(bc2);
    tf.tidy(() => {
      for (const name of this.names) {
        const g = grads.get(name);
        if (!g) throw new ModelError('bad_model', `no gradient for ${name}`);
        const p = this.unet.params.get(name)!;
        const m = this.m.get(name)!;
        const v = this.v.get(name)!;
        const m1 = tf.add(tf.mul(m, this.beta1), tf.mul(g, 1 - this.beta1));
        const v1 = tf.add(tf.mul(v, this.beta2), tf.mul(tf.mul(g, g), 1 - this.beta2));
        m.assign(m1);
        v.assign(v1);
        const denom = tf.add(tf.div(tf.sqrt(v1), bc2Sqrt), this.eps);
        p.assign(tf.sub(p, tf.mul(tf.div(m1, denom), stepSize)));
      }
    });
  }

  /** Snapshot of the optimiser (copies; reads the moments synchronously). */
  getState(): TrainerState {
    const m = new Map<string, Float32Array>();
    const v = new Map<string, Float32Array>();
    for (const name of this.names) {
      m.set(name, Float32Array.from(this.m.get(name)!.dataSync() as Float32Array));
      v.set(name, Float32Array.from(this.v.get(name)!.dataSync() as Float32Array));
    }
    return { step: this.t, epoch: this.epoch, m, v };
  }

  /**
   * Restore a snapshot from `getState` (for this UNet's shape).
   *
   * @throws ModelError when a moment is missing or has the wrong size.
   */
  setState(state: TrainerState): void {
    if (!Number.isInteger(state.step) || state.step < 0) throw new ModelError('bad_checkpoint', `optimizer step must be a non-negative integer, got ${state.step}`);
    for (const name of this.names) {
      const size = this.m.get(name)!.size;
      const ms = state.m.get(name), vs = state.v.get(name);
      if (!ms || !vs || ms.length !== size || vs.length !== size) {
        throw new ModelError('bad_checkpoint', `optimizer state for ${name} is missing or has the wrong size (want ${size})`);
      }
    }
    for (const name of this.names) {
      const mv = this.m.get(name)!, vv = this.v.get(name)!;
      tf.tidy(() => {
        mv.assign(tf.tensor(state.m.get(name)!, mv.shape));
        vv.assign(tf.tensor(state.v.get(name)!, vv.shape));
      });
    }
    this.t = state.step;
    this.epoch = state.epoch;
  }

  /** Free the optimiser's moments (not the UNet). */
  dispose(): void {
    for (const x of [...this.m.values(), ...this.v.values()]) x.dispose();
    this.m.clear();
    this.v.clear();
  }

  private checkBatch(x: tf.Tensor, target: tf.Tensor): void {
    if (x.rank !== 4 || target.rank !== 4) throw new BadInputError('bad_shape', 'x and target must be NHWC (rank 4)');
    const [n, h, w] = x.shape;
    const [tn, th, tw, tc] = target.shape;
    if (n !== tn || h !== th || w !== tw || tc !== this.unet.spec.outChannels) {
      throw new BadInputError('bad_shape', `target [${target.shape.join(',')}] does not match input [${x.shape.join(',')}] with ${this.unet.spec.outChannels} channels`);
    }
  }
}

/**
 * The tfjs engine behind the {@link TrainingEngine} interface: a {@link UNet} and its
 * {@link Trainer}, on whatever tfjs backend is active. Owns both.
 */
export class TfjsTrainer implements TrainingEngine {
  readonly name: string;

  constructor(readonly unet: UNet, readonly trainer: Trainer) {
    this.name = `tfjs-${tf.getBackend()}`;
  }

  get epoch(): number {
    return this.trainer.epoch;
  }

  set epoch(e: number) {
    this.trainer.epoch = e;
  }

  get stepCount(): number {
    return this.trainer.stepCount;
  }

  lrForEpoch(epoch: number): number {
    return this.trainer.lrForEpoch(epoch);
  }

  async step(x: Float32Array, target: Float32Array, n: number): Promise<StepResult> {
    const S = Math.round(Math.sqrt(x.length / (n * this.unet.spec.inChannels)));
    const xt = tf.tensor4d(x, [n, S, S, this.unet.spec.inChannels]);
    const yt = tf.tensor4d(target, [n, S, S, this.unet.spec.outChannels]);
    try {
      return await this.trainer.step(xt, yt);
    } finally {
      xt.dispose();
      yt.dispose();
    }
  }

  weights(): TorchTensors {
    return unetToTorch(this.unet);
  }

  getState(): TrainerState {
    return this.trainer.getState();
  }

  setState(state: TrainerState, weights?: TorchTensors): void {
    if (weights) {
      const values = tfValuesFromTorch(weights, this.unet.spec);
      tf.tidy(() => {
        for (const [name, v] of this.unet.params) v.assign(tf.tensor(values.get(name)!, v.shape));
      });
    }
    this.trainer.setState(state);
  }

  dispose(): void {
    this.trainer.dispose();
    this.unet.dispose();
  }
}
