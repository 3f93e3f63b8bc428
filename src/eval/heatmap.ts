/**
 * Pictures for evaluation reports, on typed arrays (no canvas, no fonts): a JET colour map for
 * anomaly maps, a blend of the map over the input (as the official `--saveimages` pictures do), a
 * threshold contour, a tiny 5x7 bitmap font for panel titles, and side-by-side composition.
 *
 * All images are `ImageF32` (HWC, BGR, [0, 1]) like the rest of fairline, so `encodePng` from
 * src/io/image.ts writes them unchanged.
 */
import { BadInputError } from '../errors.js';
import type { ImageF32, ImageU8 } from '../model/types.js';

/** A colour as [b, g, r] in [0, 1] (fairline's channel order). */
export type Bgr = readonly [number, number, number];

export const WHITE: Bgr = [1, 1, 1];
export const BLACK: Bgr = [0, 0, 0];
export const RED: Bgr = [0.15, 0.15, 0.9];
export const GREEN: Bgr = [0.2, 0.7, 0.2];

const clamp01 = (v: number): number => (v < 0 ? 0 : v > 1 ? 1 : v);

/**
 * The 8-bit value a float picture value becomes in its file: stored as float32, clipped to
 * [0, 1], `round(v * 255)`, NaN -> 0 (as `encodePng` / {@link toU8} quantise). The 8-bit drawing
 * functions below write exactly these bytes, so an 8-bit picture equals its float twin's file.
 */
export function toByte(v: number): number {
  const f = Math.fround(v);
  // (f * 255 + 0.5) | 0 is Math.round here, and ~4x cheaper in V8: f is a float32, so f * 255 and
  // the + 0.5 are exact in float64 and the truncation of a positive value is the floor.
  return f > 0 ? (f < 1 ? (f * 255 + 0.5) | 0 : 255) : 0;
}

/** Colour values for an image's storage: floats as given, bytes quantised like {@link toByte}. */
function inkOf(img: ImageF32 | ImageU8, colour: Bgr): readonly number[] {
  return img.data instanceof Uint8Array ? colour.map(toByte) : colour;
}

/**
 * JET colour map (blue -> cyan -> yellow -> red), the map OpenCV's COLORMAP_JET and the official
 * FAIR pictures use, as the usual piecewise-linear formula.
 * @param t value in [0, 1] (clamped)
 * @returns [b, g, r] in [0, 1]
 * @example
 * jet(0); // [0.5, 0, 0] dark blue;  jet(1); // [0, 0, 0.5] dark red
 */
export function jet(t: number): [number, number, number] {
  const v = clamp01(Number.isFinite(t) ? t : 0);
  const r = clamp01(1.5 - Math.abs(4 * v - 3));
  const g = clamp01(1.5 - Math.abs(4 * v - 2));
  const b = clamp01(1.5 - Math.abs(4 * v - 1));
  return [b, g, r];
}

/**
 * How a heatmap is normalised. Without `centre`: min-max, `lo` -> 0, `hi` -> 1. With `centre`
 * (a threshold strictly between `lo` and `hi`): piecewise linear, `lo` -> 0 (dark blue),
 * `centre` -> 0.5 (green), `hi` -> 1 (dark red), so the threshold is always the same colour,
 * everything below it is blue-cyan and everything above it yellow-red, each side using its full
 * half of the scale (a single linear scale would spend most colours on the strongest defect).
 */
export interface HeatRange {
  lo: number;
  hi: number;
  centre?: number;
}

/** The [0, 1] colour-scale position of `v` under `range` (clamped). */
export function heatPosition(v: number, range: HeatRange): number {
  const { lo, hi, centre } = range;
  let t: number;
  if (centre !== undefined && centre > lo && centre < hi) {
    t = v < centre ? (0.5 * (v - lo)) / (centre - lo) : 0.5 + (0.5 * (v - centre)) / (hi - centre);
  } else {
    t = (v - lo) / (hi - lo || 1);
  }
  return clamp01(t);
}

/**
 * Min and max over a set of maps (ignoring non-finite values): the per-category range that makes
 * heatmaps of one category comparable with each other. A flat set gets `hi = lo + 1e-12`.
 */
