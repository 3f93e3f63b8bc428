/**
 * `fairline watch --nats URL [--line L] [--camera C] [--rejects]`: print the verdicts on the bus
 * live, one line each, so a user can see what a station (or a replay) publishes without writing
 * a subscriber. `--json` prints the verdicts as they came (JSON lines, for `jq`); `--count N`
 * exits after N verdicts (scripts, tests).
 *
 * Subjects: `fairline.<line>.<camera>.verdict` (every verdict) or, with `--rejects`,
 * `fairline.<line>.<camera>.reject` (what the reject gate acts on); an omitted line or camera is
 * the wildcard `*`. A message that is not a v1 verdict is shown as such (`?`), never dropped
 * silently, and counted in the summary printed on exit.
 */
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { InvalidArgumentError, type Command } from 'commander';
import { SinkError } from '../errors.js';
import { natsConnectionOptions, type NatsConnectOptions } from '../streams/nats.js';
import { verdictProblems, type Verdict } from '../verdict.js';
import { intOption, log } from './common.js';

interface WatchCliOptions {
  nats: string;
  line?: string;
  camera?: string;
  rejects: boolean;
  json: boolean;
  count?: number;
  user?: string;
  creds?: string;
  timeout: number;
}

const TOKEN = /^[A-Za-z0-9_-]+$/;

function tokenOption(name: string): (v: string) => string {
  return (v) => {
    if (!TOKEN.test(v)) throw new InvalidArgumentError(`${name} must contain only letters, digits, '_' and '-' (a NATS subject token), got '${v}'`);
    return v;
  };
}

/** The subject `watch` subscribes to. */
export function watchSubject(o: { line?: string; camera?: string; rejects?: boolean }): string {
  return `fairline.${o.line ?? '*'}.${o.camera ?? '*'}.${o.rejects ? 'reject' : 'verdict'}`;
}

/** `HH:MM:SS.mmm` (UTC) of an epoch-ms time. */
function clock(ts: number): string {
  return Number.isFinite(ts) ? new Date(ts).toISOString().slice(11, 23) : '--:--:--.---';
}

/**
 * One verdict as one line:
 * `12:00:01.250 L1/cam1#42 REJECT score 1.3401 >= 1.1000 model hazelnut-2f9c 38 ms part P-17 colour/02.png (2 regions)`.
 *
 * @example
 * ```ts
 * process.stdout.write(`${formatVerdictLine(v)}\n`);
 * ```
 */
export function formatVerdictLine(v: Verdict & { partId?: string }): string {
  const parts = [clock(v.captureTs), `${v.line}/${v.camera}#${v.seq}`, v.verdict.toUpperCase().padEnd(6)];
  if (v.score !== null && v.threshold !== null) parts.push(`score ${v.score.toFixed(4)} ${v.score >= v.threshold ? '>=' : '<'} ${v.threshold.toFixed(4)}`);
  if (v.reason) parts.push(`(${v.reason}${v.failSafe ? ', fail-safe' : ''}${v.late ? ', late' : ''})`);
  else if (v.late) parts.push('(late)');
  parts.push(`model ${v.model}`, `${Math.round(v.latencyMs)} ms`);
  if (v.partId !== undefined) parts.push(`part ${v.partId}`);
  if (v.path) parts.push(v.path.split('/').slice(-2).join('/'));
  if (v.regions.length > 0) parts.push(`(${v.regions.length} region${v.regions.length === 1 ? '' : 's'})`);
  return parts.join(' ');
}

/** A message that is not a v1 verdict, shown rather than swallowed. */
function formatForeign(subject: string, text: string, problems: string[]): string {
  return `? ${subject}: not a fairline v1 verdict (${problems.slice(0, 3).join('; ')}): ${text.slice(0, 120)}`;
}

export interface WatchOptions {
  nats: NatsConnectOptions;
  line?: string;
  camera?: string;
  rejects?: boolean;
  json?: boolean;
  /** Stop after this many messages. */
  count?: number;
  /** How long the first connection may take (ms). */
  connectTimeoutMs?: number;
  out?: NodeJS.WritableStream;
  log?: (msg: string) => void;
}

/** Counters of a finished watch. */
export interface WatchSummary {
  verdicts: number;
  foreign: number;
}

