import { describe, expect, it } from 'vitest';
import { toBase64, toHex, utf8 } from '@custody/core';
import { EVENT_TYPES, codeLooksLikeSecret, decodeEvent, encodeEvent, looksLikeSecret, toCustodyEvent, validateEvent, type CustodyEvent } from './events.js';

const D = 'sha256:' + 'ab'.repeat(32);
const T = '2025-05-01T12:00:00Z';

const samples: CustodyEvent[] = [
  { v: 1, type: 'attestation.appraised', time: T, evidenceFormat: 'sev-snp', evidenceDigest: D, verdict: 'affirming', policyId: 'trainer-prod', reasons: ['ERR_TCB_OUT_OF_DATE'] },
  { v: 1, type: 'key.released', time: T, keyId: 'dataset/claims-2024', keyVersion: 3, workload: 'spiffe://custody/trainer', attestationDigest: D, policyId: 'release-v2', recipientKeyDigest: D, actor: 'broker-1' },
  { v: 1, type: 'key.denied', time: T, keyId: 'dataset/claims-2024', reason: 'ERR_EVIDENCE_DEBUG', requestId: '123e4567-e89b-12d3-a456-426614174000' },
  { v: 1, type: 'key.created', time: T, keyId: 'model/llm-weights', keyVersion: 1, algorithm: 'AES-256-GCM', store: 'pkcs11' },
  { v: 1, type: 'key.rotated', time: T, keyId: 'model/llm-weights', fromVersion: 1, toVersion: 2 },
  { v: 1, type: 'key.revoked', time: T, keyId: 'model/llm-weights', keyVersion: 1, reason: 'COMPROMISED' },
  { v: 1, type: 'policy.changed', time: T, policyId: 'release-v2', policyDigest: D, previousDigest: D, author: 'alice@example.com' },
  { v: 1, type: 'checkpoint.signed', time: T, modelId: 'llama-3.1-8b-ft', checkpointDigest: D, step: 1000, datasetDigests: [D, D], signer: 'trainer-0' },
  { v: 1, type: 'inference.receipt', time: T, receiptId: 'r-1', modelId: 'meta-llama/Llama-3.1-8B-Instruct', requestDigest: D, responseDigest: D, tokensIn: 12, tokensOut: 40 },
  { v: 1, type: 'gate.decision', time: T, gate: 'pii', decision: 'redact', subject: 'session-7', inputDigest: D, ruleIds: ['email', 'iban'] },
  { v: 1, type: 'operator.event', time: '2025-05-01T12:00:00.123Z', action: 'drill', subject: 'recovery', note: 'quarterly recovery drill completed', labels: { region: 'eu-west' } },
  {
    v: 1,
    type: 'audit.recorded',
    time: T,
    action: 'key.rotate',
    tenant: 'acme',
    verdict: 'deny',
    principal: { tenant: 'acme', subject: 'apikey:0123456789abcdef', role: 'admin' },
    key: { id: 'key_0123456789abcdef0123456789abcdef', name: 'claims', type: 'aes-256' },
    reason: 'ERR_POLICY_DENIED',
    detail: { policyDigest: D },
  },
];

