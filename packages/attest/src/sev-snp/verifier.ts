import { KEY_USAGE, VerificationError, equalBytes, isAllZero, toHex, verifySignature, type X509Certificate, type X509Crl } from '@custody/core';
import { Pipeline } from '../steps.js';
import type { CertificateSummary, EvidenceVerifier, NormalizedClaims, VerificationResult, VerifyInput } from '../types.js';
import { amdCaName, amdKeyKind, asProduct, commonName, leafProductName, readAmdKeyExtensions } from './amd-certs.js';
import type { SnpCertTableEntry } from './cert-table.js';
import { detectSevSnpEvidence, readSevSnpEvidence, type SevSnpEvidence } from './evidence.js';
import { SNP_SIG_ALGO_ECDSA_P384_SHA384, parseSevSnpReport, snpSignatureRaw, tcbLayoutOf, type SevSnpProduct, type SevSnpReport, type SnpTcbVersion } from './report.js';
import { crlSignedBy, loadAmdTrust, parseCertificate, parseCertificateBlobs, parseCrlBlob, verifyChainCached } from './trust.js';

/** Names of `collateral` entries this verifier reads. */
export const SNP_COLLATERAL_CRL = 'crl';

const ECDSA_P384_SHA384 = { kind: 'ecdsa', hash: 'SHA-384' } as const;
// The VCEK/VLEK signs attestation reports. AMD's VCEKs and VLEKs carry no keyUsage or
// extKeyUsage extension at all (unrestricted, RFC 5280); should one carry a keyUsage, it must
// allow digitalSignature.
const SNP_SIGNER_USAGE = { keyUsage: KEY_USAGE.digitalSignature };
const TCB_FIELDS = ['bootloader', 'tee', 'snp', 'microcode'] as const;

function u64Hex(v: bigint): string {
  return '0x' + v.toString(16).padStart(16, '0');
}

function tcbClaims(t: SnpTcbVersion): Record<string, number | string> {
  const out: Record<string, number | string> = {};
  if (t.fmc !== undefined) out.fmc = t.fmc;
  out.bootloader = t.bootloader;
  out.tee = t.tee;
  out.snp = t.snp;
  out.microcode = t.microcode;
  out.raw = t.raw;
  return out;
}

function tcbText(t: SnpTcbVersion): string {
  return `${t.fmc !== undefined ? `fmc=${t.fmc} ` : ''}bl=${t.bootloader} tee=${t.tee} snp=${t.snp} ucode=${t.microcode}`;
}

const summaries = new WeakMap<X509Certificate, CertificateSummary>();

/** A certificate's summary for claims (immutable facts, computed once per parsed certificate). */
async function summarize(cert: X509Certificate): Promise<CertificateSummary> {
  let s = summaries.get(cert);
  if (!s) {
    s = {
      subject: cert.subject.text,
      issuer: cert.issuer.text,
      serial: cert.serialHex,
      notBefore: cert.notBefore.toISOString(),
      notAfter: cert.notAfter.toISOString(),
      sha256: await cert.sha256(),
    };
    summaries.set(cert, s);
  }
  return { ...s };
}

function buildClaims(report: SevSnpReport, form: SevSnpEvidence['form'], product: SevSnpProduct | undefined): NormalizedClaims {
  const reported: Record<string, number | string> = tcbClaims(report.reportedTcb);
  delete reported.raw;
  const platformClaims: Record<string, unknown> = {
    evidenceForm: form,
    reportVersion: report.version,
    guestSvn: report.guestSvn,
    vmpl: report.vmpl,
    policy: { value: u64Hex(report.policy), ...report.policyDecoded },
    platformInfo: { value: u64Hex(report.platformInfo), ...report.platformInfoDecoded },
    signerInfo: report.signerInfo,
    signatureAlgo: report.signatureAlgo,
    chipId: toHex(report.chipId),
    reportId: toHex(report.reportId),
    reportIdMa: toHex(report.reportIdMa),
    tcbLayout: report.tcbLayout,
    currentTcb: tcbClaims(report.currentTcb),
    reportedTcb: tcbClaims(report.reportedTcb),
    committedTcb: tcbClaims(report.committedTcb),
    launchTcb: tcbClaims(report.launchTcb),
    currentVersion: `${report.currentVersion.major}.${report.currentVersion.minor}.${report.currentVersion.build}`,
    committedVersion: `${report.committedVersion.major}.${report.committedVersion.minor}.${report.committedVersion.build}`,
  };
  if (product) platformClaims.product = product;
  if (report.cpuid) platformClaims.cpuid = report.cpuid;
  if (report.launchMitVector !== undefined) platformClaims.launchMitVector = u64Hex(report.launchMitVector);
  if (report.currentMitVector !== undefined) platformClaims.currentMitVector = u64Hex(report.currentMitVector);
  if (report.reservedViolations.length > 0) platformClaims.reservedViolations = report.reservedViolations;
  return {
    platform: 'sev-snp',
    simulated: false,
    measurements: {
      measurement: toHex(report.measurement),
      hostData: toHex(report.hostData),
      idKeyDigest: toHex(report.idKeyDigest),
      authorKeyDigest: toHex(report.authorKeyDigest),
      familyId: toHex(report.familyId),
      imageId: toHex(report.imageId),
    },
    reportData: toHex(report.reportData),
    debug: report.policyDecoded.debugAllowed,
    tcb: { components: reported },
    signer: { chain: [] },
    platformClaims,
  };
}

