import { describe, expect, it } from 'vitest';
import { encodeEvent, parseTlogPolicy, verifyTlogProof, type CustodyEvent } from '@custody/ledger';
import { createConfidentialFetch, digestOf, prepareReceipt, RECEIPT_FORMAT, receiptLedgerEvent, verifyReceiptInclusion, type Receipt, type ReceiptBody } from '@custody/sdk';
import { toHex } from '@custody/core';
import { createHash } from 'node:crypto';
import { startTestGateway } from '../testing/index.js';
import { InMemoryLedgerSink, type LedgerSink } from './ledger-sink.js';

const hex = (b: Uint8Array) => 'sha256:' + createHash('sha256').update(b).digest('hex');

describe('InMemoryLedgerSink', () => {
  it('hands back a copy of the entry bytes it stored, equal to the encoded event', async () => {
    const sink = await InMemoryLedgerSink.create();
    const body: ReceiptBody = {
      format: RECEIPT_FORMAT,
      tenant: 'acme',
      route: 'chat.completions',
      gateway: { platform: 'sim', simulated: true, measurements: { measurement: '00'.repeat(48) }, attestationDigest: 'sha256:' + 'ab'.repeat(32) },
      model: { id: 'm', backend: 'upstream' },
      policy: { version: '1', action: 'none', findings: [] },
      request: { digest: 'sha256:' + '01'.repeat(32) },
      response: { digest: 'sha256:' + '02'.repeat(32), status: 200, streamed: false },
      timestamps: { receivedAt: '2026-11-26T10:00:00.000Z', completedAt: '2026-11-26T10:00:00.001Z' },
    };
    const event = receiptLedgerEvent(body, prepareReceipt(body).receiptId);
    const expected = encodeEvent(event);
    const { index, entry } = await sink.append(event);
    expect(toHex(entry)).toBe(toHex(expected));
    expect(toHex(sink.entries[index]!)).toBe(toHex(expected));
    entry.fill(0);
    expect(toHex(sink.entries[index]!)).toBe(toHex(expected));
  });

  it('with retain, keeps only recent entries in memory, and still proves every index', async () => {
    const sink = await InMemoryLedgerSink.create(undefined, undefined, { retain: 4 });
    const event = (i: number): CustodyEvent => ({ v: 1, type: 'gate.decision', time: '2026-11-27T10:00:00.000Z', actor: 'custody-gateway', gate: 'gateway.input-policy', decision: 'allow', subject: `tenant-${i}`, inputDigest: 'sha256:' + '0a'.repeat(32) });
    const stored: Uint8Array[] = [];
    for (let i = 0; i < 11; i++) {
      const { index, entry } = await sink.append(event(i));
      expect(index).toBe(i);
      stored.push(entry);
      // Never more than twice `retain` held, never fewer than `retain` (once there are that many).
      expect(sink.entries.length).toBeLessThan(8);
      expect(sink.entries.length).toBeGreaterThanOrEqual(Math.min(i + 1, 4));
      expect(sink.events).toHaveLength(sink.entries.length);
    }
    expect(sink.size).toBe(11);
    expect(sink.firstRetained).toBe(4);
    expect(sink.events[0]).toMatchObject({ subject: 'tenant-4' });
    for (let i = 4; i < 11; i++) expect(toHex(await sink.entry(i))).toBe(toHex(stored[i]!));
    await expect(sink.entry(3)).rejects.toMatchObject({ code: 'ERR_TLOG_ENTRY', message: expect.stringContaining('no longer retained') as string });
    await expect(sink.entry(11)).rejects.toMatchObject({ code: 'ERR_TLOG_ENTRY', message: expect.stringContaining('no such entry') as string });
    const policy = parseTlogPolicy(sink.tlogPolicyText);
    for (const i of [0, 3, 4, 10]) {
      await expect(verifyTlogProof(await sink.proof(i), { entry: stored[i]! }, policy, { now: new Date() })).resolves.toMatchObject({ index: i });
      await expect(verifyTlogProof(await sink.proof(i), { entry: stored[(i + 1) % 11]! }, policy, { now: new Date() })).rejects.toMatchObject({ code: 'ERR_TLOG_INCLUSION' });
    }
    await expect(InMemoryLedgerSink.create(undefined, undefined, { retain: 0 })).rejects.toMatchObject({ code: 'ERR_USAGE' });
    await expect(InMemoryLedgerSink.create(undefined, undefined, { retain: 1.5 })).rejects.toMatchObject({ code: 'ERR_USAGE' });
  });
});

describe('receipt entry digest', () => {
  async function receiptThrough(ledger?: LedgerSink) {
    const gw = await startTestGateway(ledger ? { gateway: { ledger } } : {});
    try {
      const receipts: Receipt[] = [];
      const cfetch = createConfidentialFetch({ gateway: gw.url, jwks: gw.jwks!, allowSimulated: true, onReceipt: (r) => receipts.push(r) });
      const res = await cfetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${gw.apiKey}` }, body: JSON.stringify({ model: 'custody-demo', messages: [{ role: 'user', content: 'hello there' }] }) });
      await res.arrayBuffer();
      const r = await cfetch.receiptOf(res)!;
      return { gw, r };
    } finally {
      await gw.close();
    }
  }

  it('is the digest of the stored entry and of the event rebuilt from the receipt, and the entry proves', async () => {
    const { gw, r } = await receiptThrough();
    const stored = gw.ledger.entries[r.ledger!.index]!;
    expect(r.ledger!.entryDigest).toBe(hex(stored));
    expect(r.ledger!.entryDigest).toBe(await digestOf(encodeEvent(receiptLedgerEvent(r, r.receiptId))));
    const proof = await gw.ledger.proof(r.ledger!.index);
    await expect(verifyReceiptInclusion(r, proof, parseTlogPolicy(gw.ledger.tlogPolicyText), { now: new Date() })).resolves.toMatchObject({ index: r.ledger!.index });
  });

  it('is the same when the sink returns only the index (the gateway encodes the event itself)', async () => {
    const inner = await InMemoryLedgerSink.create();
    const indexOnly: LedgerSink = {
      append: async (e) => ({ index: (await inner.append(e as CustodyEvent)).index }),
      entry: (i) => inner.entry(i),
      proof: (i) => inner.proof(i),
    };
    const { r } = await receiptThrough(indexOnly);
    const stored = inner.entries[r.ledger!.index]!;
    expect(r.ledger!.entryDigest).toBe(hex(stored));
    expect(r.ledger!.entryDigest).toBe(await digestOf(encodeEvent(receiptLedgerEvent(r, r.receiptId))));
  });
});
