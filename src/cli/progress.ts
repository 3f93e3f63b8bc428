/**
 * Progress for long work: a bar on a terminal, one JSON line per update otherwise (CI, logs,
 * pipes), so machines can read it and people can watch it.
 */
import cliProgress from 'cli-progress';

export interface ProgressUpdate {
  [field: string]: string | number | undefined;
}

export interface Progress {
  /** Advance to `value` (absolute) with fields shown next to the bar. */
  update(value: number, fields?: ProgressUpdate): void;
  /** A line-oriented event (e.g. an epoch summary): a JSON line off-terminal, a log line on it. */
  event(record: Record<string, unknown>): void;
  stop(): void;
}

export function createProgress(opts: { total: number; label: string; format?: string; stream?: NodeJS.WriteStream; json?: boolean }): Progress {
  const stream = opts.stream ?? process.stderr;
  const useBar = !opts.json && stream.isTTY === true;
  if (!useBar) {
    return {
      update: () => undefined,
      event: (record) => process.stdout.write(JSON.stringify(record) + '\n'),
      stop: () => undefined,
    };
  }
  const bar = new cliProgress.SingleBar(
    {
      stream,
      format: opts.format ?? `${opts.label} [{bar}] {percentage}% {value}/{total} | {info} | ETA {eta_formatted}`,
      hideCursor: true,
      etaBuffer: 20,
    },
    cliProgress.Presets.shades_classic,
  );
  bar.start(opts.total, 0, { info: '' });
  let last = 0;
  return {
    update: (value, fields) => (last = value, bar.update(value, { info: fields ? Object.entries(fields).map(([k, v]) => `${k} ${v}`).join(' ') : '', ...fields })),
    event: (record) => {
      bar.stop();
      stream.write(Object.entries(record).map(([k, v]) => `${k}=${typeof v === 'number' ? +v.toPrecision(5) : v}`).join(' ') + '\n');
      bar.start(opts.total, last, { info: '' });
    },
    stop: () => bar.stop(),
  };
}
