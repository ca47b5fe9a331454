// The floor path of bench/gateway.ts: the least any confidential gateway of this shape pays on
// this machine. A bench-only exchange, not a Custody format: the client seals the request to the
// server's X25519 key (ephemeral key, one DH, HKDF, AES-128-GCM); the server opens it, forwards
// the plaintext to the model server exactly as the plain proxy does, seals the response (each
// streamed chunk on its own), and signs a receipt-sized record (Ed25519 over the SHA-256 of
// request and response, padded to 900 bytes); the client opens the response and checks the
// signature. Everything the gateway adds beyond this (Binary HTTP, OHTTP framing, date, replay
// and tenant checks, PII scan, policy decision and receipt in the ledger, logging, metrics) is
// what the gateway row costs over the floor row.
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  hkdfSync,
  sign,
  verify,
  type KeyObject,
} from 'node:crypto';
import { Agent, createServer, request } from 'node:http';

const RECEIPT_BYTES = 900;
const TAG = 16;

interface Keys {
  key: Buffer;
  nonce: Buffer;
}

function derive(shared: Buffer, enc: Buffer, label: string): Keys {
  const okm = Buffer.from(hkdfSync('sha256', shared, enc, label, 28));
  return { key: okm.subarray(0, 16), nonce: okm.subarray(16) };
}

/** The nonce of chunk `i`: the base nonce with i XORed into its last four bytes. */
function nonceOf(k: Keys, i: number): Buffer {
  const n = Buffer.from(k.nonce);
  n.writeUInt32BE((n.readUInt32BE(8) ^ i) >>> 0, 8);
  return n;
}

function seal(k: Keys, i: number, data: Uint8Array): Buffer {
  const c = createCipheriv('aes-128-gcm', k.key, nonceOf(k, i));
  return Buffer.concat([c.update(data), c.final(), c.getAuthTag()]);
}

function open(k: Keys, i: number, data: Uint8Array): Buffer {
  const d = createDecipheriv('aes-128-gcm', k.key, nonceOf(k, i));
  d.setAuthTag(data.subarray(data.length - TAG));
  return Buffer.concat([d.update(data.subarray(0, data.length - TAG)), d.final()]);
}

function record(requestDigest: Buffer, responseDigest: Buffer): Buffer {
  const r = Buffer.alloc(RECEIPT_BYTES);
  requestDigest.copy(r, 0);
  responseDigest.copy(r, 32);
  return r;
}

function rawPublic(k: KeyObject): Buffer {
  return Buffer.from(k.export({ format: 'jwk' }).x!, 'base64url');
}

function importX25519(raw: Buffer): KeyObject {
  return createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: raw.toString('base64url') }, format: 'jwk' });
}

function frame(data: Buffer): Buffer {
  const f = Buffer.allocUnsafe(4 + data.length);
  f.writeUInt32BE(data.length, 0);
  data.copy(f, 4);
  return f;
}

/** Starts the floor server in this process; resolves with its URL and public keys. */
export function startFloorServer(upstream: string): Promise<{ url: string; kem: string; sig: string }> {
  const target = new URL(upstream);
  const agent = new Agent({ keepAlive: true });
  const kem = generateKeyPairSync('x25519');
  const ed = generateKeyPairSync('ed25519');
  const server = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (d: Buffer) => parts.push(d));
    req.on('end', () => {
      const body = Buffer.concat(parts);
      const enc = body.subarray(0, 32);
      const shared = diffieHellman({ privateKey: kem.privateKey, publicKey: importX25519(enc) });
      const plain = open(derive(shared, enc, 'request'), 0, body.subarray(32));
      const rk = derive(shared, enc, 'response');
      const requestDigest = createHash('sha256').update(body).digest();
      const hash = createHash('sha256');
      const out = request({ host: target.hostname, port: target.port, method: 'POST', path: req.url, agent, headers: { 'content-type': 'application/json', 'content-length': plain.length } }, (up) => {
        const streamed = String(up.headers['content-type'] ?? '').includes('text/event-stream');
        const signature = () => sign(null, record(requestDigest, hash.digest()), ed.privateKey);
        if (streamed) {
          let i = 0;
          res.writeHead(200, { 'content-type': 'application/octet-stream' });
          up.on('data', (d: Buffer) => {
            hash.update(d);
            res.write(frame(seal(rk, i++, d)));
          });
          up.on('end', () => res.end(frame(signature())));
        } else {
          const chunks: Buffer[] = [];
          up.on('data', (d: Buffer) => chunks.push(d));
          up.on('end', () => {
            const answer = Buffer.concat(chunks);
            hash.update(answer);
            const sealed = seal(rk, 0, answer);
            res.writeHead(200, { 'content-type': 'application/octet-stream', 'x-floor-signature': signature().toString('base64'), 'content-length': sealed.length });
            res.end(sealed);
          });
        }
      });
      out.on('error', () => res.destroy());
      out.end(plain);
    });
  });
  server.keepAliveTimeout = 60_000;
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const a = server.address();
      resolve({ url: `http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}`, kem: rawPublic(kem.publicKey).toString('base64'), sig: rawPublic(ed.publicKey).toString('base64') });
    });
  });
}

/** A client of the floor server: seals one request, opens the answer, checks the signature. */
export function floorClient(info: { url: string; kem: string; sig: string }, transport: typeof fetch = fetch): (path: string, json: string, streamed: boolean) => Promise<void> {
  const serverKem = importX25519(Buffer.from(info.kem, 'base64'));
  const serverSig = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(info.sig, 'base64').toString('base64url') }, format: 'jwk' });
  const check = (requestDigest: Buffer, responseDigest: Buffer, signature: Buffer) => {
    if (!verify(null, record(requestDigest, responseDigest), serverSig, signature)) throw new Error('floor: signature does not verify');
  };
  return async (path, json, streamed) => {
    const e = generateKeyPairSync('x25519');
    const enc = rawPublic(e.publicKey);
    const shared = diffieHellman({ privateKey: e.privateKey, publicKey: serverKem });
    const body = Buffer.concat([enc, seal(derive(shared, enc, 'request'), 0, Buffer.from(json))]);
    const rk = derive(shared, enc, 'response');
    const requestDigest = createHash('sha256').update(body).digest();
    const res = await transport(info.url + path, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body });
    if (res.status !== 200) throw new Error(`floor: status ${res.status}`);
    if (!streamed) {
      const answer = open(rk, 0, new Uint8Array(await res.arrayBuffer()));
      check(requestDigest, createHash('sha256').update(answer).digest(), Buffer.from(res.headers.get('x-floor-signature') ?? '', 'base64'));
      return;
    }
    const hash = createHash('sha256');
    const frames: Buffer[] = [];
    let pending = Buffer.alloc(0);
    const reader = res.body!.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      pending = pending.length === 0 ? Buffer.from(value) : Buffer.concat([pending, value]);
      while (pending.length >= 4 && pending.length >= 4 + pending.readUInt32BE(0)) {
        const n = pending.readUInt32BE(0);
        frames.push(pending.subarray(4, 4 + n));
        pending = pending.subarray(4 + n);
        // Every frame but the last is a sealed chunk; the last is the signature.
        if (frames.length > 1) hash.update(open(rk, frames.length - 2, frames[frames.length - 2]!));
      }
    }
    if (frames.length === 0 || pending.length > 0) throw new Error('floor: cut-off stream');
    check(requestDigest, hash.digest(), frames[frames.length - 1]!);
  };
}
