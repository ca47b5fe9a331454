import { KEY_USAGE, VerificationError, X509Certificate, equalBytes, readCertificates, sha256, toHex, utf8, verifySignature } from '@custody/core';
import { Pipeline } from '../steps.js';
import type { CertificateSummary, EvidenceVerifier, NormalizedClaims, VerificationResult, VerifyInput } from '../types.js';
import { looksLikeNvidiaEvidence, readNvidiaEvidence, type NvidiaGpuEvidence } from './evidence.js';
import { TCG_DICE_TCB_INFO_OID, certificateFwid, type Fwid } from './fwid.js';
import { NVIDIA_OPAQUE_FIELD, parseNvidiaOpaqueData, type NvidiaOpaqueData } from './opaque.js';
import { NVIDIA_DEVICE_ROOT_PEM, NVIDIA_DEVICE_ROOT_SHA256 } from './roots.js';
import { DMTF_MEASUREMENT_TYPES, parseSpdmMeasurementReport, type SpdmMeasurementReport } from './spdm.js';
import { parseCertificateCached, verifyChainCached } from '@custody/core';

// The attestation certificate's key signs SPDM measurement responses. The real Hopper leaf
// (GH100 A01 GSP FMC LF) carries a critical keyUsage of digitalSignature alone and no
// extKeyUsage; a leaf whose keyUsage lacks digitalSignature may not sign reports.
const GPU_SIGNER_USAGE = { keyUsage: KEY_USAGE.digitalSignature };

/**
 * Most certificates one GPU evidence may bring (its `certChain` and `certs` together). A real
 * Hopper chain is 5 (attestation key, BROM, provisioner ICA, GH100 identity, Device Identity CA);
 * every certificate in the pool that names a chain certificate's issuer costs a signature
 * verification while the chain is built, so the pool is bounded before that.
 */
export const MAX_NVIDIA_CERTIFICATES = 8;

let pinnedRoot: Promise<X509Certificate> | undefined;

/** The embedded NVIDIA Device Identity CA, checked against its pinned SHA-256 once. */
function nvidiaRoot(): Promise<X509Certificate> {
  pinnedRoot ??= (async () => {
    const root = new X509Certificate(readCertificates(utf8(NVIDIA_DEVICE_ROOT_PEM))[0]!);
    if ((await root.sha256()) !== NVIDIA_DEVICE_ROOT_SHA256) throw new VerificationError('ERR_INTERNAL', 'embedded NVIDIA root does not match its pinned fingerprint');
    return root;
  })();
  return pinnedRoot;
}

async function summarize(c: X509Certificate): Promise<CertificateSummary> {
  return { subject: c.subject.text, issuer: c.issuer.text, serial: c.serialHex, notBefore: c.notBefore.toISOString(), notAfter: c.notAfter.toISOString(), sha256: await c.sha256() };
}

function claimsOf(report: SpdmMeasurementReport, opaque: NvidiaOpaqueData): NormalizedClaims {
  const { request, response } = report;
  const measurements: Record<string, string> = {};
  const measurementTypes: Record<string, number> = {};
  for (const b of [...response.blocks].sort((x, y) => x.index - y.index)) {
    measurements[`measurement${b.index}`] = toHex(b.value);
    const type = `${DMTF_MEASUREMENT_TYPES[b.valueType] ?? `type ${b.valueType}`}${b.rawBitStream ? ' (raw bit stream)' : ' (digest)'}`;
    measurementTypes[type] = (measurementTypes[type] ?? 0) + 1;
  }
  const components: Record<string, string> = {};
  for (const k of ['driverVersion', 'vbiosVersion'] as const) {
    const v = opaque.fields[k];
    if (typeof v === 'string') components[k] = v;
  }
  return {
    platform: 'nvidia',
    simulated: false,
    // Firmware levels for policy; NVIDIA publishes no TCB status to derive, so none is claimed.
    ...(Object.keys(components).length > 0 ? { tcb: { components } } : {}),
    measurements,
    reportData: toHex(request.nonce),
    nonce: toHex(request.nonce),
    // SPDM has no debug attribute; a GPU outside CC mode does not answer with CC measurements at all.
    debug: false,
    signer: { chain: [] },
    platformClaims: {
      spdmVersion: `${response.version >> 4}.${response.version & 15}`,
      numberOfBlocks: response.numberOfBlocks,
      requestedMeasurements: request.param2 === 0xff ? 'all' : request.param2,
      slotId: request.slotId,
      responderNonce: toHex(response.nonce),
      measurementTypes,
      opaqueData: opaque.fields,
    },
  };
}

