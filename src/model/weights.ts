/**
 * PyTorch state_dict <-> UNet conversion, on typed arrays (no file I/O; see `src/io/weights.ts`).
 *
 * PyTorch stores conv weights as OIHW `[out, in, kh, kw]`; fairline keeps TF's HWIO
 * `[kh, kw, in, out]`. BN weight/bias/running_mean/running_var are 1-D and copied as they are.
 * `num_batches_tracked` buffers (present in real checkpoints) are accepted and ignored: with a
 * fixed momentum of 0.1 PyTorch never reads them.
 */
import { ModelError } from '../errors.js';
import type { UNetSpec } from './types.js';
import { paramDefs, UNet } from './tfjs/unet.js';

/** A state_dict on typed arrays: PyTorch names and PyTorch layouts (conv OIHW). */
export type TorchTensors = Record<string, { shape: number[]; data: Float32Array }>;

/** Where a tensor lives in a flat float32 buffer: offset and length in ELEMENTS. */
export interface FlatEntry {
  shape: number[];
  offset: number;
  length: number;
}

const product = (s: readonly number[]): number => s.reduce((a, b) => a * b, 1);

/**
 * Cut a flat float32 buffer into named tensors (the golden / import format: a JSON index of
 * `{shape, offset, length}` in float32 elements). Views are copied so the result owns its data.
 *
 * @throws ModelError when an entry is malformed or runs past the end of `data`.
 * @example
 * const t = tensorsFromFlat({ a: { shape: [2], offset: 0, length: 2 } }, new Float32Array([1, 2]));
 */
export function tensorsFromFlat(entries: Record<string, FlatEntry>, data: Float32Array): TorchTensors {
  const out: TorchTensors = {};
  for (const [name, e] of Object.entries(entries)) {
    const ok = Array.isArray(e?.shape) && e.shape.every((d) => Number.isInteger(d) && d >= 0)
      && Number.isInteger(e.offset) && e.offset >= 0 && Number.isInteger(e.length);
    if (!ok) throw new ModelError('bad_weights', `weights index entry ${name} is malformed: ${JSON.stringify(e)}`);
    if (product(e.shape) !== e.length) {
      throw new ModelError('bad_weights', `weights index entry ${name}: shape [${e.shape.join(',')}] does not hold ${e.length} values`);
    }
    if (e.offset + e.length > data.length) {
      throw new ModelError('bad_weights', `weights data too short for ${name}: needs ${e.offset + e.length} floats, has ${data.length}`);
    }
    out[name] = { shape: [...e.shape], data: data.slice(e.offset, e.offset + e.length) };
  }
  return out;
}

/** Pack tensors back into one flat buffer plus its index (inverse of `tensorsFromFlat`). */
export function tensorsToFlat(tensors: TorchTensors): { entries: Record<string, FlatEntry>; data: Float32Array } {
  let total = 0;
  for (const t of Object.values(tensors)) total += t.data.length;
  const data = new Float32Array(total);
  const entries: Record<string, FlatEntry> = {};
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    data.set(t.data, offset);
    entries[name] = { shape: [...t.shape], offset, length: t.data.length };
    offset += t.data.length;
  }
  return { entries, data };
}

/** OIHW -> HWIO. */
function oihwToHwio(src: Float32Array, o: number, i: number, kh: number, kw: number): Float32Array {
  const dst = new Float32Array(src.length);
  for (let a = 0; a < o; a++)
    for (let b = 0; b < i; b++)
      for (let y = 0; y < kh; y++)
        for (let x = 0; x < kw; x++) dst[((y * kw + x) * i + b) * o + a] = src[((a * i + b) * kh + y) * kw + x]!;
  return dst;
}

/** HWIO -> OIHW. */
function hwioToOihw(src: Float32Array, kh: number, kw: number, i: number, o: number): Float32Array {
  const dst = new Float32Array(src.length);
  for (let y = 0; y < kh; y++)
    for (let x = 0; x < kw; x++)
      for (let b = 0; b < i; b++)
        for (let a = 0; a < o; a++) dst[((a * i + b) * kh + y) * kw + x] = src[((y * kw + x) * i + b) * o + a]!;
  return dst;
}

/** Read base width, input and output channels off the first and last conv's shapes. */
export function inferUNetSpec(tensors: TorchTensors): UNetSpec {
  const first = tensors['encoder.block1.0.weight'];
  const last = tensors['decoder.fin_out.0.weight'];
  if (!first || !last) {
    const missing = ['encoder.block1.0.weight', 'decoder.fin_out.0.weight'].filter((k) => !tensors[k]);
    throw new ModelError('bad_weights', `cannot infer the UNet shape: missing ${missing.join(', ')}`);
  }
  if (first.shape.length !== 4 || last.shape.length !== 4) {
    throw new ModelError('bad_weights', 'conv weights must be 4-D [out, in, kh, kw]');
  }
  return { baseWidth: first.shape[0]!, inChannels: first.shape[1]!, outChannels: last.shape[0]! };
}

