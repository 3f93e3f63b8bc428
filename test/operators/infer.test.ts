import assert from 'node:assert/strict';
import { concat, lastValueFrom, map, of, timer, toArray, throwError } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import { inferBatches } from '../../src/operators/infer.js';
import { FairlineError } from '../../src/errors.js';
import { failed, ok, type Failed, type Frame, type Result } from '../../src/streams/frame.js';

interface Item {
  frame: Frame;
}
function frame(seq: number): Frame {
  return { sourceId: 'cam0', seq, captureTs: seq, payload: { data: new Uint8Array(3), width: 1, height: 1, format: 'rgb' } };
}
const item = (seq: number): Item => ({ frame: frame(seq) });
// Batch k holds frames 10k and 10k+1, so a dropped frame names its batch.
const batch = (k: number): Result<Item[]> => ok([item(10 * k), item(10 * k + 1)]);
const scored = (k: number): Result<Item & { score: number }>[] => [10 * k, 10 * k + 1].map((s) => ok({ frame: frame(s), score: s / 100 }));
const dropped = (k: number): Failed[] =>
  [10 * k, 10 * k + 1].map((s) => failed(frame(s), new FairlineError('dropped', `frame cam0#${s} dropped: model busy and queue full`), 'queue'));

const ts = (): TestScheduler => new TestScheduler((actual, expected) => assert.deepStrictEqual(actual, expected));

/** A model that takes 25 ms (virtual) per batch and scores seq / 100. */
const slowModel = (b: Item[]) => timer(25).pipe(map(() => b.map((i) => ({ score: i.frame.seq / 100 }))));

describe('inferBatches', () => {
  const src = { a: batch(0), b: batch(1), c: batch(2), d: batch(3), e: batch(4) };

  it("'drop-oldest' drops exactly the oldest waiting batches and reports each dropped frame", () => {
    const reported: number[] = [];
    const depths: number[] = [];
    ts().run(({ cold, expectObservable }) => {
      // a runs 0-25; b waits; c arrives at 20 and pushes b out; a done at 25, c runs 25-50;
      // d waits; e arrives at 40 and pushes d out; c done at 50, e runs 50-75.
      const s = cold('a 9ms b 9ms c 9ms d 9ms e|', src);
      const out = s.pipe(
        inferBatches(slowModel, { policy: 'drop-oldest', queueLimit: 1, onDrop: (f) => reported.push(f.seq), onQueueDepth: (n) => depths.push(n) }),
      );
      expectObservable(out).toBe('20ms (pq) 1ms (ab) 11ms (rs) 6ms (cd) 21ms (ef|)', {
        p: dropped(1)[0], q: dropped(1)[1], r: dropped(3)[0], s: dropped(3)[1],
        a: scored(0)[0], b: scored(0)[1], c: scored(2)[0], d: scored(2)[1], e: scored(4)[0], f: scored(4)[1],
      });
    });
    assert.deepEqual(reported, [10, 11, 30, 31]);
    // b queued (2 frames), c replaces b (2), c taken (0), d queued (2), e replaces d (2), e taken (0).
    assert.deepEqual(depths, [2, 2, 0, 2, 2, 0]);
  });

  it("'drop-oldest' with emitDropped=false only reports, and queueLimit 2 keeps two batches", () => {
    const reported: number[] = [];
    ts().run(({ cold, expectObservable }) => {
      const s = cold('a 9ms b 9ms c 9ms d 9ms e|', src);
      const out = s.pipe(inferBatches(slowModel, { policy: 'drop-oldest', queueLimit: 2, emitDropped: false, onDrop: (f) => reported.push(f.seq) }));
      // a 0-25; b,c wait; a done -> b runs 25-50 (queue c); d waits (c,d); e at 40 pushes c out;
      // b done 50 -> d runs 50-75; e runs 75-100.
      expectObservable(out).toBe('25ms (ab) 21ms (cd) 21ms (ef) 21ms (gh|)', {
        a: scored(0)[0], b: scored(0)[1], c: scored(1)[0], d: scored(1)[1], e: scored(3)[0], f: scored(3)[1], g: scored(4)[0], h: scored(4)[1],
      });
    });
    assert.deepEqual(reported, [20, 21]);
  });

  it("'wait' queues every batch and loses none, completing after the queue drains", () => {
    ts().run(({ cold, expectObservable }) => {
      const s = cold('a 9ms b 9ms c 9ms d 9ms e|', src);
      const all = [0, 1, 2, 3, 4].flatMap((k) => scored(k));
      const vals = Object.fromEntries(all.map((r, i) => [String.fromCharCode(97 + i), r]));
      expectObservable(s.pipe(inferBatches(slowModel, { policy: 'wait' }))).toBe('25ms (ab) 21ms (cd) 21ms (ef) 21ms (gh) 21ms (ij|)', vals);
    });
  });

  it('fails every frame of a batch whose model call throws, rejects or miscounts, and goes on', async () => {
    const model = (b: Item[]) => {
      const k = Math.floor(b[0]!.frame.seq / 10);
      if (k === 1) throw new Error('CUDA out of memory');
      if (k === 2) return Promise.reject(new Error('kernel failed'));
      if (k === 3) return Promise.resolve([{ score: 0 }]); // one output for two frames
      return Promise.resolve(b.map((i) => ({ score: i.frame.seq })));
    };
    const bad = failed(frame(7), new FairlineError('bad_frame', 'x'), 'decode');
    const out = await lastValueFrom(of(batch(0), batch(1), bad, batch(2), batch(3), batch(4)).pipe(inferBatches(model), toArray()));
    assert.equal(out.length, 11);
    const summary = out.map((r) => (r.ok ? `${r.value.frame.seq}:ok` : `${r.frame.seq}:${r.stage}:${r.error.code}`));
    assert.deepEqual(summary.sort(), [
      '0:ok', '10:infer:inference_failed', '11:infer:inference_failed', '1:ok', '20:infer:inference_failed', '21:infer:inference_failed',
      '30:infer:bad_model_output', '31:infer:bad_model_output', '40:ok', '41:ok', '7:decode:bad_frame',
    ].sort());
    const oom = out.find((r) => !r.ok && r.frame.seq === 10) as Failed;
    assert.equal(oom.error.name, 'ModelError');
    assert.match(oom.error.message, /CUDA out of memory/);
  });

  it('drains the queue before forwarding an upstream error', async () => {
    const src$ = concat(of(batch(0), batch(1)), throwError(() => new Error('source died')));
    const seen: number[] = [];
    await assert.rejects(
      lastValueFrom(src$.pipe(inferBatches((b: Item[]) => Promise.resolve(b.map(() => ({ score: 1 })))), map((r) => { if (r.ok) seen.push(r.value.frame.seq); return r; }))),
      /source died/,
    );
    assert.deepEqual(seen, [0, 1, 10, 11]);
    // and a model Observable that errors is handled like a rejection
    const out = await lastValueFrom(of(batch(0)).pipe(inferBatches(() => throwError(() => new Error('boom'))), toArray()));
    assert.ok(out.every((r) => !r.ok && r.stage === 'infer'));
  });

  it('rejects bad options with typed errors', () => {
    assert.throws(() => inferBatches(slowModel, { policy: 'drop-oldest', queueLimit: -1 }), (e: unknown) => e instanceof FairlineError && e.code === 'bad_option');
    assert.throws(() => inferBatches(slowModel, { policy: 'lifo' as never }), /unknown policy/);
  });
});
