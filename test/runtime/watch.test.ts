/**
 * `fairline watch` as a user runs it (child process) against a real nats-server while a replay
 * publishes: one line per verdict, each exactly the verdict on the bus; `--rejects --json` shows
 * the reject gate's subject; an unreachable server is a clear error.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { formatVerdictLine, watchSubject } from '../../src/cli/watch.js';
import { useBackend } from '../../src/model/tfjs/backend.js';
import { loadInspectModel, type RuntimeModel } from '../../src/runtime/model.js';
import { replay } from '../../src/runtime/replay.js';
import { listImageFiles } from '../../src/runtime/sources.js';
import { loadModelImage } from '../../src/io/image.js';
import { natsSink } from '../../src/runtime/station.js';
import { isVerdict, type Verdict } from '../../src/verdict.js';
import { freePort, startNatsServer, type NatsServerHandle } from '../fixtures/nats-server.js';
import { runFairline, type CliRun } from '../helpers.js';
import { makeModel, tempDir, TEST_DIR } from './fixture.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Start `fairline watch ...`; resolves `ready` once it says it is subscribed. */
function startWatch(args: string[]): { ready: Promise<void>; run: Promise<CliRun>; kill: (s: NodeJS.Signals) => void } {
  let markReady!: () => void;
  let killer: ((s: NodeJS.Signals) => void) | undefined;
  const ready = new Promise<void>((r) => (markReady = r));
  const run = runFairline(['watch', ...args], {
    timeoutMs: 120000,
    onStderr: (err, kill) => {
      killer = kill;
      if (/watching fairline\./.test(err)) markReady();
    },
  });
  return { ready, run, kill: (s) => killer?.(s) };
}

describe('cli/watch', function () {
  this.timeout(180000);
  let dir: string;
  let srv: NatsServerHandle;
  let model: RuntimeModel;

  before(async () => {
    await useBackend('cpu');
    dir = tempDir('watch');
    makeModel(join(dir, 'model'), { seed: 3 });
    model = await loadInspectModel({ dir: join(dir, 'model'), engine: 'tfjs', requireThreshold: false });
    srv = await startNatsServer({ jetstream: false });
  });
  after(async () => {
    await model?.dispose();
    await srv?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('subjects: wildcards for what is not given', () => {
    assert.equal(watchSubject({}), 'fairline.*.*.verdict');
    assert.equal(watchSubject({ line: 'L1', rejects: true }), 'fairline.L1.*.reject');
    assert.equal(watchSubject({ line: 'L1', camera: 'c2' }), 'fairline.L1.c2.verdict');
  });

  it('shows the verdicts of a replay, one line each, the same as on the bus', async () => {
    const line = 'W1', camera = 'cam-w';
    const all = startWatch(['--nats', srv.url, '--line', line, '--camera', camera, '--count', '23']);
    const rejects = startWatch(['--nats', srv.url, '--line', line, '--rejects', '--json']);
    const other = startWatch(['--nats', srv.url, '--line', 'elsewhere', '--count', '1', '--timeout', '3000']);
    await Promise.all([all.ready, rejects.ready, other.ready]);

    const nc: NatsConnection = await connect({ servers: srv.url });
    const bus: Verdict[] = [];
    nc.subscribe(`fairline.${line}.${camera}.verdict`, { callback: (_e, m) => void bus.push(m.json<Verdict>()) });
    await nc.flush();
    const sink = await natsSink({ line, nats: { servers: [srv.url], jetstream: { enabled: false, stream: 'X' } }, spool: { dir: join(dir, 'spool'), maxBytes: 2 ** 20 } });
    await sink.publisher.ready(10000);
    // A threshold between two scores so that both decisions occur.
    const scores: number[] = [];
    for (const f of listImageFiles(TEST_DIR, '**/*.png')) scores.push((await model.detect([await loadModelImage(f, model.size)]))[0]!.score);
    scores.sort((a, b) => a - b);
    const threshold = (scores[11]! + scores[12]!) / 2;
    const report = await replay({ model, source: TEST_DIR, threshold, line, camera, batch: { maxSize: 4, maxWaitMs: 10 }, sink });
    await sink.close();
    await nc.flush();
    for (let i = 0; i < 100 && bus.length < 23; i++) await sleep(20);
    assert.equal(bus.length, 23);

    const r = await all.run;
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.split('\n').filter(Boolean);
    assert.equal(lines.length, 23, r.stdout);
    // Each line is the verdict on the bus (same order: one publisher, one subject).
    assert.deepEqual(lines, bus.map((v) => formatVerdictLine(v)));
    assert.ok(lines.every((l) => new RegExp(`^\\d\\d:\\d\\d:\\d\\d\\.\\d{3} ${line}/${camera}#\\d+ (PASS  |REJECT) score \\d+\\.\\d{4} (>=|<) ${threshold.toFixed(4).replace('.', '\\.')} model ${model.id} \\d+ ms`).test(l)), lines.join('\n'));
    assert.deepEqual(bus.map((v) => v.seq).sort((a, b) => a - b), [...Array(23).keys()]);
    assert.match(r.stderr, /watch: 23 verdict\(s\)/);

    // --rejects --json: exactly the rejects, as JSON verdicts; stops on SIGINT with its count.
    await sleep(300);
    rejects.kill('SIGINT');
    const rj = await rejects.run;
    assert.equal(rj.code, 0, rj.stderr);
    const got = rj.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Verdict);
    const nRejects = bus.filter((v) => v.verdict === 'reject').length;
    assert.ok(nRejects > 0 && nRejects === report.confusion!.tp + report.confusion!.fp && nRejects < 23, `rejects ${nRejects}`);
    assert.equal(got.length, nRejects);
    assert.ok(got.every((v) => isVerdict(v) && v.verdict === 'reject'));

    // A line nobody publishes on shows nothing.
    other.kill('SIGINT');
    const o = await other.run;
    assert.equal(o.stdout, '');
    assert.match(o.stderr, /watch: 0 verdict\(s\)/);
    await nc.close();
  });

  it('an unreachable server is a clear error, exit 2', async () => {
    const port = await freePort();
    const r = await runFairline(['watch', '--nats', `nats://127.0.0.1:${port}`, '--timeout', '1500'], { timeoutMs: 60000 });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /SinkError \[nats_unreachable\]: watch: cannot connect to nats:\/\/127\.0\.0\.1:\d+/);
  });
});
