import assert from 'node:assert/strict';
import { BadInputError } from '../src/errors.js';
import { VERDICT_SCHEMA, defectRegions, gateRejects, isVerdict, rejectSubject, subjectToken, verdictProblems, verdictSubject, type Verdict } from '../src/verdict.js';

const good: Verdict = {
  schema: VERDICT_SCHEMA, line: 'L1', station: 'S1', camera: 'cam0', seq: 7, captureTs: 1_700_000_000_000, decidedTs: 1_700_000_000_040,
  latencyMs: 40, model: 'hazelnut@ab12', score: 0.8, threshold: 0.5, verdict: 'reject', regions: [{ x: 1, y: 2, w: 3, h: 4, area: 9, peak: 0.8 }],
};

/** A size x size map with value `bg`, and rectangles [x0, y0, x1, y1 (inclusive), value]. */
function mapWith(size: number, bg: number, rects: [number, number, number, number, number][]): Float32Array {
  const m = new Float32Array(size * size).fill(bg);
  for (const [x0, y0, x1, y1, v] of rects) for (let y = y0; y <= y1; y++) for (let x = x0; x <= x1; x++) m[y * size + x] = v;
  return m;
}

describe('verdict schema', () => {
  it('accepts a valid verdict and survives a JSON round trip', () => {
    assert.deepEqual(verdictProblems(good), []);
    assert.ok(isVerdict(JSON.parse(JSON.stringify(good))));
    assert.ok(isVerdict({ ...good, verdict: 'error', score: null, threshold: null, reason: 'bad_frame', stage: 'decode', regions: [] }));
    assert.ok(isVerdict({ ...good, verdict: 'reject', score: null, threshold: null, reason: 'deadline', failSafe: true, regions: [] }));
  });

  const broken: [string, Record<string, unknown>, RegExp][] = [
    ['wrong schema', { schema: 'fairline.verdict/v0' }, /^schema/],
    ['missing camera', { camera: undefined }, /^camera/],
    ['negative seq', { seq: -1 }, /^seq/],
    ['NaN latency', { latencyMs: Number.NaN }, /^latencyMs/],
    ['unknown verdict', { verdict: 'maybe' }, /^verdict/],
    ['error without reason', { verdict: 'error', score: null, threshold: null }, /^reason/],
    ['model verdict without score', { score: null }, /^score\/threshold/],
    ['region missing peak', { regions: [{ x: 1, y: 1, w: 1, h: 1, area: 1 }] }, /^regions\[0\]\.peak/],
    ['label 2', { label: 2 }, /^label/],
  ];
  for (const [what, patch, msg] of broken) {
    it(`rejects a verdict with ${what}`, () => {
      const p = verdictProblems({ ...good, ...patch });
      assert.equal(isVerdict({ ...good, ...patch }), false);
      assert.ok(p.some((s) => msg.test(s)), `${what}: ${p.join('; ')}`);
    });
  }
  it('rejects non-objects', () => {
    assert.equal(isVerdict(null), false);
    assert.equal(isVerdict([good]), false);
    assert.equal(isVerdict('{"schema":"fairline.verdict/v1"}'), false);
  });
});

describe('defectRegions', () => {
  it('finds 8-connected components and scales their boxes to the frame', () => {
    // 8x8 model map; frame 32x16 (sx = 4, sy = 2).
    const m = mapWith(8, 0.1, [
      [1, 1, 2, 2, 0.6], // 2x2 block
      [3, 3, 3, 3, 0.9], // touches the block only diagonally -> same component (8-connectivity)
      [6, 0, 7, 0, 0.7], // separate, top right
      [0, 7, 0, 7, 0.55], // separate single pixel, bottom left
    ]);
    const r = defectRegions(m, 8, 0.5, 32, 16);
    assert.deepEqual(r, [
      { x: 4, y: 2, w: 12, h: 6, area: 5 * 8, peak: Math.fround(0.9) },
      { x: 24, y: 0, w: 8, h: 2, area: 2 * 8, peak: Math.fround(0.7) },
      { x: 0, y: 14, w: 4, h: 2, area: 8, peak: Math.fround(0.55) },
    ]);
  });

  it('agrees with the image decision: regions exist iff max(map) >= threshold', () => {
    let seed = 7;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (let k = 0; k < 50; k++) {
      const m = new Float32Array(16 * 16).map(() => rnd());
      const t = 0.9 + rnd() * 0.12;
      const max = m.reduce((a, b) => Math.max(a, b), 0);
      assert.equal(defectRegions(m, 16, t, 64, 64).length > 0, max >= t, `case ${k}`);
    }
  });

  it('keeps the highest peaks first and honours maxRegions and minPixels', () => {
    const m = mapWith(8, 0, [[0, 0, 0, 0, 0.6], [2, 0, 2, 0, 0.8], [4, 0, 5, 0, 0.7], [7, 7, 7, 7, 0.9]]);
    assert.deepEqual(defectRegions(m, 8, 0.5, 8, 8, { maxRegions: 2 }).map((r) => r.peak), [0.9, 0.8].map(Math.fround));
    assert.deepEqual(defectRegions(m, 8, 0.5, 8, 8, { minPixels: 2 }).map((r) => r.peak), [Math.fround(0.7)]);
  });

  it('rejects a map of the wrong size with BadInputError', () => {
    assert.throws(() => defectRegions(new Float32Array(10), 4, 0.5, 8, 8), (e: unknown) => e instanceof BadInputError && e.code === 'bad_map');
    assert.throws(() => defectRegions(new Float32Array(16), 4, 0.5, 0, 8), BadInputError);
  });
});

describe('subjects', () => {
  it('builds fairline.<line>.<camera>.verdict / .reject', () => {
    assert.equal(verdictSubject('L1', 'cam0'), 'fairline.L1.cam0.verdict');
    assert.equal(rejectSubject('L1', 'cam0'), 'fairline.L1.cam0.reject');
  });
  it('sanitises dots, spaces and wildcards so each name stays one token', () => {
    assert.equal(verdictSubject('line 1.a', 'cam*>'), 'fairline.line_1_a.cam__.verdict');
    assert.equal(subjectToken('$SYS'), '_SYS');
    assert.throws(() => subjectToken(''), BadInputError);
  });
});

describe('gateRejects', () => {
  it('acts on rejects, on errors only under a reject fail-safe, never on pass or late verdicts', () => {
    const err: Verdict = { ...good, verdict: 'error', score: null, threshold: null, reason: 'dropped', regions: [] };
    assert.deepEqual(
      [gateRejects(good, 'pass'), gateRejects(err, 'reject'), gateRejects(err, 'pass'), gateRejects({ ...good, verdict: 'pass' }, 'reject'), gateRejects({ ...good, late: true }, 'reject')],
      [true, true, false, false, false],
    );
  });
});
