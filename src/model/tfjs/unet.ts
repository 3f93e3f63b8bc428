/**
 * FAIR's restoration UNet (`model_unetskip.py`, reference section 2) with raw tfjs ops, NHWC.
 *
 * Five encoder stages (two conv3x3 + BN + ReLU each, 2x2 max-pool between them), a decoder that
 * upsamples with bilinear `align_corners=True` + conv3x3 + BN + ReLU, adds the encoder skip
 * (addition, not concatenation), runs two more conv + BN + ReLU, and a final conv3x3 to 3 channels
 * with no BN and no activation.
 *
 * Parameters live in `UNet.params` keyed by the PyTorch `state_dict` names
 * (`encoder.block1.0.weight`, `decoder.up1.2.running_var`, ...), so official checkpoints map 1:1
 * (see `src/model/weights.ts`). Conv weights are stored in TF layout `[kh, kw, in, out]`.
 *
 * BatchNorm follows PyTorch exactly: eps 1e-5; in training mode it normalises with the biased
 * batch variance, and the running variance is updated with the UNBIASED batch variance
 * (`n / (n - 1)`), momentum 0.1 (TF's 0.9). Running stats are not updated inside `forward`
 * (that would mutate variables while a gradient tape records); the caller passes the returned
 * batch statistics to `updateRunningStats`, which lets the trainer pool micro-batches first.
 */
import * as tf from '@tensorflow/tfjs';
import { BadInputError, ModelError } from '../../errors.js';
import type { UNetSpec } from '../types.js';

/** BatchNorm epsilon of `nn.BatchNorm2d` (TF.js defaults to 1e-3). */
export const BN_EPS = 1e-5;
/** PyTorch BatchNorm momentum: `running = (1 - m) * running + m * batch`. */
export const BN_MOMENTUM = 0.1;

export { unetLayout, paramDefs, parameterCount, type ConvDef, type ParamDef } from '../layout.js';
import { unetLayout, paramDefs, initUNetWeights, type ConvDef } from '../layout.js';

/** Batch statistics of one BatchNorm layer from a training-mode forward. */
export interface BatchStat {
  /** Per-channel batch mean. */
  mean: tf.Tensor1D;
  /** Per-channel BIASED batch variance (the one used to normalise). */
  variance: tf.Tensor1D;
  /** Elements per channel that produced them (N*H*W). */
  count: number;
}

/** Output of `UNet.forward`; `batchStats` (keyed by BN prefix) only in training mode. */
export interface ForwardResult {
  y: tf.Tensor4D;
  batchStats?: Map<string, BatchStat>;
}

let nextUNetId = 0;

/** Sum over N, H, W of an NHWC tensor, W first: see the accuracy note in `bnReluTraining`. */
function sumNHW(t: tf.Tensor4D): tf.Tensor1D {
  return tf.sum(tf.sum(t, 2), [0, 1]) as tf.Tensor1D;
}

/**
 * Training-mode BatchNorm + ReLU as ONE differentiable op with the closed-form backward
 * (g = dy * [y > 0]; dbeta = sum g; dgamma = sum g*xhat; dx = gamma*rstd*(g - (dbeta + xhat*dgamma)/n)).
 *
 * Why: composed from tfjs ops (moments + batchNorm + relu), autodiff builds the gradient of
 * every piece separately, ~25 kernels per layer (Multiply, Sum, Sub, Tile, Identity, ...) over
 * full-size activations; profiled, they cost about a third of a wasm training step at c = 32
 * (docs/performance.md). This needs 6 full-size elementwise kernels and 2 reductions, and keeps
 * only `xhat` and `y` for the backward pass.
 *
 * Statistics are two-pass (mean, then mean of squared deviations; biased variance, as PyTorch
 * normalises with) and every reduction runs over W first, then N*H: the wasm backend sums in
 * float32 sequentially, and one pass over N*H*W (131k at 2x256^2) costs ~1e-3 relative accuracy.
 * The batch statistics are returned as tensors the caller owns (they are `tf.keep`-ed because
 * they are created inside the custom op's forward, which runs in its own scope).
 */
