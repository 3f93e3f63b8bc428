// onnxruntime session in a worker thread (src/io/onnx-detector.ts, thread: 'worker'). Plain
// JavaScript on purpose: it needs nothing of fairline's TypeScript, so no loader hooks.
// onnxruntime-node's run() is synchronous on the calling thread; here it blocks this thread
// only, and the main thread keeps decoding and resizing the next frames meanwhile.
import { parentPort } from 'node:worker_threads';

const ort = await import('onnxruntime-node').then((m) => (m.InferenceSession ? m : m.default));
let session;

parentPort.on('message', async (msg) => {
  if (msg.type === 'init') {
    const skipped = [];
    for (const [i, ep] of msg.providers.entries()) {
      try {
        // msg.options[i]: src/io/onnx-engine.ts sessionOptions() for this provider (spinning off
        // when the main thread decodes meanwhile, see OnnxDetectorOptions.spinning).
        session = await ort.InferenceSession.create(msg.model, msg.options[i]);
        parentPort.postMessage({ type: 'ready', ep, skipped, inputNames: session.inputNames, outputNames: session.outputNames });
        return;
      } catch (err) {
        skipped.push(`${ep}: ${String(err && err.message ? err.message : err).split('\n')[0]}`);
      }
    }
    parentPort.postMessage({ type: 'failed', skipped });
    return;
  }
  if (msg.type === 'run') {
    try {
      const input = new ort.Tensor('float32', msg.batch, msg.dims);
      const out = await session.run({ [msg.input]: input }, msg.fetches);
      const result = {};
      const transfer = [];
      for (const name of msg.fetches) {
        // A copy: output buffers may be external (not transferable); maps are small next to a batch.
        const data = out[name].data.slice();
        result[name] = data;
        transfer.push(data.buffer);
      }
      parentPort.postMessage({ type: 'result', id: msg.id, ok: true, result }, transfer);
    } catch (err) {
      parentPort.postMessage({ type: 'result', id: msg.id, ok: false, error: String(err && err.message ? err.message : err) });
    }
    return;
  }
  if (msg.type === 'close') {
    await session?.release();
    parentPort.close();
  }
});
parentPort.postMessage({ type: 'loaded' });
