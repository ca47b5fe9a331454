import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { CustodyError } from '@custody/core';

/**
 * Who may append to a served log. Reads (checkpoint, tiles, proofs) are public by design; writes
 * (`POST /add`, `POST /events`) need `Authorization: Bearer <writer key>` once the log has a
 * writers list. The log keeps only each key's SHA-256, by writer name.
 *
 * Writers file: one writer a line, `NAME sha256:<64 hex>`; blank lines and `#` comments skipped.
 */
export interface Writers {
  /** The writer a request's Authorization header names; throws ERR_AUTH_REQUIRED or ERR_AUTH_INVALID. */
  check(authorization: string | undefined): string;
  readonly names: readonly string[];
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** Writer keys: `ctw_` and 43 base64url characters (32 random bytes). */
const KEY = /^ctw_[A-Za-z0-9_-]{43}$/;

export function parseWriters(text: string): Writers {
  const byDigest = new Map<string, string>();
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const m = /^(\S+)\s+sha256:([0-9a-f]{64})$/.exec(line);
    if (!m || !NAME.test(m[1]!)) throw new CustodyError('ERR_USAGE', 'writers file: each line is NAME sha256:<64 lowercase hex>', { detail: { line: i + 1 } });
    if ([...byDigest.values()].includes(m[1]!)) throw new CustodyError('ERR_USAGE', 'writers file: a writer name appears twice', { detail: { line: i + 1 } });
    if (byDigest.has(m[2]!)) throw new CustodyError('ERR_USAGE', 'writers file: two writers share one key', { detail: { line: i + 1 } });
    byDigest.set(m[2]!, m[1]!);
  });
  if (byDigest.size === 0) throw new CustodyError('ERR_USAGE', 'writers file names no writer');
  const digests = [...byDigest.entries()].map(([hex, name]) => ({ digest: Buffer.from(hex, 'hex'), name }));
  return {
    names: digests.map((d) => d.name),
    check(authorization) {
      if (authorization === undefined || authorization === '') throw new CustodyError('ERR_AUTH_REQUIRED', 'this log takes appends from its writers only (Authorization: Bearer <writer key>)');
      const m = /^bearer +(\S+)$/i.exec(authorization);
      if (!m || !KEY.test(m[1]!)) throw new CustodyError('ERR_AUTH_INVALID', 'the writer key is malformed');
      const got = createHash('sha256').update(m[1]!).digest();
      // Every digest is compared, in constant time each: the time says nothing of which matched.
      let name: string | undefined;
      for (const d of digests) if (timingSafeEqual(got, d.digest)) name = d.name;
      if (name === undefined) throw new CustodyError('ERR_AUTH_INVALID', 'the writer key is not one of this log');
      return name;
    },
  };
}

/**
 * A writer key as a service is given it (an environment variable, a secret file): surrounding
 * white space dropped, the shape checked here, so a bad value is a usage error at start rather
 * than a refused or malformed request.
 */
export function writerKeyFrom(value: string): string {
  const key = value.trim();
  if (!KEY.test(key)) throw new CustodyError('ERR_USAGE', 'the ledger writer key is malformed (expected ctw_ and 43 base64url characters, from `custody log writer-key`)');
  return key;
}

/** A new writer key and the line that admits it to a writers file. */
export function newWriterKey(name: string): { key: string; line: string } {
  if (!NAME.test(name)) throw new CustodyError('ERR_USAGE', 'a writer name is 1-64 of [A-Za-z0-9._-], starting with a letter or digit');
  const key = `ctw_${randomBytes(32).toString('base64url')}`;
  return { key, line: `${name} sha256:${createHash('sha256').update(key).digest('hex')}` };
}
