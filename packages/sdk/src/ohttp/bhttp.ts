/**
 * Binary HTTP messages (RFC 9292): known-length and indeterminate-length requests and
 * responses, with informational responses, trailers, truncation and padding.
 *
 * One parser serves whole buffers and streams: it is a generator that asks its driver for
 * bytes, so `decodeBhttpRequest` runs it over a ByteReader and `decodeBhttpResponseStream`
 * over a ReadableStream, streaming content as it arrives.
 *
 * Field names and values are strings of bytes 0x00-0xFF (latin1), as fetch's Headers uses.
 * Messages that would be malformed in HTTP/2 (RFC 9113 section 8.1.1 and 8.2) are invalid:
 * ERR_INPUT_MALFORMED.
 */
import { ByteReader, concatBytes, ParseError, type Bytes } from '@custody/core';
import { StreamBuffer } from './stream-buffer.js';
import { decodeVarintBytes, readVarint as readVarintFrom, varintLength, varintSize, writeVarint } from './varint.js';

export type HttpField = readonly [name: string, value: string];
export type BhttpFraming = 'known-length' | 'indeterminate';

export interface BhttpRequestInit {
  readonly method: string;
  readonly scheme: string;
  /** Empty when the request has no authority. */
  readonly authority?: string;
  readonly path: string;
  readonly headers?: readonly HttpField[];
  readonly content?: Uint8Array;
  readonly trailers?: readonly HttpField[];
}

export interface BhttpRequestHead {
  readonly framing: BhttpFraming;
  readonly method: string;
  readonly scheme: string;
  readonly authority: string;
  readonly path: string;
  readonly headers: readonly HttpField[];
}

export interface BhttpRequest extends BhttpRequestHead {
  readonly content: Bytes;
  readonly trailers: readonly HttpField[];
}

export interface BhttpInformational {
  readonly status: number;
  readonly headers: readonly HttpField[];
}

export interface BhttpResponseInit {
  readonly status: number;
  readonly headers?: readonly HttpField[];
  readonly content?: Uint8Array;
  readonly trailers?: readonly HttpField[];
  readonly informational?: readonly BhttpInformational[];
}

export interface BhttpResponseHead {
  readonly framing: BhttpFraming;
  readonly informational: readonly BhttpInformational[];
  readonly status: number;
  readonly headers: readonly HttpField[];
}

export interface BhttpResponse extends BhttpResponseHead {
  readonly content: Bytes;
  readonly trailers: readonly HttpField[];
}

export interface BhttpEncodeOptions {
  /** Default 'known-length'. */
  readonly framing?: BhttpFraming;
  /** Omit empty trailing sections (RFC 9292 section 3.8). Default true. */
  readonly truncate?: boolean;
  /** Zero bytes appended to hide the length. Default 0. */
  readonly padding?: number;
}

export interface BhttpLimits {
  /** Bytes of one field section (names, values and their lengths). Default 64 KiB. */
  readonly maxFieldSectionSize?: number;
  /** Field lines in one section. Default 1024. */
  readonly maxFields?: number;
  /** Informational (1xx) responses before the final one. Default 16. */
  readonly maxInformational?: number;
}

const DEFAULT_LIMITS: Required<BhttpLimits> = { maxFieldSectionSize: 64 * 1024, maxFields: 1024, maxInformational: 16 };

const FRAMING = { knownRequest: 0, knownResponse: 1, indeterminateRequest: 2, indeterminateResponse: 3 } as const;

// ---------------------------------------------------------------- validation

const TCHAR = (() => {
  const t = new Uint8Array(256);
  for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") t[c.charCodeAt(0)] = 1;
  return t;
})();

const CONNECTION_SPECIFIC = new Set(['connection', 'proxy-connection', 'keep-alive', 'transfer-encoding', 'upgrade']);

function malformed(what: string, detail?: Record<string, string | number | boolean>): ParseError {
  return new ParseError('ERR_INPUT_MALFORMED', `binary HTTP: ${what}`, detail ? { detail } : {});
}

