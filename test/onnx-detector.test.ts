/**
 * The whole detector as one ONNX graph (src/model/onnx/detector.ts) against the official code's
 * golden vectors (high-pass, score map) and against the TypeScript detector (FairDetector with
 * the tfjs UNet) on the golden images and on the sample set, run in a plain onnxruntime session;
 * and the exported file through the onnx checker with strict full shape inference.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { loadModel } from '../src/io/artefact.js';
import { loadModelImage } from '../src/io/image.js';
import { loadOrt, type OrtModule, type OrtSession, type OrtTensor } from '../src/io/onnx-engine.js';
import { FairDetector } from '../src/model/detector.js';
import { TfjsRestorer } from '../src/model/tfjs/restorer.js';
import { Graph } from '../src/model/onnx/graph.js';
import { DETECTOR_OPSET, emitGray, emitHighPass, emitScore, exportDetectorOnnx } from '../src/model/onnx/detector.js';
import { transpose } from '../src/model/onnx/ops.js';
import { defaultSpec, DEFAULT_FILTER, DEFAULT_SCORING, type FairSpec, type FilterSpec, type ImageF32 } from '../src/model/types.js';
import { HighPass } from '../src/model/highpass.js';
import { createUNet } from '../src/model/tfjs/unet.js';
import { unetFromTorch, unetToTorch } from '../src/model/weights.js';
import { OnnxRestorer } from '../src/runtime/restorers.js';
import { REPO_ROOT, diffStats, expectArraysClose, golden, goldenValue, nchwToNhwc } from './helpers.js';

const DEMO = join(REPO_ROOT, 'models', 'hazelnut-demo');
const SAMPLES = join(REPO_ROOT, 'data', 'hazelnut_toy', 'hazelnut', 'test');
const PREPROCESS = ['preprocess_train_good_01', 'preprocess_test_good_04', 'preprocess_test_colour_02'] as const;

async function session(ort: OrtModule, bytes: Uint8Array): Promise<OrtSession> {
  return ort.InferenceSession.create(bytes, { intraOpNumThreads: 2, graphOptimizationLevel: 'all' });
}

async function run(s: OrtSession, feeds: Record<string, OrtTensor>): Promise<Record<string, Float32Array>> {
  const out = await s.run(feeds);
  return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, v.data as Float32Array]));
}

/** A graph of the high-pass alone: NHWC BGR image in, NCHW high-pass out. */
function highPassGraph(size: number, filter: FilterSpec): Uint8Array {
  const g = new Graph({ opset: DETECTOR_OPSET });
  const x = transpose(g, g.input('image', ['N', size, size, 3]), [0, 3, 1, 2]);
  g.output(emitHighPass(g, emitGray(g, x), size, filter), 'highpass');
  return g.toModel({ name: 'highpass' });
}

function smooth(size: number, seed: number): ImageF32 {
  const data = new Float32Array(size * size * 3);
  for (let i = 0; i < data.length; i++) data[i] = 0.5 + 0.4 * Math.sin(i * 0.013 + seed) * Math.cos(i * 0.0007 * (seed + 1));
  return { width: size, height: size, channels: 3, data };
}

