/**
 * `fairline inspect` as an operator runs it: edit the config's model, `kill -HUP`, and the running
 * station swaps without a restart; every frame keeps exactly one verdict, the old model's before,
 * the new one's after. A config that no longer parses is refused and the model keeps serving.
 */
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Verdict } from '../../src/verdict.js';
import { runFairline } from '../helpers.js';
import { makeModel, tempDir, TEST_DIR } from './fixture.js';

describe('cli: inspect reloads models on SIGHUP', function () {
  this.timeout(180000);
  let dir: string;
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('swaps on SIGHUP mid-stream, refuses a broken config, one verdict per frame', async () => {
    dir = tempDir('cli-hup');
    const a = makeModel(join(dir, 'a'), { threshold: 1.1 }).id;
    const b = makeModel(join(dir, 'b'), { seed: 2, threshold: 1.3 }).id;
    const cfg = join(dir, 'station.yaml');
    const write = (model: string, extra = '') =>
      writeFileSync(cfg, [
        'line: L1', 'station: S1', `model: ${model}`, 'backend: cpu', 'engine: tfjs', extra,
        'cameras:', `  - { id: cam1, source: { type: images, dir: ${TEST_DIR}, pattern: "**/*.png", loop: true, fps: 10 } }`,
        'batch: { maxSize: 2, maxWaitMs: 20 }', 'metrics: { enabled: false }',
      ].join('\n'));
    write('a');
    let step = 0;
    const verdicts = (out: string) => out.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Verdict);
    const r = await runFairline(['inspect', '--config', cfg], {
      timeoutMs: 150000,
      onStdout: (out, kill) => {
        const vs = verdicts(out);
        if (step === 0 && vs.length >= 8) {
          step = 1;
          write('a', 'bogus: 1'); // a broken edit first: refused, A keeps serving
          kill('SIGHUP');
        } else if (step === 1 && vs.length >= 14) {
          step = 2;
          write('b');
          kill('SIGHUP');
        } else if (step === 2 && vs.filter((v) => v.model === b).length >= 6) {
          step = 3;
          kill('SIGTERM');
        }
      },
    });
    assert.equal(step, 3, `stopped at step ${step}; stderr: ${r.stderr}`);
    assert.equal(r.code, 0, r.stderr);
    const vs = verdicts(r.stdout);
    assert.deepEqual(vs.map((v) => v.seq), [...Array(vs.length).keys()], 'in order, no gaps, none doubled');
    const runs: string[] = [];
    for (const v of vs) if (runs[runs.length - 1] !== v.model) runs.push(v.model);
    assert.deepEqual(runs, [a, b], 'A until the swap, B after');
    assert.ok(vs.every((v) => v.threshold === (v.model === a ? 1.1 : 1.3)));
    assert.match(r.stderr, /reload: config refused, every camera keeps its model: invalid config[\s\S]*bogus: unknown key/);
    assert.match(r.stderr, new RegExp(`camera cam1: model ${a} -> ${b} \\(threshold 1\\.3`));
    const m = /stopped \(SIGTERM\).*cam1: (\d+) frames/.exec(r.stderr);
    assert.equal(Number(m?.[1]), vs.length, 'frames taken == verdicts written');
  });
});