/**
 * Build a UNet from a PyTorch state_dict (`model_unetskip.py` names and layouts).
 * Without `spec`, base width and channel counts are inferred from the conv shapes.
 *
 * @throws ModelError naming every missing key, unknown key or wrongly shaped tensor.
 * @example
 * const unet = unetFromTorch(tensors); // tensors from readTorchWeights() in src/io/weights.ts
 */
export function unetFromTorch(tensors: TorchTensors, spec?: UNetSpec): UNet {
  const s = spec ?? inferUNetSpec(tensors);
  return new UNet(s, tfValuesFromTorch(tensors, s));
}

/**
 * Check a PyTorch state_dict against the UNet of `spec` and convert it to TF layout (conv HWIO),
 * keyed by state_dict name. Pure (typed arrays): the tfjs engine's input format.
 *
 * @throws ModelError naming every missing key, unknown key or wrongly shaped tensor.
 */
export function tfValuesFromTorch(tensors: TorchTensors, s: UNetSpec): Map<string, Float32Array> {
  const defs = paramDefs(s);
  const known = new Set(defs.map((d) => d.name));
  const bnPrefixes = new Set(defs.filter((d) => d.name.endsWith('.running_mean')).map((d) => d.name.slice(0, -'.running_mean'.length)));
  const missing = defs.filter((d) => !tensors[d.name]).map((d) => d.name);
  const unknown = Object.keys(tensors).filter((k) => {
    if (known.has(k)) return false;
    const m = /^(.*)\.num_batches_tracked$/.exec(k);
    return !(m && bnPrefixes.has(m[1]!));
  });
  const badShape: string[] = [];
  const values = new Map<string, Float32Array>();
  for (const d of defs) {
    const t = tensors[d.name];
    if (!t) continue;
    // TF layout [kh, kw, in, out] <-> PyTorch [out, in, kh, kw].
    const want = d.shape.length === 4 ? [d.shape[3]!, d.shape[2]!, d.shape[0]!, d.shape[1]!] : d.shape;
    if (t.shape.length !== want.length || t.shape.some((v, i) => v !== want[i]) || t.data.length !== product(want)) {
      badShape.push(`${d.name} [${t.shape.join(',')}] (want [${want.join(',')}])`);
      continue;
    }
    values.set(d.name, d.shape.length === 4 ? oihwToHwio(t.data, want[0]!, want[1]!, want[2]!, want[3]!) : Float32Array.from(t.data));
  }
  if (missing.length || unknown.length || badShape.length) {
    const parts: string[] = [];
    if (missing.length) parts.push(`missing: ${missing.join(', ')}`);
    if (unknown.length) parts.push(`unknown: ${unknown.join(', ')}`);
    if (badShape.length) parts.push(`wrong shape: ${badShape.join(', ')}`);
    throw new ModelError('bad_weights', `state_dict does not match UNet ${JSON.stringify(s)}; ${parts.join('; ')}`);
  }
  return values;
}

/**
 * Export a UNet as a PyTorch state_dict (OIHW convs), loadable by
 * `ReconstructiveSubNetwork(in_channels, out_channels, base_width).load_state_dict(..., strict=False)`
 * (no `num_batches_tracked`). Reads the variables synchronously.
 */
export function unetToTorch(unet: UNet): TorchTensors {
  const values = new Map<string, Float32Array>();
  for (const d of paramDefs(unet.spec)) {
    const v = unet.params.get(d.name);
    if (!v) throw new ModelError('bad_model', `UNet has no parameter ${d.name}`);
    values.set(d.name, v.dataSync() as Float32Array);
  }
  return torchFromTfValues(values, unet.spec);
}

/** TF-layout values by state_dict name (as {@link tfValuesFromTorch} returns) -> a PyTorch state_dict (copies). */
export function torchFromTfValues(values: ReadonlyMap<string, Float32Array>, spec: UNetSpec): TorchTensors {
  const out: TorchTensors = {};
  for (const d of paramDefs(spec)) {
    const data = values.get(d.name);
    if (!data) throw new ModelError('bad_model', `UNet has no parameter ${d.name}`);
    if (d.shape.length === 4) {
      const [kh, kw, i, o] = d.shape as [number, number, number, number];
      out[d.name] = { shape: [o, i, kh, kw], data: hwioToOihw(data, kh, kw, i, o) };
    } else {
      out[d.name] = { shape: [...d.shape], data: Float32Array.from(data) };
    }
  }
  return out;
}
