/**
 * A camera's up/down state for the log and /metrics, with the reason it is down: a camera that
 * never comes up (a missing /dev/video0, an unreachable RTSP URL) must say why, not only count
 * reconnect attempts.
 *
 * - `fairline_source_up{camera}`: 0 from the start until the first frame, 1 while frames come;
 * - `fairline_source_down{camera,reason}`: 1 while down, `reason` = the error code of the last
 *   failure (`pipeline_error`, `stalled`, `eos`, ...), absent while up;
 * - one log line per change of state or of reason, with the GStreamer message.
 */
import type { Gauge, Counter } from 'prom-client';
import { asFairlineError } from '../errors.js';

export interface SourceStateMetrics {
  sourceUp: Gauge<'camera'>;
  sourceDown: Gauge<'camera' | 'reason'>;
  sourceReconnects: Counter<'camera'>;
}

export interface SourceState {
  /** Frames arrive (again). */
  up(): void;
  /** The source failed (`err` undefined: it ended, EOS). */
  down(err: unknown): void;
  /** A reconnect is scheduled after `err`. */
  reconnect(attempt: number, delayMs: number, err: unknown): void;
  /** The source is finished for good (stop, end of a file, or an error retrying cannot fix). */
  ended(err?: unknown): void;
}

/** Reason code and message of a source failure; `undefined` = end of stream. */
export function downReason(err: unknown): { code: string; message: string } {
  if (err === undefined) return { code: 'eos', message: 'the stream ended' };
  const e = asFairlineError(err);
  return { code: e.code, message: e.message };
}

/**
 * Track one camera.
 *
 * @example
 * const state = trackSource('cam0', metrics, log);
 * cameraSource(cam, { hooks: { onUp: () => state.up(), onDown: (_c, e) => state.down(e), onReconnect: (_c, n, ms, e) => state.reconnect(n, ms, e) } });
 */
export function trackSource(camera: string, metrics: SourceStateMetrics, log: (msg: string) => void): SourceState {
  let state: 'starting' | 'up' | 'down' | 'ended' = 'starting';
  let reason: { code: string; message: string } | undefined;
  metrics.sourceUp.set({ camera }, 0);
  const setDown = (err: unknown): void => {
    const r = downReason(err);
    if (state === 'down' && reason?.code === r.code && reason.message === r.message) return;
    if (reason) metrics.sourceDown.remove({ camera, reason: reason.code });
    const was = state;
    state = 'down';
    reason = r;
    metrics.sourceUp.set({ camera }, 0);
    metrics.sourceDown.set({ camera, reason: r.code }, 1);
    log(`camera ${camera}: down${was === 'starting' ? ' (never came up)' : ''}: ${r.message} [${r.code}]`);
  };
  return {
    up() {
      if (state === 'up' || state === 'ended') return;
      if (reason) metrics.sourceDown.remove({ camera, reason: reason.code });
      reason = undefined;
      state = 'up';
      metrics.sourceUp.set({ camera }, 1);
      log(`camera ${camera}: up`);
    },
    down: setDown,
    reconnect(attempt, delayMs, err) {
      setDown(err);
      metrics.sourceReconnects.inc({ camera });
      log(`camera ${camera}: reconnect attempt ${attempt} in ${delayMs} ms (${reason!.code})`);
    },
    ended(err) {
      if (err !== undefined) setDown(err);
      else if (reason) metrics.sourceDown.remove({ camera, reason: reason.code });
      state = 'ended';
      metrics.sourceUp.set({ camera }, 0);
    },
  };
}
