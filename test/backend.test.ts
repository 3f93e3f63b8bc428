/**
 * Backend selection (src/model/tfjs/backend.ts) and the wasm loader (src/model/tfjs/wasm/loader.ts).
 * On this machine @tensorflow/tfjs-node(-gpu) are not installed, so 'auto' must land on wasm
 * and say why tensorflow was skipped.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { BackendError } from '../src/errors.js';
import { currentBackend, initBackend, useBackend } from '../src/model/tfjs/backend.js';
import { createThreadedModule, wasmSmokeTest, withTimeout } from '../src/model/tfjs/wasm/loader.js';
import { REPO_ROOT } from './helpers.js';

/** Run `fn` with env vars set (undefined deletes), restoring them afterwards. */
async function withEnv<T>(vars: Record<string, string | undefined>, fn: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  for (const [k, v] of Object.entries(vars)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  try {
    return await fn();
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

describe('compute backend selection', function () {
  this.timeout(60000);

  it('FAIRLINE_BACKEND=cpu makes auto pick cpu', async () => {
    const logs: string[] = [];
    const info = await withEnv({ FAIRLINE_BACKEND: 'cpu' }, () => initBackend({ log: (m) => logs.push(m) }));
    assert.equal(info.name, 'cpu');
    assert.equal(info.threads, 1);
    assert.equal(tf.getBackend(), 'cpu');
    assert.equal(currentBackend(), info);
  });

  it("'auto' picks wasm here and lists the missing tensorflow packages in skipped", async () => {
    const logs: string[] = [];
    const info = await withEnv({ FAIRLINE_BACKEND: undefined }, () => initBackend({ backend: 'auto', log: (m) => logs.push(m) }));
    assert.equal(info.name, 'wasm');
    assert.equal(tf.getBackend(), 'wasm');
    assert.match(info.provider, /^@tensorflow\/tfjs-backend-wasm 4\.22\.\d+ \((threaded-simd|simd|plain)\)$/);
    assert.deepEqual(info.skipped.slice(0, 2).map((s) => s.split(':')[0]), ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']);
    assert.ok(info.skipped.some((s) => /tfjs-node: (not installed|.+)/.test(s)));
    assert.equal(logs.length, 1, 'one log line for the choice');
    assert.match(logs[0]!, /^backend: wasm .*skipped: @tensorflow\/tfjs-node-gpu/);
  });

  it('uses the threaded wasm build with one thread per CPU when there are several', async function () {
    const info = await withEnv({ FAIRLINE_BACKEND: undefined }, () => initBackend());
    const cpus = Math.min(8, os.cpus().length);
    if (cpus > 1 && !process.env['FAIRLINE_WASM_THREADS']) {
      assert.equal(info.provider.endsWith('(threaded-simd)'), true, `provider ${info.provider}, skipped ${info.skipped.join('; ')}`);
      assert.equal(info.threads, cpus);
    } else {
      assert.ok(info.threads >= 1);
    }
  });

  it('is idempotent: a second call returns the same info and logs nothing', async () => {
    const first = await withEnv({ FAIRLINE_BACKEND: undefined }, () => initBackend());
    const logs: string[] = [];
    const again = await withEnv({ FAIRLINE_BACKEND: undefined }, () => initBackend({ log: (m) => logs.push(m) }));
    assert.equal(again, first);
    assert.deepEqual(logs, []);
  });

  it('switches between cpu and wasm with useBackend', async () => {
    const data = new Float32Array([1, 2, 3, 4]);
    const sums: number[] = [];
    for (const name of ['cpu', 'wasm', 'cpu', 'wasm'] as const) {
      const info = await useBackend(name);
      assert.equal(info.name, name);
      assert.equal(tf.getBackend(), name);
      const t = tf.tensor1d(data);
      sums.push((await t.sum().data())[0]!);
      t.dispose();
    }
    assert.deepEqual(sums, [10, 10, 10, 10]);
  });

  it('rejects an unknown backend name with a BackendError naming the choices', async () => {
    await assert.rejects(
      () => initBackend({ backend: 'gpu' as never }),
      (err: unknown) => err instanceof BackendError && err.code === 'unknown_backend' && /"gpu".*auto, tensorflow, wasm, cpu/.test(err.message),
    );
    await assert.rejects(
      () => withEnv({ FAIRLINE_BACKEND: 'cuda' }, () => initBackend()),
      (err: unknown) => err instanceof BackendError && /FAIRLINE_BACKEND/.test(err.message) && /"cuda"/.test(err.message),
    );
  });

  it("throws a BackendError when 'tensorflow' is forced but not installed", async () => {
    await assert.rejects(
      () => initBackend({ backend: 'tensorflow' }),
      (err: unknown) => err instanceof BackendError && err.code === 'backend_unavailable' && /tfjs-node-gpu/.test(err.message) && /tfjs-node:/.test(err.message),
    );
    // The failed attempt leaves the previous backend active.
    assert.notEqual(tf.getBackend(), 'tensorflow');
  });

  it('rejects a bad thread count before touching any backend', async () => {
    for (const threads of [0, -2, 1.5, Number.NaN]) {
      await assert.rejects(() => initBackend({ backend: 'wasm', threads }),
        (err: unknown) => err instanceof BackendError && err.code === 'bad_threads');
    }
  });
});

/** initBackend() in a fresh `node -e` process (ESM input, tsx loader); returns its BackendInfo. */
function initInChild(env: Record<string, string>): { info: { name: string; provider: string; threads: number }; ms: number } {
  const url = pathToFileURL(join(REPO_ROOT, 'src/model/tfjs/backend.ts')).href;
  const script = `import { initBackend } from '${url}'; console.log('INFO ' + JSON.stringify(await initBackend()));`;
  const t0 = Date.now();
  const child = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: REPO_ROOT, encoding: 'utf8', timeout: 40000, env: { ...process.env, FAIRLINE_BACKEND: '', ...env },
  });
  // Exiting on its own (no signal) shows the pthread workers do not keep the process alive.
  assert.equal(child.signal, null, `child killed (hung?): ${child.stderr}`);
  assert.equal(child.status, 0, child.stderr);
  const line = child.stdout.split('\n').find((l) => l.startsWith('INFO '));
  assert.ok(line, `no INFO line in ${child.stdout}`);
  return { info: JSON.parse(line.slice(5)) as { name: string; provider: string; threads: number }, ms: Date.now() - t0 };
}

describe('wasm loader pieces', function () {
  this.timeout(60000);

  it('works in a fresh process started with flags workers must not inherit, and lets it exit', () => {
    const { info } = initInChild({});
    assert.equal(info.name, 'wasm');
    if (Math.min(8, os.cpus().length) > 1) assert.equal(info.provider.endsWith('(threaded-simd)'), true, info.provider);
  });

  it('FAIRLINE_WASM_THREADS=1 uses the single-threaded SIMD build', () => {
    const { info } = initInChild({ FAIRLINE_WASM_THREADS: '1' });
    assert.equal(info.name, 'wasm');
    assert.equal(info.threads, 1);
    assert.match(info.provider, /\((simd|plain)\)$/);
  });

  it('withTimeout rejects a promise that never settles and passes through one that does', async () => {
    await assert.rejects(() => withTimeout(new Promise(() => undefined), 20, 'never'), /never timed out after 20 ms/);
    assert.equal(await withTimeout(Promise.resolve(7), 1000, 'value'), 7);
  });

  it('the threaded instantiation gives up under its watchdog instead of hanging', async () => {
    await assert.rejects(() => createThreadedModule(2, 1), /timed out after 1 ms/);
  });

  it('the start-up smoke test passes on the active wasm backend and fails loudly on a wrong kernel', async () => {
    await useBackend('wasm');
    const { convErr, dwErr } = await wasmSmokeTest(tf);
    assert.ok(convErr < 1e-5 && dwErr < 1e-5, `conv ${convErr}, dW ${dwErr}`);
    // Swap in a wrong Conv2DBackpropFilter: the smoke test must notice.
    const good = tf.getKernel('Conv2DBackpropFilter', 'wasm')!;
    tf.unregisterKernel('Conv2DBackpropFilter', 'wasm');
    tf.registerKernel({
      ...good,
      kernelFunc: (args) => {
        const out = good.kernelFunc(args) as tf.TensorInfo;
        const heap = (args.backend as { typedArrayFromHeap(t: tf.TensorInfo): Float32Array }).typedArrayFromHeap(out);
        heap[0]! += 1;
        return out;
      },
    });
    try {
      await assert.rejects(() => wasmSmokeTest(tf), /smoke test mismatch/);
    } finally {
      tf.unregisterKernel('Conv2DBackpropFilter', 'wasm');
      tf.registerKernel(good);
    }
  });
});
