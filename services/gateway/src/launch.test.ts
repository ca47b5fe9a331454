import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyReceipt, parseRuntimeData, type AttestationBundle } from '@custody/sdk';
import { DEV_LEDGER_RETAIN, launchGateway, launchRelay, runConfidentialRequest, type LaunchedGateway } from './launch.js';
import { InMemoryLedgerSink } from './ledger/ledger-sink.js';
import { createGatewayLogger } from './observability/logger.js';

describe('launchGateway (what `custody gateway serve` and `custody up` start)', () => {
  let g: LaunchedGateway;
  const logs: string[] = [];
  beforeAll(async () => {
    g = await launchGateway({ port: 0, apiKey: 'sk-launch-test-0001', logger: createGatewayLogger({ destination: { write: (s: string) => void logs.push(s) } }) });
  });
  afterAll(async () => {
    await g.close();
  });

  it('starts attested with zero setup, labels SIMULATED, and answers one confidential request with a verifiable receipt', async () => {
    expect(g.simulated).toBe(true);
    expect(g.summary.join('\n')).toContain('SIMULATED');
    expect(g.summary.join('\n')).toContain('custody-demo (not a real LLM)');
    const r = await runConfidentialRequest({ url: g.url, jwks: g.jwks, apiKey: g.apiKey!, allowSimulated: true }, 'Please summarise: the shipment to Lyon is late');
    expect(r.answer).toContain('custody-demo (not a real LLM)');
    expect(r.verificationText).toContain('VERIFIED');
    const bundle = (await (await fetch(`${g.url}/.well-known/custody/attestation`)).json()) as AttestationBundle;
    expect(parseRuntimeData(bundle.runtimeData).value['receipt-key'].x).toBe(bundle.receiptKey.x);
    await expect(verifyReceipt(r.receipt, bundle.receiptKey)).resolves.toMatchObject({ tenant: 'demo' });
  });

  it('logs to a bounded in-memory development log by default, and says so', async () => {
    expect(g.ledger).toBeInstanceOf(InMemoryLedgerSink);
    const dev = g.ledger as InMemoryLedgerSink;
    expect(g.summary.join('\n')).toContain(`in-memory development log (not persistent; keeps the last ${DEV_LEDGER_RETAIN} entries`);
    // Fill it past twice the window with valid events: what it holds stays bounded, proofs do not stop.
    const before = dev.size;
    for (let i = 0; i < 2 * DEV_LEDGER_RETAIN; i++) await dev.append({ v: 1, type: 'gate.decision', time: '2026-11-27T10:00:00.000Z', actor: 'custody-gateway', gate: 'gateway.input-policy', decision: 'allow', subject: 'demo', inputDigest: 'sha256:' + '0b'.repeat(32) });
    expect(dev.size).toBe(before + 2 * DEV_LEDGER_RETAIN);
    expect(dev.entries.length).toBeLessThan(2 * DEV_LEDGER_RETAIN);
    expect(dev.firstRetained).toBeGreaterThan(0);
    await expect(dev.proof(0)).resolves.toMatchObject({ index: 0 });
  });

  it('refuses a client that does not accept simulated evidence', async () => {
    await expect(runConfidentialRequest({ url: g.url, jwks: g.jwks, apiKey: g.apiKey! }, 'x')).rejects.toMatchObject({ code: 'ERR_EVIDENCE_SIMULATED' });
  });

  it('a relay in front of it forwards discovery', async () => {
    const relay = await launchRelay({ gateway: g.url, port: 0 });
    try {
      const res = await fetch(`${relay.url}/.well-known/custody/attestation`);
      expect(res.status).toBe(200);
      expect(((await res.json()) as AttestationBundle).format).toBe('custody.dev/attestation-bundle/v1');
    } finally {
      await relay.close();
    }
  });
});
