/**
 * `fairline demo`: the main job on built-in data, no camera, dataset or GPU needed.
 *
 * 1. a model: the one shipped in `models/hazelnut-demo` (made by `scripts/make-demo-model.sh`
 *    from the sample data), or a fresh one with `--train`;
 * 2. the live inspection graph over a replayed stream of the sample test images, printing each
 *    verdict as it is decided (and publishing it to NATS when a server is reachable);
 * 3. a summary (image AUROC, confusion matrix, frames/s, latency) and heatmap pictures.
 */
import { existsSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { backendOptions, checkOutputDir, intOption, log, startBackend, type BackendCliOptions } from './common.js';
import { ConfigError, ModelError } from '../errors.js';
import { runEval } from './eval.js';
import { train } from '../train/loop.js';
import { loadInspectModel } from '../runtime/model.js';
import { formatReport, replay } from '../runtime/replay.js';
import { natsSink, type VerdictSink } from '../runtime/station.js';
import { decisionDigits } from '../thresholds.js';
import type { Verdict } from '../verdict.js';

const REPO = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const SAMPLE_ROOT = join(REPO, 'data', 'hazelnut_toy');
const SHIPPED_MODEL = join(REPO, 'models', 'hazelnut-demo');

/** Printed under the demo's AUROC: the sample shows the pipeline works, not that a model is good. */
export const SAMPLE_CAVEAT =
  'note: this sample cannot tell a good model from a bad one (an untrained, randomly initialised c=4 UNet also scores image AUROC 1.0 on it);\n' +
  '      judge a model on a harder set, e.g. MVTec 3D-AD tire (../shared/data/tire_mvtec3d, CC BY-NC-SA, not shipped with fairline):\n' +
  '      fairline eval --data ../shared/data/tire_mvtec3d --category tire --model DIR --report DIR';

interface DemoOptions extends BackendCliOptions {
  train: boolean;
  epochs: number;
  out: string;
  model?: string;
  nats?: string;
  noNats: boolean;
}

/** Is something listening at host:port? (Short timeout: the demo must not hang on a dead URL.) */
function reachable(url: string, timeoutMs = 400): Promise<boolean> {
  const m = /^(?:nats:\/\/)?([^:/]+):(\d+)/.exec(url);
  if (!m) return Promise.resolve(false);
  return new Promise((done) => {
    const s = tcpConnect({ host: m[1]!, port: Number(m[2]) });
    const finish = (ok: boolean): void => {
      s.destroy();
      done(ok);
    };
    s.setTimeout(timeoutMs, () => finish(false));
    s.once('connect', () => finish(true));
    s.once('error', () => finish(false));
  });
}

/** One verdict as the demo prints it: `#  3 REJECT score 2.0265 (threshold 0.56981)   352 ms regions 1`. */
export function verdictLine(v: Verdict): string {
  // Enough digits that the shown score and threshold agree with the decision (score >= threshold rejects).
  const digits = v.score != null && v.threshold != null ? decisionDigits(v.score, v.threshold, 5) : 5;
  const score = v.score === null || v.score === undefined ? '   -   ' : v.score.toPrecision(digits);
  const regions = v.regions?.length ? ` regions ${v.regions.length}` : '';
  const tag = v.verdict === 'reject' ? 'REJECT' : v.verdict === 'pass' ? 'pass  ' : 'ERROR ';
  return `#${String(v.seq).padStart(3)} ${tag} score ${score} (threshold ${v.threshold?.toPrecision(digits) ?? '-'}) ${String(Math.round(v.latencyMs)).padStart(5)} ms${regions}${v.reason ? ` (${v.reason})` : ''}`;
}

export async function runDemo(o: DemoOptions): Promise<void> {
  if (o.train && o.model) throw new ConfigError('give --train (train a fresh model) or --model DIR (use that one), not both');
  const out = checkOutputDir(o.out, '--out');
  let modelDir = o.model ? resolve(o.model) : SHIPPED_MODEL;
  // Only --train trains: a missing model is an error, not a reason to spend minutes training.
  if (!o.train && !existsSync(join(modelDir, 'model.json'))) {
    throw new ModelError(
      'missing',
      o.model
        ? `no model at ${modelDir} (no model.json there); pass the folder 'fairline train' or 'fairline import' wrote, or --train to train a fresh one`
        : `the shipped demo model ${modelDir} is missing; restore it (git checkout models/hazelnut-demo or scripts/make-demo-model.sh) or pass --train`,
    );
  }
  const backend = await startBackend(o);
  if (o.train) {
    modelDir = join(out, 'model');
    log(`demo: training a small model (c=8, 256 px, ${o.epochs} epochs) on ${SAMPLE_ROOT} ...`);
    await train(
      {
        dataRoot: SAMPLE_ROOT, category: 'hazelnut', out: modelDir, epochs: o.epochs, batch: 4, width: 8, size: 256,
        filter: { kind: 'butterworth', cutoff: 30, order: 2 }, seed: 1, lr: 1e-3, cutpaste: 'faithful', resume: false,
      },
      { log, onEpoch: (s) => log(`  epoch ${s.epoch}/${s.epochs} loss ${s.loss.toFixed(4)} ${s.imagesPerSecond.toFixed(2)} img/s`) },
    );
  }
  const model = await loadInspectModel({ dir: modelDir, log });
  log(`demo: model ${model.id} (${model.engineName}, threshold ${model.threshold?.toPrecision(6)} from ${model.thresholdSource})`);

  let sink: VerdictSink | undefined;
  const natsUrl = o.nats ?? 'nats://127.0.0.1:4222';
  if (!o.noNats && (await reachable(natsUrl))) {
    sink = await natsSink({
      line: 'demo',
      nats: { servers: [natsUrl], jetstream: { enabled: false, stream: 'FAIRLINE' } },
      spool: { dir: join(out, 'spool'), maxBytes: 64 * 2 ** 20 },
      log,
    });
    log(`demo: publishing verdicts to ${natsUrl} on fairline.demo.sample.verdict / .reject`);
  } else {
    log(`demo: no NATS server at ${natsUrl}; verdicts go to stdout only (start nats-server or pass --nats URL to publish)`);
  }

  const source = join(SAMPLE_ROOT, 'hazelnut', 'test');
  process.stdout.write(`\nlive graph over a replayed stream of ${source}:\n`);
  const report = await replay({
    model,
    source,
    camera: 'sample',
    line: 'demo',
    station: 'demo',
    batch: { maxSize: 4, maxWaitMs: 20 },
    sink,
    onVerdict: (v) => process.stdout.write(`${verdictLine(v)}\n`),
  }).catch(async (err: unknown) => {
    await sink?.close();
    throw err;
  });
  await sink?.close();
  process.stdout.write(`\n${formatReport(report)}\n`);

  log('demo: writing heatmap pictures ...');
  const evalOut = await runEval({ data: SAMPLE_ROOT, category: 'hazelnut', model: modelDir, report: join(out, 'report'), pictures: 'all', batch: 4, backend: backend.name, json: true }, { backend: backend.name, progress: false });
  const m = evalOut.report.mean;
  process.stdout.write(
    `\nevaluation (same operators): image_AUROC ${m.image_AUROC.value?.toFixed(4)}  pixel_AUROC ${m.pixel_AUROC.value?.toFixed(4)}  AUPRO ${m.AUPRO.value?.toFixed(4)}\n` +
      `${SAMPLE_CAVEAT}\n` +
      `pictures: ${evalOut.paths.html}\n` +
      // From process start (Node and tsx start-up included), as the user waits for it.
      `done in ${process.uptime().toFixed(1)} s (model ${model.id} from ${relative(process.cwd(), modelDir) || '.'}, backend ${backend.name})\n`,
  );
  await model.dispose();
}

export function register(program: Command): void {
  backendOptions(
    program
      .command('demo')
      .description('run the main job on the built-in sample: replay the test images through the live graph, print verdicts, AUROC, speed and write heatmaps')
      .option('--train', 'train a fresh model first instead of using the shipped one', false)
      .option('--epochs <n>', 'epochs for --train', intOption('--epochs'), 10)
      .option('--model <dir>', 'use this model instead of the shipped one')
      .option('--out <dir>', 'where to write the model (with --train), pictures and spool', 'runs/demo')
      .option('--nats <url>', 'NATS server to publish verdicts to (default: nats://127.0.0.1:4222 when reachable)')
      .option('--no-nats', 'never publish to NATS'),
  ).action(async (o: Omit<DemoOptions, 'nats' | 'noNats'> & { nats?: string | boolean }) => {
    await runDemo({ ...o, noNats: o.nats === false, nats: typeof o.nats === 'string' ? o.nats : undefined });
  });
}
