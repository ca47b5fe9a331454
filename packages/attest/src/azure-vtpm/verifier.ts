import { CustodyError, canonicalize, sha256, toHex } from '@custody/core';
import { Pipeline } from '../steps.js';
import type { EvidenceVerifier, NormalizedClaims, VerificationResult, VerifyInput } from '../types.js';
import { sevSnpVerifier } from '../sev-snp/index.js';
import { createTdxVerifier, decodeTdAttributes } from '../tdx/index.js';
import { checkQuoteNonce, describeSelection, jwkToSpki, tpmQuoteClaims, verifyPcrDigest, verifyTpmQuoteSignature } from '../tpm/index.js';
import { azureVtpmParts, runtimeDataDigest, verifyHclBinding, type AzureVtpmParts } from './checks.js';
import { detectAzureVtpmEvidence, readAzureVtpmEvidence } from './evidence.js';
import { HCL_AK_KID, type HclJwk } from './hcl-report.js';

export interface AzureVtpmVerifierOptions {
  /** Verifies the SEV-SNP report behind the vTPM (default: the built-in SEV-SNP verifier). */
  sevSnp?: EvidenceVerifier;
  /**
   * Verifies the TD quote behind the vTPM (default: a TDX verifier with its own collateral
   * cache). Pass the service's TDX verifier to share its cache of verified collateral.
   */
  tdx?: EvidenceVerifier;
}

const LABEL = { snp: 'SEV-SNP', tdx: 'TDX' } as const;
export const NO_NONCE_WARNING = 'no expected nonce was given: the vTPM quote qualifying data was not checked for freshness';

/**
 * Azure confidential VMs (SEV-SNP or TDX behind a paravisor vTPM), in trustee's JSON evidence
 * forms. The chain of trust, and so the order of the steps:
 *
 * 1. parse: evidence JSON, HCL report, runtime data (HCLAkPub), TPMS_ATTEST, hardware report;
 * 2. the hardware report, by the SEV-SNP or TDX verifier (its steps are reported here with a
 *    `SEV-SNP:` / `TDX:` prefix): SEV-SNP report with the evidence's VCEK to the AMD root, or the
 *    TD quote with DCAP collateral (`collateral`, passed through; without it, or a fresh cached
 *    copy, the TDX verifier fails closed with ERR_COLLATERAL_MISSING);
 * 3. binding: report_data[0:32] = SHA-256(runtime data bytes exactly as in the HCL report);
 *    SEV-SNP: the report comes from VMPL 0; TDX: the TD quote is a copy of the HCL's TDREPORT;
 * 4. signature: the vTPM quote verifies with HCLAkPub (RSASSA-PKCS1-v1_5, SHA-256);
 * 5. measurements: the PCR values hash to the quote's pcrDigest;
 * 6. nonce: when `nonce` is given, it equals the quote's qualifying data (extraData).
 *
 * Claims: `measurements` are the quoted PCRs (`pcr0`..`pcr23`); the hardware report's own claims
 * are in `devices.snp` or `devices.tdx`; `reportData` is the quote's extraData; `publicKey` is
 * HCLAkPub as canonical JWK JSON; `tcb`, `debug` and the signer chain come from the hardware.
 */
export class AzureVtpmVerifier implements EvidenceVerifier {
  readonly platform = 'azure-vtpm' as const;
  private readonly sevSnp: EvidenceVerifier;
  private readonly tdx: EvidenceVerifier;

  constructor(options: AzureVtpmVerifierOptions = {}) {
    this.sevSnp = options.sevSnp ?? sevSnpVerifier;
    this.tdx = options.tdx ?? createTdxVerifier();
  }

  detect(evidence: Uint8Array): boolean {
    return detectAzureVtpmEvidence(evidence);
  }

