/**
 * Test helpers shared by all suites: golden vectors from the official FAIR code and
 * tolerance-based comparisons (in the spirit of tfjs-layers' expectTensorsClose).
 */
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const GOLDEN_DIR = join(REPO_ROOT, 'test', 'golden');
export const SAMPLE_DATA = join(REPO_ROOT, 'data', 'hazelnut_toy');

interface GoldenIndex {
  cases: Record<string, Record<string, { file?: string; shape?: number[]; value?: number; path?: string; tensors?: Record<string, { shape: number[]; offset: number; length: number }> }>>;
}

let index: GoldenIndex | undefined;
export function goldenIndex(): GoldenIndex {
  index ??= JSON.parse(readFileSync(join(GOLDEN_DIR, 'index.json'), 'utf8')) as GoldenIndex;
  return index;
}

/** Read a raw little-endian float32 golden file by name (e.g. 'score.map.f32'). */
export function readF32(file: string): Float32Array {
  const buf = readFileSync(join(GOLDEN_DIR, file));
  return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
}

/** A golden tensor of a case with its shape. */
export function golden(caseName: string, entry: string): { data: Float32Array; shape: number[] } {
  const e = goldenIndex().cases[caseName]?.[entry];
  if (!e?.file || !e.shape) throw new Error(`no golden tensor ${caseName}.${entry}`);
  return { data: readF32(e.file), shape: e.shape };
}

/** A golden scalar of a case. */
export function goldenValue(caseName: string, entry: string): number {
  const v = goldenIndex().cases[caseName]?.[entry]?.value;
  if (typeof v !== 'number') throw new Error(`no golden value ${caseName}.${entry}`);
  return v;
}

/** NCHW -> NHWC for golden tensors (PyTorch layout -> tfjs layout). */
export function nchwToNhwc(data: Float32Array, n: number, c: number, h: number, w: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let b = 0; b < n; b++)
    for (let ch = 0; ch < c; ch++)
      for (let y = 0; y < h; y++)
        for (let x = 0; x < w; x++) out[((b * h + y) * w + x) * c + ch] = data[((b * c + ch) * h + y) * w + x]!;
  return out;
}

export interface CloseStats { maxAbs: number; maxRel: number; at: number }

export function diffStats(actual: ArrayLike<number>, expected: ArrayLike<number>): CloseStats {
  assert.equal(actual.length, expected.length, 'length mismatch');
  let maxAbs = 0, maxRel = 0, at = -1;
  let scale = 0;
  for (let i = 0; i < expected.length; i++) scale = Math.max(scale, Math.abs(expected[i]!));
  for (let i = 0; i < expected.length; i++) {
    const d = Math.abs(actual[i]! - expected[i]!);
    if (!(d <= maxAbs)) { maxAbs = d; at = i; }
  }
  maxRel = scale > 0 ? maxAbs / scale : maxAbs;
  return { maxAbs, maxRel, at };
}

/** Assert every element is within `atol` absolute (NaN fails). */
export function expectArraysClose(actual: ArrayLike<number>, expected: ArrayLike<number>, atol: number, what = 'values'): CloseStats {
  const s = diffStats(actual, expected);
  assert.ok(s.maxAbs <= atol, `${what}: max |diff| ${s.maxAbs} at ${s.at} (actual ${actual[s.at]}, expected ${expected[s.at]}) > ${atol}`);
  return s;
}

/** Assert max|diff| / max|expected| <= rtol (NaN fails). */
export function expectArraysCloseRel(actual: ArrayLike<number>, expected: ArrayLike<number>, rtol: number, what = 'values'): CloseStats {
  const s = diffStats(actual, expected);
  assert.ok(s.maxRel <= rtol, `${what}: max |diff|/max|ref| ${s.maxRel} (abs ${s.maxAbs} at ${s.at}) > ${rtol}`);
  return s;
}

export function expectClose(actual: number, expected: number, tol: number, what = 'value', relative = false): void {
  const d = Math.abs(actual - expected);
  const lim = relative ? tol * Math.abs(expected) : tol;
  assert.ok(d <= lim, `${what}: ${actual} vs ${expected} (|diff| ${d} > ${lim})`);
}

/** What a CLI run printed and how it ended. */
export interface CliRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * Run `node bin/fairline.js ...` as an operator would (cpu backend, logs on). `onStdout` may act
 * on the output so far, e.g. send a signal once the station reports it started.
 */
export async function runFairline(
  args: string[],
  opts: { onStdout?: (out: string, kill: (s: NodeJS.Signals) => void) => void; onStderr?: (err: string, kill: (s: NodeJS.Signals) => void) => void; timeoutMs?: number; env?: Record<string, string> } = {},
): Promise<CliRun> {
  const { spawn } = await import('node:child_process');
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [join(REPO_ROOT, 'bin', 'fairline.js'), ...args], {
      cwd: REPO_ROOT,
      env: { ...process.env, FAIRLINE_LOG: '', FAIRLINE_BACKEND: 'cpu', ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '', stderr = '';
    const t = setTimeout(() => {
      p.kill('SIGKILL');
      reject(new Error(`fairline ${args.join(' ')} timed out; stderr: ${stderr}`));
    }, opts.timeoutMs ?? 40000);
    p.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      opts.onStdout?.(stdout, (s) => p.kill(s));
    });
    p.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      opts.onStderr?.(stderr, (s) => p.kill(s));
    });
    p.on('exit', (code, signal) => {
      clearTimeout(t);
      // Let the pipes drain.
      setTimeout(() => resolve({ code, signal, stdout, stderr }), 50);
    });
  });
}
