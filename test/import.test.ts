import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { importWeights } from '../src/cli/import.js';
import { loadModel } from '../src/io/artefact.js';
import { readTorchWeights, writeTorchWeights } from '../src/io/weights.js';
import { unetFromTorch } from '../src/model/weights.js';
import { ConfigError, ModelError } from '../src/errors.js';
import { GOLDEN_DIR, REPO_ROOT, expectArraysCloseRel, golden, nchwToNhwc } from './helpers.js';

const run = promisify(execFile);
const GOLDEN_WEIGHTS = join(GOLDEN_DIR, 'unet_c4_weights');

/** Run the imported model's UNet on the golden input and compare with the official eval output. */
function checkGoldenOutput(modelDir: string): number {
  const model = loadModel(modelDir);
  const unet = unetFromTorch(model.tensors, model.manifest.spec.unet);
  const input = golden('unet_c4', 'input');
  const expected = golden('unet_c4', 'output_eval');
  const [n, cin, h, w] = input.shape as [number, number, number, number];
  const x = tf.tensor4d(nchwToNhwc(input.data, n, cin, h, w), [n, h, w, cin]);
  const y = unet.predict(x);
  const got = y.dataSync() as Float32Array;
  x.dispose();
  y.dispose();
  unet.dispose();
  assert.deepEqual(y.shape, [2, 64, 64, 3]);
  return expectArraysCloseRel(got, nchwToNhwc(expected.data, 2, 3, 64, 64), 1e-4, 'imported UNet output_eval').maxRel;
}

