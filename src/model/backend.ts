/**
 * Compute backend selection: tensorflow (tfjs-node-gpu, then tfjs-node) -> wasm -> cpu.
 * CONTRACT (other modules rely on these exports; implementation owned by the backend work):
 *
 *   initBackend(opts?: { backend?: BackendName | 'auto'; threads?: number; log?: (msg: string) => void }): Promise<BackendInfo>
 *     - 'auto' (default) honours env FAIRLINE_BACKEND, then tries the order above.
 *     - registers the wasm training kernels before activating wasm.
 *     - idempotent: a second call with the same choice returns the same info.
 *   useBackend(name: BackendName): Promise<BackendInfo>   switch explicitly (tests use 'cpu' and 'wasm').
 *   currentBackend(): BackendInfo | undefined
 */
import * as tf from '@tensorflow/tfjs';

export type BackendName = 'tensorflow' | 'wasm' | 'cpu';

export interface BackendInfo {
  /** tfjs backend name now active. */
  name: BackendName;
  /** Which package provides it (e.g. '@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-backend-wasm (threaded-simd)'). */
  provider: string;
  /** Threads used by the backend (wasm: pthreads; cpu: 1). */
  threads: number;
  /** Why earlier candidates were skipped, for the log. */
  skipped: string[];
}

let current: BackendInfo | undefined;

export function currentBackend(): BackendInfo | undefined {
  return current;
}

export async function useBackend(name: BackendName): Promise<BackendInfo> {
  return initBackend({ backend: name });
}

export async function initBackend(opts: { backend?: BackendName | 'auto'; threads?: number; log?: (msg: string) => void } = {}): Promise<BackendInfo> {
  const want = opts.backend ?? 'auto';
  if (want !== 'cpu' && want !== 'auto') throw new Error(`backend ${want} not yet available`);
  await tf.setBackend('cpu');
  await tf.ready();
  current = { name: 'cpu', provider: '@tensorflow/tfjs-backend-cpu', threads: 1, skipped: [] };
  opts.log?.(`backend: ${current.name} (${current.provider})`);
  return current;
}
