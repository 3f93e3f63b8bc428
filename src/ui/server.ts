/**
 * The operator page's server (node:http): one static page (src/ui/page.html, inline JS and CSS,
 * no CDN, no build step), a server-sent event stream of the station's state, the pictures of the
 * reject cards, and review marks.
 *
 * | route                            | what                                                         |
 * |----------------------------------|--------------------------------------------------------------|
 * | `GET /`                          | the page                                                     |
 * | `GET /events`                    | SSE: the state snapshot (src/ui/live.ts) every `intervalMs`  |
 * | `GET /api/state`                 | the last snapshot as JSON                                    |
 * | `GET /api/cards/<id>`            | a card's verdict JSON                                        |
 * | `GET /api/cards/<id>/<kind>`     | `overlay`, `input` (JPEG) or `frame` (source resolution)     |
 * | `POST /api/cards/<id>/label`     | `{"label": "good" \| "defect"}` with `Authorization: Bearer <ui.token>` |
 *
 * Safe by default: it binds to 127.0.0.1 unless told otherwise, and then also refuses requests
 * whose Host is not a loopback name (a web page elsewhere cannot reach it by DNS rebinding). The
 * token is compared in constant time (SHA-256 digests of equal length, `timingSafeEqual`);
 * without `ui.token` the page is read-only. Ids in URLs must be capture ids and are looked up
 * in memory, never joined into a path. A slow or stalled browser cannot slow the station: the
 * snapshot is built once per interval (not per frame) and serialised once for all clients; a
 * client whose socket has not drained misses updates (counted) and is disconnected after
 * `slowClientMs`.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ConfigError, FairlineError } from '../errors.js';
import { REVIEW_LABELS, isCaptureId, type CaptureEntry, type ReviewLabel } from '../io/captures.js';
import type { LiveView } from './live.js';
import { PICTURE_KINDS, RenderBudget, cardPicture, type PictureKind } from './pictures.js';

export interface UiServerOptions {
  /** Default 127.0.0.1. */
  host?: string;
  /** 0 picks a free port. */
  port: number;
  /** Review marks need it; absent = read-only. */
  token?: string;
  view: LiveView;
  /** Where marks go (the recorder); absent = nothing captured, marks refused with 409. */
  review?: { label(id: string, label: ReviewLabel): Promise<CaptureEntry> };
  /** More fields for each snapshot (capture counters). */
  extra?: () => Record<string, unknown>;
  /** Snapshot period (default 500 ms). */
  intervalMs?: number;
  /** Concurrent event streams (default 32); more get 503. */
  maxClients?: number;
  /** A client that has not taken an update for this long is disconnected (default 30000 ms). */
  slowClientMs?: number;
  /** Time the cards' thumbnails may take, ms per second on average (default 30: 3 % of one core). */
  thumbnailMsPerSecond?: number;
  hooks?: {
    onClients?(n: number): void;
    /** Updates not sent to a client whose socket was still full. */
    onUpdateDropped?(n: number): void;
    onMark?(id: string, label: ReviewLabel): void;
  };
  log?: (msg: string) => void;
}

export interface UiServer {
  /** `http://127.0.0.1:8080/` */
  readonly url: string;
  readonly port: number;
  /** Event-stream clients connected now. */
  clients(): number;
  /** Updates dropped for slow clients so far. */
  droppedUpdates(): number;
  close(): Promise<void>;
}

interface Client {
  res: ServerResponse;
  blockedSince: number | undefined;
}

const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '::1', '[::1]']);
const LOOPBACK_HOST_HEADER = /^(localhost|127(?:\.\d{1,3}){3}|\[::1\])(?::\d{1,5})?$/i;
const MAX_BODY = 1024;

const COMMON_HEADERS = {
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'X-Frame-Options': 'DENY',
};
const PAGE_CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const sha256 = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

/**
 * Whether `given` is the token, in time that does not depend on where they differ: both are
 * hashed first, so `timingSafeEqual` always compares 32 bytes (it throws on unequal lengths,
 * and comparing raw strings of different lengths would leak the length).
 */
export function tokenMatches(given: string | undefined, token: string | undefined): boolean {
  if (token === undefined || given === undefined) return false;
  return timingSafeEqual(sha256(given), sha256(token));
}

