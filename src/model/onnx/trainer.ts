/**
 * The FAIR training engine on onnxruntime-node: one session runs the whole training step
 * (src/model/onnx/train-step.ts), and the weights, BatchNorm statistics and Adam moments stay
 * in two sets of buffers that the step reads from and writes into in turn (pre-allocated
 * outputs): onnxruntime writes the next state straight into the buffers the next step reads. (The
 * onnxruntime-node binding also returns a copy of every output, which the API forces; it is
 * dropped.) `weights()` / `getState()` read the state out once per checkpoint.
 *
 * Formulations (`formulation`):
 * - 'fast' (CPU default): com.microsoft FusedMatMul for the conv weight gradients, the dW
 *   formulation chosen per level (src/model/onnx/autodiff.ts). At start-up it is checked against
 *   the 'portable' graph on one small step; when they differ the engine logs it and uses the
 *   portable graph.
 * - 'portable': standard ONNX ops only, for any execution provider (CUDA, TensorRT, DirectML,
 *   WebGPU); chosen automatically when a non-CPU provider is first in `providers`.
 */
import { cpus } from 'node:os';
import { BackendError, BadInputError, ConfigError, ModelError } from '../../errors.js';
import { loadOrt, sessionOptions, type OrtModule, type OrtSession, type OrtTensor } from '../../io/onnx-engine.js';
import { initUNetWeights } from '../layout.js';
import type { TrainingEngine, StepResult, TrainerState } from '../training-engine.js';
import { multiStepLr } from '../schedule.js';
import type { UNetSpec } from '../types.js';
import { torchFromTfValues, tfValuesFromTorch, type TorchTensors } from '../weights.js';
import { createRng } from '../synthesis/rng.js';
import { buildTrainStep, DEFAULT_HYPER, type StateSlot, type TrainStepGraph } from './train-step.js';

export type OnnxFormulation = 'fast' | 'portable';

/** Options of {@link OnnxTrainer.create}. */
export interface OnnxTrainerOptions {
  spec: UNetSpec;
  size: number;
  epochs: number;
  lr?: number;
  gamma?: number;
  integerMilestones?: boolean;
  threads?: number;
  /** Execution providers in order of preference; 'cpu' is always the last resort. */
  providers?: string[];
  /** Default: 'fast' on CPU, 'portable' when another provider leads `providers`. */
  formulation?: OnnxFormulation;
  /** Compare 'fast' with 'portable' on one small step before training (default true). */
  check?: boolean;
  log?: (msg: string) => void;
  /** Write onnxruntime's per-node profile (JSON) with this file prefix (bench/profile). */
  profile?: string;
  /**
   * How onnxruntime holds the step's activations (see {@link TrainMemory}); default 'arena'.
   */
  memory?: TrainMemory;
  /**
   * Let onnxruntime's intra-op threads busy-wait between ops (default false: `fairline train`'s
   * data worker shares the cores, and spinning threads take them from it).
   */
  spinning?: boolean;
  /**
   * Rebuild activations in the backward from the saved x-hat instead of keeping them
   * (src/model/onnx/autodiff.ts, GradOptions.recompute). Default: on from c = 16 up, where the
   * activations set the peak (c = 32, 256 px, batch 8: peak RSS 3579 -> 2062 MiB at 1 % less
   * speed); off below, where memory is already under PyTorch's and the extra passes cost 0-5 %.
   */
  recompute?: boolean;
}

const product = (s: readonly number[]): number => s.reduce((a, b) => a * b, 1);

/**
 * Memory strategies of the training session (measured in docs/training-engines.md):
 * - 'arena': onnxruntime's CPU arena, tensors allocated as the step runs. Fastest; the arena's
 *   free lists fragment over the first steps, so peak RSS grows past the planner's peak.
 * - 'planned': the memory pattern (one block per run with the offsets the planner computed on
 *   the first run of a batch size), the arena off: at c = 32 1.23-1.32x PyTorch's peak RSS
 *   instead of ~1.6x, but the block's pages are zeroed by the kernel on every run: 15-27 %
 *   slower, and more memory than the arena at c = 8.
 * - 'plain': neither: every tensor from malloc (lowest RSS, slow: page faults on every tensor).
 */
