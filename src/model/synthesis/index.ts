/**
 * Training-time anomaly synthesis on typed arrays (fair-reference.md section 4): seedable RNG,
 * affine warps, Perlin masks, imgaug-style texture augmenters, CutPaste and the per-sample
 * procedure. Pure: no I/O; every random choice comes from the `Rng` passed in.
 */
export { createRng, Xoshiro128, type Rng } from './rng.js';
export { invertAffine, rotationAbout, warpAffine, rotateImage, type Affine2x3 } from './warp.js';
export { randPerlin2d, perlinMask, type PerlinMask } from './perlin.js';
export { BRIGHTNESS_SPACES, BRIGHTNESS_CHANNEL, rgbTo, rgbFrom, type ColourSpace } from './colorspace.js';
export {
  AUGMENTERS, DTD_AUGMENTERS, NO_DTD_AUGMENTERS, randAugment, gammaContrast, multiplyAndAddToBrightness, enhanceSharpness,
  addToHueAndSaturation, hueAdd, dropout2d, solarize, posterize, invert, autocontrast, equalize, affineRotate,
  type AugmenterName,
} from './augmenters.js';
export { cutPaste, cutPasteFaithful, cutPasteCorrected, faithfulSideRange, pyRound, type CutPasteMode, type CutPasteResult } from './cutpaste.js';
export {
  synthesize, prepareSample, drawBranch, drawTrainingRotation, trainingRotation, perlinAnomaly, blendTexture,
  type SynthesisOptions, type SynthesisResult, type PreparedSample, type AnomalyKind,
} from './synthesize.js';
