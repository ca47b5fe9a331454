import { copyBytes, toHex, type Bytes } from '../bytes.js';
import { ParseError, VerificationError } from '../errors.js';
import { assertMaxSize } from '../reader.js';
import { decodeBitString, decodeSmallInteger, decodeTime, isContext, parseDer, sequence, TAG } from './der.js';
import { KEY_USAGE, parseName, type DistinguishedName, type X509Certificate } from './certificate.js';
import { parseSignatureAlgorithm, verifySignature, type SignatureAlgorithm } from './signature.js';

export const MAX_CRL_SIZE = 8 * 1024 * 1024;

/** An X.509 CRL (RFC 5280 section 5), parsed from untrusted DER. */
export class X509Crl {
  readonly der: Bytes;
  readonly tbs: Bytes;
  readonly signatureAlgorithm: SignatureAlgorithm;
  readonly issuer: DistinguishedName;
  readonly thisUpdate: Date;
  readonly nextUpdate: Date | undefined;
  /** Revoked serial numbers as lowercase hex of the INTEGER contents. */
  readonly revokedSerials: Set<string>;
  readonly signature: Bytes;

  constructor(der: Uint8Array) {
    assertMaxSize(der, MAX_CRL_SIZE, 'CRL');
    this.der = copyBytes(der);
    try {
      const [tbsNode, algNode, sigNode] = sequence(parseDer(this.der), 'CertificateList');
      const tbs = sequence(tbsNode, 'TBSCertList');
      this.tbs = tbsNode!.raw;
      let i = 0;
      if (tbs[i]?.tagNumber === TAG.INTEGER && tbs[i]?.tagClass === 0) {
        decodeSmallInteger(tbs[i]!);
        i++;
      }
      parseSignatureAlgorithm(tbs[i++]!);
      this.issuer = parseName(tbs[i++]!);
      this.thisUpdate = decodeTime(tbs[i++]!);
      const maybeNext = tbs[i];
      if (maybeNext && maybeNext.tagClass === 0 && (maybeNext.tagNumber === TAG.UTC_TIME || maybeNext.tagNumber === TAG.GENERALIZED_TIME)) {
        this.nextUpdate = decodeTime(maybeNext);
        i++;
      }
      this.revokedSerials = new Set();
      if (tbs[i] && tbs[i]!.tagNumber === TAG.SEQUENCE && tbs[i]!.tagClass === 0) {
        for (const entry of sequence(tbs[i], 'revokedCertificates')) {
          const [serial] = sequence(entry, 'revokedCertificate');
          if (!serial || serial.tagNumber !== TAG.INTEGER) throw new ParseError('ERR_CRL_INVALID', 'bad revoked serial');
          this.revokedSerials.add(toHex(serial.value));
        }
        i++;
      }
      if (i < tbs.length && !isContext(tbs[i], 0)) throw new ParseError('ERR_CRL_INVALID', 'unexpected element in TBSCertList');
      this.signatureAlgorithm = parseSignatureAlgorithm(algNode!);
      this.signature = decodeBitString(sigNode!);
    } catch (e) {
      if (e instanceof ParseError && e.code === 'ERR_CRL_INVALID') throw e;
      throw new ParseError('ERR_CRL_INVALID', 'CRL could not be parsed', { cause: e, detail: { reason: e instanceof Error ? e.message : 'unknown' } });
    }
  }

  /**
   * Whether `issuer`'s key signed this CRL. An issuer whose keyUsage does not allow cRLSign may
   * not sign CRLs at all (RFC 5280 6.3.3 (f)): ERR_CRL_INVALID, whatever the signature.
   */
  verifySignedBy(issuer: X509Certificate): Promise<boolean> {
    const ku = issuer.keyUsage;
    if (ku !== undefined && (ku & KEY_USAGE.cRLSign) === 0) {
      return Promise.reject(new VerificationError('ERR_CRL_INVALID', `"${issuer.subject.text}" issued a CRL but its keyUsage lacks cRLSign`, { detail: { issuer: issuer.subject.text } }));
    }
    return verifySignature(issuer.publicKey, this.signatureAlgorithm, this.tbs, this.signature);
  }

  isRevoked(cert: X509Certificate): boolean {
    return this.revokedSerials.has(toHex(cert.serial));
  }
}
