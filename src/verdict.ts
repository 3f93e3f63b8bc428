/**
 * The verdict: what fairline publishes per frame (JSON on NATS, one message per frame).
 *
 * Versioned by `schema`; consumers must check it. Any change that removes or retypes a field
 * needs a new version (`fairline.verdict/v2`); adding optional fields does not.
 */
import { BadInputError } from './errors.js';

export const VERDICT_SCHEMA = 'fairline.verdict/v1' as const;

/**
 * `pass` / `reject`: the model's decision, or a fail-safe decision (then `reason` is set, e.g.
 * `deadline`). `error`: the frame could not be inspected (`reason` = the error code).
 */
export type VerdictKind = 'pass' | 'reject' | 'error';

/** A connected region of the anomaly map at or above the threshold, in frame pixels. */
export interface DefectRegion {
  /** Left edge (frame pixels, inclusive). */
  x: number;
  /** Top edge (frame pixels, inclusive). */
  y: number;
  /** Width of the bounding box (frame pixels). */
  w: number;
  /** Height of the bounding box (frame pixels). */
  h: number;
  /** Number of pixels in the region, scaled to frame pixels (rounded). */
  area: number;
  /** Highest anomaly value in the region. */
  peak: number;
}

/** Why the domain guard flagged a frame (the verdict's `reason` when the guard decided it). */
export type GuardStatus = 'ok' | 'out_of_domain' | 'stale_frame';

/** What the station does with a frame the guard flags (config `guard.action`). */
export type GuardAction = 'reject' | 'error' | 'pass';

/**
 * The domain guard's reading of a frame (src/model/guard.ts, src/operators/guard.ts): present on
 * every verdict of a frame the guard looked at.
 */
export interface VerdictGuard {
  /** `ok`, or why the model cannot judge the frame. */
  status: GuardStatus;
  /** What the station did about a flagged frame. */
  action: GuardAction;
  /**
   * In-domain measure: the largest excess of a frame feature beyond the range the model's normal
   * images spanned, in robust standard deviations (0 = inside every range). Absent when the model
   * has no guard statistics (then only the frozen-camera check runs).
   */
  measure?: number;
  /** The feature that gave `measure`, e.g. `log_laplacian`, `grid_gray_3_1` (docs/faults.md). */
  feature?: string;
  /** The limit: out of domain when `measure > k`. */
  k?: number;
  /** Consecutive (near-)identical frames up to this one, when more than one. */
  repeats?: number;
}

const GUARD_STATUSES: ReadonlySet<string> = new Set(['ok', 'out_of_domain', 'stale_frame']);
const GUARD_ACTIONS: ReadonlySet<string> = new Set(['reject', 'error', 'pass']);

export interface Verdict {
  schema: typeof VERDICT_SCHEMA;
  line: string;
  station: string;
  camera: string;
  seq: number;
  /** Capture time of the frame (ms epoch, source clock). */
  captureTs: number;
  /** When the verdict was decided (ms epoch). */
  decidedTs: number;
  /** decidedTs - captureTs. */
  latencyMs: number;
  /** Model id (artefact name/hash). */
  model: string;
  /** Anomaly score; null when the frame was not scored (error, fail-safe). */
  score: number | null;
  /** Threshold used; null when not scored. */
  threshold: number | null;
  /**
   * The score normalised to [0, 1] with the threshold at 0.5 (src/thresholds.ts normaliseScore),
   * comparable across models; on every scored verdict.
   */
  normScore?: number;
  verdict: VerdictKind;
  /** Why, when the verdict is not the model's own decision: an error code, `dropped`, `deadline`. */
  reason?: string;
  /** Pipeline stage that failed (error verdicts). */
  stage?: string;
  /** Human-readable detail (error message), at most 200 characters. */
  detail?: string;
  /** True for a fail-safe verdict published because the real one missed the deadline. */
  failSafe?: boolean;
  /** True for a real verdict that arrived after a fail-safe verdict for the same frame. */
  late?: boolean;
  /** The domain guard's reading (when it ran); a flagged frame's `reason` is its `status`. */
  guard?: VerdictGuard;
  /** Defect regions (reject verdicts); empty otherwise. */
  regions: DefectRegion[];
  /** Source file (replay). */
  path?: string;
  /** The line's id of the part (PLC trigger `fairline.<line>.<camera>.trigger`, or the image's file name); absent when the line gives none. */
  partId?: string;
  /** Ground-truth label (replay/evaluation). */
  label?: 0 | 1;
}

