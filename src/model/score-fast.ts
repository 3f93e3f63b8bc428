/**
 * FAIR scoring on typed arrays, for the tfjs fallback (the onnx engine scores inside its graph):
 * the same map as `scoreBatch` (src/model/tfjs/score.ts; fair-reference.md section 6) without a
 * tensor op per step, computed by a small WebAssembly kernel (src/model/score-kernel/score.c,
 * embedded in src/model/score-kernel/module.ts). Per image:
 *
 * - MSGMS: Prewitt/3 gradients of the three channels of restored and original (separable: column
 *   sums and differences of three rows), the GMS ratio summed over channels; each coarser scale
 *   (2x2 average pool) is summed at its own size first and upsampled once (half-pixel bilinear;
 *   the channel mean and the linear upsampling commute);
 * - colour: Lab a/b per pixel; the powers ((v+0.055)/1.055)^2.4 and cbrt by Newton steps from a
 *   bit-pattern guess (no tables: vectorised);
 * - the k x k zero-padded mean as a box filter: running sums, vertical then horizontal, O(1) per
 *   pixel whatever k;
 * - score = max of the map.
 *
 * float32 arithmetic as the tensor path (the box filter's running sums float64); maps agree with
 * the tensor path and the official golden map within 1e-5 (test/score-fast.test.ts).
 * Synchronous; one call at a time per thread (the kernel's memory is module state, as JavaScript
 * runs it anyway).
 *
 * Why WebAssembly: the same algorithm in JavaScript (V8 11, Node 20) ran 67 M instructions per
 * 256 x 256 frame, most of them V8's per-access work on typed arrays (map checks, bounds,
 * re-materialised constants) and float64 table lookups; compiled C has none of it and runs the
 * row loops 4 floats at a time.
 */
import { BadInputError } from '../errors.js';
import { checkSpec, D65_WHITE, RGB_TO_XYZ } from './score.js';
import { SCORE_KERNEL_WASM } from './score-kernel/module.js';
import type { ScoringSpec } from './types.js';
import { DEFAULT_SCORING } from './types.js';

/** [9] matrix: xyz_j = sum_k lin_k m[k*3+j], channel order folded in (see score.ts xyzMatrix). */
function xyzMatrix(mode: ScoringSpec['colourMode']): Float32Array {
  const m = new Float32Array(9);
  for (let k = 0; k < 3; k++) {
    const rgbIndex = mode === 'rgb' ? 2 - k : k;
    for (let j = 0; j < 3; j++) m[k * 3 + j] = RGB_TO_XYZ[j]![rgbIndex]! / D65_WHITE[j]!;
  }
  return m;
}

// ---------------------------------------------------------------------------------------------
// The kernel

interface KernelExports {
  memory: WebAssembly.Memory;
  __heap_base: WebAssembly.Global;
  score_work_floats(S: number, scales: number): number;
  score_image(y: number, x: number, S: number, scales: number, c: number, weight: number, k: number, m: number, work: number, map: number): number;
}

/** The instantiated kernel: its exports and its first free byte. */
interface Kernel { ex: KernelExports; free: number }
let kernel: Kernel | undefined;

function base64Bytes(b64: string): Uint8Array<ArrayBuffer> {
  const src = typeof Buffer !== 'undefined' ? Buffer.from(b64, 'base64') : Uint8Array.from(atob(b64), (ch) => ch.charCodeAt(0));
  const out = new Uint8Array(src.length);
  out.set(src);
  return out;
}

/** Instantiate the kernel once (synchronously: the module is a few KB). */
function loadKernel(): Kernel {
  if (kernel) return kernel;
  const module = new WebAssembly.Module(base64Bytes(SCORE_KERNEL_WASM));
  const ex = new WebAssembly.Instance(module, {}).exports as unknown as KernelExports;
  return (kernel = { ex, free: align8(ex.__heap_base.value as number) });
}

function align8(n: number): number {
  return (n + 7) & ~7;
}

/** Grow `memory` to at least `bytes`. */
function grow(memory: WebAssembly.Memory, bytes: number): void {
  const have = memory.buffer.byteLength;
  if (bytes > have) memory.grow(Math.ceil((bytes - have) / 65536));
}

/**
 * Full FAIR scoring of a batch on typed arrays (same result as {@link scoreBatch}).
 *
 * @param restored UNet output, NHWC BGR, n*S*S*3 (not clamped)
 * @param original input images, NHWC BGR in [0,1], n*S*S*3
 * @returns maps n*S*S (image i at offset i*S*S) and scores (max of each map)
 * @throws BadInputError `bad_shape` for mismatched buffers; ConfigError for bad settings.
 * @example
 * const { maps, scores } = scoreArrays(restored, batch, 8, 256, spec.scoring);
 */
export function scoreArrays(restored: Float32Array, original: Float32Array, n: number, S: number, spec: ScoringSpec = DEFAULT_SCORING): { maps: Float32Array; scores: Float32Array } {
  checkSpec(spec);
  const px = S * S * 3;
  if (!Number.isInteger(n) || n < 1 || !Number.isInteger(S) || S < 1 || restored.length !== n * px || original.length !== n * px)
    throw new BadInputError('bad_shape', `scoreArrays: expected ${n} images of ${S}x${S}x3 (${n * px} values), got ${restored.length} and ${original.length}`);
  if (S % 2 ** (spec.msgmsScales - 1) !== 0) throw new BadInputError('bad_shape', `scoreArrays: size ${S} is not divisible by 2^${spec.msgmsScales - 1} (MSGMS scales)`);
  const { ex, free } = loadKernel();
  // Layout: XYZ matrix [9 f32], work, restored, original, map (one image each).
  const mAt = free, workAt = mAt + 40, yAt = workAt + align8(ex.score_work_floats(S, spec.msgmsScales) * 4);
  const xAt = yAt + align8(px * 4), mapAt = xAt + align8(px * 4);
  grow(ex.memory, mapAt + S * S * 4);
  const mem = ex.memory.buffer; // after growing: views of the old buffer are detached
  new Float32Array(mem, mAt, 9).set(xyzMatrix(spec.colourMode));
  const yIn = new Float32Array(mem, yAt, px), xIn = new Float32Array(mem, xAt, px), mapOut = new Float32Array(mem, mapAt, S * S);
  const maps = new Float32Array(n * S * S);
  const scores = new Float32Array(n);
  for (let b = 0; b < n; b++) {
    yIn.set(restored.subarray(b * px, (b + 1) * px));
    xIn.set(original.subarray(b * px, (b + 1) * px));
    scores[b] = ex.score_image(yAt, xAt, S, spec.msgmsScales, spec.msgmsC, spec.colourWeight, spec.smoothKernel, mAt, workAt, mapAt);
    maps.set(mapOut, b * S * S);
  }
  return { maps, scores };
}
