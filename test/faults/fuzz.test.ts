/**
 * Bad input at the system level: 1,000+ generated bad frames interleaved with good ones through
 * the real inspection graph (decode -> batch -> tiny FAIR model -> verdict, metrics hooks on), and
 * odd-but-valid images that must get real verdicts. Every frame gets exactly one verdict, every bad
 * one an `error` verdict with its reason, and `fairline_errors_total` counts them.
 *
 * Generated deterministically (seeded RNG), so a failure reproduces.
 */
import assert from 'node:assert/strict';
import { crc32 } from 'node:zlib';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { from, lastValueFrom, toArray } from 'rxjs';
import sharp, { type SharpOptions } from 'sharp';
import { createMetrics, metricsHooks } from '../../src/metrics.js';
import { useBackend } from '../../src/model/tfjs/backend.js';
import { createRng, type Rng } from '../../src/model/synthesis/rng.js';
import type { ImageF32 } from '../../src/model/types.js';
import type { DecodeFn } from '../../src/operators/decode.js';
import { inspect } from '../../src/operators/inspect.js';
import { frameDecoder, loadInspectModel, type RuntimeModel } from '../../src/runtime/model.js';
import { syntheticFrameData } from '../../src/runtime/sources.js';
import type { Frame, FramePayload } from '../../src/streams/frame.js';
import type { Verdict } from '../../src/verdict.js';
import { makeModel, tempDir } from '../runtime/fixture.js';

/** What a generated frame must turn into. */
type Expect =
  | { kind: 'error'; reasons: string[]; category: string }
  | { kind: 'real'; category: string }
  /** Damaged but possibly decodable (JPEG has no checksum): exactly one verdict, either kind. */
  | { kind: 'any'; category: string };

interface Case {
  payload: FramePayload;
  /** Frames marked `float:*` get a float image with NaN/Inf from the test decoder. */
  path?: string;
  expect: Expect;
}

const enc = (data: Uint8Array): FramePayload => ({ data, width: 0, height: 0, format: 'encoded' });
const int = (rng: Rng, lo: number, hi: number): number => Math.floor(rng.uniform(lo, hi + 1));

function noise(rng: Rng, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = int(rng, 0, 255);
  return b;
}

/** A plausible camera picture (the synthetic part) of w x h, BGR. */
function part(rng: Rng, w: number, h: number): Buffer {
  return Buffer.from(syntheticFrameData(w, h, 7, int(rng, 0, 1e6), rng.uniform() < 0.3));
}

/** Re-stamp the IHDR CRC so libpng reads the (edited) header instead of failing on its CRC. */
function fixIhdrCrc(png: Buffer): Buffer {
  png.writeUInt32BE(crc32(png.subarray(12, 29)) >>> 0, 29);
  return png;
}

/** Byte ranges [lo, hi] of the signature and of each IHDR / IDAT chunk (length, type, data, CRC). */
function criticalPngRanges(png: Buffer): Array<[number, number]> {
  const out: Array<[number, number]> = [[0, 7]];
  for (let off = 8; off + 12 <= png.length; ) {
    const len = png.readUInt32BE(off);
    const type = png.toString('latin1', off + 4, off + 8);
    if (type === 'IHDR' || type === 'IDAT') out.push([off, off + 11 + len]);
    off += 12 + len;
  }
  return out;
}