export function mapsRange(maps: Iterable<ArrayLike<number>>): HeatRange {
  let lo = Infinity, hi = -Infinity;
  for (const m of maps) {
    for (let i = 0; i < m.length; i++) {
      const v = m[i]!;
      if (!Number.isFinite(v)) continue;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  }
  if (lo === Infinity) return { lo: 0, hi: 1 };
  return { lo, hi: hi > lo ? hi : lo + 1e-12 };
}

/** `range` anchored at `threshold` (its `centre`) when the threshold lies strictly inside it; else plain min-max. */
export function anchorAt(range: HeatRange, threshold: number | null | undefined): HeatRange {
  const { lo, hi } = range;
  return threshold !== null && threshold !== undefined && threshold > lo && threshold < hi ? { lo, hi, centre: threshold } : { lo, hi };
}

function checkMap(map: ArrayLike<number>, width: number, height: number, what: string): void {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1 || map.length !== width * height) {
    throw new BadInputError('bad_map', `${what}: ${map.length} values do not make a ${width}x${height} map`);
  }
}

/**
 * Colour an anomaly map with {@link jet} after normalising it to `range`.
 * @example
 * const heat = heatmapImage(map, 256, 256, mapsRange(allMaps)); // ImageF32 BGR
 */
export function heatmapImage(map: ArrayLike<number>, width: number, height: number, range: HeatRange): ImageF32 {
  checkMap(map, width, height, 'heatmapImage');
  const data = new Float32Array(width * height * 3);
  for (let i = 0; i < width * height; i++) {
    const [b, g, r] = jet(heatPosition(map[i]!, range));
    data[3 * i] = b;
    data[3 * i + 1] = g;
    data[3 * i + 2] = r;
  }
  return { width, height, channels: 3, data };
}

/**
 * Blend `top` over `base`: `(1 - alpha) * base + alpha * top`. Both HWC with 3 channels, same size.
 * @example
 * const picture = overlay(input, heatmapImage(map, 256, 256, range), 0.5);
 */
export function overlay(base: ImageF32, top: ImageF32, alpha = 0.5): ImageF32 {
  if (base.width !== top.width || base.height !== top.height || base.channels !== 3 || top.channels !== 3) {
    throw new BadInputError('wrong_size', `overlay: ${base.width}x${base.height}x${base.channels} and ${top.width}x${top.height}x${top.channels} differ`);
  }
  const data = new Float32Array(base.data.length);
  for (let i = 0; i < data.length; i++) data[i] = clamp01((1 - alpha) * base.data[i]! + alpha * top.data[i]!);
  return { width: base.width, height: base.height, channels: 3, data };
}

/**
 * Draw the outline of `map >= threshold` (the pixels a reject verdict reports as defect regions,
 * see `defectRegions` in src/verdict.ts) onto `img`, in place: a region pixel with a 4-neighbour
 * outside the region (or on the border) gets `colour`.
 * @returns the number of outline pixels drawn
 */
export function drawContour(img: ImageF32 | ImageU8, map: ArrayLike<number>, threshold: number, colour: Bgr = WHITE): number {
  const { width: w, height: h } = img;
  checkMap(map, w, h, 'drawContour');
  if (!Number.isFinite(threshold)) return 0;
  const ink = inkOf(img, colour);
  // The region once as bytes; a pixel is on the outline when a 4-neighbour is outside (or off the image).
  const inside = new Uint8Array(w * h);
  for (let i = 0; i < w * h; i++) inside[i] = map[i]! >= threshold ? 1 : 0;
  let n = 0;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = y * w + x;
      if (!inside[i]) continue;
      if (x > 0 && x < w - 1 && y > 0 && y < h - 1 && inside[i - 1] && inside[i + 1] && inside[i - w] && inside[i + w]) continue;
      const o = (y * w + x) * img.channels;
      for (let c = 0; c < 3; c++) img.data[o + c] = ink[c]!;
      n++;
    }
  }
  return n;
}

/**
 * The heatmap overlay of eval's pictures and of the operator page's reject cards: `map` coloured
 * with {@link jet} under `range`, blended half over `input` (same size), with the outline of
 * `map >= threshold` (the reject verdict's defect regions) in white.
 * @example
 * const pic = heatOverlay(input, map, anchorAt(mapsRange([map]), 0.42), 0.42);
 */
