/**
 * Training checkpoints: weights (with BN running stats), Adam moments and the position in the
 * schedule, written every epoch. Atomic: both tensor files are written under content-derived
 * names first, then `checkpoint.json` (the commit point) is replaced by rename; a run killed at
 * any instant (even kill -9) resumes from the last complete checkpoint.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { ModelError } from '../errors.js';
import { packTensors, unpackTensors, writeContentNamed, writeFileDurable, type TensorEntry, type TensorTable } from '../io/artefact.js';
import type { FairSpec } from '../model/types.js';

export const CHECKPOINT_FORMAT = 'fairline.checkpoint/v1';

export interface CheckpointState {
  spec: FairSpec;
  /** Epochs completed (the next epoch to run). */
  epochsDone: number;
  /** Adam steps taken. */
  step: number;
  /** The options that define the run; a resume must use the same ones. */
  options: Record<string, unknown>;
  /** Loss history, one entry per completed epoch. */
  history: Record<string, number>[];
  seconds: number;
}

export interface Checkpoint extends CheckpointState {
  weights: TensorTable;
  /** Adam first and second moments by parameter name (TF layout, flat). */
  m: Map<string, Float32Array>;
  v: Map<string, Float32Array>;
}

interface FileRef {
  file: string;
  sha256: string;
  tensors: Record<string, TensorEntry>;
}

interface CheckpointJson extends CheckpointState {
  format: typeof CHECKPOINT_FORMAT;
  weights: FileRef;
  optimizer: FileRef;
}

function writeTensorFile(dir: string, prefix: string, tensors: TensorTable): FileRef {
  const { bytes, index } = packTensors(tensors);
  return { ...writeContentNamed(dir, prefix, bytes), tensors: index };
}

function readTensorFile(dir: string, ref: FileRef): TensorTable {
  const path = join(dir, ref.file);
  if (!existsSync(path)) throw new ModelError('bad_checkpoint', `checkpoint file ${path} is missing`);
  const bytes = new Uint8Array(readFileSync(path));
  if (createHash('sha256').update(bytes).digest('hex') !== ref.sha256) throw new ModelError('checksum', `checkpoint file ${path} is corrupt (checksum mismatch)`);
  return unpackTensors(bytes, ref.tensors, path);
}

export function saveCheckpoint(dir: string, ck: Checkpoint): void {
  mkdirSync(dir, { recursive: true });
  const weights = writeTensorFile(dir, 'weights', ck.weights);
  const opt: TensorTable = {};
  for (const [k, a] of ck.m) opt[`m:${k}`] = { shape: [a.length], data: a };
  for (const [k, a] of ck.v) opt[`v:${k}`] = { shape: [a.length], data: a };
  const optimizer = writeTensorFile(dir, 'adam', opt);
  const { weights: _w, m: _m, v: _v, ...state } = ck;
  const json: CheckpointJson = { format: CHECKPOINT_FORMAT, ...state, weights, optimizer };
  const tmp = join(dir, `checkpoint.json.${randomBytes(4).toString('hex')}.tmp`);
  writeFileDurable(tmp, JSON.stringify(json, null, 1));
  renameSync(tmp, join(dir, 'checkpoint.json'));
  // Files of earlier checkpoints (and temp files of interrupted writes) are garbage now.
  for (const f of readdirSync(dir)) {
    if (f === 'checkpoint.json' || f === weights.file || f === optimizer.file) continue;
    if (/^(weights|adam)-[0-9a-f]{16}\.f32/.test(f) || f.endsWith('.tmp')) rmSync(join(dir, f), { force: true });
  }
}

export function hasCheckpoint(dir: string): boolean {
  return existsSync(join(dir, 'checkpoint.json'));
}

export function loadCheckpoint(dir: string): Checkpoint {
  const path = join(dir, 'checkpoint.json');
  if (!existsSync(path)) throw new ModelError('missing', `no checkpoint at ${path}`);
  let json: CheckpointJson;
  try {
    json = JSON.parse(readFileSync(path, 'utf8')) as CheckpointJson;
  } catch (err) {
    throw new ModelError('bad_checkpoint', `${path} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  if (json.format !== CHECKPOINT_FORMAT) throw new ModelError('bad_checkpoint', `${path}: format ${json.format}, expected ${CHECKPOINT_FORMAT}`);
  const weights = readTensorFile(dir, json.weights);
  const opt = readTensorFile(dir, json.optimizer);
  const m = new Map<string, Float32Array>();
  const v = new Map<string, Float32Array>();
  for (const [k, t] of Object.entries(opt)) (k.startsWith('m:') ? m : v).set(k.slice(2), t.data);
  const { format: _f, weights: _w, optimizer: _o, ...state } = json;
  return { ...state, weights, m, v };
}
