/**
 * The whole-detector ONNX graph (src/model/onnx/detector.ts) in one onnxruntime-node session:
 * one `run` per batch gives every image's score and map (and the restoration for pictures), with
 * no tfjs and no TypeScript high-pass or scoring on the way. This is the live and eval path when
 * the engine is onnx; {@link FairDetector} takes it in place of a {@link Restorer}.
 *
 * onnxruntime-node's `run` executes synchronously on the calling thread (behind a setImmediate),
 * so by default the session lives in a worker thread (src/io/onnx-worker.mjs): the event loop
 * stays free to decode (sharp's threads) and resize the next frames while a batch runs, and the
 * batch's memory moves to the worker without a copy.
 */
import { cpus } from 'node:os';
import { Worker } from 'node:worker_threads';
import { BackendError, BadInputError, ConfigError } from '../errors.js';
import type { BatchDetection, DetectorGraph } from '../model/detector.js';
import { DETECTOR_INPUT, DETECTOR_MAP, DETECTOR_RESTORED, DETECTOR_SCORE, exportDetectorOnnx, type DetectorExportOptions } from '../model/onnx/detector.js';
import type { TorchTensors } from '../model/onnx-export.js';
import type { FairSpec } from '../model/types.js';
import { loadOrt, sessionOptions, type OrtModule, type OrtSession, type OrtTensor } from './onnx-engine.js';

/** Options of {@link OnnxDetectorGraph.create}. */
export interface OnnxDetectorOptions {
  /** Intra-op threads (default: all cores). */
  threads?: number;
  /** Execution providers in order; 'cpu' is always the last resort. */
  executionProviders?: string[];
  /**
   * Where the session runs (default 'worker'): in a worker thread, so the event loop stays free
   * to decode and resize the next frames while the model runs; or on the 'main' thread.
   */
  thread?: 'worker' | 'main';
  /**
   * Let onnxruntime's intra-op threads spin (busy-wait) between ops (default true, onnxruntime's
   * own default). false makes them sleep at once: a little slower for the bare graph, but the
   * cores stay free for decoding the next frames on the main thread, which is what a pipeline
   * that decodes and scores at the same time on few cores needs (`fairline eval`).
   */
  spinning?: boolean;
  log?: (msg: string) => void;
}

/** One session run: feeds the batch, returns the fetched outputs. */
interface Runner {
  run(batch: Float32Array, dims: number[], fetches: string[]): Promise<Record<string, Float32Array>>;
  close(): Promise<void>;
}

type RunWithNames = (feeds: Record<string, OrtTensor>, fetches: readonly string[]) => Promise<Record<string, OrtTensor>>;

interface Opened {
  runner: Runner;
  ep: string;
  skipped: string[];
  inputNames: readonly string[];
  outputNames: readonly string[];
}


async function openInline(ort: OrtModule, model: Uint8Array | string, providers: string[], threads: number, spinning: boolean): Promise<Opened | { failed: string[] }> {
  const skipped: string[] = [];
  for (const ep of providers) {
    let session: OrtSession;
    try {
      session = await ort.InferenceSession.create(model, sessionOptions(ep, threads, { spinning }));
    } catch (err) {
      skipped.push(`${ep}: ${(err instanceof Error ? err.message : String(err)).split('\n')[0]}`);
      continue;
    }
    const runner: Runner = {
      async run(batch, dims, fetches) {
        const input = new ort.Tensor('float32', batch, dims);
        try {
          const out = await (session.run as unknown as RunWithNames).call(session, { [DETECTOR_INPUT]: input }, fetches);
          return Object.fromEntries(fetches.map((f) => [f, out[f]!.data as Float32Array]));
        } finally {
          input.dispose?.();
        }
      },
      close: () => session.release(),
    };
    return { runner, ep, skipped, inputNames: session.inputNames, outputNames: session.outputNames };
  }
  return { failed: skipped };
}

interface WorkerMsg {
  type: 'ready' | 'failed' | 'result';
  ep?: string;
  skipped?: string[];
  inputNames?: string[];
  outputNames?: string[];
  id?: number;
  ok?: boolean;
  result?: Record<string, Float32Array>;
  error?: string;
}

async function openWorker(model: Uint8Array | string, providers: string[], threads: number, spinning: boolean): Promise<Opened | { failed: string[] }> {
  const w = new Worker(new URL('./onnx-worker.mjs', import.meta.url));
  w.unref();
  const pending = new Map<number, { resolve: (r: Record<string, Float32Array>) => void; reject: (e: Error) => void }>();
  let nextId = 0;
  let dead: Error | undefined;
  const failAll = (err: Error): void => {
    dead = err;
    for (const p of pending.values()) p.reject(err);
    pending.clear();
  };
  const ready = new Promise<WorkerMsg>((resolve, reject) => {
    w.on('message', (m: WorkerMsg) => {
      if (m.type === 'ready' || m.type === 'failed') resolve(m);
      else if (m.type === 'result') {
        const p = pending.get(m.id!);
        if (!p) return;
        pending.delete(m.id!);
        if (pending.size === 0) w.unref();
        if (m.ok) p.resolve(m.result!);
        else p.reject(new BackendError('onnx_run', `onnxruntime run failed: ${m.error}`));
      }
    });
    w.on('error', (err) => {
      reject(err);
      failAll(new BackendError('onnx_run', `onnxruntime worker failed: ${err.message}`, { cause: err }));
    });
    w.on('exit', (code) => failAll(new BackendError('onnx_disposed', `onnxruntime worker exited (code ${code})`)));
  });
  // The session options are fairline's one set (sessionOptions), one per provider to try.
  w.postMessage({ type: 'init', model, providers, options: providers.map((ep) => sessionOptions(ep, threads, { spinning })) });
  const m = await ready;
  if (m.type === 'failed') {
    await w.terminate();
    return { failed: m.skipped ?? [] };
  }
  const runner: Runner = {
    run(batch, dims, fetches) {
      if (dead) return Promise.reject(dead);
      const id = nextId++;
      // Hand a batch that owns its whole buffer over without a copy; copy views and shared memory.
      const own = batch.buffer instanceof ArrayBuffer && batch.byteOffset === 0 && batch.byteLength === batch.buffer.byteLength;
      const data = own ? batch : batch.slice();
      return new Promise((resolve, reject) => {
        // Idle, the worker must not keep the process alive; with a run in flight it must.
        if (pending.size === 0) w.ref();
        pending.set(id, { resolve, reject });
        w.postMessage({ type: 'run', id, batch: data, dims, fetches, input: DETECTOR_INPUT }, [data.buffer as ArrayBuffer]);
      });
    },
    async close() {
      await w.terminate();
    },
  };
  return { runner, ep: m.ep!, skipped: m.skipped ?? [], inputNames: m.inputNames ?? [], outputNames: m.outputNames ?? [] };
}

