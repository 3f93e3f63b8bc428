/**
 * The operator page in a real browser: Debian's chromium driven by playwright-core (installed by
 * scripts/setup.sh; no browser download). A station runs the shipped demo model on two simulated
 * cameras (the toy hazelnut test images at 1.5 fps, a synthetic camera at 0.5 fps) with the page and
 * reject capture on; the test checks what an operator sees and does:
 *
 * - the page loads with no console errors;
 * - reject counts and cards update as frames arrive (server-sent events);
 * - a card's heatmap image loads; the full-size picture is the frame at source resolution;
 * - marking a card "good part" with the token writes its label file; without the token (or with
 *   a wrong one) the mark is refused with 403 and nothing changes;
 * - a screenshot is saved: `out/ui-screenshot.png`, or the path in FAIRLINE_UI_SCREENSHOT
 *   (README's docs/ui-screenshot.png is made with FAIRLINE_UI_SCREENSHOT=docs/ui-screenshot.png).
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import sharp from 'sharp';
import { parseConfig } from '../../src/config.js';
import { captureDir } from '../../src/io/captures.js';
import { startStation, type Station, type VerdictSink } from '../../src/runtime/station.js';
import type { Verdict } from '../../src/verdict.js';
import { REPO_ROOT } from '../helpers.js';
import { TEST_DIR, tempDir } from '../runtime/fixture.js';

const CHROMIUM = '/usr/bin/chromium';
const TOKEN = 'test-token-0123456789abcdef';

describe('ui in a browser (chromium + playwright-core)', function () {
  this.timeout(120000);
  let dir: string;
  let station: Station;
  let ctx: BrowserContext;
  let page: Page;
  const verdicts: Verdict[] = [];
  const consoleErrors: string[] = [];

  before(async () => {
    assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: run scripts/setup.sh (it installs Debian's chromium)`);
    dir = tempDir('ui-browser');
    const config = parseConfig(
      {
        line: 'L1',
        station: 'S1',
        model: join(REPO_ROOT, 'models', 'hazelnut-demo'),
        backend: 'wasm',
        cameras: [
          { id: 'line1', mode: 'live', source: { type: 'images', dir: TEST_DIR, pattern: '**/*.png', loop: true, fps: 1.5 } },
          { id: 'sim0', mode: 'live', source: { type: 'synthetic', width: 320, height: 240, fps: 0.5, defectRate: 0.3, seed: 3 } },
        ],
        batch: { maxSize: 2, maxWaitMs: 50 },
        // Deadlines are not under test here; a generous one keeps a loaded CI machine from failing safe.
        deadlineMs: 20000,
        metrics: { enabled: false },
        ui: { listen: '127.0.0.1:0', token: TOKEN },
        record: { dir: 'captures' },
      },
      { baseDir: dir },
    );
    const sink: VerdictSink = { kind: 'memory', publish: (v) => void verdicts.push(v), close: async () => undefined };
    station = await startStation({ config, sink });
    assert.match(station.uiUrl!, /^http:\/\/127\.0\.0\.1:\d+\/$/);
    ctx = await chromium.launchPersistentContext(join(dir, 'chromium-profile'), {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: { width: 1280, height: 900 },
    });
    page = ctx.pages()[0] ?? (await ctx.newPage());
    page.on('console', (m) => {
      if (m.type() === 'error') consoleErrors.push(`${m.text()} (${m.location().url})`);
    });
    page.on('pageerror', (e) => consoleErrors.push(`page error: ${e.message}`));
  });

  after(async () => {
    await ctx?.close();
    await station?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const rejectCount = (camera: string): Promise<number> => page.locator(`.cam[data-camera="${camera}"] .v-reject`).innerText().then(Number);

  it('loads with no console errors and shows the cameras, the model and the engine', async () => {
    await page.goto(station.uiUrl!);
    await page.locator('.cam[data-camera="line1"]').waitFor();
    await page.locator('.cam[data-camera="sim0"]').waitFor();
    assert.match(await page.locator('#model').innerText(), /model hazelnut-[0-9a-f]+ · 256 px · c=8 · threshold [0-9.]+ \(artefact\) · engine \S+ · backend wasm/);
    await page.waitForFunction(() => document.getElementById('conn-text')?.textContent === 'live');
    assert.equal(await page.locator('.cam[data-camera="line1"] .badge').first().innerText(), 'UP');
    assert.equal(await page.locator('.cam[data-camera="line1"] svg.hist line.threshold').count(), 1, 'the histogram has its threshold line');
    assert.deepEqual(consoleErrors, []);
  });

  it('updates the reject count and the cards as frames arrive', async () => {
    const r0 = await rejectCount('line1');
    const cards0 = await page.locator('.card').count();
    await page.waitForFunction(
      ([r, c]) => Number(document.querySelector('.cam[data-camera="line1"] .v-reject')?.textContent) >= r! + 2 && document.querySelectorAll('.card').length >= c! + 2,
      [r0, cards0],
      { timeout: 90000 },
    );
    const r1 = await rejectCount('line1');
    assert.ok(r1 >= r0 + 2, `${r0} -> ${r1}`);
    // What the page shows is what the station decided.
    const decided = verdicts.filter((v) => v.camera === 'line1' && v.verdict === 'reject').length;
    assert.ok(decided >= r1, `${decided} rejects decided, ${r1} shown`);
    assert.ok(Number(await page.locator('.cam[data-camera="line1"] .v-fps').innerText()) > 0);
    assert.deepEqual(consoleErrors, []);
  });

  it("loads a card's heatmap overlay; the full-size view is the frame at source resolution with its verdict JSON", async () => {
    await page.waitForFunction(() => {
      const img = document.querySelector<HTMLImageElement>('.card img.overlay');
      return img !== null && img.complete && img.naturalWidth > 0;
    }, undefined, { timeout: 30000 });
    const width = await page.locator('.card img.overlay').first().evaluate((img: HTMLImageElement) => img.naturalWidth);
    assert.equal(width, 128, "a card shows a thumbnail of the model-size overlay");
    const id = await page.locator('.card').first().getAttribute('data-id');
    // New cards push the others along while the page is live: click this card's element, not a screen position.
    await page.locator(`.card[data-id="${id}"]`).dispatchEvent('click');
    await page.locator('#modal.open pre.verdict').waitFor();
    const json = JSON.parse(await page.locator('#modal pre.verdict').innerText()) as Verdict;
    assert.equal(json.verdict, 'reject');
    assert.ok(id!.endsWith(`_${json.camera}_${json.seq}`));
    await page.waitForFunction(() => (document.querySelector<HTMLImageElement>('#modal img.full')?.naturalWidth ?? 0) > 0, undefined, { timeout: 30000 });
    await page.waitForFunction(() => (document.querySelector<HTMLImageElement>('#modal img.heat')?.naturalWidth ?? 0) > 0, undefined, { timeout: 30000 });
    assert.equal(await page.locator('#modal img.heat').evaluate((img: HTMLImageElement) => img.naturalWidth), 256, 'the full overlay is at model size');
    const full = await page.locator('#modal img.full').evaluate((img: HTMLImageElement) => [img.naturalWidth, img.naturalHeight]);
    const src = await sharp(join(TEST_DIR, json.camera === 'line1' ? 'colour/00.png' : 'good/04.png')).metadata();
    if (json.camera === 'line1') assert.deepEqual(full, [src.width, src.height]);
    else assert.deepEqual(full, [320, 240]);
    await page.keyboard.press('Escape');
    await page.locator('#modal.open').waitFor({ state: 'detached' });
    assert.deepEqual(consoleErrors, []);
  });

  it('marks a captured reject "good part" with the token (label file written); without the token it is refused with 403', async () => {
    // A card gets its mark buttons once the recorder has its capture on disk.
    const card = page.locator('.card:has(.marks button.good)').first();
    await card.waitFor({ timeout: 60000 });
    const id = (await card.getAttribute('data-id'))!;
    const labelFile = join(captureDir(join(dir, 'captures'), id), 'label.json');
    assert.ok(existsSync(join(captureDir(join(dir, 'captures'), id), 'verdict.json')), 'the capture is on disk');
    await page.locator('#token').fill(TOKEN);
    const byId = page.locator(`.card[data-id="${id}"]`);
    const [res] = await Promise.all([page.waitForResponse((r) => r.url().endsWith(`/api/cards/${id}/label`)), byId.locator('button.good').dispatchEvent('click')]);
    assert.equal(res.status(), 200);
    assert.equal(JSON.parse(readFileSync(labelFile, 'utf8')).label, 'good');
    await page.locator(`.card[data-id="${id}"] .label.good`).waitFor();
    assert.deepEqual(consoleErrors, []);

    // Without the token, and with a wrong one: 403, and the label stays.
    const post = (headers: Record<string, string>) =>
      fetch(`${station.uiUrl}api/cards/${id}/label`, { method: 'POST', headers: { 'Content-Type': 'application/json', ...headers }, body: '{"label":"defect"}' });
    assert.equal((await post({})).status, 403);
    assert.equal((await post({ Authorization: 'Bearer not-the-token-at-all' })).status, 403);
    await page.locator('#token').fill('not-the-token-at-all');
    const [refused] = await Promise.all([
      page.waitForResponse((r) => r.url().endsWith(`/api/cards/${id}/label`)),
      byId.locator('button.defect').dispatchEvent('click'),
    ]);
    assert.equal(refused.status(), 403);
    await page.locator('#toast.show.err').waitFor();
    assert.match(await page.locator('#toast').innerText(), /not marked \(403\)/);
    assert.equal(JSON.parse(readFileSync(labelFile, 'utf8')).label, 'good', 'a refused mark changes nothing');
    // The browser logs the refused request itself; nothing else went wrong.
    assert.ok(consoleErrors.every((e) => /403/.test(e)), consoleErrors.join('\n'));
    await page.locator('#token').fill(TOKEN);
  });

  it('saves a screenshot of the page', async () => {
    await page.waitForTimeout(1500); // a few more updates and card pictures
    await page.locator('#toast.show').waitFor({ state: 'detached', timeout: 10000 });
    const file = resolve(REPO_ROOT, process.env.FAIRLINE_UI_SCREENSHOT ?? join('out', 'ui-screenshot.png'));
    mkdirSync(dirname(file), { recursive: true });
    // A palette PNG: a third of the bytes of the browser's, for the README.
    await sharp(await page.screenshot()).png({ palette: true, quality: 90 }).toFile(file);
    const m = await sharp(file).metadata();
    assert.deepEqual([m.format, m.width, m.height], ['png', 1280, 900]);
    const summary = await station.stop();
    for (const [id, c] of Object.entries(summary.cameras)) assert.equal(c.verdicts.pass + c.verdicts.reject + c.verdicts.error, c.frames, `${id}: one verdict per frame`);
  });
});
