/**
 * Loaders for the tfjs WebAssembly backend in Node.
 *
 * tfjs-backend-wasm 4.22 never enables its multi-threaded build in Node: the support flag is
 * hard-coded off (tfjs issue #3830), and forcing it fails because tfjs hands emscripten a Blob URL
 * for the pthread worker, which Node's `Worker` cannot load. `createThreadedModule` does what
 * tfjs' own `init()` does, but writes the worker script to a temp file and points emscripten at
 * real paths (see docs in /work/shared/notes/compute.md section 1). `createStockModule` is the
 * same bridge for the single-threaded SIMD build, so that both paths are under our control and
 * the fallback works after the threaded attempt removed the stock registration.
 *
 * Everything here depends on tfjs-backend-wasm 4.22.x internals (the `wasm-out/` file names,
 * the `BackendWasm` export and the C++ "threads = logical cores / 2" rule), so the version is
 * checked and anything unexpected makes the caller fall back.
 */
import { createRequire } from 'node:module';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { removeAtExit } from '../../../io/temp.js';
import type { Worker, WorkerOptions } from 'node:worker_threads';
import type * as tf from '@tensorflow/tfjs';

const require = createRequire(import.meta.url);

/** The tfjs-backend-wasm version this loader was written and measured against. */
export const PINNED_WASM_VERSION = /^4\.22\./;

/** The emscripten module plus the `tfjs` cwraps that `BackendWasm` expects. */
export interface WasmModule {
  tfjs: Record<string, (...args: number[]) => number | void>;
  PThread?: { terminateAllThreads(): void; unusedWorkers?: { unref?: () => void }[]; runningWorkers?: { unref?: () => void }[] };
  [key: string]: unknown;
}

/** The subset of the package's public exports the loaders use. */
export interface WasmPackage {
  BackendWasm: new (module: WasmModule) => unknown;
  setThreadsCount(n: number): void;
  getThreadsCount(): number;
  version_wasm: string;
}

type Factory = (config: Record<string, unknown>) => Promise<WasmModule>;

/** The package, loaded through CommonJS so that it shares the instance `import` would give. */
export function wasmPackage(): WasmPackage {
  return require('@tensorflow/tfjs-backend-wasm') as WasmPackage;
}

function wasmOutDir(): string {
  return join(dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'wasm-out');
}

/** Add the cwraps tfjs' `init()` adds (backend_wasm.js); `BackendWasm` calls them by these names. */
function addTfjsBridge(module: WasmModule): WasmModule {
  const cwrap = module['cwrap'] as (name: string, ret: string | null, args: string[]) => (...a: number[]) => number | void;
  module.tfjs = {
    init: cwrap('init', null, []),
    initWithThreadsCount: cwrap('init_with_threads_count', null, ['number']),
    getThreadsCount: cwrap('get_threads_count', 'number', []),
    registerTensor: cwrap('register_tensor', null, ['number', 'number', 'number']),
    disposeData: cwrap('dispose_data', null, ['number']),
    dispose: cwrap('dispose', null, []),
  };
  return module;
}

/** Reject after `ms` with `what` in the message; the timer does not keep the process alive. */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
    t.unref();
    p.then(
      (v) => { clearTimeout(t); resolve(v); },
      (e: unknown) => { clearTimeout(t); reject(e instanceof Error ? e : new Error(String(e))); },
    );
  });
}

function wasmSimdSupported(): boolean {
  // The probe tfjs uses (wasm-feature-detect): a tiny module with one SIMD instruction.
  try {
    return WebAssembly.validate(new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 4, 1, 96, 0, 0, 3, 2, 1, 0, 10, 9, 1, 7, 0, 65, 0, 253, 15, 26, 11]));
  } catch {
    return false;
  }
}

/** Single-threaded module (SIMD build when the engine validates SIMD, else the plain build). */
export async function createStockModule(timeoutMs: number): Promise<{ module: WasmModule; simd: boolean }> {
  const out = wasmOutDir();
  const simd = wasmSimdSupported();
  const factory = require(join(out, 'tfjs-backend-wasm.js')) as Factory;
  const wasmFile = join(out, simd ? 'tfjs-backend-wasm-simd.wasm' : 'tfjs-backend-wasm.wasm');
  let aborted: string | undefined;
  const ready = factory({
    locateFile: (path: string, prefix: string) => (path.endsWith('.wasm') ? wasmFile : prefix + path),
    onAbort: (msg: string) => { aborted = String(msg); },
  });
  const module = await withTimeout(ready, timeoutMs, 'wasm (single-threaded) instantiation');
  if (aborted) throw new Error(`wasm instantiation aborted: ${aborted}`);
  return { module: addTfjsBridge(module), simd };
}

/** A threaded module plus what is needed to clean up after it. */
export interface ThreadedModule {
  module: WasmModule;
  /** Removes the temp folder holding the pthread worker script. */
  cleanup(): void;
}

