/**
 * `fairline export --onnx` on a real artefact: the CLI writes a .onnx file, and that FILE (not an
 * in-memory export; test/detector.test.ts covers that) drives FairDetector to the same maps and
 * verdicts as the artefact's tfjs UNet. Also `createRestorer`'s engine choice.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { Command } from 'commander';
import { exportModel, FAIRLINE_VERSION, register } from '../src/cli/export.js';
import { ModelError } from '../src/errors.js';
import { loadModel, saveModel } from '../src/io/artefact.js';
import { OnnxEngine } from '../src/io/onnx-engine.js';
import { useBackend } from '../src/model/tfjs/backend.js';
import { FairDetector } from '../src/model/detector.js';
import { TfjsRestorer } from '../src/model/tfjs/restorer.js';
import { defaultSpec, type ImageF32 } from '../src/model/types.js';
import { createUNet } from '../src/model/tfjs/unet.js';
import { unetFromTorch, unetToTorch } from '../src/model/weights.js';
import { OnnxRestorer, createRestorer } from '../src/runtime/restorers.js';
import { REPO_ROOT, SAMPLE_DATA, expectArraysClose } from './helpers.js';
import { execFileSync } from 'node:child_process';
import { loadOrt } from '../src/io/onnx-engine.js';
import { loadModelImage } from '../src/io/image.js';

const DEMO = join(REPO_ROOT, 'models', 'hazelnut-demo');

function image(size: number, seed: number): ImageF32 {
  const data = new Float32Array(size * size * 3);
  for (let i = 0; i < data.length; i++) data[i] = 0.5 + 0.45 * Math.sin(i * 0.011 + seed) * Math.cos(i * 0.0009 * (seed + 1));
  return { width: size, height: size, channels: 3, data };
}

/** Run `fairline export ...` in-process, capturing stdout. */
async function cli(args: string[]): Promise<string> {
  const program = new Command().exitOverride();
  register(program);
  const write = process.stdout.write.bind(process.stdout);
  let out = '';
  process.stdout.write = ((chunk: string | Uint8Array): boolean => {
    out += String(chunk);
    return true;
  }) as typeof process.stdout.write;
  try {
    await program.parseAsync(['node', 'fairline', 'export', ...args]);
  } finally {
    process.stdout.write = write;
  }
  return out;
}

