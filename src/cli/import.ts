/**
 * `fairline import`: turn UNet weights in the import format (`weights.json` + `weights.f32`,
 * PyTorch names and layouts, see src/io/weights.ts) into a fairline model artefact.
 *
 * Settings come from, in order: the command line, the metadata in `weights.json`
 * (`base_width`, `in_channels`, `size`, `filter`), the tensor shapes (width and input channels),
 * the paper's defaults (256 px, Butterworth D0 = 30, n = 2; Sobel when the UNet takes 2 channels).
 * Every given value must agree with the tensors; names and shapes are checked against the UNet.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Option, type Command } from 'commander';
import { checkOutputDir, floatOption, intOption, log } from './common.js';
import { ConfigError, ModelError } from '../errors.js';
import { readManifest, saveModel, type ModelManifest } from '../io/artefact.js';
import { readTorchWeights } from '../io/weights.js';
import { paramDefs } from '../model/tfjs/unet.js';
import { DEFAULT_FILTER, DEFAULT_SCORING, filterChannels, type FairSpec, type FilterKind } from '../model/types.js';
import { inferUNetSpec, unetFromTorch, type TorchTensors } from '../model/weights.js';

export interface ImportOptions {
  /** Folder with weights.json (or the weights.json itself). */
  weights: string;
  /** Model folder to write. */
  out: string;
  size?: number;
  filter?: FilterKind;
  cutoff?: number;
  order?: number;
  /** Base width c; must match the tensors. */
  width?: number;
  /** UNet input channels; must match the tensors. */
  inChannels?: number;
  /** Model id prefix (default 'imported'). */
  name?: string;
  /** Replace a model already in `out` (default: refuse). */
  force?: boolean;
}

export interface ImportResult {
  manifest: ModelManifest;
  spec: FairSpec;
  /** Tensors dropped because the network does not use them (num_batches_tracked). */
  dropped: string[];
}

/** A value from the first source that has one, refusing disagreement with the tensors. */
function agree(what: string, fromTensors: number, ...given: [string, number | undefined][]): number {
  for (const [src, v] of given) {
    if (v !== undefined && v !== fromTensors) {
      throw new ModelError('bad_weights', `${src} says ${what} ${v}, but the weights have ${what} ${fromTensors} (from encoder.block1.0.weight)`);
    }
  }
  return fromTensors;
}

/**
 * Import weights as a model artefact (atomic write into `opts.out`).
 *
 * @throws ConfigError when `opts.out` already holds a model and `force` is not set;
 *   ModelError on missing files, malformed index, missing / unknown / wrongly shaped
 *   tensors, non-finite values, or settings that contradict the tensors;
 *   ConfigError on a size that is not a multiple of 16 or a filter that does not fit the UNet.
 * @example
 * ```ts
 * const { manifest } = await importWeights({ weights: 'official/hazelnut', out: 'models/hazelnut' });
 * ```
 */