/**
 * Instantiate the threaded-SIMD build with a real worker file (Node's Worker cannot load the
 * Blob URL tfjs would pass). The pool of 8 pthread workers is created here.
 *
 * The C++ side computes its thread cap, `emscripten_num_logical_cores() / 2` (it assumes SMT),
 * in a static initializer that runs during instantiation, and in Node that value is
 * `os.cpus().length`. So `os.cpus()` reports `2 * threads` entries until the module is ready;
 * without this a 2-vCPU machine gets 1 thread. The window is a few hundred ms at start-up.
 */
export async function createThreadedModule(threads: number, timeoutMs: number): Promise<ThreadedModule> {
  const out = wasmOutDir();
  const mainScript = join(out, 'tfjs-backend-wasm-threaded-simd.js');
  const { wasmWorkerContents } = require(join(out, 'tfjs-backend-wasm-threaded-simd.worker.js')) as { wasmWorkerContents: string };
  const factory = require(mainScript) as Factory;
  const dir = mkdtempSync(join(os.tmpdir(), 'fairline-wasm-'));
  const workerFile = join(dir, 'tfjs-backend-wasm-threaded-simd.worker.cjs');
  // The contents come from a template literal whose "\n" escapes became real newlines; tfjs
  // escapes them back before making its Blob, and so must we (the script is one minified line).
  writeFileSync(workerFile, wasmWorkerContents.replace(/\n/g, '\\n'));
  let removed = false;
  // Pthread workers read the file while they start; a failed attempt must not delete it under
  // them (emscripten rethrows the worker's load error in the main thread), so removal waits for
  // their termination or for the end of the process (exit, or SIGINT/SIGTERM/SIGHUP: src/io/temp.ts).
  const forget = removeAtExit(dir);
  const cleanup = (): void => {
    if (removed) return;
    removed = true;
    forget();
    rmSync(dir, { recursive: true, force: true });
  };
  let aborted: string | undefined;
  let ready: Promise<WasmModule> | undefined;
  const restoreCpus = fakeCpuCount(2 * threads);
  let workerFailed: (err: Error) => void = () => undefined;
  const failed = new Promise<never>((_, reject) => { workerFailed = reject; });
  failed.catch(() => undefined); // only observed through the race below
  let started = false;
  const restoreWorker = cleanWorkers((err) => {
    // Before start-up a failure means "fall back"; afterwards keep emscripten's behaviour (an
    // uncaught exception) rather than leave the main thread waiting on a dead pthread.
    if (!started) workerFailed(new Error(`pthread worker failed: ${err.message}`));
    else setImmediate(() => { throw err; });
  });
  try {
    ready = factory({
      locateFile: (path: string, prefix: string) => {
        if (path.endsWith('.worker.js')) return workerFile;
        if (path.endsWith('.wasm')) return join(out, 'tfjs-backend-wasm-threaded-simd.wasm');
        return prefix + path;
      },
      // Each pthread worker re-evaluates this file to get the factory.
      mainScriptUrlOrBlob: mainScript,
      onAbort: (msg: string) => { aborted = String(msg); },
    });
    restoreWorker();
    const module = await withTimeout(Promise.race([ready, failed]), timeoutMs, 'wasm (threaded) instantiation');
    if (aborted) throw new Error(`threaded wasm instantiation aborted: ${aborted}`);
    started = true;
    return { module: addTfjsBridge(module), cleanup };
  } catch (err) {
    if (ready) {
      // A module that arrives after the watchdog fired (or aborted half-way) still owns workers.
      ready.then((m) => { m.PThread?.terminateAllThreads(); cleanup(); }, () => cleanup());
    } else {
      cleanup();
    }
    throw err;
  } finally {
    restoreWorker();
    restoreCpus();
  }
}

/**
 * While the factory runs, make `worker_threads.Worker` start workers with an empty `execArgv`
 * and report their start-up errors instead of crashing the process.
 *
 * emscripten creates its pthread workers with `new Worker(file)`, which inherits the parent's
 * flags: `--input-type=module` (node -e) makes them fail to start, and `--import tsx` (mocha,
 * tsx scripts) loads a TypeScript loader 8 times for a plain CommonJS script. A worker that fails
 * makes emscripten's 'error' listener throw in the main thread (an uncaught exception); the
 * wrapped listener hands the error to `onError` so the caller can fall back. emscripten keeps the
 * class it saw (as `global.Worker`), so workers it adds later get the same treatment.
 */
