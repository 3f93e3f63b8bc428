/**
 * The station: config -> cameras -> graph -> NATS (JetStream on), metrics, graceful stop.
 */
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { expandEnv, parseConfig, type FairlineConfig } from '../../src/config.js';
import { ModelError } from '../../src/errors.js';
import { useBackend } from '../../src/model/tfjs/backend.js';
import { startStation, streamSink, type VerdictSink } from '../../src/runtime/station.js';
import { isVerdict, type Verdict } from '../../src/verdict.js';
import { startNatsServer, type NatsServerHandle } from '../fixtures/nats-server.js';
import { REPO_ROOT } from '../helpers.js';
import { makeModel, tempDir, TEST_DIR } from './fixture.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
async function waitFor(cond: () => boolean, ms: number, what: string): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** A sink that keeps verdicts in memory. */
function memorySink(): VerdictSink & { got: Verdict[]; closed: boolean } {
  const s = { kind: 'memory', got: [] as Verdict[], closed: false, publish: (v: Verdict) => void s.got.push(v), close: async () => void (s.closed = true) };
  return s;
}

describe('runtime/station', function () {
  this.timeout(60000);
  let dir: string;
  let modelDir: string;
  let srv: NatsServerHandle;
  const config = (over: Record<string, unknown> = {}): FairlineConfig =>
    parseConfig(
      {
        line: 'L1',
        station: 'S1',
        model: modelDir,
        backend: 'cpu',
        engine: 'tfjs',
        cameras: [{ id: 'cam1', source: { type: 'images', dir: TEST_DIR, pattern: '**/*.png', loop: true } }],
        batch: { maxSize: 4, maxWaitMs: 10 },
        metrics: { port: 0 },
        nats: { servers: [srv.url], jetstream: { enabled: true, stream: 'FAIRLINE_ST' } },
        spool: { dir: join(dir, 'spool') },
        ...over,
      },
      { baseDir: dir },
    );

  before(async () => {
    await useBackend('cpu');
    dir = tempDir('station');
    modelDir = join(dir, 'model');
    makeModel(modelDir, { threshold: 1.1 });
    srv = await startNatsServer({ jetstream: true });
  });
  after(async () => {
    await srv?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('runs cameras to NATS and metrics; stop() gives every frame taken its verdict and flushes', async () => {
    const nc: NatsConnection = await connect({ servers: srv.url });
    const got: Verdict[] = [];
    nc.subscribe('fairline.L1.cam1.verdict', { callback: (_e, m) => void got.push(m.json<Verdict>()) });
    await nc.flush();
    const station = await startStation({ config: config() });
    assert.ok(station.metricsUrl?.startsWith('http://127.0.0.1:'));
    await waitFor(() => got.length >= 10, 30000, '10 verdicts');
    const summary = await station.stop();
    await nc.flush();
    await sleep(100);
    const cam = summary.cameras.cam1!;
    assert.equal(summary.reason, 'stop');
    assert.equal(summary.unfinished, 0);
    assert.equal(summary.failed, false);
    // Every frame the source gave has exactly one verdict, and NATS has all of them.
    assert.equal(cam.verdicts.pass + cam.verdicts.reject + cam.verdicts.error, cam.frames);
    assert.equal(got.length, cam.frames);
    assert.deepEqual(got.map((v) => v.seq).sort((a, b) => a - b), [...Array(cam.frames).keys()]);
    assert.ok(got.every((v) => isVerdict(v) && v.station === 'S1' && v.threshold === 1.1));
    assert.equal(summary.published?.pending, 0);
    assert.equal(summary.published?.published, cam.frames);
    // Past the 23-image folder: the loop keeps going with increasing seq.
    assert.ok(cam.frames >= 10);
    // Metrics were served while running and the server is closed after stop.
    await assert.rejects(fetch(station.metricsUrl!));
    const text = await station.metrics.registry.metrics();
    assert.match(text, new RegExp(`fairline_frames_received_total\\{camera="cam1",line="L1",station="S1"\\} ${cam.frames}`));
    assert.match(text, /fairline_model_info\{model="test-[0-9a-f]+",backend="cpu",engine="tfjs-cpu"/);
    assert.equal(await station.stop(), summary, 'stop is idempotent');
    await nc.close();
  });

  it('stops by itself when every source ends, and serves /metrics meanwhile', async () => {
    const sink = memorySink();
    const cfg = config({ cameras: [{ id: 'good', source: { type: 'images', dir: join(TEST_DIR, 'good'), loop: false } }] });
    const station = await startStation({ config: cfg, sink });
    const res = await fetch(station.metricsUrl!);
    assert.equal(res.status, 200);
    assert.match(await res.text(), /fairline_model_info/);
    const summary = await station.done;
    assert.equal(summary.reason, 'completed');
    assert.equal(summary.cameras.good!.frames, 6);
    assert.equal(sink.got.length, 6);
    assert.ok(sink.closed);
    assert.ok(sink.got.every((v) => v.score !== null && v.label === undefined));
  });

  it('live synthetic camera: graceful stop with deadlines on, one verdict per frame, per-camera threshold', async () => {
    const sink = memorySink();
    const cfg = config({
      cameras: [{ id: 'sim', mode: 'live', threshold: 0.123, source: { type: 'synthetic', width: 96, height: 80, fps: 20, defectRate: 0.3, seed: 2 } }],
      deadlineMs: 5000,
      metrics: { enabled: false },
    });
    const station = await startStation({ config: cfg, sink });
    await waitFor(() => sink.got.length >= 8, 20000, '8 verdicts');
    const summary = await station.stop('test');
    const cam = summary.cameras.sim!;
    assert.equal(summary.reason, 'test');
    assert.equal(sink.got.length, cam.frames);
    assert.equal(new Set(sink.got.map((v) => v.seq)).size, cam.frames);
    assert.ok(sink.got.filter((v) => v.verdict !== 'error').every((v) => v.threshold === 0.123));
    assert.ok(sink.got.every((v) => v.label === 0 || v.label === 1), 'synthetic frames carry labels');
    assert.equal(station.metricsUrl, undefined);
  });

  it('fails before starting: missing threshold, model/config mismatch', async () => {
    const d = join(dir, 'uncal');
    makeModel(d);
    await assert.rejects(startStation({ config: config({ model: d }), sink: memorySink() }), (e: unknown) => e instanceof ModelError && e.code === 'no_threshold');
    await assert.rejects(startStation({ config: config(), sink: memorySink(), expect: { size: 256 } }), (e: unknown) => e instanceof ModelError && e.code === 'model_mismatch');
    // A per-camera threshold makes the uncalibrated model usable.
    const s = await startStation({ config: config({ model: d, cameras: [{ id: 'c', threshold: 2, source: { type: 'images', dir: join(TEST_DIR, 'good'), loop: false } }] }), sink: memorySink() });
    assert.equal((await s.done).cameras.c!.frames, 6);
  });

  it('deploy/fairline.example.yaml is a valid config', () => {
    const raw = parseYaml(readFileSync(join(REPO_ROOT, 'deploy', 'fairline.example.yaml'), 'utf8')) as Record<string, unknown>;
    const cfg = parseConfig(raw, { baseDir: join(REPO_ROOT, 'deploy'), checkFiles: false });
    assert.deepEqual(cfg.cameras.map((c) => [c.id, c.source.type, c.mode]), [['cam0', 'v4l2', 'live'], ['cam1', 'rtsp', 'live']]);
    assert.equal(cfg.spool.maxBytes, 256 * 2 ** 20);
    assert.equal(cfg.nats.jetstream.enabled, true);
    // Every commented-out camera is valid too once uncommented.
    const text = readFileSync(join(REPO_ROOT, 'deploy', 'fairline.example.yaml'), 'utf8');
    const commented = [...text.matchAll(/^  # - id: [\s\S]*?(?=^\s*$|^  # A |^  # Any |^  # Generated |^  # [A-Z])/gm)].map((m) => m[0]!.replace(/^  # ?/gm, '  '));
    assert.equal(commented.length, 4);
    for (const cam of commented) {
      const c = parseConfig({ ...raw, cameras: parseYaml(cam) }, { baseDir: join(REPO_ROOT, 'deploy'), checkFiles: false });
      assert.equal(c.cameras.length, 1);
    }
  });

  it('the compose and Kubernetes configs in deploy/ are valid', () => {
    const env = { FAIRLINE_NATS_PASSWORD: 'pw' };
    const compose = parseConfig(expandEnv(parseYaml(readFileSync(join(REPO_ROOT, 'deploy', 'compose', 'config.yaml'), 'utf8')), '', env), { baseDir: '/', checkFiles: false });
    assert.equal(compose.nats.pass, 'pw');
    assert.equal(compose.metrics.host, '0.0.0.0');
    const k8s = parseYaml(readFileSync(join(REPO_ROOT, 'deploy', 'k8s', 'fairline.yaml'), 'utf8').split(/^---$/m)[0]!) as { data: Record<string, string> };
    const cfg = parseConfig(expandEnv(parseYaml(k8s.data['config.yaml']!), '', env), { baseDir: '/', checkFiles: false });
    assert.deepEqual(cfg.cameras.map((c) => c.source.type), ['rtsp']);
    assert.equal(cfg.nats.user, 'fairline');
  });

  it('writes JSON lines with the stdout sink', async () => {
    const chunks: string[] = [];
    const { Writable } = await import('node:stream');
    const out = new Writable({ write: (c: Buffer, _e, cb) => (chunks.push(c.toString()), cb()) });
    const sink = streamSink(out);
    sink.publish({ schema: 'fairline.verdict/v1', line: 'L', station: 'S', camera: 'c', seq: 0, captureTs: 1, decidedTs: 2, latencyMs: 1, model: 'm', score: 0.1, threshold: 0.2, verdict: 'pass', regions: [] });
    await sink.close();
    const lines = chunks.join('').split('\n').filter(Boolean);
    assert.equal(lines.length, 1);
    assert.ok(isVerdict(JSON.parse(lines[0]!)));
  });
});
