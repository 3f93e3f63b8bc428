/**
 * Seedable pseudo-random numbers for anomaly synthesis.
 *
 * The official code mixes three generators (torch, numpy and Python `random`); a port cannot
 * reproduce their streams, so fairline uses one explicit generator object that every synthesis
 * function receives as an argument. Same seed -> same samples, on every platform (only 32-bit
 * integer arithmetic and IEEE doubles are involved).
 *
 * Generator: xoshiro128** (Blackman & Vigna), seeded through splitmix32 so that small or similar
 * seeds give unrelated streams.
 */
import { ConfigError } from '../../errors.js';

/** The random source every synthesis function takes. */
export interface Rng {
  /** Next raw 32-bit unsigned integer. */
  nextU32(): number;
  /** Uniform double in [lo, hi) (default [0, 1)), 53 random bits. */
  uniform(lo?: number, hi?: number): number;
  /** Uniform integer in [lo, hiExclusive), like Python's `random.randrange(lo, hi)`. */
  int(lo: number, hiExclusive: number): number;
  /** Standard normal (or N(mean, std)) by Box-Muller. */
  normal(mean?: number, std?: number): number;
  /** `k` distinct integers from [0, n) in draw order, like `np.random.choice(n, k, replace=False)`. */
  choice(n: number, k: number): number[];
  /** True with probability p. */
  bernoulli(p: number): boolean;
  /** An independent copy with the same state (for replaying a stream). */
  clone(): Rng;
}

function splitmix32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
}

/** FNV-1a hash so string seeds ('hazelnut/run3') are accepted. */
function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

const TWO_POW_M53 = 1 / 9007199254740992;

/** xoshiro128** generator implementing {@link Rng}. */
export class Xoshiro128 implements Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  constructor(seed: number | string | Uint32Array) {
    if (seed instanceof Uint32Array) {
      if (seed.length !== 4) throw new ConfigError('rng state must have 4 words');
      [this.s0, this.s1, this.s2, this.s3] = [seed[0]!, seed[1]!, seed[2]!, seed[3]!];
    } else {
      let n: number;
      if (typeof seed === 'string') n = hashString(seed);
      else {
        if (!Number.isFinite(seed)) throw new ConfigError(`rng seed must be finite, got ${seed}`);
        // Mix the high part too so seeds above 2^32 are not silently aliased.
        n = (Math.trunc(seed) ^ Math.trunc(seed / 4294967296)) >>> 0;
      }
      const sm = splitmix32(n);
      this.s0 = sm(); this.s1 = sm(); this.s2 = sm(); this.s3 = sm();
    }
    // The all-zero state is a fixed point of xoshiro; splitmix cannot produce it, an explicit state could.
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1;
  }

  /** The 4-word internal state (to checkpoint a run). */
  state(): Uint32Array {
    return Uint32Array.of(this.s0, this.s1, this.s2, this.s3);
  }

  nextU32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5) >>> 0, 7), 9) >>> 0;
    const t = (this.s1 << 9) >>> 0;
    this.s2 = (this.s2 ^ this.s0) >>> 0;
    this.s3 = (this.s3 ^ this.s1) >>> 0;
    this.s1 = (this.s1 ^ this.s2) >>> 0;
    this.s0 = (this.s0 ^ this.s3) >>> 0;
    this.s2 = (this.s2 ^ t) >>> 0;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  uniform(lo = 0, hi = 1): number {
    const a = this.nextU32() >>> 5; // 27 bits
    const b = this.nextU32() >>> 6; // 26 bits
    const u = (a * 67108864 + b) * TWO_POW_M53;
    return lo + (hi - lo) * u;
  }

  int(lo: number, hiExclusive: number): number {
    if (!Number.isInteger(lo) || !Number.isInteger(hiExclusive) || hiExclusive <= lo) {
      // Python's randrange raises ValueError here; so do we.
      throw new ConfigError(`empty integer range [${lo}, ${hiExclusive})`);
    }
    return lo + Math.floor(this.uniform() * (hiExclusive - lo));
  }

  normal(mean = 0, std = 1): number {
    // 1 - u keeps the log argument in (0, 1].
    const u1 = 1 - this.uniform();
    const u2 = this.uniform();
    return mean + std * Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
  }

  choice(n: number, k: number): number[] {
    if (!Number.isInteger(n) || !Number.isInteger(k) || k < 0 || k > n) {
      throw new ConfigError(`cannot choose ${k} of ${n} without replacement`);
    }
    const pool = Array.from({ length: n }, (_, i) => i);
    // Partial Fisher-Yates: the first k slots become the sample, in draw order.
    for (let i = 0; i < k; i++) {
      const j = this.int(i, n);
      const t = pool[i]!; pool[i] = pool[j]!; pool[j] = t;
    }
    return pool.slice(0, k);
  }

  bernoulli(p: number): boolean {
    return this.uniform() < p;
  }

  clone(): Xoshiro128 {
    return new Xoshiro128(this.state());
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/**
 * Create the synthesis RNG.
 *
 * @example
 * const rng = createRng(42);
 * rng.int(205, 230); // like random.randrange(205, 230)
 */
export function createRng(seed: number | string = 0): Xoshiro128 {
  return new Xoshiro128(seed);
}