describe('whole-detector ONNX graph', function () {
  this.timeout(120000);
  let ort: OrtModule;
  let dir: string;
  before(async () => {
    await tf.setBackend('cpu');
    const m = await loadOrt();
    assert.ok(m, 'onnxruntime-node must load (npm ci installs it)');
    ort = m;
    dir = mkdtempSync(join(tmpdir(), 'fairline-onnx-det-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('high-pass equals the official numpy FFT on the golden images (1e-5) and the TypeScript FFT', async () => {
    const s = await session(ort, highPassGraph(256, DEFAULT_FILTER));
    const hp = new HighPass(256, DEFAULT_FILTER);
    for (const c of PREPROCESS) {
      const img = golden(c, 'image');
      const nhwc = nchwToNhwc(img.data, 1, 3, 256, 256);
      const { highpass } = await run(s, { image: new ort.Tensor('float32', nhwc, [1, 256, 256, 3]) });
      const vsGolden = expectArraysClose(highpass!, golden(c, 'highpass').data, 1e-5, `${c} high-pass vs golden`);
      const vsTs = diffStats(highpass!, hp.fromBgr(nhwc, 1));
      assert.ok(vsTs.maxAbs < 1e-5, `${c} vs TypeScript: ${vsTs.maxAbs}`);
      console.log(`      ${c}: max|onnx - golden| ${vsGolden.maxAbs.toExponential(2)}, max|onnx - ts| ${vsTs.maxAbs.toExponential(2)}`);
    }
    await s.release();
  });

  it('Sobel variants equal HighPass (reflect-101 borders)', async () => {
    for (const kind of ['sobel', 'sobel-x'] as const) {
      const filter = { ...DEFAULT_FILTER, kind };
      const s = await session(ort, highPassGraph(32, filter));
      const img = smooth(32, 3).data;
      const { highpass } = await run(s, { image: new ort.Tensor('float32', img, [1, 32, 32, 3]) });
      const want = new HighPass(32, filter).fromBgr(img, 1); // NHWC [gx, gy] pairs
      const got = nchwToNhwc(highpass!, 1, 2, 32, 32);
      expectArraysClose(got, want, 1e-5, kind);
      await s.release();
    }
  });

  it('scoring equals the official map and image score (golden score case)', async () => {
    const g = new Graph({ opset: DETECTOR_OPSET });
    const r = g.input('restored', ['N', 3, 256, 256]);
    const o = g.input('original', ['N', 3, 256, 256]);
    const { map, score } = emitScore(g, r, o, DEFAULT_SCORING);
    g.output(map, 'map');
    g.output(score, 'score');
    const s = await session(ort, g.toModel({ name: 'score' }));
    const out = await run(s, {
      restored: new ort.Tensor('float32', golden('score', 'restored').data, [1, 3, 256, 256]),
      original: new ort.Tensor('float32', golden('score', 'original').data, [1, 3, 256, 256]),
    });
    const st = expectArraysClose(out.map!, golden('score', 'map').data, 1e-5, 'map');
    const want = goldenValue('score', 'image_score');
    const rel = Math.abs(out.score![0]! - want) / want;
    assert.ok(rel < 1e-5, `score ${out.score![0]} vs ${want}`);
    console.log(`      map max|diff| ${st.maxAbs.toExponential(2)}, score rel diff ${rel.toExponential(2)}`);
    await s.release();
  });

  it('per-image scoring (Scan) and whole-batch scoring give the same maps and scores', async () => {
    const N = 3, S = 64;
    const make = (perImage: boolean): Uint8Array => {
      const g = new Graph({ opset: DETECTOR_OPSET });
      const r = g.input('restored', ['N', 3, S, S]);
      const o = g.input('original', ['N', 3, S, S]);
      // boxBlock 16: the banded box filter in 4 blocks, as at 256 px with the default 64.
      const { map, score } = emitScore(g, r, o, DEFAULT_SCORING, { perImage, boxBlock: 16 });
      g.output(map, 'map');
      g.output(score, 'score');
      return g.toModel({ name: 'score' });
    };
    const restored = new Float32Array(N * 3 * S * S), original = new Float32Array(N * 3 * S * S);
    for (let i = 0; i < restored.length; i++) {
      original[i] = 0.5 + 0.45 * Math.sin(i * 0.7);
      restored[i] = original[i]! + (i % 97 < 5 ? 0.3 : 0.02 * Math.cos(i));
    }
    const feeds = { restored: new ort.Tensor('float32', restored, [N, 3, S, S]), original: new ort.Tensor('float32', original, [N, 3, S, S]) };
    const outs = [];
    for (const perImage of [false, true]) {
      const s = await session(ort, make(perImage));
      outs.push(await run(s, feeds));
      await s.release();
    }
    const [batch, scan] = outs as [Record<string, Float32Array>, Record<string, Float32Array>];
    assert.equal(scan.map!.length, N * S * S);
    assert.equal(scan.score!.length, N);
    expectArraysClose(scan.map!, batch.map!, 1e-6, 'map');
    expectArraysClose(scan.score!, batch.score!, 1e-6, 'score');
    // Each image is scored on its own: the images differ, so must their scores.
    assert.ok(new Set(scan.score).size === N, `scores ${Array.from(scan.score!)}`);
  });

  /** Scores and maps of the exported graph vs FairDetector (tfjs) on `images`. */
  async function compare(spec: FairSpec, tensors: ReturnType<typeof unetToTorch>, images: ImageF32[], what: string, engine: 'tfjs' | 'onnx' = 'tfjs', tol = 1e-5): Promise<{ map: number; score: number }> {
    const bytes = exportDetectorOnnx(tensors, spec, { restored: true });
    const s = await session(ort, bytes);
    const restorer = engine === 'tfjs' ? new TfjsRestorer(unetFromTorch(tensors, spec.unet)) : await OnnxRestorer.fromTensors(tensors, spec.unet, { threads: 2 });
    const det = new FairDetector(spec, restorer);
    const S = spec.size;
    let worstMap = 0, worstScore = 0;
    try {
      for (let i = 0; i < images.length; i += 4) {
        const batch = images.slice(i, i + 4);
        const ref = await det.detect(batch, { keepRestored: true });
        const x = new Float32Array(batch.length * S * S * 3);
        batch.forEach((b, j) => x.set(b.data, j * S * S * 3));
        const out = await run(s, { image: new ort.Tensor('float32', x, [batch.length, S, S, 3]) });
        ref.forEach((d, j) => {
          const m = expectArraysClose(out.map!.subarray(j * S * S, (j + 1) * S * S), d.map, tol, `${what} map ${i + j}`);
          const rel = Math.abs(out.score![j]! - d.score) / Math.abs(d.score);
          assert.ok(rel <= tol, `${what} score ${i + j}: onnx ${out.score![j]} vs ts ${d.score} (rel ${rel})`);
          worstMap = Math.max(worstMap, m.maxAbs);
          worstScore = Math.max(worstScore, rel);
        });
      }
    } finally {
      det.dispose();
      await s.release();
    }
    return { map: worstMap, score: worstScore };
  }

  // The TypeScript high-pass and scoring around the UNet-only onnxruntime restorer (tfjs-cpu at
  // 256 px takes minutes here; tfjs vs onnxruntime restoration is pinned by detector.test.ts and
  // by the 64 px cases below).
  it('scores and maps equal the TypeScript detector on the golden images and the sample set (demo model)', async () => {
    const { manifest, tensors } = loadModel(DEMO);
    const images: ImageF32[] = PREPROCESS.map((c) => ({ width: 256, height: 256, channels: 3, data: nchwToNhwc(golden(c, 'image').data, 1, 3, 256, 256) }));
    for (const sub of ['good', 'colour']) {
      for (const f of readdirSync(join(SAMPLES, sub)).sort().slice(0, 2)) images.push(await loadModelImage(join(SAMPLES, sub, f), 256));
    }
    const d = await compare(manifest.spec, tensors, images, 'demo', 'onnx');
    console.log(`      ${images.length} images: max|map diff| ${d.map.toExponential(2)}, max score rel diff ${d.score.toExponential(2)}`);
  });

  it('tfjs detector, 64 px Butterworth model, batch of 5: same scores and maps', async () => {
    const spec = defaultSpec({ size: 64, baseWidth: 4 });
    // An untrained UNet restores values far outside [0, 1], where the colour term is ~30 per
    // pixel and float32 rounding of the Lab pipeline shows: at one such pixel the tfjs path is
    // 5.6e-5 and this graph 8.8e-6 from float64 (measured), so maps and scores agree to 2e-5 here; the
    // trained-model cases above hold 1e-5.
    const d = await compare(spec, unetToTorch(createUNet(spec.unet, 4)), [1, 2, 3, 4, 5].map((i) => smooth(64, i)), 'butterworth', 'tfjs', 2e-5);
    console.log(`      max|map diff| ${d.map.toExponential(2)}, max score rel diff ${d.score.toExponential(2)}`);
  });

  it('Sobel model, batch of 3: same scores and maps', async () => {
    const spec = defaultSpec({ size: 64, baseWidth: 4, filter: { kind: 'sobel' } });
    const d = await compare(spec, unetToTorch(createUNet(spec.unet, 5)), [smooth(64, 1), smooth(64, 2), smooth(64, 3)], 'sobel');
    assert.ok(d.map < 1e-5);
  });

  it('uint8 input gives the float32 graph\'s outputs for the same bytes', async () => {
    const spec = defaultSpec({ size: 64, baseWidth: 4 });
    const tensors = unetToTorch(createUNet(spec.unet, 9));
    const u8 = new Uint8Array(2 * 64 * 64 * 3).map((_, i) => (i * 37 + (i >> 7)) & 255);
    const f32 = Float32Array.from(u8, (v) => v / 255);
    const a = await session(ort, exportDetectorOnnx(tensors, spec, { input: 'uint8' }));
    const b = await session(ort, exportDetectorOnnx(tensors, spec));
    const Tensor = ort.Tensor as unknown as new (t: string, d: Uint8Array | Float32Array, dims: number[]) => OrtTensor;
    const ra = await run(a, { image: new Tensor('uint8', u8, [2, 64, 64, 3]) });
    const rb = await run(b, { image: new Tensor('float32', f32, [2, 64, 64, 3]) });
    assert.deepEqual(Array.from(ra.score!), Array.from(rb.score!));
    await a.release();
    await b.release();
  });

  it('passes onnx.checker (full check) and strict shape inference, with either scoring form; metadata carries spec and threshold', () => {
    const { manifest, tensors } = loadModel(DEMO);
    for (const scoring of ['per-image', 'batch'] as const) {
      const file = join(dir, `detector-${scoring}.onnx`);
      writeFileSync(file, exportDetectorOnnx(tensors, manifest.spec, { restored: true, scoring, props: { 'fairline.threshold': String(manifest.thresholds?.image) } }));
      const py = [
        'import onnx, sys, json',
        'm = onnx.load(sys.argv[1])',
        'onnx.checker.check_model(m, full_check=True)',
        'm2 = onnx.shape_inference.infer_shapes(m, strict_mode=True)',
        'props = {p.key: p.value for p in m.metadata_props}',
        'outs = {o.name: [d.dim_value or d.dim_param for d in o.type.tensor_type.shape.dim] for o in m2.graph.output}',
        'ops = sorted({n.op_type for n in m.graph.node})',
        'print(json.dumps({"props": props, "outputs": outs, "opset": m.opset_import[0].version, "ops": ops}))',
      ].join('\n');
      const out = JSON.parse(execFileSync('/usr/bin/python3', ['-c', py, file], { encoding: 'utf8' })) as {
        props: Record<string, string>;
        outputs: Record<string, (number | string)[]>;
        opset: number;
        ops: string[];
      };
      assert.equal(out.opset, DETECTOR_OPSET);
      assert.deepEqual(out.outputs.score, ['N']);
      assert.deepEqual(out.outputs.map, ['N', 256, 256]);
      assert.deepEqual(out.outputs.restored, ['N', 256, 256, 3]);
      assert.deepEqual(JSON.parse(out.props['fairline.spec']!), manifest.spec);
      assert.equal(Number(out.props['fairline.threshold']), manifest.thresholds?.image);
      assert.equal(out.props['fairline.scoring'], scoring);
      assert.equal(out.ops.includes('Scan'), scoring === 'per-image', `${scoring}: top-level ops ${out.ops.join(',')}`);
    }
  });
});
