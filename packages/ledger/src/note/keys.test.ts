import { describe, expect, it } from 'vitest';
import { toBase64 } from '@custody/core';
import { seeded } from '../testing/keys.js';
import { SIG_TYPE_COSIGNATURE_V1, SIG_TYPE_ED25519, formatVerifierKey, generateSignerKey, isValidKeyName, parseSignerKey, parseVerifierKey } from './keys.js';
import { createEd25519Signer, createEd25519Verifier, openNote, parseNote, signNote } from './note.js';

// Go's x/mod/sumdb/note isValidName: non-empty, valid UTF-8, no '+', and no rune for which
// unicode.IsSpace is true. unicode.IsSpace is exactly this set (Go src/unicode/graphic.go and the
// White_Space table in tables.go); JS `\s` differs from it in both directions.
const GO_SPACES = [0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x20, 0x85, 0xa0, 0x1680, ...Array.from({ length: 11 }, (_, i) => 0x2000 + i), 0x2028, 0x2029, 0x202f, 0x205f, 0x3000];
// Not spaces to Go, although several are to JS `\s` (U+FEFF) or look like spaces (format characters).
const NOT_GO_SPACES = [0xfeff, 0x200b, 0x200c, 0x200d, 0x180e, 0x2060, 0x1c, 0x1d, 0x1e, 0x1f, 0x7f, 0x2e, 0xe9, 0x10000, 0x1f600];

const hex = (c: number) => `U+${c.toString(16).toUpperCase().padStart(4, '0')}`;

describe('key names follow Go isValidName (unicode.IsSpace), not JS \\s', () => {
  it('the space set has the 25 runes of Unicode White_Space', () => expect(GO_SPACES).toHaveLength(25));

  const table = [...GO_SPACES.map((c) => ({ c, valid: false })), ...NOT_GO_SPACES.map((c) => ({ c, valid: true }))];
  for (const { c, valid } of table) {
    const name = `log.example/a${String.fromCodePoint(c)}b`;
    it(`${hex(c)} in a name is ${valid ? 'valid' : 'invalid'} in vkeys, skeys and signature lines`, async () => {
      expect(isValidKeyName(name)).toBe(valid);
      const line = `hello\n\n\u2014 ${name} ${toBase64(new Uint8Array(68).fill(7))}\n`;
      if (valid) {
        const k = await generateSignerKey(name, SIG_TYPE_ED25519, seeded(c));
        expect(parseVerifierKey(k.vkey).name).toBe(name);
        expect(parseSignerKey(k.skey).name).toBe(name);
        // A note may not carry ASCII control characters (C2SP signed-note, Go note.Open), so such
        // names are valid keys but cannot sign a note.
        if (c >= 0x20) {
          const signed = await signNote('hello\n', [await createEd25519Signer(k.skey)]);
          await expect(openNote(signed, [await createEd25519Verifier(k.vkey)])).resolves.toMatchObject({ verified: [{ signature: { name } }] });
        }
        if (c >= 0x20) expect(parseNote(line).signatures[0]!.name).toBe(name);
        else expect(() => parseNote(line)).toThrowError(expect.objectContaining({ code: 'ERR_NOTE_MALFORMED' }) as Error);
      } else {
        await expect(generateSignerKey(name, SIG_TYPE_ED25519, seeded(c))).rejects.toMatchObject({ code: 'ERR_NOTE_KEY' });
        expect(() => formatVerifierKey(name, SIG_TYPE_COSIGNATURE_V1, new Uint8Array(32))).toThrowError(expect.objectContaining({ code: 'ERR_NOTE_KEY' }) as Error);
        // A vkey/skey built around the name (valid otherwise) is refused for the name.
        const good = await generateSignerKey('log.example/ab', SIG_TYPE_ED25519, seeded(c));
        const vkey = good.vkey.replace('log.example/ab', name);
        const skey = good.skey.replace('log.example/ab', name);
        expect(() => parseVerifierKey(vkey)).toThrowError(expect.objectContaining({ code: 'ERR_NOTE_KEY' }) as Error);
        expect(() => parseSignerKey(skey)).toThrowError(expect.objectContaining({ code: 'ERR_NOTE_KEY' }) as Error);
        // In a signature line (control characters and '\n' are refused earlier by the note text rules).
        expect(() => parseNote(line)).toThrowError(expect.objectContaining({ code: 'ERR_NOTE_MALFORMED' }) as Error);
      }
    });
  }

  it('rejects empty names, plus signs and lone surrogates', () => {
    for (const n of ['', 'a+b', '+', 'a\ud800b', 'a\udc00']) expect(isValidKeyName(n), JSON.stringify(n)).toBe(false);
  });

  it('only ASCII whitespace is trimmed around a key string: a BOM or NBSP stays and is judged', async () => {
    const k = await generateSignerKey('log.example/t', SIG_TYPE_ED25519, seeded(3));
    expect(parseVerifierKey(` \t${k.vkey}\r\n`).vkey).toBe(k.vkey);
    expect(parseSignerKey(`${k.skey}\n`).name).toBe('log.example/t');
    // The BOM becomes part of the name, which then does not match the key ID (Go: the same).
    expect(() => parseVerifierKey('\uFEFF' + k.vkey)).toThrowError(expect.objectContaining({ code: 'ERR_NOTE_KEY' }) as Error);
    expect(() => parseVerifierKey(k.vkey + '\u00a0')).toThrowError(expect.objectContaining({ code: 'ERR_NOTE_KEY' }) as Error);
    expect(() => parseSignerKey('\u00a0' + k.skey)).toThrowError(expect.objectContaining({ code: 'ERR_NOTE_KEY' }) as Error);
  });
});
