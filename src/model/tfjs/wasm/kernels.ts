/**
 * Training kernels for the tfjs wasm backend (tfjs-backend-wasm 4.22).
 *
 * The stock wasm backend lacks the kernels FAIR training needs for gradients, or runs them in
 * slow scalar loops (measured in /work/shared/notes/compute.md section 2):
 *
 * | kernel | stock 4.22 | here |
 * |---|---|---|
 * | Conv2DBackpropFilter (conv dW) | missing | im2col per K-chunk + XNNPACK BatchMatMul |
 * | Conv2DBackpropInput (conv dX) | scalar C loop | stride 1: Conv2D(dy, flipped Wᵀ), else stock |
 * | DepthwiseConv2dNativeBackpropInput (SSIM Gaussian dX) | missing | multiplier 1, stride 1: depthwise conv with the flipped filter, else JS |
 * | DepthwiseConv2dNativeBackpropFilter | missing | JS loop |
 * | Slice / SplitV | copies the whole input per call (`readSync`) | copies only the output from a heap view |
 * | Tile (batch-norm gradient) | slow C loop | JS block copies with `copyWithin` |
 *
 * Kernels talk to the backend through its heap: `typedArrayFromHeap` views are invalidated when
 * the heap grows (single-threaded build), so views are re-taken after every allocation.
 * Everything is NHWC ('channelsLast'), the only layout the wasm convolutions support.
 */
import * as tf from '@tensorflow/tfjs';
import { BackendError } from '../../../errors.js';

type TensorInfo = tf.TensorInfo;
type Heap = Float32Array | Int32Array | Uint8Array;

/** The parts of tfjs-backend-wasm's `BackendWasm` these kernels use (stable across 4.x). */
interface HeapBackend {
  makeOutput(shape: number[], dtype: tf.DataType): TensorInfo;
  typedArrayFromHeap(t: TensorInfo): Heap;
  disposeData(dataId: object, force?: boolean): boolean;
}

type KernelArgs = Parameters<tf.KernelFunc>[0];
type Pad = 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;

/** Names of the kernels `registerWasmTrainingKernels` adds or replaces on 'wasm'. */
export const WASM_TRAINING_KERNELS = [
  'Conv2DBackpropFilter',
  'Conv2DBackpropInput',
  'DepthwiseConv2dNativeBackpropInput',
  'DepthwiseConv2dNativeBackpropFilter',
  'Slice',
  'SplitV',
  'Tile',
] as const;

/** Stock configs of the kernels we replace; fallbacks call them. */
const stock = new Map<string, tf.KernelConfig>();
let registered = false;

function heapF32(b: HeapBackend, t: TensorInfo): Float32Array {
  return b.typedArrayFromHeap(t) as Float32Array;
}

/** Call another wasm kernel directly (as tfjs' own kernels do); returns a TensorInfo to dispose. */
function run(name: string, inputs: Record<string, TensorInfo>, backend: HeapBackend, attrs: Record<string, unknown> = {}): TensorInfo {
  const config = stock.get(name) ?? tf.getKernel(name, 'wasm');
  if (!config) throw new BackendError('missing_kernel', `wasm kernel ${name} is not registered`);
  return config.kernelFunc({ inputs, backend, attrs: attrs as tf.NamedAttrMap }) as TensorInfo;
}

function requireNhwc(kernel: string, format: string): void {
  if (format !== 'channelsLast') {
    throw new BackendError('unsupported_kernel_attr', `wasm ${kernel}: only NHWC (channelsLast) is supported, got ${format}`);
  }
}

/** W[i,j,c,co] -> W'[kh-1-i, kw-1-j, co, c] (flip both spatial axes, swap in/out channels). */
function flipTransposeFilter(b: HeapBackend, filter: TensorInfo): TensorInfo {
  const [kh, kw, cin, cout] = filter.shape as [number, number, number, number];
  const out = b.makeOutput([kh, kw, cout, cin], 'float32');
  const w = heapF32(b, filter);
  const o = heapF32(b, out);
  for (let i = 0; i < kh; i++)
    for (let j = 0; j < kw; j++) {
      const src = (i * kw + j) * cin * cout;
      const dst = ((kh - 1 - i) * kw + (kw - 1 - j)) * cout * cin;
      for (let c = 0; c < cin; c++) for (let co = 0; co < cout; co++) o[dst + co * cin + c] = w[src + c * cout + co]!;
    }
  return out;
}

