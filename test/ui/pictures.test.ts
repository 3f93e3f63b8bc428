/**
 * A card's pictures (src/ui/pictures.ts): the thumbnail is the eval overlay of a shrunk image
 * and map (block average, block maximum: a one-pixel defect still shows), rendered once.
 */
import assert from 'node:assert/strict';
import sharp from 'sharp';
import { anchorAt, heatOverlay, mapsRange, shrink } from '../../src/eval/heatmap.js';
import type { FairlineError } from '../../src/errors.js';
import { encodeJpeg } from '../../src/io/image.js';
import type { Card } from '../../src/ui/live.js';
import { RenderBudget, cardPicture } from '../../src/ui/pictures.js';

function card(size: number, withMap = true): Card {
  const image = { width: size, height: size, channels: 3, data: new Float32Array(size * size * 3).map((_, i) => (i % 7) / 7) };
  const map = new Float32Array(size * size);
  map[size * 3 + 5] = 2; // a one-pixel defect
  return {
    id: '20261201T000000000Z_cam0_1',
    verdict: { schema: 'fairline.verdict/v1', line: 'L', station: 'S', camera: 'cam0', seq: 1, captureTs: 0, decidedTs: 0, latencyMs: 0, model: 'm', score: 2, threshold: 1, verdict: 'reject', regions: [] },
    data: withMap ? { image, map } : { image },
    pictures: new Map(),
  };
}

describe('ui/pictures (reject card pictures)', () => {
  it('shrinks by block average and block maximum', () => {
    const img = { width: 4, height: 2, channels: 1, data: new Float32Array([0, 1, 2, 3, 4, 5, 6, 7]) };
    const s = shrink(img, new Float32Array([0, 9, 1, 1, 0, 0, NaN, 1]), 2);
    assert.deepEqual([s.image.width, s.image.height], [2, 1]);
    assert.deepEqual([...s.image.data], [2.5, 4.5]);
    assert.deepEqual([...s.map], [9, 1], 'the maximum, NaN ignored');
    assert.equal(shrink(img, new Float32Array(8), 1).image.width, 4);
  });

  it('renders a 128 px thumbnail of a model-size overlay once, the overlay itself at model size', async () => {
    const c = card(256);
    const thumb = await cardPicture(c, 'thumb');
    assert.equal(thumb.type, 'image/jpeg');
    const m = await sharp(thumb.data).metadata();
    assert.deepEqual([m.width, m.height, m.format], [128, 128, 'jpeg']);
    const small = shrink(c.data!.image, c.data!.map!, 2);
    const expected = await encodeJpeg(heatOverlay(small.image, small.map, anchorAt(mapsRange([c.data!.map!]), 1), 1));
    assert.ok(thumb.data.equals(expected));
    assert.equal(await cardPicture(c, 'thumb'), thumb, 'kept with the card');
    assert.equal((await sharp((await cardPicture(c, 'overlay')).data).metadata()).width, 256);
    // A small model's thumbnail is its overlay.
    const tiny = card(64);
    assert.ok((await cardPicture(tiny, 'thumb')).data.equals((await cardPicture(tiny, 'overlay')).data));
  });

  it('says why a picture cannot be drawn, and does not keep the failure', async () => {
    const c = card(16, false);
    await assert.rejects(cardPicture(c, 'thumb'), (e: FairlineError) => e.code === 'no_picture');
    assert.equal(c.pictures.size, 0);
    delete c.data;
    await assert.rejects(cardPicture(c, 'frame'), (e: FairlineError) => e.code === 'no_picture');
  });

  it('keeps thumbnails within a time budget, newest first, skipping the oldest when too many wait', async () => {
    const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
    const budget = new RenderBudget(100, 20, 4); // 100 ms per second, a 20 ms burst, 4 waiting
    const order: number[] = [];
    const t0 = performance.now();
    const jobs = Array.from({ length: 7 }, (_, i) => budget.run(async () => (await sleep(10), order.push(i), `drawn ${i}`), async () => `skipped ${i}`));
    const got = await Promise.all(jobs);
    const ms = performance.now() - t0;
    // 0 runs at once; of the 6 that wait, the 2 oldest are skipped; the rest run newest first.
    assert.deepEqual(got, ['drawn 0', 'skipped 1', 'skipped 2', 'drawn 3', 'drawn 4', 'drawn 5', 'drawn 6']);
    assert.deepEqual(order, [0, 6, 5, 4, 3]);
    assert.equal(budget.skipped, 2);
    // The last of 5 jobs of >= 10 ms starts only after the first four were paid for, less the 20 ms burst: >= (40 - 20) / 100 s.
    assert.ok(ms >= 190, `${ms.toFixed(0)} ms`);
    // With no budget left and nowhere to wait, a card's thumbnail is the placeholder.
    const c = card(256);
    const spent = new RenderBudget(1, 0, 0);
    const pic = await cardPicture(c, 'thumb', spent);
    assert.equal((await sharp(pic.data).metadata()).width, 16, 'the placeholder');
  });
});
