import { copyBytes, equalBytes, toHex, type Bytes } from '../bytes.js';
import { sha256 } from '../crypto.js';
import { ParseError } from '../errors.js';
import { assertMaxSize } from '../reader.js';
import { children, decodeBitString, decodeBoolean, decodeOctetString, decodeOid, decodeSmallInteger, decodeString, decodeTime, decodeUnsignedInteger, isContext, parseDer, sequence, TAG, type DerNode } from './der.js';
import { NAME_ATTRIBUTES, OID } from './oids.js';
import { parsePublicKeyInfo, parseSignatureAlgorithm, verifySignature, type PublicKeyInfo, type SignatureAlgorithm } from './signature.js';

export interface Extension {
  oid: string;
  critical: boolean;
  /** The extnValue OCTET STRING contents. */
  value: Bytes;
}

export interface DistinguishedName {
  /** Exact DER, used for issuer/subject matching. */
  raw: Bytes;
  /** RFC 4514-style string for people, e.g. `CN=SEV-Milan, O=Advanced Micro Devices`. */
  text: string;
  attributes: { type: string; value: string }[];
}

/** keyUsage bits (RFC 5280 4.2.1.3) in the numbering of `X509Certificate.keyUsage`. */
export const KEY_USAGE = {
  digitalSignature: 1 << 0,
  contentCommitment: 1 << 1, // formerly nonRepudiation
  keyEncipherment: 1 << 2,
  dataEncipherment: 1 << 3,
  keyAgreement: 1 << 4,
  keyCertSign: 1 << 5,
  cRLSign: 1 << 6,
  encipherOnly: 1 << 7,
  decipherOnly: 1 << 8,
} as const;

/** Largest certificate Custody parses. */
export const MAX_CERTIFICATE_SIZE = 64 * 1024;

/** An X.509 v3 certificate (RFC 5280), parsed once from untrusted DER. */
export class X509Certificate {
  readonly der: Bytes;
  readonly tbs: Bytes;
  readonly version: number;
  readonly serial: Bytes;
  readonly signatureAlgorithm: SignatureAlgorithm;
  readonly issuer: DistinguishedName;
  readonly subject: DistinguishedName;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly publicKey: PublicKeyInfo;
  readonly extensions: Extension[];
  readonly signature: Bytes;
  private fingerprint?: Promise<string>;

  constructor(der: Uint8Array) {
    assertMaxSize(der, MAX_CERTIFICATE_SIZE, 'certificate');
    this.der = copyBytes(der);
    try {
      const [tbsNode, sigAlgNode, sigNode] = sequence(parseDer(this.der), 'Certificate');
      const tbs = sequence(tbsNode, 'TBSCertificate');
      this.tbs = tbsNode!.raw;
      let i = 0;
      this.version = 1;
      if (isContext(tbs[0], 0)) {
        this.version = decodeSmallInteger(children(tbs[0])[0]!) + 1;
        i++;
      }
      this.serial = serialBytes(tbs[i++]!);
      const innerAlg = parseSignatureAlgorithm(tbs[i++]!);
      this.issuer = parseName(tbs[i++]!);
      const validity = sequence(tbs[i++], 'Validity');
      this.notBefore = decodeTime(validity[0]!);
      this.notAfter = decodeTime(validity[1]!);
      this.subject = parseName(tbs[i++]!);
      this.publicKey = parsePublicKeyInfo(tbs[i++]!);
      this.extensions = [];
      for (; i < tbs.length; i++) {
        if (isContext(tbs[i], 3)) this.extensions = parseExtensions(children(tbs[i]!)[0]!);
      }
      this.signatureAlgorithm = parseSignatureAlgorithm(sigAlgNode!);
      if (JSON.stringify(innerAlg) !== JSON.stringify(this.signatureAlgorithm)) {
        throw new ParseError('ERR_CERT_PARSE', 'certificate signature algorithms disagree');
      }
      this.signature = decodeBitString(sigNode!);
    } catch (e) {
      if (e instanceof ParseError && e.code === 'ERR_CERT_PARSE') throw e;
      throw new ParseError('ERR_CERT_PARSE', 'certificate could not be parsed', { cause: e, detail: { reason: e instanceof Error ? e.message : 'unknown' } });
    }
  }

  extension(oid: string): Extension | undefined {
    return this.extensions.find((e) => e.oid === oid);
  }

  /** basicConstraints cA, or undefined when the extension is absent. */
  get isCa(): boolean | undefined {
    return this.basicConstraints?.ca;
  }

