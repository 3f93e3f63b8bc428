/**
 * The domain guard's parts: features and fit (src/model/guard.ts), normalised scores
 * (src/thresholds.ts), the graph operator (src/operators/guard.ts) and how a flagged frame
 * becomes a verdict, a metric and a config. The data-set suite is test/guard-domains.test.ts.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { from, lastValueFrom, map, toArray } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import { calibrateModel } from '../src/cli/calibrate.js';
import { cameraGuard, parseConfig, type GuardConfig } from '../src/config.js';
import { BadInputError, ConfigError, ModelError } from '../src/errors.js';
import { readManifest, saveModel, updateManifest } from '../src/io/artefact.js';
import { createMetrics, metricsHooks } from '../src/metrics.js';
import { useBackend } from '../src/model/tfjs/backend.js';
import {
  GUARD_FEATURES, GUARD_K_MIN, fitGuard, frameSignature, guardFeatures, guardStatsProblems, judgeGuard, signatureDistance, type GuardStats,
} from '../src/model/guard.js';
import type { ImageF32 } from '../src/model/types.js';
import { checkPolicy, guardFrames, type GuardPolicy } from '../src/operators/guard.js';
import { inspect, type InspectModel } from '../src/operators/inspect.js';
import { loadInspectModel } from '../src/runtime/model.js';
import { formatReport, replay } from '../src/runtime/replay.js';
import { startStation, type VerdictSink } from '../src/runtime/station.js';
import { failed, ok, type DecodedFrame, type Frame, type Result } from '../src/streams/frame.js';
import { normaliseScore } from '../src/thresholds.js';
import { verdictProblems, type Verdict } from '../src/verdict.js';
import { makeModel, tempDir, TEST_DIR } from './runtime/fixture.js';

const S = 32;
const index = (name: string): number => GUARD_FEATURES.indexOf(name);

/** A size x size BGR image from a per-pixel function. */
function image(fn: (x: number, y: number) => [number, number, number], size = S): ImageF32 {
  const data = new Float32Array(size * size * 3);
  for (let y = 0; y < size; y++)
    for (let x = 0; x < size; x++) data.set(fn(x, y), (y * size + x) * 3);
  return { width: size, height: size, channels: 3, data };
}

/** "Normal" images: a textured blob on a mid background, slightly different per seed. */
function normal(seed: number, size = S): ImageF32 {
  return image((x, y) => {
    const t = 0.08 * Math.sin(x * 0.9 + seed) * Math.cos(y * 0.7 - seed);
    const inside = (x - size / 2) ** 2 + (y - size / 2) ** 2 < (size / 3) ** 2;
    const v = (inside ? 0.6 : 0.35) + t + 0.01 * ((seed * 7) % 5);
    return [v * 0.8, v, v * 1.1];
  }, size);
}

function frame(seq: number, sourceId = 'cam0'): Frame {
  return { sourceId, seq, captureTs: 1000 + seq, payload: { data: new Uint8Array(3), width: 1, height: 1, format: 'bgr' } };
}
function decoded(img: ImageF32, seq: number, sourceId = 'cam0'): Result<DecodedFrame> {
  return ok({ frame: frame(seq, sourceId), image: img, sourceWidth: img.width, sourceHeight: img.height });
}

const POLICY: GuardPolicy = { action: 'reject', staleFrames: 0, staleTolerance: 1 / 1024 };

