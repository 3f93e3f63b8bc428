/**
 * The one interface the training graph (src/train/loop.ts) drives, whatever engine computes the
 * step: tfjs (src/model/tfjs/trainer.ts, `TfjsTrainer`) or onnxruntime (src/model/onnx/trainer.ts,
 * `OnnxTrainer`). Weights cross it in PyTorch layout (the artefact's), Adam moments in the
 * checkpoint's layout, so a checkpoint written by one engine resumes on the other.
 */
import type { TorchTensors } from './weights.js';

/** Loss values of one step (the batch means). */
export interface StepResult {
  loss: number;
  mse: number;
  ssimLoss: number;
}

/** Serialisable optimiser state: Adam moments by state_dict name, in TF layout (checkpoint format). */
export interface TrainerState {
  /** Number of Adam steps taken (PyTorch's `state['step']`). */
  step: number;
  epoch: number;
  m: Map<string, Float32Array>;
  v: Map<string, Float32Array>;
}

/** A training engine: FAIR training steps on NHWC float32 batches. */
export interface TrainingEngine {
  /** 'tfjs-wasm', 'onnxruntime-cpu', ... */
  readonly name: string;
  /** Current 0-based epoch; selects the learning rate. */
  epoch: number;
  readonly stepCount: number;
  lrForEpoch(epoch: number): number;
  /** One optimisation step on `n` samples: x [n, S, S, Cin], target [n, S, S, Cout], NHWC. */
  step(x: Float32Array, target: Float32Array, n: number): Promise<StepResult>;
  /** Weights and BN statistics, PyTorch layout (copies). */
  weights(): TorchTensors;
  getState(): TrainerState;
  /** Restore Adam state and, when given, weights (PyTorch layout). */
  setState(state: TrainerState, weights?: TorchTensors): void;
  dispose(): void;
}
