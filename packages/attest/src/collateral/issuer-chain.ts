import { CustodyError, parsePem, toPem, utf8, type Bytes } from '@custody/core';

/** Bound on an issuer-chain header (Intel's are two or three certificates, about 3 KiB encoded). */
export const MAX_ISSUER_CHAIN_HEADER = 64 * 1024;
const MAX_CHAIN_CERTIFICATES = 8;

/**
 * Decodes an Intel PCS / PCCS issuer-chain response header (`TCB-Info-Issuer-Chain`,
 * `SGX-Enclave-Identity-Issuer-Chain`, `SGX-PCK-CRL-Issuer-Chain`): PEM certificates, leaf
 * first, percent-encoded (RFC 3986) so the newlines fit in a header. Returns the certificates
 * re-emitted as plain PEM, the form the TDX verifier's `*IssuerChain` collateral takes. Nothing is
 * verified here; anything that is not percent-encoded PEM certificates is ERR_COLLATERAL_RESPONSE.
 */
export function decodeIssuerChainHeader(value: string, header: string): Bytes {
  const bad = (why: string, cause?: unknown): CustodyError =>
    new CustodyError('ERR_COLLATERAL_RESPONSE', `the ${header} header ${why}`, { detail: { header }, ...(cause === undefined ? {} : { cause }) });
  if (value.length > MAX_ISSUER_CHAIN_HEADER) throw bad(`is longer than ${MAX_ISSUER_CHAIN_HEADER} characters`);
  let text: string;
  try {
    // '+' is left as is: it is a base64 character, never an encoded space here.
    text = decodeURIComponent(value);
  } catch (e) {
    throw bad('is not valid percent-encoding', e);
  }
  let blocks;
  try {
    blocks = parsePem(text);
  } catch (e) {
    throw bad('holds a malformed PEM block', e);
  }
  if (blocks.length === 0) throw bad('holds no PEM certificate');
  if (blocks.length > MAX_CHAIN_CERTIFICATES) throw bad(`holds more than ${MAX_CHAIN_CERTIFICATES} certificates`);
  if (blocks.some((b) => b.label !== 'CERTIFICATE' || b.der.length === 0)) throw bad('holds a PEM block that is not a certificate');
  return utf8(blocks.map((b) => toPem('CERTIFICATE', b.der)).join(''));
}
