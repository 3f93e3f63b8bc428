import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import sharp from 'sharp';
import { from, lastValueFrom, toArray } from 'rxjs';
import { planEval, runEval } from '../src/cli/eval.js';
import { saveModel, loadModel } from '../src/io/artefact.js';
import { readDataset } from '../src/io/datasets.js';
import { encodePng, loadMask, loadModelImage } from '../src/io/image.js';
import { createUNet } from '../src/model/tfjs/unet.js';
import { unetToTorch } from '../src/model/weights.js';
import { defaultSpec, type ImageU8 } from '../src/model/types.js';
import { categoryMetrics, detectorFromModel, evaluateCategory, type EvalItem } from '../src/eval/evaluate.js';
import { createDetector } from '../src/runtime/detector-engine.js';
import { aupro, f1Max, imageAuroc, pixelAuroc, tprAtFpr } from '../src/eval/metrics.js';
import { CSV_COLUMNS, categoryHeatRange, renderPicture, renderPictureU8, type EvalReport } from '../src/eval/report.js';
import { composePanels, drawText, heatPosition, jet, mapsRange, solidImage, solidImageU8, toU8 } from '../src/eval/heatmap.js';
import { inspect } from '../src/operators/index.js';
import type { Frame } from '../src/streams/frame.js';
import type { Verdict } from '../src/verdict.js';
import { ConfigError, DatasetError, ModelError } from '../src/errors.js';
import { REPO_ROOT } from './helpers.js';

const run = promisify(execFile);
const S = 64;

/** A textured 64x64 BGR image; anomalous ones get a bright magenta blob whose mask is returned. */
function synthImage(seed: number, blob?: { x: number; y: number; r: number }): { img: ImageU8; mask?: ImageU8 } {
  const data = new Uint8Array(S * S * 3);
  const mask = new Uint8Array(S * S);
  for (let y = 0; y < S; y++) {
    for (let x = 0; x < S; x++) {
      const o = (y * S + x) * 3;
      const t = 0.5 + 0.25 * Math.sin(x * 0.4 + seed) * Math.cos(y * 0.3 - seed * 0.7);
      const noise = ((x * 73856093) ^ (y * 19349663) ^ (seed * 83492791)) % 17;
      data[o] = Math.round(60 + 80 * t + noise);
      data[o + 1] = Math.round(90 + 60 * t + noise);
      data[o + 2] = Math.round(120 + 50 * t);
      if (blob && (x - blob.x) ** 2 + (y - blob.y) ** 2 <= blob.r ** 2) {
        data[o] = 230;
        data[o + 1] = 20;
        data[o + 2] = 240;
        mask[y * S + x] = 255;
      }
    }
  }
  return { img: { width: S, height: S, channels: 3, data }, mask: blob ? { width: S, height: S, channels: 1, data: mask } : undefined };
}

/** MVTec layout: <root>/<cat>/{train/good, test/good, test/blob, ground_truth/blob}. */
async function makeDataset(root: string, cat: string, opts: { good?: number; bad?: number; train?: number } = {}): Promise<void> {
  const base = join(root, cat);
  for (const d of ['train/good', 'test/good', 'test/blob', 'ground_truth/blob']) mkdirSync(join(base, d), { recursive: true });
  for (let i = 0; i < (opts.train ?? 2); i++) await encodePng(synthImage(100 + i).img, join(base, 'train/good', `${String(i).padStart(3, '0')}.png`));
  for (let i = 0; i < (opts.good ?? 3); i++) await encodePng(synthImage(200 + i).img, join(base, 'test/good', `${String(i).padStart(3, '0')}.png`));
  for (let i = 0; i < (opts.bad ?? 3); i++) {
    const { img, mask } = synthImage(300 + i, { x: 16 + 12 * i, y: 40 - 8 * i, r: 5 + i });
    const stem = String(i).padStart(3, '0');
    await encodePng(img, join(base, 'test/blob', `${stem}.png`));
    await encodePng(mask!, join(base, 'ground_truth/blob', `${stem}_mask.png`));
  }
}

function makeModel(dir: string, seed: number, threshold?: number): void {
  const spec = defaultSpec({ size: S, baseWidth: 4 });
  const unet = createUNet(spec.unet, seed);
  saveModel(dir, {
    spec,
    tensors: unetToTorch(unet),
    idPrefix: 'tiny',
    ...(threshold !== undefined ? { thresholds: { image: threshold, method: 'test', computedAt: new Date().toISOString() } } : {}),
  });
  unet.dispose();
}