function checkFieldName(b: Uint8Array): void {
  if (b.length === 0) throw malformed('empty field name');
  for (let i = 0; i < b.length; i++) {
    const c = b[i]!;
    // lowercase tokens only (RFC 9113 section 8.2.1)
    if (!TCHAR[c] || (c >= 0x41 && c <= 0x5a)) throw malformed('invalid field name byte', { offset: i });
  }
}

function checkFieldValue(b: Uint8Array): void {
  for (let i = 0; i < b.length; i++) {
    const c = b[i]!;
    if (c === 0x00 || c === 0x0a || c === 0x0d) throw malformed('invalid field value byte', { offset: i });
  }
  if (b.length > 0) {
    const f = b[0]!, l = b[b.length - 1]!;
    if (f === 0x20 || f === 0x09 || l === 0x20 || l === 0x09) throw malformed('field value has surrounding whitespace');
  }
}

function checkField(name: string, value: string): void {
  if (CONNECTION_SPECIFIC.has(name)) throw malformed('connection-specific field', { name });
  if (name === 'te' && value !== 'trailers') throw malformed('te other than "trailers"');
}

function checkToken(b: Uint8Array, what: string): void {
  if (b.length === 0) throw malformed(`empty ${what}`);
  for (let i = 0; i < b.length; i++) if (!TCHAR[b[i]!]) throw malformed(`invalid ${what} byte`, { offset: i });
}

function checkVisible(b: Uint8Array, what: string): void {
  for (let i = 0; i < b.length; i++) {
    const c = b[i]!;
    if (c < 0x21 || c > 0x7e) throw malformed(`invalid ${what} byte`, { offset: i });
  }
}

const asciiDecoder = new TextDecoder('utf-8');

/** Bytes as ISO-8859-1 text: ASCII (the usual case) through TextDecoder, else byte by byte. */
function latin1(b: Uint8Array): string {
  let ascii = true;
  for (let i = 0; i < b.length; i++) {
    if (b[i]! > 0x7f) {
      ascii = false;
      break;
    }
  }
  if (ascii) return asciiDecoder.decode(b);
  let s = '';
  for (let i = 0; i < b.length; i += 4096) s += String.fromCharCode(...b.subarray(i, i + 4096));
  return s;
}

function fromLatin1(s: string, what: string): Bytes {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0xff) throw malformed(`${what} has a character outside 0x00-0xFF`, { offset: i });
    out[i] = c;
  }
  return out;
}

function checkContentLength(fields: readonly HttpField[], length: number, isResponse: boolean): void {
  for (const [n, v] of fields) {
    if (n !== 'content-length') continue;
    // A response to HEAD or a 304 carries the length of content it does not include.
    if (isResponse && length === 0) continue;
    if (!/^[0-9]{1,15}$/.test(v) || Number(v) !== length) throw malformed('content-length does not match the content', { contentLength: v.slice(0, 20), length });
  }
}

// ---------------------------------------------------------------- encoding

class Writer {
  private parts: Uint8Array[] = [];
  varint(v: number): this {
    const b = new Uint8Array(varintSize(v));
    writeVarint(b, 0, v);
    this.parts.push(b);
    return this;
  }
  bytes(b: Uint8Array): this {
    this.parts.push(b);
    return this;
  }
  lenBytes(b: Uint8Array): this {
    return this.varint(b.length).bytes(b);
  }
  finish(): Bytes {
    return concatBytes(...this.parts);
  }
}

function encodeFields(fields: readonly HttpField[]): Bytes {
  const w = new Writer();
  for (const [name, value] of fields) {
    const n = fromLatin1(name, 'field name');
    const v = fromLatin1(value, 'field value');
    checkFieldName(n);
    checkFieldValue(v);
    checkField(name, value);
    w.lenBytes(n).lenBytes(v);
  }
  return w.finish();
}

function writeFieldSection(w: Writer, fields: readonly HttpField[], indeterminate: boolean): void {
  const body = encodeFields(fields);
  if (indeterminate) w.bytes(body).varint(0);
  else w.lenBytes(body);
}

function writeContent(w: Writer, content: Uint8Array, indeterminate: boolean): void {
  if (!indeterminate) w.lenBytes(content);
  else {
    if (content.length > 0) w.lenBytes(content);
    w.varint(0);
  }
}

