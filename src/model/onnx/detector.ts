/**
 * The whole FAIR detector as one ONNX graph: BGR images at model size in, `score` [N] and `map`
 * [N, S, S] out (optionally `restored`), so Triton, OpenVINO, TensorRT, onnxruntime-web or plain
 * onnxruntime reproduce fairline's scores without any TypeScript (docs/serving.md).
 *
 * The graph mirrors the TypeScript path op by op (src/model/detector.ts):
 * - gray: OpenCV's float32 order `r*0.299 + (g*0.587 + b*0.114)`, rounded per op (Split/Mul/Add),
 *   bit-identical to `grayFromBgr`;
 * - high-pass, FFT filters: `real(ifft2(fft2(g) * H))` as MatMuls with constant DFT matrices
 *   (real and imaginary parts as separate float tensors; the input is real, so only the S/2 + 1
 *   non-redundant spectrum columns are computed: 12 products of S x S x (S/2+1) per image), the
 *   unshifted transfer function H as a constant. The image mean is subtracted first: H(0) ~ 1e-30
 *   removes DC anyway, and centring shrinks the partial sums so float32 stays within ~1e-6 of the
 *   float64 FFT. Sobel: reflect-101 `Pad` + 3x3 `Conv`;
 * - the UNet: {@link emitUNet}, the one definition the UNet export and the training step use;
 * - scoring (src/model/tfjs/score.ts is the tensor reference), on the original and the restoration concatenated into one
 *   6-channel tensor so each elementwise pass runs once: Prewitt/3 gradients as one depthwise
 *   conv, MSGMS over `msgmsScales` scales (2x2 sums by ReduceSum, half-pixel bilinear `Resize` of the
 *   channel mean back), Lab a/b (sRGB -> XYZ and f -> a/b as small MatMuls, the piecewise steps
 *   without `Where`, powers as `Exp(p * Log(x))`; see emitLabDiff), the zero-padded k x k mean as
 *   blocked MatMuls with a banded matrix, `ReduceMax` for the score; by default one image per
 *   `Scan` step. Written for onnxruntime-cpu, where these ops are memory-bound: fewer passes, over
 *   data that stays in cache, is what makes it fast.
 *
 * Opset 17 (axes of ReduceMean/ReduceMax as attributes), so checkers and runtimes from onnx 1.12
 * on accept the file. Pure: weights in, ModelProto bytes out.
 */
import { ConfigError, ModelError } from '../../errors.js';
import { addUNetWeights, type TorchTensors } from '../onnx-export.js';
import { highPassFilter } from '../highpass.js';
import { filterChannels, type FairSpec, type FilterSpec, type ScoringSpec } from '../types.js';
import { D65_WHITE, RGB_TO_XYZ } from '../score.js';
import { Graph, type Dim } from './graph.js';
import { concat, conv, reshape } from './ops.js';
import { emitUNet } from './unet.js';

/** Opset of the detector graph (the newest onnx 1.12 checks; see the module doc). */
export const DETECTOR_OPSET = 17;

/** Input and output names of the detector graph. */
export const DETECTOR_INPUT = 'image';
export const DETECTOR_SCORE = 'score';
export const DETECTOR_MAP = 'map';
export const DETECTOR_RESTORED = 'restored';

/** Element type of the graph input. */
export type DetectorInputType = 'float32' | 'uint8';

