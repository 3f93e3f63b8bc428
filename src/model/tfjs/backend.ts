/**
 * Compute backend selection: tensorflow (tfjs-node-gpu, then tfjs-node) -> wasm -> cpu.
 *
 * - 'auto' (default) honours env `FAIRLINE_BACKEND`, then tries the order above and records why
 *   each earlier candidate was skipped. An explicit name forces that backend and throws
 *   `BackendError` when it cannot be loaded.
 * - wasm: the training kernels of `./wasm/kernels.ts` are registered before activation; the
 *   multi-threaded build is tried first (`./wasm/loader.ts`), checked by a smoke test under a
 *   watchdog, and replaced by the stock single-threaded build if anything fails. Env
 *   `FAIRLINE_WASM_THREADS` (or `threads`) sets the thread count; 1 skips the threaded build.
 * - Idempotent: each backend is initialised once per process; later calls switch to it
 *   (`tf.setBackend`) and return the same `BackendInfo`.
 *
 * Tensors live on the backend that created them: after a switch, build new tensors from typed
 * arrays rather than reusing old ones.
 *
 * Measured on the 2-vCPU dev box (compute.md): wasm trains the UNet ~650x faster than 'cpu';
 * 2 threads give 1.3-1.8x over 1.
 */
import * as tf from '@tensorflow/tfjs';
import { createRequire } from 'node:module';
import os from 'node:os';
import { BackendError } from '../../errors.js';
import { registerWasmTrainingKernels } from './wasm/kernels.js';
import {
  PINNED_WASM_VERSION, createStockModule, createThreadedModule, unrefWorkers, wasmPackage, wasmSmokeTest, withTimeout,
  type WasmModule,
} from './wasm/loader.js';

const require = createRequire(import.meta.url);

export type BackendName = 'tensorflow' | 'wasm' | 'cpu';

export const BACKEND_NAMES: readonly BackendName[] = ['tensorflow', 'wasm', 'cpu'];

export interface BackendInfo {
  /** tfjs backend name now active. */
  name: BackendName;
  /** Which package provides it (e.g. '@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-backend-wasm 4.22.0 (threaded-simd)'). */
  provider: string;
  /** Threads used by the backend (wasm: pthreads; cpu: 1). */
  threads: number;
  /** Why earlier candidates were skipped, for the log. */
  skipped: string[];
}

export interface InitBackendOptions {
  /** 'auto' (default) or a backend to force. */
  backend?: BackendName | 'auto';
  /** wasm threads (default env FAIRLINE_WASM_THREADS, else the number of CPUs, at most 8). */
  threads?: number;
  /** Receives one line per decision. */
  log?: (msg: string) => void;
  /** Watchdog for the threaded wasm instantiation and smoke test (default 20 s). */
  smokeTimeoutMs?: number;
}

/** Backends initialised in this process, by name. */
const ready = new Map<BackendName, BackendInfo>();
let autoChoice: BackendInfo | undefined;
let current: BackendInfo | undefined;

/** The active backend as set by this module, or undefined before the first `initBackend`. */
export function currentBackend(): BackendInfo | undefined {
  return current;
}

/**
 * Switch to a backend explicitly (tests use 'cpu' and 'wasm').
 *
 * @example
 * ```ts
 * await useBackend('cpu');
 * const ref = tf.conv2d(tf.tensor4d(xData, shape), tf.tensor4d(wData, wShape), 1, 'same');
 * ```
 */
export async function useBackend(name: BackendName): Promise<BackendInfo> {
  return initBackend({ backend: name });
}

function parseName(value: string, where: string): BackendName | 'auto' {
  const v = value.trim().toLowerCase();
  if (v === 'auto' || (BACKEND_NAMES as readonly string[]).includes(v)) return v as BackendName | 'auto';
  throw new BackendError('unknown_backend', `unknown backend "${value}" in ${where}; expected one of auto, ${BACKEND_NAMES.join(', ')}`);
}

