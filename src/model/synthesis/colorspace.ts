/**
 * 8-bit colour-space conversions as OpenCV's `cvtColor` performs them on uint8 data, for the
 * imgaug augmenters that work in another colour space (MultiplyAndAddToBrightness,
 * AddToHueAndSaturation, the no-DTD hue add).
 *
 * imgaug assumes RGB input; FAIR feeds it BGR. These functions name their inputs (r, g, b) as
 * imgaug does and the callers pass the image's channels 0, 1, 2 in that order, which reproduces
 * the channel-swap quirk of the official code.
 *
 * Exactness: YCrCb and YUV use OpenCV's 14-bit fixed-point coefficients (bit-exact), HSV and HLS
 * follow OpenCV's float formulas with rounding (equal to OpenCV's tables up to rare +-1), Lab and
 * Luv use the float CIE formulas (sRGB gamma, D65) with OpenCV's 8-bit scalings; OpenCV's own
 * 8-bit Lab/Luv use interpolated lookup tables, so these may differ from it by 1-2 levels.
 */

/** Colour spaces of imgaug's `MultiplyAndAddToBrightness` (and their brightness channel). */
export type ColourSpace = 'YCrCb' | 'HSV' | 'HLS' | 'Lab' | 'Luv' | 'YUV';
export const BRIGHTNESS_SPACES: readonly ColourSpace[] = ['YCrCb', 'HSV', 'HLS', 'Lab', 'Luv', 'YUV'];
/** Index of the brightness channel in each space (imgaug `WithBrightnessChannels`). */
export const BRIGHTNESS_CHANNEL: Record<ColourSpace, number> = { YCrCb: 0, HSV: 2, HLS: 1, Lab: 0, Luv: 0, YUV: 0 };

const clamp8 = (v: number): number => (v <= 0 ? 0 : v >= 255 ? 255 : Math.round(v));
const descale14 = (x: number): number => (x + 8192) >> 14;

// OpenCV fixed-point coefficients (color_yuv.simd.hpp), scaled by 2^14.
const R2Y = 4899, G2Y = 9617, B2Y = 1868;
const YCC = { toA: 11682 /* R2Cr 0.713 */, toB: 9241 /* B2Cb 0.564 */, aR: 22987, aG: -11698, bG: -5636, bB: 29049 };
const YUV = { toU: 8061 /* 0.492 */, toV: 14369 /* 0.877 */, vR: 18678, vG: -9519, uG: -6472, uB: 33292 };

/** Convert one (r, g, b) uint8 triplet into `out` (3 uint8-range integers). */
export function rgbTo(space: ColourSpace, r: number, g: number, b: number, out: Float64Array | number[]): void {
  switch (space) {
    case 'YCrCb': {
      const y = descale14(r * R2Y + g * G2Y + b * B2Y);
      out[0] = y;
      out[1] = clampInt(((r - y) * YCC.toA + (128 << 14) + 8192) >> 14);
      out[2] = clampInt(((b - y) * YCC.toB + (128 << 14) + 8192) >> 14);
      return;
    }
    case 'YUV': {
      const y = descale14(r * R2Y + g * G2Y + b * B2Y);
      out[0] = y;
      out[1] = clampInt(((b - y) * YUV.toU + (128 << 14) + 8192) >> 14);
      out[2] = clampInt(((r - y) * YUV.toV + (128 << 14) + 8192) >> 14);
      return;
    }
    case 'HSV': {
      const v = Math.max(r, g, b), mn = Math.min(r, g, b), diff = v - mn;
      const s = v === 0 ? 0 : Math.round((diff * 255) / v);
      let h = 0;
      if (diff !== 0) {
        h = v === r ? ((g - b) * 30) / diff : v === g ? 60 + ((b - r) * 30) / diff : 120 + ((r - g) * 30) / diff;
        h = Math.round(h);
        if (h < 0) h += 180;
        if (h >= 180) h -= 180;
      }
      out[0] = h; out[1] = s; out[2] = v;
      return;
    }
    case 'HLS': {
      const rf = r / 255, gf = g / 255, bf = b / 255;
      const vmax = Math.max(rf, gf, bf), vmin = Math.min(rf, gf, bf), diff = vmax - vmin;
      const l = (vmax + vmin) / 2;
      let h = 0, s = 0;
      if (diff > 1.1920929e-7) {
        s = l < 0.5 ? diff / (vmax + vmin) : diff / (2 - vmax - vmin);
        const k = 60 / diff;
        h = vmax === rf ? (gf - bf) * k : vmax === gf ? (bf - rf) * k + 120 : (rf - gf) * k + 240;
        if (h < 0) h += 360;
      }
      out[0] = clamp8(h / 2); out[1] = clamp8(l * 255); out[2] = clamp8(s * 255);
      return;
    }
    case 'Lab': {
      const xyz = rgbToXyz(r, g, b), x = xyz[0]!, y = xyz[1]!, z = xyz[2]!;
      const fx = labF(x / XN), fy = labF(y), fz = labF(z / ZN);
      // fy is cbrt(y) above the threshold, so L reuses it.
      const L = y > 0.008856 ? 116 * fy - 16 : 903.3 * y;
      out[0] = clamp8((L * 255) / 100);
      out[1] = clamp8(500 * (fx - fy) + 128);
      out[2] = clamp8(200 * (fy - fz) + 128);
      return;
    }
    case 'Luv': {
      const xyz = rgbToXyz(r, g, b), x = xyz[0]!, y = xyz[1]!, z = xyz[2]!;
      const L = y > 0.008856 ? 116 * Math.cbrt(y) - 16 : 903.3 * y;
      const d = x + 15 * y + 3 * z;
      const up = d > 0 ? (4 * x) / d : UN, vp = d > 0 ? (9 * y) / d : VN;
      const u = 13 * L * (up - UN), v = 13 * L * (vp - VN);
      out[0] = clamp8((L * 255) / 100);
      out[1] = clamp8(((u + 134) * 255) / 354);
      out[2] = clamp8(((v + 140) * 255) / 262);
      return;
    }
  }
}

