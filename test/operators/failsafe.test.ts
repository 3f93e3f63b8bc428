import assert from 'node:assert/strict';
import { filter, map, mergeMap, timer, type Observable } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import { failSafe } from '../../src/operators/failsafe.js';
import type { Frame } from '../../src/streams/frame.js';
import { isVerdict, type Verdict } from '../../src/verdict.js';

const ctx = { line: 'L1', station: 'S1', model: 'm1' };

function frame(seq: number, captureTs: number, deadlineTs?: number): Frame {
  const f: Frame = { sourceId: 'cam0', seq, captureTs, payload: { data: new Uint8Array(3), width: 1, height: 1, format: 'rgb' } };
  if (deadlineTs !== undefined) f.deadlineTs = deadlineTs;
  return f;
}

/** The verdict a fake graph decides for frame `f` at virtual time `t`. */
function real(f: Frame, t: number): Verdict {
  return {
    schema: 'fairline.verdict/v1', line: 'L1', station: 'S1', camera: f.sourceId, seq: f.seq, captureTs: f.captureTs,
    decidedTs: t, latencyMs: t - f.captureTs, model: 'm1', score: 0.1, threshold: 0.5, verdict: 'pass', regions: [],
  };
}
function safe(f: Frame, t: number, verdict: 'reject' | 'pass', reason = 'deadline'): Verdict {
  return {
    schema: 'fairline.verdict/v1', line: 'L1', station: 'S1', camera: f.sourceId, seq: f.seq, captureTs: f.captureTs,
    decidedTs: t, latencyMs: t - f.captureTs, model: 'm1', score: null, threshold: null, verdict, reason, failSafe: true, regions: [],
  };
}

/** A fake inspection graph: frame seq s takes delays[s] ms to its verdict. */
function slowGraph(delays: Record<number, number>, scheduler: TestScheduler) {
  return (frames: Observable<Frame>): Observable<Verdict> =>
    frames.pipe(mergeMap((f) => timer(delays[f.seq]!).pipe(map(() => real(f, scheduler.now())))));
}

describe('failSafe', () => {
  // a: captured at 0, answered at 20 (in time). b: captured at 10, deadline 60, answered at 90 (late).
  const a = frame(1, 0);
  const b = frame(2, 10);

  it('publishes a fail-safe reject at the deadline and suppresses the late real verdict', () => {
    const late: Verdict[] = [];
    const scheduler = new TestScheduler((x, y) => assert.deepStrictEqual(x, y));
    scheduler.run(({ cold, expectObservable }) => {
      const out = cold('a 9ms b 100ms |', { a, b }).pipe(
        failSafe(slowGraph({ 1: 20, 2: 80 }, scheduler), { deadlineMs: 50, context: ctx, scheduler, onLate: (v) => late.push(v) }),
      );
      expectObservable(out).toBe('20ms x 39ms y 50ms |', { x: real(a, 20), y: safe(b, 60, 'reject') });
    });
    assert.equal(late.length, 1);
    assert.equal(late[0]!.seq, 2);
  });

  it("with late: 'mark' also emits the late verdict, marked, and honours verdict: 'pass'", () => {
    const scheduler = new TestScheduler((x, y) => assert.deepStrictEqual(x, y));
    scheduler.run(({ cold, expectObservable }) => {
      const out = cold('a 9ms b 100ms |', { a, b }).pipe(
        failSafe(slowGraph({ 1: 20, 2: 80 }, scheduler), { deadlineMs: 50, verdict: 'pass', late: 'mark', context: ctx, scheduler }),
      );
      expectObservable(out).toBe('20ms x 39ms y 29ms z 20ms |', { x: real(a, 20), y: safe(b, 60, 'pass'), z: { ...real(b, 90), late: true } });
    });
  });

  it("uses frame.deadlineTs when present and 'arrival' time when asked", () => {
    const scheduler = new TestScheduler((x, y) => assert.deepStrictEqual(x, y));
    scheduler.run(({ cold, expectObservable }) => {
      // c carries its own deadline 15; d was captured long ago (ts -1000) but counts from arrival (5) + 50.
      const c = frame(3, 0, 15);
      const d = frame(4, -1000);
      const out = cold('c 4ms d 100ms |', { c, d }).pipe(
        failSafe(slowGraph({ 3: 30, 4: 30 }, scheduler), { deadlineMs: 50, clock: 'arrival', context: ctx, scheduler }),
      );
      expectObservable(out).toBe('15ms x 19ms y 70ms |', { x: safe(c, 15, 'reject'), y: real(d, 35) });
    });
  });

  it('gives frames the inner graph never answered a no_verdict fail-safe when it completes', () => {
    const scheduler = new TestScheduler((x, y) => assert.deepStrictEqual(x, y));
    scheduler.run(({ cold, expectObservable }) => {
      const inner = (frames: Observable<Frame>) => frames.pipe(filter((f) => f.seq !== 2), map((f) => real(f, scheduler.now())));
      const out = cold('ab|', { a, b: frame(2, 1) }).pipe(failSafe(inner, { deadlineMs: 50, context: ctx, scheduler }));
      expectObservable(out).toBe('x-(y|)', { x: real(a, 0), y: safe(frame(2, 1), 2, 'reject', 'no_verdict') });
    });
  });

  it('produces verdicts that satisfy the v1 schema', () => {
    assert.ok(isVerdict(safe(a, 60, 'reject')));
    assert.ok(isVerdict({ ...real(a, 20), late: true }));
  });
});
