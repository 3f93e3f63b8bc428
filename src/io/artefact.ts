/**
 * The model artefact: a folder with `model.json` (everything needed to score identically later)
 * and a raw float32 weights file in PyTorch layout and names (the same tensor table as the golden
 * import format, so official checkpoints and fairline models share one reader).
 *
 * Integrity: the manifest records the weights' SHA-256 and its own SHA-256 (over the manifest
 * without that field); both are verified on load and a mismatch is a ModelError('checksum').
 * Writes are atomic: the weights go to a new content-named file, then `model.json` is replaced by
 * rename, so a reader (or a crash, even kill -9) sees either the old or the new model, never a mix.
 * Loading never evaluates code: JSON and raw floats only.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync, openSync, fsyncSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { ModelError } from '../errors.js';
import type { GuardStats } from '../model/guard.js';
import type { FairSpec } from '../model/types.js';
import type { ScoreRange, ScoreStats } from '../thresholds.js';

export type { GuardStats, ScoreRange, ScoreStats };

export const MODEL_FORMAT = 'fairline.model/v1';

/** Tensors by PyTorch state_dict name, PyTorch layout (conv weights [out, in, kh, kw]). */
export type TensorTable = Record<string, { shape: number[]; data: Float32Array }>;

export interface TensorEntry {
  shape: number[];
  /** Offset in float32 elements into the weights file. */
  offset: number;
  /** Length in float32 elements. */
  length: number;
}

/** Image-score threshold for verdicts: reject when score >= image. */
export interface ThresholdInfo {
  image: number;
  /** How it was chosen, e.g. 'normal-quantile' (target false-reject rate) or 'f1-max'. */
  method: string;
  /** Target false-reject rate for 'normal-quantile'. */
  targetFalseRejectRate?: number;
  /** Number of images it was computed from. */
  images?: number;
  computedAt: string;
  /** Optional pixel threshold for defect regions (defaults to the image threshold). */
  pixel?: number;
}

export interface TrainingInfo {
  category?: string;
  dataRoot?: string;
  files: number;
  /** SHA-256 over the sorted (relative name, content hash) pairs of the training images. */
  contentSha256: string;
  options: Record<string, unknown>;
  epochsDone: number;
  backend?: string;
  seconds?: number;
  finalLoss?: number;
}

export interface ModelManifest {
  format: typeof MODEL_FORMAT;
  id: string;
  createdAt: string;
  spec: FairSpec;
  /** Channel order of the network's output and of the scored images. */
  channelOrder: 'bgr';
  weights: { file: string; dtype: 'float32'; sha256: string; bytes: number; tensors: Record<string, TensorEntry> };
  thresholds?: ThresholdInfo;
  /** Score statistics of the training images (eval mode), for threshold calibration. */
  trainScoreStats?: ScoreStats;
  /**
   * What the model has seen, for the domain guard (src/model/guard.ts): feature ranges of its
   * normal images. Absent in older and imported models until `fairline calibrate --normal`:
   * such a model runs with the guard off.
   */
  guard?: GuardStats;
  /** Anchors of the normalised score (`normScore`, src/thresholds.ts normaliseScore). */
  scoreRange?: ScoreRange;
  training?: TrainingInfo;
  /** SHA-256 of this manifest serialised without this field. */
  manifestSha256?: string;
}

export interface LoadedModel {
  dir: string;
  manifest: ModelManifest;
  tensors: TensorTable;
}

function sha256(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}

function manifestDigest(m: ModelManifest): string {
  const { manifestSha256: _omit, ...rest } = m;
  return sha256(JSON.stringify(rest));
}

