import assert from 'node:assert/strict';
import { BadInputError } from '../src/errors.js';
import { calibrateF1, calibrateNormalOnly, nextUp, quantileSorted, rejectRate, scoreStats } from '../src/thresholds.js';

/** Seeded uniform RNG (mulberry32) and Box-Muller normals, so "synthetic" scores are reproducible. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
function normals(n: number, mean: number, sd: number, seed: number): number[] {
  const r = rng(seed);
  return Array.from({ length: n }, () => mean + sd * Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r()));
}

describe('thresholds', () => {
  describe('calibrateNormalOnly', () => {
    it('meets the target false-reject rate on the calibration set, for many rates and sizes', () => {
      for (const [n, seed] of [[50, 1], [200, 2], [1000, 3], [37, 4]] as const) {
        const good = normals(n, 0.2, 0.03, seed);
        for (const target of [0, 0.001, 0.01, 0.05, 0.1, 0.29, 0.5]) {
          const c = calibrateNormalOnly(good, target);
          const k = Math.floor(target * n + 1e-9);
          assert.ok(c.falseRejectRate <= target, `n=${n} target=${target}: ${c.falseRejectRate}`);
          assert.equal(rejectRate(good, c.threshold), c.falseRejectRate);
          // Tight: exactly k rejected (continuous scores have no ties), so no better threshold is wasted.
          assert.equal(c.rejected, k, `n=${n} target=${target}`);
        }
      }
    });

    it('generalises: on fresh normal scores from the same distribution the rate is near the target', () => {
      const cal = calibrateNormalOnly(normals(2000, 0.2, 0.03, 11), 0.05);
      const fresh = normals(20000, 0.2, 0.03, 12);
      const rate = rejectRate(fresh, cal.threshold);
      // Binomial sd of the calibration quantile with n=2000 is ~0.5%; allow 3 sd.
      assert.ok(Math.abs(rate - 0.05) < 0.015, `fresh false-reject rate ${rate}`);
    });

    it('places the threshold between order statistics, and just above ties', () => {
      // sorted 1..10, target 0.2 -> k = 2: 8 must pass, 9 may be rejected -> midpoint 8.5
      assert.equal(calibrateNormalOnly([5, 3, 9, 1, 10, 2, 8, 4, 7, 6], 0.2).threshold, 8.5);
      // k = 0: above the maximum, nothing rejected
      const c0 = calibrateNormalOnly([1, 2, 3], 0.1);
      assert.equal(c0.threshold, nextUp(3));
      assert.equal(c0.rejected, 0);
      // ties at the cut: [1, 2, 2, 2] with target 0.5 (k = 2) cannot reject only two of the 2s -> reject none
      const ct = calibrateNormalOnly([1, 2, 2, 2], 0.5);
      assert.ok(ct.threshold > 2);
      assert.equal(ct.falseRejectRate, 0);
      // score == threshold is a reject
      assert.equal(rejectRate([8.5], 8.5), 1);
    });

    it('rejects bad input with typed errors', () => {
      assert.throws(() => calibrateNormalOnly([], 0.01), (e: unknown) => e instanceof BadInputError && e.code === 'empty_scores');
      assert.throws(() => calibrateNormalOnly([0.1, Number.NaN], 0.01), (e: unknown) => e instanceof BadInputError && e.code === 'bad_score');
      assert.throws(() => calibrateNormalOnly([0.1], 1), (e: unknown) => e instanceof BadInputError && e.code === 'bad_option');
      assert.throws(() => calibrateNormalOnly([0.1], -0.1), BadInputError);
    });
  });

  describe('calibrateF1', () => {
    it('finds the F1-optimal threshold (checked against brute force over all cuts)', () => {
      const r = rng(5);
      for (let trial = 0; trial < 20; trial++) {
        const n = 20 + Math.floor(r() * 80);
        const labels = Array.from({ length: n }, (_, i) => (i === 0 ? 1 : i === 1 ? 0 : r() < 0.3 ? 1 : 0));
        const scores = labels.map((l) => Math.round((r() + 0.5 * l) * 20) / 20); // with ties
        let best = -1;
        for (const t of scores) {
          let tp = 0, fp = 0, fn = 0;
          scores.forEach((s, i) => (s >= t ? (labels[i] ? tp++ : fp++) : labels[i] ? fn++ : 0));
          best = Math.max(best, (2 * tp) / (2 * tp + fp + fn));
        }
        const c = calibrateF1(scores, labels);
        assert.ok(Math.abs(c.f1 - best) < 1e-12, `trial ${trial}: ${c.f1} vs ${best}`);
        let tp = 0, fp = 0;
        scores.forEach((s, i) => s >= c.threshold && (labels[i] ? tp++ : fp++));
        assert.equal(c.precision, tp / (tp + fp));
        assert.equal(c.recall, tp / labels.filter(Boolean).length);
      }
    });

    it('separable data gives F1 = 1 at the lowest defective score', () => {
      const c = calibrateF1([0.1, 0.2, 0.3, 0.7, 0.9], [0, 0, 0, 1, 1]);
      assert.deepEqual([c.threshold, c.f1, c.falseRejectRate], [0.7, 1, 0]);
    });

    it('needs a defective sample and matching lengths', () => {
      assert.throws(() => calibrateF1([0.1, 0.2], [0, 0]), (e: unknown) => e instanceof BadInputError && e.code === 'single_class');
      assert.throws(() => calibrateF1([0.1, 0.2], [1]), (e: unknown) => e instanceof BadInputError && e.code === 'length_mismatch');
    });
  });

  describe('stats', () => {
    it('matches hand-computed mean, sample std and NumPy linear quantiles', () => {
      const s = scoreStats([4, 1, 3, 2, 5]);
      assert.equal(s.n, 5);
      assert.equal(s.mean, 3);
      assert.equal(s.std, Math.sqrt(2.5));
      assert.deepEqual([s.min, s.max, s.p50], [1, 5, 3]);
      assert.ok(Math.abs(s.p90 - 4.6) < 1e-12); // np.quantile([1..5], 0.9) = 4.6
      assert.equal(quantileSorted([1, 2, 3, 4], 1 / 3), 2);
      assert.equal(scoreStats([7]).std, 0);
    });
  });

  it('nextUp is the next float64', () => {
    assert.ok(nextUp(1) > 1 && nextUp(1) - 1 === Number.EPSILON);
    assert.ok(nextUp(-1) > -1 && nextUp(-1) < -1 + 1e-15);
    assert.equal(nextUp(0), Number.MIN_VALUE);
  });
});
