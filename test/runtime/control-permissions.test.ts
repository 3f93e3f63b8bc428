/**
 * The control subject's access control is the NATS account's: deploy/nats-permissions.conf (the
 * README's example) on a real nats-server. The operator may request `status` and `load`; the
 * viewer and the PLC may not (the server refuses their publish, the station never sees it); the
 * viewer reads verdicts; the station runs under its own restricted user.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { parseConfig } from '../../src/config.js';
import type { RuntimeModel } from '../../src/runtime/model.js';
import { startStation } from '../../src/runtime/station.js';
import type { Verdict } from '../../src/verdict.js';
import { freePort } from '../fixtures/nats-server.js';
import { REPO_ROOT } from '../helpers.js';
import { fakeModel, tempDir } from './fixture.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const PASS = { FAIRLINE_STATION_PASS: 'station-pw', FAIRLINE_OPERATOR_PASS: 'operator-pw', FAIRLINE_PLC_PASS: 'plc-pw', FAIRLINE_VIEWER_PASS: 'viewer-pw' };

describe('runtime/control permissions (deploy/nats-permissions.conf)', function () {
  this.timeout(120000);
  let dir: string;
  let proc: ChildProcess;
  let url: string;
  before(async () => {
    dir = tempDir('perm');
    mkdirSync(join(dir, 'm'));
    const port = await freePort();
    url = `nats://127.0.0.1:${port}`;
    proc = spawn('nats-server', ['-c', join(REPO_ROOT, 'deploy', 'nats-permissions.conf'), '-p', String(port), '-sd', join(dir, 'js'), '-l', join(dir, 'nats.log')], { stdio: 'ignore', env: { ...process.env, ...PASS } });
    for (let i = 0; i < 200; i++) {
      try {
        const nc = await connect({ servers: url, user: 'viewer', pass: PASS.FAIRLINE_VIEWER_PASS, reconnect: false });
        await nc.close();
        return;
      } catch {
        await sleep(50);
      }
    }
    throw new Error('nats-server with deploy/nats-permissions.conf did not come up');
  });
  after(() => {
    proc?.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('operator may control, viewer and PLC may not; viewer reads verdicts; the station runs under its own user', async () => {
    const model = fakeModel(join(dir, 'm'), 'fake-1', 0) as unknown as RuntimeModel;
    const config = parseConfig(
      {
        line: 'L1', station: 'S1', model: join(dir, 'm'), backend: 'cpu', engine: 'tfjs',
        cameras: [{ id: 'cam1', mode: 'live', source: { type: 'synthetic', width: 32, height: 32, fps: 10, defectRate: 0, seed: 1 } }],
        metrics: { enabled: false }, nats: { servers: [url], user: 'fairline-s1', pass: PASS.FAIRLINE_STATION_PASS }, spool: { dir: join(dir, 'spool') },
      },
      { baseDir: dir },
    );
    const logs: string[] = [];
    const as = (user: string, pass: string): Promise<NatsConnection> => connect({ servers: url, user, pass });
    const viewer = await as('viewer', PASS.FAIRLINE_VIEWER_PASS);
    const operator = await as('operator', PASS.FAIRLINE_OPERATOR_PASS);
    const plc = await as('plc', PASS.FAIRLINE_PLC_PASS);
    const seen: Verdict[] = [];
    viewer.subscribe('fairline.L1.cam1.verdict', { callback: (_e, m) => void seen.push(m.json<Verdict>()) });
    await viewer.flush();
    const station = await startStation({ config, model, log: (m) => void logs.push(m) });
    try {
      const status = (await operator.request('fairline.L1.S1.control', JSON.stringify({ op: 'status' }), { timeout: 10000 })).json<{ ok: boolean; cameras: Array<{ camera: string; model: string }> }>();
      assert.equal(status.ok, true);
      assert.deepEqual(status.cameras.map((c) => [c.camera, c.model]), [['cam1', 'fake-1']]);
      // The viewer's and the PLC's requests never reach the station: the server refuses the publish.
      await assert.rejects(viewer.request('fairline.L1.S1.control', JSON.stringify({ op: 'load', camera: 'cam1', model: '/tmp/x' }), { timeout: 1500 }));
      await assert.rejects(plc.request('fairline.L1.S1.control', JSON.stringify({ op: 'load', camera: 'cam1', model: '/tmp/x' }), { timeout: 1500 }));
      for (let i = 0; i < 100 && seen.length < 5; i++) await sleep(50);
      assert.ok(seen.length >= 5, `viewer saw ${seen.length} verdicts`);
    } finally {
      await station.stop('test');
    }
    const controlLines = logs.filter((l) => l.startsWith('control: {'));
    assert.equal(controlLines.length, 1, controlLines.join('\n'));
    assert.match(controlLines[0]!, /"op":"status"/);
    assert.equal(station.cameraModels.get('cam1')!.id, 'fake-1');
    for (const c of [viewer, operator, plc]) await c.close().catch(() => undefined);
  });
});