function cleanWorkers(onError: (err: Error) => void): () => void {
  const wt = require('node:worker_threads') as { Worker: typeof Worker };
  const Original = wt.Worker;
  class CleanWorker extends Original {
    constructor(file: string | URL, options: WorkerOptions = {}) {
      super(file, { execArgv: [], ...options });
    }
  }
  const on = Original.prototype.on;
  CleanWorker.prototype.on = function (this: Worker, event: string | symbol, listener: (...args: unknown[]) => void) {
    if (event !== 'error') return on.call(this, event, listener);
    return on.call(this, event, (...args: unknown[]) => {
      try {
        listener(...args);
      } catch (err) {
        onError(err instanceof Error ? err : new Error(String(err)));
      }
    });
  } as Worker['on'];
  wt.Worker = CleanWorker;
  let restored = false;
  return () => {
    if (!restored) wt.Worker = Original;
    restored = true;
  };
}

/** Make `os.cpus()` report `n` entries; returns the function that undoes it. */
function fakeCpuCount(n: number): () => void {
  const original = os.cpus;
  const real = original.call(os);
  const fake = Array.from({ length: n }, (_, i) => real[i % Math.max(1, real.length)]!);
  os.cpus = () => fake;
  return () => { os.cpus = original; };
}

/** Let the process exit although pthread workers are alive (emscripten unrefs only some). */
export function unrefWorkers(module: WasmModule): void {
  const p = module.PThread;
  for (const w of [...(p?.unusedWorkers ?? []), ...(p?.runningWorkers ?? [])]) w.unref?.();
}

/** A direct NHWC 'same' conv and its dW on float64, the smoke test's reference. */
function referenceConvAndDw(x: Float32Array, w: Float32Array, g: Float32Array, n: number, s: number, cin: number, cout: number): { y: Float64Array; dw: Float64Array } {
  const y = new Float64Array(n * s * s * cout);
  const dw = new Float64Array(9 * cin * cout);
  for (let b = 0; b < n; b++)
    for (let oy = 0; oy < s; oy++)
      for (let ox = 0; ox < s; ox++)
        for (let i = 0; i < 3; i++)
          for (let j = 0; j < 3; j++) {
            const iy = oy + i - 1, ix = ox + j - 1;
            if (iy < 0 || iy >= s || ix < 0 || ix >= s) continue;
            for (let c = 0; c < cin; c++) {
              const xv = x[((b * s + iy) * s + ix) * cin + c]!;
              for (let o = 0; o < cout; o++) {
                const k = ((i * 3 + j) * cin + c) * cout + o;
                const yo = ((b * s + oy) * s + ox) * cout + o;
                y[yo]! += xv * w[k]!;
                dw[k]! += xv * g[yo]!;
              }
            }
          }
  return { y, dw };
}

function maxRelDiff(a: ArrayLike<number>, ref: ArrayLike<number>): number {
  let d = 0, m = 0;
  for (let i = 0; i < ref.length; i++) {
    d = Math.max(d, Math.abs(a[i]! - ref[i]!));
    m = Math.max(m, Math.abs(ref[i]!));
  }
  return Number.isFinite(d) ? d / (m || 1) : Infinity;
}

/**
 * Start-up check of the active wasm backend: an 8x8 3x3 'same' conv (2 -> 3 channels, batch 2)
 * and its filter gradient (our Conv2DBackpropFilter) against a float64 reference computed the
 * way the cpu backend does. Throws when they disagree by more than 1e-4 relative.
 */
export async function wasmSmokeTest(tfm: typeof tf): Promise<{ convErr: number; dwErr: number }> {
  const n = 2, s = 8, cin = 2, cout = 3;
  const x = Float32Array.from({ length: n * s * s * cin }, (_, i) => Math.sin(i * 0.37));
  const w = Float32Array.from({ length: 9 * cin * cout }, (_, i) => Math.cos(i * 0.53));
  const g = Float32Array.from({ length: n * s * s * cout }, (_, i) => Math.sin(i * 0.11 + 1));
  const ref = referenceConvAndDw(x, w, g, n, s, cin, cout);
  const [y, dw] = tfm.tidy(() => {
    const xt = tfm.tensor4d(x, [n, s, s, cin]);
    const wt = tfm.tensor4d(w, [3, 3, cin, cout]);
    const gt = tfm.tensor4d(g, [n, s, s, cout]);
    // d/dW of sum(conv(x, W) * g) is exactly Conv2DBackpropFilter(x, g).
    const dW = tfm.grad((v) => tfm.sum(tfm.mul(tfm.conv2d(xt, v as tf.Tensor4D, 1, 'same'), gt)))(wt);
    return [tfm.conv2d(xt, wt, 1, 'same'), dW];
  });
  try {
    const convErr = maxRelDiff(await y.data(), ref.y);
    const dwErr = maxRelDiff(await dw.data(), ref.dw);
    if (!(convErr <= 1e-4 && dwErr <= 1e-4)) throw new Error(`wasm smoke test mismatch: conv ${convErr}, dW ${dwErr}`);
    return { convErr, dwErr };
  } finally {
    y.dispose();
    dw.dispose();
  }
}
