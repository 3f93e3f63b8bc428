/**
 * The measured workloads, each a small function over fairline's real code paths: UNet
 * inference through a {@link Restorer}, a Trainer step, the FFT high-pass, scoring, the domain
 * guard, decode (sharp + OpenCV-exact resize) and the whole live inspect() graph.
 */
import * as tf from '@tensorflow/tfjs';
import { Observable, lastValueFrom, from, toArray } from 'rxjs';
import sharp from 'sharp';
import { DEFAULT_GUARD } from '../../src/config.js';
import { loadModelImage } from '../../src/io/image.js';
import { FairDetector, type DetectorGraph, type Restorer } from '../../src/model/detector.js';
import { frameDecoder } from '../../src/runtime/model.js';
import type { DecodeOutput } from '../../src/operators/decode.js';
import { fitGuard, guardFeatures, judgeGuard } from '../../src/model/guard.js';
import { HighPass } from '../../src/model/highpass.js';
import { scoreToArrays } from '../../src/model/tfjs/score.js';
import { Trainer } from '../../src/model/tfjs/trainer.js';
import { DEFAULT_FILTER, DEFAULT_SCORING, type FairSpec, type ImageF32 } from '../../src/model/types.js';
import { createUNet } from '../../src/model/tfjs/unet.js';
import { inspect } from '../../src/operators/inspect.js';
import type { Frame } from '../../src/streams/frame.js';
import type { Verdict } from '../../src/verdict.js';
import { measure, percentile, type Rate } from './measure.js';

/** Deterministic pseudo-random floats (xorshift), so runs feed identical inputs. */
export function noise(n: number, seed: number, scale = 1, offset = 0): Float32Array {
  const out = new Float32Array(n);
  let s = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = offset + scale * ((s >>> 0) / 4294967296 - 0.5);
  }
  return out;
}

/** A smooth test image with texture (HWC BGR [0,1]); the high-pass of pure noise is atypical. */
export function testImage(size: number, seed: number): ImageF32 {
  const n = noise(size * size * 3, seed, 0.1);
  const data = new Float32Array(size * size * 3);
  for (let y = 0; y < size; y++)
    for (let x = 0; x < size; x++)
      for (let c = 0; c < 3; c++) {
        const i = (y * size + x) * 3 + c;
        data[i] = Math.min(1, Math.max(0, 0.5 + 0.3 * Math.sin((x + 3 * seed) / (9 + c)) * Math.cos(y / 13) + n[i]!));
      }
  return { width: size, height: size, channels: 3, data };
}

/** Restoration throughput: `batch` high-pass images of `size`^2 per call. */
export async function inferenceRate(restorer: Restorer, cfg: { size: number; batch: number; seconds: number; cin?: number }): Promise<Rate> {
  const cin = cfg.cin ?? 1;
  const x = noise(cfg.batch * cfg.size * cfg.size * cin, 7, 0.4);
  return measure(() => restorer.restore(x, cfg.batch, cfg.size, cin), cfg.batch, { seconds: cfg.seconds });
}

/**
 * Training throughput of `Trainer.step` (forward, MSE + SSIM loss, backward, Adam) on the active
 * tfjs backend. The warm-up is one micro-batch only: it triggers every kernel's first-call setup
 * at a quarter of a batch-8 step's cost.
 */
export async function trainingRate(cfg: { width: number; size: number; batch: number; microBatch: number; seconds: number }): Promise<Rate> {
  const unet = createUNet({ baseWidth: cfg.width, inChannels: 1, outChannels: 3 }, 1);
  const trainer = new Trainer(unet, { epochs: 10, microBatch: cfg.microBatch });
  const px = cfg.size * cfg.size;
  const x = tf.tensor4d(noise(cfg.batch * px, 3, 0.4), [cfg.batch, cfg.size, cfg.size, 1]);
  const t = tf.tensor4d(noise(cfg.batch * px * 3, 4, 0.8, 0.5), [cfg.batch, cfg.size, cfg.size, 3]);
  const wb = Math.min(cfg.batch, cfg.microBatch);
  const xw = tf.slice(x, [0, 0, 0, 0], [wb, -1, -1, -1]);
  const tw = tf.slice(t, [0, 0, 0, 0], [wb, -1, -1, -1]);
  try {
    return await measure(() => trainer.step(x, t), cfg.batch, { seconds: cfg.seconds, warmup: () => trainer.step(xw, tw) });
  } finally {
    tf.dispose([x, t, xw, tw]);
    trainer.dispose();
    unet.dispose();
  }
}

