/**
 * Prepare one training sample from the decoded training set: rotation + anomaly synthesis
 * (src/model/synthesis) + high-pass. Pure: the same code runs on the main thread and in the
 * data workers (src/train/pool.ts), reading the training images from one shared buffer.
 */
import { HighPass } from '../model/highpass.js';
import { grayFromBgr } from '../model/resize.js';
import { createRng } from '../model/synthesis/rng.js';
import { prepareSample, type AnomalyKind } from '../model/synthesis/synthesize.js';
import type { CutPasteMode } from '../model/synthesis/cutpaste.js';
import type { FilterSpec, ImageU8 } from '../model/types.js';
import type { SampleRef } from './plan.js';

/** The training images, decoded and resized once, packed in one (shareable) buffer. */
export interface ImageBank {
  size: number;
  count: number;
  /** count * size * size * 3 bytes, BGR HWC per image. */
  data: Uint8Array;
}

export function bankImage(bank: ImageBank, i: number): ImageU8 {
  const n = bank.size * bank.size * 3;
  return { width: bank.size, height: bank.size, channels: 3, data: bank.data.subarray(i * n, (i + 1) * n) };
}

export interface PrepOptions {
  size: number;
  filter: FilterSpec;
  cutpaste: CutPasteMode;
  /** Textures: a second bank (DTD images) or, when absent, the training images themselves (no-DTD variant). */
  textures?: ImageBank;
}

/** A prepared sample: network input (high-pass, S*S*cin) and target (S*S*3 in [0,1], BGR). */
export interface PreparedSample {
  input: Float32Array;
  target: Float32Array;
  kind: AnomalyKind;
}

const highpasses = new Map<string, HighPass>();

export function prepareTrainingSample(bank: ImageBank, ref: SampleRef, opts: PrepOptions): PreparedSample {
  const rng = createRng(ref.seed);
  const textures = opts.textures ?? bank;
  const prepared = prepareSample(bankImage(bank, ref.image), rng, {
    cutpaste: opts.cutpaste,
    augmenters: opts.textures ? 'dtd' : 'no-dtd',
    textureSource: () => bankImage(textures, rng.int(0, textures.count)),
  });
  const key = `${opts.size}:${opts.filter.kind}:${opts.filter.cutoff}:${opts.filter.order}`;
  let hp = highpasses.get(key);
  if (!hp) highpasses.set(key, (hp = new HighPass(opts.size, opts.filter)));
  const input = hp.fromGray(grayFromBgr(prepared.input), 1);
  return { input, target: prepared.target.data, kind: prepared.kind };
}
