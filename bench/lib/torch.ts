/**
 * The PyTorch peer (bench/torch_unet.py, Debian python3-torch) run as a child process, one
 * config per call, so fairline and PyTorch can be measured alternately in the same run.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const TORCH_SCRIPT = join(dirname(fileURLToPath(import.meta.url)), '..', 'torch_unet.py');

export interface TorchConfig {
  mode: 'infer' | 'train';
  width: number;
  size: number;
  batch: number;
  threads: number;
  seconds: number;
  /** Training loss; 'fair' (MSE + 1 - SSIM) matches fairline's Trainer. */
  loss?: 'fair' | 'mse';
}

/** One line of the peer's JSON output. */
export interface TorchResult {
  impl: string;
  torch: string;
  images_per_s: number;
  iterations: number;
  seconds: number;
  max_rss_mib?: number;
}

export interface TorchAvailability {
  ok: boolean;
  python: string;
  version?: string;
  reason?: string;
}

/** Whether `python -c 'import torch'` works (the python is env FAIRLINE_BENCH_PYTHON or /usr/bin/python3). */
export function torchAvailable(): TorchAvailability {
  const python = process.env['FAIRLINE_BENCH_PYTHON'] ?? '/usr/bin/python3';
  if (!existsSync(python)) return { ok: false, python, reason: `${python} not found` };
  const r = spawnSync(python, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) {
    const last = (r.stderr || r.error?.message || '').trim().split('\n').pop();
    return { ok: false, python, reason: `import torch failed: ${last} (apt-get install python3-torch)` };
  }
  return { ok: true, python, version: r.stdout.trim() };
}

/**
 * Run one peer measurement. Resolves with its JSON line; rejects with the script's stderr.
 *
 * @example
 * const r = await runTorch(py, { mode: 'infer', width: 32, size: 256, batch: 8, threads: 2, seconds: 5 });
 * r.images_per_s;
 */
export function runTorch(python: string, cfg: TorchConfig): Promise<TorchResult> {
  const args = [TORCH_SCRIPT, '--mode', cfg.mode, '--width', String(cfg.width), '--size', String(cfg.size), '--batch', String(cfg.batch),
    '--threads', String(cfg.threads), '--seconds', String(cfg.seconds)];
  if (cfg.mode === 'train') args.push('--loss', cfg.loss ?? 'fair');
  return runJsonChild(python, args, 'torch_unet.py');
}

/** Run a benchmark child that prints one JSON line last; reject with its stderr tail. */
export function runJsonChild<T = TorchResult>(cmd: string, args: string[], what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      const line = out.trim().split('\n').pop() ?? '';
      if (code !== 0 || !line.startsWith('{')) {
        reject(new Error(`${what} exited with ${code}: ${err.trim().split('\n').slice(-3).join(' | ')}`));
        return;
      }
      resolve(JSON.parse(line) as T);
    });
  });
}

export const ONNX_STEP_SCRIPT = join(dirname(fileURLToPath(import.meta.url)), '..', 'onnx_train_step.ts');

/** The onnxruntime training step in a child process (bench/onnx_train_step.ts): images/s and peak RSS. */
export function runOnnxStep(cfg: { width: number; size: number; batch: number; threads: number; seconds: number }): Promise<TorchResult> {
  return runJsonChild(process.execPath, ['--import', 'tsx', ONNX_STEP_SCRIPT, '--width', String(cfg.width), '--size', String(cfg.size),
    '--batch', String(cfg.batch), '--threads', String(cfg.threads), '--seconds', String(cfg.seconds)], 'onnx_train_step.ts');
}
