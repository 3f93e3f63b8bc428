/**
 * Access at the station level: NATS user/password (right, wrong, and from the environment) and TLS
 * configured through the config file's `nats` section; the metrics endpoint bound to loopback
 * unless the config says otherwise; model artefacts that try prototype tricks or code strings.
 *
 * (test/nats.test.ts covers the publisher's own auth/TLS errors and test/artefact.test.ts the
 * `../` weights file name; these go through config -> station.)
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { parseConfig, type FairlineConfig } from '../../src/config.js';
import { ModelError } from '../../src/errors.js';
import { loadModel, type ModelManifest } from '../../src/io/artefact.js';
import { useBackend } from '../../src/model/tfjs/backend.js';
import { loadInspectModel } from '../../src/runtime/model.js';
import { startStation, type StationSummary } from '../../src/runtime/station.js';
import type { Verdict } from '../../src/verdict.js';
import { generateTlsCerts, startNatsServer } from '../fixtures/nats-server.js';
import { makeModel, tempDir, TEST_DIR } from '../runtime/fixture.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const GOOD = join(TEST_DIR, 'good'); // 6 images

/** Listening TCP sockets on `port` as `ip:port` (from /proc/net/tcp and tcp6). */
function listeners(port: number): string[] {
  const out: string[] = [];
  for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
    if (!existsSync(f)) continue;
    for (const line of readFileSync(f, 'utf8').split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length < 4 || cols[3] !== '0A') continue; // 0A = LISTEN
      const [hexIp, hexPort] = cols[1]!.split(':');
      if (parseInt(hexPort!, 16) !== port) continue;
      // IPv4 is little-endian hex; only IPv4 and the IPv6 any-address matter here.
      const ip = hexIp!.length === 8 ? hexIp!.match(/../g)!.reverse().map((h) => parseInt(h, 16)).join('.') : /^0+$/.test(hexIp!) ? '::' : hexIp!;
      out.push(`${ip}:${port}`);
    }
  }
  return out;
}

