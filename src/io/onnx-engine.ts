/**
 * FAIR UNet inference with onnxruntime-node (an optional dependency): loads the model built by
 * src/model/onnx-export.ts (bytes or a .onnx path) and runs fairline's NHWC batches through it.
 *
 * - `onnxruntime-node` is imported dynamically, so fairline works (on tfjs) where it is absent;
 *   check {@link isOnnxRuntimeAvailable} first or catch the BackendError from `create`.
 * - Execution providers are tried in the order given ('cuda', 'tensorrt', 'webgpu', ...) and
 *   'cpu' is always the last resort; {@link OnnxEngine.executionProvider} says which one took.
 * - Layout: the exported graph may be NCHW (PyTorch's) or NHWC (Transposes inside the graph);
 *   the engine reads the input metadata and transposes in JS only when needed. With one input
 *   channel NHWC and NCHW are the same bytes, so the input never needs a copy for FAIR's gray
 *   high-pass.
 * - onnxruntime-node's `run` executes synchronously on the main thread (wrapped in a Promise),
 *   so the event loop is blocked for the duration of one batch.
 */
import { cpus } from 'node:os';
import { BackendError, BadInputError, ConfigError } from '../errors.js';

/** The slice of onnxruntime-node's API used here (typed locally: the package is optional). */
export interface OrtTensor {
  readonly dims: readonly number[];
  readonly data: unknown;
  dispose?(): void;
}
interface OrtValueMetadata {
  name: string;
  isTensor: boolean;
  shape?: ReadonlyArray<number | string>;
}
export interface OrtSession {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  readonly inputMetadata?: readonly OrtValueMetadata[];
  run(feeds: Record<string, OrtTensor>, fetches?: Record<string, OrtTensor | null>): Promise<Record<string, OrtTensor>>;
  release(): Promise<void>;
}
export interface OrtModule {
  InferenceSession: { create(model: string | Uint8Array, options?: Record<string, unknown>): Promise<OrtSession> };
  Tensor: new (type: 'float32', data: Float32Array, dims: readonly number[]) => OrtTensor;
  listSupportedBackends?: () => { name: string; bundled: boolean }[];
  env?: { versions?: Record<string, string> };
}

let ortPromise: Promise<OrtModule | undefined> | undefined;
let ortLoadError: string | undefined;

/** Import onnxruntime-node once; undefined (with the reason kept) when it cannot load. */
export async function loadOrt(): Promise<OrtModule | undefined> {
  ortPromise ??= (async () => {
    try {
      // A variable specifier keeps tsc from requiring the optional package at compile time.
      const name = 'onnxruntime-node';
      const mod = (await import(name)) as OrtModule & { default?: OrtModule };
      return mod.InferenceSession ? mod : mod.default;
    } catch (err) {
      ortLoadError = err instanceof Error ? err.message : String(err);
      return undefined;
    }
  })();
  return ortPromise;
}

/**
 * Whether onnxruntime-node can be loaded here (installed and its native binding works).
 *
 * @example
 * if (await isOnnxRuntimeAvailable()) engine = await OnnxEngine.create(bytes);
 */
export async function isOnnxRuntimeAvailable(): Promise<boolean> {
  return (await loadOrt()) !== undefined;
}

/** Options of {@link OnnxEngine.create}. */
export interface OnnxEngineOptions {
  /** Intra-op threads (default: all cores, `os.cpus().length`). */
  threads?: number;
  /** Execution providers to try in order, e.g. ['cuda', 'cpu']; 'cpu' is appended if missing. */
  executionProviders?: string[];
  /** Log line per provider decision (default: silent). */
  log?: (msg: string) => void;
}

/**
 * The session options every fairline graph runs with: one provider, `threads` intra-op threads,
 * sequential execution, all graph optimisations. Callers add their own (e.g. memory pattern).
 * `spinning: false` lets idle intra-op threads sleep at once instead of busy-waiting for the next
 * op: what a session wants when other work of the process (decoding, a data worker) shares its
 * cores.
 */
export function sessionOptions(ep: string, threads: number, opts: { spinning?: boolean } = {}): Record<string, unknown> {
  return {
    executionProviders: [ep], intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all',
    ...(opts.spinning === false ? { extra: { session: { intra_op: { allow_spinning: '0' } } } } : {}),
  };
}

/** NHWC <-> NCHW for one batch; `c === 1` never reaches here (same bytes). */
function nhwcToNchw(src: Float32Array, n: number, hw: number, c: number): Float32Array {
  const dst = new Float32Array(src.length);
  for (let b = 0; b < n; b++) {
    const base = b * hw * c;
    for (let ch = 0; ch < c; ch++) {
      const o = base + ch * hw;
      for (let p = 0, i = base + ch; p < hw; p++, i += c) dst[o + p] = src[i]!;
    }
  }
  return dst;
}

function nchwToNhwc(src: Float32Array, n: number, hw: number, c: number): Float32Array {
  const dst = new Float32Array(src.length);
  for (let b = 0; b < n; b++) {
    const base = b * hw * c;
    for (let ch = 0; ch < c; ch++) {
      const s = base + ch * hw;
      for (let p = 0, o = base + ch; p < hw; p++, o += c) dst[o] = src[s + p]!;
    }
  }
  return dst;
}

/** A loaded UNet session. Create with {@link OnnxEngine.create}; call {@link dispose} when done. */
export class OnnxEngine {
  /** The execution provider the session was created with ('cpu', 'cuda', ...). */
  readonly executionProvider: string;
  /** Why earlier providers in the list were skipped. */
  readonly skipped: string[];
  /** Tensor layout of the graph's input/output, read from its metadata. */
  readonly layout: 'nchw' | 'nhwc';
  /** Intra-op threads requested. */
  readonly threads: number;
  private session: OrtSession | undefined;