/** Certificates carried in the configfs-tsm certificate table, by slot. */
function tableCertificates(table: SnpCertTableEntry[]): { slot: SnpCertTableEntry['kind']; cert: X509Certificate }[] {
  return table.filter((e) => e.kind === 'vcek' || e.kind === 'vlek' || e.kind === 'ask' || e.kind === 'ark').map((e) => ({ slot: e.kind, cert: parseCertificate(e.data) }));
}

interface SignerState {
  leaf: X509Certificate;
  kind: 'VCEK' | 'VLEK';
  chain: X509Certificate[];
  product: SevSnpProduct | undefined;
}

/**
 * Verifies AMD SEV-SNP evidence: an ATTESTATION_REPORT (raw, or the configfs-tsm JSON form with
 * its certificate table) signed by a VCEK or VLEK that chains to the AMD ARK of the report's
 * product. Steps: parse, chain, revocation, signature, tcb, binding, debug.
 *
 * Inputs: `certs` (VCEK/VLEK, ASK/ASVK, ARK as DER or PEM; the pinned ASK/ASVK are used when
 * absent), `collateral.crl` (an AMD KDS CRL, DER or PEM), `roots` (replace the pinned ARKs),
 * `nonce` (must equal report_data, zero-padded to 64 bytes), `now`.
 */
