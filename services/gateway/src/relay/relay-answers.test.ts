// What the relay passes back from a gateway that misbehaves or is hostile: a large answer is not
// held whole in the relay's memory, and an answer of a type the route never has is not served as
// that type under the relay's origin. And the gateway URL an operator gives is checked up front.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isCustodyError } from '@custody/core';
import { listen, type RunningServer } from '../http/serve.js';
import { createGatewayLogger } from '../observability/logger.js';
import { createRelayApp } from './relay.js';

const LARGE = 1024 * 1024;
const FIRST = 100 * 1024;

describe('relay answers from a misbehaving gateway', () => {
  let gateway: Server;
  let relay: RunningServer;
  /** What the stand-in gateway answers next. */
  let answer: (req: IncomingMessage, res: ServerResponse) => void = (_req, res) => res.end();

  beforeAll(async () => {
    gateway = createServer((req, res) => {
      req.resume();
      req.on('end', () => answer(req, res));
    });
    await new Promise<void>((r) => gateway.listen(0, '127.0.0.1', r));
    relay = await listen(createRelayApp({ gateway: `http://127.0.0.1:${(gateway.address() as AddressInfo).port}`, logger: createGatewayLogger({ destination: { write: () => undefined } }) }));
  });
  afterAll(async () => {
    await relay.close();
    gateway.closeAllConnections();
    await new Promise((r) => gateway.close(r));
  });

  it('passes a large answer with a Content-Length on as it comes, instead of reading it whole first (a client that does not read would pin all of it)', async () => {
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    answer = (_req, res) => {
      res.writeHead(200, { 'content-type': 'message/ohttp-res', 'content-length': String(LARGE) });
      res.write(Buffer.alloc(FIRST, 1));
      // The rest only once the client has had the first part: read whole, the head would never come.
      void released.then(() => res.end(Buffer.alloc(LARGE - FIRST, 2)));
    };
    const res = await fetch(`${relay.url}/ohttp`, { method: 'POST', headers: { 'content-type': 'message/ohttp-req' }, body: new Uint8Array(40) });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    const first = await reader.read();
    expect(first.done).toBe(false);
    expect(first.value![0]).toBe(1);
    release();
    let n = first.value!.byteLength;
    for (;;) {
      const r = await reader.read();
      if (r.done) break;
      n += r.value.byteLength;
    }
    expect(n).toBe(LARGE);
  });

  it("serves the gateway's answer only under the media types its route has (others as application/octet-stream), with nosniff", async () => {
    const cases: Array<{ path: string; init?: RequestInit; sent: string; served: string }> = [
      { path: '/.well-known/custody/attestation', sent: 'text/html; charset=utf-8', served: 'application/octet-stream' },
      { path: '/.well-known/custody/attestation', sent: 'application/json; charset=utf-8', served: 'application/json; charset=utf-8' },
      { path: '/.well-known/ohttp-gateway', sent: 'image/svg+xml', served: 'application/octet-stream' },
      { path: '/.well-known/ohttp-gateway', sent: 'application/ohttp-keys', served: 'application/ohttp-keys' },
      { path: '/ohttp', init: { method: 'POST', headers: { 'content-type': 'message/ohttp-req' }, body: new Uint8Array(40) }, sent: 'text/html', served: 'application/octet-stream' },
      { path: '/ohttp', init: { method: 'POST', headers: { 'content-type': 'message/ohttp-req' }, body: new Uint8Array(40) }, sent: 'message/ohttp-res', served: 'message/ohttp-res' },
      { path: '/ohttp', init: { method: 'POST', headers: { 'content-type': 'message/ohttp-req' }, body: new Uint8Array(40) }, sent: 'application/problem+json', served: 'application/problem+json' },
    ];
    for (const c of cases) {
      answer = (_req, res) => {
        res.writeHead(200, { 'content-type': c.sent });
        res.end('<script>alert(1)</script>');
      };
      const res = await fetch(`${relay.url}${c.path}`, c.init);
      await res.arrayBuffer();
      expect(res.headers.get('content-type'), `${c.path} ${c.sent}`).toBe(c.served);
      expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    }
  });
});

describe('relay gateway URL', () => {
  it('refuses a gateway URL with credentials, a query or a fragment (ERR_USAGE), without repeating a password', () => {
    for (const gateway of ['http://admin:s3cret@127.0.0.1:8443', 'http://127.0.0.1:8443/?x=1', 'http://127.0.0.1:8443/#', 'ftp://127.0.0.1/', 'not a url']) {
      let err: unknown;
      try {
        createRelayApp({ gateway });
      } catch (e) {
        err = e;
      }
      expect(isCustodyError(err) && err.code, gateway).toBe('ERR_USAGE');
      expect((err as Error).message).not.toContain('s3cret');
    }
    // A base path is fine.
    expect(() => createRelayApp({ gateway: 'https://gateway.example/custody/' })).not.toThrow();
  });
});