export function heatOverlay(input: ImageF32, map: ArrayLike<number>, range: HeatRange, threshold: number | null): ImageF32 {
  const { width, height } = input;
  checkMap(map, width, height, 'heatOverlay');
  if (input.channels !== 3) throw new BadInputError('wrong_size', `heatOverlay: input has ${input.channels} channels, need 3`);
  // overlay(input, heatmapImage(map, ...), 0.5) in one pass (the page renders a card per reject):
  // the same arithmetic, the colour rounded to float32 as heatmapImage stores it, no intermediate image.
  const src = input.data;
  const data = new Float32Array(width * height * 3);
  for (let i = 0, o = 0; i < width * height; i++, o += 3) {
    const p = heatPosition(map[i]!, range);
    const v = Number.isFinite(p) ? p : 0; // as jet()
    const r = Math.fround(clamp01(1.5 - Math.abs(4 * v - 3)));
    const g = Math.fround(clamp01(1.5 - Math.abs(4 * v - 2)));
    const b = Math.fround(clamp01(1.5 - Math.abs(4 * v - 1)));
    data[o] = clamp01(0.5 * src[o]! + 0.5 * b);
    data[o + 1] = clamp01(0.5 * src[o + 1]! + 0.5 * g);
    data[o + 2] = clamp01(0.5 * src[o + 2]! + 0.5 * r);
  }
  const heat: ImageF32 = { width, height, channels: 3, data };
  if (threshold !== null) drawContour(heat, map, threshold, WHITE);
  return heat;
}

/**
 * {@link heatOverlay} on an 8-bit input, giving the 8-bit picture: byte for byte
 * `toU8(heatOverlay(toF32(input), map, range, threshold))`, without the float images (eval
 * writes one per test image).
 */
export function heatOverlayU8(input: ImageU8, map: ArrayLike<number>, range: HeatRange, threshold: number | null): ImageU8 {
  const { width, height } = input;
  checkMap(map, width, height, 'heatOverlayU8');
  if (input.channels !== 3) throw new BadInputError('wrong_size', `heatOverlayU8: input has ${input.channels} channels, need 3`);
  const src = input.data;
  const data = new Uint8Array(width * height * 3);
  // heatPosition and jet inlined (the same float64 operations), the range's case decided once.
  const { lo, hi, centre } = range;
  const anchored = centre !== undefined && centre > lo && centre < hi;
  const c = centre ?? 0;
  const span = hi - lo || 1;
  for (let i = 0, o = 0; i < width * height; i++, o += 3) {
    const m = map[i]!;
    let t = anchored ? (m < c ? (0.5 * (m - lo)) / (c - lo) : 0.5 + (0.5 * (m - c)) / (hi - c)) : (m - lo) / span;
    t = t < 0 ? 0 : t > 1 ? 1 : t; // NaN stays NaN here ...
    const v = t === t ? t : 0; // ... and becomes 0, as in jet()
    const r = Math.fround(clamp01(1.5 - Math.abs(4 * v - 3)));
    const g = Math.fround(clamp01(1.5 - Math.abs(4 * v - 2)));
    const b = Math.fround(clamp01(1.5 - Math.abs(4 * v - 1)));
    // The float path's input is the byte / 255 in float32 (toF32); the blend is in [0, 1] already.
    // Rounded as toByte does (its `| 0` in place of Math.round: exact on float32 values).
    data[o] = (Math.fround(0.5 * U8_UNIT[src[o]!]! + 0.5 * b) * 255 + 0.5) | 0;
    data[o + 1] = (Math.fround(0.5 * U8_UNIT[src[o + 1]!]! + 0.5 * g) * 255 + 0.5) | 0;
    data[o + 2] = (Math.fround(0.5 * U8_UNIT[src[o + 2]!]! + 0.5 * r) * 255 + 0.5) | 0;
  }
  const heat: ImageU8 = { width, height, channels: 3, data };
  if (threshold !== null) drawContour(heat, map, threshold, WHITE);
  return heat;
}

/** v / 255 as float32, as {@link toF32} stores it. */
const U8_UNIT = Float32Array.from({ length: 256 }, (_, v) => v / 255);

/** {@link maskImage} as 8-bit (the bytes `toU8(maskImage(...))` has). */
export function maskImageU8(mask: ArrayLike<number>, width: number, height: number): ImageU8 {
  checkMap(mask, width, height, 'maskImageU8');
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < width * height; i++) {
    const v = toByte(clamp01(mask[i]!));
    data[3 * i] = v;
    data[3 * i + 1] = v;
    data[3 * i + 2] = v;
  }
  return { width, height, channels: 3, data };
}

