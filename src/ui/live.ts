/**
 * The operator page's picture of a running station, kept in memory with fixed bounds: per camera
 * counters, the source state, rings of the last latencies and scores (percentiles and the score
 * histogram), and the last rejects as cards holding references to their frame, model-size image
 * and anomaly map (nothing is copied or rendered until a page asks for it, see src/ui/pictures.ts).
 *
 * Everything on the verdict path is O(1): counters, two ring writes, and for a reject one card
 * pushed into a fixed-size list. The snapshot the page gets is built by {@link LiveView.tick} (a
 * timer of the server, every 500 ms), not per frame, and serialised once for every client.
 */
import type { CaptureEntry, ReviewLabel } from '../io/captures.js';
import { captureId } from '../io/captures.js';
import type { ImageF32 } from '../model/types.js';
import type { Frame, FramePayload, JudgedFrame } from '../streams/frame.js';
import { quantileSorted } from '../thresholds.js';
import type { Verdict, VerdictKind } from '../verdict.js';

/** Where a camera's source is. */
export type SourceState = 'starting' | 'up' | 'down' | 'reconnecting' | 'ended' | 'failed';

/**
 * Optional verdict fields the page shows when present: `normScore` (score in [0, 1] with the
 * threshold at 0.5) and `guard` (the domain guard's reading, `{status: 'ok' | 'out_of_domain' |
 * 'stale_frame', action, measure?, feature?, ...}`).
 */
export interface VerdictExtras {
  normScore?: number;
  guard?: unknown;
}

/** Reasons the in-domain guard gives its verdicts. */
const GUARD_REASONS = new Set(['out_of_domain', 'stale_frame']);

/** Whether the guard flagged this frame: a guard reason, or a guard reading whose status is not `ok`. */
export function isGuarded(v: Verdict & VerdictExtras): boolean {
  if (v.reason !== undefined && GUARD_REASONS.has(v.reason)) return true;
  const status = (v.guard as { status?: unknown } | undefined)?.status;
  return typeof status === 'string' && status !== 'ok';
}

/** The model as the page shows it. */
export interface LiveModelInfo {
  id: string;
  size: number;
  /** UNet base width c. */
  width: number;
  threshold: number | null;
  thresholdSource: string;
  engine: string;
  backend: string;
}

export interface LiveCameraInfo {
  id: string;
  mode: 'live' | 'replay';
  /** The threshold this camera's verdicts use. */
  threshold: number;
}

export interface LiveViewOptions {
  line: string;
  station: string;
  model: LiveModelInfo;
  cameras: readonly LiveCameraInfo[];
  /** Reject cards on the page (default 24). */
  maxCards?: number;
  /**
   * Cards kept in memory (default 2 x maxCards): a card that just left the page can still
   * answer the picture requests a browser sent while it was on it.
   */
  keepCards?: number;
  /** Source frames the cards may keep referenced for full-size pictures, bytes (default 64 MiB). Older cards fall back to the capture file or the model-size input. */
  maxFrameBytes?: number;
  /** Recent scores per camera in the histogram (default 1000). */
  scoreWindow?: number;
  /** Recent latencies per camera for p50/p99 (default 1024). */
  latencyWindow?: number;
  /** Histogram bins (default 32). */
  bins?: number;
  now?: () => number;
}

/** The pixels behind a card, by reference. */
export interface CardData {
  /** The frame as the source delivered it; dropped from older cards beyond `maxFrameBytes`. */
  payload?: FramePayload;
  /** Model-size input (BGR, [0, 1]). */
  image: ImageF32;
  /** Model-size anomaly map. */
  map?: Float32Array;
}

/** One reject on the page. */
export interface Card {
  id: string;
  verdict: Verdict & VerdictExtras;
  data?: CardData;
  /** Set once the recorder has it on disk. */
  capture?: { frame?: string; label?: ReviewLabel };
  /** Rendered pictures, by kind (each rendered once, when first asked for). */
  pictures: Map<string, Promise<{ data: Buffer; type: string }>>;
  /** The card's thumbnail: drawn, or skipped (rejects came faster than the drawing budget; src/ui/pictures.ts). */
  thumb?: 'drawn' | 'skipped';
}

/** A fixed-size ring of numbers. */
class Ring {
  private readonly buf: Float64Array;
  private n = 0;
  constructor(size: number) {
    this.buf = new Float64Array(size);
  }
  push(v: number): void {
    this.buf[this.n % this.buf.length] = v;
    this.n++;
  }
  values(): Float64Array {
    return this.buf.slice(0, Math.min(this.n, this.buf.length));
  }
}

interface CameraLive {
  info: LiveCameraInfo;
  state: SourceState;
  reason?: string;
  since: number;
  frames: number;
  dropped: number;
  verdicts: Record<VerdictKind, number>;
  failSafe: number;
  guard: number;
  latencies: Ring;
  scores: Ring;
  /** (time, frames) samples for frames/s. */
  rate: [number, number][];
}