  verify(input: VerifyInput): Promise<VerificationResult> {
    const p = new Pipeline('azure-vtpm', input.now);
    return p.run(async () => {
      let parts!: AzureVtpmParts;
      await p.step('parse', async () => {
        parts = azureVtpmParts(readAzureVtpmEvidence(input.evidence));
        p.claims = await azureClaims(parts);
        const h = parts.hcl;
        if (h.header.status !== 0) p.warn(`the HCL report header status is ${h.header.status}, not 0`);
        if (h.paddingNonZero) p.warn('the HCL report has non-zero bytes outside its measured parts (ignored)');
        const hw = parts.snpReport ? `SEV-SNP report v${parts.snpReport.version}, VMPL ${parts.snpReport.vmpl}` : `TDREPORT + TD quote v${parts.tdQuote!.header.version}`;
        return `${parts.evidence.form} evidence: HCL report v${h.header.version} (${h.header.requestTypeName}) with ${hw}; runtime data ${h.runtimeData.length} B with ${HCL_AK_KID} (RSA-${parts.ak.key.kty === 'RSA' ? parts.ak.key.bits : '?'}); vTPM quote over ${describeSelection(parts.quote.attest.quote!)}`;
      });

      // The vTPM and binding checks do not depend on the hardware verification: start them now so
      // their crypto runs alongside it; each is still reported, in order, only if all before passed.
      const { attest, signature, ak, pcrs } = parts.quote;
      const quoteSignature = verifyTpmQuoteSignature(attest, signature, ak);
      const pcrDigest = verifyPcrDigest(attest, signature, pcrs);
      const binding = verifyHclBinding(parts);
      for (const job of [quoteSignature, pcrDigest, binding]) job.catch(() => undefined);

      const type = parts.hcl.reportType;
      const hardware = await this.verifyHardware(parts, input);
      attachHardware(p.claims!, type, hardware);
      for (const w of hardware.warnings) p.warn(`${LABEL[type]}: ${w}`);
      await replaySteps(p, LABEL[type], hardware);

      await p.step('binding', () => binding);
      await p.step('signature', async () => {
        const { detail } = await quoteSignature;
        return `vTPM quote: ${detail} (${HCL_AK_KID}, bound to the hardware report by the runtime data)`;
      });
      await p.step('measurements', async () => `vTPM quote: ${await pcrDigest}`);
      if (input.nonce) {
        const nonce = input.nonce;
        await p.step('nonce', () => `vTPM quote: ${checkQuoteNonce(attest, nonce)}`);
      } else {
        p.warn(NO_NONCE_WARNING);
      }
    });
  }

  /** Runs the SEV-SNP or TDX verifier on the hardware evidence (never with the nonce: it is the quote's). */
  private verifyHardware(parts: AzureVtpmParts, input: VerifyInput): Promise<VerificationResult> {
    const base: VerifyInput = { evidence: parts.hcl.hardwareReport, now: input.now };
    if (input.collateral) base.collateral = input.collateral;
    if (input.roots) base.roots = input.roots;
    if (parts.hcl.reportType === 'snp') {
      const certs = [...(parts.evidence.vcek ? [parts.evidence.vcek] : []), ...(input.certs ?? [])];
      if (certs.length > 0) base.certs = certs;
      return this.sevSnp.verify(base);
    }
    base.evidence = parts.evidence.tdQuote!;
    if (input.certs) base.certs = input.certs;
    return this.tdx.verify(base);
  }
}

/**
 * Reports the hardware verifier's steps as steps of this pipeline, stopping at its first failure.
 * Its `binding` step only checks a nonce, which it is never given here; the Azure binding follows.
 */
async function replaySteps(p: Pipeline, label: string, r: VerificationResult): Promise<void> {
  for (const s of r.steps) {
    if (s.ok && s.name === 'binding') continue;
    await p.step(s.name, () => {
      if (!s.ok) throw new CustodyError(s.code ?? 'ERR_INTERNAL', `${label}: ${s.detail}`);
      // A step the hardware verifier passed without checking (no CRL) stays a skipped one.
      return s.checked === false ? { notChecked: `${label}: ${s.detail}` } : `${label}: ${s.detail}`;
    });
  }
  if (!r.ok) {
    const e = r.errors[0];
    throw new CustodyError(e?.code ?? 'ERR_INTERNAL', `${label}: ${e?.message ?? 'verification did not complete'}`);
  }
}

