/**
 * The models of a station: a model per camera (`cameras[].model` over the station's `model`),
 * shared when cameras name the same artefact, and swapped while frames flow.
 *
 * - {@link ModelRegistry}: loaded models by artefact folder and id, reference-counted; two
 *   cameras on the same artefact share ONE loaded model (one session, one copy of the weights).
 * - Scheduling: each loaded model has its own FIFO of batches and runs one batch at a time;
 *   different models have no lock between them. A slow model therefore only delays the cameras
 *   on it: a fast model's batches start as soon as the runtime gets to them (onnxruntime runs
 *   sessions on its own threads, truly in parallel; tfjs computes on the JavaScript thread, so
 *   there a fast model waits at most for the slow model's batch that is running, never for its
 *   queue). Cameras on one model are served in the order their batches arrive.
 * - {@link CameraModel}: what a camera's inspection graph sees as its model. It picks the model
 *   when a batch STARTS inference, so a swap takes effect at a batch boundary: a batch is judged
 *   whole by the old or whole by the new model, and each output names the model (`model`) and
 *   carries that model's threshold, which the verdict then names.
 * - {@link CameraModel.swap}: the new model is loaded and checked beside the old one (checksums,
 *   spec, the deployment's `expect`, the camera's input size, a threshold, and a warm-up batch
 *   whose score must be finite); only then does the camera switch. A failing load leaves the old
 *   model serving and says why. The old model is released once its last batch is done.
 */
import { resolve } from 'node:path';
import { Counter, Gauge, type Registry } from 'prom-client';
import { ModelError, asFairlineError, type FairlineError } from '../errors.js';
import { readManifest } from '../io/artefact.js';
import type { ImageF32 } from '../model/types.js';
import type { InspectModel } from '../operators/inspect.js';
import type { ModelOutput } from '../streams/frame.js';
import { loadInspectModel, type ModelExpectation, type RuntimeModel } from './model.js';

/** What the registry needs of a model (a {@link RuntimeModel}, or a stand-in in tests). */
export type StationModel = Pick<RuntimeModel, 'id' | 'dir' | 'size' | 'threshold' | 'guard' | 'scoreRange' | 'inferBatch' | 'dispose'>;

/** Load a model artefact folder (checksums, spec, `expect`); the registry adds the rest. */
export type ModelLoader = (dir: string, expect: ModelExpectation) => Promise<StationModel>;

interface Entry {
  key: string;
  model: StationModel;
  users: number;
  /** Batches of this model run one after another (one session). */
  tail: Promise<unknown>;
  /** Batches waiting or running. */
  pending: number;
  /** The registry does not own it (a caller's model): never disposed here. */
  borrowed: boolean;
}

/**
 * Loaded models by (folder, id), reference-counted, each with its own batch queue.
 *
 * @example
 * ```ts
 * const reg = new ModelRegistry((dir, expect) => loadInspectModel({ dir, expect, requireThreshold: false }));
 * const m = await reg.acquire('models/hazelnut'); // the same object for a second camera
 * const out = await reg.run(m, images);
 * await reg.release(m);
 * ```
 */
export class ModelRegistry {
  private readonly entries = new Map<string, Entry>();
  private readonly byModel = new Map<StationModel, Entry>();
  private readonly loading = new Map<string, Promise<StationModel>>();

  constructor(private readonly load: ModelLoader, private readonly identify: (dir: string) => string = (dir) => readManifest(dir).id) {}

  private keyOf(dir: string): string | undefined {
    try {
      return `${resolve(dir)}#${this.identify(dir)}`;
    } catch {
      return undefined; // unreadable: the load reports why
    }
  }

  /** Register a model loaded elsewhere (the station's, or a caller's) so cameras share it. */
  adopt(model: StationModel, opts: { borrowed?: boolean } = {}): StationModel {
    const key = `${resolve(model.dir)}#${model.id}`;
    const have = this.entries.get(key);
    if (have) {
      have.users++;
      return have.model;
    }
    const e: Entry = { key, model, users: 1, tail: Promise.resolve(), pending: 0, borrowed: opts.borrowed ?? false };
    this.entries.set(key, e);
    this.byModel.set(model, e);
    return model;
  }

