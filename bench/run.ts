/**
 * `npm run bench [-- --quick | --json FILE | --seconds N | --widths 32,64 | --no-torch | --full]`
 *
 * fairline's engines (tfjs-wasm, onnxruntime-cpu, a tfjs-cpu token run) against the PyTorch peer
 * (bench/torch_unet.py via /usr/bin/python3, measured alternately in the same run), a training
 * step, decode / high-pass / scoring, and the live inspect() graph at 50% and 100% of capacity.
 * See bench/lib/suite.ts; results and their history are in docs/performance.md.
 */
import { Command } from 'commander';
import { addBenchOptions, runFullBench, type BenchOptions } from './lib/suite.js';

const program = addBenchOptions(new Command('bench').description('fairline vs PyTorch: inference, training, stages, pipeline'));
program.parse(process.argv);
await runFullBench(program.opts<BenchOptions>());
// Worker threads of the wasm backend and onnxruntime keep no work queued; exit explicitly.
process.exit(0);
