/**
 * The live and eval paths on the whole-detector ONNX graph: `loadInspectModel` and
 * `createDetector` pick it for engine onnx/auto (one session, one call per batch), and a change of
 * engine (tfjs <-> onnx) changes no verdict on the sample set.
 */
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { loadModel } from '../../src/io/artefact.js';
import { loadModelImage } from '../../src/io/image.js';
import { OnnxDetectorGraph } from '../../src/io/onnx-detector.js';
import { useBackend } from '../../src/model/tfjs/backend.js';
import type { ImageF32 } from '../../src/model/types.js';
import { createDetector } from '../../src/runtime/detector-engine.js';
import { loadInspectModel } from '../../src/runtime/model.js';
import { REPO_ROOT } from '../helpers.js';

const DEMO = join(REPO_ROOT, 'models', 'hazelnut-demo');
const SAMPLES = join(REPO_ROOT, 'data', 'hazelnut_toy', 'hazelnut', 'test');

describe('detector engine: the whole ONNX graph on the live and eval paths', function () {
  this.timeout(300000);
  let images: ImageF32[];
  before(async () => {
    await useBackend('wasm');
    images = [];
    for (const sub of ['good', 'colour']) for (const f of readdirSync(join(SAMPLES, sub)).sort()) images.push(await loadModelImage(join(SAMPLES, sub, f), 256));
  });

  it('engine onnx runs the detector graph in one call per batch; tfjs and onnx give the same verdicts on the sample set', async () => {
    const onnx = await loadInspectModel({ dir: DEMO, engine: 'onnx', threads: 2 });
    const tfjs = await loadInspectModel({ dir: DEMO, engine: 'tfjs' });
    try {
      assert.equal(onnx.engine, 'onnx');
      assert.equal(onnx.engineName, 'onnxruntime-cpu');
      assert.ok(onnx.detector.restorer instanceof OnnxDetectorGraph);
      let calls = 0;
      const graph = onnx.detector.restorer;
      const orig = graph.detectBatch.bind(graph);
      graph.detectBatch = (b, n, k) => (calls++, orig(b, n, k));
      const threshold = onnx.threshold!;
      let worst = 0, rejects = 0;
      let tensors = -1;
      for (let i = 0; i < images.length; i += 4) {
        // After the first batch: the TypeScript scoring caches its constant kernels once.
        if (i === 4) tensors = tf.memory().numTensors;
        const batch = images.slice(i, i + 4);
        const a = await onnx.inferBatch(batch);
        const b = await tfjs.inferBatch(batch);
        a.forEach((o, j) => {
          worst = Math.max(worst, Math.abs(o.score - b[j]!.score) / b[j]!.score);
          assert.equal(o.score >= threshold, b[j]!.score >= threshold, `verdict of image ${i + j}: onnx ${o.score} vs tfjs ${b[j]!.score} (threshold ${threshold})`);
          if (o.score >= threshold) rejects++;
        });
      }
      assert.equal(calls, Math.ceil(images.length / 4), 'one graph call per batch');
      assert.equal(tf.memory().numTensors, tensors, 'no tfjs tensors leaked');
      assert.ok(worst <= 1e-5, `score rel diff ${worst}`);
      assert.ok(rejects > 0 && rejects < images.length, `the sample set has both verdicts (${rejects} rejects)`);
      console.log(`      ${images.length} images, ${rejects} rejects on both engines, max score rel diff ${worst.toExponential(2)}`);
    } finally {
      await onnx.dispose();
      await tfjs.dispose();
    }
  });

  it('createDetector (fairline eval) picks the graph for auto and the tfjs UNet for tfjs, restorations included', async () => {
    const model = loadModel(DEMO);
    const lines: string[] = [];
    const auto = await createDetector(model, { engine: 'auto', threads: 2, log: (l) => lines.push(l) });
    const plain = await createDetector(model, { engine: 'tfjs' });
    try {
      assert.ok(auto.restorer instanceof OnnxDetectorGraph);
      assert.ok(!(plain.restorer instanceof OnnxDetectorGraph));
      assert.match(lines.join('\n'), /whole graph on onnxruntime-cpu/);
      const [a] = await auto.detect(images.slice(0, 1), { keepRestored: true });
      const [b] = await plain.detect(images.slice(0, 1), { keepRestored: true });
      assert.equal(a!.restored!.length, 256 * 256 * 3);
      let d = 0;
      for (let i = 0; i < a!.restored!.length; i++) d = Math.max(d, Math.abs(a!.restored![i]! - b!.restored![i]!));
      assert.ok(d < 1e-4, `restoration diff ${d}`);
    } finally {
      auto.dispose();
      plain.dispose();
    }
  });
});

describe('OnnxDetectorGraph in a worker thread', function () {
  this.timeout(120000);
  it('keeps the event loop free while a batch runs, hands the batch over, and fails with typed errors', async () => {
    const { manifest, tensors } = loadModel(DEMO);
    const worker = await OnnxDetectorGraph.fromTensors(tensors, manifest.spec, { threads: 2 });
    const inline = await OnnxDetectorGraph.fromTensors(tensors, manifest.spec, { threads: 2, thread: 'main' });
    try {
      assert.equal(worker.thread, 'worker');
      const S = 256, n = 4;
      const batch = new Float32Array(n * S * S * 3).map((_, i) => 0.5 + 0.3 * Math.sin(i * 0.001));
      const ref = await inline.detectBatch(batch.slice(), n, false);
      // Count event-loop turns while the worker runs the batch: a blocked loop would give ~0.
      let turns = 0, running = true;
      const spin = (): void => {
        turns++;
        if (running) setImmediate(spin);
      };
      setImmediate(spin);
      const t0 = performance.now();
      const got = await worker.detectBatch(batch, n, true);
      running = false;
      const ms = performance.now() - t0;
      assert.ok(turns > 10, `only ${turns} event-loop turns during a ${ms.toFixed(0)} ms batch`);
      assert.equal(batch.length, 0, 'the batch buffer was transferred, not copied');
      assert.deepEqual(Array.from(got.scores), Array.from(ref.scores));
      assert.equal(got.restored!.length, n * S * S * 3);
      await assert.rejects(worker.detectBatch(new Float32Array(10), 1, false), (e: unknown) => e instanceof Error && (e as { code?: string }).code === 'bad_shape');
      console.log(`      ${turns} event-loop turns during a ${ms.toFixed(0)} ms batch of ${n}`);
    } finally {
      worker.dispose();
      inline.dispose();
    }
    await assert.rejects(worker.detectBatch(new Float32Array(256 * 256 * 3), 1, false), (e: unknown) => (e as { code?: string }).code === 'onnx_disposed');
  });
});
