/**
 * Image resizing and pixel-format helpers on typed arrays, bit-compatible with the OpenCV
 * calls of the official FAIR code (`cv2.resize(..., INTER_LINEAR)` on uint8, `/ 255`,
 * `cv2.cvtColor(BGR2GRAY)` on float32).
 *
 * Why not sharp / canvas / tf.image: they antialias or use other rounding, and the model was
 * trained on OpenCV's exact pixels (fair-reference.md section 8). Pure functions, no I/O.
 */
import { BadInputError } from '../errors.js';
import type { ImageF32, ImageU8 } from './types.js';

/** OpenCV `INTER_RESIZE_COEF_BITS`: the uint8 path uses 11-bit fixed-point weights. */
const COEF_BITS = 11;
const COEF_SCALE = 1 << COEF_BITS; // 2048
/**
 * Lanes of OpenCV's vectorised vertical pass (`VResizeLinearVec_32s8u`) for uint8: 16 with the
 * SSE baseline opencv-python is built with. Columns below the last multiple of 16 take the SIMD
 * rounding, the tail the scalar one; the two differ by at most 1 in rare pixels.
 */
const SIMD_LANES_U8 = 16;

/** `cvRound` of a float: round half to even (lrintf). */
function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

function saturateShort(v: number): number {
  return v < -32768 ? -32768 : v > 32767 ? 32767 : v;
}

function checkImageU8(img: ImageU8, what: string): void {
  const { width, height, channels, data } = img;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1)
    throw new BadInputError('wrong_size', `${what}: bad image size ${width}x${height}`);
  if (!Number.isInteger(channels) || channels < 1 || channels > 4)
    throw new BadInputError('wrong_size', `${what}: unsupported channel count ${channels}`);
  if (data.length !== width * height * channels)
    throw new BadInputError('wrong_size', `${what}: data length ${data.length} != ${width}x${height}x${channels}`);
}

/** Per-axis tap table of OpenCV's generic linear resize (fixed-point weights, clamped offsets). */
interface AxisTaps {
  /** First source index of each destination index (before clamping of the second tap). */
  ofs: Int32Array;
  /** Weights [w0, w1] per destination index, in 1/2048 units. */
  w: Int16Array;
}

/**
 * Build the taps exactly as `cv::resize` does: `f = (float)((d + 0.5) * scale - 0.5)`, `s =
 * floor(f)`, weights `saturate_cast<short>((1 - f) * 2048)` and `f * 2048` with `f` in float32.
 * `clampWeights` reproduces the x axis, where OpenCV sets f = 0 outside the image; along y it
 * keeps f and clamps the row index instead (that is what the C++ code does).
 */
function axisTaps(src: number, dst: number, clampWeights: boolean): AxisTaps {
  const invScale = dst / src;
  const scale = 1 / invScale; // double, like OpenCV's scale_x = 1./inv_scale_x
  const ofs = new Int32Array(dst);
  const w = new Int16Array(dst * 2);
  for (let d = 0; d < dst; d++) {
    let f = Math.fround((d + 0.5) * scale - 0.5);
    let s = Math.floor(f);
    f = Math.fround(f - s);
    if (clampWeights) {
      if (s < 0) { f = 0; s = 0; }
      if (s >= src - 1) { f = 0; s = src - 1; }
    }
    ofs[d] = s;
    w[2 * d] = saturateShort(roundHalfEven(Math.fround(Math.fround(1 - f) * COEF_SCALE)));
    w[2 * d + 1] = saturateShort(roundHalfEven(Math.fround(f * COEF_SCALE)));
  }
  return { ofs, w };
}

/**
 * OpenCV's `resizeAreaFast_` for an exact 2x reduction: rounded mean of each 2x2 block. Output
 * channel c reads source byte `chan[c]` of a pixel of `stride` bytes (as {@link resizeLinearCore}),
 * so decoded RGB(A) or raw camera pixels reduce to BGR without a full-size conversion pass.
 */
