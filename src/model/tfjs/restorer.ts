/**
 * The tfjs engine's restorer: the tfjs UNet (src/model/tfjs/unet.ts) in eval mode behind the
 * engine-neutral {@link Restorer} interface of src/model/detector.ts.
 */
import * as tf from '@tensorflow/tfjs';
import type { Restorer } from '../detector.js';
import type { UNet } from './unet.js';

/** Restoration with the tfjs UNet in eval mode (running BatchNorm statistics). */
export class TfjsRestorer implements Restorer {
  readonly engine: string;
  constructor(readonly unet: UNet) {
    this.engine = `tfjs-${tf.getBackend()}`;
  }
  async restore(input: Float32Array, n: number, size: number, cin: number): Promise<Float32Array> {
    const y = tf.tidy(() => this.unet.predict(tf.tensor4d(input, [n, size, size, cin])));
    try {
      return (await y.data()) as Float32Array;
    } finally {
      y.dispose();
    }
  }
  dispose(): void {
    this.unet.dispose();
  }
}