async function generate(rng: Rng): Promise<Case[]> {
  const cases: Case[] = [];
  const bad = (category: string, payload: FramePayload, reasons: string[], path?: string): void => {
    cases.push({ payload, expect: { kind: 'error', reasons, category }, ...(path ? { path } : {}) });
  };
  const pngOf = (w: number, h: number): Promise<Buffer> => sharp(part(rng, w, h), { raw: { width: w, height: h, channels: 3 } }).png().toBuffer();
  const jpgOf = (w: number, h: number): Promise<Buffer> => sharp(part(rng, w, h), { raw: { width: w, height: h, channels: 3 } }).jpeg({ quality: 85 }).toBuffer();
  const corrupt = ['corrupt_image'];

  // A pool of valid encodings to damage.
  const pngs: Buffer[] = [], jpgs: Buffer[] = [];
  for (let i = 0; i < 24; i++) {
    pngs.push(await pngOf(int(rng, 8, 80), int(rng, 8, 80)));
    jpgs.push(await jpgOf(int(rng, 8, 80), int(rng, 8, 80)));
  }
  const pick = <T>(xs: readonly T[]): T => xs[int(rng, 0, xs.length - 1)]!;

  for (let i = 0; i < 60; i++) bad('empty', enc(new Uint8Array(0)), ['bad_frame']);
  for (let i = 0; i < 130; i++) bad('random bytes', enc(noise(rng, int(rng, 1, 3000))), ['unsupported_image', 'corrupt_image']);
  for (let i = 0; i < 150; i++) {
    const p = pick(pngs);
    // Cut anywhere before the end of the pixel data (a file missing only its IEND has all pixels).
    bad('truncated png', enc(p.subarray(0, int(rng, 1, p.length - 13))), [...corrupt, 'unsupported_image']);
  }
  for (let i = 0; i < 150; i++) {
    const j = pick(jpgs);
    // Cut before the last 16 bytes: a JPEG missing only its EOI marker is (like OpenCV) accepted.
    bad('truncated jpeg', enc(j.subarray(0, int(rng, 1, j.length - 16))), [...corrupt, 'unsupported_image']);
  }
  for (let i = 0; i < 150; i++) {
    // A bit flip in the signature or a pixel-bearing chunk (IHDR, IDAT): the signature check or
    // the chunk CRC catches it. Flips in ancillary chunks (pHYs) or IEND leave the pixels intact
    // and libpng rightly ignores them, so they are not "bad" frames.
    const p = Buffer.from(pick(pngs));
    const ranges = criticalPngRanges(p);
    const [lo, hi] = pick(ranges);
    const at = int(rng, lo, hi);
    p[at] = p[at]! ^ (1 << int(rng, 0, 7));
    bad('bit-flipped png', enc(p), [...corrupt, 'unsupported_image']);
  }
  for (let i = 0; i < 50; i++) {
    const j = Buffer.from(pick(jpgs));
    j[int(rng, 0, 1)] ^= 1 << int(rng, 0, 7); // the SOI marker
    bad('bit-flipped jpeg SOI', enc(j), [...corrupt, 'unsupported_image']);
  }
  // Raw frames whose bytes do not match their claimed size or format.
  for (let i = 0; i < 150; i++) {
    const w = int(rng, 1, 70), h = int(rng, 1, 70);
    const fmt = pick(['bgr', 'rgb', 'gray'] as const);
    const need = w * h * (fmt === 'gray' ? 1 : 3);
    const variants: Array<() => FramePayload> = [
      () => ({ data: noise(rng, need + pick([-3, -1, 1, 2, need])), width: w, height: h, format: fmt }),
      () => ({ data: noise(rng, need), width: 0, height: h, format: fmt }),
      () => ({ data: noise(rng, need), width: w, height: -h, format: fmt }),
      () => ({ data: noise(rng, need), width: w + 0.5, height: h, format: fmt }),
      () => ({ data: noise(rng, need), width: Number.NaN, height: h, format: fmt }),
      () => ({ data: noise(rng, need), width: w, height: h, format: pick(['yuv', 'rgba', '']) as FramePayload['format'] }),
    ];
    bad('wrong raw size/format', pick(variants)(), ['bad_frame']);
  }
  for (let i = 0; i < 20; i++) {
    bad('payload not bytes', { data: Array.from({ length: 12 }, () => 1) as unknown as Uint8Array, width: 2, height: 2, format: 'bgr' }, ['bad_frame']);
  }
  // Huge dimensions claimed in headers over a few KB of data: must fail fast, not allocate GBs.
  const sizes = [[100000, 100000], [16000, 16000], [9000, 9000], [65535, 1], [1, 65535 * 8]] as const;
  for (let i = 0; i < 60; i++) {
    const [w, h] = sizes[i % sizes.length]!;
    if (i % 3 === 0) {
      const p = Buffer.from(pick(pngs));
      p.writeUInt32BE(w, 16);
      p.writeUInt32BE(h, 20);
      // Half with a valid header CRC (the decoder believes the size), half without.
      bad('huge png header', enc(i % 2 ? fixIhdrCrc(p) : p), [...corrupt]);
    } else if (i % 3 === 1) {
      const j = Buffer.from(pick(jpgs));
      const sof = j.indexOf(Buffer.from([0xff, 0xc0]));
      j.writeUInt16BE(Math.min(h, 65535), sof + 5);
      j.writeUInt16BE(Math.min(w, 65535), sof + 7);
      const mp = Math.min(h, 65535) * Math.min(w, 65535);
      // 65535 x 1 (or 1 x 65535) is a legal if silly size: small enough to decode.
      if (mp <= 8192 * 8192) cases.push({ payload: enc(j), expect: { kind: 'any', category: 'odd jpeg header size' } });
      else bad('huge jpeg header', enc(j), [...corrupt]);
    } else {
      bad('huge raw claim', { data: noise(rng, 12), width: w, height: h, format: 'bgr' }, ['bad_frame']);
    }
  }
  // NaN / Inf / out-of-range floats from a float-producing decoder (e.g. a 32-bit camera path).
  for (let i = 0; i < 100; i++) {
    bad('float NaN/Inf', enc(Uint8Array.of(1)), ['bad_image'], `float:${pick(['nan', 'inf', '-inf', 'range', 'negative'])}`);
  }

  // Good frames: encoded and raw pictures of the part at various sizes.
  const real = (category: string, payload: FramePayload): void => void cases.push({ payload, expect: { kind: 'real', category } });
  for (let i = 0; i < 40; i++) real('png', enc(await pngOf(int(rng, 40, 120), int(rng, 40, 120))));
  for (let i = 0; i < 30; i++) real('jpeg', enc(await jpgOf(int(rng, 40, 120), int(rng, 40, 120))));
  for (let i = 0; i < 40; i++) {
    const w = int(rng, 20, 100), h = int(rng, 20, 100);
    real('raw bgr', { data: part(rng, w, h), width: w, height: h, format: pick(['bgr', 'rgb'] as const) });
  }
  // Odd but valid: gray, gray+alpha, RGBA, 16-bit, extreme aspect ratios, raw gray.
  const odd: Array<[string, Buffer, { channels: number; depth: string }]> = [];
  for (let i = 0; i < 20; i++) {
    const w = int(rng, 1, 99) | 1, h = int(rng, 1, 99) | 1;
    const raw = (channels: 1 | 2 | 3 | 4, depth: 'uchar' | 'ushort' = 'uchar') =>
      // `depth` is missing from sharp's typings of raw input but supported (sharp docs: raw.depth).
      ({ raw: { width: w, height: h, channels, depth } as unknown as SharpOptions['raw'] });
    const g16 = new Uint16Array(w * h).map(() => int(rng, 0, 65535));
    const c16 = new Uint16Array(w * h * 3).map(() => int(rng, 0, 65535));
    // Without toColourspace sharp would write gray input as an sRGB PNG.
    odd.push(['gray png', await sharp(noise(rng, w * h), raw(1)).toColourspace('b-w').png().toBuffer(), { channels: 1, depth: 'uchar' }]);
    odd.push(['gray+alpha png', await sharp(noise(rng, w * h * 2), raw(2)).toColourspace('b-w').png().toBuffer(), { channels: 2, depth: 'uchar' }]);
    odd.push(['rgba png', await sharp(noise(rng, w * h * 4), raw(4)).png().toBuffer(), { channels: 4, depth: 'uchar' }]);
    odd.push(['16-bit gray png', await sharp(Buffer.from(g16.buffer), raw(1, 'ushort')).toColourspace('grey16').png().toBuffer(), { channels: 1, depth: 'ushort' }]);
    odd.push(['16-bit rgb png', await sharp(Buffer.from(c16.buffer), raw(3, 'ushort')).toColourspace('rgb16').png().toBuffer(), { channels: 3, depth: 'ushort' }]);
    odd.push(['tiff', await sharp(noise(rng, w * h * 3), raw(3)).tiff().toBuffer(), { channels: 3, depth: 'uchar' }]);
    real('raw gray', { data: noise(rng, w * h), width: w, height: h, format: 'gray' });
  }
  // Check that each odd image really is what it claims (a silent conversion would test nothing).
  for (const [category, bytes, want] of odd) {
    const meta = await sharp(bytes).metadata();
    assert.deepEqual({ channels: meta.channels, depth: meta.depth }, want, category);
    real(category, enc(bytes));
  }
  for (const [w, h] of [[1, 1], [1, 97], [97, 1], [3, 2000], [2000, 3]] as const) {
    real('extreme aspect png', enc(await sharp(noise(rng, w * h * 3), { raw: { width: w, height: h, channels: 3 } }).png().toBuffer()));
  }
  // Damaged JPEG scan data: no checksum, so it may decode (as with OpenCV) or not.
  for (let i = 0; i < 50; i++) {
    const j = Buffer.from(pick(jpgs));
    const sos = j.indexOf(Buffer.from([0xff, 0xda]));
    const at = int(rng, sos + 12, j.length - 3);
    j[at] = j[at]! ^ (1 << int(rng, 0, 7));
    cases.push({ payload: enc(j), expect: { kind: 'any', category: 'bit-flipped jpeg data' } });
  }

  // Interleave (Fisher-Yates with the seeded RNG).
  for (let i = cases.length - 1; i > 0; i--) {
    const k = int(rng, 0, i);
    [cases[i], cases[k]] = [cases[k]!, cases[i]!];
  }
  return cases;
}

