import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { BadInputError } from '../src/errors.js';
import { useBackend } from '../src/model/tfjs/backend.js';
import { fairLoss, gaussian1d, ssim, ssimRange } from '../src/model/tfjs/loss.js';
import { expectClose, golden, goldenValue, nchwToNhwc } from './helpers.js';

function goldenImage(caseName: string, entry: string): tf.Tensor4D {
  const g = golden(caseName, entry);
  const [n, c, h, w] = g.shape as [number, number, number, number];
  return tf.tensor4d(nchwToNhwc(g.data, n, c, h, w), [n, h, w, c]);
}

/** Straight float64 transcription of DRAEM's ssim() on NHWC arrays (zero padding 5). */
function ssimReference(a: Float32Array, b: Float32Array, n: number, h: number, w: number, c: number, L: number): number {
  const g = gaussian1d(11, 1.5);
  const at = (arr: Float32Array, i: number, y: number, x: number, ch: number): number =>
    y < 0 || y >= h || x < 0 || x >= w ? 0 : arr[((i * h + y) * w + x) * c + ch]!;
  const c1 = (0.01 * L) ** 2, c2 = (0.03 * L) ** 2;
  let sum = 0;
  for (let i = 0; i < n; i++)
    for (let ch = 0; ch < c; ch++)
      for (let y = 0; y < h; y++)
        for (let x = 0; x < w; x++) {
          let m1 = 0, m2 = 0, e11 = 0, e22 = 0, e12 = 0;
          for (let dy = -5; dy <= 5; dy++)
            for (let dx = -5; dx <= 5; dx++) {
              const k = g[dy + 5]! * g[dx + 5]!;
              const p = at(a, i, y + dy, x + dx, ch), q = at(b, i, y + dy, x + dx, ch);
              m1 += k * p; m2 += k * q; e11 += k * p * p; e22 += k * q * q; e12 += k * p * q;
            }
          const s1 = e11 - m1 * m1, s2 = e22 - m2 * m2, s12 = e12 - m1 * m2;
          sum += ((2 * m1 * m2 + c1) * (2 * s12 + c2)) / ((m1 * m1 + m2 * m2 + c1) * (s1 + s2 + c2));
        }
  return sum / (n * c * h * w);
}

