/**
 * Timings of the wasm training kernels (src/model/tfjs/wasm/kernels.ts) against the stock tfjs-backend-wasm
 * 4.22 kernels they replace. Small on purpose (shared 2-core box): one warm-up, median of 3.
 *
 *   node --import tsx bench/kernels.ts            # threads: all CPUs (threaded-simd build)
 *   FAIRLINE_WASM_THREADS=1 node --import tsx bench/kernels.ts
 */
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/model/tfjs/backend.js';
import { stockWasmKernel } from '../src/model/tfjs/wasm/kernels.js';

const info = await initBackend({ backend: 'wasm', log: (m) => console.log(m) });

function median(xs: number[]): number {
  return [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
}

/** Time a kernel through the engine, or a stock kernelFunc directly on the backend. */
function time(label: string, flops: number, call: () => tf.TensorInfo | tf.TensorInfo[], reps = 3): number {
  const b = tf.backend() as unknown as { disposeData(id: object): void; readSync(id: object): unknown };
  const once = (): number => {
    const t0 = performance.now();
    const out = call();
    for (const o of Array.isArray(out) ? out : [out]) {
      b.readSync(o.dataId);
      if (o instanceof tf.Tensor) o.dispose();
      else b.disposeData(o.dataId);
    }
    return performance.now() - t0;
  };
  once();
  const ms = median(Array.from({ length: reps }, once));
  console.log(`${label.padEnd(58)} ${ms.toFixed(1).padStart(8)} ms${flops ? `  ${(flops / ms / 1e6).toFixed(1)} GFLOP/s` : ''}`);
  return ms;
}

const [N, S, C, Co] = [8, 64, 32, 32];
const x = tf.randomNormal([N, S, S, C]) as tf.Tensor4D;
const dy = tf.randomNormal([N, S, S, Co]) as tf.Tensor4D;
const w = tf.randomNormal([3, 3, C, Co]) as tf.Tensor4D;
const flops = 2 * N * S * S * C * Co * 9;
const convAttrs = { strides: 1, pad: 'same', dataFormat: 'NHWC' };
const attrs = (a: object): tf.NamedAttrMap => a as tf.NamedAttrMap;
const backend = tf.backend();
console.log(`shape ${N}x${S}x${S}x${C} -> ${Co}, 3x3 same; ${info.threads} thread(s)`);
time('Conv2D forward (stock, XNNPACK)', flops, () => tf.conv2d(x, w, 1, 'same'));
time('Conv2DBackpropFilter (fairline: im2col + BatchMatMul)', flops, () =>
  tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, attrs({ ...convAttrs, filterShape: [3, 3, C, Co] })) as tf.Tensor);
time('Conv2DBackpropInput (fairline: conv of flipped W)', flops, () =>
  tf.engine().runKernel('Conv2DBackpropInput', { dy, filter: w }, attrs({ ...convAttrs, inputShape: [N, S, S, C] })) as tf.Tensor);
time('Conv2DBackpropInput (stock 4.22 scalar loop)', flops, () =>
  stockWasmKernel('Conv2DBackpropInput')!.kernelFunc({ inputs: { dy, filter: w }, backend, attrs: attrs({ ...convAttrs, inputShape: [N, S, S, C] }) }) as tf.TensorInfo, 1);

const big = tf.randomNormal([8, 128, 128, 32]);
const stat = tf.randomNormal([1, 1, 1, 32]);
time('Tile 1x1x1x32 -> 8x128x128x32 (fairline)', 0, () => tf.tile(stat, [8, 128, 128, 1]));
time('Tile 1x1x1x32 -> 8x128x128x32 (stock)', 0, () =>
  stockWasmKernel('Tile')!.kernelFunc({ inputs: { x: stat }, backend, attrs: { reps: [8, 128, 128, 1] } }) as tf.TensorInfo);
time('Slice 1x128x128x32 of 8x128x128x32 (fairline)', 0, () => tf.slice(big, [3, 0, 0, 0], [1, 128, 128, 32]));
time('Slice 1x128x128x32 of 8x128x128x32 (stock)', 0, () =>
  stockWasmKernel('Slice')!.kernelFunc({ inputs: { x: big }, backend, attrs: { begin: [3, 0, 0, 0], size: [1, 128, 128, 32] } }) as tf.TensorInfo);
tf.dispose([x, dy, w, big, stat]);