/**
 * Subscribe and print until `count` messages, `stop()` or the connection closes.
 * @throws SinkError `nats_unreachable` / `nats_auth` when the server cannot be reached in time.
 */
export async function watchVerdicts(o: WatchOptions): Promise<{ subject: string; done: Promise<WatchSummary>; stop(): Promise<void> }> {
  const out = o.out ?? process.stdout;
  const subject = watchSubject(o);
  let nc: NatsConnection;
  try {
    // Reconnect forever once connected, but fail the first connection: a user at a terminal
    // wants to hear that the URL is wrong, not stare at an empty screen.
    nc = await connect({ ...natsConnectionOptions(o.nats), waitOnFirstConnect: false, timeout: o.connectTimeoutMs ?? 5000 });
  } catch (err) {
    const msg = (err as Error).message;
    const code = /auth/i.test(msg) ? 'nats_auth' : 'nats_unreachable';
    throw new SinkError(code, `watch: cannot connect to ${[o.nats.servers].flat().join(',')}: ${msg}`, { cause: err });
  }
  const summary: WatchSummary = { verdicts: 0, foreign: 0 };
  const sub = nc.subscribe(subject, o.count !== undefined ? { max: o.count } : {});
  await nc.flush();
  o.log?.(`watching ${subject} on ${[o.nats.servers].flat().join(',')}${o.count !== undefined ? ` (until ${o.count} message(s))` : ''}`);
  const done = (async (): Promise<WatchSummary> => {
    for await (const m of sub) {
      const text = m.string();
      let v: unknown;
      try {
        v = JSON.parse(text);
      } catch {
        v = undefined;
      }
      const problems = v === undefined ? ['not JSON'] : verdictProblems(v);
      if (problems.length === 0) summary.verdicts++;
      else summary.foreign++;
      if (o.json) out.write(`${problems.length === 0 ? JSON.stringify(v) : JSON.stringify({ subject: m.subject, foreign: text.slice(0, 1000), problems })}\n`);
      else out.write(`${problems.length === 0 ? formatVerdictLine(v as Verdict) : formatForeign(m.subject, text, problems)}\n`);
    }
    await nc.close().catch(() => undefined);
    return summary;
  })();
  return {
    subject,
    done,
    stop: async () => {
      sub.unsubscribe();
      await done;
    },
  };
}

export function register(program: Command): void {
  program
    .command('watch')
    .description('print the verdicts on NATS live, one line each (what a station or replay publishes)')
    .requiredOption('--nats <url>', 'NATS server, e.g. nats://127.0.0.1:4222')
    .option('--line <id>', 'only this line (default: every line)', tokenOption('--line'))
    .option('--camera <id>', 'only this camera (default: every camera)', tokenOption('--camera'))
    .option('--rejects', 'only what goes to the reject gate (the .reject subject)', false)
    .option('--json', 'print each verdict as a JSON line instead of a summary line', false)
    .option('--count <n>', 'exit after this many verdicts', intOption('--count'))
    .option('--user <user>', 'NATS user (password from FAIRLINE_NATS_PASSWORD)')
    .option('--creds <file>', 'NATS credentials file (JWT + seed)')
    .option('--timeout <ms>', 'longest wait for the first connection', intOption('--timeout'), 5000)
    .action(async (o: WatchCliOptions) => {
      const nats: NatsConnectOptions = { servers: o.nats, name: 'fairline-watch' };
      if (o.user !== undefined) {
        nats.user = o.user;
        nats.pass = process.env.FAIRLINE_NATS_PASSWORD ?? '';
      }
      if (o.creds !== undefined) nats.credsFile = o.creds;
      const w = await watchVerdicts({
        nats, rejects: o.rejects, json: o.json, connectTimeoutMs: o.timeout, log,
        ...(o.line !== undefined ? { line: o.line } : {}),
        ...(o.camera !== undefined ? { camera: o.camera } : {}),
        ...(o.count !== undefined ? { count: o.count } : {}),
      });
      const onSignal = (): void => void w.stop();
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      const s = await w.done;
      log(`watch: ${s.verdicts} verdict(s)${s.foreign ? `, ${s.foreign} message(s) that were not verdicts` : ''}`);
      process.exitCode = 0;
    });
}
