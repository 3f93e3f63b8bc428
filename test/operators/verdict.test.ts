import assert from 'node:assert/strict';
import { lastValueFrom, of, toArray } from 'rxjs';
import { thresholdScores } from '../../src/operators/threshold.js';
import { toVerdicts } from '../../src/operators/verdict.js';
import { ConfigError, SourceError } from '../../src/errors.js';
import { failed, ok, type Frame, type JudgedFrame, type Result, type ScoredFrame } from '../../src/streams/frame.js';
import { isVerdict } from '../../src/verdict.js';

function frame(seq: number, sourceId = 'cam0'): Frame {
  return { sourceId, seq, captureTs: 1000, payload: { data: new Uint8Array(3), width: 1, height: 1, format: 'rgb' }, label: 1, path: `/d/${seq}.png` };
}
function scored(seq: number, score: number, map?: Float32Array, sourceId = 'cam0'): Result<ScoredFrame> {
  const s: ScoredFrame = { frame: frame(seq, sourceId), image: { width: 2, height: 2, channels: 3, data: new Float32Array(12) }, sourceWidth: 20, sourceHeight: 10, score };
  if (map) s.map = map;
  return ok(s);
}
const ctx = { line: 'L1', station: 'S1', model: 'm', now: () => 1500 };

describe('thresholdScores', () => {
  it('rejects exactly when score >= threshold', async () => {
    const out = await lastValueFrom(of(scored(1, 0.49), scored(2, 0.5), scored(3, 0.51)).pipe(thresholdScores(0.5), toArray()));
    assert.deepEqual(out.map((r) => r.ok && r.value.decision), ['pass', 'reject', 'reject']);
  });

  it('supports per-camera thresholds and fails NaN scores instead of passing them', async () => {
    const per = (f: Frame) => (f.sourceId === 'strict' ? 0.1 : 0.9);
    const out = await lastValueFrom(of(scored(1, 0.5, undefined, 'strict'), scored(2, 0.5), scored(3, Number.NaN)).pipe(thresholdScores(per), toArray()));
    assert.equal(out[0]!.ok && out[0]!.value.decision, 'reject');
    assert.equal(out[1]!.ok && out[1]!.value.decision, 'pass');
    const nan = out[2]!;
    assert.ok(!nan.ok && nan.stage === 'threshold' && nan.error.code === 'bad_score');
    assert.throws(() => thresholdScores(Number.POSITIVE_INFINITY), ConfigError);
  });
});

describe('toVerdicts', () => {
  it('builds v1 verdicts for decisions and failures, carrying replay fields', async () => {
    const map = new Float32Array([0.1, 0.9, 0.2, 0.3]);
    const judged: Result<JudgedFrame>[] = [];
    await lastValueFrom(of(scored(1, 0.9, map), scored(2, 0.1)).pipe(thresholdScores(0.5), toArray())).then((r) => judged.push(...r));
    judged.push(failed(frame(3), new SourceError('source_eos', 'camera unplugged'), 'source'));
    const out = await lastValueFrom(of(...judged).pipe(toVerdicts(ctx), toArray()));
    assert.ok(out.every(isVerdict));
    const [rej, pass, err] = out;
    assert.equal(rej!.verdict, 'reject');
    // map cell (1,0) on a 2x2 model -> a 10x5 box at x=10 of the 20x10 frame
    assert.deepEqual(rej!.regions, [{ x: 10, y: 0, w: 10, h: 5, area: 50, peak: Math.fround(0.9) }]);
    assert.equal(rej!.latencyMs, 500);
    assert.equal(rej!.path, '/d/1.png');
    assert.equal(rej!.label, 1);
    assert.equal(pass!.verdict, 'pass');
    assert.deepEqual(pass!.regions, []);
    assert.deepEqual(
      { verdict: err!.verdict, reason: err!.reason, stage: err!.stage, detail: err!.detail, score: err!.score },
      { verdict: 'error', reason: 'source_eos', stage: 'source', detail: 'camera unplugged', score: null },
    );
  });

  it('turns a verdict that cannot be built (bad map size) into an error verdict', async () => {
    const out = await lastValueFrom(of(scored(1, 0.9, new Float32Array(3))).pipe(thresholdScores(0.5), toVerdicts(ctx), toArray()));
    assert.equal(out[0]!.verdict, 'error');
    assert.equal(out[0]!.reason, 'bad_map');
    assert.equal(out[0]!.stage, 'verdict');
  });

  it('skips regions when asked', async () => {
    const out = await lastValueFrom(of(scored(1, 0.9, new Float32Array([1, 1, 1, 1]))).pipe(thresholdScores(0.5), toVerdicts({ ...ctx, regions: false }), toArray()));
    assert.equal(out[0]!.verdict, 'reject');
    assert.deepEqual(out[0]!.regions, []);
  });
});
