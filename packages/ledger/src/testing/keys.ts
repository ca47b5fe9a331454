// Deterministic keys for tests (seeded, never for production).
import { fixedClock, type Clock } from '@custody/core';
import { SIG_TYPE_COSIGNATURE_V1, SIG_TYPE_ED25519, generateSignerKey } from '../note/keys.js';
import { createCosignatureVerifier, createCosigner, createEd25519Signer, createEd25519Verifier, type NoteSigner, type NoteVerifier } from '../note/note.js';

export function seeded(seed: number): (n: number) => Uint8Array<ArrayBuffer> {
  let x = seed >>> 0 || 1;
  return (n) => {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      out[i] = x & 0xff;
    }
    return out;
  };
}

export interface TestKey {
  skey: string;
  vkey: string;
  signer: NoteSigner;
  verifier: NoteVerifier;
}

export async function testLogKey(name: string, seed = 1): Promise<TestKey> {
  const k = await generateSignerKey(name, SIG_TYPE_ED25519, seeded(seed));
  return { ...k, signer: await createEd25519Signer(k.skey), verifier: await createEd25519Verifier(k.vkey) };
}

export async function testWitnessKey(name: string, seed = 2, clock: Clock = fixedClock('2025-06-01T00:00:00Z')): Promise<TestKey> {
  const k = await generateSignerKey(name, SIG_TYPE_COSIGNATURE_V1, seeded(seed));
  return { ...k, signer: await createCosigner(k.skey, clock), verifier: await createCosignatureVerifier(k.vkey) };
}
