import {
  BytesKeyedCache,
  CustodyError,
  KEY_USAGE,
  VerificationError,
  X509Certificate,
  checkLeafUsage,
  concatBytes,
  copyBytes,
  equalBytes,
  isAllZero,
  readCertificates,
  sha256,
  subtle,
  utf8,
  verifyCertificateChain,
  verifySignature,
  type Bytes,
  type LeafUsage,
  type SignatureAlgorithm,
  type X509Crl,
} from '@custody/core';
import { Pipeline, type NotChecked } from '../steps.js';
import type { CertificateSummary, EvidenceVerifier, NormalizedClaims, VerificationResult, VerifyInput } from '../types.js';
import { CollateralCache } from './cache.js';
import { decodeTdAttributes, hex, sgxTcbComponents, tdMeasurements, teeTcbComponents } from './claims.js';
import { INTEL_QE_VENDOR_ID } from './constants.js';
import { parseQeIdentity, parseTdxTcbInfo, readTdxCollateral, type QeIdentity, type TdxCollateralInput, type TdxTcbInfo } from './collateral.js';
import { parsePckExtensions, type PckSgxExtensions } from './pck-extensions.js';
import { looksLikeTdxQuote, parseTdxQuote, type TdxQuote } from './quote.js';
import { intelSgxRootCa } from './roots.js';
import type { SignedJson } from './signed-json.js';
import { checkTdxModule, evaluateQeIdentity, evaluateTdxTcb, type QeIdentityResult } from './tcb.js';

export interface TdxVerifierOptions {
  /** Verified collateral kept across verifications until its nextUpdate (default: one per verifier). */
  cache?: CollateralCache;
  /**
   * Require the PCK CRL and the root CA CRL (default true, as Intel's QVL does). When false and a
   * CRL is not supplied, the result says revocation was not checked and carries a warning.
   */
  requireCrls?: boolean;
  /**
   * Require a QE Identity (default true). When false and none is supplied, the quoting enclave's
   * identity and TCB level are not appraised (Intel's QVL allows this) and a warning says so.
   */
  requireQeIdentity?: boolean;
  /**
   * Remember QE reports already verified (default true). A QE's report, its PCK signature and the
   * attestation key it binds are identical in every quote that QE produces, so after the first
   * quote only the quote signature needs verifying. False re-verifies them every time.
   */
  rememberQeReports?: boolean;
}

const ECDSA_SHA256: SignatureAlgorithm = { kind: 'ecdsa', hash: 'SHA-256' };
const ECDSA_P256_SHA256: EcdsaParams = { name: 'ECDSA', hash: 'SHA-256' };
const latin1 = new TextDecoder('latin1');
const INTEL_ROOT_ID = 'intel-sgx-root';
// The PCK signs the QE report and the TCB Signing key signs TCB Info and QE Identity. Intel's
// real PCK and TCB Signing certificates carry keyUsage digitalSignature + nonRepudiation
// (critical) and no extKeyUsage; a leaf whose keyUsage lacks digitalSignature may not sign.
const SIGNER_USAGE: LeafUsage = { keyUsage: KEY_USAGE.digitalSignature };

interface PckChainEntry {
  certs: X509Certificate[];
  leaf: X509Certificate;
  ext: PckSgxExtensions;
}

interface VerifiedPath {
  chain: X509Certificate[];
  root: X509Certificate;
  summary: CertificateSummary[];
  rootSha256: string;
}

interface VerifiedCollateral<T> {
  signed: SignedJson;
  value: T;
  signerPath: VerifiedPath;
}

interface Roots {
  certs: X509Certificate[];
  /** Identifies the anchor set in cache keys. */
  id: string;
}

/** Everything one verification learns, passed between steps. */
interface Run {
  input: VerifyInput;
  now: Date;
  quote?: TdxQuote;
  pck?: PckChainEntry;
  collateral?: TdxCollateralInput;
  roots?: Roots;
  pckPath?: VerifiedPath;
  rootCrl?: X509Crl;
  tcbInfo?: TdxTcbInfo;
  qeIdentity?: QeIdentity;
}

