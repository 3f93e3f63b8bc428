/**
 * The operator page's in-memory state (src/ui/live.ts): per-camera counts, source states,
 * percentiles and frames/s, the score histogram, and the reject cards, all within fixed bounds.
 */
import assert from 'node:assert/strict';
import { captureId } from '../../src/io/captures.js';
import type { Frame, JudgedFrame } from '../../src/streams/frame.js';
import { LiveView, isGuarded, scoreHistogram, type VerdictExtras } from '../../src/ui/live.js';
import type { Verdict } from '../../src/verdict.js';

const MODEL = { id: 'm-1', size: 4, width: 8, threshold: 0.5, thresholdSource: 'artefact', engine: 'tfjs-cpu', backend: 'cpu' };

function verdict(seq: number, kind: Verdict['verdict'], over: Partial<Verdict & VerdictExtras> = {}): Verdict & VerdictExtras {
  return {
    schema: 'fairline.verdict/v1', line: 'L1', station: 'S1', camera: 'cam0', seq, captureTs: 1000 + seq, decidedTs: 1010 + seq, latencyMs: 10,
    model: 'm-1', score: kind === 'reject' ? 0.8 : kind === 'pass' ? 0.2 : null, threshold: kind === 'error' ? null : 0.5, verdict: kind, regions: [],
    ...over,
  };
}

function judged(seq: number, bytes = 48): JudgedFrame {
  const frame: Frame = { sourceId: 'cam0', seq, captureTs: 1000 + seq, payload: { data: new Uint8Array(bytes), width: bytes / 3, height: 1, format: 'bgr' } };
  return { frame, image: { width: 4, height: 4, channels: 3, data: new Float32Array(48) }, map: new Float32Array(16), sourceWidth: bytes / 3, sourceHeight: 1, score: 0.8, threshold: 0.5, decision: 'reject' };
}

