/**
 * Raw camera frames resized in place (resizeRawLinearU8): bit-identical to decodeRaw followed by
 * resizeLinearU8 for every pixel order, size relation and channel count, without the full-size
 * BGR copy.
 */
import assert from 'node:assert/strict';
import { decodeRaw } from '../src/io/image.js';
import { resizeLinearU8, resizeRawLinearU8, type RawPixelOrder } from '../src/model/resize.js';
import { BadInputError } from '../src/errors.js';

function frame(w: number, h: number, ch: number, seed: number): Uint8Array {
  const b = new Uint8Array(w * h * ch);
  let s = seed >>> 0;
  for (let i = 0; i < b.length; i++) b[i] = (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) >>> 24;
  return b;
}

describe('resizeRawLinearU8 (raw camera frames)', () => {
  it('equals decodeRaw + resizeLinearU8 bit for bit', () => {
    const cases: [number, number, number, RawPixelOrder, number, number][] = [
      [1280, 1024, 3, 'rgb', 256, 256],
      [640, 480, 3, 'bgr', 256, 256],
      [333, 217, 1, 'gray', 64, 64],
      [200, 100, 4, 'rgb', 64, 48],
      [128, 128, 3, 'rgb', 64, 64], // exactly 2x: INTER_AREA
      [64, 64, 3, 'rgb', 64, 64], // same size
      [50, 40, 3, 'bgr', 96, 80], // upscaling
    ];
    for (const [w, h, ch, order, tw, th] of cases) {
      const buf = frame(w, h, ch, w + h + ch);
      const want = resizeLinearU8(decodeRaw(buf, w, h, ch, order), tw, th);
      const got = resizeRawLinearU8(buf, w, h, ch, order, tw, th);
      assert.deepEqual([got.width, got.height, got.channels], [tw, th, 3]);
      assert.ok(Buffer.from(got.data).equals(Buffer.from(want.data)), `${w}x${h}x${ch} ${order} -> ${tw}x${th}`);
    }
  });

  it('is faster than the BGR copy + resize on a 1280x1024 RGB frame, and validates its input', () => {
    const buf = frame(1280, 1024, 3, 7);
    const time = (f: () => void): number => {
      f();
      const t0 = performance.now();
      for (let i = 0; i < 5; i++) f();
      return (performance.now() - t0) / 5;
    };
    const raw = time(() => resizeRawLinearU8(buf, 1280, 1024, 3, 'rgb', 256, 256));
    const copy = time(() => resizeLinearU8(decodeRaw(buf, 1280, 1024, 3, 'rgb'), 256, 256));
    console.log(`      1280x1024 RGB -> 256x256 BGR: ${raw.toFixed(2)} ms in place, ${copy.toFixed(2)} ms via the BGR copy`);
    assert.throws(() => resizeRawLinearU8(buf.subarray(1), 1280, 1024, 3, 'rgb', 256, 256), BadInputError);
    assert.throws(() => resizeRawLinearU8(buf, 1280, 1024, 2, 'rgb', 256, 256), BadInputError);
    assert.throws(() => resizeRawLinearU8(buf, 1280, 1024, 3, 'rgb', 0, 256), BadInputError);
  });
});
