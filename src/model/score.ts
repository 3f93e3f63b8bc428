/**
 * What every FAIR scoring implementation shares (the tfjs ops in src/model/tfjs/score.ts, the
 * typed arrays of src/model/score-fast.ts, the ONNX detector graph in src/model/onnx/detector.ts):
 * kornia's sRGB -> XYZ coefficients and D65 white point, and the check of the scoring settings.
 * Pure: no engine, no I/O.
 */
import { ConfigError } from '../errors.js';
import type { ScoringSpec } from './types.js';

// kornia 0.6.7 rgb_to_xyz coefficients, rows = output (X, Y, Z), columns = input (r, g, b).
export const RGB_TO_XYZ = [
  [0.412453, 0.35758, 0.180423],
  [0.212671, 0.71516, 0.072169],
  [0.019334, 0.119193, 0.950227],
];
export const D65_WHITE = [0.95047, 1.0, 1.08883];

/** Validate scoring settings (shared by the typed-array scoring, score-fast.ts). */
export function checkSpec(spec: ScoringSpec): void {
  const k = spec.smoothKernel;
  // An even kernel has no centre: torch's padding=k//2 then grows the map by one pixel.
  if (!Number.isInteger(k) || k < 1 || k % 2 === 0) throw new ConfigError(`scoring.smoothKernel must be an odd positive integer, got ${k}`);
  if (!Number.isInteger(spec.msgmsScales) || spec.msgmsScales < 1) throw new ConfigError(`scoring.msgmsScales must be a positive integer, got ${spec.msgmsScales}`);
  if (!(spec.msgmsC > 0)) throw new ConfigError(`scoring.msgmsC must be > 0, got ${spec.msgmsC}`);
  if (!(spec.colourWeight >= 0)) throw new ConfigError(`scoring.colourWeight must be >= 0, got ${spec.colourWeight}`);
  if (spec.colourMode !== 'bgr-as-rgb' && spec.colourMode !== 'rgb') throw new ConfigError(`scoring.colourMode must be 'bgr-as-rgb' or 'rgb', got ${String(spec.colourMode)}`);
}