function bnReluTraining(x: tf.Tensor4D, gamma: tf.Tensor1D, beta: tf.Tensor1D): { y: tf.Tensor4D; mean: tf.Tensor1D; variance: tf.Tensor1D } {
  const [n, h, w] = x.shape;
  const count = n * h * w;
  let mean: tf.Tensor1D | undefined;
  let variance: tf.Tensor1D | undefined;
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [x4, gIn, bIn, save] = args as [tf.Tensor4D, tf.Tensor1D, tf.Tensor1D, tf.GradSaveFunc];
    const m = tf.div(sumNHW(x4), count) as tf.Tensor1D;
    const xc = tf.sub(x4, m) as tf.Tensor4D;
    const v = tf.div(sumNHW(tf.square(xc) as tf.Tensor4D), count) as tf.Tensor1D;
    const rstd = tf.rsqrt(tf.add(v, BN_EPS)) as tf.Tensor1D;
    const xhat = tf.mul(xc, rstd) as tf.Tensor4D;
    const y = tf.relu(tf.add(tf.mul(xhat, gIn), bIn)) as tf.Tensor4D;
    mean = tf.keep(m);
    variance = tf.keep(v);
    save([xhat, y, rstd, gIn]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor4D, saved: tf.Tensor[]) => {
        const [sxhat, sy, srstd, sgamma] = saved as [tf.Tensor4D, tf.Tensor4D, tf.Tensor1D, tf.Tensor1D];
        const g = tf.mul(dy, tf.step(sy)) as tf.Tensor4D;
        const dbeta = sumNHW(g);
        const dgamma = sumNHW(tf.mul(g, sxhat) as tf.Tensor4D);
        const scale = tf.mul(sgamma, srstd);
        const dx = tf.mul(tf.sub(g, tf.div(tf.add(tf.mul(sxhat, dgamma), dbeta), count)), scale);
        return [dx, dgamma, dbeta];
      },
    };
  });
  const y = op(x, gamma, beta) as tf.Tensor4D;
  return { y, mean: mean!, variance: variance! };
}

function validateSpec(spec: UNetSpec): void {
  const ok = (v: number): boolean => Number.isInteger(v) && v > 0;
  if (!ok(spec.baseWidth) || !ok(spec.inChannels) || !ok(spec.outChannels)) {
    throw new ModelError('bad_model', `invalid UNet spec ${JSON.stringify(spec)}`);
  }
}

/**
 * The FAIR UNet. Create with `createUNet` (fresh, seeded init) or `unetFromTorch`
 * (`src/model/weights.ts`, official checkpoints). Owns its variables: call `dispose()`.
 */
export class UNet {
  readonly spec: UNetSpec;
  /** PyTorch state_dict names -> variables (conv weights in TF layout [kh,kw,in,out]). */
  readonly params: Map<string, tf.Variable>;
  private readonly layout: ConvDef[];
  private readonly trainable: tf.Variable[];

  /**
   * Build from arrays keyed by state_dict name, already in TF layout (see `paramDefs`).
   * Prefer `createUNet` / `unetFromTorch`.
   */
  constructor(spec: UNetSpec, values: ReadonlyMap<string, Float32Array>) {
    validateSpec(spec);
    this.spec = { ...spec };
    this.layout = unetLayout(spec);
    const id = nextUNetId++;
    this.params = new Map();
    this.trainable = [];
    for (const p of paramDefs(spec)) {
      const data = values.get(p.name);
      const size = p.shape.reduce((a, b) => a * b, 1);
      if (!data || data.length !== size) {
        this.dispose();
        throw new ModelError('bad_weights', `parameter ${p.name}: expected ${size} values, got ${data?.length ?? 'none'}`);
      }
      // Variable names are global in the tfjs engine, so prefix them per instance.
      const t = tf.tensor(data, p.shape, 'float32');
      const v = tf.variable(t, p.trainable, `unet${id}/${p.name}`);
      t.dispose();
      this.params.set(p.name, v);
      if (p.trainable) this.trainable.push(v);
    }
  }

