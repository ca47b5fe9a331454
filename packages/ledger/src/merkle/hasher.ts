import { VerificationError, type Bytes } from '@custody/core';
import { Sha256, sha256Node, sha256Sync } from './sha256.js';

/** Length of every Merkle tree hash (SHA-256). */
export const HASH_SIZE = 32;

/**
 * RFC 6962 / RFC 9162 tree hashing: leaf = H(0x00 || entry), node = H(0x01 || left || right),
 * empty tree = H(""). Pluggable so a Node service can hash bulk tiles with a native digest;
 * every implementation must give the same bytes (the tests check the default against WebCrypto).
 */
export interface TreeHasher {
  leaf(entry: Uint8Array): Bytes;
  node(left: Uint8Array, right: Uint8Array): Bytes;
  emptyRoot(): Bytes;
}

const EMPTY_ROOT = sha256Sync(new Uint8Array(0));

export const rfc6962: TreeHasher = {
  leaf(entry) {
    return new Sha256().updateByte(0x00).update(entry).digest();
  },
  node(left, right) {
    if (left.length !== HASH_SIZE || right.length !== HASH_SIZE) {
      throw new VerificationError('ERR_INPUT_MALFORMED', 'Merkle hashes are 32 bytes', { detail: { left: left.length, right: right.length } });
    }
    return sha256Node(left, right);
  },
  emptyRoot() {
    return EMPTY_ROOT.slice();
  },
};