/** FFT Butterworth high-pass (fft.js on typed arrays) of `batch` BGR images. */
export async function highpassRate(cfg: { size: number; batch: number; seconds: number }): Promise<Rate> {
  const hp = new HighPass(cfg.size, DEFAULT_FILTER);
  const imgs = Array.from({ length: cfg.batch }, (_, i) => testImage(cfg.size, i).data);
  const batch = new Float32Array(cfg.batch * cfg.size * cfg.size * 3);
  imgs.forEach((d, i) => batch.set(d, i * d.length));
  return measure(() => hp.fromBgr(batch, cfg.batch), cfg.batch, { seconds: cfg.seconds, minIters: 3 });
}

/** Scoring (MSGMS + colour + 21x21 mean + max) on the active tfjs backend, arrays out. */
export async function scoringRate(cfg: { size: number; batch: number; seconds: number }): Promise<Rate> {
  const s = cfg.size;
  const orig = tf.tensor4d(noise(cfg.batch * s * s * 3, 5, 0.8, 0.5), [cfg.batch, s, s, 3]);
  const rest = tf.tensor4d(noise(cfg.batch * s * s * 3, 6, 0.8, 0.5), [cfg.batch, s, s, 3]);
  try {
    return await measure(() => scoreToArrays(rest, orig, DEFAULT_SCORING), cfg.batch, { seconds: cfg.seconds, minIters: 3 });
  } finally {
    tf.dispose([orig, rest]);
  }
}

/** The domain guard per frame: features of a model-size BGR image and the in-domain test (src/model/guard.ts). */
export async function guardRate(cfg: { size: number; seconds: number }): Promise<Rate> {
  const imgs = Array.from({ length: 8 }, (_, i) => testImage(cfg.size, i));
  const stats = fitGuard(imgs.map(guardFeatures), { size: cfg.size, source: 'bench' });
  let k = 0;
  return measure(() => judgeGuard(stats, guardFeatures(imgs[k++ % imgs.length]!)), 1, { seconds: cfg.seconds, minIters: 20 });
}

