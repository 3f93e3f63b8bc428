/**
 * Restoration engines for {@link FairDetector}: the tfjs UNet ({@link TfjsRestorer}, on whatever
 * tfjs backend is active) or onnxruntime-node ({@link OnnxRestorer}), and {@link createRestorer},
 * which picks the fastest one that loads here and logs the choice.
 *
 * Why onnxruntime first: on CPU it runs the FAIR UNet at 4-6x the threaded tfjs-wasm backend's
 * speed (docs/performance.md, `npm run bench`), and the two agree to ~1e-6 (test/export.test.ts,
 * test/detector.test.ts). tfjs stays the fallback because onnxruntime-node is an optional
 * dependency with a native binding that may be missing.
 */
import { BackendError, ConfigError } from '../errors.js';
import { OnnxEngine, isOnnxRuntimeAvailable, type OnnxEngineOptions } from '../io/onnx-engine.js';
import { type Restorer } from '../model/detector.js';
import { TfjsRestorer } from '../model/tfjs/restorer.js';
import { exportUNetOnnx, type OnnxExportOptions } from '../model/onnx-export.js';
import type { UNetSpec } from '../model/types.js';
import { UNet } from '../model/tfjs/unet.js';
import { unetFromTorch, unetToTorch, type TorchTensors } from '../model/weights.js';

/** Restoration with an onnxruntime-node session ({@link OnnxEngine}). */
export class OnnxRestorer implements Restorer {
  /** 'onnxruntime-cpu', 'onnxruntime-cuda', ... (the execution provider that took). */
  readonly engine: string;

  constructor(readonly onnx: OnnxEngine) {
    this.engine = `onnxruntime-${onnx.executionProvider}`;
  }

  /**
   * Export PyTorch-layout weights to ONNX in memory and open a session on them.
   *
   * @throws BackendError `onnxruntime_missing` / `onnx_session` (see {@link OnnxEngine.create}),
   *   ModelError for weights that do not fit `spec`.
   * @example
   * const r = await OnnxRestorer.fromTensors(loadModel(dir).tensors, spec.unet, { threads: 4 });
   * const restored = await r.restore(highpass, n, 256, 1);
   */
  static async fromTensors(
    tensors: TorchTensors,
    spec: UNetSpec,
    opts: OnnxEngineOptions & Pick<OnnxExportOptions, 'foldBatchNorm' | 'layout'> = {},
  ): Promise<OnnxRestorer> {
    // NHWC in the graph: fairline's buffers go in and come out without a JS transpose.
    const bytes = exportUNetOnnx(tensors, spec, { foldBatchNorm: opts.foldBatchNorm ?? true, layout: opts.layout ?? 'nhwc' });
    return new OnnxRestorer(await OnnxEngine.create(bytes, opts));
  }

  restore(input: Float32Array, n: number, size: number, cin: number): Promise<Float32Array> {
    return this.onnx.run(input, n, size, cin);
  }

  dispose(): void {
    // Releasing the native session is asynchronous; nothing waits on it.
    void this.onnx.dispose();
  }
}

/** Which engine {@link createRestorer} should use. */
export type EngineChoice = 'auto' | 'tfjs' | 'onnx';

export const ENGINE_CHOICES: readonly EngineChoice[] = ['auto', 'tfjs', 'onnx'];

/** Options of {@link createRestorer}. */
export interface CreateRestorerOptions {
  /** 'auto' (default): onnxruntime when it loads and accepts the model, else tfjs. */
  engine?: EngineChoice;
  /** onnxruntime intra-op threads (default: all cores). tfjs threads are set by `initBackend`. */
  threads?: number;
  /** onnxruntime execution providers to try in order (default ['cpu']; 'cpu' is always last). */
  providers?: string[];
  /** Fold BatchNorm into the convs of the ONNX graph (default true). */
  foldBatchNorm?: boolean;
  /** One line per decision. */
  log?: (msg: string) => void;
}

/**
 * A restorer for a UNet (or its PyTorch-layout weights), on the fastest engine available.
 *
 * Ownership: a `UNet` passed in is owned by the returned restorer only on the tfjs path
 * (`TfjsRestorer.dispose` disposes it); the onnx path copies its weights and leaves it alone.
 * Weights passed as tensors are copied on both paths.
 *
 * @throws ConfigError for an unknown engine; BackendError when `engine: 'onnx'` is forced and
 *   onnxruntime cannot load or run the model.
 * @example
 * const restorer = await createRestorer(loadModel(dir).tensors, manifest.spec.unet, { log: console.error });
 * // "restorer: onnxruntime-cpu (2 threads)" or "restorer: tfjs-wasm (onnxruntime unavailable: ...)"
 * const detector = new FairDetector(manifest.spec, restorer);
 */
export async function createRestorer(source: UNet | TorchTensors, spec: UNetSpec, opts: CreateRestorerOptions = {}): Promise<Restorer> {
  const engine = opts.engine ?? 'auto';
  if (!ENGINE_CHOICES.includes(engine)) throw new ConfigError(`unknown engine "${String(engine)}"; expected one of ${ENGINE_CHOICES.join(', ')}`);
  const log = opts.log ?? (() => undefined);
  let why = 'engine tfjs requested';
  if (engine !== 'tfjs') {
    try {
      if (engine === 'auto' && !(await isOnnxRuntimeAvailable())) throw new BackendError('onnxruntime_missing', 'onnxruntime-node is not installed or its binding does not load');
      const tensors = source instanceof UNet ? unetToTorch(source) : source;
      const r = await OnnxRestorer.fromTensors(tensors, spec, {
        threads: opts.threads,
        executionProviders: opts.providers,
        foldBatchNorm: opts.foldBatchNorm,
        log,
      });
      log(`restorer: ${r.engine} (${r.onnx.threads} thread${r.onnx.threads === 1 ? '' : 's'}, ${r.onnx.layout})`);
      return r;
    } catch (err) {
      if (engine === 'onnx') throw err;
      why = `onnxruntime unavailable: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`;
    }
  }
  const unet = source instanceof UNet ? source : unetFromTorch(source, spec);
  const r = new TfjsRestorer(unet);
  log(`restorer: ${r.engine} (${why})`);
  return r;
}
