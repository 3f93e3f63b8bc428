/**
 * Evaluation reports: `report.json` (everything, per image too), `report.csv` and `report.md`
 * (one row per category plus the mean, the paper's table), a picture per test image and an
 * `index.html` that shows them with score, label and verdict.
 *
 * Pictures are `input | restoration | heatmap overlay | ground truth`, side by side and labelled.
 * Heatmaps are normalised **per category, anchored at the verdict threshold**: with min and max
 * over all anomaly maps of the category's test images, the JET scale runs piecewise linearly
 * from min (dark blue) through the threshold (green) to max (dark red). So colours are comparable
 * between the images of a category and "warmer than green" always means "above the threshold".
 * Without a threshold (or one outside [min, max]) it is plain min-max. The white outline in the
 * heatmap panel is `map >= threshold`: exactly the defect regions a live reject
 * verdict would report.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { BadInputError } from '../errors.js';
import { encodePng } from '../io/image.js';
import type { ImageF32 } from '../model/types.js';
import type { ImageU8 } from '../model/types.js';
import {
  GREEN, RED, WHITE, anchorAt, composePanels, drawText, heatOverlay, heatOverlayU8, mapsRange, maskImage, maskImageU8, solidImage, solidImageU8, toF32,
  type Bgr, type HeatRange,
} from './heatmap.js';
import { METRIC_NAMES, itemName, type CategoryEvaluation, type CategoryMetrics, type EvalItem, type MetricName, type PictureMode, type ThresholdChoice } from './evaluate.js';

export const REPORT_SCHEMA = 'fairline.eval/v1';

/** One test image in the report. */
export interface ReportItem {
  path: string;
  defect: string;
  label: 0 | 1;
  score: number | null;
  verdict: 'pass' | 'reject' | 'error';
  /** Picture, relative to the report folder. */
  picture?: string;
  error?: EvalItem['error'];
  /** The domain guard flagged the image (`out_of_domain`). */
  guard?: string;
}

/** One category's row (and its images). */
export interface CategorySummary extends Pick<CategoryMetrics, MetricName> {
  category: string;
  layout: string;
  model: { id: string; dir?: string };
  size: number;
  images: { total: number; good: number; anomalous: number; scored: number; errors: number };
  gate: CategoryMetrics['gate'] & {
    /** The verdicts' threshold and where it came from. */
    threshold: ThresholdChoice;
    falseRejectRate: number | null;
    escapeRate: number | null;
  };
  /** The domain guard: on (the model has statistics) and the test images it flagged (and so rejected), good and defective. */
  guard: CategoryEvaluation['guarded'];
  /** Why a value is null, by name. */
  nulls: Record<string, string>;
  heatmap?: { normalisation: 'category-threshold-anchored' | 'category-min-max'; lo: number; hi: number; centre?: number };
  seconds: number;
  imagesPerSecond: number;
  items: ReportItem[];
}

export interface EvalReport {
  schema: typeof REPORT_SCHEMA;
  createdAt: string;
  data: string;
  backend?: string;
  pictures: PictureMode;
  categories: CategorySummary[];
  /** Mean over the categories where the value is not null; `n` says over how many. */
  mean: Record<MetricName | 'TPR@FPR1%' | 'TPR@FPR0.1%', { value: number | null; n: number }>;
}

/** The per-category normalisation of the heatmaps (see the module comment). */
export function categoryHeatRange(ev: Pick<CategoryEvaluation, 'items' | 'threshold'>): HeatRange {
  return anchorAt(mapsRange(ev.items.filter((it) => it.map).map((it) => it.map!)), ev.threshold.value);
}

const fmt = (v: number | null | undefined, digits = 4): string => (v === null || v === undefined ? '-' : v.toFixed(digits));

/**
 * The picture of one test image: input | restoration | heatmap overlay (with the threshold
 * outline) | ground truth, with a caption (name, label, score, threshold, verdict).
 * Needs `item.input`, `item.restored` and `item.map` (kept with `pictures` != 'none').
 */
