/**
 * Typed-array scoring (src/model/score-fast.ts, its WebAssembly kernel src/model/score-kernel/)
 * vs the official golden map and score, and vs the tensor path (src/model/tfjs/score.ts) on
 * random, unclamped restorations and other settings.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs';
import { BadInputError, ConfigError } from '../src/errors.js';
import { scoreArrays } from '../src/model/score-fast.js';
import { SCORE_KERNEL_SOURCE_SHA256 } from '../src/model/score-kernel/module.js';
import { scoreBatch } from '../src/model/tfjs/score.js';
import { DEFAULT_SCORING, type ScoringSpec } from '../src/model/types.js';
import { expectArraysClose, golden, goldenValue, nchwToNhwc } from './helpers.js';

function pair(n: number, S: number, seed: number): { y: Float32Array; x: Float32Array } {
  const x = new Float32Array(n * S * S * 3), y = new Float32Array(n * S * S * 3);
  let s = seed >>> 0;
  const rnd = (): number => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  for (let i = 0; i < x.length; i++) {
    x[i] = 0.5 + 0.45 * Math.sin(i * 0.011 + seed) * Math.cos(i * 0.0009);
    // Unclamped, as a network output: below 0 and above 1 (both colour branches, table ends).
    y[i] = x[i]! + 0.4 * (rnd() - 0.5) + (i % 97 === 0 ? 0.9 : 0) - (i % 89 === 0 ? 0.8 : 0);
  }
  return { y, x };
}

function tensorPath(y: Float32Array, x: Float32Array, n: number, S: number, spec: ScoringSpec): { maps: Float32Array; scores: Float32Array } {
  const yt = tf.tensor4d(y, [n, S, S, 3]), xt = tf.tensor4d(x, [n, S, S, 3]);
  const { map, scores } = scoreBatch(yt, xt, spec);
  const out = { maps: map.dataSync() as Float32Array, scores: scores.dataSync() as Float32Array };
  tf.dispose([yt, xt, map, scores]);
  return out;
}

describe('score-fast (typed-array scoring)', function () {
  this.timeout(60000);
  before(async () => {
    await tf.setBackend('cpu');
  });

  it('equals the official map (1e-5) and image score (1e-5 relative) on the golden case', () => {
    const y = nchwToNhwc(golden('score', 'restored').data, 1, 3, 256, 256);
    const x = nchwToNhwc(golden('score', 'original').data, 1, 3, 256, 256);
    const { maps, scores } = scoreArrays(y, x, 1, 256, DEFAULT_SCORING);
    const st = expectArraysClose(maps, golden('score', 'map').data, 1e-5, 'map');
    const want = goldenValue('score', 'image_score');
    const rel = Math.abs(scores[0]! - want) / want;
    assert.ok(rel < 1e-5, `score ${scores[0]} vs ${want}`);
    // Speed on this machine (informative; the bench measures it on a quiet one).
    const t0 = performance.now();
    for (let i = 0; i < 5; i++) scoreArrays(y, x, 1, 256, DEFAULT_SCORING);
    console.log(`      map max|diff| ${st.maxAbs.toExponential(2)}, score rel ${rel.toExponential(2)}; ${((performance.now() - t0) / 5).toFixed(1)} ms per 256x256 frame`);
  });

  it('equals the tensor path on unclamped random batches and other settings', () => {
    const cases: [string, ScoringSpec, number][] = [
      ['default', DEFAULT_SCORING, 64],
      ['rgb, 3 scales, k=7', { ...DEFAULT_SCORING, colourMode: 'rgb', msgmsScales: 3, smoothKernel: 7 }, 32],
      ['no colour, 1 scale, k=1', { ...DEFAULT_SCORING, colourWeight: 0, msgmsScales: 1, smoothKernel: 1 }, 32],
      ['k larger than the image', { ...DEFAULT_SCORING, smoothKernel: 41 }, 16],
    ];
    for (const [what, spec, S] of cases) {
      const { y, x } = pair(3, S, S + spec.smoothKernel);
      const fast = scoreArrays(y, x, 3, S, spec);
      const ref = tensorPath(y, x, 3, S, spec);
      expectArraysClose(fast.maps, ref.maps, 1e-5, `${what} maps`);
      for (let i = 0; i < 3; i++) assert.ok(Math.abs(fast.scores[i]! - ref.scores[i]!) <= 1e-5 * Math.abs(ref.scores[i]!), `${what} score ${i}`);
    }
  });

  it('equals the tensor path at the table edges and on a size that is not a power of two', () => {
    // Restored values on and around every branch point of the fast paths: negative (linear
    // sRGB branch), the 0.04045 knee, the end of the linearisation table (1.5) and far beyond it
    // (Math.pow, then XYZ >= 2: Math.cbrt), dark pixels (XYZ around Lab's 0.008856 knee);
    // originals that are not multiples of 1/255.
    const edges = [-0.7, -1e-3, 0, 0.04045, 0.0405, 0.08, 0.1, 0.5, 1, 1.4999, 1.5, 1.5001, 1.9, 3, 7.5];
    const S = 32, n = 2;
    const y = new Float32Array(n * S * S * 3), x = new Float32Array(n * S * S * 3);
    let s = 7;
    const rnd = (): number => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
    for (let i = 0; i < y.length; i++) {
      x[i] = i % 5 === 0 ? 0.02 * rnd() : rnd();
      // Blocks of equal values (flat: zero gradients) and single outliers.
      y[i] = (i >> 6) % 3 === 0 ? edges[(i >> 6) % edges.length]! : edges[Math.floor(rnd() * edges.length)]!;
    }
    for (const spec of [DEFAULT_SCORING, { ...DEFAULT_SCORING, colourMode: 'rgb' as const, smoothKernel: 3 }]) {
      const fast = scoreArrays(y, x, n, S, spec);
      const ref = tensorPath(y, x, n, S, spec);
      // Restorations of 3 and 7.5 make map values up to ~60, where the float32 tensor path's
      // own rounding is ~4e-6 per op: 1e-5 relative above 1, absolute below.
      let worst = 0, at = 0;
      for (let i = 0; i < ref.maps.length; i++) {
        const d = Math.abs(fast.maps[i]! - ref.maps[i]!) / Math.max(1, Math.abs(ref.maps[i]!));
        if (!(d <= worst)) { worst = d; at = i; }
      }
      assert.ok(worst <= 1e-5, `edges ${spec.colourMode} maps: ${fast.maps[at]} vs ${ref.maps[at]} at ${at}`);
      for (let i = 0; i < n; i++) assert.ok(Math.abs(fast.scores[i]! - ref.scores[i]!) <= 1e-5 * Math.abs(ref.scores[i]!), `edges score ${i}`);
    }
    // 200 x 200: coarse scale 100, an odd number of pooled floats per row pair.
    const W = 200;
    const big = pair(1, W, 3);
    const fast = scoreArrays(big.y, big.x, 1, W, DEFAULT_SCORING);
    const ref = tensorPath(big.y, big.x, 1, W, DEFAULT_SCORING);
    expectArraysClose(fast.maps, ref.maps, 1e-5, '200 px maps');
    assert.ok(Math.abs(fast.scores[0]! - ref.scores[0]!) <= 1e-5 * Math.abs(ref.scores[0]!), '200 px score');
  });

  it('runs the kernel built from the committed source, on sizes that grow its memory', () => {
    // module.ts is generated by scripts/build-wasm.sh: a score.c edited without a rebuild fails here.
    const sha = createHash('sha256').update(readFileSync(new URL('../src/model/score-kernel/score.c', import.meta.url))).digest('hex');
    assert.equal(sha, SCORE_KERNEL_SOURCE_SHA256, 'src/model/score-kernel/score.c changed: run scripts/build-wasm.sh');
    // A small size, a large one (the kernel's memory grows), the small one again: same result.
    const small = pair(2, 16, 5), large = pair(1, 512, 6);
    const before = scoreArrays(small.y, small.x, 2, 16);
    const big = scoreArrays(large.y, large.x, 1, 512);
    assert.ok(big.scores[0]! > 0 && Number.isFinite(big.scores[0]!), `512 px score ${big.scores[0]}`);
    const after = scoreArrays(small.y, small.x, 2, 16);
    assert.deepEqual(after.maps, before.maps);
    assert.deepEqual(after.scores, before.scores);
    // Outputs are the caller's own arrays, not views of the kernel's memory.
    assert.notEqual(after.maps.buffer, before.maps.buffer);
    after.maps.fill(0);
    assert.deepEqual(scoreArrays(small.y, small.x, 2, 16).maps, before.maps);
  });

  it('rejects mismatched buffers and bad settings with typed errors', () => {
    const { y, x } = pair(1, 16, 1);
    assert.throws(() => scoreArrays(y, x.subarray(1), 1, 16), BadInputError);
    assert.throws(() => scoreArrays(y, x, 2, 16), BadInputError);
    assert.throws(() => scoreArrays(y, x, 1, 16, { ...DEFAULT_SCORING, smoothKernel: 4 }), ConfigError);
    assert.throws(() => scoreArrays(y, x, 1, 16, { ...DEFAULT_SCORING, msgmsScales: 6 }), BadInputError);
  });
});
