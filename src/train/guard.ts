/**
 * What a trained model has seen, for the domain guard (src/model/guard.ts): guard statistics of
 * the training images and the score range of the verdicts' `normScore`, computed at the end of
 * training (src/train/loop.ts) and stored in the model artefact.
 */
import { fitGuard, guardFeatures, type GuardStats } from '../model/guard.js';
import { u8ToF32 } from '../model/resize.js';
import type { ScoreRange, ScoreStats } from '../thresholds.js';
import { bankImage, type ImageBank } from './prep.js';

/**
 * Guard statistics of the (decoded, model-size) training images and the normScore anchors of
 * their scores.
 *
 * @example
 * ```ts
 * saveModel(out, { spec, tensors, trainScoreStats: stats, ...trainingGuard(bank, stats) });
 * ```
 */
export function trainingGuard(bank: ImageBank, stats: ScoreStats): { guard: GuardStats; scoreRange: ScoreRange } {
  const rows = Array.from({ length: bank.count }, (_, i) => guardFeatures(u8ToF32(bankImage(bank, i))));
  return {
    guard: fitGuard(rows, { size: bank.size, source: 'training' }),
    scoreRange: { min: stats.min, max: stats.max, n: stats.n, source: 'training' },
  };
}
