/**
 * Temporary files that go away however the process ends. Node runs 'exit' handlers for a normal
 * end and for `process.exit()`, but a signal's default action (SIGTERM from systemd or `kill`,
 * SIGINT from Ctrl-C, SIGHUP when the terminal closes) ends the process without them, which left
 * `/tmp/fairline-wasm-XXXX/` folders behind.
 *
 * So the registry also listens to those signals: it removes what is registered, and when nothing
 * else in the process handles that signal it re-raises it, so the process still ends as the
 * signal asks (exit status 128 + n, as before). When something else handles it (a station's
 * graceful stop, `fairline train`'s resume hint), that handler decides how the process ends.
 */
import { rmSync } from 'node:fs';

const paths = new Set<string>();
const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
let installed = false;

function removeAll(): void {
  for (const p of paths) rmSync(p, { recursive: true, force: true });
  paths.clear();
}

function onSignal(sig: NodeJS.Signals): void {
  removeAll();
  if (process.listenerCount(sig) > 1) return; // someone else decides how this ends
  for (const s of SIGNALS) process.off(s, onSignal);
  process.off('exit', removeAll);
  installed = false;
  process.kill(process.pid, sig);
}

/**
 * Remove `path` (recursively) when the process ends, whichever way. Returns a function that
 * forgets it (call it once you removed the path yourself).
 *
 * @example
 * const dir = mkdtempSync(join(tmpdir(), 'fairline-wasm-'));
 * const forget = removeAtExit(dir);
 * // ... later, when done early:
 * rmSync(dir, { recursive: true, force: true }); forget();
 */
export function removeAtExit(path: string): () => void {
  paths.add(path);
  if (!installed) {
    installed = true;
    process.on('exit', removeAll);
    for (const s of SIGNALS) process.on(s, onSignal);
  }
  return () => {
    paths.delete(path);
  };
}