describe('Custody events', () => {
  it('has a sample for every event type, each canonical and round-tripping', () => {
    expect(new Set(samples.map((s) => s.type))).toEqual(new Set(EVENT_TYPES));
    for (const s of samples) {
      const b = encodeEvent(s);
      expect(decodeEvent(b)).toEqual(s);
      const text = new TextDecoder().decode(b);
      expect(text.startsWith('{')).toBe(true);
      expect(text).not.toContain(' "');
    }
  });

  it('refuses unknown fields, wrong kinds and missing fields (ERR_TLOG_EVENT)', () => {
    const base = samples[1] as unknown as Record<string, unknown>;
    const bad: Record<string, unknown>[] = [
      { ...base, extra: 'x' },
      { ...base, v: 2 },
      { ...base, type: 'key.exported' },
      { ...base, time: '2025-05-01 12:00:00' },
      { ...base, keyVersion: -1 },
      { ...base, attestationDigest: 'sha256:ABC' },
      { ...base, keyId: '' },
      { ...base, keyId: 'has space' },
      { ...base, workload: undefined },
      { ...samples[0], verdict: 'great' },
      { ...samples[0], reasons: 'ERR_X' },
      { ...base, labels: { Upper: 'x' } },
    ];
    for (const b of bad) expect(() => encodeEvent(b), JSON.stringify(b).slice(0, 80)).toThrowError(expect.objectContaining({ code: 'ERR_TLOG_EVENT' }) as Error);
    expect(() => decodeEvent(utf8('{"v":1}'))).toThrowError(expect.objectContaining({ code: 'ERR_TLOG_EVENT' }) as Error);
    expect(() => decodeEvent(utf8(JSON.stringify(samples[4], null, 1)))).toThrowError(expect.objectContaining({ code: 'ERR_TLOG_EVENT' }) as Error);
  });

  it('refuses fields that look like key material or plaintext (ERR_TLOG_EVENT_SECRET)', () => {
    const base = samples[10] as unknown as Record<string, unknown>;
    const bad: Record<string, unknown>[] = [
      { ...base, privateKey: 'x' },
      { ...base, prompt: 'what is my password' },
      { ...base, labels: { secret: 'x' } },
      { ...base, labels: { d: 'x' } },
      { ...base, labels: { api_token: 'x' } },
      { ...base, note: '-----BEGIN PRIVATE KEY-----' },
      { ...base, note: 'key is 3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA0=' },
      { ...base, note: '{"kty":"OKP","d":"abc"}' },
      { ...base, note: 'a'.repeat(20) + 'b1c2d3e4' },
      { ...base, subject: 'k_' + 'ab12'.repeat(10) },
      { ...base, subject: 'ab'.repeat(32) },
      { ...base, labels: { region: 'sk-proj-Ab12Cd34Ef56Gh78Ij90Kl12' } },
    ];
    for (const b of bad) expect(() => encodeEvent(b), JSON.stringify(b).slice(0, 90)).toThrowError(expect.objectContaining({ code: 'ERR_TLOG_EVENT_SECRET' }) as Error);
    expect(looksLikeSecret('meta-llama/Llama-3.1-8B-Instruct')).toBe(false);
    expect(looksLikeSecret('123e4567-e89b-12d3-a456-426614174000')).toBe(false);
    expect(looksLikeSecret('confidential-inference-gateway-eu-west-1')).toBe(false);
  });

  it('validates without encoding', () => {
    expect(validateEvent(samples[0]).type).toBe('attestation.appraised');
    expect(() => validateEvent(null)).toThrowError(expect.objectContaining({ code: 'ERR_TLOG_EVENT' }) as Error);
    expect(() => validateEvent([])).toThrowError(expect.objectContaining({ code: 'ERR_TLOG_EVENT' }) as Error);
  });

  it('a member named like an Object.prototype property is unknown, not a field (no schema or secrets-rule bypass, no crash)', () => {
    // Parsed from JSON, as the ledger's POST /events and `log append --event` read them: own members.
    const audit = JSON.stringify(samples[11]);
    const operator = JSON.stringify(samples[10]);
    const key = 'ab'.repeat(32);
    const bad = [
      operator.replace('{', '{"constructor":1,'),
      operator.replace('{', '{"toString":"x",'),
      operator.replace('{', '{"__proto__":{"x":1},'),
      audit.replace('"principal":{', `"principal":{"toString":"${key}",`),
      audit.replace('"principal":{', '"principal":{"constructor":{"any":["thing"]},'),
      audit.replace('"key":{', '"key":{"__proto__":"x",'),
      audit.replace('"key":{', '"key":{"hasOwnProperty":"x",'),
    ];
    for (const text of bad) {
      expect(text).not.toBe(audit);
      expect(() => encodeEvent(JSON.parse(text) as Record<string, unknown>), text.slice(0, 90)).toThrowError(expect.objectContaining({ code: 'ERR_TLOG_EVENT' }) as Error);
    }
    // An entry already in a log with such a member is refused by readers too (monitor --events).
    expect(() => decodeEvent(utf8(`{"action":"key.release","principal":{"role":"admin","subject":"s","tenant":"demo","toString":"${key}"},"tenant":"demo","time":"${T}","type":"audit.recorded","v":1,"verdict":"allow"}`))).toThrowError(
      expect.objectContaining({ code: 'ERR_TLOG_EVENT' }) as Error,
    );
  });
});

