/**
 * `fairline` command line. Each subcommand lives in its own file and is loaded lazily, so
 * `fairline --help` stays fast and a missing optional dependency only affects its command.
 */
import { Command } from 'commander';
import { describeFailure, quietTfjsNodeBanner } from './failure.js';

quietTfjsNodeBanner();

const program = new Command();
program
  .name('fairline')
  .description('FAIR line inspection: train, evaluate, calibrate and run frequency-aware restoration anomaly detection')
  .version('0.1.0')
  .showHelpAfterError();

type Loader = () => Promise<{ register(program: Command): void }>;
const commands: Record<string, Loader> = {
  demo: () => import('./demo.js'),
  train: () => import('./train.js'),
  eval: () => import('./eval.js'),
  import: () => import('./import.js'),
  export: () => import('./export.js'),
  calibrate: () => import('./calibrate.js'),
  inspect: () => import('./inspect.js'),
  replay: () => import('./replay.js'),
  ingest: () => import('./scaleout.js'),
  worker: () => import('./scaleout.js'),
  bench: () => import('./bench.js'),
  watch: () => import('./watch.js'),
};

async function main(argv: string[]): Promise<void> {
  const wanted = argv[2];
  const registered = new Set<unknown>();
  // Register only the requested command (or all, for help), so one broken optional module
  // cannot break the others.
  const names = wanted && commands[wanted] ? [wanted] : Object.keys(commands);
  for (const name of names) {
    try {
      const mod = await commands[name]!();
      if (registered.has(mod)) continue;
      registered.add(mod);
      mod.register(program);
    } catch (err) {
      if (names.length === 1) throw err;
    }
  }
  await program.parseAsync(argv);
}

main(process.argv).then(
  () => {
    // gstreamer-superficial and open handles can keep the loop alive after work is done.
    if (process.exitCode === undefined) process.exitCode = 0;
  },
  (err: unknown) => {
    const { text, exitCode } = describeFailure(err);
    process.stderr.write(`${text}\n`);
    process.exit(exitCode);
  },
);
