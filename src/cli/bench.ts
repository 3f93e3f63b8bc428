/**
 * `fairline bench [all|model]`: the benchmark suites of bench/ (`npm run bench`,
 * `npm run bench:model`) from the CLI. `all` compares every engine with the PyTorch peer and
 * runs the live pipeline; `model` times the tfjs backend alone. Same options as the npm scripts
 * (they come from the suites themselves, so the two entry points cannot drift apart).
 */
import { Argument, type Command } from 'commander';
import { addBenchOptions, runFullBench, runModelBench, type BenchOptions } from '../../bench/lib/suite.js';

export function register(program: Command): void {
  addBenchOptions(
    program
      .command('bench')
      .description('benchmark: engines vs PyTorch, training, stages and the live pipeline (all), or the tfjs backend alone (model)')
      .addArgument(new Argument('[suite]', 'which suite').choices(['all', 'model']).default('all')),
  ).action(async (suite: 'all' | 'model', o: BenchOptions) => {
    if (suite === 'model') await runModelBench(o);
    else await runFullBench(o);
    // The wasm backend's pthread workers and onnxruntime's pool would keep the process alive.
    process.exit(0);
  });
}
