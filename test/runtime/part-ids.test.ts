/**
 * Part ids from the trigger subject over a real nats-server: a live camera at 10 frames/s and a
 * "PLC" publishing `{partId, ts}` at the frame rate on `fairline.<line>.<camera>.trigger` (some
 * parts without a trigger, some stray triggers between frames): every verdict that carries a part
 * id carries its own frame's, most frames get one, and unmatched frames and triggers are counted.
 */
import assert from 'node:assert/strict';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { parseConfig } from '../../src/config.js';
import type { RuntimeModel } from '../../src/runtime/model.js';
import { startStation } from '../../src/runtime/station.js';
import type { Verdict } from '../../src/verdict.js';
import { startNatsServer, type NatsServerHandle } from '../fixtures/nats-server.js';
import { fakeModel, tempDir } from './fixture.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

describe('runtime/part-ids (trigger subject)', function () {
  this.timeout(120000);
  let dir: string;
  let srv: NatsServerHandle;
  before(async () => {
    dir = tempDir('partids');
    mkdirSync(join(dir, 'm'));
    srv = await startNatsServer({ jetstream: false });
  });
  after(async () => {
    await srv?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('triggers at the frame rate are matched to the right frames; unmatched frames and triggers are counted', async () => {
    // A stand-in model (the test is about matching, not scoring): 2 ms per batch.
    const model = fakeModel(join(dir, 'm'), 'fake-1', 2) as unknown as RuntimeModel;
    const config = parseConfig(
      {
        line: 'L5', station: 'S5', model: join(dir, 'm'), backend: 'cpu', engine: 'tfjs',
        cameras: [{ id: 'cam1', mode: 'live', partId: { trigger: { windowMs: 40, holdMs: 200 } }, source: { type: 'synthetic', width: 32, height: 32, fps: 10, defectRate: 0, seed: 1 } }],
        batch: { maxSize: 2, maxWaitMs: 10 }, deadlineMs: 10000, queueLimit: 50, metrics: { enabled: false },
        nats: { servers: [srv.url] }, spool: { dir: join(dir, 'spool') },
      },
      { baseDir: dir },
    );
    const nc: NatsConnection = await connect({ servers: srv.url });
    const got: Verdict[] = [];
    nc.subscribe('fairline.L5.cam1.verdict', { callback: (_e, m) => void got.push(m.json<Verdict>()) });
    await nc.flush();
    const station = await startStation({ config, model, control: false });
    for (let i = 0; i < 400 && got.length === 0; i++) await sleep(25);
    const first = got.find((v) => v.seq === 0) ?? got[0]!;
    // The camera's clock: frame k is captured at c0 + 100 k (the source schedules against its start).
    const c0 = first.captureTs - first.seq * 100;
    const k0 = Math.ceil((Date.now() + 150 - c0) / 100);
    const parts = 30;
    const published: Array<{ partId: string; ts: number; k?: number }> = [];
    for (let k = k0; k < k0 + parts; k++) {
      const jitter = ((k * 7) % 21) - 10; // -10..+10 ms, the PLC's and camera's clocks differ a little
      const ts = c0 + 100 * k + jitter;
      await sleep(Math.max(0, ts + 5 - Date.now()));
      if (k % 7 === 3) continue; // a part the sensor missed: its frame has no trigger
      nc.publish('fairline.L5.cam1.trigger', JSON.stringify({ partId: `P${k}`, ts }));
      published.push({ partId: `P${k}`, ts, k });
      if (k % 10 === 5) {
        // A stray trigger halfway between two frames (50 ms from each, outside the 40 ms window).
        nc.publish('fairline.L5.cam1.trigger', JSON.stringify({ partId: `S${k}`, ts: ts + 50 - jitter }));
        published.push({ partId: `S${k}`, ts: ts + 50 - jitter });
      }
    }
    nc.publish('fairline.L5.cam1.trigger', 'not a trigger');
    await nc.flush();
    await sleep(400);
    const summary = await station.stop('test');
    await nc.flush();
    await sleep(200);

    const frames = summary.cameras.cam1!.frames;
    assert.equal(got.length, frames, 'one verdict per frame');
    const withId = got.filter((v) => v.partId !== undefined);
    // Never the wrong part: a verdict's part id is its own frame's trigger.
    for (const v of withId) assert.equal(v.partId, `P${v.seq}`, `#${v.seq} (captured ${v.captureTs - c0 - 100 * v.seq} ms off schedule) got ${v.partId}`);
    assert.equal(new Set(withId.map((v) => v.partId)).size, withId.length, 'a trigger is used once');
    const triggered = published.filter((p) => p.k !== undefined).length;
    // A frame captured late by this loaded machine may fall outside the window; most match.
    assert.ok(withId.length >= 0.8 * triggered, `${withId.length} of ${triggered} triggered frames matched`);
    for (const v of got) if (v.seq % 7 === 3) assert.equal(v.partId, undefined, `#${v.seq} had no trigger`);
    assert.ok(got.filter((v) => v.partId === undefined).every((v) => !('partId' in v)), 'absent stays absent');

    const text = await station.metrics.registry.metrics();
    const metric = (result: string) => Number(new RegExp(`fairline_part_ids_total\\{camera="cam1",result="${result}"[^}]*\\} (\\d+)`).exec(text)?.[1]);
    assert.equal(metric('matched'), withId.length);
    assert.equal(metric('unmatched_frame'), frames - withId.length);
    // Every trigger accounted for: matched or unmatched (the strays, and any whose frame came late).
    assert.equal(metric('matched') + metric('unmatched_trigger'), published.length);
    assert.ok(metric('unmatched_trigger') >= published.filter((p) => p.k === undefined).length);
    assert.equal(metric('bad_trigger'), 1);
    await nc.close();
    console.log(`      ${frames} frames, ${triggered} triggers for frames + ${published.length - triggered} stray: ${withId.length} matched, ${metric('unmatched_frame')} frames and ${metric('unmatched_trigger')} triggers unmatched`);
  });
});
