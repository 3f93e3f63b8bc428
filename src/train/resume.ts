/**
 * What `fairline train` may do with an output folder, and whether a checkpoint can be resumed
 * with the options given now. Both are decided before any work starts, and every refusal says
 * what is there and what to do instead.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '../errors.js';
import { multiStepLr } from '../model/tfjs/trainer.js';

/** One run option whose value differs between a checkpoint and now. */
export interface OptionChange {
  /** Dotted path in the run options, e.g. `spec.unet.baseWidth`. */
  key: string;
  /** The command-line option it comes from, e.g. `--width`. */
  option: string;
  checkpoint: unknown;
  now: unknown;
}

/** Run-option paths (see `runOptions` in src/train/loop.ts) -> the `fairline train` option that sets them. */
const CLI_OPTION: Record<string, string> = {
  epochs: '--epochs',
  batch: '--batch',
  seed: '--seed',
  lr: '--lr',
  cutpaste: '--cutpaste',
  textures: '--textures',
  'spec.size': '--size',
  'spec.unet.baseWidth': '--width',
  'spec.filter.kind': '--filter',
  'spec.filter.cutoff': '--cutoff',
  'spec.filter.order': '--order',
};

function flatten(v: unknown, prefix: string, out: Map<string, unknown>): Map<string, unknown> {
  if (typeof v === 'object' && v !== null && !Array.isArray(v)) {
    for (const [k, x] of Object.entries(v)) flatten(x, prefix ? `${prefix}.${k}` : k, out);
  } else out.set(prefix, v);
  return out;
}

/**
 * The options that differ between a checkpoint's run options and the current ones, in a stable
 * order (the current options' order, then keys only the checkpoint has).
 *
 * @example
 * optionChanges({ epochs: 40, lr: 1e-4 }, { epochs: 60, lr: 1e-4 });
 * // [{ key: 'epochs', option: '--epochs', checkpoint: 40, now: 60 }]
 */
export function optionChanges(checkpoint: Record<string, unknown>, now: Record<string, unknown>): OptionChange[] {
  const a = flatten(checkpoint, '', new Map());
  const b = flatten(now, '', new Map());
  const keys = [...b.keys(), ...[...a.keys()].filter((k) => !b.has(k))];
  return keys
    .filter((k) => JSON.stringify(a.get(k)) !== JSON.stringify(b.get(k)))
    .map((key) => ({ key, option: CLI_OPTION[key] ?? key, checkpoint: a.get(key), now: b.get(key) }));
}

/** `epochs: checkpoint 40, now 60` */
export function describeChange(c: OptionChange): string {
  const show = (v: unknown): string => (v === undefined ? '(not set)' : v === null ? '(none)' : typeof v === 'string' ? v : JSON.stringify(v));
  return `${c.option.replace(/^--/, '')}: checkpoint ${show(c.checkpoint)}, now ${show(c.now)}`;
}

/** The epochs (1-based) after which the learning rate drops in an `epochs`-epoch schedule. */
function rateDrops(epochs: number, lr: number): number[] {
  const out: number[] = [];
  for (let e = 1; e < epochs; e++) if (multiStepLr(e, epochs, lr) !== multiStepLr(e - 1, epochs, lr)) out.push(e);
  return out;
}

/**
 * Whether a checkpoint of a run with `checkpointEpochs` epochs, `epochsDone` of them done, can
 * continue as an `epochs`-epoch run. The learning-rate schedule (x0.2 at 80 % and 90 % of the
 * epochs) depends on the total, so that is true exactly when every epoch already done ran at the
 * rate the new schedule gives it: then the result equals an uninterrupted `epochs`-epoch run.
 * Otherwise (e.g. 60 epochs after a finished 40-epoch run, whose rate already dropped after
 * epochs 32 and 36) no run would give the result, and the change is refused with that reason.
 *
 * @returns undefined when it can, else the reason it cannot.
 */
export function epochsChangeProblem(checkpointEpochs: number, epochs: number, epochsDone: number, lr: number): string | undefined {
  if (epochs < epochsDone) return `the checkpoint has already done ${epochsDone} epochs, more than --epochs ${epochs}`;
  for (let e = 0; e < epochsDone; e++) {
    if (multiStepLr(e, checkpointEpochs, lr) !== multiStepLr(e, epochs, lr)) {
      const drops = (n: number): string => rateDrops(n, lr).join(' and ') || 'never';
      return (
        `the learning rate drops x0.2 at 80% and 90% of the epochs: the ${epochsDone} epochs done followed the ${checkpointEpochs}-epoch schedule ` +
        `(rate lowered after epoch ${drops(checkpointEpochs)}), a ${epochs}-epoch run lowers it after epoch ${drops(epochs)}, so epoch ${e + 1} already ran at another rate ` +
        `and continuing would match neither run`
      );
    }
  }
  return undefined;
}