function wasmThreads(opts: InitBackendOptions): number {
  const env = process.env['FAIRLINE_WASM_THREADS'];
  const raw = opts.threads ?? (env ? Number(env) : Math.min(8, os.cpus().length));
  if (!Number.isInteger(raw) || raw < 1) {
    throw new BackendError('bad_threads', `wasm threads must be a positive integer, got ${String(opts.threads ?? env)}`);
  }
  // The threaded build pre-creates 8 pthread workers, its hard maximum.
  return Math.min(8, raw);
}

/**
 * Initialise (once) and activate a compute backend.
 *
 * @example
 * ```ts
 * const info = await initBackend({ log: (m) => logger.info(m) });
 * // info = { name: 'wasm', provider: '@tensorflow/tfjs-backend-wasm 4.22.0 (threaded-simd)', threads: 2,
 * //          skipped: ['@tensorflow/tfjs-node-gpu: not installed', '@tensorflow/tfjs-node: not installed'] }
 * ```
 * @throws BackendError for an unknown name, or when a forced backend cannot be loaded.
 */
export async function initBackend(opts: InitBackendOptions = {}): Promise<BackendInfo> {
  if (opts.threads !== undefined) wasmThreads(opts); // validate even when wasm is already up
  let want = opts.backend === undefined ? 'auto' : parseName(opts.backend, 'initBackend({backend})');
  const env = process.env['FAIRLINE_BACKEND'];
  if (want === 'auto' && env && env.trim() !== '') want = parseName(env, 'env FAIRLINE_BACKEND');

  let info: BackendInfo;
  if (want === 'auto') {
    info = autoChoice ?? (await initAuto(opts));
    autoChoice = info;
  } else {
    info = ready.get(want) ?? (await initOne(want, opts, []));
  }
  if (tf.getBackend() !== info.name && !(await tf.setBackend(info.name))) {
    throw new BackendError('backend_failed', `tf.setBackend('${info.name}') failed after initialisation`);
  }
  if (current !== info) opts.log?.(describe(info));
  current = info;
  return info;
}

function describe(info: BackendInfo): string {
  const skipped = info.skipped.length ? `; skipped: ${info.skipped.join('; ')}` : '';
  return `backend: ${info.name} (${info.provider}, ${info.threads} thread${info.threads === 1 ? '' : 's'})${skipped}`;
}

async function initAuto(opts: InitBackendOptions): Promise<BackendInfo> {
  const skipped: string[] = [];
  for (const name of BACKEND_NAMES) {
    const done = ready.get(name);
    if (done) return { ...done, skipped };
    try {
      return await initOne(name, opts, skipped);
    } catch (err) {
      if (name === 'cpu') throw err;
      // tensorflow adds one reason per package itself.
      if (name === 'wasm') skipped.push(`wasm: ${(err as Error).message}`);
    }
  }
  throw new BackendError('no_backend', 'no compute backend could be initialised');
}

async function initOne(name: BackendName, opts: InitBackendOptions, skipped: string[]): Promise<BackendInfo> {
  let info: BackendInfo;
  if (name === 'cpu') {
    if (!(await tf.setBackend('cpu'))) throw new BackendError('backend_failed', "tf.setBackend('cpu') failed");
    info = { name: 'cpu', provider: '@tensorflow/tfjs-backend-cpu', threads: 1, skipped };
  } else if (name === 'tensorflow') {
    info = await initTensorflow(skipped);
  } else {
    info = await initWasm(opts, skipped);
  }
  ready.set(name, info);
  return info;
}

function loadFailure(pkg: string, err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  if (e?.code === 'MODULE_NOT_FOUND' && String(e.message).includes(`'${pkg}'`)) return `${pkg}: not installed`;
  // A present package whose native binding is missing (its install script could not fetch
  // libtensorflow) throws here too; the first line says which file.
  return `${pkg}: ${String(e?.message ?? err).split('\n')[0]}`;
}

