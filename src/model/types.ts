/**
 * Shared value types of the FAIR method. Pure data: no tensors are created here.
 *
 * Conventions used everywhere in fairline (see docs/fair-reference.md):
 * - Images are float32 in [0, 1], **HWC / NHWC**, channel order **BGR** (the official code
 *   keeps OpenCV's order, so imported official checkpoints work unchanged and the faithful
 *   colour term is simply "Lab of the tensor as if it were RGB").
 * - Grayscale is 0.299 R + 0.587 G + 0.114 B (cv2.COLOR_BGR2GRAY).
 * - Square model size S (256 by default); the high-pass output is NHWC with 1 or 2 channels.
 */

/** An image on typed arrays: HWC, float32 in [0, 1], BGR. */
export interface ImageF32 {
  width: number;
  height: number;
  channels: number;
  data: Float32Array;
}

/** An 8-bit image on typed arrays: HWC, BGR (or gray when channels = 1). */
export interface ImageU8 {
  width: number;
  height: number;
  channels: number;
  data: Uint8Array;
}

export type FilterKind = 'butterworth' | 'gaussian' | 'ideal' | 'sobel' | 'sobel-x';

/** High-pass extractor settings. `cutoff` (D0) and `order` (n) apply to the FFT filters. */
export interface FilterSpec {
  kind: FilterKind;
  /** D0 in DFT-index units of the model size (default 30). */
  cutoff: number;
  /** Butterworth order n (default 2). */
  order: number;
}

/** Number of network input channels a filter produces (Sobel variants give 2). */
export function filterChannels(kind: FilterKind): 1 | 2 {
  return kind === 'sobel' || kind === 'sobel-x' ? 2 : 1;
}

/** How the colour term reads the BGR tensors. */
export type ColourMode = 'bgr-as-rgb' | 'rgb';

/** Everything needed to score identically later; stored in the model artefact. */
export interface ScoringSpec {
  /** Weight of the colour term (0.0003). */
  colourWeight: number;
  /** 'bgr-as-rgb' is faithful to the official code; 'rgb' is the corrected Lab. */
  colourMode: ColourMode;
  /** Side of the zero-padded mean filter (21). */
  smoothKernel: number;
  /** MSGMS stability constant (0.0026). */
  msgmsC: number;
  /** Number of MSGMS scales (2). */
  msgmsScales: number;
}

export interface UNetSpec {
  /** Base width c (128 in the paper, 32/64 for speed). */
  baseWidth: number;
  /** 1 (BHPF/GHPF/IHPF) or 2 (Sobel variants). */
  inChannels: number;
  /** Always 3 (BGR restoration). */
  outChannels: number;
}

export interface FairSpec {
  /** Square model input size S (256). */
  size: number;
  filter: FilterSpec;
  unet: UNetSpec;
  scoring: ScoringSpec;
}

export const DEFAULT_FILTER: FilterSpec = { kind: 'butterworth', cutoff: 30, order: 2 };

export const DEFAULT_SCORING: ScoringSpec = {
  colourWeight: 0.0003,
  colourMode: 'bgr-as-rgb',
  smoothKernel: 21,
  msgmsC: 0.0026,
  msgmsScales: 2,
};

export function defaultSpec(overrides: Partial<{ size: number; baseWidth: number; filter: Partial<FilterSpec> }> = {}): FairSpec {
  const filter = { ...DEFAULT_FILTER, ...overrides.filter };
  return {
    size: overrides.size ?? 256,
    filter,
    unet: { baseWidth: overrides.baseWidth ?? 128, inChannels: filterChannels(filter.kind), outChannels: 3 },
    scoring: { ...DEFAULT_SCORING },
  };
}