describe('fairline eval', function () {
  this.timeout(60_000);
  let root: string;
  let models: string;
  let tmp: string;

  before(async () => {
    await tf.setBackend('cpu');
    tmp = mkdtempSync(join(tmpdir(), 'fairline-eval-'));
    root = join(tmp, 'data');
    models = join(tmp, 'models');
    await makeDataset(root, 'widget');
    makeModel(join(models, 'widget'), 3, 0.05);
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('writes report.json/csv/md, pictures and index.html; metrics equal metrics.ts on the same maps', async () => {
    const reportDir = join(tmp, 'report');
    const { report, paths } = await runEval({ data: root, category: 'widget', models, report: reportDir, pictures: 'all', batch: 2 }, { progress: false });
    for (const p of Object.values(paths)) assert.ok(existsSync(p), p);

    // The same evaluation directly, to get the maps, on the engine runEval picks (the whole ONNX
    // graph when onnxruntime loads); deterministic with the same engine and threads.
    const ds = readDataset(root, 'widget', { needTest: true });
    const model = loadModel(join(models, 'widget'));
    const det = await createDetector(model, { engine: 'auto' });
    const ev = await evaluateCategory(ds, det, { id: model.manifest.id, threshold: model.manifest.thresholds }, { batch: 2 });
    det.dispose();
    // Ground truth rebuilt independently: good = zeros, anomalous = loadMask at model size.
    const masks: Float32Array[] = [];
    for (const [i, s] of ds.test.entries()) {
      const m = s.maskPath ? await loadMask(s.maskPath, S) : new Float32Array(S * S);
      assert.deepEqual(ev.items[i]!.mask, m, `mask of ${s.path}`);
      masks.push(m);
    }
    const maps = ev.items.map((it) => it.map!);
    const scores = ev.items.map((it) => it.score!);
    const labels = ds.test.map((s) => s.label);
    assert.deepEqual([...labels].sort(), [0, 0, 0, 1, 1, 1]);
    const json = JSON.parse(readFileSync(paths.json, 'utf8')) as EvalReport;
    const c = json.categories[0]!;
    assert.equal(json.categories.length, 1);
    assert.deepEqual(c.images, { total: 6, good: 3, anomalous: 3, scored: 6, errors: 0 });
    assert.equal(c.image_AUROC, imageAuroc(scores, labels));
    assert.equal(c.pixel_AUROC, pixelAuroc(maps, masks));
    assert.equal(c.AUPRO, aupro(maps, masks));
    const f1 = f1Max(scores, labels);
    assert.equal(c.image_F1Max, f1.f1);
    assert.equal(c.gate.f1Max!.threshold, f1.threshold);
    assert.equal(c.gate.tprAtFpr1pct!.tpr, tprAtFpr(scores, labels, 0.01).tpr);
    assert.equal(c.gate.tprAtFpr01pct!.tpr, tprAtFpr(scores, labels, 0.001).tpr);
    assert.deepEqual(c.gate.threshold, { value: 0.05, source: 'model:test' });
    assert.deepEqual(c.items.map((it) => it.score), scores);
    // Verdicts at the model threshold, and the gate rates they imply.
    assert.deepEqual(c.items.map((it) => it.verdict), scores.map((s) => (s >= 0.05 ? 'reject' : 'pass')));
    const frr = scores.filter((s, i) => labels[i] === 0 && s >= 0.05).length / 3;
    assert.equal(c.gate.falseRejectRate, frr);
    assert.equal(json.mean.image_AUROC.value, c.image_AUROC);
    assert.equal(report.categories[0]!.AUPRO, c.AUPRO);

    // CSV: header, one category row, the mean row.
    const csv = readFileSync(paths.csv, 'utf8').trim().split('\n');
    assert.equal(csv.length, 3);
    assert.equal(csv[0], CSV_COLUMNS.join(','));
    const row = csv[1]!.split(',');
    assert.equal(row[0], 'widget');
    assert.equal(Number(row[CSV_COLUMNS.indexOf('AUPRO')]), c.AUPRO);
    assert.equal(csv[2]!.split(',')[0], 'mean');
    const md = readFileSync(paths.md, 'utf8');
    assert.match(md, new RegExp(`\\| widget \\| ${c.image_AUROC!.toFixed(4)} \\| ${c.pixel_AUROC!.toFixed(4)} \\| ${c.AUPRO!.toFixed(4)} \\|`));
    assert.match(md, /\| \*\*mean\*\* \|/);

    // One picture per test image: 4 panels of 64 px, labelled; index.html shows each with its verdict.
    const pics = readdirSync(join(reportDir, 'pictures', 'widget')).sort();
    assert.deepEqual(pics, ['blob_000.png', 'blob_001.png', 'blob_002.png', 'good_000.png', 'good_001.png', 'good_002.png']);
    const meta = await sharp(join(reportDir, 'pictures', 'widget', 'blob_001.png')).metadata();
    assert.equal(meta.width, 4 * S + 5 * 4);
    assert.ok(meta.height! > S + 20, `picture height ${meta.height}`);
    const html = readFileSync(paths.html, 'utf8');
    for (const it of c.items) {
      assert.ok(it.picture, `${it.path} has a picture`);
      assert.ok(html.includes(`src="${it.picture}"`), `index.html shows ${it.picture}`);
    }
    assert.equal((html.match(/<figure /g) ?? []).length, 6);
    assert.equal((html.match(/class="v">reject</g) ?? []).length, c.items.filter((it) => it.verdict === 'reject').length);
  });

  it('gives exactly the scores of a plain live inspect() pipeline on the same images', async () => {
    const ds = readDataset(root, 'widget', { needTest: true });
    const model = loadModel(join(models, 'widget'));
    const det = detectorFromModel(model);
    const threshold = model.manifest.thresholds!.image;
    // A different batch size than the live path below: per-image results must not depend on it.
    const ev = await evaluateCategory(ds, det, { id: model.manifest.id, threshold: model.manifest.thresholds }, { batch: 2 });
    // The live path as `fairline inspect` builds it: encoded frames, loadModelImage, detector.detect,
    // live mode (drop-oldest, with room enough not to drop) and a fail-safe deadline.
    const frames: Frame[] = await Promise.all(
      ds.test.map(async (s, seq): Promise<Frame> => ({ sourceId: 'cam1', seq, captureTs: Date.now(), payload: { data: await readFile(s.path), width: 0, height: 0, format: 'encoded' } })),
    );
    const verdicts: Verdict[] = await lastValueFrom(
      from(frames).pipe(
        inspect({
          decode: (f) => loadModelImage(Buffer.from(f.payload.data), model.manifest.spec.size),
          model: { id: model.manifest.id, inferBatch: async (imgs) => (await det.detect(imgs)).map((d) => ({ score: d.score, map: d.map })) },
          threshold,
          context: { line: 'L1', station: 'S1' },
          batch: { maxSize: 3, maxWaitMs: 20 },
          mode: 'live',
          queueLimit: 16,
          deadline: { deadlineMs: 30_000, verdict: 'reject', clock: 'arrival' },
        }),
        toArray(),
      ),
    );
    det.dispose();
    assert.equal(verdicts.length, ds.test.length);
    const live = [...verdicts].sort((a, b) => a.seq - b.seq);
    assert.ok(live.every((v) => v.verdict !== 'error' && !v.failSafe));
    assert.deepEqual(live.map((v) => v.score), ev.items.map((it) => it.score), 'scores identical');
    assert.deepEqual(live.map((v) => v.verdict), ev.items.map((it) => it.verdict), 'verdicts identical');
    // And the scores are real (differ between images).
    assert.ok(new Set(ev.items.map((it) => it.score)).size > 1);
  });

  it('keeps no tensors behind and keeps pictures only for the images asked for', async () => {
    const ds = readDataset(root, 'widget', { needTest: true });
    const model = loadModel(join(models, 'widget'));
    const det = detectorFromModel(model);
    const before = tf.memory().numTensors;
    const ev = await evaluateCategory(ds, det, { id: model.manifest.id, threshold: model.manifest.thresholds }, { batch: 4, pictures: 'anomalous', readAhead: 4 });
    assert.equal(tf.memory().numTensors, before, 'tensors leaked');
    det.dispose();
    for (const it of ev.items) {
      assert.equal(!!it.input, it.label === 1, `${it.path}: input kept iff anomalous`);
      assert.equal(!!it.restored, it.label === 1);
      if (it.input) assert.equal(it.input.data.length, S * S * 3);
    }
    // The kept input is the model's view of the file in 8 bits, and the 8-bit picture (what eval
    // writes) is the float picture's bytes, with and without threshold, restoration and mask.
    const range = categoryHeatRange(ev);
    const mid = (range.lo + range.hi) / 2;
    for (const it of ev.items.filter((x) => x.input)) {
      assert.deepEqual(it.input!.data, toU8(await loadModelImage(it.path, S)).data, `${it.path}: kept input`);
      for (const [item, thr] of [[it, mid], [it, null], [{ ...it, restored: undefined, mask: null }, mid]] as const) {
        const want = toU8(renderPicture(item, 'widget', S, range, thr));
        const got = renderPictureU8(item, 'widget', S, range, thr);
        assert.deepEqual([got.width, got.height], [want.width, want.height]);
        assert.ok(Buffer.from(got.data).equals(Buffer.from(want.data)), `${it.path}: 8-bit picture (threshold ${thr}, restored ${!!item.restored})`);
      }
    }
  });

  it('uses the F1-max threshold for a model without one, and fails unreadable images without losing the rest', async () => {
    const data2 = join(tmp, 'data2');
    await makeDataset(data2, 'gizmo', { good: 2, bad: 2 });
    writeFileSync(join(data2, 'gizmo/test/good/999.png'), 'not a png');
    makeModel(join(tmp, 'noth'), 5);
    const { report } = await runEval({ data: data2, category: 'gizmo', model: join(tmp, 'noth'), report: join(tmp, 'r2'), pictures: 'none', batch: 2 }, { progress: false });
    const c = report.categories[0]!;
    assert.equal(c.gate.threshold.source, 'f1-max');
    assert.equal(c.gate.threshold.value, c.gate.f1Max!.threshold);
    assert.deepEqual(c.images, { total: 5, good: 3, anomalous: 2, scored: 4, errors: 1 });
    const bad = c.items.find((it) => it.path.endsWith('999.png'))!;
    assert.equal(bad.verdict, 'error');
    assert.equal(bad.score, null);
    assert.equal(bad.error!.code, 'unsupported_image');
    const scored = c.items.filter((it) => it.score !== null);
    assert.equal(c.image_AUROC, imageAuroc(scored.map((it) => it.score!), scored.map((it) => it.label)));
    assert.equal(existsSync(join(tmp, 'r2', 'pictures')), false, 'no pictures with --pictures none');
    assert.match(readFileSync(join(tmp, 'r2', 'report.md'), 'utf8'), /999\.png`: unsupported_image/);
  });

  it('reports what it can for categories without anomalies or masks, with reasons', () => {
    const map = (v: number): Float32Array => new Float32Array(16).fill(v);
    const good: Pick<EvalItem, 'label' | 'score' | 'map' | 'mask'>[] = [0.1, 0.2, 0.3].map((s) => ({ label: 0, score: s, map: map(s), mask: new Float32Array(16) }));
    const m = categoryMetrics(good);
    assert.equal(m.image_AUROC, null);
    assert.equal(m.pixel_AUROC, null);
    assert.equal(m.AUPRO, null);
    assert.equal(m.image_F1Max, null);
    assert.equal(m.gate.tprAtFpr1pct, null);
    assert.match(m.reasons.image_AUROC!, /no anomalous test images/);
    assert.match(m.reasons.AUPRO!, /no anomalous/);
    const noMask = categoryMetrics([...good, { label: 1, score: 0.9, map: map(0.9), mask: null }]);
    assert.equal(noMask.image_AUROC, 1);
    assert.equal(noMask.image_F1Max, 1);
    assert.equal(noMask.pixel_AUROC, null);
    assert.match(noMask.reasons.pixel_AUROC!, /1 anomalous test image\(s\) have no ground-truth mask/);
  });

  it('fails clearly: missing model, no test split, bad options, mask/image size mismatch', async () => {
    assert.throws(() => planEval({ data: root, category: 'widget', models: join(tmp, 'nomodels') }), (e: unknown) => e instanceof ModelError && e.code === 'missing' && /no model for 1 category: widget/.test(e.message));
    assert.throws(() => planEval({ data: root, category: 'widget', model: join(tmp, 'nothing-here') }), (e: unknown) => e instanceof ModelError && e.code === 'missing');
    assert.throws(() => planEval({ data: root, category: 'widget', all: true, models }), (e: unknown) => e instanceof ConfigError);
    assert.throws(() => planEval({ data: root, category: 'widget' }), (e: unknown) => e instanceof ConfigError && /--model DIR or --models DIR/.test(e.message));
    const noTest = join(tmp, 'data3');
    mkdirSync(join(noTest, 'thing/train/good'), { recursive: true });
    await encodePng(synthImage(1).img, join(noTest, 'thing/train/good/000.png'));
    assert.throws(() => planEval({ data: noTest, category: 'thing', models }), (e: unknown) => e instanceof DatasetError && e.code === 'empty_split');
    assert.throws(() => planEval({ data: root, category: 'nope', models }), (e: unknown) => e instanceof DatasetError && /categories found: widget/.test(e.message));
    // A mask that is not the size of its image would not line up with it.
    const data4 = join(tmp, 'data4');
    await makeDataset(data4, 'widget', { good: 1, bad: 1 });
    await encodePng({ width: 32, height: 32, channels: 1, data: new Uint8Array(32 * 32).fill(255) }, join(data4, 'widget/ground_truth/blob/000_mask.png'));
    await assert.rejects(runEval({ data: data4, category: 'widget', models, report: join(tmp, 'r4'), pictures: 'none', batch: 2 }, { progress: false }), (e: unknown) => e instanceof DatasetError && e.code === 'mask_size' && /32x32/.test(e.message));
    // From the command line: exit code 2 and the typed error on stderr.
    await assert.rejects(
      run(process.execPath, [join(REPO_ROOT, 'bin/fairline.js'), 'eval', '--data', root, '--category', 'widget', '--model', join(tmp, 'nothing-here'), '--report', join(tmp, 'r5'), '--backend', 'cpu'], { cwd: REPO_ROOT }),
      (e: { code?: number; stderr?: string }) => e.code === 2 && /ModelError \[missing\]/.test(e.stderr ?? ''),
    );
  });

  describe('pictures on typed arrays', () => {
    it('colours with JET, centres the scale on the threshold, and draws labelled panels', () => {
      assert.deepEqual(jet(0), [0.5, 0, 0]);
      assert.deepEqual(jet(1), [0, 0, 0.5]);
      assert.deepEqual(jet(0.5), [0.5, 1, 0.5]);
      const range = mapsRange([[0.2, 1.2], [0.7]]);
      assert.deepEqual(range, { lo: 0.2, hi: 1.2 });
      assert.ok(Math.abs(heatPosition(0.7, range) - 0.5) < 1e-12);
      // Anchored at a threshold: lo -> 0, threshold -> 0.5, hi -> 1, linear on each side, clamped.
      const anchored = { lo: 0.2, hi: 1.2, centre: 0.9 };
      assert.equal(heatPosition(0.9, anchored), 0.5);
      assert.equal(heatPosition(0.2, anchored), 0);
      assert.equal(heatPosition(1.2, anchored), 1);
      assert.ok(Math.abs(heatPosition(0.55, anchored) - 0.25) < 1e-12);
      assert.ok(Math.abs(heatPosition(1.05, anchored) - 0.75) < 1e-12);
      assert.equal(heatPosition(5, anchored), 1);
      const img = solidImage(20, 10, [0, 0, 0]);
      drawText(img, 1, 1, 'I', 1, [1, 1, 1]);
      // 'I' drawn at x = 1: its top row (0b01110) lights x = 2..4 and leaves x = 1 and 5 dark.
      assert.deepEqual([...img.data.subarray((1 * 20 + 1) * 3, (1 * 20 + 6) * 3)].filter((_, i) => i % 3 === 0), [0, 1, 1, 1, 0]);
      const pic = composePanels([{ image: solidImage(8, 8, [1, 0, 0]), title: 'A' }, { image: solidImage(8, 12, [0, 1, 0]), title: 'B' }], { caption: ['X'], gap: 2, scale: 1 });
      assert.equal(pic.width, 8 + 8 + 3 * 2);
      assert.equal(pic.height, 2 + 10 + 10 + 12 + 2);
      // 8-bit panels give the 8-bit picture (the float one's bytes); mixing the two is an error.
      const pic8 = composePanels([{ image: solidImageU8(8, 8, [1, 0, 0]), title: 'A' }, { image: solidImageU8(8, 12, [0, 1, 0]), title: 'B' }], { caption: ['X'], gap: 2, scale: 1 });
      assert.ok(Buffer.from(pic8.data).equals(Buffer.from(toU8(pic).data)));
      assert.throws(() => composePanels([{ image: solidImageU8(8, 8, [1, 0, 0]), title: 'A' }, { image: solidImage(8, 8, [1, 0, 0]), title: 'B' }] as never), /mixes/);
    });
  });
});
