import { concatBytes, CustodyError, fromHex, toHex, utf8 } from '@custody/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  decodeBhttpRequest,
  decodeBhttpRequestStream,
  decodeBhttpResponse,
  decodeBhttpResponseStream,
  encodeBhttpContentChunk,
  encodeBhttpEnd,
  encodeBhttpRequest,
  encodeBhttpRequestHead,
  encodeBhttpResponse,
  encodeBhttpResponseHead,
  type BhttpResponseInit,
  type HttpField,
} from './bhttp.js';
import { readAll, streamOf } from './stream-buffer.js';

// RFC 9292 section 5 examples, transcribed from the hex dumps (httpwg/http-extensions,
// draft-ietf-httpbis-binary-message.md, which became RFC 9292).
const KNOWN_REQUEST =
  '00034745540568747470730' +
  '00a2f68656c6c6f2e747874406c0a757365722d6167656e7434637572' +
  '6c2f372e31362e33206c69626375726c2f372e31362e33204f70656e53534c2f302e392e376c207a6c69622f312e322e3304686f73740f' +
  '7777772e6578616d706c652e636f6d0f6163636570742d6c616e677561676506656e2c206d690000';
const INDETERMINATE_REQUEST =
  '02034745540568747470730' +
  '00a2f68656c6c6f2e7478740a757365722d6167656e74346375726c2f372e31362e33206c69626375726c2f372e31362e33204f70656e53534c2f302e392e376c207a6c69622f312e322e3304686f73740f' +
  '7777772e6578616d706c652e636f6d0f6163636570742d6c616e677561676506656e2c206d6900' +
  '000000000000000000000000';
const INDETERMINATE_RESPONSE =
  '034066077275' +
  '6e6e696e670a22736c65657020313522004067046c696e6b233c2f7374796c652e6373733e3b2072656c3d7072656c6f61643b2061733d7374796c65046c696e6b243c2f7363726970742e6a733e3b2072656c3d7072656c6f61643b2061733d736372697074' +
  '0040c804646174651d4d6f6e2c203237204a756c20323030392031323a32383a353320474d540673657276657206417061636865' +
  '0d6c6173742d6d6f6469666965641d5765642c203232204a756c20323030392031393a31353a353620474d5404657461671422333461613338372d642d31353638656230302' +
  '20d6163636570742d72616e6765730562797465730e636f6e74656e742d6c656e677468023531047661727' +
  '90f4163636570742d456e636f64696e670c636f6e74656e742d747970650a746578742f706c61696e00' +
  '3348656c6c6f20576f726c6421204d7920636f6e74656e7420696e636c756465732061207472' +
  '61696c696e672043524c462e0d0a0000';
const KNOWN_RESPONSE = '0140c8001d5468697320636f6e74656e7420636f6e7461696e732043524c462e0d0a0d07747261696c65720474657874';

const REQUEST_HEADERS = [
  ['user-agent', 'curl/7.16.3 libcurl/7.16.3 OpenSSL/0.9.7l zlib/1.2.3'],
  ['host', 'www.example.com'],
  ['accept-language', 'en, mi'],
] as const;

const RESPONSE: BhttpResponseInit = {
  informational: [
    { status: 102, headers: [['running', '"sleep 15"']] },
    {
      status: 103,
      headers: [
        ['link', '</style.css>; rel=preload; as=style'],
        ['link', '</script.js>; rel=preload; as=script'],
      ],
    },
  ],
  status: 200,
  headers: [
    ['date', 'Mon, 27 Jul 2009 12:28:53 GMT'],
    ['server', 'Apache'],
    ['last-modified', 'Wed, 22 Jul 2009 19:15:56 GMT'],
    ['etag', '"34aa387-d-1568eb00"'],
    ['accept-ranges', 'bytes'],
    ['content-length', '51'],
    ['vary', 'Accept-Encoding'],
    ['content-type', 'text/plain'],
  ],
  content: utf8('Hello World! My content includes a trailing CRLF.\r\n'),
};

function code(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(CustodyError);
    return (e as CustodyError).code;
  }
  throw new Error('expected a typed failure');
}