/** Options of {@link exportDetectorOnnx}. */
export interface DetectorExportOptions {
  /**
   * 'float32' (default): NHWC BGR in [0, 1], exactly what fairline's decode gives;
   * 'uint8': NHWC BGR bytes 0..255 (divided by 255 inside, as `u8ToF32`), a quarter of the bytes
   * to send to a server.
   */
  input?: DetectorInputType;
  /** Also output the restoration `restored` [N, S, S, 3] (NHWC BGR, unclamped), for pictures. */
  restored?: boolean;
  /** Fold BatchNorm into the convs (default false; onnxruntime fuses at load time anyway). */
  foldBatchNorm?: boolean;
  /** Extra metadata_props (threshold, model id, fairline version ...), stored as given. */
  props?: Record<string, string>;
  /**
   * How the scoring runs over the batch: 'per-image' (default), one image at a time inside a
   * `Scan`, fastest on CPUs (the image's scoring tensors stay in cache, see
   * {@link ScoreGraphOptions.perImage}); 'batch', the whole batch in each op, for GPUs, which
   * want the larger kernels. Same scores and maps.
   */
  scoring?: 'per-image' | 'batch';
}

const UINT8 = 2;

/** ReduceMean / ReduceMax with axes as an attribute (opset < 18). */
function reduceAttr(g: Graph, type: 'ReduceMean' | 'ReduceMax', x: string, axes: number[], keepdims: boolean): string {
  const s = g.shape(x);
  const shape: Dim[] = [];
  s.forEach((d, i) => {
    if (!axes.includes(i)) shape.push(d);
    else if (keepdims) shape.push(1);
  });
  return g.op(type, [x], shape, { axes: { ints: axes }, keepdims: keepdims ? 1 : 0 });
}

/** Split NCHW `x` into its C single channels. */
function channels(g: Graph, x: string): string[] {
  const [n, c, h, w] = g.shape(x);
  const ones = Array.from({ length: c as number }, () => 1);
  return g.node('Split', [x, g.int64(ones)], ones.map(() => [n!, 1, h!, w!]), { axis: 1 });
}

/**
 * Gray of an NCHW BGR tensor [N, 3, H, W] -> [N, 1, H, W], bit-identical to `grayFromBgr`.
 * @example
 * const gray = emitGray(g, bgrNCHW);
 */
export function emitGray(g: Graph, bgr: string): string {
  const [b, gr, r] = channels(g, bgr) as [string, string, string];
  const f = (v: number): string => g.scalar(Math.fround(v));
  return g.op('Add', [g.op('Mul', [r, f(0.299)]), g.op('Add', [g.op('Mul', [gr, f(0.587)]), g.op('Mul', [b, f(0.114)])])]);
}

/**
 * The high-pass of a gray batch [N, 1, S, S] -> [N, channels, S, S] (1 for FFT filters, 2 for
 * Sobel), as {@link HighPass.fromGray} computes it.
 * @example
 * const hp = emitHighPass(g, gray, 256, DEFAULT_FILTER);
 */