describe('faults: bad frames through the inspection graph', function () {
  this.timeout(60000);
  let dir: string;
  let model: RuntimeModel;

  before(async () => {
    // wasm runs the tiny model ~6x faster than the pure-JS cpu backend.
    await useBackend('wasm');
    dir = tempDir('fuzz');
    makeModel(join(dir, 'model'), { threshold: 0.5 });
    model = await loadInspectModel({ dir: join(dir, 'model'), engine: 'tfjs' });
  });
  after(async () => {
    await model?.dispose();
    rmSync(dir, { recursive: true, force: true });
    await useBackend('cpu');
  });

  it('1,000+ bad frames interleaved with good ones: no crash, one verdict each, errors with reasons, counted', async () => {
    const cases = await generate(createRng('faults-fuzz'));
    const nBad = cases.filter((c) => c.expect.kind === 'error').length;
    const nReal = cases.filter((c) => c.expect.kind === 'real').length;
    assert.ok(nBad >= 1000, `only ${nBad} bad frames`);

    const base = frameDecoder(model.size);
    const s = model.size;
    // A float-producing decoder (as a 32-bit camera path would be) that returns poisoned pixels.
    const decode: DecodeFn = (f) => {
      if (!f.path?.startsWith('float:')) return base(f);
      const data = new Float32Array(s * s * 3).fill(0.5);
      const poison = { nan: Number.NaN, inf: Infinity, '-inf': -Infinity, range: 1.5, negative: -0.01 }[f.path.slice(6)]!;
      data[(f.seq * 7919) % data.length] = poison;
      return { width: s, height: s, channels: 3, data } satisfies ImageF32;
    };
    const frames: Frame[] = cases.map((c, seq) => ({ sourceId: 'fuzz', seq, captureTs: Date.now(), payload: c.payload, ...(c.path ? { path: c.path } : {}) }));
    const metrics = createMetrics(undefined, { defaultMetrics: false });

    // Warm up: the first batch creates the model's cached constants (filters, windows).
    await model.inferBatch([{ width: s, height: s, channels: 3, data: new Float32Array(s * s * 3).fill(0.5) }]);
    const tensorsBefore = tf.memory().numTensors;
    const rssBefore = process.memoryUsage().rss;
    const t0 = performance.now();
    const verdicts: Verdict[] = await lastValueFrom(
      from(frames).pipe(
        inspect({
          decode,
          model,
          threshold: model.threshold!,
          context: { line: 'FZ', station: 'S1' },
          batch: { maxSize: 8, maxWaitMs: 5 },
          mode: 'replay',
          hooks: metricsHooks(metrics),
        }),
        toArray(),
      ),
    );
    const seconds = (performance.now() - t0) / 1000;
    const rssGrowthMb = (process.memoryUsage().rss - rssBefore) / 2 ** 20;
    assert.equal(tf.memory().numTensors, tensorsBefore, 'no tensors leaked');

    // Exactly one verdict per frame.
    assert.equal(verdicts.length, frames.length);
    const bySeq = new Map<number, Verdict>();
    for (const v of verdicts) {
      assert.ok(!bySeq.has(v.seq), `two verdicts for #${v.seq}`);
      bySeq.set(v.seq, v);
    }

    const reasons = new Map<string, number>();
    let anyErrors = 0;
    cases.forEach((c, seq) => {
      const v = bySeq.get(seq)!;
      const what = `#${seq} (${c.expect.category}) -> ${v.verdict}/${v.reason ?? ''} ${v.detail ?? ''}`;
      if (c.expect.kind === 'error') {
        assert.equal(v.verdict, 'error', what);
        assert.ok(c.expect.reasons.includes(v.reason!), what);
        assert.equal(v.stage, 'decode', what);
        assert.equal(v.score, null, what);
        assert.ok(v.detail && v.detail.length > 10, `${what}: error verdicts say why`);
      } else if (c.expect.kind === 'real') {
        assert.ok(v.verdict === 'pass' || v.verdict === 'reject', what);
        assert.ok(Number.isFinite(v.score), what);
        assert.equal(v.verdict, v.score! >= model.threshold! ? 'reject' : 'pass', what);
      } else if (v.verdict === 'error') {
        anyErrors++;
        assert.ok(v.reason && v.detail, what);
      } else {
        assert.ok(Number.isFinite(v.score), what);
      }
      if (v.verdict === 'error') reasons.set(v.reason!, (reasons.get(v.reason!) ?? 0) + 1);
    });
    // Decode time of the huge-header frames on their own (verdict latency includes queueing).
    let slowest = 0;
    for (const [seq, c] of cases.entries()) {
      if (!c.expect.category.startsWith('huge')) continue;
      const t = performance.now();
      await Promise.resolve(base(frames[seq]!)).catch(() => undefined);
      slowest = Math.max(slowest, performance.now() - t);
    }

    // fairline_errors_total{stage="decode",reason} counts exactly the error verdicts.
    const counter = await metrics.errors.get();
    const fromMetrics = new Map(counter.values.map((x) => [String(x.labels.reason), x.value]));
    assert.ok(counter.values.every((x) => x.labels.stage === 'decode'));
    assert.deepEqual([...fromMetrics].sort(), [...reasons].sort());
    const total = counter.values.reduce((a, x) => a + x.value, 0);
    assert.equal(total, nBad + anyErrors);
    const processed = (await metrics.framesProcessed.get()).values.reduce((a, x) => a + x.value, 0);
    assert.equal(processed, frames.length - total);

    // A header claiming 16000 x 16000 must not cost seconds or gigabytes.
    assert.ok(slowest < 1000, `a huge-header frame took ${slowest.toFixed(0)} ms to fail`);
    assert.ok(rssGrowthMb < 600, `RSS grew ${rssGrowthMb.toFixed(0)} MB`);
    console.log(
      `      ${frames.length} frames (${nBad} bad, ${nReal} valid incl. odd formats, ${frames.length - nBad - nReal} damaged JPEG/odd headers: ${anyErrors} errors) in ${seconds.toFixed(1)} s; ` +
        `errors by reason ${JSON.stringify(Object.fromEntries(reasons))}; slowest huge-header frame ${slowest.toFixed(0)} ms; RSS +${rssGrowthMb.toFixed(0)} MB`,
    );
  });
});
