/**
 * RxJS operators of the inspection graph, one per file. Frames flow as `Result`s
 * (src/streams/frame.ts) so failures become `error` verdicts instead of stream errors.
 */
export { decodeFrames, type DecodeFn, type DecodeOptions, type DecodeOutput } from './decode.js';
export { guardFrames, checkPolicy, type GuardPolicy, type GuardFramesOptions } from './guard.js';
export { batchFrames, type BatchOptions } from './batch.js';
export { inferBatches, type BatchModelFn, type InferOptions, type QueuePolicy } from './infer.js';
export { thresholdScores, type ThresholdSpec } from './threshold.js';
export { toVerdicts, errorVerdict, failSafeVerdict, judgedVerdict, type VerdictContext } from './verdict.js';
export { failSafe, type FailSafeOptions } from './failsafe.js';
export { inspect, type InspectDeps, type InspectHooks, type InspectModel } from './inspect.js';