describe('faults: access (NATS auth and TLS through the config, metrics binding, model artefacts)', function () {
  this.timeout(60000);
  let dir: string;
  let modelDir: string;
  const config = (over: Record<string, unknown>): FairlineConfig =>
    parseConfig(
      {
        line: 'LA',
        station: 'S1',
        model: modelDir,
        backend: 'cpu',
        engine: 'tfjs',
        cameras: [{ id: 'cam', source: { type: 'images', dir: GOOD } }],
        batch: { maxSize: 6, maxWaitMs: 10 },
        metrics: { enabled: false },
        spool: { dir: join(dir, `spool-${Math.random().toString(36).slice(2)}`) },
        ...over,
      },
      { baseDir: dir },
    );

  /** Run a station over the 6 good images and collect what a subscriber sees. */
  async function runStation(cfg: FairlineConfig, sub: NatsConnection | undefined): Promise<{ summary: StationSummary; got: Verdict[]; logs: string[] }> {
    const got: Verdict[] = [];
    if (sub) {
      sub.subscribe('fairline.LA.cam.verdict', { callback: (_e, m) => void got.push(m.json<Verdict>()) });
      await sub.flush();
    }
    const logs: string[] = [];
    const station = await startStation({ config: cfg, log: (m) => logs.push(m) });
    const summary = await station.done;
    if (sub) {
      await sub.flush();
      await sleep(50);
    }
    return { summary, got, logs };
  }

  before(async () => {
    await useBackend('cpu');
    dir = tempDir('faults-access');
    modelDir = join(dir, 'model');
    makeModel(modelDir, { threshold: 1 });
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('user/password from the config publishes; a wrong password is a clear error, no crash, verdicts kept; the env overrides pass', async () => {
    const srv = await startNatsServer({ jetstream: false, user: 'line', pass: 's3cret' });
    try {
      const sub = await connect({ servers: srv.url, user: 'line', pass: 's3cret' });
      const ok = await runStation(config({ nats: { servers: [srv.url], user: 'line', pass: 's3cret' } }), sub);
      assert.equal(ok.summary.cameras.cam!.frames, 6);
      assert.deepEqual(ok.got.map((v) => v.seq).sort(), [0, 1, 2, 3, 4, 5]);
      assert.equal(ok.summary.published?.published, 6);

      const bad = await runStation(config({ nats: { servers: [srv.url], user: 'line', pass: 'wrong' } }), undefined);
      assert.equal(bad.summary.failed, false, 'a NATS problem does not fail the cameras');
      assert.equal(bad.summary.cameras.cam!.frames, 6);
      assert.equal(bad.summary.published?.published, 0);
      assert.equal(bad.summary.published?.pending, 6, 'all 6 verdicts wait in the spool for the next start');
      assert.ok(bad.logs.some((l) => /nats: nats_auth: nats: .*authorization violation/i.test(l)), bad.logs.join('\n'));
      assert.ok(bad.logs.some((l) => /6 verdict\(s\) left in the spool/.test(l)));

      // The secret from the environment wins over the (wrong) one in the file.
      process.env.FAIRLINE_NATS_PASSWORD = 's3cret';
      try {
        const env = await runStation(config({ nats: { servers: [srv.url], user: 'line', pass: 'placeholder' } }), sub);
        assert.equal(env.summary.published?.published, 6);
        assert.equal(env.got.length, 6);
      } finally {
        delete process.env.FAIRLINE_NATS_PASSWORD;
      }
      await sub.close();
    } finally {
      await srv.stop();
    }
  });

  it('TLS (CA + client certificate from the config) publishes; without the CA the error says certificate', async () => {
    const certDir = join(dir, 'certs');
    mkdirSync(certDir, { recursive: true });
    const certs = generateTlsCerts(certDir);
    const srv = await startNatsServer({ jetstream: true, tls: certs });
    try {
      const sub = await connect({ servers: srv.url, tls: { caFile: certs.ca } });
      const ok = await runStation(
        config({ nats: { servers: [srv.url], tls: { ca: certs.ca, cert: certs.clientCert, key: certs.clientKey }, jetstream: { enabled: true, stream: 'ACCESS' } } }),
        sub,
      );
      assert.equal(ok.summary.published?.published, 6, `published ${JSON.stringify(ok.summary.published)}; log:\n${ok.logs.join('\n')}`);
      assert.equal(ok.got.length, 6, `the subscriber got ${ok.got.length} of 6`);
      await sub.close();

      const noCa = await runStation(config({ nats: { servers: [srv.url] } }), undefined);
      assert.equal(noCa.summary.published?.pending, 6);
      assert.ok(noCa.logs.some((l) => /nats: nats_tls: .*certificate/i.test(l)), noCa.logs.join('\n'));
    } finally {
      await srv.stop();
    }
  });

  it('metrics bind 127.0.0.1 unless the config names another host', async () => {
    const cfg = config({ metrics: { port: 0 } });
    assert.equal(cfg.metrics.host, '127.0.0.1');
    const sink = { kind: 'memory', publish: () => undefined, close: async () => undefined };
    const station = await startStation({ config: { ...cfg, cameras: [{ ...cfg.cameras[0]!, source: { type: 'images', dir: GOOD, pattern: '*.png', loop: true } }] }, sink });
    try {
      const port = Number(new URL(station.metricsUrl!).port);
      assert.deepEqual(listeners(port), [`127.0.0.1:${port}`], 'the socket the kernel lists');
      assert.equal((await fetch(`http://127.0.0.1:${port}/metrics`)).status, 200);
    } finally {
      await station.stop();
    }
    const open = await startStation({ config: { ...config({ metrics: { port: 0, host: '0.0.0.0' } }) }, sink });
    try {
      const port = Number(new URL(open.metricsUrl!).port);
      assert.deepEqual(listeners(port), [`0.0.0.0:${port}`], 'an explicit host is honoured');
    } finally {
      await open.stop();
    }
  });

  it('model artefacts: prototype keys are refused even with a valid checksum; strings are never evaluated', async () => {
    const variant = (name: string, edit: (text: string) => string): string => {
      const d = join(dir, name);
      makeModel(d, { threshold: 1 });
      const m = JSON.parse(edit(readFileSync(join(d, 'model.json'), 'utf8'))) as ModelManifest;
      // Re-stamp the manifest checksum: the payload must be refused for what it is, not for the checksum.
      delete m.manifestSha256;
      const digest = createHash('sha256').update(JSON.stringify(m)).digest('hex');
      writeFileSync(join(d, 'model.json'), JSON.stringify({ ...m, manifestSha256: digest }));
      return d;
    };
    const payloads: Array<[string, (t: string) => string]> = [
      ['__proto__', (t) => t.replace('"format"', '"__proto__": { "polluted": "yes" }, "format"')],
      ['constructor', (t) => t.replace('"format"', '"constructor": { "prototype": { "polluted": "yes" } }, "format"')],
      ['__proto__', (t) => t.replace('"tensors": {', '"tensors": { "__proto__": { "shape": [1], "offset": 0, "length": 1 },')],
      ['prototype', (t) => t.replace('"spec": {', '"spec": { "prototype": { "polluted": "yes" },')],
    ];
    for (const [i, [key, edit]] of payloads.entries()) {
      const d = variant(`proto${i}`, edit);
      assert.match(readFileSync(join(d, 'model.json'), 'utf8'), new RegExp(`"${key}"`), 'the payload is in the file');
      assert.throws(() => loadModel(d), (e: unknown) => e instanceof ModelError && e.code === 'bad_manifest' && /forbidden key "(__proto__|constructor|prototype)" in the manifest/.test(e.message));
      await assert.rejects(loadInspectModel({ dir: d }), (e: unknown) => e instanceof ModelError && e.code === 'bad_manifest');
    }
    assert.equal(({} as Record<string, unknown>).polluted, undefined, 'Object.prototype untouched');

    // A code string where a name is expected is just a bad name.
    const marker = join(dir, 'pwned');
    const code = variant('code', (t) => {
      const m = JSON.parse(t) as ModelManifest;
      (m.spec.filter as { kind: string }).kind = `require('fs').writeFileSync(${JSON.stringify(marker)}, 'x')`;
      return JSON.stringify(m);
    });
    await assert.rejects(loadInspectModel({ dir: code }), (e: unknown) => e instanceof ModelError && e.code === 'bad_spec' && /unknown filter kind/.test(e.message));
    assert.equal(existsSync(marker), false);
  });
});