/** Depthwise filter [kh,kw,C,1] flipped in both spatial axes. */
function flipFilter(b: HeapBackend, filter: TensorInfo): TensorInfo {
  const [kh, kw, c, m] = filter.shape as [number, number, number, number];
  const out = b.makeOutput([kh, kw, c, m], 'float32');
  const w = heapF32(b, filter);
  const o = heapF32(b, out);
  const inner = c * m;
  for (let i = 0; i < kh; i++)
    for (let j = 0; j < kw; j++) {
      const src = (i * kw + j) * inner;
      o.set(w.subarray(src, src + inner), ((kh - 1 - i) * kw + (kw - 1 - j)) * inner);
    }
  return out;
}

interface ConvAttrs {
  strides: number | [number, number];
  pad: Pad;
  dataFormat?: 'NHWC' | 'NCHW';
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
  dilations?: number | [number, number];
}

/**
 * dW of a 2-D convolution: dW[(i,j,c), co] = Σ_k A[(i,j,c), k] · dy[k, co] with k = (n, oy, ox).
 * x is transposed once to [C, N, H, W] so each im2col row is a run of row copies; K is cut into
 * chunks of whole output rows so the dy chunk (Kc × Co) stays in L2 while XNNPACK multiplies.
 * Each chunk's dy copy is a fresh tensor because the stock BatchMatMul caches its packed
 * weights by tensor id.
 */
function conv2DBackpropFilter({ inputs, backend, attrs }: KernelArgs): TensorInfo {
  const b = backend as unknown as HeapBackend;
  const { x, dy } = inputs as { x: TensorInfo; dy: TensorInfo };
  const a = attrs as unknown as ConvAttrs & { filterShape: [number, number, number, number] };
  const info = tf.backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number], a.filterShape, a.strides, 1, a.pad, a.dimRoundingMode, false,
    tf.backend_util.convertConv2DDataFormat(a.dataFormat ?? 'NHWC'));
  requireNhwc('Conv2DBackpropFilter', info.dataFormat);
  const { batchSize: N, inHeight: H, inWidth: W, inChannels: C, outHeight: Ho, outWidth: Wo, outChannels: Co,
    filterHeight: kh, filterWidth: kw, strideHeight: sh, strideWidth: sw } = info;
  const top = info.padInfo.top, left = info.padInfo.left;
  const M = kh * kw * C;
  const acc = new Float64Array(M * Co);

  const xt = run('Transpose', { x }, b, { perm: [3, 0, 1, 2] });
  // Chunk so the packed dy block is about 128 K floats (512 KB), at least 1024 rows of K.
  const kcTarget = Math.max(1024, Math.floor(131072 / Co));
  const rowsPerChunk = Math.max(1, Math.floor(kcTarget / Wo));
  const totalRows = N * Ho;
  const im2col = b.makeOutput([1, M, Math.min(rowsPerChunk, totalRows) * Wo], 'float32');
  try {
    for (let r0 = 0; r0 < totalRows; r0 += rowsPerChunk) {
      const r1 = Math.min(totalRows, r0 + rowsPerChunk);
      const kc = (r1 - r0) * Wo;
      const dyChunk = b.makeOutput([1, kc, Co], 'float32');
      const xv = heapF32(b, xt), av = heapF32(b, im2col), dyv = heapF32(b, dy);
      heapF32(b, dyChunk).set(dyv.subarray(r0 * Wo * Co, r1 * Wo * Co));
      for (let i = 0; i < kh; i++)
        for (let j = 0; j < kw; j++) {
          // Output columns whose input column ox*sw + j - left falls inside [0, W).
          const ox0 = Math.max(0, Math.ceil((left - j) / sw));
          const ox1 = Math.min(Wo, Math.floor((W - 1 + left - j) / sw) + 1);
          for (let c = 0; c < C; c++) {
            const rowBase = ((i * kw + j) * C + c) * kc;
            for (let r = r0; r < r1; r++) {
              const n = (r / Ho) | 0;
              const iy = (r - n * Ho) * sh + i - top;
              const dst = rowBase + (r - r0) * Wo;
              if (iy < 0 || iy >= H || ox1 <= ox0) {
                av.fill(0, dst, dst + Wo);
                continue;
              }
              const src = ((c * N + n) * H + iy) * W + j - left;
              if (ox0 > 0) av.fill(0, dst, dst + ox0);
              if (sw === 1) av.set(xv.subarray(src + ox0, src + ox1), dst + ox0);
              else for (let ox = ox0; ox < ox1; ox++) av[dst + ox] = xv[src + ox * sw]!;
              if (ox1 < Wo) av.fill(0, dst + ox1, dst + Wo);
            }
          }
        }
      const part = run('BatchMatMul', { a: { ...im2col, shape: [1, M, kc] }, b: dyChunk }, b, { transposeA: false, transposeB: false });
      const pv = heapF32(b, part);
      for (let k = 0; k < acc.length; k++) acc[k]! += pv[k]!;
      b.disposeData(part.dataId);
      b.disposeData(dyChunk.dataId);
    }
  } finally {
    b.disposeData(im2col.dataId);
    b.disposeData(xt.dataId);
  }
  const out = b.makeOutput([kh, kw, C, Co], 'float32');
  heapF32(b, out).set(acc);
  return out;
}

