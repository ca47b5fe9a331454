import { ParseError, TAG, decodeSmallInteger, decodeString, parseDer, readTlv, type Bytes, type X509Certificate } from '@custody/core';
import { SEV_SNP_PRODUCTS, type SevSnpProduct } from './report.js';

/**
 * AMD's X.509 extensions on VCEK and VLEK certificates ("Versioned Chip Endorsement Key (VCEK)
 * Certificate and KDS Interface Specification", 57230): the TCB the key was derived for, the
 * chip's hardware ID (VCEK) or the cloud provider's ID (VLEK).
 */
export const AMD_OID = {
  structVersion: '1.3.6.1.4.1.3704.1.1',
  productName: '1.3.6.1.4.1.3704.1.2',
  blSpl: '1.3.6.1.4.1.3704.1.3.1',
  teeSpl: '1.3.6.1.4.1.3704.1.3.2',
  snpSpl: '1.3.6.1.4.1.3704.1.3.3',
  ucodeSpl: '1.3.6.1.4.1.3704.1.3.8',
  /** Turin (family 1Ah) only. */
  fmcSpl: '1.3.6.1.4.1.3704.1.3.9',
  hwid: '1.3.6.1.4.1.3704.1.4',
  cspId: '1.3.6.1.4.1.3704.1.5',
} as const;

export interface AmdKeyExtensions {
  structVersion?: number;
  /** e.g. `Milan-B0`, `Genoa`, `Turin-B0`. */
  productName?: string;
  tcb: { bootloader?: number; tee?: number; snp?: number; microcode?: number; fmc?: number };
  /** VCEK: the chip's hardware ID (64 bytes; 8 on Turin). */
  hwid?: Bytes;
  /** VLEK: the cloud service provider the key was issued to. */
  cspId?: string;
}

function certError(what: string, cause?: unknown): ParseError {
  return new ParseError('ERR_CERT_PARSE', `AMD certificate extension ${what} is malformed`, { cause, detail: { extension: what } });
}

/** An extension value holding a DER INTEGER 0..255 (an SPL). */
function readSpl(value: Bytes, what: string): number {
  let n: number;
  try {
    n = decodeSmallInteger(parseDer(value));
  } catch (e) {
    throw certError(what, e);
  }
  if (n < 0 || n > 255) throw certError(what);
  return n;
}

function readIa5(value: Bytes, what: string): string {
  try {
    const node = parseDer(value);
    if (node.tagNumber !== TAG.IA5_STRING || node.tagClass !== 0) throw certError(what);
    return decodeString(node);
  } catch (e) {
    throw e instanceof ParseError && e.code === 'ERR_CERT_PARSE' ? e : certError(what, e);
  }
}

/** The hwID value is the bare 64 (Turin: 8) bytes in KDS certificates, or an OCTET STRING around them. */
function readHwid(value: Bytes): Bytes {
  if (value.length === 64 || value.length === 8) return value;
  try {
    const { node, next } = readTlv(value, 0);
    if (next === value.length && node.tagClass === 0 && node.tagNumber === TAG.OCTET_STRING && (node.value.length === 64 || node.value.length === 8)) return node.value;
  } catch (e) {
    throw certError('hwID', e);
  }
  throw certError('hwID');
}

const cache = new WeakMap<X509Certificate, AmdKeyExtensions>();

/** Reads (once per certificate object) the AMD extensions of a VCEK or VLEK. */
export function readAmdKeyExtensions(cert: X509Certificate): AmdKeyExtensions {
  const hit = cache.get(cert);
  if (hit) return hit;
  const out: AmdKeyExtensions = { tcb: {} };
  for (const ext of cert.extensions) {
    switch (ext.oid) {
      case AMD_OID.structVersion:
        out.structVersion = readSpl(ext.value, 'structVersion');
        break;
      case AMD_OID.productName:
        out.productName = readIa5(ext.value, 'productName');
        break;
      case AMD_OID.blSpl:
        out.tcb.bootloader = readSpl(ext.value, 'blSPL');
        break;
      case AMD_OID.teeSpl:
        out.tcb.tee = readSpl(ext.value, 'teeSPL');
        break;
      case AMD_OID.snpSpl:
        out.tcb.snp = readSpl(ext.value, 'snpSPL');
        break;
      case AMD_OID.ucodeSpl:
        out.tcb.microcode = readSpl(ext.value, 'ucodeSPL');
        break;
      case AMD_OID.fmcSpl:
        out.tcb.fmc = readSpl(ext.value, 'fmcSPL');
        break;
      case AMD_OID.hwid:
        out.hwid = readHwid(ext.value);
        break;
      case AMD_OID.cspId:
        out.cspId = readIa5(ext.value, 'cspID');
        break;
    }
  }
  cache.set(cert, out);
  return out;
}

export function commonName(cert: X509Certificate, which: 'subject' | 'issuer' = 'subject'): string | undefined {
  return cert[which].attributes.find((a) => a.type === 'CN')?.value;
}

/** AMD CA names: `ARK-Milan`, `SEV-Milan` (ASK), `SEV-VLEK-Milan` (ASVK). */
const CA_NAME = /^(ARK|SEV|SEV-VLEK)-([A-Za-z]+)$/;

/** The role and product an AMD CA certificate's common name declares. */
export function amdCaName(cn: string | undefined): { role: 'ARK' | 'ASK' | 'ASVK'; product: string } | undefined {
  const m = cn === undefined ? null : CA_NAME.exec(cn);
  if (!m || m[2] === 'VCEK' || m[2] === 'VLEK') return undefined;
  return { role: m[1] === 'ARK' ? 'ARK' : m[1] === 'SEV' ? 'ASK' : 'ASVK', product: m[2]! };
}

export function asProduct(name: string | undefined): SevSnpProduct | undefined {
  return SEV_SNP_PRODUCTS.find((p) => p === name);
}

/** The kind of AMD signing key a certificate holds, from its subject or its extensions. */
export function amdKeyKind(cert: X509Certificate): 'VCEK' | 'VLEK' | undefined {
  const cn = commonName(cert);
  if (cn === 'SEV-VCEK') return 'VCEK';
  if (cn === 'SEV-VLEK') return 'VLEK';
  if (cert.isCa === true || cert.publicKey.algorithm !== 'ec') return undefined;
  const ids = new Set(cert.extensions.map((e) => e.oid));
  if (ids.has(AMD_OID.hwid)) return 'VCEK';
  if (ids.has(AMD_OID.cspId)) return 'VLEK';
  return undefined;
}

/**
 * The product a VCEK or VLEK belongs to: from its issuer (`SEV-Milan`, `SEV-VLEK-Genoa`), else
 * from its product-name extension (`Milan-B0`). Returns the raw name when it is not one Custody
 * has roots for (e.g. a future product), so the caller can say which.
 */
export function leafProductName(cert: X509Certificate): string | undefined {
  const issuer = amdCaName(commonName(cert, 'issuer'));
  if (issuer) return issuer.product;
  const pn = readAmdKeyExtensions(cert).productName;
  return pn ? pn.split('-')[0] : undefined;
}
