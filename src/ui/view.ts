/**
 * The operator's view of a station or replay, wired in one place: the live state (src/ui/live.ts)
 * and its page server (src/ui/server.ts) when `ui` is configured, the reject recorder
 * (src/streams/recorder.ts) when `record` is, both fed from the inspection graph's hooks and
 * the sources' events, with their counters in the station's metrics.
 *
 * A station or replay only wraps its hooks: `inspectHooks(hooks)`, `sourceHooks(hooks)` and
 * `ended(camera)`. Per verdict that adds a few counter updates and, for a reject, a card and a
 * queued capture: no copying, no rendering, no disk I/O on the verdict's path.
 */
import type { RecordConfig, UiConfig } from '../config.js';
import type { FairlineMetrics } from '../metrics.js';
import type { InspectHooks } from '../operators/inspect.js';
import type { SourceHooks } from '../runtime/sources.js';
import type { RuntimeModel } from '../runtime/model.js';
import { Recorder, type CaptureData } from '../streams/recorder.js';
import { frameKey, type JudgedFrame } from '../streams/frame.js';
import type { Verdict } from '../verdict.js';
import { LiveView, type LiveCameraInfo } from './live.js';
import { serveUi, type UiServer } from './server.js';

export interface OperatorViewOptions {
  line: string;
  station: string;
  model: Pick<RuntimeModel, 'id' | 'size' | 'spec' | 'threshold' | 'thresholdSource' | 'engineName' | 'backend'>;
  cameras: readonly LiveCameraInfo[];
  ui?: UiConfig;
  record?: RecordConfig;
  metrics?: FairlineMetrics;
  log?: (msg: string) => void;
}

export interface OperatorView {
  /** The page's address, when served. */
  readonly url: string | undefined;
  readonly live: LiveView | undefined;
  readonly recorder: Recorder | undefined;
  /** `hooks` plus what the view needs (frames, judged frames, verdicts). */
  inspectHooks(hooks: InspectHooks): InspectHooks;
  /** `hooks` plus the source state for the page. */
  sourceHooks(hooks: SourceHooks): SourceHooks;
  /** A camera's stream ended (with the error, if it failed). */
  ended(camera: string, error?: string): void;
  /** Close the page and finish the capture queue (bounded in time). */
  close(): Promise<void>;
}

/**
 * Judged frames waiting for their verdict. The verdict follows its judged frame synchronously
 * (threshold -> verdict -> fail-safe -> hooks are maps), so this holds one entry at a time;
 * verdicts suppressed after a fail-safe never come, so it keeps only the last few.
 */
class JudgedFrames {
  private readonly m = new Map<string, JudgedFrame>();
  put(j: JudgedFrame): void {
    this.m.set(frameKey(j.frame), j);
    if (this.m.size > 64) this.m.delete(this.m.keys().next().value!);
  }
  take(v: Pick<Verdict, 'camera' | 'seq'>): JudgedFrame | undefined {
    const key = frameKey({ sourceId: v.camera, seq: v.seq });
    const j = this.m.get(key);
    this.m.delete(key);
    return j;
  }
}

const errorText = (err: unknown): string | undefined => (err === undefined ? undefined : err instanceof Error ? err.message : String(err));

/** What the recorder keeps of a judged frame (references only). */
function captureData(j: JudgedFrame | undefined): CaptureData | undefined {
  if (!j) return undefined;
  const d: CaptureData = { payload: j.frame.payload };
  if (j.map) {
    d.map = j.map;
    d.mapSize = j.image.width;
  }
  return d;
}

/** The view of a station that has neither page nor capture: hooks pass through unchanged. */
const NO_VIEW: OperatorView = {
  url: undefined,
  live: undefined,
  recorder: undefined,
  inspectHooks: (h) => h,
  sourceHooks: (h) => h,
  ended: () => undefined,
  close: async () => undefined,
};

/**
 * Start the page and/or the recorder (with neither configured, a view whose wrappers change nothing).
 * @throws ConfigError when the page's address cannot be bound or the capture folder not written.
 */
