import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { CustodyError } from '@custody/core';
import { MAX_BUNDLE_SIZE, type FetchLike } from '@custody/ledger';

const NULL_BODY = new Set([204, 205, 304]);

/**
 * A FetchLike over node:http and node:https with keep-alive agents: what the key broker and the
 * gateway use to reach the ledger (appends, the checkpoint, tiles). A gateway pays this
 * transport twice on every request (the policy decision, the receipt), and node:http costs a
 * third of undici fetch's CPU per call on the machines in BENCHMARKS.md.
 *
 * The answer is read whole, up to `maxBody` bytes (default: the largest entry bundle); a longer
 * one fails the call and drops its connection. Callers still bound what they accept. A call
 * with no answer within `timeoutMs` (default 30 s) fails, so a stalled ledger cannot hold a
 * request forever.
 */
export function nodeHttpFetch(options: { maxBody?: number; timeoutMs?: number } = {}): FetchLike {
  const maxBody = options.maxBody ?? MAX_BUNDLE_SIZE;
  const timeoutMs = options.timeoutMs ?? 30_000;
  const agents = { http: new HttpAgent({ keepAlive: true }), https: new HttpsAgent({ keepAlive: true }) };
  return (url, init = {}) =>
    new Promise<Response>((resolve, reject) => {
      let u: URL;
      try {
        u = new URL(url);
        if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('not http(s)');
      } catch (e) {
        reject(new CustodyError('ERR_USAGE', 'the ledger URL must be http:// or https://', { cause: e }));
        return;
      }
      const signal = init.signal;
      if (signal?.aborted) {
        reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
        return;
      }
      const https = u.protocol === 'https:';
      const headers: Record<string, string | number> = { ...init.headers };
      if (init.body !== undefined) headers['content-length'] = typeof init.body === 'string' ? Buffer.byteLength(init.body) : init.body.byteLength;
      let settled = false;
      // The first outcome wins; a failure drops the connection (it may be mid-answer).
      const fail = (e: unknown) => {
        if (settled) return;
        settled = true;
        reject(e instanceof Error ? e : new Error(String(e)));
        req.destroy();
      };
      const req = (https ? httpsRequest : httpRequest)(u, { method: init.method ?? 'GET', headers, agent: https ? agents.https : agents.http, timeout: timeoutMs }, (res: IncomingMessage) => {
        const parts: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          if (settled) return;
          size += chunk.length;
          if (size > maxBody) fail(new CustodyError('ERR_INPUT_TOO_LARGE', 'the answer is larger than allowed', { detail: { max: maxBody } }));
          else parts.push(chunk);
        });
        res.once('end', () => {
          if (settled) return;
          settled = true;
          const status = res.statusCode ?? 502;
          const out = new Headers();
          for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) out.set(k, Array.isArray(v) ? v.join(', ') : v);
          resolve(new Response(NULL_BODY.has(status) ? null : Buffer.concat(parts, size), { status, headers: out }));
        });
        res.on('error', fail);
        res.once('close', () => {
          if (!res.complete) fail(new Error('the answer was cut off'));
        });
      });
      req.once('timeout', () => fail(new Error(`no answer within ${timeoutMs} ms`)));
      req.on('error', fail);
      if (signal) {
        const onAbort = () => fail(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
        signal.addEventListener('abort', onAbort, { once: true });
        req.once('close', () => signal.removeEventListener('abort', onAbort));
      }
      req.end(init.body);
    });
}
