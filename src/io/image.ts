/**
 * Image files and camera buffers -> typed-array images, the way the official FAIR code reads
 * them (`cv2.imread(path, IMREAD_COLOR)` -> `cv2.resize` INTER_LINEAR -> `/ 255`).
 *
 * sharp (libvips) only decodes and encodes here. Its resizer antialiases and would change the
 * pixels the model sees, so resizing is `resizeLinearU8` (OpenCV-exact) from src/model/resize.ts.
 *
 * Decoding follows `IMREAD_COLOR`: always 3 channels in **BGR** order, gray replicated, alpha
 * dropped (not composited), 16-bit reduced with `>> 8`, EXIF orientation applied, embedded ICC
 * profiles ignored (OpenCV ignores them).
 */
import { readFile, writeFile } from 'node:fs/promises';
import { basename } from 'node:path';
import sharp from 'sharp';
import { BadInputError } from '../errors.js';
import { resizeDecodedLinearU8, resizeLinearU8, u8ToF32 } from '../model/resize.js';
import type { ImageF32, ImageU8 } from '../model/types.js';

// Decoded pixels are used once; libvips' operation cache would only hold memory.
sharp.cache(false);

/**
 * Largest accepted input in pixels: 64 Mi px (8192 x 8192, above an 8K or 48 MP camera frame).
 * JPEG has no checksum: a corrupt SOF header claiming 16000 x 16000 over a few KB of data decodes
 * "fine" (libjpeg only warns and fills gray) and, at sharp's default limit (16383^2), cost 5.7 s
 * and 1.6 GB RSS for one frame here (test/faults/fuzz.test.ts). This bound keeps one decode under
 * ~200 MB; raise it for larger sensors.
 */
const MAX_PIXELS = 8192 * 8192;

/** A short name for error messages: the file's base name, or `<buffer>`. */
function nameOf(input: string | Buffer): string {
  return typeof input === 'string' ? basename(input) : '<buffer>';
}

async function readInput(input: string | Buffer): Promise<Buffer> {
  if (typeof input !== 'string') return input;
  try {
    return await readFile(input);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new BadInputError('missing_image', `image file not found: ${input}`, { cause: err });
    throw new BadInputError('unreadable_image', `cannot read image ${input}: ${(err as Error).message}`, { cause: err });
  }
}

/** Map a sharp/libvips failure to a typed error with a stable code. */
function decodeError(name: string, err: unknown): BadInputError {
  const msg = err instanceof Error ? err.message : String(err);
  if (/unsupported image format/i.test(msg))
    return new BadInputError('unsupported_image', `${name}: not a supported image format (${msg})`, { cause: err });
  if (/empty/i.test(msg)) return new BadInputError('empty_image', `${name}: empty image (${msg})`, { cause: err });
  return new BadInputError('corrupt_image', `${name}: corrupt or truncated image (${msg})`, { cause: err });
}

/** Decoded pixels with the channel count sharp produced (1-4, RGB(A) or gray(+alpha)). */
async function decodeNative(input: string | Buffer): Promise<{ name: string; width: number; height: number; channels: number; data: Buffer }> {
  const name = nameOf(input);
  const buf = await readInput(input);
  if (buf.length === 0) throw new BadInputError('empty_image', `${name}: empty input (0 bytes)`);
  try {
    // failOn 'error': reject truncated/corrupt data but, like OpenCV, accept files that only
    // trigger decoder warnings. raw() without a depth gives uchar; for 16-bit input libvips
    // reduces with >> 8, which is what cv2.IMREAD_COLOR does.
    const { data, info } = await sharp(buf, { failOn: 'error', ignoreIcc: true, autoOrient: true, limitInputPixels: MAX_PIXELS })
      .raw()
      .toBuffer({ resolveWithObject: true });
    if (info.width < 1 || info.height < 1) throw new BadInputError('empty_image', `${name}: image has no pixels`);
    return { name, width: info.width, height: info.height, channels: info.channels, data };
  } catch (err) {
    if (err instanceof BadInputError) throw err;
    throw decodeError(name, err);
  }
}

/**
 * Decode an image file or encoded buffer (PNG, JPEG, TIFF, WebP, ...) like
 * `cv2.imread(path, cv2.IMREAD_COLOR)`: 3-channel BGR uint8, HWC.
 *
 * @example
 * const img = await decodeImage('data/hazelnut_toy/hazelnut/test/good/04.png'); // 512x512x3 BGR
 * @throws BadInputError with code 'corrupt_image' (corrupt or truncated), 'empty_image',
 *   'unsupported_image' (not an image format libvips knows), 'missing_image' (no such file);
 *   the message names the file.
 */