const KINDS: ReadonlySet<string> = new Set(['pass', 'reject', 'error']);

function isNum(v: unknown): v is number {
  return typeof v === 'number' && Number.isFinite(v);
}

/** Every way `v` is not a valid v1 verdict (empty when valid). */
export function verdictProblems(v: unknown): string[] {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return ['not an object'];
  const o = v as Record<string, unknown>;
  const p: string[] = [];
  if (o.schema !== VERDICT_SCHEMA) p.push(`schema: expected '${VERDICT_SCHEMA}'`);
  for (const k of ['line', 'station', 'camera', 'model'] as const) if (typeof o[k] !== 'string' || o[k] === '') p.push(`${k}: required non-empty string`);
  if (!Number.isInteger(o.seq) || (o.seq as number) < 0) p.push('seq: required integer >= 0');
  for (const k of ['captureTs', 'decidedTs', 'latencyMs'] as const) if (!isNum(o[k])) p.push(`${k}: required finite number`);
  if (typeof o.verdict !== 'string' || !KINDS.has(o.verdict)) p.push(`verdict: expected 'pass' | 'reject' | 'error'`);
  for (const k of ['score', 'threshold'] as const) if (o[k] !== null && !isNum(o[k])) p.push(`${k}: required finite number or null`);
  for (const k of ['reason', 'stage', 'detail', 'path', 'partId'] as const) if (o[k] !== undefined && typeof o[k] !== 'string') p.push(`${k}: must be a string`);
  for (const k of ['failSafe', 'late'] as const) if (o[k] !== undefined && typeof o[k] !== 'boolean') p.push(`${k}: must be a boolean`);
  if (o.label !== undefined && o.label !== 0 && o.label !== 1) p.push('label: must be 0 or 1');
  if (o.normScore !== undefined && !(isNum(o.normScore) && o.normScore >= 0 && o.normScore <= 1)) p.push('normScore: must be a number in [0, 1]');
  if (o.guard !== undefined) {
    const g = o.guard as Record<string, unknown> | null;
    if (typeof g !== 'object' || g === null || Array.isArray(g)) p.push('guard: must be an object');
    else {
      if (typeof g.status !== 'string' || !GUARD_STATUSES.has(g.status)) p.push(`guard.status: expected 'ok' | 'out_of_domain' | 'stale_frame'`);
      if (typeof g.action !== 'string' || !GUARD_ACTIONS.has(g.action)) p.push(`guard.action: expected 'reject' | 'error' | 'pass'`);
      for (const k of ['measure', 'k', 'repeats'] as const) if (g[k] !== undefined && !isNum(g[k])) p.push(`guard.${k}: must be a finite number`);
      if (g.feature !== undefined && typeof g.feature !== 'string') p.push('guard.feature: must be a string');
    }
  }
  if (o.verdict === 'error' && typeof o.reason !== 'string') p.push('reason: required for error verdicts');
  if (o.verdict !== 'error' && o.failSafe !== true && (o.score === null || o.threshold === null)) p.push('score/threshold: required for model verdicts');
  if (!Array.isArray(o.regions)) p.push('regions: required array');
  else
    o.regions.forEach((r: unknown, i) => {
      const g = r as Record<string, unknown> | null;
      if (typeof g !== 'object' || g === null) p.push(`regions[${i}]: not an object`);
      else for (const k of ['x', 'y', 'w', 'h', 'area', 'peak'] as const) if (!isNum(g[k])) p.push(`regions[${i}].${k}: required finite number`);
    });
  return p;
}

/** Type guard for a v1 verdict (e.g. on a received NATS message). */
export function isVerdict(v: unknown): v is Verdict {
  return verdictProblems(v).length === 0;
}

export interface RegionOptions {
  /** Keep at most this many regions, highest peak first (default 16). */
  maxRegions?: number;
  /** Ignore regions smaller than this many model-size pixels (default 1). */
  minPixels?: number;
}

/**
 * Defect regions: 8-connected components of `map >= threshold` on the model-size anomaly map
 * (`size` x `size`, row-major), with bounding boxes scaled to a `frameW` x `frameH` frame.
 * Because the image score is the map's maximum, a frame is rejected exactly when this returns at
 * least one region (with the default `minPixels`).
 *
 * @example
 * ```ts
 * defectRegions(map, 256, 0.42, 1024, 768); // [{ x, y, w, h, area, peak }, ...]
 * ```
 * @throws BadInputError (`bad_map`) if `map.length !== size * size` or sizes are not positive.
 */
