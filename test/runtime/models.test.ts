/**
 * The station's models (src/runtime/models.ts): cameras on one artefact share one loaded model,
 * whose batches run one at a time in arrival order; models never wait for each other, so a slow
 * model cannot starve a fast one (station with three live cameras on a fast and a slow model);
 * swaps at a batch boundary, refused swaps, and what a reloaded config asks for.
 */
import assert from 'node:assert/strict';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseConfig } from '../../src/config.js';
import { ModelError } from '../../src/errors.js';
import type { ImageF32 } from '../../src/model/types.js';
import type { RuntimeModel } from '../../src/runtime/model.js';
import { CameraModel, ModelRegistry, planReload, type StationModel } from '../../src/runtime/models.js';
import { startStation, type VerdictSink } from '../../src/runtime/station.js';
import type { Verdict } from '../../src/verdict.js';
import { fakeModel, tempDir } from './fixture.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

const img = (size = 32): ImageF32 => ({ width: size, height: size, channels: 3, data: new Float32Array(size * size * 3) });

describe('runtime/models', function () {
  this.timeout(120000);
  let dir: string;
  before(() => {
    dir = tempDir('models');
    for (const d of ['fast', 'slow', 'other']) mkdirSync(join(dir, d));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('registry: one load per artefact, shared; batches of one model in order, one at a time; models in parallel', async () => {
    const fast = fakeModel(join(dir, 'fast'), 'fast-1', 30), slow = fakeModel(join(dir, 'slow'), 'slow-1', 30);
    let loads = 0;
    const reg = new ModelRegistry(async (d) => {
      loads++;
      return d.endsWith('fast') ? fast : slow;
    }, (d) => (d.endsWith('fast') ? 'fast-1' : 'slow-1'));
    const a = await reg.acquire(join(dir, 'fast'));
    const b = await reg.acquire(join(dir, 'fast'));
    assert.equal(a, b);
    assert.equal(loads, 1);
    const s = await reg.acquire(join(dir, 'slow'));
    assert.equal(loads, 2);
    const t0 = Date.now();
    const done: string[] = [];
    await Promise.all([
      ...[0, 1, 2, 3].map((i) => reg.run(a, [img()]).then(() => void done.push(`f${i}`))),
      ...[0, 1, 2, 3].map((i) => reg.run(s, [img()]).then(() => void done.push(`s${i}`))),
    ]);
    const ms = Date.now() - t0;
    assert.equal(fast.maxRunning, 1, 'one batch at a time on a shared model');
    assert.equal(slow.maxRunning, 1);
    assert.deepEqual(done.filter((d) => d.startsWith('f')), ['f0', 'f1', 'f2', 'f3'], 'FIFO per model');
    // 4 batches x 30 ms per model; serialised across models it would be >= 240 ms.
    assert.ok(ms < 230, `two models ran in parallel: ${ms} ms`);
    assert.deepEqual(reg.list().map((m) => [m.id, m.users]).sort(), [['fast-1', 2], ['slow-1', 1]]);
    await reg.release(a);
    assert.equal(fast.disposed, false, 'still used by the second camera');
    await reg.release(b);
    assert.equal(fast.disposed, true, 'the last user disposes');
    await reg.dispose();
    assert.equal(slow.disposed, true);
  });

  it('swap: at a batch boundary, outputs name their model and threshold; refused swaps keep the old model', async () => {
    const m1 = fakeModel(join(dir, 'fast'), 'm1', 40, { threshold: 0.3 });
    const m2 = fakeModel(join(dir, 'other'), 'm2', 5, { threshold: 0.7 });
    const big = fakeModel(join(dir, 'slow'), 'big', 5, { size: 64 });
    const nan = fakeModel(join(dir, 'slow'), 'nan', 5, { score: NaN });
    const byDir: Record<string, StationModel> = { other: m2 };
    const reg = new ModelRegistry(async (d) => {
      const k = d.split('/').pop()!;
      if (k === 'missing') throw new ModelError('missing', `no model at ${d}`);
      return byDir[k]!;
    }, (d) => d.split('/').pop()!);
    reg.adopt(m1);
    const results: boolean[] = [];
    const cm = new CameraModel({ camera: 'c', registry: reg, model: reg.adopt(m1), threshold: 0.3, onSwap: (r) => void results.push(r.ok) });
    // A batch in flight on m1 while the swap lands: it finishes on m1, the next batch is m2's.
    const inFlight = cm.inferBatch([img(), img()]);
    const r = await cm.swap(join(dir, 'other'));
    assert.equal(r.ok, true);
    assert.equal(cm.id, 'm2');
    assert.equal(cm.threshold, 0.7);
    const before = await inFlight;
    assert.deepEqual(before.map((o) => [o.model, o.threshold]), [['m1', 0.3], ['m1', 0.3]]);
    const after = await cm.inferBatch([img()]);
    assert.deepEqual(after.map((o) => [o.model, o.threshold]), [['m2', 0.7]]);

    byDir.big = big;
    byDir.nan = nan;
    const wrongSize = await cm.swap(join(dir, 'big'));
    assert.equal(wrongSize.ok, false);
    assert.equal(!wrongSize.ok && wrongSize.error.code, 'model_mismatch');
    const noScore = await cm.swap(join(dir, 'nan'));
    assert.equal(!noScore.ok && noScore.error.code, 'warmup_failed');
    const missing = await cm.swap(join(dir, 'missing'));
    assert.equal(!missing.ok && missing.error.code, 'missing');
    assert.equal(!missing.ok && missing.serving, 'm2');
    assert.equal(cm.id, 'm2', 'refused swaps leave the model serving');
    assert.equal(nan.disposed && big.disposed, true, 'refused models are released');
    assert.deepEqual(results, [true, false, false, false]);
    await reg.dispose();
  });

  it('a slow model cannot starve a fast one: station with two cameras on a fast model and one on a slow model', async () => {
    const fast = fakeModel(join(dir, 'fast'), 'fast-1', 5);
    const slow = fakeModel(join(dir, 'slow'), 'slow-1', 600);
    let loads = 0;
    const got: Verdict[] = [];
    const sink: VerdictSink = { kind: 'memory', publish: (v) => void got.push(v), close: async () => undefined };
    const cam = (id: string, model?: string) => ({ id, mode: 'live', ...(model ? { model } : {}), source: { type: 'synthetic', width: 32, height: 32, fps: 20, defectRate: 0, seed: id.length } });
    const config = parseConfig(
      {
        line: 'L1', station: 'S1', model: join(dir, 'fast'), backend: 'cpu', engine: 'tfjs',
        cameras: [cam('fastA'), cam('fastB'), cam('slowC', join(dir, 'slow'))],
        batch: { maxSize: 4, maxWaitMs: 20 }, deadlineMs: 10000, queueLimit: 1, metrics: { enabled: false },
      },
      { baseDir: dir },
    );
    const station = await startStation({
      config, sink, model: fast as unknown as RuntimeModel, control: false,
      loadModel: async () => {
        loads++;
        return slow;
      },
    });
    await sleep(4000);
    const summary = await station.stop('test');
    assert.equal(loads, 1, 'only the slow model was loaded; the fast cameras share the station model');
    const of = (c: string) => got.filter((v) => v.camera === c && v.verdict !== 'error');
    const p90 = (vs: Verdict[]) => vs.map((v) => v.latencyMs).sort((a, b) => a - b)[Math.floor(vs.length * 0.9)]!;
    for (const c of ['fastA', 'fastB']) {
      const s = summary.cameras[c]!;
      // Every fast frame judged, nothing dropped, and quickly (a batch wait + 5 ms), although
      // the slow model is busy 600 ms per batch all along.
      assert.equal(s.dropped.queue, 0, `${c} dropped ${s.dropped.queue}`);
      assert.equal(of(c).length, s.frames, `${c}: ${of(c).length} of ${s.frames}`);
      assert.ok(s.frames >= 40, `${c}: ${s.frames} frames in 4 s`);
      assert.ok(p90(of(c)) < 400, `${c}: p90 latency ${p90(of(c))} ms`);
      assert.ok(of(c).every((v) => v.model === 'fast-1'));
    }
    // The slow camera is slow (and, live, drops what its model cannot take), but is served too.
    assert.ok(of('slowC').length >= 4 && of('slowC').every((v) => v.model === 'slow-1'), `slowC judged ${of('slowC').length}`);
    assert.ok(p90(of('slowC')) >= 600);
    assert.equal(fast.maxRunning, 1, 'the two fast cameras share one model, one batch at a time');
    assert.ok(slow.disposed && !fast.disposed, 'the station disposes what it loaded, not a caller\'s model');
    console.log(`      fastA ${of('fastA').length}, fastB ${of('fastB').length} judged (p90 ${p90(of('fastA'))}/${p90(of('fastB'))} ms); slowC ${of('slowC').length} judged (p90 ${p90(of('slowC'))} ms), ${summary.cameras.slowC!.dropped.queue} dropped`);
  });

  it('reload plan: changed folder, artefact replaced in place, explicit threshold; other changes need a restart', () => {
    const cur = new Map([
      ['c1', { dir: '/m/a', id: 'a-1', threshold: 1 }],
      ['c2', { dir: '/m/b', id: 'b-1', threshold: 2 }],
      ['c3', { dir: '/m/a', id: 'a-1', threshold: 1 }],
      ['gone', { dir: '/m/a', id: 'a-1', threshold: 1 }],
    ]);
    const ids: Record<string, string> = { '/m/a': 'a-1', '/m/b': 'b-2', '/m/c': 'c-1' };
    const plan = planReload(cur, { model: '/m/a', cameras: [{ id: 'c1', model: '/m/c' }, { id: 'c2', model: '/m/b' }, { id: 'c3', threshold: 1.5 }, { id: 'new' }] }, (d) => ids[d]);
    assert.deepEqual(plan.steps, [{ camera: 'c1', dir: '/m/c' }, { camera: 'c2', dir: '/m/b' }, { camera: 'c3', dir: '/m/a', threshold: 1.5 }]);
    assert.deepEqual(plan.ignored, ['camera new is new (needs a restart)', 'camera gone was removed (needs a restart)']);
    assert.deepEqual(planReload(cur, { model: '/m/a', cameras: [{ id: 'c1' }] }, (d) => ids[d]).steps, []);
  });
});
