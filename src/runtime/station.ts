/**
 * A running inspection station: every configured camera through its own inspection graph
 * (src/operators/inspect.ts), verdicts to NATS (or JSON lines on stdout), Prometheus metrics,
 * and a graceful stop.
 *
 * Start-up order is chosen so that anything misconfigured fails before a single frame is taken:
 * model (checksums, spec, threshold) -> metrics port -> verdict sink -> sources.
 *
 * Stop (`stop()`, SIGINT, SIGTERM): the sources are completed (not cut), so every frame already
 * taken flows through decode, its batch and the model and gets its verdict; then the sink is
 * flushed (NATS: until the server has every verdict, or into the spool) and closed. A second
 * signal exits at once. A station whose sources all end by themselves (an image folder
 * without `loop`) stops the same way.
 */
import { EMPTY, Subject, catchError, takeUntil, type Observable, type Subscription } from 'rxjs';
import type { Registry } from 'prom-client';
import { cameraGuard, type CameraConfig, type FairlineConfig, type NatsConfig } from '../config.js';
import { ModelError, asFairlineError, type FairlineError } from '../errors.js';
import { createMetrics, metricsHooks, serveMetrics, type FairlineMetrics, type MetricsServer } from '../metrics.js';
import { inspect, type InspectHooks } from '../operators/inspect.js';
import type { Frame } from '../streams/frame.js';
import { VerdictPublisher, type NatsConnectOptions, type PublisherStats } from '../streams/nats.js';
import { startOperatorView } from '../ui/view.js';
import { gateRejects, type Verdict, type VerdictKind } from '../verdict.js';
import { frameDecoder, loadInspectModel, type ModelExpectation, type RuntimeModel } from './model.js';
import { cameraSource } from './sources.js';
import { startControl } from './control.js';
import { partIdStage } from './part-ids.js';
import { CameraModel, ModelRegistry, cameraModelGauge, planReload, swapCounter, type ModelLoader, type SwapResult } from './models.js';
import { trackSource } from './source-state.js';

/** Where verdicts go. */
export interface VerdictSink {
  readonly kind: string;
  /** Queue a verdict; must not block. */
  publish(v: Verdict): void;
  /** Deliver what is pending (bounded in time), then release resources. */
  close(): Promise<void>;
  /** Delivery counters (NATS). */
  stats?(): PublisherStats;
}

/** The client options for a config's `nats` section. Env `FAIRLINE_NATS_PASSWORD` overrides `pass` (keeps secrets out of config files). */
export function natsConnectOptions(n: NatsConfig, name = 'fairline'): NatsConnectOptions {
  const o: NatsConnectOptions = { servers: n.servers, name };
  const envPass = process.env.FAIRLINE_NATS_PASSWORD;
  if (n.user !== undefined) {
    o.user = n.user;
    o.pass = envPass !== undefined && envPass !== '' ? envPass : (n.pass ?? '');
  }
  if (n.token !== undefined) o.token = n.token;
  if (n.nkey !== undefined) o.nkeySeed = n.nkey;
  if (n.credsFile !== undefined) o.credsFile = n.credsFile;
  if (n.tls) {
    o.tls = {};
    if (n.tls.ca !== undefined) o.tls.caFile = n.tls.ca;
    if (n.tls.cert !== undefined) o.tls.certFile = n.tls.cert;
    if (n.tls.key !== undefined) o.tls.keyFile = n.tls.key;
  }
  return o;
}

export interface NatsSinkOptions {
  line: string;
  /** The station's fail-safe: with 'reject', error verdicts also go to the reject subject (default 'reject'). */
  failSafe?: 'reject' | 'pass';
  nats: NatsConfig;
  spool: { dir: string; maxBytes: number };
  /** Connection name shown by the server (default `fairline-<line>`). */
  name?: string;
  metrics?: FairlineMetrics;
  log?: (msg: string) => void;
  /** How long close() may try to deliver what is pending before leaving it in the spool (default 5000 ms). */
  closeTimeoutMs?: number;
}