function resizeArea2x(src: Uint8Array, sw: number, stride: number, chan: readonly number[], width: number, height: number): ImageU8 {
  const cn = chan.length;
  const out = new Uint8Array(width * height * cn);
  const rowStride = sw * stride;
  for (let y = 0; y < height; y++) {
    const r0 = 2 * y * rowStride;
    const r1 = r0 + rowStride;
    let o = y * width * cn;
    if (cn === 3) {
      // The common case (BGR out) unrolled: three channel reads of two pixels in two rows.
      const c0 = chan[0]!, c1 = chan[1]!, c2 = chan[2]!;
      for (let x = 0; x < width; x++) {
        const a = r0 + 2 * x * stride, b = a + stride, c = a + rowStride, d = b + rowStride;
        out[o++] = (src[a + c0]! + src[b + c0]! + src[c + c0]! + src[d + c0]! + 2) >> 2;
        out[o++] = (src[a + c1]! + src[b + c1]! + src[c + c1]! + src[d + c1]! + 2) >> 2;
        out[o++] = (src[a + c2]! + src[b + c2]! + src[c + c2]! + src[d + c2]! + 2) >> 2;
      }
      continue;
    }
    for (let x = 0; x < width; x++) {
      const p = 2 * x * stride;
      for (let c = 0; c < cn; c++) {
        const i = p + chan[c]!;
        out[o++] = (src[r0 + i]! + src[r0 + i + stride]! + src[r1 + i]! + src[r1 + i + stride]! + 2) >> 2;
      }
    }
  }
  return { width, height, channels: cn, data: out };
}

/** Pick source byte `chan[c]` of each `stride`-byte pixel (the same-size "resize"). */
function selectChannels(src: Uint8Array, n: number, stride: number, chan: readonly number[]): Uint8Array {
  const cn = chan.length;
  const out = new Uint8Array(n * cn);
  for (let i = 0, j = 0, o = 0; i < n; i++, j += stride) for (let c = 0; c < cn; c++) out[o++] = src[j + chan[c]!]!;
  return out;
}

/**
 * INTER_LINEAR (with OpenCV's 2x INTER_AREA and same-size cases) of interleaved pixels whose
 * output channel c is source byte `chan[c]` of a `stride`-byte pixel.
 */
function resizeInterleaved(src: Uint8Array, sw: number, sh: number, stride: number, chan: readonly number[], width: number, height: number): ImageU8 {
  if (sw === width && sh === height) return { width, height, channels: chan.length, data: selectChannels(src, sw * sh, stride, chan) };
  // cv::resize turns INTER_LINEAR into INTER_AREA when both scales are exactly 2.
  if (sw === 2 * width && sh === 2 * height) return resizeArea2x(src, sw, stride, chan, width, height);
  return resizeLinearCore(src, sw, sh, stride, chan, width, height);
}

/**
 * Resize a uint8 HWC image like `cv2.resize(img, (width, height), interpolation=INTER_LINEAR)`.
 *
 * Half-pixel centres, no antialiasing, border clamp, 11-bit fixed-point weights and OpenCV's
 * rounding. An exact 2x reduction takes OpenCV's INTER_AREA fast path (as cv2 itself does).
 * Any channel count 1-4 is accepted; channel order is kept.
 *
 * @example
 * const small = resizeLinearU8(decoded, 256, 256); // 512x522 BGR -> 256x256 BGR
 * @throws BadInputError('wrong_size') for a malformed image or a non-positive target size.
 */
export function resizeLinearU8(img: ImageU8, width: number, height: number): ImageU8 {
  checkImageU8(img, 'resizeLinearU8');
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1)
    throw new BadInputError('wrong_size', `resizeLinearU8: bad target size ${width}x${height}`);
  const { width: sw, height: sh, channels: cn, data: src } = img;
  if (sw === width && sh === height) return { width, height, channels: cn, data: src.slice() };
  return resizeInterleaved(src, sw, sh, cn, Array.from({ length: cn }, (_, c) => c), width, height);
}