/** The token of a request: `Authorization: Bearer <token>` or `X-Fairline-Token`. */
function requestToken(req: IncomingMessage): string | undefined {
  const auth = req.headers.authorization;
  if (typeof auth === 'string') {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(auth);
    if (m) return m[1];
  }
  const x = req.headers['x-fairline-token'];
  return typeof x === 'string' && x !== '' ? x : undefined;
}

function send(res: ServerResponse, status: number, body: string | Buffer, type: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { ...COMMON_HEADERS, 'Content-Type': type, 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store', ...headers });
  res.end(body);
}

function json(res: ServerResponse, status: number, o: unknown): void {
  send(res, status, `${JSON.stringify(o)}\n`, 'application/json; charset=utf-8');
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let size = 0;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new Error('body too large'));
        req.destroy();
      } else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/**
 * Serve the operator page.
 *
 * @example
 * ```ts
 * const ui = await serveUi({ port: 8080, token: cfg.ui.token, view: live, review: recorder });
 * log(`operator page: ${ui.url}`);
 * await ui.close();
 * ```
 * @throws ConfigError when the address cannot be bound.
 */
export async function serveUi(o: UiServerOptions): Promise<UiServer> {
  const host = o.host ?? '127.0.0.1';
  const loopbackOnly = LOOPBACK_HOSTS.has(host);
  const page = await readFile(new URL('./page.html', import.meta.url));
  const clients = new Set<Client>();
  const slowMs = o.slowClientMs ?? 30_000;
  const budget = new RenderBudget(o.thumbnailMsPerSecond ?? 30);
  let dropped = 0;
  let message = '';

  const snapshot = (sample: boolean): Record<string, unknown> => ({
    ...o.view.tick(sample),
    review: { enabled: o.token !== undefined, captures: o.review !== undefined },
    clients: clients.size,
    thumbnailsSkipped: budget.skipped,
    ...o.extra?.(),
  });

  const broadcast = (): void => {
    const snap = snapshot(true);
    // Thumbnails are drawn here, for the cards on the page, while someone watches; the pages
    // ask for them once a snapshot says they are drawn (no request for a card never drawn).
    if (clients.size > 0) {
      for (const c of snap.cards as { id: string; pictures: boolean; thumb: boolean | null }[]) {
        const card = c.pictures && c.thumb === null ? o.view.card(c.id) : undefined;
        if (card && !card.pictures.has('thumb')) void cardPicture(card, 'thumb', budget).catch(() => undefined);
      }
    }
    message = `data: ${JSON.stringify(snap)}\n\n`;
    const now = Date.now();
    let missed = 0;
    for (const c of clients) {
      if (c.blockedSince !== undefined) {
        missed++;
        if (now - c.blockedSince > slowMs) {
          o.log?.(`ui: disconnecting a client that took no update for ${slowMs} ms`);
          c.res.destroy();
        }
        continue;
      }
      if (!c.res.write(message)) {
        c.blockedSince = now;
        c.res.once('drain', () => (c.blockedSince = undefined));
      }
    }
    if (missed > 0) {
      dropped += missed;
      o.hooks?.onUpdateDropped?.(missed);
    }
  };

  const events = (req: IncomingMessage, res: ServerResponse): void => {
    if (clients.size >= (o.maxClients ?? 32)) {
      json(res, 503, { error: `too many viewers (${clients.size}); close a page and reload` });
      return;
    }
    res.writeHead(200, { ...COMMON_HEADERS, 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-store', Connection: 'keep-alive', 'X-Accel-Buffering': 'no' });
    res.socket?.setNoDelay(true);
    res.write(`retry: 2000\n\n${message || `data: ${JSON.stringify(snapshot(false))}\n\n`}`);
    const client: Client = { res, blockedSince: undefined };
    clients.add(client);
    o.hooks?.onClients?.(clients.size);
    const gone = (): void => {
      if (clients.delete(client)) o.hooks?.onClients?.(clients.size);
    };
    req.on('close', gone);
    res.on('error', gone);
  };

  const mark = async (req: IncomingMessage, res: ServerResponse, id: string): Promise<void> => {
    if (o.token === undefined) return json(res, 403, { error: 'read-only: this station has no ui.token, so captures cannot be marked' });
    if (!tokenMatches(requestToken(req), o.token)) return json(res, 403, { error: 'a valid token is needed to mark captures' });
    if (!/^application\/json\b/i.test(req.headers['content-type'] ?? '')) return json(res, 415, { error: 'send JSON: Content-Type: application/json' });
    let label: unknown;
    try {
      label = (JSON.parse(await readBody(req)) as { label?: unknown }).label;
    } catch {
      return json(res, 400, { error: 'body must be JSON {"label": "good" | "defect"} of at most 1 KiB' });
    }
    if (!REVIEW_LABELS.includes(label as ReviewLabel)) return json(res, 400, { error: `label must be ${REVIEW_LABELS.map((l) => `"${l}"`).join(' or ')}` });
    if (!o.review) return json(res, 409, { error: 'nothing is captured on this station (configure record: in the station config)' });
    try {
      const e = await o.review.label(id, label as ReviewLabel);
      o.view.onLabel(id, label as ReviewLabel);
      o.hooks?.onMark?.(id, label as ReviewLabel);
      o.log?.(`ui: capture ${id} marked ${String(label)}`);
      json(res, 200, { id, label, dir: e.dir });
    } catch (err) {
      const code = err instanceof FairlineError ? err.code : 'internal';
      json(res, code === 'unknown_capture' ? 409 : code === 'bad_capture_id' || code === 'bad_label' ? 400 : 500, { error: (err as Error).message });
    }
  };

  const cards = async (req: IncomingMessage, res: ServerResponse, parts: string[]): Promise<void> => {
    const [id, rest] = parts;
    if (id === undefined || !isCaptureId(id) || parts.length > 2) return json(res, 400, { error: 'not a card id' });
    if (rest === 'label') {
      if (req.method !== 'POST') return send(res, 405, 'use POST\n', 'text/plain', { Allow: 'POST' });
      return mark(req, res, id);
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'use GET\n', 'text/plain', { Allow: 'GET, HEAD' });
    const card = o.view.card(id);
    if (!card) return json(res, 404, { error: `no card ${id} (only the last rejects are kept)` });
    if (rest === undefined) return json(res, 200, { id, verdict: card.verdict, captured: card.capture !== undefined, label: card.capture?.label ?? null });
    const kind = rest;
    if (!PICTURE_KINDS.includes(kind as PictureKind)) return json(res, 404, { error: `no picture '${rest.slice(0, 40)}' (${PICTURE_KINDS.join(', ')})` });
    try {
      const pic = await cardPicture(card, kind as PictureKind, budget);
      // A card's pictures never change: browsers may keep them.
      send(res, 200, pic.data, pic.type, { 'Cache-Control': 'private, max-age=86400, immutable' });
    } catch (err) {
      json(res, err instanceof FairlineError && err.code === 'no_picture' ? 404 : 500, { error: (err as Error).message });
    }
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (loopbackOnly && !LOOPBACK_HOST_HEADER.test(req.headers.host ?? '')) {
      return json(res, 421, { error: 'this page answers to localhost only (bound to a loopback address); open it through an SSH tunnel' });
    }
    const url = new URL(req.url ?? '/', 'http://ui.invalid');
    let parts: string[];
    try {
      parts = url.pathname.split('/').slice(1).map((p) => decodeURIComponent(p));
    } catch {
      return json(res, 400, { error: 'malformed URL' });
    }
    const path = `/${parts.join('/')}`;
    if (parts[0] === 'api' && parts[1] === 'cards') return cards(req, res, parts.slice(2));
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'use GET\n', 'text/plain', { Allow: 'GET, HEAD' });
    if (path === '/' || path === '/index.html') return send(res, 200, page, 'text/html; charset=utf-8', { 'Content-Security-Policy': PAGE_CSP });
    if (path === '/events') return events(req, res);
    if (path === '/api/state') return json(res, 200, snapshot(false));
    return json(res, 404, { error: `no ${path.slice(0, 100)}` });
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) json(res, 500, { error: (err as Error).message });
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new ConfigError(`cannot serve the operator page on ${host}:${o.port}: ${err.message}`, { cause: err })));
    server.listen(o.port, host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const timer = setInterval(broadcast, o.intervalMs ?? 500);
  timer.unref();
  broadcast();
  const shownHost = host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host;
  return {
    url: `http://${shownHost}:${port}/`,
    port,
    clients: () => clients.size,
    droppedUpdates: () => dropped,
    close: () =>
      new Promise<void>((resolve) => {
        clearInterval(timer);
        for (const c of clients) c.res.end();
        clients.clear();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