/**
 * Intel TDX (DCAP) quote verifier: quote v4/v5 with ECDSA P-256 attestation key and QE report
 * certification data; PCK chain to the pinned Intel SGX Root CA with both CRLs; QE report
 * signature and attestation-key binding; TCB Info v3 and QE Identity signatures and freshness; TCB
 * level matching per Intel's QVL; nonce binding in REPORTDATA; debug state.
 *
 * Collateral names (`VerifyInput.collateral`): `tcbInfo`, `qeIdentity` (PCS JSON responses),
 * `pckCrl`, `rootCaCrl` (DER, PEM or hex), `tcbInfoIssuerChain`, `qeIdentityIssuerChain`,
 * `pckCrlIssuerChain` (PEM), or `bundle` (dcap-qvl QuoteCollateralV3 JSON). Collateral omitted
 * from a request is taken from the cache when a fresh verified copy is there.
 */
export class TdxVerifier implements EvidenceVerifier {
  readonly platform = 'tdx' as const;
  readonly cache: CollateralCache;
  private readonly requireCrls: boolean;
  private readonly requireQeIdentity: boolean;
  private readonly rememberQeReports: boolean;
  private readonly pckMemo = new BytesKeyedCache<PckChainEntry>(1024);
  private readonly containerMemo = new BytesKeyedCache<TdxCollateralInput>(64);
  private readonly rootsMemo = new BytesKeyedCache<Roots>(64);
  private readonly pathMemo = new WeakMap<X509Certificate, Map<string, VerifiedPath>>();
  private readonly qeReportMemo = new BytesKeyedCache<true>(1024);
  private readonly attKeyMemo = new BytesKeyedCache<Promise<CryptoKey>>(1024);

  constructor(options: TdxVerifierOptions = {}) {
    this.cache = options.cache ?? new CollateralCache();
    this.requireCrls = options.requireCrls ?? true;
    this.requireQeIdentity = options.requireQeIdentity ?? true;
    this.rememberQeReports = options.rememberQeReports ?? true;
  }

  detect(evidence: Uint8Array): boolean {
    return looksLikeTdxQuote(evidence);
  }

  verify(input: VerifyInput): Promise<VerificationResult> {
    const p = new Pipeline('tdx', input.now);
    const run: Run = { input, now: input.now };
    return p.run(async () => {
      await p.step('parse', () => this.parse(run, p));
      await p.step('chain', () => this.chain(run, p));
      await p.step('revocation', () => this.revocation(run, p));
      await p.step('signature', () => this.signature(run));
      await p.step('collateral', () => this.verifyCollateral(run, p));
      await p.step('tcb', () => this.tcb(run, p));
      await p.step('binding', () => this.binding(run));
      await p.step('debug', () => this.debug(p));
    });
  }

  // ---------- parse ----------

