/**
 * The pictures of a reject card, rendered on the station when a page first asks for one and then
 * kept with the card (so ten browsers cost one rendering): the heatmap overlay exactly as eval's
 * pictures draw it (src/eval/heatmap.ts `heatOverlay`: JET over the model-size input, anchored at
 * the threshold, white outline = the defect regions) and the model-size input, both as JPEG;
 * and the frame at source resolution, as captured (from memory, or from its capture file once
 * the recorder has it).
 */
import { readFile } from 'node:fs/promises';
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

/**
 * A card's picture, rendered once (a failed rendering is not kept, so it can be retried).
 * @throws BadInputError (`no_picture`) when the card holds nothing to draw it from.
 */
export function cardPicture(card: Card, kind: PictureKind): Promise<Picture> {
  let p = card.pictures.get(kind);
  if (!p) {
    p = render(card, kind);
    card.pictures.set(kind, p);
    p.catch(() => card.pictures.delete(kind));
  }
  return p;
}
