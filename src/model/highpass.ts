/**
 * High-frequency extractors: the network input of FAIR (fair-reference.md section 3).
 *
 * FFT filters (Butterworth, Gaussian, ideal) compute, per image,
 * `real(ifft2(ifftshift(fftshift(fft2(gray)) * H)))` in float64 and store float32, exactly the
 * official numpy code. H depends on the distance D of a frequency from DC in DFT-index units of
 * the model size (centred grid with DC at floor(S/2), i.e. `|fftfreq(S) * S|`); it is applied
 * unshifted, which is the same thing without the two shifts. No abs, clipping or rescaling.
 *
 * Sobel variants are cv2.Sobel(ksize 3, BORDER_REFLECT_101) in float64, stored float32.
 *
 * Speed: gray is real and H is real and symmetric, so the 2-D transform only needs half the
 * spectrum: rows are transformed two at a time as one complex FFT, only the S/2+1 non-redundant
 * columns are filtered, and rows are inverted two at a time (real/imag parts of one inverse FFT).
 * That is about 2S+2 complex FFTs of length S per image instead of 4S. Power-of-two sizes use
 * fft.js; other sizes fall back to a direct O(S^2) DFT per line (correct, but much slower).
 *
 * Not re-entrant across threads (it reuses work buffers); in Node that only means one call at a
 * time per instance, which synchronous methods guarantee.
 */
import FFT from 'fft.js';
import { BadInputError, ConfigError } from '../errors.js';
import { grayFromBgr } from './resize.js';
import { filterChannels, type FilterKind, type FilterSpec } from './types.js';

/** Complex 1-D transform on interleaved [re, im] arrays of length 2N (fft.js's interface). */
interface Transform1D {
  transform(out: Float64Array, data: Float64Array): void;
  /** Inverse with the 1/N factor. */
  inverseTransform(out: Float64Array, data: Float64Array): void;
}

/** Direct DFT for sizes fft.js cannot do (not a power of two). O(N^2) per line. */
class DirectDft implements Transform1D {
  private readonly cos: Float64Array;
  private readonly sin: Float64Array;
  constructor(private readonly n: number) {
    this.cos = new Float64Array(n);
    this.sin = new Float64Array(n);
    for (let k = 0; k < n; k++) {
      this.cos[k] = Math.cos((2 * Math.PI * k) / n);
      this.sin[k] = Math.sin((2 * Math.PI * k) / n);
    }
  }
  private run(out: Float64Array, data: Float64Array, sign: number, scale: number): void {
    const n = this.n;
    for (let k = 0; k < n; k++) {
      let re = 0, im = 0;
      for (let j = 0, t = 0; j < n; j++, t = (t + k) % n) {
        const c = this.cos[t]!, s = sign * this.sin[t]!;
        const a = data[2 * j]!, b = data[2 * j + 1]!;
        // (a + ib)(c - i s) for the forward transform (sign = 1), (c + i s) for the inverse.
        re += a * c + b * s;
        im += b * c - a * s;
      }
      out[2 * k] = re * scale;
      out[2 * k + 1] = im * scale;
    }
  }
  transform(out: Float64Array, data: Float64Array): void {
    this.run(out, data, 1, 1);
  }
  inverseTransform(out: Float64Array, data: Float64Array): void {
    this.run(out, data, -1, 1 / this.n);
  }
}

function makeTransform(n: number): Transform1D {
  if ((n & (n - 1)) === 0 && n >= 2) {
    const f = new FFT(n);
    return {
      transform: (out, data) => f.transform(out, data),
      inverseTransform: (out, data) => f.inverseTransform(out, data),
    };
  }
  return new DirectDft(n);
}

/**
 * The transfer function of an FFT filter at distance `d` from DC (DFT-index units).
 *
 * - butterworth: `1 / (1 + (D0 / (d + 1e-6))^(2n))` (the +1e-6 is the official code's; H(0) ~ 1e-30)
 * - gaussian: `1 - exp(-d^2 / (2 D0^2))`
 * - ideal: `0` if `d <= D0`, else `1`
 *
 * @example
 * filterResponse({ kind: 'butterworth', cutoff: 30, order: 2 }, 30); // 0.5
 * @throws ConfigError for a Sobel kind (no transfer function).
 */
export function filterResponse(spec: FilterSpec, d: number): number {
  switch (spec.kind) {
    case 'butterworth':
      return 1 / (1 + Math.pow(spec.cutoff / (d + 1e-6), 2 * spec.order));
    case 'gaussian':
      return 1 - Math.exp(-(d * d) / (2 * spec.cutoff * spec.cutoff));
    case 'ideal':
      return d <= spec.cutoff ? 0 : 1;
    default:
      throw new ConfigError(`filter '${spec.kind}' has no frequency response`);
  }
}

/** Signed frequency of unshifted DFT index u, as numpy's `fftfreq(n) * n`. */
function freqOf(u: number, n: number): number {
  const h = Math.floor(n / 2);
  return ((u + h) % n) - h;
}

const halfFilterCache = new Map<string, Float64Array>();

