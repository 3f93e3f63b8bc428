/**
 * Shared set-up of the runtime suites: a small random-init FAIR model artefact (c=4, 64 px:
 * scores are meaningless but deterministic, which is all the wiring tests need) and the toy
 * hazelnut test folder (6 good + 17 colour images).
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { saveModel, type ModelManifest, type ThresholdInfo } from '../../src/io/artefact.js';
import { defaultSpec, type ImageF32 } from '../../src/model/types.js';
import { createUNet } from '../../src/model/tfjs/unet.js';
import { unetToTorch } from '../../src/model/weights.js';
import { SAMPLE_DATA } from '../helpers.js';

export const TEST_DIR = join(SAMPLE_DATA, 'hazelnut', 'test');

/** A temp folder for a suite. */
export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `fairline-${prefix}-`));
}

/** Save a random-init c=4 UNet model of `size` px into `dir` (with an optional threshold). */
export function makeModel(dir: string, opts: { size?: number; seed?: number; threshold?: number } = {}): ModelManifest {
  const spec = defaultSpec({ size: opts.size ?? 64, baseWidth: 4 });
  const unet = createUNet(spec.unet, opts.seed ?? 1);
  try {
    const thresholds: ThresholdInfo | undefined =
      opts.threshold === undefined ? undefined : { image: opts.threshold, method: 'manual', computedAt: new Date().toISOString() };
    return saveModel(dir, { spec, tensors: unetToTorch(unet), idPrefix: 'test', ...(thresholds ? { thresholds } : {}) });
  } finally {
    unet.dispose();
  }
}

/**
 * A stand-in for a loaded model (tests about wiring, scheduling and matching, not scoring):
 * `delayMs` per batch (asynchronous, like onnxruntime's own threads), score `score` for every
 * image; tracks batches and how many ran at once.
 */
export function fakeModel(dir: string, id: string, delayMs: number, opts: { threshold?: number; score?: number; size?: number } = {}) {
  const m = {
    id, dir, size: opts.size ?? 32, threshold: opts.threshold ?? 0.5, guard: undefined, scoreRange: undefined,
    engine: 'tfjs' as const, engineName: 'fake', backend: 'cpu', thresholdSource: 'artefact' as const, guardNote: 'guard: off (fake)',
    running: 0, maxRunning: 0, batches: 0, disposed: false,
    async inferBatch(images: ImageF32[]): Promise<Array<{ score: number }>> {
      m.running++;
      m.maxRunning = Math.max(m.maxRunning, m.running);
      m.batches++;
      if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs));
      m.running--;
      return images.map(() => ({ score: opts.score ?? 0.1 }));
    },
    async dispose(): Promise<void> {
      m.disposed = true;
    },
  };
  return m;
}
