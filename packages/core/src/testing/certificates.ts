// Test-only: a small X.509 builder (ECDSA P-384/SHA-384 throughout) for certificate paths no
// public sample covers: synthetic vendor PKIs, CRLs, and leaves with chosen keyUsage and
// extKeyUsage. Trust in these certificates comes only from passing them as `roots`.
import { concatBytes, utf8, type Bytes } from '../bytes.js';
import { encodeTlv } from '../x509/der.js';
import { OID } from '../x509/oids.js';

const subtle = globalThis.crypto.subtle;

/** OBJECT IDENTIFIER from its dotted form. */
export function derOid(dotted: string): Bytes {
  const arcs = dotted.split('.').map(Number);
  const out: number[] = [arcs[0]! * 40 + arcs[1]!];
  for (const a of arcs.slice(2)) {
    const chunk: number[] = [];
    let v = a;
    do {
      chunk.unshift(v & 0x7f);
      v = Math.floor(v / 128);
    } while (v > 0);
    for (let i = 0; i < chunk.length - 1; i++) chunk[i]! |= 0x80;
    out.push(...chunk);
  }
  return encodeTlv(0x06, Uint8Array.from(out));
}

/** Non-negative INTEGER from a number or big-endian bytes (leading zeros dropped, sign byte added). */
export function derInteger(v: number | Uint8Array): Bytes {
  let b: Uint8Array;
  if (typeof v === 'number') {
    const bytes: number[] = [];
    let n = v;
    do {
      bytes.unshift(n & 0xff);
      n = Math.floor(n / 256);
    } while (n > 0);
    b = Uint8Array.from(bytes);
  } else {
    let i = 0;
    while (i < v.length - 1 && v[i] === 0) i++;
    b = v.subarray(i);
  }
  if (b[0]! & 0x80) b = concatBytes(Uint8Array.of(0), b);
  return encodeTlv(0x02, b);
}

export const derSequence = (...parts: Uint8Array[]): Bytes => encodeTlv(0x30, concatBytes(...parts));
const set = (...parts: Uint8Array[]) => encodeTlv(0x31, concatBytes(...parts));
const octets = (b: Uint8Array) => encodeTlv(0x04, b);
export const derIa5 = (s: string): Bytes => encodeTlv(0x16, utf8(s));

/** A DER named-bit-list BIT STRING (trailing zero bits dropped) for `KEY_USAGE` bits. */
export function derKeyUsage(bits: number): Bytes {
  let highest = -1;
  for (let bit = 0; bit < 16; bit++) if (bits & (1 << bit)) highest = bit;
  const bytes = new Uint8Array(Math.ceil((highest + 1) / 8));
  for (let bit = 0; bit <= highest; bit++) if (bits & (1 << bit)) bytes[bit >> 3]! |= 0x80 >> (bit & 7);
  return encodeTlv(0x03, concatBytes(Uint8Array.of(bytes.length * 8 - (highest + 1)), bytes));
}

/** ExtKeyUsageSyntax: SEQUENCE OF KeyPurposeId. */
export const derExtKeyUsage = (purposes: string[]): Bytes => derSequence(...purposes.map(derOid));

function utcTime(d: Date): Bytes {
  const p = (n: number) => String(n).padStart(2, '0');
  const s = `${p(d.getUTCFullYear() % 100)}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}Z`;
  return encodeTlv(0x17, utf8(s));
}

function name(cn: string): Bytes {
  return derSequence(set(derSequence(derOid('2.5.4.11'), encodeTlv(0x0c, utf8('Engineering')))), set(derSequence(derOid('2.5.4.3'), encodeTlv(0x0c, utf8(cn)))));
}

const ECDSA_SHA384 = derSequence(derOid('1.2.840.10045.4.3.3'));

async function signDer(key: CryptoKey, data: Uint8Array): Promise<Bytes> {
  const raw = new Uint8Array(await subtle.sign({ name: 'ECDSA', hash: 'SHA-384' }, key, data as Bytes));
  return derSequence(derInteger(raw.subarray(0, 48)), derInteger(raw.subarray(48)));
}

export interface SyntheticKey {
  cert: Bytes;
  keys: CryptoKeyPair;
  serial: number;
  cn: string;
}

export interface CertOptions {
  cn: string;
  serial: number;
  /** The issuing certificate; self-signed when absent. */
  issuer?: SyntheticKey;
  /** Adds a critical basicConstraints cA=TRUE. */
  ca: boolean;
  notBefore?: Date;
  notAfter?: Date;
  /** Adds a critical keyUsage extension with these `KEY_USAGE` bits. */
  keyUsage?: number;
  /** Adds a non-critical extKeyUsage extension listing these purposes. */
  extKeyUsage?: string[];
  /** Extra extensions as [oid, DER value, critical?]. */
  extensions?: [string, Uint8Array, boolean?][];
  /** The subject key pair; a fresh P-384 pair when absent. */
  keys?: CryptoKeyPair;
}

/** An X.509 v3 certificate with a P-384 key, signed ECDSA P-384/SHA-384 by its issuer (or itself). */
export async function createKeyCertificate(o: CertOptions): Promise<SyntheticKey> {
  const keys = o.keys ?? (await subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-384' }, true, ['sign', 'verify']));
  const spki = new Uint8Array(await subtle.exportKey('spki', keys.publicKey));
  const critical = encodeTlv(0x01, Uint8Array.of(0xff));
  const exts: Uint8Array[] = [];
  if (o.ca) exts.push(derSequence(derOid(OID.basicConstraints), critical, octets(derSequence(critical))));
  if (o.keyUsage !== undefined) exts.push(derSequence(derOid(OID.keyUsage), critical, octets(derKeyUsage(o.keyUsage))));
  if (o.extKeyUsage !== undefined) exts.push(derSequence(derOid(OID.extKeyUsage), octets(derExtKeyUsage(o.extKeyUsage))));
  for (const [id, value, isCritical] of o.extensions ?? []) exts.push(derSequence(derOid(id), ...(isCritical ? [critical] : []), octets(value)));
  const tbs = derSequence(
    encodeTlv(0xa0, derInteger(2)),
    derInteger(o.serial),
    ECDSA_SHA384,
    name(o.issuer?.cn ?? o.cn),
    derSequence(utcTime(o.notBefore ?? new Date('2024-01-01T00:00:00Z')), utcTime(o.notAfter ?? new Date('2034-01-01T00:00:00Z'))),
    name(o.cn),
    spki,
    encodeTlv(0xa3, derSequence(...exts)),
  );
  const signer = o.issuer?.keys.privateKey ?? keys.privateKey;
  const cert = derSequence(tbs, ECDSA_SHA384, encodeTlv(0x03, concatBytes(Uint8Array.of(0), await signDer(signer, tbs))));
  return { cert, keys, serial: o.serial, cn: o.cn };
}

/** An X.509 v2 CRL issued by `issuer`, listing `revoked` serials. */
export async function createCrl(issuer: SyntheticKey, revoked: number[], thisUpdate: Date, nextUpdate: Date): Promise<Bytes> {
  const entries = revoked.map((s) => derSequence(derInteger(s), utcTime(thisUpdate)));
  const tbs = derSequence(derInteger(1), ECDSA_SHA384, name(issuer.cn), utcTime(thisUpdate), utcTime(nextUpdate), ...(entries.length ? [derSequence(...entries)] : []));
  return derSequence(tbs, ECDSA_SHA384, encodeTlv(0x03, concatBytes(Uint8Array.of(0), await signDer(issuer.keys.privateKey, tbs))));
}
