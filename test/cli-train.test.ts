/**
 * `fairline train` as a user meets it (child processes on the sample data, 32 px, c = 4, wasm):
 * the plan and estimate off a terminal, no overwrite without --force, resume rules, Ctrl-C with
 * the resume command (off and on a terminal), and no wasm temp folder left behind.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT, runFairline, SAMPLE_DATA } from './helpers.js';

describe('fairline train (CLI)', function () {
  this.timeout(180000);
  let dir: string;
  let tmp: string;
  const args = (out: string, extra: string[] = []): string[] => [
    'train', '--data', SAMPLE_DATA, '--category', 'hazelnut', '--out', out, '--epochs', '3', '--batch', '4',
    '--width', '4', '--size', '32', '--cutoff', '4', '--lr', '0.001', '--backend', 'wasm', '--workers', '1', ...extra,
  ];
  const train = (out: string, extra: string[] = [], opts: Parameters<typeof runFairline>[1] = {}) => runFairline(args(out, extra), { timeoutMs: 120000, env: { TMPDIR: tmp }, ...opts });
  const epochsIn = (out: string): number => (JSON.parse(readFileSync(join(out, 'checkpoint', 'checkpoint.json'), 'utf8')) as { epochsDone: number }).epochsDone;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'fairline-cli-train-'));
    tmp = mkdtempSync(join(tmpdir(), 'fairline-cli-train-tmp-'));
  });
  after(() => {
    rmSync(dir, { recursive: true, force: true });
    rmSync(tmp, { recursive: true, force: true });
  });

  it('off a terminal: prints the plan and an estimate, epoch JSON lines, no stray event line; then refuses to overwrite', async () => {
    const out = join(dir, 'a');
    const r = await train(out);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /^plan: 28 training images, 7 step\(s\) per epoch \(batch 4\) x 3 epochs = 21 steps$/m);
    assert.match(r.stderr, /^estimate: [\d.]+ s per step on \S+ -> about .* for the \d+ steps left$/m);
    assert.doesNotMatch(r.stderr, /event=|NF/);
    const epochs = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { event: string; epoch?: number }).filter((e) => e.event === 'epoch');
    assert.deepEqual(epochs.map((e) => e.epoch), [1, 2, 3]);
    assert.match(r.stderr, /model: \S+ written to/);
    assert.ok(existsSync(join(out, 'model.json')));

    const again = await train(out);
    assert.equal(again.code, 2);
    assert.match(again.stderr, /ConfigError \[bad_config\]: .*\/a already holds a model \(hazelnut-[0-9a-f]+\) and a checkpoint after epoch 3 of 3; pass --resume to continue it, --force to start over/);
    assert.doesNotMatch(again.stderr, /plan:|backend:/, 'refused before any work');

    const finished = await train(out, ['--resume']);
    assert.equal(finished.code, 2);
    assert.match(finished.stderr, /already finished all 3 epochs/);

    const other = await train(out, ['--resume', '--epochs', '4', '--lr', '0.002']);
    assert.equal(other.code, 2);
    assert.match(other.stderr, /other options: epochs: checkpoint 3, now 4; lr: checkpoint 0\.001, now 0\.002/);
    assert.doesNotMatch(other.stderr, /"spec"/, 'no checkpoint JSON dump');

    const forced = await train(out, ['--force', '--epochs', '1']);
    assert.equal(forced.code, 0, forced.stderr);
    assert.match(forced.stderr, /--force: starting over/);
    assert.equal(epochsIn(out), 1);
  });

  it('--resume without a checkpoint says so instead of starting fresh', async () => {
    const r = await train(join(dir, 'none'), ['--resume']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--resume: no checkpoint in .*none\/checkpoint, so there is nothing to resume; run without --resume/);
    assert.ok(!existsSync(join(dir, 'none', 'checkpoint')));
  });

  it('SIGINT off a terminal: exit 130, names the checkpoint and the resume command, which then works; no wasm temp folder left', async () => {
    const out = join(dir, 'b');
    let wasmDirs: string[] = [];
    const r = await train(out, ['--epochs', '40'], {
      onStdout: (o, kill) => {
        if (wasmDirs.length === 0 && /"epoch":2\b/.test(o)) {
          wasmDirs = readdirSync(tmp).filter((f) => f.startsWith('fairline-wasm-'));
          kill('SIGINT');
        }
      },
    });
    assert.equal(wasmDirs.length, 1, 'the threaded wasm backend made its temp folder');
    assert.equal(r.code, 130, r.stderr);
    const m = /interrupted \(Ctrl-C\): the checkpoint in (\S+) holds epoch (\d+) of 40\nresume with: (fairline train .*)$/m.exec(r.stderr);
    assert.ok(m, r.stderr);
    assert.equal(m[1], join(out, 'checkpoint'));
    assert.equal(Number(m[2]), epochsIn(out));
    assert.ok(m[3]!.endsWith(' --resume'));
    assert.deepEqual(readdirSync(tmp).filter((f) => f.startsWith('fairline-wasm-')), [], 'the wasm temp folder is removed');
    // The printed command is the one that resumes; with more epochs while still before the
    // first rate drop (after epoch 32) it continues as the longer run, and says so.
    assert.equal(m[3], `fairline ${args(out, ['--epochs', '40']).join(' ')} --resume`);
    const cont = await train(out, ['--epochs', '44', '--resume'], {
      onStdout: (o, kill) => {
        if (/"event":"epoch"/.test(o)) kill('SIGTERM');
      },
    });
    assert.match(cont.stderr, /resume: epochs: checkpoint 40, now 44: the \d+ epoch\(s\) done ran at the learning rates of a 44-epoch schedule/);
    assert.equal(cont.code, 143, 'SIGTERM: 128 + 15');
    assert.match(cont.stderr, /stopped \(SIGTERM\): the checkpoint/);
  });

  it('Ctrl-C on a terminal restores the cursor and line wrap, prints the resume command, exits 130', async function () {
    const out = join(dir, 'tty');
    const cmd = [process.execPath, join(REPO_ROOT, 'bin', 'fairline.js'), ...args(out, ['--epochs', '40'])].map((a) => `'${a}'`).join(' ');
    // `script` runs the command on a pseudo-terminal; a ^C written to it becomes SIGINT there.
    const p = spawn('script', ['-qfec', cmd, '/dev/null'], { cwd: REPO_ROOT, env: { ...process.env, TMPDIR: tmp, FAIRLINE_LOG: '' }, stdio: ['pipe', 'pipe', 'pipe'] });
    let text = '';
    let sent = false;
    p.stdout.on('data', (d: Buffer) => {
      text += d.toString();
      if (!sent && /epoch 2\/40/.test(text)) {
        sent = true;
        p.stdin.write('\x03');
      }
    });
    const code = await new Promise<number | null>((resolve) => p.on('exit', resolve));
    assert.ok(sent, `no epoch line on the terminal:\n${text}`);
    assert.equal(code, 130, text);
    const after = text.slice(text.lastIndexOf('^C') >= 0 ? text.lastIndexOf('^C') : text.indexOf('\x03'));
    assert.ok(after.includes('\x1b[?25h'), 'cursor shown again');
    assert.ok(after.includes('\x1b[?7h'), 'line wrap on again');
    assert.match(text, /resume with: fairline train .* --resume/);
    assert.match(text, /train \[[^\]]*\] \d+% \d+\/40 \| epoch \d+\/40 loss [\d.]+ img\/s [\d.]+ \| ETA /, 'the bar');
    assert.doesNotMatch(text, /event=|ETA NF|INF/);
    assert.match(text, /epoch 1\/40 {2}loss [\d.]+ {2}[\d.]+ img\/s/, 'epoch lines for people');
  });
});
