/** Shared CLI plumbing: numeric option parsers, backend start-up and logging. */
import { accessSync, constants, existsSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { ConfigError } from '../errors.js';
import { THRESHOLD_RANGE } from '../thresholds.js';
import { initBackend, type BackendInfo, type BackendName } from '../model/tfjs/backend.js';

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
    if (!Number.isFinite(n) || n < min || (exclusiveMin && n === min)) {
      throw new InvalidArgumentError(`${name} must be a ${min === -Infinity ? 'finite number' : `number ${exclusiveMin ? '>' : '>='} ${min}`}, got '${v}'`);
    }
    return n;
  };
}

/** `--threshold`: a number > 0, with what a sensible value is when it is not. */
export function thresholdOption(name = '--threshold'): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!(Number.isFinite(n) && n > 0)) throw new InvalidArgumentError(`${name} must be a number > 0, got '${v}': ${THRESHOLD_RANGE}`);
    return n;
  };
}

function writable(path: string): boolean {
  try {
    accessSync(path, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Check, before any work starts, that `dir` can be a folder to write into: an existing folder we
 * may write, or a path whose nearest existing ancestor is such a folder (it will be created).
 * Returns the absolute path.
 *
 * @throws ConfigError naming the option, e.g. `--report /etc/hostname is a file, not a folder`.
 * @example
 * const reportDir = checkOutputDir(o.report, '--report');
 */
export function checkOutputDir(dir: string, option: string): string {
  const abs = resolve(dir);
  let p = abs;
  while (!existsSync(p)) p = dirname(p);
  if (!statSync(p).isDirectory()) {
    throw new ConfigError(p === abs ? `${option} ${dir} is a file, not a folder` : `${option} ${dir}: ${p} is a file, so no folder can be made below it`);
  }
  if (!writable(p)) throw new ConfigError(`${option} ${dir}: no permission to write in ${p}`);
  return abs;
}

/**
 * Check, before any work starts, that `file` can be written: its folder exists and is writable,
 * and the path is not a folder. Returns the absolute path.
 *
 * @throws ConfigError naming the option, e.g. `--onnx /nonexistent-dir/x.onnx: folder /nonexistent-dir does not exist`.
 */
export function checkOutputFile(file: string, option: string): string {
  const abs = resolve(file);
  const dir = dirname(abs);
  if (existsSync(abs) && statSync(abs).isDirectory()) throw new ConfigError(`${option} ${file} is a folder; give a file name`);
  if (!existsSync(dir)) throw new ConfigError(`${option} ${file}: folder ${dir} does not exist`);
  if (!statSync(dir).isDirectory()) throw new ConfigError(`${option} ${file}: ${dir} is not a folder`);
  if (!writable(dir)) throw new ConfigError(`${option} ${file}: no permission to write in ${dir}`);
  return abs;
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
