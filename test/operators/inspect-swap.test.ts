import assert from 'node:assert/strict';
import { lastValueFrom, of, take, toArray } from 'rxjs';
import { inspect, type InspectModel } from '../../src/operators/inspect.js';
import type { ImageF32 } from '../../src/model/types.js';
import type { Frame, ModelOutput } from '../../src/streams/frame.js';

function frame(seq: number): Frame {
  return { sourceId: 'cam-1', seq, captureTs: Date.now(), payload: { data: new Uint8Array(4 * 4 * 3).fill(seq === 3 ? 0 : 100), width: 4, height: 4, format: 'bgr' } };
}
const decode = (f: Frame): ImageF32 => {
  if (f.seq === 3) throw new Error('bad frame');
  return { width: 4, height: 4, channels: 3, data: new Float32Array(48).fill(0.4) };
};

describe('inspect with a model that changes while frames flow (src/runtime/models.ts)', () => {
  it('judged verdicts name the model and threshold of their batch; error and fail-safe verdicts the model serving then', async () => {
    let id = 'old-1';
    let calls = 0;
    // Outputs carry model + threshold (as CameraModel's do); the second batch never answers.
    const model: InspectModel = {
      get id() {
        return id;
      },
      inferBatch: (imgs: ImageF32[]): Promise<ModelOutput[]> => {
        calls++;
        if (calls === 1) {
          const out = imgs.map(() => ({ score: 0.45, model: 'old-1', threshold: 0.5 }));
          id = 'new-2'; // the swap lands while this batch is in flight
          return Promise.resolve(out);
        }
        return new Promise(() => undefined);
      },
    };
    const verdicts = await lastValueFrom(
      of(frame(1), frame(2), frame(3), frame(4)).pipe(
        inspect({
          decode, model, threshold: 0.1, mode: 'replay',
          context: { line: 'L1', station: 'S1' },
          batch: { maxSize: 2, maxWaitMs: 5 },
          deadline: { deadlineMs: 300, verdict: 'reject' },
        }),
        take(4), // #4's batch never answers, so the graph itself never completes
        toArray(),
      ),
    );
    const by = new Map(verdicts.map((v) => [v.seq, v]));
    // Batch 1 (#1, #2): judged by old-1 at ITS threshold 0.5 (0.45 passes; the graph's 0.1 would reject).
    assert.deepEqual([by.get(1)!.model, by.get(1)!.threshold, by.get(1)!.verdict], ['old-1', 0.5, 'pass']);
    assert.deepEqual([by.get(2)!.model, by.get(2)!.verdict], ['old-1', 'pass']);
    // #3 fails to decode after the swap; #4's batch never answers: fail-safe. Both name new-2.
    assert.deepEqual([by.get(3)!.model, by.get(3)!.verdict], ['new-2', 'error']);
    assert.deepEqual([by.get(4)!.model, by.get(4)!.failSafe, by.get(4)!.verdict], ['new-2', true, 'reject']);
  });
});
