/**
 * `--ui` on the command line: `fairline replay --ui` serves the page while replaying and keeps
 * it up until Ctrl-C; a bad address is refused before anything starts.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { runFairline } from '../helpers.js';
import { TEST_DIR, makeModel, tempDir } from '../runtime/fixture.js';

describe('fairline replay/inspect --ui', function () {
  this.timeout(90000);
  let dir: string;
  before(() => {
    dir = tempDir('ui-cli');
    makeModel(join(dir, 'model'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('replay --ui serves the page with the replay on it, and stays up until Ctrl-C', async () => {
    let state: { cameras: { id: string; state: string; frames: number; verdicts: { reject: number } }[]; cards: unknown[] } | undefined;
    let asked = false;
    const run = await runFairline(['replay', '--source', join(TEST_DIR, 'good'), '--model', join(dir, 'model'), '--threshold', '0.01', '--engine', 'tfjs', '--backend', 'cpu', '--no-images', '--ui', '127.0.0.1:0'], {
      timeoutMs: 80000,
      onStderr: (err, kill) => {
        const url = /replay done: the operator page stays at (http:\S+) until Ctrl-C/.exec(err)?.[1];
        if (!url || asked) return;
        asked = true;
        void fetch(`${url}api/state`)
          .then((r) => r.json())
          .then((s) => (state = s as typeof state))
          .finally(() => kill('SIGINT'));
      },
    });
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stderr, /operator page: http:\/\/127\.0\.0\.1:\d+\/ \(read-only: no ui\.token\)/);
    assert.match(run.stdout, /frames 6: 6 scored/);
    assert.ok(state, 'the page answered after the replay');
    assert.deepEqual([state!.cameras[0]!.id, state!.cameras[0]!.state, state!.cameras[0]!.frames, state!.cameras[0]!.verdicts.reject], ['replay', 'ended', 6, 6]);
    assert.equal(state!.cards.length, 6);
  });

  it('refuses a bad --ui address before starting', async () => {
    const run = await runFairline(['inspect', '--config', join(dir, 'none.yaml'), '--ui', 'http://0.0.0.0:8080']);
    assert.notEqual(run.code, 0);
    assert.match(run.stderr, /--ui must be host:port \(127\.0\.0\.1:8080, \[::1\]:8080\) or a port, got 'http:\/\/0\.0\.0\.0:8080'/);
  });
});