/**
 * dX of a 2-D convolution. Stride 1: a plain convolution of dy with the flipped, in/out-swapped
 * filter and pads (k-1-pad), which runs on XNNPACK (threaded) instead of the stock scalar loop.
 * Other strides go to the stock kernel.
 */
function conv2DBackpropInput(args: KernelArgs): TensorInfo {
  const { inputs, backend, attrs } = args;
  const b = backend as unknown as HeapBackend;
  const { dy, filter } = inputs as { dy: TensorInfo; filter: TensorInfo };
  const a = attrs as unknown as ConvAttrs & { inputShape: [number, number, number, number] };
  const info = tf.backend_util.computeConv2DInfo(
    a.inputShape, filter.shape as [number, number, number, number], a.strides, 1, a.pad, a.dimRoundingMode, false,
    tf.backend_util.convertConv2DDataFormat(a.dataFormat ?? 'NHWC'));
  const { top, bottom, left, right } = info.padInfo;
  const kh = info.filterHeight, kw = info.filterWidth;
  const pads = [kh - 1 - top, kh - 1 - bottom, kw - 1 - left, kw - 1 - right];
  if (info.dataFormat !== 'channelsLast' || info.strideHeight !== 1 || info.strideWidth !== 1 || pads.some((p) => p < 0)) {
    return stock.get('Conv2DBackpropInput')!.kernelFunc(args) as TensorInfo;
  }
  const wf = flipTransposeFilter(b, filter);
  try {
    return run('Conv2D', { x: dy, filter: wf }, b, {
      strides: [1, 1], dilations: [1, 1], dataFormat: 'NHWC',
      pad: [[0, 0], [pads[0], pads[1]], [pads[2], pads[3]], [0, 0]],
    });
  } finally {
    b.disposeData(wf.dataId);
  }
}

interface DepthwiseAttrs {
  strides: number | [number, number];
  pad: Pad;
  dilations?: number | [number, number];
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
}

function depthwiseInfo(xShape: number[], filterShape: number[], a: DepthwiseAttrs): tf.backend_util.Conv2DInfo {
  return tf.backend_util.computeConv2DInfo(
    xShape as [number, number, number, number], filterShape as [number, number, number, number],
    a.strides, a.dilations ?? 1, a.pad, a.dimRoundingMode, true);
}

/**
 * dX of a depthwise convolution (the SSIM loss' Gaussian window). Multiplier 1, stride 1,
 * dilation 1: depthwise conv of dy with the spatially flipped filter (XNNPACK). Otherwise a
 * direct JS scatter loop.
 */