/** Claims known right after parsing, so a failed verification still shows what was claimed. */
export async function azureClaims(parts: AzureVtpmParts): Promise<NormalizedClaims> {
  const tpm = await tpmQuoteClaims(parts.quote);
  const h = parts.hcl;
  const hclReport: Record<string, unknown> = {
    headerVersion: h.header.version,
    requestType: h.header.requestTypeName,
    status: h.header.status,
    requestDataVersion: h.requestData.version,
    hashType: h.requestData.hashType,
    runtimeDataSize: h.runtimeData.length,
  };
  if (h.requestData.capabilityBitmap !== undefined) hclReport.capabilityBitmap = h.requestData.capabilityBitmap;
  const platformClaims: Record<string, unknown> = {
    evidenceForm: parts.evidence.form,
    evidenceVersion: parts.evidence.version,
    hclReportType: h.reportType,
    hclReport,
    runtimeDataDigest: toHex(await runtimeDataDigest(h)),
    akPub: { kid: HCL_AK_KID, key: parts.ak.key.kty === 'RSA' ? `rsa-${parts.ak.key.bits}` : 'ec', spkiSha256: tpm.platformClaims.akSpkiSha256 },
    tpm: tpm.platformClaims,
  };
  if (parts.runtime.ekPub) platformClaims.ekPub = await keySummary(parts.runtime.ekPub);
  if (parts.runtime.vmConfiguration) platformClaims.vmConfiguration = parts.runtime.vmConfiguration;
  if (parts.runtime.userData !== undefined) platformClaims.userData = parts.runtime.userData;
  if (parts.snpReport) platformClaims.vmpl = parts.snpReport.vmpl;
  const debug = parts.snpReport ? parts.snpReport.policyDecoded.debugAllowed : decodeTdAttributes(parts.tdReport!.body.tdAttributes).debug;
  return {
    platform: 'azure-vtpm',
    simulated: false,
    measurements: tpm.measurements,
    reportData: tpm.reportData,
    debug,
    signer: { chain: [], kind: `AK (${HCL_AK_KID})` },
    publicKey: canonicalize(parts.runtime.akPub),
    platformClaims,
  };
}

// A VM keeps its EK: its SPKI digest is remembered (bounded) like the AK's in tpm/.
const keySummaries = new Map<string, Promise<Record<string, string>>>();
const MAX_KEY_SUMMARIES = 256;

/** A JWK's SPKI SHA-256, or why it has none (the EK is reported, not used). */
function keySummary(jwk: HclJwk): Promise<Record<string, string>> {
  const id = `${jwk.kid}|${jwk.kty}|${jwk.n ?? ''}|${jwk.e ?? ''}|${jwk.crv ?? ''}|${jwk.x ?? ''}|${jwk.y ?? ''}`;
  let s = keySummaries.get(id);
  if (s === undefined) {
    s = (async (): Promise<Record<string, string>> => {
      try {
        return { kid: jwk.kid, kty: jwk.kty, spkiSha256: toHex(await sha256(jwkToSpki(jwk))) };
      } catch (e) {
        return { kid: jwk.kid, kty: jwk.kty.slice(0, 8), error: e instanceof CustodyError ? e.code : 'ERR_INPUT_MALFORMED' };
      }
    })();
    if (keySummaries.size >= MAX_KEY_SUMMARIES) keySummaries.delete(keySummaries.keys().next().value!);
    keySummaries.set(id, s);
  }
  return s.then((v) => ({ ...v }));
}

/** Folds the hardware verifier's claims in: as `devices.snp` / `devices.tdx`, and its TCB, debug and chain. */
function attachHardware(claims: NormalizedClaims, type: 'snp' | 'tdx', r: VerificationResult): void {
  const hw = r.claims;
  if (!hw) return;
  claims.devices = { [type]: hw };
  if (hw.tcb) claims.tcb = hw.tcb;
  claims.debug = claims.debug || hw.debug;
  claims.signer = { chain: hw.signer.chain, kind: `AK (${HCL_AK_KID}) + ${hw.signer.kind ?? LABEL[type]}` };
  if (hw.signer.rootSha256) claims.signer.rootSha256 = hw.signer.rootSha256;
}

export function createAzureVtpmVerifier(options: AzureVtpmVerifierOptions = {}): AzureVtpmVerifier {
  return new AzureVtpmVerifier(options);
}

/** The Azure vTPM member of the verifier registry. */
export const azureVtpmVerifier: EvidenceVerifier = new AzureVtpmVerifier();
