import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { FairDetector, validateModelImage } from '../src/model/detector.js';
import { TfjsRestorer } from '../src/model/tfjs/restorer.js';
import { OnnxRestorer } from '../src/runtime/restorers.js';
import { createUNet } from '../src/model/tfjs/unet.js';
import { unetToTorch } from '../src/model/weights.js';
import { exportUNetOnnx } from '../src/model/onnx-export.js';
import { OnnxEngine } from '../src/io/onnx-engine.js';
import { defaultSpec, type ImageF32 } from '../src/model/types.js';
import { BadInputError } from '../src/errors.js';
import { expectArraysClose } from './helpers.js';

function image(size: number, seed: number): ImageF32 {
  const data = new Float32Array(size * size * 3);
  for (let i = 0; i < data.length; i++) data[i] = 0.5 + 0.4 * Math.sin(i * 0.013 + seed) * Math.cos(i * 0.0007 * seed);
  return { width: size, height: size, channels: 3, data };
}

describe('FairDetector', () => {
  const size = 64;
  const spec = defaultSpec({ size, baseWidth: 4 });
  before(async () => {
    await tf.setBackend('cpu');
  });

  it('scores a batch identically to one image at a time, and leaks no tensors over 100 frames', async () => {
    const det = new FairDetector(spec, new TfjsRestorer(createUNet(spec.unet, 3)));
    const imgs = [image(size, 1), image(size, 2), image(size, 3)];
    const batch = await det.detect(imgs);
    for (let i = 0; i < imgs.length; i++) {
      const [one] = await det.detect([imgs[i]!]);
      assert.ok(Math.abs(one!.score - batch[i]!.score) < 1e-6);
      assert.equal(one!.map.length, size * size);
    }
    const before = tf.memory().numTensors;
    for (let f = 0; f < 100; f += 4) await det.detect([image(size, f), image(size, f + 1), image(size, f + 2), image(size, f + 3)]);
    assert.equal(tf.memory().numTensors, before, 'tensors leaked across 100 frames');
    det.dispose();
  });

  it('gives the same maps, scores and verdicts with onnxruntime as with tfjs', async () => {
    const unet = createUNet(spec.unet, 7);
    const torch = unetToTorch(unet);
    const tfjsDet = new FairDetector(spec, new TfjsRestorer(unet));
    const ort = await OnnxEngine.create(exportUNetOnnx(torch, spec.unet, { foldBatchNorm: true, layout: 'nhwc' }), { threads: 1 });
    const onnxDet = new FairDetector(spec, new OnnxRestorer(ort));
    const imgs = [image(size, 11), image(size, 12), image(size, 13), image(size, 14)];
    const a = await tfjsDet.detect(imgs, { keepRestored: true });
    const b = await onnxDet.detect(imgs, { keepRestored: true });
    const threshold = (a[0]!.score + a[1]!.score) / 2;
    for (let i = 0; i < imgs.length; i++) {
      expectArraysClose(b[i]!.restored!, a[i]!.restored!, 1e-5, `restoration ${i}`);
      expectArraysClose(b[i]!.map, a[i]!.map, 1e-5, `map ${i}`);
      assert.ok(Math.abs(a[i]!.score - b[i]!.score) < 1e-5);
      assert.equal(a[i]!.score >= threshold, b[i]!.score >= threshold, `verdict ${i}`);
    }
    tfjsDet.dispose();
    onnxDet.dispose();
  });

  it('rejects wrong sizes and non-finite pixels with typed errors', () => {
    assert.throws(() => validateModelImage(image(32, 1), size), (e: unknown) => e instanceof BadInputError && e.code === 'wrong_size');
    const bad = image(size, 1);
    bad.data[17] = Number.NaN;
    assert.throws(() => validateModelImage(bad, size), (e: unknown) => e instanceof BadInputError && e.code === 'non_finite');
    validateModelImage(image(size, 2), size);
  });
});
