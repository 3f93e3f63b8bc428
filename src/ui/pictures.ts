/**
 * The pictures of a reject card, rendered on the station when a page first asks for one and then
 * kept with the card (so ten browsers cost one rendering): the heatmap overlay exactly as eval's
 * pictures draw it (src/eval/heatmap.ts `heatOverlay`: JET over the model-size input, anchored at
 * the threshold, white outline = the defect regions) and the model-size input, both as JPEG;
 * and the frame at source resolution, as captured (from memory, or from its capture file once
 * the recorder has it).
 *
 * Thumbnails (one per reject, for every page) are drawn by the server while pages are connected,
 * within a time budget, newest card first ({@link RenderBudget}): however fast rejects come,
 * drawing them never takes more than a fixed share of the station's time; a card not drawn in
 * time says so on the page (and pages ask only for drawn thumbnails).
 */
import { readFile } from 'node:fs/promises';
import sharp from 'sharp';
import { BadInputError } from '../errors.js';
import { anchorAt, heatOverlay, mapsRange, shrink } from '../eval/heatmap.js';
import { encodeFramePicture, encodeJpeg } from '../io/image.js';
import type { Card } from './live.js';

/** `thumb`: the overlay of a card (at most 128 px); `overlay`: at model size; `input`; `frame`: at source resolution. */
export const PICTURE_KINDS = ['thumb', 'overlay', 'input', 'frame'] as const;

/** Thumbnails are at most this wide: a card is about 200 CSS pixels, and a new card per reject must stay cheap. */
const THUMB_PX = 128;
export type PictureKind = (typeof PICTURE_KINDS)[number];

export interface Picture {
  data: Buffer;
  type: string;
}

async function render(card: Card, kind: PictureKind): Promise<Picture> {
  const d = card.data;
  if (kind === 'frame') {
    if (d?.payload) return encodeFramePicture(d.payload);
    const file = card.capture?.frame;
    if (file) return { data: await readFile(file), type: /\.jpe?g$/i.test(file) ? 'image/jpeg' : 'image/png' };
    // The frame itself is gone (memory bound, not captured): the model's view of it is what is left.
    kind = 'input';
  }
  if (!d) throw new BadInputError('no_picture', `card ${card.id}: no pixels kept for it`);
  // JPEG for what is only looked at: a fifth of the bytes and half the CPU of a PNG.
  if (kind === 'input') return { data: await encodeJpeg(d.image), type: 'image/jpeg' };
  if (!d.map) throw new BadInputError('no_picture', `card ${card.id}: the model gave no anomaly map`);
  const t = card.verdict.threshold;
  const range = anchorAt(mapsRange([d.map]), t);
  if (kind === 'thumb' && d.image.width > THUMB_PX) {
    const small = shrink(d.image, d.map, Math.ceil(d.image.width / THUMB_PX));
    return { data: await encodeJpeg(heatOverlay(small.image, small.map, range, t)), type: 'image/jpeg' };
  }
  return { data: await encodeJpeg(heatOverlay(d.image, d.map, range, t)), type: 'image/jpeg' };
}

let placeholder: Promise<Picture> | undefined;

/** What a card shows when its thumbnail was skipped: a small dark square. */
function skipped(): Promise<Picture> {
  placeholder ??= sharp({ create: { width: 16, height: 16, channels: 3, background: { r: 28, g: 31, b: 36 } } })
    .jpeg()
    .toBuffer()
    .then((data) => ({ data, type: 'image/jpeg' }));
  return placeholder;
}

/**
 * A token bucket of rendering time: jobs run one at a time, the newest first, each charged its
 * wall time, at most `msPerSecond` on average (bursts up to `burstMs`). When more than `maxWaiting`
 * wait, the oldest is skipped (its card has scrolled off the page by then).
 */
export class RenderBudget {
  private tokens: number;
  private last = performance.now();
  private readonly waiting: { run: () => Promise<void>; skip: () => void }[] = [];
  private running = false;
  private timer: NodeJS.Timeout | undefined;
  /** Jobs skipped so far. */
  skipped = 0;

  constructor(
    readonly msPerSecond = 30,
    readonly burstMs = 300,
    readonly maxWaiting = 48,
  ) {
    this.tokens = burstMs;
  }

  /** Run `job` when the budget allows; `fallback` answers instead when it is skipped. */
  run<T>(job: () => Promise<T>, fallback: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.waiting.push({
        run: async () => {
          const t0 = performance.now();
          try {
            resolve(await job());
          } catch (err) {
            reject(err);
          } finally {
            this.tokens -= performance.now() - t0;
          }
        },
        skip: () => {
          this.skipped++;
          fallback().then(resolve, reject);
        },
      });
      while (this.waiting.length > this.maxWaiting) this.waiting.shift()!.skip();
      this.pump();
    });
  }

  private pump(): void {
    if (this.running || this.timer || this.waiting.length === 0) return;
    const now = performance.now();
    this.tokens = Math.min(this.burstMs, this.tokens + ((now - this.last) * this.msPerSecond) / 1000);
    this.last = now;
    if (this.tokens <= 0) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.pump();
      }, Math.ceil((-this.tokens * 1000) / this.msPerSecond) + 1);
      this.timer.unref();
      return;
    }
    const next = this.waiting.pop()!;
    this.running = true;
    void next.run().finally(() => {
      this.running = false;
      this.pump();
    });
  }
}

/**
 * A card's picture, rendered once (a failed rendering is not kept, so it can be retried).
 * Thumbnails go through `budget` when given; the pictures of a card someone clicked do not.
 * @throws BadInputError (`no_picture`) when the card holds nothing to draw it from.
 */
export function cardPicture(card: Card, kind: PictureKind, budget?: RenderBudget): Promise<Picture> {
  let p = card.pictures.get(kind);
  if (!p) {
    if (kind === 'thumb' && budget) {
      p = budget.run(
        () => render(card, kind).then((pic) => ((card.thumb = 'drawn'), pic)),
        () => ((card.thumb = 'skipped'), skipped()),
      );
    } else p = render(card, kind);
    card.pictures.set(kind, p);
    p.catch(() => {
      card.pictures.delete(kind);
      if (kind === 'thumb') card.thumb = 'skipped';
    });
  }
  return p;
}