/**
 * Check a resume against the checkpoint's run options. Only `--epochs` may change, and only as
 * {@link epochsChangeProblem} allows; any other difference is refused naming each option.
 *
 * @returns the accepted epoch change (for a log line), if any.
 * @throws ConfigError naming the options that differ, or why the epochs cannot change.
 */
export function checkResume(ckDir: string, ck: { options: Record<string, unknown>; epochsDone: number }, now: Record<string, unknown>): OptionChange | undefined {
  const changes = optionChanges(ck.options, now);
  const others = changes.filter((c) => c.key !== 'epochs');
  const fix = `use the checkpoint's options, or start a new run (--force, or another --out)`;
  if (others.length > 0) {
    throw new ConfigError(`--resume: the checkpoint in ${ckDir} was made with other options: ${changes.map(describeChange).join('; ')}; ${fix}`);
  }
  const epochs = changes[0];
  if (!epochs) return undefined;
  const problem = epochsChangeProblem(Number(epochs.checkpoint), Number(epochs.now), ck.epochsDone, Number(now.lr));
  if (problem) throw new ConfigError(`--resume: ${describeChange(epochs)}: ${problem}; ${fix}`);
  return epochs;
}

/** What a training output folder already holds. */
export interface TrainOutState {
  /** `model.json` there: the id of the model. */
  model?: string;
  /** `checkpoint/checkpoint.json` there: its progress. */
  checkpoint?: { epochsDone: number; epochs?: number };
}

/** Read what `fairline train --out DIR` would find in DIR (nothing is verified beyond that). */
export function trainOutState(out: string): TrainOutState {
  const state: TrainOutState = {};
  const readJson = (p: string): Record<string, unknown> | undefined => {
    try {
      return JSON.parse(readFileSync(p, 'utf8')) as Record<string, unknown>;
    } catch {
      return undefined;
    }
  };
  if (existsSync(join(out, 'model.json'))) state.model = String(readJson(join(out, 'model.json'))?.id ?? 'unreadable model.json');
  const ckPath = join(out, 'checkpoint', 'checkpoint.json');
  if (existsSync(ckPath)) {
    const ck = readJson(ckPath);
    const options = ck?.options as Record<string, unknown> | undefined;
    state.checkpoint = { epochsDone: Number(ck?.epochsDone ?? 0), ...(typeof options?.epochs === 'number' ? { epochs: options.epochs } : {}) };
  }
  return state;
}

/** `--resume` without a checkpoint to continue. */
export function noCheckpointError(ckDir: string, finishedModel?: string): ConfigError {
  return new ConfigError(`--resume: no checkpoint in ${ckDir}, so there is nothing to resume${finishedModel ? ` (the folder holds the finished model ${finishedModel})` : ''}; run without --resume to start a new run`);
}

/**
 * Refuse to train over earlier work unless asked: `--resume` needs a checkpoint of an unfinished
 * run (or one given more `--epochs`); without it a folder holding a model or checkpoint needs
 * `--force`.
 *
 * @returns true when earlier work will be replaced (the caller removes the old checkpoint).
 * @throws ConfigError saying what the folder holds and the options that would proceed.
 */
export function checkTrainOut(out: string, o: { resume: boolean; force: boolean; epochs: number }): boolean {
  const s = trainOutState(out);
  const ckDir = join(out, 'checkpoint');
  if (o.resume && o.force) throw new ConfigError('give --resume (continue the checkpoint) or --force (start over), not both');
  if (o.resume) {
    if (!s.checkpoint) throw noCheckpointError(ckDir, s.model);
    if (s.model && s.checkpoint.epochsDone >= o.epochs) {
      // Resuming would only rewrite model.json, losing a threshold set since by 'fairline calibrate'.
      throw new ConfigError(`--resume: the run in ${out} already finished all ${s.checkpoint.epochsDone} epochs (model ${s.model}); there is nothing to resume`);
    }
    return false;
  }
  const held = [
    ...(s.model ? [`a model (${s.model})`] : []),
    ...(s.checkpoint ? [`a checkpoint after epoch ${s.checkpoint.epochsDone}${s.checkpoint.epochs ? ` of ${s.checkpoint.epochs}` : ''}`] : []),
  ];
  if (held.length === 0) return false;
  if (!o.force) {
    throw new ConfigError(
      `${out} already holds ${held.join(' and ')}; pass ${s.checkpoint ? '--resume to continue it, ' : ''}--force to start over and replace it, or choose another --out`,
    );
  }
  return true;
}
