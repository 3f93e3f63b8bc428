/**
 * The onnxruntime training step in a process of its own (like the PyTorch peer, so peak RSS is
 * the step's alone): `node --import tsx bench/onnx_train_step.ts --width 32 --size 256 --batch 8
 * [--threads 2] [--seconds 20] [--formulation fast|portable] [--memory arena|planned|plain] [--recompute on|off] [--profile PREFIX]`.
 * Prints one JSON line: {"impl":"onnxruntime-cpu", ..., "images_per_s": X, "max_rss_mib": Y}.
 */
import { Command, Option } from 'commander';
import { OnnxTrainer } from '../src/model/onnx/trainer.js';
import { noise } from './lib/workloads.js';
import { measure } from './lib/measure.js';

const num = (v: string): number => Number(v);
const o = new Command('onnx_train_step')
  .option('--width <c>', 'UNet base width', num, 32)
  .option('--size <px>', 'input size', num, 256)
  .option('--batch <n>', 'batch size', num, 8)
  .option('--threads <n>', 'intra-op threads', num)
  .option('--seconds <s>', 'seconds to measure', num, 20)
  .addOption(new Option('--formulation <f>', 'graph formulation (default: fast on cpu, portable on a GPU provider)').choices(['fast', 'portable']))
  .option('--profile <prefix>', 'write onnxruntime\'s per-node profile')
  .addOption(new Option('--memory <m>', 'how onnxruntime holds the activations (src/model/onnx/trainer.ts TrainMemory)').choices(['arena', 'planned', 'plain']).default('arena'))
  .addOption(new Option('--recompute <on|off>', 'rebuild activations in the backward from x-hat instead of keeping them (default: the engine\'s, on from c = 16)').choices(['on', 'off']))
  .option('--spinning', 'let onnxruntime\'s intra-op threads busy-wait between ops (the engine\'s default is off)')
  .option('--providers <list>', 'execution providers in order (a GPU provider first selects the portable graph)', (v: string) => v.split(','), ['cpu'])
  .parse(process.argv)
  .opts<{ width: number; size: number; batch: number; threads?: number; seconds: number; formulation?: 'fast' | 'portable'; profile?: string; providers: string[]; memory: 'arena' | 'planned' | 'plain'; spinning?: boolean; recompute?: 'on' | 'off' }>();

const spec = { baseWidth: o.width, inChannels: 1, outChannels: 3 };
const trainer = await OnnxTrainer.create({ spec, size: o.size, epochs: 10, threads: o.threads, formulation: o.formulation, providers: o.providers, check: false, profile: o.profile, memory: o.memory, spinning: o.spinning ?? false, recompute: o.recompute === undefined ? undefined : o.recompute === 'on' });
const px = o.size * o.size;
const x = noise(o.batch * px, 3, 0.4);
const t = noise(o.batch * px * 3, 4, 0.8, 0.5);
// Two warm-up steps: onnxruntime plans its memory on the first run.
const r = await measure(() => trainer.step(x, t, o.batch), o.batch, { seconds: o.seconds, warmup: 2 });
if (o.profile) trainer.endProfiling();
trainer.dispose();
console.log(JSON.stringify({
  impl: trainer.name, formulation: trainer.formulation, memory: o.memory, spinning: o.spinning ?? false, recompute: trainer.recompute, width: o.width, size: o.size, batch: o.batch, threads: o.threads ?? null,
  iterations: r.iterations, seconds: +r.seconds.toFixed(2), images_per_s: +r.perSecond.toFixed(3),
  max_rss_mib: Math.round(process.resourceUsage().maxRSS / 1024),
}));
process.exit(0);
