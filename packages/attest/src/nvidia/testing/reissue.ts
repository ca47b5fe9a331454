// Test-only: NVIDIA GPU evidence with a chosen request nonce, for tests of evidence bound to a
// runtime data digest (no GPU here can produce a report for a new nonce). The real Hopper report
// from the vectors gets the nonce written into its GET_MEASUREMENTS request and is signed again
// by a test attestation key whose certificate carries the real leaf's FWID, under a test root.
// Trust in such evidence comes only from passing `roots` to the verifier: the pinned NVIDIA root
// refuses it.
import { KEY_USAGE, fromHex, readCertificates, X509Certificate, type Bytes } from '@custody/core';
import { createKeyCertificate } from '../../../../core/src/testing/certificates.js';
import { readVector, readVectorText } from '../../../../../test/vectors.js';
import { createNvidiaEvidence } from '../evidence.js';
import { TCG_DICE_TCB_INFO_OID } from '../fwid.js';

/** Where the request nonce sits in the SPDM report: request header (4 bytes), then 32 bytes. */
const NONCE_AT = 4;
const NONCE_LENGTH = 32;
/** ECDSA P-384 signature (r || s) at the end of the MEASUREMENTS response. */
const SIGNATURE_LENGTH = 96;

export const REAL_NVIDIA_REPORT: Bytes = fromHex(readVectorText('attestation/nvidia/hopperAttestationReport.txt').trim());

interface TestGpu {
  leafCert: Uint8Array;
  leafKey: CryptoKey;
}

let root: Promise<Awaited<ReturnType<typeof createKeyCertificate>>> | undefined;
/** One test attestation key per GPU index, all under the one test root. */
const gpus = new Map<number, Promise<TestGpu>>();

function testRootCert() {
  root ??= createKeyCertificate({ cn: 'Test GPU Root (not NVIDIA)', serial: 1, ca: true, keyUsage: KEY_USAGE.keyCertSign | KEY_USAGE.cRLSign });
  return root;
}

/**
 * Test GPU `index`: its own attestation key (a GPU's identity), a certificate carrying the real
 * leaf's FWID extension, under the test root.
 */
function testGpu(index: number): Promise<TestGpu> {
  let g = gpus.get(index);
  if (!g) {
    g = (async () => {
      const realLeaf = new X509Certificate(readCertificates(readVector('attestation/nvidia/hopper_cert_chain_case1.txt'))[0]!);
      const fwid = realLeaf.extension(TCG_DICE_TCB_INFO_OID)!;
      const issuer = await testRootCert();
      const leaf = await createKeyCertificate({ cn: `Test GPU ${index} attestation key`, serial: 2 + index, ca: false, issuer, extensions: [[TCG_DICE_TCB_INFO_OID, fwid.value]], keyUsage: KEY_USAGE.digitalSignature });
      return { leafCert: leaf.cert, leafKey: leaf.keys.privateKey };
    })();
    gpus.set(index, g);
  }
  return g;
}

/** The test root that `reissuedNvidiaEvidence` chains to (pass it as `roots`). */
export async function testGpuRoot(): Promise<Uint8Array> {
  return (await testRootCert()).cert;
}

/**
 * `custody-nvidia-gpu/v1` evidence: the real report with `nonce` (32 bytes) as its request nonce,
 * re-signed by test GPU `gpu` (default 0; each index is another GPU, with its own attestation
 * key) under the test root. `report` replaces the real report (a tampered copy, say) before the
 * nonce is written and the bytes signed. The chain is the test leaf alone.
 */
export async function reissuedNvidiaEvidence(nonce: Uint8Array, report: Uint8Array = REAL_NVIDIA_REPORT, gpu = 0): Promise<{ evidence: Uint8Array; roots: Uint8Array[] }> {
  if (nonce.length !== NONCE_LENGTH) throw new Error(`an SPDM request nonce is ${NONCE_LENGTH} bytes`);
  const p = await testGpu(gpu);
  const out = report.slice();
  out.set(nonce, NONCE_AT);
  const signedEnd = out.length - SIGNATURE_LENGTH;
  const sig = await globalThis.crypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-384' }, p.leafKey, out.slice(0, signedEnd));
  out.set(new Uint8Array(sig), signedEnd);
  return { evidence: new TextEncoder().encode(createNvidiaEvidence(out, [p.leafCert])), roots: [await testGpuRoot()] };
}