describe('service audit records (the key broker AuditEvent shape)', () => {
  const brokerEvent = {
    v: 1 as const,
    action: 'key.release',
    time: '2025-05-01T12:00:00.123Z',
    actor: { tenant: 'acme', subject: 'session:sess_0123456789abcdef0123456789abcdef', role: 'workload' },
    tenant: 'acme',
    key: { id: 'key_0123456789abcdef0123456789abcdef', name: 'claims 2024', type: 'aes-256', version: 2 },
    verdict: 'allow' as const,
    detail: {
      policyDigest: 'sha256:' + 'ab'.repeat(32),
      measurement: 'cd'.repeat(48),
      sessionId: 'sess_0123456789abcdef0123456789abcdef',
      reason: 'suspected compromise',
      auditFallback: true,
      attempts: 2,
    },
  };

  it('maps to an audit.recorded event that round-trips', () => {
    const e = toCustodyEvent(brokerEvent);
    expect(e.type).toBe('audit.recorded');
    expect(decodeEvent(encodeEvent(brokerEvent))).toEqual(e);
    expect(encodeEvent(e)).toEqual(encodeEvent(brokerEvent));
  });

  it('still refuses key material in any of its fields', () => {
    const bad = [
      { ...brokerEvent, detail: { ...brokerEvent.detail, wrapped: 'q83vAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA1=' } },
      { ...brokerEvent, detail: { ...brokerEvent.detail, dataKey: 'ab'.repeat(32) } },
      { ...brokerEvent, detail: { ...brokerEvent.detail, privateKeyPem: '-----BEGIN PRIVATE KEY-----' } },
      { ...brokerEvent, key: { ...brokerEvent.key, id: 'key_' + 'ab'.repeat(32) } },
      { ...brokerEvent, actor: { ...brokerEvent.actor, password: 'x' } },
    ];
    for (const b of bad) expect(() => encodeEvent(b), JSON.stringify(b).slice(0, 120)).toThrowError(expect.objectContaining({ code: 'ERR_TLOG_EVENT_SECRET' }) as Error);
    expect(() => encodeEvent({ ...brokerEvent, verdict: 'maybe' })).toThrowError(expect.objectContaining({ code: 'ERR_TLOG_EVENT' }) as Error);
    expect(() => encodeEvent(null as unknown as typeof brokerEvent)).toThrowError(expect.objectContaining({ code: 'ERR_TLOG_EVENT' }) as Error);
  });
});