  private parse(run: Run, p: Pipeline): string {
    const quote = parseTdxQuote(run.input.evidence);
    run.quote = quote;
    const body = quote.body;
    const tdAttributes = decodeTdAttributes(body.tdAttributes);
    const platformClaims: Record<string, unknown> = {
      quoteVersion: quote.header.version,
      bodyType: body.type === 3 ? 'TD_REPORT_1_5' : 'TD_REPORT_1_0',
      teeType: 'TDX',
      qeVendorId: hex(quote.header.qeVendorId),
      userData: hex(quote.header.userData),
      teeTcbSvn: hex(body.teeTcbSvn),
      ...(body.teeTcbSvn2 ? { teeTcbSvn2: hex(body.teeTcbSvn2) } : {}),
      tdAttributes,
      xfam: hex(body.xfam),
      seamAttributes: hex(body.seamAttributes),
      tdxModule: { version: body.teeTcbSvn[1], isvSvn: body.teeTcbSvn[0] },
      qe: { mrEnclave: hex(quote.qeReport.mrEnclave), mrSigner: hex(quote.qeReport.mrSigner), isvProdId: quote.qeReport.isvProdId, isvSvn: quote.qeReport.isvSvn },
    };
    if (quote.trailingBytes > 0) {
      platformClaims.trailingBytes = quote.trailingBytes;
      p.warn(`quote has ${quote.trailingBytes} unsigned bytes after its signature data (ignored)`);
    }
    if (platformClaims.qeVendorId !== INTEL_QE_VENDOR_ID) p.warn('quote QE vendor id is not Intel\'s');
    const claims: NormalizedClaims = {
      platform: 'tdx',
      simulated: false,
      measurements: tdMeasurements(body),
      reportData: hex(body.reportData),
      debug: tdAttributes.debug,
      signer: { chain: [], kind: 'PCK' },
      platformClaims,
    };
    p.claims = claims;

    const pck = this.parsePckChain(quote);
    run.pck = pck;
    platformClaims.fmspc = hex(pck.ext.fmspc);
    platformClaims.pceId = hex(pck.ext.pceId);
    platformClaims.pck = { pceSvn: pck.ext.pceSvn, cpuSvn: hex(pck.ext.cpuSvn), sgxTcbComponents: pck.ext.sgxTcbComponents, sgxType: pck.ext.sgxType, ...(pck.ext.configuration ? { configuration: pck.ext.configuration } : {}) };

    run.collateral = this.parseCollateral(run.input.collateral);
    for (const name of run.collateral.ignored) p.warn(`collateral "${name}" is not TDX collateral and was ignored`);
    const have = (['tcbInfo', 'qeIdentity', 'pckCrl', 'rootCaCrl'] as const).filter((k) => run.collateral![k] !== undefined);
    return `quote v${quote.header.version} (${quote.raw.length} B, ${body.type === 3 ? 'TD report 1.5' : 'TD report 1.0'}), PCK chain of ${pck.certs.length} certificates, FMSPC ${hex(pck.ext.fmspc)}; collateral supplied: ${have.length ? have.join(', ') : 'none (cache)'}`;
  }

  private parsePckChain(quote: TdxQuote): PckChainEntry {
    const key = [quote.pckCertChain];
    const hit = this.pckMemo.get(key);
    if (hit) return hit;
    const certs = readCertificates(quote.pckCertChain).map((d) => new X509Certificate(d));
    const leaf = certs[0]!;
    if (!commonName(leaf).includes('SGX PCK Certificate')) {
      throw new CustodyError('ERR_TDX_PCK_CERT', `first certificate of the quote's chain is "${leaf.subject.text}", not an SGX PCK Certificate`);
    }
    if (leaf.publicKey.namedCurve !== 'P-256') throw new CustodyError('ERR_TDX_PCK_CERT', 'PCK certificate key is not ECDSA P-256');
    const entry: PckChainEntry = { certs, leaf, ext: parsePckExtensions(leaf) };
    this.pckMemo.set(key, entry);
    return entry;
  }

  private parseCollateral(collateral: Record<string, Uint8Array> | undefined): TdxCollateralInput {
    if (!collateral || Object.keys(collateral).length === 0) return { ignored: [] };
    // Parsing a bundle is the costly part of a warm verification; reuse it while the bytes are equal.
    const names = Object.keys(collateral).sort();
    const key = [utf8(names.join('\u0000')), ...names.map((n) => collateral[n]!)];
    const hit = this.containerMemo.get(key);
    if (hit) return hit;
    const value = readTdxCollateral(collateral);
    this.containerMemo.set(key, value);
    return value;
  }

  // ---------- chain ----------

  private async chain(run: Run, p: Pipeline): Promise<string> {
    const roots = await this.roots(run.input.roots);
    run.roots = roots;
    const pck = run.pck!;
    const extra = run.input.certs?.length ? run.input.certs.flatMap((c) => readCertificates(c).map((d) => new X509Certificate(d))) : [];
    const path = await this.verifyPath(pck.leaf, [...pck.certs.slice(1), ...extra], roots, run.now, SIGNER_USAGE);
    if (path.chain.length < 2) throw new VerificationError('ERR_CERT_CHAIN', 'the PCK certificate itself cannot be a trust anchor');
    run.pckPath = path;
    p.claims!.signer = { chain: path.summary, rootSha256: path.rootSha256, kind: 'PCK' };
    return `PCK chain ${path.chain.map(commonName).join(' -> ')} valid at ${run.now.toISOString()}, anchored at trust anchor sha256 ${path.rootSha256.slice(0, 16)}…${roots.id === INTEL_ROOT_ID ? " (pinned Intel SGX Root CA)" : ""}`;
  }

