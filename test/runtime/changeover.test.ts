/**
 * Line changeover over a real nats-server: a station with two live cameras at 10 frames/s on two
 * different models; SIGHUP (config edited: cam1 -> model C) and a control request (cam2 -> model D)
 * each swap one camera's model mid-stream. Every frame has exactly one verdict on NATS, verdicts
 * before a swap name the old model and after it the new one (with that model's threshold), the
 * other camera is unaffected, a corrupt model is refused with the old one still serving, and the
 * swaps are counted. No tensors are left behind once the station stops.
 */
import assert from 'node:assert/strict';
import { cpSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { loadConfig } from '../../src/config.js';
import { readManifest } from '../../src/io/artefact.js';
import { useBackend } from '../../src/model/tfjs/backend.js';
import { startStation, type CameraSummary, type StationSummary } from '../../src/runtime/station.js';
import { isVerdict, type Verdict } from '../../src/verdict.js';
import { startNatsServer, type NatsServerHandle } from '../fixtures/nats-server.js';
import { makeModel, tempDir } from './fixture.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
async function waitFor(cond: () => boolean, ms: number, what: string): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

/** The distinct models of a camera's verdicts in seq order, as runs: ['A', 'C'] for A..A C..C. */
function modelRuns(vs: Verdict[]): string[] {
  const runs: string[] = [];
  for (const v of [...vs].sort((a, b) => a.seq - b.seq)) if (runs[runs.length - 1] !== v.model) runs.push(v.model);
  return runs;
}

describe('runtime/changeover (model per camera, hot swap)', function () {
  this.timeout(240000);
  let dir: string;
  let srv: NatsServerHandle;
  const ids: Record<string, string> = {};
  const thresholds: Record<string, number> = { A: 1.1, B: 1.2, C: 1.3, D: 1.4 };

  before(async () => {
    await useBackend('cpu');
    dir = tempDir('changeover');
    for (const [i, name] of ['A', 'B', 'C', 'D'].entries()) ids[name] = makeModel(join(dir, name), { seed: i + 1, threshold: thresholds[name]! }).id;
    // A damaged copy of C: same manifest, one weight byte flipped.
    cpSync(join(dir, 'C'), join(dir, 'corrupt'), { recursive: true });
    const wf = join(dir, 'corrupt', readManifest(join(dir, 'C')).weights.file);
    const bytes = readFileSync(wf);
    bytes[100] = bytes[100]! ^ 0xff;
    writeFileSync(wf, bytes);
    srv = await startNatsServer({ jetstream: false });
  });
  after(async () => {
    await srv?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  // Both engines: tfjs on the JavaScript thread, onnxruntime sessions in their worker thread.
  for (const engine of ['tfjs', 'onnx'] as const) it(`[${engine}] SIGHUP and a control request each swap one camera mid-stream at 10 fps: one verdict per frame, old then new model, other camera unaffected, corrupt model refused`, async () => {
    const cfgFile = join(dir, 'station.yaml');
    const writeConfig = (cam1Model?: string) =>
      writeFileSync(
        cfgFile,
        [
          'line: L9', 'station: S9', 'model: A', 'backend: cpu', `engine: ${engine}`,
          'cameras:',
          `  - { id: cam1, mode: live, ${cam1Model ? `model: ${cam1Model}, ` : ''}source: { type: synthetic, width: 64, height: 64, fps: 10, defectRate: 0.3, seed: 1 } }`,
          '  - { id: cam2, mode: live, model: B, source: { type: synthetic, width: 64, height: 64, fps: 10, defectRate: 0.3, seed: 2 } }',
          // Generous deadline and queue: this machine is shared; the test is about swaps, not speed.
          'batch: { maxSize: 4, maxWaitMs: 50 }', 'deadlineMs: 30000', 'queueLimit: 200',
          'metrics: { enabled: false }',
          `nats: { servers: [${srv.url}] }`,
          `spool: { dir: ${join(dir, 'spool')} }`,
        ].join('\n'),
      );
    writeConfig();

    const nc: NatsConnection = await connect({ servers: srv.url });
    const got: Record<string, Verdict[]> = { cam1: [], cam2: [] };
    nc.subscribe('fairline.L9.*.verdict', { callback: (_e, m) => void got[m.json<Verdict>().camera]!.push(m.json<Verdict>()) });
    await nc.flush();
    const logs: string[] = [];
    const tensors0 = tf.memory().numTensors;
    const station = await startStation({ config: await loadConfig(cfgFile), reloadConfig: () => loadConfig(cfgFile), handleSignals: true, log: (m) => void logs.push(m) });
    assert.equal(station.controlSubject, 'fairline.L9.S9.control');
    const request = async (body: unknown): Promise<Record<string, unknown>> =>
      (await nc.request(station.controlSubject!, JSON.stringify(body), { timeout: 60000 })).json<Record<string, unknown>>();
    let summary: StationSummary | undefined;
    try {
      assert.equal(station.cameraModels.get('cam1')!.id, ids.A);
      assert.equal(station.cameraModels.get('cam2')!.id, ids.B);
      await waitFor(() => got.cam1!.length >= 10 && got.cam2!.length >= 10, 60000, '10 verdicts per camera');

      // 1. SIGHUP after editing the config: cam1 A -> C; cam2's entry is unchanged.
      writeConfig('C');
      process.kill(process.pid, 'SIGHUP');
      await waitFor(() => station.cameraModels.get('cam1')!.id === ids.C, 60000, 'cam1 on C');
      assert.equal(station.cameraModels.get('cam2')!.id, ids.B, 'SIGHUP left cam2 alone');
      const n1 = got.cam1!.length;
      await waitFor(() => got.cam1!.length >= n1 + 10, 60000, '10 more cam1 verdicts');

      // 2. Control request: cam2 B -> D.
      const r = await request({ op: 'load', camera: 'cam2', model: 'D' });
      assert.equal(r.ok, true, JSON.stringify(r));
      assert.equal(r.from, ids.B);
      assert.equal(r.to, ids.D);
      assert.equal(r.threshold, 1.4);
      assert.equal(station.cameraModels.get('cam1')!.id, ids.C, 'the request left cam1 alone');

      // 3. A corrupt model is refused; C keeps serving cam1.
      const bad = await request({ op: 'load', camera: 'cam1', model: join(dir, 'corrupt') });
      assert.equal(bad.ok, false);
      assert.equal((bad.error as { code: string }).code, 'checksum', JSON.stringify(bad));
      assert.equal(bad.serving, ids.C);
      const unknown = await request({ op: 'load', camera: 'nope', model: 'D' });
      assert.equal((unknown.error as { code: string }).code, 'unknown_camera');
      const garbage = await request({ op: 'explode' });
      assert.equal((garbage.error as { code: string }).code, 'bad_request');
      const status = await request({ op: 'status' });
      assert.equal(status.ok, true);
      const cams = status.cameras as Array<{ camera: string; model: string; threshold: number }>;
      assert.deepEqual(cams.map((c) => [c.camera, c.model, c.threshold]), [['cam1', ids.C, 1.3], ['cam2', ids.D, 1.4]]);
      // A and B were released (no camera on them); C and D serve; the station model A stays held by the station.
      assert.deepEqual((status.models as Array<{ id: string }>).map((m) => m.id).sort(), [ids.A, ids.C, ids.D].sort());

      const n1b = got.cam1!.length, n2 = got.cam2!.length;
      await waitFor(() => got.cam1!.length >= n1b + 10 && got.cam2!.length >= n2 + 10, 60000, '10 more verdicts per camera');
    } finally {
      summary = await station.stop('test');
    }
    await nc.flush();
    await sleep(300);

    for (const cam of ['cam1', 'cam2'] as const) {
      const vs = got[cam]!;
      const s: CameraSummary = summary!.cameras[cam]!;
      // Exactly one verdict per frame taken: none lost, none doubled.
      assert.equal(vs.length, s.frames, `${cam}: ${vs.length} verdicts for ${s.frames} frames`);
      assert.deepEqual(vs.map((v) => v.seq).sort((a, b) => a - b), [...Array(s.frames).keys()], `${cam}: one verdict per seq`);
      assert.ok(vs.every((v) => isVerdict(v) && v.verdict !== 'error' && !v.failSafe), `${cam}: every frame judged by a model`);
      assert.equal(s.dropped.queue + s.dropped.source, 0, `${cam}: nothing dropped`);
      // Each verdict carries the threshold of the model it names.
      for (const v of vs) assert.equal(v.threshold, thresholds[Object.keys(ids).find((k) => ids[k] === v.model)!], `${cam}#${v.seq} ${v.model}`);
    }
    // Old model before the swap, new after, one switch each; the other camera never changed then.
    assert.deepEqual(modelRuns(got.cam1!), [ids.A, ids.C]);
    assert.deepEqual(modelRuns(got.cam2!), [ids.B, ids.D]);
    const swapSeq = got.cam1!.find((v) => v.model === ids.C)!.seq;
    assert.ok(swapSeq >= 10, `cam1 switched mid-stream at #${swapSeq}`);

    const text = await station.metrics.registry.metrics();
    assert.match(text, /fairline_model_swaps_total\{camera="cam1",result="ok",line="L9",station="S9"\} 1/);
    assert.match(text, /fairline_model_swaps_total\{camera="cam2",result="ok",line="L9",station="S9"\} 1/);
    assert.match(text, /fairline_model_swaps_total\{camera="cam1",result="checksum",line="L9",station="S9"\} 1/);
    assert.match(text, new RegExp(`fairline_camera_model_info\\{camera="cam1",model="${ids.C}"[^}]*\\} 1`));
    assert.match(text, new RegExp(`fairline_camera_model_info\\{camera="cam2",model="${ids.D}"[^}]*\\} 1`));
    assert.doesNotMatch(text, new RegExp(`fairline_camera_model_info\\{camera="cam1",model="${ids.A}"`));
    assert.ok(logs.some((l) => /camera cam1: model swap to .*corrupt refused, test-[0-9a-f]+ keeps serving: ModelError \[checksum\]/.test(l)), logs.join('\n'));
    assert.equal(tf.memory().numTensors, tensors0, 'every model (old, new, refused) disposed after stop');
    await nc.close();
    console.log(`      ${engine}: cam1: ${got.cam1!.length} frames/verdicts (A until #${swapSeq - 1}), cam2: ${got.cam2!.length} frames/verdicts (B until #${got.cam2!.find((v) => v.model === ids.D)!.seq - 1})`);
  });
});