/** Raw camera pixel orders (GStreamer appsink): RGB, BGR (3 or 4 bytes a pixel) or GRAY. */
export type RawPixelOrder = 'rgb' | 'bgr' | 'gray';

/**
 * A raw camera buffer straight to a BGR image of `width` x `height`: exactly
 * `resizeLinearU8(decodeRaw(buf, ...), width, height)` (OpenCV INTER_LINEAR), but the horizontal
 * pass reads the source pixels in place, so the full-size BGR copy is never made.
 *
 * @param channels bytes per source pixel: 1 for gray, 3 or 4 (RGBx / BGRx) for colour
 * @example
 * const small = resizeRawLinearU8(appsinkBuffer, 1280, 1024, 3, 'rgb', 256, 256); // BGR 256x256
 * @throws BadInputError('wrong_size' | 'unsupported_image') for a buffer that does not fit.
 */
export function resizeRawLinearU8(buf: Uint8Array, sw: number, sh: number, channels: number, order: RawPixelOrder, width: number, height: number): ImageU8 {
  if (!Number.isInteger(sw) || !Number.isInteger(sh) || sw < 1 || sh < 1) throw new BadInputError('wrong_size', `raw frame: bad size ${sw}x${sh}`);
  const okChannels = order === 'gray' ? channels === 1 : channels === 3 || channels === 4;
  if (!okChannels) throw new BadInputError('unsupported_image', `raw frame: ${channels} channels do not fit order '${order}'`);
  if (buf.length !== sw * sh * channels) throw new BadInputError('wrong_size', `raw frame: ${buf.length} bytes, expected ${sw}x${sh}x${channels} = ${sw * sh * channels}`);
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1)
    throw new BadInputError('wrong_size', `resizeRawLinearU8: bad target size ${width}x${height}`);
  const chan = order === 'gray' ? [0, 0, 0] : order === 'rgb' ? [2, 1, 0] : [0, 1, 2];
  return resizeInterleaved(buf, sw, sh, channels, chan, width, height);
}

/**
 * Decoded image pixels as sharp/libvips returns them (`channels` 1 = gray, 2 = gray + alpha,
 * 3 = RGB, 4 = RGBA) straight to a BGR image of `width` x `height`: exactly
 * `resizeLinearU8(decodeImage(...), width, height)` (IMREAD_COLOR's BGR, gray replicated, alpha
 * dropped, then OpenCV INTER_LINEAR), but reading the source bytes in place, so the full-size BGR
 * copy is never made (a 512x512 PNG: 0.8 M bytes swapped for nothing).
 *
 * @example
 * const { data, info } = await sharp(file).raw().toBuffer({ resolveWithObject: true });
 * const img = resizeDecodedLinearU8(data, info.width, info.height, info.channels, 256, 256); // BGR
 * @throws BadInputError('wrong_size') for a buffer that does not fit or a bad size.
 */
export function resizeDecodedLinearU8(buf: Uint8Array, sw: number, sh: number, channels: number, width: number, height: number): ImageU8 {
  if (!Number.isInteger(sw) || !Number.isInteger(sh) || sw < 1 || sh < 1) throw new BadInputError('wrong_size', `decoded image: bad size ${sw}x${sh}`);
  if (!Number.isInteger(channels) || channels < 1 || channels > 4) throw new BadInputError('wrong_size', `decoded image: unsupported channel count ${channels}`);
  if (buf.length !== sw * sh * channels) throw new BadInputError('wrong_size', `decoded image: ${buf.length} bytes, expected ${sw}x${sh}x${channels} = ${sw * sh * channels}`);
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1)
    throw new BadInputError('wrong_size', `resizeDecodedLinearU8: bad target size ${width}x${height}`);
  return resizeInterleaved(buf, sw, sh, channels, channels >= 3 ? [2, 1, 0] : [0, 0, 0], width, height);
}