  private async roots(supplied: Uint8Array[] | undefined): Promise<Roots> {
    if (!supplied || supplied.length === 0) {
      const root = await intelSgxRootCa();
      return { certs: [root], id: INTEL_ROOT_ID };
    }
    const hit = this.rootsMemo.get(supplied);
    if (hit) return hit;
    const certs = supplied.flatMap((r) => readCertificates(r).map((d) => new X509Certificate(d)));
    const roots: Roots = { certs, id: (await Promise.all(certs.map((c) => c.sha256()))).join(',') };
    this.rootsMemo.set(supplied, roots);
    return roots;
  }

  /** Chain validation with its signature work memoised per (leaf, anchors); validity and the leaf's usage re-checked each time. */
  private async verifyPath(leaf: X509Certificate, intermediates: X509Certificate[], roots: Roots, now: Date, leafUsage?: LeafUsage): Promise<VerifiedPath> {
    if (leafUsage) checkLeafUsage(leaf, leafUsage);
    let byRoots = this.pathMemo.get(leaf);
    const hit = byRoots?.get(roots.id);
    if (hit && hit.chain.slice(1, -1).every((c) => intermediates.includes(c) || intermediates.some((i) => i.equals(c)))) {
      for (const c of hit.chain) assertValidAt(c, now);
      return hit;
    }
    const r = await verifyCertificateChain({ leaf, intermediates, roots: roots.certs, now });
    const summary = await Promise.all(r.chain.map(summarize));
    const path: VerifiedPath = { chain: r.chain, root: r.root, summary, rootSha256: await r.root.sha256() };
    if (!byRoots) {
      byRoots = new Map();
      this.pathMemo.set(leaf, byRoots);
    }
    byRoots.set(roots.id, path);
    return path;
  }

  // ---------- revocation ----------

  private async revocation(run: Run, p: Pipeline): Promise<string | NotChecked> {
    const path = run.pckPath!;
    const roots = run.roots!;
    const root = path.root;
    const pckIssuer = path.chain[1]!;
    const rootCrl = await this.crl(run, 'rootCaCrl', root, `${roots.id}|root`);
    const pckCrl = pckIssuer === root ? rootCrl : await this.crl(run, 'pckCrl', pckIssuer, `${roots.id}|${latin1.decode(pckIssuer.subject.raw)}`);
    run.rootCrl = rootCrl;
    const checked: string[] = [];
    const missing: string[] = [];
    for (let i = 0; i < path.chain.length - 1; i++) {
      const cert = path.chain[i]!;
      const issuer = path.chain[i + 1]!;
      const crl = issuer === root ? rootCrl : issuer === pckIssuer ? pckCrl : undefined;
      if (!crl) {
        missing.push(commonName(cert));
        continue;
      }
      if (crl.isRevoked(cert)) {
        throw new VerificationError('ERR_CERT_REVOKED', `certificate "${cert.subject.text}" (serial ${cert.serialHex}) is revoked by ${commonName(issuer)}'s CRL`, { detail: { serial: cert.serialHex } });
      }
      checked.push(`${commonName(cert)} (CRL of ${commonName(issuer)}, next update ${crl.nextUpdate ? iso(crl.nextUpdate) : 'none'})`);
    }
    if (run.collateral!.pckCrlIssuerChain && pckCrl) {
      const [crlSigner, ...rest] = run.collateral!.pckCrlIssuerChain;
      if (!crlSigner || !equalBytes(crlSigner.subject.raw, pckCrl.issuer.raw)) throw new VerificationError('ERR_CRL_INVALID', 'PCK CRL issuer chain does not start with the PCK CRL issuer');
      await this.verifyPath(crlSigner, rest, roots, run.now);
    }
    if (missing.length > 0) {
      p.warn(`revocation not checked for ${missing.join(', ')}: no CRL supplied`);
      return checked.length ? `not revoked: ${checked.join('; ')}; not checked (no CRL): ${missing.join(', ')}` : { notChecked: 'not checked: no CRLs supplied (allowed by configuration)' };
    }
    return `not revoked: ${checked.join('; ')}`;
  }