/** {@link solidImage} as 8-bit. */
export function solidImageU8(width: number, height: number, colour: Bgr): ImageU8 {
  const data = new Uint8Array(width * height * 3);
  const [b, g, r] = colour.map(toByte) as [number, number, number];
  if (data.length === 0) return { width, height, channels: 3, data };
  data[0] = b;
  data[1] = g;
  data[2] = r;
  // Doubling copies of the filled prefix: log2(pixels) native copies instead of a loop per pixel.
  for (let filled = 3; filled < data.length; filled *= 2) data.copyWithin(filled, 0, Math.min(filled, data.length - filled));
  return { width, height, channels: 3, data };
}

/** A 1-channel mask in [0, 1] as a gray 3-channel image. */
export function maskImage(mask: ArrayLike<number>, width: number, height: number): ImageF32 {
  checkMap(mask, width, height, 'maskImage');
  const data = new Float32Array(width * height * 3);
  for (let i = 0; i < width * height; i++) {
    const v = clamp01(mask[i]!);
    data[3 * i] = v;
    data[3 * i + 1] = v;
    data[3 * i + 2] = v;
  }
  return { width, height, channels: 3, data };
}

/** A plain image of one colour. */
export function solidImage(width: number, height: number, colour: Bgr): ImageF32 {
  const data = new Float32Array(width * height * 3);
  for (let i = 0; i < width * height; i++) {
    data[3 * i] = colour[0];
    data[3 * i + 1] = colour[1];
    data[3 * i + 2] = colour[2];
  }
  return { width, height, channels: 3, data };
}

/**
 * A picture and its anomaly map `factor` times smaller, for thumbnails: the image averaged over
 * `factor` x `factor` blocks, the map reduced to each block's maximum (so a defect smaller than a
 * block still shows, and `map >= threshold` still outlines every defect region). Edges that do
 * not fill a block are cut.
 * @example
 * const small = shrink(input, map, 2); // 256 px -> 128 px
 * const thumb = heatOverlay(small.image, small.map, range, threshold);
 */
export function shrink(img: ImageF32, map: ArrayLike<number>, factor: number): { image: ImageF32; map: Float32Array } {
  checkMap(map, img.width, img.height, 'shrink');
  const f = Math.max(1, Math.floor(factor));
  const W = img.width;
  const w = Math.max(1, Math.floor(W / f)), h = Math.max(1, Math.floor(img.height / f));
  const c = img.channels;
  const src = img.data;
  const data = new Float32Array(w * h * c);
  const out = new Float32Array(w * h).fill(-Infinity);
  // One pass over the source rows, summing into the output row they fall in (NaN never wins the maximum).
  for (let sy = 0; sy < h * f; sy++) {
    const orow = Math.floor(sy / f) * w;
    const srow = sy * W;
    for (let x = 0, sx = 0; x < w; x++) {
      const oi = orow + x;
      const o = oi * c;
      let peak = out[oi]!;
      for (let dx = 0; dx < f; dx++, sx++) {
        const v = map[srow + sx]!;
        if (v > peak) peak = v;
        const si = (srow + sx) * c;
        for (let k = 0; k < c; k++) data[o + k] += src[si + k]!;
      }
      out[oi] = peak;
    }
  }
  const inv = 1 / (f * f);
  for (let i = 0; i < data.length; i++) data[i] *= inv;
  return { image: { width: w, height: h, channels: c, data }, map: out };
}

/** 8-bit -> float (for pictures stored compactly as uint8). */
export function toF32(img: ImageU8 | ImageF32): ImageF32 {
  if (img.data instanceof Float32Array) return img as ImageF32;
  const data = new Float32Array(img.data.length);
  for (let i = 0; i < data.length; i++) data[i] = img.data[i]! / 255;
  return { width: img.width, height: img.height, channels: img.channels, data };
}

/** Float -> 8-bit, clipped and rounded (a quarter of the memory for kept pictures). */
export function toU8(img: ImageF32): ImageU8 {
  const data = new Uint8Array(img.data.length);
  for (let i = 0; i < data.length; i++) {
    const v = img.data[i]!;
    data[i] = Math.round(clamp01(Number.isNaN(v) ? 0 : v) * 255);
  }
  return { width: img.width, height: img.height, channels: img.channels, data };
}