/** Header, content and trailers with truncation of empty trailing parts. */
function writeSections(w: Writer, headers: readonly HttpField[], content: Uint8Array, trailers: readonly HttpField[], indeterminate: boolean, truncate: boolean): void {
  const keepTrailers = !truncate || trailers.length > 0;
  const keepContent = keepTrailers || content.length > 0;
  const keepHeaders = keepContent || headers.length > 0;
  if (keepHeaders) writeFieldSection(w, headers, indeterminate);
  if (keepContent) writeContent(w, content, indeterminate);
  if (keepTrailers) writeFieldSection(w, trailers, indeterminate);
}

function writeRequestControl(w: Writer, init: BhttpRequestInit): void {
  const method = fromLatin1(init.method, 'method');
  const scheme = fromLatin1(init.scheme, 'scheme');
  const authority = fromLatin1(init.authority ?? '', 'authority');
  const path = fromLatin1(init.path, 'path');
  checkToken(method, 'method');
  checkVisible(scheme, 'scheme');
  checkVisible(authority, 'authority');
  checkVisible(path, 'path');
  w.lenBytes(method).lenBytes(scheme).lenBytes(authority).lenBytes(path);
}

function checkStatus(status: number, informational: boolean): void {
  const ok = Number.isInteger(status) && (informational ? status >= 100 && status <= 199 : status >= 200 && status <= 599);
  if (!ok) throw malformed(informational ? 'informational status must be 100-199' : 'final status must be 200-599', { status });
}

function pad(w: Writer, n = 0): void {
  if (n > 0) w.bytes(new Uint8Array(n));
}

export function encodeBhttpRequest(init: BhttpRequestInit, options: BhttpEncodeOptions = {}): Bytes {
  const indeterminate = options.framing === 'indeterminate';
  const w = new Writer().varint(indeterminate ? FRAMING.indeterminateRequest : FRAMING.knownRequest);
  writeRequestControl(w, init);
  const content = init.content ?? new Uint8Array(0);
  checkContentLength(init.headers ?? [], content.length, false);
  writeSections(w, init.headers ?? [], content, init.trailers ?? [], indeterminate, options.truncate ?? true);
  pad(w, options.padding);
  return w.finish();
}

function writeInformational(w: Writer, informational: readonly BhttpInformational[], indeterminate: boolean): void {
  for (const info of informational) {
    checkStatus(info.status, true);
    w.varint(info.status);
    writeFieldSection(w, info.headers, indeterminate);
  }
}

export function encodeBhttpResponse(init: BhttpResponseInit, options: BhttpEncodeOptions = {}): Bytes {
  const indeterminate = options.framing === 'indeterminate';
  const w = new Writer().varint(indeterminate ? FRAMING.indeterminateResponse : FRAMING.knownResponse);
  writeInformational(w, init.informational ?? [], indeterminate);
  checkStatus(init.status, false);
  w.varint(init.status);
  const content = init.content ?? new Uint8Array(0);
  checkContentLength(init.headers ?? [], content.length, true);
  writeSections(w, init.headers ?? [], content, init.trailers ?? [], indeterminate, options.truncate ?? true);
  pad(w, options.padding);
  return w.finish();
}

/**
 * Incremental encoding of an indeterminate-length message for streaming: the head first, then
 * any number of content chunks, then the end (content terminator and trailer section).
 */
export function encodeBhttpRequestHead(init: Omit<BhttpRequestInit, 'content' | 'trailers'>): Bytes {
  const w = new Writer().varint(FRAMING.indeterminateRequest);
  writeRequestControl(w, init);
  writeFieldSection(w, init.headers ?? [], true);
  return w.finish();
}

export function encodeBhttpResponseHead(init: Omit<BhttpResponseInit, 'content' | 'trailers'>): Bytes {
  const w = new Writer().varint(FRAMING.indeterminateResponse);
  writeInformational(w, init.informational ?? [], true);
  checkStatus(init.status, false);
  w.varint(init.status);
  writeFieldSection(w, init.headers ?? [], true);
  return w.finish();
}

/** One content chunk of an indeterminate-length message (empty data encodes to nothing). */
export function encodeBhttpContentChunk(data: Uint8Array): Bytes {
  if (data.length === 0) return new Uint8Array(0);
  return new Writer().lenBytes(data).finish();
}