export function emitHighPass(g: Graph, gray: string, size: number, filter: FilterSpec): string {
  const S = size;
  const shape = g.shape(gray);
  if (filterChannels(filter.kind) === 2) {
    const padded = g.op('Pad', [gray, g.int64([0, 0, 1, 1, 0, 0, 1, 1])], [shape[0]!, 1, S + 2, S + 2], { mode: 'reflect' });
    // Correlation kernels (ONNX Conv, like cv2.filter2D): Sobel x, Sobel y (or x twice).
    const kx = [-1, 0, 1, -2, 0, 2, -1, 0, 1];
    const ky = [-1, -2, -1, 0, 0, 0, 1, 2, 1];
    const w = g.constant([...kx, ...(filter.kind === 'sobel-x' ? kx : ky)], [2, 1, 3, 3], 'sobel_kernel');
    return g.op('Conv', [padded, w], [shape[0]!, 2, S, S], { kernel_shape: [3, 3], pads: [0, 0, 0, 0], strides: [1, 1] });
  }
  // The input is real, so the spectrum is Hermitian: only the M = S/2 + 1 columns v = 0..S/2 are
  // computed (half the MatMul work of a full complex 2-D DFT). Matrices in float64, the angle
  // reduced mod S (exact integer product) before rounding to float32:
  //   C[u][y] = cos(2 pi u y / S), Sn = sin(...)          [S, S]  (column transforms, full)
  //   Ch, Shn = C, Sn restricted to the first M columns    [S, M]  (forward row transform)
  //   Cw[v][x] = w_v cos(2 pi v x / S) / S, Sw likewise    [M, S]  (inverse row transform, w_v =
  //   1 for v = 0 and S/2, 2 otherwise: the mirrored columns' share)
  const M = S / 2 + 1;
  const ang = (a: number, b: number): number => (2 * Math.PI * ((a * b) % S)) / S;
  const cos = new Float32Array(S * S), sin = new Float32Array(S * S), cosI = new Float32Array(S * S), sinI = new Float32Array(S * S);
  const ch = new Float32Array(S * M), sh = new Float32Array(S * M), cw = new Float32Array(M * S), sw = new Float32Array(M * S);
  for (let u = 0; u < S; u++)
    for (let y = 0; y < S; y++) {
      const a = ang(u, y);
      cos[u * S + y] = Math.cos(a);
      sin[u * S + y] = Math.sin(a);
      cosI[u * S + y] = Math.cos(a) / S;
      sinI[u * S + y] = Math.sin(a) / S;
      if (y < M) {
        ch[u * M + y] = Math.cos(a);
        sh[u * M + y] = Math.sin(a);
      }
    }
  for (let v = 0; v < M; v++) {
    const wv = v === 0 || v === S / 2 ? 1 : 2;
    for (let x = 0; x < S; x++) {
      cw[v * S + x] = (wv * Math.cos(ang(v, x))) / S;
      sw[v * S + x] = (wv * Math.sin(ang(v, x))) / S;
    }
  }
  const full = highPassFilter(S, filter);
  const hHalf = new Float32Array(S * M);
  for (let u = 0; u < S; u++) for (let v = 0; v < M; v++) hHalf[u * M + v] = full[u * S + v]!;
  const C = g.constant(cos, [S, S], 'dft_cos');
  const Sn = g.constant(sin, [S, S], 'dft_sin');
  const Ci = g.constant(cosI, [S, S], 'idft_cos');
  const Si = g.constant(sinI, [S, S], 'idft_sin');
  const Ch = g.constant(ch, [S, M], 'dft_cos_half');
  const Sh = g.constant(sh, [S, M], 'dft_sin_half');
  const Cw = g.constant(cw, [M, S], 'idft_cos_rows');
  const Sw = g.constant(sw, [M, S], 'idft_sin_rows');
  const H = g.constant(hHalf, [S, M], 'highpass_filter');
  const mm = (a: string, b: string): string => g.op('MatMul', [a, b]);
  const x = g.op('Sub', [gray, reduceAttr(g, 'ReduceMean', gray, [2, 3], true)]);
  // Forward, columns v < M: A = x Ch, B = x Sh; Q = F x F with F = C - i Sn:
  //   Re Q = C A - Sn B,  -Im Q = C B + Sn A.
  const A = mm(x, Ch), B = mm(x, Sh);
  const zr = g.op('Mul', [g.op('Sub', [mm(C, A), mm(Sn, B)]), H]);
  const zin = g.op('Mul', [g.op('Add', [mm(C, B), mm(Sn, A)]), H]); // -Im(H Q)
  // Inverse: R = G Z with G = (C + i Sn)/S (columns), then y = Re(R G) over all v from the kept
  // half (R is Hermitian in v): Re R = Ci Zr + Si Zin, Im R = Si Zr - Ci Zin, y = Re R Cw - Im R Sw.
  const rr = g.op('Add', [mm(Ci, zr), mm(Si, zin)]);
  const ri = g.op('Sub', [mm(Si, zr), mm(Ci, zin)]);
  return g.op('Sub', [mm(rr, Cw), mm(ri, Sw)]);
}

/**
 * Squared Prewitt/3 gradient magnitude per channel, zero padding: [N,C,H,W] -> [N,C,H*W].
 * One depthwise conv gives gx and gy of every channel (2C outputs), one Mul squares them and a
 * ReduceSum adds each pair (two convs, two squares and an Add over separate gx / gy tensors before).
 */