function split(b: Uint8Array, cuts: number[]): ReadableStream<Uint8Array> {
  const points = [...new Set(cuts.map((c) => c % (b.length + 1)))].sort((x, y) => x - y);
  const parts: Uint8Array[] = [];
  let last = 0;
  for (const p of [...points, b.length]) {
    parts.push(b.subarray(last, p));
    last = p;
  }
  return streamOf(...parts);
}

describe('Binary HTTP: RFC 9292 examples', () => {
  it('known-length request', () => {
    const r = decodeBhttpRequest(fromHex(KNOWN_REQUEST));
    expect(r).toMatchObject({ framing: 'known-length', method: 'GET', scheme: 'https', authority: '', path: '/hello.txt', headers: REQUEST_HEADERS, trailers: [] });
    expect(r.content).toHaveLength(0);
    expect(toHex(encodeBhttpRequest(r, { truncate: false }))).toBe(KNOWN_REQUEST);
    // "The last two bytes can each be removed without altering the semantics."
    expect(decodeBhttpRequest(fromHex(KNOWN_REQUEST.slice(0, -4)))).toEqual(r);
    expect(toHex(encodeBhttpRequest(r))).toBe(KNOWN_REQUEST.slice(0, -4));
  });

  it('indeterminate-length request with 10 bytes of padding', () => {
    const r = decodeBhttpRequest(fromHex(INDETERMINATE_REQUEST));
    expect(r).toMatchObject({ framing: 'indeterminate', method: 'GET', path: '/hello.txt', headers: REQUEST_HEADERS });
    expect(toHex(encodeBhttpRequest(r, { framing: 'indeterminate', truncate: false, padding: 10 }))).toBe(INDETERMINATE_REQUEST);
    // Up to 12 bytes can be removed without changing the meaning.
    expect(decodeBhttpRequest(fromHex(INDETERMINATE_REQUEST.slice(0, -24)))).toEqual(r);
  });

  it('indeterminate-length response with informational responses', () => {
    const r = decodeBhttpResponse(fromHex(INDETERMINATE_RESPONSE));
    expect(r).toMatchObject({ framing: 'indeterminate', informational: RESPONSE.informational, status: 200, headers: RESPONSE.headers, trailers: [] });
    expect(r.content).toEqual(RESPONSE.content);
    expect(toHex(encodeBhttpResponse(RESPONSE, { framing: 'indeterminate', truncate: false }))).toBe(INDETERMINATE_RESPONSE);
    // The incremental encoder produces the same bytes.
    const incremental = concatBytes(encodeBhttpResponseHead(RESPONSE), encodeBhttpContentChunk(RESPONSE.content!), encodeBhttpEnd());
    expect(toHex(incremental)).toBe(INDETERMINATE_RESPONSE);
  });

  it('known-length response with a trailer', () => {
    const r = decodeBhttpResponse(fromHex(KNOWN_RESPONSE));
    expect(r).toMatchObject({ framing: 'known-length', status: 200, headers: [], trailers: [['trailer', 'text']] });
    expect(new TextDecoder().decode(r.content)).toBe('This content contains CRLF.\r\n');
    expect(toHex(encodeBhttpResponse(r))).toBe(KNOWN_RESPONSE);
  });
});