/** Content terminator and trailer section that end an indeterminate-length message. */
export function encodeBhttpEnd(trailers: readonly HttpField[] = []): Bytes {
  const w = new Writer().varint(0);
  writeFieldSection(w, trailers, true);
  return w.finish();
}

// ---------------------------------------------------------------- parsing

type Step =
  | { readonly t: 'read'; readonly n: number } // exactly n bytes -> Bytes
  | { readonly t: 'more' } // is there at least one more byte? -> boolean
  | { readonly t: 'content'; readonly n: number } // n bytes of content, consumed by the driver
  | { readonly t: 'head'; readonly head: ParsedHead } // the head is complete
  | { readonly t: 'padding' }; // every remaining byte must be zero

interface ParsedHead {
  readonly framing: BhttpFraming;
  readonly request?: { method: string; scheme: string; authority: string; path: string };
  readonly informational: BhttpInformational[];
  readonly status: number;
  readonly headers: HttpField[];
}

type Parser = Generator<Step, HttpField[], unknown>;

function* readBytes(n: number): Generator<Step, Bytes, unknown> {
  return (yield { t: 'read', n }) as Bytes;
}

function* readVarint(): Generator<Step, number, unknown> {
  const first = yield* readBytes(1);
  const n = varintLength(first[0]!);
  if (n === 1) return first[0]! & 0x3f;
  const rest = yield* readBytes(n - 1);
  return decodeVarintBytes(concatBytes(first, rest));
}

function* readLenBytes(max: number, what: string): Generator<Step, Bytes, unknown> {
  const n = yield* readVarint();
  if (n > max) throw new ParseError('ERR_INPUT_TOO_LARGE', `binary HTTP ${what} too long`, { detail: { length: n, max } });
  return yield* readBytes(n);
}

function parseFieldLines(body: Uint8Array, limits: Required<BhttpLimits>): HttpField[] {
  const r = new ByteReader(body, 'binary HTTP field section');
  const out: HttpField[] = [];
  while (r.remaining > 0) {
    if (out.length >= limits.maxFields) throw new ParseError('ERR_INPUT_TOO_LARGE', 'too many field lines', { detail: { max: limits.maxFields } });
    const n = r.bytesView(readVarintFrom(r));
    const v = r.bytesView(readVarintFrom(r));
    out.push(makeField(n, v));
  }
  return out;
}

function makeField(n: Uint8Array, v: Uint8Array): HttpField {
  checkFieldName(n);
  checkFieldValue(v);
  const name = latin1(n);
  const value = latin1(v);
  checkField(name, value);
  return [name, value];
}

function* readFieldSection(indeterminate: boolean, limits: Required<BhttpLimits>): Generator<Step, HttpField[], unknown> {
  if (!indeterminate) return parseFieldLines(yield* readLenBytes(limits.maxFieldSectionSize, 'field section'), limits);
  const out: HttpField[] = [];
  let size = 0;
  for (;;) {
    const nameLen = yield* readVarint();
    if (nameLen === 0) return out;
    if (out.length >= limits.maxFields) throw new ParseError('ERR_INPUT_TOO_LARGE', 'too many field lines', { detail: { max: limits.maxFields } });
    const left = limits.maxFieldSectionSize - size;
    if (nameLen > left) throw new ParseError('ERR_INPUT_TOO_LARGE', 'binary HTTP field section too long', { detail: { max: limits.maxFieldSectionSize } });
    const name = yield* readBytes(nameLen);
    const value = yield* readLenBytes(left - nameLen, 'field section');
    size += nameLen + value.length + 2;
    out.push(makeField(name, value));
  }
}

