/**
 * Dataset readers: MVTec AD, VisA (as released with `split_csv/1cls.csv`, and the common prepared
 * 1cls layout) and a generic folder layout (anomalib's Folder). They only list files; decoding
 * happens in the operator graph.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, extname, join, resolve } from 'node:path';
import { DatasetError } from '../errors.js';
import { isCaptureRoot, labelledCaptures } from './captures.js';

/** One image of a split. `label` 1 = anomalous. */
export interface Sample {
  path: string;
  label: 0 | 1;
  /** Defect type ('good' for normal images). */
  defect: string;
  /** Ground-truth mask for anomalous test images (absent for good ones). */
  maskPath?: string;
}

export interface Dataset {
  layout: 'mvtec' | 'visa-csv' | 'visa-1cls' | 'folder';
  root: string;
  category: string;
  train: Sample[];
  test: Sample[];
}

const IMAGE_EXT = new Set(['.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp']);

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/** Image files of a folder, sorted by name (the official code sorts its globs). */
export function listImages(dir: string): string[] {
  if (!isDir(dir)) return [];
  return readdirSync(dir)
    .filter((f) => IMAGE_EXT.has(extname(f).toLowerCase()))
    .sort()
    .map((f) => join(dir, f));
}

function stem(p: string): string {
  return basename(p, extname(p));
}

function requireNonEmpty(ds: Dataset, needTest: boolean): Dataset {
  if (ds.train.length === 0) throw new DatasetError('empty_split', `${ds.category}: no training images found under ${ds.root} (layout ${ds.layout})`);
  if (needTest && ds.test.length === 0) throw new DatasetError('empty_split', `${ds.category}: no test images found under ${ds.root} (layout ${ds.layout})`);
  return ds;
}

/** Find the mask of an anomalous image, trying the naming conventions of each layout. */
function findMask(candidates: string[]): string | undefined {
  return candidates.find((c) => existsSync(c));
}

/** MVTec AD: `<root>/<cat>/train/good`, `test/<defect>`, `ground_truth/<defect>/<stem>_mask.png`. */
export function readMvtec(root: string, category: string): Dataset {
  const base = join(root, category);
  if (!isDir(base)) throw new DatasetError('missing', `category folder ${base} does not exist`);
  const train = listImages(join(base, 'train', 'good')).map((path): Sample => ({ path, label: 0, defect: 'good' }));
  const test: Sample[] = [];
  const testDir = join(base, 'test');
  const defects = isDir(testDir) ? readdirSync(testDir).filter((d) => isDir(join(testDir, d))).sort() : [];
  const missingMasks: string[] = [];
  for (const defect of defects) {
    for (const path of listImages(join(testDir, defect))) {
      if (defect === 'good') {
        test.push({ path, label: 0, defect });
        continue;
      }
      const s = stem(path);
      const maskPath = findMask([
        join(base, 'ground_truth', defect, `${s}_mask.png`),
        join(base, 'ground_truth', defect, `${s}.png`),
      ]);
      if (!maskPath) missingMasks.push(path);
      test.push({ path, label: 1, defect, maskPath });
    }
  }
  if (missingMasks.length > 0) {
    throw new DatasetError('missing_mask', `${category}: ${missingMasks.length} anomalous test image(s) have no mask in ground_truth/<defect>/<stem>_mask.png, e.g. ${missingMasks.slice(0, 3).join(', ')}`);
  }
  return { layout: 'mvtec', root, category, train, test };
}

/** VisA prepared 1cls layout: `<cat>/train/good`, `<cat>/test/{good,bad}`, `<cat>/ground_truth/bad/<stem>.png`. */
export function readVisa1cls(root: string, category: string): Dataset {
  const ds = readMvtec(root, category);
  return { ...ds, layout: 'visa-1cls' };
}

/** Split a CSV line (VisA's CSV has no quoted fields, but accept simple quotes). */
function csvFields(line: string): string[] {
  return line.split(',').map((f) => f.trim().replace(/^"(.*)"$/, '$1'));
}

/** VisA as released: `split_csv/1cls.csv` with columns object,split,label,image,mask. */
export function readVisaCsv(root: string, category: string): Dataset {
  const csv = join(root, 'split_csv', '1cls.csv');
  if (!existsSync(csv)) throw new DatasetError('missing', `VisA split file ${csv} not found`);
  const lines = readFileSync(csv, 'utf8').split(/\r?\n/).filter((l) => l.trim() !== '');
  const header = csvFields(lines[0] ?? '');
  const col = (name: string): number => {
    const i = header.indexOf(name);
    if (i < 0) throw new DatasetError('bad_layout', `${csv}: column '${name}' missing (have ${header.join(',')})`);
    return i;
  };
  const [iObj, iSplit, iLabel, iImage, iMask] = [col('object'), col('split'), col('label'), col('image'), col('mask')];
  const train: Sample[] = [];
  const test: Sample[] = [];
  const missing: string[] = [];
  for (const line of lines.slice(1)) {
    const f = csvFields(line);
    if (f[iObj] !== category) continue;
    const path = join(root, f[iImage] ?? '');
    const anomalous = f[iLabel] === 'anomaly';
    const maskRel = f[iMask] ?? '';
    const sample: Sample = { path, label: anomalous ? 1 : 0, defect: anomalous ? 'bad' : 'good' };
    if (anomalous) {
      if (!maskRel) missing.push(path);
      else sample.maskPath = join(root, maskRel);
    }
    if (!existsSync(path)) missing.push(path);
    (f[iSplit] === 'train' ? train : test).push(sample);
  }
  if (train.length + test.length === 0) throw new DatasetError('empty_split', `${csv}: no rows for object '${category}'`);
  if (missing.length > 0) throw new DatasetError('missing', `${category}: ${missing.length} file(s) listed in ${csv} are missing, e.g. ${missing.slice(0, 3).join(', ')}`);
  return requireNonEmpty({ layout: 'visa-csv', root, category, train, test }, true);
}

