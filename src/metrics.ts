/**
 * Prometheus metrics of a fairline process (prom-client), named per the Prometheus naming guide:
 * `fairline_` prefix, base units (seconds), `_total` for counters, labels with bounded values
 * (camera ids come from the config, reasons and stages are fixed error codes).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { ConfigError } from './errors.js';
import type { InspectHooks } from './operators/inspect.js';

export interface FairlineMetrics {
  registry: Registry;
  framesReceived: Counter<'camera'>;
  framesProcessed: Counter<'camera'>;
  framesDropped: Counter<'camera' | 'reason'>;
  stageDuration: Histogram<'stage'>;
  frameLatency: Histogram;
  batchSize: Histogram;
  queueDepth: Gauge;
  verdicts: Counter<'camera' | 'verdict'>;
  errors: Counter<'stage' | 'reason'>;
  modelInfo: Gauge<'model' | 'backend' | 'engine' | 'guard'>;
  framesGuarded: Counter<'camera' | 'reason'>;
  sourceUp: Gauge<'camera'>;
  sourceDown: Gauge<'camera' | 'reason'>;
  sourceReconnects: Counter<'camera'>;
  spoolDepth: Gauge;
  /** Reject capture and the operator page (src/streams/recorder.ts, src/ui/). */
  captures: Counter<'camera' | 'verdict'>;
  capturesDropped: Counter<'reason'>;
  captureBytes: Gauge;
  uiClients: Gauge;
  uiUpdatesDropped: Counter;
  reviewMarks: Counter<'label'>;
}

export interface MetricsOptions {
  /** Collect the default process/Node metrics (prefixed `fairline_`). Default true. */
  defaultMetrics?: boolean;
  /** Labels added to every series, e.g. `{ line: 'L1', station: 'S3' }`. */
  defaultLabels?: Record<string, string>;
}

/**
 * Create fairline's metrics in `registry` (a fresh one by default: prom-client refuses to
 * register a name twice, so each app instance or test gets its own).
 *
 * @example
 * ```ts
 * const m = createMetrics();
 * m.modelInfo.set({ model: 'hazelnut@ab12', backend: 'tensorflow', engine: 'tfjs' }, 1);
 * frames$.pipe(inspect({ ...deps, hooks: metricsHooks(m) }));
 * const server = await serveMetrics(m, { port: 9464 });
 * ```
 */
export function createMetrics(registry: Registry = new Registry(), opts: MetricsOptions = {}): FairlineMetrics {
  if (opts.defaultLabels) registry.setDefaultLabels(opts.defaultLabels);
  if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: registry, prefix: 'fairline_' });
  const registers = [registry];
  // Stage times run from ~0.5 ms (threshold) to seconds (a big batch on CPU).
  const durationBuckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
  return {
    registry,
    framesReceived: new Counter({ name: 'fairline_frames_received_total', help: 'Frames received from sources.', labelNames: ['camera'], registers }),
    framesProcessed: new Counter({ name: 'fairline_frames_processed_total', help: 'Frames scored by the model and decided pass/reject.', labelNames: ['camera'], registers }),
    framesDropped: new Counter({ name: 'fairline_frames_dropped_total', help: 'Frames dropped without inspection, by reason.', labelNames: ['camera', 'reason'], registers }),
    stageDuration: new Histogram({ name: 'fairline_stage_duration_seconds', help: 'Time spent per pipeline stage (decode and guard per frame, infer per batch).', labelNames: ['stage'], buckets: durationBuckets, registers }),
    frameLatency: new Histogram({ name: 'fairline_frame_latency_seconds', help: 'Capture to verdict latency.', buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers }),
    batchSize: new Histogram({ name: 'fairline_batch_size', help: 'Frames per model batch.', buckets: [1, 2, 4, 8, 16, 32, 64], registers }),
    queueDepth: new Gauge({ name: 'fairline_queue_depth', help: 'Frames waiting for the model.', registers }),
    verdicts: new Counter({ name: 'fairline_verdicts_total', help: 'Verdicts published, by kind.', labelNames: ['camera', 'verdict'], registers }),
    errors: new Counter({ name: 'fairline_errors_total', help: 'Frames that failed, by stage and error code.', labelNames: ['stage', 'reason'], registers }),
    modelInfo: new Gauge({ name: 'fairline_model_info', help: 'The loaded model (value is always 1).', labelNames: ['model', 'backend', 'engine', 'guard'], registers }),
    framesGuarded: new Counter({ name: 'fairline_frames_guarded_total', help: 'Frames the domain guard flagged (out_of_domain: unlike the normal images; stale_frame: frozen camera), whatever the configured action.', labelNames: ['camera', 'reason'], registers }),
    sourceUp: new Gauge({ name: 'fairline_source_up', help: '1 while the source delivers frames, 0 while it is down.', labelNames: ['camera'], registers }),
    sourceDown: new Gauge({ name: 'fairline_source_down', help: '1 while the source is down, with the error code of the last failure as reason (the log has the message); absent while up.', labelNames: ['camera', 'reason'], registers }),
    sourceReconnects: new Counter({ name: 'fairline_source_reconnects_total', help: 'Source reconnect attempts.', labelNames: ['camera'], registers }),
    spoolDepth: new Gauge({ name: 'fairline_spool_depth', help: 'Verdicts spooled on disk waiting for NATS.', registers }),
    captures: new Counter({ name: 'fairline_captures_total', help: 'Frames captured into record.dir (rejects and sampled passes).', labelNames: ['camera', 'verdict'], registers }),
    capturesDropped: new Counter({ name: 'fairline_captures_dropped_total', help: 'Captures not written, by reason (queue_full: the disk is too slow; disk_full; write_error; too_large; bad_frame; closed).', labelNames: ['reason'], registers }),
    captureBytes: new Gauge({ name: 'fairline_capture_bytes', help: 'Bytes of captures in record.dir.', registers }),
    uiClients: new Gauge({ name: 'fairline_ui_clients', help: 'Operator pages connected (event streams).', registers }),
    uiUpdatesDropped: new Counter({ name: 'fairline_ui_updates_dropped_total', help: 'Operator page updates not sent to a browser that was not reading.', registers }),
    reviewMarks: new Counter({ name: 'fairline_review_marks_total', help: 'Captures marked on the operator page, by label.', labelNames: ['label'], registers }),
  };
}

