/**
 * Soak test: run the live graph (a station with synthetic cameras at a steady rate) for N minutes
 * and watch memory. Every few seconds it records RSS, V8 heap, external/ArrayBuffer memory,
 * `tf.memory()` tensors and bytes, frames and verdicts; at the end it prints start/end/max and a
 * verdict: FLAT when the tensor count does not grow after warm-up and the (Theil-Sen) slopes of
 * RSS and live heap (sampled after a full GC) over the post-warm-up samples stay under the limit.
 * Exit code 0 = flat, 1 = not.
 *
 * Usage:
 *   node --import tsx scripts/soak.ts --minutes 30
 *   node --import tsx scripts/soak.ts --minutes 30 --model models/hazelnut-demo --fps 2
 *   node --import tsx scripts/soak.ts --minutes 2 --size 256 --width 8 --fps 2 --out runs/soak-256
 *
 * Without --model a random-init FAIR model (c = --width, --size px) is made in a temp folder:
 * scores are meaningless, compute and memory behaviour are the real thing.
 * Output: <out>/samples.csv (written as it goes) and <out>/summary.json.
 */
import { mkdirSync, appendFileSync, writeFileSync, rmSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import * as tf from '@tensorflow/tfjs';
import { Command, InvalidArgumentError } from 'commander';
import { parseConfig } from '../src/config.js';
import { saveModel } from '../src/io/artefact.js';
import { defaultSpec } from '../src/model/types.js';
import { createUNet } from '../src/model/tfjs/unet.js';
import { unetToTorch } from '../src/model/weights.js';
import { startStation, type VerdictSink } from '../src/runtime/station.js';
import type { Verdict } from '../src/verdict.js';

interface Options {
  minutes: number;
  fps: number;
  cameras: number;
  frame: string;
  size: number;
  width: number;
  model?: string;
  backend: 'auto' | 'tensorflow' | 'wasm' | 'cpu';
  sampleS: number;
  warmupS?: number;
  maxSlopeMbPerMin: number;
  scrape: boolean;
  out?: string;
}

interface Sample {
  t: number;
  rssMb: number;
  heapUsedMb: number;
  externalMb: number;
  arrayBuffersMb: number;
  numTensors: number;
  tensorMb: number;
  frames: number;
  verdicts: number;
  errors: number;
  failSafe: number;
  dropped: number;
}

const num = (name: string, min: number) => (v: string): number => {
  const n = Number(v);
  if (!Number.isFinite(n) || n < min) throw new InvalidArgumentError(`${name} must be a number >= ${min}`);
  return n;
};

/**
 * Theil-Sen slope of y over x: the median of all pairwise slopes. Robust to the RSS spikes that
 * GC and allocator returns cause, which would dominate a least-squares fit over a few minutes.
 */
export function slope(xs: readonly number[], ys: readonly number[]): number {
  const s: number[] = [];
  for (let i = 0; i < xs.length; i++)
    for (let j = i + 1; j < xs.length; j++) if (xs[j] !== xs[i]) s.push((ys[j]! - ys[i]!) / (xs[j]! - xs[i]!));
  if (s.length === 0) return 0;
  s.sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

const MB = 2 ** 20;
// A full GC before each sample makes heapUsed the live heap instead of a GC sawtooth, so its
// slope means something over minutes (the usual --expose-gc without restarting node).
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function main(o: Options): Promise<number> {
  const [fw, fh] = o.frame.split('x').map(Number) as [number, number];
  if (!(fw > 0 && fh > 0)) throw new InvalidArgumentError('--frame must be WxH, e.g. 320x240');
  const out = resolve(o.out ?? join('runs', `soak-${new Date().toISOString().replace(/[:.]/g, '-')}`));
  mkdirSync(out, { recursive: true });
  const tmp = mkdtempSync(join(tmpdir(), 'fairline-soak-'));
  let modelDir = o.model ? resolve(o.model) : join(tmp, 'model');
  if (!o.model) {
    const spec = defaultSpec({ size: o.size, baseWidth: o.width });
    const unet = createUNet(spec.unet, 1);
    saveModel(modelDir, { spec, tensors: unetToTorch(unet), idPrefix: 'soak', thresholds: { image: 1, method: 'manual', computedAt: new Date().toISOString() } });
    unet.dispose();
  }
  modelDir = resolve(modelDir);

  const config = parseConfig(
    {
      line: 'SOAK',
      station: 'S1',
      model: modelDir,
      backend: o.backend,
      engine: 'tfjs',
      cameras: Array.from({ length: o.cameras }, (_, i) => ({
        id: `sim${i}`,
        mode: 'live',
        source: { type: 'synthetic', width: fw, height: fh, fps: o.fps, defectRate: 0.1, seed: i + 1 },
      })),
      batch: { maxSize: 8, maxWaitMs: 20 },
      deadlineMs: 2000,
      threshold: 1,
      metrics: { port: 0 },
      spool: { dir: join(tmp, 'spool') },
    },
    { baseDir: tmp },
  );

  const counts = { verdicts: 0, errors: 0, failSafe: 0 };
  // Count and forget: a sink that kept verdicts would itself look like a leak.
  const sink: VerdictSink = {
    kind: 'count',
    publish: (v: Verdict) => {
      counts.verdicts++;
      if (v.verdict === 'error') counts.errors++;
      if (v.failSafe) counts.failSafe++;
    },
    close: async () => undefined,
  };
  const station = await startStation({ config, sink, log: (m) => process.stderr.write(`${m}\n`) });
  const csv = join(out, 'samples.csv');
  const cols: (keyof Sample)[] = ['t', 'rssMb', 'heapUsedMb', 'externalMb', 'arrayBuffersMb', 'numTensors', 'tensorMb', 'frames', 'verdicts', 'errors', 'failSafe', 'dropped'];
  writeFileSync(csv, `${cols.join(',')}\n`);
  const samples: Sample[] = [];
  const t0 = performance.now();
  const sumOf = async (name: 'framesReceived' | 'framesDropped'): Promise<number> => (await station.metrics[name].get()).values.reduce((a, x) => a + x.value, 0);

  const take = async (): Promise<Sample> => {
    // Scrape /metrics as Prometheus would: the endpoint is part of what runs for weeks.
    if (o.scrape) await fetch(station.metricsUrl!).then((r) => r.text());
    gc();
    const m = process.memoryUsage();
    const tm = tf.memory();
    const s: Sample = {
      t: (performance.now() - t0) / 1000,
      rssMb: m.rss / MB,
      heapUsedMb: m.heapUsed / MB,
      externalMb: m.external / MB,
      arrayBuffersMb: m.arrayBuffers / MB,
      numTensors: tm.numTensors,
      tensorMb: tm.numBytes / MB,
      frames: await sumOf('framesReceived'),
      verdicts: counts.verdicts,
      errors: counts.errors,
      failSafe: counts.failSafe,
      dropped: await sumOf('framesDropped'),
    };
    samples.push(s);
    appendFileSync(csv, `${cols.map((c) => (Number.isInteger(s[c]) ? s[c] : s[c].toFixed(3))).join(',')}\n`);
    return s;
  };

  let stop = false;
  const onSig = (): void => void (stop = true);
  process.once('SIGINT', onSig);
  process.once('SIGTERM', onSig);
  const endAt = t0 + o.minutes * 60_000;
  process.stderr.write(`soak: ${o.minutes} min, ${o.cameras} camera(s) x ${o.fps} fps, ${fw}x${fh} frames, model ${station.model.id} (${station.model.size}px, c=${station.model.spec.unet.baseWidth}, ${station.model.engineName}); samples every ${o.sampleS} s -> ${csv}\n`);
  while (!stop && performance.now() < endAt) {
    const s = await take();
    process.stderr.write(`  t=${s.t.toFixed(0)}s rss=${s.rssMb.toFixed(1)}MB heap=${s.heapUsedMb.toFixed(1)}MB tensors=${s.numTensors} verdicts=${s.verdicts} dropped=${s.dropped}\n`);
    await sleep(Math.min(o.sampleS * 1000, Math.max(0, endAt - performance.now())));
  }
  await take();
  const summary = await station.stop('soak end');
  rmSync(tmp, { recursive: true, force: true });

  // Warm-up: caches, JIT, tfjs kernels and the GC's heap sizing settle in the first part.
  const warm = o.warmupS ?? Math.min(60, (o.minutes * 60) / 4);
  const post = samples.filter((s) => s.t >= warm);
  const use = post.length >= 3 ? post : samples;
  const perMin = (k: keyof Sample): number => slope(use.map((s) => s.t / 60), use.map((s) => s[k]));
  const stat = (k: keyof Sample) => ({ start: samples[0]![k], end: samples[samples.length - 1]![k], max: Math.max(...samples.map((s) => s[k])), slopePerMin: perMin(k) });
  const tensorsAfterWarmup = use.map((s) => s.numTensors);
  const tensorGrowth = Math.max(...tensorsAfterWarmup) - Math.min(...tensorsAfterWarmup);
  const rss = stat('rssMb'), heap = stat('heapUsedMb'), tensors = stat('numTensors');
  const flat = tensorGrowth === 0 && rss.slopePerMin < o.maxSlopeMbPerMin && heap.slopePerMin < o.maxSlopeMbPerMin;
  const seconds = samples[samples.length - 1]!.t;
  const result = {
    flat,
    criteria: `numTensors constant after ${warm.toFixed(0)} s warm-up; RSS and heap slopes < ${o.maxSlopeMbPerMin} MB/min`,
    minutes: seconds / 60,
    options: o,
    model: { id: station.model.id, size: station.model.size, baseWidth: station.model.spec.unet.baseWidth, engine: station.model.engineName, backend: station.model.backend },
    rssMb: rss,
    heapUsedMb: heap,
    externalMb: stat('externalMb'),
    numTensors: { ...tensors, growthAfterWarmup: tensorGrowth },
    frames: summary.cameras ? Object.values(summary.cameras).reduce((a, c) => a + c.frames, 0) : 0,
    verdicts: counts.verdicts,
    verdictsPerSecond: counts.verdicts / seconds,
    errors: counts.errors,
    failSafe: counts.failSafe,
    dropped: samples[samples.length - 1]!.dropped,
    unfinished: summary.unfinished,
    samples: samples.length,
  };
  writeFileSync(join(out, 'summary.json'), JSON.stringify(result, null, 2) + '\n');
  const f = (x: number) => x.toFixed(2);
  console.log(`soak ${f(result.minutes)} min, ${result.verdicts} verdicts (${f(result.verdictsPerSecond)}/s), ${result.dropped} dropped, ${result.failSafe} fail-safe, ${result.errors} error`);
  console.log(`RSS MB      start ${f(rss.start)}  end ${f(rss.end)}  max ${f(rss.max)}  slope ${f(rss.slopePerMin)} MB/min (after warm-up)`);
  console.log(`heap MB     start ${f(heap.start)}  end ${f(heap.end)}  max ${f(heap.max)}  slope ${f(heap.slopePerMin)} MB/min`);
  console.log(`tf tensors  start ${tensors.start}  end ${tensors.end}  max ${tensors.max}  growth after warm-up ${tensorGrowth}`);
  console.log(`verdict: ${flat ? 'FLAT' : 'NOT FLAT'} (${result.criteria}); ${join(out, 'samples.csv')}, ${join(out, 'summary.json')}`);
  return flat ? 0 : 1;
}

const program = new Command('soak')
  .description('run the live graph for N minutes and check that memory stays flat')
  .option('--minutes <n>', 'duration', num('--minutes', 0.1), 2)
  .option('--fps <n>', 'frames per second per camera', num('--fps', 0.1), 10)
  .option('--cameras <n>', 'synthetic cameras', num('--cameras', 1), 1)
  .option('--frame <WxH>', 'camera frame size (resized to the model size in the graph)', '320x240')
  .option('--size <px>', 'model input size (random model)', num('--size', 16), 64)
  .option('--width <c>', 'UNet base width (random model)', num('--width', 1), 4)
  .option('--model <dir>', 'use this model artefact instead of a random one')
  .option('--backend <name>', 'tfjs backend: auto | tensorflow | wasm | cpu', 'wasm')
  .option('--sample-s <s>', 'seconds between samples', num('--sample-s', 0.5), 5)
  .option('--warmup-s <s>', 'ignore samples before this for the verdict (default min(60 s, a quarter of the run))', num('--warmup-s', 0))
  .option('--max-slope-mb-per-min <mb>', 'largest RSS/heap growth still called flat', num('--max-slope-mb-per-min', 0), 1)
  .option('--no-scrape', 'do not fetch /metrics at each sample (to tell the endpoint apart from the graph)')
  .option('--out <dir>', 'output folder (default runs/soak-<time>)');
program.parse();
process.exitCode = await main(program.opts<Options>());
// Native handles (onnxruntime, wasm threads) must not keep a finished soak alive.
setTimeout(() => process.exit(process.exitCode ?? 0), 1000).unref();
