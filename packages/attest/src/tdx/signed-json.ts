import { ParseError, fromHex, type Bytes } from '@custody/core';

/**
 * Intel signs TCB Info and QE Identity over the exact bytes of the inner object as served
 * (`{"tcbInfo":{...},"signature":"hex"}`), so the verifier must sign-check that substring, not a
 * re-serialisation. This scanner finds the byte-exact text of each top-level member value.
 */

/** Spans of the top-level members of a JSON object text: key -> [start, end) of the value. */
export function topLevelMembers(text: string, what: string): Map<string, { start: number; end: number }> {
  const s = new Scanner(text, what);
  s.ws();
  s.expect('{');
  const out = new Map<string, { start: number; end: number }>();
  s.ws();
  if (s.peek() === '}') {
    s.pos++;
  } else {
    for (;;) {
      s.ws();
      const key = s.string();
      s.ws();
      s.expect(':');
      s.ws();
      const start = s.pos;
      s.value(0);
      if (out.has(key)) throw s.fail(`duplicate member "${key}"`);
      out.set(key, { start, end: s.pos });
      s.ws();
      const c = s.next();
      if (c === '}') break;
      if (c !== ',') throw s.fail('expected , or }');
    }
  }
  s.ws();
  if (s.pos !== text.length) throw s.fail('trailing characters after the JSON object');
  return out;
}

/** A signed Intel collateral body: the exact signed text and its raw r||s signature. */
export interface SignedJson {
  /** The exact text of the inner object, as signed. */
  body: string;
  /** ECDSA P-256 signature, raw r||s (64 bytes). */
  signature: Bytes;
}

/** Splits `{"<bodyKey>":{...},"signature":"hex"}` into the exact signed text and the signature. */
export function splitSignedJson(text: string, bodyKey: string, what: string): SignedJson {
  const members = topLevelMembers(text, what);
  const body = members.get(bodyKey);
  const sig = members.get('signature');
  if (!body) throw new ParseError('ERR_COLLATERAL_INVALID', `${what} has no "${bodyKey}" member`);
  if (!sig) throw new ParseError('ERR_COLLATERAL_INVALID', `${what} has no "signature" member`);
  const bodyText = text.slice(body.start, body.end);
  if (!bodyText.startsWith('{')) throw new ParseError('ERR_COLLATERAL_INVALID', `${what} "${bodyKey}" is not an object`);
  const sigValue: unknown = JSON.parse(text.slice(sig.start, sig.end));
  return { body: bodyText, signature: signatureFromHex(sigValue, what) };
}

/** A 64-byte raw ECDSA P-256 signature from its hex text. */
export function signatureFromHex(v: unknown, what: string): Bytes {
  if (typeof v !== 'string' || v.length !== 128) throw new ParseError('ERR_COLLATERAL_INVALID', `${what} signature must be 64 bytes of hex`);
  try {
    return fromHex(v);
  } catch (e) {
    throw new ParseError('ERR_COLLATERAL_INVALID', `${what} signature is not hex`, { cause: e });
  }
}

const MAX_NESTING = 64;

class Scanner {
  pos = 0;
  constructor(
    private readonly text: string,
    private readonly what: string,
  ) {}

  fail(msg: string): ParseError {
    return new ParseError('ERR_COLLATERAL_INVALID', `${this.what}: ${msg}`, { detail: { offset: this.pos } });
  }

  peek(): string {
    return this.text[this.pos] ?? '';
  }

  next(): string {
    if (this.pos >= this.text.length) throw this.fail('unexpected end of JSON');
    return this.text[this.pos++]!;
  }

  expect(c: string): void {
    if (this.next() !== c) throw this.fail(`expected ${c}`);
  }

  ws(): void {
    while (this.pos < this.text.length) {
      const c = this.text.charCodeAt(this.pos);
      if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) return;
      this.pos++;
    }
  }

  /** Reads a string token and returns its decoded value (via JSON.parse of the exact token). */
  string(): string {
    const start = this.pos;
    this.expect('"');
    for (;;) {
      const c = this.next();
      if (c === '"') break;
      if (c === '\\') this.next();
      else if (c.charCodeAt(0) < 0x20) throw this.fail('control character in string');
    }
    try {
      return JSON.parse(this.text.slice(start, this.pos)) as string;
    } catch {
      throw this.fail('bad string escape');
    }
  }

  value(depth: number): void {
    if (depth > MAX_NESTING) throw this.fail('JSON nested too deeply');
    const c = this.peek();
    if (c === '{' || c === '[') {
      const close = c === '{' ? '}' : ']';
      this.pos++;
      this.ws();
      if (this.peek() === close) {
        this.pos++;
        return;
      }
      for (;;) {
        this.ws();
        if (c === '{') {
          this.string();
          this.ws();
          this.expect(':');
          this.ws();
        }
        this.value(depth + 1);
        this.ws();
        const n = this.next();
        if (n === close) return;
        if (n !== ',') throw this.fail(`expected , or ${close}`);
      }
    }
    if (c === '"') {
      this.string();
      return;
    }
    const start = this.pos;
    while (this.pos < this.text.length && /[-+.0-9a-zA-Z]/.test(this.text[this.pos]!)) this.pos++;
    const tok = this.text.slice(start, this.pos);
    if (!/^(true|false|null|-?(0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)?)$/.test(tok)) throw this.fail('bad JSON value');
  }
}
