import { ParseError, VerificationError, digest, equalBytes, toHex, type Bytes } from '@custody/core';
import { parseSevSnpReport, type SevSnpReport } from '../sev-snp/index.js';
import { parseTdReport, parseTdxQuote, type TdReport, type TdReportBody, type TdxQuote } from '../tdx/index.js';
import {
  TPM_ALG,
  akFromJwk,
  parseTpmsAttest,
  pcrBankFromList,
  requireQuoteInfo,
  verifyTpmQuote,
  type TpmAttestationKey,
  type TpmQuote,
  type TpmQuoteVerification,
  type TpmtSignature,
} from '../tpm/index.js';
import { readAzureVtpmEvidence, type AzureTpmQuoteParts, type AzureVtpmEvidence } from './evidence.js';
import { HCL_AK_KID, parseHclReport, parseRuntimeData, type HclJwk, type HclReport, type HclRuntimeData } from './hcl-report.js';

/** Everything in Azure vTPM evidence, parsed once; the verification steps work on this. */
export interface AzureVtpmParts {
  evidence: AzureVtpmEvidence;
  hcl: HclReport;
  runtime: HclRuntimeData;
  /** HCLAkPub from the runtime data. */
  ak: TpmAttestationKey;
  /** The vTPM quote, with HCLAkPub as its key and the SHA-256 PCR bank given with it. */
  quote: TpmQuote;
  /** The SEV-SNP report inside the HCL report (SEV-SNP CVMs). */
  snpReport?: SevSnpReport;
  /** The TDREPORT inside the HCL report and the TD quote made from it (TDX CVMs). */
  tdReport?: TdReport;
  tdQuote?: TdxQuote;
}

/** The AK of the runtime data as a verification key. Azure's vTPM AK is RSA (raw RSASSA signatures). */
export function hclAttestationKey(jwk: HclJwk): TpmAttestationKey {
  if (jwk.kty !== 'RSA') {
    throw new ParseError('ERR_INPUT_UNSUPPORTED', `${HCL_AK_KID} is a ${jwk.kty.slice(0, 8)} key; Azure vTPM quotes are signed with RSA`, { detail: { kty: jwk.kty.slice(0, 8) } });
  }
  return akFromJwk(jwk);
}

/**
 * The quote parts of the evidence as a TPM quote: TPMS_ATTEST (must be a quote), the raw
 * signature as RSASSA-PKCS1-v1_5 with SHA-256 (what the Azure vTPM AK uses; trustee verifies
 * it so), and `pcrs[i]` as PCR i of the SHA-256 bank.
 */
export function azureTpmQuote(parts: AzureTpmQuoteParts, ak: TpmAttestationKey): TpmQuote {
  const attest = parseTpmsAttest(parts.message);
  requireQuoteInfo(attest);
  const signature: TpmtSignature = { sigAlg: TPM_ALG.rsassa, scheme: 'rsassa', hashAlg: TPM_ALG.sha256, sig: parts.signature };
  return { attest, signature, ak, pcrs: [pcrBankFromList('sha256', parts.pcrs)] };
}

/** Parses every layer of already-read evidence: HCL report, runtime data, AK, quote, hardware report. */
export function azureVtpmParts(evidence: AzureVtpmEvidence): AzureVtpmParts {
  const hcl = parseHclReport(evidence.hclReport);
  const runtime = parseRuntimeData(hcl.runtimeData);
  const ak = hclAttestationKey(runtime.akPub);
  const quote = azureTpmQuote(evidence.tpmQuote, ak);
  const parts: AzureVtpmParts = { evidence, hcl, runtime, ak, quote };
  if (hcl.reportType === 'snp') {
    if (evidence.tdQuote) throw new ParseError('ERR_INPUT_MALFORMED', 'the HCL report holds a SEV-SNP report but the evidence carries a TD quote');
    parts.snpReport = parseSevSnpReport(hcl.hardwareReport);
  } else {
    if (evidence.vcek) throw new ParseError('ERR_INPUT_MALFORMED', 'the HCL report holds a TDREPORT but the evidence carries a VCEK');
    // The TDREPORT is MAC-protected for the local CPU only; a verifier needs the quote made from it.
    if (!evidence.tdQuote) throw new ParseError('ERR_INPUT_MALFORMED', 'TDX evidence has no td_quote: a TDREPORT alone cannot be verified remotely');
    parts.tdReport = parseTdReport(hcl.hardwareReport);
    parts.tdQuote = parseTdxQuote(evidence.tdQuote);
  }
  return parts;
}

/** Reads and parses evidence bytes in one call. */
export function parseAzureVtpmEvidence(input: Uint8Array): AzureVtpmParts {
  return azureVtpmParts(readAzureVtpmEvidence(input));
}

