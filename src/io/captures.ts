/**
 * Reject captures on disk: written by the recorder (src/streams/recorder.ts), shown by the
 * operator page (src/ui/), marked there by an operator, and read back by `fairline calibrate
 * --labelled DIR` and `fairline train --add-normal DIR`, so a false reject becomes training data.
 *
 * ```
 * <dir>/CAPTURES.json                    marker {"format": "fairline.captures/v1"}
 * <dir>/<YYYY-MM-DD>/<id>/frame.png|jpg  the frame at source resolution (JPEG/PNG payloads as they came)
 * <dir>/<YYYY-MM-DD>/<id>/verdict.json   its verdict (fairline.verdict/v1)
 * <dir>/<YYYY-MM-DD>/<id>/map.npy        the anomaly map, float32 S x S at model size (NumPy .npy v1.0)
 * <dir>/<YYYY-MM-DD>/<id>/label.json     the review mark {"label": "good" | "defect", "markedAt": ISO time}
 * ```
 *
 * `id` = `<capture time, UTC, YYYYMMDDTHHMMSSmmmZ>_<camera>_<seq>`: names sort by time, and the
 * pair camera + seq keeps two frames of one millisecond apart. Ids are the only names that come
 * from outside (page URLs); {@link captureDir} accepts nothing else and checks the resolved path.
 */
import { existsSync, statSync } from 'node:fs';
import { readFile, readdir, rename, stat, writeFile } from 'node:fs/promises';
import { join, resolve, sep } from 'node:path';
import { BadInputError } from '../errors.js';
import { subjectToken, type Verdict } from '../verdict.js';

export const CAPTURES_FORMAT = 'fairline.captures/v1';
export const CAPTURES_MARKER = 'CAPTURES.json';
/** `20261201T214312345Z_cam0_42`: capture time (UTC, ms), camera token, seq. */
export const CAPTURE_ID = /^(\d{4})(\d{2})(\d{2})T\d{9}Z_[A-Za-z0-9_-]{1,64}_\d{1,15}$/;
const DAY = /^\d{4}-\d{2}-\d{2}$/;

/** What an operator says about a captured frame: a good part (false reject) or a real defect. */
export type ReviewLabel = 'good' | 'defect';
export const REVIEW_LABELS: readonly ReviewLabel[] = ['good', 'defect'];

/** One capture folder. */
export interface CaptureEntry {
  id: string;
  /** Absolute folder of the capture. */
  dir: string;
  /** Capture time (ms epoch), from the id. */
  ts: number;
  /** The frame file (absolute), when present. */
  frame?: string;
  /** Bytes of all files of the capture. */
  bytes: number;
  label?: ReviewLabel;
}

/** The capture id of a verdict's frame. */
export function captureId(v: Pick<Verdict, 'captureTs' | 'camera' | 'seq'>): string {
  const ts = Number.isFinite(v.captureTs) && Math.abs(v.captureTs) < 8.64e15 ? v.captureTs : Date.now();
  const iso = new Date(ts).toISOString(); // 2026-12-01T21:43:12.345Z
  const stamp = `${iso.slice(0, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}T${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}${iso.slice(20, 23)}Z`;
  return `${stamp}_${subjectToken(v.camera).slice(0, 64)}_${Math.max(0, Math.floor(v.seq))}`;
}

/** Whether `id` is a well-formed capture id (the only names page URLs may carry). */
export function isCaptureId(id: string): boolean {
  return CAPTURE_ID.test(id);
}

/** The capture time (ms epoch) an id encodes. */
export function captureTime(id: string): number {
  const s = id.slice(0, 18);
  return Date.UTC(+s.slice(0, 4), +s.slice(4, 6) - 1, +s.slice(6, 8), +s.slice(9, 11), +s.slice(11, 13), +s.slice(13, 15), +s.slice(15, 18));
}

/**
 * The folder of capture `id` under `root`.
 * @throws BadInputError (`bad_capture_id`) for anything that is not a capture id, or a path that
 *   would resolve outside `root`.
 */
export function captureDir(root: string, id: string): string {
  const m = CAPTURE_ID.exec(id);
  if (!m) throw new BadInputError('bad_capture_id', `not a capture id: ${JSON.stringify(id.slice(0, 80))}`);
  const base = resolve(root);
  const dir = resolve(base, `${m[1]}-${m[2]}-${m[3]}`, id);
  if (!dir.startsWith(base + sep)) throw new BadInputError('bad_capture_id', `capture ${id} resolves outside ${base}`);
  return dir;
}

/** Whether `dir` holds captures (has the recorder's marker file). */
export function isCaptureRoot(dir: string): boolean {
  const m = join(dir, CAPTURES_MARKER);
  return existsSync(m) && statSync(m).isFile();
}