export type TrainMemory = 'arena' | 'planned' | 'plain';

interface Session {
  session: OrtSession;
  provider: string;
}

async function openSession(ort: OrtModule, bytes: Uint8Array, providers: string[], threads: number, profile?: string, memory: TrainMemory = 'arena', spinning = false): Promise<Session> {
  const wanted = providers.map((p) => p.toLowerCase());
  if (!wanted.includes('cpu')) wanted.push('cpu');
  const errors: string[] = [];
  for (const ep of wanted) {
    try {
      const session = await ort.InferenceSession.create(bytes, {
        ...sessionOptions(ep, threads, { spinning }),
        // Never both: the memory-pattern block is allocated on top of the arena from the second
        // run on (2x RSS).
        enableMemPattern: memory === 'planned',
        enableCpuMemArena: memory === 'arena',
        ...(profile ? { enableProfiling: true, profileFilePrefix: profile } : {}),
      });
      return { session, provider: ep };
    } catch (err) {
      errors.push(`${ep}: ${(err instanceof Error ? err.message : String(err)).split('\n')[0]}`);
    }
  }
  throw new BackendError('onnx_session', `onnxruntime could not load the training graph with any provider: ${errors.join('; ')}`);
}

/** The graph options of a formulation. */
function stepOptions(size: number, f: OnnxFormulation, recompute = false): { size: number; convWeightGrad: 'auto' | 'im2col'; separableSsim: boolean; recompute: boolean } {
  const fast = f === 'fast';
  return { size, convWeightGrad: fast ? 'auto' : 'im2col', separableSsim: fast, recompute };
}

function equalArrays(a: Float32Array, b: Float32Array): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return false;
  return true;
}

/** A training step's state buffers: one Float32Array per slot. */
type StateBuffers = Map<string, Float32Array>;

/** See the module doc. Create with {@link OnnxTrainer.create}; `dispose()` when done. */
export class OnnxTrainer implements TrainingEngine {
  readonly name: string;
  readonly spec: UNetSpec;
  readonly size: number;
  readonly epochs: number;
  readonly formulation: OnnxFormulation;
  /** Whether the backward rebuilds activations (OnnxTrainerOptions.recompute, after its default). */
  readonly recompute: boolean;
  epoch = 0;
  private t = 0;
  private cur: StateBuffers;
  private spare: StateBuffers;
  private disposed = false;
  /** Whether onnxruntime wrote into the pre-allocated output buffers (checked on the first step). */
  private preallocation: boolean | undefined;

  private constructor(
    private readonly ort: OrtModule,
    private readonly s: Session,
    private readonly graph: TrainStepGraph,
    state: StateBuffers,
    private readonly opts: OnnxTrainerOptions,
    formulation: OnnxFormulation,
    recompute: boolean,
  ) {
    this.name = `onnxruntime-${s.provider}`;
    this.spec = opts.spec;
    this.size = opts.size;
    this.epochs = opts.epochs;
    this.formulation = formulation;
    this.recompute = recompute;
    this.cur = state;
    this.spare = new Map([...state].map(([k, v]) => [k, new Float32Array(v.length)]));
  }

