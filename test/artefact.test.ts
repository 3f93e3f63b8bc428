import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadModel, readManifest, saveModel, updateManifest, contentHash, type TensorTable } from '../src/io/artefact.js';
import { ModelError } from '../src/errors.js';
import { defaultSpec } from '../src/model/types.js';

function table(seed: number): TensorTable {
  const a = new Float32Array(2 * 1 * 3 * 3).map((_, i) => Math.sin(i + seed));
  const b = new Float32Array(2).map((_, i) => i - seed);
  return { 'encoder.block1.0.weight': { shape: [2, 1, 3, 3], data: a }, 'encoder.block1.0.bias': { shape: [2], data: b } };
}

describe('model artefact', () => {
  let dir: string;
  beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'fairline-model-')); });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('round-trips weights, spec and metadata bit-exactly', () => {
    const spec = defaultSpec({ size: 64, baseWidth: 4 });
    const t = table(1);
    const m = saveModel(dir, { spec, tensors: t, idPrefix: 'hazelnut', training: { files: 3, contentSha256: 'x', options: { epochs: 2 }, epochsDone: 2 } });
    assert.match(m.id, /^hazelnut-[0-9a-f]{12}$/);
    const loaded = loadModel(dir);
    assert.deepEqual(loaded.manifest.spec, spec);
    assert.equal(loaded.manifest.training?.files, 3);
    for (const [k, v] of Object.entries(t)) {
      assert.deepEqual(loaded.tensors[k]!.shape, v.shape);
      assert.deepEqual(Array.from(loaded.tensors[k]!.data), Array.from(v.data));
    }
  });

  it('replaces atomically and removes the previous weights file', () => {
    const spec = defaultSpec({ size: 64, baseWidth: 4 });
    saveModel(dir, { spec, tensors: table(1) });
    const m2 = saveModel(dir, { spec, tensors: table(2) });
    const files = readdirSync(dir).sort();
    assert.deepEqual(files, ['model.json', m2.weights.file].sort());
    assert.equal(loadModel(dir).tensors['encoder.block1.0.bias']!.data[1], -1);
  });

  it('detects corrupted weights and edited manifests with a checksum error', () => {
    const m = saveModel(dir, { spec: defaultSpec({ size: 64, baseWidth: 4 }), tensors: table(1) });
    const wpath = join(dir, m.weights.file);
    const bytes = readFileSync(wpath);
    bytes[5] = bytes[5]! ^ 0xff;
    writeFileSync(wpath, bytes);
    assert.throws(() => loadModel(dir), (e: unknown) => e instanceof ModelError && e.code === 'checksum' && /weights checksum/.test(e.message));
    saveModel(dir, { spec: defaultSpec({ size: 64, baseWidth: 4 }), tensors: table(3) });
    const mj = JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8'));
    mj.spec.size = 128;
    writeFileSync(join(dir, 'model.json'), JSON.stringify(mj));
    assert.throws(() => readManifest(dir), (e: unknown) => e instanceof ModelError && e.code === 'checksum');
  });

  it('gives clear errors for a missing model, bad JSON and path tricks', () => {
    assert.throws(() => loadModel(join(dir, 'nope')), (e: unknown) => e instanceof ModelError && e.code === 'missing' && /model\.json not found/.test(e.message));
    writeFileSync(join(dir, 'model.json'), '{not json');
    assert.throws(() => loadModel(dir), (e: unknown) => e instanceof ModelError && e.code === 'bad_manifest');
    const m = saveModel(dir, { spec: defaultSpec({ size: 64, baseWidth: 4 }), tensors: table(1) });
    const mj = { ...m, weights: { ...m.weights, file: '../../etc/passwd' } };
    delete (mj as { manifestSha256?: string }).manifestSha256;
    writeFileSync(join(dir, 'model.json'), JSON.stringify(mj));
    assert.throws(() => loadModel(dir), (e: unknown) => e instanceof ModelError && /plain file name/.test(e.message));
  });

  it('updates thresholds in place keeping the checksum valid', () => {
    saveModel(dir, { spec: defaultSpec({ size: 64, baseWidth: 4 }), tensors: table(1) });
    updateManifest(dir, { thresholds: { image: 0.42, method: 'normal-quantile', targetFalseRejectRate: 0.01, computedAt: 'now' } });
    assert.equal(loadModel(dir).manifest.thresholds?.image, 0.42);
  });

  it('computes a path-independent content hash of the training set', () => {
    const f = (name: string, v: number) => ({ name, bytes: new Uint8Array([v]) });
    assert.equal(contentHash([f('a', 1), f('b', 2)]), contentHash([f('b', 2), f('a', 1)]));
    assert.notEqual(contentHash([f('a', 1)]), contentHash([f('a', 2)]));
  });
});
