import assert from 'node:assert/strict';
import { of } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import { partIdFromFileName } from '../../src/operators/part-id-file.js';
import { matchTriggers, type PartTrigger } from '../../src/operators/part-id-trigger.js';
import type { Frame } from '../../src/streams/frame.js';
import { parseTrigger } from '../../src/runtime/part-ids.js';

function frame(seq: number, captureTs: number, path?: string): Frame {
  return { sourceId: 'cam0', seq, captureTs, payload: { data: new Uint8Array(3), width: 1, height: 1, format: 'rgb' }, ...(path ? { path } : {}) };
}

const ts = (): TestScheduler => new TestScheduler((actual, expected) => assert.deepStrictEqual(actual, expected));

describe('matchTriggers (part ids from a trigger stream)', () => {
  it('gives each frame the nearest trigger within the window, waits at most holdMs, counts what is left', () => {
    const unmatchedFrames: number[] = [];
    const unmatchedTriggers: string[] = [];
    ts().run(({ hot, expectObservable }) => {
      // Frames captured at 0, 100, 200, 300 ms (arrival = capture).
      const F = { a: frame(0, 0), b: frame(1, 100), c: frame(2, 200), d: frame(3, 300) };
      const frames = hot('a 99ms b 99ms c 99ms d 99ms |', F);
      // x for a (on time), y for b (arrives 25 ms late), q a stray between b and c (50 ms from
      // both: outside the 40 ms window), none for c, z for d, w far in the future.
      const T: Record<string, PartTrigger> = { x: { partId: 'P1', ts: 3 }, y: { partId: 'P2', ts: 105 }, q: { partId: 'Q', ts: 150 }, z: { partId: 'P4', ts: 298 }, w: { partId: 'W', ts: 500 } };
      const triggers = hot('5ms x 124ms y 29ms q 149ms z 9ms w', T);
      const out = frames.pipe(
        matchTriggers(triggers, { windowMs: 40, holdMs: 80, onUnmatchedFrame: (f) => void unmatchedFrames.push(f.seq), onUnmatchedTrigger: (t) => void unmatchedTriggers.push(t.partId) }),
      );
      // a: its hold ends at 80; b: q (ts 150 > 100 + 40) at 160 settles it; c: hold ends at 280;
      // d: w (ts 500) at 320 settles it; frames in order.
      expectObservable(out).toBe('80ms a 79ms b 119ms c 39ms d 79ms |', {
        a: { ...F.a, partId: 'P1' },
        b: { ...F.b, partId: 'P2' },
        c: F.c,
        d: { ...F.d, partId: 'P4' },
      });
    });
    assert.deepEqual(unmatchedFrames, [2]);
    assert.deepEqual(unmatchedTriggers, ['Q', 'W']);
  });

  it('a trigger is taken once, by the nearer frame; frames go on when the trigger stream fails', () => {
    ts().run(({ hot, cold, expectObservable }) => {
      const F = { a: frame(0, 0), b: frame(1, 30) };
      const frames = hot('a 29ms b 99ms |', F);
      // One trigger at ts 25, inside both frames' windows: a is decided first (hold ends at 50)
      // but b (captured at 30, already waiting) is nearer to it, so b gets it and a none.
      const triggers = cold('26ms t', { t: { partId: 'T', ts: 25 } });
      expectObservable(frames.pipe(matchTriggers(triggers, { windowMs: 40, holdMs: 50 }))).toBe('50ms a 29ms b 49ms |', { a: F.a, b: { ...F.b, partId: 'T' } });
      const failing = cold<PartTrigger>('5ms #');
      expectObservable(hot('a 29ms b 99ms |', F).pipe(matchTriggers(failing, { windowMs: 10, holdMs: 20 }))).toBe('20ms a 29ms b 79ms |', F);
    });
  });
});

describe('partIdFromFileName', () => {
  it('takes the named group (or the first group) of the base name; no match keeps no partId', () => {
    const missed: number[] = [];
    const got: Frame[] = [];
    of(frame(0, 0, '/data/run1/part-0042_cam1.png'), frame(1, 1, 'C:\\x\\part-7_cam1.png'), frame(2, 2, '/data/other.png'), frame(3, 3))
      .pipe(partIdFromFileName(/^part-(?<partId>\d+)_/, { onUnmatched: (f) => void missed.push(f.seq) }))
      .subscribe((f) => void got.push(f));
    assert.deepEqual(got.map((f) => f.partId), ['0042', '7', undefined, undefined]);
    assert.ok(!('partId' in got[2]!), 'absent stays absent');
    assert.deepEqual(missed, [2, 3]);
    const first: Frame[] = [];
    of(frame(0, 0, 'x/SN123-top.bmp')).pipe(partIdFromFileName(/^SN(\d+)-/)).subscribe((f) => void first.push(f));
    assert.equal(first[0]!.partId, '123');
  });

  it('trigger messages: {partId, ts}; numbers become strings; anything else is refused with the reason', () => {
    assert.deepEqual(parseTrigger('{"partId":"P-1","ts":1700000000000}'), { partId: 'P-1', ts: 1700000000000 });
    assert.deepEqual(parseTrigger('{"partId":42,"ts":5}'), { partId: '42', ts: 5 });
    assert.equal(parseTrigger('nope'), 'not JSON');
    assert.match(parseTrigger('{"ts":5}') as string, /^partId/);
    assert.match(parseTrigger('{"partId":"x","ts":"now"}') as string, /^ts/);
  });
});
