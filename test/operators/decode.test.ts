import assert from 'node:assert/strict';
import { lastValueFrom, map, of, timer, toArray } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import { decodeFrames } from '../../src/operators/decode.js';
import { BadInputError, FairlineError } from '../../src/errors.js';
import type { ImageF32 } from '../../src/model/types.js';
import type { Frame } from '../../src/streams/frame.js';

function frame(seq: number, over: Partial<Frame['payload']> = {}): Frame {
  return { sourceId: 'cam0', seq, captureTs: 1000 + seq, payload: { data: new Uint8Array(2 * 2 * 3).fill(seq), width: 2, height: 2, format: 'bgr', ...over } };
}
/** A 2x2 BGR image whose pixels are seq/100, so outputs can be traced to inputs. */
function image(seq: number, fill = seq / 100): ImageF32 {
  return { width: 2, height: 2, channels: 3, data: new Float32Array(12).fill(fill) };
}

describe('decodeFrames', () => {
  it('keeps input order with concurrent decodes that finish out of order, and respects the bound', () => {
    let active = 0;
    let maxActive = 0;
    new TestScheduler((a, e) => assert.deepStrictEqual(a, e)).run(({ cold, expectObservable }) => {
      const frames = { a: frame(1), b: frame(2), c: frame(3), d: frame(4) };
      // Decode time 30, 10, 10, 5 ms: b and c finish before a.
      const delays: Record<number, number> = { 1: 30, 2: 10, 3: 10, 4: 5 };
      const decode = (f: Frame) => {
        active++;
        maxActive = Math.max(maxActive, active);
        return timer(delays[f.seq]!).pipe(map(() => { active--; return image(f.seq); }));
      };
      const out = cold('abcd|', frames).pipe(decodeFrames(decode, { concurrency: 2 }), map((r) => (r.ok ? r.value.frame.seq : -1)));
      // a 0-30 and b 1-11 run; c 11-21, d 21-26 in b's and c's slot; a's result releases all at 30.
      expectObservable(out).toBe('30ms (wxyz|)', { w: 1, x: 2, y: 3, z: 4 });
    });
    assert.equal(maxActive, 2);
  });

  it('turns every kind of decode failure into a Failed result and keeps going', async () => {
    const decode = (f: Frame): ImageF32 | Promise<ImageF32> => {
      switch (f.seq) {
        case 2: throw new Error('libjpeg: premature end of data');
        case 3: return Promise.reject(new BadInputError('corrupt_image', 'truncated PNG'));
        case 4: return image(4, Number.NaN);
        case 5: return { width: 2, height: 2, channels: 3, data: new Float32Array(5) };
        default: return Promise.resolve(image(f.seq));
      }
    };
    const frames = [frame(1), frame(2), frame(3), frame(4), frame(5), frame(6, { data: new Uint8Array(7) }), frame(7)];
    const out = await lastValueFrom(of(...frames).pipe(decodeFrames(decode, { concurrency: 3 }), toArray()));
    assert.deepEqual(
      out.map((r) => (r.ok ? `${r.value.frame.seq}:ok` : `${r.frame.seq}:${r.stage}:${r.error.code}`)),
      ['1:ok', '2:decode:internal', '3:decode:corrupt_image', '4:decode:bad_image', '5:decode:bad_image', '6:decode:bad_frame', '7:ok'],
    );
    const seven = out[6]!;
    assert.ok(seven.ok);
    assert.equal(seven.value.image.data[0], Math.fround(0.07));
    assert.equal(seven.value.sourceWidth, 2);
    const two = out[1]!;
    assert.ok(!two.ok && two.error instanceof FairlineError && /premature end/.test(two.error.message));
  });

  it('takes the source size from the decoder for encoded frames', async () => {
    const f: Frame = { sourceId: 'c', seq: 0, captureTs: 0, payload: { data: new Uint8Array([0x89, 0x50]), width: 0, height: 0, format: 'encoded' } };
    const out = await lastValueFrom(of(f).pipe(decodeFrames(() => ({ image: image(0), sourceWidth: 640, sourceHeight: 480 })), toArray()));
    assert.ok(out[0]!.ok);
    assert.equal(out[0]!.value.sourceWidth, 640);
    assert.equal(out[0]!.value.sourceHeight, 480);
  });

  it('reports each decode duration', async () => {
    const seen: number[] = [];
    let t = 0;
    await lastValueFrom(of(frame(1), frame(2)).pipe(decodeFrames((fr) => image(fr.seq), { now: () => (t += 4), onDuration: (s) => seen.push(s) }), toArray()));
    assert.deepEqual(seen, [0.004, 0.004]);
  });
});
