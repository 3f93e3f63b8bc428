/**
 * The commands as an operator runs them (child processes): `fairline inspect` start-up failures
 * and SIGTERM, `fairline replay --nats`, `fairline calibrate`.
 */
import assert from 'node:assert/strict';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { readManifest } from '../../src/io/artefact.js';
import type { Verdict } from '../../src/verdict.js';
import { runFairline } from '../helpers.js';
import { startNatsServer, type NatsServerHandle } from '../fixtures/nats-server.js';
import { makeModel, tempDir, TEST_DIR } from './fixture.js';

/** Start the CLI (see runFairline in test/helpers.ts). */
const fairline = (args: string[], onStdout?: (out: string, kill: (s: NodeJS.Signals) => void) => void, timeoutMs?: number) => runFairline(args, { onStdout, timeoutMs });

describe('runtime/cli', function () {
  this.timeout(60000);
  let dir: string;
  let modelDir: string;
  let srv: NatsServerHandle;
  before(async () => {
    dir = tempDir('cli');
    modelDir = join(dir, 'model');
    makeModel(modelDir, { threshold: 1.1 });
    srv = await startNatsServer({ jetstream: true });
  });
  after(async () => {
    await srv?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('inspect: a bad config or a missing model exits non-zero with the reasons, before starting', async () => {
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, ['line: L1', 'station: S1', 'model: ./nowhere', 'cameras:', '  - id: cam 1', '    source: { type: rtsp, uri: rtsp://x }', 'batchh: {}'].join('\n'));
    const r = await fairline(['inspect', '--config', bad]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /ConfigValidationError \[bad_config\]: invalid config/);
    assert.match(r.stderr, /model: not found: .*nowhere/);
    assert.match(r.stderr, /cameras\[0\]\.id: 'cam 1' must contain only letters/);
    assert.match(r.stderr, /cameras\[0\]\.source\.uri: unknown key/);
    assert.match(r.stderr, /batchh: unknown key/);
    assert.doesNotMatch(r.stderr, /station .* started/);

    const empty = join(dir, 'empty-model');
    mkdirSync(empty, { recursive: true });
    const cfg = join(dir, 'nomodel.yaml');
    writeFileSync(cfg, ['line: L1', 'station: S1', `model: ${empty}`, 'cameras:', `  - { id: c, source: { type: images, dir: ${TEST_DIR} } }`].join('\n'));
    const m = await fairline(['inspect', '--config', cfg]);
    assert.equal(m.code, 2);
    assert.match(m.stderr, /ModelError \[missing\]: no model at .*empty-model/);
    assert.equal(m.stdout, '');
  });

  it('inspect: SIGTERM stops gracefully, every frame taken gets its verdict, exit 0', async () => {
    const cfg = join(dir, 'station.yaml');
    writeFileSync(
      cfg,
      [
        'line: L1', 'station: S1', `model: ${modelDir}`, 'backend: cpu', 'engine: tfjs',
        'cameras:', `  - { id: cam1, source: { type: images, dir: ${TEST_DIR}, pattern: "**/*.png", loop: true } }`,
        'batch: { maxSize: 4, maxWaitMs: 10 }', 'metrics: { port: 0 }',
      ].join('\n'),
    );
    let sent = false;
    const r = await fairline(['inspect', '--config', cfg], (out, kill) => {
      if (!sent && out.split('\n').length > 8) {
        sent = true;
        kill('SIGTERM');
      }
    });
    assert.ok(sent, `never got verdicts; stderr: ${r.stderr}`);
    assert.equal(r.code, 0, r.stderr);
    const verdicts = r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Verdict);
    // Replay-mode camera: in order, no gaps, nothing lost at the stop.
    assert.deepEqual(verdicts.map((v) => v.seq), [...Array(verdicts.length).keys()]);
    assert.ok(verdicts.every((v) => v.verdict !== 'error'));
    const m = /stopped \(SIGTERM\).*cam1: (\d+) frames/.exec(r.stderr);
    assert.ok(m, r.stderr);
    assert.equal(Number(m[1]), verdicts.length, 'frames taken == verdicts written');
    assert.match(r.stderr, /metrics: http:\/\/127\.0\.0\.1:\d+\/metrics/);
  });

  it('replay --nats publishes one verdict per image and prints the report; calibrate writes the threshold', async () => {
    const nc = await connect({ servers: srv.url });
    const got: Verdict[] = [];
    nc.subscribe('fairline.R1.cam9.verdict', { callback: (_e, msg) => void got.push(msg.json<Verdict>()) });
    await nc.flush();
    const r = await fairline(['replay', '--source', TEST_DIR, '--model', modelDir, '--engine', 'tfjs', '--nats', srv.url, '--jetstream', '--line', 'R1', '--camera', 'cam9', '--threshold', '1.2', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout) as { frames: number; threshold: number; confusion: { tp: number; fp: number; tn: number; fn: number }; published: { published: number } };
    assert.equal(report.frames, 23);
    assert.equal(report.threshold, 1.2);
    assert.equal(report.published.published, 23);
    const c = report.confusion;
    assert.equal(c.tp + c.fp + c.tn + c.fn, 23);
    await nc.flush();
    for (let i = 0; i < 50 && got.length < 23; i++) await new Promise((res) => setTimeout(res, 20));
    assert.equal(got.length, 23);
    assert.equal(got.filter((v) => v.verdict === 'reject').length, c.tp + c.fp);
    await nc.close();

    const cal = await fairline(['calibrate', '--model', modelDir, '--engine', 'tfjs', '--normal', join(TEST_DIR, 'good'), '--target-frr', '0.2', '--json']);
    assert.equal(cal.code, 0, cal.stderr);
    const out = JSON.parse(cal.stdout) as { threshold: number; n: number; written: boolean };
    assert.deepEqual([out.n, out.written], [6, true]);
    assert.equal(readManifest(modelDir).thresholds!.image, out.threshold);
  });
});