function depthwiseBackpropInput({ inputs, backend, attrs }: KernelArgs): TensorInfo {
  const b = backend as unknown as HeapBackend;
  const { dy, filter } = inputs as { dy: TensorInfo; filter: TensorInfo };
  const a = attrs as unknown as DepthwiseAttrs & { inputShape: [number, number, number, number] };
  const info = depthwiseInfo(a.inputShape, filter.shape, a);
  const { top, bottom, left, right } = info.padInfo;
  const kh = info.filterHeight, kw = info.filterWidth;
  const m = filter.shape[3]!;
  const pads = [kh - 1 - top, kh - 1 - bottom, kw - 1 - left, kw - 1 - right];
  if (m === 1 && info.strideHeight === 1 && info.strideWidth === 1 && info.dilationHeight === 1 &&
    info.dilationWidth === 1 && pads.every((p) => p >= 0)) {
    const wf = flipFilter(b, filter);
    try {
      return run('DepthwiseConv2dNative', { x: dy, filter: wf }, b, {
        strides: [1, 1], dilations: [1, 1], pad: [[0, 0], [pads[0], pads[1]], [pads[2], pads[3]], [0, 0]],
      });
    } finally {
      b.disposeData(wf.dataId);
    }
  }
  const { batchSize: N, inHeight: H, inWidth: W, inChannels: C, outHeight: Ho, outWidth: Wo,
    strideHeight: sh, strideWidth: sw, dilationHeight: dh, dilationWidth: dw } = info;
  const out = b.makeOutput([N, H, W, C], 'float32');
  const dx = heapF32(b, out), g = heapF32(b, dy), w = heapF32(b, filter);
  dx.fill(0);
  const Cm = C * m;
  for (let n = 0; n < N; n++)
    for (let oy = 0; oy < Ho; oy++)
      for (let ox = 0; ox < Wo; ox++) {
        const gBase = ((n * Ho + oy) * Wo + ox) * Cm;
        for (let i = 0; i < kh; i++) {
          const iy = oy * sh + i * dh - top;
          if (iy < 0 || iy >= H) continue;
          for (let j = 0; j < kw; j++) {
            const ix = ox * sw + j * dw - left;
            if (ix < 0 || ix >= W) continue;
            const xBase = ((n * H + iy) * W + ix) * C;
            const wBase = (i * kw + j) * Cm;
            for (let c = 0; c < C; c++) {
              let s = 0;
              for (let q = 0; q < m; q++) s += g[gBase + c * m + q]! * w[wBase + c * m + q]!;
              dx[xBase + c] += s;
            }
          }
        }
      }
  return out;
}

/** dW of a depthwise convolution: a direct JS reduction (the filters are tiny). */
function depthwiseBackpropFilter({ inputs, backend, attrs }: KernelArgs): TensorInfo {
  const b = backend as unknown as HeapBackend;
  const { x, dy } = inputs as { x: TensorInfo; dy: TensorInfo };
  const a = attrs as unknown as DepthwiseAttrs & { filterShape: [number, number, number, number] };
  const info = depthwiseInfo(x.shape, a.filterShape, a);
  const m = a.filterShape[3];
  const { batchSize: N, inHeight: H, inWidth: W, inChannels: C, outHeight: Ho, outWidth: Wo,
    filterHeight: kh, filterWidth: kw, strideHeight: sh, strideWidth: sw, dilationHeight: dh, dilationWidth: dw } = info;
  const top = info.padInfo.top, left = info.padInfo.left;
  const Cm = C * m;
  const acc = new Float64Array(kh * kw * Cm);
  const xv = heapF32(b, x), g = heapF32(b, dy);
  for (let n = 0; n < N; n++)
    for (let oy = 0; oy < Ho; oy++)
      for (let ox = 0; ox < Wo; ox++) {
        const gBase = ((n * Ho + oy) * Wo + ox) * Cm;
        for (let i = 0; i < kh; i++) {
          const iy = oy * sh + i * dh - top;
          if (iy < 0 || iy >= H) continue;
          for (let j = 0; j < kw; j++) {
            const ix = ox * sw + j * dw - left;
            if (ix < 0 || ix >= W) continue;
            const xBase = ((n * H + iy) * W + ix) * C;
            const wBase = (i * kw + j) * Cm;
            for (let c = 0; c < C; c++) {
              const xval = xv[xBase + c]!;
              for (let q = 0; q < m; q++) acc[wBase + c * m + q]! += xval * g[gBase + c * m + q]!;
            }
          }
        }
      }
  const out = b.makeOutput([kh, kw, C, m], 'float32');
  heapF32(b, out).set(acc);
  return out;
}

