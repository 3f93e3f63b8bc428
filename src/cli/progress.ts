/**
 * Progress for long work: a bar on a terminal, one JSON line per event otherwise (CI, logs,
 * pipes), so machines can read it and people can watch it.
 */
import cliProgress from 'cli-progress';

export interface ProgressUpdate {
  [field: string]: string | number | undefined;
}

export interface Progress {
  /** Advance to `value` (absolute) with fields shown next to the bar. */
  update(value: number, fields?: ProgressUpdate): void;
  /**
   * A line-oriented event (e.g. an epoch summary): the record as a JSON line off-terminal; on a
   * terminal `text` (default: the record's fields as `key value`) above the bar.
   */
  event(record: Record<string, unknown>, text?: string): void;
  /** A message for people: above the bar on a terminal, a stderr line otherwise. */
  note(text: string): void;
  /** Remove the bar and give the terminal back (cursor shown, line wrap on). Idempotent. */
  stop(): void;
}

/**
 * Seconds as people read a duration: `45 s`, `3 min 20 s`, `2 h 05 min`, `3 d 4 h`.
 *
 * @example
 * formatDuration(7500); // '2 h 05 min'
 */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '--';
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

/**
 * Time left from the rate since the first update after start (the first unit of work often
 * includes warm-up, e.g. kernel compilation, so it is left out). `--` until there is a rate.
 */
export function etaTracker(total: number, now: () => number = () => performance.now()): (value: number) => string {
  let first: { t: number; v: number } | undefined;
  return (value) => {
    const t = now();
    if (!first) {
      first = { t, v: value };
      return '--';
    }
    const rate = (value - first.v) / ((t - first.t) / 1000);
    return rate > 0 ? formatDuration((total - value) / rate) : '--';
  };
}

/** An event record as a line for people: `epoch 1/40  loss 0.0123  ...` (numbers to 5 digits). */
function describeRecord(record: Record<string, unknown>): string {
  return Object.entries(record)
    .filter(([k]) => k !== 'event')
    .map(([k, v]) => `${k} ${typeof v === 'number' ? +v.toPrecision(5) : String(v)}`)
    .join('  ');
}

export function createProgress(opts: { total: number; label: string; format?: string; stream?: NodeJS.WriteStream; json?: boolean }): Progress {
  const stream = opts.stream ?? process.stderr;
  const useBar = !opts.json && stream.isTTY === true;
  if (!useBar) {
    return {
      update: () => undefined,
      event: (record) => process.stdout.write(JSON.stringify(record) + '\n'),
      note: (text) => process.stderr.write(`${text}\n`),
      stop: () => undefined,
    };
  }
  // The ETA is ours: cli-progress's restarts with every bar.start (each event) and shows "NFs"
  // (its "INF" cut to two characters) until it has a rate.
  const bar = new cliProgress.SingleBar(
    {
      stream,
      format: opts.format ?? `${opts.label} [{bar}] {percentage}% {value}/{total} | {info} | ETA {eta_ours}`,
      hideCursor: true,
      formatValue: (v, _o, type) => (type === 'value' ? String(Math.floor(Number(v))) : String(v)),
    },
    cliProgress.Presets.shades_classic,
  );
  const eta = etaTracker(opts.total);
  let last = 0;
  let payload: Record<string, unknown> = { info: '', eta_ours: '--' };
  let running = true;
  bar.start(opts.total, 0, payload);
  const above = (line: string): void => {
    if (!running) {
      stream.write(`${line}\n`);
      return;
    }
    bar.stop();
    stream.write(`${line}\n`);
    bar.start(opts.total, last, payload);
  };
  return {
    update: (value, fields) => {
      last = value;
      // An update without fields (e.g. at the end of an epoch) keeps the fields shown.
      const info = fields ? Object.entries(fields).map(([k, v]) => `${k} ${v}`).join(' ') : payload.info;
      payload = { ...payload, ...fields, info, eta_ours: eta(value) };
      if (running) bar.update(value, payload);
    },
    event: (record, text) => above(text ?? describeRecord(record)),
    note: (text) => above(text),
    stop: () => {
      if (!running) return;
      running = false;
      bar.stop();
    },
  };
}
