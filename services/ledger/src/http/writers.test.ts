import { describe, expect, it } from 'vitest';
import { newWriterKey, parseWriters, writerKeyFrom } from './writers.js';

describe('writers: who may append to a served log', () => {
  it('admits the writer whose key a line names, and says which', () => {
    const a = newWriterKey('broker');
    const b = newWriterKey('gateway-1');
    expect(a.key).toMatch(/^ctw_[A-Za-z0-9_-]{43}$/);
    expect(a.line).toMatch(/^broker sha256:[0-9a-f]{64}$/);
    const w = parseWriters(`# writers of the demo log\n${a.line}\n\n  ${b.line}  \n`);
    expect(w.names).toEqual(['broker', 'gateway-1']);
    expect(w.check(`Bearer ${a.key}`)).toBe('broker');
    expect(w.check(`Bearer ${b.key}`)).toBe('gateway-1');
    // The scheme is case-insensitive (RFC 9110).
    expect(w.check(`bearer ${a.key}`)).toBe('broker');
  });

  it('takes a key as given to a service (a trailing newline from a file) and refuses a malformed one as a usage error', () => {
    const { key } = newWriterKey('broker');
    expect(writerKeyFrom(`${key}\n`)).toBe(key);
    expect(writerKeyFrom(`  ${key}`)).toBe(key);
    for (const bad of ['', 'ctw_short', `${key}x`, `x${key}`, `${key.slice(0, 10)}\n${key.slice(10)}`]) {
      expect(() => writerKeyFrom(bad)).toThrow(expect.objectContaining({ code: 'ERR_USAGE' }));
    }
  });

  it('refuses a missing, malformed or unknown key with typed errors that do not echo it', () => {
    const w = parseWriters(newWriterKey('broker').line);
    const other = newWriterKey('broker').key;
    const codeOf = (h: string | undefined) => {
      try {
        w.check(h);
        return 'admitted';
      } catch (e) {
        expect(String((e as Error).message)).not.toContain(other.slice(4));
        return (e as { code: string }).code;
      }
    };
    expect(codeOf(undefined)).toBe('ERR_AUTH_REQUIRED');
    expect(codeOf('')).toBe('ERR_AUTH_REQUIRED');
    expect(codeOf(`Basic ${other}`)).toBe('ERR_AUTH_INVALID');
    expect(codeOf(`Bearer ${other.slice(0, -1)}`)).toBe('ERR_AUTH_INVALID');
    expect(codeOf(`Bearer ${other}`)).toBe('ERR_AUTH_INVALID');
  });

  it('refuses a malformed writers file, naming the line', () => {
    const good = newWriterKey('broker').line;
    for (const [text, line] of [
      ['broker sha256:abc', 1],
      [`${good}\nbad name sha256:${'0'.repeat(64)}`, 2],
      [`${good}\n${good.replace(/sha256:.*/, 'sha256:' + '1'.repeat(64))}`, 2],
      [`${good}\ngateway SHA256:${'A'.repeat(64)}`, 2],
      // One key under two names.
      [`${good}\n${good.replace(/^broker/, 'gateway')}`, 2],
    ] as const) {
      expect(() => parseWriters(text)).toThrow(expect.objectContaining({ code: 'ERR_USAGE', detail: { line } }));
    }
    expect(() => parseWriters('# nobody\n')).toThrow(expect.objectContaining({ code: 'ERR_USAGE' }));
    expect(() => newWriterKey('no spaces please')).toThrow(expect.objectContaining({ code: 'ERR_USAGE' }));
  });
});
