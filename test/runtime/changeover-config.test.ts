/**
 * Config keys of the line changeover (cameras[].model, cameras[].partId) and `inspect --check`
 * for cameras with their own model.
 */
import assert from 'node:assert/strict';
import { cpSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigValidationError, parseConfig } from '../../src/config.js';
import { readManifest } from '../../src/io/artefact.js';
import { useBackend } from '../../src/model/tfjs/backend.js';
import { checkStation } from '../../src/runtime/check.js';
import { makeModel, tempDir, TEST_DIR } from './fixture.js';

describe('config: cameras[].model and partId; inspect --check per camera model', function () {
  this.timeout(60000);
  let dir: string;
  before(async () => {
    await useBackend('cpu');
    dir = tempDir('cocfg');
    makeModel(join(dir, 'a'), { threshold: 1.1 });
    makeModel(join(dir, 'b'), { seed: 2 }); // not calibrated
    cpSync(join(dir, 'a'), join(dir, 'bad'), { recursive: true });
    const wf = join(dir, 'bad', readManifest(join(dir, 'a')).weights.file);
    const bytes = readFileSync(wf);
    bytes[10] = bytes[10]! ^ 0x55;
    writeFileSync(wf, bytes);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const base = (cameras: unknown[]) => ({ line: 'L1', station: 'S1', model: 'a', cameras, metrics: { enabled: false } });
  const src = { type: 'images', dir: TEST_DIR };

  it('reads the keys, resolves the model path, fills partId defaults', () => {
    const cfg = parseConfig(base([
      { id: 'c1', source: src },
      { id: 'c2', source: src, model: 'b', threshold: 0.9, partId: { trigger: {} } },
      { id: 'c3', source: src, partId: { trigger: { windowMs: 30, holdMs: 200 } } },
      { id: 'c4', source: src, partId: { fileName: '^part-(?<partId>\\d+)_' } },
    ]), { baseDir: dir });
    assert.equal(cfg.cameras[0]!.model, undefined);
    assert.equal(cfg.cameras[1]!.model, join(dir, 'b'));
    assert.deepEqual(cfg.cameras[1]!.partId, { trigger: { windowMs: 50, holdMs: 100 } });
    assert.deepEqual(cfg.cameras[2]!.partId, { trigger: { windowMs: 30, holdMs: 200 } });
    assert.deepEqual(cfg.cameras[3]!.partId, { fileName: '^part-(?<partId>\\d+)_' });
  });

  it('reports every bad key with its path', () => {
    let err: unknown;
    try {
      parseConfig(base([
        { id: 'c1', source: src, model: 'nowhere' },
        { id: 'c2', source: src, partId: { trigger: {}, fileName: '(x)' } },
        { id: 'c3', source: src, partId: { fileName: '([' } },
        { id: 'c4', source: src, partId: { fileName: 'part-\\d+' } },
        { id: 'c5', source: src, partId: { trigger: { window: 3 } } },
      ]), { baseDir: dir });
    } catch (e) {
      err = e;
    }
    assert.ok(err instanceof ConfigValidationError);
    const p = err.problems.join('\n');
    assert.match(p, /cameras\[0\]\.model: not found: .*nowhere/);
    assert.match(p, /cameras\[1\]\.partId: give exactly one of trigger or fileName/);
    assert.match(p, /cameras\[2\]\.partId\.fileName: not a regular expression/);
    assert.match(p, /cameras\[3\]\.partId\.fileName: 'part-\\d\+' has no group/);
    assert.match(p, /cameras\[4\]\.partId\.trigger\.window: unknown key/);
  });

  it('inspect --check loads each camera model: ok, not calibrated, corrupt', async () => {
    const cfg = parseConfig({ ...base([
      { id: 'c1', source: src },
      { id: 'c2', source: src, model: 'a' },
      { id: 'c3', source: src, model: 'b' },
      { id: 'c4', source: src, model: 'b', threshold: 0.7 },
      { id: 'c5', source: src, model: 'bad' },
    ]), backend: 'cpu', engine: 'tfjs' }, { baseDir: dir });
    const r = await checkStation(cfg, { sink: 'stdout', probeCameras: false });
    const by = (w: string) => r.find((x) => x.what === w)!;
    assert.equal(by('camera c1 threshold').status, 'ok');
    assert.equal(by('camera c2 model').status, 'ok');
    assert.match(by('camera c2 model').detail, /threshold 1\.1 \(artefact\)/);
    assert.equal(by('camera c3 model').status, 'fail');
    assert.match(by('camera c3 model').detail, /not calibrated and the camera sets no threshold/);
    assert.equal(by('camera c4 model').status, 'ok');
    assert.match(by('camera c4 model').detail, /threshold 0\.7 \(camera\)/);
    assert.equal(by('camera c5 model').status, 'fail');
    assert.match(by('camera c5 model').detail, /ModelError \[checksum\]/);
  });
});