async function initTensorflow(skipped: string[]): Promise<BackendInfo> {
  const reasons: string[] = [];
  for (const pkg of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
    try {
      // Optional dependencies: loading one registers the 'tensorflow' backend with tfjs-core.
      require(pkg);
    } catch (err) {
      reasons.push(loadFailure(pkg, err));
      continue;
    }
    if (tf.findBackendFactory('tensorflow') && (await tf.setBackend('tensorflow'))) {
      return { name: 'tensorflow', provider: pkg, threads: os.cpus().length, skipped };
    }
    reasons.push(`${pkg}: loaded but the 'tensorflow' backend did not start (tfjs-core version mismatch?)`);
  }
  skipped.push(...reasons);
  throw new BackendError('backend_unavailable', `backend "tensorflow" is unavailable: ${reasons.join('; ')}`);
}

/** Make `module` the 'wasm' backend, replacing any earlier registration. */
async function activateWasmModule(module: WasmModule, threads: number): Promise<number> {
  const pkg = wasmPackage();
  if (tf.findBackendFactory('wasm')) tf.removeBackend('wasm');
  pkg.setThreadsCount(threads);
  tf.registerBackend('wasm', () => new pkg.BackendWasm(module) as tf.KernelBackend, 2);
  if (!(await tf.setBackend('wasm'))) throw new Error("tf.setBackend('wasm') returned false");
  return pkg.getThreadsCount();
}

async function initWasm(opts: InitBackendOptions, skipped: string[]): Promise<BackendInfo> {
  const log = opts.log ?? (() => undefined);
  const timeout = opts.smokeTimeoutMs ?? 20000;
  let pkg;
  try {
    pkg = wasmPackage();
  } catch (err) {
    throw new BackendError('backend_unavailable', `backend "wasm" is unavailable: ${loadFailure('@tensorflow/tfjs-backend-wasm', err)}`, { cause: err });
  }
  const version = `@tensorflow/tfjs-backend-wasm ${pkg.version_wasm}`;
  registerWasmTrainingKernels();
  const threads = wasmThreads(opts);
  const notes: string[] = [];

  if (threads > 1 && PINNED_WASM_VERSION.test(pkg.version_wasm)) {
    let threaded: Awaited<ReturnType<typeof createThreadedModule>> | undefined;
    try {
      threaded = await createThreadedModule(threads, timeout);
      const got = await activateWasmModule(threaded.module, threads);
      unrefWorkers(threaded.module);
      // The threaded build can hang (e.g. out of memory); the watchdog turns that into a fallback.
      await withTimeout(wasmSmokeTest(tf), timeout, 'threaded wasm smoke test');
      // The worker file stays until exit (cleanup is registered on 'exit'): more pthreads may start.
      return { name: 'wasm', provider: `${version} (threaded-simd)`, threads: got, skipped };
    } catch (err) {
      notes.push(`threaded-simd failed (${(err as Error).message}), using single-threaded`);
      log(`wasm: ${notes[notes.length - 1]}`);
      if (tf.findBackendFactory('wasm')) tf.removeBackend('wasm');
      threaded?.cleanup();
    }
  } else if (threads > 1) {
    notes.push(`threaded loader is pinned to 4.22.x, found ${pkg.version_wasm}`);
  }

  try {
    const { module, simd } = await createStockModule(timeout);
    const got = await activateWasmModule(module, 1);
    await withTimeout(wasmSmokeTest(tf), timeout, 'wasm smoke test');
    return { name: 'wasm', provider: `${version} (${simd ? 'simd' : 'plain'})`, threads: got, skipped: [...skipped, ...notes] };
  } catch (err) {
    if (tf.findBackendFactory('wasm')) tf.removeBackend('wasm');
    throw new BackendError('backend_unavailable', `backend "wasm" is unavailable: ${(err as Error).message}`, { cause: err });
  }
}
