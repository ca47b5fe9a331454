import { Agent as HttpAgent, request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { CustodyError } from '@custody/core';
import { MAX_BUNDLE_SIZE, type FetchLike } from '@custody/ledger';

const NULL_BODY = new Set([204, 205, 304]);

/** A FetchLike that owns its connections: `close` ends the idle ones (keep-alive). */
export interface NodeHttpFetch extends FetchLike {
  close(): void;
}

export interface NodeHttpFetchOptions {
  /** Longest answer body accepted (default: the largest entry bundle); a longer one fails the call. */
  maxBody?: number;
  /** Deadline of a whole call, connect to last byte (default 30 s), however the bytes trickle in. */
  timeoutMs?: number;
  /** Most connections open at once per scheme (default 16); more calls queue. */
  maxSockets?: number;
}

/**
 * A FetchLike over node:http and node:https with keep-alive agents: what the key broker and the
 * gateway use to reach the ledger (appends, the checkpoint, tiles). A gateway pays this
 * transport twice on every request (the policy decision, the receipt), and node:http costs a
 * third of undici fetch's CPU per call on the machines in BENCHMARKS.md.
 *
 * The answer is read whole, up to `maxBody` bytes; a longer one fails the call
 * (ERR_INPUT_TOO_LARGE) and drops its connection. A call that has not ended within `timeoutMs`,
 * an answer cut off, a status outside 200-599 and a connection that fails are ERR_TLOG_UNAVAILABLE
 * (`detail.reason`). An aborted call rejects with the signal's reason, as fetch does.
 */
export function nodeHttpFetch(options: NodeHttpFetchOptions = {}): NodeHttpFetch {
  const maxBody = options.maxBody ?? MAX_BUNDLE_SIZE;
  const timeoutMs = options.timeoutMs ?? 30_000;
  const agentOptions = { keepAlive: true, maxSockets: options.maxSockets ?? 16, timeout: 60_000 };
  const agents = { http: new HttpAgent(agentOptions), https: new HttpsAgent(agentOptions) };
  const unavailable = (reason: string, message: string, cause?: unknown) => new CustodyError('ERR_TLOG_UNAVAILABLE', message, { detail: { reason }, ...(cause !== undefined ? { cause } : {}) });
  const call = (url: string, init: Parameters<FetchLike>[1] = {}) =>
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
      const deadline = setTimeout(() => fail(unavailable('timeout', `the ledger did not answer within ${timeoutMs} ms`)), timeoutMs);
      deadline.unref();
      const done = () => {
        settled = true;
        clearTimeout(deadline);
        signal?.removeEventListener('abort', onAbort);
      };
      // The first outcome wins; a failure drops the connection (it may be mid-answer).
      const fail = (e: Error) => {
        if (settled) return;
        done();
        reject(e);
        req.destroy();
      };
      const onAbort = () => {
        const reason: unknown = signal!.reason;
        fail(reason instanceof Error ? reason : new Error('aborted'));
      };
      let req: ClientRequest;
      try {
        req = (https ? httpsRequest : httpRequest)(u, { method: init.method ?? 'GET', headers, agent: https ? agents.https : agents.http }, onResponse);
      } catch (e) {
        // A header Node refuses (a control character in a value): a usage error, nothing sent.
        clearTimeout(deadline);
        reject(new CustodyError('ERR_USAGE', 'the request to the ledger could not be made (a header is invalid)', { cause: e }));
        return;
      }
      function onResponse(res: IncomingMessage): void {
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
          const status = res.statusCode ?? 0;
          // Any 3-digit status parses; a Response holds 200-599 only.
          if (status < 200 || status > 599) {
            fail(unavailable('status', 'the ledger answered with an invalid HTTP status'));
            return;
          }
          let answer: Response;
          try {
            const out = new Headers();
            for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) out.set(k, Array.isArray(v) ? v.join(', ') : v);
            answer = new Response(NULL_BODY.has(status) ? null : Buffer.concat(parts, size), { status, headers: out });
          } catch (e) {
            fail(unavailable('answer', 'the ledger answer is not valid HTTP', e));
            return;
          }
          done();
          resolve(answer);
        });
        res.on('error', (e) => fail(unavailable('cut-off', 'the ledger answer was cut off', e)));
        res.once('close', () => {
          if (!res.complete) fail(unavailable('cut-off', 'the ledger answer was cut off'));
        });
      }
      req.on('error', (e) => fail(unavailable('connect', 'the ledger could not be reached', e)));
      signal?.addEventListener('abort', onAbort, { once: true });
      req.end(init.body);
    });
  return Object.assign(call, {
    close() {
      agents.http.destroy();
      agents.https.destroy();
    },
  });
}
