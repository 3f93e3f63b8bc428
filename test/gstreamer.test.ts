/**
 * GStreamer sources against real pipelines. Fixtures (an MJPEG AVI, a PNG sequence, a TCP
 * MJPEG stream) are made with gst-launch-1.0 in before(). At most one pipeline of ours runs at
 * a time, since each holds two of the 4 default libuv threads.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { connect as netConnect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Subject, firstValueFrom, lastValueFrom, take, toArray } from 'rxjs';
import { SourceError } from '../src/errors.js';
import {
  GstSource,
  parseFramerate,
  recommendedThreadpoolSize,
  runningPipelines,
  toFrame,
  withReconnect,
  type RawFrame,
} from '../src/streams/gstreamer.js';
import { freePort } from './fixtures/nats-server.js';
import { REPO_ROOT } from './helpers.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function gstLaunch(args: string): void {
  const r = spawnSync('gst-launch-1.0', ['-q', ...args.split(' ')], { encoding: 'utf8', timeout: 20000 });
  if (r.status !== 0) throw new Error(`gst-launch failed: ${args}\n${r.stderr}`);
}

async function waitFor(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** Errors of an observable as a promise that rejects within `ms`, so a hang fails the test. */
async function expectSourceError(p: Promise<unknown>, code: string, ms: number): Promise<SourceError> {
  const t0 = Date.now();
  const err = await Promise.race([
    p.then(
      () => new Error('completed instead of erroring'),
      (e: unknown) => e,
    ),
    sleep(ms).then(() => new Error(`no error within ${ms} ms (hang)`)),
  ]);
  assert.ok(err instanceof SourceError, `expected SourceError, got ${String(err)}`);
  assert.equal(err.code, code, err.message);
  assert.ok(Date.now() - t0 < ms);
  return err;
}