  /** A CRL from the request or the cache, signed by `issuer` and current at `now`. */
  private async crl(run: Run, kind: 'pckCrl' | 'rootCaCrl', issuer: X509Certificate, cacheId: string): Promise<X509Crl | undefined> {
    const what = kind === 'pckCrl' ? 'PCK CRL' : 'root CA CRL';
    const supplied = run.collateral![kind];
    let crl: X509Crl;
    if (supplied) {
      crl = supplied;
      if (!equalBytes(crl.issuer.raw, issuer.subject.raw)) {
        throw new VerificationError('ERR_CRL_INVALID', `${what} is issued by "${crl.issuer.text}", not by "${issuer.subject.text}"`);
      }
      const cached = this.cache.peek<X509Crl>(kind, cacheId);
      if (cached !== crl) {
        if (!(await crl.verifySignedBy(issuer))) throw new VerificationError('ERR_CRL_INVALID', `${what} signature does not verify with ${commonName(issuer)}'s key`);
        if (crl.nextUpdate && (!cached || cached.thisUpdate.getTime() <= crl.thisUpdate.getTime())) this.cache.set(kind, cacheId, crl, crl.nextUpdate);
      }
    } else {
      const hit = this.cache.get<X509Crl>(kind, cacheId, run.now);
      if (hit.state === 'stale') throw new VerificationError('ERR_CRL_STALE', `cached ${what} expired at ${iso(hit.nextUpdate)}; a fresh one is needed`);
      if (hit.state === 'missing') {
        if (this.requireCrls) throw new VerificationError('ERR_COLLATERAL_MISSING', `${what} is required`, { detail: { collateral: kind } });
        return undefined;
      }
      crl = hit.value;
    }
    assertCrlCurrent(crl, what, run.now);
    return crl;
  }

  // ---------- signature ----------

  private async signature(run: Run): Promise<string> {
    const q = run.quote!;
    const pckKey = run.pck!.leaf.publicKey;
    const attKey = this.attestationKey(q.attestationKey);
    // The QE report, its PCK signature and the attestation key it binds are the same in every quote
    // a QE produces, so a positive result for exactly these bytes is remembered.
    const qeKey = [pckKey.spki, q.qeReport.raw, q.qeReportSignature, q.attestationKey, q.qeAuthData];
    const qeKnown = this.qeReportMemo.get(qeKey) === true;
    const [qeOk, quoteOk, binding] = await Promise.all([
      qeKnown || verifySignature(pckKey, ECDSA_SHA256, q.qeReport.raw, q.qeReportSignature, 'raw'),
      attKey.then((k) => subtle.verify(ECDSA_P256_SHA256, k, copyBytes(q.signature), copyBytes(q.signedData))).catch(() => false),
      qeKnown ? undefined : sha256(concatBytes(q.attestationKey, q.qeAuthData)),
    ]);
    if (!qeOk) throw new VerificationError('ERR_EVIDENCE_SIGNATURE', 'QE report signature does not verify with the PCK certificate key');
    if (binding && !equalBytes(binding, q.qeReport.reportData.subarray(0, 32))) {
      throw new VerificationError('ERR_EVIDENCE_BINDING', 'QE report data is not SHA-256(attestation key || QE authentication data)');
    }
    if (!qeKnown && this.rememberQeReports) this.qeReportMemo.set(qeKey, true);
    if (!quoteOk) throw new VerificationError('ERR_EVIDENCE_SIGNATURE', 'quote signature does not verify with the attestation key');
    return `QE report signed by the PCK key; QE report data binds attestation key ${hex(q.attestationKey).slice(0, 16)}…; quote (${q.signedData.length} B header+body) signed by that key`;
  }

  /** The attestation key as a WebCrypto key; a QE keeps its key across quotes, so imports are memoised. */
  private attestationKey(raw: Bytes): Promise<CryptoKey> {
    let k = this.attKeyMemo.get([raw]);
    if (!k) {
      k = subtle.importKey('raw', concatBytes(Uint8Array.of(0x04), raw), { name: 'ECDSA', namedCurve: 'P-256' }, false, ['verify']);
      // An invalid point fails the import: the quote signature then fails, nothing is remembered.
      k.then(
        (key) => this.attKeyMemo.set([raw], Promise.resolve(key)),
        () => undefined,
      );
    }
    return k;
  }