/**
 * INTER_LINEAR core: output channel c of a pixel reads source byte `chan[c]` of a pixel of
 * `stride` bytes, so raw RGB/RGBx/gray buffers resize to BGR without a conversion pass.
 */
function resizeLinearCore(src: Uint8Array, sw: number, sh: number, stride: number, chan: readonly number[], width: number, height: number): ImageU8 {
  const cn = chan.length;
  const xt = axisTaps(sw, width, true);
  const yt = axisTaps(sh, height, false);
  const rowLen = width * cn;
  const alphaX = new Int32Array(rowLen * 2);
  const srcX = new Int32Array(rowLen);
  const srcX1 = new Int32Array(rowLen);
  for (let dx = 0; dx < width; dx++) {
    const s = xt.ofs[dx]!;
    const s1 = Math.min(s + 1, sw - 1); // its weight is 0 whenever s + 1 is outside
    for (let c = 0; c < cn; c++) {
      const i = dx * cn + c;
      srcX[i] = s * stride + chan[c]!;
      srcX1[i] = s1 * stride + chan[c]!;
      alphaX[2 * i] = xt.w[2 * dx]!;
      alphaX[2 * i + 1] = xt.w[2 * dx + 1]!;
    }
  }

  // Horizontal pass into int rows (OpenCV's `HResizeLinear<uchar, int, short, 2048>`), cached
  // for the two most recent source rows as OpenCV's ring buffer does.
  const rows = [new Int32Array(rowLen), new Int32Array(rowLen)];
  const rowOf = [-1, -1];
  const hrow = (sy: number): Int32Array => {
    if (rowOf[0] === sy) return rows[0]!;
    if (rowOf[1] === sy) return rows[1]!;
    const slot = rowOf[0] === -1 || rowOf[1]! > rowOf[0]! ? 0 : 1;
    const buf = rows[slot]!;
    const base = sy * sw * stride;
    for (let i = 0; i < rowLen; i++)
      buf[i] = src[base + srcX[i]!]! * alphaX[2 * i]! + src[base + srcX1[i]!]! * alphaX[2 * i + 1]!;
    rowOf[slot] = sy;
    return buf;
  };

  const out = new Uint8Array(height * rowLen);
  const simdEnd = rowLen >= SIMD_LANES_U8 ? rowLen - (rowLen % SIMD_LANES_U8) : 0;
  for (let dy = 0; dy < height; dy++) {
    const sy = yt.ofs[dy]!;
    const y0 = Math.min(Math.max(sy, 0), sh - 1);
    const y1 = Math.min(Math.max(sy + 1, 0), sh - 1);
    const b0 = yt.w[2 * dy]!;
    const b1 = yt.w[2 * dy + 1]!;
    const s0 = hrow(y0);
    const s1 = hrow(y1);
    const o = dy * rowLen;
    let x = 0;
    // VResizeLinearVec_32s8u: (S >> 4) packed to int16, mul_hi with beta, sum, (v + 2) >> 2.
    for (; x < simdEnd; x++) {
      const v = (((s0[x]! >> 4) * b0) >> 16) + (((s1[x]! >> 4) * b1) >> 16);
      const r = (v + 2) >> 2;
      out[o + x] = r < 0 ? 0 : r > 255 ? 255 : r;
    }
    // Scalar tail: FixedPtCast<int, uchar, 22> (round half up, then saturate).
    for (; x < rowLen; x++) {
      const r = Math.floor((s0[x]! * b0 + s1[x]! * b1 + (1 << 21)) / (1 << 22));
      out[o + x] = r < 0 ? 0 : r > 255 ? 255 : r;
    }
  }
  return { width, height, channels: cn, data: out };
}

/** The 256 float32 values of `v / 255` (float64 division, rounded once), for {@link u8ToF32}. */
const U8_TO_UNIT = Float32Array.from({ length: 256 }, (_, v) => v / 255);

