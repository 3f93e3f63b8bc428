/**
 * A camera that goes away and comes back, at the station level: a gst-launch-1.0 process serves
 * MJPEG over TCP (videotestsrc -> tcpserversink), the station reads it with a `gstreamer` camera
 * (tcpclientsrc) in live mode. The server is SIGKILLed and restarted; the station must keep
 * running, `fairline_source_up` on /metrics must go 1 -> 0 -> 1 and
 * `fairline_source_reconnects_total` must count the attempts, and verdicts must continue with
 * increasing seq.
 *
 * (test/gstreamer.test.ts proves withReconnect's backoff on the bare source; this is the whole
 * station, read from its metrics endpoint as Prometheus would.)
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { join } from 'node:path';
import { parseConfig } from '../../src/config.js';
import { useBackend } from '../../src/model/tfjs/backend.js';
import { startStation, type VerdictSink } from '../../src/runtime/station.js';
import type { Verdict } from '../../src/verdict.js';
import { freePort } from '../fixtures/nats-server.js';
import { makeModel, tempDir } from '../runtime/fixture.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function waitForAsync(cond: () => Promise<boolean> | boolean, ms: number, what: string): Promise<void> {
  const t0 = Date.now();
  while (!(await cond())) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

async function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = netConnect(port, '127.0.0.1', () => {
      c.destroy();
      resolve(true);
    });
    c.on('error', () => resolve(false));
  });
}

/** One sample's value from Prometheus text, e.g. `fairline_source_up{camera="tcp0",...}`. */
function sample(text: string, name: string, camera: string): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name}{`) && line.includes(`camera="${camera}"`)) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return undefined;
}

describe('faults: a camera killed and restarted under a running station', function () {
  this.timeout(60000);
  let dir: string;
  let port: number;
  let server: ChildProcess | undefined;

  const startServer = (): void => {
    server = spawn(
      'gst-launch-1.0',
      ['-q', 'videotestsrc', 'is-live=true', 'pattern=ball', '!', 'video/x-raw,width=64,height=64,framerate=15/1', '!', 'jpegenc', '!', 'multipartmux', '!', 'tcpserversink', 'host=127.0.0.1', `port=${port}`],
      { stdio: 'ignore' },
    );
  };
  const killServer = async (): Promise<void> => {
    const p = server;
    server = undefined;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise<void>((r) => p.once('exit', () => r()));
    p.kill('SIGKILL');
    await exited;
  };

  before(async () => {
    await useBackend('wasm');
    dir = tempDir('faults-camera');
    makeModel(join(dir, 'model'), { threshold: 1 });
    port = await freePort();
  });
  after(async () => {
    await killServer();
    rmSync(dir, { recursive: true, force: true });
    await useBackend('cpu');
  });

  it('reconnects by itself; source_up and reconnects_total on /metrics say so; seq keeps increasing', async () => {
    startServer();
    await waitForAsync(() => portOpen(port), 10000, 'the camera server');
    const got: Verdict[] = [];
    const sink: VerdictSink = { kind: 'memory', publish: (v) => void got.push(v), close: async () => undefined };
    const logs: string[] = [];
    const config = parseConfig(
      {
        line: 'LG',
        station: 'S1',
        model: join(dir, 'model'),
        backend: 'wasm',
        engine: 'tfjs',
        cameras: [{ id: 'tcp0', mode: 'live', source: { type: 'gstreamer', pipeline: `tcpclientsrc host=127.0.0.1 port=${port} ! multipartdemux ! jpegdec` } }],
        batch: { maxSize: 4, maxWaitMs: 20 },
        deadlineMs: 2000,
        metrics: { port: 0 },
      },
      { baseDir: dir },
    );
    const station = await startStation({ config, sink, log: (m) => logs.push(m) });
    try {
      const scrape = async (): Promise<{ up?: number; reconnects?: number }> => {
        const text = await (await fetch(station.metricsUrl!)).text();
        return { up: sample(text, 'fairline_source_up', 'tcp0'), reconnects: sample(text, 'fairline_source_reconnects_total', 'tcp0') ?? 0 };
      };
      await waitForAsync(async () => (await scrape()).up === 1 && got.length >= 5, 20000, 'camera up with 5 verdicts');
      assert.equal((await scrape()).reconnects, 0);

      await killServer();
      await waitForAsync(async () => (await scrape()).up === 0, 10000, 'source_up 0 after the kill');
      // While the camera is away the station retries with backoff (500 ms, 1 s, ...), and keeps running.
      await waitForAsync(async () => ((await scrape()).reconnects ?? 0) >= 2, 10000, '2 reconnect attempts');
      const beforeBack = got.length;
      const downFor = Date.now();

      startServer();
      await waitForAsync(async () => (await scrape()).up === 1, 20000, 'source_up 1 after the restart');
      const back = Date.now() - downFor;
      await waitForAsync(() => got.length >= beforeBack + 5, 10000, '5 verdicts after the restart');
      const after = await scrape();
      assert.ok(after.reconnects! >= 2, `reconnects_total ${after.reconnects}`);

      const summary = await station.stop();
      assert.equal(summary.failed, false, JSON.stringify(summary));
      assert.equal(summary.cameras.tcp0!.error, undefined);
      assert.equal(got.length, summary.cameras.tcp0!.frames);
      const seqs = got.filter((v) => !v.late).map((v) => v.seq);
      assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), 'seq increases across the reconnect');
      assert.equal(new Set(seqs).size, seqs.length, 'no seq twice');
      assert.ok(logs.some((l) => /camera tcp0: down/.test(l)) && logs.filter((l) => /camera tcp0: up/.test(l)).length >= 2, logs.join('\n'));
      console.log(`      reconnect attempts ${after.reconnects}; back ${back} ms after the server restarted; ${got.length} verdicts, ${got.filter((v) => v.verdict === 'error').length} error`);
    } finally {
      await station.stop();
    }
  });
});
