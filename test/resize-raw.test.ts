/**
 * Raw camera frames resized in place (resizeRawLinearU8): bit-identical to decodeRaw followed by
 * resizeLinearU8 for every pixel order, size relation and channel count, without the full-size
 * BGR copy.
 */
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { decodeImage, decodeModelImage, decodeRaw, loadMask, loadMaskSized } from '../src/io/image.js';
import { resizeDecodedLinearU8, resizeLinearU8, resizeRawLinearU8, u8ToF32, type RawPixelOrder } from '../src/model/resize.js';
import { BadInputError } from '../src/errors.js';
import { SAMPLE_DATA } from './helpers.js';

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

describe('decoded images resized in place (resizeDecodedLinearU8, decodeModelImage)', () => {
  /** decodeImage's BGR conversion of libvips' pixels (gray replicated, alpha dropped). */
  function toBgr(buf: Uint8Array, n: number, ch: number): Uint8Array {
    const out = new Uint8Array(n * 3);
    for (let i = 0; i < n; i++) for (let c = 0; c < 3; c++) out[3 * i + c] = ch >= 3 ? buf[i * ch + 2 - c]! : buf[i * ch]!;
    return out;
  }

  it('equals the BGR copy + resizeLinearU8 bit for bit for 1-4 channels and every size relation', () => {
    const cases: [number, number, number, number, number][] = [
      [512, 512, 3, 256, 256], // exactly 2x: INTER_AREA
      [512, 522, 3, 256, 256],
      [300, 400, 4, 256, 256],
      [128, 128, 1, 64, 64],
      [97, 61, 2, 40, 30],
      [64, 64, 3, 64, 64], // same size
      [50, 40, 4, 96, 80], // upscaling
    ];
    for (const [w, h, ch, tw, th] of cases) {
      const buf = frame(w, h, ch, 3 * w + h + ch);
      const want = resizeLinearU8({ width: w, height: h, channels: 3, data: toBgr(buf, w * h, ch) }, tw, th);
      const got = resizeDecodedLinearU8(buf, w, h, ch, tw, th);
      assert.deepEqual([got.width, got.height, got.channels], [tw, th, 3]);
      assert.ok(Buffer.from(got.data).equals(Buffer.from(want.data)), `${w}x${h}x${ch} -> ${tw}x${th}`);
    }
    assert.throws(() => resizeDecodedLinearU8(new Uint8Array(10), 2, 2, 3, 1, 1), BadInputError);
    assert.throws(() => resizeDecodedLinearU8(new Uint8Array(20), 2, 2, 5, 1, 1), BadInputError);
  });

  it('u8ToF32 (a table) gives the division v / 255 in float32 for every byte', () => {
    const all = u8ToF32({ width: 256, height: 1, channels: 1, data: Uint8Array.from({ length: 256 }, (_, v) => v) });
    for (let v = 0; v < 256; v++) assert.equal(all.data[v], Math.fround(v / 255), `byte ${v}`);
  });

  it('decodeModelImage gives loadModelImage pixels, the 8-bit image and the source size; loadMaskSized the mask and its size', async () => {
    const dir = join(SAMPLE_DATA, 'hazelnut');
    const files = [
      join(dir, 'train/good', '01.png'), // 512x522
      ...readdirSync(join(dir, 'test/colour')).slice(0, 3).map((f) => join(dir, 'test/colour', f)),
    ];
    const gray = await sharp(files[1]!).toColourspace('b-w').png().toBuffer();
    const rgba = await sharp(files[2]!).ensureAlpha().png().toBuffer();
    for (const input of [...files, gray, rgba]) {
      const old = resizeLinearU8(await decodeImage(input), 256, 256);
      const got = await decodeModelImage(input, 256);
      const name = typeof input === 'string' ? input : `<buffer ${input.length}>`;
      assert.ok(Buffer.from(got.bytes.data).equals(Buffer.from(old.data)), `${name}: bytes`);
      assert.deepEqual(got.image.data, u8ToF32(old).data, `${name}: image`);
      const full = await decodeImage(input);
      assert.deepEqual([got.sourceWidth, got.sourceHeight], [full.width, full.height]);
    }
    const maskFile = join(dir, 'ground_truth/colour', readdirSync(join(dir, 'ground_truth/colour'))[0]!);
    const m = await loadMaskSized(maskFile, 256);
    assert.deepEqual(m.mask, await loadMask(maskFile, 256));
    const meta = await sharp(maskFile).metadata();
    assert.deepEqual([m.width, m.height], [meta.width, meta.height]);
  });
});