function* parseMessage(kind: 'request' | 'response', limits: Required<BhttpLimits>): Parser {
  const framingId = yield* readVarint();
  const expected = kind === 'request' ? [FRAMING.knownRequest, FRAMING.indeterminateRequest] : [FRAMING.knownResponse, FRAMING.indeterminateResponse];
  if (framingId !== expected[0] && framingId !== expected[1]) {
    throw malformed(framingId <= 3 ? `expected a ${kind}` : 'unknown framing indicator', { framing: framingId });
  }
  const indeterminate = framingId >= 2;
  const informational: BhttpInformational[] = [];
  let request: ParsedHead['request'];
  let status = 0;
  if (kind === 'request') {
    const method = yield* readLenBytes(limits.maxFieldSectionSize, 'method');
    const scheme = yield* readLenBytes(limits.maxFieldSectionSize, 'scheme');
    const authority = yield* readLenBytes(limits.maxFieldSectionSize, 'authority');
    const path = yield* readLenBytes(limits.maxFieldSectionSize, 'path');
    checkToken(method, 'method');
    checkVisible(scheme, 'scheme');
    checkVisible(authority, 'authority');
    checkVisible(path, 'path');
    request = { method: latin1(method), scheme: latin1(scheme), authority: latin1(authority), path: latin1(path) };
  } else {
    for (;;) {
      status = yield* readVarint();
      if (status >= 100 && status <= 199) {
        if (informational.length >= limits.maxInformational) throw new ParseError('ERR_INPUT_TOO_LARGE', 'too many informational responses');
        informational.push({ status, headers: yield* readFieldSection(indeterminate, limits) });
        continue;
      }
      checkStatus(status, false);
      break;
    }
  }
  // Truncation is allowed after the control data and after each complete section.
  const headers = (yield { t: 'more' }) ? yield* readFieldSection(indeterminate, limits) : [];
  yield { t: 'head', head: { framing: indeterminate ? 'indeterminate' : 'known-length', ...(request ? { request } : {}), informational, status, headers } };
  if (!((yield { t: 'more' }) as boolean)) return [];
  if (!indeterminate) {
    yield { t: 'content', n: yield* readVarint() };
  } else {
    for (;;) {
      const n = yield* readVarint();
      if (n === 0) break;
      yield { t: 'content', n };
    }
  }
  if (!((yield { t: 'more' }) as boolean)) return [];
  const trailers = yield* readFieldSection(indeterminate, limits);
  yield { t: 'padding' };
  return trailers;
}

function limitsOf(l: BhttpLimits | undefined): Required<BhttpLimits> {
  return { ...DEFAULT_LIMITS, ...l };
}

/** Runs the parser over a whole buffer. */
function runSync(kind: 'request' | 'response', bytes: Uint8Array, limits: BhttpLimits | undefined): { head: ParsedHead; content: Bytes; trailers: HttpField[] } {
  const r = new ByteReader(bytes, 'binary HTTP message');
  const gen = parseMessage(kind, limitsOf(limits));
  const content: Uint8Array[] = [];
  let head: ParsedHead | undefined;
  let input: unknown;
  for (;;) {
    const it = gen.next(input);
    if (it.done) {
      if (!head) throw new ParseError('ERR_INPUT_TRUNCATED', 'binary HTTP message ended early');
      const c = concatBytes(...content);
      checkContentLength(head.headers, c.length, kind === 'response');
      return { head, content: c, trailers: it.value };
    }
    const step = it.value;
    input = undefined;
    switch (step.t) {
      case 'read':
        input = r.bytesView(step.n);
        break;
      case 'more':
        input = r.remaining > 0;
        break;
      case 'content':
        content.push(r.bytesView(step.n));
        break;
      case 'head':
        head = step.head;
        break;
      case 'padding':
        for (const b of r.bytesView(r.remaining)) if (b !== 0) throw malformed('non-zero padding');
        break;
    }
  }
}

export function decodeBhttpRequest(bytes: Uint8Array, limits?: BhttpLimits): BhttpRequest {
  const { head, content, trailers } = runSync('request', bytes, limits);
  return { framing: head.framing, ...head.request!, headers: head.headers, content: content.slice(), trailers };
}

export function decodeBhttpResponse(bytes: Uint8Array, limits?: BhttpLimits): BhttpResponse {
  const { head, content, trailers } = runSync('response', bytes, limits);
  return { framing: head.framing, informational: head.informational, status: head.status, headers: head.headers, content: content.slice(), trailers };
}

// ---------------------------------------------------------------- streaming

/** A message whose content arrives as a stream. `trailers` settles when the body has been read. */
export interface BhttpStreamed {
  readonly body: ReadableStream<Uint8Array>;
  readonly trailers: Promise<readonly HttpField[]>;
}
export type BhttpStreamedRequest = BhttpRequestHead & BhttpStreamed;
export type BhttpStreamedResponse = BhttpResponseHead & BhttpStreamed;

