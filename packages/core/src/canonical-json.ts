import { CustodyError } from './errors.js';
import { utf8, type Bytes } from './bytes.js';

/**
 * JSON Canonicalization Scheme (RFC 8785): sorted keys (by UTF-16 code units), no whitespace,
 * ECMAScript number serialisation, minimal string escaping. Used for every signed or logged
 * Custody object so that a digest means the same thing everywhere.
 */
export function canonicalize(value: unknown): string {
  return serialize(value, 0);
}

export function canonicalBytes(value: unknown): Bytes {
  return utf8(canonicalize(value));
}

const MAX_DEPTH = 64;

function serialize(v: unknown, depth: number): string {
  if (depth > MAX_DEPTH) throw new CustodyError('ERR_INPUT_MALFORMED', 'value nests too deeply to canonicalize');
  if (v === null) return 'null';
  switch (typeof v) {
    case 'boolean':
      return v ? 'true' : 'false';
    case 'number':
      if (!Number.isFinite(v)) throw new CustodyError('ERR_INPUT_MALFORMED', 'non-finite number cannot be canonicalized');
      // ECMAScript Number.prototype.toString is exactly the RFC 8785 number form; -0 becomes 0.
      return Object.is(v, -0) ? '0' : String(v);
    case 'string':
      return JSON.stringify(v);
    case 'object': {
      if (typeof (v as { toJSON?: unknown }).toJSON === 'function') {
        return serialize((v as { toJSON: () => unknown }).toJSON(), depth + 1);
      }
      if (Array.isArray(v)) return '[' + v.map((x) => serialize(x === undefined ? null : x, depth + 1)).join(',') + ']';
      // Maps, Sets and typed arrays would serialise as {} or index maps, making different values
      // share a digest: only plain objects are JSON objects here.
      const proto = Object.getPrototypeOf(v) as unknown;
      if (proto !== Object.prototype && proto !== null) {
        throw new CustodyError('ERR_INPUT_MALFORMED', `a ${(v).constructor?.name ?? 'non-plain object'} cannot be canonicalized`);
      }
      const obj = v as Record<string, unknown>;
      const keys = Object.keys(obj)
        .filter((k) => obj[k] !== undefined)
        .sort(compareUtf16);
      return '{' + keys.map((k) => JSON.stringify(k) + ':' + serialize(obj[k], depth + 1)).join(',') + '}';
    }
    default:
      throw new CustodyError('ERR_INPUT_MALFORMED', `a ${typeof v} cannot be canonicalized`);
  }
}

function compareUtf16(a: string, b: string): number {
  // Default string comparison in JS compares UTF-16 code units, which RFC 8785 requires.
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The RFC 8785 texts of a plain object's members, sorted by key: canonicalise once, assemble many. */
export type CanonicalMembers = readonly (readonly [key: string, text: string])[];

export function canonicalMembers(value: Record<string, unknown>): CanonicalMembers {
  const proto = Object.getPrototypeOf(value) as unknown;
  if (typeof value !== 'object' || value === null || Array.isArray(value) || (proto !== Object.prototype && proto !== null)) {
    throw new CustodyError('ERR_INPUT_MALFORMED', 'only a plain object has canonical members');
  }
  return Object.keys(value)
    .filter((k) => value[k] !== undefined)
    .sort(compareUtf16)
    .map((k) => [k, JSON.stringify(k) + ':' + serialize(value[k], 1)] as const);
}

/**
 * The canonical form of the object the members came from, with `extra` members added (already
 * canonical texts) and the keys in `omit` left out: equal to `canonicalize` of that object.
 */
export function canonicalFromMembers(members: CanonicalMembers, options: { omit?: readonly string[]; extra?: Record<string, string> } = {}): string {
  const omit = options.omit ?? [];
  let all = members.filter(([k]) => !omit.includes(k));
  const extra = options.extra ? Object.keys(options.extra) : [];
  if (extra.length > 0) {
    all = [...all.filter(([k]) => !extra.includes(k)), ...extra.map((k) => [k, JSON.stringify(k) + ':' + options.extra![k]!] as const)].sort((a, b) => compareUtf16(a[0], b[0]));
  }
  return '{' + all.map(([, text]) => text).join(',') + '}';
}