/**
 * Verdicts to NATS through {@link VerdictPublisher} (spool while disconnected; JetStream audit
 * stream when `nats.jetstream.enabled`). Subjects `fairline.<line>.<camera>.verdict` and `.reject`.
 *
 * @example
 * ```ts
 * const sink = await natsSink({ line: cfg.line, failSafe: cfg.failSafe, nats: cfg.nats, spool: cfg.spool, log });
 * verdicts$.subscribe((v) => sink.publish(v));
 * await sink.close();
 * ```
 */
export async function natsSink(o: NatsSinkOptions): Promise<VerdictSink & { publisher: VerdictPublisher<Verdict> }> {
  const m = o.metrics;
  const log = o.log ?? (() => undefined);
  let publisher: VerdictPublisher<Verdict> | undefined;
  const depth = (): void => {
    if (m && publisher) m.spoolDepth.set(publisher.stats().pending);
  };
  publisher = await VerdictPublisher.create<Verdict>({
    line: o.line,
    nats: natsConnectOptions(o.nats, o.name ?? `fairline-${o.line}`),
    spool: { dir: o.spool.dir, maxBytes: o.spool.maxBytes },
    jetstream: o.nats.jetstream.enabled ? { stream: o.nats.jetstream.stream } : false,
    isReject: (v) => gateRejects(v, o.failSafe ?? 'reject'),
    hooks: {
      onPublished: depth,
      onSpooled: depth,
      onDropped: (n, reason) => {
        m?.errors.inc({ stage: 'publish', reason }, n);
        log(`nats: ${n} verdict(s) lost (${reason})`);
      },
      onStatus: (s, detail) => log(`nats: ${s}${detail ? ` (${detail})` : ''}`),
      onError: (err) => log(`nats: ${err.code}: ${err.message}`),
    },
  });
  const pub = publisher;
  return {
    kind: 'nats',
    publisher: pub,
    publish: (v) => pub.publish(v),
    stats: () => pub.stats(),
    async close() {
      await pub.close(o.closeTimeoutMs ?? 5000);
      const s = pub.stats();
      if (s.pending > 0) log(`nats: ${s.pending} verdict(s) left in the spool ${o.spool.dir} for the next start`);
      depth();
    },
  };
}

/**
 * Verdicts as JSON lines on a stream (stdout by default), for a station without NATS or for
 * piping into other tools. close() waits until the stream has taken everything.
 */
export function streamSink(stream: NodeJS.WritableStream = process.stdout): VerdictSink {
  return {
    kind: 'stdout',
    publish: (v) => {
      stream.write(`${JSON.stringify(v)}\n`);
    },
    close: () =>
      new Promise<void>((resolve) => {
        // An empty write's callback runs after everything queued before it was handed to the OS.
        stream.write('', () => resolve());
      }),
  };
}

export interface StationOptions {
  config: FairlineConfig;
  /** `nats` (the config's server, default), `stdout` (JSON lines) or any sink. */
  sink?: 'nats' | 'stdout' | VerdictSink;
  /** An already loaded model (tests, or a caller that shares it); the station then does not dispose it. */
  model?: RuntimeModel;
  /** Checks of the model against the deployment (size, channels). */
  expect?: ModelExpectation;
  /** Install SIGINT/SIGTERM handlers that stop gracefully (the CLI does). */
  handleSignals?: boolean;
  /** Longest wait for in-flight frames after stop (default 20000 ms; systemd gives 30 s). */
  drainTimeoutMs?: number;
  /** Serve metrics even if the config disables them (`false` never serves). Default: the config. */
  serveMetrics?: boolean;
  registry?: Registry;
  log?: (msg: string) => void;
  /** Re-read the config on SIGHUP (with `handleSignals`) and swap the cameras whose model changed (src/runtime/models.ts). */
  reloadConfig?: () => Promise<FairlineConfig>;
  /** Serve the control subject `fairline.<line>.<station>.control` (default: when verdicts go to NATS). */
  control?: boolean;
  /** Loads `cameras[].model` artefacts and swap targets (default: loadInspectModel with the config's engine). */
  loadModel?: ModelLoader;
}