  /** The loaded model of `dir` (shared when the same artefact is already loaded), or load it. */
  async acquire(dir: string, expect: ModelExpectation = {}): Promise<StationModel> {
    const key = this.keyOf(dir);
    const have = key ? this.entries.get(key) : undefined;
    if (have) {
      if (expect.size !== undefined && have.model.size !== expect.size) {
        throw new ModelError('model_mismatch', `model ${dir}: input size ${have.model.size}, the camera needs ${expect.size}`);
      }
      have.users++;
      return have.model;
    }
    const k = key ?? resolve(dir);
    let p = this.loading.get(k);
    if (!p) {
      p = this.load(dir, expect);
      this.loading.set(k, p);
    }
    try {
      const model = await p;
      const again = this.byModel.get(model);
      if (again) {
        again.users++;
        return model;
      }
      return this.adopt(model);
    } finally {
      this.loading.delete(k);
    }
  }

  /** One user fewer; the last one disposes the model after its queued batches. */
  async release(model: StationModel): Promise<void> {
    const e = this.byModel.get(model);
    if (!e) return;
    e.users--;
    if (e.users > 0) return;
    this.entries.delete(e.key);
    this.byModel.delete(model);
    await e.tail.catch(() => undefined);
    if (!e.borrowed) await model.dispose();
  }

  /** Run one batch on a model, after the batches already queued on it (FIFO, one at a time). */
  run(model: StationModel, images: ImageF32[]): Promise<ModelOutput[]> {
    const e = this.byModel.get(model);
    if (!e) return Promise.reject(new ModelError('model_released', `model ${model.id} is no longer loaded`));
    e.pending++;
    const job = e.tail.then(async () => model.inferBatch(images) as Promise<ModelOutput[]>);
    e.tail = job.catch(() => undefined).finally(() => e.pending--);
    return job;
  }

  /** The loaded models, who uses them and how many batches wait on each. */
  list(): Array<{ id: string; dir: string; users: number; pendingBatches: number }> {
    return [...this.entries.values()].map((e) => ({ id: e.model.id, dir: e.model.dir, users: e.users, pendingBatches: e.pending }));
  }

  /** Dispose of every owned model (station stop). */
  async dispose(): Promise<void> {
    const all = [...this.entries.values()];
    this.entries.clear();
    this.byModel.clear();
    for (const e of all) {
      await e.tail.catch(() => undefined);
      if (!e.borrowed) await e.model.dispose().catch(() => undefined);
    }
  }
}

/** What a swap did. */
export type SwapResult =
  | { ok: true; camera: string; from: string; to: string; dir: string; threshold: number; warmupMs: number }
  | { ok: false; camera: string; serving: string; error: { code: string; message: string } };

export interface CameraModelOptions {
  camera: string;
  registry: ModelRegistry;
  /** The model serving at start and its threshold. */
  model: StationModel;
  threshold: number;
  /** The deployment's expectations (config `expect`), checked on every swap. */
  expect?: ModelExpectation;
  log?: (msg: string) => void;
  /** Every swap attempt, for `fairline_model_swaps_total{result}`. */
  onSwap?: (r: SwapResult) => void;
}

/** A warm-up image: mid grey, the model's size. */
function warmupImage(size: number): ImageF32 {
  return { width: size, height: size, channels: 3, data: new Float32Array(size * size * 3).fill(0.5) };
}

/**
 * A camera's model as its inspection graph sees it; {@link swap} replaces it between batches.
 *
 * @example
 * ```ts
 * const cm = new CameraModel({ camera: 'cam1', registry, model, threshold: 1.1 });
 * frames$.pipe(inspect({ model: cm, threshold: () => cm.threshold, ... }));
 * await cm.swap('models/tire-v2'); // { ok: true, from, to, ... } or { ok: false, error, serving }
 * ```
 */
export class CameraModel implements InspectModel {
  private current: { model: StationModel; threshold: number; since: number };
  private swapping: Promise<SwapResult> | undefined;
  /** Batches of each model of this camera not finished yet (the old one is released after them). */
  private readonly inFlight = new Map<StationModel, number>();
  private readonly retired = new Set<StationModel>();
  readonly camera: string;
  /** The input size frames are decoded to; every model of this camera must take it. */
  readonly size: number;
  batches = 0;

  constructor(private readonly o: CameraModelOptions) {
    this.camera = o.camera;
    this.size = o.model.size;
    this.current = { model: o.model, threshold: o.threshold, since: Date.now() };
  }

