/**
 * Memory / time check of the category-level pixel metrics at VisA scale.
 *
 * Builds a synthetic category (default 200 images of 256x256: half good, half with 1-3 soft-edged
 * elliptical defects, scores = noise + a bump over each defect), then times `pixelAuroc` and
 * `aupro` (FPR 0.3, 5000 thresholds) and prints seconds and the peak RSS of the process.
 * Targets: < 30 s and < 2 GB RSS.
 *
 *   node --import tsx bench/aupro.ts [images=200] [size=256]
 */
import { aupro, pixelAuroc } from '../src/eval/metrics.js';
import { createRng } from '../src/model/synthesis/rng.js';

/** Seeded uniform [0, 1) generator (the project's RNG). */
const rng = (seed: number): (() => number) => {
  const g = createRng(seed);
  return () => g.uniform();
};

const images = Number(process.argv[2] ?? 200);
const size = Number(process.argv[3] ?? 256);


function synthesise(): { maps: Float32Array[]; masks: Float32Array[] } {
  const r = rng(2024);
  const maps: Float32Array[] = [];
  const masks: Float32Array[] = [];
  for (let i = 0; i < images; i++) {
    const map = new Float32Array(size * size);
    const mask = new Float32Array(size * size);
    for (let j = 0; j < map.length; j++) map[j] = 0.1 * r() + 0.05 * r();
    if (i % 2 === 1) {
      const blobs = 1 + Math.floor(r() * 3);
      for (let b = 0; b < blobs; b++) {
        const cx = r() * size, cy = r() * size;
        const rx = 3 + r() * size * 0.08, ry = 3 + r() * size * 0.08;
        const strength = 0.02 + 0.15 * r();
        const y0 = Math.max(0, Math.floor(cy - ry - 2)), y1 = Math.min(size - 1, Math.ceil(cy + ry + 2));
        const x0 = Math.max(0, Math.floor(cx - rx - 2)), x1 = Math.min(size - 1, Math.ceil(cx + rx + 2));
        for (let y = y0; y <= y1; y++)
          for (let x = x0; x <= x1; x++) {
            const d = Math.hypot((x - cx) / rx, (y - cy) / ry);
            // Soft edge like a bilinearly resized mask: 1 inside, ramp over ~1 px, 0 outside.
            const m = Math.min(1, Math.max(0, (1 - d) * Math.min(rx, ry)));
            const k = y * size + x;
            if (m > mask[k]!) mask[k] = m;
            if (d < 1.5) map[k] = map[k]! + strength * (1.5 - d);
          }
      }
    }
    maps.push(map);
    masks.push(mask);
  }
  return { maps, masks };
}

const tGen = performance.now();
const { maps, masks } = synthesise();
const genS = (performance.now() - tGen) / 1000;
const pixels = images * size * size;
console.log(`synthetic category: ${images} images of ${size}x${size} = ${(pixels / 1e6).toFixed(1)} M pixels (built in ${genS.toFixed(2)} s)`);

const t0 = performance.now();
const pa = pixelAuroc(maps, masks);
const t1 = performance.now();
const ap = aupro(maps, masks, { fprLimit: 0.3, thresholds: 5000 });
const t2 = performance.now();

const rssMb = process.resourceUsage().maxRSS / 1024; // maxRSS is in KiB
console.log(`pixelAuroc = ${pa.toFixed(6)}  ${((t1 - t0) / 1000).toFixed(2)} s`);
console.log(`aupro@0.3  = ${ap.toFixed(6)}  ${((t2 - t1) / 1000).toFixed(2)} s`);
console.log(`total metrics ${((t2 - t0) / 1000).toFixed(2)} s, peak RSS ${rssMb.toFixed(0)} MB (inputs alone ${(2 * pixels * 4 / 2 ** 20).toFixed(0)} MB)`);