const MAX_CONTENT_PIECE = 64 * 1024;

async function runStream(kind: 'request' | 'response', stream: ReadableStream<Uint8Array>, limits: BhttpLimits | undefined): Promise<{ head: ParsedHead } & BhttpStreamed> {
  const buf = new StreamBuffer(stream.getReader());
  const gen = parseMessage(kind, limitsOf(limits));
  let input: unknown;
  let contentLeft = 0;
  let contentTotal = 0;
  let head: ParsedHead | undefined;

  async function need(n: number): Promise<void> {
    if (!(await buf.fill(n))) throw new ParseError('ERR_INPUT_TRUNCATED', 'binary HTTP stream ended early', { detail: { needed: n, available: buf.available } });
  }

  /** Advances the parser until it has a content piece, the head, or the end. */
  async function advance(): Promise<{ piece?: Bytes; head?: ParsedHead; trailers?: HttpField[] }> {
    if (contentLeft > 0) {
      const piece = await buf.takeSome(Math.min(contentLeft, MAX_CONTENT_PIECE));
      if (!piece) throw new ParseError('ERR_INPUT_TRUNCATED', 'binary HTTP stream ended inside content', { detail: { missing: contentLeft } });
      contentLeft -= piece.length;
      return { piece };
    }
    for (;;) {
      const it = gen.next(input);
      input = undefined;
      if (it.done) {
        checkContentLength(head!.headers, contentTotal, kind === 'response');
        return { trailers: it.value };
      }
      const step = it.value;
      switch (step.t) {
        case 'read':
          await need(step.n);
          input = buf.take(step.n);
          break;
        case 'more':
          input = !(await buf.atEnd());
          break;
        case 'content':
          contentLeft = step.n;
          contentTotal += step.n;
          if (step.n > 0) return advance();
          break;
        case 'head':
          head = step.head;
          return { head: step.head };
        case 'padding':
          for (;;) {
            const rest = await buf.takeSome(MAX_CONTENT_PIECE);
            if (!rest) break;
            for (const b of rest) if (b !== 0) throw malformed('non-zero padding');
          }
          break;
      }
    }
  }

  let first;
  try {
    first = await advance();
  } catch (e) {
    await buf.cancel(e);
    throw e;
  }
  if (!first.head) throw new ParseError('ERR_INPUT_TRUNCATED', 'binary HTTP stream ended before its head');

  let resolveTrailers!: (t: HttpField[]) => void;
  let rejectTrailers!: (e: unknown) => void;
  const trailers = new Promise<readonly HttpField[]>((res, rej) => {
    resolveTrailers = res;
    rejectTrailers = rej;
  });
  // A caller that never awaits the trailers must not see an unhandled rejection.
  trailers.catch(() => undefined);

  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        for (;;) {
          const r = await advance();
          if (r.piece) {
            controller.enqueue(r.piece);
            return;
          }
          if (r.trailers) {
            buf.release();
            resolveTrailers(r.trailers);
            controller.close();
            return;
          }
        }
      } catch (e) {
        rejectTrailers(e);
        await buf.cancel(e);
        controller.error(e);
      }
    },
    async cancel(reason) {
      rejectTrailers(reason);
      await buf.cancel(reason);
    },
  });
  return { head: first.head, body, trailers };
}

/** Decodes a request from a stream: resolves once the head is complete; content streams on. */
export async function decodeBhttpRequestStream(stream: ReadableStream<Uint8Array>, limits?: BhttpLimits): Promise<BhttpStreamedRequest> {
  const { head, body, trailers } = await runStream('request', stream, limits);
  return { framing: head.framing, ...head.request!, headers: head.headers, body, trailers };
}

/** Decodes a response from a stream: resolves once the final status and headers are known. */
export async function decodeBhttpResponseStream(stream: ReadableStream<Uint8Array>, limits?: BhttpLimits): Promise<BhttpStreamedResponse> {
  const { head, body, trailers } = await runStream('response', stream, limits);
  return { framing: head.framing, informational: head.informational, status: head.status, headers: head.headers, body, trailers };
}