  /** Inference: BN in eval mode with the running statistics. The result is the caller's. */
  predict(x: tf.Tensor4D): tf.Tensor4D {
    return this.forward(x, false).y;
  }

  /**
   * Forward pass. `training = true` normalises with batch statistics (biased variance) and
   * returns them in `batchStats` for `updateRunningStats`; they are NOT applied here. All
   * returned tensors belong to the caller (inside `tf.variableGrads`, `tf.keep` the stats).
   *
   * @throws BadInputError when x is not NHWC with `spec.inChannels` channels and H, W divisible
   *   by 16, or (training) when a BN layer would see a single value per channel, which PyTorch
   *   rejects too.
   */
  forward(x: tf.Tensor4D, training: boolean): ForwardResult {
    this.checkInput(x, training);
    const names: string[] = [];
    const res = tf.tidy(() => {
      const means: tf.Tensor1D[] = [];
      const vars: tf.Tensor1D[] = [];
      const counts: number[] = [];
      let li = 0;
      // Inference frees every activation as soon as it is consumed (each stage in its own
      // tidy, skips disposed after their add): one outer tidy would keep all ~70 activations
      // alive, which at 256^2 x 8 and c >= 64 overflows the wasm backend's 4 GB heap. In
      // training the gradient tape keeps them anyway, so nothing changes there.
      const lean = !training;
      const stage = (fn: () => tf.Tensor4D): tf.Tensor4D => (lean ? tf.tidy(fn) : fn());
      const done = (...ts: tf.Tensor[]): void => {
        if (lean) tf.dispose(ts);
      };
      const block = (h: tf.Tensor4D): tf.Tensor4D => stage(() => {
        const d = this.layout[li++]!;
        const conv = tf.fused.conv2d({
          x: h,
          filter: this.params.get(`${d.conv}.weight`) as tf.Tensor4D,
          bias: this.params.get(`${d.conv}.bias`)!,
          strides: 1,
          pad: 'same',
        });
        if (!d.bn) return conv;
        const gamma = this.params.get(`${d.bn}.weight`) as tf.Tensor1D;
        const beta = this.params.get(`${d.bn}.bias`) as tf.Tensor1D;
        if (training) {
          const r = bnReluTraining(conv, gamma, beta);
          means.push(r.mean);
          vars.push(r.variance);
          names.push(d.bn);
          counts.push(conv.shape[0] * conv.shape[1] * conv.shape[2]);
          return r.y;
        }
        const mean = this.params.get(`${d.bn}.running_mean`) as tf.Tensor1D;
        const variance = this.params.get(`${d.bn}.running_var`) as tf.Tensor1D;
        return tf.relu(tf.batchNorm(conv, mean, variance, beta, gamma, BN_EPS));
      });
      const pool = (h: tf.Tensor4D): tf.Tensor4D => tf.maxPool(h, 2, 2, 'valid');
      const up = (h: tf.Tensor4D): tf.Tensor4D =>
        tf.image.resizeBilinear(h, [h.shape[1] * 2, h.shape[2] * 2], true);

      const b1 = stage(() => block(block(x)));
      const b2 = stage(() => block(block(pool(b1))));
      const b3 = stage(() => block(block(pool(b2))));
      const b4 = stage(() => block(block(pool(b3))));
      const b5 = stage(() => block(block(pool(b4))));
      const d1 = stage(() => block(block(tf.add(block(up(b5)), b4))));
      done(b5, b4);
      const d2 = stage(() => block(block(tf.add(block(up(d1)), b3))));
      done(d1, b3);
      const d3 = stage(() => block(block(tf.add(block(up(d2)), b2))));
      done(d2, b2);
      const d4 = stage(() => block(block(tf.add(block(up(d3)), b1))));
      done(d3, b1);
      const y = block(d4);
      done(d4);
      return { y, means, vars, counts };
    });
    if (!training) return { y: res.y };
    const batchStats = new Map<string, BatchStat>();
    names.forEach((name, i) => {
      batchStats.set(name, { mean: res.means[i]!, variance: res.vars[i]!, count: res.counts[i]! });
    });
    return { y: res.y, batchStats };
  }