export function renderPicture(item: EvalItem, category: string, size: number, range: HeatRange, threshold: number | null): ImageF32 {
  return drawPicture(item, category, size, range, threshold, false) as ImageF32;
}

/**
 * {@link renderPicture} in 8 bits: the same picture, byte for byte its PNG's pixels, drawn from
 * the kept 8-bit input and restoration without float images (about a third of the time; eval
 * draws one per test image).
 */
export function renderPictureU8(item: EvalItem, category: string, size: number, range: HeatRange, threshold: number | null): ImageU8 {
  return drawPicture(item, category, size, range, threshold, true) as ImageU8;
}

/** Both pictures from one layout: `bytes` picks the 8-bit panels, otherwise the float ones. */
function drawPicture(item: EvalItem, category: string, size: number, range: HeatRange, threshold: number | null, bytes: boolean): ImageF32 | ImageU8 {
  if (!item.input || !item.map) throw new BadInputError('bad_picture', `renderPicture: ${item.path} has no kept input or anomaly map (evaluate with pictures enabled)`);
  const solid = (): ImageF32 | ImageU8 => (bytes ? solidImageU8(size, size, NO_IMAGE) : solidImage(size, size, NO_IMAGE));
  const input = bytes ? item.input : toF32(item.input);
  const restored = item.restored ? (bytes ? item.restored : toF32(item.restored)) : solid();
  const heat = bytes ? heatOverlayU8(item.input, item.map, range, threshold) : heatOverlay(toF32(item.input), item.map, range, threshold);
  let gt: ImageF32 | ImageU8;
  if (item.mask) gt = bytes ? maskImageU8(item.mask, size, size) : maskImage(item.mask, size, size);
  else {
    gt = solid();
    drawText(gt, 2, Math.floor(size / 2) - 4, 'NO MASK', 1, WHITE);
  }
  const panels = [
    { image: input, title: 'INPUT' },
    { image: restored, title: 'RESTORED' },
    { image: heat, title: 'HEATMAP' },
    { image: gt, title: 'GT MASK' },
  ];
  const caption = captionOf(item, category, threshold);
  return bytes ? composePanels(panels as { image: ImageU8; title: string }[], caption) : composePanels(panels as { image: ImageF32; title: string }[], caption);
}

/** Grey of a missing panel (no restoration, no mask). */
const NO_IMAGE: Bgr = [0.3, 0.3, 0.3];

function captionOf(item: EvalItem, category: string, threshold: number | null): { caption: string[]; captionColour: Bgr } {
  const label = item.label === 1 ? `ANOMALOUS (${item.defect})` : 'GOOD';
  const verdict = item.verdict.toUpperCase();
  const correct = item.verdict === 'error' ? '' : (item.verdict === 'reject') === (item.label === 1) ? ' OK' : ' WRONG';
  return {
    caption: [`${category} ${itemName(item)} - ${label}`, `SCORE ${fmt(item.score)} THR ${fmt(threshold)} ${verdict}${correct}`],
    captionColour: item.verdict === 'reject' ? RED : item.verdict === 'pass' ? GREEN : WHITE,
  };
}

/**
 * Write the pictures of a category under `<reportDir>/pictures/<category>/`, one PNG per item
 * that kept its input (see `PictureMode`).
 * @returns picture paths relative to `reportDir`, by item index, and the heatmap range used.
 */
