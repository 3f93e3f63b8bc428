/**
 * ONNX export (src/model/onnx-export.ts) + onnxruntime-node engine (src/io/onnx-engine.ts):
 * the exported graph must reproduce the official PyTorch UNet (golden unet_c4, eval mode) with
 * and without BN folding, in both layouts, for any batch size, and agree with an independent
 * float64 JS forward pass on random weights (2 input channels, random BN statistics).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import onnxPkg from 'onnx-proto';
import { BackendError, BadInputError, ConfigError, ModelError } from '../src/errors.js';
import { exportUNetOnnx, unetTorchShapes, type TorchTensors, type OnnxExportOptions } from '../src/model/onnx-export.js';
import { OnnxEngine, isOnnxRuntimeAvailable } from '../src/io/onnx-engine.js';
import * as tf from '@tensorflow/tfjs';
import { unetFromTorch, unetToTorch } from '../src/model/weights.js';
import type { UNetSpec } from '../src/model/types.js';
import { GOLDEN_DIR, expectArraysClose, expectArraysCloseRel, golden, nchwToNhwc } from './helpers.js';
import { createRng } from '../src/model/synthesis/rng.js';

/** Seeded uniform [0, 1) generator (the project's RNG). */
const rng = (seed: number): (() => number) => {
  const g = createRng(seed);
  return () => g.uniform();
};

const { onnx } = onnxPkg;

/** The golden c4 weights in the import format (weights.json + weights.f32). */
function loadGoldenWeights(): { tensors: TorchTensors; spec: UNetSpec } {
  const dir = join(GOLDEN_DIR, 'unet_c4_weights');
  const meta = JSON.parse(readFileSync(join(dir, 'weights.json'), 'utf8')) as {
    tensors: Record<string, { shape: number[]; offset: number; length: number }>;
    base_width: number;
    in_channels: number;
    out_channels: number;
  };
  const buf = readFileSync(join(dir, 'weights.f32'));
  const all = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
  const tensors: TorchTensors = {};
  for (const [k, v] of Object.entries(meta.tensors)) tensors[k] = { shape: v.shape, data: all.subarray(v.offset, v.offset + v.length) };
  return { tensors, spec: { baseWidth: meta.base_width, inChannels: meta.in_channels, outChannels: meta.out_channels } };
}


/** Random weights with non-trivial BN statistics (so folding and eval-mode BN are exercised). */
function randomTensors(spec: UNetSpec, seed: number): TorchTensors {
  const r = rng(seed);
  const out: TorchTensors = {};
  for (const [name, shape] of Object.entries(unetTorchShapes(spec))) {
    const n = shape.reduce((a, b) => a * b, 1);
    const d = new Float32Array(n);
    const fanIn = shape.length === 4 ? shape[1]! * 9 : 1;
    for (let i = 0; i < n; i++) {
      const u = r() * 2 - 1;
      if (shape.length === 4) d[i] = u * Math.sqrt(3 / fanIn);
      else if (name.endsWith('running_var')) d[i] = 0.5 + r();
      else if (name.endsWith('running_mean')) d[i] = 0.2 * u;
      else if (name.endsWith('.weight')) d[i] = 1 + 0.3 * u; // BN gamma
      else d[i] = 0.1 * u; // conv bias, BN beta
    }
    out[name] = { shape, data: d };
  }
  return out;
}

