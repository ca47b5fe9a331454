// Test-only: a synthetic AMD-like PKI (ARK -> ASK/ASVK -> VCEK/VLEK, ECDSA P-384 throughout) and a
// report builder/signer, so paths no public sample covers (Turin TCB layout and 8-byte hwID, v5
// fields, CRLs, TCB and chip-id mismatches) can be exercised end to end. Never used by the
// verifier itself; trust in these certificates comes only from passing them as `roots`.
import type { Bytes } from '@custody/core';
import { createKeyCertificate, derIa5 as ia5, derInteger as integer, type SyntheticKey } from '../../../../core/src/testing/certificates.js';

// The certificate and CRL builder is the shared one in @custody/core's testing helpers.
export { createCrl, createKeyCertificate, type CertOptions, type SyntheticKey } from '../../../../core/src/testing/certificates.js';

const subtle = globalThis.crypto.subtle;

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
