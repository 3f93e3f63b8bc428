/**
 * `fairline ingest` and `fairline worker`: scale-out inspection over NATS JetStream
 * (docs/scaleout.md). Ingest queues frames; any number of workers, on any machines, share the
 * queue and publish one verdict per frame.
 */
import { statSync } from 'node:fs';
import { resolve } from 'node:path';
import { Option, type Command } from 'commander';
import { take } from 'rxjs';
import { ConfigError } from '../errors.js';
import { loadInspectModel, type EngineChoice } from '../runtime/model.js';
import { imageFilesSource, listImageFiles, IMAGE_PATTERN } from '../runtime/sources.js';
import type { NatsConnectOptions } from '../streams/nats.js';
import { runIngest } from '../scaleout/ingest.js';
import { checkCamera, checkLine } from '../scaleout/protocol.js';
import { ScaleoutWorker } from '../scaleout/worker.js';
import { floatOption, intOption, thresholdOption, log, startBackend, type BackendCliOptions } from './common.js';
import { backendOptions } from './inspect.js';

interface NatsCliOptions {
  nats: string;
  user?: string;
  pass?: string;
  token?: string;
  creds?: string;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
}

/** The NATS connection flags both roles share. Secrets may come from the environment instead. */
function natsOptions(cmd: Command): Command {
  return cmd
    .requiredOption('--nats <urls>', 'NATS server URL(s), comma-separated')
    .option('--user <name>', 'NATS user')
    .option('--pass <password>', 'NATS password (or env FAIRLINE_NATS_PASSWORD)')
    .option('--token <token>', 'NATS token (or env FAIRLINE_NATS_TOKEN)')
    .option('--creds <file>', 'NATS .creds file (JWT + NKey seed)')
    .option('--tls-ca <file>', 'CA to verify the NATS server')
    .option('--tls-cert <file>', 'client certificate (mutual TLS)')
    .option('--tls-key <file>', 'client key (mutual TLS)');
}

function connectOptions(o: NatsCliOptions, name: string): NatsConnectOptions {
  const c: NatsConnectOptions = { servers: o.nats.split(',').map((s) => s.trim()).filter(Boolean), name };
  const pass = o.pass ?? process.env.FAIRLINE_NATS_PASSWORD;
  const token = o.token ?? process.env.FAIRLINE_NATS_TOKEN;
  if (o.user !== undefined) c.user = o.user;
  if (o.user !== undefined && pass !== undefined) c.pass = pass;
  if (token !== undefined) c.token = token;
  if (o.creds !== undefined) c.credsFile = resolve(o.creds);
  if (o.tlsCa !== undefined || o.tlsCert !== undefined || o.tlsKey !== undefined) {
    c.tls = {
      ...(o.tlsCa !== undefined && { caFile: resolve(o.tlsCa) }),
      ...(o.tlsCert !== undefined && { certFile: resolve(o.tlsCert) }),
      ...(o.tlsKey !== undefined && { keyFile: resolve(o.tlsKey) }),
    };
  }
  return c;
}

interface IngestCliOptions extends NatsCliOptions {
  line: string;
  camera: string;
  source: string;
  pattern: string;
  rate?: number;
  loop: boolean;
  count?: number;
  seqStart: number;
  window: number;
}

interface WorkerCliOptions extends NatsCliOptions, BackendCliOptions {
  line: string;
  model: string;
  batch: number;
  name?: string;
  station?: string;
  threshold?: number;
  engine: EngineChoice;
  ackWait: number;
  maxDeliver: number;
  failSafe: 'reject' | 'pass';
}

/** SIGTERM/SIGINT: first one stops gracefully, a second one exits at once. */
function onStopSignals(stop: () => void): () => void {
  let count = 0;
  const handler = (sig: NodeJS.Signals): void => {
    count++;
    if (count === 1) {
      log(`${sig}: finishing the current batch (send again to exit now)`);
      stop();
    } else process.exit(130);
  };
  process.on('SIGTERM', handler);
  process.on('SIGINT', handler);
  return () => {
    process.off('SIGTERM', handler);
    process.off('SIGINT', handler);
  };
}

