/**
 * What a new user reads (issue 16), in-process: scores printed with enough digits to agree with
 * the decision, threshold ranges and warnings, refusals before work, errors without stack
 * traces, cameras that say why they are down, summaries that count dropped frames, and videos
 * that end early reported as such.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, truncateSync, writeFileSync, copyFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { lastValueFrom, toArray } from 'rxjs';
import { Registry } from 'prom-client';
import { checkOutputDir, checkOutputFile } from '../src/cli/common.js';
import { verdictLine } from '../src/cli/demo.js';
import { describeFailure } from '../src/cli/failure.js';
import { importWeights } from '../src/cli/import.js';
import { formatSummary } from '../src/cli/inspect.js';
import { ConfigValidationError, parseConfig } from '../src/config.js';
import { ConfigError, ModelError, SourceError } from '../src/errors.js';
import { loadModel, updateManifest } from '../src/io/artefact.js';
import { createMetrics } from '../src/metrics.js';
import { useBackend } from '../src/model/tfjs/backend.js';
import { loadInspectModel } from '../src/runtime/model.js';
import { formatReport, type ReplayReport } from '../src/runtime/replay.js';
import { trackSource } from '../src/runtime/source-state.js';
import { startStation, type StationSummary, type VerdictSink } from '../src/runtime/station.js';
import { aviTotalFrames, GstSource } from '../src/streams/gstreamer.js';
import { decisionDigits, thresholdBelowNormal } from '../src/thresholds.js';
import type { Verdict } from '../src/verdict.js';
import { GOLDEN_DIR } from './helpers.js';
import { makeModel, tempDir } from './runtime/fixture.js';

function report(threshold: number, scores: number[], over: Partial<ReplayReport> = {}): ReplayReport {
  return {
    source: '/x', model: 'm', engine: 'tfjs-cpu', backend: 'cpu', threshold, frames: scores.length, scored: scores.length, errors: 0, labelled: 0,
    seconds: 1, framesPerSecond: scores.length, latencyMs: { mean: 1, p50: 1, p95: 1, p99: 1, max: 1 }, dropped: { source: 0, queue: 0 },
    guard: { on: false, note: 'no statistics', action: 'reject', flagged: {} },
    results: scores.map((score, seq) => ({ seq, score, verdict: score >= threshold ? 'reject' : 'pass', latencyMs: 1 })),
    ...over,
  };
}

describe('what a new user reads', function () {
  this.timeout(60000);
  let dir: string;
  before(async () => {
    await useBackend('cpu');
    dir = tempDir('user');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('prints score and threshold with enough digits that they agree with the decision', () => {
    const thr = 0.98841349;
    assert.equal(decisionDigits(0.98841312, thr), 7);
    assert.equal(decisionDigits(0.5, 0.75), 4);
    assert.equal(decisionDigits(thr, thr), 4, 'equal: rejects, and prints equal');
    const text = formatReport(report(thr, [0.98841312, thr, 0.2]));
    const shownThr = Number(/threshold (\S+) \(reject if score >= threshold\)/.exec(text)![1]);
    const rows = [...text.matchAll(/^\s+(\d+)\s+-\s+(\S+)\s+(pass|reject)/gm)].map((m) => ({ score: Number(m[2]), verdict: m[3] }));
    assert.equal(rows.length, 3);
    for (const r of rows) assert.equal(r.score >= shownThr ? 'reject' : 'pass', r.verdict, `shown ${r.score} vs ${shownThr}`);
    assert.match(text, /dropped 0 at the source, 0 in the queue/);
    // The demo's verdict lines too.
    const v = { schema: 'fairline.verdict/v1' as const, line: 'demo', station: 'demo', camera: 'sample', seq: 3, captureTs: 0, decidedTs: 1, latencyMs: 352, model: 'm', regions: [] };
    assert.equal(verdictLine({ ...v, score: 0.98841312, threshold: thr, verdict: 'pass' }), '#  3 pass   score 0.9884131 (threshold 0.9884135)   352 ms');
    assert.equal(verdictLine({ ...v, score: 2.02651, threshold: 0.569811, verdict: 'reject' }), '#  3 REJECT score 2.0265 (threshold 0.56981)   352 ms');
  });

  it('a threshold must be > 0 (config, override); one below every normal training score warns', async () => {
    const base = { line: 'L', station: 'S', model: dir, cameras: [{ id: 'c', source: { type: 'synthetic', width: 8, height: 8, fps: 1 } }] };
    assert.throws(() => parseConfig({ ...base, threshold: -1 }, { baseDir: dir, checkFiles: false }), (e: unknown) => e instanceof ConfigValidationError && /threshold: -1 would reject every part: scores are >= 0/.test(e.message));
    assert.throws(
      () => parseConfig({ ...base, cameras: [{ ...base.cameras[0], threshold: 0 }] }, { baseDir: dir, checkFiles: false }),
      (e: unknown) => e instanceof ConfigValidationError && /cameras\[0\]\.threshold: 0 would reject every part/.test(e.message),
    );
    const modelDir = join(dir, 'm');
    makeModel(modelDir, { threshold: 0.7 });
    updateManifest(modelDir, { trainScoreStats: { n: 5, mean: 0.6, std: 0.05, min: 0.52, max: 0.68, p50: 0.6, p90: 0.66, p95: 0.67, p99: 0.68, p999: 0.68 } });
    const logs: string[] = [];
    const low = await loadInspectModel({ dir: modelDir, engine: 'tfjs', threshold: 0.1, log: (m) => logs.push(m) });
    await low.dispose();
    assert.ok(logs.some((l) => /warning: threshold 0\.1 is below every normal training score the model has seen \(5 images, lowest 0\.5200/.test(l)), logs.join('\n'));
    const ok: string[] = [];
    await (await loadInspectModel({ dir: modelDir, engine: 'tfjs', threshold: 0.55, log: (m) => ok.push(m) })).dispose();
    assert.ok(!ok.some((l) => /below every normal/.test(l)));
    assert.equal(thresholdBelowNormal(0.1, undefined), undefined, 'no statistics, no warning');
    await assert.rejects(loadInspectModel({ dir: modelDir, engine: 'tfjs', threshold: -1 }), (e: unknown) => e instanceof ConfigError && /must be a number > 0, got -1: scores are >= 0/.test(e.message));
    // Replay's hint names its own option.
    const uncal = join(dir, 'uncal');
    makeModel(uncal);
    await assert.rejects(loadInspectModel({ dir: uncal, engine: 'tfjs', thresholdHint: 'pass --threshold <x> for this replay' }), (e: unknown) => e instanceof ModelError && /or pass --threshold <x> for this replay/.test(e.message));
  });

  it('an edited model.json is refused with how to change the threshold properly', () => {
    const modelDir = join(dir, 'edited');
    makeModel(modelDir, { threshold: 0.7 });
    const path = join(modelDir, 'model.json');
    writeFileSync(path, readFileSync(path, 'utf8').replace('"image": 0.7', '"image": 0.8'));
    assert.throws(() => loadModel(modelDir), (e: unknown) => e instanceof ModelError && e.code === 'checksum' && /fairline calibrate --model .* --normal/.test(e.message) && /'threshold' in the station config, or --threshold for replay/.test(e.message));
  });

  it('checks output paths before any work and says what is wrong', () => {
    const file = join(dir, 'afile');
    writeFileSync(file, 'x');
    assert.throws(() => checkOutputDir(file, '--report'), (e: unknown) => e instanceof ConfigError && e.message === `--report ${file} is a file, not a folder`);
    assert.throws(() => checkOutputDir(join(file, 'sub'), '--report'), (e: unknown) => e instanceof ConfigError && /is a file, so no folder can be made below it/.test(e.message));
    assert.equal(checkOutputDir(join(dir, 'new', 'deeper'), '--out'), join(dir, 'new', 'deeper'));
    assert.throws(() => checkOutputFile('/nonexistent-dir/x.onnx', '--onnx'), (e: unknown) => e instanceof ConfigError && e.message === '--onnx /nonexistent-dir/x.onnx: folder /nonexistent-dir does not exist');
    assert.throws(() => checkOutputFile(dir, '--onnx'), (e: unknown) => e instanceof ConfigError && /is a folder; give a file name/.test(e.message));
  });

  it('prints user errors and system errors without a stack trace; only bugs get one', () => {
    let sys: unknown;
    try {
      readFileSync(join(dir, 'missing'));
    } catch (err) {
      sys = err;
    }
    const s = describeFailure(sys, false);
    assert.equal(s.exitCode, 1);
    assert.match(s.text, /^fairline: ENOENT: no such file or directory, open '.*missing' \(set FAIRLINE_DEBUG=1 for the stack trace\)$/);
    assert.doesNotMatch(s.text, /\n\s+at /);
    assert.deepEqual(describeFailure(new ConfigError('bad'), false), { text: 'fairline: ConfigError [bad_config]: bad', exitCode: 2 });
    assert.match(describeFailure(new TypeError('x is undefined'), false).text, /^fairline: internal error: TypeError: x is undefined\n\s+at /);
    assert.match(describeFailure(sys, true).text, /internal error: .*\n\s+at /, 'FAIRLINE_DEBUG shows the stack');
  });

  it('import refuses to overwrite a model unless --force', async () => {
    const out = join(dir, 'imported');
    const weights = join(GOLDEN_DIR, 'unet_c4_weights');
    const first = await importWeights({ weights, out });
    await assert.rejects(importWeights({ weights, out, size: 128 }), (e: unknown) => e instanceof ConfigError && e.message.includes(`already holds a model (${first.manifest.id}); pass --force to replace it`));
    assert.equal(loadModel(out).manifest.spec.size, 64, 'untouched');
    await importWeights({ weights, out, size: 128, force: true });
    assert.equal(loadModel(out).manifest.spec.size, 128);
  });

  it('a camera says why it is down: one log line per change, fairline_source_up and fairline_source_down{reason}', async () => {
    const m = createMetrics(new Registry(), { defaultMetrics: false });
    const logs: string[] = [];
    const s = trackSource('cam0', m, (l) => logs.push(l));
    const text = async (): Promise<string> => m.registry.metrics();
    assert.match(await text(), /fairline_source_up\{camera="cam0"\} 0/);
    const gone = new SourceError('no_device', '/dev/video7 does not exist');
    s.reconnect(1, 500, gone);
    s.reconnect(2, 1000, gone);
    assert.deepEqual(logs, [
      'camera cam0: down (never came up): /dev/video7 does not exist [no_device]',
      'camera cam0: reconnect attempt 1 in 500 ms (no_device)',
      'camera cam0: reconnect attempt 2 in 1000 ms (no_device)',
    ]);
    assert.match(await text(), /fairline_source_down\{camera="cam0",reason="no_device"\} 1/);
    s.up();
    assert.match(await text(), /fairline_source_up\{camera="cam0"\} 1/);
    assert.doesNotMatch(await text(), /fairline_source_down\{/, 'no reason while up');
    s.down(new SourceError('stalled', 'no frame from cam0 for 5000 ms'));
    assert.equal(logs.at(-1), 'camera cam0: down: no frame from cam0 for 5000 ms [stalled]');
    assert.match(await text(), /fairline_source_down\{camera="cam0",reason="stalled"\} 1/);
    assert.equal(logs.filter((l) => l.endsWith(': up')).length, 1);
  });

  it('summaries count frames dropped at the source and in the queue, and a failed source with its frame count', () => {
    const summary: StationSummary = {
      reason: 'SIGTERM', seconds: 16.5, unfinished: 0, publishErrors: 0, sink: 'stdout', failed: false,
      cameras: { cam0: { mode: 'live', frames: 52, verdicts: { pass: 50, reject: 2, error: 0 }, dropped: { source: 394, queue: 3 } } },
    };
    assert.match(formatSummary(summary), /cam0: 52 frames, 50 pass, 2 reject, 0 error, dropped 394 at the source, 3 in the queue/);
    summary.cameras.cam0!.error = 'truncated: the video ended after 7 of 20 frames';
    assert.match(formatSummary(summary), /\(source failed after 52 frames: truncated: the video ended after 7 of 20 frames\)/);
  });

  describe('videos that end early', () => {
    let full: string;
    let cut: string;
    let cutMkv: string;
    before(function () {
      const gst = (args: string): void => void execFileSync('gst-launch-1.0', ['-q', ...args.split(' ')], { stdio: 'ignore' });
      full = join(dir, 'full.avi');
      gst(`videotestsrc num-buffers=20 ! video/x-raw,width=64,height=64,framerate=30/1 ! jpegenc ! avimux ! filesink location=${full}`);
      cut = join(dir, 'cut.avi');
      copyFileSync(full, cut);
      truncateSync(cut, Math.floor(statSync(full).size * 0.4));
      const mkv = join(dir, 'full.mkv');
      gst(`videotestsrc num-buffers=20 ! video/x-raw,width=64,height=64,framerate=30/1 ! jpegenc ! matroskamux ! filesink location=${mkv}`);
      cutMkv = join(dir, 'cut.mkv');
      copyFileSync(mkv, cutMkv);
      truncateSync(cutMkv, Math.floor(statSync(mkv).size * 0.4));
    });

    it('reads the frame count an AVI header declares', () => {
      assert.equal(aviTotalFrames(full), 20);
      assert.equal(aviTotalFrames(cut), 20, 'the header survives the cut');
      assert.equal(aviTotalFrames(join(dir, 'nope.avi')), undefined);
      assert.equal(aviTotalFrames(cutMkv), undefined);
    });

    it('GstSource errors with `truncated` and the count reached (AVI header, or duration x fps), a whole file completes', async () => {
      const all = await lastValueFrom(GstSource.videoFile(full, { sourceId: 'f', expectedFrames: 20 }).frames$().pipe(toArray()));
      assert.equal(all.length, 20);
      await assert.rejects(lastValueFrom(GstSource.videoFile(cut, { sourceId: 'f', expectedFrames: 20 }).frames$()), (e: unknown) => e instanceof SourceError && e.code === 'truncated' && /ended after \d+ of 20 frames \(as its header says\)/.test(e.message));
      await assert.rejects(lastValueFrom(GstSource.videoFile(cutMkv, { sourceId: 'f' }).frames$()), (e: unknown) => e instanceof SourceError && e.code === 'truncated' && /of 20 frames \(0\.67 s at 30 fps\)/.test(e.message));
    });

    it('a station camera whose video is cut short: verdicts for the frames read, then failed with the count', async () => {
      const modelDir = join(dir, 'station-model');
      makeModel(modelDir, { threshold: 1.1 });
      const got: Verdict[] = [];
      const sink: VerdictSink = { kind: 'memory', publish: (v) => void got.push(v), close: async () => undefined };
      const logs: string[] = [];
      const cfg = parseConfig(
        { line: 'L', station: 'S', model: modelDir, backend: 'cpu', engine: 'tfjs', metrics: { enabled: false }, cameras: [{ id: 'rec', source: { type: 'file', path: cut } }] },
        { baseDir: dir },
      );
      const station = await startStation({ config: cfg, sink, log: (l) => logs.push(l) });
      const summary = await station.done;
      const cam = summary.cameras.rec!;
      assert.ok(cam.frames > 0 && cam.frames < 20, `frames ${cam.frames}`);
      assert.equal(got.length, cam.frames, 'every frame read got its verdict');
      assert.match(cam.error!, /^truncated: .*ended after \d+ of 20 frames/);
      assert.ok(summary.failed);
      assert.ok(logs.some((l) => new RegExp(`camera rec: source failed after ${cam.frames} frame\\(s\\) with SourceError \\[truncated\\]`).test(l)), logs.join('\n'));
    });
  });

  it('a live camera faster than the model: the summary counts the frames GStreamer dropped', async () => {
    const modelDir = join(dir, 'fast-model');
    makeModel(modelDir, { threshold: 1.1 });
    const cfg = parseConfig(
      {
        line: 'L', station: 'S', model: modelDir, backend: 'cpu', engine: 'tfjs', metrics: { port: 0 }, deadlineMs: 60000,
        cameras: [{ id: 'fast', mode: 'live', source: { type: 'gstreamer', pipeline: 'videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=120/1' } }],
      },
      { baseDir: dir },
    );
    let verdicts = 0;
    const station = await startStation({ config: cfg, sink: { kind: 'memory', publish: () => void verdicts++, close: async () => undefined } });
    const t0 = Date.now();
    while (verdicts < 10 && Date.now() - t0 < 20000) await new Promise((r) => setTimeout(r, 50));
    const metrics = await (await fetch(station.metricsUrl!)).text();
    const s = await station.stop('test');
    const cam = s.cameras.fast!;
    assert.ok(cam.dropped.source > 0, `a 120 fps camera into a c=4 cpu model drops frames: ${JSON.stringify(cam)}`);
    const counted = Number(/fairline_frames_dropped_total\{camera="fast",reason="source"[^}]*\} (\d+)/.exec(metrics)?.[1] ?? 0);
    assert.ok(counted <= cam.dropped.source && counted > 0, `metrics ${counted} vs summary ${cam.dropped.source}`);
    assert.match(formatSummary(s), new RegExp(`fast: ${cam.frames} frames, .*dropped ${cam.dropped.source} at the source, ${cam.dropped.queue} in the queue`));
  });

  it('a live v4l2 camera that is not there: the log and /metrics say why, not only reconnect attempts', async () => {
    const modelDir = join(dir, 'live-model');
    makeModel(modelDir, { threshold: 1.1 });
    mkdirSync(join(dir, 'spool'), { recursive: true });
    const logs: string[] = [];
    const cfg = parseConfig(
      { line: 'L', station: 'S', model: modelDir, backend: 'cpu', engine: 'tfjs', metrics: { port: 0 }, cameras: [{ id: 'cam0', source: { type: 'v4l2', device: '/dev/video97' } }] },
      { baseDir: dir },
    );
    const station = await startStation({ config: cfg, sink: { kind: 'memory', publish: () => undefined, close: async () => undefined }, log: (l) => logs.push(l) });
    try {
      const t0 = Date.now();
      while (!logs.some((l) => /reconnect attempt 2/.test(l)) && Date.now() - t0 < 10000) await new Promise((r) => setTimeout(r, 50));
      assert.ok(logs.includes('camera cam0: down (never came up): /dev/video97 does not exist (camera unplugged, or at another /dev/videoN) [no_device]'), logs.join('\n'));
      assert.ok(logs.some((l) => l === 'camera cam0: reconnect attempt 2 in 1000 ms (no_device)'), logs.join('\n'));
      assert.equal(logs.filter((l) => /: down/.test(l)).length, 1, 'one line per change, not per attempt');
      const metrics = await (await fetch(station.metricsUrl!)).text();
      assert.match(metrics, /fairline_source_up\{camera="cam0",line="L",station="S"\} 0/);
      assert.match(metrics, /fairline_source_down\{camera="cam0",reason="no_device",line="L",station="S"\} 1/);
    } finally {
      const s = await station.stop('test');
      assert.deepEqual(s.cameras.cam0!.dropped, { source: 0, queue: 0 });
    }
  });
});