/** A raw RGB camera buffer (`width` x `height`, the same content as {@link syntheticPng}). */
export async function syntheticRaw(width: number, height: number, seed: number): Promise<Uint8Array> {
  const png = await syntheticPng(Math.max(width, height), seed);
  const { data } = await sharp(png).extract({ left: 0, top: 0, width, height }).raw().toBuffer({ resolveWithObject: true });
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** A camera-like PNG (`side`^2 RGB, smooth shading plus sensor noise). */
export async function syntheticPng(side: number, seed: number): Promise<Buffer> {
  const raw = Buffer.alloc(side * side * 3);
  const n = noise(side * side, seed, 12);
  for (let y = 0; y < side; y++)
    for (let x = 0; x < side; x++) {
      const i = y * side + x;
      const base = 128 + 60 * Math.sin((x + seed * 17) / 37) * Math.cos(y / 23);
      raw[3 * i] = Math.max(0, Math.min(255, base + n[i]!));
      raw[3 * i + 1] = Math.max(0, Math.min(255, base * 0.9 + n[i]!));
      raw[3 * i + 2] = Math.max(0, Math.min(255, base * 0.8 + n[i]!));
    }
  return sharp(raw, { raw: { width: side, height: side, channels: 3 } }).png().toBuffer();
}

/** Decode (sharp/libvips) + INTER_LINEAR resize to `size` + /255, one PNG per call. */
export async function decodeRate(cfg: { size: number; side: number; seconds: number }): Promise<Rate> {
  const pngs = await Promise.all([0, 1, 2, 3].map((i) => syntheticPng(cfg.side, i)));
  let k = 0;
  return measure(() => loadModelImage(pngs[k++ % pngs.length]!, cfg.size), 1, { seconds: cfg.seconds, minIters: 5 });
}

/** Latency and throughput of one pipeline run. */
export interface PipelineRun {
  /** 'replay' (as fast as possible, nothing dropped) or the offered load as a fraction of capacity. */
  load: 'max' | number;
  offeredFps?: number;
  frames: number;
  seconds: number;
  /** Verdicts (pass/reject) per second. */
  fps: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  pass: number;
  reject: number;
  dropped: number;
  errors: number;
}

export interface PipelineOptions {
  spec: FairSpec;
  /** The UNet restorer, or the whole-detector graph (src/io/onnx-detector.ts). */
  restorer: Restorer | DetectorGraph;
  /** Side of the synthetic PNG frames (decoded and resized to spec.size). */
  side: number;
  /**
   * Frames: 'png' (default) = side^2 PNG files, decoded by sharp; 'raw' = raw RGB camera buffers
   * of `raw` size (GStreamer appsink), resized in place without encode or decode.
   */
  frames?: 'png' | 'raw';
  /** Raw frame size (default 1280 x 1024). */
  raw?: { width: number; height: number };
  batch: { maxSize: number; maxWaitMs: number };
  /** Frames for the capacity run. */
  capacityFrames: number;
  /** Seconds per paced run. */
  seconds: number;
  /** Fractions of capacity to offer (default [0.5, 1]). */
  loads?: number[];
  /** Run the domain guard (fitted on the bench frames, frozen-camera check in live mode) as a station does (default true). */
  guard?: boolean;
  log?: (msg: string) => void;
}

/**
 * Drive the real `inspect()` graph (decode -> batch -> high-pass + restore + score -> threshold
 * -> verdict): first in replay mode with every frame offered at once, which gives the capacity
 * in frames/s, then in live mode (drop-oldest, as on a line) with a paced source at fractions of
 * that capacity. Latency is decision time minus the frame's scheduled capture time, so a
 * blocked event loop (onnxruntime runs on the main thread) counts against it, as it would for
 * a camera.
 */
export async function pipelineBench(opts: PipelineOptions): Promise<{ capacity: PipelineRun; paced: PipelineRun[]; threshold: number }> {
  const detector = new FairDetector(opts.spec, opts.restorer);
  const pngs = await Promise.all(Array.from({ length: 8 }, (_, i) => syntheticPng(opts.side, i)));
  const rawSize = opts.raw ?? { width: 1280, height: 1024 };
  const raws = opts.frames === 'raw' ? await Promise.all(Array.from({ length: 8 }, (_, i) => syntheticRaw(rawSize.width, rawSize.height, i))) : [];
  const frame = (seq: number, captureTs: number): Frame => ({
    sourceId: 'bench',
    seq,
    captureTs,
    payload: opts.frames === 'raw'
      ? { data: raws[seq % raws.length]!, width: rawSize.width, height: rawSize.height, format: 'rgb' }
      : { data: pngs[seq % pngs.length]!, width: opts.side, height: opts.side, format: 'encoded' },
  });
  const stationDecode = frameDecoder(opts.spec.size);
  // frameDecoder returns a promise of { image, source size } (the type admits other shapes).
  const decodeFrame = (f: Frame): Promise<DecodeOutput> => stationDecode(f) as Promise<DecodeOutput>;
  // Threshold at the median score of the test frames: half the verdicts take the reject path
  // (defect regions), as a pessimistic line would.
  const probeImages = await Promise.all(Array.from({ length: 8 }, async (_, i) => ((await decodeFrame(frame(i, 0))) as { image: ImageF32 }).image));
  const probe = await detector.detect(probeImages);
  const guardStats = opts.guard === false ? undefined : fitGuard(probeImages.map(guardFeatures), { size: opts.spec.size, source: 'bench' });
  const threshold = percentile(probe.map((d) => d.score), 50);
  const graph = (mode: 'live' | 'replay') =>
    inspect({
      // The station's decode step: sharp for encoded frames, in-place resize for raw ones.
      decode: decodeFrame,
      model: {
        id: 'bench',
        inferBatch: async (imgs) => (await detector.detect(imgs)).map((d) => ({ score: d.score, map: d.map })),
      },
      threshold,
      context: { line: 'bench', station: 'bench' },
      batch: opts.batch,
      mode,
      decodeConcurrency: 2,
      ...(guardStats ? { guard: { stats: guardStats, policy: { ...DEFAULT_GUARD, staleFrames: mode === 'live' ? DEFAULT_GUARD.staleFrames : 0 } } } : {}),
    });
  const summarise = (vs: Verdict[], load: PipelineRun['load'], seconds: number, offeredFps?: number): PipelineRun => {
    const real = vs.filter((v) => v.verdict !== 'error');
    const lat = real.map((v) => v.latencyMs);
    return {
      load,
      ...(offeredFps !== undefined ? { offeredFps } : {}),
      frames: vs.length,
      seconds,
      fps: real.length / seconds,
      p50Ms: percentile(lat, 50),
      p99Ms: percentile(lat, 99),
      maxMs: lat.length ? Math.max(...lat) : Number.NaN,
      pass: vs.filter((v) => v.verdict === 'pass').length,
      reject: vs.filter((v) => v.verdict === 'reject').length,
      dropped: vs.filter((v) => v.reason === 'dropped').length,
      errors: vs.filter((v) => v.verdict === 'error' && v.reason !== 'dropped').length,
    };
  };

  // Capacity: everything offered at t0, nothing dropped.
  const t0 = Date.now();
  const all = Array.from({ length: opts.capacityFrames }, (_, i) => frame(i, t0));
  const vs = await lastValueFrom(from(all).pipe(graph('replay'), toArray()));
  const capSeconds = (Date.now() - t0) / 1000;
  const capacity = summarise(vs, 'max', capSeconds);
  opts.log?.(`pipeline capacity: ${capacity.fps.toFixed(2)} frames/s (${vs.length} frames in ${capSeconds.toFixed(1)} s)`);

  const paced: PipelineRun[] = [];
  for (const load of opts.loads ?? [0.5, 1]) {
    const fps = load * capacity.fps;
    const period = 1000 / fps;
    const n = Math.max(16, Math.round(fps * opts.seconds));
    const source = new Observable<Frame>((sub) => {
      const start = Date.now() + 20;
      let i = 0;
      let timer: NodeJS.Timeout | undefined;
      const tick = (): void => {
        // Frames whose capture time has passed while the loop was blocked come out at once,
        // stamped with their scheduled time.
        while (i < n && Date.now() >= start + i * period) {
          sub.next(frame(i, start + i * period));
          i++;
        }
        if (i >= n) sub.complete();
        else timer = setTimeout(tick, Math.max(0, start + i * period - Date.now()));
      };
      timer = setTimeout(tick, 20);
      return () => clearTimeout(timer);
    });
    const s0 = Date.now();
    const out = await lastValueFrom(source.pipe(graph('live'), toArray()));
    const run = summarise(out, load, (Date.now() - s0) / 1000, fps);
    opts.log?.(`pipeline at ${(100 * load).toFixed(0)}% (${fps.toFixed(2)} fps offered): p50 ${run.p50Ms.toFixed(0)} ms, p99 ${run.p99Ms.toFixed(0)} ms, ${run.dropped} dropped of ${run.frames}`);
    paced.push(run);
  }
  return { capacity, paced, threshold };
}

/**
 * The whole training graph (src/train/loop.ts: decoded bank -> data workers -> prefetch -> train
 * step) for one epoch over `images` synthetic 512x512 PNGs: images/s and the share of the time
 * the train step waited for data.
 */
export async function trainingGraphRate(cfg: { width: number; size: number; batch: number; images: number; epochs?: number; engine?: 'auto' | 'onnx' | 'tfjs' }): Promise<{ engine: string; imagesPerSecond: number; dataWaitShare: number; seconds: number; microBatch?: number; workers: number }> {
  const { mkdtempSync, mkdirSync, writeFileSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { train } = await import('../../src/train/loop.js');
  const root = mkdtempSync(join(tmpdir(), 'fairline-bench-train-'));
  try {
    const dir = join(root, 'bench', 'train', 'good');
    mkdirSync(dir, { recursive: true });
    for (let i = 0; i < cfg.images; i++) writeFileSync(join(dir, `${String(i).padStart(3, '0')}.png`), await syntheticPng(512, i));
    const r = await train({
      dataRoot: root, category: 'bench', out: join(root, 'model'), epochs: cfg.epochs ?? 1, batch: cfg.batch, width: cfg.width, size: cfg.size,
      filter: { kind: 'butterworth', cutoff: 30, order: 2 }, seed: 0, lr: 1e-4, cutpaste: 'faithful', resume: false, engine: cfg.engine,
    });
    // The last epoch: the first includes the engine's warm-up (onnxruntime plans memory on its first run).
    const e = r.epochs.at(-1)!;
    const opts = r.manifest.training!.options as { microBatch?: number; workers: number };
    return { engine: String(r.manifest.training!.backend), imagesPerSecond: e.imagesPerSecond, dataWaitShare: e.dataWaitShare, seconds: e.seconds, microBatch: opts.microBatch, workers: opts.workers };
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}
