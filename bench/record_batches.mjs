// Record the batches and initial weights of a `fairline train` run without training (see
// bench/lib/record-batches.ts), for bench/torch_replay.py:
//   FAIRLINE_RECORD_DIR=/tmp/rec node --import ./bench/record_batches.mjs bin/fairline.js train \
//     --data ../shared/data/tire_mvtec3d --category tire --out /tmp/rec-model --epochs 20 --width 8 --seed 3 --engine onnx
// Only the main thread loads it: the data workers run fairline's own code.
import { isMainThread } from 'node:worker_threads';
if (isMainThread) {
  const { register } = await import('tsx/esm/api');
  register();
  await import('./lib/record-batches.ts');
}