function gradientEnergy(g: Graph, x: string): string {
  const [n, c, h, w] = g.shape(x) as [Dim, number, number, number];
  const kx = [1, 0, -1, 1, 0, -1, 1, 0, -1].map((v) => v / 3);
  const ky = [1, 1, 1, 0, 0, 0, -1, -1, -1].map((v) => v / 3);
  const k = Array.from({ length: c }, () => [...kx, ...ky]).flat();
  const grad = conv(g, x, g.constant(k, [2 * c, 1, 3, 3], 'prewitt_xy'), undefined, c);
  const sq = reshape(g, g.op('Mul', [grad, grad]), [n, c, 2, h * w]);
  return g.op('ReduceSum', [sq, g.int64([2])], [n, c, h * w], { keepdims: 0 });
}

/**
 * 2x2 sums of [N,C,H,W] -> [N,C,H/2,W/2] as two ReduceSums over adjacent pairs (rows, then
 * columns): onnxruntime's AveragePool costs several times more.
 */
function sumPool2(g: Graph, x: string): string {
  const [n, c, h, w] = g.shape(x) as [Dim, number, number, number];
  const rows = g.op('ReduceSum', [reshape(g, x, [n, c * (h / 2), 2, w]), g.int64([2])], [n, c * (h / 2), w], { keepdims: 0 });
  const cols = g.op('ReduceSum', [reshape(g, rows, [n, c * (h / 2) * (w / 2), 2]), g.int64([2])], [n, c * (h / 2) * (w / 2)], { keepdims: 0 });
  return reshape(g, cols, [n, c, h / 2, w / 2]);
}

/**
 * MSGMS minus one, summed over scales, at full size: [N,1,S*S] holding
 * `-(1/scales) sum_s up(mean_c gms_s)` (the caller adds the 1; `msgms = 1 + this`), from `pair`
 * = [N,6,S,S], the original's 3 channels then the restoration's.
 *
 * With eY = gx^2 + gy^2 of the restoration and eX of the original, the official
 * `gms = (2 gmY gmX + c) / (gmY^2 + gmX^2 + c)` (gm = sqrt(e + 1e-12)) is computed as
 * `2 (sqrt(eY eX) + c/2) / (eY + eX + c)`: the 1e-12 moves gms by < 1e-9 and is below float32's
 * resolution next to c in the denominator. The factor 2, the channel mean and the 1/scales are one [1,3]
 * MatMul, and the coarse scales are upsampled after that mean (1 channel, not 3: the mean and the
 * linear Resize commute).
 */
function emitMsgms(g: Graph, pair: string, c: number, scales: number): string {
  const [n, ch2, h, w] = g.shape(pair) as [Dim, number, number, number];
  const ch = ch2 / 2;
  const weights = g.constant(new Float32Array(ch).fill(-2 / (ch * scales)), [1, ch], 'msgms_channel_mean');
  let cur = pair;
  let acc: string | undefined;
  for (let s = 0; s < scales; s++) {
    const L = h >> s, Lw = w >> s;
    if (s > 0) cur = sumPool2(g, cur);
    // cur holds 2x2 sums, not means, from scale 1 on: 4^s times the official pooled image, so
    // gradient energies 16^s times theirs, and gms is the same with c 16^s times larger (exact:
    // the factors are powers of two).
    const cs = c * 16 ** s;
    const [eX, eY] = g.node('Split', [gradientEnergy(g, cur), g.int64([ch, ch])], [[n, ch, L * Lw], [n, ch, L * Lw]], { axis: 1 }) as [string, string];
    const num = g.op('Add', [g.op('Sqrt', [g.op('Mul', [eY, eX])]), g.scalar(cs / 2)]);
    const den = g.op('Add', [g.op('Add', [eY, eX]), g.scalar(cs)]);
    let m = g.op('MatMul', [weights, g.op('Div', [num, den])], [n, 1, L * Lw]);
    if (s > 0) {
      const scalesT = g.constant([1, 1, h / L, w / Lw], [4], 'resize_scales');
      const up = g.op('Resize', [reshape(g, m, [n, 1, L, Lw]), '', scalesT], [n, 1, h, w], { mode: 'linear', coordinate_transformation_mode: 'half_pixel' });
      m = reshape(g, up, [n, 1, h * w]);
    }
    acc = acc === undefined ? m : g.op('Add', [acc, m]);
  }
  return acc!;
}

