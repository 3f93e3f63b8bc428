import assert from 'node:assert/strict';
import { lastValueFrom, map, of, timer, toArray } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import { inspect, type InspectModel } from '../../src/operators/inspect.js';
import type { ImageF32 } from '../../src/model/types.js';
import type { Frame, JudgedFrame } from '../../src/streams/frame.js';
import { isVerdict, verdictProblems, type Verdict } from '../../src/verdict.js';

/** An 8x8 BGR frame; `patch` paints 2x2-pixel blocks bright (model-size cells of a 4x4 model). */
function frame(seq: number, captureTs: number, patch: [number, number][] = []): Frame {
  const data = new Uint8Array(8 * 8 * 3).fill(40);
  for (const [cx, cy] of patch)
    for (let y = 2 * cy; y < 2 * cy + 2; y++) for (let x = 2 * cx; x < 2 * cx + 2; x++) data.fill(250, (y * 8 + x) * 3, (y * 8 + x) * 3 + 3);
  return { sourceId: 'cam-1', seq, captureTs, payload: { data, width: 8, height: 8, format: 'bgr' } };
}

/** Nearest-neighbour 8x8 -> 4x4 decode (the real one is sharp + INTER_LINEAR). */
function decode(f: Frame): ImageF32 {
  if (f.seq === 5) throw new Error('decoder crashed');
  const out = new Float32Array(4 * 4 * 3);
  for (let y = 0; y < 4; y++) for (let x = 0; x < 4; x++) for (let c = 0; c < 3; c++) out[(y * 4 + x) * 3 + c] = f.payload.data[((2 * y) * 8 + 2 * x) * 3 + c]! / 255;
  return { width: 4, height: 4, channels: 3, data: out };
}

/** Fake model: the anomaly map is the blue channel, the score its max (as FAIR's image score). */
function outputs(images: ImageF32[]) {
  return images.map((img) => {
    const m = new Float32Array(img.width * img.height);
    for (let i = 0; i < m.length; i++) m[i] = img.data[i * 3]!;
    return { score: Math.max(...m), map: m };
  });
}

