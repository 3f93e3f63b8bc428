import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { listCategories, readDataset, readFolder } from '../src/io/datasets.js';
import { DatasetError } from '../src/errors.js';
import { SAMPLE_DATA } from './helpers.js';

function touch(p: string): void {
  mkdirSync(join(p, '..'), { recursive: true });
  writeFileSync(p, '');
}

describe('dataset readers', () => {
  let root: string;
  beforeEach(() => { root = mkdtempSync(join(tmpdir(), 'fairline-ds-')); });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  it('reads the shipped sample in MVTec layout', () => {
    const ds = readDataset(SAMPLE_DATA, 'hazelnut', { needTest: true });
    assert.equal(ds.layout, 'mvtec');
    assert.equal(ds.train.length, 28);
    assert.equal(ds.test.filter((s) => s.label === 0).length, 6);
    assert.equal(ds.test.filter((s) => s.label === 1).length, 17);
    assert.ok(ds.test.filter((s) => s.label === 1).every((s) => s.maskPath?.endsWith('_mask.png')));
    assert.deepEqual(listCategories(SAMPLE_DATA), ['hazelnut']);
  });

  it('names anomalous images without masks', () => {
    touch(join(root, 'bottle/train/good/000.png'));
    touch(join(root, 'bottle/test/good/000.png'));
    touch(join(root, 'bottle/test/broken/001.png'));
    assert.throws(() => readDataset(root, 'bottle'), (e: unknown) => e instanceof DatasetError && e.code === 'missing_mask' && /001\.png/.test(e.message));
  });

  it('reports empty splits and unknown categories clearly', () => {
    mkdirSync(join(root, 'bottle/train/good'), { recursive: true });
    assert.throws(() => readDataset(root, 'bottle'), (e: unknown) => e instanceof DatasetError && e.code === 'empty_split');
    assert.throws(() => readDataset(root, 'cable'), (e: unknown) => e instanceof DatasetError && /categories found: bottle/.test(e.message));
    assert.throws(() => readDataset(join(root, 'nope'), 'x'), (e: unknown) => e instanceof DatasetError && e.code === 'missing');
  });

  it('reads VisA as released (split_csv/1cls.csv) and the prepared 1cls layout', () => {
    touch(join(root, 'candle/Data/Images/Normal/0000.JPG'));
    touch(join(root, 'candle/Data/Images/Normal/0001.JPG'));
    touch(join(root, 'candle/Data/Images/Anomaly/000.JPG'));
    touch(join(root, 'candle/Data/Masks/Anomaly/000.png'));
    mkdirSync(join(root, 'split_csv'));
    writeFileSync(join(root, 'split_csv/1cls.csv'), [
      'object,split,label,image,mask',
      'candle,train,normal,candle/Data/Images/Normal/0000.JPG,',
      'candle,test,normal,candle/Data/Images/Normal/0001.JPG,',
      'candle,test,anomaly,candle/Data/Images/Anomaly/000.JPG,candle/Data/Masks/Anomaly/000.png',
    ].join('\n'));
    const ds = readDataset(root, 'candle');
    assert.equal(ds.layout, 'visa-csv');
    assert.equal(ds.train.length, 1);
    assert.deepEqual(ds.test.map((s) => s.label), [0, 1]);
    assert.ok(ds.test[1]!.maskPath!.endsWith('000.png'));
    assert.deepEqual(listCategories(root), ['candle']);

    const prep = mkdtempSync(join(tmpdir(), 'fairline-visa1-'));
    touch(join(prep, 'pcb1/train/good/0001.JPG'));
    touch(join(prep, 'pcb1/test/good/0002.JPG'));
    touch(join(prep, 'pcb1/test/bad/0003.JPG'));
    touch(join(prep, 'pcb1/ground_truth/bad/0003.png'));
    const d2 = readDataset(prep, 'pcb1');
    assert.equal(d2.layout, 'visa-1cls');
    assert.ok(d2.test.find((s) => s.label === 1)!.maskPath!.endsWith('0003.png'));
    rmSync(prep, { recursive: true, force: true });
  });

  it('reads a generic folder layout', () => {
    touch(join(root, 'ok/a.png'));
    touch(join(root, 'ng/b.png'));
    touch(join(root, 'masks/b.png'));
    const ds = readFolder({ root, normalDir: 'ok', abnormalDir: 'ng', maskDir: 'masks' });
    assert.equal(ds.train.length, 1);
    assert.equal(ds.test[0]!.maskPath, join(root, 'masks/b.png'));
  });
});