export async function writeCategoryPictures(
  ev: CategoryEvaluation,
  reportDir: string,
  onPicture?: (done: number, total: number) => void,
): Promise<{ files: Map<number, string>; range: HeatRange }> {
  const range = categoryHeatRange(ev);
  const files = new Map<number, string>();
  const todo = ev.items.filter((it) => it.input && it.map);
  if (todo.length === 0) return { files, range };
  const dir = join(reportDir, 'pictures', safeName(ev.category));
  await mkdir(dir, { recursive: true });
  let n = 0;
  // Render the next picture (JS, this thread) while sharp encodes and writes earlier ones on its
  // threads: `ENCODES_IN_FLIGHT` encodes at a time (encoding costs more than drawing, and a
  // second core has nothing else to do now), so memory stays at a few pictures.
  const inFlight = new Set<Promise<void>>();
  for (const it of todo) {
    const file = join(dir, `${itemName(it)}.png`);
    const pic = renderPictureU8(it, ev.category, ev.size, range, ev.threshold.value);
    while (inFlight.size >= ENCODES_IN_FLIGHT) await Promise.race(inFlight);
    const p: Promise<void> = encodePng(pic, file, { compressionLevel: PICTURE_PNG_LEVEL }).then(() => {
      inFlight.delete(p);
      files.set(it.index, relative(reportDir, file).split('\\').join('/'));
      onPicture?.(++n, todo.length);
    });
    // Handled here too: when one encode fails, the loop stops at its error and the others' outcome is moot.
    p.catch(() => undefined);
    inFlight.add(p);
  }
  await Promise.all(inFlight);
  return { files, range };
}

/** Picture encodes running at once in writeCategoryPictures. */
const ENCODES_IN_FLIGHT = 2;
/**
 * zlib level of the pictures' PNGs: on 1044x324 eval pictures of the hazelnut sample, level 2
 * encodes in about half the time of sharp's default 6 for 6 % more bytes (273 KB vs 256 KB).
 */
const PICTURE_PNG_LEVEL = 2;

function safeName(s: string): string {
  return s.replace(/[^A-Za-z0-9_.-]/g, '_');
}

/** The light, JSON-ready summary of a category (drops maps and pictures' pixels). */
export function summariseCategory(ev: CategoryEvaluation, pictures?: { files: Map<number, string>; range: HeatRange }): CategorySummary {
  const items: ReportItem[] = ev.items.map((it) => {
    const r: ReportItem = { path: it.path, defect: it.defect, label: it.label, score: it.score, verdict: it.verdict };
    const pic = pictures?.files.get(it.index);
    if (pic) r.picture = pic;
    if (it.error) r.error = it.error;
    if (it.guard) r.guard = it.guard;
    return r;
  });
  const good = ev.items.filter((it) => it.label === 0).length;
  const errors = ev.items.filter((it) => it.score === null).length;
  const m = ev.metrics;
  return {
    category: ev.category,
    layout: ev.layout,
    model: { id: ev.modelId, ...(ev.modelDir ? { dir: ev.modelDir } : {}) },
    size: ev.size,
    images: { total: ev.items.length, good, anomalous: ev.items.length - good, scored: ev.items.length - errors, errors },
    image_AUROC: m.image_AUROC,
    pixel_AUROC: m.pixel_AUROC,
    AUPRO: m.AUPRO,
    image_F1Max: m.image_F1Max,
    gate: { ...m.gate, threshold: ev.threshold, falseRejectRate: ev.atThreshold.falseRejectRate, escapeRate: ev.atThreshold.escapeRate },
    guard: ev.guarded,
    nulls: { ...m.reasons },
    ...(pictures && pictures.files.size > 0
      ? {
          heatmap: pictures.range.centre !== undefined
            ? { normalisation: 'category-threshold-anchored' as const, lo: pictures.range.lo, hi: pictures.range.hi, centre: pictures.range.centre }
            : { normalisation: 'category-min-max' as const, lo: pictures.range.lo, hi: pictures.range.hi },
        }
      : {}),
    seconds: ev.seconds,
    imagesPerSecond: ev.seconds > 0 ? ev.items.length / ev.seconds : 0,
    items,
  };
}

function meanOf(values: (number | null)[]): { value: number | null; n: number } {
  const v = values.filter((x): x is number => x !== null);
  return { value: v.length ? v.reduce((a, b) => a + b, 0) / v.length : null, n: v.length };
}

