/**
 * `npm run bench:model [-- --json FILE | --quick | --seconds N | --profile]`
 *
 * The tfjs backend alone: UNet inference and training step at 256^2, c = 32, batch 1 and 8
 * (training micro-batched to fit the wasm heap), FFT high-pass and scoring ms/frame.
 * `--profile` adds a per-kernel profile of one training step (c=32 micro-batch 2, c=8 batch 8).
 */
import { Command } from 'commander';
import { addBenchOptions, runModelBench, type BenchOptions } from './lib/suite.js';

const program = addBenchOptions(new Command('bench:model').description('tfjs UNet inference/training, high-pass and scoring speed'));
program.parse(process.argv);
await runModelBench(program.opts<BenchOptions>());
process.exit(0);
