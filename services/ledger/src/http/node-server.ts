import { createServer, type IncomingMessage, type RequestListener, type Server, type ServerOptions, type ServerResponse } from 'node:http';
import { CustodyError, joinBytes, type Bytes } from '@custody/core';

/**
 * Node-side HTTP helpers shared by the services that answer their hot route straight from
 * node:http and the rest through a Hono app (the ledger's `POST /events`, the gateway's
 * `POST /ohttp`).
 */

/** Takes a request before the app sees it; returns whether it did. */
export type NodeIntercept = (req: IncomingMessage, res: ServerResponse) => boolean;

/** A `createServer` for @hono/node-server's `serve` that offers every request to `intercept` first. */
export function interceptingServer(intercept: NodeIntercept | undefined): (opts: ServerOptions, listener: RequestListener) => Server {
  return (opts, listener) =>
    createServer(
      opts,
      intercept
        ? (req, res) => {
            if (!intercept(req, res)) listener(req, res);
          }
        : listener,
    );
}

/**
 * A node:http request body in one buffer, bounded: refused up front by its Content-Length, then
 * by what arrives (ERR_INPUT_TOO_LARGE); a body the client breaks off is ERR_INPUT_MALFORMED.
 * A body that came in one chunk is returned without a copy.
 */
export function readNodeBody(req: IncomingMessage, max: number): Promise<Bytes> {
  const tooLarge = () => new CustodyError('ERR_INPUT_TOO_LARGE', 'request body is larger than allowed', { detail: { max } });
  const declared = req.headers['content-length'];
  if (declared !== undefined && /^[0-9]{1,15}$/.test(declared) && Number(declared) > max) return Promise.reject(tooLarge());
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    let failed = false;
    req.on('data', (chunk: Buffer) => {
      if (failed) return;
      size += chunk.length;
      if (size > max) {
        failed = true;
        reject(tooLarge());
      } else parts.push(chunk);
    });
    req.once('end', () => {
      if (failed) return;
      const only = parts.length === 1 ? parts[0]! : undefined;
      resolve(only ? new Uint8Array(only.buffer as ArrayBuffer, only.byteOffset, only.byteLength) : joinBytes(parts, size));
      // The listeners keep `parts` reachable as long as the request object lives: let the pieces go.
      parts.length = 0;
    });
    req.once('error', (e) => {
      if (!failed) reject(new CustodyError('ERR_INPUT_MALFORMED', 'the request body could not be read', { cause: e }));
      failed = true;
    });
  });
}
