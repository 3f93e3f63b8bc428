/**
 * VerdictPublisher against a real nats-server (spawned per suite by test/fixtures/nats-server.ts):
 * subjects, JetStream dedup, a server restart in the middle of 300 verdicts, the spool bound,
 * a spool left by a previous instance, user/password and TLS.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { createUser } from '@nats-io/nkeys';
import { BadInputError, ConfigError, SinkError } from '../src/errors.js';
import {
  VerdictPublisher,
  natsConnectionOptions,
  rejectSubject,
  verdictSubject,
  verdictMsgId,
  type PublishableVerdict,
  type VerdictPublisherOptions,
} from '../src/streams/nats.js';
import type { Verdict as ProjectVerdict } from '../src/verdict.js';
import { freePort, generateTlsCerts, startNatsServer, type NatsServerHandle } from './fixtures/nats-server.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
type Verdict = PublishableVerdict & { score: number };
// Compile-time contract: the project's verdict type can be published as is.
const projectVerdictIsPublishable: ProjectVerdict extends PublishableVerdict ? true : never = true;
void projectVerdictIsPublishable;
const verdict = (camera: string, seq: number, v: Verdict['verdict'] = 'pass'): Verdict => ({ camera, seq, verdict: v, score: seq / 1000 });

interface Received {
  subject: string;
  data: Verdict;
}

/** Collect messages on `fairline.<line>.>` with a separate connection. */
async function collect(nc: NatsConnection, line: string): Promise<{ got: Received[]; ready: Promise<void> }> {
  const got: Received[] = [];
  nc.subscribe(`fairline.${line}.>`, {
    callback: (_err, m) => {
      got.push({ subject: m.subject, data: m.json<Verdict>() });
    },
  });
  return { got, ready: nc.flush() };
}

async function waitFor(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** All messages of a stream in stream order. */
async function streamMessages(url: string, stream: string): Promise<Received[]> {
  const nc = await connect({ servers: url });
  try {
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info(stream);
    const out: Received[] = [];
    for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
      const m = await jsm.streams.getMessage(stream, { seq });
      if (m) out.push({ subject: m.subject, data: m.json<Verdict>() });
    }
    return out;
  } finally {
    await nc.close();
  }
}

