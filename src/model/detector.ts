/**
 * The FAIR detector for inference: high-pass -> restoration -> scoring, on a batch of images at
 * model size. The restoration engine is pluggable ({@link Restorer}): the tfjs UNet on any tfjs
 * backend, or onnxruntime (src/io/onnx-engine.ts). The high-pass and the scoring (typed arrays,
 * src/model/score-fast.ts) are shared by every restorer, so restorers can only differ in the
 * restoration itself. A {@link DetectorGraph} (the whole detector as one ONNX graph) replaces all
 * three.
 */
import { BadInputError } from '../errors.js';
import { HighPass } from './highpass.js';
import { scoreArrays } from './score-fast.js';
import type { FairSpec, ImageF32 } from './types.js';

/** Restores BGR images from the high-pass input. */
export interface Restorer {
  /** Engine name for logs and metrics, e.g. 'tfjs-wasm', 'onnxruntime-cpu'. */
  readonly engine: string;
  /**
   * @param input NHWC float32, `n` images of size S x S x cin
   * @returns NHWC float32, `n` images of S x S x 3 (BGR, unclamped)
   */
  restore(input: Float32Array, n: number, size: number, cin: number): Promise<Float32Array>;
  dispose(): void;
}

/** Scores, maps (and restorations) of a batch, as one whole-detector call returns them. */
export interface BatchDetection {
  /** Image scores, length N. */
  scores: Float32Array;
  /** Smoothed maps, N*S*S (image i at offset i*S*S). */
  maps: Float32Array;
  /** Restorations N*S*S*3 NHWC BGR, when asked for and available. */
  restored?: Float32Array;
}

/**
 * The whole detection (high-pass, restoration, scoring) in one call, e.g. the exported ONNX
 * detector graph in an onnxruntime session (src/io/onnx-detector.ts). A {@link FairDetector}
 * built on one skips the TypeScript high-pass and scoring.
 */
export interface DetectorGraph {
  readonly engine: string;
  /** @param batch NHWC BGR float32 [0,1], n images at model size */
  detectBatch(batch: Float32Array, n: number, keepRestored: boolean): Promise<BatchDetection>;
  dispose(): void;
}

function isDetectorGraph(r: Restorer | DetectorGraph): r is DetectorGraph {
  return typeof (r as DetectorGraph).detectBatch === 'function';
}

/** One image's detection. */
export interface Detection {
  /** Image score: max of the smoothed anomaly map. Higher = more anomalous. */
  score: number;
  /** Smoothed anomaly map, S*S row-major. */
  map: Float32Array;
  /** The restoration (S*S*3 HWC BGR), when asked for (pictures). */
  restored?: Float32Array;
}

export interface DetectOptions {
  /** Keep the restored images (for pictures); off on the live path. */
  keepRestored?: boolean;
}

/** Check one image before it joins a batch, so a bad frame cannot spoil its neighbours. */
export function validateModelImage(img: ImageF32, size: number): void {
  if (img.width !== size || img.height !== size || img.channels !== 3) {
    throw new BadInputError('wrong_size', `image is ${img.width}x${img.height}x${img.channels}, the model needs ${size}x${size}x3`);
  }
  if (img.data.length !== size * size * 3) throw new BadInputError('wrong_size', `image buffer has ${img.data.length} values, expected ${size * size * 3}`);
  const d = img.data;
  for (let i = 0; i < d.length; i++) {
    if (!Number.isFinite(d[i]!)) throw new BadInputError('non_finite', `image has a non-finite value (${d[i]}) at index ${i}`);
  }
}

export class FairDetector {
  readonly highpass: HighPass;
  /**
   * @param restorer the UNet engine (TypeScript high-pass and scoring around it), or a whole
   *   {@link DetectorGraph} that does all three in one call.
   */
  constructor(
    readonly spec: FairSpec,
    readonly restorer: Restorer | DetectorGraph,
  ) {
    this.highpass = new HighPass(spec.size, spec.filter);
    if (this.highpass.channels !== spec.unet.inChannels) {
      throw new BadInputError('bad_spec', `filter ${spec.filter.kind} gives ${this.highpass.channels} channel(s) but the UNet takes ${spec.unet.inChannels}`);
    }
  }

  /**
   * Detect anomalies in a batch of images at model size (validated by the caller with
   * {@link validateModelImage}; this re-checks shapes only).
   */
  async detect(images: readonly ImageF32[], opts: DetectOptions = {}): Promise<Detection[]> {
    const n = images.length;
    if (n === 0) return [];
    const S = this.spec.size;
    const px = S * S * 3;
    const batch = new Float32Array(n * px);
    images.forEach((img, i) => {
      if (img.data.length !== px) throw new BadInputError('wrong_size', `image ${i} has ${img.data.length} values, expected ${px}`);
      batch.set(img.data, i * px);
    });
    if (isDetectorGraph(this.restorer)) {
      const r = await this.restorer.detectBatch(batch, n, opts.keepRestored ?? false);
      return Array.from({ length: n }, (_, i) => {
        const d: Detection = { score: r.scores[i]!, map: r.maps.slice(i * S * S, (i + 1) * S * S) };
        if (opts.keepRestored && r.restored) d.restored = r.restored.slice(i * px, (i + 1) * px);
        return d;
      });
    }
    const input = this.highpass.fromBgr(batch, n);
    const restored = await this.restorer.restore(input, n, S, this.highpass.channels);
    // Typed-array scoring (score-fast.ts): the same maps as the tensor path (tfjs/score.ts), several
    // times faster than its tfjs ops and without tensors per frame.
    const { maps, scores } = scoreArrays(restored, batch, n, S, this.spec.scoring);
    const out: Detection[] = [];
    for (let i = 0; i < n; i++) {
      const d: Detection = { score: scores[i]!, map: maps.slice(i * S * S, (i + 1) * S * S) };
      if (opts.keepRestored) d.restored = restored.slice(i * px, (i + 1) * px);
      out.push(d);
    }
    return out;
  }

  dispose(): void {
    this.restorer.dispose();
  }
}
