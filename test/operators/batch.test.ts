import assert from 'node:assert/strict';
import { bufferTime } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import { batchFrames } from '../../src/operators/batch.js';
import { FairlineError } from '../../src/errors.js';
import { failed, ok, type Frame, type Result } from '../../src/streams/frame.js';

function frame(seq: number): Frame {
  return { sourceId: 'cam0', seq, captureTs: seq, payload: { data: new Uint8Array(3), width: 1, height: 1, format: 'rgb' } };
}

const ts = (): TestScheduler => new TestScheduler((actual, expected) => assert.deepStrictEqual(actual, expected));

// Source values: ok(seq) per letter; 'x' is a failed frame.
const bad = failed(frame(99), new FairlineError('bad_frame', 'corrupt'), 'decode');
const src: Record<string, Result<number>> = { a: ok(1), b: ok(2), c: ok(3), d: ok(4), e: ok(5), x: bad };

describe('batchFrames', () => {
  it('emits a full batch as soon as maxSize values are collected', () => {
    ts().run(({ cold, expectObservable }) => {
      const s = cold('a-b-c-d-|', src);
      // maxWaitMs is long, so only size (at c) and completion (flush of d) emit.
      expectObservable(s.pipe(batchFrames({ maxSize: 3, maxWaitMs: 1000 }))).toBe('----x---(y|)', { x: ok([1, 2, 3]), y: ok([4]) });
    });
  });

  it('times the wait from the FIRST value of each batch', () => {
    ts().run(({ cold, expectObservable }) => {
      // a at 0, b at 3 -> batch due at 0+5 = 5 (not 3+5); c at 9 opens a new batch due at 14.
      const s = cold('a 2ms b 5ms c 9ms |', src);
      expectObservable(s.pipe(batchFrames({ maxSize: 10, maxWaitMs: 5 }))).toBe('5ms x 8ms y 4ms |', { x: ok([1, 2]), y: ok([3]) });
    });
  });

  it('never emits an empty batch while idle (unlike bufferTime)', () => {
    ts().run(({ cold, expectObservable }) => {
      const s = cold('a 50ms |', src);
      expectObservable(s.pipe(batchFrames({ maxSize: 4, maxWaitMs: 10 }))).toBe('10ms x 40ms |', { x: ok([1]) });
    });
    // The contrast that motivates the custom operator: bufferTime emits empty arrays on its own clock.
    ts().run(({ cold, expectObservable }) => {
      const s = cold('a 50ms |', { a: 1 });
      expectObservable(s.pipe(bufferTime(10))).toBe('10ms x 9ms y 9ms y 9ms y 9ms y (y|)', { x: [1], y: [] });
    });
  });

  it('flushes the partial batch on completion', () => {
    ts().run(({ cold, expectObservable }) => {
      const s = cold('ab|', src);
      expectObservable(s.pipe(batchFrames({ maxSize: 8, maxWaitMs: 100 }))).toBe('--(x|)', { x: ok([1, 2]) });
    });
  });

  it('lets failed results pass through at once without disturbing the batch', () => {
    ts().run(({ cold, expectObservable }) => {
      const s = cold('a-x-b-c--|', src);
      expectObservable(s.pipe(batchFrames({ maxSize: 3, maxWaitMs: 100 }))).toBe('--f---x--|', { f: bad, x: ok([1, 2, 3]) });
    });
  });

  it('flushes the partial batch before forwarding an upstream error', () => {
    ts().run(({ cold, expectObservable }) => {
      const s = cold('a-b-#', src, new Error('camera gone'));
      expectObservable(s.pipe(batchFrames({ maxSize: 3, maxWaitMs: 100 }))).toBe('----(x#)', { x: ok([1, 2]) }, new Error('camera gone'));
    });
  });

  it('cancels the pending timer on unsubscribe', () => {
    ts().run(({ cold, expectObservable }) => {
      const s = cold('a------|', src);
      expectObservable(s.pipe(batchFrames({ maxSize: 3, maxWaitMs: 5 })), '^--!').toBe('---');
    });
  });

  it('rejects bad options with a typed error', () => {
    assert.throws(() => batchFrames({ maxSize: 0, maxWaitMs: 1 }), (e: unknown) => e instanceof FairlineError && e.code === 'bad_option');
    assert.throws(() => batchFrames({ maxSize: 2, maxWaitMs: -1 }), /maxWaitMs/);
  });
});
