import assert from 'node:assert/strict';
import { expectClose, golden, goldenValue } from './helpers.js';
import { PixelMetrics, aupro, f1Max, imageAuroc, label8, pixelAuroc, proCurve, rocCurve, sortF32, tprAtFpr, trapezoid } from '../src/eval/metrics.js';
import { BadInputError, ConfigError } from '../src/errors.js';
import { createRng } from '../src/model/synthesis/rng.js';

/** Seeded uniform [0, 1) generator (the project's RNG). */
const rng = (seed: number): (() => number) => {
  const g = createRng(seed);
  return () => g.uniform();
};


function bruteAuc(scores: ArrayLike<number>, labels: ArrayLike<number>): number {
  let acc = 0, np = 0, nn = 0;
  for (let i = 0; i < scores.length; i++) if (labels[i]) np++;
  else nn++;
  for (let i = 0; i < scores.length; i++) {
    if (!labels[i]) continue;
    for (let j = 0; j < scores.length; j++) {
      if (labels[j]) continue;
      acc += scores[i]! > scores[j]! ? 1 : scores[i] === scores[j] ? 0.5 : 0;
    }
  }
  return acc / np / nn;
}

function bruteCounts(scores: ArrayLike<number>, labels: ArrayLike<number>, t: number): { tp: number; fp: number; fn: number; tn: number } {
  let tp = 0, fp = 0, fn = 0, tn = 0;
  for (let i = 0; i < scores.length; i++) {
    const r = scores[i]! >= t;
    if (labels[i]) {
      if (r) tp++;
      else fn++;
    } else if (r) fp++;
    else tn++;
  }
  return { tp, fp, fn, tn };
}