/** A float32 array as a NumPy `.npy` (format 1.0, little-endian, C order). */
export function encodeNpy(data: Float32Array, shape: readonly number[]): Buffer {
  const dict = `{'descr': '<f4', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  // Magic (6) + version (2) + header length (2) + header, padded with spaces to a multiple of 64, ending in \n.
  const unpadded = 10 + dict.length + 1;
  const header = dict + ' '.repeat((64 - (unpadded % 64)) % 64) + '\n';
  const out = Buffer.alloc(10 + header.length + data.byteLength);
  out.write('\x93NUMPY', 0, 'latin1');
  out[6] = 1;
  out[7] = 0;
  out.writeUInt16LE(header.length, 8);
  out.write(header, 10, 'latin1');
  Buffer.from(data.buffer, data.byteOffset, data.byteLength).copy(out, 10 + header.length);
  return out;
}

/**
 * Read a `.npy` written by {@link encodeNpy} (float32, little-endian, C order).
 * @throws BadInputError (`bad_npy`) for anything else.
 */
export function decodeNpy(buf: Buffer): { data: Float32Array; shape: number[] } {
  if (buf.length < 10 || buf.toString('latin1', 0, 6) !== '\x93NUMPY' || buf[6] !== 1) throw new BadInputError('bad_npy', 'not a NumPy .npy v1 file');
  const hlen = buf.readUInt16LE(8);
  const header = buf.toString('latin1', 10, 10 + hlen);
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1]?.split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  if (!/'descr':\s*'<f4'/.test(header) || /'fortran_order':\s*True/.test(header) || !shape || shape.some((n) => !Number.isInteger(n) || n < 0)) {
    throw new BadInputError('bad_npy', `unsupported .npy header ${header.trim()}`);
  }
  const n = shape.reduce((a, b) => a * b, 1);
  const start = 10 + hlen;
  if (buf.length - start !== 4 * n) throw new BadInputError('bad_npy', `.npy holds ${buf.length - start} bytes, shape ${shape.join('x')} needs ${4 * n}`);
  const data = new Float32Array(n);
  Buffer.from(data.buffer).set(buf.subarray(start));
  return { data, shape };
}

async function readLabelFile(dir: string): Promise<ReviewLabel | undefined> {
  try {
    const o = JSON.parse(await readFile(join(dir, 'label.json'), 'utf8')) as { label?: unknown };
    return REVIEW_LABELS.includes(o.label as ReviewLabel) ? (o.label as ReviewLabel) : undefined;
  } catch {
    return undefined;
  }
}

/** One capture folder's entry (sizes, frame file, label). */
export async function readCapture(root: string, id: string): Promise<CaptureEntry> {
  const dir = captureDir(root, id);
  const entry: CaptureEntry = { id, dir, ts: captureTime(id), bytes: 0 };
  for (const f of await readdir(dir)) {
    const st = await stat(join(dir, f)).catch(() => undefined);
    if (!st?.isFile()) continue;
    entry.bytes += st.size;
    if (f.startsWith('frame.')) entry.frame = join(dir, f);
  }
  const label = await readLabelFile(dir);
  if (label) entry.label = label;
  return entry;
}

/**
 * Every capture under `root`, oldest first. Folders that are not captures (and unfinished
 * `.partial` ones) are skipped.
 */
export async function scanCaptures(root: string): Promise<CaptureEntry[]> {
  const out: CaptureEntry[] = [];
  const days = existsSync(root) ? (await readdir(root)).filter((d) => DAY.test(d)).sort() : [];
  for (const day of days) {
    const ids = (await readdir(join(root, day)).catch(() => [] as string[])).filter(isCaptureId).sort();
    for (const id of ids) {
      // A capture filed under another day is not where captureDir looks: leave it alone.
      if (captureDir(root, id) !== resolve(root, day, id)) continue;
      out.push(await readCapture(root, id).catch(() => ({ id, dir: resolve(root, day, id), ts: captureTime(id), bytes: 0 })));
    }
  }
  return out;
}

/**
 * Write (or replace) the review mark of a capture, atomically (temp file + rename).
 * @returns the label file's path
 * @throws BadInputError (`bad_capture_id`, `bad_label`, `unknown_capture`)
 */
export async function writeLabel(root: string, id: string, label: ReviewLabel, now: () => number = Date.now): Promise<string> {
  if (!REVIEW_LABELS.includes(label)) throw new BadInputError('bad_label', `label must be ${REVIEW_LABELS.map((l) => `'${l}'`).join(' or ')}, got ${JSON.stringify(label)}`);
  const dir = captureDir(root, id);
  if (!existsSync(dir)) throw new BadInputError('unknown_capture', `no capture ${id} in ${root}`);
  const file = join(dir, 'label.json');
  const tmp = join(dir, '.label.json.tmp');
  await writeFile(tmp, `${JSON.stringify({ format: 'fairline.label/v1', label, markedAt: new Date(now()).toISOString() })}\n`);
  await rename(tmp, file);
  return file;
}

/**
 * The labelled captures of `root` that have a frame: what calibrate and train read back.
 * @throws BadInputError (`not_captures`) when `root` is not a capture folder.
 */
export async function labelledCaptures(root: string, only?: ReviewLabel): Promise<(CaptureEntry & { frame: string; label: ReviewLabel })[]> {
  if (!isCaptureRoot(root)) throw new BadInputError('not_captures', `${root} is not a capture folder (no ${CAPTURES_MARKER}; see 'record' in the station config)`);
  const all = await scanCaptures(root);
  return all.filter((e): e is CaptureEntry & { frame: string; label: ReviewLabel } => e.frame !== undefined && e.label !== undefined && (only === undefined || e.label === only));
}