  /**
   * Open a training session on `initial` weights (PyTorch layout; default: the seeded init of
   * src/model/layout.ts for `seed`), Adam moments zero.
   *
   * @throws BackendError `onnxruntime_missing` / `onnx_session`; ModelError for weights that do not fit.
   */
  static async create(opts: OnnxTrainerOptions, initial?: TorchTensors, seed = 0): Promise<OnnxTrainer> {
    if (!Number.isInteger(opts.epochs) || opts.epochs < 1) throw new ConfigError(`epochs must be a positive integer, got ${opts.epochs}`);
    if (opts.lr !== undefined && !(opts.lr > 0)) throw new ConfigError(`lr must be > 0, got ${opts.lr}`);
    const ort = await loadOrt();
    if (!ort) throw new BackendError('onnxruntime_missing', 'onnxruntime-node is not available (npm ci installs it as an optional dependency)');
    const threads = opts.threads ?? cpus().length;
    const providers = opts.providers ?? ['cpu'];
    const log = opts.log ?? (() => undefined);
    let formulation: OnnxFormulation = opts.formulation ?? (providers[0] && providers[0].toLowerCase() !== 'cpu' ? 'portable' : 'fast');
    if (formulation === 'fast' && opts.check !== false) {
      const why = await compareFormulations(ort, opts.spec, threads);
      if (why) {
        log(`onnx training: the fast graph differs from the portable one (${why}); using the portable graph`);
        formulation = 'portable';
      } else log('onnx training: fast graph checked against the portable graph on one step: same result');
    }
    const recompute = opts.recompute ?? opts.spec.baseWidth >= 16;
    const graph = buildTrainStep(opts.spec, stepOptions(opts.size, formulation, recompute));
    const t0 = Date.now();
    const s = await openSession(ort, graph.bytes, providers, threads, opts.profile, opts.memory ?? 'arena', opts.spinning ?? false);
    log(`onnx training: ${formulation} graph${recompute ? ' (activations recomputed in the backward)' : ''}, ${graph.nodeCount} nodes, session on ${s.provider} (${threads} thread(s)) in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    const tf = initial ? tfValuesFromTorch(initial, opts.spec) : initUNetWeights(opts.spec, seed);
    const torch = torchFromTfValues(tf, opts.spec);
    const state: StateBuffers = new Map();
    for (const slot of graph.state) {
      const base = slot.name.replace(/^[mv]:/, '');
      state.set(slot.name, base === slot.name ? Float32Array.from(torch[base]!.data) : new Float32Array(product(slot.shape)));
    }
    return new OnnxTrainer(ort, s, graph, state, opts, formulation, recompute);
  }

  get stepCount(): number {
    return this.t;
  }

  lrForEpoch(epoch: number): number {
    return multiStepLr(epoch, this.epochs, this.opts.lr ?? 1e-4, this.opts.gamma ?? 0.2, this.opts.integerMilestones ?? false);
  }

  /**
   * One step on a batch of `n` samples: `x` NHWC [n, S, S, Cin], `target` NHWC [n, S, S, Cout].
   *
   * @throws BadInputError for wrong lengths; BackendError `onnx_run` when onnxruntime fails.
   */
  async step(x: Float32Array, target: Float32Array, n: number): Promise<StepResult> {
    if (this.disposed) throw new BackendError('onnx_disposed', 'OnnxTrainer.step after dispose()');
    const S = this.size;
    const { inChannels: cin, outChannels: cout } = this.spec;
    if (!Number.isInteger(n) || n < 1) throw new BadInputError('bad_shape', `batch size must be a positive integer, got ${n}`);
    if (n * S * S < 2) throw new BadInputError('bad_shape', 'BatchNorm needs more than one value per channel');
    if (x.length !== n * S * S * cin || target.length !== n * S * S * cout)
      throw new BadInputError('bad_shape', `batch of ${n}: x has ${x.length} values (want ${n * S * S * cin}), target ${target.length} (want ${n * S * S * cout})`);
    this.t += 1;
    const { beta1, beta2 } = DEFAULT_HYPER;
    const stepSize = this.lrForEpoch(this.epoch) / (1 - beta1 ** this.t);
    const bc2Sqrt = Math.sqrt(1 - beta2 ** this.t);
    const T = this.ort.Tensor;
    const feeds: Record<string, OrtTensor> = {
      x: new T('float32', x, [n, S, S, cin]),
      target: new T('float32', target, [n, S, S, cout]),
      step_size: new T('float32', new Float32Array([stepSize]), []),
      bc2_sqrt: new T('float32', new Float32Array([bc2Sqrt]), []),
    };
    const fetches: Record<string, OrtTensor | null> = { loss: null, mse: null, ssim_loss: null };
    for (const slot of this.graph.state) {
      feeds[slot.name] = new T('float32', this.cur.get(slot.name)!, slot.shape);
      fetches[slot.next] = new T('float32', this.spare.get(slot.name)!, slot.shape);
    }
    let out: Record<string, OrtTensor>;
    try {
      out = await this.s.session.run(feeds, fetches);
    } catch (err) {
      this.t -= 1;
      throw new BackendError('onnx_run', `onnxruntime training step failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    // onnxruntime writes the new state into the pre-allocated spare buffers; onnxruntime-node
    // then also returns a copy of every output, which is dropped. Checked once in full: a
    // binding that ignored the buffers gets its outputs copied in.
    if (this.preallocation === undefined) {
      this.preallocation = this.graph.state.every((slot) => equalArrays(out[slot.next]!.data as Float32Array, this.spare.get(slot.name)!));
      if (!this.preallocation) this.opts.log?.('onnx training: this onnxruntime-node ignores pre-allocated outputs; state is copied once per step');
    }
    if (!this.preallocation) for (const slot of this.graph.state) this.spare.get(slot.name)!.set(out[slot.next]!.data as Float32Array);
    [this.cur, this.spare] = [this.spare, this.cur];
    const scalar = (k: string): number => (out[k]!.data as Float32Array)[0]!;
    return { loss: scalar('loss'), mse: scalar('mse'), ssimLoss: scalar('ssim_loss') };
  }

  /** The current weights and BN statistics as a PyTorch state_dict (copies). */
  weights(): TorchTensors {
    const out: TorchTensors = {};
    for (const slot of this.graph.state) if (!slot.name.includes(':')) out[slot.name] = { shape: [...slot.shape], data: Float32Array.from(this.cur.get(slot.name)!) };
    return out;
  }

  /** Adam state in the checkpoint's layout (TF layout, as the tfjs engine keeps it). */
  getState(): TrainerState {
    const m = new Map<string, Float32Array>();
    const v = new Map<string, Float32Array>();
    const toTf = (prefix: 'm' | 'v'): Map<string, Float32Array> => {
      const torch: TorchTensors = {};
      for (const slot of this.graph.state) if (!slot.name.includes(':')) torch[slot.name] = { shape: slot.shape, data: this.cur.get(slot.name)! };
      for (const name of this.graph.trainable) torch[name] = { shape: torch[name]!.shape, data: this.cur.get(`${prefix}:${name}`)! };
      return tfValuesFromTorch(torch, this.spec);
    };
    const tm = toTf('m'), tv = toTf('v');
    for (const name of this.graph.trainable) {
      m.set(name, tm.get(name)!);
      v.set(name, tv.get(name)!);
    }
    return { step: this.t, epoch: this.epoch, m, v };
  }

  /**
   * Restore weights (PyTorch layout) and Adam state (checkpoint layout) from either engine.
   *
   * @throws ModelError when a tensor is missing or mis-sized.
   */
  setState(state: TrainerState, weights?: TorchTensors): void {
    if (!Number.isInteger(state.step) || state.step < 0) throw new ModelError('bad_checkpoint', `optimizer step must be a non-negative integer, got ${state.step}`);
    const base = weights ?? this.weights();
    const tfW = tfValuesFromTorch(base, this.spec);
    const moments = (src: Map<string, Float32Array>): TorchTensors => {
      const vals = new Map(tfW);
      for (const name of this.graph.trainable) {
        const a = src.get(name);
        if (!a || a.length !== tfW.get(name)!.length) throw new ModelError('bad_checkpoint', `optimizer state for ${name} is missing or has the wrong size`);
        vals.set(name, a);
      }
      return torchFromTfValues(vals, this.spec);
    };
    const tm = moments(state.m), tv = moments(state.v);
    for (const slot of this.graph.state) {
      const [prefix, name] = slot.name.includes(':') ? (slot.name.split(':') as ['m' | 'v', string]) : [undefined, slot.name];
      const src = prefix === 'm' ? tm[name]! : prefix === 'v' ? tv[name]! : base[name]!;
      this.cur.get(slot.name)!.set(src.data);
    }
    this.t = state.step;
    this.epoch = state.epoch;
  }

  /** Stop profiling (when `profile` was set) so the profile file is complete. */
  endProfiling(): void {
    (this.s.session as unknown as { endProfiling?: () => void }).endProfiling?.();
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    void this.s.session.release();
  }

  /** State slots of the graph (tests). */
  get slots(): readonly StateSlot[] {
    return this.graph.state;
  }
}

/**
 * Feeds for the first step of a training graph: a batch (NHWC), the weights (PyTorch layout)
 * and zero Adam moments. The start-up check, the tests and `bench/grad_check.ts` run graphs
 * this way, outside an `OnnxTrainer`.
 */
export function firstStepFeeds(
  ort: OrtModule,
  graph: TrainStepGraph,
  batch: { x: Float32Array; target: Float32Array; n: number; size: number; spec: UNetSpec },
  weights: TorchTensors,
  adam: { stepSize: number; bc2Sqrt: number },
): Record<string, OrtTensor> {
  const { n, size: S, spec } = batch;
  const feeds: Record<string, OrtTensor> = {
    x: new ort.Tensor('float32', batch.x, [n, S, S, spec.inChannels]),
    target: new ort.Tensor('float32', batch.target, [n, S, S, spec.outChannels]),
    step_size: new ort.Tensor('float32', new Float32Array([adam.stepSize]), []),
    bc2_sqrt: new ort.Tensor('float32', new Float32Array([adam.bc2Sqrt]), []),
  };
  for (const slot of graph.state) {
    const base = slot.name.replace(/^[mv]:/, '');
    feeds[slot.name] = new ort.Tensor('float32', base === slot.name ? weights[base]!.data : new Float32Array(product(slot.shape)), slot.shape);
  }
  return feeds;
}

/**
 * Run one step of the fast and the portable graph on the same small synthetic batch
 * (64 px, batch 2: every dW formulation of 'auto' is used there) and compare the updated Adam
 * first moments, which are 0.1 x the gradients at step 1. Returns why they differ, or undefined.
 */
async function compareFormulations(ort: OrtModule, spec: UNetSpec, threads: number): Promise<string | undefined> {
  const S = 64, n = 2;
  const rng = createRng('onnx-formulation-check');
  const x = Float32Array.from({ length: n * S * S * spec.inChannels }, () => rng.uniform() * 2 - 1);
  const target = Float32Array.from({ length: n * S * S * spec.outChannels }, () => rng.uniform());
  const results: Record<string, OrtTensor>[] = [];
  const torch = torchFromTfValues(initUNetWeights(spec, 1), spec);
  for (const how of ['fast', 'portable'] as const) {
    const graph = buildTrainStep(spec, stepOptions(S, how));
    const s = await openSession(ort, graph.bytes, ['cpu'], threads);
    const feeds = firstStepFeeds(ort, graph, { x, target, n, size: S, spec }, torch, { stepSize: 1e-3, bc2Sqrt: Math.sqrt(1 - 0.999) });
    try {
      results.push(await s.session.run(feeds));
    } finally {
      await s.session.release();
    }
  }
  const [fast, plain] = results as [Record<string, OrtTensor>, Record<string, OrtTensor>];
  const lf = (fast.loss!.data as Float32Array)[0]!, lp = (plain.loss!.data as Float32Array)[0]!;
  if (!(Math.abs(lf - lp) <= 1e-5 * Math.abs(lp))) return `loss ${lf} vs ${lp}`;
  let maxDiff = 0, maxRef = 0;
  for (const k of Object.keys(plain)) {
    if (!k.startsWith('next:m:')) continue;
    const a = fast[k]!.data as Float32Array, b = plain[k]!.data as Float32Array;
    for (let i = 0; i < b.length; i++) {
      const d = Math.abs(a[i]! - b[i]!);
      if (!(d <= maxDiff)) maxDiff = Number.isNaN(d) ? Infinity : d;
      maxRef = Math.max(maxRef, Math.abs(b[i]!));
    }
  }
  return maxDiff <= 1e-3 * maxRef ? undefined : `gradients differ by ${(maxDiff / maxRef).toExponential(2)} of the largest`;
}