/** Convert one triplet of `space` back to (r, g, b) uint8 into `out`. */
export function rgbFrom(space: ColourSpace, c0: number, c1: number, c2: number, out: Float64Array | number[]): void {
  switch (space) {
    case 'YCrCb': {
      const cr = c1 - 128, cb = c2 - 128;
      out[0] = clampInt(c0 + descale14(cr * YCC.aR));
      out[1] = clampInt(c0 + descale14(cb * YCC.bG + cr * YCC.aG));
      out[2] = clampInt(c0 + descale14(cb * YCC.bB));
      return;
    }
    case 'YUV': {
      const u = c1 - 128, v = c2 - 128;
      out[0] = clampInt(c0 + descale14(v * YUV.vR));
      out[1] = clampInt(c0 + descale14(u * YUV.uG + v * YUV.vG));
      out[2] = clampInt(c0 + descale14(u * YUV.uB));
      return;
    }
    case 'HSV': {
      const s = c1 / 255, v = c2 / 255;
      if (s === 0) { out[0] = out[1] = out[2] = clamp8(v * 255); return; }
      const [r, g, b] = sectorRgb(c0 * 2, v, v * (1 - s), s, v, 'hsv');
      out[0] = clamp8(r * 255); out[1] = clamp8(g * 255); out[2] = clamp8(b * 255);
      return;
    }
    case 'HLS': {
      const l = c1 / 255, s = c2 / 255;
      if (s === 0) { out[0] = out[1] = out[2] = clamp8(l * 255); return; }
      const p2 = l <= 0.5 ? l * (1 + s) : l + s - l * s;
      const p1 = 2 * l - p2;
      const [r, g, b] = sectorRgb(c0 * 2, p2, p1, s, l, 'hls');
      out[0] = clamp8(r * 255); out[1] = clamp8(g * 255); out[2] = clamp8(b * 255);
      return;
    }
    case 'Lab': {
      const L = (c0 * 100) / 255, a = c1 - 128, bb = c2 - 128;
      const fy = (L + 16) / 116;
      const y = L > 7.9996 ? fy * fy * fy : L / 903.3;
      const fx = a / 500 + fy, fz = fy - bb / 200;
      const x = XN * labFInv(fx), z = ZN * labFInv(fz);
      xyzToRgb(x, y, z, out);
      return;
    }
    case 'Luv': {
      const L = (c0 * 100) / 255, u = (c1 * 354) / 255 - 134, v = (c2 * 262) / 255 - 140;
      if (L <= 0) { out[0] = out[1] = out[2] = 0; return; }
      const t = (L + 16) / 116;
      const y = L > 7.9996 ? t * t * t : L / 903.3;
      const up = u / (13 * L) + UN, vp = v / (13 * L) + VN;
      const x = vp !== 0 ? (9 * y * up) / (4 * vp) : 0;
      const z = vp !== 0 ? (y * (12 - 3 * up - 20 * vp)) / (4 * vp) : 0;
      xyzToRgb(x, y, z, out);
      return;
    }
  }
}

