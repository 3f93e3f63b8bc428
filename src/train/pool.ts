/**
 * Prepares training samples ahead of the model, in worker threads when there are cores to spare
 * (or on the main thread with `workers: 0`). The image bank lives in a SharedArrayBuffer, so
 * workers read the decoded training set without copies; results come back as transfers.
 */
import { Worker } from 'node:worker_threads';
import type { SampleRef } from './plan.js';
import { prepareTrainingSample, type ImageBank, type PrepOptions, type PreparedSample } from './prep.js';

export interface SamplePreparer {
  readonly workers: number;
  prepare(ref: SampleRef): Promise<PreparedSample>;
  close(): Promise<void>;
}

/** Nice value of the data workers' threads (Linux; see worker-impl.ts): the step's threads first. */
const WORKER_NICE = 19;

/** Copy a bank into shared memory (workers then see it without copying). */
export function shareBank(bank: ImageBank): ImageBank {
  if (bank.data.buffer instanceof SharedArrayBuffer) return bank;
  const data = new Uint8Array(new SharedArrayBuffer(bank.data.byteLength));
  data.set(bank.data);
  return { ...bank, data };
}

export function createPreparer(bank: ImageBank, opts: PrepOptions, workers: number): SamplePreparer {
  if (workers <= 0) {
    return {
      workers: 0,
      prepare: async (ref) => prepareTrainingSample(bank, ref, opts),
      close: async () => undefined,
    };
  }
  const shared = shareBank(bank);
  const sharedOpts: PrepOptions = { ...opts, textures: opts.textures ? shareBank(opts.textures) : undefined };
  const pending = new Map<number, { resolve: (s: PreparedSample) => void; reject: (e: Error) => void }>();
  let nextId = 0;
  let turn = 0;
  const pool = Array.from({ length: workers }, () => {
    const w = new Worker(new URL('./worker.mjs', import.meta.url));
    w.postMessage({ type: 'init', bank: shared, opts: sharedOpts, nice: WORKER_NICE });
    w.on('message', (msg: { id: number; ok: boolean; sample?: PreparedSample; error?: string }) => {
      const p = pending.get(msg.id);
      if (!p) return;
      pending.delete(msg.id);
      if (msg.ok) p.resolve(msg.sample!);
      else p.reject(new Error(`data worker: ${msg.error}`));
    });
    w.on('error', (err) => {
      for (const p of pending.values()) p.reject(err);
      pending.clear();
    });
    return w;
  });
  return {
    workers,
    prepare(ref) {
      const id = nextId++;
      const w = pool[turn++ % pool.length]!;
      return new Promise<PreparedSample>((resolve, reject) => {
        pending.set(id, { resolve, reject });
        w.postMessage({ type: 'prep', id, ref });
      });
    },
    async close() {
      await Promise.all(pool.map((w) => w.terminate()));
    },
  };
}