describe('domain guard (src/model/guard.ts, src/operators/guard.ts)', () => {
  const stats = fitGuard(Array.from({ length: 12 }, (_, i) => guardFeatures(normal(i))), { size: S, source: 'test' });

  describe('features', () => {
    it('reads a uniform frame as flat: its colour, no contrast, no structure, no clipping', () => {
      const f = guardFeatures(image(() => [0.2, 0.4, 0.6]));
      assert.equal(f.length, GUARD_FEATURES.length);
      assert.ok(Math.abs(f[index('mean_b')]! - 0.2) < 1e-6 && Math.abs(f[index('mean_r')]! - 0.6) < 1e-6);
      assert.ok(f[index('std_gray')]! < 1e-6);
      assert.ok(Math.abs(f[index('log_laplacian')]! - Math.log(1e-4)) < 1e-6, 'Laplacian energy 0 -> log(eps)');
      assert.equal(f[index('clip_high')], 0);
      assert.equal(f[index('grid_rg_3_3')]!.toFixed(6), (0.6 - 0.4).toFixed(6));
      const black = guardFeatures(image(() => [0, 0, 0]));
      assert.equal(black[index('clip_low')], 1);
    });

    it('measures the illumination tilt in grey per frame width, and the gradient orientation', () => {
      const ramp = guardFeatures(image((x) => [x / (S - 1), x / (S - 1), x / (S - 1)]));
      assert.ok(Math.abs(ramp[index('tilt_x')]! - S / (S - 1)) < 1e-6, `tilt_x ${ramp[index('tilt_x')]}`);
      assert.ok(Math.abs(ramp[index('tilt_y')]!) < 1e-6);
      assert.ok(ramp[index('orient_cos')]! > 0.999, 'gradients along x');
      const stripes = (fx: number, fy: number) => guardFeatures(image((x, y) => Array(3).fill(0.5 + 0.4 * Math.sin(fx * x + fy * y)) as [number, number, number]));
      assert.ok(stripes(0, 1.3)[index('orient_cos')]! < -0.999, 'rotated by 90 degrees: gradients along y');
      assert.ok(Math.abs(stripes(0.9, 0.9)[index('orient_sin')]! - 1) < 1e-3, 'diagonal');
    });

    it('finds the layout: one bright quadrant lights only its grid cells', () => {
      const f = guardFeatures(image((x, y) => (x < S / 2 && y < S / 2 ? [1, 1, 1] : [0, 0, 0])));
      assert.ok(Math.abs(f[index('grid_gray_0_0')]! - 1) < 1e-6 && Math.abs(f[index('grid_gray_1_1')]! - 1) < 1e-6);
      assert.equal(f[index('grid_gray_2_2')], 0);
      assert.equal(f[index('grid_gray_0_3')], 0);
    });

    it('sees blur in the Laplacian energy and the sharpness ratio', () => {
      const sharp = guardFeatures(normal(1));
      const blurred = guardFeatures(image((x, y) => { const v = 0.35 + 0.25 * Math.exp(-(((x - S / 2) ** 2 + (y - S / 2) ** 2) / 200)); return [v, v, v]; }));
      assert.ok(blurred[index('log_laplacian')]! < sharp[index('log_laplacian')]! - 1);
    });

    it('bins large frames: a 256 px frame reads as its 2 x 2 block means at 128 px, a 384 px one as 3 x 3', () => {
      for (const [side, k] of [[256, 2], [384, 3]] as const) {
        const big = normal(5, side);
        const small = image((x, y) => {
          const m: [number, number, number] = [0, 0, 0];
          for (let dy = 0; dy < k; dy++) for (let dx = 0; dx < k; dx++) for (let c = 0; c < 3; c++) m[c] += big.data[((y * k + dy) * side + x * k + dx) * 3 + c]! / (k * k);
          return m;
        }, 128);
        const a = guardFeatures(big), b = guardFeatures(small);
        for (let j = 0; j < a.length; j++) assert.ok(Math.abs(a[j]! - b[j]!) < 1e-5, `${side} px ${GUARD_FEATURES[j]}: ${a[j]} vs ${b[j]}`);
      }
    });

    it('refuses buffers that are not width x height x 3, and images under 3 x 3', () => {
      assert.throws(() => guardFeatures({ width: 4, height: 4, channels: 3, data: new Float32Array(5) }), BadInputError);
      assert.throws(() => guardFeatures({ width: 2, height: 2, channels: 3, data: new Float32Array(12) }), /at least 3x3/);
    });
  });

  describe('fit and judge', () => {
    it('learns per-feature ranges, a robust spread and k from the leave-one-out excess', () => {
      assert.equal(stats.n, 12);
      assert.deepEqual(stats.features, GUARD_FEATURES);
      for (let j = 0; j < GUARD_FEATURES.length; j++) assert.ok(stats.lo[j]! <= stats.median[j]! && stats.median[j]! <= stats.hi[j]! && stats.scale[j]! > 0);
      assert.equal(stats.k, Math.max(GUARD_K_MIN, Math.round(1.5 * stats.looMax * 100) / 100));
      // Leave-one-out by hand for one feature: an outlier row makes the excess and k grow.
      const rows = Array.from({ length: 6 }, (_, i) => guardFeatures(normal(i)));
      rows.push(guardFeatures(image(() => [0.9, 0.9, 0.9])));
      const wide = fitGuard(rows, { size: S, source: 'test' });
      assert.ok(wide.looMax > 10 && wide.k === Math.round(1.5 * wide.looMax * 100) / 100, `looMax ${wide.looMax}, k ${wide.k}`);
    });

    it('gives every normal image measure <= k and names the feature that fails on a foreign one', () => {
      for (let i = 20; i < 26; i++) {
        const j = judgeGuard(stats, guardFeatures(normal(i)));
        assert.ok(j.inDomain, `normal ${i}: ${j.feature} ${j.measure}`);
      }
      const black = judgeGuard(stats, guardFeatures(image(() => [0, 0, 0])));
      assert.equal(black.inDomain, false);
      assert.ok(black.measure > 10 && GUARD_FEATURES.includes(black.feature) && (black.value < black.lo || black.value > black.hi));
      // The measure is in robust spreads: a feature 3 spreads above its range gives 3.
      const f = Float64Array.from(stats.median);
      const q = index('mean_g');
      f[q] = stats.hi[q]! + 3 * stats.scale[q]!;
      const j = judgeGuard(stats, f);
      assert.equal(j.feature, 'mean_g');
      assert.ok(Math.abs(j.measure - 3) < 1e-9);
      assert.equal(judgeGuard(stats, f, 3.5).inDomain, true, 'k from the caller');
      assert.equal(judgeGuard(stats, f, 2.9).inDomain, false);
      f[q] = NaN;
      assert.equal(judgeGuard(stats, f).measure, Infinity);
    });

    it('refuses fewer than two images and non-finite features', () => {
      assert.throws(() => fitGuard([guardFeatures(normal(1))], { size: S, source: 't' }), /at least 2/);
      const bad = guardFeatures(normal(1));
      bad[3] = NaN;
      assert.throws(() => fitGuard([guardFeatures(normal(2)), bad], { size: S, source: 't' }), /std_gray of image 1 is NaN/);
      assert.throws(() => fitGuard([[1, 2], [3, 4]], { size: S, source: 't' }), /2 values, expected 61/);
    });

    it('checks stored statistics: another version is "off", damage is a problem', () => {
      assert.deepEqual(guardStatsProblems(stats, S), { problems: [] });
      assert.match(guardStatsProblems({ ...stats, version: 0 }, S).version!, /version 0/);
      assert.match(guardStatsProblems({ ...stats, features: stats.features.slice(1) }, S).version!, /60 features/);
      assert.deepEqual(guardStatsProblems({ ...stats, lo: stats.lo.slice(2) }, S).problems, ['guard.lo: expected 61 finite numbers']);
      assert.match(guardStatsProblems(stats, 64).problems[0]!, /computed at 32 px but the model takes 64 px/);
      assert.match(guardStatsProblems({ ...stats, scale: stats.scale.map((s, i) => (i === 0 ? 0 : s)) }, S).problems[0]!, /scale\[0\] \(mean_b\) must be > 0/);
    });

    it('fingerprints frames for the frozen-camera check', () => {
      const a = frameSignature(normal(1));
      assert.equal(a.length, 32 * 32);
      assert.equal(signatureDistance(a, frameSignature(normal(1))), 0);
      assert.ok(signatureDistance(a, frameSignature(normal(2))) > 1e-3);
    });
  });

  describe('normalised score', () => {
    const range = { min: 0.2, max: 0.5 };
    it('maps min -> 0, threshold -> 0.5 and clips to [0, 1]', () => {
      const close = (a: number, b: number): void => assert.ok(Math.abs(a - b) < 1e-12, `${a} != ${b}`);
      assert.equal(normaliseScore(0.2, 0.6, range), 0);
      close(normaliseScore(0.4, 0.6, range), 0.25);
      assert.equal(normaliseScore(0.6, 0.6, range), 0.5);
      // The range's max is below the threshold: the span above mirrors the span below (2t - min = 1.0).
      close(normaliseScore(0.8, 0.6, range), 0.75);
      assert.equal(normaliseScore(5, 0.6, range), 1);
      assert.equal(normaliseScore(0.05, 0.6, range), 0);
      // A max above the threshold (labelled calibration) is the upper anchor.
      close(normaliseScore(0.8, 0.6, { min: 0.2, max: 1.0 }), 0.75);
      assert.equal(normaliseScore(1.0, 0.6, { min: 0.2, max: 1.0 }), 1);
      // Without a range the lower anchor is 0.
      close(normaliseScore(0.3, 0.6), 0.25);
    });
    it('is >= 0.5 exactly when score >= threshold, also next to it and for degenerate ranges', () => {
      const t = 0.5698111057281494;
      for (const s of [t, t * (1 - 1e-16), t - 1e-17, t + 1e-17, 0, 1e9]) {
        for (const r of [range, { min: t, max: t }, { min: t + 1, max: 0 }, undefined]) {
          const n = normaliseScore(s, t, r);
          assert.ok(n >= 0 && n <= 1);
          assert.equal(n >= 0.5, s >= t, `score ${s}, range ${JSON.stringify(r)}: ${n}`);
        }
      }
    });
  });

  describe('guardFrames operator', () => {
    const ts = (): TestScheduler => new TestScheduler((actual, expected) => assert.deepStrictEqual(actual, expected));
    const still = normal(3);
    const status = (r: Result<DecodedFrame>): string => (r.ok ? r.value.guard?.status ?? 'none' : `failed:${r.error.code}`);

    it('flags a frozen camera from the N-th identical frame on, per source, and recovers on a new frame (marbles)', () => {
      ts().run(({ cold, expectObservable }) => {
        const src = {
          a: decoded(still, 1), b: decoded(still, 2), c: decoded(still, 3), d: decoded(still, 4),
          o: decoded(still, 1, 'cam1'), e: decoded(normal(4), 5), x: failed(frame(9), new BadInputError('corrupt_image', 'x'), 'decode'),
        };
        const s = cold('a-b-o-x-c-d-e|', src);
        const policy: GuardPolicy = { ...POLICY, staleFrames: 3 };
        // cam1's frame does not extend cam0's run, a failed frame passes untouched, e differs.
        expectObservable(s.pipe(guardFrames({ policy }), map(status))).toBe('a-b-c-d-e-f-g|', {
          a: 'ok', b: 'ok', c: 'ok', d: 'failed:corrupt_image', e: 'stale_frame', f: 'stale_frame', g: 'ok',
        });
      });
    });

    it('counts repeats and takes near-identical frames (within the tolerance) as identical, sensor noise not', async () => {
      const noisy = (amp: number, seed: number): ImageF32 => {
        const img = normal(3);
        const d = Float32Array.from(img.data, (v, i) => v + amp * (((i * 2654435761 + seed * 40503) % 1000) / 1000 - 0.5));
        return { ...img, data: d };
      };
      const run = async (imgs: ImageF32[]): Promise<Result<DecodedFrame>[]> =>
        lastValueFrom(from(imgs.map((im, i) => decoded(im, i))).pipe(guardFrames({ policy: { ...POLICY, staleFrames: 3 } }), toArray()));
      // 0.5 / 1024 of jitter: below the tolerance, a frozen (re-encoded) buffer.
      const frozen = await run([0, 1, 2, 3].map((s) => noisy(0.5 / 1024, s)));
      assert.deepEqual(frozen.map(status), ['ok', 'ok', 'stale_frame', 'stale_frame']);
      assert.deepEqual(frozen.map((r) => (r.ok ? r.value.guard?.repeats : undefined)), [undefined, 2, 3, 4]);
      // One grey level of sensor noise: a live camera.
      const live = await run([0, 1, 2, 3].map((s) => noisy(2 / 255, s)));
      assert.deepEqual(live.map(status), ['ok', 'ok', 'ok', 'ok']);
    });

    it('judges each frame against the statistics; action error fails it at stage guard', async () => {
      const black = image(() => [0, 0, 0]);
      const run = async (action: GuardPolicy['action']): Promise<Result<DecodedFrame>[]> =>
        lastValueFrom(from([decoded(normal(30), 1), decoded(black, 2)]).pipe(guardFrames({ stats, policy: { ...POLICY, action } }), toArray()));
      const [good, bad] = await run('reject');
      assert.ok(good!.ok && good.value.guard!.status === 'ok' && good.value.guard!.measure! <= stats.k && good.value.guard!.k === stats.k);
      assert.ok(bad!.ok && bad.value.guard!.status === 'out_of_domain');
      assert.match(bad.value.guard!.detail!, /^out of domain: \w+ = .* robust SD outside the range of the model's normal images/);
      const [, err] = await run('error');
      assert.ok(!err!.ok && err.stage === 'guard' && err.error.code === 'out_of_domain' && err.error instanceof BadInputError);
    });

    it('adds nothing when there is nothing to check (no statistics, no frozen-camera check)', async () => {
      const [r] = await lastValueFrom(from([decoded(normal(1), 1)]).pipe(guardFrames({ policy: POLICY }), toArray()));
      assert.ok(r!.ok && r.value.guard === undefined);
    });

    it('refuses a bad fixed policy', () => {
      assert.throws(() => checkPolicy({ ...POLICY, action: 'drop' as 'reject' }), /guard.action/);
      assert.throws(() => checkPolicy({ ...POLICY, staleFrames: 1 }), /staleFrames must be 0 \(off\) or an integer >= 2/);
      assert.throws(() => guardFrames({ policy: { ...POLICY, k: -1 } }), ConfigError);
    });
  });

  describe('in the inspection graph', () => {
    // The toy model scores every image 0.1 (below the threshold 0.5): only the guard can reject.
    const model: InspectModel = { id: 'toy', guard: stats, scoreRange: { min: 0, max: 0.4 }, inferBatch: async (imgs) => imgs.map(() => ({ score: 0.1 })) };
    const images = [normal(31), image(() => [0, 0, 0]), image(() => [1, 1, 1])];
    const run = async (policy: GuardPolicy, hooks = {}): Promise<Verdict[]> =>
      lastValueFrom(
        from(images.map((_, i) => frame(i))).pipe(
          inspect({ decode: (f) => images[f.seq]!, model, threshold: 0.5, mode: 'replay', context: { line: 'L', station: 'S' }, batch: { maxSize: 2, maxWaitMs: 1 }, guard: { policy }, hooks }),
          toArray(),
        ),
      );

    it('rejects what it cannot judge with reason out_of_domain, the guard reading and normScore', async () => {
      const m = createMetrics(new Registry(), { defaultMetrics: false });
      const v = (await run(POLICY, metricsHooks(m))).sort((a, b) => a.seq - b.seq);
      assert.deepEqual(v.map((x) => [x.verdict, x.reason]), [['pass', undefined], ['reject', 'out_of_domain'], ['reject', 'out_of_domain']]);
      for (const x of v) assert.deepEqual(verdictProblems(x), []);
      assert.equal(v[0]!.guard!.status, 'ok');
      assert.equal(v[1]!.guard!.action, 'reject');
      assert.ok(v[1]!.guard!.measure! > stats.k && typeof v[1]!.guard!.feature === 'string' && v[1]!.detail!.startsWith('out of domain'));
      // normScore describes the score (0.1 of 0..0.5 -> 0.1); the guard's reject does not move it.
      assert.ok(Math.abs(v[1]!.normScore! - 0.1) < 1e-12);
      const text = await m.registry.metrics();
      assert.match(text, /fairline_frames_guarded_total\{camera="cam0",reason="out_of_domain"\} 2/);
      assert.match(text, /fairline_stage_duration_seconds_count\{stage="guard"\} 3/);
    });

    it('action pass leaves the decision to the score; action error makes an error verdict', async () => {
      const passed = (await run({ ...POLICY, action: 'pass' })).sort((a, b) => a.seq - b.seq);
      assert.deepEqual(passed.map((x) => x.verdict), ['pass', 'pass', 'pass']);
      assert.equal(passed[1]!.guard!.status, 'out_of_domain');
      assert.equal(passed[1]!.reason, undefined);
      const errored = (await run({ ...POLICY, action: 'error' })).sort((a, b) => a.seq - b.seq);
      assert.deepEqual(errored.map((x) => [x.verdict, x.reason, x.stage]), [['pass', undefined, undefined], ['error', 'out_of_domain', 'guard'], ['error', 'out_of_domain', 'guard']]);
      for (const x of errored) assert.deepEqual(verdictProblems(x), []);
    });

    it('validates the new optional verdict fields', () => {
      const v = { schema: 'fairline.verdict/v1', line: 'L', station: 'S', camera: 'c', seq: 0, captureTs: 0, decidedTs: 0, latencyMs: 0, model: 'm', score: 0.1, threshold: 0.5, verdict: 'pass', regions: [] };
      assert.deepEqual(verdictProblems({ ...v, normScore: 0.2, guard: { status: 'ok', action: 'reject', measure: 0.3, k: 2.5, feature: 'mean_b' } }), []);
      assert.deepEqual(verdictProblems({ ...v, normScore: 1.5 }), ['normScore: must be a number in [0, 1]']);
      assert.deepEqual(verdictProblems({ ...v, guard: { status: 'odd', action: 'reject' } }), [`guard.status: expected 'ok' | 'out_of_domain' | 'stale_frame'`]);
    });
  });

  describe('config and artefact', () => {
    const base = { line: 'L1', station: 'S1', model: '.', cameras: [{ id: 'cam0', source: { type: 'synthetic' } }, { id: 'rec', source: { type: 'images', dir: '.' }, guard: { action: 'pass', k: 4 } }] };
    const parse = (over: Record<string, unknown>) => parseConfig({ ...base, ...over }, { baseDir: process.cwd(), checkFiles: false });

    it('fills defaults, merges per camera, and keeps the frozen-camera check to live cameras', () => {
      const cfg = parse({ guard: { staleFrames: 8 } });
      assert.deepEqual(cfg.guard, { action: 'reject', staleFrames: 8, staleTolerance: 1 / 1024 });
      assert.deepEqual(cameraGuard(cfg, cfg.cameras[0]!), { action: 'reject', staleFrames: 8, staleTolerance: 1 / 1024 } satisfies GuardConfig);
      assert.deepEqual(cameraGuard(cfg, cfg.cameras[1]!), { action: 'pass', k: 4, staleFrames: 0, staleTolerance: 1 / 1024 });
      assert.deepEqual(parse({}).guard, { action: 'reject', staleFrames: 5, staleTolerance: 1 / 1024 });
    });

    it('names every bad guard key', () => {
      assert.throws(
        () => parse({ guard: { action: 'drop', k: 0, staleFrames: 1, staleTolerance: 2, when: 1 }, cameras: [{ id: 'c', source: { type: 'synthetic' }, guard: { staleFrames: -1 } }] }),
        (e: Error & { problems?: string[] }) => {
          assert.deepEqual(e.problems, [
            'cameras[0].guard.staleFrames: must be >= 0, got -1',
            'guard.when: unknown key (allowed: action, k, staleFrames, staleTolerance)',
            "guard.action: expected one of 'reject' | 'error' | 'pass', got 'drop'",
            'guard.k: must be > 0, got 0',
            'guard.staleFrames: must be 0 (off) or at least 2: one frame cannot repeat',
            'guard.staleTolerance: must be <= 1, got 2',
          ]);
          return true;
        },
      );
    });

    it('a model without statistics runs with the guard off and says how to fit them; damaged ones are refused', async function () {
      this.timeout(30000);
      await useBackend('cpu');
      const dir = tempDir('guard-artefact');
      try {
        makeModel(dir, { size: 32, threshold: 0.5 });
        const off = await loadInspectModel({ dir, engine: 'tfjs' });
        assert.equal(off.guard, undefined);
        assert.match(off.guardNote, /^guard: off \(model test-\w+ has no statistics of normal images; run 'fairline calibrate --model .* --normal <good images> --guard-only'/);
        await off.dispose();
        updateManifest(dir, { guard: stats, scoreRange: { min: 0.1, max: 0.4, n: 12, source: 'test' } });
        const on = await loadInspectModel({ dir, engine: 'tfjs' });
        assert.deepEqual(on.guard, stats);
        assert.deepEqual(on.scoreRange, { min: 0.1, max: 0.4, n: 12, source: 'test' });
        assert.match(on.guardNote, /^guard: on \(61 features of 12 normal images from test, k /);
        await on.dispose();
        updateManifest(dir, { guard: { ...stats, version: 2 as 1 } });
        const other = await loadInspectModel({ dir, engine: 'tfjs' });
        assert.equal(other.guard, undefined);
        assert.match(other.guardNote, /guard: off \(guard statistics are version 2/);
        await other.dispose();
        updateManifest(dir, { guard: { ...stats, k: -1 } });
        await assert.rejects(loadInspectModel({ dir, engine: 'tfjs' }), (e: unknown) => e instanceof ModelError && e.code === 'bad_manifest' && /guard.k/.test(e.message));
        // The station says so at start-up and on /metrics, and guards every camera frame.
        const station = async (): Promise<{ logs: string[]; metrics: string; got: Verdict[] }> => {
          const got: Verdict[] = [];
          const sink: VerdictSink = { kind: 'memory', publish: (v) => void got.push(v), close: async () => undefined };
          const logs: string[] = [];
          const config = parseConfig(
            { line: 'L1', station: 'S1', model: dir, backend: 'cpu', engine: 'tfjs', cameras: [{ id: 'sim0', source: { type: 'synthetic', width: 48, height: 48, fps: 50, count: 4 } }], deadlineMs: 20000, metrics: { enabled: false } },
            { baseDir: dir },
          );
          const st = await startStation({ config, sink, log: (m) => logs.push(m) });
          await st.done;
          return { logs, metrics: await st.metrics.registry.metrics(), got };
        };
        updateManifest(dir, { guard: undefined });
        const plain = await station();
        assert.ok(plain.logs.some((l) => /^guard: off \(model test-\w+ has no statistics/.test(l)), plain.logs.join('\n'));
        assert.match(plain.metrics, /fairline_model_info\{model="test-\w+",backend="cpu",engine="tfjs-cpu",guard="off"/);
        assert.ok(plain.got.every((v) => v.guard?.status === 'ok' && v.guard.measure === undefined), 'frozen-camera check only');
        updateManifest(dir, { guard: fitGuard(Array.from({ length: 8 }, (_, i) => guardFeatures(normal(i))), { size: 32, source: 'test' }) });
        const guarded = await station();
        assert.ok(guarded.logs.some((l) => /^guard: on \(61 features of 8 normal images from test, k [\d.]+\); action reject$/.test(l)), guarded.logs.join('\n'));
        assert.match(guarded.metrics, /guard="on"/);
        // The synthetic camera's dark ellipse is not what this model has seen: every frame rejected.
        assert.deepEqual(guarded.got.map((v) => `${v.verdict}/${v.reason}`), Array(4).fill('reject/out_of_domain'));
        assert.match(guarded.metrics, /fairline_frames_guarded_total\{camera="sim0",reason="out_of_domain",line="L1",station="S1"\} 4/);
        // fairline calibrate: fits the guard of a model that has none, keeps it after, refits on request.
        updateManifest(dir, { guard: undefined, scoreRange: undefined });
        const logs: string[] = [];
        const good = join(TEST_DIR, 'good');
        const first = await calibrateModel({ modelDir: dir, engine: 'tfjs', normal: good, log: (m) => logs.push(m) });
        const m1 = readManifest(dir);
        assert.ok(first.guard && first.thresholdWritten && first.guard.n === 6 && first.guard.source === 'calibrate');
        assert.deepEqual(m1.guard, first.guard);
        assert.equal(m1.thresholds!.image, first.threshold);
        assert.deepEqual(m1.scoreRange, { min: first.normalStats.min, max: first.normalStats.max, n: 6, source: 'calibrate' });
        assert.ok(logs.some((l) => /guard statistics of 6 good image\(s\): k [\d.]+ .*fewer than 20 images give a loose guard/.test(l)), logs.join('\n'));
        const again = await calibrateModel({ modelDir: dir, engine: 'tfjs', normal: good, targetFrr: 0.2 });
        assert.equal(again.guard, undefined, 'a model with statistics keeps them');
        assert.equal(again.guardFlagged, 0, 'its own normal images are in its domain');
        assert.deepEqual(readManifest(dir).guard, m1.guard);
        // The replay summary says what the guard did.
        const rm = await loadInspectModel({ dir, engine: 'tfjs' });
        try {
          const rep = await replay({ model: rm, source: TEST_DIR, regions: false });
          const flagged = rep.results.filter((r) => r.guard === 'out_of_domain').length;
          assert.deepEqual(rep.guard.flagged, flagged ? { out_of_domain: flagged } : {});
          assert.equal(rep.results.filter((r) => r.label === 0 && r.guard).length, 0, 'the fitted good images are in the domain');
          assert.ok(rep.results.every((r) => r.normScore !== undefined && r.normScore >= 0 && r.normScore <= 1));
          assert.match(formatReport(rep), new RegExp(`^guard: on \\(61 features of 6 normal images from calibrate, k [\\d.]+\\); action reject; flagged ${flagged ? `${flagged} out_of_domain` : 'none'}$`, 'm'));
        } finally {
          await rm.dispose();
        }
        updateManifest(dir, { thresholds: { image: 0.123, method: 'manual', computedAt: new Date().toISOString() } });
        const only = await calibrateModel({ modelDir: dir, engine: 'tfjs', normal: join(TEST_DIR, 'colour'), guard: 'only' });
        const m2 = readManifest(dir);
        assert.ok(only.guard && !only.thresholdWritten && only.guard.n === 17);
        assert.equal(m2.thresholds!.image, 0.123, '--guard-only keeps the threshold');
        assert.deepEqual(m2.guard, only.guard);
        await assert.rejects(calibrateModel({ modelDir: dir, engine: 'tfjs', labelled: TEST_DIR, guard: 'only' }), /--guard-only .* use it with --normal/);
        // saveModel stores both, and old readers' fields are untouched.
        const m = saveModel(join(dir, 'b'), { spec: readManifest(dir).spec, tensors: {}, guard: stats });
        assert.deepEqual(m.guard, stats);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
});
