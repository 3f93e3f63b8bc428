/**
 * The operator view inside a station (src/ui/view.ts wired by src/runtime/station.ts): capture
 * without a page, the page's counters in the metrics, and nothing leaked per frame.
 */
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { parse as parseYaml } from 'yaml';
import { expandEnv, parseConfig } from '../../src/config.js';
import { scanCaptures } from '../../src/io/captures.js';
import { useBackend } from '../../src/model/tfjs/backend.js';
import { startStation, type VerdictSink } from '../../src/runtime/station.js';
import type { Verdict } from '../../src/verdict.js';
import { REPO_ROOT } from '../helpers.js';
import { makeModel, tempDir } from '../runtime/fixture.js';

describe('ui/view in a station', function () {
  this.timeout(60000);
  let dir: string;
  before(async () => {
    await useBackend('cpu');
    dir = tempDir('ui-station');
    makeModel(join(dir, 'model'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const config = (over: Record<string, unknown>) =>
    parseConfig(
      {
        line: 'L1', station: 'S1', model: join(dir, 'model'), backend: 'cpu', engine: 'tfjs',
        // Every frame a reject (a random model scores far above 0.01).
        threshold: 0.01,
        cameras: [{ id: 'sim', mode: 'live', source: { type: 'synthetic', width: 80, height: 60, fps: 20, count: 12, defectRate: 0.3, seed: 4 } }],
        batch: { maxSize: 4, maxWaitMs: 10 }, deadlineMs: 20000, metrics: { port: 0 },
        ...over,
      },
      { baseDir: dir },
    );
  const memory = (): VerdictSink & { got: Verdict[] } => {
    const got: Verdict[] = [];
    return { kind: 'memory', got, publish: (v) => void got.push(v), close: async () => undefined };
  };

  it('captures every reject without a page, at source resolution, counted in the metrics; no tensors left behind', async () => {
    const sink = memory();
    const before = tf.memory().numTensors;
    const station = await startStation({ config: config({ record: { dir: 'caps' } }), sink });
    assert.equal(station.uiUrl, undefined);
    const summary = await station.done;
    assert.equal(summary.cameras.sim!.frames, 12);
    const rejects = sink.got.filter((v) => v.verdict === 'reject');
    assert.equal(rejects.length, 12);
    const caps = await scanCaptures(join(dir, 'caps'));
    assert.deepEqual(caps.map((c) => Number(c.id.split('_').at(-1))), rejects.map((v) => v.seq).sort((a, b) => a - b), 'one capture per reject, closed before the station reported done');
    const text = await station.metrics.registry.metrics();
    assert.match(text, /fairline_captures_total\{camera="sim",verdict="reject",line="L1",station="S1"\} 12/);
    assert.match(text, new RegExp(`fairline_capture_bytes\\{line="L1",station="S1"\\} ${caps.reduce((a, c) => a + c.bytes, 0)}`));
    assert.equal(tf.memory().numTensors, before, 'no tensors leaked');
  });

  it("deploy/fairline.example.yaml's commented ui and record sections are valid once uncommented", () => {
    const text = readFileSync(join(REPO_ROOT, 'deploy', 'fairline.example.yaml'), 'utf8');
    const raw = parseYaml(text) as Record<string, unknown>;
    for (const key of ['ui', 'record']) Object.assign(raw, parseYaml(new RegExp(`^# (${key}: .*)$`, 'm').exec(text)![1]!));
    const cfg = parseConfig(expandEnv(raw, '', { FAIRLINE_UI_TOKEN: '0123456789abcdef' }), { baseDir: join(REPO_ROOT, 'deploy'), checkFiles: false });
    assert.deepEqual(cfg.ui, { listen: { host: '127.0.0.1', port: 8080 }, token: '0123456789abcdef' });
    assert.deepEqual(cfg.record, { dir: '/var/lib/fairline/captures', rejects: true, passEvery: 0, keepDays: 7, maxBytes: 2 ** 30 });
  });

  it('serves the page when configured and counts its viewers in the metrics', async () => {
    const station = await startStation({ config: config({ ui: { listen: '0' }, cameras: [{ id: 'sim', mode: 'live', source: { type: 'synthetic', width: 80, height: 60, fps: 10, defectRate: 0.3, seed: 4 } }] }), sink: memory() });
    try {
      assert.match(station.uiUrl!, /^http:\/\/127\.0\.0\.1:\d+\/$/);
      const ctl = new AbortController();
      const res = await fetch(`${station.uiUrl}events`, { signal: ctl.signal });
      assert.equal(res.status, 200);
      await new Promise((r) => setTimeout(r, 1200));
      const st = (await (await fetch(`${station.uiUrl}api/state`)).json()) as { cameras: { id: string; frames: number; state: string }[]; clients: number };
      assert.equal(st.cameras[0]!.id, 'sim');
      assert.equal(st.cameras[0]!.state, 'up');
      assert.ok(st.cameras[0]!.frames > 0);
      assert.equal(st.clients, 1);
      assert.match(await station.metrics.registry.metrics(), /fairline_ui_clients\{line="L1",station="S1"\} 1/);
      ctl.abort();
    } finally {
      await station.stop();
    }
    await assert.rejects(fetch(station.uiUrl!), 'the page is closed with the station');
  });
});
