import { CustodyError, X509Certificate, checkServiceUrl, readCertificates, toHex } from '@custody/core';
import { readSevSnpEvidence } from '../sev-snp/evidence.js';
import { parseSevSnpReport, type SevSnpProduct, type SevSnpReport } from '../sev-snp/report.js';
import { SEV_SNP_PRODUCTS } from '../sev-snp/report.js';
import { parsePckExtensions } from '../tdx/pck-extensions.js';
import { parseTdxQuote } from '../tdx/quote.js';

/** AMD Key Distribution Service (VCEK Certificate and KDS Interface Specification, 57230). */
export const AMD_KDS_URL = 'https://kdsintf.amd.com';
/** Intel SGX and TDX Provisioning Certification Service, API v4. */
export const INTEL_PCS_URL = 'https://api.trustedservices.intel.com';
/** The Intel SGX Root CA CRL: the CRL distribution point in Intel's root and TCB Signing certificates. */
export const INTEL_ROOT_CA_CRL_URL = 'https://certificates.trustedservices.intel.com/IntelSGXRootCA.der';

/** One piece of collateral: where it comes from and how long a copy of it may be kept. */
export type CollateralItemKind = 'vcek' | 'certChain' | 'crl' | 'tcbInfo' | 'qeIdentity' | 'pckCrl' | 'rootCaCrl';

export interface CollateralRequest {
  kind: CollateralItemKind;
  url: string;
  /** Response headers that carry this item's issuer chain, preferred first (Intel PCS). */
  issuerChainHeaders?: readonly string[];
  /** How a cached copy expires: at the CRL's or signed JSON's nextUpdate, or after a fixed time. */
  expiry: 'crl' | 'tcbInfo' | 'qeIdentity' | 'fixed';
}

export interface SevSnpCollateralPlan {
  platform: 'sev-snp';
  product: SevSnpProduct;
  /** KDS hwid: CHIP_ID in lowercase hex (its first 8 bytes on Turin). */
  hwid: string;
  requests: CollateralRequest[];
}

export interface TdxCollateralPlan {
  platform: 'tdx';
  /** Uppercase hex, as Intel's examples write it. */
  fmspc: string;
  /** The PCK's issuing CA, read from the PCK chain in the quote. */
  ca: 'platform' | 'processor';
  requests: CollateralRequest[];
}

/** A base URL the caller configured: http(s), no credentials, query or fragment. */
export function checkBaseUrl(base: string, what: string): URL {
  return checkServiceUrl(base, what);
}

function join(base: string, what: string, path: string): string {
  const u = checkBaseUrl(base, what);
  return `${u.origin}${u.pathname.replace(/\/+$/, '')}${path}`;
}

export function parseSevSnpProduct(name: string): SevSnpProduct {
  const p = SEV_SNP_PRODUCTS.find((x) => x.toLowerCase() === name.toLowerCase());
  if (!p) throw new CustodyError('ERR_USAGE', `unknown SEV-SNP product ${JSON.stringify(name.slice(0, 32))} (${SEV_SNP_PRODUCTS.join(', ')})`);
  return p;
}

const spl = (n: number): string => String(n).padStart(2, '0');

/** The KDS path and query of a report's VCEK: its chip and its REPORTED_TCB (fmcSPL on Turin). */
export function vcekPath(product: SevSnpProduct, report: SevSnpReport): { hwid: string; path: string } {
  const t = report.reportedTcb;
  let hwid: string;
  let query: string;
  if (product === 'Turin') {
    if (report.chipId.subarray(8).some((b) => b !== 0)) throw new CustodyError('ERR_INPUT_MALFORMED', 'a Turin CHIP_ID has an 8-byte hwid followed by zeros');
    if (t.fmc === undefined) throw new CustodyError('ERR_INPUT_MALFORMED', 'a Turin REPORTED_TCB has an FMC field');
    hwid = toHex(report.chipId.subarray(0, 8));
    query = `fmcSPL=${spl(t.fmc)}&blSPL=${spl(t.bootloader)}&teeSPL=${spl(t.tee)}&snpSPL=${spl(t.snp)}&ucodeSPL=${spl(t.microcode)}`;
  } else {
    hwid = toHex(report.chipId);
    query = `blSPL=${spl(t.bootloader)}&teeSPL=${spl(t.tee)}&snpSPL=${spl(t.snp)}&ucodeSPL=${spl(t.microcode)}`;
  }
  return { hwid, path: `/vcek/v1/${product}/${hwid}?${query}` };
}

/**
 * What AMD KDS serves for an SEV-SNP report (raw or configfs-tsm): the VCEK for its chip and
 * reported TCB, the product's ASK/ARK chain and its CRL. The product comes from the report's CPUID
 * (v3+) or `product`; a v2 report needs `product`. A VLEK-signed report cannot be served.
 */
