import sharp from 'sharp';
import { decodeImage } from '../../src/io/image.js';
const png = await sharp({ create: { width: 37, height: 23, channels: 3, background: { r: 120, g: 30, b: 200 } } }).png().toBuffer();
const noisy = Buffer.alloc(40*30*3); for (let i=0;i<noisy.length;i++) noisy[i]=(i*7919)%256;
const png2 = await sharp(noisy, { raw: { width: 40, height: 30, channels: 3 } }).png().toBuffer();
const jpg = await sharp(noisy, { raw: { width: 40, height: 30, channels: 3 } }).jpeg().toBuffer();
async function t(name: string, b: Buffer) {
  const t0 = performance.now();
  try { const r = await decodeImage(b); console.log(name, 'OK', r.width, r.height, (performance.now()-t0).toFixed(1)); }
  catch (e) { console.log(name, 'ERR', (e as any).code, (e as Error).message.slice(0,100), (performance.now()-t0).toFixed(1)); }
}
for (const frac of [0.3, 0.5, 0.8, 0.95]) { await t(`png trunc ${frac}`, png2.subarray(0, Math.floor(png2.length*frac))); await t(`jpg trunc ${frac}`, jpg.subarray(0, Math.floor(jpg.length*frac))); }
for (const off of [20, 40, 60, 80, 100]) { const b = Buffer.from(png2); b[off]^=0xff; await t(`png flip ${off}`, b); const j = Buffer.from(jpg); j[Math.min(off*3, j.length-3)]^=0xff; await t(`jpg flip ${off*3}`, j); }
// huge header
const huge = Buffer.from(png2); huge.writeUInt32BE(100000, 16); huge.writeUInt32BE(100000, 20); await t('png huge 1e5', huge);
const huge2 = Buffer.from(png2); huge2.writeUInt32BE(16000, 16); huge2.writeUInt32BE(16000, 20); await t('png huge 16000 (bad crc)', huge2);
// fix crc for IHDR
import { crc32 } from 'node:zlib';
function fixIhdr(b: Buffer){ const c = (crc32 as any)(b.subarray(12, 29)); b.writeUInt32BE(c>>>0, 29); return b; }
await t('png huge 16000 crc ok', fixIhdr(Buffer.from(huge2)));
await t('png huge 1e5 crc ok', fixIhdr(Buffer.from(huge)));
// jpeg SOF
const sof = jpg.indexOf(Buffer.from([0xff, 0xc0]));
const jh = Buffer.from(jpg); jh.writeUInt16BE(65000, sof+5); jh.writeUInt16BE(65000, sof+7); await t('jpg huge 65000', jh);
const jh2 = Buffer.from(jpg); jh2.writeUInt16BE(16000, sof+5); jh2.writeUInt16BE(16000, sof+7); await t('jpg huge 16000', jh2);
await t('random', Buffer.from(Array.from({length: 500}, (_, i) => (i*31+7)%256)));
await t('gif header only', Buffer.from('GIF89a'));
console.log(process.memoryUsage().rss/1e6);
