/**
 * The whole-detector ONNX graph (src/model/onnx/detector.ts) in one onnxruntime-node session:
 * one `run` per batch gives every image's score and map (and the restoration for pictures), with
 * no tfjs and no TypeScript high-pass or scoring on the way. This is the live and eval path when
 * the engine is onnx; {@link FairDetector} takes it in place of a {@link Restorer}.
 *
 * onnxruntime-node's `run` executes synchronously on the calling thread (behind a setImmediate),
 * so on the main thread it blocks the event loop for one batch; sharp still decodes on its own
 * threads meanwhile.
 */
import { cpus } from 'node:os';
import { BackendError, BadInputError, ConfigError } from '../errors.js';
import type { BatchDetection, DetectorGraph } from '../model/detector.js';
import { DETECTOR_INPUT, DETECTOR_MAP, DETECTOR_RESTORED, DETECTOR_SCORE, exportDetectorOnnx, type DetectorExportOptions } from '../model/onnx/detector.js';
import type { TorchTensors } from '../model/onnx-export.js';
import type { FairSpec } from '../model/types.js';
import { loadOrt, type OrtModule, type OrtSession, type OrtTensor } from './onnx-engine.js';

/** Options of {@link OnnxDetectorGraph.create}. */
export interface OnnxDetectorOptions {
  /** Intra-op threads (default: all cores). */
  threads?: number;
  /** Execution providers in order; 'cpu' is always the last resort. */
  executionProviders?: string[];
  log?: (msg: string) => void;
}

type RunWithNames = (feeds: Record<string, OrtTensor>, fetches: readonly string[]) => Promise<Record<string, OrtTensor>>;

/** An onnxruntime session of the whole detector. Create with {@link OnnxDetectorGraph.create}. */
export class OnnxDetectorGraph implements DetectorGraph {
  readonly engine: string;
  readonly hasRestored: boolean;
  private session: OrtSession | undefined;

  private constructor(private readonly ort: OrtModule, session: OrtSession, readonly size: number, readonly executionProvider: string, readonly threads: number) {
    this.session = session;
    this.engine = `onnxruntime-${executionProvider}`;
    this.hasRestored = session.outputNames.includes(DETECTOR_RESTORED);
  }

  /**
   * Export `spec` + weights as the whole detector (with the `restored` output) and open a session.
   *
   * @throws BackendError `onnxruntime_missing` / `onnx_session`; ModelError for weights that do
   *   not fit the spec.
   * @example
   * const graph = await OnnxDetectorGraph.fromTensors(tensors, manifest.spec, { threads: 2 });
   * const detector = new FairDetector(manifest.spec, graph);
   */
  static async fromTensors(tensors: TorchTensors, spec: FairSpec, opts: OnnxDetectorOptions & Pick<DetectorExportOptions, 'foldBatchNorm'> = {}): Promise<OnnxDetectorGraph> {
    const bytes = exportDetectorOnnx(tensors, spec, { restored: true, foldBatchNorm: opts.foldBatchNorm ?? true });
    return OnnxDetectorGraph.create(bytes, spec.size, opts);
  }

  /** Open a session on detector-graph bytes (or a .onnx path) for images of `size`. */
  static async create(model: Uint8Array | string, size: number, opts: OnnxDetectorOptions = {}): Promise<OnnxDetectorGraph> {
    const ort = await loadOrt();
    if (!ort) throw new BackendError('onnxruntime_missing', 'onnxruntime-node is not available (install it or use engine tfjs)');
    const threads = opts.threads ?? cpus().length;
    if (!Number.isInteger(threads) || threads < 1) throw new ConfigError(`onnxruntime threads must be a positive integer, got ${threads}`);
    const wanted = [...(opts.executionProviders ?? ['cpu'])].map((s) => s.toLowerCase());
    if (!wanted.includes('cpu')) wanted.push('cpu');
    const skipped: string[] = [];
    for (const ep of wanted) {
      try {
        const session = await ort.InferenceSession.create(model, {
          executionProviders: [ep],
          intraOpNumThreads: threads,
          interOpNumThreads: 1,
          executionMode: 'sequential',
          graphOptimizationLevel: 'all',
        });
        if (!session.inputNames.includes(DETECTOR_INPUT) || !session.outputNames.includes(DETECTOR_SCORE) || !session.outputNames.includes(DETECTOR_MAP)) {
          await session.release();
          throw new BackendError('onnx_session', `not a fairline detector graph (inputs ${session.inputNames.join(',')}, outputs ${session.outputNames.join(',')}; export with --part detector)`);
        }
        for (const s of skipped) opts.log?.(`onnxruntime: skipped ${s}`);
        return new OnnxDetectorGraph(ort, session, size, ep, threads);
      } catch (err) {
        if (err instanceof BackendError) throw err;
        skipped.push(`${ep}: ${(err instanceof Error ? err.message : String(err)).split('\n')[0]}`);
      }
    }
    throw new BackendError('onnx_session', `onnxruntime could not load the detector graph with any provider: ${skipped.join('; ')}`);
  }

  /**
   * Scores, maps (and restorations) of `n` NHWC BGR images at model size in one session run.
   * @throws BadInputError `bad_shape` for a buffer of the wrong length; BackendError `onnx_run`.
   */
  async detectBatch(batch: Float32Array, n: number, keepRestored: boolean): Promise<BatchDetection> {
    const session = this.session;
    if (!session) throw new BackendError('onnx_disposed', 'OnnxDetectorGraph.detectBatch after dispose()');
    const S = this.size;
    if (!Number.isInteger(n) || n < 1 || batch.length !== n * S * S * 3)
      throw new BadInputError('bad_shape', `detector graph: expected ${n} images of ${S}x${S}x3 (${n * S * S * 3} values), got ${batch.length}`);
    const input = new this.ort.Tensor('float32', batch, [n, S, S, 3]);
    const fetches = [DETECTOR_SCORE, DETECTOR_MAP, ...(keepRestored && this.hasRestored ? [DETECTOR_RESTORED] : [])];
    let out: Record<string, OrtTensor>;
    try {
      out = await (session.run as unknown as RunWithNames).call(session, { [DETECTOR_INPUT]: input }, fetches);
    } catch (err) {
      throw new BackendError('onnx_run', `onnxruntime run failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    } finally {
      input.dispose?.();
    }
    const res: BatchDetection = { scores: out[DETECTOR_SCORE]!.data as Float32Array, maps: out[DETECTOR_MAP]!.data as Float32Array };
    if (out[DETECTOR_RESTORED]) res.restored = out[DETECTOR_RESTORED].data as Float32Array;
    return res;
  }

  dispose(): void {
    const s = this.session;
    this.session = undefined;
    void s?.release();
  }
}