  private constructor(private readonly ort: OrtModule, session: OrtSession, ep: string, skipped: string[], threads: number) {
    this.session = session;
    this.executionProvider = ep;
    this.skipped = skipped;
    this.threads = threads;
    // Exported graphs are [N,C,H,W] or [N,H,W,C] with symbolic N,H,W: a fixed last dim means NHWC.
    const shape = session.inputMetadata?.[0]?.shape;
    this.layout = shape && shape.length === 4 && typeof shape[3] === 'number' && typeof shape[1] !== 'number' ? 'nhwc' : 'nchw';
  }

  /**
   * Load a model (bytes from `exportUNetOnnx`, or a path to a .onnx file).
   *
   * @throws BackendError `onnxruntime_missing` when onnxruntime-node cannot be imported,
   *   `onnx_session` when no execution provider (cpu included) can load the model.
   *
   * @example
   * const engine = await OnnxEngine.create(exportUNetOnnx(weights, spec), { executionProviders: ['cuda', 'cpu'] });
   * const restored = await engine.run(highpassNHWC, n, 256, 1); // NHWC, 3 channels
   * await engine.dispose();
   */
  static async create(model: Uint8Array | string, opts: OnnxEngineOptions = {}): Promise<OnnxEngine> {
    const ort = await loadOrt();
    if (!ort) throw new BackendError('onnxruntime_missing', `onnxruntime-node is not available: ${ortLoadError ?? 'unknown error'}`);
    const threads = opts.threads ?? cpus().length;
    if (!Number.isInteger(threads) || threads < 1) throw new ConfigError(`onnxruntime threads must be a positive integer, got ${threads}`);
    const wanted = [...(opts.executionProviders ?? ['cpu'])].map((s) => s.toLowerCase());
    if (!wanted.includes('cpu')) wanted.push('cpu');
    const supported = new Map((ort.listSupportedBackends?.() ?? []).map((b) => [b.name, b.bundled]));
    const skipped: string[] = [];
    for (const ep of wanted) {
      if (supported.size > 0 && !supported.has(ep)) {
        skipped.push(`${ep}: not supported by this onnxruntime-node build`);
        continue;
      }
      try {
        const session = await ort.InferenceSession.create(model, sessionOptions(ep, threads));
        for (const s of skipped) opts.log?.(`onnxruntime: skipped ${s}`);
        opts.log?.(`onnxruntime ${ort.env?.versions?.node ?? ''}: execution provider ${ep}, ${threads} thread(s)`);
        return new OnnxEngine(ort, session, ep, skipped, threads);
      } catch (err) {
        const why = err instanceof Error ? err.message : String(err);
        // A non-bundled provider (e.g. CUDA without its libraries installed) fails here.
        skipped.push(`${ep}: ${supported.get(ep) === false ? 'not bundled; ' : ''}${why.split('\n')[0]}`);
      }
    }
    throw new BackendError('onnx_session', `onnxruntime could not load the model with any provider: ${skipped.join('; ')}`);
  }

  /**
   * Restore a batch.
   *
   * @param inputNHWC high-pass batch, NHWC float32, length n*size*size*cin.
   * @returns the restoration, NHWC with the model's output channels (3, BGR), a new array.
   * @throws BadInputError `bad_shape` when the length does not match or size is not a
   *   multiple of 16; BackendError `onnx_run` when onnxruntime fails (e.g. cin differs from
   *   the model's), `onnx_disposed` after {@link dispose}.
   */
  async run(inputNHWC: Float32Array, n: number, size: number, cin: number): Promise<Float32Array> {
    const session = this.session;
    if (!session) throw new BackendError('onnx_disposed', 'OnnxEngine.run after dispose()');
    for (const [k, v] of [['n', n], ['size', size], ['cin', cin]] as const)
      if (!Number.isInteger(v) || v < 1) throw new BadInputError('bad_shape', `OnnxEngine.run: ${k} must be a positive integer, got ${v}`);
    if (size % 16 !== 0) throw new BadInputError('bad_shape', `OnnxEngine.run: size ${size} is not a multiple of 16 (4 pooling levels)`);
    const hw = size * size;
    if (inputNHWC.length !== n * hw * cin)
      throw new BadInputError('bad_shape', `OnnxEngine.run: input has ${inputNHWC.length} values, expected n*size*size*cin = ${n * hw * cin}`);

    const nhwc = this.layout === 'nhwc';
    const data = nhwc || cin === 1 ? inputNHWC : nhwcToNchw(inputNHWC, n, hw, cin);
    const dims = nhwc ? [n, size, size, cin] : [n, cin, size, size];
    const input = new this.ort.Tensor('float32', data, dims);
    let outputs: Record<string, OrtTensor>;
    try {
      outputs = await session.run({ [session.inputNames[0]!]: input });
    } catch (err) {
      throw new BackendError('onnx_run', `onnxruntime run failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    } finally {
      input.dispose?.();
    }
    const out = outputs[session.outputNames[0]!]!;
    const cout = out.dims[nhwc ? 3 : 1]!;
    const raw = out.data as Float32Array;
    // The output tensor owns its buffer; NHWC graphs hand it over as is.
    const result = nhwc ? raw : nchwToNhwc(raw, n, hw, cout);
    if (!nhwc) out.dispose?.();
    return result;
  }

  /** Release the native session; further `run` calls throw. */
  async dispose(): Promise<void> {
    const s = this.session;
    this.session = undefined;
    await s?.release();
  }
}
