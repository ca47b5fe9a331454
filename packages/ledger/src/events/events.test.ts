import { describe, expect, it } from 'vitest';
import { utf8 } from '@custody/core';
import { EVENT_TYPES, decodeEvent, encodeEvent, looksLikeSecret, toCustodyEvent, validateEvent, type CustodyEvent } from './events.js';

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