  // ---------- collateral ----------

  private async verifyCollateral(run: Run, p: Pipeline): Promise<string> {
    const pck = run.pck!.ext;
    const fmspc = hex(pck.fmspc);
    const tcb = (await this.signedCollateral(run, 'tcbInfo', fmspc, parseTdxTcbInfo))!;
    const info = tcb.value;
    if (info.fmspc !== fmspc) throw new VerificationError('ERR_COLLATERAL_MISMATCH', `TCB Info is for FMSPC ${info.fmspc}, the PCK certificate's is ${fmspc}`, { detail: { tcbInfoFmspc: info.fmspc, fmspc } });
    if (info.pceId !== hex(pck.pceId)) throw new VerificationError('ERR_COLLATERAL_MISMATCH', `TCB Info is for PCEID ${info.pceId}, the PCK certificate's is ${hex(pck.pceId)}`);
    run.tcbInfo = info;
    const pc = p.claims!.platformClaims;
    pc.tcbInfo = { issueDate: iso(info.issueDate), nextUpdate: iso(info.nextUpdate), tcbEvaluationDataNumber: info.tcbEvaluationDataNumber };
    const parts = [`TCB Info (FMSPC ${fmspc}, evaluation ${info.tcbEvaluationDataNumber}, next update ${iso(info.nextUpdate)}) signed by ${commonName(tcb.signerPath.chain[0]!)}`];

    const qe = await this.signedCollateral(run, 'qeIdentity', 'TD_QE', parseQeIdentity, !this.requireQeIdentity);
    if (qe) {
      const id = qe.value;
      if (id.id !== 'TD_QE' || id.version !== 2) throw new VerificationError('ERR_COLLATERAL_MISMATCH', `QE Identity is ${id.id} v${id.version}; TDX quotes need TD_QE v2`);
      run.qeIdentity = id;
      pc.qeIdentity = { issueDate: iso(id.issueDate), nextUpdate: iso(id.nextUpdate), tcbEvaluationDataNumber: id.tcbEvaluationDataNumber };
      parts.push(`QE Identity (TD_QE, evaluation ${id.tcbEvaluationDataNumber}, next update ${iso(id.nextUpdate)})`);
    } else {
      p.warn('no QE Identity supplied: the quoting enclave identity and TCB level were not appraised');
      parts.push('QE Identity not supplied');
    }
    return parts.join('; ');
  }

  /**
   * TCB Info or QE Identity: from the request (issuer chain to the root, revocation, signature over
   * the exact signed text, then parsed) or from the cache; then freshness at `now`.
   */
  private async signedCollateral<T extends { issueDate: Date; nextUpdate: Date }>(
    run: Run,
    kind: 'tcbInfo' | 'qeIdentity',
    id: string,
    parse: (body: string) => T,
    optional = false,
  ): Promise<VerifiedCollateral<T> | undefined> {
    const what = kind === 'tcbInfo' ? 'TCB Info' : 'QE Identity';
    const roots = run.roots!;
    const key = `${roots.id}|${id}`;
    const supplied = run.collateral![kind];
    let v: VerifiedCollateral<T>;
    if (supplied) {
      const cached = this.cache.peek<VerifiedCollateral<T>>(kind, key);
      if (cached && cached.signed.body === supplied.body && equalBytes(cached.signed.signature, supplied.signature)) {
        v = cached;
        for (const c of v.signerPath.chain) assertValidAt(c, run.now);
      } else {
        v = await this.verifySigned(run, supplied, kind, what, parse);
        const cachedId = kind === 'tcbInfo' ? `${roots.id}|${(v.value as unknown as TdxTcbInfo).fmspc}` : key;
        const current = this.cache.peek<VerifiedCollateral<T>>(kind, cachedId);
        if (!current || current.value.issueDate.getTime() <= v.value.issueDate.getTime()) this.cache.set(kind, cachedId, v, v.value.nextUpdate);
      }
    } else {
      const hit = this.cache.get<VerifiedCollateral<T>>(kind, key, run.now);
      if (hit.state === 'stale') throw new VerificationError('ERR_COLLATERAL_STALE', `cached ${what} expired at ${hit.nextUpdate.toISOString()}; fresh collateral is needed`, { detail: { collateral: kind } });
      if (hit.state === 'missing') {
        if (optional) return undefined;
        throw new VerificationError('ERR_COLLATERAL_MISSING', `${what} is required`, { detail: { collateral: kind } });
      }
      v = hit.value;
      for (const c of v.signerPath.chain) assertValidAt(c, run.now);
    }
    if (run.rootCrl) {
      for (const c of v.signerPath.chain.slice(0, -1)) {
        if (run.rootCrl.isRevoked(c)) throw new VerificationError('ERR_CERT_REVOKED', `${what} signer "${c.subject.text}" is revoked by the root CA CRL`, { detail: { serial: c.serialHex } });
      }
    }
    if (v.value.issueDate.getTime() > run.now.getTime()) {
      throw new VerificationError('ERR_COLLATERAL_INVALID', `${what} was issued at ${iso(v.value.issueDate)}, after the verification time`);
    }
    if (v.value.nextUpdate.getTime() < run.now.getTime()) {
      throw new VerificationError('ERR_COLLATERAL_STALE', `${what} is stale: next update ${iso(v.value.nextUpdate)} is before ${run.now.toISOString()}`, {
        detail: { collateral: kind, nextUpdate: iso(v.value.nextUpdate) },
      });
    }
    return v;
  }