// ---------------------------------------------------------------------------------------------
// A 5x7 bitmap font (the classic HD44780 glyphs): seven rows of five bits, MSB = leftmost pixel.
// Lower case is drawn as upper case; anything unknown as '?'.

const GLYPHS: Record<string, readonly number[]> = {
  A: [0x0e, 0x11, 0x11, 0x11, 0x1f, 0x11, 0x11], B: [0x1e, 0x11, 0x11, 0x1e, 0x11, 0x11, 0x1e],
  C: [0x0e, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0e], D: [0x1c, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1c],
  E: [0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x1f], F: [0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x10],
  G: [0x0e, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0f], H: [0x11, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11],
  I: [0x0e, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0e], J: [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0c],
  K: [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11], L: [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1f],
  M: [0x11, 0x1b, 0x15, 0x15, 0x11, 0x11, 0x11], N: [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
  O: [0x0e, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e], P: [0x1e, 0x11, 0x11, 0x1e, 0x10, 0x10, 0x10],
  Q: [0x0e, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0d], R: [0x1e, 0x11, 0x11, 0x1e, 0x14, 0x12, 0x11],
  S: [0x0f, 0x10, 0x10, 0x0e, 0x01, 0x01, 0x1e], T: [0x1f, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
  U: [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e], V: [0x11, 0x11, 0x11, 0x11, 0x11, 0x0a, 0x04],
  W: [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0a], X: [0x11, 0x11, 0x0a, 0x04, 0x0a, 0x11, 0x11],
  Y: [0x11, 0x11, 0x11, 0x0a, 0x04, 0x04, 0x04], Z: [0x1f, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1f],
  '0': [0x0e, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0e], '1': [0x04, 0x0c, 0x04, 0x04, 0x04, 0x04, 0x0e],
  '2': [0x0e, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1f], '3': [0x1f, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0e],
  '4': [0x02, 0x06, 0x0a, 0x12, 0x1f, 0x02, 0x02], '5': [0x1f, 0x10, 0x1e, 0x01, 0x01, 0x11, 0x0e],
  '6': [0x06, 0x08, 0x10, 0x1e, 0x11, 0x11, 0x0e], '7': [0x1f, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
  '8': [0x0e, 0x11, 0x11, 0x0e, 0x11, 0x11, 0x0e], '9': [0x0e, 0x11, 0x11, 0x0f, 0x01, 0x02, 0x0c],
  ' ': [0, 0, 0, 0, 0, 0, 0], '.': [0, 0, 0, 0, 0, 0x0c, 0x0c], ',': [0, 0, 0, 0, 0x0c, 0x04, 0x08],
  ':': [0, 0x0c, 0x0c, 0, 0x0c, 0x0c, 0], '-': [0, 0, 0, 0x1f, 0, 0, 0], '+': [0, 0x04, 0x04, 0x1f, 0x04, 0x04, 0],
  '=': [0, 0, 0x1f, 0, 0x1f, 0, 0], '/': [0, 0x01, 0x02, 0x04, 0x08, 0x10, 0], '_': [0, 0, 0, 0, 0, 0, 0x1f],
  '%': [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03], '(': [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02],
  ')': [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08], '<': [0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02],
  '>': [0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08], '?': [0x0e, 0x11, 0x01, 0x02, 0x04, 0, 0x04],
  '|': [0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04], '#': [0x0a, 0x0a, 0x1f, 0x0a, 0x1f, 0x0a, 0x0a],
};

/** Glyph cell: 5 pixels + 1 spacing wide, 7 high. */
export const GLYPH_W = 6;
export const GLYPH_H = 7;

/** Width in pixels `text` takes at `scale`. */
export function textWidth(text: string, scale = 1): number {
  return text.length * GLYPH_W * scale;
}

/**
 * Draw `text` with its top-left corner at (x, y), in place, clipped to the image.
 * @example
 * drawText(picture, 2, 2, 'SCORE 0.123', 2, WHITE);
 */
export function drawText(img: ImageF32 | ImageU8, x: number, y: number, text: string, scale = 1, colour: Bgr = WHITE): void {
  const s = Math.max(1, Math.floor(scale));
  const ink = inkOf(img, colour);
  let cx = x;
  for (const ch of text.toUpperCase()) {
    const g = GLYPHS[ch] ?? GLYPHS['?']!;
    for (let row = 0; row < GLYPH_H; row++) {
      const bits = g[row]!;
      for (let col = 0; col < 5; col++) {
        if (!(bits & (0x10 >> col))) continue;
        for (let dy = 0; dy < s; dy++) {
          const py = y + row * s + dy;
          if (py < 0 || py >= img.height) continue;
          for (let dx = 0; dx < s; dx++) {
            const px = cx + col * s + dx;
            if (px < 0 || px >= img.width) continue;
            const o = (py * img.width + px) * img.channels;
            for (let c = 0; c < Math.min(3, img.channels); c++) img.data[o + c] = ink[c]!;
          }
        }
      }
    }
    cx += GLYPH_W * s;
  }
}

/** Cut `text` so it fits `width` pixels at `scale` (ending in '..' when cut). */
export function fitText(text: string, width: number, scale = 1): string {
  const max = Math.floor(width / (GLYPH_W * Math.max(1, Math.floor(scale))));
  if (text.length <= max) return text;
  return max <= 2 ? text.slice(0, Math.max(0, max)) : `${text.slice(0, max - 2)}..`;
}

/** One panel of a composed picture. */
export interface Panel<I extends ImageF32 | ImageU8 = ImageF32> {
  image: I;
  /** Drawn above the panel. */
  title: string;
}

export interface ComposeOptions {
  /** Lines drawn across the top of the picture (e.g. score and verdict). */
  caption?: string[];
  /** Colour of the caption (e.g. red for a reject). */
  captionColour?: Bgr;
  /** Pixels between panels and around the picture (default 4). */
  gap?: number;
  /** Font scale (default: 1 for panels up to 191 px, 2 from 192 px). */
  scale?: number;
  background?: Bgr;
}

/**
 * Put panels side by side on one picture with a title over each and optional caption lines.
 * Panels may differ in size; they are top-aligned.
 * @example
 * const pic = composePanels([{ image: input, title: 'INPUT' }, { image: heat, title: 'HEATMAP' }], { caption: ['SCORE 0.41 REJECT'] });
 * await encodePng(pic, 'pictures/hazelnut/colour_02.png');
 */
export function composePanels(panels: readonly Panel[], opts?: ComposeOptions): ImageF32;
/** 8-bit panels give the 8-bit picture (the bytes of the float picture's file). */
export function composePanels(panels: readonly Panel<ImageU8>[], opts?: ComposeOptions): ImageU8;
export function composePanels(panels: readonly Panel<ImageF32 | ImageU8>[], opts: ComposeOptions = {}): ImageF32 | ImageU8 {
  if (panels.length === 0) throw new BadInputError('bad_picture', 'composePanels: no panels');
  const bytes = panels[0]!.image.data instanceof Uint8Array;
  for (const p of panels) {
    if (p.image.channels !== 3) throw new BadInputError('bad_picture', `composePanels: panel '${p.title}' has ${p.image.channels} channels, need 3`);
    if (p.image.data instanceof Uint8Array !== bytes) throw new BadInputError('bad_picture', `composePanels: panel '${p.title}' mixes 8-bit and float panels`);
  }
  const gap = opts.gap ?? 4;
  const maxH = Math.max(...panels.map((p) => p.image.height));
  const scale = opts.scale ?? (maxH >= 192 ? 2 : 1);
  const lineH = (GLYPH_H + 3) * scale;
  const captions = opts.caption ?? [];
  const width = panels.reduce((a, p) => a + p.image.width, 0) + gap * (panels.length + 1);
  const top = gap + captions.length * lineH + lineH;
  const height = top + maxH + gap;
  const background = opts.background ?? [0.12, 0.12, 0.12];
  const out: ImageF32 | ImageU8 = bytes ? solidImageU8(width, height, background) : solidImage(width, height, background);
  captions.forEach((line, i) => drawText(out, gap, gap + i * lineH, fitText(line, width - 2 * gap, scale), scale, opts.captionColour ?? WHITE));
  let x = gap;
  for (const p of panels) {
    drawText(out, x, top - lineH + scale, fitText(p.title, p.image.width, scale), scale, WHITE);
    const { width: w, height: h, data } = p.image;
    // Same storage type (checked above): a row copy.
    for (let y = 0; y < h; y++) out.data.set(data.subarray(y * w * 3, (y + 1) * w * 3), ((top + y) * width + x) * 3);
    x += w + gap;
  }
  return out;
}
