/**
 * Typed errors. Every error fairline raises on purpose is a `FairlineError` with a fixed
 * `name` and a machine-readable `code`, so callers (and metrics) can tell them apart without
 * parsing messages. Style follows nats.js: small classes, one per failure family.
 */
export class FairlineError extends Error {
  override name = 'FairlineError';
  /** Stable machine-readable code, used as a metrics label (`reason`). */
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/** An image or frame that cannot be used: corrupt, truncated, wrong size, NaN, empty. */
export class BadInputError extends FairlineError {
  override name = 'BadInputError';
}

/** A configuration value or CLI option that is invalid. */
export class ConfigError extends FairlineError {
  override name = 'ConfigError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('bad_config', message, options);
  }
}

/** A model artefact that is missing, corrupt (checksum) or does not match its use. */
export class ModelError extends FairlineError {
  override name = 'ModelError';
}

/** A dataset folder that is missing, empty or does not follow a known layout. */
export class DatasetError extends FairlineError {
  override name = 'DatasetError';
}

/** A compute backend that cannot be loaded or failed its start-up check. */
export class BackendError extends FairlineError {
  override name = 'BackendError';
}

/** A frame source (camera, file, GStreamer pipeline) that failed. */
export class SourceError extends FairlineError {
  override name = 'SourceError';
}

/** A sink (NATS, spool) that failed. */
export class SinkError extends FairlineError {
  override name = 'SinkError';
}

/** Narrow an unknown thrown value to a FairlineError (wrapping anything else as `internal`). */
export function asFairlineError(err: unknown): FairlineError {
  if (err instanceof FairlineError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new FairlineError('internal', message, { cause: err });
}