/** Copy the box [begin, begin+size) of x (row-major `shape`) into out, innermost runs at once. */
function copyBox(xv: Heap, shape: number[], begin: number[], size: number[], ov: Heap): void {
  const rank = shape.length;
  if (rank === 0) {
    ov[0] = xv[0]!;
    return;
  }
  const strides = tf.util.computeStrides(shape);
  const inner = size[rank - 1]!;
  const outer = tf.util.sizeFromShape(size.slice(0, -1));
  const idx = new Array<number>(Math.max(0, rank - 1)).fill(0);
  for (let o = 0; o < outer; o++) {
    let src = begin[rank - 1]!;
    for (let d = 0; d < rank - 1; d++) src += (begin[d]! + idx[d]!) * strides[d]!;
    ov.set(xv.subarray(src, src + inner), o * inner);
    for (let d = rank - 2; d >= 0; d--) {
      if (++idx[d]! < size[d]!) break;
      idx[d] = 0;
    }
  }
}

/** Slice from a heap view: O(output) instead of the stock kernel's copy of the whole input. */
function slice(args: KernelArgs): TensorInfo {
  const { inputs, backend, attrs } = args;
  const b = backend as unknown as HeapBackend;
  const { x } = inputs as { x: TensorInfo };
  if (x.dtype === 'string') return stock.get('Slice')!.kernelFunc(args) as TensorInfo;
  const { begin, size } = attrs as unknown as { begin: number | number[]; size: number | number[] };
  const [b0, s0] = tf.slice_util.parseSliceParams(x as unknown as tf.Tensor, begin, size);
  const out = b.makeOutput(s0, x.dtype);
  if (tf.util.sizeFromShape(s0) > 0) copyBox(b.typedArrayFromHeap(x), x.shape, b0, s0, b.typedArrayFromHeap(out));
  return out;
}

/** SplitV on top of the fast slice (the stock one calls the copying Slice once per part). */
function splitV(args: KernelArgs): TensorInfo[] {
  const { inputs, backend, attrs } = args;
  const { x } = inputs as { x: TensorInfo };
  if (x.dtype === 'string') return stock.get('SplitV')!.kernelFunc(args) as TensorInfo[];
  const { numOrSizeSplits, axis } = attrs as unknown as { numOrSizeSplits: number | number[]; axis: number | number[] };
  const ax = tf.util.parseAxisParam(axis, x.shape)[0]!;
  const sizes = tf.backend_util.prepareSplitSize(x as unknown as tf.Tensor, numOrSizeSplits, ax);
  const begin = new Array<number>(x.shape.length).fill(0);
  return sizes.map((s) => {
    const size = [...x.shape];
    size[ax] = s;
    const part = slice({ inputs: { x }, backend, attrs: { begin: [...begin], size } });
    begin[ax]! += s;
    return part;
  });
}

/**
 * Tile with block copies: fill the innermost axis, then replicate each finished block along
 * the outer axes with doubling `copyWithin` (O(output) bulk memory moves, few calls).
 */