describe('metrics', () => {
  describe('golden (official evaluation)', () => {
    const maps = golden('metrics', 'anomaly_maps');
    const masks = golden('metrics', 'masks');
    const labels = golden('metrics', 'labels');
    const [n, h, w] = maps.shape as [number, number, number];
    const perImage = Array.from({ length: n }, (_, i) => maps.data.subarray(i * h * w, (i + 1) * h * w));
    const maskImages = Array.from({ length: n }, (_, i) => masks.data.subarray(i * h * w, (i + 1) * h * w));

    it('image AUROC of max(map) matches sklearn', () => {
      const scores = perImage.map((m) => m.reduce((a, b) => Math.max(a, b), -Infinity));
      expectClose(imageAuroc(scores, labels.data), goldenValue('metrics', 'image_auroc'), 1e-6, 'image_auroc');
    });

    it('pixel AUROC (GT = mask exactly 1) matches sklearn, for both layouts', () => {
      const want = goldenValue('metrics', 'pixel_auroc');
      expectClose(pixelAuroc(perImage, maskImages), want, 1e-6, 'pixel_auroc list');
      expectClose(pixelAuroc(maps.data, masks.data, { width: w, height: h }), want, 1e-6, 'pixel_auroc flat');
      const binar = masks.data.map((v) => (v > 0 ? 1 : 0));
      assert.ok(Math.abs(pixelAuroc(maps.data, binar, { width: w }) - want) > 1e-4);
    });

    it('AUPRO@0.3 (8-connected, 5000 thresholds) matches the official code', () => {
      const want = goldenValue('metrics', 'aupro_0.3');
      expectClose(aupro(perImage, maskImages, { fprLimit: 0.3, thresholds: 5000 }), want, 1e-6, 'aupro list');
      expectClose(aupro(maps.data, masks.data, { width: w, height: h }), want, 1e-6, 'aupro flat');
      const m255 = maskImages.map((m) => m.map((v) => Math.round(v * 255)));
      expectClose(aupro(perImage, m255, { maskMax: 255 }), want, 1e-6, 'aupro maskMax 255');
    });
  });

  describe('AUROC', () => {
    it('equals the pairwise count on random data with many ties', () => {
      const r = rng(7);
      for (let trial = 0; trial < 20; trial++) {
        const n = 20 + Math.floor(r() * 200);
        const scores = Float32Array.from({ length: n }, () => Math.floor(r() * 12) / 4);
        const labels = Float32Array.from({ length: n }, () => (r() < 0.3 ? 1 : 0));
        labels[0] = 1;
        labels[1] = 0;
        expectClose(imageAuroc(scores, labels), bruteAuc(scores, labels), 1e-12, `trial ${trial}`);
      }
    });

    it('pixel AUROC equals the pairwise count over pooled pixels', () => {
      const r = rng(11);
      const maps = [0, 1, 2].map(() => Float32Array.from({ length: 64 }, () => Math.round(r() * 20) / 20));
      const masks = [0, 1, 2].map(() => Float32Array.from({ length: 64 }, () => [0, 0.5, 1][Math.floor(r() * 3)]!));
      const flatS = Float32Array.from(maps.flatMap((m) => Array.from(m)));
      const flatL = Float32Array.from(masks.flatMap((m) => Array.from(m, (v) => (v === 1 ? 1 : 0))));
      expectClose(pixelAuroc(maps, masks), bruteAuc(flatS, flatL), 1e-12);
    });

    it('handles booleans, perfect and inverted rankings', () => {
      assert.equal(imageAuroc([0.1, 0.2, 0.9, 0.8], [false, false, true, true]), 1);
      assert.equal(imageAuroc([0.9, 0.8, 0.1, 0.2], [0, 0, 1, 1]), 0);
      assert.equal(imageAuroc([0.5, 0.5, 0.5], [0, 1, 0]), 0.5);
    });

    it('rejects one-class input, NaN scores and length mismatches with typed errors', () => {
      assert.throws(() => imageAuroc([1, 2], [1, 1]), (e: unknown) => e instanceof BadInputError && e.code === 'single_class');
      assert.throws(() => imageAuroc([1, NaN], [0, 1]), (e: unknown) => e instanceof BadInputError && e.code === 'bad_score');
      assert.throws(() => imageAuroc([1, 2, 3], [0, 1]), BadInputError);
      assert.throws(() => pixelAuroc(new Float32Array(16), new Float32Array(16)), ConfigError);
    });
  });

  describe('AUPRO', () => {
    function blobCase(): { maps: Float32Array[]; masks: Float32Array[] } {
      const S = 16;
      const masks: Float32Array[] = [];
      const maps: Float32Array[] = [];
      const r = rng(3);
      for (let i = 0; i < 4; i++) {
        const m = new Float32Array(S * S);
        if (i > 0) for (let y = 2 * i; y < 2 * i + 3; y++) for (let x = i; x < i + 4; x++) m[y * S + x] = 1;
        if (i === 3) m[15 * S + 15] = 0.4;
        masks.push(m);
        maps.push(Float32Array.from({ length: S * S }, () => r()));
      }
      return { maps, masks };
    }

    it('is 1 for a map that puts every anomalous pixel above every OK pixel', () => {
      const { maps, masks } = blobCase();
      const perfect = masks.map((m, i) => m.map((v, j) => (v > 0 ? 2 + maps[i]![j]! : maps[i]![j]!)));
      expectClose(aupro(perfect, masks), 1, 1e-12, 'perfect');
    });

    it('is 0 for a map that puts every anomalous pixel below every OK pixel', () => {
      const { maps, masks } = blobCase();
      const worst = masks.map((m, i) => m.map((v, j) => (v > 0 ? -2 : maps[i]![j]!)));
      expectClose(aupro(worst, masks), 0, 1e-12, 'worst');
    });

    it('matches a direct O(pixels x thresholds) implementation of the official curve', () => {
      const { maps, masks } = blobCase();
      const ok: number[] = [];
      const comps: number[][] = [];
      masks.forEach((m, i) => {
        const { labels, count } = label8(m, 16, 16);
        for (let k = 0; k < count; k++) comps.push([]);
        const base = comps.length - count;
        labels.forEach((l, j) => (l === 0 ? ok.push(maps[i]![j]!) : comps[base + l - 1]!.push(maps[i]![j]!)));
      });
      ok.sort((a, b) => a - b);
      const T = 50;
      const fprs = [1], pros = [1];
      for (let i = 0; i < T; i++) {
        const p = i === T - 1 ? ok.length - 1 : Math.floor((i * (ok.length - 1)) / (T - 1));
        const t = ok[p]!;
        fprs.push(1 - (p + 1) / ok.length);
        pros.push(comps.reduce((a, c) => a + c.filter((v) => v > t).length / c.length, 0) / comps.length);
      }
      fprs.reverse();
      pros.reverse();
      const curve = proCurve(maps, masks, { thresholds: T });
      assert.equal(curve.components, 4);
      for (let i = 0; i < fprs.length; i++) {
        expectClose(curve.fprs[i]!, fprs[i]!, 1e-12, `fpr ${i}`);
        expectClose(curve.pros[i]!, pros[i]!, 1e-12, `pro ${i}`);
      }
      expectClose(aupro(maps, masks, { thresholds: T, fprLimit: 0.3 }), trapezoid(fprs, pros, 0.3) / 0.3, 1e-12);
    });

    it('throws no_components when no image has a defect', () => {
      const z = [new Float32Array(16)];
      assert.throws(() => aupro([new Float32Array(16)], z), (e: unknown) => e instanceof BadInputError && e.code === 'no_components');
    });
  });

  describe('sortF32 and PixelMetrics (the pixel metrics of an evaluation)', () => {
    it('sortF32 sorts exactly like Float32Array.prototype.sort, bit for bit, on both sides of the radix cut-over', () => {
      const r = rng(5);
      for (const n of [0, 1, 7, 2047, 2048, 2049, 5000, 70000]) {
        const a = new Float32Array(n);
        for (let i = 0; i < n; i++) {
          const k = r();
          // Ties, both zeros, negatives, subnormals, huge values and a narrow score range.
          a[i] = k < 0.05 ? -0 : k < 0.1 ? 0 : k < 0.25 ? Math.floor(r() * 6) / 4 : k < 0.3 ? -r() * 1e30 : k < 0.35 ? 1e-42 * (r() - 0.5) : 0.3 + 1e-3 * r();
        }
        const want = new Uint32Array(a.slice().sort().buffer);
        const got = new Uint32Array(sortF32(a.slice()).buffer);
        assert.deepEqual(got, want, `n = ${n}`);
        // A view into a larger buffer sorts in place and leaves its neighbours alone.
        const big = new Float32Array(n + 5).fill(9);
        big.set(a, 3);
        sortF32(big.subarray(3, 3 + n));
        assert.deepEqual(new Uint32Array(big.buffer, 12, n), want, `view, n = ${n}`);
        assert.equal(big[0], 9);
        assert.equal(big[n + 4], 9);
      }
    });

    /** 32x32 images (4096 px each: the radix path) with tied scores and soft mask edges. */
    function softCase(seed: number): { maps: Float32Array[]; masks: Float32Array[] } {
      const S = 32;
      const r = rng(seed);
      const masks: Float32Array[] = [];
      const maps: Float32Array[] = [];
      for (let i = 0; i < 5; i++) {
        const m = new Float32Array(S * S);
        if (i % 2 === 1) {
          for (let y = 4 + i; y < 12 + i; y++) for (let x = 3 * i; x < 3 * i + 6; x++) m[y * S + x] = 1;
          for (let x = 3 * i; x < 3 * i + 6; x++) m[(12 + i) * S + x] = 0.5; // a soft edge: AUPRO's, not P-AUROC's
          m[31 * S + 31] = 0.25; // a one-pixel soft component
        }
        masks.push(m);
        maps.push(Float32Array.from(m, (v) => Math.round((r() + 0.6 * v) * 16) / 16));
      }
      return { maps, masks };
    }

    it('gives pixelAuroc and aupro bit for bit whatever order the images come in, and equals the pairwise count', () => {
      const { maps, masks } = softCase(21);
      const want = { p: pixelAuroc(maps, masks), a: aupro(maps, masks) };
      for (const order of [[0, 1, 2, 3, 4], [4, 2, 0, 3, 1], [3, 4, 1, 0, 2]]) {
        const pm = new PixelMetrics({ capacity: 100 }); // grows past its capacity
        for (const i of order) pm.add(i, maps[i]!, masks[i]!, 32, 32);
        assert.equal(pm.images, 5);
        assert.equal(pm.pixelAuroc(), want.p, `P-AUROC, order ${order}`);
        assert.equal(pm.aupro(), want.a, `AUPRO, order ${order}`);
        assert.equal(pm.proCurve().components, 4); // blob + edge row, and the corner pixel, in images 1 and 3
      }
      const flatS = Float32Array.from(maps.flatMap((m) => Array.from(m)));
      const flatL = Float32Array.from(masks.flatMap((m) => Array.from(m, (v) => (v === 1 ? 1 : 0))));
      expectClose(want.p, bruteAuc(flatS, flatL), 1e-12, 'pairwise');
    });

    it('rejects a second add of an image, size mismatches and NaN scores', () => {
      const pm = new PixelMetrics({ what: 'eval' });
      pm.add(0, new Float32Array(16), new Float32Array(16), 4, 4);
      assert.throws(() => pm.add(0, new Float32Array(16), new Float32Array(16), 4, 4), (e: unknown) => e instanceof BadInputError && /added twice/.test(e.message));
      assert.throws(() => pm.add(1, new Float32Array(16), new Float32Array(9), 4, 4), (e: unknown) => e instanceof BadInputError && e.code === 'bad_shape');
      assert.throws(() => pm.add(2, Float32Array.of(0, NaN, 0, 0), new Float32Array(4), 2, 2), (e: unknown) => e instanceof BadInputError && e.code === 'bad_score' && /^eval:/.test(e.message));
      assert.throws(() => pm.pixelAuroc(), (e: unknown) => e instanceof BadInputError && e.code === 'single_class');
      assert.throws(() => pm.aupro(), (e: unknown) => e instanceof BadInputError && e.code === 'no_components');
    });
  });

  describe('label8 (scipy.ndimage.label with a 3x3 structure)', () => {
    it('joins diagonal neighbours, merges U shapes and numbers in raster order', () => {
      const W = 7;
      const pic = ['1.1...1', '1.1..1.', '111....', '.......', '..1.1..', '...1...'];
      const mask = Float32Array.from(pic.join(''), (ch) => (ch === '1' ? 1 : 0));
      const { labels, count } = label8(mask, W, pic.length);
      assert.equal(count, 3);
      const at = (x: number, y: number): number => labels[y * W + x]!;
      assert.equal(at(0, 0), 1);
      assert.equal(at(2, 0), 1);
      assert.equal(at(6, 0), 2);
      assert.equal(at(5, 1), 2);
      assert.equal(at(2, 4), 3);
      assert.equal(at(3, 5), 3);
      assert.equal(at(4, 4), 3);
      assert.equal(at(1, 0), 0);
    });
  });

  describe('trapezoid (generic_util)', () => {
    it('closes the last segment by interpolation and keeps exact samples', () => {
      expectClose(trapezoid([0, 0.2, 0.5, 1], [0, 0.2, 0.5, 1], 0.3), 0.045, 1e-15);
      expectClose(trapezoid([0, 0.3, 1], [0, 0.3, 1], 0.3), 0.045, 1e-15);
      expectClose(trapezoid([0, 1], [1, 1]), 1, 1e-15);
      assert.throws(() => trapezoid([0.5, 1], [0, 1], 0.3), BadInputError);
    });
  });

  describe('reject-gate operating points (reject if score >= threshold)', () => {
    const r = rng(21);
    const cases = Array.from({ length: 15 }, () => {
      const n = 10 + Math.floor(r() * 60);
      const labels = Float32Array.from({ length: n }, () => (r() < 0.4 ? 1 : 0));
      labels[0] = 1;
      labels[1] = 0;
      const scores = Float32Array.from(labels, (l) => Math.round((r() + 0.4 * l) * 10) / 10);
      return { scores, labels };
    });

    it('f1Max finds the best F1 and its threshold reproduces it', () => {
      for (const { scores, labels } of cases) {
        let best = -1;
        for (const t of scores) {
          const { tp, fp, fn } = bruteCounts(scores, labels, t);
          best = Math.max(best, (2 * tp) / (2 * tp + fp + fn));
        }
        const got = f1Max(scores, labels);
        expectClose(got.f1, best, 1e-12, 'f1');
        const { tp, fp, fn } = bruteCounts(scores, labels, got.threshold);
        expectClose((2 * tp) / (2 * tp + fp + fn), got.f1, 1e-12, 'f1 at the returned threshold');
        for (const t of scores)
          if (t > got.threshold) {
            const c = bruteCounts(scores, labels, t);
            assert.ok((2 * c.tp) / (2 * c.tp + c.fp + c.fn) < got.f1);
          }
      }
    });

    for (const maxFpr of [0.01, 1e-3, 0.2]) {
      it(`tprAtFpr(${maxFpr}) is the best TPR with FPR <= limit`, () => {
        for (const { scores, labels } of cases) {
          const nPos = labels.reduce((a, b) => a + b, 0), nNeg = labels.length - nPos;
          let bestTpr = 0;
          for (const t of scores) {
            const c = bruteCounts(scores, labels, t);
            if (c.fp / nNeg <= maxFpr) bestTpr = Math.max(bestTpr, c.tp / nPos);
          }
          const got = tprAtFpr(scores, labels, maxFpr);
          expectClose(got.tpr, bestTpr, 1e-12, 'tpr');
          assert.ok(got.fpr <= maxFpr);
          const c = bruteCounts(scores, labels, got.threshold);
          expectClose(c.tp / nPos, got.tpr, 1e-12, 'tpr at threshold');
          expectClose(c.fp / nNeg, got.fpr, 1e-12, 'fpr at threshold');
        }
      });
    }

    it('tprAtFpr returns "reject nothing" (+Infinity) when the top score is good', () => {
      const got = tprAtFpr([0.9, 0.5, 0.4], [0, 1, 1], 1e-3);
      assert.equal(got.threshold, Infinity);
      assert.equal(got.tpr, 0);
      assert.equal(got.fpr, 0);
    });

    it('rocCurve matches AUROC by trapezoid and starts at (0,0)', () => {
      const { scores, labels } = cases[0]!;
      const roc = rocCurve(scores, labels);
      assert.equal(roc.fpr[0], 0);
      assert.equal(roc.tpr[roc.tpr.length - 1], 1);
      expectClose(trapezoid(roc.fpr, roc.tpr), imageAuroc(scores, labels), 1e-12);
    });
  });
});
