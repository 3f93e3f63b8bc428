/**
 * `fairline inspect --check`: every start-up check of a station (src/runtime/station.ts), without
 * taking a frame into the graph, each reported with its outcome so one run lists every problem:
 *
 * - the model: artefact checksums and spec, the config's `expect` (size, channels), a threshold
 *   for every camera (warning when one is below every normal training score);
 * - the ports the station would serve (metrics, operator page) are free;
 * - NATS (when verdicts go there): the options, and whether the server answers (unreachable is a
 *   warning: the station spools until it does; refused credentials or TLS are failures);
 * - each camera is probed where that is possible: the first frame of a GStreamer source (v4l2,
 *   RTSP, file, pipeline) within a timeout, or the GStreamer error why not; an image folder's
 *   file count.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { firstValueFrom, take, timeout } from 'rxjs';
import type { CameraConfig, FairlineConfig } from '../config.js';
import { SourceError, asFairlineError } from '../errors.js';
import { thresholdBelowNormal } from '../thresholds.js';
import { loadInspectModel, type RuntimeModel } from './model.js';
import { checkCameraModel } from './models.js';
import { checkedFrames, gstSourceFor, listImageFiles } from './sources.js';
import { natsSink } from './station.js';

export interface CheckResult {
  /** `ok`, `warn` (the station would start, but look at it) or `fail` (it would not start, or not work). */
  status: 'ok' | 'warn' | 'fail';
  what: string;
  detail: string;
}

export interface CheckOptions {
  /** Whether verdicts would go to NATS (the station's sink). */
  sink: 'nats' | 'stdout';
  /** Take a first frame from each GStreamer camera (default true). */
  probeCameras?: boolean;
  /** Longest wait for a camera's first frame (default 10000 ms). */
  probeTimeoutMs?: number;
  /** Longest wait for NATS (default 3000 ms). */
  natsTimeoutMs?: number;
  log?: (msg: string) => void;
}

async function attempt(what: string, run: () => Promise<Omit<CheckResult, 'what'>>): Promise<CheckResult> {
  try {
    return { what, ...(await run()) };
  } catch (err) {
    const e = asFairlineError(err);
    return { what, status: 'fail', detail: `${e.name} [${e.code}]: ${e.message}` };
  }
}

/** Is `host:port` free to listen on? */
function portFree(host: string, port: number): Promise<string | undefined> {
  if (port === 0) return Promise.resolve(undefined);
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', (err: NodeJS.ErrnoException) => resolve(`${host}:${port} cannot be served: ${err.code ?? err.message}`));
    srv.listen(port, host, () => srv.close(() => resolve(undefined)));
  });
}

/**
 * Probe one camera: the first frame of a GStreamer source within `timeoutMs`, or why not.
 *
 * @returns `ok` with the frame size and time to it, or `fail` with the source's error (the
 *   GStreamer message for a missing device or an unreachable RTSP server).
 */
export async function probeCamera(cam: CameraConfig, timeoutMs = 10000): Promise<Omit<CheckResult, 'what'>> {
  const spec = cam.source;
  if (spec.type === 'synthetic') return { status: 'ok', detail: `synthetic ${spec.width}x${spec.height} at ${spec.fps} fps` };
  if (spec.type === 'images') {
    const n = listImageFiles(spec.dir, spec.pattern).length;
    return n > 0 ? { status: 'ok', detail: `${n} image(s) match '${spec.pattern}' in ${spec.dir}` } : { status: 'fail', detail: `no files match '${spec.pattern}' in ${spec.dir}` };
  }
  const t0 = performance.now();
  // Replay mode: no drop, no stall watchdog race with the probe's own timeout.
  const src = gstSourceFor({ id: cam.id, mode: 'replay' }, spec);
  try {
    const f = await firstValueFrom(
      checkedFrames(src, spec).pipe(
        take(1),
        timeout({ first: timeoutMs, with: () => Promise.reject(new SourceError('stalled', `no frame within ${timeoutMs} ms`)) }),
      ),
    );
    return { status: 'ok', detail: `first frame ${f.width}x${f.height} after ${Math.round(performance.now() - t0)} ms (${spec.type})` };
  } catch (err) {
    const e = asFairlineError(err);
    return { status: 'fail', detail: `no frame: ${e.message} [${e.code}]` };
  }
}

/**
 * Run every start-up check of a station that needs no frame in the graph.
 *
 * @example
 * const results = await checkStation(await loadConfig('station.yaml'), { sink: 'nats' });
 * const ok = results.every((r) => r.status !== 'fail');
 */
