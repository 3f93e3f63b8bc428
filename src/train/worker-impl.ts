/**
 * Data worker: prepares training samples (synthesis + high-pass) from the shared image bank and
 * sends them back as transferable buffers. Protocol: `init` once, then `prep` requests.
 */
import { parentPort } from 'node:worker_threads';
import { prepareTrainingSample, type ImageBank, type PrepOptions } from './prep.js';
import type { SampleRef } from './plan.js';

interface InitMsg { type: 'init'; bank: ImageBank; opts: PrepOptions }
interface PrepMsg { type: 'prep'; id: number; ref: SampleRef }

let bank: ImageBank | undefined;
let opts: PrepOptions | undefined;

parentPort!.on('message', (msg: InitMsg | PrepMsg) => {
  if (msg.type === 'init') {
    bank = msg.bank;
    opts = msg.opts;
    return;
  }
  try {
    const s = prepareTrainingSample(bank!, msg.ref, opts!);
    parentPort!.postMessage({ id: msg.id, ok: true, sample: s }, [s.input.buffer as ArrayBuffer, s.target.buffer as ArrayBuffer]);
  } catch (err) {
    parentPort!.postMessage({ id: msg.id, ok: false, error: err instanceof Error ? err.message : String(err) });
  }
});
