/**
 * The operator page's server (src/ui/server.ts) over real HTTP: the page and its headers, the
 * event stream, pictures (rendered once, the same overlay as eval), review marks behind the
 * token (403 without it), ids that cannot leave the capture folder, loopback-only Host names,
 * and slow or stalled browsers that must not hold the station up.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { anchorAt, heatOverlay, mapsRange } from '../../src/eval/heatmap.js';
import { captureDir, captureId } from '../../src/io/captures.js';
import { encodeJpeg } from '../../src/io/image.js';
import { Recorder } from '../../src/streams/recorder.js';
import type { JudgedFrame } from '../../src/streams/frame.js';
import { eventData } from '../../src/ui/events.js';
import { LiveView } from '../../src/ui/live.js';
import { serveUi, tokenMatches, type UiServer } from '../../src/ui/server.js';
import type { Verdict } from '../../src/verdict.js';

const TOKEN = 'a-long-enough-test-token';
const MODEL = { id: 'm-1', size: 8, width: 4, threshold: 0.5, thresholdSource: 'artefact', engine: 'tfjs-cpu', backend: 'cpu' };

function reject(seq: number): Verdict {
  return { schema: 'fairline.verdict/v1', line: 'L1', station: 'S1', camera: 'cam0', seq, captureTs: Date.UTC(2026, 11, 1) + seq, decidedTs: Date.UTC(2026, 11, 1) + seq + 5, latencyMs: 5, model: 'm-1', score: 0.9, threshold: 0.5, verdict: 'reject', regions: [{ x: 0, y: 0, w: 4, h: 4, area: 16, peak: 0.9 }] };
}

/** A 24x16 source frame, an 8x8 model image and a map that rises to the right. */
function judged(seq: number): JudgedFrame {
  const data = new Uint8Array(24 * 16 * 3).map((_, i) => (i * 7) % 251);
  const image = { width: 8, height: 8, channels: 3, data: new Float32Array(8 * 8 * 3).map((_, i) => (i % 3) / 3) };
  const map = new Float32Array(64).map((_, i) => (i % 8) / 7);
  return { frame: { sourceId: 'cam0', seq, captureTs: 0, payload: { data, width: 24, height: 16, format: 'bgr' } }, image, map, sourceWidth: 24, sourceHeight: 16, score: 0.9, threshold: 0.5, decision: 'reject' };
}