/**
 * uint8 -> float32 in [0, 1] (`img / 255.0` in float64, stored as float32, as the official code).
 *
 * @example
 * const x = u8ToF32(resizeLinearU8(decoded, 256, 256));
 */
export function u8ToF32(img: ImageU8): ImageF32 {
  const { width, height, channels, data } = img;
  const out = new Float32Array(data.length);
  // A table of the 256 float32 values of v / 255: the same numbers as the division, without it.
  for (let i = 0; i < data.length; i++) out[i] = U8_TO_UNIT[data[i]!]!;
  return { width, height, channels, data: out };
}

const B2Y = Math.fround(0.114);
const G2Y = Math.fround(0.587);
const R2Y = Math.fround(0.299);

/**
 * Grayscale of float32 BGR pixels, `cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)` on float32:
 * 0.299 R + 0.587 G + 0.114 B with float32 coefficients and float32 arithmetic.
 *
 * Accepts one 3-channel `ImageF32` or a packed interleaved BGR `Float32Array` (any number of
 * pixels, e.g. an NHWC batch), and returns one value per pixel.
 *
 * @example
 * const gray = grayFromBgr(batch); // batch: N*S*S*3 -> N*S*S
 * @throws BadInputError('wrong_size') when the input is not 3-channel.
 */
export function grayFromBgr(src: ImageF32 | Float32Array): Float32Array {
  let data: Float32Array;
  if (src instanceof Float32Array) {
    data = src;
  } else {
    if (src.channels !== 3 || src.data.length !== src.width * src.height * 3)
      throw new BadInputError('wrong_size', `grayFromBgr: need a 3-channel image, got ${src.width}x${src.height}x${src.channels} (${src.data.length} values)`);
    data = src.data;
  }
  if (data.length % 3 !== 0)
    throw new BadInputError('wrong_size', `grayFromBgr: ${data.length} values are not whole BGR pixels`);
  const n = data.length / 3;
  const out = new Float32Array(n);
  const f = Math.fround;
  for (let i = 0, j = 0; i < n; i++, j += 3) {
    // OpenCV's SIMD order (v_fma emulated as mul + add): r*cr + (g*cg + b*cb), rounded per op.
    out[i] = f(f(data[j + 2]! * R2Y) + f(f(data[j + 1]! * G2Y) + f(data[j]! * B2Y)));
  }
  return out;
}

/**
 * Pack equally sized HWC float images into one NHWC `Float32Array`.
 *
 * @example
 * const batch = packBatch([a, b]); // 2 x 256 x 256 x 3
 * @throws BadInputError('wrong_size') for an empty list or mixed sizes.
 */
export function packBatch(images: readonly ImageF32[]): Float32Array {
  const first = images[0];
  if (!first) throw new BadInputError('wrong_size', 'packBatch: no images');
  const per = first.width * first.height * first.channels;
  const out = new Float32Array(per * images.length);
  images.forEach((img, i) => {
    if (img.width !== first.width || img.height !== first.height || img.channels !== first.channels || img.data.length !== per)
      throw new BadInputError('wrong_size', `packBatch: image ${i} is ${img.width}x${img.height}x${img.channels}, expected ${first.width}x${first.height}x${first.channels}`);
    out.set(img.data, i * per);
  });
  return out;
}

/**
 * View image `index` of an NHWC batch as an `ImageF32` (no copy: a subarray of the batch).
 *
 * @throws BadInputError('wrong_size') when the batch is too short for `index`.
 */
export function imageFromBatch(batch: Float32Array, index: number, width: number, height: number, channels: number): ImageF32 {
  const per = width * height * channels;
  if (!Number.isInteger(index) || index < 0 || (index + 1) * per > batch.length)
    throw new BadInputError('wrong_size', `imageFromBatch: image ${index} of ${width}x${height}x${channels} is outside a batch of ${batch.length} values`);
  return { width, height, channels, data: batch.subarray(index * per, (index + 1) * per) };
}