export async function decodeImage(input: string | Buffer): Promise<ImageU8> {
  const { width, height, channels, data } = await decodeNative(input);
  const n = width * height;
  const out = new Uint8Array(n * 3);
  if (channels >= 3) {
    // RGB or RGBA -> BGR, alpha dropped without compositing (as OpenCV).
    for (let i = 0, j = 0, o = 0; i < n; i++, j += channels, o += 3) {
      out[o] = data[j + 2]!;
      out[o + 1] = data[j + 1]!;
      out[o + 2] = data[j]!;
    }
  } else {
    // Gray or gray + alpha: replicate the gray value (IMREAD_COLOR makes gray images 3-channel).
    for (let i = 0, j = 0, o = 0; i < n; i++, j += channels, o += 3) {
      const v = data[j]!;
      out[o] = v;
      out[o + 1] = v;
      out[o + 2] = v;
    }
  }
  return { width, height, channels: 3, data: out };
}

/** Channel layouts a camera frame may arrive in. */
export type RawOrder = 'rgb' | 'bgr' | 'gray';

/**
 * Wrap an uncompressed camera frame as a 3-channel BGR image. `channels` is 3 or 4 for 'rgb' /
 * 'bgr' (a 4th channel, e.g. RGBx, is dropped) and 1 for 'gray' (replicated).
 *
 * @example
 * const img = decodeRaw(frameBuffer, 1280, 1024, 3, 'rgb');
 * @throws BadInputError('wrong_size') when the buffer length is not width*height*channels,
 *   BadInputError('unsupported_image') for an order/channels combination that makes no sense.
 */
export function decodeRaw(buf: Uint8Array, width: number, height: number, channels: number, order: RawOrder): ImageU8 {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1)
    throw new BadInputError('wrong_size', `raw frame: bad size ${width}x${height}`);
  const okChannels = order === 'gray' ? channels === 1 : channels === 3 || channels === 4;
  if (!okChannels) throw new BadInputError('unsupported_image', `raw frame: ${channels} channels do not fit order '${order}'`);
  const n = width * height;
  if (buf.length !== n * channels)
    throw new BadInputError('wrong_size', `raw frame: ${buf.length} bytes, expected ${width}x${height}x${channels} = ${n * channels}`);
  const out = new Uint8Array(n * 3);
  for (let i = 0, j = 0, o = 0; i < n; i++, j += channels, o += 3) {
    if (order === 'gray') {
      const v = buf[j]!;
      out[o] = v; out[o + 1] = v; out[o + 2] = v;
    } else if (order === 'rgb') {
      out[o] = buf[j + 2]!; out[o + 1] = buf[j + 1]!; out[o + 2] = buf[j]!;
    } else {
      out[o] = buf[j]!; out[o + 1] = buf[j + 1]!; out[o + 2] = buf[j + 2]!;
    }
  }
  return { width, height, channels: 3, data: out };
}

/**
 * The model's view of an image: decode -> OpenCV INTER_LINEAR resize to size x size -> / 255.
 * Float32 HWC BGR in [0, 1].
 *
 * @example
 * const x = await loadModelImage('train/good/01.png', 256); // 256x256x3
 * @throws BadInputError as `decodeImage`.
 */
export async function loadModelImage(input: string | Buffer, size: number): Promise<ImageF32> {
  return (await decodeModelImage(input, size)).image;
}

/**
 * {@link loadModelImage} with the size of the image before resizing and the model-size 8-bit BGR
 * image (`bytes`, before the / 255): the same pixels (decode -> BGR -> OpenCV INTER_LINEAR ->
 * / 255), but the resize reads libvips' RGB(A) / gray output in place, so the full-size BGR copy
 * of {@link decodeImage} is never made.
 *
 * @example
 * const { image, sourceWidth, sourceHeight } = await decodeModelImage(pngBytes, 256);
 * @throws BadInputError as `decodeImage`.
 */
export async function decodeModelImage(input: string | Buffer, size: number): Promise<{ image: ImageF32; bytes: ImageU8; sourceWidth: number; sourceHeight: number }> {
  const { width, height, channels, data } = await decodeNative(input);
  const bytes = resizeDecodedLinearU8(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width, height, channels, size, size);
  return { image: u8ToF32(bytes), bytes, sourceWidth: width, sourceHeight: height };
}

/**
 * A ground-truth mask as the official evaluation reads it: `cv2.imread(path, IMREAD_GRAYSCALE)`,
 * the same INTER_LINEAR resize (edges become fractional), `/ 255`. Values in [0, 1], size*size.
 * A colour mask is converted with OpenCV's fixed-point RGB2GRAY weights (cv2's own PNG reader
 * may differ by one level there; masks in MVTec/VisA are 1-channel, where this is exact).
 *
 * @example
 * const m = await loadMask('ground_truth/colour/02_mask.png', 256);
 * @throws BadInputError as `decodeImage`.
 */
