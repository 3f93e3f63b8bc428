/** FAIR's learning-rate schedule (pure): PyTorch MultiStepLR as the official code uses it. */

/**
 * PyTorch MultiStepLR(milestones=[0.8E, 0.9E], gamma) as FAIR uses it, for 0-based `epoch`.
 *
 * Faithful by default: PyTorch decays when the integer epoch counter *equals* a milestone, so a
 * float milestone that is not a whole number never fires (E = 1: 0.8; E = 70: 56.00000000000001),
 * and then the lr stays at its base value. `integerMilestones` (the corrected variant) uses
 * `floor(4E/5)` and `floor(9E/10)` instead, which always decays twice. For E = 800 or 400 both agree.
 *
 * @example
 * multiStepLr(640, 800) // 2e-5
 */
export function multiStepLr(epoch: number, epochs: number, lr = 1e-4, gamma = 0.2, integerMilestones = false): number {
  const milestones = integerMilestones
    ? [Math.floor((4 * epochs) / 5), Math.floor((9 * epochs) / 10)]
    : [epochs * 0.8, epochs * 0.9].filter((m) => Number.isInteger(m) && m > 0);
  const passed = milestones.filter((m) => epoch >= m).length;
  return lr * gamma ** passed;
}

