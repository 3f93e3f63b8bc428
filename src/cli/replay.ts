/**
 * `fairline replay`: recorded images or a video through the live inspection graph, with a
 * validation report (confusion matrix, latency percentiles, frames/s, per-image scores);
 * `--nats URL` also publishes every verdict exactly as a live station does.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Option, type Command } from 'commander';
import { removeAtExit } from '../io/temp.js';
import { loadInspectModel, type EngineChoice } from '../runtime/model.js';
import { formatReport, replay } from '../runtime/replay.js';
import { natsSink, type VerdictSink } from '../runtime/station.js';
import { intOption, thresholdOption, log, startBackend, type BackendCliOptions } from './common.js';
import { startOperatorView } from '../ui/view.js';
import { backendOptions, listenOption } from './inspect.js';

interface ReplayCliOptions extends BackendCliOptions {
  source: string;
  labels?: string;
  model: string;
  threshold?: number;
  nats?: string;
  jetstream?: string | boolean;
  spool?: string;
  line: string;
  station: string;
  camera: string;
  engine: EngineChoice;
  batch: number;
  json: boolean;
  images: boolean;
  ui?: { host: string; port: number };
}

/** The first SIGINT or SIGTERM. */
function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const on = (s: NodeJS.Signals): void => {
      process.off('SIGINT', on);
      process.off('SIGTERM', on);
      resolve(s);
    };
    process.on('SIGINT', on);
    process.on('SIGTERM', on);
  });
}

export function register(program: Command): void {
  backendOptions(
    program
      .command('replay')
      .description('replay images or a video through the inspection graph and report (optionally publishing verdicts to NATS)')
      .requiredOption('--source <path>', 'image folder (good/ + defect folders give labels), one image, or a video file')
      .requiredOption('--model <dir>', 'model folder')
      .option('--labels <file>', 'labels CSV (path,label) or JSON ({path: label}); overrides the folder layout')
      .option('--threshold <x>', 'reject threshold, > 0 (default: the model\'s calibrated one)', thresholdOption())
      .option('--nats <url>', 'publish verdicts to this NATS server, as a live station does')
      .option('--jetstream [stream]', 'with --nats: also into a JetStream audit stream (default name FAIRLINE_<line>)')
      .option('--spool <dir>', 'with --nats: spool folder for verdicts NATS has not taken (default: a temp folder)')
      .option('--line <id>', 'line id in verdicts and subjects', 'replay')
      .option('--station <id>', 'station id in verdicts', 'replay')
      .option('--camera <id>', 'camera id in verdicts and subjects', 'replay')
      .addOption(new Option('--engine <name>', 'restoration engine').choices(['auto', 'tfjs', 'onnx']).default('auto'))
      .option('--batch <n>', 'images per model batch', intOption('--batch'), 8)
      .option('--no-images', 'leave the per-image list out of the text report')
      .option('--json', 'print the report as JSON', false)
      .option('--ui <addr>', 'serve the operator page while replaying, and after it until Ctrl-C (host:port or a port; 127.0.0.1 unless a host is given)', listenOption('--ui')),
  ).action(async (o: ReplayCliOptions) => {
    await startBackend(o);
    const model = await loadInspectModel({
      dir: resolve(o.model), engine: o.engine, requireThreshold: o.threshold === undefined, thresholdHint: 'pass --threshold <x> for this replay', log,
      ...(o.threshold !== undefined ? { threshold: o.threshold } : {}),
    });
    const view = o.ui
      ? await startOperatorView({ line: o.line, station: o.station, model, cameras: [{ id: o.camera, mode: 'replay', threshold: o.threshold ?? model.threshold ?? NaN }], ui: { listen: o.ui }, log })
      : undefined;
    let sink: VerdictSink | undefined;
    let spoolDir: string | undefined;
    let tempSpool = false;
    let forgetSpool: (() => void) | undefined;
    try {
      if (o.nats) {
        spoolDir = o.spool ? resolve(o.spool) : mkdtempSync(join(tmpdir(), 'fairline-replay-spool-'));
        tempSpool = !o.spool;
        // A temp spool goes however the replay ends (Ctrl-C, SIGTERM); kept (and named) only
        // when a finished replay leaves verdicts in it.
        if (tempSpool) forgetSpool = removeAtExit(spoolDir);
        const js = o.jetstream === undefined || o.jetstream === false ? { enabled: false, stream: `FAIRLINE_${o.line}` } : { enabled: true, stream: o.jetstream === true ? `FAIRLINE_${o.line}` : o.jetstream };
        const s = await natsSink({ line: o.line, nats: { servers: [o.nats], jetstream: js }, spool: { dir: spoolDir, maxBytes: 64 * 2 ** 20 }, name: `fairline-replay-${o.line}`, log });
        sink = s;
        // A replay is interactive: fail now if the server is not there rather than fill a spool.
        await s.publisher.ready(10000);
      }
      const report = await replay({
        model, source: o.source, line: o.line, station: o.station, camera: o.camera, batch: { maxSize: o.batch, maxWaitMs: 20 },
        ...(o.labels ? { labels: o.labels } : {}),
        ...(o.threshold !== undefined ? { threshold: o.threshold } : {}),
        ...(sink ? { sink } : {}),
        ...(view ? { hooks: view.inspectHooks({}) } : {}),
      });
      await sink?.close();
      const pub = sink?.stats?.();
      if (pub) log(`nats: ${pub.published} verdict(s) published to fairline.${o.line}.${o.camera}.verdict${pub.pending ? `, ${pub.pending} left in ${spoolDir}` : ''}`);
      if (o.json) process.stdout.write(`${JSON.stringify(pub ? { ...report, published: pub } : report)}\n`);
      else process.stdout.write(`${formatReport(report, { perImage: o.images })}\n`);
      if (report.sourceError) {
        log(`replay: the source ended with an error after ${report.sourceError.afterFrames} frame(s): ${report.sourceError.code}: ${report.sourceError.message}`);
        process.exitCode = 1;
      }
      if (tempSpool && pub && pub.pending > 0) forgetSpool?.();
      if (tempSpool && spoolDir && pub && pub.pending === 0) rmSync(spoolDir, { recursive: true, force: true });
      else if (tempSpool && spoolDir && readdirSync(spoolDir).length === 0) rmSync(spoolDir, { recursive: true, force: true });
      if (view) {
        view.ended(o.camera);
        log(`replay done: the operator page stays at ${view.url} until Ctrl-C`);
        await untilSignal();
      }
    } finally {
      await view?.close();
      await sink?.close().catch(() => undefined);
      await model.dispose();
    }
  });
}