export async function loadMask(input: string | Buffer, size: number): Promise<Float32Array> {
  return (await loadMaskSized(input, size)).mask;
}

/**
 * {@link loadMask} with the mask file's own size (to check that it lines up with its image),
 * from the same single decode.
 * @example
 * const { mask, width, height } = await loadMaskSized('ground_truth/colour/02_mask.png', 256);
 * @throws BadInputError as `decodeImage`.
 */
export async function loadMaskSized(input: string | Buffer, size: number): Promise<{ mask: Float32Array; width: number; height: number }> {
  const { width, height, channels, data } = await decodeNative(input);
  const n = width * height;
  // A gray mask (MVTec, VisA) is resized as libvips decoded it; others are converted first.
  let gray = new Uint8Array(data.buffer, data.byteOffset, n);
  if (channels >= 3) {
    gray = new Uint8Array(n);
    // cv2 RGB2GRAY for uint8: (R*4899 + G*9617 + B*1868 + 2^13) >> 14.
    for (let i = 0, j = 0; i < n; i++, j += channels)
      gray[i] = (data[j]! * 4899 + data[j + 1]! * 9617 + data[j + 2]! * 1868 + 8192) >> 14;
  } else if (channels === 2) {
    gray = new Uint8Array(n);
    for (let i = 0, j = 0; i < n; i++, j += channels) gray[i] = data[j]!;
  }
  const resized = resizeLinearU8({ width, height, channels: 1, data: gray }, size, size);
  return { mask: u8ToF32(resized).data, width, height };
}

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * BGR <-> RGB of 8-bit pixels, `src` into `dst` (same length, a multiple of 3). Four pixels at a
 * time as three little-endian 32-bit words (the bytes move with shifts and masks: 6 memory
 * accesses per 4 pixels instead of 24), when both arrays are 4-byte aligned; bytes otherwise.
 * An eval picture is ~1 MB: 1 ms instead of ~4 (V8 11).
 */
export function swapRedBlue(src: Uint8Array, dst: Uint8Array): void {
  const n = src.length;
  let i = 0;
  if (LITTLE_ENDIAN && src.byteOffset % 4 === 0 && dst.byteOffset % 4 === 0 && n >= 12) {
    const words = Math.floor(n / 12) * 3;
    const s = new Uint32Array(src.buffer, src.byteOffset, words), d = new Uint32Array(dst.buffer, dst.byteOffset, words);
    // In: w0 = b0 g0 r0 b1, w1 = g1 r1 b2 g2, w2 = r2 b3 g3 r3 (low byte first); out: r0 g0 b0 r1, g1 b1 r2 g2, b2 r3 g3 b3.
    for (let k = 0; k < words; k += 3) {
      const w0 = s[k]!, w1 = s[k + 1]!, w2 = s[k + 2]!;
      d[k] = ((w0 >>> 16) & 0xff) | (w0 & 0xff00) | ((w0 & 0xff) << 16) | ((w1 & 0xff00) << 16);
      d[k + 1] = (w1 & 0xff) | ((w0 >>> 24) << 8) | ((w2 & 0xff) << 16) | (w1 & 0xff000000);
      d[k + 2] = ((w1 >>> 16) & 0xff) | ((w2 >>> 24) << 8) | (w2 & 0xff0000) | ((w2 & 0xff00) << 16);
    }
    i = words * 4;
  }
  for (; i < n; i += 3) {
    const b = src[i]!;
    dst[i] = src[i + 2]!;
    dst[i + 1] = src[i + 1]!;
    dst[i + 2] = b;
  }
}

