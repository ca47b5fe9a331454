// Test-only: the TDX vector sets and helpers to build tampered twins byte-exactly.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { concatBytes, toHex, utf8 } from '@custody/core';
import { readVector } from '../../../../../test/vectors.js';
import { parseTdxQuote, type TdxQuote } from '../quote.js';

export const G = 'attestation/tdx/go-tdx-guest/';
export const T = 'attestation/tdx/trustee/';

/** The re-issued Intel SGX TCB Signing certificate (see ../testdata/README.md). */
export const TCB_SIGNING_2025 = new Uint8Array(readFileSync(fileURLToPath(new URL('../testdata/intel-tcb-signing-2025.pem', import.meta.url))));
export const INTEL_ROOT_PEM = readVector(G + 'trusted_root.pem');
/** TCB Signing (2025) + Intel SGX Root CA, as PCS serves the issuer chain today. */
export const ISSUER_CHAIN_2025 = concatBytes(TCB_SIGNING_2025, INTEL_ROOT_PEM);

export const AT_2023 = new Date('2023-07-01T01:00:00Z');
export const AT_2025 = new Date('2025-11-01T00:00:00Z');
export const AT_2026_V5 = new Date('2026-02-15T00:00:00Z');
/** The real current time when these tests were written. */
export const NOW = new Date('2026-11-26T00:00:00Z');

/** The go-tdx-guest 2023 collateral as separate named files. */
export function collateral2023(): Record<string, Uint8Array> {
  return {
    tcbInfo: readVector(G + 'sample_tcbInfo_response'),
    qeIdentity: readVector(G + 'sample_qeIdentity_response'),
    pckCrl: readVector(G + 'pckcrl'),
    rootCaCrl: readVector(G + 'rootcrl.der'),
    tcbInfoIssuerChain: readVector(G + 'tcbinfo_issuer_chain.pem'),
    qeIdentityIssuerChain: readVector(G + 'qeidentity_issuer_chain.pem'),
    pckCrlIssuerChain: readVector(G + 'pckcrl_issuer_chain.pem'),
  };
}

/** The trustee 2025 TCB Info (FMSPC 00A06D080000) and TD_QE identity, with the re-issued signer. */
export function collateral2025(): Record<string, Uint8Array> {
  return {
    tcbInfo: readVector(T + 'tcbInfo.json'),
    qeIdentity: readVector(T + 'enclaveIdentity.json'),
    tcbInfoIssuerChain: ISSUER_CHAIN_2025,
    qeIdentityIssuerChain: ISSUER_CHAIN_2025,
  };
}

/** The go-tdx-guest v5 TCB Info (FMSPC 90c06f000000, 2026-02-01 .. 2026-03-03). */
export function collateralV5(): Record<string, Uint8Array> {
  return { tcbInfo: readVector(G + 'sample_tcbinfo_response_v5'), tcbInfoIssuerChain: ISSUER_CHAIN_2025 };
}

/** The collateral bundle (dcap-qvl QuoteCollateralV3 JSON) built from separate PCS files. */
export function bundleFrom(c: Record<string, Uint8Array>): Uint8Array {
  const text = (b: Uint8Array): string => new TextDecoder().decode(b);
  const split = (b: Uint8Array, key: string): { body: string; signature: string } => {
    const t = text(b);
    const parsed = JSON.parse(t) as { signature: string };
    const start = t.indexOf(`"${key}":`) + key.length + 3;
    const end = t.lastIndexOf(',"signature"');
    return { body: t.slice(start, end), signature: parsed.signature };
  };
  const tcb = split(c.tcbInfo!, 'tcbInfo');
  const qe = split(c.qeIdentity!, 'enclaveIdentity');
  return utf8(
    JSON.stringify({
      pck_crl_issuer_chain: text(c.pckCrlIssuerChain!),
      root_ca_crl: toHex(c.rootCaCrl!),
      pck_crl: toHex(c.pckCrl!),
      tcb_info_issuer_chain: text(c.tcbInfoIssuerChain!),
      tcb_info: tcb.body,
      tcb_info_signature: tcb.signature,
      qe_identity_issuer_chain: text(c.qeIdentityIssuerChain!),
      qe_identity: qe.body,
      qe_identity_signature: qe.signature,
    }),
  );
}

export function quoteBytes(rel: string): Uint8Array<ArrayBuffer> {
  return readVector(rel);
}

export interface QuoteParts {
  signedData?: Uint8Array;
  signature?: Uint8Array;
  attestationKey?: Uint8Array;
  qeReport?: Uint8Array;
  qeReportSignature?: Uint8Array;
  qeAuthData?: Uint8Array;
  pckCertChain?: Uint8Array;
}

/** Re-assembles a quote from its parts (length fields recomputed), replacing the given ones. */
export function rebuildQuote(q: TdxQuote, parts: QuoteParts = {}): Uint8Array {
  const u16 = (n: number): Uint8Array => Uint8Array.of(n & 0xff, n >> 8);
  const u32 = (n: number): Uint8Array => Uint8Array.of(n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff, n >>> 24);
  const pem = parts.pckCertChain ?? q.pckCertChain;
  const auth = parts.qeAuthData ?? q.qeAuthData;
  const inner = concatBytes(parts.qeReport ?? q.qeReport.raw, parts.qeReportSignature ?? q.qeReportSignature, u16(auth.length), auth, u16(5), u32(pem.length), pem);
  const sig = concatBytes(parts.signature ?? q.signature, parts.attestationKey ?? q.attestationKey, u16(6), u32(inner.length), inner);
  return concatBytes(parts.signedData ?? q.signedData, u32(sig.length), sig);
}

export function parsed(rel: string): TdxQuote {
  return parseTdxQuote(quoteBytes(rel));
}

/** PEM blocks of a quote's PCK chain, in order. */
export function pemBlocks(q: TdxQuote): string[] {
  const t = new TextDecoder().decode(q.pckCertChain);
  return [...t.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----\n?/g)].map((m) => m[0]);
}

export function flip(b: Uint8Array, offset: number): Uint8Array {
  const c = b.slice();
  c[offset] = c[offset]! ^ 0x01;
  return c;
}
