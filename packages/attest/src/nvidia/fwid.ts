import { OID, TAG, children, decodeOctetString, decodeOid, parseDer, type Bytes, type DerNode, type X509Certificate } from '@custody/core';

/** TCG DICE extension OID 2.23.133.5.4.1 (tcg-dice-TcbInfo), which NVIDIA GPU attestation certificates carry. */
export const TCG_DICE_TCB_INFO_OID = '2.23.133.5.4.1';

export interface Fwid {
  hash: 'SHA-256' | 'SHA-384' | 'SHA-512';
  digest: Bytes;
}

const HASHES: Record<string, Fwid['hash']> = { [OID.sha256]: 'SHA-256', [OID.sha384]: 'SHA-384', [OID.sha512]: 'SHA-512' };

/**
 * The FWID (`SEQUENCE { hashAlg OID, digest OCTET STRING }`, TCG DICE) inside a certificate's
 * 2.23.133.5.4.1 extension, or undefined when the extension is absent. Hopper writes
 * `SEQUENCE { INTEGER, SubjectPublicKeyInfo, FWID }`; the standard DiceTcbInfo nests FWIDs under
 * `[6]`; both are found by looking for the first FWID-shaped SEQUENCE, depth-first.
 */
export function certificateFwid(cert: X509Certificate): Fwid | undefined {
  const ext = cert.extension(TCG_DICE_TCB_INFO_OID);
  if (!ext) return undefined;
  return findFwid(parseDer(ext.value), 0);
}

function findFwid(node: DerNode, depth: number): Fwid | undefined {
  if (!node.constructed || depth > 6) return undefined;
  const kids = children(node);
  if (node.tagClass === 0 && node.tagNumber === TAG.SEQUENCE && kids.length === 2 && kids[0]!.tagNumber === TAG.OID && kids[1]!.tagNumber === TAG.OCTET_STRING) {
    const hash = HASHES[decodeOid(kids[0]!)];
    if (hash) return { hash, digest: decodeOctetString(kids[1]!) };
  }
  for (const k of kids) {
    const f = findFwid(k, depth + 1);
    if (f) return f;
  }
  return undefined;
}
