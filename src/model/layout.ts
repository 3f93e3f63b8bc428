/**
 * The FAIR UNet's layers and parameters as data (pure; no tensors): the one definition both
 * engines build from (tfjs: src/model/tfjs/unet.ts, ONNX: src/model/onnx/unet.ts), plus the seeded
 * initialisation, so a run starts from the same weights on either engine.
 */
import type { UNetSpec } from './types.js';
import { createRng } from './synthesis/rng.js';

/** One conv3x3 of the network, optionally followed by BatchNorm (+ ReLU). */
export interface ConvDef {
  /** state_dict prefix of the conv, e.g. `encoder.block1.0`. */
  conv: string;
  cin: number;
  cout: number;
  /** state_dict prefix of the BatchNorm that follows, e.g. `encoder.block1.1`; absent for `fin_out`. */
  bn?: string;
}

/**
 * Every conv of the network in forward order, with its channel counts for `spec`.
 *
 * @example
 * unetLayout({ baseWidth: 4, inChannels: 1, outChannels: 3 })[0]
 * // { conv: 'encoder.block1.0', cin: 1, cout: 4, bn: 'encoder.block1.1' }
 */
export function unetLayout(spec: UNetSpec): ConvDef[] {
  const c = spec.baseWidth;
  const defs: ConvDef[] = [];
  const enc = (k: number, cin: number, cout: number): void => {
    defs.push({ conv: `encoder.block${k}.0`, cin, cout, bn: `encoder.block${k}.1` });
    defs.push({ conv: `encoder.block${k}.3`, cin: cout, cout, bn: `encoder.block${k}.4` });
  };
  enc(1, spec.inChannels, c);
  enc(2, c, 2 * c);
  enc(3, 2 * c, 4 * c);
  enc(4, 4 * c, 8 * c);
  enc(5, 8 * c, 8 * c);
  const dec = (k: number, cin: number, cout: number): void => {
    defs.push({ conv: `decoder.up${k}.1`, cin, cout: cin, bn: `decoder.up${k}.2` });
    defs.push({ conv: `decoder.db${k}.0`, cin, cout: cin, bn: `decoder.db${k}.1` });
    defs.push({ conv: `decoder.db${k}.3`, cin, cout, bn: `decoder.db${k}.4` });
  };
  dec(1, 8 * c, 4 * c);
  dec(2, 4 * c, 2 * c);
  dec(3, 2 * c, c);
  dec(4, c, c);
  defs.push({ conv: 'decoder.fin_out.0', cin: c, cout: spec.outChannels });
  return defs;
}

/** A parameter's name, TF-layout shape and whether the optimiser updates it. */
export interface ParamDef {
  name: string;
  shape: number[];
  trainable: boolean;
}

/** All parameters and BN buffers of the network in state_dict order (conv weights in TF layout). */
export function paramDefs(spec: UNetSpec): ParamDef[] {
  const out: ParamDef[] = [];
  for (const d of unetLayout(spec)) {
    out.push({ name: `${d.conv}.weight`, shape: [3, 3, d.cin, d.cout], trainable: true });
    out.push({ name: `${d.conv}.bias`, shape: [d.cout], trainable: true });
    if (d.bn) {
      out.push({ name: `${d.bn}.weight`, shape: [d.cout], trainable: true });
      out.push({ name: `${d.bn}.bias`, shape: [d.cout], trainable: true });
      out.push({ name: `${d.bn}.running_mean`, shape: [d.cout], trainable: false });
      out.push({ name: `${d.bn}.running_var`, shape: [d.cout], trainable: false });
    }
  }
  return out;
}

/**
 * Number of trainable parameters (the figure PyTorch's `sum(p.numel() for p in parameters())`
 * gives); `includeBuffers` adds the BN running mean/var.
 *
 * @example
 * parameterCount({ baseWidth: 32, inChannels: 1, outChannels: 3 }) // 4_322_307
 */
export function parameterCount(spec: UNetSpec, opts: { includeBuffers?: boolean } = {}): number {
  let n = 0;
  for (const p of paramDefs(spec)) {
    if (p.trainable || opts.includeBuffers) n += p.shape.reduce((a, b) => a * b, 1);
  }
  return n;
}

/**
 * Seeded initial weights by state_dict name, TF layout (conv [kh, kw, in, out]): conv weights
 * N(0, 0.02) (FAIR's `weights_init`), biases U(+-1/sqrt(fan_in)) (PyTorch's default), BN gamma
 * N(1, 0.02), beta 0, running mean 0 / var 1.
 */
export function initUNetWeights(spec: UNetSpec, seed = 0): Map<string, Float32Array> {
  const gen = createRng(`unet-init:${seed}`);
  const rand = (): number => gen.uniform();
  const normal = (): number => {
    // Box-Muller; 1 - u keeps log() away from 0.
    const u = 1 - rand();
    const v = rand();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  };
  const values = new Map<string, Float32Array>();
  for (const d of unetLayout(spec)) {
    const w = new Float32Array(9 * d.cin * d.cout);
    for (let i = 0; i < w.length; i++) w[i] = 0.02 * normal();
    const bound = 1 / Math.sqrt(9 * d.cin);
    const b = new Float32Array(d.cout);
    for (let i = 0; i < b.length; i++) b[i] = (2 * rand() - 1) * bound;
    values.set(`${d.conv}.weight`, w);
    values.set(`${d.conv}.bias`, b);
    if (d.bn) {
      const g = new Float32Array(d.cout);
      for (let i = 0; i < g.length; i++) g[i] = 1 + 0.02 * normal();
      values.set(`${d.bn}.weight`, g);
      values.set(`${d.bn}.bias`, new Float32Array(d.cout));
      values.set(`${d.bn}.running_mean`, new Float32Array(d.cout));
      values.set(`${d.bn}.running_var`, new Float32Array(d.cout).fill(1));
    }
  }
  return values;
}