describe('streams/gstreamer', function () {
  let dir: string;
  let avi: string;
  let pngPattern: string;

  before(function () {
    dir = mkdtempSync(join(tmpdir(), 'fairline-gst-'));
    avi = join(dir, 'clip.avi');
    gstLaunch(`videotestsrc num-buffers=20 pattern=ball ! video/x-raw,width=64,height=64,framerate=30/1 ! jpegenc quality=85 ! avimux ! filesink location=${avi}`);
    pngPattern = join(dir, 'img_%05d.png');
    gstLaunch(`videotestsrc num-buffers=15 pattern=red ! video/x-raw,width=64,height=64 ! pngenc ! multifilesink location=${pngPattern}`);
  });

  after(function () {
    rmSync(dir, { recursive: true, force: true });
  });

  afterEach(async function () {
    // Every test must leave no pipeline running (they hold threadpool threads).
    await waitFor(() => runningPipelines() === 0, 2000, 'pipelines to stop');
  });

  it('helpers: framerate parsing and threadpool sizing', function () {
    assert.equal(parseFramerate('30/1'), 30);
    assert.equal(parseFramerate('30000/1001').toFixed(3), '29.970');
    assert.equal(parseFramerate('0/1'), 0);
    assert.equal(parseFramerate(undefined), 0);
    assert.equal(recommendedThreadpoolSize(0), 4);
    assert.equal(recommendedThreadpoolSize(3), 10);
    assert.throws(() => recommendedThreadpoolSize(-1), /non-negative/);
  });

  it('builds the appsink tail from the mode', function () {
    const live = new GstSource('videotestsrc is-live=true ! appsink name=old max-buffers=0', { sourceId: 'a' });
    assert.match(live.description, /^videotestsrc is-live=true ! videoscale/);
    assert.match(live.description, /appsink name=sink max-buffers=1 drop=true sync=false/);
    assert.doesNotMatch(live.description, /name=old/);
    const replay = GstSource.videoFile('/x y/"q".avi', { sourceId: 'b', width: 32, height: 16 });
    assert.match(replay.description, /filesrc location="\/x y\/\\"q\\".avi"/);
    assert.match(replay.description, /format=RGB,width=32,height=16/);
    assert.match(replay.description, /max-buffers=4 drop=false/);
    assert.throws(() => new GstSource('videotestsrc', { sourceId: 'c', width: 32 }), /both width and height/);
    assert.throws(() => new GstSource('videotestsrc', { sourceId: 'c', maxBuffers: 0 }), /positive integer/);
  });

  it('videotestsrc frames arrive with seq, captureTs and size (RGB order)', async function () {
    const src = GstSource.testPattern({ sourceId: 'cam0', pattern: 'red', fps: 30, seqStart: 7 });
    const t0 = Date.now();
    const frames = await lastValueFrom(src.frames$().pipe(take(5), toArray()));
    assert.deepEqual(frames.map((f) => f.seq), [7, 8, 9, 10, 11]);
    for (const f of frames) {
      assert.equal(f.sourceId, 'cam0');
      assert.equal(f.width, 64);
      assert.equal(f.height, 64);
      assert.equal(f.format, 'rgb');
      assert.equal(f.data.length, 64 * 64 * 3);
      assert.ok(f.captureTs >= t0 && f.captureTs <= Date.now() + 1);
      // pure red: R high, G and B low, at the first and the last pixel
      const last = f.data.length - 3;
      assert.ok(f.data[0]! > 240 && f.data[1]! < 16 && f.data[2]! < 16, `first pixel ${[...f.data.subarray(0, 3)]}`);
      assert.ok(f.data[last]! > 240 && f.data[last + 1]! < 16 && f.data[last + 2]! < 16);
    }
    for (let i = 1; i < frames.length; i++) assert.ok(frames[i]!.captureTs > frames[i - 1]!.captureTs);
    const f0 = toFrame(frames[0]!);
    assert.deepEqual([f0.sourceId, f0.seq, f0.captureTs, f0.payload.width, f0.payload.height, f0.payload.format], ['cam0', 7, frames[0]!.captureTs, 64, 64, 'rgb']);
    assert.equal(f0.payload.data, frames[0]!.data);
    // A live 30 fps source needs ~4 frame intervals for 5 frames.
    assert.ok(frames[4]!.captureTs - frames[0]!.captureTs >= 100, 'live source paced at ~30 fps');
  });

  it('an MJPEG AVI replays without loss, with media-time captureTs', async function () {
    const src = GstSource.videoFile(avi, { sourceId: 'file' });
    const frames = await lastValueFrom(src.frames$().pipe(toArray()));
    assert.equal(frames.length, 20);
    assert.deepEqual(frames.map((f) => f.seq), [...Array(20).keys()]);
    for (const [i, f] of frames.entries()) {
      assert.equal(f.data.length, 64 * 64 * 3);
      assert.ok(Math.abs(f.captureTs - (frames[0]!.captureTs + (i * 1000) / 30)) < 1e-6);
    }
    // the ball moves: consecutive frames differ
    assert.notDeepEqual(frames[0]!.data, frames[10]!.data);
    assert.deepEqual(src.stats(), { frames: 20, rendered: 0, dropped: 0 });
  });

  it('a PNG sequence replays without loss, resized to an odd width (row padding removed)', async function () {
    assert.equal(readdirSync(dir).filter((f) => f.endsWith('.png')).length, 15);
    const src = GstSource.imageSequence(pngPattern, { sourceId: 'seq', width: 50, height: 30, fps: 10 });
    const frames = await lastValueFrom(src.frames$().pipe(toArray()));
    assert.equal(frames.length, 15);
    for (const f of frames) {
      assert.equal(f.width, 50);
      assert.equal(f.data.length, 50 * 30 * 3);
      // Every pixel red: unpacked padding would shift channels along the rows.
      for (let p = 0; p < f.data.length; p += 3) {
        if (!(f.data[p]! > 240 && f.data[p + 1]! < 16 && f.data[p + 2]! < 16)) assert.fail(`pixel ${p / 3} not red`);
      }
    }
    assert.equal(frames[14]!.captureTs - frames[0]!.captureTs, 1400);
  });

  it('replay with ack$ pulls only as fast as the consumer acknowledges', async function () {
    const src = GstSource.videoFile(avi, { sourceId: 'file', maxBuffers: 2 });
    const ack$ = new Subject<void>();
    const got: RawFrame[] = [];
    let done = false;
    const sub = src.frames$({ ack$, window: 2 }).subscribe({ next: (f) => got.push(f), complete: () => (done = true) });
    await sleep(300);
    assert.equal(got.length, 2, 'window of 2 before any ack');
    ack$.next();
    await waitFor(() => got.length === 3, 2000, 'third frame');
    await sleep(200);
    assert.equal(got.length, 3);
    for (let i = 0; i < 30 && !done; i++) {
      ack$.next();
      await sleep(10);
    }
    await waitFor(() => done, 3000, 'completion');
    assert.equal(got.length, 20);
    sub.unsubscribe();
  });

  it('a bad pipeline string errors at once with SourceError(bad_pipeline)', async function () {
    const src = new GstSource('nosuchelement0 ! videoconvert', { sourceId: 'bad' });
    await expectSourceError(firstValueFrom(src.frames$()), 'bad_pipeline', 2000);
  });

  it('a missing file errors with SourceError(pipeline_error) and does not hang', async function () {
    const src = GstSource.videoFile(join(dir, 'missing.avi'), { sourceId: 'gone' });
    const err = await expectSourceError(lastValueFrom(src.frames$()), 'pipeline_error', 5000);
    assert.match(err.message, /not found|No such file/i);
  });

  it('a file that is not video errors with SourceError(pipeline_error)', async function () {
    const junk = join(dir, 'junk.avi');
    writeFileSync(junk, 'this is not a video file at all\n'.repeat(100));
    const src = GstSource.videoFile(junk, { sourceId: 'junk' });
    await expectSourceError(lastValueFrom(src.frames$()), 'pipeline_error', 5000);
  });

  it('live mode keeps up with a fast consumer', async function () {
    const src = GstSource.testPattern({ sourceId: 'ok', fps: 30 });
    const frames = await lastValueFrom(src.frames$().pipe(take(10), toArray()));
    assert.equal(frames.length, 10);
    assert.ok(src.stats().dropped <= 2, `fast consumer dropped ${src.stats().dropped}`);
  });

  it('live mode with a slow consumer drops old frames and counts them', async function () {
    let reported = 0;
    const src = GstSource.testPattern({
      sourceId: 'fast',
      fps: 100,
      onDrop: (n, total) => {
        reported += n;
        assert.equal(total, reported);
      },
    });
    const slow = await new Promise<RawFrame[]>((resolve, reject) => {
      const out: RawFrame[] = [];
      const sub = src.frames$().subscribe({
        next: (f) => {
          out.push(f);
          const until = Date.now() + 30;
          while (Date.now() < until) {
            /* busy: blocks the event loop like inference would */
          }
          if (out.length === 10) {
            sub.unsubscribe();
            resolve(out);
          }
        },
        error: reject,
      });
    });
    const s = src.stats();
    console.log(`      slow consumer: ${s.frames} frames, ${s.rendered} reached the sink, ${s.dropped} counted as dropped`);
    assert.equal(slow.length, 10);
    assert.deepEqual(slow.map((f) => f.seq), [...Array(10).keys()], 'seq counts delivered frames');
    // ~300 ms at 100 fps: ~30 frames reached the sink, 10 were consumed.
    assert.ok(s.dropped >= 8, `dropped ${s.dropped} (rendered ${s.rendered})`);
    assert.ok(s.dropped <= s.rendered - s.frames, 'never over-counts');
    assert.equal(reported, s.dropped, 'onDrop deltas add up to the total');
  });

  it('a live source that stops delivering errors with SourceError(stalled)', async function () {
    // A TCP server that accepts and never sends a byte.
    const sockets: Socket[] = [];
    const server: Server = createServer((s) => sockets.push(s));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    try {
      const src = new GstSource(`tcpclientsrc host=127.0.0.1 port=${port} ! jpegdec`, { sourceId: 'mute', stallTimeoutMs: 400 });
      await expectSourceError(firstValueFrom(src.frames$()), 'stalled', 3000);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  it('stopped pipelines give their libuv threads back (no threadpool starvation)', async function () {
    // Each pending pull / pollBus blocks one of the 4 pool threads. The ~10 pipelines above ended
    // by error, stall, EOS or unsubscribe; if each left even one thread blocked, async fs would
    // now queue behind them forever.
    const t0 = Date.now();
    await Promise.all(Array.from({ length: 8 }, () => readFile(avi)));
    assert.ok(Date.now() - t0 < 500, `8 parallel readFile took ${Date.now() - t0} ms`);
  });

  it('a pipeline stopped before its bus thread started still lets the process exit', function () {
    // Regression: with every libuv thread busy, pollBus's work item starts only after stop();
    // GStreamer's default auto-flush-bus then dropped the state-change messages, the bus thread
    // blocked forever in gst_bus_timed_pop, and process.exit() hung joining it.
    const script = `
      import { pbkdf2 } from 'node:crypto';
      import { GstSource } from ${JSON.stringify(join(REPO_ROOT, 'src/streams/gstreamer.ts'))};
      let busy = 4;
      for (let i = 0; i < 4; i++) pbkdf2('x', 'y', 100000, 32, 'sha512', () => busy--);
      const sub = GstSource.testPattern({ sourceId: 'x' }).frames$().subscribe();
      sub.unsubscribe();
      const t = setInterval(() => { if (busy === 0) { clearInterval(t); setTimeout(() => process.exit(0), 200); } }, 10);
    `;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: REPO_ROOT,
      encoding: 'utf8',
      timeout: 20000,
      env: { ...process.env, UV_THREADPOOL_SIZE: '4' },
    });
    assert.equal(r.signal, null, `child hung and was killed (${r.signal})`);
    assert.equal(r.status, 0, r.stderr);
  });

  describe('withReconnect', function () {
    let server: ChildProcess | undefined;
    let port = 0;

    function startServer(): ChildProcess {
      const p = spawn(
        'gst-launch-1.0',
        ['-q', 'videotestsrc', 'is-live=true', '!', 'video/x-raw,width=64,height=64,framerate=30/1', '!', 'jpegenc', '!', 'multipartmux', '!', 'tcpserversink', 'host=127.0.0.1', `port=${port}`],
        { stdio: 'ignore' },
      );
      return p;
    }
    async function killServer(): Promise<void> {
      const p = server;
      server = undefined;
      if (!p || p.exitCode !== null) return;
      const exited = new Promise<void>((r) => p.once('exit', () => r()));
      p.kill('SIGKILL');
      await exited;
    }

    async function waitForPort(p: number): Promise<void> {
      for (let i = 0; i < 200; i++) {
        const ok = await new Promise<boolean>((resolve) => {
          const c = netConnect(p, '127.0.0.1', () => {
            c.destroy();
            resolve(true);
          });
          c.on('error', () => resolve(false));
        });
        if (ok) return;
        await sleep(25);
      }
      throw new Error(`port ${p} never opened`);
    }

    before(async function () {
      port = await freePort();
    });
    after(killServer);

    it('reconnects to a TCP source that goes away and comes back; seq keeps increasing', async function () {
      this.timeout(30000);
      server = startServer();
      await waitForPort(port);
      const events: string[] = [];
      const frames: RawFrame[] = [];
      const out$ = withReconnect(
        () => new GstSource(`tcpclientsrc host=127.0.0.1 port=${port} ! multipartdemux ! jpegdec`, { sourceId: 'tcp', stallTimeoutMs: 1500 }).frames$(),
        {
          initialDelayMs: 100,
          maxDelayMs: 400,
          factor: 2,
          onUp: () => events.push('up'),
          onDown: () => events.push('down'),
          onReconnect: (attempt, delay) => events.push(`retry${attempt}:${delay}`),
        },
      );
      const sub = out$.subscribe({ next: (f) => frames.push(f), error: (e: unknown) => events.push(`error:${String(e)}`) });
      try {
        await waitFor(() => frames.length >= 5, 8000, 'first frames');
        assert.equal(events[0], 'up');
        await killServer();
        await waitFor(() => events.includes('down'), 5000, 'onDown');
        // while the server is away, attempts fail and back off: 100, 200, 400, 400 ...
        await waitFor(() => events.filter((e) => e.startsWith('retry')).length >= 3, 5000, 'retries');
        const before = frames.length;
        server = startServer();
        await waitFor(() => frames.length >= before + 5, 10000, 'frames after reconnect');
        assert.deepEqual(events.filter((e) => e === 'up').length, 2);
        const retries = events.filter((e) => e.startsWith('retry'));
        assert.equal(retries[0], 'retry1:100');
        assert.equal(retries[1], 'retry2:200');
        assert.equal(retries[2], 'retry3:400');
        assert.ok(!events.some((e) => e.startsWith('error')), events.join(','));
        for (let i = 1; i < frames.length; i++) assert.equal(frames[i]!.seq, frames[i - 1]!.seq + 1);
        assert.equal(frames[0]!.seq, 0);
      } finally {
        sub.unsubscribe();
      }
    });

    it('does not retry a bad pipeline', async function () {
      let retries = 0;
      const out$ = withReconnect(() => new GstSource('nosuchelement1', { sourceId: 'x' }).frames$(), { onReconnect: () => retries++ });
      await expectSourceError(firstValueFrom(out$), 'bad_pipeline', 2000);
      assert.equal(retries, 0);
    });

    it('gives up after maxAttempts', async function () {
      const out$ = withReconnect(() => GstSource.videoFile(join(dir, 'missing.avi'), { sourceId: 'x' }).frames$(), {
        initialDelayMs: 10,
        maxAttempts: 2,
      });
      const err = await expectSourceError(lastValueFrom(out$), 'reconnect_exhausted', 5000);
      assert.ok(err.cause instanceof SourceError);
    });
  });
});
