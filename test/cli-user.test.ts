/**
 * Careless inputs from a new user, as child processes (issue 16): every one is refused before
 * the work starts, with a one-line reason and no stack trace; the demo's summary says what it
 * measured and what it cannot tell; `inspect --check` runs every start-up check.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runFairline, SAMPLE_DATA } from './helpers.js';
import { makeModel, TEST_DIR } from './runtime/fixture.js';

const BANNER = /looks like you are running TensorFlow\.js in Node\.js/;
const STACK = /\n\s+at .*:\d+:\d+/;

describe('fairline CLI: careless inputs', function () {
  this.timeout(120000);
  let dir: string;
  let modelDir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'fairline-cli-user-'));
    modelDir = join(dir, 'model');
    makeModel(modelDir, { threshold: 1.1 });
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('demo --model /nope says the model does not exist instead of training one', async () => {
    const r = await runFairline(['demo', '--model', '/nope', '--out', join(dir, 'demo-nope'), '--no-nats']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^fairline: ModelError \[missing\]: no model at \/nope \(no model\.json there\); .* or --train to train a fresh one$/m);
    assert.doesNotMatch(r.stderr, /training|epoch|backend:/);
  });

  it('eval --report <a file> and export --onnx <missing folder> are refused before any work, without a stack trace', async () => {
    const file = join(dir, 'afile');
    writeFileSync(file, 'not a folder');
    const e = await runFairline(['eval', '--data', SAMPLE_DATA, '--category', 'hazelnut', '--model', modelDir, '--report', file, '--pictures', 'none']);
    assert.equal(e.code, 2);
    assert.match(e.stderr, /ConfigError \[bad_config\]: --report .*afile is a file, not a folder/);
    assert.doesNotMatch(e.stderr, STACK);
    assert.doesNotMatch(e.stdout + e.stderr, /"event":"category"|backend:/, 'nothing evaluated');
    const x = await runFairline(['export', '--model', modelDir, '--onnx', '/nonexistent-dir/x.onnx']);
    assert.equal(x.code, 2);
    assert.match(x.stderr, /ConfigError \[bad_config\]: --onnx \/nonexistent-dir\/x\.onnx: folder \/nonexistent-dir does not exist/);
    assert.doesNotMatch(x.stderr, STACK);
    assert.doesNotMatch(x.stderr, /\.tmp/);
  });

  it('--threshold -1 names the sensible range (not ">= -Infinity")', async () => {
    const r = await runFairline(['replay', '--source', TEST_DIR, '--model', modelDir, '--threshold', '-1']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /--threshold must be a number > 0, got '-1': scores are >= 0 \(0 = perfectly restored\), so a threshold must be > 0/);
    assert.doesNotMatch(r.stderr, /Infinity/);
  });

  it('replay of a truncated video: the verdicts it has, a warning with the count reached, exit 1; no tfjs banner', async () => {
    const full = join(dir, 'clip.avi');
    execFileSync('gst-launch-1.0', ['-q', 'videotestsrc', 'num-buffers=20', '!', 'video/x-raw,width=64,height=64,framerate=30/1', '!', 'jpegenc', '!', 'avimux', '!', 'filesink', `location=${full}`], { stdio: 'ignore' });
    const cut = join(dir, 'cut.avi');
    copyFileSync(full, cut);
    truncateSync(cut, Math.floor(statSync(full).size * 0.4));
    const r = await runFairline(['replay', '--source', cut, '--model', modelDir, '--engine', 'tfjs', '--no-images']);
    assert.equal(r.code, 1, r.stderr);
    const n = Number(/^frames (\d+): \1 scored/m.exec(r.stdout)?.[1]);
    assert.ok(n > 0 && n < 20, r.stdout);
    assert.match(r.stdout, new RegExp(`^warning: the source ended with an error after ${n} frame\\(s\\), the replay stopped there: truncated: .*ended after ${n} of 20 frames`, 'm'));
    assert.match(r.stdout, /dropped 0 at the source, 0 in the queue/);
    assert.doesNotMatch(r.stderr, BANNER, 'the cpu backend ran, its banner is not shown');
    assert.match(r.stderr, /backend: cpu/);
  });

  it('inspect --check runs the start-up checks: expect vs the model, thresholds, ports, and probes each camera', async () => {
    const cfg = join(dir, 'check.yaml');
    writeFileSync(
      cfg,
      [
        'line: L1', 'station: S1', `model: ${modelDir}`, 'engine: tfjs', 'expect: { size: 128 }', 'metrics: { port: 0 }',
        'cameras:',
        '  - { id: gone, source: { type: v4l2, device: /dev/video98 } }',
        `  - { id: folder, source: { type: images, dir: ${TEST_DIR}, pattern: "**/*.png" } }`,
      ].join('\n'),
    );
    const r = await runFairline(['inspect', '--config', cfg, '--check']);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /^FAIL model: ModelError \[model_mismatch\]: .*model input size is 64 but the configuration expects 128$/m);
    assert.match(r.stderr, /^FAIL camera gone: no frame: \/dev\/video98 does not exist .*\[no_device\]$/m);
    assert.match(r.stderr, /^OK {3}camera folder: 23 image\(s\) match/m);
    assert.match(r.stderr, /config .*check\.yaml: 2 check\(s\) FAILED$/m);

    writeFileSync(cfg, ['line: L1', 'station: S1', `model: ${modelDir}`, 'engine: tfjs', 'expect: { size: 64 }', 'metrics: { port: 0 }', 'cameras:', `  - { id: folder, source: { type: images, dir: ${TEST_DIR}, pattern: "**/*.png" } }`].join('\n'));
    const ok = await runFairline(['inspect', '--config', cfg, '--check']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stderr, /^OK {3}model: test-[0-9a-f]+: 64 px, 1 input channel\(s\), as expect says/m);
    assert.match(ok.stderr, /^OK {3}camera folder threshold: 1\.1$/m);
    assert.match(ok.stderr, /: OK$/m);
  });

  it('SIGTERM to a command without its own handler still removes the wasm temp folder and ends by the signal', async () => {
    const tmp = mkdtempSync(join(tmpdir(), 'fairline-cli-user-tmp-'));
    try {
      let seen: string[] = [];
      const r = await runFairline(['eval', '--data', SAMPLE_DATA, '--category', 'hazelnut', '--model', modelDir, '--report', join(dir, 'r'), '--pictures', 'none', '--backend', 'wasm'], {
        env: { TMPDIR: tmp },
        onStderr: (err, kill) => {
          if (seen.length === 0 && /backend: wasm/.test(err)) {
            seen = readdirSync(tmp).filter((f) => f.startsWith('fairline-wasm-'));
            kill('SIGTERM');
          }
        },
      });
      assert.equal(seen.length, 1, `the threaded wasm backend made its folder; stderr: ${r.stderr}`);
      assert.equal(r.signal, 'SIGTERM');
      assert.ok(!existsSync(join(tmp, seen[0]!)), 'removed');
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });

  it('demo: names its model, counts dropped frames, says what its AUROC cannot tell, times from process start', async function () {
    this.timeout(180000);
    const out = join(dir, 'demo');
    const r = await runFairline(['demo', '--out', out, '--no-nats', '--backend', 'wasm'], { timeoutMs: 170000 });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /dropped 0 at the source, 0 in the queue/);
    assert.match(r.stdout, /note: this sample cannot tell a good model from a bad one .*\n.*\.\.\/shared\/data\/tire_mvtec3d/);
    const done = /^done in ([\d.]+) s \(model (hazelnut-[0-9a-f]+) from models\/hazelnut-demo, backend wasm\)$/m.exec(r.stdout);
    assert.ok(done, r.stdout);
    assert.doesNotMatch(r.stdout, /\(model model,/);
    assert.doesNotMatch(r.stderr, BANNER);
  });
});