describe('streams/nats', function () {
  this.timeout(60000);
  let root: string;
  let k = 0;
  const spoolDir = () => join(root, `spool${k++}`);
  const publishers: Array<VerdictPublisher<Verdict>> = [];
  async function publisher(o: VerdictPublisherOptions<Verdict>): Promise<VerdictPublisher<Verdict>> {
    const p = await VerdictPublisher.create(o);
    publishers.push(p);
    return p;
  }

  before(() => {
    root = mkdtempSync(join(tmpdir(), 'fairline-nats-test-'));
  });
  afterEach(async () => {
    await Promise.all(publishers.splice(0).map((p) => p.close(2000)));
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  describe('natsConnectionOptions', function () {
    it('reconnects forever, waits on first connect, and maps auth and TLS', function () {
      const o = natsConnectionOptions({ servers: 'nats://a:4222', user: 'u', pass: 'p', tls: { caFile: '/ca.pem' } });
      assert.deepEqual(o.servers, ['nats://a:4222']);
      assert.equal(o.maxReconnectAttempts, -1);
      assert.equal(o.waitOnFirstConnect, true);
      assert.equal(o.user, 'u');
      assert.equal(o.pass, 'p');
      assert.deepEqual(o.tls, { caFile: '/ca.pem' });
      assert.equal(o.name, 'fairline');
      const seed = new TextDecoder().decode(createUser().getSeed());
      assert.equal(typeof natsConnectionOptions({ servers: 'x', nkeySeed: seed }).authenticator, 'function');
      const creds = join(root, 'u.creds');
      writeFileSync(creds, '-----BEGIN NATS USER JWT-----\nx\n------END NATS USER JWT------\n');
      assert.equal(typeof natsConnectionOptions({ servers: 'x', credsFile: creds }).authenticator, 'function');
      assert.equal(natsConnectionOptions({ servers: ['x'], token: 't' }).token, 't');
    });

    it('rejects conflicting or unusable settings with ConfigError', function () {
      assert.throws(() => natsConnectionOptions({ servers: 'x', user: 'u', token: 't' }), ConfigError);
      assert.throws(() => natsConnectionOptions({ servers: 'x', pass: 'p' }), ConfigError);
      assert.throws(() => natsConnectionOptions({ servers: [] }), ConfigError);
      assert.throws(() => natsConnectionOptions({ servers: 'x', nkeySeed: 'not-a-seed' }), ConfigError);
      assert.throws(() => natsConnectionOptions({ servers: 'x', credsFile: join(root, 'missing.creds') }), /cannot read credsFile/);
      assert.throws(() => natsConnectionOptions({ servers: 'x', tls: { certFile: 'c.pem' } }), ConfigError);
    });
  });

  describe('with a JetStream server', function () {
    let srv: NatsServerHandle;
    let nc: NatsConnection;
    before(async () => {
      srv = await startNatsServer();
      nc = await connect({ servers: srv.url });
    });
    after(async () => {
      await nc?.close();
      await srv?.stop();
    });

    it('publishes to <line>.<camera>.verdict, and to .reject only for rejects', async function () {
      const { got, ready } = await collect(nc, 'L1');
      await ready;
      const counts = { published: 0, spooled: 0 };
      const pub = await publisher({
        line: 'L1',
        nats: { servers: srv.url },
        spool: { dir: spoolDir() },
        hooks: { onPublished: () => counts.published++, onSpooled: () => counts.spooled++ },
      });
      await pub.ready(5000);
      const sent = [verdict('cam0', 0), verdict('cam0', 1, 'reject'), verdict('cam1', 0, 'error'), verdict('cam1', 1, 'reject'), verdict('cam0', 2)];
      for (const v of sent) pub.publish(v);
      await pub.flush(5000);
      await waitFor(() => got.length === 7, 3000, '7 messages');
      assert.deepEqual(
        got.filter((m) => m.subject.endsWith('.verdict')).map((m) => m.data),
        sent,
      );
      assert.deepEqual(got.filter((m) => m.subject.endsWith('.verdict')).map((m) => m.subject), sent.map((v) => verdictSubject('L1', v.camera)));
      const rejects = got.filter((m) => m.subject.endsWith('.reject'));
      assert.deepEqual(rejects.map((m) => m.subject), [rejectSubject('L1', 'cam0'), rejectSubject('L1', 'cam1')]);
      assert.deepEqual(rejects.map((m) => m.data.seq), [1, 1]);
      assert.deepEqual(counts, { published: 5, spooled: 0 });
      assert.deepEqual(pub.stats(), { published: 5, spooled: 0, dropped: 0, pending: 0, connected: true });
    });

    it('a full memory queue overflows to the spool without duplicates or reordering (core NATS)', async function () {
      const { got, ready } = await collect(nc, 'L8');
      await ready;
      const pub = await publisher({ line: 'L8', nats: { servers: srv.url }, spool: { dir: spoolDir() }, maxQueue: 5, batchSize: 4 });
      await pub.ready(5000);
      // Synchronous burst: the first batch is in flight while the queue overflows, so the batch
      // is copied to the spool too and must not be sent a second time from there.
      for (let i = 0; i < 50; i++) pub.publish(verdict('cam0', i));
      assert.ok(pub.stats().spooled >= 40, `spooled ${pub.stats().spooled}`);
      await pub.flush(5000);
      await sleep(100);
      assert.deepEqual(got.map((m) => m.data.seq), [...Array(50).keys()]);
      assert.equal(pub.stats().published, 50);
    });

    it('rejects malformed verdicts and publishing after close', async function () {
      const pub = await publisher({ line: 'L1', nats: { servers: srv.url }, spool: { dir: spoolDir() } });
      assert.throws(() => pub.publish({ camera: 'a.b', seq: 1, verdict: 'pass', score: 0 }), BadInputError);
      assert.throws(() => pub.publish({ camera: 'cam0', seq: -1, verdict: 'pass', score: 0 }), BadInputError);
      assert.throws(() => pub.publish({ camera: 'cam0', seq: 1, verdict: 'maybe' as 'pass', score: 0 }), BadInputError);
      await pub.close();
      assert.throws(() => pub.publish(verdict('cam0', 1)), (e: unknown) => e instanceof SinkError && e.code === 'closed');
      await assert.rejects(VerdictPublisher.create({ line: 'a.b', nats: { servers: srv.url }, spool: { dir: spoolDir() } }), ConfigError);
    });

    it('JetStream: the same camera:seq twice is stored once', async function () {
      const pub = await publisher({ line: 'L2', nats: { servers: srv.url }, spool: { dir: spoolDir() }, jetstream: { duplicateWindowMs: 60000 } });
      await pub.ready(5000);
      pub.publish(verdict('cam0', 1));
      pub.publish(verdict('cam0', 1));
      pub.publish(verdict('cam0', 2, 'reject'));
      pub.publish(verdict('cam0', 2, 'reject'));
      // a real verdict arriving after a fail-safe one for the same frame is kept
      pub.publish({ ...verdict('cam0', 2), late: true });
      await pub.flush(5000);
      const msgs = await streamMessages(srv.url, 'FAIRLINE_L2');
      assert.deepEqual(
        msgs.map((m) => `${m.subject}#${m.data.seq}`),
        ['fairline.L2.cam0.verdict#1', 'fairline.L2.cam0.verdict#2', 'fairline.L2.cam0.reject#2', 'fairline.L2.cam0.verdict#2'],
      );
      assert.equal(msgs[3]!.data.late, true);
      assert.equal(verdictMsgId({ camera: 'c', seq: 3, verdict: 'pass', late: true }), 'c:3:late');
      const jsm = await jetstreamManager(nc);
      const info = await jsm.streams.info('FAIRLINE_L2');
      assert.deepEqual(info.config.subjects, ['fairline.L2.>']);
      assert.equal(info.config.duplicate_window, 60000 * 1e6);
    });

    for (const signal of ['SIGTERM', 'SIGKILL'] as const)
    it(`a server restart (${signal}) in the middle of 300 verdicts: all arrive exactly once, in order`, async function () {
      const events: string[] = [];
      const pub = await publisher({
        line: `L3${signal}`,
        nats: { servers: srv.url, reconnectTimeWaitMs: 100 },
        spool: { dir: spoolDir() },
        jetstream: true,
        ackTimeoutMs: 1000,
        retryDelayMs: 100,
        hooks: { onStatus: (s) => events.push(s) },
      });
      await pub.ready(5000);
      let restarted: Promise<void> | undefined;
      for (let i = 0; i < 300; i++) {
        pub.publish(verdict(`cam${i % 3}`, i, i % 7 === 0 ? 'reject' : 'pass'));
        if (i === 100) restarted = srv.restart(signal);
        if (i % 10 === 9) await sleep(30); // a line produces verdicts over time
      }
      await restarted;
      await pub.flush(30000);
      const st = pub.stats();
      assert.ok(st.spooled > 0, 'the outage went through the spool');
      assert.equal(st.published, 300);
      assert.equal(st.pending, 0);
      assert.ok(events.includes('disconnected') && events.lastIndexOf('connected') > events.indexOf('disconnected'), events.join(','));
      const msgs = await streamMessages(srv.url, `FAIRLINE_L3${signal}`);
      const verdicts = msgs.filter((m) => m.subject.endsWith('.verdict')).map((m) => m.data.seq);
      assert.equal(verdicts.length, 300, `got ${verdicts.length} verdicts`);
      assert.deepEqual(verdicts, [...Array(300).keys()], 'exactly once, in order');
      const rejects = msgs.filter((m) => m.subject.endsWith('.reject')).map((m) => m.data.seq);
      assert.deepEqual(rejects, [...Array(300).keys()].filter((i) => i % 7 === 0));
      console.log(`      restart (${signal}): ${st.spooled} of 300 verdicts went through the spool`);
    });
  });

  describe('without a server', function () {
    it('spools while unreachable, bounded, dropping and counting the oldest', async function () {
      const port = await freePort();
      let dropped = 0;
      const pub = await publisher({
        line: 'L4',
        nats: { servers: `nats://127.0.0.1:${port}`, reconnectTimeWaitMs: 100 },
        spool: { dir: spoolDir(), maxBytes: 2048, segmentBytes: 512 },
        hooks: { onDropped: (n, why) => { assert.equal(why, 'spool_full'); dropped += n; } },
      });
      for (let i = 0; i < 100; i++) pub.publish(verdict('cam0', i));
      const st = pub.stats();
      assert.equal(st.spooled, 100);
      assert.equal(st.published, 0);
      assert.ok(dropped > 0 && dropped === st.dropped, `dropped ${dropped}`);
      assert.equal(st.pending, 100 - dropped);
      const err = await pub.ready(400).then(() => undefined, (e: unknown) => e);
      assert.ok(err instanceof SinkError && err.code === 'nats_connect_timeout', String(err));
      assert.match(err.message, /refused/);
    });

    it('a new instance replays the spool a previous one left, before its own verdicts, once the server appears', async function () {
      const port = await freePort();
      const dir = spoolDir();
      const opts = (): VerdictPublisherOptions<Verdict> => ({
        line: 'L5',
        nats: { servers: `nats://127.0.0.1:${port}`, reconnectTimeWaitMs: 100 },
        spool: { dir },
        jetstream: true,
      });
      const first = await VerdictPublisher.create(opts());
      for (let i = 0; i < 20; i++) first.publish(verdict('cam0', i, i === 5 ? 'reject' : 'pass'));
      await first.close(500);
      const second = await publisher(opts());
      assert.equal(second.stats().pending, 20, 'the old spool is picked up');
      for (let i = 20; i < 30; i++) second.publish(verdict('cam0', i));
      const srv = await startNatsServer({ port });
      try {
        await second.ready(10000);
        await second.flush(10000);
        assert.equal(second.stats().published, 30);
        const msgs = await streamMessages(srv.url, 'FAIRLINE_L5');
        assert.deepEqual(msgs.filter((m) => m.subject.endsWith('.verdict')).map((m) => m.data.seq), [...Array(30).keys()]);
        assert.deepEqual(msgs.filter((m) => m.subject.endsWith('.reject')).map((m) => m.data.seq), [5]);
        await second.close();
      } finally {
        await srv.stop();
      }
    });
  });

  describe('authentication and TLS', function () {
    it('connects with user/password; a wrong password is a clear nats_auth error', async function () {
      const srv = await startNatsServer({ jetstream: false, user: 'fair', pass: 's3cret' });
      try {
        const sub = await connect({ servers: srv.url, user: 'fair', pass: 's3cret' });
        const { got, ready } = await collect(sub, 'L6');
        await ready;
        const pub = await publisher({ line: 'L6', nats: { servers: srv.url, user: 'fair', pass: 's3cret' }, spool: { dir: spoolDir() } });
        await pub.ready(5000);
        pub.publish(verdict('cam0', 1, 'reject'));
        await pub.flush(5000);
        await waitFor(() => got.length === 2, 3000, 'verdict and reject');
        await sub.close();

        const errors: SinkError[] = [];
        const bad = await publisher({
          line: 'L6',
          nats: { servers: srv.url, user: 'fair', pass: 'wrong', reconnectTimeWaitMs: 100 },
          spool: { dir: spoolDir() },
          hooks: { onError: (e) => errors.push(e) },
        });
        const err = await bad.ready(5000).then(() => undefined, (e: unknown) => e);
        assert.ok(err instanceof SinkError, String(err));
        assert.equal(err.code, 'nats_auth');
        assert.match(err.message, /authorization violation/i);
        assert.ok(errors.some((e) => e.code === 'nats_auth'));
        bad.publish(verdict('cam0', 2));
        assert.equal(bad.stats().spooled, 1, 'verdicts are kept while the credentials are wrong');
      } finally {
        await Promise.all(publishers.splice(0).map((p) => p.close(1000)));
        await srv.stop();
      }
    });

    it('connects with TLS (certificates made in setup); an unknown CA is a clear nats_tls error', async function () {
      const certDir = join(root, 'certs');
      rmSync(certDir, { recursive: true, force: true });
      mkdirSync(certDir);
      const certs = generateTlsCerts(certDir);
      const srv = await startNatsServer({ tls: certs });
      try {
        const sub = await connect({ servers: srv.url, tls: { caFile: certs.ca } });
        const { got, ready } = await collect(sub, 'L7');
        await ready;
        const pub = await publisher({ line: 'L7', nats: { servers: srv.url, tls: { caFile: certs.ca } }, spool: { dir: spoolDir() }, jetstream: true });
        await pub.ready(5000);
        for (let i = 0; i < 3; i++) pub.publish(verdict('cam0', i));
        await pub.flush(5000);
        await waitFor(() => got.length === 3, 3000, '3 verdicts over TLS');
        assert.deepEqual(got.map((m) => m.data.seq), [0, 1, 2]);
        await sub.close();

        const noCa = await publisher({ line: 'L7', nats: { servers: srv.url, reconnectTimeWaitMs: 100 }, spool: { dir: spoolDir() } });
        const err = await noCa.ready(5000).then(() => undefined, (e: unknown) => e);
        assert.ok(err instanceof SinkError, String(err));
        assert.equal(err.code, 'nats_tls');
        assert.match(err.message, /certificate/);
      } finally {
        await Promise.all(publishers.splice(0).map((p) => p.close(1000)));
        await srv.stop();
      }
    });
  });
});
