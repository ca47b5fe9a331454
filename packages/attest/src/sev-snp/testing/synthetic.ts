// Test-only: a synthetic AMD-like PKI (ARK -> ASK/ASVK -> VCEK/VLEK, ECDSA P-384 throughout) and a
// report builder/signer, so paths no public sample covers (Turin TCB layout and 8-byte hwID, v5
// fields, CRLs, TCB and chip-id mismatches) can be exercised end to end. Never used by the
// verifier itself; trust in these certificates comes only from passing them as `roots`.
import { concatBytes, encodeTlv, utf8, type Bytes } from '@custody/core';

const subtle = globalThis.crypto.subtle;

function oid(dotted: string): Bytes {
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

function integer(v: number | Uint8Array): Bytes {
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

const seq = (...parts: Uint8Array[]) => encodeTlv(0x30, concatBytes(...parts));
const set = (...parts: Uint8Array[]) => encodeTlv(0x31, concatBytes(...parts));
const octets = (b: Uint8Array) => encodeTlv(0x04, b);
const ia5 = (s: string) => encodeTlv(0x16, utf8(s));

function utcTime(d: Date): Bytes {
  const p = (n: number) => String(n).padStart(2, '0');
  const s = `${p(d.getUTCFullYear() % 100)}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}Z`;
  return encodeTlv(0x17, utf8(s));
}

function name(cn: string): Bytes {
  return seq(set(seq(oid('2.5.4.11'), encodeTlv(0x0c, utf8('Engineering')))), set(seq(oid('2.5.4.3'), encodeTlv(0x0c, utf8(cn)))));
}

const ECDSA_SHA384 = seq(oid('1.2.840.10045.4.3.3'));

async function signDer(key: CryptoKey, data: Uint8Array): Promise<Bytes> {
  const raw = new Uint8Array(await subtle.sign({ name: 'ECDSA', hash: 'SHA-384' }, key, data as Bytes));
  return seq(integer(raw.subarray(0, 48)), integer(raw.subarray(48)));
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
  issuer?: SyntheticKey;
  ca: boolean;
  notBefore?: Date;
  notAfter?: Date;
  /** Extra extensions as [oid, DER value]. */
  extensions?: [string, Uint8Array][];
}

export async function createKeyCertificate(o: CertOptions): Promise<SyntheticKey> {
  const keys = await subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-384' }, true, ['sign', 'verify']);
  const spki = new Uint8Array(await subtle.exportKey('spki', keys.publicKey));
  const exts: Uint8Array[] = [];
  if (o.ca) exts.push(seq(oid('2.5.29.19'), encodeTlv(0x01, Uint8Array.of(0xff)), octets(seq(encodeTlv(0x01, Uint8Array.of(0xff))))));
  for (const [id, value] of o.extensions ?? []) exts.push(seq(oid(id), octets(value)));
  const tbs = seq(
    encodeTlv(0xa0, integer(2)),
    integer(o.serial),
    ECDSA_SHA384,
    name(o.issuer?.cn ?? o.cn),
    seq(utcTime(o.notBefore ?? new Date('2024-01-01T00:00:00Z')), utcTime(o.notAfter ?? new Date('2034-01-01T00:00:00Z'))),
    name(o.cn),
    spki,
    encodeTlv(0xa3, seq(...exts)),
  );
  const signer = o.issuer?.keys.privateKey ?? keys.privateKey;
  const cert = seq(tbs, ECDSA_SHA384, encodeTlv(0x03, concatBytes(Uint8Array.of(0), await signDer(signer, tbs))));
  return { cert, keys, serial: o.serial, cn: o.cn };
}

/** An X.509 v2 CRL issued by `issuer`, listing `revoked` serials. */
export async function createCrl(issuer: SyntheticKey, revoked: number[], thisUpdate: Date, nextUpdate: Date): Promise<Bytes> {
  const entries = revoked.map((s) => seq(integer(s), utcTime(thisUpdate)));
  const tbs = seq(integer(1), ECDSA_SHA384, name(issuer.cn), utcTime(thisUpdate), utcTime(nextUpdate), ...(entries.length ? [seq(...entries)] : []));
  return seq(tbs, ECDSA_SHA384, encodeTlv(0x03, concatBytes(Uint8Array.of(0), await signDer(issuer.keys.privateKey, tbs))));
}

export interface AmdTcb {
  bootloader: number;
  tee: number;
  snp: number;
  microcode: number;
  fmc?: number;
}

/** VCEK/VLEK extensions as AMD KDS writes them (hwID as the bare bytes). */
export function amdExtensions(o: { productName: string; tcb: AmdTcb; hwid?: Uint8Array; cspId?: string }): [string, Uint8Array][] {
  const out: [string, Uint8Array][] = [
    ['1.3.6.1.4.1.3704.1.1', integer(o.tcb.fmc !== undefined ? 1 : 0)],
    ['1.3.6.1.4.1.3704.1.2', ia5(o.productName)],
    ['1.3.6.1.4.1.3704.1.3.1', integer(o.tcb.bootloader)],
    ['1.3.6.1.4.1.3704.1.3.2', integer(o.tcb.tee)],
    ['1.3.6.1.4.1.3704.1.3.3', integer(o.tcb.snp)],
    ['1.3.6.1.4.1.3704.1.3.8', integer(o.tcb.microcode)],
  ];
  if (o.tcb.fmc !== undefined) out.push(['1.3.6.1.4.1.3704.1.3.9', integer(o.tcb.fmc)]);
  if (o.hwid) out.push(['1.3.6.1.4.1.3704.1.4', o.hwid]);
  if (o.cspId) out.push(['1.3.6.1.4.1.3704.1.5', ia5(o.cspId)]);
  return out;
}

export interface SyntheticProductPki {
  ark: SyntheticKey;
  ask: SyntheticKey;
  asvk: SyntheticKey;
}

/** ARK-<product> -> SEV-<product> (ASK) and SEV-VLEK-<product> (ASVK). */
export async function createProductPki(product: string): Promise<SyntheticProductPki> {
  const ark = await createKeyCertificate({ cn: `ARK-${product}`, serial: 0x10000, ca: true });
  const ask = await createKeyCertificate({ cn: `SEV-${product}`, serial: 0x10001, ca: true, issuer: ark });
  const asvk = await createKeyCertificate({ cn: `SEV-VLEK-${product}`, serial: 0x10002, ca: true, issuer: ark });
  return { ark, ask, asvk };
}

export interface ReportFields {
  version: number;
  guestSvn?: number;
  policy?: bigint;
  vmpl?: number;
  /** TCB bytes in the layout of the product (8 bytes each). */
  currentTcb?: Uint8Array;
  reportedTcb: Uint8Array;
  committedTcb?: Uint8Array;
  launchTcb?: Uint8Array;
  platformInfo?: bigint;
  /** SIGNING_KEY value: 0 VCEK, 1 VLEK, 7 none. */
  signingKey?: number;
  maskChipKey?: boolean;
  reportData?: Uint8Array;
  measurement?: Uint8Array;
  hostData?: Uint8Array;
  cpuid?: { family: number; model: number; stepping: number };
  chipId?: Uint8Array;
  launchMitVector?: bigint;
  currentMitVector?: bigint;
  signatureAlgo?: number;
}

/** TCB_VERSION bytes: Milan/Genoa layout, or Turin's when `fmc` is given. */
export function tcbBytes(t: AmdTcb): Bytes {
  return t.fmc !== undefined ? Uint8Array.of(t.fmc, t.bootloader, t.tee, t.snp, 0, 0, 0, t.microcode) : Uint8Array.of(t.bootloader, t.tee, 0, 0, 0, 0, t.snp, t.microcode);
}

/** An unsigned 1184-byte ATTESTATION_REPORT with the given fields (everything else zero). */
export function buildReport(f: ReportFields): Bytes {
  const b = new Uint8Array(0x4a0);
  const v = new DataView(b.buffer);
  v.setUint32(0x00, f.version, true);
  v.setUint32(0x04, f.guestSvn ?? 0, true);
  v.setBigUint64(0x08, f.policy ?? 0x30000n, true);
  v.setUint32(0x30, f.vmpl ?? 0, true);
  v.setUint32(0x34, f.signatureAlgo ?? 1, true);
  b.set(f.currentTcb ?? f.reportedTcb, 0x38);
  v.setBigUint64(0x40, f.platformInfo ?? 1n, true);
  v.setUint32(0x48, ((f.signingKey ?? 0) << 2) | (f.maskChipKey ? 2 : 0), true);
  if (f.reportData) b.set(f.reportData, 0x50);
  b.set(f.measurement ?? new Uint8Array(48).fill(0xab), 0x90);
  if (f.hostData) b.set(f.hostData, 0xc0);
  b.set(f.reportedTcb, 0x180);
  if (f.cpuid) {
    b[0x188] = f.cpuid.family;
    b[0x189] = f.cpuid.model;
    b[0x18a] = f.cpuid.stepping;
  }
  if (f.chipId) b.set(f.chipId, 0x1a0);
  b.set(f.committedTcb ?? f.reportedTcb, 0x1e0);
  b.set([3, 55, 1], 0x1e8);
  b.set([3, 55, 1], 0x1ec);
  b.set(f.launchTcb ?? f.reportedTcb, 0x1f0);
  if (f.launchMitVector !== undefined) v.setBigUint64(0x1f8, f.launchMitVector, true);
  if (f.currentMitVector !== undefined) v.setBigUint64(0x200, f.currentMitVector, true);
  return b;
}

/** Signs bytes 0x000..0x29F with ECDSA P-384/SHA-384 and writes r, s little-endian at 0x2A0. */
export async function signReport(report: Uint8Array, key: CryptoKey): Promise<Bytes> {
  const out = report.slice();
  const raw = new Uint8Array(await subtle.sign({ name: 'ECDSA', hash: 'SHA-384' }, key, out.subarray(0, 0x2a0).slice()));
  out.fill(0, 0x2a0);
  out.set(raw.subarray(0, 48).reverse(), 0x2a0);
  out.set(raw.subarray(48).reverse(), 0x2a0 + 72);
  return out;
}