/**
 * CIELAB (a, b) of [N,3,P] pixels -> [N,2,P] (see `labAB` in src/model/tfjs/score.ts), up to a constant that is
 * the same for a and b of every pixel and image (it cancels in the colour difference).
 *
 * Both piecewise steps are written without `Where` (onnxruntime's Where costs ~9 Adds):
 * `v > t ? p(v) : l(v)` with p(t) = l(t) (continuous at t) equals `p(max(v, t)) + l(min(v, t)) - l(t)`.
 * - sRGB linearisation, t = 0.04045: p(v) = ((v+0.055)/1.055)^2.4 as K Exp(2.4 Log(v + 0.055))
 *   with K = 1.055^-2.4 (Pow with a non-integer exponent is a scalar std::pow), l(v) = v/12.92;
 *   K goes into the XYZ matrix (the linear branch is divided by it), max(v, t) also keeps Log's
 *   argument positive for negative restored values. The constant -l(t) passes through the XYZ
 *   matrix as a bias.
 * - Lab f, t = 0.008856: p = cbrt, l(x) = 7.787x + 4/29, as `cbrt(max(x, t')) + 7.787 min(x, t)`
 *   with t' = (7.787 t + 4/29)^3, so that cbrt(t') = l(t): then every x < t gets l(x) + 7.787 t
 *   and every x >= t' gets p(x) + 7.787 t, the same constant, which a and b (differences of f)
 *   cancel. The CIE constants are rounded, so p and l miss each other by 3.3e-7 at t and t' is
 *   4.3e-8 above t: only x in [t, t') (about 46 float32 values) is off, by at most those 3.3e-7.
 * The sRGB -> XYZ and f -> (a, b) mixes are [3,3] / [2,3] MatMuls (a 1x1 Conv on 3 channels costs
 * several times more on onnxruntime-cpu).
 */
function emitLabDiff(g: Graph, img: string, mode: ScoringSpec['colourMode']): string {
  const [n, , p] = g.shape(img) as [Dim, number, number];
  const t1 = 0.04045, t2 = 0.008856;
  const k = 1.055 ** -2.4;
  const hi = g.op('Max', [img, g.scalar(t1)]);
  const pw = g.op('Exp', [g.op('Mul', [g.op('Log', [g.op('Add', [hi, g.scalar(0.055)])]), g.scalar(2.4)])]);
  const lin = g.op('Add', [pw, g.op('Mul', [g.op('Min', [img, g.scalar(t1)]), g.scalar(1 / (12.92 * k))])]);
  // xyz_j = sum_k K lin_k M[k][j] per image (block-diagonal [6,6]); bias_j = -sum_k W[j][k] t1/12.92.
  const wx = new Float32Array(36), bias = new Float32Array(6);
  for (let im = 0; im < 2; im++)
    for (let c = 0; c < 3; c++) {
      const rgbIndex = mode === 'rgb' ? 2 - c : c;
      for (let j = 0; j < 3; j++) {
        const v = RGB_TO_XYZ[j]![rgbIndex]! / D65_WHITE[j]!;
        wx[(im * 3 + j) * 6 + im * 3 + c] = v * k;
        bias[im * 3 + j] -= v * (t1 / 12.92);
      }
    }
  const xyz = g.op('Add', [g.op('MatMul', [g.constant(wx, [6, 6], 'xyz_matrix'), lin], [n, 6, p]), g.constant(bias, [6, 1], 'xyz_bias')]);
  const tHigh = (7.787 * t2 + 4 / 29) ** 3;
  const cbrt = g.op('Exp', [g.op('Mul', [g.op('Log', [g.op('Max', [xyz, g.scalar(tHigh)])]), g.scalar(1 / 3)])]);
  const f = g.op('Add', [cbrt, g.op('Mul', [g.op('Min', [xyz, g.scalar(t2)]), g.scalar(7.787)])]);
  // (a, b) of the original minus (a, b) of the restoration.
  const ab = [500, -500, 0, -500, 500, 0, 0, 200, -200, 0, -200, 200];
  return g.op('MatMul', [g.constant(ab, [2, 6], 'ab_difference'), f], [n, 2, p]);
}