/** Assemble the report and its means. */
export function buildReport(categories: CategorySummary[], meta: { data: string; backend?: string; pictures: PictureMode }): EvalReport {
  const mean = {} as EvalReport['mean'];
  for (const k of METRIC_NAMES) mean[k] = meanOf(categories.map((c) => c[k]));
  mean['TPR@FPR1%'] = meanOf(categories.map((c) => c.gate.tprAtFpr1pct?.tpr ?? null));
  mean['TPR@FPR0.1%'] = meanOf(categories.map((c) => c.gate.tprAtFpr01pct?.tpr ?? null));
  return { schema: REPORT_SCHEMA, createdAt: new Date().toISOString(), data: meta.data, ...(meta.backend ? { backend: meta.backend } : {}), pictures: meta.pictures, categories, mean };
}

/** CSV columns, in order. */
export const CSV_COLUMNS = [
  'category', 'images', 'good', 'anomalous', 'errors', 'image_AUROC', 'pixel_AUROC', 'AUPRO', 'image_F1Max', 'F1_threshold',
  'TPR@FPR1%', 'threshold@FPR1%', 'TPR@FPR0.1%', 'threshold@FPR0.1%', 'threshold', 'threshold_source', 'false_reject_rate', 'escape_rate', 'model',
  'guard', 'guarded_good', 'guarded_defective',
] as const;

