/**
 * Image input: decode (sharp, cv2.IMREAD_COLOR semantics), OpenCV INTER_LINEAR resize, /255,
 * masks, raw camera frames, PNG encoding. Golden cases preprocess_* come from the official code.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { BadInputError } from '../src/errors.js';
import { decodeImage, decodeRaw, encodePng, loadMask, loadModelImage, swapRedBlue } from '../src/io/image.js';
import { grayFromBgr, imageFromBatch, packBatch, resizeLinearU8, u8ToF32 } from '../src/model/resize.js';
import type { ImageU8 } from '../src/model/types.js';
import { REPO_ROOT, expectArraysClose, golden, goldenIndex, nchwToNhwc } from './helpers.js';

const CASES = ['preprocess_train_good_01', 'preprocess_test_good_04', 'preprocess_test_colour_02'] as const;

function sourcePath(caseName: string): string {
  const p = goldenIndex().cases[caseName]?.source?.path;
  if (!p) throw new Error(`no source path for ${caseName}`);
  return join(REPO_ROOT, p);
}

/** Deterministic pseudo-random bytes (LCG) so failures reproduce. */
function randomU8(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s >>> 24;
  }
  return out;
}

/** Float bilinear with half-pixel centres and clamped borders: the ideal that cv2 rounds. */
function bilinearFloat(img: ImageU8, w: number, h: number): Float64Array {
  const { width: sw, height: sh, channels: cn, data } = img;
  const out = new Float64Array(w * h * cn);
  const clamp = (v: number, hi: number): number => Math.min(Math.max(v, 0), hi);
  for (let y = 0; y < h; y++) {
    const fy = clamp((y + 0.5) * (sh / h) - 0.5, sh - 1);
    const y0 = Math.floor(fy), y1 = Math.min(y0 + 1, sh - 1), wy = fy - y0;
    for (let x = 0; x < w; x++) {
      const fx = clamp((x + 0.5) * (sw / w) - 0.5, sw - 1);
      const x0 = Math.floor(fx), x1 = Math.min(x0 + 1, sw - 1), wx = fx - x0;
      for (let c = 0; c < cn; c++) {
        const p = (yy: number, xx: number): number => data[(yy * sw + xx) * cn + c]!;
        out[(y * w + x) * cn + c] =
          (1 - wy) * ((1 - wx) * p(y0, x0) + wx * p(y0, x1)) + wy * ((1 - wx) * p(y1, x0) + wx * p(y1, x1));
      }
    }
  }
  return out;
}

async function expectBadInput(p: Promise<unknown>, code: string, nameInMessage?: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof BadInputError, `expected BadInputError, got ${String(err)}`);
    assert.equal(err.code, code, `code of: ${err.message}`);
    if (nameInMessage) assert.ok(err.message.includes(nameInMessage), `message names the file: ${err.message}`);
    return true;
  });
}

describe('preprocess: golden cases (official cv2 pipeline)', () => {
  for (const c of CASES) {
    it(`${c}: decode + INTER_LINEAR resize + /255 within 1/255 of cv2`, async () => {
      const img = await loadModelImage(sourcePath(c), 256);
      assert.deepEqual([img.width, img.height, img.channels], [256, 256, 3]);
      const g = golden(c, 'image');
      assert.deepEqual(g.shape, [3, 256, 256]);
      const stats = expectArraysClose(img.data, nchwToNhwc(g.data, 1, 3, 256, 256), 1 / 255 + 1e-7, `${c} image`);
      // Fixed-point reproduction of OpenCV: measured bit-exact on all three cases.
      assert.ok(stats.maxAbs < 1e-6, `${c}: expected bit-exact pixels, max diff ${stats.maxAbs}`);
    });
  }

  it('train/good/01.png is 512x522 (non-2x scale) and still resizes like cv2', async () => {
    const raw = await decodeImage(sourcePath('preprocess_train_good_01'));
    assert.deepEqual([raw.width, raw.height, raw.channels], [512, 522, 3]);
    const img = u8ToF32(resizeLinearU8(raw, 256, 256));
    const g = nchwToNhwc(golden('preprocess_train_good_01', 'image').data, 1, 3, 256, 256);
    expectArraysClose(img.data, g, 1e-6, '512x522 -> 256x256');
  });

  it('colour_02 mask: gray decode + resize + /255 within 1/255 (fractional edges kept)', async () => {
    const mask = await loadMask(join(REPO_ROOT, 'data/hazelnut_toy/hazelnut/ground_truth/colour/02_mask.png'), 256);
    const g = golden('preprocess_test_colour_02', 'mask');
    assert.deepEqual(g.shape, [1, 256, 256]);
    expectArraysClose(mask, g.data, 1 / 255 + 1e-7, 'mask');
    let frac = 0, min = Infinity, max = -Infinity;
    for (const v of mask) {
      if (v > 0 && v < 1) frac++;
      min = Math.min(min, v);
      max = Math.max(max, v);
    }
    assert.ok(min >= 0 && max <= 1 && max === 1, `mask range [${min}, ${max}]`);
    assert.ok(frac > 0, 'resized mask edges are fractional, as in the golden');
  });

  it('good images have all-zero golden masks (no mask file exists for them)', () => {
    for (const c of ['preprocess_train_good_01', 'preprocess_test_good_04']) {
      const m = golden(c, 'mask').data;
      assert.ok(m.every((v) => v === 0), `${c} golden mask is zero`);
    }
  });

  it('grayFromBgr matches 0.299R + 0.587G + 0.114B', () => {
    const img = u8ToF32({ width: 2, height: 1, channels: 3, data: Uint8Array.from([255, 0, 0, 10, 200, 30]) });
    const g = grayFromBgr(img);
    assert.ok(Math.abs(g[0]! - 0.114) < 1e-7, `pure blue -> ${g[0]}`);
    assert.ok(Math.abs(g[1]! - (0.299 * 30 + 0.587 * 200 + 0.114 * 10) / 255) < 1e-7, `mixed -> ${g[1]}`);
    assert.throws(() => grayFromBgr({ width: 1, height: 1, channels: 1, data: new Float32Array(1) }), BadInputError);
  });
});

