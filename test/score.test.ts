import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { expectArraysClose, expectClose, golden, goldenValue, nchwToNhwc } from './helpers.js';
import { colourTerm, labAB, meanFilter, msgms, scoreBatch, scoreToArrays } from '../src/model/tfjs/score.js';
import { DEFAULT_SCORING, type ScoringSpec } from '../src/model/types.js';
import { BadInputError, ConfigError } from '../src/errors.js';

function goldenImage(name: 'original' | 'restored'): tf.Tensor4D {
  const g = golden('score', name);
  const [n, c, h, w] = g.shape as [number, number, number, number];
  return tf.tensor4d(nchwToNhwc(g.data, n, c, h, w), [n, h, w, c]);
}

/** Reverse the channel axis (BGR <-> RGB). */
function reverseChannels(x: tf.Tensor4D): tf.Tensor4D {
  return tf.reverse(x, 3);
}

/** Deterministic random image in [0, 1], NHWC. */
function randomImage(n: number, s: number, seed: number): tf.Tensor4D {
  return tf.randomUniform([n, s, s, 3], 0, 1, 'float32', seed) as tf.Tensor4D;
}

describe('score (MSGMS + Lab colour, 21x21 zero-padded mean)', () => {
  let original: tf.Tensor4D;
  let restored: tf.Tensor4D;

  before(async () => {
    await tf.setBackend('cpu');
    original = goldenImage('original');
    restored = goldenImage('restored');
  });
  after(() => {
    original.dispose();
    restored.dispose();
  });

  describe('golden (official msgms.py / test.py / kornia 0.6.7)', () => {
    it('msgms matches within 1e-5', () => {
      const m = msgms(restored, original);
      assert.deepEqual(m.shape, [1, 256, 256, 1]);
      const s = expectArraysClose(m.dataSync(), golden('score', 'msgms').data, 1e-5, 'msgms');
      console.log(`      msgms max|diff| ${s.maxAbs.toExponential(2)}`);
      m.dispose();
    });

    it('colour term (Lab of BGR-as-RGB) matches within 1e-5', () => {
      const c = colourTerm(restored, original, 0.0003, 'bgr-as-rgb');
      const s = expectArraysClose(c.dataSync(), golden('score', 'color').data, 1e-5, 'color');
      console.log(`      color max|diff| ${s.maxAbs.toExponential(2)}`);
      c.dispose();
    });

    it('smoothed map and image score match within 1e-5', async () => {
      const { maps, scores } = await scoreToArrays(restored, original, DEFAULT_SCORING);
      const s = expectArraysClose(maps, golden('score', 'map').data, 1e-5, 'map');
      expectClose(scores[0]!, goldenValue('score', 'image_score'), 1e-5, 'image score');
      console.log(`      map max|diff| ${s.maxAbs.toExponential(2)}, score |diff| ${Math.abs(scores[0]! - goldenValue('score', 'image_score')).toExponential(2)}`);
    });
  });

  describe('colour modes', () => {
    it("'rgb' differs from the faithful mode and equals it on channel-reversed inputs", () => {
      tf.tidy(() => {
        const faithful = colourTerm(restored, original, 0.0003, 'bgr-as-rgb');
        const corrected = colourTerm(restored, original, 0.0003, 'rgb');
        const viaReverse = colourTerm(reverseChannels(restored), reverseChannels(original), 0.0003, 'bgr-as-rgb');
        const gap = tf.max(tf.abs(tf.sub(faithful, corrected))).dataSync()[0]!;
        assert.ok(gap > 1e-3, `modes should differ, max gap ${gap}`);
        expectArraysClose(corrected.dataSync(), viaReverse.dataSync(), 1e-6, 'rgb == bgr-as-rgb(reversed)');
      });
    });

    it('labAB gives the textbook a/b of sRGB primaries and neutral grey', () => {
      tf.tidy(() => {
        // One pixel each: pure red, pure green, mid grey, in BGR order read as RGB in 'rgb' mode.
        const bgr = tf.tensor4d([0, 0, 1, 0, 1, 0, 0.5, 0.5, 0.5], [1, 1, 3, 3]);
        const ab = labAB(bgr, 'rgb').dataSync();
        // CIE Lab (D65) of sRGB red is about (53.2, 80.1, 67.2), green about (87.7, -86.2, 83.2).
        expectClose(ab[0]!, 80.1, 0.3, 'a(red)');
        expectClose(ab[1]!, 67.2, 0.3, 'b(red)');
        expectClose(ab[2]!, -86.2, 0.3, 'a(green)');
        expectClose(ab[3]!, 83.2, 0.3, 'b(green)');
        // Grey is neutral up to kornia's rounded matrix (X row sums to 0.950456, not 0.95047).
        expectClose(ab[4]!, 0, 5e-3, 'a(grey)');
        expectClose(ab[5]!, 0, 5e-3, 'b(grey)');
      });
    });
  });

  describe('mean filter', () => {
    it('uses zero padding: a constant map keeps 121/441 at a corner and 1 inside', () => {
      tf.tidy(() => {
        const out = meanFilter(tf.ones([1, 32, 32, 1]) as tf.Tensor4D, 21).dataSync();
        expectClose(out[0]!, 121 / 441, 1e-6, 'corner');
        expectClose(out[16]!, 231 / 441, 1e-6, 'top edge: 11 x 21 of the window inside');
        const big = meanFilter(tf.ones([1, 48, 48, 1]) as tf.Tensor4D, 21).dataSync();
        expectClose(big[24 * 48 + 24]!, 1, 1e-6, 'interior');
      });
    });

    it('equals a direct 2-D zero-padded box sum on random data', () => {
      tf.tidy(() => {
        const S = 24, k = 5, r = 2;
        const x = tf.randomUniform([1, S, S, 1], 0, 1, 'float32', 5) as tf.Tensor4D;
        const xs = x.dataSync();
        const want = new Float32Array(S * S);
        for (let y = 0; y < S; y++)
          for (let i = 0; i < S; i++) {
            let acc = 0;
            for (let dy = -r; dy <= r; dy++)
              for (let dx = -r; dx <= r; dx++) {
                const yy = y + dy, xx = i + dx;
                if (yy >= 0 && yy < S && xx >= 0 && xx < S) acc += xs[yy * S + xx]!;
              }
            want[y * S + i] = acc / (k * k);
          }
        expectArraysClose(meanFilter(x, k).dataSync(), want, 1e-6, 'box');
      });
    });
  });

  describe('batching, hygiene and errors', () => {
    it('scores a batch exactly like the images one by one; identical images score ~0 MSGMS', () => {
      tf.tidy(() => {
        const a = randomImage(3, 32, 1), b = randomImage(3, 32, 2);
        const { map, scores } = scoreBatch(a, b, DEFAULT_SCORING);
        assert.deepEqual(map.shape, [3, 32, 32]);
        assert.deepEqual(scores.shape, [3]);
        const all = scores.dataSync();
        for (let i = 0; i < 3; i++) {
          const one = scoreBatch(a.slice(i, 1), b.slice(i, 1), DEFAULT_SCORING);
          expectClose(one.scores.dataSync()[0]!, all[i]!, 1e-6, `image ${i}`);
          expectArraysClose(one.map.dataSync(), map.slice(i, 1).dataSync(), 1e-6, `map ${i}`);
        }
        const same = msgms(a, a).dataSync();
        assert.ok(same.every((v) => Math.abs(v) < 1e-6));
        const { scores: selfScores } = scoreBatch(a, a, DEFAULT_SCORING);
        assert.ok(selfScores.dataSync().every((v) => Math.abs(v) < 1e-6));
        // A real difference scores higher than no difference.
        assert.ok(all.every((v) => v > 0.01));
      });
    });

    it('leaves tf.memory().numTensors unchanged after scoring 100 frames', async () => {
      const a = randomImage(1, 32, 3), b = randomImage(1, 32, 4);
      const spec: ScoringSpec = { ...DEFAULT_SCORING, colourMode: 'rgb' };
      await scoreToArrays(a, b, spec); // warm-up builds the cached kernels
      const before = tf.memory().numTensors;
      for (let i = 0; i < 100; i++) {
        const { map, scores } = scoreBatch(a, b, spec);
        map.dispose();
        scores.dispose();
      }
      for (let i = 0; i < 5; i++) await scoreToArrays(a, b, spec);
      assert.equal(tf.memory().numTensors, before);
      a.dispose();
      b.dispose();
    });

    it('rejects mismatched shapes, wrong channel counts and bad specs with typed errors', () => {
      tf.tidy(() => {
        const a = tf.zeros([1, 16, 16, 3]) as tf.Tensor4D;
        const b = tf.zeros([1, 16, 8, 3]) as tf.Tensor4D;
        const g = tf.zeros([1, 16, 16, 1]) as tf.Tensor4D;
        assert.throws(() => scoreBatch(a, b), BadInputError);
        assert.throws(() => scoreBatch(g, g), BadInputError);
        assert.throws(() => scoreBatch(a, a, { ...DEFAULT_SCORING, smoothKernel: 20 }), ConfigError);
        assert.throws(() => scoreBatch(a, a, { ...DEFAULT_SCORING, colourMode: 'lab' as never }), ConfigError);
        assert.throws(() => meanFilter(a, 21), BadInputError);
      });
    });
  });
});