export async function startOperatorView(o: OperatorViewOptions): Promise<OperatorView> {
  if (!o.ui && !o.record) return NO_VIEW;
  const log = o.log ?? (() => undefined);
  const m = o.metrics;
  const live = o.ui
    ? new LiveView({
        line: o.line,
        station: o.station,
        cameras: o.cameras,
        model: {
          id: o.model.id,
          size: o.model.size,
          width: o.model.spec.unet.baseWidth,
          threshold: o.model.threshold ?? null,
          thresholdSource: o.model.thresholdSource,
          engine: o.model.engineName,
          backend: o.model.backend,
        },
      })
    : undefined;
  let recorder: Recorder | undefined;
  let server: UiServer | undefined;
  try {
    if (o.record) {
      recorder = await Recorder.open({
        ...o.record,
        log,
        hooks: {
          onWritten: (e, v) => {
            m?.captures.inc({ camera: v.camera, verdict: v.verdict });
            m?.captureBytes.set(recorder?.stats().bytes ?? 0);
            live?.onCaptured(e);
          },
          onDropped: (reason) => m?.capturesDropped.inc({ reason }),
          onRemoved: () => m?.captureBytes.set(recorder?.stats().bytes ?? 0),
        },
      });
      const st = recorder.stats();
      m?.captureBytes.set(st.bytes);
      log(`record: ${o.record.dir} (${st.captures} capture(s), ${(st.bytes / 2 ** 20).toFixed(1)} MiB; rejects ${o.record.rejects ? 'on' : 'off'}, every ${o.record.passEvery || 'no'} pass, ${o.record.keepDays} days, at most ${(o.record.maxBytes / 2 ** 20).toFixed(0)} MiB)`);
    }
    if (o.ui && live) {
      const rec = recorder;
      server = await serveUi({
        host: o.ui.listen.host,
        port: o.ui.listen.port,
        ...(o.ui.token !== undefined ? { token: o.ui.token } : {}),
        view: live,
        ...(rec ? { review: rec, extra: () => ({ record: { dir: o.record!.dir, ...rec.stats() } }) } : {}),
        log,
        hooks: {
          onClients: (n) => m?.uiClients.set(n),
          onUpdateDropped: (n) => m?.uiUpdatesDropped.inc(n),
          onMark: (_id, label) => m?.reviewMarks.inc({ label }),
        },
      });
      log(`operator page: ${server.url}${o.ui.token ? '' : ' (read-only: no ui.token)'}${o.ui.listen.host === '127.0.0.1' ? ` (remote: ssh -L ${server.port}:127.0.0.1:${server.port} <this host>)` : ''}`);
    }
  } catch (err) {
    await recorder?.close(1000);
    throw err;
  }

  const judged = new JudgedFrames();
  return {
    url: server?.url,
    live,
    recorder,
    inspectHooks: (h) => ({
      ...h,
      onFrame: (f) => {
        h.onFrame?.(f);
        live?.onFrame(f);
      },
      onJudged: (j) => {
        h.onJudged?.(j);
        judged.put(j);
      },
      onVerdict: (v) => {
        h.onVerdict?.(v);
        const j = judged.take(v);
        live?.onVerdict(v, j);
        recorder?.offer(v, captureData(j));
      },
    }),
    sourceHooks: (h) => ({
      ...h,
      onUp: (c) => {
        h.onUp?.(c);
        live?.onSourceState(c, 'up');
      },
      onDown: (c, err) => {
        h.onDown?.(c, err);
        live?.onSourceState(c, 'down', errorText(err));
      },
      onReconnect: (c, attempt, delay, err) => {
        h.onReconnect?.(c, attempt, delay, err);
        live?.onSourceState(c, 'reconnecting', `attempt ${attempt} in ${delay} ms${err ? `: ${errorText(err)}` : ''}`);
      },
      onDrop: (c, n) => {
        h.onDrop?.(c, n);
        live?.onDrop(c, n);
      },
    }),
    ended: (camera, error) => live?.onSourceState(camera, error ? 'failed' : 'ended', error),
    close: async () => {
      await server?.close();
      await recorder?.close();
    },
  };
}
