import { describe, expect, it } from 'vitest';
import { utf8 } from '@custody/core';
import { MaskVault } from '@custody/policy';
import { OhttpKeyRing } from '../keys/gateway-keys.js';
import { applyInputPolicy, restoreJson, restoreSseStream } from './policy.js';
import { REPLAY_MARGIN_MS, ReplayGuard } from './replay-guard.js';
import { apiKeyDigest, TenantDirectory } from './tenants.js';

async function runStream(chunks: string[], vault: MaskVault, route: 'chat.completions' | 'completions' = 'chat.completions'): Promise<string> {
  const src = new ReadableStream<Uint8Array>({
    start(c) {
      for (const x of chunks) c.enqueue(utf8(x));
      c.close();
    },
  });
  const out = await new Response(src.pipeThrough(restoreSseStream(route, vault))).text();
  return out;
}

function contents(sse: string): string {
  return sse
    .split('\n\n')
    .filter((e) => e.startsWith('data: {'))
    .map((e) => {
      const o = JSON.parse(e.slice(6)) as { choices: { delta?: { content?: string }; text?: string }[] };
      return o.choices.map((c) => c.delta?.content ?? c.text ?? '').join('');
    })
    .join('');
}

const ev = (content: string, finish: string | null = null) => `data: ${JSON.stringify({ choices: [{ index: 0, delta: { content }, finish_reason: finish }] })}\n\n`;

describe('output policy', () => {
  const vault = new MaskVault();
  const token = vault.tokenFor('email', 'bob@example.com');

  it('restores tokens split across events and bytes, and flushes a held-back tail at [DONE]', async () => {
    const sse = ev('Mail ') + ev(token.slice(0, 4)) + ev(token.slice(4)) + ev(' then [EMA') + 'data: [DONE]\n\n';
    const bytes = [sse.slice(0, 10), sse.slice(10, 77), sse.slice(77)];
    const out = await runStream(bytes, vault);
    expect(contents(out)).toBe('Mail bob@example.com then [EMA');
    expect(out.trimEnd().endsWith('data: [DONE]')).toBe(true);
  });

  it('passes non-JSON events through and restores completions text', async () => {
    expect(await runStream([': keepalive\n\n', 'event: ping\ndata: x\n\n'], vault)).toBe(': keepalive\n\nevent: ping\ndata: x\n\n');
    const c = `data: ${JSON.stringify({ choices: [{ index: 0, text: `to ${token}`, finish_reason: 'stop' }] })}\n\n`;
    expect(contents(await runStream([c], vault, 'completions'))).toBe('to bob@example.com');
  });

  it('restores whole JSON responses and leaves them alone when nothing was masked', () => {
    const body = utf8(JSON.stringify({ choices: [{ index: 0, message: { content: `hi ${token}` } }] }));
    expect(new TextDecoder().decode(restoreJson('chat.completions', body, vault))).toContain('hi bob@example.com');
    expect(restoreJson('chat.completions', body, new MaskVault())).toBe(body);
  });
});

describe('input policy', () => {
  it('masks every model-readable text with one vault, forwards the original bytes when nothing changes', async () => {
    const dir = await TenantDirectory.create({ id: 'p', version: 1, tenants: [{ id: 't', apiKeySha256: apiKeyDigest('sk-0123456789'), pii: { defaultAction: 'mask' } }] });
    const tenant = dir.authenticate('Bearer sk-0123456789');
    const json = { model: 'm', messages: [{ role: 'user', content: 'mail bob@example.com' }, { role: 'user', content: [{ type: 'text', text: 'again bob@example.com' }] }] };
    const r = applyInputPolicy('chat.completions', json, utf8(JSON.stringify(json)), tenant, { model: 'm', stream: false });
    const sent = new TextDecoder().decode(r.body);
    expect(sent.match(/\[EMAIL_1\]/g)).toHaveLength(2);
    expect(sent).not.toContain('bob@');
    expect(r.findings).toEqual([{ category: 'email', action: 'mask', count: 2 }]);
    const clean = { model: 'm', input: ['nothing personal here'] };
    const raw = utf8(JSON.stringify(clean));
    const r2 = applyInputPolicy('embeddings', clean, raw, tenant, { model: 'm', stream: false });
    expect(r2.body).toBe(raw);
    expect(r2.action).toBe('none');
  });

  it('authenticates in constant time over all tenants and refuses unknown keys', async () => {
    const dir = await TenantDirectory.create({ id: 'p', version: 2, tenants: [1, 2, 3].map((i) => ({ id: `t${i}`, apiKeySha256: apiKeyDigest(`sk-tenant-${i}-key`) })) });
    expect(dir.authenticate('Bearer sk-tenant-2-key').id).toBe('t2');
    expect(() => dir.authenticate(undefined)).toThrow(expect.objectContaining({ code: 'ERR_AUTH_REQUIRED' }) as Error);
    expect(() => dir.authenticate('Bearer sk-tenant-9-key')).toThrow(expect.objectContaining({ code: 'ERR_AUTH_INVALID' }) as Error);
    expect(() => dir.authenticate('Basic abc')).toThrow(expect.objectContaining({ code: 'ERR_AUTH_INVALID' }) as Error);
    expect(dir.policyVersion).toMatch(/^custody:gateway-policy:p:2:sha256:[0-9a-f]{64}$/);
    await expect(TenantDirectory.create('id: x\nversion: 1\ntenants: []\n')).rejects.toMatchObject({ code: 'ERR_POLICY_INVALID' });
  });
});