describe('resizeLinearU8 (OpenCV INTER_LINEAR on uint8)', () => {
  it('matches float half-pixel bilinear within 1 level for down- and up-scaling, any channel count', () => {
    for (const [sw, sh, w, h, cn] of [[37, 23, 16, 20, 3], [13, 9, 40, 31, 1], [64, 48, 50, 50, 4], [30, 30, 7, 11, 3]] as const) {
      const img: ImageU8 = { width: sw, height: sh, channels: cn, data: randomU8(sw * sh * cn, sw * 31 + sh) };
      const got = resizeLinearU8(img, w, h);
      assert.deepEqual([got.width, got.height, got.channels], [w, h, cn]);
      const ref = bilinearFloat(img, w, h);
      let maxErr = 0;
      for (let i = 0; i < ref.length; i++) maxErr = Math.max(maxErr, Math.abs(got.data[i]! - ref[i]!));
      // Fixed-point weights (1/2048) plus one rounding: never more than one level off.
      assert.ok(maxErr < 1, `${sw}x${sh}x${cn} -> ${w}x${h}: max error ${maxErr}`);
    }
  });

  it('exact 2x reduction is the rounded 2x2 mean (cv2 INTER_AREA fast path)', () => {
    const img: ImageU8 = { width: 4, height: 2, channels: 1, data: Uint8Array.from([0, 1, 10, 11, 1, 1, 20, 21]) };
    const out = resizeLinearU8(img, 2, 1);
    // (0+1+1+1+2)>>2 = 1; (10+11+20+21+2)>>2 = 16
    assert.deepEqual(Array.from(out.data), [1, 16]);
  });

  it('keeps a constant image constant and copies at the same size', () => {
    const img: ImageU8 = { width: 9, height: 7, channels: 3, data: new Uint8Array(9 * 7 * 3).fill(173) };
    for (const [w, h] of [[4, 3], [20, 15], [9, 7]] as const)
      assert.ok(resizeLinearU8(img, w, h).data.every((v) => v === 173), `${w}x${h}`);
    const same = resizeLinearU8(img, 9, 7);
    assert.notEqual(same.data, img.data, 'same-size resize returns a copy');
  });

  it('rejects malformed images and sizes', () => {
    assert.throws(() => resizeLinearU8({ width: 4, height: 4, channels: 3, data: new Uint8Array(10) }, 2, 2), BadInputError);
    assert.throws(() => resizeLinearU8({ width: 4, height: 4, channels: 1, data: new Uint8Array(16) }, 0, 2), BadInputError);
  });

  it('packBatch / imageFromBatch round trip, mixed sizes rejected', () => {
    const a = u8ToF32({ width: 2, height: 2, channels: 3, data: randomU8(12, 1) });
    const b = u8ToF32({ width: 2, height: 2, channels: 3, data: randomU8(12, 2) });
    const batch = packBatch([a, b]);
    assert.equal(batch.length, 24);
    assert.deepEqual(Array.from(imageFromBatch(batch, 1, 2, 2, 3).data), Array.from(b.data));
    assert.throws(() => packBatch([a, u8ToF32({ width: 1, height: 2, channels: 3, data: new Uint8Array(6) })]), BadInputError);
    assert.throws(() => packBatch([]), BadInputError);
    assert.throws(() => imageFromBatch(batch, 2, 2, 2, 3), BadInputError);
  });
});