describe('inspect (full graph with injected decode and model)', () => {
  it('decides pass/reject with regions, and turns decode failures into error verdicts without stopping', async () => {
    const batches: number[] = [];
    const judged: JudgedFrame[] = [];
    const model: InspectModel = { id: 'toy-1', inferBatch: async (imgs) => outputs(imgs) };
    const frames = [
      frame(1, 100),
      frame(2, 100, [[1, 1], [2, 1]]), // a 2x1-cell defect
      { ...frame(3, 100), payload: { ...frame(3, 100).payload, data: new Uint8Array(10) } }, // truncated
      frame(4, 100, [[3, 3]]),
      frame(5, 100), // decoder throws
      frame(6, 100),
    ];
    const verdicts = await lastValueFrom(
      of(...frames).pipe(
        inspect({
          decode, model, threshold: 0.5, mode: 'replay',
          context: { line: 'L1', station: 'S 2', now: () => 130 },
          batch: { maxSize: 4, maxWaitMs: 5 },
          hooks: { onBatch: (n) => batches.push(n), onJudged: (j) => judged.push(j) },
        }),
        toArray(),
      ),
    );
    const bySeq = new Map(verdicts.map((v) => [v.seq, v]));
    // onJudged sees every scored frame with its source frame, model-size image and map, uncopied.
    assert.deepEqual(judged.map((j) => [j.frame.seq, j.decision]), [[1, 'pass'], [2, 'reject'], [4, 'reject'], [6, 'pass']]);
    assert.equal(judged[1]!.frame, frames[1]);
    assert.equal(judged[1]!.map!.length, 16);
    assert.equal(judged[1]!.image.width, 4);
    assert.equal(verdicts.length, 6);
    for (const v of verdicts) assert.deepEqual(verdictProblems(v), [], `seq ${v.seq}`);
    assert.deepEqual([1, 2, 3, 4, 5, 6].map((s) => bySeq.get(s)!.verdict), ['pass', 'reject', 'error', 'reject', 'error', 'pass']);
    assert.equal(bySeq.get(3)!.reason, 'bad_frame');
    assert.equal(bySeq.get(3)!.stage, 'decode');
    assert.equal(bySeq.get(5)!.reason, 'internal');
    assert.match(bySeq.get(5)!.detail!, /decoder crashed/);
    // Model cells (1,1)-(2,1) -> frame pixels x 2..5, y 2..3; 2 cells * 4 frame pixels each.
    const two = bySeq.get(2)!;
    assert.deepEqual(two.regions, [{ x: 2, y: 2, w: 4, h: 2, area: 8, peak: Math.fround(250 / 255) }]);
    assert.equal(two.score, Math.fround(250 / 255));
    assert.equal(two.threshold, 0.5);
    assert.equal(two.model, 'toy-1');
    assert.equal(two.latencyMs, 30);
    assert.deepEqual(bySeq.get(4)!.regions.map((r) => [r.x, r.y, r.w, r.h]), [[6, 6, 2, 2]]);
    assert.deepEqual(bySeq.get(1)!.regions, []);
    // 4 decodable frames, size-limited batch of 4 -> one batch.
    assert.deepEqual(batches, [4]);
  });

  it('on a live line with a slow model: drops the oldest, fails safe at deadlines, one verdict per frame', () => {
    const scheduler = new TestScheduler((a, e) => assert.deepStrictEqual(a, e));
    const got: { t: number; v: Verdict }[] = [];
    const dropped: number[] = [];
    const late: number[] = [];
    const depths: number[] = [];
    scheduler.run(({ cold }) => {
      // Frames every 10 ms (seq = index, captured on arrival); a batch closes 5 ms after its
      // first frame, so every batch holds one frame; the model needs 40 ms per batch.
      const vals = Object.fromEntries([...'abcdefghij'].map((ch, i) => [ch, frame(i, i * 10)]));
      const model: InspectModel = { id: 'slow', inferBatch: (imgs) => timer(40).pipe(map(() => outputs(imgs))) };
      cold('a 9ms b 9ms c 9ms d 9ms e 9ms f 9ms g 9ms h 9ms i 9ms j 200ms |', vals)
        .pipe(
          inspect({
            decode, model, threshold: 0.5, mode: 'live', queueLimit: 1, scheduler,
            context: { line: 'L1', station: 'S1' },
            batch: { maxSize: 4, maxWaitMs: 5 },
            deadline: { deadlineMs: 50, verdict: 'reject' },
            hooks: { onDrop: (f) => dropped.push(f.seq), onLate: (v) => late.push(v.seq), onQueueDepth: (n) => depths.push(n) },
          }),
        )
        .subscribe((v) => got.push({ t: scheduler.now(), v }));
    });
    // Frame 5 fails to decode (error verdict at once). Model runs: frame 0 (5-45), 3 (45-85),
    // 7 (85-125), 9 (125-165). Batches 1,2,4,6,8 are pushed out of the one-slot queue by a newer
    // batch. Deadlines are capture + 50 ms, so 3, 7 and 9 fail safe and their real verdicts are late.
    const summary = got.map(({ t, v }) => `${v.seq}@${t}:${v.verdict}${v.reason ? `/${v.reason}` : ''}`);
    assert.deepEqual(summary, [
      '1@25:error/dropped', '2@35:error/dropped', '0@45:pass', '5@50:error/internal', '4@65:error/dropped', '6@75:error/dropped',
      '3@80:reject/deadline', '8@95:error/dropped', '7@120:reject/deadline', '9@140:reject/deadline',
    ]);
    assert.deepEqual(dropped, [1, 2, 4, 6, 8]);
    assert.deepEqual(late, [3, 7, 9]);
    assert.ok(depths.every((d) => d <= 1), `queue depth never above one batch of one frame: ${depths}`);
    assert.ok(got.every(({ v }) => isVerdict(v)));
    assert.equal(new Set(got.map(({ v }) => v.seq)).size, 10);
  });
});