/** Options of {@link emitScore}. */
export interface ScoreGraphOptions {
  /**
   * Score the batch one image at a time inside a `Scan` (default true). Every scoring op then
   * works on one image's 6 x S x S floats (1.5 MiB at 256 px), which stay in the CPU's cache from
   * one op to the next, instead of a whole batch's (12 MiB at batch 8), which go through memory
   * at every one of the ~45 ops. Same values either way.
   */
  perImage?: boolean;
  /** Outputs per block of the box filter's banded products (default 64; see boxMean). */
  boxBlock?: number;
}

/**
 * FAIR scoring of restored vs original (both NCHW BGR [N,3,S,S]): `map` [N,S,S] and `score` [N]
 * (src/model/tfjs/score.ts `scoreBatch`).
 * @example
 * const { map, score } = emitScore(g, restored, original, spec.scoring);
 */
export function emitScore(g: Graph, restored: string, original: string, spec: ScoringSpec, opts: ScoreGraphOptions = {}): { map: string; score: string } {
  if (!(opts.perImage ?? true)) return emitScoreBatch(g, restored, original, spec, opts);
  const [n, ch, h, w] = g.shape(restored) as [Dim, number, number, number];
  const body = new Graph({ opset: g.opset, prefix: `${g.fresh('score_image')}/` });
  const one = (name: string): string => reshape(body, body.input(`${body.prefix}${name}`, [ch, h, w]), [1, ch, h, w]);
  const r = one('restored'), o = one('original');
  const frame = emitScoreBatch(body, r, o, spec, opts);
  body.output(reshape(body, frame.map, [h, w]));
  body.output(reshape(body, frame.score, []));
  for (const [domain, version] of body.domains) g.domains.set(domain, version);
  const [map, score] = g.node('Scan', [restored, original], [[n, h, w], [n]], { body: { graph: body.toGraphProto('score_image') }, num_scan_inputs: 2 }, { tape: false });
  return { map: map!, score: score! };
}

/** {@link emitScore} on the whole batch at once. */
function emitScoreBatch(g: Graph, restored: string, original: string, spec: ScoringSpec, opts: ScoreGraphOptions): { map: string; score: string } {
  const k = spec.smoothKernel;
  if (!Number.isInteger(k) || k < 1 || k % 2 === 0) throw new ConfigError(`scoring.smoothKernel must be an odd positive integer, got ${k}`);
  if (!Number.isInteger(spec.msgmsScales) || spec.msgmsScales < 1) throw new ConfigError(`scoring.msgmsScales must be a positive integer, got ${spec.msgmsScales}`);
  const [n, ch, h, w] = g.shape(restored) as [Dim, number, number, number];
  if (h % 2 ** (spec.msgmsScales - 1) !== 0) throw new ConfigError(`size ${h} is not divisible by 2^${spec.msgmsScales - 1} (MSGMS scales)`);
  if (ch !== 3) throw new ConfigError(`FAIR scoring needs 3-channel images, got ${ch}`);
  // Both images in one tensor (original first): every elementwise pass below runs once, not twice.
  const pair = g.op('Concat', [original, restored], [n, 6, h, w], { axis: 1 });
  let raw = emitMsgms(g, pair, spec.msgmsC, spec.msgmsScales);
  if (spec.colourWeight > 0) {
    const d = emitLabDiff(g, reshape(g, pair, [n, 6, h * w]), spec.colourMode);
    const colour = g.op('MatMul', [g.constant([spec.colourWeight, spec.colourWeight], [1, 2], 'colour_weight'), g.op('Mul', [d, d])], [n, 1, h * w]);
    raw = g.op('Add', [raw, colour]);
  }
  let smooth = reshape(g, g.op('Add', [raw, g.scalar(1)]), [n, h, w]);
  if (k > 1) smooth = boxMean(g, smooth, k, opts.boxBlock ?? 64);
  return { map: smooth, score: reduceAttr(g, 'ReduceMax', smooth, [1, 2], false) };
}