describe('fairline import', () => {
  let tmp: string;
  before(async () => {
    await tf.setBackend('cpu');
  });
  beforeEach(() => {
    tmp = mkdtempSync(join(tmpdir(), 'fairline-import-'));
  });
  afterEach(() => rmSync(tmp, { recursive: true, force: true }));

  it('imports the golden unet_c4 weights and reproduces the official outputs (cpu, 1e-4 relative)', async () => {
    const out = join(tmp, 'model');
    const { manifest, spec, dropped } = await importWeights({ weights: GOLDEN_WEIGHTS, out });
    // Settings from weights.json metadata (base_width 4, in_channels 1, size 64, butterworth 30/2).
    assert.deepEqual(spec.unet, { baseWidth: 4, inChannels: 1, outChannels: 3 });
    assert.equal(spec.size, 64);
    assert.deepEqual(spec.filter, { kind: 'butterworth', cutoff: 30, order: 2 });
    assert.deepEqual(dropped, []);
    assert.equal(manifest.thresholds, undefined, 'an imported model has no threshold yet');
    assert.match(manifest.id, /^imported-[0-9a-f]{12}$/);
    const maxRel = checkGoldenOutput(out);
    assert.ok(maxRel < 1e-4);
    // The artefact holds exactly the source tensors.
    const src = await readTorchWeights(GOLDEN_WEIGHTS);
    const model = loadModel(out);
    assert.deepEqual(Object.keys(model.tensors).sort(), Object.keys(src.tensors).sort());
    for (const [k, t] of Object.entries(src.tensors)) {
      assert.deepEqual(model.tensors[k]!.shape, t.shape, k);
      assert.deepEqual(model.tensors[k]!.data, t.data, k);
    }
  });

  it('works from the command line (node bin/fairline.js import), flags overriding weights.json', async () => {
    const out = join(tmp, 'cli-model');
    const { stdout } = await run(process.execPath, [join(REPO_ROOT, 'bin/fairline.js'), 'import', '--weights', GOLDEN_WEIGHTS, '--out', out, '--size', '128', '--cutoff', '20', '--name', 'c4'], {
      cwd: REPO_ROOT,
      env: { ...process.env, FAIRLINE_LOG: 'silent' },
    });
    const printed = JSON.parse(stdout.trim().split('\n').at(-1)!) as { id: string; spec: { size: number; filter: { cutoff: number } } };
    const manifest = JSON.parse(readFileSync(join(out, 'model.json'), 'utf8')) as { id: string; spec: { size: number; filter: { cutoff: number; kind: string } } };
    assert.equal(printed.id, manifest.id);
    assert.match(manifest.id, /^c4-/);
    assert.equal(manifest.spec.size, 128);
    assert.equal(manifest.spec.filter.cutoff, 20);
    assert.equal(manifest.spec.filter.kind, 'butterworth');
    checkGoldenOutput(out);
  });

  it('infers width and channels from tensor shapes when weights.json has no metadata, and ignores num_batches_tracked', async () => {
    const { tensors } = await readTorchWeights(GOLDEN_WEIGHTS);
    tensors['encoder.block1.1.num_batches_tracked'] = { shape: [], data: new Float32Array([1]) };
    const bare = join(tmp, 'bare');
    await writeTorchWeights(bare, tensors);
    const { spec, dropped } = await importWeights({ weights: bare, out: join(tmp, 'm') });
    assert.deepEqual(spec.unet, { baseWidth: 4, inChannels: 1, outChannels: 3 });
    assert.equal(spec.size, 256, 'paper default without metadata');
    assert.deepEqual(dropped, ['encoder.block1.1.num_batches_tracked']);
    checkGoldenOutput(join(tmp, 'm'));
  });

  it('refuses settings that contradict the tensors, bad sizes and bad filters', async () => {
    const out = join(tmp, 'x');
    await assert.rejects(importWeights({ weights: GOLDEN_WEIGHTS, out, width: 8 }), (e: unknown) => e instanceof ModelError && e.code === 'bad_weights' && /--width says base width 8, but the weights have base width 4/.test(e.message));
    await assert.rejects(importWeights({ weights: GOLDEN_WEIGHTS, out, inChannels: 2 }), (e: unknown) => e instanceof ModelError && /input channels/.test(e.message));
    await assert.rejects(importWeights({ weights: GOLDEN_WEIGHTS, out, filter: 'sobel' }), (e: unknown) => e instanceof ConfigError && /2 input channel/.test(e.message));
    await assert.rejects(importWeights({ weights: GOLDEN_WEIGHTS, out, size: 100 }), (e: unknown) => e instanceof ConfigError && /multiple of 16/.test(e.message));
    assert.equal(existsSync(join(out, 'model.json')), false, 'nothing written on error');
  });

  it('names missing, unknown, wrongly shaped and non-finite tensors', async () => {
    const { tensors, meta } = await readTorchWeights(GOLDEN_WEIGHTS);
    const variant = async (name: string, edit: (t: typeof tensors) => void): Promise<string> => {
      const copy = Object.fromEntries(Object.entries(tensors).map(([k, v]) => [k, { shape: [...v.shape], data: Float32Array.from(v.data) }]));
      edit(copy);
      const dir = join(tmp, name);
      await writeTorchWeights(dir, copy, meta);
      return dir;
    };
    const missing = await variant('missing', (t) => delete t['decoder.db1.3.weight']);
    await assert.rejects(importWeights({ weights: missing, out: join(tmp, 'o1') }), (e: unknown) => e instanceof ModelError && /missing: decoder\.db1\.3\.weight/.test(e.message));
    const unknown = await variant('unknown', (t) => (t['encoder.block9.0.weight'] = { shape: [1], data: new Float32Array(1) }));
    await assert.rejects(importWeights({ weights: unknown, out: join(tmp, 'o2') }), (e: unknown) => e instanceof ModelError && /unknown: encoder\.block9\.0\.weight/.test(e.message));
    const shape = await variant('shape', (t) => (t['encoder.block2.0.bias'] = { shape: [7], data: new Float32Array(7) }));
    await assert.rejects(importWeights({ weights: shape, out: join(tmp, 'o3') }), (e: unknown) => e instanceof ModelError && /wrong shape: encoder\.block2\.0\.bias \[7\]/.test(e.message));
    const nan = await variant('nan', (t) => (t['decoder.fin_out.0.bias']!.data[1] = Number.NaN));
    await assert.rejects(importWeights({ weights: nan, out: join(tmp, 'o4') }), (e: unknown) => e instanceof ModelError && /decoder\.fin_out\.0\.bias has a non-finite value/.test(e.message));
    await assert.rejects(importWeights({ weights: join(tmp, 'nope'), out: join(tmp, 'o5') }), (e: unknown) => e instanceof ModelError && e.code === 'not_found');
  });
});