/** Read SSE `data:` events from a stream until `n` arrived. */
async function events(url: string, n: number): Promise<Record<string, any>[]> {
  const ctl = new AbortController();
  const res = await fetch(url, { signal: ctl.signal });
  assert.equal(res.headers.get('content-type'), 'text/event-stream; charset=utf-8');
  const out: Record<string, any>[] = [];
  for await (const e of eventData<Record<string, any>>(res.body!)) {
    out.push(e);
    if (out.length >= n) break;
  }
  ctl.abort();
  return out;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

describe('ui/server (the operator page over HTTP)', function () {
  this.timeout(30000);
  let dir: string;
  let live: LiveView;
  let rec: Recorder;
  let ui: UiServer;
  let base: string;
  let captured: string;
  let notCaptured: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'fairline-ui-server-'));
    live = new LiveView({ line: 'L1', station: 'S1', model: MODEL, cameras: [{ id: 'cam0', mode: 'live', threshold: 0.5 }] });
    rec = await Recorder.open({ dir: join(dir, 'captures'), rejects: true, passEvery: 0, keepDays: 7, maxBytes: 2 ** 30, hooks: { onWritten: (e) => live.onCaptured(e) } });
    for (const seq of [1, 2]) {
      const v = reject(seq);
      live.onVerdict(v, judged(seq));
      if (seq === 1) rec.offer(v, { payload: judged(seq).frame.payload, map: judged(seq).map, mapSize: 8 });
    }
    captured = captureId(reject(1));
    notCaptured = captureId(reject(2));
    while (!rec.entry(captured)) await sleep(10);
    ui = await serveUi({ port: 0, token: TOKEN, view: live, review: rec, intervalMs: 50 });
    base = ui.url.slice(0, -1);
  });
  after(async () => {
    await ui?.close();
    await rec?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('binds to 127.0.0.1 by default and serves one self-contained page with a strict CSP', async () => {
    assert.match(ui.url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
    const res = await fetch(ui.url);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'text/html; charset=utf-8');
    assert.match(res.headers.get('content-security-policy')!, /default-src 'none'.*connect-src 'self'/);
    assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
    const html = await res.text();
    assert.match(html, /new EventSource\('\/events'\)/);
    assert.doesNotMatch(html, /<script[^>]+src=|<link[^>]+stylesheet|https?:\/\/(?!www\.w3\.org)/, 'no external scripts, styles or CDNs');
  });

  it('streams the state as server-sent events and answers /api/state', async () => {
    const evs = await events(`${base}/events`, 3);
    assert.equal(evs.length, 3);
    for (const e of evs) {
      assert.equal(e.schema, 'fairline.ui/v1');
      assert.deepEqual(e.review, { enabled: true, captures: true });
      assert.equal(e.cameras[0].id, 'cam0');
      assert.deepEqual(e.cards.map((c: { seq: number }) => c.seq), [2, 1]);
    }
    assert.ok(evs[2]!.time >= evs[0]!.time);
    const st = (await (await fetch(`${base}/api/state`)).json()) as Record<string, any>;
    assert.equal(st.model.id, 'm-1');
    assert.equal(st.cards.find((c: { id: string }) => c.id === captured).captured, true);
  });

  it('renders pictures on demand, once: the eval overlay at model size, the input, and the frame at source resolution', async () => {
    const get = async (p: string) => {
      const r = await fetch(`${base}${p}`);
      return { status: r.status, type: r.headers.get('content-type'), body: Buffer.from(await r.arrayBuffer()) };
    };
    const overlay = await get(`/api/cards/${notCaptured}/overlay`);
    assert.equal(overlay.status, 200);
    assert.equal(overlay.type, 'image/jpeg');
    const j = judged(2);
    const expected = await encodeJpeg(heatOverlay(j.image, j.map!, anchorAt(mapsRange([j.map!]), 0.5), 0.5));
    assert.ok(overlay.body.equals(expected), 'exactly the overlay eval draws (as JPEG)');
    const kept = live.card(notCaptured)!.pictures.get('overlay');
    assert.ok(kept);
    await get(`/api/cards/${notCaptured}/overlay`);
    assert.equal(live.card(notCaptured)!.pictures.get('overlay'), kept, 'rendered once, then kept with the card');
    const frame = await get(`/api/cards/${notCaptured}/frame`);
    assert.deepEqual(await sharp(frame.body).metadata().then((m) => [m.width, m.height]), [24, 16]);
    const input = await get(`/api/cards/${notCaptured}/input`);
    assert.deepEqual(await sharp(input.body).metadata().then((m) => [m.width, m.height]), [8, 8]);
    // The captured card serves its frame from the capture file (it let go of the pixels in memory).
    assert.equal(live.card(captured)!.data!.payload, undefined);
    const fromDisk = await get(`/api/cards/${captured}/frame`);
    assert.ok(fromDisk.body.equals(readFileSync(join(captureDir(rec.opts.dir, captured), 'frame.png'))));
    const info = (await (await fetch(`${base}/api/cards/${captured}`)).json()) as { verdict: Verdict; captured: boolean };
    assert.deepEqual(info.verdict, reject(1));
    assert.equal(info.captured, true);
    assert.equal((await get(`/api/cards/${captured}/restored`)).status, 404);
  });

  it('draws the thumbnails of the cards on the page while someone watches, and says so in the snapshot', async () => {
    const evs = await events(`${base}/events`, 4);
    const last = evs.at(-1)!.cards as { id: string; thumb: boolean | null }[];
    assert.deepEqual(last.map((c) => c.thumb), [true, true]);
    const thumb = await fetch(`${base}/api/cards/${captured}/thumb`);
    assert.equal(thumb.headers.get('content-type'), 'image/jpeg');
    assert.equal((await sharp(Buffer.from(await thumb.arrayBuffer())).metadata()).width, 8, 'an 8 px model: the thumbnail is the overlay');
  });

  it('refuses ids that are not capture ids and paths that try to leave the capture folder', async () => {
    for (const p of [
      '/api/cards/..%2F..%2F..%2Fetc%2Fpasswd/frame.png',
      '/api/cards/%2e%2e%2fcaptures/frame.png',
      `/api/cards/${captured}%2F..%2F..%2F${captured}/frame`,
      '/api/cards/20261201T000000000Z_cam0_1%00/frame.png',
      '/api/cards/%E0%A4%A/frame.png',
    ]) {
      const r = await fetch(`${base}${p}`);
      assert.equal(r.status, 400, p);
    }
    // Dot segments are resolved by the URL parser before routing: they never reach a card.
    for (const p of ['/api/cards/../../../etc/passwd', '/api/../../etc/passwd', '/%2e%2e/%2e%2e/etc/passwd']) {
      const r = await fetch(`${base}${p}`);
      assert.ok(r.status === 404 || r.status === 400, `${p}: ${r.status}`);
      assert.doesNotMatch(await r.text(), /root:/);
    }
    assert.equal((await fetch(`${base}/api/cards/20261201T000000000Z_cam0_77`)).status, 404);
  });

  it('marks a capture only with the token (403 without it or with a wrong one), and writes the label into its folder', async () => {
    const post = (id: string, body: unknown, headers: Record<string, string> = {}) =>
      fetch(`${base}/api/cards/${id}/label`, { method: 'POST', headers: { 'Content-Type': 'application/json', ...headers }, body: JSON.stringify(body) });
    const labelFile = join(captureDir(rec.opts.dir, captured), 'label.json');
    assert.equal((await post(captured, { label: 'good' })).status, 403);
    assert.equal((await post(captured, { label: 'good' }, { Authorization: 'Bearer wrong-token-wrong-token' })).status, 403);
    assert.equal((await post(captured, { label: 'good' }, { Authorization: `Bearer ${TOKEN}x` })).status, 403);
    assert.equal((await post(captured, { label: 'good' }, { Authorization: `Basic ${TOKEN}` })).status, 403);
    assert.ok(!existsSync(labelFile), 'nothing written without the token');
    const ok = await post(captured, { label: 'good' }, { Authorization: `Bearer ${TOKEN}` });
    assert.equal(ok.status, 200);
    assert.equal(JSON.parse(readFileSync(labelFile, 'utf8')).label, 'good');
    assert.equal(live.tick().cards.find((c) => c.id === captured)!.label, 'good');
    assert.equal((await post(captured, { label: 'defect' }, { 'X-Fairline-Token': TOKEN })).status, 200);
    assert.equal(JSON.parse(readFileSync(labelFile, 'utf8')).label, 'defect');
    assert.equal((await post(captured, { label: 'bad' }, { Authorization: `Bearer ${TOKEN}` })).status, 400);
    assert.equal((await post(notCaptured, { label: 'good' }, { Authorization: `Bearer ${TOKEN}` })).status, 409, 'not on disk: nothing to mark');
    const form = await fetch(`${base}/api/cards/${captured}/label`, { method: 'POST', headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/x-www-form-urlencoded' }, body: 'label=good' });
    assert.equal(form.status, 415, 'only JSON (a cross-site form post cannot send it without a preflight)');
    assert.equal((await fetch(`${base}/api/cards/${captured}/label`)).status, 405);
  });

  it('compares tokens in constant time over equal-length digests', () => {
    assert.equal(tokenMatches(TOKEN, TOKEN), true);
    assert.equal(tokenMatches(`${TOKEN}x`, TOKEN), false);
    assert.equal(tokenMatches('', TOKEN), false);
    assert.equal(tokenMatches('x', TOKEN), false, 'a different length does not throw');
    assert.equal(tokenMatches(undefined, TOKEN), false);
    assert.equal(tokenMatches(TOKEN, undefined), false);
  });

  it('is read-only without a token, and answers only to loopback Host names when bound to loopback', async () => {
    const ro = await serveUi({ port: 0, view: live, review: rec });
    try {
      const r = await fetch(`${ro.url}api/cards/${captured}/label`, { method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${TOKEN}` }, body: '{"label":"good"}' });
      assert.equal(r.status, 403);
      assert.match(((await r.json()) as { error: string }).error, /read-only/);
      const st = (await (await fetch(`${ro.url}api/state`)).json()) as { review: { enabled: boolean } };
      assert.equal(st.review.enabled, false);
      // A page elsewhere reaching 127.0.0.1 through DNS rebinding sends its own Host name.
      const port = ro.port;
      const status = await new Promise<string>((resolve) => {
        const s = connect(port, '127.0.0.1', () => s.write(`GET /api/state HTTP/1.1\r\nHost: evil.example:${port}\r\nConnection: close\r\n\r\n`));
        let got = '';
        s.on('data', (d) => (got += d.toString()));
        s.on('end', () => resolve(got.split('\r\n')[0]!));
      });
      assert.equal(status, 'HTTP/1.1 421 Misdirected Request');
      assert.equal((await fetch(`http://localhost:${port}/api/state`)).status, 200);
    } finally {
      await ro.close();
    }
  });

  it('a stalled browser misses updates and is dropped; other browsers keep their pace; the server never waits for it', async () => {
    // Big snapshots fill a stalled socket after a few updates.
    const pad = 'x'.repeat(256 * 1024);
    const s2 = await serveUi({ port: 0, view: live, intervalMs: 20, slowClientMs: 600, extra: () => ({ pad }) });
    try {
      const stalled = connect(s2.port, '127.0.0.1', () => stalled.write(`GET /events HTTP/1.1\r\nHost: 127.0.0.1:${s2.port}\r\n\r\n`));
      stalled.on('error', () => undefined);
      stalled.pause(); // never reads
      await sleep(100);
      assert.equal(s2.clients(), 1);
      const t0 = Date.now();
      const evs = await events(`${s2.url}events`, 30);
      const ms = Date.now() - t0;
      // 30 updates at 20 ms each; a server that waited for the stalled client would not get there.
      assert.ok(ms < 3000, `a reading client got 30 updates in ${ms} ms`);
      assert.ok(evs.every((e) => e.pad === pad));
      assert.ok(s2.droppedUpdates() > 0, 'the stalled client missed updates');
      const until = Date.now() + 5000;
      while (s2.clients() > 0 && Date.now() < until) await sleep(50);
      assert.equal(s2.clients(), 0, 'the stalled client was disconnected after slowClientMs');
      stalled.destroy();
    } finally {
      await s2.close();
    }
  });

  it('limits the number of event streams', async () => {
    const s3 = await serveUi({ port: 0, view: live, maxClients: 1 });
    try {
      const ctl = new AbortController();
      const first = await fetch(`${s3.url}events`, { signal: ctl.signal });
      assert.equal(first.status, 200);
      const second = await fetch(`${s3.url}events`);
      assert.equal(second.status, 503);
      ctl.abort();
    } finally {
      await s3.close();
    }
  });
});
