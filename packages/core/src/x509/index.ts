export { X509Certificate, KEY_USAGE, parseName, MAX_CERTIFICATE_SIZE, type Extension, type DistinguishedName } from './certificate.js';
export { X509Crl, MAX_CRL_SIZE } from './crl.js';
export { verifyCertificateChain, checkLeafUsage, parseCertificates, type ChainOptions, type ChainResult, type LeafUsage } from './chain.js';
export { parsePublicKeyInfo, parseSignatureAlgorithm, verifySignature, importVerifyKey, ecdsaDerToRaw, fieldBytesOf, type PublicKeyInfo, type SignatureAlgorithm } from './signature.js';
export { readTlv, parseDer, children, sequence, decodeOid, decodeUnsignedInteger, decodeSmallInteger, decodeBitString, decodeOctetString, decodeBoolean, decodeString, decodeTime, expectTag, isContext, encodeTlv, encodeLength, TAG, type DerNode } from './der.js';
export { OID } from './oids.js';
export { parseCertificateCached, parseCrlCached, parseCertificateBlobs, parseCrlBlob, verifyChainCached, crlSignedBy } from './cache.js';