function clampInt(v: number): number {
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

// OpenCV's HSV2RGB / HLS2RGB sector table: indices into tab for (b, g, r).
const SECTOR: readonly (readonly [number, number, number])[] = [[1, 3, 0], [1, 0, 2], [3, 0, 1], [0, 2, 1], [0, 1, 3], [2, 1, 0]];

/** Shared hue-sector evaluation of OpenCV's HSV2RGB_f and HLS2RGB_f (hue in degrees, wrapped). */
function sectorRgb(hDeg: number, top: number, bottom: number, s: number, v: number, kind: 'hsv' | 'hls'): [number, number, number] {
  let h = hDeg / 60;
  // OpenCV wraps any hue (8-bit H may exceed 179 after an add) into [0, 6).
  while (h < 0) h += 6;
  while (h >= 6) h -= 6;
  let sector = Math.floor(h);
  h -= sector;
  if (sector > 5) sector = 5;
  const tab = kind === 'hsv'
    ? [v, v * (1 - s), v * (1 - s * h), v * (1 - s * (1 - h))]
    : [top, bottom, bottom + (top - bottom) * (1 - h), bottom + (top - bottom) * h];
  const sd = SECTOR[sector]!;
  // SECTOR gives (b, g, r); return (r, g, b).
  return [tab[sd[2]]!, tab[sd[1]]!, tab[sd[0]]!];
}

const XN = 0.950456, ZN = 1.088754;
const UN = (4 * XN) / (XN + 15 + 3 * ZN), VN = 9 / (XN + 15 + 3 * ZN);
const SRGB_LIN = new Float64Array(256);
for (let i = 0; i < 256; i++) {
  const v = i / 255;
  SRGB_LIN[i] = v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
}

// Scratch output of rgbToXyz (avoids an array allocation per pixel).
const XYZ = new Float64Array(3);
function rgbToXyz(r: number, g: number, b: number): Float64Array {
  const R = SRGB_LIN[r]!, G = SRGB_LIN[g]!, B = SRGB_LIN[b]!;
  XYZ[0] = 0.412453 * R + 0.35758 * G + 0.180423 * B;
  XYZ[1] = 0.212671 * R + 0.71516 * G + 0.072169 * B;
  XYZ[2] = 0.019334 * R + 0.119193 * G + 0.950227 * B;
  return XYZ;
}

function xyzToRgb(x: number, y: number, z: number, out: Float64Array | number[]): void {
  const R = 3.240479 * x - 1.53715 * y - 0.498535 * z;
  const G = -0.969256 * x + 1.875991 * y + 0.041556 * z;
  const B = 0.055648 * x - 0.204043 * y + 1.057311 * z;
  out[0] = encode8(R);
  out[1] = encode8(G);
  out[2] = encode8(B);
}

/**
 * round(255 * sRGB_gamma(linear)) without a pow per pixel: binary search of the linear values at
 * which the rounded 8-bit code changes, (k - 0.5) / 255 for k = 1..255 (monotone mapping).
 */
const ENC_EDGES = new Float64Array(256);
for (let k = 1; k < 256; k++) {
  const v = (k - 0.5) / 255;
  ENC_EDGES[k] = v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
}
function encode8(lin: number): number {
  if (!(lin >= ENC_EDGES[1]!)) return 0;
  let lo = 1, hi = 255;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (ENC_EDGES[mid]! <= lin) lo = mid; else hi = mid - 1;
  }
  return lo;
}

function labF(t: number): number {
  return t > 0.008856 ? Math.cbrt(t) : 7.787 * t + 16 / 116;
}

function labFInv(f: number): number {
  const f3 = f * f * f;
  return f3 > 0.008856 ? f3 : (f - 16 / 116) / 7.787;
}
