import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigValidationError, expandEnv, loadConfig, parseBytes, parseConfig } from '../src/config.js';
import { ConfigError } from '../src/errors.js';

describe('config', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'fairline-config-'));
    mkdirSync(join(dir, 'models', 'hazelnut'), { recursive: true });
    mkdirSync(join(dir, 'images'));
    mkdirSync(join(dir, 'secrets'));
    for (const f of ['secrets/station.creds', 'secrets/ca.pem', 'secrets/cert.pem', 'secrets/key.pem', 'clip.mkv']) writeFileSync(join(dir, f), 'x');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** A minimal valid config as a plain object. */
  const base = () => ({
    line: 'L1',
    station: 'S3',
    model: 'models/hazelnut',
    cameras: [
      { id: 'cam0', source: { type: 'rtsp', url: 'rtsp://10.0.0.5/stream' } },
      { id: 'cam1', source: { type: 'gstreamer', pipeline: 'videotestsrc ! appsink name=sink' } },
    ],
  });

  it('loads a full YAML file, fills defaults and resolves paths relative to the file', async () => {
    const file = join(dir, 'station.yaml');
    writeFileSync(file, `
line: L1
station: S3
model: models/hazelnut
engine: onnx
cameras:
  - id: cam0
    source: { type: rtsp, url: "rtsp://10.0.0.5/stream", latencyMs: 50 }
  - id: replay0
    source: { type: images, dir: images }
  - id: clip
    source: { type: file, path: clip.mkv }
    mode: live
    threshold: 0.7
  - id: synth
    source: { type: synthetic, width: 64, height: 64, count: 10 }
batch: { maxSize: 4 }
deadlineMs: 250
failSafe: pass
nats:
  servers: [nats://127.0.0.1:4222, tls://nats.plant:4443]
  credsFile: secrets/station.creds
  tls: { ca: secrets/ca.pem, cert: secrets/cert.pem, key: secrets/key.pem }
  jetstream: { stream: VERDICTS }
metrics: { port: 9100 }
spool: { dir: spool, maxBytes: 64MiB }
`);
    const cfg = await loadConfig(file);
    assert.equal(cfg.model, join(dir, 'models', 'hazelnut'));
    assert.equal(cfg.backend, 'auto');
    assert.equal(cfg.engine, 'onnx');
    assert.deepEqual(cfg.batch, { maxSize: 4, maxWaitMs: 20 });
    assert.equal(cfg.deadlineMs, 250);
    assert.equal(cfg.failSafe, 'pass');
    assert.equal(cfg.queueLimit, 1);
    assert.equal(cfg.threshold, undefined);
    assert.deepEqual(cfg.cameras.map((c) => [c.id, c.mode]), [['cam0', 'live'], ['replay0', 'replay'], ['clip', 'live'], ['synth', 'live']]);
    assert.deepEqual(cfg.cameras[0]!.source, { type: 'rtsp', url: 'rtsp://10.0.0.5/stream', latencyMs: 50, transport: 'tcp' });
    assert.deepEqual(cfg.cameras[1]!.source, { type: 'images', dir: join(dir, 'images'), pattern: '*.{png,jpg,jpeg,bmp}', loop: false });
    assert.equal(cfg.cameras[2]!.threshold, 0.7);
    assert.deepEqual(cfg.cameras[3]!.source, { type: 'synthetic', width: 64, height: 64, fps: 10, count: 10, defectRate: 0.1, seed: 1 });
    assert.deepEqual(cfg.nats, {
      servers: ['nats://127.0.0.1:4222', 'tls://nats.plant:4443'],
      credsFile: join(dir, 'secrets', 'station.creds'),
      tls: { ca: join(dir, 'secrets', 'ca.pem'), cert: join(dir, 'secrets', 'cert.pem'), key: join(dir, 'secrets', 'key.pem') },
      jetstream: { enabled: true, stream: 'VERDICTS' },
    });
    assert.deepEqual(cfg.metrics, { enabled: true, host: '127.0.0.1', port: 9100 });
    assert.deepEqual(cfg.spool, { dir: join(dir, 'spool'), maxBytes: 64 * 2 ** 20 });
  });

  it('fills every default for a minimal config (JSON works too)', async () => {
    const file = join(dir, 'min.json');
    writeFileSync(file, JSON.stringify(base()));
    const cfg = await loadConfig(file);
    assert.deepEqual(cfg.nats, { servers: ['nats://127.0.0.1:4222'], jetstream: { enabled: false, stream: 'FAIRLINE' } });
    assert.deepEqual(cfg.metrics, { enabled: true, host: '127.0.0.1', port: 9464 });
    assert.deepEqual(cfg.spool, { dir: join(dir, 'spool'), maxBytes: 256 * 2 ** 20 });
    assert.deepEqual([cfg.deadlineMs, cfg.failSafe, cfg.engine], [500, 'reject', 'auto']);
  });

  // [what, mutation of the base config, the exact problem expected]
  type Mut = (c: Record<string, any>) => void;
  const bad: [string, Mut, string][] = [
    ['missing line', (c) => delete c.line, 'line: required string'],
    ['empty station', (c) => (c.station = ' '), 'station: must not be empty'],
    ['line with a dot', (c) => (c.line = 'L1.a'), "line: 'L1.a' must contain only letters, digits, '_' and '-' (it is a NATS subject token)"],
    ['model not found', (c) => (c.model = 'models/nope'), `model: not found: ${'<dir>'}/models/nope`],
    ['expect.size not an integer', (c) => (c.expect = { size: 2.5 }), 'expect.size: expected integer, got 2.5'],
    ['unknown key in expect', (c) => (c.expect = { chans: 1 }), 'expect.chans: unknown key (allowed: size, channels)'],
    ['unknown top-level key', (c) => (c.treshold = 0.5), 'treshold: unknown key (allowed: line, station, model, backend, engine, cameras, batch, queueLimit, deadlineMs, failSafe, threshold, expect, nats, metrics, spool, ui, record, guard)'],
    ['bad engine', (c) => (c.engine = 'trt'), "engine: expected one of 'auto' | 'tfjs' | 'onnx', got 'trt'"],
    ['bad backend type', (c) => (c.backend = 3), "backend: expected one of 'auto' | 'tensorflow' | 'wasm' | 'cpu', got 3"],
    ['no cameras', (c) => (c.cameras = []), 'cameras: must list at least one camera'],
    ['cameras not a list', (c) => (c.cameras = { id: 'cam0' }), 'cameras: expected list, got object'],
    ['gstreamer without pipeline', (c) => delete c.cameras[1].source.pipeline, 'cameras[1].source.pipeline: required string'],
    ['unknown source type', (c) => (c.cameras[0].source.type = 'usb'), "cameras[0].source.type: expected one of 'gstreamer' | 'v4l2' | 'rtsp' | 'file' | 'images' | 'synthetic', got 'usb'"],
    ['key of another source type', (c) => (c.cameras[0].source.pipeline = 'x'), 'cameras[0].source.pipeline: unknown key (allowed: type, url, latencyMs, transport)'],
    ['rtsp url not rtsp', (c) => (c.cameras[0].source.url = 'http://cam/stream'), 'cameras[0].source.url: must be an rtsp:// or rtsps:// URL'],
    ['duplicate camera id', (c) => (c.cameras[1].id = 'cam0'), "cameras[1].id: duplicate camera id 'cam0' (also cameras[0])"],
    ['camera id with a space', (c) => (c.cameras[0].id = 'cam 0'), "cameras[0].id: 'cam 0' must contain only letters, digits, '_' and '-' (it is a NATS subject token)"],
    ['bad camera mode', (c) => (c.cameras[0].mode = 'fast'), "cameras[0].mode: expected one of 'live' | 'replay', got 'fast'"],
    ['v4l2 device not /dev', (c) => (c.cameras[0].source = { type: 'v4l2', device: 'video0' }), "cameras[0].source.device: must be a device path like '/dev/video0'"],
    ['file source missing file', (c) => (c.cameras[0].source = { type: 'file', path: 'gone.mkv' }), `cameras[0].source.path: not found: ${'<dir>'}/gone.mkv`],
    ['images source is a file', (c) => (c.cameras[0].source = { type: 'images', dir: 'clip.mkv' }), `cameras[0].source.dir: not a directory: ${'<dir>'}/clip.mkv`],
    ['synthetic width 0', (c) => (c.cameras[0].source = { type: 'synthetic', width: 0 }), 'cameras[0].source.width: must be >= 1, got 0'],
    ['batch size fractional', (c) => (c.batch = { maxSize: 2.5 }), 'batch.maxSize: expected integer, got 2.5'],
    ['batch wait as string', (c) => (c.batch = { maxWaitMs: '20ms' }), "batch.maxWaitMs: expected number, got '20ms'"],
    ['wait longer than deadline', (c) => Object.assign(c, { batch: { maxWaitMs: 600 }, deadlineMs: 500 }), 'batch.maxWaitMs: (600 ms) must be less than deadlineMs (500 ms), or every partial batch would miss its deadline'],
    ['negative deadline', (c) => (c.deadlineMs = -1), 'deadlineMs: must be > 0, got -1'],
    ['failSafe typo', (c) => (c.failSafe = 'rejct'), "failSafe: expected one of 'reject' | 'pass', got 'rejct'"],
    ['threshold NaN-ish', (c) => (c.threshold = 'high'), "threshold: expected number, got 'high'"],
    ['user without pass', (c) => (c.nats = { user: 'fairline' }), 'nats.pass: required together with nats.user'],
    ['two auth methods', (c) => (c.nats = { token: 't0k', credsFile: 'secrets/station.creds' }), 'nats: choose one authentication method, got token + credsFile'],
    ['bad nats url', (c) => (c.nats = { servers: ['http://nats:4222'] }), "nats.servers[0]: 'http://nats:4222' is not a NATS server URL (nats://host:port, tls://host:port or host:port)"],
    ['empty server list', (c) => (c.nats = { servers: [] }), 'nats.servers: must list at least one server'],
    ['tls cert without key', (c) => (c.nats = { tls: { cert: 'secrets/cert.pem' } }), 'nats.tls.key: required together with nats.tls.cert'],
    ['tls ca missing', (c) => (c.nats = { tls: { ca: 'secrets/nope.pem' } }), `nats.tls.ca: not found: ${'<dir>'}/secrets/nope.pem`],
    ['bad nkey', (c) => (c.nats = { nkey: 'UABC' }), "nats.nkey: must be an NKey user seed ('SU' + 56 base32 characters)"],
    ['jetstream enabled as string', (c) => (c.nats = { jetstream: { enabled: 'yes' } }), "nats.jetstream.enabled: expected true or false, got 'yes'"],
    ['metrics port out of range', (c) => (c.metrics = { port: 70000 }), 'metrics.port: must be <= 65535, got 70000'],
    ['spool size unparsable', (c) => (c.spool = { maxBytes: 'lots' }), "spool.maxBytes: expected a positive byte count like 268435456 or '256MiB', got 'lots'"],
    ['camera not an object', (c) => (c.cameras[1] = 'cam1'), "cameras[1]: expected object, got 'cam1'"],
    ['ui listen not an address', (c) => (c.ui = { listen: 'http://0.0.0.0:8080' }), "ui.listen: 'http://0.0.0.0:8080' is not a listen address (host:port like 127.0.0.1:8080, [::1]:8080, or a port)"],
    ['ui port out of range', (c) => (c.ui = { listen: '127.0.0.1:80800' }), "ui.listen: '127.0.0.1:80800' is not a listen address (host:port like 127.0.0.1:8080, [::1]:8080, or a port)"],
    ['ui token too short', (c) => (c.ui = { token: 'changeme' }), "ui.token: must be at least 16 characters (e.g. the output of 'openssl rand -hex 16'), got 8"],
    ['unknown key in ui', (c) => (c.ui = { port: 8080 }), 'ui.port: unknown key (allowed: listen, token)'],
    ['record passEvery negative', (c) => (c.record = { passEvery: -1 }), 'record.passEvery: must be >= 0, got -1'],
    ['record keepDays zero', (c) => (c.record = { keepDays: 0 }), 'record.keepDays: must be > 0, got 0'],
    ['record maxBytes too small', (c) => (c.record = { maxBytes: '64KiB' }), 'record.maxBytes: must be at least 1048576 bytes (1MiB), got 65536'],
    ['record maxBytes unparsable', (c) => (c.record = { maxBytes: 'big' }), "record.maxBytes: expected a positive byte count like 268435456 or '256MiB', got 'big'"],
    ['record captures nothing', (c) => (c.record = { rejects: false }), 'record: captures nothing: set rejects: true or passEvery > 0 (or remove the section)'],
    ['record rejects as string', (c) => (c.record = { rejects: 'yes' }), "record.rejects: expected true or false, got 'yes'"],
  ];
  for (const [what, mutate, expected] of bad) {
    it(`rejects: ${what}`, () => {
      const cfg = base() as Record<string, any>;
      mutate(cfg);
      const want = expected.replaceAll('<dir>', dir);
      assert.throws(
        () => parseConfig(cfg, { baseDir: dir }),
        (e: unknown) => {
          assert.ok(e instanceof ConfigValidationError && e instanceof ConfigError, `not a ConfigValidationError: ${String(e)}`);
          assert.equal(e.code, 'bad_config');
          assert.deepEqual(e.problems, [want]);
          assert.ok(e.message.includes(`  - ${want}`));
          return true;
        },
      );
    });
  }

  it('reads ui (listen, token from the environment) and record, with defaults; neither is on unless configured', async () => {
    assert.equal(parseConfig(base(), { baseDir: dir }).ui, undefined);
    assert.equal(parseConfig(base(), { baseDir: dir }).record, undefined);
    const d = parseConfig({ ...base(), ui: {}, record: {} }, { baseDir: dir });
    assert.deepEqual(d.ui, { listen: { host: '127.0.0.1', port: 8080 } });
    assert.deepEqual(d.record, { dir: join(dir, 'captures'), rejects: true, passEvery: 0, keepDays: 7, maxBytes: 2 ** 30 });
    for (const [listen, host, port] of [['0.0.0.0:9090', '0.0.0.0', 9090], ['[::1]:8081', '::1', 8081], ['localhost:0', 'localhost', 0], ['8082', '127.0.0.1', 8082], [8083, '127.0.0.1', 8083]] as const) {
      assert.deepEqual(parseConfig({ ...base(), ui: { listen } }, { baseDir: dir }).ui!.listen, { host, port }, String(listen));
    }
    const file = join(dir, 'ui.yaml');
    writeFileSync(file, `line: L1\nstation: S3\nmodel: models/hazelnut\ncameras: [{ id: c, source: { type: synthetic } }]\nui: { listen: 127.0.0.1:8088, token: "\${UI_TOKEN_TEST}" }\nrecord: { dir: caps, passEvery: 50, keepDays: 0.5, maxBytes: 2GiB }\n`);
    process.env.UI_TOKEN_TEST = '0123456789abcdef0123';
    try {
      const cfg = await loadConfig(file);
      assert.deepEqual(cfg.ui, { listen: { host: '127.0.0.1', port: 8088 }, token: '0123456789abcdef0123' });
      assert.deepEqual(cfg.record, { dir: join(dir, 'caps'), rejects: true, passEvery: 50, keepDays: 0.5, maxBytes: 2 * 2 ** 30 });
    } finally {
      delete process.env.UI_TOKEN_TEST;
    }
    await assert.rejects(loadConfig(file), (e: unknown) => e instanceof ConfigError && /ui\.token: environment variable UI_TOKEN_TEST is not set/.test(e.message));
  });

  it('reports all problems of a config at once', () => {
    const cfg = { ...base(), engine: 'trt', cameras: [{ id: 'a.b', source: { type: 'gstreamer' } }], extra: 1 };
    assert.throws(
      () => parseConfig(cfg, { baseDir: dir, source: 'station.yaml' }),
      (e: unknown) =>
        e instanceof ConfigValidationError &&
        e.problems.length === 4 &&
        /^invalid config station\.yaml: 4 problems\n/.test(e.message) &&
        ['extra: unknown key', "engine: expected one of", "cameras[0].id: 'a.b'", 'cameras[0].source.pipeline: required string'].every((p) => e.problems.some((x) => x.startsWith(p))),
    );
  });

  it('gives clear errors for unreadable, unparsable and duplicate-key files', async () => {
    await assert.rejects(loadConfig(join(dir, 'absent.yaml')), (e: unknown) => e instanceof ConfigError && /cannot read config .*absent\.yaml/.test(e.message));
    writeFileSync(join(dir, 'broken.yaml'), 'line: L1\ncameras: [\n');
    await assert.rejects(loadConfig(join(dir, 'broken.yaml')), (e: unknown) => e instanceof ConfigError && /cannot parse config .*broken\.yaml.*line \d+/s.test(e.message));
    writeFileSync(join(dir, 'dup.yaml'), 'line: L1\nline: L2\n');
    await assert.rejects(loadConfig(join(dir, 'dup.yaml')), (e: unknown) => e instanceof ConfigError && /unique/i.test(e.message));
    writeFileSync(join(dir, 'list.yaml'), '- a\n- b\n');
    await assert.rejects(loadConfig(join(dir, 'list.yaml')), (e: unknown) => e instanceof ConfigValidationError && e.problems[0] === '<root>: expected object, got array');
  });

  it('can skip file checks (e.g. to validate a config for another machine)', () => {
    const cfg = { ...base(), model: '/opt/fairline/models/x' };
    assert.equal(parseConfig(cfg, { baseDir: dir, checkFiles: false }).model, '/opt/fairline/models/x');
  });

  it('parses byte sizes', () => {
    assert.equal(parseBytes('256MiB'), 256 * 2 ** 20);
    assert.equal(parseBytes('1.5 GB'), 1.5e9);
    assert.equal(parseBytes(1024), 1024);
    assert.equal(parseBytes('-1'), undefined);
    assert.equal(parseBytes(0), undefined);
  });
});

describe('config environment expansion', () => {
  it('expands ${VAR} from the environment, keeps $${VAR} literal and names unset variables', () => {
    const env = { PW: 's3cret' };
    assert.deepEqual(expandEnv({ nats: { user: 'u', pass: '${PW}' }, list: ['a-${PW}', 3] }, '', env), { nats: { user: 'u', pass: 's3cret' }, list: ['a-s3cret', 3] });
    assert.equal(expandEnv('$${PW}', 'x', env), '${PW}');
    assert.throws(() => expandEnv({ nats: { pass: '${NOPE}' } }, '', env), (e: unknown) => e instanceof ConfigError && /nats\.pass: environment variable NOPE is not set/.test(e.message));
  });
});