export async function checkStation(cfg: FairlineConfig, opts: CheckOptions): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  let model: RuntimeModel | undefined;
  results.push(
    await attempt('model', async () => {
      const needThreshold = cfg.threshold === undefined && cfg.cameras.some((c) => c.threshold === undefined && c.model === undefined);
      model = await loadInspectModel({
        dir: cfg.model, engine: cfg.engine, backend: cfg.backend, requireThreshold: needThreshold,
        ...(cfg.threshold !== undefined ? { threshold: cfg.threshold } : {}),
        ...(cfg.expect ? { expect: cfg.expect } : {}),
        ...(opts.log ? { log: opts.log } : {}),
      });
      const expect = cfg.expect ? `, as expect says` : '';
      return { status: 'ok', detail: `${model.id}: ${model.size} px, ${model.spec.unet.inChannels} input channel(s)${expect}; engine ${model.engineName}; threshold ${model.threshold ?? 'per camera'} (${model.thresholdSource})` };
    }),
  );
  try {
    if (model) {
      for (const cam of cfg.cameras) {
        if (cam.model !== undefined) {
          // Its own model (src/runtime/models.ts): loaded and checked like the station's.
          results.push(await checkCameraModel({ id: cam.id, model: cam.model, ...(cam.threshold !== undefined ? { threshold: cam.threshold } : {}) }, { engine: cfg.engine, ...(cfg.expect ? { expect: cfg.expect } : {}), ...(opts.log ? { log: opts.log } : {}) }));
          continue;
        }
        const threshold = cam.threshold ?? cfg.threshold ?? model.threshold;
        const low = threshold === undefined ? undefined : thresholdBelowNormal(threshold, model.manifest.trainScoreStats);
        results.push({
          what: `camera ${cam.id} threshold`,
          ...(threshold === undefined
            ? { status: 'fail' as const, detail: `none: model ${model.id} is not calibrated and the config sets none` }
            : low
              ? { status: 'warn' as const, detail: low }
              : { status: 'ok' as const, detail: String(threshold) }),
        });
      }
    }
    if (cfg.metrics.enabled) {
      const busy = await portFree(cfg.metrics.host, cfg.metrics.port);
      results.push({ what: 'metrics', status: busy ? 'fail' : 'ok', detail: busy ?? (cfg.metrics.port === 0 ? 'a free port is chosen at start' : `http://${cfg.metrics.host}:${cfg.metrics.port}/metrics is free`) });
    }
    if (cfg.ui) {
      const busy = await portFree(cfg.ui.listen.host, cfg.ui.listen.port);
      results.push({ what: 'operator page', status: busy ? 'fail' : 'ok', detail: busy ?? `${cfg.ui.listen.host}:${cfg.ui.listen.port} is free` });
    }
    if (opts.sink === 'nats') results.push(await attempt('nats', () => checkNats(cfg, opts.natsTimeoutMs ?? 3000)));
    for (const cam of cfg.cameras) {
      if (opts.probeCameras === false && cam.source.type !== 'images' && cam.source.type !== 'synthetic') {
        results.push({ what: `camera ${cam.id}`, status: 'ok', detail: `not probed (--no-probe)` });
        continue;
      }
      results.push(await attempt(`camera ${cam.id}`, () => probeCamera(cam, opts.probeTimeoutMs)));
    }
  } finally {
    await (model as RuntimeModel | undefined)?.dispose();
  }
  return results;
}

/** Connect once as the station's sink would (spooling into a throw-away folder). */
async function checkNats(cfg: FairlineConfig, timeoutMs: number): Promise<Omit<CheckResult, 'what'>> {
  const spool = mkdtempSync(join(tmpdir(), 'fairline-check-spool-'));
  const servers = cfg.nats.servers.join(',');
  try {
    const sink = await natsSink({ line: cfg.line, nats: cfg.nats, spool: { dir: spool, maxBytes: 2 ** 20 }, name: `fairline-check-${cfg.line}`, closeTimeoutMs: 500 });
    try {
      await sink.publisher.ready(timeoutMs);
      return { status: 'ok', detail: `${servers} answers${cfg.nats.jetstream.enabled ? `, JetStream stream ${cfg.nats.jetstream.stream} ready` : ''}` };
    } catch (err) {
      const e = asFairlineError(err);
      if (e.code === 'nats_auth' || e.code === 'nats_tls') return { status: 'fail', detail: `${servers}: ${e.message} [${e.code}]` };
      return { status: 'warn', detail: `${servers} not reachable now (${e.message}); the station would start and keep verdicts in the spool ${cfg.spool.dir} until it is` };
    } finally {
      await sink.close();
    }
  } finally {
    rmSync(spool, { recursive: true, force: true });
  }
}

/** `OK   model: ...` lines and the summary line. */
export function formatCheck(file: string, results: readonly CheckResult[]): string {
  const tag = { ok: 'OK  ', warn: 'WARN', fail: 'FAIL' } as const;
  const fails = results.filter((r) => r.status === 'fail').length;
  const warns = results.filter((r) => r.status === 'warn').length;
  return [
    ...results.map((r) => `${tag[r.status]} ${r.what}: ${r.detail}`),
    fails ? `config ${file}: ${fails} check(s) FAILED${warns ? `, ${warns} warning(s)` : ''}` : `config ${file}: OK${warns ? ` with ${warns} warning(s)` : ''}`,
  ].join('\n');
}
