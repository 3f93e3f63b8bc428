/**
 * Load check of the operator page: does a station at capacity keep its capacity and its
 * deadlines while 10 browsers watch it?
 *
 * A station runs the demo model (onnxruntime + tfjs-wasm) with reject capture and the page on,
 * and alternates phases without and with N viewers. A viewer (in a separate process, as browsers
 * are) holds the event stream open and, like the page, fetches the heatmap thumbnail of every
 * new card the station has drawn. Two measurements:
 *
 * 1. capacity: a replay-mode camera over the toy hazelnut test images (paced only by the
 *    station's own acknowledgements, so it runs as fast as the station can): model verdicts/s,
 *    and the station's CPU seconds per verdict (all its threads), phases in ABBA order (none, N,
 *    N, none, ...) so that drifts in machine load hit both alike. On a machine shared with other
 *    work, verdicts/s follows whatever CPU the scheduler grants; CPU per verdict does not, and on a
 *    dedicated machine where the station is CPU-bound capacity is its inverse, so the capacity
 *    drop is `1 - cpu per verdict without / with viewers`;
 * 2. deadlines: a live camera offered 85% of that capacity with `deadlineMs`: fail-safe
 *    (deadline) verdicts, late verdicts, frames dropped, latency p50 / p99, without and with viewers.
 *
 * Usage:
 *   node --import tsx scripts/ui-load.ts                       # 3 rounds of 20 s, 10 viewers
 *   node --import tsx scripts/ui-load.ts --rounds 2 --seconds 15 --viewers 10 --json out/ui-load.json
 *
 * 3. the page's own work, in CPU time of this process: rendering one card's thumbnail (once per
 *    card however many viewers), serving one thumbnail request (once per card and viewer), and
 *    building and serialising one snapshot (every 500 ms however many viewers), as a share of the
 *    CPU the station spent per second at capacity.
 *
 * Prints a table and the verdict: capacity drop <= 5 % and no late or fail-safe verdict.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import type { CameraConfig } from '../src/config.js';
import type { Station } from '../src/runtime/station.js';
import { quantileSorted } from '../src/thresholds.js';
import { eventData } from '../src/ui/events.js';
import type { Verdict } from '../src/verdict.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const IMAGES = join(ROOT, 'data', 'hazelnut_toy', 'hazelnut', 'test');
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// Viewer process: N event streams; each fetches every new card's overlay, as the page does.

async function viewers(url: string, n: number, fetchPictures: boolean): Promise<void> {
  let updates = 0, pictures = 0, failed = 0;
  const one = async (): Promise<void> => {
    const seen = new Set<string>();
    const res = await fetch(`${url}events`);
    for await (const st of eventData<{ cards: { id: string; thumb: boolean | null }[] }>(res.body!)) {
      updates++;
      for (const c of st.cards) {
        if (!fetchPictures || seen.has(c.id) || c.thumb !== true) continue;
        seen.add(c.id);
        fetch(`${url}api/cards/${c.id}/thumb`).then(
          async (r) => (await r.arrayBuffer(), r.ok ? pictures++ : failed++),
          () => failed++,
        );
      }
    }
  };
  for (let i = 0; i < n; i++) void one().catch(() => failed++);
  process.send?.('ready');
  setInterval(() => {
    const c = process.cpuUsage();
    process.send?.({ updates, pictures, failed, cpu: (c.user + c.system) / 1e6 });
  }, 500);
}

/** Request process: `total` thumbnail requests over 10 keep-alive loops, then 'done'. */
async function requests(url: string, total: number): Promise<void> {
  const ids = ((await (await fetch(`${url}api/state`)).json()) as { cards: { id: string }[] }).cards.map((c) => c.id);
  let next = 0;
  const loop = async (): Promise<void> => {
    while (next < total) {
      const id = ids[next++ % ids.length]!;
      const r = await fetch(`${url}api/cards/${id}/thumb`);
      await r.arrayBuffer();
    }
  };
  await Promise.all(Array.from({ length: 10 }, loop));
  process.send?.('done');
}

// ---------------------------------------------------------------------------------------------