describe('Binary HTTP: streaming decode', () => {
  it('streams the example response in any split and matches the whole-buffer decode', async () => {
    const bytes = fromHex(INDETERMINATE_RESPONSE);
    const whole = decodeBhttpResponse(bytes);
    await fc.assert(
      fc.asyncProperty(fc.array(fc.nat(), { maxLength: 12 }), async (cuts) => {
        const s = await decodeBhttpResponseStream(split(bytes, cuts));
        expect(s.status).toBe(200);
        expect(s.informational).toEqual(whole.informational);
        expect(s.headers).toEqual(whole.headers);
        expect(await readAll(s.body)).toEqual(whole.content);
        expect(await s.trailers).toEqual([]);
      }),
      { numRuns: 150, seed: 21 },
    );
  });

  it('streams a request with many content chunks and trailers', async () => {
    const head = encodeBhttpRequestHead({ method: 'POST', scheme: 'https', authority: 'gw.example', path: '/v1/chat/completions', headers: [['content-type', 'application/json']] });
    const chunks = ['{"model":', '"m",', '"stream":true}'].map((s) => encodeBhttpContentChunk(utf8(s)));
    const bytes = concatBytes(head, ...chunks, encodeBhttpEnd([['x-digest', 'abc']]));
    const s = await decodeBhttpRequestStream(split(bytes, [2, 9, 40, 41, 60]));
    expect(s).toMatchObject({ framing: 'indeterminate', method: 'POST', path: '/v1/chat/completions', headers: [['content-type', 'application/json']] });
    expect(new TextDecoder().decode(await readAll(s.body))).toBe('{"model":"m","stream":true}');
    expect(await s.trailers).toEqual([['x-digest', 'abc']]);
    expect(decodeBhttpRequest(bytes).content).toEqual(utf8('{"model":"m","stream":true}'));
  });

  it('errors the body stream of a truncated message and rejects its trailers', async () => {
    const bytes = concatBytes(encodeBhttpResponseHead({ status: 200 }), encodeBhttpContentChunk(utf8('partial')));
    const s = await decodeBhttpResponseStream(streamOf(bytes));
    const e = await readAll(s.body).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect((e as CustodyError).code).toBe('ERR_INPUT_TRUNCATED');
    await expect(s.trailers).rejects.toMatchObject({ code: 'ERR_INPUT_TRUNCATED' });
    await expect(decodeBhttpResponseStream(streamOf(new Uint8Array([3])))).rejects.toMatchObject({ code: 'ERR_INPUT_TRUNCATED' });
  });
});

