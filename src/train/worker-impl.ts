/**
 * Data worker: prepares training samples (synthesis + high-pass) from the shared image bank and
 * sends them back as transferable buffers. Protocol: `init` once, then `prep` requests.
 *
 * On Linux the worker lowers its own thread to nice 19 at `init`: the training step's threads
 * keep the cores and the worker runs in the gaps between their ops (and whenever the step waits
 * for data, when nothing else runs). Measured on the c = 8 training graph, 2 cores, 48 images
 * (docs/training-engines.md): 6.96 vs 6.38 images/s (mean of 3 alternating runs), data wait
 * still 1-2 %. Linux only: there a nice value is per thread; elsewhere setpriority would lower
 * the whole process.
 */
import { setPriority } from 'node:os';
import { parentPort } from 'node:worker_threads';
import { prepareTrainingSample, type ImageBank, type PrepOptions } from './prep.js';
import type { SampleRef } from './plan.js';

interface InitMsg { type: 'init'; bank: ImageBank; opts: PrepOptions; nice?: number }
interface PrepMsg { type: 'prep'; id: number; ref: SampleRef }

let bank: ImageBank | undefined;
let opts: PrepOptions | undefined;

parentPort!.on('message', (msg: InitMsg | PrepMsg) => {
  if (msg.type === 'init') {
    bank = msg.bank;
    opts = msg.opts;
    if (msg.nice !== undefined && process.platform === 'linux') {
      try {
        setPriority(msg.nice); // pid 0: this thread
      } catch {
        // Not allowed (some containers): the worker keeps the default priority.
      }
    }
    return;
  }
  try {
    const s = prepareTrainingSample(bank!, msg.ref, opts!);
    parentPort!.postMessage({ id: msg.id, ok: true, sample: s }, [s.input.buffer as ArrayBuffer, s.target.buffer as ArrayBuffer]);
  } catch (err) {
    parentPort!.postMessage({ id: msg.id, ok: false, error: err instanceof Error ? err.message : String(err) });
  }
});
