/**
 * The detector of a model on the fastest engine that loads here: with onnxruntime, the whole
 * detector as one ONNX graph (src/model/onnx/detector.ts, one session, one call per batch);
 * without it, the tfjs UNet between the TypeScript high-pass and scoring. Used by the live graph
 * (src/runtime/model.ts) and by `fairline eval`, so both score alike.
 */
import { BackendError, ConfigError, FairlineError, ModelError } from '../errors.js';
import { isOnnxRuntimeAvailable } from '../io/onnx-engine.js';
import { OnnxDetectorGraph } from '../io/onnx-detector.js';
import { FairDetector, type DetectorGraph, type Restorer } from '../model/detector.js';
import type { TorchTensors } from '../model/onnx-export.js';
import type { FairSpec } from '../model/types.js';
import { createRestorer, ENGINE_CHOICES, type CreateRestorerOptions } from './restorers.js';

/** What {@link createDetectorEngine} picked. */
export interface DetectorEngine {
  /** The whole-detector graph (onnx) or the UNet restorer (tfjs). */
  engine: Restorer | DetectorGraph;
  kind: 'onnx' | 'tfjs';
}

/** {@link createDetectorEngine}'s options: the restorer's, and the detector graph's spinning. */
export interface DetectorEngineOptions extends CreateRestorerOptions {
  /** onnxruntime intra-op spinning of the detector graph (default true; see OnnxDetectorOptions.spinning). */
  spinning?: boolean;
}

/**
 * Pick the engine: 'onnx' = the whole-detector graph on onnxruntime (error when it cannot load),
 * 'tfjs' = the tfjs UNet, 'auto' (default) = onnx when onnxruntime loads and accepts the graph.
 *
 * @throws ConfigError for an unknown engine; BackendError when 'onnx' is forced and fails.
 * @example
 * const { engine, kind } = await createDetectorEngine(loaded.tensors, loaded.manifest.spec, { log: console.error });
 * const detector = new FairDetector(loaded.manifest.spec, engine);
 */
export async function createDetectorEngine(tensors: TorchTensors, spec: FairSpec, opts: DetectorEngineOptions = {}): Promise<DetectorEngine> {
  const choice = opts.engine ?? 'auto';
  if (!ENGINE_CHOICES.includes(choice)) throw new ConfigError(`unknown engine "${String(choice)}"; expected one of ${ENGINE_CHOICES.join(', ')}`);
  const log = opts.log ?? (() => undefined);
  let why = 'engine tfjs requested';
  if (choice !== 'tfjs') {
    try {
      if (choice === 'auto' && !(await isOnnxRuntimeAvailable())) throw new BackendError('onnxruntime_missing', 'onnxruntime-node is not installed or its binding does not load');
      const graph = await OnnxDetectorGraph.fromTensors(tensors, spec, { threads: opts.threads, executionProviders: opts.providers, foldBatchNorm: opts.foldBatchNorm, spinning: opts.spinning, log });
      log(`detector: whole graph on ${graph.engine} (${graph.threads} thread${graph.threads === 1 ? '' : 's'})`);
      return { engine: graph, kind: 'onnx' };
    } catch (err) {
      if (choice === 'onnx') throw err;
      why = `onnxruntime unavailable: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`;
    }
  }
  const restorer = await createRestorer(tensors, spec.unet, { ...opts, engine: 'tfjs', log: () => undefined });
  log(`detector: ${restorer.engine} UNet, TypeScript high-pass and scoring (${why})`);
  return { engine: restorer, kind: 'tfjs' };
}

/**
 * A {@link FairDetector} for a loaded artefact on the chosen engine.
 * @throws ModelError (`bad_model`) when the weights do not fit the spec; see {@link createDetectorEngine}.
 */
export async function createDetector(model: { dir: string; tensors: TorchTensors; manifest: { spec: FairSpec } }, opts: DetectorEngineOptions = {}): Promise<FairDetector> {
  const spec = model.manifest.spec;
  const { engine } = await createDetectorEngine(model.tensors, spec, opts);
  try {
    return new FairDetector(spec, engine);
  } catch (err) {
    engine.dispose();
    if (err instanceof FairlineError) throw new ModelError('bad_model', `model ${model.dir}: ${err.message}`, { cause: err });
    throw err;
  }
}