/** Independent float64 NCHW forward of the FAIR UNet in eval mode (reference section 2). */
function referenceForward(t: TorchTensors, spec: UNetSpec, x: Float32Array, n: number, size: number): Float64Array {
  type Act = { c: number; h: number; w: number; d: Float64Array };
  const conv = (a: Act, name: string, bn?: string): Act => {
    const W = t[`${name}.weight`]!, B = t[`${name}.bias`]!.data;
    const co = W.shape[0]!, ci = W.shape[1]!;
    const o = new Float64Array(n * co * a.h * a.w);
    for (let b = 0; b < n; b++)
      for (let oc = 0; oc < co; oc++)
        for (let y = 0; y < a.h; y++)
          for (let xx = 0; xx < a.w; xx++) {
            let s = B[oc]!;
            for (let ic = 0; ic < ci; ic++)
              for (let ky = 0; ky < 3; ky++) {
                const yy = y + ky - 1;
                if (yy < 0 || yy >= a.h) continue;
                for (let kx = 0; kx < 3; kx++) {
                  const xs = xx + kx - 1;
                  if (xs < 0 || xs >= a.w) continue;
                  s += W.data[((oc * ci + ic) * 3 + ky) * 3 + kx]! * a.d[((b * ci + ic) * a.h + yy) * a.w + xs]!;
                }
              }
            if (bn) {
              const g = t[`${bn}.weight`]!.data[oc]!, be = t[`${bn}.bias`]!.data[oc]!;
              const m = t[`${bn}.running_mean`]!.data[oc]!, v = t[`${bn}.running_var`]!.data[oc]!;
              s = Math.max(0, ((s - m) / Math.sqrt(v + 1e-5)) * g + be);
            }
            o[((b * co + oc) * a.h + y) * a.w + xx] = s;
          }
    return { c: co, h: a.h, w: a.w, d: o };
  };
  const pool = (a: Act): Act => {
    const h = a.h / 2, w = a.w / 2, o = new Float64Array(n * a.c * h * w);
    for (let bc = 0; bc < n * a.c; bc++)
      for (let y = 0; y < h; y++)
        for (let xx = 0; xx < w; xx++) {
          const p = (yy: number, xs: number) => a.d[(bc * a.h + yy) * a.w + xs]!;
          o[(bc * h + y) * w + xx] = Math.max(p(2 * y, 2 * xx), p(2 * y, 2 * xx + 1), p(2 * y + 1, 2 * xx), p(2 * y + 1, 2 * xx + 1));
        }
    return { c: a.c, h, w, d: o };
  };
  const upsample = (a: Act): Act => {
    // bilinear x2, align_corners=True: src = dst * (in-1)/(out-1)
    const h = a.h * 2, w = a.w * 2, o = new Float64Array(n * a.c * h * w);
    const ry = (a.h - 1) / (h - 1), rx = (a.w - 1) / (w - 1);
    for (let bc = 0; bc < n * a.c; bc++)
      for (let y = 0; y < h; y++) {
        const sy = y * ry, y0 = Math.floor(sy), y1 = Math.min(y0 + 1, a.h - 1), fy = sy - y0;
        for (let xx = 0; xx < w; xx++) {
          const sx = xx * rx, x0 = Math.floor(sx), x1 = Math.min(x0 + 1, a.w - 1), fx = sx - x0;
          const p = (yy: number, xs: number) => a.d[(bc * a.h + yy) * a.w + xs]!;
          o[(bc * h + y) * w + xx] = (1 - fy) * ((1 - fx) * p(y0, x0) + fx * p(y0, x1)) + fy * ((1 - fx) * p(y1, x0) + fx * p(y1, x1));
        }
      }
    return { c: a.c, h, w, d: o };
  };
  let a: Act = { c: spec.inChannels, h: size, w: size, d: Float64Array.from(x) };
  const skips: Act[] = [];
  for (let i = 1; i <= 5; i++) {
    if (i > 1) a = pool(a);
    a = conv(conv(a, `encoder.block${i}.0`, `encoder.block${i}.1`), `encoder.block${i}.3`, `encoder.block${i}.4`);
    skips.push(a);
  }
  for (let k = 1; k <= 4; k++) {
    a = conv(upsample(a), `decoder.up${k}.1`, `decoder.up${k}.2`);
    const s = skips[4 - k]!;
    a = { ...a, d: a.d.map((v, i) => v + s.d[i]!) };
    a = conv(conv(a, `decoder.db${k}.0`, `decoder.db${k}.1`), `decoder.db${k}.3`, `decoder.db${k}.4`);
  }
  return conv(a, 'decoder.fin_out.0').d;
}