export interface CameraSummary {
  mode: 'live' | 'replay';
  /** Frames that entered the graph. */
  frames: number;
  verdicts: Record<VerdictKind, number>;
  /** Frames lost without a verdict: inside the source (GStreamer's live drop) and in the model queue (live drop-oldest). */
  dropped: { source: number; queue: number };
  /** The camera's stream ended with this error (e.g. a bad pipeline). */
  error?: string;
}

export interface StationSummary {
  /** Why the station stopped: `completed` (all sources ended), `stop`, or the signal name. */
  reason: string;
  seconds: number;
  cameras: Record<string, CameraSummary>;
  /** Frames taken from sources without a verdict (only after a drain timeout). */
  unfinished: number;
  /** Publish calls the sink refused. */
  publishErrors: number;
  sink: string;
  published?: PublisherStats;
  /** True when a camera failed; the CLI exits non-zero then. */
  failed: boolean;
}

export interface Station {
  readonly model: RuntimeModel;
  readonly metrics: FairlineMetrics;
  /** `http://127.0.0.1:9464/metrics`, when served. */
  readonly metricsUrl: string | undefined;
  /** The operator page (config `ui`), when served. */
  readonly uiUrl: string | undefined;
  readonly sink: VerdictSink;
  /** Each camera's model (swappable). */
  readonly cameraModels: ReadonlyMap<string, CameraModel>;
  /** Swap one camera's model at its next batch (what SIGHUP and the control subject do). */
  swap(camera: string, dir: string, threshold?: number): Promise<SwapResult>;
  /** Re-read the config (`reloadConfig`) and swap what changed; what SIGHUP does. */
  reload(): Promise<SwapResult[]>;
  /** The control subject, when served. */
  readonly controlSubject: string | undefined;
  /** Resolves once the station has stopped (sources ended or stop()). */
  readonly done: Promise<StationSummary>;
  /** Stop gracefully (idempotent): complete sources, finish in-flight frames, flush the sink. */
  stop(reason?: string): Promise<StationSummary>;
}