export async function verifySevSnp(input: VerifyInput): Promise<VerificationResult> {
  const p = new Pipeline('sev-snp', input.now);
  return p.run(async () => {
    let evidence!: SevSnpEvidence;
    let report!: SevSnpReport;
    let signer!: SignerState;

    await p.step('parse', () => {
      evidence = readSevSnpEvidence(input.evidence);
      report = parseSevSnpReport(evidence.report);
      p.claims = buildClaims(report, evidence.form, report.cpuidProduct);
      // Which TCB bytes are reserved depends on the product; until the signer names it (v2), wait.
      const layoutKnown = report.cpuidProduct !== undefined;
      for (const v of report.reservedViolations) if (layoutKnown || !isTcbViolation(v)) warnReserved(p, v);
      if (report.version > 5) p.warn(`SEV-SNP report version ${report.version} is newer than this verifier knows (5); fields added after v5 are not decoded`);
      return `ATTESTATION_REPORT v${report.version} (${evidence.form}${evidence.certTable.length ? `, ${evidence.certTable.length} certificate table entries` : ''}), signing key ${report.signerInfo.signingKey}, VMPL ${report.vmpl}${report.cpuid ? `, CPUID family ${report.cpuid.family.toString(16)}h model ${report.cpuid.model.toString(16)}h` : ''}`;
    });

    await p.step('chain', async () => {
      const kind = report.signerInfo.signingKey;
      if (kind === 'none') throw new VerificationError('ERR_EVIDENCE_SIGNATURE', 'the report is not signed (SIGNING_KEY is "none")');
      if (kind === 'reserved') {
        throw new VerificationError('ERR_INPUT_UNSUPPORTED', `SIGNING_KEY ${report.signerInfo.signingKeyValue} is reserved`, { detail: { signingKey: report.signerInfo.signingKeyValue } });
      }
      const fromTable = tableCertificates(evidence.certTable);
      const supplied: X509Certificate[] = [];
      for (const c of [...fromTable.map((t) => t.cert), ...parseCertificateBlobs(input.certs ?? [])]) if (!supplied.includes(c)) supplied.push(c);

      const slot = kind === 'VCEK' ? 'vcek' : 'vlek';
      const candidates = supplied.filter((c) => amdKeyKind(c) === kind || fromTable.some((t) => t.slot === slot && t.cert === c));
      if (candidates.length === 0) {
        throw new VerificationError('ERR_CERT_MISSING', `the report is signed by a ${kind} but no ${kind} certificate was supplied`, { detail: { kind } });
      }
      // Several candidates (e.g. VCEKs of other chips): prefer the one whose hwID is this chip's.
      const leaf = candidates.find((c) => {
        try {
          const hwid = readAmdKeyExtensions(c).hwid;
          return hwid !== undefined && chipIdMatches(hwid, report.chipId);
        } catch {
          return false; // a malformed candidate is only rejected if it ends up being the signer
        }
      }) ?? candidates[0]!;

      const productName = leafProductName(leaf);
      const leafProduct = asProduct(productName);
      if (productName !== undefined && leafProduct === undefined && !input.roots) {
        throw new VerificationError('ERR_SNP_PRODUCT', `no pinned AMD roots for product "${productName.slice(0, 32)}"; supply roots`, { detail: { product: productName.slice(0, 32) } });
      }
      if (leafProduct && report.cpuidProduct && leafProduct !== report.cpuidProduct) {
        throw new VerificationError('ERR_SNP_PRODUCT', `the ${kind} is for ${leafProduct} but the report's CPUID names ${report.cpuidProduct}`, { detail: { certificate: leafProduct, cpuid: report.cpuidProduct } });
      }
      const product = leafProduct ?? report.cpuidProduct;
      const trust = product ? (await loadAmdTrust()).get(product) : undefined;
      const roots = input.roots ? parseCertificateBlobs(input.roots) : trust ? [trust.ark] : [];
      if (roots.length === 0) throw new VerificationError('ERR_SNP_PRODUCT', `cannot tell which AMD product signed this report, so no ARK applies; supply roots`);

      for (const c of [...supplied.filter((c) => c !== leaf), ...roots]) {
        const ca = amdCaName(commonName(c));
        if (ca && product && ca.product !== product) {
          throw new VerificationError('ERR_SNP_PRODUCT', `"${commonName(c)}" belongs to ${ca.product}, but the ${kind} is for ${product}`, { detail: { certificate: commonName(c) ?? '', product } });
        }
      }
      for (const c of supplied) {
        if (c.isSelfIssued() && !roots.some((r) => r.equals(c))) {
          throw new VerificationError('ERR_CERT_ROOT_UNTRUSTED', `supplied root "${c.subject.text}" is not ${input.roots ? 'one of the given roots' : `the pinned ${product} ARK`}`, { detail: { subject: c.subject.text } });
        }
      }
      // The pinned ASK/ASVK lead only to the pinned ARK, so they help only when it is the anchor;
      // they go first so a supplied look-alike is never preferred to them.
      const intermediates = trust && !input.roots ? [kind === 'VCEK' ? trust.ask : trust.asvk] : [];
      for (const c of supplied) if (c !== leaf && !intermediates.includes(c)) intermediates.push(c);

      const { chain, root } = await verifyChainCached(leaf, intermediates, roots, input.now, { leafUsage: SNP_SIGNER_USAGE });
      const issuerRole = chain.length > 1 ? amdCaName(commonName(chain[1]!))?.role : undefined;
      if (issuerRole && issuerRole !== (kind === 'VCEK' ? 'ASK' : 'ASVK')) {
        throw new VerificationError('ERR_CERT_CHAIN', `a ${kind} must be issued by the ${kind === 'VCEK' ? 'ASK' : 'ASVK'}, not "${commonName(chain[1]!)}"`);
      }
      signer = { leaf, kind, chain, product };
      let claims = p.claims!;
      if (tcbLayoutOf(product) !== report.tcbLayout) {
        report = parseSevSnpReport(evidence.report, product ? { product } : {});
        claims = buildClaims(report, evidence.form, product);
      }
      if (report.cpuidProduct === undefined) for (const v of report.reservedViolations) if (isTcbViolation(v)) warnReserved(p, v);
      if (product) claims.platformClaims.product = product;
      const rootSha256 = await root.sha256();
      claims.signer = { chain: await Promise.all(chain.map(summarize)), rootSha256, kind };
      const ext = readAmdKeyExtensions(leaf);
      if (ext.productName) claims.platformClaims.productName = ext.productName;
      if (ext.cspId) claims.platformClaims.cspId = ext.cspId;
      p.claims = claims;
      const names = chain.map((c) => commonName(c) ?? c.subject.text).join(' -> ');
      const anchor = input.roots ? 'a caller-supplied root' : `the pinned ${product} ARK`;
      return `${names}: signatures verify up to ${anchor} (sha256 ${rootSha256.slice(0, 16)}...), every certificate valid at ${input.now.toISOString()}`;
    });

    await p.step('revocation', async () => {
      const crls: X509Crl[] = [];
      const fromCollateral = input.collateral?.[SNP_COLLATERAL_CRL];
      if (fromCollateral) crls.push(...parseCrlBlob(fromCollateral));
      for (const e of evidence.certTable) if (e.kind === 'crl') crls.push(...parseCrlBlob(e.data));
      for (const name of Object.keys(input.collateral ?? {})) if (name !== SNP_COLLATERAL_CRL) p.warn(`collateral "${name.slice(0, 64)}" is not used by the SEV-SNP verifier`);
      // Revocation is reported as a claim so a policy can require it; a CRL is only ever taken as
      // evidence of non-revocation after its signature by a chain certificate has been checked.
      if (crls.length === 0) {
        p.claims!.platformClaims.revocationChecked = false;
        p.warn('revocation of the AMD certificates was not checked: no CRL supplied (collateral "crl")');
        return { notChecked: 'no CRL supplied: revocation of the AMD certificates was not checked' };
      }
      const detail = (await Promise.all(crls.map((crl) => checkCrl(crl, signer.chain, input.now)))).join('; ');
      p.claims!.platformClaims.revocationChecked = true;
      return detail;
    });

    await p.step('signature', async () => {
      if (report.signatureAlgo !== SNP_SIG_ALGO_ECDSA_P384_SHA384) {
        throw new VerificationError('ERR_INPUT_UNSUPPORTED', `SIGNATURE_ALGO ${report.signatureAlgo} is not ECDSA P-384 with SHA-384`, { detail: { signatureAlgo: report.signatureAlgo } });
      }
      const key = signer.leaf.publicKey;
      if (key.algorithm !== 'ec' || key.namedCurve !== 'P-384') {
        throw new VerificationError('ERR_INPUT_UNSUPPORTED', `the ${signer.kind} key is not an ECDSA P-384 key`);
      }
      const raw = snpSignatureRaw(report);
      if (!raw || !(await verifySignature(key, ECDSA_P384_SHA384, report.signedBytes, raw, 'raw'))) {
        throw new VerificationError('ERR_EVIDENCE_SIGNATURE', `the report signature does not verify with the ${signer.kind} key`);
      }
      return `ECDSA P-384/SHA-384 signature over bytes 0x000..0x29f verifies with the ${signer.kind} key`;
    });

    await p.step('tcb', () => {
      const ext = readAmdKeyExtensions(signer.leaf);
      const reported = report.reportedTcb;
      const fields: ('bootloader' | 'tee' | 'snp' | 'microcode' | 'fmc')[] = [...TCB_FIELDS];
      if (reported.fmc !== undefined) fields.unshift('fmc');
      const mismatches = fields.filter((f) => ext.tcb[f] !== reported[f]);
      if (mismatches.length > 0) {
        const shown = mismatches.map((f) => `${f} report ${reported[f]} vs certificate ${ext.tcb[f] ?? 'absent'}`).join(', ');
        throw new VerificationError('ERR_EVIDENCE_TCB_MISMATCH', `reported_tcb differs from the ${signer.kind}'s TCB extensions: ${shown}`, { detail: { fields: mismatches.join(',') } });
      }
      let chip = '';
      if (signer.kind === 'VCEK') {
        if (report.signerInfo.maskChipKey) {
          p.warn('MASK_CHIP_KEY is set: the report carries no chip_id, so the VCEK hwID was not compared');
          chip = '; chip_id masked (not compared)';
        } else {
          if (!ext.hwid) throw new VerificationError('ERR_EVIDENCE_CHIP_ID', 'the VCEK has no hwID extension');
          if (!chipIdMatches(ext.hwid, report.chipId)) throw new VerificationError('ERR_EVIDENCE_CHIP_ID', 'the report chip_id differs from the VCEK hwID');
          chip = '; chip_id equals the VCEK hwID';
        }
      } else if (ext.cspId) {
        chip = `; VLEK issued to ${ext.cspId}`;
      }
      return `reported_tcb ${tcbText(reported)} equals the ${signer.kind}'s TCB extensions${chip}`;
    });

    await p.step('binding', () => {
      if (!input.nonce) return 'no nonce expected: report_data is reported as a claim for policy';
      if (input.nonce.length > 64) throw new VerificationError('ERR_EVIDENCE_NONCE', 'the expected nonce is longer than the 64-byte report_data');
      const expected = new Uint8Array(64);
      expected.set(input.nonce);
      if (!equalBytes(expected, report.reportData)) throw new VerificationError('ERR_EVIDENCE_NONCE', 'report_data does not equal the expected nonce');
      return `report_data equals the expected ${input.nonce.length}-byte nonce, zero-padded to 64 bytes`;
    });

    await p.step('debug', () => {
      const pol = report.policyDecoded;
      if (pol.debugAllowed) {
        p.warn('guest policy allows debugging (DEBUG=1): the hypervisor can read and change guest memory');
        return 'guest policy DEBUG=1 (debugging allowed); reported as claims.debug for policy to decide';
      }
      return `guest policy forbids debugging${pol.migrateMaAllowed ? '; a migration agent is allowed' : ''}`;
    });
  });
}

