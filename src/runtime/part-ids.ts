/**
 * A camera's part ids (config `cameras[].partId`): the stage that gives its frames `partId`, from
 * the NATS trigger subject `fairline.<line>.<camera>.trigger` or from image file names, counted in
 * `fairline_part_ids_total{camera,result}` (`matched`, `unmatched_frame`, `unmatched_trigger`,
 * `bad_trigger`).
 */
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Counter, type Registry } from 'prom-client';
import { Observable, type OperatorFunction } from 'rxjs';
import type { CameraConfig } from '../config.js';
import { partIdFromFileName } from '../operators/part-id-file.js';
import { matchTriggers, type PartTrigger } from '../operators/part-id-trigger.js';
import type { Frame } from '../streams/frame.js';
import { natsConnectionOptions, type NatsConnectOptions } from '../streams/nats.js';

/** The trigger subject of a camera. */
export function triggerSubject(line: string, camera: string): string {
  return `fairline.${line}.${camera}.trigger`;
}

/** `{partId, ts}` from a trigger message, or why not. */
export function parseTrigger(text: string): PartTrigger | string {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return 'not JSON';
  }
  if (typeof v !== 'object' || v === null) return 'not an object';
  const o = v as Record<string, unknown>;
  const partId = typeof o.partId === 'number' && Number.isFinite(o.partId) ? String(o.partId) : o.partId;
  if (typeof partId !== 'string' || partId === '' || partId.length > 200) return 'partId: required string (at most 200 characters)';
  if (typeof o.ts !== 'number' || !Number.isFinite(o.ts)) return 'ts: required number (ms epoch)';
  return { partId, ts: o.ts };
}

/**
 * Triggers of one subject on their own connection (opened on subscribe, closed on unsubscribe);
 * bad messages are reported and skipped.
 */
export function natsTriggers(nats: NatsConnectOptions, subject: string, onBad: (why: string) => void, log: (m: string) => void): Observable<PartTrigger> {
  return new Observable<PartTrigger>((subscriber) => {
    let nc: NatsConnection | undefined;
    let closed = false;
    void connect(natsConnectionOptions({ ...nats, name: `${nats.name ?? 'fairline'}-triggers` }))
      .then(async (c) => {
        if (closed) return void (await c.close());
        nc = c;
        c.subscribe(subject, {
          callback: (err, m) => {
            if (err) return;
            const t = parseTrigger(m.string());
            if (typeof t === 'string') onBad(t);
            else subscriber.next(t);
          },
        });
        await c.flush();
        log(`part ids: ${subject}`);
      })
      .catch((err: unknown) => log(`part ids: ${subject} not subscribed: ${(err as Error).message}`));
    return () => {
      closed = true;
      void nc?.close().catch(() => undefined);
    };
  });
}

function partCounter(registry: Registry): Counter<'camera' | 'result'> {
  const name = 'fairline_part_ids_total';
  return (registry.getSingleMetric(name) as Counter<'camera' | 'result'> | undefined) ??
    new Counter({ name, help: 'Part ids: frames matched to a trigger or file name, frames and triggers left unmatched, trigger messages refused.', labelNames: ['camera', 'result'], registers: [registry] });
}

/** The part-id stage of a camera (identity when it has none). */
export function partIdStage(cam: Pick<CameraConfig, 'id' | 'partId'>, o: { line: string; nats?: NatsConnectOptions; registry: Registry; log?: (m: string) => void }): OperatorFunction<Frame, Frame> {
  const p = cam.partId;
  if (!p) return (f$) => f$;
  const log = o.log ?? (() => undefined);
  const count = partCounter(o.registry);
  for (const r of ['matched', 'unmatched_frame', ...('trigger' in p ? ['unmatched_trigger', 'bad_trigger'] : [])]) count.inc({ camera: cam.id, result: r }, 0);
  if ('fileName' in p) {
    return partIdFromFileName(new RegExp(p.fileName), {
      onUnmatched: () => count.inc({ camera: cam.id, result: 'unmatched_frame' }),
      onMatched: () => count.inc({ camera: cam.id, result: 'matched' }),
    });
  }
  if (!o.nats) {
    log(`camera ${cam.id}: partId.trigger needs NATS; frames go without part ids`);
    return (f$) => f$;
  }
  const subject = triggerSubject(o.line, cam.id);
  const triggers = natsTriggers(o.nats, subject, (why) => {
    count.inc({ camera: cam.id, result: 'bad_trigger' });
    log(`part ids: ${subject}: message refused (${why})`);
  }, log);
  return matchTriggers(triggers, {
    windowMs: p.trigger.windowMs,
    holdMs: p.trigger.holdMs,
    onMatched: () => count.inc({ camera: cam.id, result: 'matched' }),
    onUnmatchedFrame: () => count.inc({ camera: cam.id, result: 'unmatched_frame' }),
    onUnmatchedTrigger: () => count.inc({ camera: cam.id, result: 'unmatched_trigger' }),
  });
}