describe('Binary HTTP: invalid messages', () => {
  const ok = { method: 'GET', scheme: 'https', authority: 'a', path: '/' };
  it('refuses what HTTP/2 calls malformed, on encode and decode', () => {
    expect(code(() => encodeBhttpRequest({ ...ok, headers: [['Upper', 'x']] }))).toBe('ERR_INPUT_MALFORMED');
    expect(code(() => encodeBhttpRequest({ ...ok, headers: [[':path', 'x']] }))).toBe('ERR_INPUT_MALFORMED');
    expect(code(() => encodeBhttpRequest({ ...ok, headers: [['x', 'a\r\nb']] }))).toBe('ERR_INPUT_MALFORMED');
    expect(code(() => encodeBhttpRequest({ ...ok, headers: [['x', ' padded']] }))).toBe('ERR_INPUT_MALFORMED');
    expect(code(() => encodeBhttpRequest({ ...ok, headers: [['connection', 'close']] }))).toBe('ERR_INPUT_MALFORMED');
    expect(code(() => encodeBhttpRequest({ ...ok, headers: [['te', 'gzip']] }))).toBe('ERR_INPUT_MALFORMED');
    expect(code(() => encodeBhttpRequest({ ...ok, headers: [['x', '\u0100']] }))).toBe('ERR_INPUT_MALFORMED');
    expect(code(() => encodeBhttpRequest({ ...ok, method: 'G T' }))).toBe('ERR_INPUT_MALFORMED');
    expect(code(() => encodeBhttpRequest({ ...ok, headers: [['content-length', '3']], content: utf8('ab') }))).toBe('ERR_INPUT_MALFORMED');
    expect(code(() => encodeBhttpResponse({ status: 99 }))).toBe('ERR_INPUT_MALFORMED');
    expect(code(() => encodeBhttpResponse({ status: 600 }))).toBe('ERR_INPUT_MALFORMED');
    expect(code(() => encodeBhttpResponse({ status: 200, informational: [{ status: 200, headers: [] }] }))).toBe('ERR_INPUT_MALFORMED');
    // The same conditions in received bytes.
    const withField = (n: string, v: string): Uint8Array => concatBytes(fromHex('0003474554056874747073016101' + '2f'), fromHex((n.length + v.length + 2).toString(16).padStart(2, '0')), new Uint8Array([n.length]), utf8(n), new Uint8Array([v.length]), utf8(v));
    expect(decodeBhttpRequest(withField('x', 'y')).headers).toEqual([['x', 'y']]);
    expect(code(() => decodeBhttpRequest(withField('X', 'y')))).toBe('ERR_INPUT_MALFORMED');
    expect(code(() => decodeBhttpRequest(withField('keep-alive', 'y')))).toBe('ERR_INPUT_MALFORMED');
    expect(code(() => decodeBhttpRequest(withField('x', 'y\n')))).toBe('ERR_INPUT_MALFORMED');
  });

  it('refuses bad framing, status, padding and truncation inside a part', () => {
    expect(code(() => decodeBhttpRequest(fromHex('04')))).toBe('ERR_INPUT_MALFORMED');
    expect(code(() => decodeBhttpRequest(fromHex('0140c8')))).toBe('ERR_INPUT_MALFORMED'); // a response
    expect(code(() => decodeBhttpResponse(fromHex(KNOWN_REQUEST)))).toBe('ERR_INPUT_MALFORMED');
    expect(code(() => decodeBhttpResponse(fromHex('014063')))).toBe('ERR_INPUT_MALFORMED'); // 99
    expect(code(() => decodeBhttpResponse(fromHex('014258')))).toBe('ERR_INPUT_MALFORMED'); // 600
    expect(code(() => decodeBhttpResponse(fromHex('0140c80000000001')))).toBe('ERR_INPUT_MALFORMED'); // non-zero padding
    expect(decodeBhttpResponse(fromHex('0140c800000000')).status).toBe(200);
    expect(code(() => decodeBhttpResponse(fromHex('0140c80005')))).toBe('ERR_INPUT_TRUNCATED'); // content cut short
    expect(code(() => decodeBhttpResponse(fromHex('0340c80003616263')))).toBe('ERR_INPUT_TRUNCATED'); // no content terminator
    expect(code(() => decodeBhttpResponse(fromHex('0140')))).toBe('ERR_INPUT_TRUNCATED');
    expect(code(() => decodeBhttpResponse(fromHex('014064')))).toBe('ERR_INPUT_TRUNCATED'); // 100 without its headers
    expect(code(() => decodeBhttpResponse(fromHex('0140c8c0000000ffffffff00')))).toBe('ERR_INPUT_TOO_LARGE');
  });

  it('round-trips random messages in both framings', () => {
    const token = fc.stringMatching(/^[a-z0-9-]{1,12}$/).filter((n) => !['connection', 'proxy-connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'te', 'content-length'].includes(n));
    const value = fc.stringMatching(/^[!-~]([ -~]{0,20}[!-~])?$/);
    const fields = fc.array(fc.tuple(token, value), { maxLength: 5 });
    fc.assert(
      fc.property(fields, fc.uint8Array({ maxLength: 300 }), fields, fc.boolean(), fc.boolean(), fc.nat(5), (headers, content, trailers, indeterminate, truncate, padding) => {
        const framing = indeterminate ? 'indeterminate' : 'known-length';
        const req = { method: 'POST', scheme: 'https', authority: 'x.example', path: '/p?q=1', headers, content, trailers };
        expect(decodeBhttpRequest(encodeBhttpRequest(req, { framing, truncate, padding }))).toEqual({ framing, ...req });
        const res = { informational: [], status: 201, headers, content, trailers };
        expect(decodeBhttpResponse(encodeBhttpResponse(res, { framing, truncate, padding }))).toEqual({ framing, ...res });
      }),
      { numRuns: 400, seed: 5 },
    );
  });

  it('decodes field values byte for byte as ISO-8859-1, obs-text included', () => {
    const value = 'caf\u00e9 \u0080\u00ff end';
    const headers: HttpField[] = [['x-latin', value], ['x-ascii', 'plain']];
    const res = { informational: [], status: 200, headers, content: new Uint8Array(0), trailers: [] };
    const decoded = decodeBhttpResponse(encodeBhttpResponse(res));
    expect(decoded.headers).toEqual(res.headers);
    expect([...decoded.headers[0]![1]].map((c) => c.charCodeAt(0))).toEqual([...value].map((c) => c.charCodeAt(0)));
  });
});