/**
 * Hooks that feed the inspection graph's events into the metrics.
 * Error verdicts count in `fairline_errors_total{stage,reason}`; fail-safe verdicts count there
 * with stage `deadline`; dropped frames additionally in `fairline_frames_dropped_total`; frames
 * the domain guard flags in `fairline_frames_guarded_total{camera,reason}`.
 */
export function metricsHooks(m: FairlineMetrics): InspectHooks {
  return {
    onFrame: (f) => m.framesReceived.inc({ camera: f.sourceId }),
    onStageDuration: (stage, s) => m.stageDuration.observe({ stage }, s),
    onBatch: (n) => m.batchSize.observe(n),
    onQueueDepth: (n) => m.queueDepth.set(n),
    onDrop: (f, reason) => m.framesDropped.inc({ camera: f.sourceId, reason }),
    onLate: () => m.errors.inc({ stage: 'deadline', reason: 'late' }),
    onGuard: (f, g) => m.framesGuarded.inc({ camera: f.sourceId, reason: g.status }),
    onVerdict: (v) => {
      m.verdicts.inc({ camera: v.camera, verdict: v.verdict });
      m.frameLatency.observe(Math.max(0, v.latencyMs) / 1000);
      if (v.verdict === 'error') m.errors.inc({ stage: v.stage ?? 'unknown', reason: v.reason ?? 'unknown' });
      else if (v.failSafe) m.errors.inc({ stage: 'deadline', reason: v.reason ?? 'deadline' });
      else m.framesProcessed.inc({ camera: v.camera });
    },
  };
}

export interface MetricsServer {
  /** e.g. `http://127.0.0.1:9464/metrics` */
  url: string;
  port: number;
  close(): Promise<void>;
}

/**
 * Serve `GET /metrics` (Prometheus text format) on `host:port`; other paths give 404, other
 * methods 405. Binds to 127.0.0.1 unless told otherwise: metrics reveal camera ids and the model,
 * so exposing them on all interfaces is an explicit choice. `port: 0` picks a free port.
 */
export function serveMetrics(metrics: Pick<FairlineMetrics, 'registry'>, opts: { host?: string; port: number }): Promise<MetricsServer> {
  const host = opts.host ?? '127.0.0.1';
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) return Promise.reject(new ConfigError(`metrics.port must be an integer 0..65535, got ${opts.port}`));
  const { registry } = metrics;
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/metrics') {
      res.statusCode = 404;
      res.end('not found\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.statusCode = 405;
      res.setHeader('Allow', 'GET, HEAD');
      res.end();
      return;
    }
    registry.metrics().then(
      (text) => {
        res.setHeader('Content-Type', registry.contentType);
        res.end(req.method === 'HEAD' ? undefined : text);
      },
      (err: unknown) => {
        res.statusCode = 500;
        res.end(`metrics collection failed: ${err instanceof Error ? err.message : String(err)}\n`);
      },
    );
  });
  return new Promise((resolve, reject) => {
    server.once('error', (err) => reject(new ConfigError(`cannot serve metrics on ${host}:${opts.port}: ${err.message}`, { cause: err })));
    server.listen(opts.port, host, () => {
      const port = (server.address() as AddressInfo).port;
      const shownHost = host.includes(':') ? `[${host}]` : host;
      resolve({
        url: `http://${shownHost}:${port}/metrics`,
        port,
        close: () =>
          new Promise<void>((res, rej) => {
            server.close((err) => (err ? rej(err) : res()));
            server.closeAllConnections();
          }),
      });
    });
  });
}
