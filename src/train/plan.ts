/**
 * The training schedule as data: which image each sample of each epoch draws, and the seed of
 * its synthesis. Everything is a pure function of (seed, epoch, index), so a run can be resumed
 * at any epoch, or prepared by any number of workers in any order, and still be reproducible.
 */
import { createRng } from '../model/synthesis/rng.js';

/** One training sample to prepare. */
export interface SampleRef {
  epoch: number;
  /** Position within the epoch. */
  index: number;
  /** Which training image (drawn with replacement, as the official `__getitem__` ignores idx). */
  image: number;
  /** Seed string of this sample's synthesis RNG. */
  seed: string;
}

/** The samples of one batch. */
export interface BatchRef {
  epoch: number;
  /** Batch number within the epoch. */
  batch: number;
  samples: SampleRef[];
}

/**
 * The batches of one epoch: `nImages` random draws with replacement, in batches of `batchSize`;
 * the last batch keeps the remainder (PyTorch `drop_last=False`).
 */
export function epochBatches(seed: number, epoch: number, nImages: number, batchSize: number): BatchRef[] {
  const rng = createRng(`draw:${seed}:${epoch}`);
  const samples: SampleRef[] = [];
  for (let i = 0; i < nImages; i++) samples.push({ epoch, index: i, image: rng.int(0, nImages), seed: `sample:${seed}:${epoch}:${i}` });
  const out: BatchRef[] = [];
  for (let b = 0; b * batchSize < samples.length; b++) out.push({ epoch, batch: b, samples: samples.slice(b * batchSize, (b + 1) * batchSize) });
  return out;
}

/** Number of batches per epoch. */
export function batchesPerEpoch(nImages: number, batchSize: number): number {
  return Math.ceil(nImages / batchSize);
}
