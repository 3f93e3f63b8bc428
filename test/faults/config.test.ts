/**
 * Bad configuration and bad model artefacts, systematically: 100+ broken configs (each must be
 * refused with a message naming the offending key and saying what is wrong), unreadable config
 * files, and corrupt or inconsistent models, which `fairline inspect` must refuse with a clear
 * message and exit code 2 before any camera starts.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync, cpSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '../../src/errors.js';
import { ConfigValidationError, loadConfig, parseConfig } from '../../src/config.js';
import { saveModel, type ModelManifest } from '../../src/io/artefact.js';
import { defaultSpec } from '../../src/model/types.js';
import { createUNet } from '../../src/model/tfjs/unet.js';
import { unetToTorch } from '../../src/model/weights.js';
import { runFairline } from '../helpers.js';
import { makeModel, tempDir, TEST_DIR } from '../runtime/fixture.js';

type Raw = Record<string, unknown>;
/** A broken config: how to break the valid base, the key the message must name, and what it must say. */
interface BadCase {
  what: string;
  mutate: (c: Raw) => void;
  key: string;
  says: RegExp;
}

const cam0 = (c: Raw): Raw => (c.cameras as Raw[])[0]!;
const section = (c: Raw, k: string): Raw => (c[k] ??= {}) as Raw;

/** Cases for one key: each bad value with what the message must say. */
function values(path: string, set: (c: Raw, v: unknown) => void, bad: Array<[unknown, RegExp]>, key = path): BadCase[] {
  return bad.map(([v, says]) => ({ what: `${path} = ${typeof v === 'number' && !Number.isFinite(v) ? String(v) : JSON.stringify(v)}`, mutate: (c) => set(c, v), key, says }));
}