export function planSevSnpCollateral(evidence: Uint8Array, options: { kdsUrl?: string; product?: SevSnpProduct } = {}): SevSnpCollateralPlan {
  const base = options.kdsUrl ?? AMD_KDS_URL;
  checkBaseUrl(base, 'the KDS URL');
  const ev = readSevSnpEvidence(evidence);
  let report = parseSevSnpReport(ev.report);
  const signer = report.signerInfo.signingKey;
  if (signer === 'VLEK') {
    throw new CustodyError('ERR_SNP_VLEK_NOT_FETCHABLE', 'the report is signed by a VLEK: the cloud provider issues it and AMD KDS does not serve it; supply it as a certificate');
  }
  if (signer !== 'VCEK') throw new CustodyError('ERR_INPUT_UNSUPPORTED', `the report's signing key is ${signer}: there is no VCEK to fetch`);
  if (report.signerInfo.maskChipKey) throw new CustodyError('ERR_INPUT_UNSUPPORTED', 'MASK_CHIP_KEY is set: the report carries no CHIP_ID, so its VCEK cannot be looked up');
  if (options.product && report.cpuidProduct && options.product !== report.cpuidProduct) {
    throw new CustodyError('ERR_SNP_PRODUCT', `the report's CPUID names ${report.cpuidProduct}, not ${options.product}`, { detail: { cpuid: report.cpuidProduct, given: options.product } });
  }
  const product = options.product ?? report.cpuidProduct;
  if (!product) throw new CustodyError('ERR_USAGE', `the SEV-SNP report (v${report.version}) does not name its product; give it (${SEV_SNP_PRODUCTS.join(', ')})`, { detail: { missing: 'product', version: report.version } });
  if (report.tcbLayout !== (product === 'Turin' ? 'turin' : 'legacy')) report = parseSevSnpReport(ev.report, { product });
  const { hwid, path } = vcekPath(product, report);
  return {
    platform: 'sev-snp',
    product,
    hwid,
    requests: [
      { kind: 'vcek', url: join(base, 'the KDS URL', path), expiry: 'fixed' },
      { kind: 'certChain', url: join(base, 'the KDS URL', `/vcek/v1/${product}/cert_chain`), expiry: 'fixed' },
      { kind: 'crl', url: join(base, 'the KDS URL', `/vcek/v1/${product}/crl`), expiry: 'crl' },
    ],
  };
}

/** Whether a PCS base URL is Intel's own PCS (its host over https), not a PCCS. */
function isIntelPcs(base: string): boolean {
  const u = checkBaseUrl(base, 'the PCS URL');
  return u.protocol === 'https:' && u.hostname.toLowerCase() === new URL(INTEL_PCS_URL).hostname;
}

const PCK_CA: Record<string, 'platform' | 'processor'> = { 'Intel SGX PCK Platform CA': 'platform', 'Intel SGX PCK Processor CA': 'processor' };

/**
 * What Intel PCS v4 (or a PCCS at `pcsUrl`) serves for a TDX quote: TCB Info for the FMSPC of the
 * PCK certificate in the quote, the TD_QE identity, the CRL of the PCK's issuing CA, and the Intel
 * SGX Root CA CRL: from Intel's distribution point (the one in Intel's root certificate) while
 * `pcsUrl` is Intel's PCS, which does not serve `rootcacrl`; from the PCCS `rootcacrl` when `pcsUrl`
 * is another host (a PCCS); from `rootCaCrlUrl` when given.
 */
export function planTdxCollateral(evidence: Uint8Array, options: { pcsUrl?: string; rootCaCrlUrl?: string } = {}): TdxCollateralPlan {
  const base = options.pcsUrl ?? INTEL_PCS_URL;
  checkBaseUrl(base, 'the PCS URL');
  const quote = parseTdxQuote(evidence);
  const certs = readCertificates(quote.pckCertChain).map((d) => new X509Certificate(d));
  const leaf = certs[0];
  if (!leaf) throw new CustodyError('ERR_TDX_PCK_CERT', 'the quote carries no PCK certificate');
  const fmspc = toHex(parsePckExtensions(leaf).fmspc).toUpperCase();
  const issuerCn = leaf.issuer.attributes.find((a) => a.type === 'CN')?.value ?? '';
  // The issuer's name comes from the quote: own members only, so `constructor` names no CA.
  const ca = Object.hasOwn(PCK_CA, issuerCn) ? PCK_CA[issuerCn] : undefined;
  if (!ca) throw new CustodyError('ERR_TDX_PCK_CERT', `the PCK certificate is issued by "${issuerCn.slice(0, 64)}", not an Intel SGX PCK Platform or Processor CA`);
  const rootCaCrl = options.rootCaCrlUrl ?? (isIntelPcs(base) ? INTEL_ROOT_CA_CRL_URL : join(base, 'the PCS URL', '/sgx/certification/v4/rootcacrl'));
  if (options.rootCaCrlUrl !== undefined) checkBaseUrl(options.rootCaCrlUrl.replace(/\?.*$/, ''), 'the root CA CRL URL');
  return {
    platform: 'tdx',
    fmspc,
    ca,
    requests: [
      { kind: 'tcbInfo', url: join(base, 'the PCS URL', `/tdx/certification/v4/tcb?fmspc=${fmspc}`), issuerChainHeaders: ['TCB-Info-Issuer-Chain', 'SGX-TCB-Info-Issuer-Chain'], expiry: 'tcbInfo' },
      { kind: 'qeIdentity', url: join(base, 'the PCS URL', '/tdx/certification/v4/qe/identity'), issuerChainHeaders: ['SGX-Enclave-Identity-Issuer-Chain'], expiry: 'qeIdentity' },
      { kind: 'pckCrl', url: join(base, 'the PCS URL', `/sgx/certification/v4/pckcrl?ca=${ca}&encoding=der`), issuerChainHeaders: ['SGX-PCK-CRL-Issuer-Chain'], expiry: 'crl' },
      { kind: 'rootCaCrl', url: rootCaCrl, expiry: 'crl' },
    ],
  };
}
