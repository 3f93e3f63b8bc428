/**
 * What `fairline train` may do with an --out folder and a --resume (src/train/resume.ts), and the
 * plan / estimate / resume-hint text of the command (src/cli/train.ts, src/cli/progress.ts).
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from '../src/errors.js';
import { estimateLines, LONG_RUN_HOURS, planLine, resumeCommand } from '../src/cli/train.js';
import { etaTracker, formatDuration } from '../src/cli/progress.js';
import { checkResume, checkTrainOut, describeChange, epochsChangeProblem, optionChanges, trainOutState } from '../src/train/resume.js';
import { makeModel } from './runtime/fixture.js';

const spec = { size: 256, unet: { baseWidth: 8, inChannels: 1, outChannels: 3 }, filter: { kind: 'butterworth', cutoff: 30, order: 2 } };
const runOpts = (over: Record<string, unknown> = {}): Record<string, unknown> => ({ epochs: 40, batch: 8, seed: 0, lr: 1e-4, cutpaste: 'faithful', textures: null, spec, ...over });

describe('train: --out and --resume rules', () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'fairline-resume-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const writeCheckpoint = (out: string, epochsDone: number, epochs: number): void => {
    mkdirSync(join(out, 'checkpoint'), { recursive: true });
    writeFileSync(join(out, 'checkpoint', 'checkpoint.json'), JSON.stringify({ epochsDone, options: runOpts({ epochs }) }));
  };

  it('names each option that differs, by its command-line name, and nothing else', () => {
    const changes = optionChanges(runOpts(), runOpts({ lr: 2e-4, spec: { ...spec, unet: { ...spec.unet, baseWidth: 16 } } }));
    assert.deepEqual(changes.map(describeChange), ['lr: checkpoint 0.0001, now 0.0002', 'width: checkpoint 8, now 16']);
    assert.deepEqual(optionChanges(runOpts(), runOpts()), []);
    assert.deepEqual(optionChanges(runOpts(), runOpts({ textures: '/dtd' })).map(describeChange), ['textures: checkpoint (none), now /dtd']);
  });

  it('refuses a resume with other options, naming them (not dumping the checkpoint JSON)', () => {
    assert.throws(
      () => checkResume('/m/checkpoint', { options: runOpts(), epochsDone: 10 }, runOpts({ batch: 4, lr: 5e-4 })),
      (e: unknown) => e instanceof ConfigError && /other options: batch: checkpoint 8, now 4; lr: checkpoint 0\.0001, now 0\.0005/.test(e.message) && !e.message.includes('{'),
    );
    assert.equal(checkResume('/m/checkpoint', { options: runOpts(), epochsDone: 10 }, runOpts()), undefined);
  });

  it('--epochs may grow while the epochs done ran at the new schedule\'s rates; after a finished run it is refused with the reason', () => {
    // 40 -> 60 after 10 epochs: the rate drops at 32/36 vs 48/54, epochs 1-10 are at the base rate in both.
    assert.equal(epochsChangeProblem(40, 60, 10, 1e-4), undefined);
    assert.equal(checkResume('/m/checkpoint', { options: runOpts(), epochsDone: 10 }, runOpts({ epochs: 60 }))?.now, 60);
    // After a finished 40-epoch run, epochs 33-40 already ran at reduced rates a 60-epoch run would not use.
    const why = epochsChangeProblem(40, 60, 40, 1e-4)!;
    assert.match(why, /after epoch 32 and 36/);
    assert.match(why, /after epoch 48 and 54/);
    assert.match(why, /epoch 33 already ran at another rate/);
    assert.throws(() => checkResume('/m/checkpoint', { options: runOpts(), epochsDone: 40 }, runOpts({ epochs: 60 })), (e: unknown) => e instanceof ConfigError && /epochs: checkpoint 40, now 60: the learning rate drops/.test(e.message));
    assert.match(epochsChangeProblem(40, 20, 30, 1e-4)!, /already done 30 epochs, more than --epochs 20/);
  });

  it('refuses to train over a model or a checkpoint without --force, and says what is there', () => {
    assert.equal(checkTrainOut(join(dir, 'new'), { resume: false, force: false, epochs: 40 }), false);
    const withModel = join(dir, 'm');
    const manifest = makeModel(withModel);
    assert.throws(() => checkTrainOut(withModel, { resume: false, force: false, epochs: 40 }), (e: unknown) => e instanceof ConfigError && e.message.includes(`a model (${manifest.id})`) && /--force to start over/.test(e.message));
    assert.equal(checkTrainOut(withModel, { resume: false, force: true, epochs: 40 }), true);
    const half = join(dir, 'half');
    writeCheckpoint(half, 12, 40);
    assert.throws(() => checkTrainOut(half, { resume: false, force: false, epochs: 40 }), (e: unknown) => e instanceof ConfigError && /a checkpoint after epoch 12 of 40; pass --resume to continue it, --force/.test(e.message));
    assert.deepEqual(trainOutState(half), { checkpoint: { epochsDone: 12, epochs: 40 } });
    assert.equal(checkTrainOut(half, { resume: true, force: false, epochs: 40 }), false);
  });

  it('--resume needs a checkpoint of an unfinished run; --resume with --force is refused', () => {
    assert.throws(() => checkTrainOut(join(dir, 'none'), { resume: true, force: false, epochs: 40 }), (e: unknown) => e instanceof ConfigError && /no checkpoint in .*none\/checkpoint, so there is nothing to resume/.test(e.message));
    const done = join(dir, 'done');
    makeModel(done);
    writeCheckpoint(done, 40, 40);
    assert.throws(() => checkTrainOut(done, { resume: true, force: false, epochs: 40 }), (e: unknown) => e instanceof ConfigError && /already finished all 40 epochs/.test(e.message));
    assert.equal(checkTrainOut(done, { resume: true, force: false, epochs: 60 }), false, 'more epochs: the schedule check decides');
    assert.throws(() => checkTrainOut(done, { resume: true, force: true, epochs: 40 }), (e: unknown) => e instanceof ConfigError && /not both/.test(e.message));
  });
});

describe('train: plan, estimate, resume hint, durations', () => {
  it('states the plan and, with an estimate over many hours, a warning with what shortens it', () => {
    assert.equal(planLine(28, 8, 800, 0), 'plan: 28 training images, 4 step(s) per epoch (batch 8) x 800 epochs = 3200 steps');
    assert.match(planLine(28, 8, 800, 100), /3200 steps, 2800 left after epoch 100$/);
    const short = estimateLines(0.5, 100, { backend: 'wasm', width: 8, epochs: 10 });
    assert.deepEqual(short, ['estimate: 0.500 s per step on wasm -> about 50 s for the 100 steps left']);
    const long = estimateLines(5, 3200, { backend: 'cpu', width: 128, epochs: 800 });
    assert.equal(long.length, 2);
    assert.ok(5 * 3200 > LONG_RUN_HOURS * 3600);
    assert.match(long[1]!, /^warning: this run will take many hours \(about 4 h 26 min\)\. A smaller UNet \(--width 32\), fewer --epochs \(now 800\)/);
    assert.equal(estimateLines(4, 3200, { backend: 'cpu', width: 128, epochs: 800 }).length, 1, '3 h 33 min is not many hours');
  });

  it('the resume command repeats the arguments with --resume and without --force', () => {
    assert.equal(resumeCommand(['node', '/x/bin/fairline.js', 'train', '--data', 'my data', '--out', 'm', '--force']), "fairline train --data 'my data' --out m --resume");
    assert.equal(resumeCommand(['node', 'f', 'train', '--out', 'm', '--resume']), 'fairline train --out m --resume');
  });

  it('formats durations for people and estimates time left without "NF"', () => {
    assert.deepEqual([45, 200, 7500, 3 * 86400 + 4 * 3600].map(formatDuration), ['45 s', '3 min 20 s', '2 h 05 min', '3 d 4 h']);
    assert.equal(formatDuration(Infinity), '--');
    let t = 0;
    const eta = etaTracker(100, () => t);
    assert.equal(eta(1), '--', 'no rate from one point');
    t = 10000;
    assert.equal(eta(11), '1 min 29 s', '10 units in 10 s, 89 left');
    assert.equal(eta(11), '1 min 29 s');
    t = 20000;
    assert.equal(eta(11), '2 min 58 s', 'a stall slows the estimate');
  });
});
