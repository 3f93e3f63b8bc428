/**
 * Bench workloads of the whole-detector ONNX graph (issue 13): the bare graph's images/s (one
 * onnxruntime session, one call per batch, in its worker thread), scoring inside the graph
 * (a scoring-only graph of the same ops), and the typed-array scoring of the tfjs fallback.
 */
import { OnnxDetectorGraph } from '../../src/io/onnx-detector.js';
import { loadOrt } from '../../src/io/onnx-engine.js';
import { Graph } from '../../src/model/onnx/graph.js';
import { DETECTOR_OPSET, emitScore } from '../../src/model/onnx/detector.js';
import { scoreArrays } from '../../src/model/score-fast.js';
import type { TorchTensors } from '../../src/model/onnx-export.js';
import { DEFAULT_SCORING, type FairSpec } from '../../src/model/types.js';
import { measure, type Rate } from './measure.js';

function images(n: number, size: number, seed: number): Float32Array {
  const x = new Float32Array(n * size * size * 3);
  for (let i = 0; i < x.length; i++) x[i] = 0.5 + 0.35 * Math.sin(i * 0.0131 + seed) * Math.cos(i * 0.00071 * (seed + 1));
  return x;
}

/** Bare detector graph: a batch of model-size images in, scores and maps out (worker session). */
export async function detectorGraphRate(cfg: { spec: FairSpec; tensors: TorchTensors; batch: number; seconds: number; threads: number }): Promise<Rate & { engine: string }> {
  const graph = await OnnxDetectorGraph.fromTensors(cfg.tensors, cfg.spec, { threads: cfg.threads });
  const S = cfg.spec.size;
  const x = images(cfg.batch, S, 1);
  try {
    // slice(): the worker takes the batch's memory.
    const r = await measure(() => graph.detectBatch(x.slice(), cfg.batch, false), cfg.batch, { seconds: cfg.seconds, minIters: 3 });
    return { ...r, engine: graph.engine };
  } finally {
    graph.dispose();
  }
}

/** Scoring inside the graph: the detector's scoring ops alone on onnxruntime (restored + original in). */
export async function graphScoringRate(cfg: { size: number; batch: number; seconds: number; threads: number; perImage?: boolean }): Promise<Rate> {
  const ort = (await loadOrt())!;
  const S = cfg.size;
  const g = new Graph({ opset: DETECTOR_OPSET });
  // NCHW in, as inside the detector: the UNet's output and the input's transpose, which the
  // high-pass shares.
  const r = g.input('restored', ['N', 3, S, S]);
  const o = g.input('original', ['N', 3, S, S]);
  const { map, score } = emitScore(g, r, o, DEFAULT_SCORING, { perImage: cfg.perImage ?? true });
  g.output(map, 'map');
  g.output(score, 'score');
  const session = await ort.InferenceSession.create(g.toModel({ name: 'scoring' }), { intraOpNumThreads: cfg.threads, graphOptimizationLevel: 'all' });
  const feeds = {
    restored: new ort.Tensor('float32', images(cfg.batch, S, 2), [cfg.batch, 3, S, S]),
    original: new ort.Tensor('float32', images(cfg.batch, S, 3), [cfg.batch, 3, S, S]),
  };
  try {
    return await measure(() => session.run(feeds), cfg.batch, { seconds: cfg.seconds, minIters: 3 });
  } finally {
    await session.release();
  }
}

/** The tfjs fallback's scoring: typed arrays (src/model/score-fast.ts), one thread. */
export async function fastScoringRate(cfg: { size: number; batch: number; seconds: number }): Promise<Rate> {
  const S = cfg.size;
  const y = images(cfg.batch, S, 4), x = images(cfg.batch, S, 5);
  return measure(() => scoreArrays(y, x, cfg.batch, S, DEFAULT_SCORING), cfg.batch, { seconds: cfg.seconds, minIters: 3 });
}
