/**
 * Replay through the live graph against a real nats-server (JetStream on): one verdict per frame
 * on `fairline.<line>.<camera>.verdict`, scores equal to the evaluation path, and a confusion
 * matrix that matches the threshold.
 */
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { loadModel } from '../../src/io/artefact.js';
import { loadModelImage } from '../../src/io/image.js';
import { useBackend } from '../../src/model/tfjs/backend.js';
import { FairDetector } from '../../src/model/detector.js';
import { TfjsRestorer } from '../../src/model/tfjs/restorer.js';
import { unetFromTorch } from '../../src/model/weights.js';
import { loadInspectModel, type RuntimeModel } from '../../src/runtime/model.js';
import { confusion, formatReport, labelFromLayout, readLabels, replay, resolveReplayInput } from '../../src/runtime/replay.js';
import { natsSink } from '../../src/runtime/station.js';
import { listImageFiles } from '../../src/runtime/sources.js';
import { isVerdict, type Verdict } from '../../src/verdict.js';
import { startNatsServer, type NatsServerHandle } from '../fixtures/nats-server.js';
import { makeModel, tempDir, TEST_DIR } from './fixture.js';

describe('runtime/replay', function () {
  this.timeout(60000);
  let dir: string;
  let modelDir: string;
  let srv: NatsServerHandle;
  let model: RuntimeModel;
  /** Scores of the evaluation path: loadModelImage -> FairDetector, one image at a time. */
  const direct = new Map<string, number>();
  const files = listImageFiles(TEST_DIR, '**/*.png');
  const keyOf = (p: string): string => relative(TEST_DIR, p).split(sep).join('/');

  before(async () => {
    await useBackend('cpu');
    dir = tempDir('replay');
    modelDir = join(dir, 'model');
    makeModel(modelDir, { seed: 3 });
    srv = await startNatsServer({ jetstream: true });
    const loaded = loadModel(modelDir);
    const det = new FairDetector(loaded.manifest.spec, new TfjsRestorer(unetFromTorch(loaded.tensors, loaded.manifest.spec.unet)));
    for (const f of files) {
      const [d] = await det.detect([await loadModelImage(f, 64)]);
      direct.set(keyOf(f), d!.score);
    }
    det.dispose();
    model = await loadInspectModel({ dir: modelDir, engine: 'tfjs', requireThreshold: false });
  });
  after(async () => {
    await model?.dispose();
    await srv?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('labels the hazelnut test folder from its layout (6 good, 17 colour)', () => {
    const input = resolveReplayInput(TEST_DIR);
    assert.equal(input.kind, 'images');
    if (input.kind !== 'images') return;
    assert.equal(input.items.length, 23);
    assert.equal(input.items.filter((i) => i.label === 0).length, 6);
    assert.equal(input.items.filter((i) => i.label === 1).length, 17);
    assert.equal(labelFromLayout('good/04.png'), 0);
    assert.equal(labelFromLayout('colour/02.png'), 1);
    assert.equal(labelFromLayout('04.png'), undefined);
    // The category folder resolves to its test/ (never replays train images or masks).
    const cat = resolveReplayInput(join(TEST_DIR, '..'));
    assert.equal(cat.kind === 'images' && cat.items.length, 23);
  });

  it('publishes exactly one verdict per frame on NATS, with eval-path scores and the right confusion matrix', async () => {
    const sorted = [...direct.values()].sort((a, b) => a - b);
    // Between two scores so that both decisions occur and no score sits on the threshold.
    const threshold = (sorted[11]! + sorted[12]!) / 2;
    const line = 'L7';
    const camera = 'replay-cam';
    const nc: NatsConnection = await connect({ servers: srv.url });
    const got: Verdict[] = [];
    const rejects: Verdict[] = [];
    nc.subscribe(`fairline.${line}.${camera}.verdict`, { callback: (_e, m) => void got.push(m.json<Verdict>()) });
    nc.subscribe(`fairline.${line}.${camera}.reject`, { callback: (_e, m) => void rejects.push(m.json<Verdict>()) });
    await nc.flush();
    const sink = await natsSink({ line, nats: { servers: [srv.url], jetstream: { enabled: true, stream: 'FAIRLINE_REPLAY' } }, spool: { dir: join(dir, 'spool'), maxBytes: 2 ** 20 } });
    await sink.publisher.ready(10000);
    const tensors = tf.memory().numTensors;
    const report = await replay({ model, source: TEST_DIR, threshold, line, camera, batch: { maxSize: 4, maxWaitMs: 10 }, sink });
    assert.equal(tf.memory().numTensors, tensors, 'tensors leaked by the replay graph');
    await sink.close();
    await nc.flush();
    for (let i = 0; i < 50 && got.length < 23; i++) await new Promise((r) => setTimeout(r, 20));

    // One verdict per frame, each a valid v1 verdict, seq 0..22.
    assert.equal(got.length, 23);
    assert.deepEqual(got.map((v) => v.seq).sort((a, b) => a - b), [...Array(23).keys()]);
    for (const v of got) assert.ok(isVerdict(v), JSON.stringify(v));
    assert.ok(got.every((v) => v.camera === camera && v.line === line && v.model === model.id));
    // Scores equal the evaluation path's.
    for (const v of got) {
      const key = keyOf(v.path!);
      assert.ok(Math.abs(v.score! - direct.get(key)!) <= 1e-6, `${key}: ${v.score} vs ${direct.get(key)}`);
      assert.equal(v.verdict, direct.get(key)! >= threshold ? 'reject' : 'pass');
      assert.equal(v.label, labelFromLayout(key));
      if (v.verdict === 'reject') assert.ok(v.regions.length > 0, 'a reject carries its defect regions');
    }
    assert.deepEqual(rejects.map((v) => v.seq).sort((a, b) => a - b), got.filter((v) => v.verdict === 'reject').map((v) => v.seq).sort((a, b) => a - b));
    // The JetStream audit stream holds every verdict and reject signal once.
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info('FAIRLINE_REPLAY');
    assert.equal(info.state.messages, 23 + rejects.length);
    await nc.close();

    // Confusion matrix from first principles.
    let tp = 0, fp = 0, tn = 0, fn = 0;
    for (const [key, s] of direct) {
      const bad = labelFromLayout(key) === 1, rej = s >= threshold;
      if (bad && rej) tp++;
      else if (bad) fn++;
      else if (rej) fp++;
      else tn++;
    }
    assert.equal(report.frames, 23);
    assert.equal(report.errors, 0);
    assert.equal(report.labelled, 23);
    assert.deepEqual([report.confusion!.tp, report.confusion!.fp, report.confusion!.tn, report.confusion!.fn], [tp, fp, tn, fn]);
    assert.equal(tp + fp, 11, 'threshold between the 12th and 13th score rejects 11');
    assert.ok(Math.abs(report.confusion!.f1 - (2 * tp) / (2 * tp + fp + fn)) < 1e-12);
    assert.ok(report.latencyMs.p50 <= report.latencyMs.p95 && report.latencyMs.p95 <= report.latencyMs.p99 && report.latencyMs.p99 <= report.latencyMs.max);
    assert.ok(report.framesPerSecond > 0);
    assert.ok(report.auroc !== undefined && report.auroc >= 0 && report.auroc <= 1);
    const text = formatReport(report);
    assert.match(text, /actual good\s+\d+\s+\d+/);
    assert.match(text, /good\/04\.png/);
  });

  it('takes labels from a CSV or JSON file instead of the layout', async () => {
    const csv = join(dir, 'labels.csv');
    // Deliberately the opposite of the layout for good/*, by base name and by relative path.
    writeFileSync(csv, ['file,label', ...files.map((f) => `${keyOf(f)},${keyOf(f).startsWith('good/') ? 'defect' : 'good'}`)].join('\n'));
    const labels = readLabels(csv);
    assert.equal(labels.size, 23);
    assert.equal(labels.get('good/04.png'), 1);
    const json = join(dir, 'labels.json');
    writeFileSync(json, JSON.stringify({ 'good/04.png': 'ok', 'colour/00.png': 1 }));
    assert.deepEqual([...readLabels(json)], [['good/04.png', 0], ['colour/00.png', 1]]);
    writeFileSync(join(dir, 'bad.csv'), 'a.png,maybe\n');
    assert.throws(() => readLabels(join(dir, 'bad.csv')), /not a label/);

    const threshold = Math.max(...direct.values()) + 1; // everything passes
    const report = await replay({ model, source: TEST_DIR, labels: csv, threshold, batch: { maxSize: 8, maxWaitMs: 10 }, regions: false });
    assert.deepEqual([report.confusion!.tp, report.confusion!.fp, report.confusion!.tn, report.confusion!.fn], [0, 0, 17, 6]);
  });

  it('turns an unreadable image into an error verdict and keeps going', async () => {
    const bad = tempDir('replay-bad');
    try {
      writeFileSync(join(bad, 'a.png'), 'not a png');
      const { copyFileSync } = await import('node:fs');
      copyFileSync(files[0]!, join(bad, 'b.png'));
      const report = await replay({ model, source: bad, threshold: 1e9 });
      assert.deepEqual(report.results.map((r) => [r.key, r.verdict]), [['a.png', 'error'], ['b.png', 'pass']]);
      assert.equal(report.errors, 1);
      assert.equal(report.confusion, undefined, 'no labels at the root of a folder');
    } finally {
      rmSync(bad, { recursive: true, force: true });
    }
  });

  it('counts a confusion matrix ignoring unlabelled and error frames', () => {
    const c = confusion([
      { label: 1, verdict: 'reject' }, { label: 1, verdict: 'pass' }, { label: 0, verdict: 'reject' },
      { label: 0, verdict: 'pass' }, { label: 0, verdict: 'pass' }, { verdict: 'reject' }, { label: 1, verdict: 'error' },
    ]);
    assert.deepEqual([c.tp, c.fn, c.fp, c.tn], [1, 1, 1, 2]);
    assert.equal(c.falseRejectRate, 1 / 3);
    assert.equal(c.escapeRate, 0.5);
  });
});