/** Generic folder layout (anomalib's Folder): normal, abnormal, optional normal-test and mask folders. */
export function readFolder(opts: { root: string; normalDir: string; abnormalDir?: string; normalTestDir?: string; maskDir?: string; category?: string }): Dataset {
  const r = (p: string | undefined): string | undefined => (p === undefined ? undefined : resolve(opts.root, p));
  const normal = listImages(r(opts.normalDir)!);
  if (normal.length === 0) throw new DatasetError('empty_split', `no images in normal folder ${r(opts.normalDir)}`);
  const normalTest = opts.normalTestDir ? listImages(r(opts.normalTestDir)!) : [];
  const abnormal = opts.abnormalDir ? listImages(r(opts.abnormalDir)!) : [];
  const maskDir = r(opts.maskDir);
  const test: Sample[] = [
    ...normalTest.map((path): Sample => ({ path, label: 0, defect: 'good' })),
    ...abnormal.map((path): Sample => {
      const s = stem(path);
      const maskPath = maskDir ? findMask([join(maskDir, `${s}.png`), join(maskDir, `${s}_mask.png`), join(maskDir, basename(path))]) : undefined;
      return { path, label: 1, defect: 'abnormal', maskPath };
    }),
  ];
  if (maskDir) {
    const missing = test.filter((s) => s.label === 1 && !s.maskPath);
    if (missing.length > 0) throw new DatasetError('missing_mask', `${missing.length} abnormal image(s) have no mask in ${maskDir}, e.g. ${missing.slice(0, 3).map((s) => s.path).join(', ')}`);
  }
  return { layout: 'folder', root: opts.root, category: opts.category ?? basename(opts.root), train: normal.map((path) => ({ path, label: 0, defect: 'good' })), test };
}

/** Which layout a root folder has for a category, or undefined. */
export function detectLayout(root: string, category: string): Dataset['layout'] | undefined {
  if (existsSync(join(root, 'split_csv', '1cls.csv'))) return 'visa-csv';
  const base = join(root, category);
  if (isDir(join(base, 'train', 'good'))) {
    const bad = join(base, 'test', 'bad');
    return isDir(bad) && isDir(join(base, 'ground_truth', 'bad')) ? 'visa-1cls' : 'mvtec';
  }
  return undefined;
}

/** Read a category from a root, detecting the layout. Throws DatasetError naming what is wrong. */
export function readDataset(root: string, category: string, opts: { needTest?: boolean } = {}): Dataset {
  if (!isDir(root)) throw new DatasetError('missing', `dataset root ${root} does not exist or is not a folder`);
  const layout = detectLayout(root, category);
  let ds: Dataset;
  switch (layout) {
    case 'visa-csv':
      ds = readVisaCsv(root, category);
      break;
    case 'visa-1cls':
      ds = readVisa1cls(root, category);
      break;
    case 'mvtec':
      ds = readMvtec(root, category);
      break;
    default: {
      const cats = listCategories(root);
      throw new DatasetError('bad_layout', `${root}: no category '${category}' in a known layout (MVTec AD: <root>/<category>/train/good; VisA: split_csv/1cls.csv)${cats.length ? `; categories found: ${cats.join(', ')}` : ''}`);
    }
  }
  return requireNonEmpty(ds, opts.needTest ?? false);
}

/**
 * Normal images to train on beside a dataset's own (`fairline train --add-normal DIR`): from a
 * capture folder (src/io/captures.ts) the frames an operator marked "good part" on the operator
 * page, i.e. false rejects; else the images of a folder (or of its `good/`).
 * @throws DatasetError (`empty_split`) when there are none.
 */
export async function extraNormalImages(dir: string): Promise<string[]> {
  const root = resolve(dir);
  if (!isDir(root)) throw new DatasetError('missing', `--add-normal: ${root} is not a folder`);
  if (isCaptureRoot(root)) {
    const good = (await labelledCaptures(root, 'good')).map((e) => e.frame);
    if (good.length === 0) throw new DatasetError('empty_split', `--add-normal: no capture in ${root} is marked 'good part' (mark false rejects on the operator page first)`);
    return good;
  }
  const files = listImages(root).length > 0 ? listImages(root) : listImages(join(root, 'good'));
  if (files.length === 0) throw new DatasetError('empty_split', `--add-normal: no images in ${root} or ${join(root, 'good')}`);
  return files;
}

/** Categories under a root (folders with train/good, or objects of VisA's CSV). */
export function listCategories(root: string): string[] {
  const csv = join(root, 'split_csv', '1cls.csv');
  if (existsSync(csv)) {
    const lines = readFileSync(csv, 'utf8').split(/\r?\n/).slice(1).filter(Boolean);
    return [...new Set(lines.map((l) => csvFields(l)[0] ?? ''))].filter(Boolean).sort();
  }
  if (!isDir(root)) return [];
  return readdirSync(root).filter((d) => isDir(join(root, d, 'train', 'good'))).sort();
}
