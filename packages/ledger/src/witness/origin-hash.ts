import { toHex, utf8 } from '@custody/core';
import { sha256Sync } from '../merkle/sha256.js';

/** Lowercase hex SHA-256 of a log origin (the witness monitoring path element). */
export function originHash(origin: string): string {
  return toHex(sha256Sync(utf8(origin)));
}