/**
 * The zero-padded k x k mean of [N,S,S] maps, as MatMuls with a banded matrix B (1/k where
 * |i - j| <= k/2): B x sums down the columns, x B along the rows, and the band ends at the
 * border exactly as zero padding does (a GEMM is several times faster than a 1-channel k-tap
 * Conv). B is nearly all zeros, so each product is cut into blocks of `blockSize` outputs that
 * multiply only the inputs within k/2 of the block: at 256 px, k = 21 and blocks of 64, four
 * 256 x 84 x 64 products (5.5 M multiply-adds) instead of one 256 x 256 x 256 (16.8 M).
 */
function boxMean(g: Graph, x: string, k: number, blockSize: number): string {
  const [n, h, w] = g.shape(x) as [Dim, number, number];
  if (h !== w) throw new ConfigError(`scoring graph needs a square map, got ${h}x${w}`);
  const r = (k - 1) / 2;
  const band = (i: number, j: number): number => (Math.abs(i - j) <= r ? 1 / k : 0);
  const block = h > blockSize && h % blockSize === 0 ? blockSize : h;
  const pass = (v: string, axis: 1 | 2): string => {
    const parts: string[] = [];
    for (let c0 = 0; c0 < h; c0 += block) {
      const c1 = c0 + block, lo = Math.max(0, c0 - r), hi = Math.min(h, c1 + r);
      // The block of B that the block's outputs need: B[c0:c1, lo:hi] left of x (axis 1), B[lo:hi, c0:c1] right of it (axis 2).
      const rows = axis === 1 ? block : hi - lo, cols = axis === 1 ? hi - lo : block;
      const sub = new Float32Array(rows * cols);
      for (let a = 0; a < rows; a++) for (let b = 0; b < cols; b++) sub[a * cols + b] = axis === 1 ? band(c0 + a, lo + b) : band(lo + a, c0 + b);
      const B = g.constant(sub, [rows, cols], 'box_band');
      const part = block === h ? v : g.op('Slice', [v, g.int64([lo]), g.int64([hi]), g.int64([axis])], axis === 1 ? [n, hi - lo, w] : [n, h, hi - lo]);
      parts.push(axis === 1 ? g.op('MatMul', [B, part], [n, block, w]) : g.op('MatMul', [part, B], [n, h, block]));
    }
    return parts.length === 1 ? parts[0]! : concat(g, parts, axis);
  };
  return pass(pass(x, 1), 2);
}

/** Declare the graph input (float32 or uint8 NHWC) and return it as float32 NCHW in [0, 1]. */
function emitInput(g: Graph, size: number, type: DetectorInputType): string {
  const shape: Dim[] = ['N', size, size, 3];
  let x: string;
  if (type === 'float32') x = g.input(DETECTOR_INPUT, shape);
  else {
    x = g.fresh(DETECTOR_INPUT);
    g.shapes.set(x, shape);
    g.inputs.push({ name: x, type: { tensorType: { elemType: UINT8, shape: { dim: shape.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } } } });
    // Cast then x/255 in float32: correctly rounded, so the same bits as u8ToF32.
    x = g.op('Div', [g.op('Cast', [x], shape, { to: 1 }), g.scalar(255)]);
  }
  return g.op('Transpose', [x], ['N', 3, size, size], { perm: [0, 3, 1, 2] });
}

