/**
 * The weight import/export format: a folder with
 *
 * - `weights.json`: `{ file: "weights.f32", tensors: { <state_dict name>: {shape, offset, length} },
 *   base_width?, in_channels?, out_channels?, size?, filter?: {type, cutoff, order} }`,
 *   offsets and lengths counted in float32 ELEMENTS;
 * - the raw little-endian float32 file it names (default `weights.f32`).
 *
 * Shapes and names are PyTorch's (conv OIHW), so a 10-line Python script can write it from an
 * official `.pckl` state_dict (see test/golden/unet_c4_weights for an example).
 */
import { readFile, mkdir, writeFile, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { ModelError } from '../errors.js';
import type { FilterKind, FilterSpec } from '../model/types.js';
import { tensorsFromFlat, tensorsToFlat, type FlatEntry, type TorchTensors } from '../model/weights.js';

/** The optional metadata a `weights.json` may carry, in fairline's names. */
export interface WeightsMeta {
  baseWidth?: number;
  inChannels?: number;
  outChannels?: number;
  /** Model input size S the weights were trained at. */
  size?: number;
  filter?: Partial<FilterSpec>;
}

const FILTER_KINDS: readonly FilterKind[] = ['butterworth', 'gaussian', 'ideal', 'sobel', 'sobel-x'];

interface WeightsJson {
  file?: unknown;
  tensors?: unknown;
  base_width?: unknown;
  in_channels?: unknown;
  out_channels?: unknown;
  size?: unknown;
  filter?: unknown;
}

function positiveInt(v: unknown, what: string, path: string): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) throw new ModelError('bad_weights', `${path}: ${what} must be a positive integer, got ${JSON.stringify(v)}`);
  return v;
}

function parseMeta(j: WeightsJson, path: string): WeightsMeta {
  const meta: WeightsMeta = {};
  const bw = positiveInt(j.base_width, 'base_width', path);
  const ic = positiveInt(j.in_channels, 'in_channels', path);
  const oc = positiveInt(j.out_channels, 'out_channels', path);
  const sz = positiveInt(j.size, 'size', path);
  if (bw !== undefined) meta.baseWidth = bw;
  if (ic !== undefined) meta.inChannels = ic;
  if (oc !== undefined) meta.outChannels = oc;
  if (sz !== undefined) meta.size = sz;
  if (j.filter !== undefined) {
    if (typeof j.filter !== 'object' || j.filter === null) throw new ModelError('bad_weights', `${path}: filter must be an object`);
    const f = j.filter as Record<string, unknown>;
    const filter: Partial<FilterSpec> = {};
    const kind = f.type ?? f.kind;
    if (kind !== undefined) {
      if (!FILTER_KINDS.includes(kind as FilterKind)) throw new ModelError('bad_weights', `${path}: unknown filter type ${JSON.stringify(kind)}`);
      filter.kind = kind as FilterKind;
    }
    for (const k of ['cutoff', 'order'] as const) {
      const v = f[k];
      if (v === undefined) continue;
      if (typeof v !== 'number' || !(v > 0)) throw new ModelError('bad_weights', `${path}: filter.${k} must be a positive number`);
      filter[k] = v;
    }
    meta.filter = filter;
  }
  return meta;
}

/** Resolve a folder or a path to its weights.json. */
async function jsonPath(path: string): Promise<string> {
  try {
    const s = await stat(path);
    return s.isDirectory() ? join(path, 'weights.json') : path;
  } catch (err) {
    throw new ModelError('not_found', `weights not found: ${path}`, { cause: err });
  }
}

/**
 * Read weights in the import format.
 *
 * @param path the folder, or its `weights.json`.
 * @returns the state_dict (PyTorch names and layouts) and the metadata the JSON carries.
 * @throws ModelError when a file is missing, unreadable, malformed or shorter than the index says.
 * @example
 * const { tensors, meta } = await readTorchWeights('models/hazelnut');
 * const unet = unetFromTorch(tensors);
 */
export async function readTorchWeights(path: string): Promise<{ tensors: TorchTensors; meta: WeightsMeta }> {
  const jp = await jsonPath(path);
  let j: WeightsJson;
  try {
    j = JSON.parse(await readFile(jp, 'utf8')) as WeightsJson;
  } catch (err) {
    throw new ModelError('bad_weights', `cannot read ${jp}: ${(err as Error).message}`, { cause: err });
  }
  if (typeof j !== 'object' || j === null || typeof j.tensors !== 'object' || j.tensors === null) {
    throw new ModelError('bad_weights', `${jp}: no "tensors" index`);
  }
  const file = j.file ?? 'weights.f32';
  if (typeof file !== 'string' || file !== basename(file)) {
    // Only a sibling file: an index must not point elsewhere on the disk.
    throw new ModelError('bad_weights', `${jp}: "file" must be a file name next to it, got ${JSON.stringify(file)}`);
  }
  const dataPath = join(dirname(jp), file);
  let buf: Buffer;
  try {
    buf = await readFile(dataPath);
  } catch (err) {
    throw new ModelError('not_found', `weights data missing: ${dataPath}`, { cause: err });
  }
  if (buf.byteLength % 4 !== 0) throw new ModelError('bad_weights', `${dataPath}: size ${buf.byteLength} is not a multiple of 4 bytes`);
  // Copy into an aligned buffer: Buffer slices from the pool may not be 4-byte aligned.
  const data = new Float32Array(buf.byteLength / 4);
  new Uint8Array(data.buffer).set(buf);
  const tensors = tensorsFromFlat(j.tensors as Record<string, FlatEntry>, data);
  return { tensors, meta: parseMeta(j, jp) };
}

/**
 * Write weights in the import format (`weights.json` + `weights.f32`) into `dir`, creating it.
 *
 * @example
 * await writeTorchWeights('out/model', unetToTorch(unet), { size: 256, filter: spec.filter });
 */
export async function writeTorchWeights(dir: string, tensors: TorchTensors, meta: WeightsMeta = {}): Promise<void> {
  const { entries, data } = tensorsToFlat(tensors);
  const j: Record<string, unknown> = { file: 'weights.f32' };
  if (meta.baseWidth !== undefined) j.base_width = meta.baseWidth;
  if (meta.inChannels !== undefined) j.in_channels = meta.inChannels;
  if (meta.outChannels !== undefined) j.out_channels = meta.outChannels;
  if (meta.size !== undefined) j.size = meta.size;
  if (meta.filter) {
    const f: Record<string, unknown> = {};
    if (meta.filter.kind !== undefined) f.type = meta.filter.kind;
    if (meta.filter.cutoff !== undefined) f.cutoff = meta.filter.cutoff;
    if (meta.filter.order !== undefined) f.order = meta.filter.order;
    j.filter = f;
  }
  j.tensors = entries;
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'weights.f32'), new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  await writeFile(join(dir, 'weights.json'), JSON.stringify(j, null, 1));
}
