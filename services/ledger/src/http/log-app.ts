import type { IncomingMessage, ServerResponse } from 'node:http';
import { Hono } from 'hono';
import { CustodyError, fromUtf8, toBase64, type Bytes } from '@custody/core';
import { MAX_BUNDLE_SIZE, MAX_ENTRY_SIZE, TILE_WIDTH, encodeEvent, formatTlogProof, parseTilePath, rfc6962, tilePath } from '@custody/ledger';
import type { TransparencyLog } from '../log.js';
import type { FsTileStore } from '../storage/tile-store.js';
import { endWhole, readNodeBody } from './node-server.js';
import type { Writers } from './writers.js';
import { problem, problemBody, problemHeaders, readBodyLimited } from './problem.js';

const MAX_EVENT_JSON = 64 * 1024;

/**
 * Before any write: a log takes no writes from web pages. A browser marks every request a page
 * makes (Origin, Sec-Fetch-Site); no log client does. Without this, a page could append to a
 * log on the reader's loopback with a form post (which browsers send without asking first).
 */
function refuseBrowser(origin: string | undefined, fetchSite: string | undefined): void {
  if (origin !== undefined || fetchSite !== undefined) throw new CustodyError('ERR_INPUT_UNSUPPORTED', 'this log takes no writes from web pages');
}

/** `POST /events`: a Custody event as JSON text, validated, encoded canonically and sequenced. */
async function appendEventJson(log: TransparencyLog, raw: Uint8Array): Promise<{ index: number; entry: Bytes }> {
  let value: unknown;
  try {
    value = JSON.parse(fromUtf8(raw));
  } catch (e) {
    throw new CustodyError('ERR_TLOG_EVENT', 'event is not JSON', { cause: e });
  }
  const entry = encodeEvent(value as Record<string, unknown>);
  const { index } = await log.addEntry(entry);
  return { index, entry };
}

/**
 * The log's HTTP API. Reads are the C2SP tlog-tiles static resources (`/checkpoint`,
 * `/tile/...`), served from the same directory any CDN could serve. Writes:
 *   POST /add      raw entry bytes          -> {"index": n}
 *   POST /events   a Custody event as JSON  -> {"index": n, "leafHash": base64}
 * Either takes `?wait=1` to answer only once a published checkpoint includes the entry, with a
 * C2SP tlog-proof for it. `GET /proof/<index>` returns a tlog-proof against the latest checkpoint.
 * With `writers`, a write needs `Authorization: Bearer <writer key>` of one of them (401
 * ERR_AUTH_REQUIRED / ERR_AUTH_INVALID otherwise); reads stay public.
 */
export function createLogApp(log: TransparencyLog, store: FsTileStore, options: { writers?: Writers } = {}): Hono {
  const writers = options.writers;
  const app = new Hono();
  app.onError((e) => problem(e));

  app.get('/checkpoint', async (c) => {
    const b = await store.readCheckpoint();
    return c.body(b, 200, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-cache, max-age=0' });
  });

  app.get('/tile/*', async (c) => {
    const rel = c.req.path.replace(/^\/+/, '');
    // Only canonical tile paths reach the filesystem (no traversal, one spelling per tile).
    const tile = parseTilePath(rel);
    if (tilePath(tile) !== rel) throw new CustodyError('ERR_TLOG_TILE', 'not a canonical tile path');
    const max = tile.level === 'entries' ? MAX_BUNDLE_SIZE : TILE_WIDTH * 32;
    const b = await store.readFileOrUndefined(rel, max);
    if (!b) return problem(new CustodyError('ERR_TLOG_TILE', 'tile not found'));
    return c.body(b, 200, { 'content-type': 'application/octet-stream', 'cache-control': 'public, max-age=31536000, immutable' });
  });

  const answer = async (index: number, leafHash: Uint8Array, wait: boolean): Promise<Response> => {
    const body: Record<string, unknown> = { index, leafHash: toBase64(leafHash) };
    if (wait) {
      await log.waitForCheckpoint(index, undefined, true);
      body.proof = formatTlogProof(await log.proof(index));
    }
    return new Response(JSON.stringify(body), { status: 200, headers: { 'content-type': 'application/json' } });
  };

  app.post('/add', async (c) => {
    refuseBrowser(c.req.header('origin'), c.req.header('sec-fetch-site'));
    writers?.check(c.req.header('authorization'));
    const entry = await readBodyLimited(c.req.raw, MAX_ENTRY_SIZE);
    const { index } = await log.addEntry(entry);
    return answer(index, rfc6962.leaf(entry), c.req.query('wait') === '1');
  });

  app.post('/events', async (c) => {
    refuseBrowser(c.req.header('origin'), c.req.header('sec-fetch-site'));
    writers?.check(c.req.header('authorization'));
    const { index, entry } = await appendEventJson(log, await readBodyLimited(c.req.raw, MAX_EVENT_JSON));
    return answer(index, rfc6962.leaf(entry), c.req.query('wait') === '1');
  });

  app.get('/proof/:index', async (c) => {
    const s = c.req.param('index');
    if (!/^(0|[1-9][0-9]{0,15})$/.test(s)) throw new CustodyError('ERR_INPUT_MALFORMED', 'index must be a decimal');
    return c.body(formatTlogProof(await log.proof(Number(s))), 200, { 'content-type': 'text/plain; charset=utf-8' });
  });

  app.get('/healthz', (c) => c.json({ ok: true, origin: log.origin, size: log.publishedSize }));
  return app;
}

/** How long a refused request's remaining body is read before its connection is closed. */
const DRAIN_MS = 1000;

/**
 * `POST /events` (without `?wait=1`) straight from node:http: the body read into one buffer,
 * the answer written in one call, no Web Request, Response or streams. Every audited operation
 * of a broker or gateway pays this once or twice, so the write path skips the app; the answer
 * and the refusals are those of the app's route (which still serves `?wait=1` and in-process
 * requests). Returns whether it took the request.
 */
export function createEventsNodeHandler(log: TransparencyLog, options: { writers?: Writers } = {}): (req: IncomingMessage, res: ServerResponse) => boolean {
  const writers = options.writers;
  const reply = (req: IncomingMessage, res: ServerResponse, status: number, headers: Record<string, string>, body: string) => {
    if (!res.destroyed) endWhole(req, res, status, headers, body, { ms: DRAIN_MS });
  };
  return (req, res) => {
    if (req.method !== 'POST' || req.url !== '/events') return false;
    Promise.resolve()
      .then(() => {
        refuseBrowser(req.headers.origin, req.headers['sec-fetch-site']);
        writers?.check(req.headers.authorization);
      })
      .then(() => readNodeBody(req, MAX_EVENT_JSON))
      .then((raw) => appendEventJson(log, raw))
      .then(
        ({ index, entry }) => reply(req, res, 200, { 'content-type': 'application/json' }, JSON.stringify({ index, leafHash: toBase64(rfc6962.leaf(entry)) })),
        (e: unknown) => {
          const p = problemBody(e);
          reply(req, res, p.status, problemHeaders(p.status), p.body);
        },
      )
      .catch(() => res.destroy());
    return true;
  };
}