/** Take images `idx` (in order, repeats allowed) out of an NHWC batch. */
function pick(data: Float32Array, perImage: number, idx: number[]): Float32Array {
  const out = new Float32Array(idx.length * perImage);
  idx.forEach((j, i) => out.set(data.subarray(j * perImage, (j + 1) * perImage), i * perImage));
  return out;
}

describe('ONNX export + onnxruntime engine', function () {
  const { tensors, spec } = loadGoldenWeights();
  const S = 64;
  const xIn = golden('unet_c4', 'input');
  const yEval = golden('unet_c4', 'output_eval');
  const x = nchwToNhwc(xIn.data, 2, 1, S, S); // 1 channel: same bytes, but keep the contract explicit
  const yRef = nchwToNhwc(yEval.data, 2, 3, S, S);

  before(async function () {
    assert.ok(await isOnnxRuntimeAvailable(), 'onnxruntime-node must be installed for this suite');
  });

  it('names and shapes every tensor exactly as the official state_dict', function () {
    const shapes = unetTorchShapes(spec);
    assert.deepEqual(Object.keys(shapes).sort(), Object.keys(tensors).sort());
    for (const [k, s] of Object.entries(shapes)) assert.deepEqual(s, tensors[k]!.shape, k);
    // c=32, Cin=1: 4,322,307 trainable parameters (reference section 2) + 2*84c BN buffers.
    const total = Object.values(unetTorchShapes({ baseWidth: 32, inChannels: 1, outChannels: 3 })).reduce((a, s) => a + s.reduce((p, q) => p * q, 1), 0);
    assert.equal(total, 4_322_307 + 2 * 84 * 32);
  });

  it('writes a well-formed ModelProto (producer, opset, symbolic dims, raw float32 initialisers)', function () {
    for (const foldBatchNorm of [false, true]) {
      const bytes = exportUNetOnnx(tensors, spec, { foldBatchNorm, opset: 17 });
      const m = onnx.ModelProto.decode(bytes);
      assert.equal(m.producerName, 'fairline');
      assert.equal(Number(m.opsetImport[0]!.version), 17);
      const g = m.graph!;
      const ops = g.node!.map((nd) => nd.opType);
      assert.equal(ops.filter((o) => o === 'Conv').length, 23);
      assert.equal(ops.filter((o) => o === 'BatchNormalization').length, foldBatchNorm ? 0 : 22);
      assert.equal(ops.filter((o) => o === 'Relu').length, 22);
      assert.equal(ops.filter((o) => o === 'MaxPool').length, 4);
      assert.equal(ops.filter((o) => o === 'Resize').length, 4);
      assert.equal(ops.filter((o) => o === 'Add').length, 4);
      const dims = g.input![0]!.type!.tensorType!.shape!.dim!.map((d) => d.dimParam || Number(d.dimValue));
      assert.deepEqual(dims, ['N', 1, 'H', 'W']);
      const w = g.initializer!.find((i) => i.name === 'encoder.block1.3.weight')!;
      assert.deepEqual(w.dims!.map(Number), [4, 4, 3, 3]);
      const raw = new Float32Array(Uint8Array.from(w.rawData!).buffer);
      const orig = tensors['encoder.block1.3.weight']!.data;
      if (!foldBatchNorm) assert.deepEqual(Array.from(raw), Array.from(orig));
      else {
        // Folded: W'[o] = W[o] * gamma[o] / sqrt(var[o] + 1e-5), output channel o = i / 36.
        const bn = (p: string) => tensors[`encoder.block1.4.${p}`]!.data;
        const expected = orig.map((v, i) => (v * bn('weight')[(i / 36) | 0]!) / Math.sqrt(bn('running_var')[(i / 36) | 0]! + 1e-5));
        expectArraysCloseRel(raw, expected, 1e-6, 'folded weights');
        assert.ok(g.initializer!.every((i) => !i.name!.includes('running_')), 'no BN tensors when folded');
      }
    }
  });

  for (const opts of [
    { foldBatchNorm: false, layout: 'nchw' },
    { foldBatchNorm: true, layout: 'nchw' },
    { foldBatchNorm: false, layout: 'nhwc' },
    { foldBatchNorm: true, layout: 'nhwc' },
  ] as OnnxExportOptions[]) {
    it(`matches the official eval-mode output (golden unet_c4), fold=${opts.foldBatchNorm} ${opts.layout}`, async function () {
      const engine = await OnnxEngine.create(exportUNetOnnx(tensors, spec, opts), { threads: 2 });
      try {
        assert.equal(engine.executionProvider, 'cpu');
        assert.equal(engine.layout, opts.layout);
        const y = await engine.run(x, 2, S, 1);
        const abs = expectArraysClose(y, yRef, 1e-5, 'onnx vs golden');
        expectArraysCloseRel(y, yRef, 1e-4, 'onnx vs golden');
        console.log(`      max|diff| ${abs.maxAbs.toExponential(2)} (rel ${abs.maxRel.toExponential(2)})`);
      } finally {
        await engine.dispose();
      }
    });
  }

  it('takes any batch size (dynamic N): batch 1 and batch 3; results stay valid after later runs', async function () {
    for (const layout of ['nchw', 'nhwc'] as const) {
      const engine = await OnnxEngine.create(exportUNetOnnx(tensors, spec, { foldBatchNorm: true, layout }));
      try {
        const results: [Float32Array, number[]][] = [];
        for (const idx of [[1], [0, 1, 0]]) {
          const y = await engine.run(pick(x, S * S, idx), idx.length, S, 1);
          expectArraysClose(y, pick(yRef, S * S * 3, idx), 1e-5, `${layout} batch ${idx.length}`);
          results.push([y, idx]);
        }
        // Output buffers must not be recycled by onnxruntime under the caller's feet.
        for (const [y, idx] of results) expectArraysClose(y, pick(yRef, S * S * 3, idx), 1e-5, `${layout} batch ${idx.length} later`);
      } finally {
        await engine.dispose();
      }
    }
  });

  it('loads a model from a .onnx file path', async function () {
    const dir = mkdtempSync(join(tmpdir(), 'fairline-onnx-'));
    try {
      const file = join(dir, 'unet_c4.onnx');
      writeFileSync(file, exportUNetOnnx(tensors, spec));
      const engine = await OnnxEngine.create(file, { threads: 1 });
      try {
        expectArraysClose(await engine.run(x, 2, S, 1), yRef, 1e-5, 'from file');
      } finally {
        await engine.dispose();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('agrees with an independent float64 forward on random weights (Cin=2, c=4, two spatial sizes)', async function () {
    const rspec: UNetSpec = { baseWidth: 4, inChannels: 2, outChannels: 3 };
    const w = randomTensors(rspec, 7);
    const r = rng(11);
    const engines = await Promise.all([false, true].map((f) => OnnxEngine.create(exportUNetOnnx(w, rspec, { foldBatchNorm: f }), { threads: 1 })));
    try {
      for (const size of [32, 48]) {
        const n = 2;
        const xin = new Float32Array(n * 2 * size * size).map(() => r() * 2 - 1); // NCHW
        const ref = nchwToNhwc(Float32Array.from(referenceForward(w, rspec, xin, n, size)), n, 3, size, size);
        for (const e of engines) {
          const y = await e.run(nchwToNhwc(xin, n, 2, size, size), n, size, 2);
          expectArraysCloseRel(y, ref, 1e-5, `random c4 cin2 ${size}px`);
        }
      }
    } finally {
      await Promise.all(engines.map((e) => e.dispose()));
    }
  });

  it('matches the tfjs UNet predict() (c=8, 64x64, random weights and BN stats), also via unetToTorch', async function () {
    await tf.setBackend('cpu');
    const uspec: UNetSpec = { baseWidth: 8, inChannels: 1, outChannels: 3 };
    const unet = unetFromTorch(randomTensors(uspec, 3), uspec);
    try {
      const n = 2;
      const r = rng(5);
      const xin = new Float32Array(n * S * S).map(() => r() * 2 - 1);
      const before = tf.memory().numTensors;
      const yTf = tf.tidy(() => unet.predict(tf.tensor4d(xin, [n, S, S, 1])));
      const ref = (await yTf.data()) as Float32Array;
      yTf.dispose();
      assert.equal(tf.memory().numTensors, before);
      // unetToTorch is how the lead feeds a trained tfjs UNet to the exporter.
      const engine = await OnnxEngine.create(exportUNetOnnx(unetToTorch(unet), uspec, { foldBatchNorm: true, layout: 'nhwc' }));
      try {
        const y = await engine.run(xin, n, S, 1);
        const s = expectArraysClose(y, ref, 1e-5, 'onnx vs tfjs predict');
        console.log(`      max|diff| vs tfjs ${s.maxAbs.toExponential(2)} (rel ${s.maxRel.toExponential(2)})`);
      } finally {
        await engine.dispose();
      }
    } finally {
      unet.dispose();
    }
  });

  it('rejects missing or mis-shaped weights and bad options with typed errors', function () {
    const { ['decoder.db2.3.bias']: _dropped, ...missing } = tensors;
    assert.throws(() => exportUNetOnnx(missing, spec), (e: unknown) => e instanceof ModelError && e.code === 'bad_weights' && /db2\.3\.bias/.test(e.message));
    const wrong = { ...tensors, 'encoder.block2.0.weight': { shape: [8, 4, 3, 3], data: new Float32Array(10) } };
    assert.throws(() => exportUNetOnnx(wrong, spec), (e: unknown) => e instanceof ModelError && e.code === 'bad_weights');
    assert.throws(() => exportUNetOnnx(tensors, { ...spec, baseWidth: 8 }), ModelError);
    assert.throws(() => exportUNetOnnx(tensors, spec, { opset: 11 }), ConfigError);
    assert.throws(() => exportUNetOnnx(tensors, { ...spec, baseWidth: 0 }), (e: unknown) => e instanceof ModelError && e.code === 'bad_model');
    assert.throws(() => exportUNetOnnx(tensors, spec, { layout: 'nchwc' as 'nchw' }), ConfigError);
  });

  it('engine: provider fallback, input validation, dispose', async function () {
    const engine = await OnnxEngine.create(exportUNetOnnx(tensors, spec), { executionProviders: ['no-such-ep', 'cpu'], threads: 1 });
    assert.equal(engine.executionProvider, 'cpu');
    assert.ok(engine.skipped.some((s) => s.startsWith('no-such-ep')), engine.skipped.join('; '));
    await assert.rejects(engine.run(x.subarray(1), 2, S, 1), (e: unknown) => e instanceof BadInputError && e.code === 'bad_shape');
    await assert.rejects(engine.run(new Float32Array(2 * 40 * 40), 2, 40, 1), BadInputError);
    await assert.rejects(engine.run(new Float32Array(2 * S * S * 2), 2, S, 2), (e: unknown) => e instanceof BackendError && e.code === 'onnx_run');
    await engine.dispose();
    await assert.rejects(engine.run(x, 2, S, 1), (e: unknown) => e instanceof BackendError && e.code === 'onnx_disposed');
    await assert.rejects(OnnxEngine.create(new Uint8Array([1, 2, 3])), (e: unknown) => e instanceof BackendError && e.code === 'onnx_session');
  });
});