describe('fairline export --onnx', function () {
  this.timeout(30000);
  const size = 64;
  const spec = defaultSpec({ size, baseWidth: 4 });
  let dir: string;
  let modelDir: string;
  const prevLog = process.env.FAIRLINE_LOG;

  before(async () => {
    process.env.FAIRLINE_LOG = 'silent';
    await useBackend('cpu');
    dir = mkdtempSync(join(tmpdir(), 'fairline-export-'));
    modelDir = join(dir, 'model');
    const unet = createUNet(spec.unet, 5);
    // Non-trivial running statistics, so folding BN into the convs is actually exercised.
    const tensors = unetToTorch(unet);
    unet.dispose();
    for (const [name, t] of Object.entries(tensors)) {
      if (name.endsWith('running_mean')) t.data.forEach((_, i) => (t.data[i] = 0.05 * Math.sin(i + name.length)));
      if (name.endsWith('running_var')) t.data.forEach((_, i) => (t.data[i] = 0.5 + 0.4 * Math.cos(i * 3 + name.length) ** 2));
    }
    saveModel(modelDir, { spec, tensors, idPrefix: 'tiny' });
  });
  after(() => {
    rmSync(dir, { recursive: true, force: true });
    if (prevLog === undefined) delete process.env.FAIRLINE_LOG;
    else process.env.FAIRLINE_LOG = prevLog;
  });

  it('writes a .onnx file whose detections match the artefact on tfjs (maps within 1e-5, same verdicts)', async () => {
    const out = join(dir, 'tiny.onnx');
    const stdout = await cli(['--model', modelDir, '--onnx', out, '--part', 'unet', '--fold-bn', '--backend', 'cpu', '--threads', '1']);
    const m = /max \|onnxruntime - tfjs\| = ([0-9.e+-]+) over (\d+) values/.exec(stdout);
    assert.ok(m, `no verify line in: ${stdout}`);
    assert.ok(Number(m[1]) < 1e-5, `CLI check reported ${m[1]}`);
    assert.equal(Number(m[2]), size * size * 3);
    // Atomic write: only the model folder and the .onnx remain, no temp files.
    assert.deepEqual(readdirSync(dir).sort(), ['model', 'tiny.onnx']);

    const { manifest, tensors } = loadModel(modelDir);
    const tfjsDet = new FairDetector(manifest.spec, new TfjsRestorer(unetFromTorch(tensors, manifest.spec.unet)));
    const onnxDet = new FairDetector(manifest.spec, new OnnxRestorer(await OnnxEngine.create(out, { threads: 1 })));
    try {
      const imgs = [1, 2, 3, 4, 5, 6].map((s) => image(size, s));
      const a = await tfjsDet.detect(imgs, { keepRestored: true });
      const b = await onnxDet.detect(imgs, { keepRestored: true });
      const scores = a.map((d) => d.score).sort((x, y) => x - y);
      // Between the 3rd and 4th score: half the images reject, so a verdict flip would show.
      const threshold = (scores[2]! + scores[3]!) / 2;
      assert.ok(scores[3]! - scores[2]! > 0, 'test images must have distinct scores');
      for (let i = 0; i < imgs.length; i++) {
        expectArraysClose(b[i]!.restored!, a[i]!.restored!, 1e-5, `restoration ${i}`);
        expectArraysClose(b[i]!.map, a[i]!.map, 1e-5, `map ${i}`);
        assert.equal(b[i]!.score >= threshold, a[i]!.score >= threshold, `verdict ${i}`);
      }
      assert.equal(a.filter((d) => d.score >= threshold).length, 3);
    } finally {
      tfjsDet.dispose();
      onnxDet.dispose();
    }
  });

  it('exports NCHW without folding too, and reports the layout', async () => {
    const out = join(dir, 'nchw.onnx');
    const r = await exportModel({ model: modelDir, onnx: out, part: 'unet', layout: 'nchw', foldBn: false, backend: 'cpu', threads: 1, verifyBatch: 2 });
    assert.equal(r.layout, 'nchw');
    assert.ok(r.verify && r.verify.maxAbsDiff < 1e-5, `max diff ${r.verify?.maxAbsDiff}`);
    assert.equal(r.verify.values, 2 * size * size * 3);
    const engine = await OnnxEngine.create(out, { threads: 1 });
    assert.equal(engine.layout, 'nchw');
    await engine.dispose();
    rmSync(out);
  });

  it('exports the whole detector by default: the file runs in a plain onnxruntime session and scores the demo images as the TypeScript path, carries the threshold, passes the checker', async () => {
    const out = join(dir, 'demo-detector.onnx');
    const stdout = await cli(['--model', DEMO, '--onnx', out, '--backend', 'cpu', '--threads', '2', '--verify-batch', '1']);
    const m = /max \|onnxruntime - TypeScript\| = ([0-9.e+-]+) over (\d+) map values .*scores within ([0-9.e+-]+) relative/.exec(stdout);
    assert.ok(m, `no verify line in: ${stdout}`);
    assert.ok(Number(m[1]) < 1e-5 && Number(m[3]) < 1e-5, stdout);
    const ort = (await loadOrt())!;
    const session = await ort.InferenceSession.create(out);
    const { manifest, tensors } = loadModel(DEMO);
    const ts = new FairDetector(manifest.spec, await OnnxRestorer.fromTensors(tensors, manifest.spec.unet, { threads: 2 }));
    try {
      assert.deepEqual([...session.inputNames], ['image']);
      assert.deepEqual([...session.outputNames], ['score', 'map']);
      const files = ['good/04.png', 'good/05.png', 'colour/00.png', 'colour/01.png'];
      const imgs = await Promise.all(files.map((f) => loadModelImage(join(SAMPLE_DATA, 'hazelnut', 'test', f), 256)));
      const x = new Float32Array(imgs.length * 256 * 256 * 3);
      imgs.forEach((im, i) => x.set(im.data, i * 256 * 256 * 3));
      const res = await session.run({ image: new ort.Tensor('float32', x, [imgs.length, 256, 256, 3]) });
      const scores = res.score!.data as Float32Array;
      const ref = await ts.detect(imgs);
      const threshold = manifest.thresholds!.image;
      ref.forEach((d, i) => {
        assert.ok(Math.abs(scores[i]! - d.score) <= 1e-5 * d.score, `${files[i]}: file ${scores[i]} vs TypeScript ${d.score}`);
        assert.equal(scores[i]! >= threshold, d.score >= threshold, `verdict of ${files[i]}`);
      });
    } finally {
      ts.dispose();
      await session.release();
    }
    const py = "import onnx,sys\nm=onnx.load(sys.argv[1])\nonnx.checker.check_model(m, full_check=True)\nonnx.shape_inference.infer_shapes(m, strict_mode=True)\nprint(dict((p.key,p.value) for p in m.metadata_props)['fairline.threshold'])";
    assert.equal(Number(execFileSync('/usr/bin/python3', ['-c', py, out], { encoding: 'utf8' }).trim()), loadModel(DEMO).manifest.thresholds!.image);
    assert.equal(FAIRLINE_VERSION, (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version);
    rmSync(out);
  });

  it('fails with typed errors for a missing or corrupt artefact', async () => {
    await assert.rejects(exportModel({ model: join(dir, 'nope'), onnx: join(dir, 'x.onnx'), verify: false }), (e: unknown) => e instanceof ModelError && e.code === 'missing');
    const bad = join(dir, 'bad');
    saveModel(bad, { spec, tensors: loadModel(modelDir).tensors });
    const wfile = readdirSync(bad).find((f) => f.startsWith('weights-'))!;
    writeFileSync(join(bad, wfile), Buffer.alloc(16));
    await assert.rejects(exportModel({ model: bad, onnx: join(dir, 'x.onnx'), verify: false }), (e: unknown) => e instanceof ModelError && e.code === 'checksum');
    assert.ok(!existsSync(join(dir, 'x.onnx')));
    rmSync(bad, { recursive: true });
  });

  it('createRestorer picks onnxruntime on auto, tfjs when asked, and logs the choice', async () => {
    const { tensors, manifest } = loadModel(modelDir);
    const lines: string[] = [];
    const auto = await createRestorer(tensors, manifest.spec.unet, { threads: 1, log: (l) => lines.push(l) });
    const forced = await createRestorer(tensors, manifest.spec.unet, { engine: 'tfjs', log: (l) => lines.push(l) });
    try {
      assert.equal(auto.engine, 'onnxruntime-cpu');
      assert.equal(forced.engine, 'tfjs-cpu');
      assert.ok(lines.some((l) => l.startsWith('restorer: onnxruntime-cpu')), lines.join('\n'));
      assert.ok(lines.some((l) => l.startsWith('restorer: tfjs-cpu (engine tfjs requested)')), lines.join('\n'));
      const x = new Float32Array(size * size).map((_, i) => 0.1 * Math.sin(i));
      expectArraysClose(await auto.restore(x, 1, size, 1), await forced.restore(x, 1, size, 1), 1e-5, 'auto vs tfjs');
      const before = tf.memory().numTensors;
      for (let i = 0; i < 5; i++) await forced.restore(x, 1, size, 1);
      assert.equal(tf.memory().numTensors, before, 'tfjs restorer leaked tensors');
    } finally {
      auto.dispose();
      forced.dispose();
    }
    await assert.rejects(createRestorer(tensors, manifest.spec.unet, { engine: 'gpu' as never }), /unknown engine/);
  });
});