export interface HistogramSnapshot {
  lo: number;
  hi: number;
  counts: number[];
  n: number;
  threshold: number;
}

export interface CameraSnapshot {
  id: string;
  mode: 'live' | 'replay';
  state: SourceState;
  reason?: string;
  since: number;
  framesPerSecond: number;
  frames: number;
  dropped: number;
  verdicts: Record<VerdictKind, number>;
  failSafe: number;
  guard: number;
  latencyMs: { p50: number | null; p99: number | null };
  threshold: number;
  histogram: HistogramSnapshot;
}

export interface CardSnapshot {
  id: string;
  camera: string;
  seq: number;
  captureTs: number;
  decidedTs: number;
  score: number | null;
  normScore?: number;
  threshold: number | null;
  reason?: string;
  /** The guard's reading, when it flagged the frame. */
  guard?: unknown;
  regions: number;
  /** Pictures can be rendered (the frame's pixels are held or captured). */
  pictures: boolean;
  /** The thumbnail is drawn (true), skipped (false) or not yet (null): pages ask only for drawn ones. */
  thumb: boolean | null;
  captured: boolean;
  label?: ReviewLabel;
}

export interface LiveSnapshot {
  schema: 'fairline.ui/v1';
  line: string;
  station: string;
  time: number;
  model: LiveModelInfo;
  cameras: CameraSnapshot[];
  cards: CardSnapshot[];
  /** Filled in by the server: review allowed, capture stats, clients. */
  [extra: string]: unknown;
}

/** The histogram of `values` over [lo, hi] (the threshold always inside), `bins` bins. */
export function scoreHistogram(values: ArrayLike<number>, threshold: number, bins: number): HistogramSnapshot {
  let lo = threshold, hi = threshold;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  const span = hi - lo || Math.abs(threshold) || 1;
  // A little room either side, so the extreme bars and the threshold line are not on the edge.
  lo -= span * 0.05;
  hi += span * 0.05;
  const counts = new Array<number>(bins).fill(0);
  for (let i = 0; i < values.length; i++) {
    const b = Math.min(bins - 1, Math.max(0, Math.floor(((values[i]! - lo) / (hi - lo)) * bins)));
    counts[b]!++;
  }
  return { lo, hi, counts, n: values.length, threshold };
}

/**
 * @example
 * ```ts
 * const live = new LiveView({ line: 'L1', station: 'S1', model: info, cameras: [{ id: 'cam0', mode: 'live', threshold: 0.42 }] });
 * hooks.onVerdict = (v) => live.onVerdict(v, judgedFrameOf(v)); // inspect() hooks
 * setInterval(() => broadcast(JSON.stringify(live.tick())), 500);
 * ```
 */
export class LiveView {
  private readonly cams = new Map<string, CameraLive>();
  private readonly cards: Card[] = [];
  private readonly cardIndex = new Map<string, Card>();
  private readonly now: () => number;
  private readonly maxCards: number;
  private readonly keepCards: number;
  private readonly maxFrameBytes: number;
  private readonly bins: number;

  constructor(readonly opts: LiveViewOptions) {
    this.now = opts.now ?? Date.now;
    this.maxCards = opts.maxCards ?? 24;
    this.keepCards = Math.max(this.maxCards, opts.keepCards ?? 2 * this.maxCards);
    this.maxFrameBytes = opts.maxFrameBytes ?? 64 * 2 ** 20;
    this.bins = opts.bins ?? 32;
    for (const c of opts.cameras) this.camera(c.id, c);
  }

  private camera(id: string, info?: LiveCameraInfo): CameraLive {
    let c = this.cams.get(id);
    if (!c) {
      c = {
        info: info ?? { id, mode: 'live', threshold: this.opts.model.threshold ?? NaN },
        state: 'starting',
        since: this.now(),
        frames: 0,
        dropped: 0,
        verdicts: { pass: 0, reject: 0, error: 0 },
        failSafe: 0,
        guard: 0,
        latencies: new Ring(this.opts.latencyWindow ?? 1024),
        scores: new Ring(this.opts.scoreWindow ?? 1000),
        rate: [],
      };
      this.cams.set(id, c);
    }
    return c;
  }

  /** A source changed state (`reason`: why it is down or failed). */
  onSourceState(camera: string, state: SourceState, reason?: string): void {
    const c = this.camera(camera);
    if (c.state !== state || c.reason !== reason) c.since = this.now();
    c.state = state;
    if (reason === undefined) delete c.reason;
    else c.reason = reason.slice(0, 200);
  }

  onFrame(f: Frame): void {
    const c = this.camera(f.sourceId);
    c.frames++;
    // Sources without up/down events (image folders in a replay) are up when frames come.
    if (c.state === 'starting') this.onSourceState(f.sourceId, 'up');
  }

  /** Frames lost before inspection (inside the source, or a busy model in live mode). */
  onDrop(camera: string, frames = 1): void {
    this.camera(camera).dropped += frames;
  }