  private async verifySigned<T>(run: Run, signed: SignedJson, kind: 'tcbInfo' | 'qeIdentity', what: string, parse: (body: string) => T): Promise<VerifiedCollateral<T>> {
    const c = run.collateral!;
    const chain = kind === 'tcbInfo' ? (c.tcbInfoIssuerChain ?? c.qeIdentityIssuerChain) : (c.qeIdentityIssuerChain ?? c.tcbInfoIssuerChain);
    if (!chain || chain.length === 0) throw new VerificationError('ERR_COLLATERAL_MISSING', `${what} issuer chain is required`, { detail: { collateral: `${kind}IssuerChain` } });
    const signer = chain[0]!;
    if (commonName(signer) !== 'Intel SGX TCB Signing') throw new VerificationError('ERR_COLLATERAL_INVALID', `${what} signer is "${signer.subject.text}", not Intel SGX TCB Signing`);
    const signerPath = await this.verifyPath(signer, chain.slice(1), run.roots!, run.now, SIGNER_USAGE);
    if (!(await verifySignature(signer.publicKey, ECDSA_SHA256, utf8(signed.body), signed.signature, 'raw'))) {
      throw new VerificationError('ERR_COLLATERAL_INVALID', `${what} signature does not verify with the Intel SGX TCB Signing key`, { detail: { collateral: kind } });
    }
    return { signed, value: parse(signed.body), signerPath };
  }

  // ---------- tcb ----------

  private tcb(run: Run, p: Pipeline): string {
    const q = run.quote!;
    const info = run.tcbInfo!;
    const claims = p.claims!;
    const pc = claims.platformClaims;
    let qe: QeIdentityResult | undefined;
    if (run.qeIdentity) {
      qe = evaluateQeIdentity(run.qeIdentity, q.qeReport);
      pc.qe = { ...(pc.qe as object), tcbStatus: qe.status, tcbDate: qe.tcbDate, advisoryIds: qe.advisoryIds };
    }
    const identity = checkTdxModule(info, q.body, q.header.version).identity;
    if (identity) pc.tdxModule = { ...(pc.tdxModule as object), identity: identity.id };
    const components = { teeTcbSvn: hex(q.body.teeTcbSvn), ...teeTcbComponents(q.body.teeTcbSvn), pceSvn: run.pck!.ext.pceSvn, cpuSvn: hex(run.pck!.ext.cpuSvn), ...sgxTcbComponents(run.pck!.ext.sgxTcbComponents), qeIsvSvn: q.qeReport.isvSvn };
    claims.tcb = { components };
    const r = evaluateTdxTcb(info, run.pck!.ext, q.body, q.header.version, qe);
    claims.tcb = { status: r.status, advisoryIds: r.advisoryIds, tcbDate: r.tcbDate, components };
    pc.tdxModule = { ...(pc.tdxModule as object), ...(r.module.level ? { tcbStatus: r.module.level.status, tcbDate: r.module.level.tcbDate } : {}) };
    pc.tcbLevel = { sgx: r.sgxLevel.tcbStatus, tdx: r.tdxLevel.tcbStatus, tcbDate: r.tdxLevel.tcbDate };
    pc.tdRelaunchAdvised = r.relaunchAdvised;
    const summary = `TCB status ${r.status} (TDX level ${r.tdxLevel.tcbStatus} of ${r.tdxLevel.tcbDate}${r.module.identity ? `, module ${r.module.identity} ${r.module.level!.status}` : ''}${qe ? `, QE ${qe.status}` : ''})${r.advisoryIds.length ? `, advisories ${r.advisoryIds.join(', ')}` : ''}`;
    if (r.status === 'Revoked') throw new VerificationError('ERR_TCB_REVOKED', summary);
    if (r.status !== 'UpToDate') p.warn(`${summary}: the policy decides whether this is acceptable`);
    if (r.relaunchAdvised) p.warn('the TDX module was updated in place; relaunching the TD would bring it up to date');
    return summary;
  }