/** An onnxruntime session of the whole detector. Create with {@link OnnxDetectorGraph.create}. */
export class OnnxDetectorGraph implements DetectorGraph {
  readonly engine: string;
  readonly hasRestored: boolean;
  private runner: Runner | undefined;

  private constructor(opened: Opened, readonly size: number, readonly threads: number, readonly thread: 'worker' | 'main') {
    this.runner = opened.runner;
    this.executionProvider = opened.ep;
    this.engine = `onnxruntime-${opened.ep}`;
    this.hasRestored = opened.outputNames.includes(DETECTOR_RESTORED);
  }

  readonly executionProvider: string;

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
    // Per-image scoring suits CPUs; a GPU provider gets the whole batch in each op.
    const cpuOnly = (opts.executionProviders ?? ['cpu']).every((p) => p.toLowerCase() === 'cpu');
    const bytes = exportDetectorOnnx(tensors, spec, { restored: true, foldBatchNorm: opts.foldBatchNorm ?? true, scoring: cpuOnly ? 'per-image' : 'batch' });
    return OnnxDetectorGraph.create(bytes, spec.size, opts);
  }

  /** Open a session on detector-graph bytes (or a .onnx path) for images of `size`. */
  static async create(model: Uint8Array | string, size: number, opts: OnnxDetectorOptions = {}): Promise<OnnxDetectorGraph> {
    const ort = await loadOrt();
    if (!ort) throw new BackendError('onnxruntime_missing', 'onnxruntime-node is not available (install it or use engine tfjs)');
    const threads = opts.threads ?? cpus().length;
    if (!Number.isInteger(threads) || threads < 1) throw new ConfigError(`onnxruntime threads must be a positive integer, got ${threads}`);
    const thread = opts.thread ?? 'worker';
    if (thread !== 'worker' && thread !== 'main') throw new ConfigError(`onnxruntime thread must be 'worker' or 'main', got ${String(thread)}`);
    const wanted = [...(opts.executionProviders ?? ['cpu'])].map((s) => s.toLowerCase());
    if (!wanted.includes('cpu')) wanted.push('cpu');
    const spinning = opts.spinning ?? true;
    const opened = thread === 'worker' ? await openWorker(model, wanted, threads, spinning) : await openInline(ort, model, wanted, threads, spinning);
    if ('failed' in opened) throw new BackendError('onnx_session', `onnxruntime could not load the detector graph with any provider: ${opened.failed.join('; ')}`);
    for (const s of opened.skipped) opts.log?.(`onnxruntime: skipped ${s}`);
    if (!opened.inputNames.includes(DETECTOR_INPUT) || !opened.outputNames.includes(DETECTOR_SCORE) || !opened.outputNames.includes(DETECTOR_MAP)) {
      await opened.runner.close();
      throw new BackendError('onnx_session', `not a fairline detector graph (inputs ${opened.inputNames.join(',')}, outputs ${opened.outputNames.join(',')}; export with --part detector)`);
    }
    return new OnnxDetectorGraph(opened, size, threads, thread);
  }

  /**
   * Scores, maps (and restorations) of `n` NHWC BGR images at model size in one session run.
   * On the worker thread the batch's memory is handed over (transferred): do not reuse it.
   * @throws BadInputError `bad_shape` for a buffer of the wrong length; BackendError `onnx_run`.
   */
  async detectBatch(batch: Float32Array, n: number, keepRestored: boolean): Promise<BatchDetection> {
    const runner = this.runner;
    if (!runner) throw new BackendError('onnx_disposed', 'OnnxDetectorGraph.detectBatch after dispose()');
    const S = this.size;
    if (!Number.isInteger(n) || n < 1 || batch.length !== n * S * S * 3)
      throw new BadInputError('bad_shape', `detector graph: expected ${n} images of ${S}x${S}x3 (${n * S * S * 3} values), got ${batch.length}`);
    const fetches = [DETECTOR_SCORE, DETECTOR_MAP, ...(keepRestored && this.hasRestored ? [DETECTOR_RESTORED] : [])];
    let out: Record<string, Float32Array>;
    try {
      out = await runner.run(batch, [n, S, S, 3], fetches);
    } catch (err) {
      if (err instanceof BackendError) throw err;
      throw new BackendError('onnx_run', `onnxruntime run failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    const res: BatchDetection = { scores: out[DETECTOR_SCORE]!, maps: out[DETECTOR_MAP]! };
    if (out[DETECTOR_RESTORED]) res.restored = out[DETECTOR_RESTORED];
    return res;
  }

  dispose(): void {
    const r = this.runner;
    this.runner = undefined;
    void r?.close();
  }
}