/**
 * Verifies an NVIDIA Hopper GPU attestation report (SPDM 1.1 GET_MEASUREMENTS request and signed
 * MEASUREMENTS response): parse, chain (the first certificate is the GPU's attestation key
 * certificate and must carry the TCG DICE FWID extension; it chains to the pinned NVIDIA Device
 * Identity CA, or one of `roots`), signature (ECDSA P-384/SHA-384 over request || response),
 * binding (the FWID in the signed opaque data equals the certificate's) and nonce.
 * Certificates come from the JSON evidence's `certChain` and/or `certs` (PEM or DER), leaf first,
 * at most MAX_NVIDIA_CERTIFICATES of them together (more: ERR_INPUT_TOO_LARGE, before any chain
 * is built).
 */
export class NvidiaVerifier implements EvidenceVerifier {
  readonly platform = 'nvidia' as const;

  detect(evidence: Uint8Array): boolean {
    return looksLikeNvidiaEvidence(evidence);
  }

  verify(input: VerifyInput): Promise<VerificationResult> {
    const p = new Pipeline('nvidia', input.now);
    return p.run(async () => {
      let ev!: NvidiaGpuEvidence;
      let report!: SpdmMeasurementReport;
      let opaque!: NvidiaOpaqueData;
      await p.step('parse', () => {
        ev = readNvidiaEvidence(input.evidence);
        report = parseSpdmMeasurementReport(ev.report);
        opaque = parseNvidiaOpaqueData(report.response.opaqueData);
        p.claims = claimsOf(report, opaque);
        const driver = opaque.fields.driverVersion;
        const vbios = opaque.fields.vbiosVersion;
        return `SPDM ${String(p.claims.platformClaims.spdmVersion)} GET_MEASUREMENTS (${ev.form}): ${report.response.numberOfBlocks} measurement block(s), ${report.response.opaqueData.length}-byte opaque data${typeof driver === 'string' ? `, driver ${driver}` : ''}${typeof vbios === 'string' ? `, VBIOS ${vbios}` : ''}`;
      });

      let leaf!: X509Certificate;
      let leafFwid: Fwid | undefined;
      await p.step('chain', async () => {
        const ders = [...ev.certChain, ...(input.certs ?? []).flatMap((c) => readCertificates(c))];
        if (ders.length > MAX_NVIDIA_CERTIFICATES) {
          throw new VerificationError('ERR_INPUT_TOO_LARGE', `a GPU certificate chain holds at most ${MAX_NVIDIA_CERTIFICATES} certificates (certChain and certs together)`, { detail: { certificates: ders.length } });
        }
        if (ders.length === 0) throw new VerificationError('ERR_CERT_MISSING', 'no GPU certificate chain was given (certChain in the evidence, or certs)');
        const certs = ders.map(parseCertificateCached);
        leaf = certs[0]!;
        if (!leaf.extension(TCG_DICE_TCB_INFO_OID)) {
          throw new VerificationError('ERR_CERT_MISSING', `the GPU attestation certificate is missing: "${leaf.subject.text}" carries no TCG DICE FWID extension (${TCG_DICE_TCB_INFO_OID})`, {
            detail: { subject: leaf.subject.text },
          });
        }
        leafFwid = certificateFwid(leaf);
        const custom = input.roots !== undefined && input.roots.length > 0;
        const roots = custom ? input.roots!.flatMap((r) => readCertificates(r)).map(parseCertificateCached) : [await nvidiaRoot()];
        const result = await verifyChainCached(leaf, certs.slice(1), roots, input.now, { leafUsage: GPU_SIGNER_USAGE });
        const rootSha256 = await result.root.sha256();
        p.claims!.signer = { chain: await Promise.all(result.chain.map(summarize)), rootSha256, kind: custom ? 'NVIDIA GPU (custom root)' : 'NVIDIA Device Identity CA' };
        return `${result.chain.length}-certificate chain from "${leaf.subject.text}" to ${custom ? 'a given root' : 'the pinned NVIDIA Device Identity CA'} (SHA-256 ${rootSha256.slice(0, 16)}…) valid at ${input.now.toISOString()}`;
      });

      await p.step('signature', async () => {
        if (leaf.publicKey.namedCurve !== 'P-384') throw new VerificationError('ERR_EVIDENCE_SIGNATURE', 'the GPU attestation certificate does not hold a P-384 key');
        const ok = await verifySignature(leaf.publicKey, { kind: 'ecdsa', hash: 'SHA-384' }, report.signedBytes, report.response.signature, 'raw');
        if (!ok) throw new VerificationError('ERR_EVIDENCE_SIGNATURE', 'the SPDM measurement signature does not verify with the GPU attestation certificate');
        return `ECDSA P-384/SHA-384 signature over the ${report.signedBytes.length}-byte request || response verifies with the GPU attestation key`;
      });

      const reportFwid = opaque.raw.get(NVIDIA_OPAQUE_FIELD.fwid);
      p.claims!.platformClaims.certificateFwid = leafFwid ? toHex(leafFwid.digest) : null;
      // The GPU's identity: its attestation key (the DICE alias key of this device and firmware).
      // Two reports with one key are one GPU, however their bytes differ (ECDSA signs afresh).
      p.claims!.platformClaims.attestationKeySha256 = toHex(await sha256(leaf.publicKey.spki));
      p.claims!.platformClaims.revocationChecked = false;
      p.warn('revocation of the GPU certificate chain was not checked (NVIDIA OCSP is not consulted offline)');
      if (!reportFwid) p.warn('the signed report carries no FWID: it is not bound to the attestation certificate beyond its signature');
      if (reportFwid) {
        await p.step('binding', () => {
          if (!leafFwid || !equalBytes(leafFwid.digest, reportFwid)) {
            throw new VerificationError('ERR_EVIDENCE_BINDING', 'the FWID in the signed report differs from the FWID in the GPU attestation certificate');
          }
          return `the signed report's FWID equals the attestation certificate's ${leafFwid.hash} FWID (${toHex(reportFwid).slice(0, 16)}…)`;
        });
      }

      if (input.nonce) {
        const expected = input.nonce;
        await p.step('nonce', () => {
          if (!equalBytes(report.request.nonce, expected)) throw new VerificationError('ERR_EVIDENCE_NONCE', 'the GET_MEASUREMENTS request nonce is not the expected nonce');
          return `request nonce equals the expected ${expected.length}-byte nonce`;
        });
      }
    });
  }
}

export const nvidiaVerifier: EvidenceVerifier = new NvidiaVerifier();

/**
 * A GPU's identity from its verified claims: `platformClaims.attestationKeySha256` (lowercase
 * hex), or undefined when the claims name no well-formed key. Two devices with one key are one
 * GPU, however their reports' bytes differ (ECDSA signs afresh).
 */
export function gpuAttestationKey(platformClaims: unknown): string | undefined {
  const v = typeof platformClaims === 'object' && platformClaims !== null ? (platformClaims as Record<string, unknown>).attestationKeySha256 : undefined;
  return typeof v === 'string' && /^[0-9a-f]{64}$/i.test(v) ? v.toLowerCase() : undefined;
}