describe('replay guard and key ring', () => {
  it('remembers enc values for twice the window plus the margin, then forgets them; refuses when full', () => {
    let t = 0;
    const g = new ReplayGuard(() => new Date(t), 1000, 2);
    g.commit(new Uint8Array([1]));
    expect(() => g.commit(new Uint8Array([1]))).toThrow(expect.objectContaining({ code: 'ERR_GATEWAY_REPLAY' }) as Error);
    g.commit(new Uint8Array([2]));
    expect(() => g.commit(new Uint8Array([3]))).toThrow(expect.objectContaining({ code: 'ERR_GATEWAY_OVERLOADED' }) as Error);
    t = 2000 + REPLAY_MARGIN_MS - 1;
    expect(() => g.commit(new Uint8Array([1]))).toThrow(expect.objectContaining({ code: 'ERR_GATEWAY_REPLAY' }) as Error);
    t = 2000 + REPLAY_MARGIN_MS + 1;
    g.commit(new Uint8Array([1]));
    expect(g.size).toBe(1);
  });

  it('rotates with fresh ids; retired keys are published through their grace period, and decapsulate until an attestation without them is published', async () => {
    let t = 0;
    const ring = new OhttpKeyRing(() => new Date(t), 1000, 254);
    const a = await ring.rotate();
    const b = await ring.rotate();
    expect(ring.nextRetirement()).toBe(1000);
    t = 500;
    const c = await ring.rotate();
    expect([a, b, c].map((k) => k.config.keyId)).toEqual([254, 255, 0]);
    expect(ring.active.map((k) => k.config.keyId)).toEqual([0, 255, 254]);
    expect(ring.configs.map((k) => k.keyId)).toEqual([0, 255, 254]);
    // An attestation published while every key is in grace drops none.
    expect(ring.dropUnpublished(ring.configs)).toEqual([]);
    t = 1000;
    // 254's grace ended: no longer published, still decapsulating until an attestation without it is out.
    const published = ring.configs;
    expect(published.map((k) => k.keyId)).toEqual([0, 255]);
    // Past its grace but still held: the next round is due now (the manager waits a second).
    expect(ring.nextRetirement()).toBe(1000);
    expect(ring.active.map((k) => k.config.keyId)).toEqual([0, 255, 254]);
    t = 1600;
    // That attestation bound 255 (its grace ended while it was made): 255 stays until the next one.
    expect(ring.dropUnpublished(published)).toEqual([254]);
    expect(ring.active.map((k) => k.config.keyId)).toEqual([0, 255]);
    expect(ring.nextRetirement()).toBe(1500);
    expect(ring.dropUnpublished(ring.configs)).toEqual([255]);
    expect(ring.nextRetirement()).toBeUndefined();
    expect(ring.active.map((k) => k.config.keyId)).toEqual([0]);
    // A configuration with the same id but another key does not keep a key.
    await ring.rotate();
    t = 3000;
    expect(ring.dropUnpublished([{ ...c.config, publicKey: new Uint8Array(c.config.publicKey.length) }])).toEqual([0]);
    ring.remove(1);
    expect(ring.active).toHaveLength(0);
  });
});