describe('ui/live (the page state)', () => {
  it('counts per camera: verdicts, fail-safe, guard, drops (source and queue), ignoring late verdicts', () => {
    const live = new LiveView({ line: 'L1', station: 'S1', model: MODEL, cameras: [{ id: 'cam0', mode: 'live', threshold: 0.5 }] });
    live.onVerdict(verdict(0, 'pass'));
    live.onVerdict(verdict(1, 'reject'));
    live.onVerdict(verdict(2, 'reject', { failSafe: true, reason: 'deadline', score: null, threshold: null }));
    live.onVerdict(verdict(3, 'error', { reason: 'dropped', stage: 'queue' }));
    live.onVerdict(verdict(4, 'reject', { reason: 'out_of_domain' }));
    live.onVerdict(verdict(5, 'error', { guard: { status: 'stale_frame', action: 'error', repeats: 5 } }));
    live.onVerdict(verdict(6, 'pass', { guard: { status: 'ok', action: 'reject', measure: 0.2 } }));
    live.onVerdict(verdict(1, 'pass', { late: true }));
    live.onDrop('cam0', 3);
    const [c] = live.tick().cameras;
    assert.deepEqual(c!.verdicts, { pass: 2, reject: 3, error: 2 });
    assert.equal(c!.failSafe, 1);
    assert.equal(c!.guard, 2, "a guard reason or a guard reading that is not 'ok'");
    assert.equal(c!.dropped, 4);
    assert.equal(isGuarded(verdict(0, 'pass')), false);
  });

  it('follows the source state, with the reason when down', () => {
    let t = 0;
    const live = new LiveView({ line: 'L1', station: 'S1', model: MODEL, cameras: [{ id: 'cam0', mode: 'live', threshold: 0.5 }], now: () => t });
    assert.equal(live.tick().cameras[0]!.state, 'starting');
    live.onFrame({ sourceId: 'cam0', seq: 0, captureTs: 0, payload: { data: new Uint8Array(3), width: 1, height: 1, format: 'bgr' } });
    assert.equal(live.tick().cameras[0]!.state, 'up', 'frames mean the source is up');
    t = 5;
    live.onSourceState('cam0', 'down', 'rtsp: connection refused');
    let c = live.tick().cameras[0]!;
    assert.deepEqual([c.state, c.reason, c.since], ['down', 'rtsp: connection refused', 5]);
    live.onSourceState('cam0', 'reconnecting', 'attempt 2 in 1000 ms');
    live.onSourceState('cam0', 'up');
    c = live.tick().cameras[0]!;
    assert.deepEqual([c.state, c.reason], ['up', undefined]);
    live.onSourceState('cam0', 'ended');
    assert.equal(live.tick().cameras[0]!.state, 'ended');
  });

  it('frames/s over the last samples; latency p50 and p99 over a bounded window', () => {
    let t = 0;
    const live = new LiveView({ line: 'L1', station: 'S1', model: MODEL, cameras: [{ id: 'cam0', mode: 'live', threshold: 0.5 }], latencyWindow: 100, now: () => t });
    const f = (seq: number): Frame => ({ sourceId: 'cam0', seq, captureTs: 0, payload: { data: new Uint8Array(3), width: 1, height: 1, format: 'bgr' } });
    live.tick();
    for (let i = 0; i < 10; i++) live.onFrame(f(i));
    t = 500;
    live.tick();
    for (let i = 0; i < 10; i++) live.onFrame(f(i));
    t = 700;
    assert.equal(live.tick(false).cameras[0]!.framesPerSecond, 20, 'a snapshot between samples reports the last window');
    t = 1000;
    assert.equal(live.tick().cameras[0]!.framesPerSecond, 20);
    for (let i = 0; i < 1000; i++) live.onVerdict(verdict(i, 'pass', { latencyMs: i < 900 ? 5 : i }));
    // Only the last 100 latencies count: 900..999.
    const lat = live.tick().cameras[0]!.latencyMs;
    assert.equal(lat.p50, 949.5);
    assert.ok(Math.abs(lat.p99! - 998.01) < 1e-9);
  });

  it('keeps the score histogram bounded, with the threshold inside its range', () => {
    const live = new LiveView({ line: 'L1', station: 'S1', model: MODEL, cameras: [{ id: 'cam0', mode: 'live', threshold: 0.5 }], scoreWindow: 200, bins: 10 });
    for (let i = 0; i < 5000; i++) live.onVerdict(verdict(i, 'pass', { score: (i % 100) / 1000 }));
    const h = live.tick().cameras[0]!.histogram;
    assert.equal(h.n, 200);
    assert.equal(h.counts.length, 10);
    assert.equal(h.counts.reduce((a, b) => a + b, 0), 200);
    assert.ok(h.lo < 0 && h.hi > 0.5 && h.threshold === 0.5);
    const e = scoreHistogram([], 2, 4);
    assert.deepEqual(e.counts, [0, 0, 0, 0]);
    assert.ok(e.lo < 2 && e.hi > 2);
  });

  it('keeps the last 24 model rejects as cards, newest first, holding (not copying) their pixels within a byte bound', () => {
    const live = new LiveView({ line: 'L1', station: 'S1', model: MODEL, cameras: [{ id: 'cam0', mode: 'live', threshold: 0.5 }], maxFrameBytes: 480, keepCards: 26 });
    const js: JudgedFrame[] = [];
    for (let i = 0; i < 30; i++) {
      const j = judged(i);
      js.push(j);
      live.onVerdict(verdict(i, 'reject', { normScore: 0.7, guard: { status: i === 29 ? 'out_of_domain' : 'ok', action: 'reject', measure: 9, feature: 'gray_mean' } }), j);
    }
    live.onVerdict(verdict(40, 'reject', { failSafe: true, reason: 'deadline', score: null, threshold: null }));
    live.onVerdict(verdict(41, 'pass'), judged(41));
    const cards = live.tick().cards;
    assert.equal(cards.length, 24);
    assert.deepEqual(cards.map((c) => c.seq), Array.from({ length: 24 }, (_, i) => 29 - i));
    assert.equal(cards[0]!.id, captureId(verdict(29, 'reject')));
    assert.equal(cards[0]!.normScore, 0.7);
    assert.deepEqual(cards[0]!.guard, { status: 'out_of_domain', action: 'reject', measure: 9, feature: 'gray_mean' });
    assert.equal(cards[1]!.guard, undefined, "an 'ok' reading is not shown on the card");
    const newest = live.card(cards[0]!.id)!;
    assert.equal(newest.data!.payload, js[29]!.frame.payload, 'a reference, not a copy');
    assert.equal(newest.data!.map, js[29]!.map);
    // 480 bytes of frames = the 10 newest (48 bytes each); older cards keep their model-size pixels only.
    const held = cards.map((c) => live.card(c.id)!.data!.payload !== undefined);
    assert.deepEqual(held, [...Array(10).fill(true), ...Array(14).fill(false)]);
    assert.ok(cards.every((c) => c.pictures));
    // Two more are kept off the page (for picture requests already on their way), older ones are gone.
    assert.ok(live.card(captureId(verdict(4, 'reject'))));
    assert.equal(live.card(captureId(verdict(3, 'reject'))), undefined);
  });

  it('learns from the recorder which cards are captured and marked; a captured card lets go of its frame', () => {
    const live = new LiveView({ line: 'L1', station: 'S1', model: MODEL, cameras: [] });
    const v = verdict(3, 'reject');
    live.onVerdict(v, judged(3));
    const id = captureId(v);
    assert.equal(live.tick().cards[0]!.captured, false);
    live.onCaptured({ id, dir: '/x', ts: 0, bytes: 10, frame: '/x/frame.png' });
    live.onLabel(id, 'defect');
    const c = live.tick().cards[0]!;
    assert.deepEqual([c.captured, c.label, c.pictures], [true, 'defect', true]);
    assert.equal(live.card(id)!.data!.payload, undefined);
    assert.equal(live.tick().cameras[0]!.id, 'cam0', 'a camera not in the config appears when it sends');
  });
});
