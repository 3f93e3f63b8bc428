/**
 * Scale-out over NATS JetStream: `fairline ingest` -> frames work queue -> N `fairline worker`
 * processes -> one verdict per frame, also when a worker is SIGKILLed mid-batch.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { connect, headers as natsHeaders, type Msg, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { of } from 'rxjs';
import { BadInputError, ConfigError } from '../src/errors.js';
import { updateManifest } from '../src/io/artefact.js';
import { encodePng, loadModelImage } from '../src/io/image.js';
import { loadInspectModel, type RuntimeModel } from '../src/runtime/model.js';
import { imageFilesSource, syntheticFrameData } from '../src/runtime/sources.js';
import type { Frame } from '../src/streams/frame.js';
import { runIngest } from '../src/scaleout/ingest.js';
import {
  FRAME_HEADERS,
  VERDICT_HEADERS,
  auditSubject,
  checkLine,
  decodeFrameMessage,
  encodeFrameMessage,
  ensureFramesStream,
  ensureVerdictsStream,
  ensureWorkerConsumer,
  framesStreamName,
  sniffContentType,
  verdictsStreamName,
  workersDurable,
} from '../src/scaleout/protocol.js';
import { ScaleoutWorker } from '../src/scaleout/worker.js';
import { isVerdict, type Verdict } from '../src/verdict.js';
import { REPO_ROOT, expectClose } from './helpers.js';
import { startNatsServer, type NatsServerHandle } from './fixtures/nats-server.js';
import { makeModel, tempDir } from './runtime/fixture.js';

const N_FRAMES = 500;
const SIZE = 64;

/** 64x64 BGR test images: a shaded part, some with a dark spot and more noise, all different. */
function testImage(i: number): { width: number; height: number; channels: number; data: Uint8Array } {
  const data = new Uint8Array(SIZE * SIZE * 3);
  let s = 1234 + i * 7919;
  const rnd = () => ((s = (s * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  const noise = 4 + (i % 4) * 12;
  for (let y = 0; y < SIZE; y++)
    for (let x = 0; x < SIZE; x++) {
      const o = (y * SIZE + x) * 3;
      const spot = i % 3 === 0 && (x - 20 - i) ** 2 + (y - 30) ** 2 < 60;
      const base = spot ? 30 : 90 + 40 * Math.sin((x + i * 3) / 6) + y;
      for (let c = 0; c < 3; c++) data[o + c] = Math.max(0, Math.min(255, Math.round(base + c * 20 + (rnd() - 0.5) * noise)));
    }
  return { width: SIZE, height: SIZE, channels: 3, data };
}

interface Child {
  proc: ChildProcess;
  stdout: string;
  stderr: string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const children = new Set<ChildProcess>();

function fairline(args: string[]): Child {
  const proc = spawn(process.execPath, ['bin/fairline.js', ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, FAIRLINE_LOG: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(proc);
  const c: Child = {
    proc,
    stdout: '',
    stderr: '',
    exited: new Promise((resolve) =>
      proc.on('exit', (code, signal) => {
        children.delete(proc);
        // Let the pipes drain.
        setTimeout(() => resolve({ code, signal }), 50);
      }),
    ),
  };
  proc.stdout!.on('data', (d: Buffer) => (c.stdout += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (c.stderr += d.toString()));
  return c;
}

async function waitFor(what: string, pred: () => boolean | Promise<boolean>, timeoutMs: number, detail: () => string = () => ''): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}. ${detail()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Every message of a stream (ordered consumer), decoded. */
async function readStream(nc: NatsConnection, stream: string): Promise<{ id: string; worker: string; deliveries: number; v: Verdict }[]> {
  const jsm = await jetstreamManager(nc);
  const n = (await jsm.streams.info(stream)).state.messages;
  const out: { id: string; worker: string; deliveries: number; v: Verdict }[] = [];
  if (n === 0) return out;
  const c = await jetstream(nc).consumers.get(stream);
  const it = await c.fetch({ max_messages: n, expires: 5000 });
  for await (const m of it) {
    out.push({
      id: m.headers?.get('Nats-Msg-Id') ?? '',
      worker: m.headers?.get(VERDICT_HEADERS.worker) ?? '',
      deliveries: Number(m.headers?.get(VERDICT_HEADERS.deliveries)),
      v: m.json<Verdict>(),
    });
    if (out.length === n) break;
  }
  return out;
}

describe('scaleout', function () {
  this.timeout(60000);
  let dir: string;
  let modelDir: string;
  let imgDir: string;
  let srv: NatsServerHandle;
  let nc: NatsConnection;
  /** Expected score per image file name (in-process, tfjs cpu). */
  const expected = new Map<string, number>();
  let threshold: number;

  before(async () => {
    dir = tempDir('scaleout');
    modelDir = join(dir, 'model');
    imgDir = join(dir, 'images');
    mkdirSync(imgDir);
    makeModel(modelDir, { size: SIZE, seed: 3 });
    for (let i = 0; i < 12; i++) await encodePng(testImage(i), join(imgDir, `img${String(i).padStart(2, '0')}.png`));
    writeFileSync(join(imgDir, 'zz_corrupt.png'), Buffer.from('not a png at all'));
    // The reference scores, and a threshold between two of them so both verdicts occur.
    const model = await loadInspectModel({ dir: modelDir, engine: 'tfjs', backend: 'cpu', requireThreshold: false });
    try {
      const names = Array.from({ length: 12 }, (_, i) => `img${String(i).padStart(2, '0')}.png`);
      const imgs = await Promise.all(names.map((n) => loadModelImage(join(imgDir, n), SIZE)));
      const det = await model.detect(imgs);
      names.forEach((n, i) => expected.set(n, det[i]!.score));
    } finally {
      await model.dispose();
    }
    const sorted = [...expected.values()].sort((a, b) => a - b);
    threshold = (sorted[5]! + sorted[6]!) / 2;
    assert.ok(sorted[6]! - sorted[5]! > 1e-4, `scores too close to split: ${sorted.join(', ')}`);
    updateManifest(modelDir, { thresholds: { image: threshold, method: 'manual', computedAt: new Date().toISOString() } });
    srv = await startNatsServer({ jetstream: true });
    nc = await connect({ servers: srv.url });
  });

  after(async () => {
    for (const p of children) p.kill('SIGKILL');
    await nc?.close();
    await srv?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  describe('protocol', () => {
    it('encodes and decodes a frame message (encoded and raw, path and label)', () => {
      const png = Buffer.from([0x89, 0x50, 0x4e, 0x47, 1, 2, 3]);
      const f: Frame = { sourceId: 'cam-1', seq: 42, captureTs: 1700000000123, payload: { data: png, width: 0, height: 0, format: 'encoded' }, path: '/data/ä b\nc.png', label: 1 };
      const m = encodeFrameMessage('L1', f);
      assert.equal(m.subject, 'fairline.frames.L1.cam-1');
      assert.equal(m.msgID, 'cam-1:42');
      assert.equal(m.headers.get(FRAME_HEADERS.contentType), 'image/png');
      const back = decodeFrameMessage({ subject: m.subject, data: m.data, headers: m.headers });
      assert.deepEqual(back, { ...f, payload: { ...f.payload, data: png } });

      const raw = syntheticFrameData(8, 4, 1, 0, false);
      const r = encodeFrameMessage('L1', { sourceId: 'c', seq: 0, captureTs: 5, payload: { data: raw, width: 8, height: 4, format: 'bgr' } });
      const rb = decodeFrameMessage({ subject: r.subject, data: r.data, headers: r.headers });
      assert.deepEqual(rb.payload, { data: raw, width: 8, height: 4, format: 'bgr' });
      assert.throws(() => encodeFrameMessage('L1', f, 3), (e: unknown) => e instanceof BadInputError && e.code === 'frame_too_large');
    });

    it('rejects messages without identity, reserved lines and sniffs content types', () => {
      const h = natsHeaders();
      h.set(FRAME_HEADERS.camera, 'cam0');
      assert.throws(() => decodeFrameMessage({ subject: 'fairline.frames.L1.cam0', data: new Uint8Array(1), headers: h }), (e: unknown) => e instanceof BadInputError && e.code === 'bad_message');
      h.set(FRAME_HEADERS.seq, '7');
      // Camera from the subject when the header is not a token.
      h.set(FRAME_HEADERS.camera, 'a.b');
      assert.equal(decodeFrameMessage({ subject: 'fairline.frames.L1.cam9', data: new Uint8Array(1), headers: h }).sourceId, 'cam9');
      assert.throws(() => checkLine('frames'), ConfigError);
      assert.throws(() => checkLine('a.b'), ConfigError);
      assert.equal(sniffContentType(new Uint8Array([0xff, 0xd8, 0xff, 0xe0])), 'image/jpeg');
      assert.equal(sniffContentType(new Uint8Array([1, 2, 3])), 'application/octet-stream');
    });
  });

  it(`${N_FRAMES} frames, two worker processes, one SIGKILLed mid-run: exactly one verdict per frame`, async function () {
    const line = 'L1';
    const ackWaitMs = 2000;
    const core: { subject: string; v: Verdict; possibleDup: boolean; worker: string }[] = [];
    const onCore = (err: Error | null, m: Msg) => {
      if (err) return;
      core.push({ subject: m.subject, v: m.json<Verdict>(), possibleDup: m.headers?.get(VERDICT_HEADERS.possibleDuplicate) === 'true', worker: m.headers?.get(VERDICT_HEADERS.worker) ?? '' });
    };
    nc.subscribe(`fairline.${line}.*.verdict`, { callback: onCore });
    nc.subscribe(`fairline.${line}.*.reject`, { callback: onCore });
    await nc.flush();

    const workerArgs = (name: string) => [
      'worker', '--nats', srv.url, '--line', line, '--model', modelDir, '--batch', '8', '--name', name,
      '--backend', 'wasm', '--threads', '1', '--engine', 'tfjs', '--ack-wait', String(ackWaitMs), '--max-deliver', '5',
    ];
    const a = fairline(workerArgs('wA'));
    const b = fairline(workerArgs('wB'));
    await waitFor('both workers ready', () => /ready/.test(a.stderr) && /ready/.test(b.stderr), 30000, () => `A: ${a.stderr}\nB: ${b.stderr}`);

    const ingest = fairline(['ingest', '--nats', srv.url, '--line', line, '--camera', 'cam0', '--source', imgDir, '--loop', '--count', String(N_FRAMES)]);
    const verdictsSeen = () => core.filter((c) => c.subject.endsWith('.verdict')).length;
    await waitFor(`${N_FRAMES / 2} verdicts`, () => verdictsSeen() >= N_FRAMES / 2, 40000, () => `ingest: ${ingest.stderr}\nA: ${a.stderr}\nB: ${b.stderr}`);
    // Kill A while it holds unacked frames: freeze it, and read the consumer's unacked count,
    // which A cannot change while frozen; B never holds more than its batch (8).
    const jsm: JetStreamManager = await jetstreamManager(nc);
    let heldByA = 0;
    for (let i = 0; i < 100 && heldByA === 0; i++) {
      a.proc.kill('SIGSTOP');
      const pending = (await jsm.consumers.info(framesStreamName(line), workersDurable(line))).num_ack_pending;
      if (pending > 8) heldByA = pending - 8;
      else {
        a.proc.kill('SIGCONT');
        await new Promise((r) => setTimeout(r, 10 + 10 * Math.random()));
      }
    }
    a.proc.kill('SIGKILL');
    assert.ok(heldByA > 0, 'never caught worker A holding unacked frames');
    const byAAtKill = core.filter((c) => c.worker === 'wA').length;
    const ing = await ingest.exited;
    assert.equal(ing.code, 0, ingest.stderr);
    const summary = JSON.parse(ingest.stdout) as { published: number; duplicates: number };
    assert.equal(summary.published, N_FRAMES);

    const vStream = verdictsStreamName(line);
    await waitFor(
      `${N_FRAMES} verdicts in ${vStream}`,
      async () => (await jsm.streams.info(vStream)).state.messages >= N_FRAMES && (await jsm.consumers.info(framesStreamName(line), workersDurable(line))).num_ack_pending === 0,
      40000,
      () => `B: ${b.stderr}`,
    );
    // Let anything late (a redelivery racing the check) arrive before counting.
    await new Promise((r) => setTimeout(r, 300));

    // Audit stream: exactly one verdict per frame.
    const audit = await readStream(nc, vStream);
    assert.equal(audit.length, N_FRAMES);
    const perId = new Map<string, number>();
    for (const x of audit) perId.set(`${x.v.camera}:${x.v.seq}`, (perId.get(`${x.v.camera}:${x.v.seq}`) ?? 0) + 1);
    for (let seq = 0; seq < N_FRAMES; seq++) assert.equal(perId.get(`cam0:${seq}`), 1, `cam0:${seq} has ${perId.get(`cam0:${seq}`) ?? 0} verdicts`);
    // The kill really interrupted work: A's unacked frames were delivered again (to B).
    assert.ok(byAAtKill > 0, 'worker A never published a verdict before it was killed');
    const ci = await jsm.consumers.info(framesStreamName(line), workersDurable(line));
    assert.ok(ci.delivered.consumer_seq >= N_FRAMES + heldByA, `deliveries ${ci.delivered.consumer_seq}, A held ${heldByA}`);
    assert.ok(audit.filter((x) => x.deliveries >= 2).every((x) => x.worker === 'wB'));

    // The verdicts are the model's: decode errors for the corrupt file, else score vs threshold.
    let errors = 0, rejects = 0, passes = 0;
    for (const { v, id } of audit) {
      assert.ok(isVerdict(v), JSON.stringify(v));
      assert.equal(id, `${v.camera}:${v.seq}`);
      const file = v.path!.slice(v.path!.lastIndexOf('/') + 1);
      if (file === 'zz_corrupt.png') {
        assert.equal(v.verdict, 'error');
        assert.equal(v.stage, 'decode');
        errors++;
      } else {
        const want = expected.get(file)!;
        expectClose(v.score!, want, 1e-3 * Math.max(1, Math.abs(want)), `score of ${file}`);
        assert.equal(v.verdict, want >= threshold ? 'reject' : 'pass', file);
        if (v.verdict === 'reject') rejects++;
        else passes++;
      }
    }
    // 13 files in name order, looped: the corrupt one is every 13th frame.
    assert.equal(errors, Array.from({ length: N_FRAMES }, (_, s) => s % 13 === 12).filter(Boolean).length);
    assert.ok(rejects > 0 && passes > 0, `rejects ${rejects}, passes ${passes}`);

    // Core subscribers: every frame at least once; a second copy only as a marked possible duplicate.
    const coreVerdicts = core.filter((c) => c.subject.endsWith('.verdict'));
    const firsts = new Map<string, number>();
    const any = new Set<string>();
    for (const c of coreVerdicts) {
      const k = `${c.v.camera}:${c.v.seq}`;
      any.add(k);
      if (!c.possibleDup) firsts.set(k, (firsts.get(k) ?? 0) + 1);
    }
    assert.equal(any.size, N_FRAMES);
    for (const [k, n] of firsts) assert.ok(n <= 1, `${k} sent ${n} times unmarked on core`);
    // Reject gate: reject and (fail-safe reject) error verdicts, each frame.
    const rejectKeys = new Set(core.filter((c) => c.subject.endsWith('.reject')).map((c) => `${c.v.camera}:${c.v.seq}`));
    assert.equal(rejectKeys.size, rejects + errors);

    // The work queue is empty: every frame acked once decided.
    assert.equal((await jsm.streams.info(framesStreamName(line))).state.messages, 0);

    // Graceful stop of B: exit 0 with its counters, which agree with the audit stream.
    b.proc.kill('SIGTERM');
    const bx = await b.exited;
    assert.equal(bx.code, 0, b.stderr);
    const bStats = JSON.parse(b.stdout.trim().split('\n').pop()!) as { frames: number; verdicts: number; duplicates: number; worker: string };
    assert.equal(bStats.worker, 'wB');
    assert.equal(bStats.verdicts, audit.filter((x) => x.worker === 'wB').length);
    // Every frame B took got a verdict from B, or was one whose verdict A had already stored.
    assert.equal(bStats.frames, bStats.verdicts + bStats.duplicates);
  });

  describe('in-process worker', () => {
    let model: RuntimeModel;
    before(async () => {
      model = await loadInspectModel({ dir: modelDir, engine: 'tfjs', backend: 'cpu' });
    });
    after(async () => {
      await model?.dispose();
    });

    it('error verdicts for bad frames, term for messages without seq, stable tensors, graceful stop mid-batch', async () => {
      const line = 'L2';
      const seen: Verdict[] = [];
      let w = await ScaleoutWorker.start({ nats: { servers: srv.url }, line, model, batch: 4, name: 'ip', consumer: { ackWaitMs: 5000 }, hooks: { onVerdict: (v) => seen.push(v) } });
      try {
        const files = ['img01.png', 'img02.png', 'zz_corrupt.png'].map((f) => ({ path: join(imgDir, f) }));
        const raw: Frame = { sourceId: 'cam1', seq: 0, captureTs: Date.now(), payload: { data: syntheticFrameData(48, 32, 1, 0, false), width: 48, height: 32, format: 'bgr' } };
        await runIngest({ nats: { connection: nc }, line, source: (p) => imageFilesSource(files, { sourceId: 'cam0', ...p }) });
        await runIngest({ nats: { connection: nc }, line, source: () => of(raw) });
        // No seq header: cannot get a verdict, must not be redelivered forever.
        const h = natsHeaders();
        h.set(FRAME_HEADERS.camera, 'cam0');
        await jetstream(nc).publish('fairline.frames.L2.cam0', new Uint8Array([1]), { headers: h });
        await waitFor('4 verdicts', () => seen.length >= 4 && w.stats().terminated === 1, 20000);
        const byKey = new Map(seen.map((v) => [`${v.camera}:${v.seq}`, v]));
        assert.equal(byKey.get('cam0:2')?.verdict, 'error');
        assert.equal(byKey.get('cam0:2')?.reason, 'unsupported_image');
        assert.equal(byKey.get('cam1:0')?.verdict === 'pass' || byKey.get('cam1:0')?.verdict === 'reject', true);
        expectClose(byKey.get('cam0:0')!.score!, expected.get('img01.png')!, 1e-4, 'in-process score');
        const jsm = await jetstreamManager(nc);
        await waitFor('queue empty', async () => (await jsm.streams.info(framesStreamName(line))).state.messages === 0, 5000);

        // Tensors: the same after more batches (the first batch above warmed everything up).
        const tensors = tf.memory().numTensors;
        const more = Array.from({ length: 6 }, (_, i) => ({ path: join(imgDir, `img0${i}.png`) }));
        await runIngest({ nats: { connection: nc }, line, source: (p) => imageFilesSource(more, { sourceId: 'cam0', seqStart: 10, ...p }) });
        await waitFor('6 more verdicts', () => seen.length >= 10, 20000);
        assert.equal(tf.memory().numTensors, tensors);
        assert.equal(w.stats().errorVerdicts, 1);
        await w.stop();

        // Graceful stop mid-batch: the batch in progress is published and acked, nothing more is taken.
        seen.length = 0;
        const batchFiles = Array.from({ length: 12 }, (_, i) => ({ path: join(imgDir, `img${String(i).padStart(2, '0')}.png`) }));
        await runIngest({ nats: { connection: nc }, line, source: (p) => imageFilesSource(batchFiles, { sourceId: 'cam2', ...p }) });
        let stopping: Promise<void> | undefined;
        w = await ScaleoutWorker.start({
          nats: { servers: srv.url }, line, model, batch: 4, name: 'ip2', consumer: { ackWaitMs: 5000 },
          hooks: { onVerdict: (v) => { seen.push(v); stopping ??= w.stop(); } },
        });
        await waitFor('stop requested', () => stopping !== undefined, 20000);
        await stopping;
        const st = w.stats();
        assert.equal(st.frames, 4, 'one batch taken');
        assert.equal(st.verdicts, 4);
        const ci = await jsm.consumers.info(framesStreamName(line), workersDurable(line));
        assert.equal(ci.num_ack_pending, 0, 'batch acked before stop resolved');
        assert.equal(ci.num_pending, 8, 'the rest left for other workers');
      } finally {
        await w.stop();
      }
    });

    it('a redelivered frame whose verdict is already stored: no second audit entry, core re-sent marked', async () => {
      const line = 'L4';
      const consumerOpts = { ackWaitMs: 1000, maxDeliver: 5 };
      const jsm = await jetstreamManager(nc);
      await ensureFramesStream(jsm, line);
      await ensureVerdictsStream(jsm, line);
      await ensureWorkerConsumer(jsm, line, consumerOpts);
      await runIngest({ nats: { connection: nc }, line, source: (p) => imageFilesSource([{ path: join(imgDir, 'img04.png') }], { sourceId: 'cam0', seqStart: 3, ...p }) });
      // A worker takes the frame, stores its verdict, and dies before acking.
      const d1 = await (await jetstream(nc).consumers.get(framesStreamName(line), workersDurable(line))).next({ expires: 2000 });
      assert.equal(d1?.info.deliveryCount, 1);
      const ghost: Verdict = {
        schema: 'fairline.verdict/v1', line, station: 'ghost', camera: 'cam0', seq: 3, captureTs: 1, decidedTs: 2, latencyMs: 1,
        model: model.id, score: 0.1, threshold: 0.2, verdict: 'pass', regions: [],
      };
      await jetstream(nc).publish(auditSubject(line, 'cam0'), JSON.stringify(ghost), { msgID: 'cam0:3' });
      const core: Msg[] = [];
      const sub = nc.subscribe(`fairline.${line}.*.verdict`, { callback: (_e, m) => void core.push(m) });
      await nc.flush();
      const w = await ScaleoutWorker.start({ nats: { servers: srv.url }, line, model, name: 'ip4', consumer: consumerOpts });
      try {
        await waitFor('the redelivered frame', () => w.stats().duplicates === 1 && core.length === 1, 10000, () => JSON.stringify(w.stats()));
        const audit = await readStream(nc, verdictsStreamName(line));
        assert.equal(audit.length, 1);
        assert.equal(audit[0]!.v.station, 'ghost');
        assert.equal(core[0]!.headers?.get(VERDICT_HEADERS.possibleDuplicate), 'true');
        assert.equal(core[0]!.headers?.get(VERDICT_HEADERS.deliveries), '2');
        assert.equal(core[0]!.json<Verdict>().station, 'ip4');
        assert.deepEqual({ ...w.stats() }, { ...w.stats(), frames: 1, verdicts: 0, duplicates: 1, coreResent: 1 });
        await waitFor('queue empty', async () => (await jsm.streams.info(framesStreamName(line))).state.messages === 0, 5000);
      } finally {
        sub.unsubscribe();
        await w.stop();
      }
    });

    it('a frame no worker acks within max deliver gets one max_deliver error verdict and leaves the queue', async () => {
      const line = 'L3';
      const ackWaitMs = 1500;
      const consumerOpts = { ackWaitMs, maxDeliver: 2 };
      const jsm = await jetstreamManager(nc);
      await ensureFramesStream(jsm, line);
      await ensureVerdictsStream(jsm, line);
      await ensureWorkerConsumer(jsm, line, consumerOpts);
      await runIngest({ nats: { connection: nc }, line, source: (p) => imageFilesSource([{ path: join(imgDir, 'img03.png') }], { sourceId: 'cam0', seqStart: 7, ...p }) });
      // Two "workers" that take the frame and die without acking.
      const c = await jetstream(nc).consumers.get(framesStreamName(line), workersDurable(line));
      const d1 = await c.next({ expires: 2000 });
      assert.equal(d1?.info.deliveryCount, 1);
      const d2 = await c.next({ expires: 4000 });
      assert.equal(d2?.info.deliveryCount, 2);
      const dead: number[] = [];
      const w = await ScaleoutWorker.start({ nats: { servers: srv.url }, line, model, name: 'dl', consumer: consumerOpts, hooks: { onDeadLetter: (seq) => dead.push(seq) } });
      try {
        await waitFor('max_deliver verdict', () => dead.length === 1, 10000);
        const audit = await readStream(nc, verdictsStreamName(line));
        assert.equal(audit.length, 1);
        assert.equal(audit[0]!.v.seq, 7);
        assert.equal(audit[0]!.v.verdict, 'error');
        assert.equal(audit[0]!.v.reason, 'max_deliver');
        assert.equal((await jsm.streams.info(framesStreamName(line))).state.messages, 0);
        assert.equal(w.stats().frames, 0, 'the worker itself never got the frame');
        assert.equal(w.stats().deadLetters, 1);
      } finally {
        await w.stop();
      }
    });
  });
});
