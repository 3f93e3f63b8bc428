/**
 * Perlin-noise masks of the DTD-Perlin branch (fair-reference.md section 4.2; DRAEM's
 * `perlin.rand_perlin_2d_np`, copied unchanged by FAIR).
 */
import { BadInputError } from '../../errors.js';
import type { ImageF32 } from '../types.js';
import type { Rng } from './rng.js';
import { rotateImage } from './warp.js';

const SQRT2 = Math.SQRT2;

/**
 * `rand_perlin_2d_np((h, w), (resY, resX))`: one octave of gradient noise on a
 * (resY+1) x (resX+1) lattice of unit gradients with angle ~ U(0, 2 pi), quintic fade
 * 6t^5 - 15t^4 + 10t^3, times sqrt(2). Values lie in about [-1, 1].
 *
 * When `h` is a multiple of `resY` (always the case in FAIR: 256 and powers of two up to 32) this
 * is exactly the numpy code; otherwise the cell of row i is floor(i * resY / h), which the numpy
 * code would refuse (shape mismatch).
 *
 * @example
 * const noise = randPerlin2d(256, 256, 4, 16, createRng(1)); // Float32Array(65536)
 */
export function randPerlin2d(h: number, w: number, resY: number, resX: number, rng: Rng): Float32Array {
  for (const [name, v] of [['h', h], ['w', w], ['resY', resY], ['resX', resX]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new BadInputError('bad_size', `perlin ${name} must be a positive integer, got ${v}`);
  }
  if (resY > h || resX > w) throw new BadInputError('bad_size', `perlin resolution ${resY}x${resX} exceeds ${h}x${w}`);
  const gw = resX + 1;
  const gcos = new Float64Array((resY + 1) * gw), gsin = new Float64Array((resY + 1) * gw);
  for (let k = 0; k < gcos.length; k++) {
    const a = 2 * Math.PI * rng.uniform();
    gcos[k] = Math.cos(a);
    gsin[k] = Math.sin(a);
  }
  // Per-column cell index, fraction and fade are shared by all rows.
  const colCell = new Int32Array(w), colFrac = new Float64Array(w), colFade = new Float64Array(w);
  const dX = resX / w;
  for (let j = 0; j < w; j++) {
    const g = j * dX;
    const cell = Math.min(resX - 1, Math.floor(g));
    colCell[j] = cell;
    colFrac[j] = g - cell;
    colFade[j] = fade(g - cell);
  }
  const out = new Float32Array(h * w);
  const dY = resY / h;
  for (let i = 0; i < h; i++) {
    const gy = i * dY;
    const r = Math.min(resY - 1, Math.floor(gy));
    const fy = gy - r, ty = fade(fy);
    const row0 = r * gw, row1 = row0 + gw;
    for (let j = 0; j < w; j++) {
      const c = colCell[j]!, fx = colFrac[j]!, tx = colFade[j]!;
      // Component 0 of numpy's grid is the row fraction (fy), component 1 the column fraction (fx).
      const k00 = row0 + c, k10 = row1 + c, k01 = k00 + 1, k11 = k10 + 1;
      const n00 = fy * gcos[k00]! + fx * gsin[k00]!;
      const n10 = (fy - 1) * gcos[k10]! + fx * gsin[k10]!;
      const n01 = fy * gcos[k01]! + (fx - 1) * gsin[k01]!;
      const n11 = (fy - 1) * gcos[k11]! + (fx - 1) * gsin[k11]!;
      const a = n00 + (n10 - n00) * ty;
      const b = n01 + (n11 - n01) * ty;
      out[i * w + j] = SQRT2 * (a + (b - a) * tx);
    }
  }
  return out;
}

function fade(t: number): number {
  return t * t * t * (t * (t * 6 - 15) + 10);
}

/** A Perlin anomaly mask and how it was drawn. */
export interface PerlinMask {
  /** The rotated noise (size x size). */
  noise: Float32Array;
  /** 1 where noise > 0.5, else 0. */
  mask: Uint8Array;
  /** Lattice resolutions (2^a, 2^b). */
  scaleY: number;
  scaleX: number;
  /** Rotation in degrees, U(-90, 90). */
  angle: number;
  /** Fraction of pixels in the mask. */
  coverage: number;
}

/**
 * Draw a Perlin anomaly mask as FAIR/DRAEM do: scales 2^a, 2^b with a, b ~ U{0..5}, the noise
 * rotated by U(-90, 90) degrees (bilinear, zero fill, so rotated-in corners are never masked)
 * and thresholded at 0.5.
 *
 * @example
 * const { mask, coverage } = perlinMask(256, rng);
 */
export function perlinMask(size: number, rng: Rng, threshold = 0.5): PerlinMask {
  // Scales above the image size make no sense (and for size < 32 the lattice would exceed it).
  const maxExp = Math.min(5, Math.floor(Math.log2(size)));
  const scaleY = 2 ** rng.int(0, maxExp + 1);
  const scaleX = 2 ** rng.int(0, maxExp + 1);
  const raw = randPerlin2d(size, size, scaleY, scaleX, rng);
  const angle = rng.uniform(-90, 90);
  const rotated = rotateImage<ImageF32>({ width: size, height: size, channels: 1, data: raw }, angle).data;
  const mask = new Uint8Array(size * size);
  let n = 0;
  for (let i = 0; i < mask.length; i++) if (rotated[i]! > threshold) { mask[i] = 1; n++; }
  return { noise: rotated, mask, scaleY, scaleX, angle, coverage: n / mask.length };
}
