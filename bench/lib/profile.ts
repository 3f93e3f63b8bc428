/**
 * Kernel-level profile of one UNet training step (forward + backward + Adam) with `tf.profile`:
 * per kernel name, total wall time and share of the step. On wasm the backend timer is wall time
 * around each kernel call, and composite fairline kernels (src/model/tfjs/wasm/kernels.ts) count as
 * one kernel; time between kernels (JS glue, tape bookkeeping) shows up as `unaccounted`.
 * Rows named `*__op` or `unnamed scope` are custom-gradient wrappers whose inner kernels are
 * listed too (see `isWrapper`).
 */
import * as tf from '@tensorflow/tfjs';
import { createUNet } from '../../src/model/tfjs/unet.js';
import { Trainer } from '../../src/model/tfjs/trainer.js';

/**
 * `fusedConv2d__op` and friends, and `unnamed scope` (a `tf.customGrad` op such as the UNet's
 * fused BN + ReLU), wrap kernels that are listed themselves: show them, count their time once.
 */
function isWrapper(name: string): boolean {
  return name.endsWith('__op') || name === 'unnamed scope';
}

export interface KernelRow {
  name: string;
  calls: number;
  ms: number;
  share: number;
}

export interface StepProfile {
  config: { width: number; size: number; batch: number; microBatch: number };
  stepMs: number;
  kernelMs: number;
  kernels: KernelRow[];
}

/**
 * Profile one training step after one warm-up step (kernels compile / allocate on first use).
 *
 * @example
 * const p = await profileTrainingStep({ width: 32, size: 256, batch: 2, microBatch: 2 });
 * console.log(formatProfile(p, 15));
 */
export async function profileTrainingStep(cfg: { width: number; size: number; batch: number; microBatch?: number; seed?: number }): Promise<StepProfile> {
  const microBatch = cfg.microBatch ?? cfg.batch;
  const unet = createUNet({ baseWidth: cfg.width, inChannels: 1, outChannels: 3 }, cfg.seed ?? 1);
  const trainer = new Trainer(unet, { epochs: 10, microBatch });
  const x = tf.randomUniform([cfg.batch, cfg.size, cfg.size, 1], -0.2, 0.2, 'float32', 1) as tf.Tensor4D;
  const target = tf.randomUniform([cfg.batch, cfg.size, cfg.size, 3], 0, 1, 'float32', 2) as tf.Tensor4D;
  try {
    await trainer.step(x, target);
    let stepMs = 0;
    const info = await tf.profile(async () => {
      const t0 = performance.now();
      await trainer.step(x, target);
      stepMs = performance.now() - t0;
    });
    const by = new Map<string, { calls: number; ms: number }>();
    let total = 0;
    for (const k of info.kernels) {
      const ms = Number(await k.kernelTimeMs) || 0;
      if (!isWrapper(k.name)) total += ms;
      const r = by.get(k.name) ?? { calls: 0, ms: 0 };
      r.calls += 1;
      r.ms += ms;
      by.set(k.name, r);
    }
    const kernels = [...by].map(([name, r]) => ({ name, calls: r.calls, ms: r.ms, share: r.ms / stepMs }));
    kernels.push({ name: '(unaccounted: JS between kernels)', calls: 0, ms: Math.max(0, stepMs - total), share: Math.max(0, stepMs - total) / stepMs });
    kernels.sort((a, b) => b.ms - a.ms);
    return { config: { width: cfg.width, size: cfg.size, batch: cfg.batch, microBatch }, stepMs, kernelMs: total, kernels };
  } finally {
    tf.dispose([x, target]);
    trainer.dispose();
    unet.dispose();
  }
}

/** Markdown table of the top kernels. */
export function formatProfile(p: StepProfile, top = 15): string {
  const c = p.config;
  const lines = [
    `training step c=${c.width} ${c.size}^2 batch ${c.batch} (micro-batch ${c.microBatch}): ${p.stepMs.toFixed(0)} ms, ` +
      `${((c.batch * 1000) / p.stepMs).toFixed(2)} img/s; kernels account for ${p.kernelMs.toFixed(0)} ms`,
    '',
    '| kernel | calls | ms | share |',
    '|---|---:|---:|---:|',
  ];
  for (const k of p.kernels.slice(0, top)) lines.push(`| ${k.name} | ${k.calls} | ${k.ms.toFixed(1)} | ${(100 * k.share).toFixed(1)}% |`);
  return lines.join('\n');
}
