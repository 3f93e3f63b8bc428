/**
 * Issue 2's training check on the real network: a full FAIR training step (UNet forward in train
 * mode, MSE + (1 - SSIM), backward, Adam) on the wasm backend with fairline's registered kernels,
 * against the cpu backend on the same weights and data.
 */
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { useBackend } from '../src/model/tfjs/backend.js';
import { createUNet } from '../src/model/tfjs/unet.js';
import { unetFromTorch, unetToTorch } from '../src/model/weights.js';
import { Trainer } from '../src/model/tfjs/trainer.js';
import { createRng } from '../src/model/synthesis/rng.js';

const SPEC = { baseWidth: 4, inChannels: 1, outChannels: 3 };
const N = 2, S = 32;

function data(): { x: Float32Array; t: Float32Array } {
  const r = createRng('train-wasm');
  // A smooth target, like a photograph (noise targets make SSIM's variance terms cancel and
  // amplify float32 rounding differences between the backends' reduction orders).
  const t = new Float32Array(N * S * S * 3);
  for (let i = 0; i < t.length; i++) {
    const c = i % 3, p = Math.floor(i / 3) % (S * S), y = Math.floor(p / S), xx = p % S;
    t[i] = 0.5 + 0.3 * Math.sin((xx + 3 * c) / 5) * Math.cos((y - c) / 7) + 0.02 * r.uniform();
  }
  return { x: Float32Array.from({ length: N * S * S }, () => r.normal(0, 0.2)), t };
}

async function stepOn(backend: 'cpu' | 'wasm', weights: ReturnType<typeof unetToTorch>) {
  await useBackend(backend);
  const unet = unetFromTorch(weights, SPEC);
  const trainer = new Trainer(unet, { epochs: 1, lr: 1e-3 });
  const { x, t } = data();
  const xt = tf.tensor4d(x, [N, S, S, 1]);
  const tt = tf.tensor4d(t, [N, S, S, 3]);
  const g = trainer.computeGradients(xt, tt);
  const grads = new Map([...g.grads].map(([k, v]) => [k, v.dataSync().slice() as Float32Array]));
  tf.dispose([...g.grads.values()]);
  for (const s of g.stats.values()) tf.dispose([s.mean, s.variance]);
  const before = tf.memory().numTensors;
  const r = await trainer.step(xt, tt);
  assert.equal(tf.memory().numTensors, before, `${backend}: the step leaked tensors`);
  const after = unetToTorch(unet);
  tf.dispose([xt, tt]);
  trainer.dispose();
  unet.dispose();
  return { loss: g.loss, stepLoss: r.loss, grads, after };
}

describe('a full FAIR training step on wasm equals the cpu backend (c=4, 32 px, batch 2)', function () {
  this.timeout(120000);
  after(async () => {
    await useBackend('cpu');
  });

  it('loss, every gradient (1e-4 relative) and the Adam-updated weights agree', async () => {
    await useBackend('cpu');
    const init = createUNet(SPEC, 11);
    const weights = unetToTorch(init);
    init.dispose();
    const cpu = await stepOn('cpu', weights);
    const wasm = await stepOn('wasm', weights);
    assert.ok(Math.abs(wasm.loss - cpu.loss) <= 1e-5 * Math.abs(cpu.loss), `loss ${wasm.loss} vs ${cpu.loss}`);
    let globalMax = 0;
    for (const g of cpu.grads.values()) for (const v of g) globalMax = Math.max(globalMax, Math.abs(v));
    let worst = 0, worstName = '', globalDiff = 0;
    for (const [name, ref] of cpu.grads) {
      const got = wasm.grads.get(name)!;
      let maxRef = 0, maxDiff = 0;
      for (let i = 0; i < ref.length; i++) {
        maxRef = Math.max(maxRef, Math.abs(ref[i]!));
        maxDiff = Math.max(maxDiff, Math.abs(got[i]! - ref[i]!));
      }
      // Conv biases right before a BatchNorm have a true gradient of 0 (BN removes any constant):
      // both backends return rounding noise there, so check they are ~0 instead of comparing noise.
      const isConvBias = name.endsWith('.bias') && cpu.after[name.replace(/\.bias$/, '.weight')]?.shape.length === 4 && !name.includes('fin_out');
      if (isConvBias) {
        let maxGot = 0;
        for (const v of got) maxGot = Math.max(maxGot, Math.abs(v));
        assert.ok(maxRef <= 1e-4 * globalMax && maxGot <= 1e-4 * globalMax, `${name}: gradient should be ~0 (cpu ${maxRef}, wasm ${maxGot}, largest gradient ${globalMax})`);
        continue;
      }
      globalDiff = Math.max(globalDiff, maxDiff);
      const rel = maxDiff / maxRef;
      if (rel > worst) [worst, worstName] = [rel, name];
    }
    // Over all gradients: max|diff| / max|g| <= 1e-4 (measured 2026-11-28: ~1e-4 at most). Per
    // tensor the float32 reduction order of the two backends leaves up to ~2e-4 (measured) on
    // small BN gradients (the train-mode forward already differs by ~1e-5 relative).
    assert.ok(globalDiff / globalMax <= 1e-4, `gradients: max|diff|/max|g| = ${globalDiff / globalMax}`);
    assert.ok(worst <= 5e-4, `worst gradient ${worstName}: ${worst} relative`);
    // Adam's first step moves every weight by ~lr * sign(g): where g is ~0 the sign can differ
    // between backends, so compare the updated weights statistically: nearly all agree closely,
    // none differ by more than two steps.
    let total = 0, close = 0, maxDiff = 0;
    for (const [name, ref] of Object.entries(cpu.after)) {
      const got = wasm.after[name]!.data;
      for (let i = 0; i < ref.data.length; i++) {
        const d = Math.abs(got[i]! - ref.data[i]!);
        total++;
        if (d <= 1e-6 + 1e-5 * Math.abs(ref.data[i]!)) close++;
        maxDiff = Math.max(maxDiff, d);
      }
    }
    assert.ok(close / total >= 0.99, `only ${close}/${total} weights agree after the Adam step`);
    assert.ok(maxDiff <= 2 * 1e-3 + 1e-6, `a weight differs by ${maxDiff} after one step of lr 1e-3`);
    assert.ok(Math.abs(wasm.stepLoss - cpu.stepLoss) <= 1e-5 * Math.abs(cpu.stepLoss));
  });
});