function csvCell(v: string | number | null | undefined): string {
  if (v === null || v === undefined) return '';
  const s = typeof v === 'number' ? String(v) : v;
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

function categoryCells(c: CategorySummary): (string | number | null)[] {
  const g = c.gate;
  return [
    c.category, c.images.total, c.images.good, c.images.anomalous, c.images.errors, c.image_AUROC, c.pixel_AUROC, c.AUPRO, c.image_F1Max, g.f1Max?.threshold ?? null,
    g.tprAtFpr1pct?.tpr ?? null, g.tprAtFpr1pct?.threshold ?? null, g.tprAtFpr01pct?.tpr ?? null, g.tprAtFpr01pct?.threshold ?? null,
    g.threshold.value, g.threshold.source, g.falseRejectRate, g.escapeRate, c.model.id,
    c.guard.on ? 'on' : 'off', c.guard.good, c.guard.defective,
  ];
}

function meanCells(r: EvalReport): (string | number | null)[] {
  const cells: (string | number | null)[] = CSV_COLUMNS.map(() => null);
  cells[0] = 'mean';
  for (const k of [...METRIC_NAMES, 'TPR@FPR1%', 'TPR@FPR0.1%'] as const) cells[CSV_COLUMNS.indexOf(k)] = r.mean[k].value;
  return cells;
}

/** report.csv: a header, one row per category, then the mean row (empty cell = not computable). */
export function toCsv(r: EvalReport): string {
  const rows = [CSV_COLUMNS as readonly string[], ...r.categories.map(categoryCells), meanCells(r)];
  return rows.map((row) => row.map(csvCell).join(',')).join('\n') + '\n';
}

const TABLE_HEAD = ['category', 'I-AUROC', 'P-AUROC', 'AUPRO', 'F1Max', 'TPR@FPR1%', 'TPR@FPR0.1%', 'threshold', 'FRR', 'escape', 'guarded', 'images'];

function tableRows(r: EvalReport): string[][] {
  const rows = r.categories.map((c) => [
    c.category, fmt(c.image_AUROC), fmt(c.pixel_AUROC), fmt(c.AUPRO), fmt(c.image_F1Max), fmt(c.gate.tprAtFpr1pct?.tpr), fmt(c.gate.tprAtFpr01pct?.tpr),
    fmt(c.gate.threshold.value, 5), fmt(c.gate.falseRejectRate, 3), fmt(c.gate.escapeRate, 3), c.guard.on ? `${c.guard.good}+${c.guard.defective}` : 'off', `${c.images.good}+${c.images.anomalous}${c.images.errors ? ` (${c.images.errors} err)` : ''}`,
  ]);
  const m = r.mean;
  rows.push(['mean', fmt(m.image_AUROC.value), fmt(m.pixel_AUROC.value), fmt(m.AUPRO.value), fmt(m.image_F1Max.value), fmt(m['TPR@FPR1%'].value), fmt(m['TPR@FPR0.1%'].value), '', '', '', '', '']);
  return rows;
}

/** The per-category table as aligned text (what `fairline eval` prints). */
export function formatTable(r: EvalReport): string {
  const rows = [TABLE_HEAD, ...tableRows(r)];
  const widths = TABLE_HEAD.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  const line = (row: string[]): string => row.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd();
  const sep = widths.map((w) => '-'.repeat(w)).join('  ');
  const body = rows.map(line);
  return [body[0]!, sep, ...body.slice(1, -1), sep, body.at(-1)!].join('\n') + '\n';
}

/** report.md: the table, what the columns mean, and why values are missing. */
export function toMarkdown(r: EvalReport): string {
  const out: string[] = [];
  out.push('# fairline evaluation', '');
  out.push(`Data: \`${r.data}\`; created ${r.createdAt}${r.backend ? `; backend ${r.backend}` : ''}.`, '');
  out.push(`| ${TABLE_HEAD.join(' | ')} |`, `|${TABLE_HEAD.map((_, i) => (i === 0 ? ' --- ' : ' ---: ')).join('|')}|`);
  for (const row of tableRows(r)) out.push(`| ${row.map((c, i) => (i === 0 && c === 'mean' ? '**mean**' : c)).join(' | ')} |`);
  out.push('');
  out.push(`Speed: ${r.categories.map((c) => `${c.category} ${c.images.total} images in ${c.seconds.toFixed(1)} s (${c.imagesPerSecond.toFixed(1)} images/s, scoring only; pictures are written after)`).join('; ')}.`, '');
  const partial = [...METRIC_NAMES, 'TPR@FPR1%', 'TPR@FPR0.1%'].filter((k) => r.mean[k as keyof EvalReport['mean']].n < r.categories.length);
  if (partial.length && r.categories.length > 1) out.push(`Means of ${partial.join(', ')} are over the categories where they could be computed.`, '');
  out.push(
    'Columns: I-AUROC, P-AUROC and AUPRO (FPR <= 0.3, normalised) as the official FAIR evaluation computes them; F1Max = best image-level F1; ',
    'TPR@FPR1% / TPR@FPR0.1% = the largest share of anomalous images rejected while at most 1 % / 0.1 % of good ones are; ',
    'threshold = the verdicts\' threshold (reject if score >= threshold; the model\'s own, or the F1-max one if it has none); ',
    'FRR = good images rejected at it, escape = anomalous images passed at it (both count the domain guard\'s rejects); ',
    'guarded = good + anomalous images the domain guard flagged out_of_domain (rejected whatever their score; "off": the model has no guard statistics). Gate thresholds are in report.json/csv.',
    '',
  );
  const nulls = r.categories.flatMap((c) => Object.entries(c.nulls).map(([k, why]) => `- ${c.category}: ${k} not computed: ${why}`));
  if (nulls.length) out.push('## Not computed', '', ...nulls, '');
  const errs = r.categories.flatMap((c) => c.items.filter((it) => it.error).map((it) => `- ${c.category}: \`${it.path}\`: ${it.error!.code} (${it.error!.stage}): ${it.error!.message}`));
  if (errs.length) out.push('## Images that failed (left out of the metrics)', '', ...errs, '');
  if (r.categories.some((c) => c.items.some((it) => it.picture))) out.push('Pictures: [index.html](index.html).', '');
  return out.join('\n');
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** index.html: per category its numbers, every picture with score / label / verdict, and all scores. */
export function toHtml(r: EvalReport): string {
  const sections = r.categories.map((c) => {
    const thr = c.gate.threshold;
    const cards = c.items
      .filter((it) => it.picture)
      .map((it) => {
        const right = it.verdict !== 'error' && (it.verdict === 'reject') === (it.label === 1);
        return `<figure class="${it.verdict} ${right ? 'right' : 'wrong'}"><a href="${esc(it.picture!)}"><img loading="lazy" src="${esc(it.picture!)}" alt="${esc(it.path)}"></a>
<figcaption><b>${esc(itemName(it))}</b> · ${it.label === 1 ? `anomalous (${esc(it.defect)})` : 'good'}<br>score ${fmt(it.score)} · <span class="v">${it.verdict}</span>${right ? '' : ' ✗'}</figcaption></figure>`;
      })
      .join('\n');
    const rows = c.items
      .map((it) => `<tr class="${it.verdict}"><td>${esc(it.path)}</td><td>${it.label === 1 ? esc(it.defect) : 'good'}</td><td>${fmt(it.score)}</td><td>${it.verdict}${it.error ? `: ${esc(it.error.code)}` : ''}</td></tr>`)
      .join('\n');
    return `<section><h2>${esc(c.category)}</h2>
<p>I-AUROC ${fmt(c.image_AUROC)} · P-AUROC ${fmt(c.pixel_AUROC)} · AUPRO ${fmt(c.AUPRO)} · F1Max ${fmt(c.image_F1Max)} · TPR@FPR1% ${fmt(c.gate.tprAtFpr1pct?.tpr)}<br>
verdicts at threshold ${fmt(thr.value, 5)} (${esc(thr.source)}): false rejects ${fmt(c.gate.falseRejectRate, 3)}, escapes ${fmt(c.gate.escapeRate, 3)} · model ${esc(c.model.id)}${c.heatmap ? ` · heatmap scale ${fmt(c.heatmap.lo, 5)} (blue)${c.heatmap.centre !== undefined ? ` .. threshold ${fmt(c.heatmap.centre, 5)} (green)` : ''} .. ${fmt(c.heatmap.hi, 5)} (red); white outline = map &ge; threshold` : ''}</p>
<div class="grid">${cards || '<p>(no pictures)</p>'}</div>
<details><summary>all ${c.items.length} test images</summary><table><tr><th>image</th><th>label</th><th>score</th><th>verdict</th></tr>${rows}</table></details></section>`;
  });
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>fairline evaluation</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5em;background:#fafafa;color:#222}
.grid{display:flex;flex-wrap:wrap;gap:10px}
figure{margin:0;background:#fff;border:2px solid #ccc;border-radius:4px;padding:4px;max-width:520px}
figure img{max-width:100%;display:block}
figure.reject{border-color:#d33}figure.pass{border-color:#3a3}figure.error{border-color:#888}
figure.wrong{box-shadow:0 0 0 3px #fc0}
.v{font-weight:bold}.reject .v{color:#c22}.pass .v{color:#282}
table{border-collapse:collapse;font-size:90%}td,th{border:1px solid #ddd;padding:2px 6px}
label{user-select:none}
</style></head><body>
<h1>fairline evaluation</h1>
<p>Data <code>${esc(r.data)}</code> · ${esc(r.createdAt)}${r.backend ? ` · backend ${esc(r.backend)}` : ''} · mean I-AUROC ${fmt(r.mean.image_AUROC.value)}, P-AUROC ${fmt(r.mean.pixel_AUROC.value)}, AUPRO ${fmt(r.mean.AUPRO.value)}.
Pictures: input | restoration | heatmap overlay | ground truth. Yellow ring = verdict disagrees with the label.</p>
<label><input type="checkbox" id="wrong"> show only wrong verdicts</label>
<script>document.getElementById('wrong').addEventListener('change',e=>{for(const f of document.querySelectorAll('figure.right'))f.style.display=e.target.checked?'none':''})</script>
${sections.join('\n')}
</body></html>
`;
}

/** Write report.json, report.csv, report.md and index.html into `dir`; returns their paths. */
export async function writeReport(r: EvalReport, dir: string): Promise<{ json: string; csv: string; md: string; html: string }> {
  await mkdir(dir, { recursive: true });
  const paths = { json: join(dir, 'report.json'), csv: join(dir, 'report.csv'), md: join(dir, 'report.md'), html: join(dir, 'index.html') };
  await writeFile(paths.json, JSON.stringify(r, null, 2) + '\n');
  await writeFile(paths.csv, toCsv(r));
  await writeFile(paths.md, toMarkdown(r));
  await writeFile(paths.html, toHtml(r));
  return paths;
}