interface Phase {
  what: 'capacity' | 'deadlines';
  viewers: number;
  seconds: number;
  verdictsPerSecond: number;
  verdicts: number;
  failSafe: number;
  late: number;
  dropped: number;
  p50: number;
  p99: number;
  viewerUpdates: number;
  picturesServed: number;
  pictureFailures: number;
  load1: number;
  /** CPU seconds per second of the station process and of the viewer process. */
  stationCpu: number;
  viewerCpu: number;
  /** Share of time the station's event loop was busy. */
  eventLoop: number;
  /** Station CPU milliseconds per model verdict. */
  cpuPerVerdictMs: number;
  /** Share of model verdicts that were rejects (each one a card). */
  rejectShare: number;
}

type ViewerStats = { updates: number; pictures: number; failed: number; cpu: number };

function startViewers(url: string, n: number, pictures: boolean): Promise<{ child: ChildProcess; stats: () => ViewerStats }> {
  const child = fork(fileURLToPath(import.meta.url), ['--viewers-for', url, '--viewers', String(n), ...(pictures ? [] : ['--no-pictures'])], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  let last: ViewerStats = { updates: 0, pictures: 0, failed: 0, cpu: 0 };
  child.on('message', (m) => {
    if (typeof m === 'object' && m) last = m as typeof last;
  });
  return new Promise((resolve, reject) => {
    child.once('message', (m) => (m === 'ready' ? resolve({ child, stats: () => last }) : reject(new Error(String(m)))));
    child.once('exit', (code) => reject(new Error(`viewer process exited with ${code}`)));
  });
}

async function measure(station: Station, got: Verdict[], what: Phase['what'], nViewers: number, seconds: number, pictures: boolean): Promise<Phase> {
  const v = nViewers > 0 ? await startViewers(station.uiUrl!, nViewers, pictures) : undefined;
  await sleep(2000); // viewers connected and past their first pictures
  const lateBefore = await lateCount(station);
  const from = got.length;
  const t0 = Date.now();
  const s0 = v?.stats() ?? { updates: 0, pictures: 0, failed: 0, cpu: 0 };
  const cpu0 = process.cpuUsage();
  const elu0 = performance.eventLoopUtilization();
  await sleep(seconds * 1000);
  const t1 = Date.now();
  const cpu = process.cpuUsage(cpu0);
  const elu = performance.eventLoopUtilization(elu0);
  const s1 = v?.stats() ?? s0;
  const window = got.slice(from).filter((x) => x.decidedTs >= t0 && x.decidedTs < t1);
  const model = window.filter((x) => x.verdict !== 'error' && !x.failSafe);
  const lat = model.map((x) => x.latencyMs).sort((a, b) => a - b);
  const phase: Phase = {
    what, viewers: nViewers, seconds: (t1 - t0) / 1000,
    verdictsPerSecond: model.length / ((t1 - t0) / 1000),
    verdicts: window.length,
    failSafe: window.filter((x) => x.failSafe).length,
    late: (await lateCount(station)) - lateBefore,
    dropped: window.filter((x) => x.verdict === 'error' && x.reason === 'dropped').length,
    p50: lat.length ? quantileSorted(lat, 0.5) : NaN,
    p99: lat.length ? quantileSorted(lat, 0.99) : NaN,
    viewerUpdates: s1.updates - s0.updates,
    picturesServed: s1.pictures - s0.pictures,
    pictureFailures: s1.failed - s0.failed,
    load1: loadavg()[0]!,
    stationCpu: (cpu.user + cpu.system) / 1e3 / (t1 - t0),
    viewerCpu: (s1.cpu - s0.cpu) / ((t1 - t0) / 1000),
    eventLoop: elu.utilization,
    cpuPerVerdictMs: (cpu.user + cpu.system) / 1e3 / Math.max(1, model.length),
    rejectShare: model.filter((x) => x.verdict === 'reject').length / Math.max(1, model.length),
  };
  if (v) {
    v.child.kill('SIGTERM');
    await new Promise((r) => v.child.once('exit', r));
  }
  return phase;
}

/** CPU time (this process: its threads and libvips') of one card's thumbnail, one full snapshot, and one thumbnail request served. */
async function pageWork(): Promise<{ renderMs: number; snapshotMs: number; requestMs: number; cards: number }> {
  const { LiveView } = await import('../src/ui/live.js');
  const { cardPicture } = await import('../src/ui/pictures.js');
  const S = 256;
  const live = new LiveView({ line: 'L', station: 'S', cameras: [{ id: 'cam0', mode: 'live', threshold: 1 }], model: { id: 'm', size: S, width: 8, threshold: 1, thresholdSource: 'artefact', engine: 'x', backend: 'x' } });
  for (let i = 0; i < 40; i++) {
    const image = { width: S, height: S, channels: 3, data: new Float32Array(S * S * 3).map(() => Math.random()) };
    const map = new Float32Array(S * S).map((_, k) => 1 + Math.sin((k + i * 997) / 300));
    const frame = { sourceId: 'cam0', seq: i, captureTs: Date.now(), payload: { data: new Uint8Array(3), width: 1, height: 1, format: 'bgr' as const } };
    live.onVerdict(
      { schema: 'fairline.verdict/v1', line: 'L', station: 'S', camera: 'cam0', seq: i, captureTs: frame.captureTs, decidedTs: frame.captureTs, latencyMs: 5, model: 'm', score: 1.5, threshold: 1, verdict: 'reject', regions: [{ x: 0, y: 0, w: 9, h: 9, area: 81, peak: 1.5 }] },
      { frame, image, map, sourceWidth: 1, sourceHeight: 1, score: 1.5, threshold: 1, decision: 'reject' },
    );
  }
  const ids = live.tick().cards.map((c) => c.id);
  await cardPicture(live.card(ids[0]!)!, 'thumb'); // warm-up (JIT)
  const c0 = process.cpuUsage();
  for (const id of ids.slice(1)) await cardPicture(live.card(id)!, 'thumb');
  const c1 = process.cpuUsage(c0);
  const t0 = process.cpuUsage();
  for (let i = 0; i < 200; i++) JSON.stringify(live.tick());
  const t1 = process.cpuUsage(t0);
  // Requests for thumbnails already rendered, from another process, as browsers send them.
  const { serveUi } = await import('../src/ui/server.js');
  const ui = await serveUi({ port: 0, view: live, intervalMs: 60_000 });
  const total = 2000;
  const child = fork(fileURLToPath(import.meta.url), ['--requests-for', ui.url, '--requests', String(total)], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const r0 = process.cpuUsage();
  await new Promise<void>((resolve, reject) => {
    child.once('message', () => resolve());
    child.once('exit', (code) => (code ? reject(new Error(`request process exited with ${code}`)) : resolve()));
  });
  const r1 = process.cpuUsage(r0);
  child.kill('SIGTERM');
  await ui.close();
  return {
    renderMs: (c1.user + c1.system) / 1e3 / (ids.length - 1),
    snapshotMs: (t1.user + t1.system) / 1e3 / 200,
    // Includes the request process's start-up wait (idle), so an upper bound.
    requestMs: (r1.user + r1.system) / 1e3 / total,
    cards: ids.length,
  };
}

async function lateCount(station: Station): Promise<number> {
  const m = await station.metrics.errors.get();
  return m.values.filter((x) => x.labels.stage === 'deadline' && x.labels.reason === 'late').reduce((a, x) => a + x.value, 0);
}

async function runStation(camera: CameraConfig, deadlineMs: number, dir: string): Promise<{ station: Station; got: Verdict[] }> {
  // Loaded here, not at the top: the viewer process must not pay for the model runtime.
  const { parseConfig } = await import('../src/config.js');
  const { startStation } = await import('../src/runtime/station.js');
  const got: Verdict[] = [];
  const config = parseConfig(
    {
      line: 'LOAD', station: 'S1', model: join(ROOT, 'models', 'hazelnut-demo'), backend: 'wasm', engine: 'auto',
      cameras: [camera], batch: { maxSize: 8, maxWaitMs: 20 }, deadlineMs, metrics: { enabled: false },
      ui: { listen: '127.0.0.1:0' }, record: { dir: join(dir, 'captures'), maxBytes: '256MiB' },
    },
    { baseDir: dir },
  );
  const station = await startStation({ config, sink: { kind: 'memory', publish: (v) => void got.push(v), close: async () => undefined } });
  return { station, got };
}

const fmt = (p: Phase): string =>
  `| ${p.what.padEnd(9)} | ${String(p.viewers).padStart(7)} | ${p.verdictsPerSecond.toFixed(2).padStart(10)} | ${p.p50.toFixed(0).padStart(6)} | ${p.p99.toFixed(0).padStart(6)} | ${String(p.failSafe).padStart(9)} | ${String(p.late).padStart(4)} | ${String(p.dropped).padStart(7)} | ${String(p.viewerUpdates).padStart(7)} | ${String(p.picturesServed).padStart(8)} | ${p.cpuPerVerdictMs.toFixed(0).padStart(11)} | ${p.stationCpu.toFixed(2).padStart(11)} | ${p.viewerCpu.toFixed(2).padStart(10)} | ${(p.eventLoop * 100).toFixed(0).padStart(6)} % | ${p.load1.toFixed(1).padStart(5)} |`;

async function main(o: { rounds: number; seconds: number; viewers: number; deadlineMs: number; pictures: boolean; json?: string }): Promise<number> {
  const dir = join(ROOT, '.tmp', `ui-load-${process.pid}`);
  mkdirSync(dir, { recursive: true });
  const phases: Phase[] = [];
  process.stderr.write(`ui-load: ${cpus()[0]?.model} x ${cpus().length}, load ${loadavg().map((x) => x.toFixed(1)).join(' ')}; ${o.rounds} rounds of ${o.seconds} s, ${o.viewers} viewers${o.pictures ? '' : ' (event streams only)'}\n`);

  // 1. Capacity: replay mode, paced by the station's acknowledgements.
  {
    const { station, got } = await runStation({ id: 'cap', mode: 'replay', source: { type: 'images', dir: IMAGES, pattern: '**/*.png', loop: true } }, o.deadlineMs, dir);
    await sleep(5000); // warm-up: kernels compiled, caches filled
    await measure(station, got, 'capacity', o.viewers, 5, o.pictures); // and the page's code paths (not counted)
    for (let r = 0; r < o.rounds; r++) {
      for (const n of r % 2 === 0 ? [0, o.viewers] : [o.viewers, 0]) {
        const p = await measure(station, got, 'capacity', n, o.seconds, o.pictures);
        phases.push(p);
        process.stderr.write(`${fmt(p)}\n`);
      }
    }
    await station.stop();
  }
  const median = (n: number, k: 'verdictsPerSecond' | 'cpuPerVerdictMs' | 'viewerCpu' | 'stationCpu'): number =>
    quantileSorted(phases.filter((p) => p.what === 'capacity' && p.viewers === n).map((p) => p[k]).sort((a, b) => a - b), 0.5);
  const capacity = median(0, 'verdictsPerSecond'), withViewers = median(o.viewers, 'verdictsPerSecond');
  const cpuWithout = median(0, 'cpuPerVerdictMs'), cpuWith = median(o.viewers, 'cpuPerVerdictMs');
  // The viewers' own CPU per verdict, had they run on the station's cores (browsers normally do not).
  const viewerShare = (median(o.viewers, 'viewerCpu') / median(o.viewers, 'stationCpu')) * cpuWith;

  // 2. Deadlines: a live camera at 85% of the measured capacity.
  const fps = Math.max(0.5, 0.85 * capacity);
  {
    const { station, got } = await runStation({ id: 'live', mode: 'live', source: { type: 'images', dir: IMAGES, pattern: '**/*.png', loop: true, fps } }, o.deadlineMs, dir);
    await sleep(5000);
    for (const n of [0, o.viewers]) {
      const p = await measure(station, got, 'deadlines', n, o.seconds * 1.5, o.pictures);
      phases.push(p);
      process.stderr.write(`${fmt(p)}\n`);
    }
    await station.stop();
  }

  // 3. The page's own work: one card's pictures, one snapshot.
  const work = await pageWork();
  const stationMsPerS = 1000 * median(0, 'stationCpu');
  const cardsPerS = capacity * (phases.filter((p) => p.what === 'capacity' && p.viewers === 0).reduce((a, p) => a + p.rejectShare, 0) / o.rounds);
  // Each card rendered once, within the thumbnail budget (30 ms/s, src/ui/pictures.ts); each viewer
  // fetches each card's thumbnail once; one snapshot per 500 ms.
  const drawnPerS = Math.min(cardsPerS, 30 / work.renderMs);
  const pageShare = (drawnPerS * (work.renderMs + o.viewers * work.requestMs) + 2 * work.snapshotMs) / stationMsPerS;

  const drop = 1 - cpuWithout / cpuWith;
  const dropWall = 1 - withViewers / capacity;
  const dropWithViewerCpu = 1 - cpuWithout / (cpuWith + viewerShare);
  const deadlinePhases = phases.filter((p) => p.what === 'deadlines');
  const late = deadlinePhases.reduce((a, p) => a + p.late + p.failSafe, 0);
  const ok = drop <= 0.05 && late === 0;
  const lines = [
    '',
    `| phase     | viewers | verdicts/s | p50 ms | p99 ms | fail-safe | late | dropped | updates | pictures | CPU ms/verd | station CPU | viewer CPU | loop busy | load1 |`,
    `|-----------|---------|------------|--------|--------|-----------|------|---------|---------|----------|-------------|-------------|------------|-----------|-------|`,
    ...phases.map(fmt),
    '',
    `capacity (median of ${o.rounds} phases each): station CPU per verdict ${cpuWithout.toFixed(0)} ms without viewers, ${cpuWith.toFixed(0)} ms with ${o.viewers}: ${(drop * 100).toFixed(1)} % capacity drop (limit 5 %); ${(dropWithViewerCpu * 100).toFixed(1)} % if the viewers ran on the station's cores`,
    `wall clock: ${capacity.toFixed(2)} verdicts/s without viewers, ${withViewers.toFixed(2)} with (${(dropWall * 100).toFixed(1)} %; follows the CPU other work leaves, see load1)`,
    `live camera at ${fps.toFixed(2)} fps (85 %), deadline ${o.deadlineMs} ms: ${late} late or fail-safe verdict(s)`,
    `page work: ${work.renderMs.toFixed(1)} ms CPU per card (its 128 px overlay as JPEG), ${work.requestMs.toFixed(2)} ms per thumbnail request served, ${work.snapshotMs.toFixed(2)} ms per snapshot (${work.cards} cards); at ${cardsPerS.toFixed(2)} cards/s (${drawnPerS.toFixed(2)}/s drawn within the budget), ${o.viewers} viewers and 2 snapshots/s that is ${(pageShare * 100).toFixed(1)} % of the ${stationMsPerS.toFixed(0)} ms CPU/s the station used`,
    `${ok ? 'OK' : 'NOT OK'}: ${cpus()[0]?.model} x ${cpus().length}, load average at the end ${loadavg().map((x) => x.toFixed(1)).join(' ')}`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  if (o.json) {
    mkdirSync(dirname(resolve(o.json)), { recursive: true });
    writeFileSync(resolve(o.json), `${JSON.stringify({ cpu: cpus()[0]?.model, cores: cpus().length, capacity, withViewers, cpuWithout, cpuWith, drop, dropWall, dropWithViewerCpu, late, liveFps: fps, pageWork: work, pageShare, phases }, null, 2)}\n`);
  }
  return ok ? 0 : 1;
}

const program = new Command()
  .option('--rounds <n>', 'capacity rounds (each: a phase without and one with viewers)', (v) => Number(v), 3)
  .option('--seconds <s>', 'seconds measured per phase', (v) => Number(v), 20)
  .option('--viewers <n>', 'browsers watching', (v) => Number(v), 10)
  .option('--deadline-ms <ms>', 'deadline of the live camera', (v) => Number(v), 2000)
  .option('--no-pictures', 'viewers hold the event stream only (no card pictures): separates the two costs')
  .option('--json <file>', 'also write the numbers as JSON')
  .option('--viewers-for <url>', '(internal) run the viewers against this page')
  .option('--requests-for <url>', '(internal) send thumbnail requests to this page')
  .option('--requests <n>', '(internal) how many', (v) => Number(v), 2000)
  .parse();
const opts = program.opts<{ rounds: number; seconds: number; viewers: number; deadlineMs: number; pictures: boolean; json?: string; viewersFor?: string; requestsFor?: string; requests: number }>();
if (opts.viewersFor) void viewers(opts.viewersFor, opts.viewers, opts.pictures);
else if (opts.requestsFor) void requests(opts.requestsFor, opts.requests);
else
  main(opts).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`ui-load: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exit(2);
    },
  );