  /** basicConstraints (RFC 5280 4.2.1.9), or undefined when the extension is absent. */
  get basicConstraints(): { ca: boolean; pathLen?: number } | undefined {
    const ext = this.extension(OID.basicConstraints);
    if (!ext) return undefined;
    try {
      const parts = sequence(parseDer(ext.value), 'BasicConstraints');
      let i = 0;
      const ca = parts[0] !== undefined && parts[0].tagNumber === TAG.BOOLEAN ? decodeBoolean(parts[i++]!) : false;
      const pathLen = parts[i] !== undefined ? decodeSmallInteger(parts[i]!) : undefined;
      return pathLen === undefined ? { ca } : { ca, pathLen };
    } catch (e) {
      throw new ParseError('ERR_CERT_PARSE', 'malformed basicConstraints extension', { cause: e });
    }
  }

  /**
   * keyUsage bits (RFC 5280 4.2.1.3) as a number where bit 0 is digitalSignature and bit 5
   * keyCertSign, or undefined when the extension is absent.
   */
  get keyUsage(): number | undefined {
    const ext = this.extension(OID.keyUsage);
    if (!ext) return undefined;
    try {
      const bits = decodeBitString(parseDer(ext.value));
      let v = 0;
      for (let bit = 0; bit < 16 && bit < bits.length * 8; bit++) if (bits[bit >> 3]! & (0x80 >> (bit & 7))) v |= 1 << bit;
      return v;
    } catch (e) {
      throw new ParseError('ERR_CERT_PARSE', 'malformed keyUsage extension', { cause: e });
    }
  }

  /**
   * extKeyUsage purposes (RFC 5280 4.2.1.12) as dotted OIDs, or undefined when the extension is
   * absent. The extension is a non-empty SEQUENCE OF KeyPurposeId.
   */
  get extKeyUsage(): string[] | undefined {
    const ext = this.extension(OID.extKeyUsage);
    if (!ext) return undefined;
    try {
      const purposes = sequence(parseDer(ext.value), 'ExtKeyUsageSyntax').map(decodeOid);
      if (purposes.length === 0) throw new ParseError('ERR_CERT_PARSE', 'empty extKeyUsage extension');
      return purposes;
    } catch (e) {
      throw new ParseError('ERR_CERT_PARSE', 'malformed extKeyUsage extension', { cause: e });
    }
  }

  get serialHex(): string {
    return toHex(this.serial);
  }

  isValidAt(now: Date): boolean {
    return now.getTime() >= this.notBefore.getTime() && now.getTime() <= this.notAfter.getTime();
  }

  /** SHA-256 of the DER, lowercase hex. */
  sha256(): Promise<string> {
    this.fingerprint ??= sha256(this.der).then(toHex);
    return this.fingerprint;
  }

  /** Whether `issuer`'s key produced this certificate's signature. */
  verifySignedBy(issuer: X509Certificate | PublicKeyInfo): Promise<boolean> {
    const key = issuer instanceof X509Certificate ? issuer.publicKey : issuer;
    return verifySignature(key, this.signatureAlgorithm, this.tbs, this.signature);
  }

  isSelfIssued(): boolean {
    return equalBytes(this.issuer.raw, this.subject.raw);
  }

  equals(other: X509Certificate): boolean {
    return equalBytes(this.der, other.der);
  }
}

function serialBytes(node: DerNode): Bytes {
  // Serials are positive by RFC 5280, but real certificates carry zero and negative ones (AMD VCEKs use 0).
  const v = node.value;
  if (node.tagNumber !== TAG.INTEGER || v.length === 0 || v.length > 32) throw new ParseError('ERR_CERT_PARSE', 'bad serial number');
  return v;
}

export function parseName(node: DerNode): DistinguishedName {
  const attributes: { type: string; value: string }[] = [];
  for (const rdn of sequence(node, 'Name')) {
    for (const atv of children(rdn)) {
      const [t, v] = sequence(atv, 'AttributeTypeAndValue');
      const oid = decodeOid(t!);
      let value: string;
      try {
        value = decodeString(v!);
      } catch {
        value = '#' + toHex(v!.raw);
      }
      attributes.push({ type: NAME_ATTRIBUTES[oid] ?? oid, value });
    }
  }
  return { raw: node.raw, text: attributes.map((a) => `${a.type}=${a.value}`).join(', '), attributes };
}

function parseExtensions(node: DerNode): Extension[] {
  const out: Extension[] = [];
  for (const ext of sequence(node, 'Extensions')) {
    const parts = sequence(ext, 'Extension');
    const oid = decodeOid(parts[0]!);
    let critical = false;
    let valueNode = parts[1];
    if (parts.length === 3) {
      critical = decodeBoolean(parts[1]!);
      valueNode = parts[2];
    }
    if (out.some((e) => e.oid === oid)) throw new ParseError('ERR_CERT_PARSE', `duplicate extension ${oid}`);
    out.push({ oid, critical, value: decodeOctetString(valueNode!) });
  }
  return out;
}

export { decodeUnsignedInteger };
