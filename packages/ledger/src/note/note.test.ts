import { describe, expect, it } from 'vitest';
import { toBase64, utf8 } from '@custody/core';
import {
  computeKeyId,
  formatVerifierKey,
  generateSignerKey,
  parseSignerKey,
  parseVerifierKey,
  SIG_TYPE_COSIGNATURE_V1,
  SIG_TYPE_ED25519,
} from './keys.js';
import {
  cosignatureMessage,
  cosignatureTimestamp,
  createCosignatureVerifier,
  createCosigner,
  createEd25519Signer,
  createEd25519Verifier,
  openNote,
  parseNote,
  signNote,
} from './note.js';
import { fixedClock } from '@custody/core';

// Published examples: C2SP signed-note's verifier-key example and Go x/mod/sumdb/note's test key.
const SPEC_VKEY = 'example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k';
const SPEC_NOTE =
  'This is an example message.\n\n\u2014 example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n';
const PETER_SKEY = 'PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz';
const PETER_VKEY = 'PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW';
const PETER_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const PETER_SIG = '\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n';

describe('signed notes (C2SP signed-note)', () => {
  it('verifies the spec example', async () => {
    const opened = await openNote(SPEC_NOTE, [await createEd25519Verifier(SPEC_VKEY)]);
    expect(opened.note.text).toBe('This is an example message.\n');
    expect(opened.verified).toHaveLength(1);
  });

  it('signs byte-identically to Go x/mod/sumdb/note and derives the same vkey', async () => {
    const signer = await createEd25519Signer(PETER_SKEY);
    expect(signer.vkey).toBe(PETER_VKEY);
    expect(await signNote(PETER_TEXT, [signer])).toBe(PETER_TEXT + '\n' + PETER_SIG);
    // An existing signature by the same key is replaced, others are kept.
    const again = await signNote(PETER_TEXT, [signer], parseNote(PETER_TEXT + '\n' + PETER_SIG + '\u2014 other.example/k AAAAAAAA\n').signatures);
    expect(again.split('\n').filter((l) => l.startsWith('\u2014'))).toHaveLength(2);
  });

  it('ignores unknown keys but rejects a bad signature from a known key', async () => {
    const peter = await createEd25519Verifier(PETER_VKEY);
    const withUnknown = PETER_TEXT + '\n' + '\u2014 someone.else/k ' + toBase64(new Uint8Array(68).fill(3)) + '\n' + PETER_SIG;
    const opened = await openNote(withUnknown, [peter]);
    expect(opened.unknown).toHaveLength(1);
    await expect(openNote(withUnknown, [await createEd25519Verifier(SPEC_VKEY)])).rejects.toMatchObject({ code: 'ERR_NOTE_UNVERIFIED' });
    const bad = PETER_TEXT.replace('answer', 'Answer') + '\n' + PETER_SIG;
    await expect(openNote(bad, [peter])).rejects.toMatchObject({ code: 'ERR_NOTE_SIGNATURE' });
  });

  it('rejects malformed notes like Go does', () => {
    const bad = [
      PETER_TEXT,
      PETER_TEXT + '\n',
      PETER_TEXT + '\n' + PETER_SIG.slice(0, -1),
      '\x01' + PETER_TEXT + '\n' + PETER_SIG,
      PETER_TEXT + '\n' + '\u2014 Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n',
      PETER_TEXT + '\n' + PETER_SIG + 'Unexpected line.\n',
      PETER_TEXT + '\n' + '\u2014 PeterNeumann AAAA\n',
      PETER_TEXT + '\n' + '\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM\n',
    ];
    for (const b of bad) expect(() => parseNote(b), JSON.stringify(b.slice(-30))).toThrowError(expect.objectContaining({ code: 'ERR_NOTE_MALFORMED' }) as Error);
    expect(() => parseNote(new Uint8Array([0xff, 0x0a, 0x0a]))).toThrowError(expect.objectContaining({ code: 'ERR_NOTE_MALFORMED' }) as Error);
    const many = PETER_TEXT + '\n' + PETER_SIG.repeat(101);
    expect(() => parseNote(many)).toThrowError(expect.objectContaining({ code: 'ERR_NOTE_MALFORMED' }) as Error);
  });

  it('parses and rejects verifier keys', () => {
    const k = parseVerifierKey(PETER_VKEY);
    expect(k.keyId).toBe(0xc74f20a3);
    expect(formatVerifierKey(k.name, SIG_TYPE_ED25519, k.publicKey)).toBe(PETER_VKEY);
    const bad = [
      'PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==',
      'PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW',
      'Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW',
      'PeterNeumann+c74f20+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW',
      'PeterNeumann',
      '+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW',
    ];
    for (const b of bad) expect(() => parseVerifierKey(b), b).toThrowError(expect.objectContaining({ code: 'ERR_NOTE_KEY' }) as Error);
    expect(() => parseVerifierKey('PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW')).toThrowError(
      expect.objectContaining({ code: 'ERR_INPUT_UNSUPPORTED' }) as Error,
    );
    expect(parseSignerKey(PETER_SKEY).keyId).toBe(0xc74f20a3);
  });

  it('generates deterministic keys from injected randomness and round-trips a note', async () => {
    const rnd = (n: number) => new Uint8Array(n).fill(42);
    const a = await generateSignerKey('log.example/a', SIG_TYPE_ED25519, rnd);
    const b = await generateSignerKey('log.example/a', SIG_TYPE_ED25519, rnd);
    expect(a).toEqual(b);
    const signed = await signNote('hello\n', [await createEd25519Signer(a.skey)]);
    await expect(openNote(signed, [await createEd25519Verifier(a.vkey)])).resolves.toBeTruthy();
    await expect(createEd25519Signer(a.skey.replace(/\+[0-9a-f]{8}\+/, '+00000000+'))).rejects.toMatchObject({ code: 'ERR_NOTE_KEY' });
    await expect(createCosigner(a.skey, fixedClock('2025-01-01T00:00:00Z'))).rejects.toMatchObject({ code: 'ERR_NOTE_KEY' });
  });
});

describe('cosignature/v1 (C2SP tlog-cosignature)', () => {
  it('signs the header, time line and checkpoint text, with a key ID over type 0x04', async () => {
    const k = await generateSignerKey('witness.example/w9', SIG_TYPE_COSIGNATURE_V1, (n) => new Uint8Array(n).fill(5));
    const vk = parseVerifierKey(k.vkey);
    expect(vk.keyId).toBe(computeKeyId('witness.example/w9', 0x04, vk.publicKey));
    const cosigner = await createCosigner(k.skey, fixedClock('2023-11-14T22:13:20Z'));
    const text = 'log.example/a\n5\n' + toBase64(new Uint8Array(32)) + '\n';
    const sig = await cosigner.sign(utf8(text));
    expect(cosignatureTimestamp(sig)).toBe(1700000000n);
    expect(new TextDecoder().decode(cosignatureMessage(1700000000n, utf8(text)))).toBe('cosignature/v1\ntime 1700000000\n' + text);
    const v = await createCosignatureVerifier(k.vkey);
    expect(await v.verify(utf8(text), sig)).toBe(true);
    const later = sig.slice();
    later[7]! += 1;
    expect(await v.verify(utf8(text), later)).toBe(false);
    expect(await v.verify(utf8(text), sig.slice(0, 71))).toBe(false);
    await expect(createEd25519Verifier(k.vkey)).rejects.toMatchObject({ code: 'ERR_NOTE_KEY' });
  });
});