describe('loss: MSE + (1 - SSIM) (loss.py / train.py)', () => {
  before(async () => {
    await tf.setBackend('cpu');
  });

  // The golden SSIM values are float32 PyTorch results. Their own float32 rounding error is
  // about 3e-5 (vs a float64 evaluation of the same formula: 0.0342737 / 0.0491691), because
  // sigma^2 = E[x^2] - mu^2 cancels; two float32 implementations therefore agree to ~1e-5
  // absolute, not 1e-5 relative. A wrong L or window moves the value by > 1e-3.
  const SSIM_ATOL = 2e-5;

  it('matches the golden loss with L = 2 (prediction dips below -0.5)', () => {
    const pred = goldenImage('score', 'restored');
    const target = goldenImage('score', 'original');
    const l = fairLoss(pred, target);
    try {
      const mn = pred.min();
      assert.ok(mn.dataSync()[0]! < -0.5, 'the case really exercises L = 2');
      mn.dispose();
      const mse = l.mse.dataSync()[0]!, sl = l.ssimLoss.dataSync()[0]!;
      expectClose(mse, goldenValue('loss', 'mse_restored_vs_original'), 1e-5, 'mse', true);
      expectClose(sl, goldenValue('loss', 'ssim_loss_restored_vs_original'), SSIM_ATOL, 'ssim loss');
      expectClose(l.loss.dataSync()[0]!, mse + sl, 1e-6, 'loss = mse + ssim loss');
      // With L forced to 1 the value is far outside the tolerance: the range detection matters.
      const wrong = ssim(pred, target, 1);
      assert.ok(Math.abs(1 - wrong.dataSync()[0]! - sl) > 1e-3);
      wrong.dispose();
    } finally {
      tf.dispose([pred, target, l.loss, l.mse, l.ssimLoss]);
    }
  });

  it('matches the golden loss with L = 1 (clamped prediction)', () => {
    const pred = goldenImage('loss', 'restored_clamped');
    const target = goldenImage('score', 'original');
    const l = fairLoss(pred, target);
    try {
      expectClose(l.mse.dataSync()[0]!, goldenValue('loss', 'mse_clamped_vs_original'), 1e-5, 'mse', true);
      const sl = l.ssimLoss.dataSync()[0]!;
      expectClose(sl, goldenValue('loss', 'ssim_loss_clamped_vs_original'), SSIM_ATOL, 'ssim loss');
      const wrong = ssim(pred, target, 2);
      assert.ok(Math.abs(1 - wrong.dataSync()[0]! - sl) > 1e-3);
      wrong.dispose();
    } finally {
      tf.dispose([pred, target, l.loss, l.mse, l.ssimLoss]);
    }
  });

  it('matches both golden cases on the wasm backend (float32 sequential sums there)', async function () {
    this.timeout(60_000);
    await useBackend('wasm');
    const target = goldenImage('score', 'original');
    const preds = [goldenImage('score', 'restored'), goldenImage('loss', 'restored_clamped')];
    try {
      assert.equal(tf.getBackend(), 'wasm');
      for (const [i, [m, s]] of [['mse_restored_vs_original', 'ssim_loss_restored_vs_original'], ['mse_clamped_vs_original', 'ssim_loss_clamped_vs_original']].entries()) {
        const l = fairLoss(preds[i]!, target);
        expectClose(l.mse.dataSync()[0]!, goldenValue('loss', m!), 1e-5, `wasm ${m}`, true);
        expectClose(l.ssimLoss.dataSync()[0]!, goldenValue('loss', s!), SSIM_ATOL, `wasm ${s}`);
        tf.dispose([l.loss, l.mse, l.ssimLoss]);
      }
    } finally {
      tf.dispose([target, ...preds]);
      await useBackend('cpu');
    }
  });

  it('equals a float64 transcription of DRAEM ssim() (zero padding, per channel, full mean)', () => {
    const [n, h, w, c] = [2, 13, 12, 3];
    const a = tf.randomUniform([n, h, w, c], -0.7, 1, 'float32', 11) as tf.Tensor4D;
    const b = tf.randomUniform([n, h, w, c], 0, 1, 'float32', 12) as tf.Tensor4D;
    try {
      const ad = a.dataSync() as Float32Array, bd = b.dataSync() as Float32Array;
      for (const L of [1, 2]) {
        const s = ssim(a, b, L);
        expectClose(s.dataSync()[0]!, ssimReference(ad, bd, n, h, w, c, L), 2e-6, `ssim L=${L}`);
        s.dispose();
      }
      // Without an explicit range, L comes from the prediction (min < -0.5 here -> 2).
      const auto = ssim(a, b);
      expectClose(auto.dataSync()[0]!, ssimReference(ad, bd, n, h, w, c, 2), 2e-6, 'ssim auto L');
      auto.dispose();
    } finally {
      tf.dispose([a, b]);
    }
  });

  it('derives L from the prediction as DRAEM does', () => {
    assert.equal(ssimRange(1, 0), 1);
    assert.equal(ssimRange(0.9, -0.5), 1);
    assert.equal(ssimRange(0.9, -0.51), 2);
    assert.equal(ssimRange(128, 0), 1);
    assert.equal(ssimRange(129, 0), 255);
    assert.equal(ssimRange(200, -3), 256);
  });

  it('uses a normalised 11-tap Gaussian with sigma 1.5', () => {
    const g = gaussian1d();
    assert.equal(g.length, 11);
    expectClose(g.reduce((x, y) => x + y, 0), 1, 1e-12, 'sum');
    expectClose(g[4]! / g[5]!, Math.exp(-1 / 4.5), 1e-12, 'ratio of neighbours');
    for (let i = 0; i < 5; i++) assert.equal(g[i], g[10 - i]);
  });

  it('is zero for identical images, differentiable, shape-checked and leak-free', () => {
    const a = tf.randomUniform([1, 16, 16, 3], 0, 1, 'float32', 3) as tf.Tensor4D;
    const b = tf.randomUniform([1, 16, 16, 3], 0, 1, 'float32', 4) as tf.Tensor4D;
    try {
      const same = fairLoss(a, a);
      expectClose(same.loss.dataSync()[0]!, 0, 1e-6, 'loss of identical images');
      tf.dispose([same.loss, same.mse, same.ssimLoss]);
      const g = tf.grad((p: tf.Tensor) => fairLoss(p as tf.Tensor4D, b).loss)(a);
      const gd = g.dataSync();
      assert.ok(gd.every(Number.isFinite) && gd.some((v) => Math.abs(v) > 1e-6), 'finite, non-zero gradient');
      // A small step against the gradient lowers the loss.
      const l0 = fairLoss(a, b), stepped = tf.sub(a, tf.mul(g, 0.5)) as tf.Tensor4D, l1 = fairLoss(stepped, b);
      assert.ok(l1.loss.dataSync()[0]! < l0.loss.dataSync()[0]!);
      tf.dispose([g, stepped, l0.loss, l0.mse, l0.ssimLoss, l1.loss, l1.mse, l1.ssimLoss]);
      const gray = tf.zeros([1, 16, 16, 1]) as tf.Tensor4D;
      assert.throws(() => fairLoss(a, gray), BadInputError);
      gray.dispose();
      const before = tf.memory().numTensors;
      for (let i = 0; i < 5; i++) {
        const l = fairLoss(a, b);
        tf.dispose([l.loss, l.mse, l.ssimLoss]);
      }
      assert.equal(tf.memory().numTensors, before);
    } finally {
      tf.dispose([a, b]);
    }
  });
});