function tile(args: KernelArgs): TensorInfo {
  const { inputs, backend, attrs } = args;
  const b = backend as unknown as HeapBackend;
  const { x } = inputs as { x: TensorInfo };
  if (x.dtype === 'string') return stock.get('Tile')!.kernelFunc(args) as TensorInfo;
  const { reps } = attrs as unknown as { reps: number[] };
  const shape = x.shape;
  const outShape = shape.map((s, i) => s * reps[i]!);
  const out = b.makeOutput(outShape, x.dtype);
  if (tf.util.sizeFromShape(outShape) === 0) return out;
  const xv = b.typedArrayFromHeap(x), ov = b.typedArrayFromHeap(out);
  const rank = shape.length;
  if (rank === 0) {
    ov[0] = xv[0]!;
    return out;
  }
  const xStrides = tf.util.computeStrides(shape);
  const oStrides = tf.util.computeStrides(outShape);
  const fill = (axis: number, xOff: number, oOff: number): void => {
    const n = shape[axis]!;
    if (axis === rank - 1) {
      ov.set(xv.subarray(xOff, xOff + n), oOff);
    } else {
      for (let i = 0; i < n; i++) fill(axis + 1, xOff + i * xStrides[axis]!, oOff + i * oStrides[axis]!);
    }
    // One tile of this axis is now complete at oOff; replicate it by doubling (log2(reps) copies).
    const block = n * (axis === rank - 1 ? 1 : oStrides[axis]!);
    const r = reps[axis]!;
    for (let done = 1; done < r;) {
      const k = Math.min(done, r - done);
      ov.copyWithin(oOff + done * block, oOff, oOff + k * block);
      done += k;
    }
  };
  fill(0, 0, 0);
  return out;
}

const configs: { name: (typeof WASM_TRAINING_KERNELS)[number]; kernelFunc: tf.KernelFunc; replaces: boolean }[] = [
  { name: 'Conv2DBackpropFilter', kernelFunc: conv2DBackpropFilter as tf.KernelFunc, replaces: false },
  { name: 'Conv2DBackpropInput', kernelFunc: conv2DBackpropInput as tf.KernelFunc, replaces: true },
  { name: 'DepthwiseConv2dNativeBackpropInput', kernelFunc: depthwiseBackpropInput as tf.KernelFunc, replaces: false },
  { name: 'DepthwiseConv2dNativeBackpropFilter', kernelFunc: depthwiseBackpropFilter as tf.KernelFunc, replaces: false },
  { name: 'Slice', kernelFunc: slice as tf.KernelFunc, replaces: true },
  { name: 'SplitV', kernelFunc: splitV as tf.KernelFunc, replaces: true },
  { name: 'Tile', kernelFunc: tile as tf.KernelFunc, replaces: true },
];

/** The stock 4.22 config of a kernel this module replaced (for benchmarks and fallbacks). */
export function stockWasmKernel(name: string): tf.KernelConfig | undefined {
  return stock.get(name);
}

/**
 * Register the training kernels on the 'wasm' backend (idempotent). Call after
 * `@tensorflow/tfjs-backend-wasm` is loaded and before `tf.setBackend('wasm')`, so that the
 * stock setup (cwrap) of the kernels we wrap still runs when the backend initialises.
 *
 * @example
 * ```ts
 * import '@tensorflow/tfjs-backend-wasm';
 * registerWasmTrainingKernels();
 * await tf.setBackend('wasm');
 * const dW = tf.grad((w: tf.Tensor4D) => tf.conv2d(x, w, 1, 'same').sum())(w); // runs on wasm
 * ```
 * @returns the kernel names now provided by this module.
 */
export function registerWasmTrainingKernels(): readonly string[] {
  if (registered) return WASM_TRAINING_KERNELS;
  for (const c of configs) {
    const existing = tf.getKernel(c.name, 'wasm');
    if (c.replaces) {
      if (!existing) throw new BackendError('missing_kernel', `stock wasm kernel ${c.name} not found; is @tensorflow/tfjs-backend-wasm loaded?`);
      stock.set(c.name, existing);
      tf.unregisterKernel(c.name, 'wasm');
    } else if (existing) {
      // A later tfjs that ships this kernel: keep ours for identical numerics, but say nothing.
      tf.unregisterKernel(c.name, 'wasm');
    }
    // The replaced kernels keep the stock setup so their fallbacks have their cwraps.
    const setupFunc = stock.get(c.name)?.setupFunc;
    tf.registerKernel({ kernelName: c.name, backendName: 'wasm', kernelFunc: c.kernelFunc, ...(setupFunc ? { setupFunc } : {}) });
  }
  registered = true;
  return WASM_TRAINING_KERNELS;
}