const isTcbViolation = (v: string) => /_tcb\[/.test(v);

function warnReserved(p: Pipeline, v: string): void {
  p.warn(`SEV-SNP report reserved field ${v} does not hold its required value`);
}

/** Whether a VCEK hwID equals the report's CHIP_ID: all 64 bytes, or the first 8 (Turin) with the rest zero. */
function chipIdMatches(hwid: Uint8Array, chipId: Uint8Array): boolean {
  if (hwid.length === 64) return equalBytes(hwid, chipId);
  return hwid.length === 8 && equalBytes(hwid, chipId.subarray(0, 8)) && isAllZero(chipId.subarray(8));
}

/** Applies one CRL to the validated path: it must be signed by a certificate in it and current at `now`. */
async function checkCrl(crl: X509Crl, chain: X509Certificate[], now: Date): Promise<string> {
  const i = chain.findIndex((c) => equalBytes(c.subject.raw, crl.issuer.raw));
  if (i < 0) throw new VerificationError('ERR_COLLATERAL_MISMATCH', `the CRL from "${crl.issuer.text}" is not issued by any certificate in the ${chain.length}-certificate path`);
  const issuer = chain[i]!;
  if (!(await crlSignedBy(crl, issuer))) throw new VerificationError('ERR_CRL_INVALID', `the CRL signature does not verify with "${issuer.subject.text}"`);
  if (crl.thisUpdate.getTime() > now.getTime()) {
    throw new VerificationError('ERR_CRL_INVALID', `the CRL from "${crl.issuer.text}" is not yet valid (thisUpdate ${crl.thisUpdate.toISOString()})`);
  }
  if (crl.nextUpdate && crl.nextUpdate.getTime() < now.getTime()) {
    throw new VerificationError('ERR_CRL_STALE', `the CRL from "${crl.issuer.text}" is stale: nextUpdate ${crl.nextUpdate.toISOString()} is before ${now.toISOString()}`, {
      detail: { issuer: crl.issuer.text, nextUpdate: crl.nextUpdate.toISOString() },
    });
  }
  const covered = i > 0 ? chain[i - 1]! : undefined;
  if (covered && crl.isRevoked(covered)) {
    throw new VerificationError('ERR_CERT_REVOKED', `"${covered.subject.text}" (serial ${covered.serialHex}) is revoked by the CRL from "${issuer.subject.text}"`, {
      detail: { subject: covered.subject.text, serial: covered.serialHex },
    });
  }
  const name = commonName(issuer) ?? issuer.subject.text;
  return `CRL from ${name} (next update ${crl.nextUpdate?.toISOString() ?? 'none'}) verifies and does not list ${covered ? `"${commonName(covered) ?? covered.subject.text}"` : 'any certificate in the path'}`;
}

/** The SEV-SNP member of the verifier registry. */
export class SevSnpVerifier implements EvidenceVerifier {
  readonly platform = 'sev-snp' as const;

  detect(evidence: Uint8Array): boolean {
    return detectSevSnpEvidence(evidence);
  }

  verify(input: VerifyInput): Promise<VerificationResult> {
    return verifySevSnp(input);
  }
}

export const sevSnpVerifier: EvidenceVerifier = new SevSnpVerifier();
