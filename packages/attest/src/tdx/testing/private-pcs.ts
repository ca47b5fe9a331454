// Test-only: a private "PCS" (its own root CA and TCB Signing key) that re-signs edited TCB Info
// and QE Identity bodies, so TCB outcomes that no published collateral shows (Revoked, QE
// mismatch, module mismatch) can be driven end to end through the verifier with `roots`.
import { concatBytes, encodeTlv, toHex, utf8, type Bytes } from '@custody/core';

const subtle = globalThis.crypto.subtle;
const OID_ECDSA_SHA256 = Uint8Array.of(0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02);
const OID_CN = Uint8Array.of(0x06, 0x03, 0x55, 0x04, 0x03);
const OID_BASIC_CONSTRAINTS = Uint8Array.of(0x06, 0x03, 0x55, 0x1d, 0x13);

const seq = (...parts: Uint8Array[]): Bytes => encodeTlv(0x30, concatBytes(...parts));
const name = (cn: string): Bytes => seq(encodeTlv(0x31, seq(OID_CN, encodeTlv(0x0c, utf8(cn)))));
const time = (d: Date): Bytes => encodeTlv(0x18, utf8(d.toISOString().replace(/[-:T]/g, '').replace(/\.\d+Z$/, 'Z')));

function derInt(b: Uint8Array): Bytes {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  const v = b.subarray(i);
  return encodeTlv(0x02, v[0]! & 0x80 ? concatBytes(Uint8Array.of(0), v) : v);
}

async function signDer(key: CryptoKey, data: Uint8Array): Promise<Bytes> {
  const raw = new Uint8Array(await subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, key, data.slice()));
  return seq(derInt(raw.subarray(0, 32)), derInt(raw.subarray(32)));
}

async function certificate(opts: { serial: number; issuer: string; subject: string; publicKey: CryptoKey; signer: CryptoKey; ca: boolean; notBefore: Date; notAfter: Date }): Promise<Bytes> {
  const spki = new Uint8Array(await subtle.exportKey('spki', opts.publicKey));
  const bc = seq(OID_BASIC_CONSTRAINTS, encodeTlv(0x01, Uint8Array.of(0xff)), encodeTlv(0x04, opts.ca ? seq(encodeTlv(0x01, Uint8Array.of(0xff))) : seq()));
  const tbs = seq(
    encodeTlv(0xa0, encodeTlv(0x02, Uint8Array.of(2))),
    encodeTlv(0x02, Uint8Array.of(opts.serial)),
    seq(OID_ECDSA_SHA256),
    name(opts.issuer),
    seq(time(opts.notBefore), time(opts.notAfter)),
    name(opts.subject),
    spki,
    encodeTlv(0xa3, seq(bc)),
  );
  const sig = await signDer(opts.signer, tbs);
  return seq(tbs, seq(OID_ECDSA_SHA256), encodeTlv(0x03, concatBytes(Uint8Array.of(0), sig)));
}

export interface PrivatePcs {
  /** DER of the private root CA. */
  root: Bytes;
  /** DER of the TCB Signing certificate it issued. */
  signingCert: Bytes;
  /** Signs a TCB Info or QE Identity body; returns the PCS response JSON text. */
  sign(bodyKey: 'tcbInfo' | 'enclaveIdentity', body: string): Promise<string>;
}

export async function createPrivatePcs(): Promise<PrivatePcs> {
  const gen = (): Promise<CryptoKeyPair> => subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign', 'verify']);
  const rootKeys = await gen();
  const signKeys = await gen();
  const notBefore = new Date('2018-01-01T00:00:00Z');
  const notAfter = new Date('2040-01-01T00:00:00Z');
  const root = await certificate({ serial: 1, issuer: 'Test SGX Root CA', subject: 'Test SGX Root CA', publicKey: rootKeys.publicKey, signer: rootKeys.privateKey, ca: true, notBefore, notAfter });
  const signingCert = await certificate({ serial: 2, issuer: 'Test SGX Root CA', subject: 'Intel SGX TCB Signing', publicKey: signKeys.publicKey, signer: rootKeys.privateKey, ca: false, notBefore, notAfter });
  return {
    root,
    signingCert,
    async sign(bodyKey, body) {
      const raw = new Uint8Array(await subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, signKeys.privateKey, utf8(body)));
      return `{"${bodyKey}":${body},"signature":"${toHex(raw)}"}`;
    },
  };
}

/** The exact signed body of a PCS response text. */
export function bodyOf(responseText: string, bodyKey: 'tcbInfo' | 'enclaveIdentity'): string {
  const start = responseText.indexOf(`"${bodyKey}":`) + bodyKey.length + 3;
  return responseText.slice(start, responseText.lastIndexOf(',"signature"'));
}
