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
      // Built by appending, not with map and join: receipts and ledger events are canonicalised
      // several times a request, and the intermediate arrays were most of what that allocated.
      if (Array.isArray(v)) {
        let out = '[';
        for (let i = 0; i < v.length; i++) {
          const x: unknown = v[i];
          if (i > 0) out += ',';
          out += serialize(x === undefined ? null : x, depth + 1);
        }
        return out + ']';
      }
      // Maps, Sets and typed arrays would serialise as {} or index maps, making different values
      // share a digest: only plain objects are JSON objects here.
      const proto = Object.getPrototypeOf(v) as unknown;
      if (proto !== Object.prototype && proto !== null) {
        throw new CustodyError('ERR_INPUT_MALFORMED', `a ${(v).constructor?.name ?? 'non-plain object'} cannot be canonicalized`);
      }
      const obj = v as Record<string, unknown>;
      const keys = sortedKeys(obj);
      let out = '{';
      let first = true;
      for (let i = 0; i < keys.length; i++) {
        const k = keys[i]!;
        const x = obj[k];
        if (x === undefined) continue;
        if (!first) out += ',';
        first = false;
        out += JSON.stringify(k) + ':' + serialize(x, depth + 1);
      }
      return out + '}';
    }
    default:
      throw new CustodyError('ERR_INPUT_MALFORMED', `a ${typeof v} cannot be canonicalized`);
  }
}

/** Objects with at most this many keys are sorted in place by insertion (no allocation); larger ones by Array#sort. */
const INSERTION_SORT_MAX = 24;

/** An object's own enumerable keys in RFC 8785 order (by UTF-16 code units); undefined members are the caller's to skip. */
function sortedKeys(obj: Record<string, unknown>): string[] {
  const keys = Object.keys(obj);
  if (keys.length > INSERTION_SORT_MAX) return keys.sort(compareUtf16);
  for (let i = 1; i < keys.length; i++) {
    const k = keys[i]!;
    let j = i - 1;
    // `<` and `>` on strings compare UTF-16 code units, as RFC 8785 requires.
    while (j >= 0 && keys[j]! > k) {
      keys[j + 1] = keys[j]!;
      j--;
    }
    keys[j + 1] = k;
  }
  return keys;
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
  const out: (readonly [string, string])[] = [];
  for (const k of sortedKeys(value)) if (value[k] !== undefined) out.push([k, JSON.stringify(k) + ':' + serialize(value[k], 1)]);
  return out;
}

/**
 * The canonical form of the object the members came from, with `extra` members added (already
 * canonical texts) and the keys in `omit` left out: equal to `canonicalize` of that object.
 */
export function canonicalFromMembers(members: CanonicalMembers, options: { omit?: readonly string[]; extra?: Record<string, string> } = {}): string {
  const omit = options.omit ?? [];
  const extra = options.extra;
  const added = extra ? sortedKeys(extra) : [];
  // One merge of two sorted lists: the members (less those omitted or replaced) and the extras.
  let out = '{';
  let first = true;
  const put = (text: string): void => {
    if (!first) out += ',';
    first = false;
    out += text;
  };
  const putExtra = (k: string): void => put(JSON.stringify(k) + ':' + extra![k]!);
  let j = 0;
  for (const [k, text] of members) {
    while (j < added.length && added[j]! < k) putExtra(added[j++]!);
    if (omit.includes(k) || added[j] === k) continue;
    put(text);
  }
  while (j < added.length) putExtra(added[j++]!);
  return out + '}';
}

/**
 * The first member name repeated within one object of `text` (valid JSON), as JSON.parse reads
 * names (escapes resolved), or undefined. JSON.parse keeps the last of repeated members, so a
 * reader that takes the first would see another document than the one checked.
 */
export function duplicateJsonMember(text: string): string | undefined {
  // One set of names per open object; null for an open array.
  const open: Array<Set<string> | null> = [];
  let nameNext = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      let end = i + 1;
      while (text.charCodeAt(end) !== 0x22) end += text.charCodeAt(end) === 0x5c ? 2 : 1;
      const names = open[open.length - 1];
      if (nameNext && names) {
        const name = JSON.parse(text.slice(i, end + 1)) as string;
        if (names.has(name)) return name;
        names.add(name);
        nameNext = false;
      }
      i = end;
    } else if (c === 0x7b) {
      open.push(new Set());
      nameNext = true;
    } else if (c === 0x5b) {
      open.push(null);
      nameNext = false;
    } else if (c === 0x7d || c === 0x5d) {
      open.pop();
      nameNext = false;
    } else if (c === 0x2c) {
      nameNext = open[open.length - 1] != null;
    }
  }
  return undefined;
}

/** JSON.parse that refuses an object with a repeated member (ERR_INPUT_MALFORMED, naming it); a syntax error throws as JSON.parse does. */
export function parseJsonUnique(text: string): unknown {
  const value = JSON.parse(text) as unknown;
  const repeated = duplicateJsonMember(text);
  if (repeated !== undefined) throw new CustodyError('ERR_INPUT_MALFORMED', `the JSON repeats the member ${JSON.stringify(repeated.slice(0, 64))} in one object`, { detail: { member: repeated.slice(0, 64) } });
  return value;
}