interface CameraRun {
  cam: CameraConfig;
  summary: CameraSummary;
  sub?: Subscription;
  ended: Promise<void>;
  inFlight: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Start a station from a validated config.
 *
 * @example
 * ```ts
 * const station = await startStation({ config: await loadConfig('station.yaml'), handleSignals: true, log });
 * const summary = await station.done; // after SIGTERM, or when every source has ended
 * process.exitCode = summary.failed ? 1 : 0;
 * ```
 * @throws ModelError / BackendError (model), ConfigError (metrics port), SinkError / ConfigError
 *   (NATS options) — all before any source starts.
 */
export async function startStation(opts: StationOptions): Promise<Station> {
  const cfg = opts.config;
  const log = opts.log ?? (() => undefined);
  const t0 = performance.now();
  const cleanups: Array<() => Promise<void> | void> = [];
  const cleanup = async (): Promise<void> => {
    for (const c of cleanups.reverse()) await Promise.resolve(c()).catch(() => undefined);
  };

  try {
    // 1. Model: fails fast on a missing/corrupt artefact, wrong spec or missing threshold.
    const needThreshold = cfg.threshold === undefined && cfg.cameras.some((c) => c.threshold === undefined && c.model === undefined);
    const model =
      opts.model ??
      (await loadInspectModel({
        dir: cfg.model,
        engine: cfg.engine,
        backend: cfg.backend,
        ...(cfg.threshold !== undefined ? { threshold: cfg.threshold } : {}),
        requireThreshold: needThreshold,
        ...(opts.expect ?? cfg.expect ? { expect: { ...cfg.expect, ...opts.expect } } : {}),
        log,
      }));
    // Cameras share loaded models by artefact; the registry holds the station model too.
    const registry = new ModelRegistry(
      opts.loadModel ??
        ((dir, expect) => loadInspectModel({ dir, engine: cfg.engine, requireThreshold: false, expect: { ...cfg.expect, ...opts.expect, ...expect }, log })),
    );
    registry.adopt(model, { borrowed: opts.model !== undefined });
    cleanups.push(() => registry.dispose());
    log(`model ${model.id}: ${model.size}px, engine ${model.engineName}, backend ${model.backend}, threshold ${model.threshold ?? '(per camera)'} (${model.thresholdSource})`);
    log(model.guard ? `${model.guardNote}; action ${cfg.guard.action}${cfg.guard.k !== undefined ? `, k ${cfg.guard.k} (config)` : ''}` : model.guardNote);

    // 2. Metrics.
    const metrics = createMetrics(opts.registry, { defaultLabels: { line: cfg.line, station: cfg.station } });
    metrics.modelInfo.set({ model: model.id, backend: model.backend, engine: model.engineName, guard: model.guard ? 'on' : 'off' }, 1);
    let server: MetricsServer | undefined;
    if (opts.serveMetrics ?? cfg.metrics.enabled) {
      server = await serveMetrics(metrics, { host: cfg.metrics.host, port: cfg.metrics.port });
      cleanups.push(() => server!.close());
      log(`metrics: ${server.url}`);
    }

    // 2b. The operator page and reject capture (config `ui`, `record`; src/ui/view.ts).
    const view = await startOperatorView({
      line: cfg.line, station: cfg.station, model, metrics, log,
      cameras: cfg.cameras.map((c) => ({ id: c.id, mode: c.mode, threshold: c.threshold ?? cfg.threshold ?? model.threshold ?? NaN })),
      ...(cfg.ui ? { ui: cfg.ui } : {}),
      ...(cfg.record ? { record: cfg.record } : {}),
    });
    cleanups.push(() => view.close());

    // 3. Sink.
    let sink: VerdictSink;
    if (typeof opts.sink === 'object') sink = opts.sink;
    else if (opts.sink === 'stdout') sink = streamSink();
    else {
      sink = await natsSink({ line: cfg.line, failSafe: cfg.failSafe, nats: cfg.nats, spool: cfg.spool, name: `fairline-${cfg.line}-${cfg.station}`, metrics, log });
      log(`verdicts: NATS ${cfg.nats.servers.join(',')} fairline.${cfg.line}.<camera>.verdict${cfg.nats.jetstream.enabled ? ` (JetStream ${cfg.nats.jetstream.stream})` : ''}`);
    }
    const sinkToClose = sink;
    cleanups.push(() => sinkToClose.close());

    // 4. Sources and graphs.
    const swaps = swapCounter(metrics.registry);
    const camInfo = cameraModelGauge(metrics.registry);
    const stop$ = new Subject<void>();
    const cameraModels = new Map<string, CameraModel>();
    const mh = metricsHooks(metrics);
    let publishErrors = 0;
    const runs: CameraRun[] = [];
    let stopping: Promise<StationSummary> | undefined;
    let resolveDone!: (s: StationSummary) => void;
    const done = new Promise<StationSummary>((r) => (resolveDone = r));

    for (const cam of cfg.cameras) {
      const summary: CameraSummary = { mode: cam.mode, frames: 0, verdicts: { pass: 0, reject: 0, error: 0 }, dropped: { source: 0, queue: 0 } };
      const sourceState = trackSource(cam.id, metrics, log);
      const ack$ = new Subject<void>();
      const own = cam.model !== undefined ? await registry.acquire(cam.model) : registry.adopt(model, { borrowed: opts.model !== undefined });
      const threshold = cam.threshold ?? (cam.model === undefined ? (cfg.threshold ?? model.threshold) : own.threshold);
      if (threshold === undefined) throw new ModelError('no_threshold', `camera ${cam.id}: no threshold (model ${own.id} is not calibrated and the config sets none)`);
      const camModel = new CameraModel({
        camera: cam.id, registry, model: own, threshold, log,
        ...(cfg.expect ?? opts.expect ? { expect: { ...cfg.expect, ...opts.expect } } : {}),
        onSwap: (r) => {
          swaps.inc({ camera: cam.id, result: r.ok ? 'ok' : r.error.code });
          if (r.ok && r.from !== r.to) {
            camInfo.remove({ camera: cam.id, model: r.from });
            camInfo.set({ camera: cam.id, model: r.to }, 1);
          }
        },
      });
      cameraModels.set(cam.id, camModel);
      camInfo.set({ camera: cam.id, model: own.id }, 1);
      if (cam.model !== undefined) log(`camera ${cam.id}: model ${own.id} (${own.dir}), threshold ${threshold}`);
      const run: CameraRun = { cam, summary, inFlight: 0, ended: Promise.resolve() };
      const hooks: InspectHooks = view.inspectHooks({
        ...mh,
        onFrame: (f: Frame) => {
          summary.frames++;
          run.inFlight++;
          mh.onFrame?.(f);
        },
        onDrop: (f, reason) => {
          summary.dropped.queue++;
          mh.onDrop?.(f, reason);
        },
      });
      const frames$ = cameraSource(cam, {
        ack$,
        window: 2 * cfg.batch.maxSize + 2,
        hooks: view.sourceHooks({
          onUp: () => sourceState.up(),
          onDown: (_c, err) => sourceState.down(err),
          onReconnect: (_c, attempt, delay, err) => sourceState.reconnect(attempt, delay, err),
          onDrop: (c, n) => {
            summary.dropped.source += n;
            metrics.framesDropped.inc({ camera: c, reason: 'source' }, n);
          },
        }),
      });
      const graph = inspect({
        decode: frameDecoder(camModel.size),
        model: camModel,
        threshold: () => camModel.threshold,
        context: { line: cfg.line, station: cfg.station },
        batch: cfg.batch,
        mode: cam.mode,
        queueLimit: cfg.queueLimit,
        deadline: cam.mode === 'live' ? { deadlineMs: cam.deadlineMs ?? cfg.deadlineMs, verdict: cfg.failSafe } : false,
        guard: { policy: cameraGuard(cfg, cam) },
        hooks,
      });
      // Part ids (config cameras[].partId): trigger subject or file names, before the graph.
      const parts = partIdStage(cam, { line: cfg.line, registry: metrics.registry, log, ...(sink.kind === 'nats' ? { nats: natsConnectOptions(cfg.nats, `fairline-${cfg.line}-${cfg.station}`) } : {}) });
      run.ended = new Promise<void>((resolve) => {
        // A failed source (camera gone for good, damaged file) ends this camera, but the frames
        // it already delivered still get their verdicts, and the summary says where it stopped.
        const untilFailure = catchError<Frame, Observable<never>>((err: unknown) => {
          const e = asFairlineError(err);
          summary.error = `${e.code}: ${e.message}`;
          sourceState.ended(err);
          log(`camera ${cam.id}: source failed after ${summary.frames} frame(s) with ${e.name} [${e.code}]: ${e.message}`);
          return EMPTY;
        });
        run.sub = frames$.pipe(takeUntil(stop$), untilFailure, parts, graph).subscribe({
          next: (v) => {
            summary.verdicts[v.verdict]++;
            if (!v.late) {
              run.inFlight--;
              ack$.next();
            }
            try {
              sink.publish(v);
            } catch (err) {
              publishErrors++;
              const e = asFairlineError(err);
              metrics.errors.inc({ stage: 'publish', reason: e.code });
              log(`publish ${v.camera}#${v.seq}: ${e.message}`);
            }
          },
          error: (err: unknown) => {
            const e: FairlineError = asFairlineError(err);
            summary.error = `${e.code}: ${e.message}`;
            metrics.sourceUp.set({ camera: cam.id }, 0);
            log(`camera ${cam.id}: stopped with ${e.name} [${e.code}]: ${e.message}`);
            view.ended(cam.id, summary.error);
            resolve();
          },
          complete: () => {
            sourceState.ended();
            view.ended(cam.id, summary.error);
            resolve();
          },
        });
      });
      runs.push(run);
    }

    const finish = async (reason: string): Promise<StationSummary> => {
      stop$.next();
      stop$.complete();
      const drainMs = opts.drainTimeoutMs ?? 20000;
      const drained = await Promise.race([Promise.all(runs.map((r) => r.ended)).then(() => true), sleep(drainMs).then(() => false)]);
      let unfinished = 0;
      if (!drained) {
        for (const r of runs) {
          unfinished += Math.max(0, r.inFlight);
          r.sub?.unsubscribe();
        }
        log(`stop: ${unfinished} frame(s) still in flight after ${drainMs} ms, abandoned`);
      }
      uninstall();
      await cleanup();
      const out: StationSummary = {
        reason,
        seconds: (performance.now() - t0) / 1000,
        cameras: Object.fromEntries(runs.map((r) => [r.cam.id, r.summary])),
        unfinished,
        publishErrors,
        sink: sink.kind,
        failed: runs.some((r) => r.summary.error !== undefined),
      };
      const st = sink.stats?.();
      if (st) out.published = st;
      resolveDone(out);
      return out;
    };
    const stop = (reason = 'stop'): Promise<StationSummary> => {
      stopping ??= (async () => {
        log(`stopping (${reason}): finishing frames in flight`);
        return finish(reason);
      })();
      return stopping;
    };

    // Model swaps: SIGHUP (re-read the config) and the control subject.
    const swap = async (camera: string, dir: string, threshold?: number): Promise<SwapResult> => {
      const cm = cameraModels.get(camera);
      if (!cm) {
        swaps.inc({ camera: '*', result: 'unknown_camera' });
        return { ok: false, camera, serving: '', error: { code: 'unknown_camera', message: `no camera '${camera}' (cameras: ${[...cameraModels.keys()].join(', ')})` } };
      }
      return cm.swap(dir, threshold);
    };
    const reload = async (): Promise<SwapResult[]> => {
      if (!opts.reloadConfig) return [];
      let next: FairlineConfig;
      try {
        next = await opts.reloadConfig();
      } catch (err) {
        const e = asFairlineError(err);
        swaps.inc({ camera: '*', result: 'bad_config' });
        log(`reload: config refused, every camera keeps its model: ${e.message}`);
        return [];
      }
      const current = new Map([...cameraModels].map(([id, cm]) => [id, { dir: cm.dir, id: cm.id, threshold: cm.threshold }]));
      const plan = planReload(current, next);
      for (const i of plan.ignored) log(`reload: ${i}`);
      if (plan.steps.length === 0) log('reload: no camera changes its model');
      return Promise.all(plan.steps.map((s) => swap(s.camera, s.dir, s.threshold)));
    };
    const onHup = (): void => {
      log('SIGHUP: reloading models from the config');
      void reload();
    };
    let control: ReturnType<typeof startControl> | undefined;
    if (opts.control ?? sink.kind === 'nats') {
      control = startControl({
        nats: natsConnectOptions(cfg.nats, `fairline-${cfg.line}-${cfg.station}`),
        target: {
          line: cfg.line, station: cfg.station, stationModelDir: cfg.model, swap,
          status: () => ({ cameras: [...cameraModels.values()].map((c) => c.describe()), models: registry.list() }),
        },
        log,
      });
      const c = control;
      cleanups.push(() => c.close());
      // Subscribed before start-up returns when NATS is up; a station whose NATS is down still
      // starts. (Before the completion handler below: a short source may end during this wait.)
      await Promise.race([c.ready, sleep(3000)]);
    }

    // All sources ended by themselves (finite folders / counts): stop the same way.
    void Promise.all(runs.map((r) => r.ended)).then(() => {
      if (!stopping) stopping = finish('completed');
    });

    const onSignal = (sig: NodeJS.Signals): void => {
      if (stopping) {
        log(`${sig} again: exiting without waiting`);
        process.exit(130);
      }
      void stop(sig);
    };
    const uninstall = (): void => {
      if (!opts.handleSignals) return;
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      process.off('SIGHUP', onHup);
    };
    if (opts.handleSignals) {
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      if (opts.reloadConfig) process.on('SIGHUP', onHup);
    }
    log(`station ${cfg.line}/${cfg.station}: ${cfg.cameras.length} camera(s) started (${cfg.cameras.map((c) => `${c.id}:${c.source.type}/${c.mode}`).join(', ')})`);

    return { model, metrics, metricsUrl: server?.url, uiUrl: view.url, sink, done, stop, cameraModels, swap, reload, controlSubject: control?.subject };
  } catch (err) {
    await cleanup();
    throw err;
  }
}