describe('decodeImage (cv2.IMREAD_COLOR semantics)', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'fairline-img-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('RGB PNG -> BGR, channel order swapped', async () => {
    const rgb = Buffer.from([255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30]);
    const png = await sharp(rgb, { raw: { width: 2, height: 2, channels: 3 } }).png().toBuffer();
    const img = await decodeImage(png);
    assert.deepEqual([img.width, img.height, img.channels], [2, 2, 3]);
    assert.deepEqual(Array.from(img.data), [0, 0, 255, 0, 255, 0, 255, 0, 0, 30, 20, 10]);
  });

  it('grayscale PNG -> 3 equal channels', async () => {
    const gray = Buffer.from([0, 10, 200, 255, 77, 128]);
    const png = await sharp(gray, { raw: { width: 3, height: 2, channels: 1 } }).toColourspace('b-w').png().toBuffer();
    assert.equal((await sharp(png).metadata()).channels, 1, 'fixture really is 1-channel');
    const img = await decodeImage(png);
    assert.equal(img.channels, 3);
    assert.deepEqual(Array.from(img.data), Array.from(gray).flatMap((v) => [v, v, v]));
  });

  it('RGBA PNG -> alpha dropped without compositing', async () => {
    const rgba = Buffer.from([200, 100, 50, 0, 1, 2, 3, 128]);
    const png = await sharp(rgba, { raw: { width: 2, height: 1, channels: 4 } }).png().toBuffer();
    assert.equal((await sharp(png).metadata()).channels, 4);
    const img = await decodeImage(png);
    assert.deepEqual(Array.from(img.data), [50, 100, 200, 3, 2, 1]);
  });

  it('16-bit RGB and 16-bit gray PNGs -> 8-bit by >> 8 (as cv2)', async () => {
    const v16 = Uint16Array.from([0, 255, 256, 2996, 65535, 32895, 511, 40000, 12345, 100, 60000, 257]);
    const png = await sharp(v16, { raw: { width: 2, height: 2, channels: 3 } }).toColourspace('rgb16').png().toBuffer();
    assert.equal((await sharp(png).metadata()).depth, 'ushort', 'fixture really is 16-bit');
    const img = await decodeImage(png);
    const expected: number[] = [];
    for (let i = 0; i < 4; i++) expected.push(v16[3 * i + 2]! >> 8, v16[3 * i + 1]! >> 8, v16[3 * i]! >> 8);
    assert.deepEqual(Array.from(img.data), expected);

    const g16 = v16.subarray(0, 4);
    const gpng = await sharp(g16, { raw: { width: 2, height: 2, channels: 1 } }).toColourspace('grey16').png().toBuffer();
    const gimg = await decodeImage(gpng);
    assert.deepEqual(Array.from(gimg.data), Array.from(g16).flatMap((v) => [v >> 8, v >> 8, v >> 8]));
  });

  it('palette PNG decodes to 3-channel BGR', async () => {
    const rgb = Buffer.from([255, 0, 0, 0, 0, 255, 255, 0, 0, 0, 0, 255]);
    const png = await sharp(rgb, { raw: { width: 2, height: 2, channels: 3 } }).png({ palette: true, colours: 4, dither: 0 }).toBuffer();
    const img = await decodeImage(png);
    assert.equal(img.channels, 3);
    assert.deepEqual(Array.from(img.data.subarray(0, 6)), [0, 0, 255, 255, 0, 0]);
  });

  it('corrupt, truncated, empty, unsupported and missing inputs give BadInputError with the file name', async () => {
    const good = readFileSync(sourcePath('preprocess_test_good_04'));
    const truncated = join(dir, 'truncated.png');
    writeFileSync(truncated, good.subarray(0, Math.floor(good.length / 2)));
    await expectBadInput(decodeImage(truncated), 'corrupt_image', 'truncated.png');

    const corrupt = Buffer.from(good);
    for (let i = 200; i < 4000; i++) corrupt[i] = (corrupt[i]! * 7 + 13) & 255; // smash IDAT bytes
    const corruptPath = join(dir, 'corrupt.png');
    writeFileSync(corruptPath, corrupt);
    await expectBadInput(decodeImage(corruptPath), 'corrupt_image', 'corrupt.png');

    const empty = join(dir, 'empty.png');
    writeFileSync(empty, Buffer.alloc(0));
    await expectBadInput(decodeImage(empty), 'empty_image', 'empty.png');
    await expectBadInput(decodeImage(Buffer.alloc(0)), 'empty_image');

    const text = join(dir, 'notes.png');
    writeFileSync(text, 'this is not an image at all');
    await expectBadInput(decodeImage(text), 'unsupported_image', 'notes.png');

    await expectBadInput(decodeImage(join(dir, 'nope.png')), 'missing_image', 'nope.png');
    await expectBadInput(loadModelImage(truncated, 64), 'corrupt_image', 'truncated.png');
  });
});