/**
 * Build the whole-detector ONNX model of a FAIR model (spec + PyTorch-layout weights).
 *
 * @returns ModelProto bytes: input `image` [N,S,S,3] (float32 in [0,1] or uint8), outputs
 *   `score` [N], `map` [N,S,S] and, with `restored`, `restored` [N,S,S,3]. metadata_props carry
 *   `fairline.spec` (JSON), `fairline.input`, `fairline.outputs` and whatever `props` adds.
 * @throws ModelError (`bad_weights`) for missing or mis-shaped weights, (`bad_spec`) when the
 *   filter's channels disagree with the UNet's; ConfigError for bad scoring settings or input type.
 * @example
 * const bytes = exportDetectorOnnx(tensors, manifest.spec, { props: { 'fairline.threshold': '0.41' } });
 */
export function exportDetectorOnnx(tensors: TorchTensors, spec: FairSpec, opts: DetectorExportOptions = {}): Uint8Array {
  const input = opts.input ?? 'float32';
  if (input !== 'float32' && input !== 'uint8') throw new ConfigError(`detector input must be 'float32' or 'uint8', got ${String(input)}`);
  const scoring = opts.scoring ?? 'per-image';
  if (scoring !== 'per-image' && scoring !== 'batch') throw new ConfigError(`detector scoring must be 'per-image' or 'batch', got ${String(scoring)}`);
  const S = spec.size;
  if (!Number.isInteger(S) || S < 16 || S % 16 !== 0) throw new ModelError('bad_spec', `model size ${S} is not a positive multiple of 16 (the UNet pools 4 times)`);
  const cin = filterChannels(spec.filter.kind);
  if (cin !== spec.unet.inChannels) throw new ModelError('bad_spec', `filter ${spec.filter.kind} gives ${cin} channel(s) but the UNet takes ${spec.unet.inChannels}`);
  if (spec.unet.outChannels !== 3) throw new ModelError('bad_spec', `the UNet restores ${spec.unet.outChannels} channels, FAIR scoring needs 3 (BGR)`);
  const fold = opts.foldBatchNorm ?? false;

  const g = new Graph({ opset: DETECTOR_OPSET });
  const param = addUNetWeights(g, tensors, spec.unet, fold);
  const original = emitInput(g, S, input);
  const highpass = emitHighPass(g, emitGray(g, original), S, spec.filter);
  const { y: restored } = emitUNet(g, highpass, spec.unet, param, fold ? 'folded' : 'eval');
  const { map, score } = emitScore(g, restored, original, spec.scoring, { perImage: scoring === 'per-image' });
  g.output(score, DETECTOR_SCORE);
  g.output(map, DETECTOR_MAP);
  const outputs = [DETECTOR_SCORE, DETECTOR_MAP];
  if (opts.restored) {
    g.output(g.op('Transpose', [restored], ['N', S, S, 3], { perm: [0, 2, 3, 1] }), DETECTOR_RESTORED);
    outputs.push(DETECTOR_RESTORED);
  }
  return g.toModel({
    name: 'fair_detector',
    doc: 'FAIR detector: BGR image -> high-pass -> UNet restoration -> MSGMS + colour scoring; score = max(map), reject when score >= fairline.threshold',
    props: {
      'fairline.part': 'detector',
      'fairline.spec': JSON.stringify(spec),
      'fairline.input': input === 'float32' ? 'NHWC float32 BGR in [0,1] at model size' : 'NHWC uint8 BGR 0..255 at model size',
      'fairline.outputs': outputs.join(','),
      'fairline.foldBatchNorm': String(fold),
      'fairline.scoring': scoring,
      ...opts.props,
    },
  });
}