  /** A verdict left the graph; `j` is its judged frame (the `onJudged` hook of inspect()), if it had one. */
  onVerdict(v: Verdict & VerdictExtras, j?: JudgedFrame): void {
    if (v.late) return;
    const c = this.camera(v.camera);
    c.verdicts[v.verdict]++;
    if (v.failSafe) c.failSafe++;
    if (isGuarded(v)) c.guard++;
    if (v.verdict === 'error' && v.reason === 'dropped') c.dropped++;
    if (Number.isFinite(v.latencyMs)) c.latencies.push(v.latencyMs);
    if (v.score !== null && Number.isFinite(v.score)) c.scores.push(v.score);
    if (v.verdict === 'reject' && !v.failSafe) this.addCard(v, j);
  }

  private addCard(v: Verdict & VerdictExtras, j: JudgedFrame | undefined): void {
    const card: Card = { id: captureId(v), verdict: v, pictures: new Map() };
    if (j) {
      card.data = { payload: j.frame.payload, image: j.image };
      if (j.map) card.data.map = j.map;
    }
    const old = this.cardIndex.get(card.id);
    if (old) this.cards.splice(this.cards.indexOf(old), 1);
    this.cards.unshift(card);
    this.cardIndex.set(card.id, card);
    while (this.cards.length > this.keepCards) this.cardIndex.delete(this.cards.pop()!.id);
    // Bound the source frames held: the newest cards keep theirs.
    let bytes = 0;
    for (const k of this.cards) {
      const p = k.data?.payload;
      if (!p) continue;
      bytes += p.data.byteLength;
      if (bytes > this.maxFrameBytes) delete k.data!.payload;
    }
  }

  /** The recorder has the capture of a card on disk (its full-size picture no longer needs the frame in memory). */
  onCaptured(e: CaptureEntry): void {
    const card = this.cardIndex.get(e.id);
    if (!card) return;
    card.capture = {};
    if (e.frame) card.capture.frame = e.frame;
    if (e.label) card.capture.label = e.label;
    if (e.frame && card.data) delete card.data.payload;
  }

  onLabel(id: string, label: ReviewLabel): void {
    const card = this.cardIndex.get(id);
    if (card?.capture) card.capture.label = label;
  }

  card(id: string): Card | undefined {
    return this.cardIndex.get(id);
  }

  /**
   * Build the snapshot; with `sample` (the server's 500 ms timer) also take a frames/s sample. A
   * snapshot asked for in between (`GET /api/state`) leaves the rate's window alone.
   */
  tick(sample = true): LiveSnapshot {
    const t = this.now();
    const cameras: CameraSnapshot[] = [];
    for (const c of this.cams.values()) {
      if (sample || c.rate.length === 0) c.rate.push([t, c.frames]);
      while (c.rate.length > 5) c.rate.shift();
      const [t0, f0] = c.rate[0]!;
      const [t1, f1] = sample ? [t, c.frames] : c.rate[c.rate.length - 1]!;
      const lat = c.latencies.values().sort();
      const q = (p: number): number | null => (lat.length ? quantileSorted(lat, p) : null);
      const snap: CameraSnapshot = {
        id: c.info.id,
        mode: c.info.mode,
        state: c.state,
        since: c.since,
        framesPerSecond: t1 > t0 ? ((f1 - f0) * 1000) / (t1 - t0) : 0,
        frames: c.frames,
        dropped: c.dropped,
        verdicts: { ...c.verdicts },
        failSafe: c.failSafe,
        guard: c.guard,
        latencyMs: { p50: q(0.5), p99: q(0.99) },
        threshold: c.info.threshold,
        histogram: scoreHistogram(c.scores.values(), c.info.threshold, this.bins),
      };
      if (c.reason !== undefined) snap.reason = c.reason;
      cameras.push(snap);
    }
    const cards = this.cards.slice(0, this.maxCards).map((k): CardSnapshot => {
      const v = k.verdict;
      const s: CardSnapshot = {
        id: k.id,
        camera: v.camera,
        seq: v.seq,
        captureTs: v.captureTs,
        decidedTs: v.decidedTs,
        score: v.score,
        threshold: v.threshold,
        regions: v.regions.length,
        pictures: k.data !== undefined || k.capture?.frame !== undefined,
        thumb: k.thumb === undefined ? null : k.thumb === 'drawn',
        captured: k.capture !== undefined,
      };
      if (typeof v.normScore === 'number') s.normScore = v.normScore;
      if (v.reason !== undefined) s.reason = v.reason;
      if (isGuarded(v) && v.guard !== undefined) s.guard = v.guard;
      if (k.capture?.label) s.label = k.capture.label;
      return s;
    });
    return { schema: 'fairline.ui/v1', line: this.opts.line, station: this.opts.station, time: t, model: this.opts.model, cameras, cards };
  }
}