const digests = new WeakMap<HclReport, Promise<Bytes>>();

/** The runtime data digest with the hash the IGVM request data names (computed once per parsed report). */
export function runtimeDataDigest(hcl: HclReport): Promise<Bytes> {
  let d = digests.get(hcl);
  if (!d) {
    d = digest(hcl.requestData.hashType, hcl.runtimeData);
    digests.set(hcl, d);
  }
  return d;
}

/** report_data must start with the digest of the runtime data, exactly as the HCL report holds it. */
export async function verifyRuntimeDataBinding(hcl: HclReport, reportData: Uint8Array, what: string): Promise<string> {
  const d = await runtimeDataDigest(hcl);
  if (reportData.length < d.length || !equalBytes(d, reportData.subarray(0, d.length))) {
    throw new VerificationError('ERR_EVIDENCE_BINDING', `${what} report_data[0:${d.length}] is not ${hcl.requestData.hashType} of the HCL runtime data`, {
      detail: { runtimeDataDigest: toHex(d), reportData: toHex(reportData.subarray(0, d.length)) },
    });
  }
  return `${what} report_data[0:${d.length}] = ${hcl.requestData.hashType}(runtime data, ${hcl.runtimeData.length} B) = ${toHex(d).slice(0, 16)}…`;
}

/**
 * Only the paravisor runs at VMPL 0; the guest OS runs at a higher VMPL and can ask the CPU for
 * reports with report_data of its choosing. A report from VMPL > 0 would let it vouch for a
 * runtime data (and an AK) of its own.
 */
export function checkSnpVmpl(report: SevSnpReport): string {
  if (report.vmpl !== 0) {
    throw new VerificationError('ERR_AZURE_VMPL', `the SEV-SNP report was requested at VMPL ${report.vmpl}, not by the paravisor at VMPL 0`, { detail: { vmpl: report.vmpl } });
  }
  return 'SEV-SNP report requested at VMPL 0 (the paravisor)';
}

const TD_BODY_FIELDS = ['teeTcbSvn', 'mrSeam', 'mrSignerSeam', 'seamAttributes', 'tdAttributes', 'xfam', 'mrTd', 'mrConfigId', 'mrOwner', 'mrOwnerConfig', 'reportData'] as const;

/**
 * The TD quote is the QE's signed copy of a TDREPORT. It must be a copy of the one in the HCL
 * report: every TD report 1.0 field equal, and the TDX 1.5 fields when both carry them.
 */
export function checkTdQuoteMatchesTdReport(report: TdReport, quote: TdxQuote): string {
  const a: TdReportBody = report.body;
  const b: TdReportBody = quote.body;
  const differ: string[] = TD_BODY_FIELDS.filter((f) => !equalBytes(a[f], b[f]));
  for (let i = 0; i < 4; i++) if (!equalBytes(a.rtmr[i]!, b.rtmr[i]!)) differ.push(`rtmr${i}`);
  if (a.teeTcbSvn2 && b.teeTcbSvn2 && !equalBytes(a.teeTcbSvn2, b.teeTcbSvn2)) differ.push('teeTcbSvn2');
  if (a.mrServiceTd && b.mrServiceTd && !equalBytes(a.mrServiceTd, b.mrServiceTd)) differ.push('mrServiceTd');
  if (differ.length > 0) {
    throw new VerificationError('ERR_AZURE_TD_QUOTE_MISMATCH', `the TD quote differs from the HCL report's TDREPORT in ${differ.join(', ')}`, { detail: { fields: differ.join(',') } });
  }
  return 'TD quote body equals the HCL TDREPORT (MRTD, RTMR0-3, REPORTDATA, TCB and attribute fields)';
}

/** The whole hardware-to-runtime-data binding of parsed evidence, for either CPU. */
export async function verifyHclBinding(parts: AzureVtpmParts): Promise<string> {
  if (parts.snpReport) {
    const vmpl = checkSnpVmpl(parts.snpReport);
    return `${vmpl}; ${await verifyRuntimeDataBinding(parts.hcl, parts.snpReport.reportData, 'SEV-SNP')}`;
  }
  const bound = await verifyRuntimeDataBinding(parts.hcl, parts.tdReport!.body.reportData, 'TDREPORT');
  return `${bound}; ${checkTdQuoteMatchesTdReport(parts.tdReport!, parts.tdQuote!)}`;
}

/** The vTPM quote checks (HCLAkPub signature, PCR digest, nonce when expected), in one call. */
export function verifyAzureTpmQuote(parts: AzureVtpmParts, nonce?: Uint8Array): Promise<TpmQuoteVerification> {
  return verifyTpmQuote(parts.quote, nonce ? { nonce } : {});
}