  /**
   * Apply one PyTorch running-stat update per BN layer:
   * `running_mean = 0.9 running_mean + 0.1 mean`,
   * `running_var = 0.9 running_var + 0.1 variance * count / (count - 1)` (unbiased).
   * Layers missing from `stats` are left alone. Does not dispose `stats`.
   */
  updateRunningStats(stats: ReadonlyMap<string, BatchStat>): void {
    tf.tidy(() => {
      for (const [name, s] of stats) {
        const rm = this.params.get(`${name}.running_mean`);
        const rv = this.params.get(`${name}.running_var`);
        if (!rm || !rv) throw new ModelError('bad_model', `no BatchNorm layer ${name}`);
        if (s.count < 2) throw new BadInputError('bad_shape', `BatchNorm ${name}: need more than 1 value per channel, got ${s.count}`);
        const unbiased = tf.mul(s.variance, s.count / (s.count - 1));
        rm.assign(tf.add(tf.mul(rm, 1 - BN_MOMENTUM), tf.mul(s.mean, BN_MOMENTUM)));
        rv.assign(tf.add(tf.mul(rv, 1 - BN_MOMENTUM), tf.mul(unbiased, BN_MOMENTUM)));
      }
    });
  }

  /** The variables the optimiser updates (conv weight/bias, BN weight/bias), in layout order. */
  trainableVariables(): tf.Variable[] {
    return [...this.trainable];
  }

  /** Free every variable. The instance is unusable afterwards. */
  dispose(): void {
    for (const v of this.params.values()) v.dispose();
    this.params.clear();
    this.trainable.length = 0;
  }

  private checkInput(x: tf.Tensor, training: boolean): void {
    if (this.params.size === 0) throw new ModelError('disposed', 'UNet was disposed');
    if (x.rank !== 4) throw new BadInputError('bad_shape', `UNet input must be NHWC (rank 4), got shape [${x.shape.join(',')}]`);
    const [n, h, w, c] = x.shape as [number, number, number, number];
    if (c !== this.spec.inChannels) {
      throw new BadInputError('bad_shape', `UNet expects ${this.spec.inChannels} input channel(s), got ${c}`);
    }
    if (n < 1 || h < 16 || w < 16 || h % 16 !== 0 || w % 16 !== 0) {
      throw new BadInputError('bad_shape', `UNet input H and W must be positive multiples of 16 (4 poolings), got ${h}x${w}`);
    }
    if (training && (n * h * w) / 256 < 2) {
      throw new BadInputError('bad_shape', `training-mode BatchNorm at the bottleneck sees ${(n * h * w) / 256} value per channel; use a larger batch or image`);
    }
  }
}


/**
 * A fresh UNet with the reference initialisation (`train.py:16-22` + PyTorch defaults):
 * conv weights ~ N(0, 0.02), conv biases ~ U(+-1/sqrt(9 Cin)), BN gamma ~ N(1, 0.02), beta 0,
 * running mean 0, running var 1. Deterministic for a given `seed` on every backend (the numbers
 * come from a JS generator, not from torch, so they differ from a PyTorch run).
 *
 * @example
 * const unet = createUNet({ baseWidth: 32, inChannels: 1, outChannels: 3 }, 7);
 * const y = unet.predict(x); // x: [N, 256, 256, 1] -> y: [N, 256, 256, 3]
 */
export function createUNet(spec: UNetSpec, seed = 0): UNet {
  validateSpec(spec);
  return new UNet(spec, initUNetWeights(spec, seed));
}
