/**
 * NATS goes away in the middle of a run: a station (two synthetic cameras, 500 frames each, the
 * tiny model, JetStream audit on) keeps inspecting while nats-server is SIGKILLed and restarted on
 * the same port and store. Every one of the 1,000 verdicts must be in the stream exactly once, in
 * order per camera, and every reject signal too.
 *
 * (test/nats.test.ts proves the same for the publisher alone with hand-made verdicts; this is the
 * whole runtime: sources, graph, sink, spool, graceful end.)
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { parseConfig } from '../../src/config.js';
import { useBackend } from '../../src/model/tfjs/backend.js';
import { natsSink, startStation, type VerdictSink } from '../../src/runtime/station.js';
import type { PublisherStats } from '../../src/streams/nats.js';
import type { Verdict } from '../../src/verdict.js';
import { startNatsServer, type NatsServerHandle } from '../fixtures/nats-server.js';
import { makeModel, tempDir } from '../runtime/fixture.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
async function waitFor(cond: () => boolean, ms: number, what: string): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** Subject and verdict of every message of a stream, in stream order. */
async function streamMessages(url: string, stream: string): Promise<Array<{ subject: string; v: Verdict }>> {
  const nc = await connect({ servers: url });
  try {
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info(stream);
    const out: Array<{ subject: string; v: Verdict }> = [];
    for (let seq = info.state.first_seq; info.state.messages > 0 && seq <= info.state.last_seq; seq++) {
      const m = await jsm.streams.getMessage(stream, { seq });
      if (m) out.push({ subject: m.subject, v: m.json<Verdict>() });
    }
    return out;
  } finally {
    await nc.close();
  }
}

describe('faults: nats-server restart during a 1,000-frame run', function () {
  this.timeout(60000);
  let dir: string;
  let srv: NatsServerHandle;

  before(async () => {
    // wasm runs the tiny model ~6x faster than the pure-JS cpu backend.
    await useBackend('wasm');
    dir = tempDir('faults-nats');
    makeModel(join(dir, 'model'), { threshold: 1 });
    srv = await startNatsServer({ jetstream: true });
  });
  after(async () => {
    await srv?.stop();
    rmSync(dir, { recursive: true, force: true });
    await useBackend('cpu');
  });

  it('every verdict is in the JetStream stream exactly once and in order per camera', async () => {
    const perCamera = 500;
    const synthetic = (seed: number) => ({ type: 'synthetic', width: 64, height: 64, fps: 100, count: perCamera, defectRate: 0.2, seed });
    const config = parseConfig(
      {
        line: 'LF',
        station: 'S1',
        model: join(dir, 'model'),
        backend: 'wasm',
        engine: 'tfjs',
        // Thresholds that make camera `a` pass everything and `b` reject everything (scores are > 0), so the
        // reject signals are known exactly.
        cameras: [
          { id: 'a', mode: 'replay', threshold: 1e9, source: synthetic(1) },
          { id: 'b', mode: 'replay', threshold: 1e-9, source: synthetic(2) },
        ],
        batch: { maxSize: 8, maxWaitMs: 10 },
        metrics: { enabled: false },
        nats: { servers: [srv.url], jetstream: { enabled: true, stream: 'FAULTS' } },
        spool: { dir: join(dir, 'spool') },
      },
      { baseDir: dir },
    );
    const logs: string[] = [];
    const log = (m: string): void => void logs.push(m);
    // The station's own NATS sink, but with a long close window: while the station infers, the
    // JetStream publisher (one PubAck round trip per event-loop turn) falls behind the line, so
    // the backlog is delivered on close (see docs/faults.md, "JetStream publish rate").
    const nats = await natsSink({ line: config.line, nats: config.nats, spool: config.spool, closeTimeoutMs: 40000, log });
    let taken = 0;
    let atLastVerdict: PublisherStats | undefined;
    const sink: VerdictSink = {
      kind: 'nats',
      publish: (v) => {
        nats.publish(v);
        if (++taken === 2 * perCamera) atLastVerdict = nats.stats!();
      },
      close: () => nats.close(),
      stats: () => nats.stats!(),
    };
    const station = await startStation({ config, sink, log });
    const stats = () => station.sink.stats!();
    // Kill the server once 400 of the 1,000 frames are decided: in the middle of the run.
    await waitFor(() => taken >= 400 && stats().published > 0, 30000, '400 verdicts');
    const atKill = { decided: taken, published: stats().published };
    await srv.restart('SIGKILL');
    assert.ok(taken < 2 * perCamera, `the restart was over after ${taken} frames, before the last one`);
    const summary = await station.done;

    assert.equal(summary.reason, 'completed');
    assert.equal(summary.failed, false);
    for (const id of ['a', 'b']) assert.equal(summary.cameras[id]!.frames, perCamera);
    assert.equal(summary.published?.published, 2 * perCamera, `${JSON.stringify(summary.published)}\n${logs.join("\n")}`);
    assert.equal(summary.published?.pending, 0);
    assert.equal(summary.published?.dropped, 0);
    assert.ok(summary.published!.spooled > 0, 'the outage went through the spool');
    assert.ok(logs.some((l) => /nats: disconnected/.test(l)) && logs.some((l) => /nats: connected/.test(l)), logs.join('\n'));

    const msgs = await streamMessages(srv.url, 'FAULTS');
    const count = new Map<string, number>();
    for (const { subject, v } of msgs) {
      if (!subject.endsWith('.verdict')) continue;
      const k = `${v.camera}:${v.seq}`;
      count.set(k, (count.get(k) ?? 0) + 1);
    }
    assert.equal(count.size, 2 * perCamera, 'every frame has a verdict in the stream');
    assert.deepEqual([...count.values()].filter((n) => n !== 1), [], 'exactly once');
    const range = [...Array(perCamera).keys()];
    for (const id of ['a', 'b']) {
      const inStreamOrder = msgs.filter((m) => m.subject === `fairline.LF.${id}.verdict`).map((m) => m.v.seq);
      assert.deepEqual(inStreamOrder, range, `camera ${id}: stream order == seq order`);
    }
    assert.ok(msgs.filter((m) => m.subject === 'fairline.LF.a.verdict').every((m) => m.v.verdict === 'pass'));
    assert.deepEqual(msgs.filter((m) => m.subject === 'fairline.LF.b.reject').map((m) => m.v.seq), range, 'every reject signal once, in order');
    assert.equal(msgs.filter((m) => m.subject === 'fairline.LF.a.reject').length, 0);
    console.log(
      `      killed after ${atKill.decided} decided / ${atKill.published} published; ${summary.published!.spooled} of ${2 * perCamera} verdicts went through the spool; ` +
        `${atLastVerdict!.published} published when the last frame was decided, the rest on close; ${summary.seconds.toFixed(1)} s`,
    );
  });
});