  get id(): string {
    return this.current.model.id;
  }
  get dir(): string {
    return this.current.model.dir;
  }
  get threshold(): number {
    return this.current.threshold;
  }
  get guard(): StationModel['guard'] {
    return this.current.model.guard;
  }
  get scoreRange(): StationModel['scoreRange'] {
    return this.current.model.scoreRange;
  }
  /** For `status`: the model serving, since when, its threshold. */
  describe(): { camera: string; model: string; dir: string; threshold: number; since: string; batches: number; swapping: boolean } {
    return { camera: this.camera, model: this.id, dir: this.dir, threshold: this.threshold, since: new Date(this.current.since).toISOString(), batches: this.batches, swapping: this.swapping !== undefined };
  }

  /** The model is chosen here, when the batch starts: the batch boundary of a swap. */
  async inferBatch(images: ImageF32[]): Promise<ModelOutput[]> {
    const { model, threshold } = this.current;
    this.inFlight.set(model, (this.inFlight.get(model) ?? 0) + 1);
    this.batches++;
    try {
      const out = await this.o.registry.run(model, images);
      return Array.isArray(out) ? out.map((x) => ({ ...x, model: model.id, threshold })) : out;
    } finally {
      const n = (this.inFlight.get(model) ?? 1) - 1;
      if (n > 0) this.inFlight.set(model, n);
      else {
        this.inFlight.delete(model);
        if (this.retired.delete(model)) void this.o.registry.release(model);
      }
    }
  }

  /**
   * Load `dir` beside the current model, check it, warm it up, then switch. One swap at a time
   * per camera (a second request while one runs waits for it and then runs).
   * `threshold`: explicit, else the new model's calibrated one.
   */
  swap(dir: string, threshold?: number): Promise<SwapResult> {
    const prev = this.swapping ?? Promise.resolve(undefined);
    const next = prev.then(() => this.doSwap(dir, threshold));
    this.swapping = next;
    void next.finally(() => {
      if (this.swapping === next) this.swapping = undefined;
    });
    return next;
  }

  private async doSwap(dir: string, threshold?: number): Promise<SwapResult> {
    const log = this.o.log ?? (() => undefined);
    const from = this.current.model;
    let loaded: StationModel | undefined;
    let result: SwapResult;
    try {
      if (threshold !== undefined && !(Number.isFinite(threshold) && threshold > 0)) throw new ModelError('bad_threshold', `threshold must be a number > 0, got ${threshold}`);
      loaded = await this.o.registry.acquire(dir, { ...this.o.expect, size: this.size });
      if (loaded.size !== this.size) throw new ModelError('model_mismatch', `model ${dir}: input size ${loaded.size}, camera ${this.camera} decodes to ${this.size} (a model of another size needs a restart)`);
      const t = threshold ?? loaded.threshold;
      if (t === undefined) throw new ModelError('no_threshold', `model ${dir} (${loaded.id}) has no calibrated threshold and the request gives none`);
      // Warm-up batch: the first run allocates and compiles; a model that cannot score does not go live.
      const t0 = performance.now();
      const out = await this.o.registry.run(loaded, [warmupImage(this.size)]);
      const warmupMs = performance.now() - t0;
      if (!Array.isArray(out) || out.length !== 1 || !Number.isFinite(out[0]!.score)) {
        throw new ModelError('warmup_failed', `model ${dir} (${loaded.id}): warm-up batch gave ${Array.isArray(out) ? `score ${out[0]?.score}` : 'no output'}`);
      }
      if (loaded === from) {
        // Same artefact: only the threshold changes (the extra reference goes).
        await this.o.registry.release(loaded);
        this.current = { model: from, threshold: t, since: Date.now() };
        result = { ok: true, camera: this.camera, from: from.id, to: from.id, dir: from.dir, threshold: t, warmupMs };
      } else {
        this.current = { model: loaded, threshold: t, since: Date.now() };
        if ((this.inFlight.get(from) ?? 0) > 0) this.retired.add(from);
        else await this.o.registry.release(from);
        result = { ok: true, camera: this.camera, from: from.id, to: loaded.id, dir: loaded.dir, threshold: t, warmupMs };
      }
      log(`camera ${this.camera}: model ${from.id} -> ${result.to} (threshold ${t}, warm-up ${warmupMs.toFixed(0)} ms); frames switch at the next batch`);
    } catch (err) {
      if (loaded) await this.o.registry.release(loaded);
      const e: FairlineError = asFairlineError(err);
      result = { ok: false, camera: this.camera, serving: from.id, error: { code: e.code, message: e.message } };
      log(`camera ${this.camera}: model swap to ${dir} refused, ${from.id} keeps serving: ${e.name} [${e.code}]: ${e.message}`);
    }
    this.o.onSwap?.(result);
    return result;
  }
}

