import { describe, expect, it } from 'vitest';
import { CustodyError, sha256, sha512, toHex, utf8 } from '@custody/core';
import { createOhttpServerKey } from '../ohttp/key-config.js';
import { buildRuntimeData, parseRuntimeData, runtimeDigest, sameRuntimeKeys } from './runtime-data.js';

async function sample(nonce?: Uint8Array) {
  const k = await createOhttpServerKey({ keyId: 3, ikm: new Uint8Array(32).fill(1) });
  return buildRuntimeData({ ...(nonce ? { nonce } : {}), keyConfigs: [k.config], receiptKey: new Uint8Array(32).fill(2), teePublicKey: new Uint8Array(32).fill(4) });
}

function code(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(CustodyError);
    return (e as CustodyError).code;
  }
  throw new Error('expected failure');
}

describe('gateway runtime data', () => {
  it('is canonical JSON with the protocol members in order, and parses back', async () => {
    const text = await sample(new Uint8Array(32).fill(9));
    expect(text.startsWith('{"nonce":"CQkJ')).toBe(true);
    expect(Object.keys(JSON.parse(text) as object)).toEqual(['nonce', 'ohttp-keys', 'receipt-key', 'tee-pubkey']);
    const p = parseRuntimeData(text);
    expect(p.keyConfigs[0]!.keyId).toBe(3);
    expect(p.value['tee-pubkey'].crv).toBe('X25519');
    expect(sameRuntimeKeys(p.value, parseRuntimeData(await sample()).value)).toBe(true);
  });

  it('digest per platform follows the key-release table (SHA-256 for TPMs, SHA-512 elsewhere)', async () => {
    const text = await sample();
    expect(toHex(await runtimeDigest('tpm', text))).toBe(toHex(await sha256(utf8(text))));
    expect(toHex(await runtimeDigest('azure-vtpm', text))).toBe(toHex(await sha256(utf8(text))));
    for (const p of ['sev-snp', 'tdx', 'nitro', 'sim']) expect(toHex(await runtimeDigest(p, text))).toBe(toHex(await sha512(utf8(text))));
  });

  it('refuses non-canonical text, unknown members, wrong key types and bad key sizes', async () => {
    const text = await sample();
    const obj = JSON.parse(text) as Record<string, unknown>;
    expect(code(() => parseRuntimeData(JSON.stringify(obj, null, 1)))).toBe('ERR_INPUT_MALFORMED');
    expect(code(() => parseRuntimeData(text.replace('{', '{"zzz":1,')))).toBe('ERR_INPUT_MALFORMED');
    const wrongCurve = text.replace('"crv":"Ed25519"', '"crv":"X25519"');
    expect(code(() => parseRuntimeData(wrongCurve))).toBe('ERR_INPUT_MALFORMED');
    expect(code(() => parseRuntimeData('[]'))).toBe('ERR_INPUT_MALFORMED');
    expect(code(() => parseRuntimeData('{'))).toBe('ERR_INPUT_MALFORMED');
    expect(code(() => buildRuntimeData({ keyConfigs: [], receiptKey: new Uint8Array(32), teePublicKey: new Uint8Array(32) }))).toBe('ERR_INPUT_MALFORMED');
  });
});