export async function importWeights(opts: ImportOptions): Promise<ImportResult> {
  const out = checkOutputDir(opts.out, '--out');
  if (!opts.force && existsSync(join(out, 'model.json'))) {
    const id = (() => {
      try {
        return readManifest(out).id;
      } catch {
        return 'a model.json that does not load';
      }
    })();
    throw new ConfigError(`${out} already holds a model (${id}); pass --force to replace it, or choose another --out`);
  }
  const { tensors, meta } = await readTorchWeights(resolve(opts.weights));
  const shape = inferUNetSpec(tensors);
  const baseWidth = agree('base width', shape.baseWidth, ['--width', opts.width], ['weights.json base_width', meta.baseWidth]);
  const inChannels = agree('input channels', shape.inChannels, ['--in-channels', opts.inChannels], ['weights.json in_channels', meta.inChannels]);
  if (shape.outChannels !== 3 || (meta.outChannels !== undefined && meta.outChannels !== 3)) {
    throw new ModelError('bad_weights', `the UNet must restore 3 channels (BGR); the weights have ${shape.outChannels}`);
  }
  const kind: FilterKind = opts.filter ?? meta.filter?.kind ?? (inChannels === 2 ? 'sobel' : DEFAULT_FILTER.kind);
  if (filterChannels(kind) !== inChannels) {
    throw new ConfigError(`filter '${kind}' gives ${filterChannels(kind)} input channel(s) but the UNet takes ${inChannels}; use ${inChannels === 2 ? "'sobel' or 'sobel-x'" : "'butterworth', 'gaussian' or 'ideal'"}`);
  }
  const size = opts.size ?? meta.size ?? 256;
  if (!Number.isInteger(size) || size < 16 || size % 16 !== 0) throw new ConfigError(`size must be a positive multiple of 16 (the UNet pools 4 times), got ${size}`);
  const spec: FairSpec = {
    size,
    filter: { kind, cutoff: opts.cutoff ?? meta.filter?.cutoff ?? DEFAULT_FILTER.cutoff, order: opts.order ?? meta.filter?.order ?? DEFAULT_FILTER.order },
    unet: { baseWidth, inChannels, outChannels: 3 },
    scoring: { ...DEFAULT_SCORING },
  };

  // Names and shapes: building the UNet checks every tensor (and reports all problems at once).
  unetFromTorch(tensors, spec.unet).dispose();
  const keep: TorchTensors = {};
  const dropped: string[] = [];
  const used = new Set(paramDefs(spec.unet).map((d) => d.name));
  for (const [name, t] of Object.entries(tensors)) {
    if (!used.has(name)) {
      dropped.push(name);
      continue;
    }
    for (let i = 0; i < t.data.length; i++) {
      if (!Number.isFinite(t.data[i]!)) throw new ModelError('bad_weights', `tensor ${name} has a non-finite value (${t.data[i]}) at index ${i}`);
    }
    keep[name] = t;
  }
  const manifest = saveModel(out, { spec, tensors: keep, idPrefix: opts.name ?? 'imported' });
  return { manifest, spec, dropped };
}

/** The command's options are the function's. */
type ImportCliOptions = ImportOptions;

export function register(program: Command): void {
  program
    .command('import')
    .description('make a model from UNet weights in the import format (weights.json + weights.f32, PyTorch names)')
    .requiredOption('--weights <dir>', 'folder with weights.json and the float32 file it names')
    .requiredOption('--out <dir>', 'model folder to write')
    .option('--size <s>', 'model input size (multiple of 16; default: weights.json size, else 256)', intOption('--size', 16))
    .addOption(new Option('--filter <kind>', 'high-pass extractor (default: weights.json filter, else butterworth / sobel for 2 channels)').choices(['butterworth', 'gaussian', 'ideal', 'sobel', 'sobel-x']))
    .option('--cutoff <d0>', 'filter cut-off D0', floatOption('--cutoff', { min: 0, exclusiveMin: true }))
    .option('--order <n>', 'Butterworth order n', intOption('--order'))
    .option('--width <c>', 'UNet base width (checked against the tensors)', intOption('--width'))
    .option('--in-channels <n>', 'UNet input channels (checked against the tensors)', intOption('--in-channels'))
    .option('--name <prefix>', 'model id prefix', 'imported')
    .option('--force', 'replace a model already in --out', false)
    .action(async (o: ImportCliOptions) => {
      const { manifest, spec, dropped } = await importWeights(o);
      if (dropped.length) log(`ignored ${dropped.length} tensor(s) the network does not use: ${dropped.slice(0, 5).join(', ')}${dropped.length > 5 ? ', ...' : ''}`);
      log(`model ${manifest.id}: UNet c=${spec.unet.baseWidth}, ${spec.unet.inChannels} -> 3 channels, ${spec.size} px, ${spec.filter.kind} (D0 ${spec.filter.cutoff}, n ${spec.filter.order}) written to ${resolve(o.out)}`);
      log(`no threshold and no domain guard yet: 'fairline calibrate --model ${resolve(o.out)} --normal <good images>' sets both before live inspection ('fairline eval' uses the F1-max threshold meanwhile; without the guard, blank or foreign frames are judged by score alone)`);
      process.stdout.write(JSON.stringify({ id: manifest.id, dir: resolve(o.out), spec }) + '\n');
    });
}