export function defectRegions(map: Float32Array, size: number, threshold: number, frameW: number, frameH: number, opts: RegionOptions = {}): DefectRegion[] {
  if (!Number.isInteger(size) || size <= 0 || map.length !== size * size) throw new BadInputError('bad_map', `anomaly map has ${map.length} values, expected ${size}x${size}`);
  if (!(frameW > 0 && frameH > 0)) throw new BadInputError('bad_map', `frame size ${frameW}x${frameH} must be positive`);
  const maxRegions = opts.maxRegions ?? 16;
  const minPixels = opts.minPixels ?? 1;
  const sx = frameW / size;
  const sy = frameH / size;
  const label = new Int32Array(size * size); // 0 = unvisited
  const stack = new Int32Array(size * size);
  const regions: DefectRegion[] = [];
  let next = 0;
  for (let start = 0; start < map.length; start++) {
    if (label[start] !== 0 || !(map[start]! >= threshold)) continue;
    next++;
    let top = 0;
    stack[top++] = start;
    label[start] = next;
    let count = 0, peak = -Infinity, x0 = size, y0 = size, x1 = -1, y1 = -1;
    while (top > 0) {
      const i = stack[--top]!;
      const x = i % size, y = (i - x) / size;
      count++;
      if (map[i]! > peak) peak = map[i]!;
      if (x < x0) x0 = x;
      if (x > x1) x1 = x;
      if (y < y0) y0 = y;
      if (y > y1) y1 = y;
      for (let dy = -1; dy <= 1; dy++) {
        const ny = y + dy;
        if (ny < 0 || ny >= size) continue;
        for (let dx = -1; dx <= 1; dx++) {
          const nx = x + dx;
          if (nx < 0 || nx >= size) continue;
          const j = ny * size + nx;
          if (label[j] === 0 && map[j]! >= threshold) {
            label[j] = next;
            stack[top++] = j;
          }
        }
      }
    }
    if (count < minPixels) continue;
    const x = Math.floor(x0 * sx), y = Math.floor(y0 * sy);
    regions.push({
      x,
      y,
      w: Math.min(frameW, Math.ceil((x1 + 1) * sx)) - x,
      h: Math.min(frameH, Math.ceil((y1 + 1) * sy)) - y,
      area: Math.round(count * sx * sy),
      peak,
    });
  }
  regions.sort((a, b) => b.peak - a.peak);
  return regions.slice(0, maxRegions);
}

/**
 * Make a string safe as ONE NATS subject token: anything other than letters, digits, `_` and `-`
 * (dots, spaces, wildcards `*` `>`, `$`, ...) becomes `_`.
 * @throws BadInputError (`bad_subject`) for an empty token.
 */
export function subjectToken(s: string): string {
  if (typeof s !== 'string' || s.length === 0) throw new BadInputError('bad_subject', 'subject token must be a non-empty string');
  return s.replace(/[^A-Za-z0-9_-]/g, '_');
}

/** `fairline.<line>.<camera>.verdict`: every verdict of a camera. */
export function verdictSubject(line: string, camera: string): string {
  return `fairline.${subjectToken(line)}.${subjectToken(camera)}.verdict`;
}

/** `fairline.<line>.<camera>.reject`: the reject gate's subject. */
export function rejectSubject(line: string, camera: string): string {
  return `fairline.${subjectToken(line)}.${subjectToken(camera)}.reject`;
}

/**
 * Should the reject gate act on this verdict (publish it on the `.reject` subject)?
 * `reject` verdicts (model or fail-safe) always; `error` verdicts (frame not inspected: corrupt,
 * dropped, model failure) when the station's fail-safe is `reject`; never `pass` verdicts, and
 * never a `late` verdict (its frame already got a fail-safe verdict the gate acted on).
 *
 * @example
 * ```ts
 * if (gateRejects(v, cfg.failSafe)) nc.publish(rejectSubject(v.line, v.camera), JSON.stringify(v));
 * ```
 */
export function gateRejects(v: Verdict, failSafe: 'reject' | 'pass'): boolean {
  if (v.late) return false;
  if (v.verdict === 'reject') return true;
  return v.verdict === 'error' && failSafe === 'reject';
}
