/**
 * Station sources: glob listing, the image-folder source (pacing by acknowledgement, loop,
 * unreadable files), the synthetic source, and a GStreamer camera through the config mapping.
 */
import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync, copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Subject, firstValueFrom, lastValueFrom, take, toArray } from 'rxjs';
import type { CameraConfig } from '../../src/config.js';
import { ConfigError } from '../../src/errors.js';
import type { Frame } from '../../src/streams/frame.js';
import { cameraSource, globToRegExp, imageFilesSource, listImageFiles, syntheticFrameData, syntheticSource } from '../../src/runtime/sources.js';
import { tempDir, TEST_DIR } from './fixture.js';

describe('runtime/sources', function () {
  this.timeout(30000);
  let dir: string;
  before(() => {
    dir = tempDir('sources');
    mkdirSync(join(dir, 'sub'));
    for (const n of ['b.png', 'a.PNG', 'c.jpg', 'notes.txt', '.hidden.png', 'sub/d.png']) writeFileSync(join(dir, n), n);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('lists files by glob, sorted, case-insensitive, recursing only for patterns with /', () => {
    assert.deepEqual(listImageFiles(dir).map((p) => p.slice(dir.length + 1)), ['a.PNG', 'b.png', 'c.jpg']);
    assert.deepEqual(listImageFiles(dir, '*.png').map((p) => p.slice(dir.length + 1)), ['a.PNG', 'b.png']);
    assert.deepEqual(listImageFiles(dir, '**/*.png').map((p) => p.slice(dir.length + 1)), ['a.PNG', 'b.png', 'sub/d.png']);
    assert.equal(listImageFiles(TEST_DIR, '**/*.png').length, 23);
    assert.ok(globToRegExp('img_[0-9]?.{png,bmp}').test('img_42.bmp'));
    assert.ok(!globToRegExp('img_[!0-9]*.png').test('img_1.png'));
    assert.throws(() => globToRegExp('*.{png'), ConfigError);
  });

  it('image folder: emits encoded bytes with path and label, paced by acknowledgements', async () => {
    const files = listImageFiles(TEST_DIR, '**/*.png').slice(0, 5).map((path, i) => ({ path, label: (i % 2) as 0 | 1 }));
    const ack$ = new Subject<void>();
    const got: Frame[] = [];
    const done = new Promise<void>((resolve) => imageFilesSource(files, { sourceId: 'cam', ack$, window: 2 }).subscribe({ next: (f) => got.push(f), complete: resolve }));
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(got.length, 2, 'only the window goes out before any ack');
    ack$.next();
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(got.length, 3);
    ack$.next();
    ack$.next();
    ack$.next();
    await done;
    assert.deepEqual(got.map((f) => f.seq), [0, 1, 2, 3, 4]);
    assert.deepEqual(got.map((f) => f.label), [0, 1, 0, 1, 0]);
    assert.deepEqual(Buffer.from(got[3]!.payload.data), readFileSync(files[3]!.path));
    assert.equal(got[0]!.payload.format, 'encoded');
    assert.equal(got[0]!.path, files[0]!.path);
  });

  it('image folder: loops with increasing seq, honours fps, and emits unreadable files as empty frames', async () => {
    const d = tempDir('sources-loop');
    try {
      copyFileSync(join(TEST_DIR, 'good', '04.png'), join(d, 'x.png'));
      const files = [{ path: join(d, 'x.png') }, { path: join(d, 'gone.png') }];
      const t0 = Date.now();
      const frames = await lastValueFrom(imageFilesSource(files, { sourceId: 'cam', loop: true, fps: 50 }).pipe(take(5), toArray()));
      const took = Date.now() - t0;
      assert.deepEqual(frames.map((f) => f.seq), [0, 1, 2, 3, 4]);
      assert.deepEqual(frames.map((f) => f.payload.data.length > 0), [true, false, true, false, true]);
      assert.ok(took >= 70, `5 frames at 50 fps take >= 80 ms, took ${took}`);
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });

  it('synthetic: deterministic labelled BGR frames at the configured rate', async () => {
    const opts = { sourceId: 'sim', width: 32, height: 24, fps: 100, count: 20, defectRate: 0.5, seed: 7 };
    const a = await lastValueFrom(syntheticSource(opts).pipe(toArray()));
    const b = await lastValueFrom(syntheticSource(opts).pipe(toArray()));
    assert.equal(a.length, 20);
    assert.deepEqual(a.map((f) => f.label), b.map((f) => f.label));
    assert.deepEqual(a[3]!.payload.data, b[3]!.payload.data);
    const defects = a.filter((f) => f.label === 1).length;
    assert.ok(defects > 2 && defects < 18, `about half defective, got ${defects}`);
    assert.deepEqual({ ...a[0]!.payload, data: undefined }, { data: undefined, width: 32, height: 24, format: 'bgr' });
    assert.equal(a[0]!.payload.data.length, 32 * 24 * 3);
    // A defect changes pixels of the same (seed, seq) frame.
    assert.notDeepEqual(syntheticFrameData(64, 64, 1, 0, true), syntheticFrameData(64, 64, 1, 0, false));
    const none = await lastValueFrom(syntheticSource({ ...opts, defectRate: 0 }).pipe(toArray()));
    assert.ok(none.every((f) => f.label === 0));
  });

  it('maps a gstreamer camera to frames (videotestsrc, replay mode, paced)', async () => {
    const cam: CameraConfig = {
      id: 'gst0',
      mode: 'replay',
      source: { type: 'gstreamer', pipeline: 'videotestsrc num-buffers=4 ! video/x-raw,width=48,height=32,framerate=30/1' },
    };
    const ups: string[] = [];
    const frames = await lastValueFrom(cameraSource(cam, { hooks: { onUp: (c) => ups.push(c) } }).pipe(toArray()));
    assert.deepEqual(frames.map((f) => f.seq), [0, 1, 2, 3]);
    assert.deepEqual([frames[0]!.payload.width, frames[0]!.payload.height, frames[0]!.payload.format], [48, 32, 'rgb']);
    assert.equal(frames[0]!.payload.data.length, 48 * 32 * 3);
    assert.deepEqual(ups, ['gst0']);
    // images camera from the config mapping, with labels from a callback.
    const img: CameraConfig = { id: 'img0', mode: 'replay', source: { type: 'images', dir: join(TEST_DIR, 'good'), pattern: '*.png', loop: false } };
    const first = await firstValueFrom(cameraSource(img, { labelFor: () => 0 }));
    assert.deepEqual([first.sourceId, first.seq, first.label], ['img0', 0, 0]);
  });
});