/** Write a file and fsync it (the rename that publishes it is only as durable as its content). */
export function writeFileDurable(path: string, data: Uint8Array | string): void {
  writeFileSync(path, data);
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Write `bytes` as `<prefix>-<sha256[:16]>.f32` in `dir` (tmp + fsync + rename), unless that file
 * is already there. Content naming makes a half-written file impossible to mistake for a good one.
 */
export function writeContentNamed(dir: string, prefix: string, bytes: Uint8Array): { file: string; sha256: string } {
  const digest = sha256(bytes);
  const file = `${prefix}-${digest.slice(0, 16)}.f32`;
  const path = join(dir, file);
  if (!existsSync(path)) {
    const tmp = `${path}.${randomBytes(4).toString('hex')}.tmp`;
    writeFileDurable(tmp, bytes);
    renameSync(tmp, path);
  }
  return { file, sha256: digest };
}

/** Pack a tensor table into one float32 buffer plus its index (sorted names for stable bytes). */
export function packTensors(tensors: TensorTable): { bytes: Uint8Array; index: Record<string, TensorEntry> } {
  const names = Object.keys(tensors).sort();
  let total = 0;
  for (const n of names) total += tensors[n]!.data.length;
  const flat = new Float32Array(total);
  const index: Record<string, TensorEntry> = {};
  let off = 0;
  for (const n of names) {
    const t = tensors[n]!;
    const expected = t.shape.reduce((a, b) => a * b, 1);
    if (expected !== t.data.length) throw new ModelError('bad_weights', `tensor ${n}: shape [${t.shape}] needs ${expected} values, has ${t.data.length}`);
    flat.set(t.data, off);
    index[n] = { shape: [...t.shape], offset: off, length: t.data.length };
    off += t.data.length;
  }
  return { bytes: new Uint8Array(flat.buffer), index };
}

/** Unpack tensors from a float32 file given its index; validates bounds. */
export function unpackTensors(bytes: Uint8Array, index: Record<string, TensorEntry>, what: string): TensorTable {
  if (bytes.byteLength % 4 !== 0) throw new ModelError('bad_weights', `${what}: size ${bytes.byteLength} is not a multiple of 4 bytes`);
  const all = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
  const out: TensorTable = {};
  for (const [name, e] of Object.entries(index)) {
    const need = e.shape.reduce((a, b) => a * b, 1);
    if (need !== e.length) throw new ModelError('bad_weights', `${what}: ${name} shape [${e.shape}] does not match length ${e.length}`);
    if (e.offset < 0 || e.offset + e.length > all.length) throw new ModelError('bad_weights', `${what}: ${name} [${e.offset}, +${e.length}) lies outside the ${all.length}-float weights file`);
    out[name] = { shape: [...e.shape], data: all.slice(e.offset, e.offset + e.length) };
  }
  return out;
}

/** Short content id for a model. */
export function modelId(prefix: string, weightsSha: string): string {
  return `${prefix ? `${prefix}-` : ''}${weightsSha.slice(0, 12)}`;
}

export interface SaveModelOptions {
  spec: FairSpec;
  tensors: TensorTable;
  idPrefix?: string;
  thresholds?: ThresholdInfo;
  trainScoreStats?: ScoreStats;
  guard?: GuardStats;
  scoreRange?: ScoreRange;
  training?: TrainingInfo;
}

/** Save (or atomically replace) a model artefact in `dir`. Returns the manifest written. */
export function saveModel(dir: string, opts: SaveModelOptions): ModelManifest {
  mkdirSync(dir, { recursive: true });
  const { bytes, index } = packTensors(opts.tensors);
  const { file: weightsFile, sha256: weightsSha } = writeContentNamed(dir, 'weights', bytes);
  const manifest: ModelManifest = {
    format: MODEL_FORMAT,
    id: modelId(opts.idPrefix ?? '', weightsSha),
    createdAt: new Date().toISOString(),
    spec: opts.spec,
    channelOrder: 'bgr',
    weights: { file: weightsFile, dtype: 'float32', sha256: weightsSha, bytes: bytes.byteLength, tensors: index },
    ...(opts.thresholds ? { thresholds: opts.thresholds } : {}),
    ...(opts.trainScoreStats ? { trainScoreStats: opts.trainScoreStats } : {}),
    ...(opts.guard ? { guard: opts.guard } : {}),
    ...(opts.scoreRange ? { scoreRange: opts.scoreRange } : {}),
    ...(opts.training ? { training: opts.training } : {}),
  };
  writeManifest(dir, manifest);
  // Old weights files are garbage once the new manifest is in place.
  for (const f of readdirSync(dir)) {
    if (/^weights-[0-9a-f]{16}\.f32$/.test(f) && f !== weightsFile) rmSync(join(dir, f), { force: true });
  }
  return manifest;
}

/** Replace model.json atomically (tmp + rename), stamping its checksum. */
export function writeManifest(dir: string, manifest: ModelManifest): ModelManifest {
  const stamped: ModelManifest = { ...manifest, manifestSha256: undefined };
  delete stamped.manifestSha256;
  stamped.manifestSha256 = manifestDigest(stamped);
  const tmp = join(dir, `model.json.${randomBytes(4).toString('hex')}.tmp`);
  writeFileDurable(tmp, JSON.stringify(stamped, null, 2) + '\n');
  renameSync(tmp, join(dir, 'model.json'));
  return stamped;
}

function validateManifest(m: unknown, path: string): asserts m is ModelManifest {
  const bad = (why: string): never => {
    throw new ModelError('bad_manifest', `${path}: ${why}`);
  };
  if (typeof m !== 'object' || m === null) bad('not a JSON object');
  const o = m as Record<string, unknown>;
  if (o.format !== MODEL_FORMAT) bad(`format is ${JSON.stringify(o.format)}, expected ${MODEL_FORMAT}`);
  const spec = o.spec as FairSpec | undefined;
  if (!spec || typeof spec.size !== 'number' || !spec.unet || !spec.filter || !spec.scoring) bad('spec (size, filter, unet, scoring) missing');
  const w = o.weights as ModelManifest['weights'] | undefined;
  if (!w || typeof w.file !== 'string' || typeof w.sha256 !== 'string' || typeof w.tensors !== 'object') bad('weights (file, sha256, tensors) missing');
  if (w!.file.includes('/') || w!.file.includes('\\') || w!.file.startsWith('.')) bad(`weights file name ${JSON.stringify(w!.file)} must be a plain file name in the model folder`);
}

/**
 * JSON.parse reviver: a manifest never has `__proto__`, `constructor` or `prototype` keys. Such a
 * key is an attack or a broken tool, and as a tensor name `out[name] = ...` would re-point the
 * tensor table's prototype; refused even when the file's checksum is valid (test/faults/access.test.ts).
 */
function rejectPrototypeKeys(key: string, value: unknown): unknown {
  if (key === '__proto__' || key === 'constructor' || key === 'prototype') throw new ModelError('bad_manifest', `forbidden key ${JSON.stringify(key)} in the manifest`);
  return value;
}

/** Read just the manifest (verifying its checksum). */
export function readManifest(dir: string): ModelManifest {
  const path = join(dir, 'model.json');
  if (!existsSync(path)) throw new ModelError('missing', `no model at ${dir}: ${path} not found (train one with 'fairline train' or import one with 'fairline import')`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'), rejectPrototypeKeys);
  } catch (err) {
    if (err instanceof ModelError) throw new ModelError(err.code, `${path}: ${err.message}`, { cause: err });
    throw new ModelError('bad_manifest', `${path} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  validateManifest(parsed, path);
  if (parsed.manifestSha256 !== undefined && manifestDigest(parsed) !== parsed.manifestSha256) {
    throw new ModelError(
      'checksum',
      `${path}: manifest checksum mismatch (the file was edited or corrupted), so the model is refused. model.json is not edited by hand: ` +
        `to change the threshold run 'fairline calibrate --model ${dir} --normal <good images>' (it writes model.json properly), ` +
        `or override it without touching the model: 'threshold' in the station config, or --threshold for replay. Restore the original model.json to use this model again`,
    );
  }
  return parsed;
}

/** Load a model artefact, verifying both checksums. */
export function loadModel(dir: string): LoadedModel {
  const manifest = readManifest(dir);
  const wpath = join(dir, manifest.weights.file);
  if (!existsSync(wpath)) throw new ModelError('missing', `model ${dir}: weights file ${manifest.weights.file} is missing`);
  const bytes = new Uint8Array(readFileSync(wpath));
  const got = sha256(bytes);
  if (got !== manifest.weights.sha256) {
    throw new ModelError('checksum', `model ${dir}: weights checksum mismatch (expected ${manifest.weights.sha256.slice(0, 16)}…, got ${got.slice(0, 16)}…): the file is corrupt or was replaced`);
  }
  return { dir, manifest, tensors: unpackTensors(bytes, manifest.weights.tensors, wpath) };
}

/** Update manifest fields (thresholds, stats) in place, atomically. */
export function updateManifest(dir: string, patch: Partial<Pick<ModelManifest, 'thresholds' | 'trainScoreStats' | 'guard' | 'scoreRange' | 'training'>>): ModelManifest {
  const m = readManifest(dir);
  return writeManifest(dir, { ...m, ...patch });
}

/** SHA-256 over (name, content hash) pairs: identifies a training set independent of paths. */
export function contentHash(files: { name: string; bytes: Uint8Array }[]): string {
  const h = createHash('sha256');
  for (const f of [...files].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    h.update(f.name).update('\0').update(sha256(f.bytes)).update('\n');
  }
  return h.digest('hex');
}
