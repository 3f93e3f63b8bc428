/**
 * The station's control subject `fairline.<line>.<station>.control` (NATS request/reply, JSON):
 *
 * - `{"op": "status"}` -> `{"ok": true, "line", "station", "cameras": [{camera, model, dir,
 *   threshold, since, batches, swapping}], "models": [{id, dir, users, pendingBatches}]}`
 * - `{"op": "load", "camera": "cam1", "model": "models/tire-v2", "threshold"?: 0.8}` -> the swap's
 *   result (src/runtime/models.ts): `{"ok": true, "camera", "from", "to", "dir", "threshold",
 *   "warmupMs"}` once the camera judges with the new model from its next batch, or `{"ok": false,
 *   "camera", "serving", "error": {code, message}}` with the old model still serving.
 *   A relative `model` path is resolved against the folder of the station's model (models
 *   usually sit side by side).
 * - Anything else -> `{"ok": false, "error": {"code": "bad_request", "message"}}`.
 *
 * Who may send what is the NATS account's business: grant `publish` on the control subject only
 * to the operators' users (README: a nats-server permissions example). The station itself only
 * subscribes to it.
 */
import { dirname, isAbsolute, resolve } from 'node:path';
import { connect, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import { asFairlineError } from '../errors.js';
import { natsConnectionOptions, type NatsConnectOptions } from '../streams/nats.js';
import type { SwapResult } from './models.js';

/** The control subject of a station. */
export function controlSubject(line: string, station: string): string {
  return `fairline.${line}.${station}.control`;
}

/** What the control subject can do to a station. */
export interface ControlTarget {
  line: string;
  station: string;
  /** The station model's folder: relative `model` paths in requests are resolved against its parent. */
  stationModelDir: string;
  status(): Record<string, unknown>;
  swap(camera: string, dir: string, threshold?: number): Promise<SwapResult>;
}

type Reply = Record<string, unknown> & { ok: boolean };

function bad(message: string): Reply {
  return { ok: false, error: { code: 'bad_request', message } };
}

/**
 * Answer one control request (JSON text). Never throws: every failure is a reply.
 *
 * @example
 * ```ts
 * await handleControl('{"op":"load","camera":"cam1","model":"tire-v2"}', station); // { ok: true, from, to, ... }
 * ```
 */
export async function handleControl(text: string, t: ControlTarget): Promise<Reply> {
  let req: unknown;
  try {
    req = JSON.parse(text);
  } catch {
    return bad(`not JSON: ${text.slice(0, 80)}`);
  }
  if (typeof req !== 'object' || req === null || Array.isArray(req)) return bad('expected an object like {"op": "status"}');
  const r = req as Record<string, unknown>;
  try {
    switch (r.op) {
      case 'status':
        return { ok: true, line: t.line, station: t.station, ...t.status() };
      case 'load': {
        if (typeof r.camera !== 'string' || r.camera === '') return bad('load: "camera" (a camera id) is required');
        if (typeof r.model !== 'string' || r.model === '') return bad('load: "model" (a model folder) is required');
        if (r.threshold !== undefined && typeof r.threshold !== 'number') return bad('load: "threshold" must be a number');
        const dir = isAbsolute(r.model) ? r.model : resolve(dirname(t.stationModelDir), r.model);
        return { ...(await t.swap(r.camera, dir, r.threshold as number | undefined)) };
      }
      default:
        return bad(`unknown op ${JSON.stringify(r.op)} (expected "status" or "load")`);
    }
  } catch (err) {
    const e = asFairlineError(err);
    return { ok: false, error: { code: e.code, message: e.message } };
  }
}

/**
 * Serve the control subject on its own connection (reconnecting forever; a station whose NATS is
 * down at start keeps running and answers once it is up).
 */
export function startControl(o: { nats: NatsConnectOptions; target: ControlTarget; log?: (msg: string) => void }): { subject: string; ready: Promise<void>; close(): Promise<void> } {
  const log = o.log ?? (() => undefined);
  const subject = controlSubject(o.target.line, o.target.station);
  let nc: NatsConnection | undefined;
  let sub: Subscription | undefined;
  let closed = false;
  const ready = (async () => {
    const c = await connect({ ...natsConnectionOptions({ ...o.nats, name: `${o.nats.name ?? 'fairline'}-control` }) });
    if (closed) {
      await c.close();
      return;
    }
    nc = c;
    sub = c.subscribe(subject, {
      callback: (err, m) => {
        if (err) return;
        const text = m.string();
        void handleControl(text, o.target).then((reply) => {
          log(`control: ${text.slice(0, 200)} -> ${reply.ok ? 'ok' : `refused (${JSON.stringify((reply as { error?: unknown }).error)})`}`);
          if (m.reply) m.respond(JSON.stringify(reply));
        });
      },
    });
    await c.flush();
    log(`control: ${subject} (request/reply: {"op":"status"}, {"op":"load","camera":...,"model":...})`);
  })().catch((err: unknown) => log(`control: ${subject} not served: ${(err as Error).message}`));
  return {
    subject,
    ready,
    async close() {
      closed = true;
      sub?.unsubscribe();
      await nc?.drain().catch(() => undefined);
    },
  };
}