describe('decodeRaw and encodePng', () => {
  it('decodeRaw converts rgb / bgr / gray / rgbx to BGR and validates the length', () => {
    const rgb = Uint8Array.from([1, 2, 3, 4, 5, 6]);
    assert.deepEqual(Array.from(decodeRaw(rgb, 2, 1, 3, 'rgb').data), [3, 2, 1, 6, 5, 4]);
    assert.deepEqual(Array.from(decodeRaw(rgb, 2, 1, 3, 'bgr').data), [1, 2, 3, 4, 5, 6]);
    assert.deepEqual(Array.from(decodeRaw(Uint8Array.from([9, 8]), 2, 1, 1, 'gray').data), [9, 9, 9, 8, 8, 8]);
    assert.deepEqual(Array.from(decodeRaw(Uint8Array.from([1, 2, 3, 0, 4, 5, 6, 0]), 2, 1, 4, 'rgb').data), [3, 2, 1, 6, 5, 4]);
    assert.throws(() => decodeRaw(rgb, 2, 2, 3, 'rgb'), (e: unknown) => e instanceof BadInputError && e.code === 'wrong_size');
    assert.throws(() => decodeRaw(rgb, 2, 1, 3, 'gray'), (e: unknown) => e instanceof BadInputError && e.code === 'unsupported_image');
  });

  it('encodePng round-trips uint8 BGR exactly and float BGR to the nearest level', async () => {
    const data = randomU8(5 * 4 * 3, 9);
    const u8: ImageU8 = { width: 5, height: 4, channels: 3, data };
    const back = await decodeImage(await encodePng(u8));
    assert.deepEqual(Array.from(back.data), Array.from(data));

    const f = u8ToF32(u8);
    f.data[0] = 1.7; // clipped to 255
    f.data[1] = -0.2; // clipped to 0
    const backF = await decodeImage(await encodePng(f));
    assert.equal(backF.data[0], 255);
    assert.equal(backF.data[1], 0);
    assert.deepEqual(Array.from(backF.data.subarray(2)), Array.from(data.subarray(2)));
  });

  it('encodePng writes the file when given a path (RGB order in the file)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fairline-png-'));
    try {
      const path = join(dir, 'out.png');
      await encodePng({ width: 1, height: 1, channels: 3, data: Uint8Array.from([10, 20, 30]) }, path);
      const { data } = await sharp(path).raw().toBuffer({ resolveWithObject: true });
      assert.deepEqual(Array.from(data), [30, 20, 10]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('swapRedBlue (BGR <-> RGB bytes)', () => {
  it('equals the per-byte swap for every length, alignment and in place', () => {
    const naive = (src: Uint8Array): Uint8Array => {
      const out = new Uint8Array(src.length);
      for (let i = 0; i < src.length; i += 3) [out[i], out[i + 1], out[i + 2]] = [src[i + 2]!, src[i + 1]!, src[i]!];
      return out;
    };
    const backing = new Uint8Array(3 * 41 + 8).map((_, i) => (i * 37 + 11) & 255);
    for (let pixels = 0; pixels <= 41; pixels++)
      for (const offset of [0, 1, 4]) {
        // Aligned (word path) and unaligned (byte path) views, lengths on and off a 4-pixel block.
        const src = backing.subarray(offset, offset + 3 * pixels);
        const dst = new Uint8Array(src.length);
        swapRedBlue(src, dst);
        assert.deepEqual(dst, naive(src), `${pixels} pixels at offset ${offset}`);
        const inPlace = src.slice();
        swapRedBlue(inPlace, inPlace);
        assert.deepEqual(inPlace, naive(src), `in place, ${pixels} pixels`);
      }
  });
});