/** `fairline_model_swaps_total{camera,result}` on a registry (created once per registry). */
export function swapCounter(registry: Registry): Counter<'camera' | 'result'> {
  const name = 'fairline_model_swaps_total';
  const have = registry.getSingleMetric(name) as Counter<'camera' | 'result'> | undefined;
  return have ?? new Counter({ name, help: 'Model swaps (SIGHUP, control subject) by camera and result: ok, or the error code of a refused swap.', labelNames: ['camera', 'result'], registers: [registry] });
}

/** `fairline_camera_model_info{camera,model}` = 1 for the model serving each camera (created once per registry). */
export function cameraModelGauge(registry: Registry): Gauge<'camera' | 'model'> {
  const name = 'fairline_camera_model_info';
  const have = registry.getSingleMetric(name) as Gauge<'camera' | 'model'> | undefined;
  return have ?? new Gauge({ name, help: 'The model serving each camera (value is always 1; the label changes on a swap).', labelNames: ['camera', 'model'], registers: [registry] });
}

/** What a reloaded config asks of one camera. */
export interface ReloadStep {
  camera: string;
  dir: string;
  /** Explicit threshold (the camera's, or the station's for the station model); else the model's calibrated one. */
  threshold?: number;
}

/**
 * The swaps a reloaded config asks for (SIGHUP): a camera whose model folder changed, whose
 * artefact in the same folder is another one (retrained in place), or whose explicit threshold
 * changed. Anything else that changed (cameras, sources, batching) needs a restart: listed in
 * `ignored`.
 */
export function planReload(
  current: ReadonlyMap<string, { dir: string; id: string; threshold: number }>,
  next: { model: string; threshold?: number; cameras: ReadonlyArray<{ id: string; model?: string; threshold?: number }> },
  identify: (dir: string) => string | undefined = (dir) => {
    try {
      return readManifest(dir).id;
    } catch {
      return undefined; // the swap's load says why
    }
  },
): { steps: ReloadStep[]; ignored: string[] } {
  const steps: ReloadStep[] = [];
  const ignored: string[] = [];
  for (const cam of next.cameras) {
    const cur = current.get(cam.id);
    if (!cur) {
      ignored.push(`camera ${cam.id} is new (needs a restart)`);
      continue;
    }
    const dir = resolve(cam.model ?? next.model);
    const threshold = cam.threshold ?? (cam.model === undefined ? next.threshold : undefined);
    const changed = dir !== resolve(cur.dir) || identify(dir) !== cur.id || (threshold !== undefined && threshold !== cur.threshold);
    if (changed) steps.push({ camera: cam.id, dir, ...(threshold !== undefined ? { threshold } : {}) });
  }
  for (const id of current.keys()) if (!next.cameras.some((c) => c.id === id)) ignored.push(`camera ${id} was removed (needs a restart)`);
  return { steps, ignored };
}

/**
 * `inspect --check` for a camera with its own model: the artefact loads and passes its checks
 * (checksums, spec, `expect`), and the camera has a threshold (its own or the model's).
 */
export async function checkCameraModel(
  cam: { id: string; model: string; threshold?: number },
  o: { engine: 'auto' | 'tfjs' | 'onnx'; expect?: ModelExpectation; log?: (msg: string) => void },
): Promise<{ what: string; status: 'ok' | 'fail'; detail: string }> {
  const what = `camera ${cam.id} model`;
  let m: RuntimeModel | undefined;
  try {
    m = await loadInspectModel({ dir: cam.model, engine: o.engine, requireThreshold: false, ...(o.expect ? { expect: o.expect } : {}), ...(o.log ? { log: o.log } : {}) });
    const t = cam.threshold ?? m.threshold;
    if (t === undefined) return { what, status: 'fail', detail: `${m.id}: not calibrated and the camera sets no threshold` };
    return { what, status: 'ok', detail: `${m.id}: ${m.size} px; engine ${m.engineName}; threshold ${t} (${cam.threshold !== undefined ? 'camera' : 'artefact'})` };
  } catch (err) {
    const e = asFairlineError(err);
    return { what, status: 'fail', detail: `${e.name} [${e.code}]: ${e.message}` };
  } finally {
    await m?.dispose();
  }
}