  // ---------- binding ----------

  private binding(run: Run): string {
    const rd = run.quote!.body.reportData;
    const nonce = run.input.nonce;
    if (!nonce) return 'no nonce expected: REPORTDATA reported as claims.reportData';
    if (nonce.length === 0 || nonce.length > rd.length || !equalBytes(rd.subarray(0, nonce.length), nonce) || !isAllZero(rd.subarray(nonce.length))) {
      throw new VerificationError('ERR_EVIDENCE_NONCE', `REPORTDATA does not carry the expected ${nonce.length}-byte nonce (left-aligned, zero-padded)`);
    }
    return `REPORTDATA carries the expected ${nonce.length}-byte nonce`;
  }

  // ---------- debug ----------

  private debug(p: Pipeline): string {
    if (p.claims!.debug) {
      p.warn('TD is in debug mode (TDATTRIBUTES.DEBUG): its memory and registers are visible to the host');
      return 'TD debug mode ON (TDATTRIBUTES bit 0)';
    }
    return 'TD debug mode off';
  }
}

/** A verifier with its own collateral cache. */
export function createTdxVerifier(options: TdxVerifierOptions = {}): TdxVerifier {
  return new TdxVerifier(options);
}

// ---------- helpers ----------

function commonName(c: X509Certificate): string {
  return c.subject.attributes.find((a) => a.type === 'CN')?.value ?? c.subject.text;
}

function assertValidAt(c: X509Certificate, now: Date): void {
  if (!c.isValidAt(now)) {
    throw new VerificationError('ERR_CERT_EXPIRED', `certificate "${c.subject.text}" is not valid at ${now.toISOString()} (valid ${iso(c.notBefore)} to ${iso(c.notAfter)})`, {
      detail: { subject: c.subject.text, notBefore: iso(c.notBefore), notAfter: iso(c.notAfter) },
    });
  }
}

function assertCrlCurrent(crl: X509Crl, what: string, now: Date): void {
  if (crl.thisUpdate.getTime() > now.getTime()) throw new VerificationError('ERR_CRL_INVALID', `${what} is not yet valid (thisUpdate ${iso(crl.thisUpdate)})`);
  if (crl.nextUpdate && crl.nextUpdate.getTime() < now.getTime()) {
    throw new VerificationError('ERR_CRL_STALE', `${what} is stale: nextUpdate ${iso(crl.nextUpdate)} is before ${now.toISOString()}`, { detail: { nextUpdate: iso(crl.nextUpdate) } });
  }
}

async function summarize(c: X509Certificate): Promise<CertificateSummary> {
  return { subject: c.subject.text, issuer: c.issuer.text, serial: c.serialHex, notBefore: iso(c.notBefore), notAfter: iso(c.notAfter), sha256: await c.sha256() };
}

const isoText = new WeakMap<Date, string>();

/** RFC 3339 without milliseconds; memoised because collateral and certificate dates recur on every call. */
function iso(d: Date): string {
  let s = isoText.get(d);
  if (s === undefined) {
    s = d.toISOString().replace('.000Z', 'Z');
    isoText.set(d, s);
  }
  return s;
}