/**
 * Unshifted H for the non-redundant columns v = 0..floor(S/2), stored column-major
 * (`h[v * S + u]`) to match the column pass. Computed once per (size, spec).
 */
function halfFilter(size: number, spec: FilterSpec): Float64Array {
  const key = `${size}:${spec.kind}:${spec.cutoff}:${spec.order}`;
  let h = halfFilterCache.get(key);
  if (!h) {
    const m = Math.floor(size / 2) + 1;
    h = new Float64Array(m * size);
    for (let v = 0; v < m; v++) {
      const fv = freqOf(v, size);
      for (let u = 0; u < size; u++) {
        const fu = freqOf(u, size);
        h[v * size + u] = filterResponse(spec, Math.sqrt(fu * fu + fv * fv));
      }
    }
    halfFilterCache.set(key, h);
  }
  return h;
}

/**
 * Full unshifted S x S transfer function (row-major `[u][v]`), mainly for inspection and tests.
 *
 * @example
 * const H = highPassFilter(256, DEFAULT_FILTER); // H[0] ~ 1e-30 (DC removed)
 */
export function highPassFilter(size: number, spec: FilterSpec): Float64Array {
  const out = new Float64Array(size * size);
  for (let u = 0; u < size; u++) {
    const fu = freqOf(u, size);
    for (let v = 0; v < size; v++) {
      const fv = freqOf(v, size);
      out[u * size + v] = filterResponse(spec, Math.sqrt(fu * fu + fv * fv));
    }
  }
  return out;
}

const KINDS: readonly FilterKind[] = ['butterworth', 'gaussian', 'ideal', 'sobel', 'sobel-x'];

/**
 * The high-pass extractor for one model size and filter. Inputs are float32 gray in [0, 1]
 * (N*S*S) or an NHWC BGR batch (N*S*S*3); the output is NHWC with `channels` channels.
 *
 * @example
 * const hp = new HighPass(256, DEFAULT_FILTER);
 * const x = hp.fromBgr(batch, 8); // Float32Array 8*256*256*1, the UNet input
 */
export class HighPass {
  /** Network input channels: 1 for FFT filters, 2 for the Sobel variants. */
  readonly channels: 1 | 2;
  private readonly n: number;
  private readonly m: number;
  private readonly fft?: Transform1D;
  private readonly h?: Float64Array;
  private readonly line: Float64Array;
  private readonly lineOut: Float64Array;
  private readonly spec: Float64Array;

  /**
   * @throws ConfigError for a size below 2, an unknown kind, or a non-positive cutoff / order.
   */
  constructor(readonly size: number, readonly filter: FilterSpec) {
    if (!Number.isInteger(size) || size < 2) throw new ConfigError(`high-pass size must be an integer >= 2, got ${size}`);
    if (!KINDS.includes(filter.kind)) throw new ConfigError(`unknown filter kind '${String(filter.kind)}' (use ${KINDS.join(', ')})`);
    this.channels = filterChannels(filter.kind);
    this.n = size;
    this.m = Math.floor(size / 2) + 1;
    if (this.channels === 1) {
      if (!(filter.cutoff > 0) || !Number.isFinite(filter.cutoff)) throw new ConfigError(`filter cutoff must be > 0, got ${filter.cutoff}`);
      if (filter.kind === 'butterworth' && (!(filter.order > 0) || !Number.isFinite(filter.order)))
        throw new ConfigError(`Butterworth order must be > 0, got ${filter.order}`);
      this.fft = makeTransform(size);
      this.h = halfFilter(size, filter);
    }
    this.line = new Float64Array(2 * size);
    this.lineOut = new Float64Array(2 * size);
    this.spec = this.channels === 1 ? new Float64Array(this.m * 2 * size) : new Float64Array(0);
  }

  /**
   * High-pass of `n` gray images (N*S*S float32) -> NHWC (N*S*S*channels) float32.
   *
   * @example
   * const out = new HighPass(64, { kind: 'sobel', cutoff: 30, order: 2 }).fromGray(gray, 1); // 64*64*2
   * @throws BadInputError('wrong_size') when `gray.length !== n * S * S`.
   */
  fromGray(gray: Float32Array, n: number): Float32Array {
    const px = this.n * this.n;
    if (!Number.isInteger(n) || n < 1 || gray.length !== n * px)
      throw new BadInputError('wrong_size', `high-pass: expected ${n} gray images of ${this.n}x${this.n} (${n * px} values), got ${gray.length}`);
    const out = new Float32Array(n * px * this.channels);
    for (let b = 0; b < n; b++) {
      const src = gray.subarray(b * px, (b + 1) * px);
      const dst = out.subarray(b * px * this.channels, (b + 1) * px * this.channels);
      if (this.channels === 1) this.fftFilter(src, dst);
      else this.sobel(src, dst, this.filter.kind === 'sobel-x');
    }
    return out;
  }