export function register(program: Command): void {
  natsOptions(
    program
      .command('ingest')
      .description('queue frames (an image folder or file replay) on the line\'s JetStream work queue for `fairline worker`s')
      .requiredOption('--line <id>', 'production line id')
      .requiredOption('--camera <id>', 'camera id (subject token)')
      .requiredOption('--source <path>', 'image folder or one image file')
      .option('--pattern <glob>', 'files of the folder to send', IMAGE_PATTERN)
      .option('--rate <fps>', 'at most this many frames per second (default: as fast as the server acks)', floatOption('--rate', { min: 0, exclusiveMin: true }))
      .option('--loop', 'start over after the last file (seq keeps increasing)', false)
      .option('--count <n>', 'stop after this many frames', intOption('--count'))
      .option('--seq-start <n>', 'first seq; a re-run within the duplicate window must not reuse seqs of the same camera', intOption('--seq-start', 0), 0)
      .option('--window <n>', 'publishes in flight', intOption('--window'), 16),
  ).action(async (o: IngestCliOptions) => {
    checkLine(o.line);
    checkCamera(o.camera);
    let files: string[];
    const src = resolve(o.source);
    let isDir: boolean;
    try {
      isDir = statSync(src).isDirectory();
    } catch (err) {
      throw new ConfigError(`--source ${o.source}: ${(err as Error).message}`, { cause: err });
    }
    if (isDir) {
      files = listImageFiles(src, o.pattern);
      if (files.length === 0) throw new ConfigError(`--source ${o.source}: no files match '${o.pattern}'`);
    } else files = [src];
    const ac = new AbortController();
    const off = onStopSignals(() => ac.abort());
    try {
      const summary = await runIngest({
        nats: connectOptions(o, `fairline-ingest-${o.camera}`),
        line: o.line,
        window: o.window,
        signal: ac.signal,
        source: (pacing) => {
          const frames$ = imageFilesSource(
            files.map((path) => ({ path })),
            { sourceId: o.camera, loop: o.loop, seqStart: o.seqStart, ...pacing, ...(o.rate !== undefined && { fps: o.rate }) },
          );
          return o.count !== undefined ? frames$.pipe(take(o.count)) : frames$;
        },
        hooks: { onError: (e) => log(`ingest: ${e.message}`) },
      });
      log(`ingest: ${summary.published} frame(s) queued on ${summary.stream} in ${(summary.durationMs / 1000).toFixed(1)} s (${summary.duplicates} duplicate, ${summary.skipped} skipped)`);
      process.stdout.write(`${JSON.stringify(summary)}\n`);
      if (summary.skipped > 0) process.exitCode = 1;
    } finally {
      off();
    }
  });

  backendOptions(
    natsOptions(
      program
        .command('worker')
        .description('inspect frames from the line\'s JetStream work queue and publish one verdict per frame (scale-out)')
        .requiredOption('--line <id>', 'production line id')
        .requiredOption('--model <dir>', 'model folder')
        .option('--batch <n>', 'frames per fetch and model batch', intOption('--batch'), 8)
        .option('--name <id>', 'worker name (default <hostname>-<pid>)')
        .option('--station <id>', 'station field of verdicts (default: the worker name)')
        .option('--threshold <x>', 'reject threshold, > 0 (default: the model\'s calibrated one)', thresholdOption())
        .addOption(new Option('--engine <name>', 'restoration engine').choices(['auto', 'tfjs', 'onnx']).default('auto'))
        .option('--ack-wait <ms>', 'redeliver a frame not acked within this time (shared consumer setting)', intOption('--ack-wait', 100), 30_000)
        .option('--max-deliver <n>', 'deliveries per frame before it gets a max_deliver error verdict', intOption('--max-deliver'), 5)
        .addOption(new Option('--fail-safe <kind>', 'whether error verdicts trigger the reject gate').choices(['reject', 'pass']).default('reject')),
    ),
  ).action(async (o: WorkerCliOptions) => {
    checkLine(o.line);
    await startBackend(o);
    const model = await loadInspectModel({
      dir: resolve(o.model),
      engine: o.engine,
      requireThreshold: o.threshold === undefined,
      log,
      ...(o.threshold !== undefined && { threshold: o.threshold }),
    });
    let worker: ScaleoutWorker | undefined;
    let off: (() => void) | undefined;
    try {
      worker = await ScaleoutWorker.start({
        nats: connectOptions(o, `fairline-worker-${o.name ?? process.pid}`),
        line: o.line,
        model,
        batch: o.batch,
        consumer: { ackWaitMs: o.ackWait, maxDeliver: o.maxDeliver },
        failSafe: o.failSafe,
        ...(o.name !== undefined && { name: o.name }),
        ...(o.station !== undefined && { station: o.station }),
        ...(o.threshold !== undefined && { threshold: o.threshold }),
        hooks: {
          onReady: (i) => log(`worker ${i.name}: ready (stream ${i.stream}, consumer ${i.durable}, model ${model.id}, ${model.engineName}, batch ${o.batch})`),
          onDeadLetter: (seq, n) => log(`worker: frame #${seq} gave up after ${n} deliveries: max_deliver verdict`),
          onError: (e) => log(`worker: ${e.message}`),
        },
      });
      const w = worker;
      off = onStopSignals(() => void w.stop());
      await w.done;
      await w.stop();
      log(`worker ${w.name}: stopped`);
      process.stdout.write(`${JSON.stringify({ worker: w.name, ...w.stats() })}\n`);
    } finally {
      off?.();
      await worker?.stop().catch(() => undefined);
      await model.dispose();
    }
  });
}
