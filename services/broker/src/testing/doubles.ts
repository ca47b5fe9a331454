// Test doubles for the interfaces other packages implement (ledger sink, CEL evaluator) and the
// TEE side of a release. Real, minimal implementations for tests only; not part of the build.
import { createHash, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { canonicalize, concatBytes, copyBytes, CustodyError, deserializeHpkePrivateKey, unwrapKey, type Bytes } from '@custody/core';
import type { AuditEvent, AuditSink } from '../audit/types.js';
import type { ReleasePolicyDecision, ReleasePolicyEvaluator, ReleasePolicyInput } from '../keys/release-policy.js';
import { HPKE_KEY_WRAP_SCHEME, HPKE_SUITES, HpkeKeyWrapper } from '../keystore/hpke-key-wrapper.js';
import { openPkcs11Release, PKCS11_RELEASE_SCHEME } from '../keystore/pkcs11/release-scheme.js';
import type { KeyWrapper, RecipientKey, ReleaseContext, WrappedKey } from '../keystore/types.js';

/** In-memory, append-only AuditSink TEST DOUBLE (stands in for the ledger). */
export class InMemoryAuditSinkTestDouble implements AuditSink {
  readonly events: AuditEvent[] = [];
  readonly lines: string[] = [];
  /** When true, append rejects (the ledger is down). */
  failing = false;
  /** Awaited before each append (to hold a request in flight). */
  beforeAppend: ((event: AuditEvent) => Promise<void>) | undefined;

  async append(event: AuditEvent): Promise<{ index: number }> {
    if (this.beforeAppend) await this.beforeAppend(event);
    if (this.failing) throw new CustodyError('ERR_TLOG_UNAVAILABLE', 'test double: audit sink down');
    const line = canonicalize(event);
    this.lines.push(line);
    this.events.push(JSON.parse(line) as AuditEvent);
    return { index: this.events.length - 1 };
  }
}

/** Records every plaintext handed to the wrapper (so tests can scan for it), then delegates. */
export class RecordingKeyWrapper implements KeyWrapper {
  readonly seen: Bytes[] = [];
  constructor(private readonly inner: KeyWrapper = new HpkeKeyWrapper()) {}

  async wrapKey(recipient: RecipientKey, material: Uint8Array, context: ReleaseContext): Promise<WrappedKey> {
    this.seen.push(copyBytes(material));
    return this.inner.wrapKey(recipient, material, context);
  }
}

/** The TEE side of a release: opens either scheme with the TEE private key and the context. */
export async function openRelease(tee: { privateKey: KeyObject; recipient: RecipientKey }, released: { wrapped: WrappedKey; context: ReleaseContext }): Promise<Bytes> {
  if (released.wrapped.scheme === PKCS11_RELEASE_SCHEME) return openPkcs11Release(tee.privateKey, released.wrapped.payload, released.context);
  if (released.wrapped.scheme !== HPKE_KEY_WRAP_SCHEME) throw new Error(`unknown release scheme ${released.wrapped.scheme}`);
  const d = Buffer.from(tee.privateKey.export({ format: 'jwk' }).d!, 'base64url');
  const pair = await deserializeHpkePrivateKey(HPKE_SUITES[tee.recipient.curve].kem, d);
  return unwrapKey(released.wrapped.payload, { recipientKeyPair: pair, context: released.context });
}

/** A TEE key pair for tests: the private KeyObject and the RecipientKey to send. */
export function teeKeyPair(curve: 'P-256' | 'X25519' = 'P-256'): { privateKey: KeyObject; recipient: RecipientKey } {
  if (curve === 'P-256') {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const jwk = publicKey.export({ format: 'jwk' });
    const point = concatBytes(Uint8Array.of(4), Buffer.from(jwk.x!, 'base64url'), Buffer.from(jwk.y!, 'base64url'));
    return { privateKey, recipient: { curve, publicKey: point } };
  }
  const { privateKey, publicKey } = generateKeyPairSync('x25519');
  return { privateKey, recipient: { curve, publicKey: copyBytes(publicKey.export({ format: 'der', type: 'spki' }).subarray(-32)) } };
}

/**
 * ReleasePolicyEvaluator TEST DOUBLE standing in for CEL: accepts `true`, `false`, or clauses
 * `ear.<dotted.path> == "<string>"` / `== true|false` joined by `&&`.
 */
export class MiniPolicyEvaluatorTestDouble implements ReleasePolicyEvaluator {
  /** Awaited before each evaluation (to hold a release in flight). */
  beforeEvaluate: (() => Promise<void>) | undefined;

  async validate(expression: string): Promise<void> {
    await Promise.resolve();
    parse(expression);
  }

  async evaluate(expression: string, input: ReleasePolicyInput): Promise<ReleasePolicyDecision> {
    if (this.beforeEvaluate) await this.beforeEvaluate();
    for (const clause of parse(expression)) {
      if (clause === true) continue;
      if (clause === false) return { allow: false, reason: 'false' };
      let v: unknown = input.ear;
      for (const part of clause.path) v = v !== null && typeof v === 'object' ? (v as Record<string, unknown>)[part] : undefined;
      if (v !== clause.value) return { allow: false, reason: `ear.${clause.path.join('.')}` };
    }
    return { allow: true };
  }
}

type Clause = true | false | { path: string[]; value: string | boolean };

function parse(expression: string): Clause[] {
  return expression.split('&&').map((raw) => {
    const t = raw.trim();
    if (t === 'true') return true;
    if (t === 'false') return false;
    const m = /^ear\.([A-Za-z0-9_.-]+)\s*==\s*(?:"([^"]*)"|(true|false))$/.exec(t);
    if (!m) throw new CustodyError('ERR_POLICY_INVALID', 'test double understands only ear.<path> == "<value>" clauses');
    return { path: m[1]!.split('.'), value: m[2] !== undefined ? m[2] : m[3] === 'true' };
  });
}

export function sha256Hex(b: Uint8Array | string): string {
  return createHash('sha256').update(b).digest('hex');
}
