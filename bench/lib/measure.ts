/**
 * Timing and machine facts for the benchmarks. Throughput is counted like the PyTorch peer
 * (bench/torch_unet.py): warm-up, then repeat until `seconds` have passed (at least `minIters`),
 * items x iterations / elapsed wall time.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';

export interface Rate {
  iterations: number;
  seconds: number;
  /** Items (images, frames) per second over the whole timed loop. */
  perSecond: number;
  /** Wall ms per item. */
  msPerItem: number;
  /** Wall ms of each timed iteration. */
  samplesMs: number[];
}

export interface MeasureOptions {
  /** Keep iterating until this many seconds have passed. */
  seconds: number;
  /** At least this many timed iterations (default 1). */
  minIters?: number;
  /** At most this many (default 1000, as the peer). */
  maxIters?: number;
  /** Warm-up: a number of untimed calls of `fn` (default 1), or a separate (cheaper) function. */
  warmup?: number | (() => unknown);
}

/**
 * Time `fn`, which processes `items` items per call.
 *
 * @example
 * const r = await measure(() => restorer.restore(x, 8, 256, 1), 8, { seconds: 3 });
 * r.perSecond; // images/s
 */
export async function measure(fn: () => unknown, items: number, opts: MeasureOptions): Promise<Rate> {
  const warm = opts.warmup ?? 1;
  if (typeof warm === 'function') await warm();
  else for (let i = 0; i < warm; i++) await fn();
  const samplesMs: number[] = [];
  const t0 = performance.now();
  let now = t0;
  const minIters = opts.minIters ?? 1;
  const maxIters = opts.maxIters ?? 1000;
  while (samplesMs.length < maxIters && (samplesMs.length < minIters || now - t0 < opts.seconds * 1000)) {
    const s = performance.now();
    await fn();
    now = performance.now();
    samplesMs.push(now - s);
  }
  const seconds = (now - t0) / 1000;
  return { iterations: samplesMs.length, seconds, perSecond: (items * samplesMs.length) / seconds, msPerItem: (seconds * 1000) / (items * samplesMs.length), samplesMs };
}

/** Linear-interpolated percentile (p in [0, 100]) of unsorted values; NaN when empty. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const s = [...values].sort((a, b) => a - b);
  const pos = (p / 100) * (s.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(s.length - 1, lo + 1);
  return s[lo]! + (s[hi]! - s[lo]!) * (pos - lo);
}

export interface MachineInfo {
  cpuModel: string;
  /** /proc/cpuinfo family/model, e.g. 'family 26 model 2' (AMD Zen 5 is family 26). */
  cpuId: string;
  cores: number;
  simd: string[];
  memGiB: number;
  node: string;
  platform: string;
  loadAvg: number[];
}

/** CPU model (from /proc/cpuinfo where present), cores, SIMD flags, memory, load. */
export function machineInfo(): MachineInfo {
  let cpuModel = os.cpus()[0]?.model ?? 'unknown';
  let cpuId = '';
  let simd: string[] = [];
  try {
    const info = readFileSync('/proc/cpuinfo', 'utf8');
    const field = (k: string): string | undefined => new RegExp(`^${k}\\s*:\\s*(.*)$`, 'm').exec(info)?.[1]?.trim();
    cpuModel = field('model name') ?? cpuModel;
    const fam = field('cpu family');
    const mod = field('model');
    if (fam) cpuId = `family ${fam} model ${mod ?? '?'}`;
    const flags = new Set((field('flags') ?? '').split(/\s+/));
    simd = ['avx2', 'fma', 'avx512f', 'avx512bw', 'avx512_vnni', 'avx512_bf16', 'amx_tile'].filter((f) => flags.has(f));
  } catch {
    // Not Linux: os.cpus() is all there is.
  }
  return {
    cpuModel,
    cpuId,
    cores: os.cpus().length,
    simd,
    memGiB: +(os.totalmem() / 2 ** 30).toFixed(1),
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    loadAvg: os.loadavg().map((v) => +v.toFixed(2)),
  };
}

/** Peak resident set size of this process so far, MiB. */
export function peakRssMiB(): number {
  return Math.round(process.resourceUsage().maxRSS / 1024);
}