/** The 8-bit RGB (or gray) pixels of an image for an encoder: BGR -> RGB, floats clipped to [0, 1] and rounded. */
function filePixels(img: ImageU8 | ImageF32, what: string): ReturnType<typeof sharp> {
  const { width, height, channels, data } = img;
  if (channels !== 1 && channels !== 3) throw new BadInputError('unsupported_image', `${what}: ${channels} channels (need 1 or 3)`);
  if (data.length !== width * height * channels)
    throw new BadInputError('wrong_size', `${what}: data length ${data.length} != ${width}x${height}x${channels}`);
  const px = new Uint8Array(data.length);
  if (data instanceof Float32Array && channels === 3) {
    // The common case, unrolled (pictures are made per reject on a station): clip, round, BGR -> RGB; NaN -> 0.
    // `(v * 255 + 0.5) | 0` is Math.round for a float32 v in (0, 1) (exact in float64), ~4x cheaper.
    const q = (v: number): number => (v > 0 ? (v < 1 ? (v * 255 + 0.5) | 0 : 255) : 0);
    for (let i = 0; i < data.length; i += 3) {
      px[i] = q(data[i + 2]!);
      px[i + 1] = q(data[i + 1]!);
      px[i + 2] = q(data[i]!);
    }
  } else if (channels === 3) {
    // 8-bit BGR (eval pictures are drawn in bytes): the channel swap only.
    swapRedBlue(data as Uint8Array, px);
  } else {
    // One channel (gray).
    const isFloat = data instanceof Float32Array;
    for (let i = 0; i < data.length; i++) {
      const v = data[i]!;
      px[i] = isFloat ? Math.round(Math.min(1, Math.max(0, Number.isNaN(v) ? 0 : v)) * 255) : v;
    }
  }
  return sharp(px, { raw: { width, height, channels } }).toColourspace(channels === 1 ? 'b-w' : 'srgb');
}

/**
 * Encode an image as PNG (BGR -> RGB for the file; 1-channel stays gray). Float images are
 * clipped to [0, 1] and rounded to 8 bits. Writes `path` when given; always returns the bytes.
 * `compressionLevel`: zlib level 0-9 (default sharp's 6; lower is faster, same pixels).
 *
 * @example
 * await encodePng(restored, 'out/restored.png');
 * await encodePng(picture, 'pictures/x.png', { compressionLevel: 3 });
 */
export async function encodePng(img: ImageU8 | ImageF32, path?: string, opts: { compressionLevel?: number } = {}): Promise<Buffer> {
  const png = await filePixels(img, 'encodePng').png(opts.compressionLevel !== undefined ? { compressionLevel: opts.compressionLevel } : {}).toBuffer();
  if (path) await writeFile(path, png);
  return png;
}

/**
 * Encode an image as JPEG, like {@link encodePng} otherwise: a fifth of the bytes and half the
 * time of a PNG for pictures that are only looked at (the operator page's heatmaps).
 */
export async function encodeJpeg(img: ImageU8 | ImageF32, quality = 85): Promise<Buffer> {
  return filePixels(img, 'encodeJpeg').jpeg({ quality }).toBuffer();
}

/** A frame's picture as a file: bytes, file extension and MIME type. */
export interface FramePicture {
  data: Buffer;
  ext: 'png' | 'jpg';
  type: 'image/png' | 'image/jpeg';
}

/**
 * A camera frame at its source resolution as an image file, for reject capture and the operator
 * page: PNG and JPEG payloads unchanged (no second compression), other encoded formats and raw
 * rgb / bgr / gray pixels as lossless PNG. The channel swap and the compression run in libvips'
 * threads, not on the event loop.
 *
 * @example
 * const pic = await encodeFramePicture(frame.payload); // { data, ext: 'png', type: 'image/png' }
 * @throws BadInputError for a payload that is neither a known raw format of the right size nor a decodable image.
 */
export async function encodeFramePicture(p: { data: Uint8Array; width: number; height: number; format: string }): Promise<FramePicture> {
  const buf = Buffer.from(p.data.buffer, p.data.byteOffset, p.data.byteLength);
  if (p.format === 'encoded') {
    if (buf.length >= 8 && buf.readUInt32BE(0) === 0x89504e47) return { data: buf, ext: 'png', type: 'image/png' };
    if (buf.length >= 3 && buf[0] === 0xff && buf[1] === 0xd8 && buf[2] === 0xff) return { data: buf, ext: 'jpg', type: 'image/jpeg' };
    try {
      const data = await sharp(buf, { failOn: 'error', limitInputPixels: MAX_PIXELS }).png().toBuffer();
      return { data, ext: 'png', type: 'image/png' };
    } catch (err) {
      throw decodeError('<frame>', err);
    }
  }
  const channels = p.format === 'gray' ? 1 : p.format === 'rgb' || p.format === 'bgr' ? 3 : 0;
  if (channels === 0) throw new BadInputError('unsupported_image', `frame picture: unknown format '${p.format}'`);
  if (!(p.width > 0 && p.height > 0) || buf.length !== p.width * p.height * channels)
    throw new BadInputError('wrong_size', `frame picture: ${buf.length} bytes for ${p.format} ${p.width}x${p.height}`);
  let img = sharp(buf, { raw: { width: p.width, height: p.height, channels: channels as 1 | 3 } });
  if (p.format === 'bgr') img = img.recomb([[0, 0, 1], [0, 1, 0], [1, 0, 0]]);
  const data = await img.toColourspace(channels === 1 ? 'b-w' : 'srgb').png().toBuffer();
  return { data, ext: 'png', type: 'image/png' };
}
