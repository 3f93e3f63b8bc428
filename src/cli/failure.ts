/**
 * How the CLI ends on an error, and what it prints. A user's mistake (a FairlineError: bad
 * option, missing model, ...) or a failed system call on the user's files (ENOENT, EACCES,
 * ENOTDIR, ENOSPC, ...) is a one-line message; only an unexpected error, a bug, prints a stack
 * trace (`FAIRLINE_DEBUG=1` shows it for system errors too).
 */
import { FairlineError } from '../errors.js';

/** A failed system call: Node sets `code` and `syscall` on those. */
export function isSystemError(err: unknown): err is NodeJS.ErrnoException {
  return err instanceof Error && typeof (err as NodeJS.ErrnoException).code === 'string' && typeof (err as NodeJS.ErrnoException).syscall === 'string';
}

/**
 * The text for stderr and the exit code for an error that ended a command.
 *
 * @example
 * describeFailure(new ConfigError('--report x is a file, not a folder'));
 * // { text: 'fairline: ConfigError [bad_config]: --report x is a file, not a folder', exitCode: 2 }
 */
export function describeFailure(err: unknown, debug = Boolean(process.env.FAIRLINE_DEBUG)): { text: string; exitCode: number } {
  if (err instanceof FairlineError) return { text: `fairline: ${err.name} [${err.code}]: ${err.message}`, exitCode: 2 };
  if (isSystemError(err) && !debug) return { text: `fairline: ${err.message} (set FAIRLINE_DEBUG=1 for the stack trace)`, exitCode: 1 };
  return { text: `fairline: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`, exitCode: 1 };
}

/**
 * tfjs-backend-cpu greets every Node process with "looks like you are running TensorFlow.js in
 * Node.js ... install our node backend" on its first tensor. fairline already chose the backend
 * and logged why (`backend: ...; skipped: ...`), so that advice is noise in CLI output. Only this
 * one message is dropped: `tf.enableProdMode()` would silence every tfjs warning.
 */
export function quietTfjsNodeBanner(): void {
  const warn = console.warn.bind(console);
  console.warn = (...args: unknown[]): void => {
    if (typeof args[0] === 'string' && args[0].includes('looks like you are running TensorFlow.js in Node.js')) return;
    warn(...args);
  };
}