const TOKEN = /must contain only letters, digits/;
const UNKNOWN = /unknown key \(allowed: /;

function cases(dirs: { file: string; missing: string; folder: string }): BadCase[] {
  const out: BadCase[] = [];
  const root = (k: string) => (c: Raw, v: unknown) => void (c[k] = v);
  // --- root scalars ---
  for (const k of ['line', 'station'])
    out.push(...values(k, root(k), [[123, /expected string, got 123/], ['', /must not be empty/], ['L 1', TOKEN], ['L.1', TOKEN], ['L1>', TOKEN], [null, /expected string, got null/], [['L1'], /expected string, got array/], [true, /expected string/]]));
  out.push(...values('model', root('model'), [[42, /expected string/], ['', /must not be empty/], [dirs.missing, /not found: /]]));
  out.push(...values('backend', root('backend'), [['gpu', /expected one of 'auto' \| 'tensorflow' \| 'wasm' \| 'cpu', got 'gpu'/], [1, /expected one of/], [true, /expected one of/]]));
  out.push(...values('engine', root('engine'), [['pytorch', /expected one of 'auto' \| 'tfjs' \| 'onnx'/], [0, /expected one of/]]));
  out.push(...values('deadlineMs', root('deadlineMs'), [[0, /must be > 0, got 0/], [-5, /must be > 0/], ['fast', /expected number, got 'fast'/], [1e9, /must be <= 600000/], [Number.NaN, /expected number, got NaN/], [Infinity, /expected number, got Infinity/]]));
  out.push(...values('failSafe', root('failSafe'), [['maybe', /expected one of 'reject' \| 'pass'/], [true, /expected one of/]]));
  out.push(...values('threshold', root('threshold'), [['high', /expected number, got 'high'/], [Number.NaN, /expected number, got NaN/], [Infinity, /expected number/], [null, /expected number, got null/]]));
  out.push(...values('queueLimit', root('queueLimit'), [[-1, /must be >= 0/], [1.5, /expected integer, got 1.5/], [1001, /must be <= 1000/], ['1', /expected integer/]]));
  for (const k of ['batchh', 'camera', 'Line', 'size', 'model_dir']) out.push({ what: `unknown root key ${k}`, mutate: (c) => void (c[k] = 1), key: k, says: UNKNOWN });
  for (const k of ['line', 'station', 'model', 'cameras'])
    out.push({ what: `missing ${k}`, mutate: (c) => void delete c[k], key: k, says: /required/ });
  out.push({ what: 'config is a list', mutate: () => undefined, key: '<root>', says: /expected object, got array/ });

  // --- cameras ---
  out.push(...values('cameras', root('cameras'), [[[], /must list at least one camera/], [{}, /expected list, got object/], ['cam0', /expected list/], [null, /expected list, got null/]]));
  out.push(...values('cameras[0]', (c, v) => void ((c.cameras as unknown[])[0] = v), [['cam0', /expected object/], [null, /expected object, got null/], [7, /expected object/]]));
  out.push(...values('cameras[0].id', (c, v) => void (cam0(c).id = v), [['cam 0', TOKEN], ['cam.0', TOKEN], ['cam*', TOKEN], [5, /expected string/], ['', /must not be empty/], [undefined, /required string/]]));
  out.push({ what: 'duplicate camera id', mutate: (c) => void (c.cameras as Raw[]).push({ ...cam0(c) }), key: 'cameras[1].id', says: /duplicate camera id 'cam0' \(also cameras\[0\]\)/ });
  out.push(...values('cameras[0].mode', (c, v) => void (cam0(c).mode = v), [['fast', /expected one of 'live' \| 'replay'/], [1, /expected one of/]]));
  out.push(...values('cameras[0].threshold', (c, v) => void (cam0(c).threshold = v), [['x', /expected number/]]));
  out.push(...values('cameras[0].deadlineMs', (c, v) => void (cam0(c).deadlineMs = v), [[0, /must be > 0/], [-1, /must be > 0/], [7e5, /must be <= 600000/]]));
  for (const k of ['source2', 'fps', 'url']) out.push({ what: `unknown camera key ${k}`, mutate: (c) => void (cam0(c)[k] = 1), key: `cameras[0].${k}`, says: UNKNOWN });

  // --- sources ---
  const src = (v: unknown) => (c: Raw) => void (cam0(c).source = v);
  out.push({ what: 'missing source', mutate: (c) => void delete cam0(c).source, key: 'cameras[0].source', says: /required object/ });
  out.push({ what: 'source is a string', mutate: src('rtsp://cam/stream'), key: 'cameras[0].source', says: /expected object, got 'rtsp:/ });
  for (const [t, says] of [[undefined, /required, one of 'gstreamer'/], ['usb', /expected one of 'gstreamer' \| 'v4l2' \| 'rtsp' \| 'file' \| 'images' \| 'synthetic', got 'usb'/], [5, /expected one of/]] as const)
    out.push({ what: `source.type ${String(t)}`, mutate: src({ type: t, dir: TEST_DIR }), key: 'cameras[0].source.type', says });
  const images = (o: Raw) => src({ type: 'images', dir: TEST_DIR, ...o });
  out.push({ what: 'images without dir', mutate: src({ type: 'images' }), key: 'cameras[0].source.dir', says: /required string/ });
  out.push({ what: 'images dir missing', mutate: images({ dir: dirs.missing }), key: 'cameras[0].source.dir', says: /not found: .*nowhere/ });
  out.push({ what: 'images dir is a file', mutate: images({ dir: dirs.file }), key: 'cameras[0].source.dir', says: /not a directory/ });
  for (const [k, v, says] of [['fps', 0, /must be > 0/], ['fps', -1, /must be > 0/], ['fps', 1001, /must be <= 1000/], ['loop', 'yes', /expected true or false, got 'yes'/], ['pattern', 5, /expected string/], ['pattern', '', /must not be empty/], ['path', 'x', UNKNOWN]] as const)
    out.push({ what: `images ${k}=${String(v)}`, mutate: images({ [k]: v }), key: `cameras[0].source.${k}`, says });
  out.push({ what: 'gstreamer without pipeline', mutate: src({ type: 'gstreamer' }), key: 'cameras[0].source.pipeline', says: /required string/ });
  out.push({ what: 'gstreamer empty pipeline', mutate: src({ type: 'gstreamer', pipeline: ' ' }), key: 'cameras[0].source.pipeline', says: /must not be empty/ });
  out.push({ what: 'gstreamer pipeline number', mutate: src({ type: 'gstreamer', pipeline: 42 }), key: 'cameras[0].source.pipeline', says: /expected string, got 42/ });
  out.push({ what: 'gstreamer with url', mutate: src({ type: 'gstreamer', pipeline: 'videotestsrc', url: 'x' }), key: 'cameras[0].source.url', says: UNKNOWN });
  const v4l2 = (o: Raw) => src({ type: 'v4l2', device: '/dev/video0', ...o });
  out.push({ what: 'v4l2 device not a path', mutate: v4l2({ device: 'video0' }), key: 'cameras[0].source.device', says: /must be a device path like '\/dev\/video0'/ });
  out.push({ what: 'v4l2 without device', mutate: src({ type: 'v4l2' }), key: 'cameras[0].source.device', says: /required string/ });
  for (const [k, v, says] of [['width', 0, /must be >= 1/], ['width', 1.5, /expected integer/], ['width', 20000, /must be <= 16384/], ['height', -1, /must be >= 1/], ['fps', 0, /must be > 0/]] as const)
    out.push({ what: `v4l2 ${k}=${v}`, mutate: v4l2({ [k]: v }), key: `cameras[0].source.${k}`, says });
  const rtsp = (o: Raw) => src({ type: 'rtsp', url: 'rtsp://10.0.0.5/stream', ...o });
  for (const url of ['http://10.0.0.5/stream', 'rtsp://a b/c', 'rtsp:/x', '10.0.0.5:554'])
    out.push({ what: `rtsp url ${url}`, mutate: rtsp({ url }), key: 'cameras[0].source.url', says: /must be an rtsp:\/\/ or rtsps:\/\/ URL/ });
  out.push({ what: 'rtsp without url', mutate: src({ type: 'rtsp' }), key: 'cameras[0].source.url', says: /required string/ });
  for (const [k, v, says] of [['latencyMs', -1, /must be >= 0/], ['latencyMs', 20000, /must be <= 10000/], ['transport', 'quic', /expected one of 'tcp' \| 'udp'/], ['uri', 'rtsp://x', UNKNOWN]] as const)
    out.push({ what: `rtsp ${k}=${v}`, mutate: rtsp({ [k]: v }), key: `cameras[0].source.${k}`, says });
  out.push({ what: 'file without path', mutate: src({ type: 'file' }), key: 'cameras[0].source.path', says: /required string/ });
  out.push({ what: 'file missing', mutate: src({ type: 'file', path: dirs.missing }), key: 'cameras[0].source.path', says: /not found/ });
  out.push({ what: 'file is a folder', mutate: src({ type: 'file', path: dirs.folder }), key: 'cameras[0].source.path', says: /not a file/ });
  out.push({ what: 'file loop string', mutate: src({ type: 'file', path: dirs.file, loop: 'true' }), key: 'cameras[0].source.loop', says: /expected true or false/ });
  const syn = (o: Raw) => src({ type: 'synthetic', ...o });
  for (const [k, v, says] of [['width', 0, /must be >= 1/], ['height', 'big', /expected integer, got 'big'/], ['fps', 0, /must be > 0/], ['fps', 5000, /must be <= 1000/], ['defectRate', 1.5, /must be <= 1/], ['defectRate', -0.1, /must be >= 0/], ['seed', 1.5, /expected integer/], ['count', 0, /must be >= 1/], ['count', -3, /must be >= 1/], ['noise', 1, UNKNOWN]] as const)
    out.push({ what: `synthetic ${k}=${String(v)}`, mutate: syn({ [k]: v }), key: `cameras[0].source.${k}`, says });

  // --- batch ---
  out.push(...values('batch', root('batch'), [['big', /expected object, got 'big'/], [[], /expected object, got array/]]));
  const batch = (k: string) => (c: Raw, v: unknown) => void (section(c, 'batch')[k] = v);
  out.push(...values('batch.maxSize', batch('maxSize'), [[0, /must be >= 1/], [257, /must be <= 256/], [2.5, /expected integer/], ['8', /expected integer, got '8'/]]));
  out.push(...values('batch.maxWaitMs', batch('maxWaitMs'), [[-1, /must be >= 0/], ['x', /expected number/], [70000, /must be <= 60000/], [600, /must be less than deadlineMs \(500 ms\)/]]));
  out.push({ what: 'batch unknown key', mutate: (c) => void (section(c, 'batch').size = 8), key: 'batch.size', says: UNKNOWN });

  // --- nats ---
  out.push({ what: 'nats is a URL string', mutate: (c) => void (c.nats = 'nats://127.0.0.1:4222'), key: 'nats', says: /expected object, got 'nats:/ });
  const nats = (o: Raw) => (c: Raw) => void (c.nats = { ...o });
  out.push({ what: 'nats.servers empty', mutate: nats({ servers: [] }), key: 'nats.servers', says: /must list at least one server/ });
  out.push({ what: 'nats.servers number', mutate: nats({ servers: 5 }), key: 'nats.servers', says: /expected string or list of strings, got 5/ });
  for (const url of ['http://127.0.0.1:4222', 'nats://', 'nats://a b:4222', 'nats://host:4222/path', 'localhost'])
    out.push({ what: `nats server ${url}`, mutate: nats({ servers: [url] }), key: 'nats.servers[0]', says: /is not a NATS server URL/ });
  out.push({ what: 'nats server not a string', mutate: nats({ servers: [4222] }), key: 'nats.servers[0]', says: /expected string, got 4222/ });
  out.push({ what: 'nats user without pass', mutate: nats({ user: 'u' }), key: 'nats.pass', says: /required together with nats.user/ });
  out.push({ what: 'nats pass without user', mutate: nats({ pass: 'p' }), key: 'nats.user', says: /required together with nats.pass/ });
  out.push({ what: 'nats user/pass + token', mutate: nats({ user: 'u', pass: 'p', token: 't' }), key: 'nats', says: /choose one authentication method, got user\/pass \+ token/ });
  out.push({ what: 'nats token + nkey', mutate: nats({ token: 't', nkey: `SU${'A'.repeat(56)}` }), key: 'nats', says: /choose one authentication method, got token \+ nkey/ });
  out.push({ what: 'nats user/pass + credsFile', mutate: nats({ user: 'u', pass: 'p', credsFile: dirs.file }), key: 'nats', says: /user\/pass \+ credsFile/ });
  out.push({ what: 'nats nkey malformed', mutate: nats({ nkey: 'SUxyz' }), key: 'nats.nkey', says: /must be an NKey user seed/ });
  out.push({ what: 'nats credsFile missing', mutate: nats({ credsFile: dirs.missing }), key: 'nats.credsFile', says: /not found/ });
  out.push({ what: 'nats credsFile is a folder', mutate: nats({ credsFile: dirs.folder }), key: 'nats.credsFile', says: /not a file/ });
  out.push({ what: 'nats token empty', mutate: nats({ token: '' }), key: 'nats.token', says: /must not be empty/ });
  out.push({ what: 'nats.tls boolean', mutate: nats({ tls: true }), key: 'nats.tls', says: /expected object, got true/ });
  out.push({ what: 'nats.tls.ca missing', mutate: nats({ tls: { ca: dirs.missing } }), key: 'nats.tls.ca', says: /not found/ });
  out.push({ what: 'nats.tls cert without key', mutate: nats({ tls: { cert: dirs.file } }), key: 'nats.tls.key', says: /required together with nats.tls.cert/ });
  out.push({ what: 'nats.tls key without cert', mutate: nats({ tls: { key: dirs.file } }), key: 'nats.tls.cert', says: /required together with nats.tls.key/ });
  out.push({ what: 'nats.tls unknown key', mutate: nats({ tls: { verify: false } }), key: 'nats.tls.verify', says: UNKNOWN });
  out.push({ what: 'nats.jetstream boolean', mutate: nats({ jetstream: true }), key: 'nats.jetstream', says: /expected object, got true/ });
  out.push({ what: 'nats.jetstream.enabled string', mutate: nats({ jetstream: { enabled: 'yes' } }), key: 'nats.jetstream.enabled', says: /expected true or false/ });
  for (const stream of ['A.B', 'has space', 'S>'])
    out.push({ what: `jetstream stream ${stream}`, mutate: nats({ jetstream: { stream } }), key: 'nats.jetstream.stream', says: TOKEN });
  out.push({ what: 'nats.jetstream unknown key', mutate: nats({ jetstream: { replicas: 3 } }), key: 'nats.jetstream.replicas', says: UNKNOWN });
  out.push({ what: 'nats unknown key', mutate: nats({ url: 'nats://x:1' }), key: 'nats.url', says: UNKNOWN });

  // --- metrics, spool ---
  out.push({ what: 'metrics boolean', mutate: (c) => void (c.metrics = true), key: 'metrics', says: /expected object, got true/ });
  const metrics = (k: string) => (c: Raw, v: unknown) => void (section(c, 'metrics')[k] = v);
  out.push(...values('metrics.port', metrics('port'), [[-1, /must be >= 0/], [70000, /must be <= 65535/], ['http', /expected integer/], [80.5, /expected integer, got 80.5/]]));
  out.push(...values('metrics.enabled', metrics('enabled'), [['on', /expected true or false, got 'on'/]]));
  out.push(...values('metrics.host', metrics('host'), [[5, /expected string/], ['', /must not be empty/]]));
  out.push({ what: 'metrics unknown key', mutate: (c) => void (section(c, 'metrics').path = '/m'), key: 'metrics.path', says: UNKNOWN });
  const spool = (k: string) => (c: Raw, v: unknown) => void (section(c, 'spool')[k] = v);
  out.push(...values('spool.maxBytes', spool('maxBytes'), [['10 potatoes', /expected a positive byte count/], [-5, /expected a positive byte count/], [0, /positive byte count/], ['1.5XB', /positive byte count/], [true, /positive byte count/], [100, /at least 1024/], ['1KB', /at least 1024/]]));
  out.push(...values('spool.dir', spool('dir'), [[5, /expected string/], ['', /must not be empty/]]));
  out.push({ what: 'spool unknown key', mutate: (c) => void (section(c, 'spool').size = 1), key: 'spool.size', says: UNKNOWN });
  return out;
}

const fairline = (args: string[]) => runFairline(args);

/** Re-stamp model.json's own checksum, as a tool (or an attacker) that edits it on purpose would. */
function restamp(dir: string, edit: (m: ModelManifest) => void): void {
  const m = JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8')) as ModelManifest;
  edit(m);
  delete m.manifestSha256;
  m.manifestSha256 = createHash('sha256').update(JSON.stringify(m)).digest('hex');
  writeFileSync(join(dir, 'model.json'), JSON.stringify(m));
}

describe('faults: bad configs and bad models', function () {
  this.timeout(60000);
  let dir: string;
  let modelDir: string;
  let dirs: { file: string; missing: string; folder: string };
  const base = (): Raw => ({
    line: 'L1',
    station: 'S1',
    model: modelDir,
    cameras: [{ id: 'cam0', source: { type: 'images', dir: TEST_DIR } }],
    nats: { servers: ['nats://127.0.0.1:4222'] },
  });

  before(() => {
    dir = tempDir('faults-config');
    modelDir = join(dir, 'model');
    makeModel(modelDir, { threshold: 1 });
    dirs = { file: join(dir, 'a-file.txt'), missing: join(dir, 'nowhere'), folder: join(dir, 'a-folder') };
    writeFileSync(dirs.file, 'x');
    mkdirSync(dirs.folder);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('the base config is valid (so each case below fails for its own reason)', () => {
    const cfg = parseConfig(base(), { baseDir: dir });
    assert.equal(cfg.cameras[0]!.id, 'cam0');
  });

  it('100+ broken configs: each refused with a ConfigValidationError naming the key and saying what is wrong', () => {
    const all = cases(dirs);
    assert.ok(all.length >= 100, `only ${all.length} cases`);
    const failures: string[] = [];
    for (const c of all) {
      const raw = c.what === 'config is a list' ? [base()] : base();
      if (!Array.isArray(raw)) c.mutate(raw);
      let err: unknown;
      try {
        parseConfig(raw, { baseDir: dir, source: 'station.yaml' });
      } catch (e) {
        err = e;
      }
      if (!(err instanceof ConfigValidationError)) {
        failures.push(`${c.what}: ${err === undefined ? 'accepted' : `threw ${String(err)}`}`);
        continue;
      }
      // The problem line is `<key>: <what is wrong>`, and the message lists it under the file name.
      const line = err.problems.find((p) => p.startsWith(`${c.key}: `));
      if (!line) failures.push(`${c.what}: no problem for '${c.key}' in ${JSON.stringify(err.problems)}`);
      else if (!c.says.test(line)) failures.push(`${c.what}: '${line}' does not match ${c.says}`);
      else if (!err.message.startsWith('invalid config station.yaml: ') || !err.message.includes(`  - ${line}`)) failures.push(`${c.what}: message does not list '${line}'`);
      if (err.code !== 'bad_config' || !(err instanceof ConfigError)) failures.push(`${c.what}: code ${err.code}`);
    }
    assert.deepEqual(failures, [], `${failures.length} of ${all.length} cases`);
    console.log(`      ${all.length} broken configs refused with the key named`);
  });

  it('unreadable, unparsable, duplicate-key and env-less config files are ConfigErrors naming the file or key', async () => {
    const write = (name: string, text: string): string => {
      const p = join(dir, name);
      writeFileSync(p, text);
      return p;
    };
    const expectErr = async (file: string, says: RegExp): Promise<void> => {
      const e = await loadConfig(file).then(() => undefined, (x: unknown) => x);
      assert.ok(e instanceof ConfigError, `${file}: ${String(e)}`);
      assert.match(e.message, says);
    };
    await expectErr(join(dir, 'none.yaml'), /cannot read config .*none\.yaml: ENOENT/);
    await expectErr(dirs.folder, /cannot read config .*a-folder: EISDIR/);
    await expectErr(write('syntax.yaml', 'line: L1\ncameras: [\n  - id: x\n'), /cannot parse config .*syntax\.yaml/);
    await expectErr(write('tabs.yaml', 'line: L1\n\tstation: S1\n'), /cannot parse config .*tabs\.yaml/);
    await expectErr(write('dup.yaml', `line: L1\nline: L2\nstation: S1\nmodel: ${modelDir}\n`), /cannot parse config .*dup\.yaml: .*[Mm]ap keys must be unique/);
    delete process.env.FAIRLINE_TEST_UNSET_VAR;
    await expectErr(write('env.yaml', `line: L1\nstation: S1\nmodel: ${modelDir}\nnats:\n  user: u\n  pass: \${FAIRLINE_TEST_UNSET_VAR}\n`), /nats\.pass: environment variable FAIRLINE_TEST_UNSET_VAR is not set/);
    await expectErr(write('scalar.yaml', '42\n'), /<root>: expected object, got 42/);
    await expectErr(write('empty.yaml', ''), /<root>: expected object, got null/);
  });

  it('`fairline inspect` refuses corrupt and inconsistent models with exit 2 and a clear message, before any camera starts', async () => {
    const cfgFor = (model: string, extra: string[] = []): string => {
      const p = join(dir, `inspect-${model.split('/').pop()}${extra.length ? '-x' : ''}.yaml`);
      writeFileSync(p, ['line: L1', 'station: S1', `model: ${model}`, ...extra, 'metrics: { enabled: false }', 'cameras:', `  - { id: c, source: { type: images, dir: ${join(TEST_DIR, 'good')} } }`].join('\n'));
      return p;
    };
    const variant = (name: string): string => {
      const d = join(dir, name);
      cpSync(modelDir, d, { recursive: true });
      return d;
    };
    // 1. One flipped byte in the weights.
    const flipped = variant('flipped');
    const m = JSON.parse(readFileSync(join(flipped, 'model.json'), 'utf8')) as ModelManifest;
    const wpath = join(flipped, m.weights.file);
    const w = readFileSync(wpath);
    w[Math.floor(w.length / 2)] ^= 0x01;
    writeFileSync(wpath, w);
    // 2. model.json edited by hand (threshold lowered): its own checksum no longer matches.
    const edited = variant('edited');
    writeFileSync(join(edited, 'model.json'), readFileSync(join(edited, 'model.json'), 'utf8').replace(/"image": 1\b/, '"image": 0.001'));
    // 3. A consistent checksum but a size the UNet cannot take.
    const badSize = variant('badsize');
    restamp(badSize, (x) => void (x.spec.size = 72));
    // 4. model.json says c=4 but the weights are a c=8 UNet (manifest from another model).
    const mismatch = join(dir, 'mismatch');
    const spec8 = defaultSpec({ size: 64, baseWidth: 8 });
    const unet8 = createUNet(spec8.unet, 3);
    saveModel(mismatch, { spec: spec8, tensors: unetToTorch(unet8), thresholds: { image: 1, method: 'manual', computedAt: 'now' } });
    unet8.dispose();
    restamp(mismatch, (x) => void (x.spec.unet.baseWidth = 4));

    const expectations: Array<[string, RegExp]> = [
      [flipped, /ModelError \[checksum\]: model .*flipped: weights checksum mismatch/],
      [edited, /ModelError \[checksum\]: .*edited\/model\.json: manifest checksum mismatch/],
      [badSize, /ModelError \[bad_spec\]: model .*badsize: size 72 is not a positive multiple of 16/],
      [mismatch, /ModelError \[model_mismatch\]: model .*mismatch: weights are a UNet c=8, .* but model\.json says c=4/],
    ];
    const configs = expectations.map(([d]) => cfgFor(d));
    // 5. A good model, but not what this deployment expects (config `expect`).
    expectations.push([modelDir, /ModelError \[model_mismatch\]: model .*: model input size is 64 but the configuration expects 256/]);
    configs.push(cfgFor(modelDir, ['expect: { size: 256, channels: 1 }']));
    const runs = await Promise.all(configs.map((c) => fairline(['inspect', '--config', c])));
    runs.forEach((r, i) => {
      const [d, says] = expectations[i]!;
      assert.equal(r.code, 2, `${d}: exit ${r.code}; ${r.stderr}`);
      assert.match(r.stderr, says);
      assert.doesNotMatch(r.stderr, /camera|started/, `${d}: nothing may start`);
      assert.equal(r.stdout, '', `${d}: no verdicts`);
    });
  });
});