  /**
   * High-pass of an NHWC BGR batch (N*S*S*3 float32 in [0, 1]): gray (0.299R+0.587G+0.114B),
   * then `fromGray`.
   *
   * @example
   * const x = hp.fromBgr(packBatch(images), images.length);
   * @throws BadInputError('wrong_size') when `batch.length !== n * S * S * 3`.
   */
  fromBgr(batch: Float32Array, n: number): Float32Array {
    const px = this.n * this.n;
    if (!Number.isInteger(n) || n < 1 || batch.length !== n * px * 3)
      throw new BadInputError('wrong_size', `high-pass: expected ${n} BGR images of ${this.n}x${this.n}x3 (${n * px * 3} values), got ${batch.length}`);
    return this.fromGray(grayFromBgr(batch), n);
  }

  /** One image through the half-spectrum FFT filter (see the module comment). */
  private fftFilter(g: Float32Array, out: Float32Array): void {
    const N = this.n, M = this.m, N2 = 2 * N;
    const fft = this.fft!, H = this.h!, spec = this.spec, line = this.line, lo = this.lineOut;

    // 1. Row FFTs, two real rows per complex FFT: z = g[r] + i g[r+1].
    //    Unpack X1[k] = (Z[k] + conj Z[N-k]) / 2, X2[k] = (Z[k] - conj Z[N-k]) / 2i, k < M,
    //    and store column-major so that each column is contiguous for step 2.
    for (let r = 0; r < N; r += 2) {
      const has2 = r + 1 < N;
      const o1 = r * N, o2 = (r + 1) * N;
      for (let j = 0; j < N; j++) {
        line[2 * j] = g[o1 + j]!;
        line[2 * j + 1] = has2 ? g[o2 + j]! : 0;
      }
      fft.transform(lo, line);
      for (let k = 0; k < M; k++) {
        const kc = k === 0 ? 0 : N - k;
        const a = lo[2 * k]!, b = lo[2 * k + 1]!, c = lo[2 * kc]!, d = lo[2 * kc + 1]!;
        const base = k * N2 + 2 * r;
        spec[base] = 0.5 * (a + c);
        spec[base + 1] = 0.5 * (b - d);
        if (has2) {
          spec[base + 2] = 0.5 * (b + d);
          spec[base + 3] = 0.5 * (c - a);
        }
      }
    }

    // 2. Column FFT, multiply by H (real), inverse column FFT, for the M kept columns.
    for (let k = 0; k < M; k++) {
      const col = spec.subarray(k * N2, (k + 1) * N2);
      fft.transform(lo, col);
      const hk = k * N;
      for (let u = 0; u < N; u++) {
        const hv = H[hk + u]!;
        lo[2 * u] *= hv;
        lo[2 * u + 1] *= hv;
      }
      fft.inverseTransform(col, lo);
    }

    // 3. Inverse row FFTs, two rows at a time: W = Y1 + i Y2 with Y[N-k] = conj Y[k];
    //    real(ifft W) = row r, imag(ifft W) = row r+1.
    for (let r = 0; r < N; r += 2) {
      const has2 = r + 1 < N;
      for (let k = 0; k < N; k++) {
        let p: number, q: number, s: number, t: number;
        if (k < M) {
          const base = k * N2 + 2 * r;
          p = spec[base]!; q = spec[base + 1]!;
          s = has2 ? spec[base + 2]! : 0; t = has2 ? spec[base + 3]! : 0;
        } else {
          const base = (N - k) * N2 + 2 * r;
          p = spec[base]!; q = -spec[base + 1]!;
          s = has2 ? spec[base + 2]! : 0; t = has2 ? -spec[base + 3]! : 0;
        }
        line[2 * k] = p - t;
        line[2 * k + 1] = q + s;
      }
      fft.inverseTransform(lo, line);
      const o1 = r * N, o2 = (r + 1) * N;
      for (let j = 0; j < N; j++) {
        out[o1 + j] = lo[2 * j]!;
        if (has2) out[o2 + j] = lo[2 * j + 1]!;
      }
    }
  }

  /**
   * cv2.Sobel(g, CV_64F, 1, 0, ksize=3) and (0, 1), BORDER_REFLECT_101, as channels [gx, gy]
   * (or [gx, gx] for 'sobel-x'). Gx = [[-1,0,1],[-2,0,2],[-1,0,1]] as a correlation.
   */
  private sobel(g: Float32Array, out: Float32Array, xOnly: boolean): void {
    const N = this.n;
    // Reflect-101 index: -1 -> 1, N -> N-2.
    const rf = (i: number): number => (i < 0 ? -i : i >= N ? 2 * N - 2 - i : i);
    for (let y = 0; y < N; y++) {
      const ym = rf(y - 1) * N, y0 = y * N, yp = rf(y + 1) * N;
      for (let x = 0; x < N; x++) {
        const xm = rf(x - 1), xp = rf(x + 1);
        const gx =
          (g[ym + xp]! - g[ym + xm]!) + 2 * (g[y0 + xp]! - g[y0 + xm]!) + (g[yp + xp]! - g[yp + xm]!);
        const o = 2 * (y0 + x);
        out[o] = gx;
        if (xOnly) {
          out[o + 1] = gx;
        } else {
          out[o + 1] =
            (g[yp + xm]! - g[ym + xm]!) + 2 * (g[yp + x]! - g[ym + x]!) + (g[yp + xp]! - g[ym + xp]!);
        }
      }
    }
  }
}
