import assert from 'node:assert/strict';
import { request } from 'node:http';
import { lastValueFrom, of, toArray } from 'rxjs';
import { Registry } from 'prom-client';
import { createMetrics, metricsHooks, serveMetrics } from '../../src/metrics.js';
import { inspect } from '../../src/operators/inspect.js';
import type { Frame } from '../../src/streams/frame.js';

function get(url: string, method = 'GET'): Promise<{ status: number; type: string | undefined; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: res.headers['content-type'], body }));
    });
    req.on('error', reject);
    req.end();
  });
}

const NAMES = [
  'fairline_frames_received_total', 'fairline_frames_processed_total', 'fairline_frames_dropped_total', 'fairline_stage_duration_seconds',
  'fairline_frame_latency_seconds', 'fairline_batch_size', 'fairline_queue_depth', 'fairline_verdicts_total', 'fairline_errors_total',
  'fairline_model_info', 'fairline_source_up', 'fairline_source_reconnects_total', 'fairline_spool_depth',
];

describe('Prometheus metrics (src/metrics.ts)', () => {
  it('registers every fairline metric and prefixed default process metrics', async () => {
    const m = createMetrics(new Registry(), { defaultLabels: { line: 'L1' } });
    m.modelInfo.set({ model: 'toy', backend: 'cpu', engine: 'tfjs' }, 1);
    m.sourceUp.set({ camera: 'cam0' }, 1);
    const text = await m.registry.metrics();
    for (const name of NAMES) assert.match(text, new RegExp(`^# TYPE ${name} `, 'm'), name);
    assert.match(text, /^# TYPE fairline_process_cpu_user_seconds_total counter/m);
    assert.match(text, /^fairline_model_info\{model="toy",backend="cpu",engine="tfjs",line="L1"\} 1$/m);
    // Counters end in _total, durations are in seconds (naming guide).
    for (const mt of await m.registry.getMetricsAsJSON()) {
      if (String(mt.type) === 'counter') assert.match(mt.name, /_total$/, mt.name);
      assert.match(mt.name, /^fairline_/);
    }
    // A second set of metrics in its own registry does not clash.
    assert.doesNotThrow(() => createMetrics());
  });

  it('counts what the inspection graph does through metricsHooks', async () => {
    const m = createMetrics(new Registry(), { defaultMetrics: false });
    const mk = (seq: number, bytes = 3): Frame => ({ sourceId: 'cam0', seq, captureTs: Date.now(), payload: { data: new Uint8Array(bytes).fill(seq * 60), width: 1, height: 1, format: 'bgr' } });
    const verdicts = await lastValueFrom(
      of(mk(1), mk(2), mk(3, 2), mk(4)).pipe(
        inspect({
          decode: (f) => ({ width: 1, height: 1, channels: 3, data: Float32Array.from(f.payload.data, (v) => v / 255) }),
          model: { id: 'toy', inferBatch: async (imgs) => imgs.map((i) => ({ score: i.data[0]! })) },
          threshold: 0.5, mode: 'replay', context: { line: 'L1', station: 'S1' }, batch: { maxSize: 2, maxWaitMs: 5 },
          hooks: metricsHooks(m),
        }),
        toArray(),
      ),
    );
    assert.equal(verdicts.length, 4);
    const text = await m.registry.metrics();
    assert.match(text, /^fairline_frames_received_total\{camera="cam0"\} 4$/m);
    assert.match(text, /^fairline_frames_processed_total\{camera="cam0"\} 3$/m);
    assert.match(text, /^fairline_verdicts_total\{camera="cam0",verdict="pass"\} 2$/m); // 60/255, 120/255
    assert.match(text, /^fairline_verdicts_total\{camera="cam0",verdict="reject"\} 1$/m); // 240/255
    assert.match(text, /^fairline_verdicts_total\{camera="cam0",verdict="error"\} 1$/m);
    assert.match(text, /^fairline_errors_total\{stage="decode",reason="bad_frame"\} 1$/m);
    assert.match(text, /^fairline_batch_size_count 2$/m);
    assert.match(text, /^fairline_batch_size_sum 3$/m);
    assert.match(text, /^fairline_stage_duration_seconds_count\{stage="decode"\} 4$/m);
    assert.match(text, /^fairline_stage_duration_seconds_count\{stage="infer"\} 2$/m);
    assert.match(text, /^fairline_frame_latency_seconds_count 4$/m);
  });

  it('serves /metrics over HTTP on 127.0.0.1 and closes cleanly', async () => {
    const m = createMetrics();
    m.framesDropped.inc({ camera: 'cam0', reason: 'queue_full' }, 3);
    const server = await serveMetrics(m, { port: 0 });
    try {
      assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
      assert.ok(server.port > 0);
      const res = await get(server.url);
      assert.equal(res.status, 200);
      assert.match(res.type ?? '', /^text\/plain; version=0\.0\.4/);
      assert.match(res.body, /^fairline_frames_dropped_total\{camera="cam0",reason="queue_full"\} 3$/m);
      assert.match(res.body, /^fairline_process_resident_memory_bytes /m);
      assert.equal((await get(server.url.replace('/metrics', '/other'))).status, 404);
      assert.equal((await get(server.url, 'POST')).status, 405);
    } finally {
      await server.close();
    }
    await assert.rejects(get(server.url), /ECONNREFUSED/);
  });

  it('rejects an unusable port or address with a ConfigError', async () => {
    await assert.rejects(serveMetrics(createMetrics(new Registry(), { defaultMetrics: false }), { port: 70000 }), { name: 'ConfigError' });
    const a = await serveMetrics(createMetrics(new Registry(), { defaultMetrics: false }), { port: 0 });
    try {
      await assert.rejects(serveMetrics(createMetrics(new Registry(), { defaultMetrics: false }), { port: a.port }), /cannot serve metrics.*EADDRINUSE/);
    } finally {
      await a.close();
    }
  });
});
