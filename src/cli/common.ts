/** Shared CLI plumbing: numeric option parsers, backend start-up and logging. */
import { InvalidArgumentError, Option, type Command } from 'commander';
import { initBackend, type BackendInfo, type BackendName } from '../model/backend.js';

export function intOption(name: string, min = 1): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer >= ${min}`);
    return n;
  };
}

export function floatOption(name: string, { min = -Infinity, exclusiveMin = false } = {}): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < min || (exclusiveMin && n === min)) throw new InvalidArgumentError(`${name} must be a number ${exclusiveMin ? '>' : '>='} ${min}`);
    return n;
  };
}

/** Log to stderr (stdout carries results and JSON lines). */
export function log(msg: string): void {
  if (process.env.FAIRLINE_LOG === 'silent') return;
  process.stderr.write(`${msg}\n`);
}

export async function startBackend(opts: Partial<BackendCliOptions>): Promise<BackendInfo> {
  return initBackend({ backend: (opts.backend ?? 'auto') as BackendName | 'auto', threads: opts.threads, log });
}

/** The values of {@link backendOptions}. */
export interface BackendCliOptions {
  backend: string;
  threads?: number;
}

/** `--backend` / `--threads`: the options every compute command shares. */
export function backendOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--backend <name>', 'compute backend').choices(['auto', 'tensorflow', 'wasm', 'cpu']).default(process.env.FAIRLINE_BACKEND ?? 'auto'))
    .option('--threads <n>', 'backend threads (wasm, onnxruntime)', intOption('--threads'));
}