describe('key material split by separators or shaped as a code (review regressions)', () => {
  // A fixed 32-byte "key" in the encodings a mistake would produce.
  const key = new Uint8Array(32).map((_, i) => (i * 37 + 11) & 0xff);
  const hex = toHex(key);
  const b64 = toBase64(key);
  const b32 = (() => {
    const A = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
    let bits = 0;
    let v = 0;
    let o = '';
    for (const b of key) {
      v = ((v << 8) | b) & 0xffff;
      bits += 8;
      while (bits >= 5) {
        o += A[(v >>> (bits - 5)) & 31];
        bits -= 5;
      }
    }
    return bits > 0 ? o + A[(v << (5 - bits)) & 31] : o;
  })();
  const chunk = (s: string, n: number, sep: string) => s.match(new RegExp(`.{1,${n}}`, 'g'))!.join(sep);
  const op = { v: 1, type: 'operator.event', time: T, action: 'a', subject: 's' };
  const audit = { v: 1, action: 'x', time: T, actor: { tenant: 't', subject: 's', role: 'r' }, tenant: 't', verdict: 'allow' };

  it('refuses them in codes, identifiers, text, labels, key names and id-named facts (ERR_TLOG_EVENT_SECRET)', () => {
    const bad: [string, Record<string, unknown>][] = [
      ['code = K + base32', { v: 1, type: 'key.denied', time: T, keyId: 'k1', reason: 'K' + b32 }],
      ['code = raw key in uppercase hex', { v: 1, type: 'key.revoked', time: T, keyId: 'k1', reason: 'K' + hex.toUpperCase().slice(0, 63) }],
      ['codes = hex halves', { ...samples[0], reasons: ['X' + hex.slice(0, 32).toUpperCase(), 'X' + hex.slice(32).toUpperCase()] }],
      ['code = hex in _ groups', { ...samples[9], reason: 'ERR_' + chunk(hex.slice(0, 40).toUpperCase(), 8, '_') }],
      ['code = base32 in _ groups', { ...samples[9], reason: 'E_' + chunk(b32, 8, '_') }],
      ['id = hex split by "."', { ...op, subject: chunk(hex, 32, '.') }],
      ['id = base64 split by "/"', { ...op, subject: chunk(b64.replace(/=+$/, ''), 22, '/') }],
      ['id = hex split by ":"', { ...op, subject: chunk(hex, 2, ':') }],
      ['text = hex in groups of 16', { ...op, note: chunk(hex, 16, ' ') }],
      ['text = OpenSSL-style hex bytes', { ...op, note: 'key: ' + chunk(hex, 2, ':') }],
      ['label = base64 in groups of 16', { ...op, labels: { x: chunk(b64, 16, ' ') } }],
      ['label = base32 in groups of 4', { ...op, labels: { x: chunk(b32.slice(0, 32), 4, ' ') } }],
      ['keyref.name = hex in groups of 16', { ...audit, key: { id: 'k', name: chunk(hex, 16, ' '), type: 'aes' } }],
      ['fact named ...Id = hex split by "-"', { ...audit, detail: { blobId: chunk(hex, 32, '-') } }],
      ['fact = hex split by spaces', { ...audit, detail: { note: chunk(hex, 8, ' ') } }],
    ];
    for (const [name, b] of bad) expect(() => encodeEvent(b), name).toThrowError(expect.objectContaining({ code: 'ERR_TLOG_EVENT_SECRET' }) as Error);
  });

  it('by design, digest fields and hash-named facts hold 32 opaque bytes (producers pass digests)', () => {
    expect(() => encodeEvent({ ...op, digest: 'sha256:' + hex })).not.toThrow();
    expect(() => encodeEvent({ ...audit, detail: { wrapHash: hex } })).not.toThrow();
    // ...but only of a hash length and only under such a name.
    expect(() => encodeEvent({ ...audit, detail: { wrap: hex } })).toThrowError(expect.objectContaining({ code: 'ERR_TLOG_EVENT_SECRET' }) as Error);
  });

  it('still accepts what Custody services log: identifiers, codes, names, versions and UUIDs', () => {
    const good: Record<string, unknown>[] = [
      { ...samples[1], keyId: 'key_0123456789abcdef0123456789abcdef', workload: 'spiffe://custody.example.com/ns/production/sa/trainer-worker' },
      { ...samples[2], requestId: 'ses_123e4567-e89b-42d3-a456-426614174000', reason: 'ERR_STORE_AUDIT_UNAVAILABLE' },
      { ...samples[0], policyId: 'custody:policy:gateway-default-inference-policy:12', reasons: ['ERR_TCB_OUT_OF_DATE', 'ERR_EVIDENCE_SIMULATED', 'ERR_TPM2_PCR_MISMATCH', 'ECDSA_P384_SHA384', 'AES256GCM_TAG'] },
      { ...samples[8], receiptId: '0193a1b2-c3d4-8e5f-a6b7-c8d9e0f1a2b3', modelId: 'meta-llama/Llama-3.1-8B-Instruct' },
      { ...samples[1], keyId: 'arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab' },
      { ...op, note: 'upgraded OpenSSL 3.0.13, PostgreSQL 16.2 and TypeScript 5.4 on GitHub runners' },
      { ...op, note: 'window 2025-06-01T00:00:00Z 2025-06-02T00:00:00Z, ticket SEC-1234, request 123e4567-e89b-12d3-a456-426614174000' },
      { ...op, note: 'drained node1 node2 node3 node4 in eu-west-1; client 2001:db8:85a3::8a2e:370:7334' },
      { ...op, labels: { algorithms: 'AES-256-GCM X25519 P-256 SHA-384 Ed25519 RSA-PSS-2048', pod: 'trainer-7f9c8b6d5-x2v4q' } },
      { ...audit, actor: { tenant: 'acme', subject: 'session:sess_0123456789abcdef0123456789abcdef', role: 'workload' }, detail: { session: 'ses_123e4567-e89b-42d3-a456-426614174000', apiKeyId: '0123456789abcdef', name: 'claims 2024 q1', earDigest: hex } },
    ];
    for (const g of good) expect(() => encodeEvent(g), JSON.stringify(g).slice(0, 100)).not.toThrow();
    expect(codeLooksLikeSecret('ERR_EVIDENCE_DETERMINISTIC_SIGNATURE')).toBe(false);
    expect(codeLooksLikeSecret('ERR_' + 'A'.repeat(25))).toBe(true);
  });
});
