// The deployed topology, each service its own server on loopback: the transparency ledger
// (`custody log serve --writers FILE`), the key broker service (`custody broker serve --ledger
// URL`) and the gateway (`custody gateway serve --broker URL --ledger URL`), each writer with
// its own key. The broker and the gateway log to
// the same ledger over HTTP, so a client in strict mode proves the gateway's appraisal from it,
// and every receipt is an entry of it. Without its ledger the gateway forwards nothing.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CustodyError } from '@custody/core';
import { SIG_TYPE_ED25519, decodeEvent, generateSignerKey, parseTlogPolicy } from '@custody/ledger';
import { HttpAuditSink, createEventsNodeHandler, createLogApp, listen as listenLog, newWriterKey, openLog, parseWriters, type RunningServer, type TransparencyLog } from '@custody/ledger-service';
import { BrokerAdminClient, rotateEarKeyFile, startBroker, type StartedBroker } from '@custody/broker-service';
import { createConfidentialFetch, fetchAttestationBundle, verifyGatewayBundle, verifyReceiptInclusion, type AttestationBundle, type Receipt } from '@custody/sdk';
import { launchGateway, type LaunchedGateway } from './launch.js';
import { sha256Digest } from './pipeline/inference.js';
import { simPolicyYaml, startFakeUpstream, type FakeUpstream } from './testing/index.js';

const M = 'c3'.repeat(48);
const silent = pino({ level: 'silent' });
/** Every log line of the broker and the gateway, to check that no writer key is in them. */
const logLines: string[] = [];
const captured = pino({ level: 'debug' }, { write: (line: string) => void logLines.push(line) });

describe('ledger, broker and gateway as separate services, one ledger over HTTP', () => {
  const dir = mkdtempSync(join(tmpdir(), 'custody-separate-'));
  let log: TransparencyLog;
  let opened: Awaited<ReturnType<typeof openLog>>;
  let ledger: RunningServer;
  let broker: StartedBroker;
  let upstream: FakeUpstream;
  let gw: LaunchedGateway;
  let vkey: string;
  const brokerWriter = newWriterKey('broker');
  const gatewayWriter = newWriterKey('gateway');

  beforeAll(async () => {
    const key = await generateSignerKey('custody.test/separate', SIG_TYPE_ED25519, (n) => new Uint8Array(n).fill(9));
    vkey = key.vkey;
    opened = await openLog({ dir: join(dir, 'ledger'), skey: key.skey, integrateIntervalMs: 50 });
    log = opened.log;
    ledger = await serveLedger(0);
    broker = await startBroker({ dataDir: join(dir, 'broker'), tenant: 'demo', policy: { text: simPolicyYaml([M]) }, audit: await HttpAuditSink.connect(ledger.url, undefined, { writerKey: brokerWriter.key }), auditRetryMs: 200, logger: captured });
    const workload = await new BrokerAdminClient({ baseUrl: broker.url, apiKey: broker.adminKey! }).createApiKey('workload', 'separate-services gateway');
    upstream = await startFakeUpstream({ words: 6 });
    gw = await launchGateway({ broker: { url: broker.url, apiKey: workload.token, tenant: 'demo', jwksUrl: broker.jwksUrl }, ledger: ledger.url, ledgerWriterKey: gatewayWriter.key, upstream: upstream.url, simMeasurement: M, port: 0, logger: captured });
  });

  /** The log takes appends from its two writers only (custody log serve --writers). */
  const serveLedger = (port: number) => {
    const writers = parseWriters([brokerWriter.line, gatewayWriter.line].join('\n'));
    return listenLog(createLogApp(opened.log, opened.store, { writers }), '127.0.0.1', port, { intercept: createEventsNodeHandler(opened.log, { writers }) });
  };

  afterAll(async () => {
    await gw?.close();
    await upstream?.close();
    await broker?.close();
    await ledger?.close();
    await log?.close({ integrate: false });
    rmSync(dir, { recursive: true, force: true });
  });

  const chat = (content: string) => ({
    method: 'POST',
    headers: { authorization: `Bearer ${gw.apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'fake-model', messages: [{ role: 'user', content }] }),
  });

  it("strict mode proves the broker service's appraisal from the ledger, and the receipt is that ledger's entry", async () => {
    expect(gw.summary.join('\n')).toContain(`ledger       ${new URL(ledger.url).toString()} (transparency log`);
    const tlogPolicy = parseTlogPolicy(`log ${vkey}\nquorum none\n`);
    const receipts: Receipt[] = [];
    const cfetch = createConfidentialFetch({ gateway: gw.url, jwks: gw.jwks, allowSimulated: true, strict: { tlogPolicy }, onReceipt: (r) => receipts.push(r) });
    const res = await cfetch(`${gw.url}/v1/chat/completions`, chat('hello from a separate client'));
    expect(res.status).toBe(200);
    const ledgerStep = cfetch.lastVerification!.steps.find((s) => s.name === 'ledger');
    expect(ledgerStep).toMatchObject({ ok: true, ran: true });
    expect(ledgerStep!.detail).toContain('custody.test/separate');

    // The receipt's ledger entry is in the ledger service: its bytes hash to the receipt's entry
    // digest, it is the receipt's event, and its proof verifies against the log's key.
    const r = receipts[0]!;
    const reader = new HttpAuditSink(ledger.url);
    const entry = await reader.entry(r.ledger!.index);
    expect(sha256Digest(entry)).toBe(r.ledger!.entryDigest);
    expect(decodeEvent(entry)).toMatchObject({ type: 'inference.receipt', receiptId: r.receiptId });
    const proof = await (await fetch(`${ledger.url}/proof/${r.ledger!.index}`)).text();
    await expect(verifyReceiptInclusion(r, proof, tlogPolicy, { now: new Date() })).resolves.toMatchObject({ index: r.ledger!.index });
    // The policy decision before it went to the same ledger.
    // Nobody else may write to this ledger: an append without a writer key is refused.
    const stranger = await fetch(`${ledger.url}/events`, { method: 'POST', body: JSON.stringify({ v: 1, type: 'operator.event', time: new Date().toISOString(), action: 'forge', subject: 's' }) });
    expect([stranger.status, ((await stranger.json()) as { code: string }).code]).toEqual([401, 'ERR_AUTH_REQUIRED']);
    await expect(launchGateway({ ledger: ledger.url, logger: silent, port: 0 })).rejects.toMatchObject({ code: 'ERR_AUTH_REQUIRED' });
    const decisions = await Promise.all(Array.from({ length: r.ledger!.index }, (_, i) => reader.entry(i).then((b) => decodeEvent(b) as unknown as Record<string, unknown>)));
    expect(decisions.some((e) => e.type === 'gate.decision' && e.decision === 'allow')).toBe(true);
  });

  it("the bundle carries the broker service's audit record of the appraisal; tampered twins fail strict mode", async () => {
    const tlogPolicy = parseTlogPolicy(`log ${vkey}\nquorum none\n`);
    const bundle = await fetchAttestationBundle(gw.url);
    expect(bundle.ledger?.event).toMatchObject({ type: 'audit.recorded', action: 'attest.appraise', verdict: 'allow' });
    const opts = { jwks: gw.jwks, allowSimulated: true, strict: { tlogPolicy }, now: new Date() };
    expect((await verifyGatewayBundle(bundle, opts)).document.ok).toBe(true);
    const twin = (edit: (event: Record<string, unknown>) => void): AttestationBundle => {
      const b = structuredClone(bundle);
      edit(b.ledger!.event);
      return b;
    };
    const errorOf = async (b: AttestationBundle) => (await verifyGatewayBundle(b, opts)).document.error;
    // Another EAR's appraisal, a refused one, a record of something else, a non-affirming status:
    // each refused at the ledger step for its own reason (before the proof, which also breaks).
    expect(await errorOf(twin((e) => ((e.detail as Record<string, unknown>).earDigest = 'ab'.repeat(32))))).toMatchObject({ code: 'ERR_TLOG_INCLUSION', step: 'ledger', message: expect.stringContaining('another EAR') });
    expect(await errorOf(twin((e) => (e.verdict = 'deny')))).toMatchObject({ code: 'ERR_TLOG_INCLUSION', step: 'ledger', message: expect.stringContaining('not an appraisal') });
    expect(await errorOf(twin((e) => (e.action = 'key.release')))).toMatchObject({ code: 'ERR_TLOG_INCLUSION', step: 'ledger', message: expect.stringContaining('not an appraisal') });
    expect(await errorOf(twin((e) => ((e.detail as Record<string, unknown>).status = 'warning')))).toMatchObject({ code: 'ERR_TLOG_INCLUSION', step: 'ledger', message: expect.stringContaining('not affirming') });
    // The untouched event with a proof of another entry.
    const other = structuredClone(bundle);
    other.ledger!.index = 0;
    expect(await errorOf(other)).toMatchObject({ code: expect.stringMatching(/^ERR_TLOG_/), step: 'ledger' });
  });

  it("a rotation of the broker service's EAR signing key keeps the gateway attested, and a jwksUrl client follows it", async () => {
    const kidOf = (ear: string) => (JSON.parse(Buffer.from(ear.split('.')[0]!, 'base64url').toString('utf8')) as { kid: string }).kid;
    const before = kidOf((await fetchAttestationBundle(gw.url)).ear!);
    const pinned = createConfidentialFetch({ gateway: gw.url, jwks: gw.jwks, allowSimulated: true });
    const rotated = await rotateEarKeyFile(join(dir, 'broker', 'ear-signing-key.jwk'));
    expect(await broker.reloadEarKey()).toBe(true);
    await gw.gateway.attestation.reattest();
    expect(gw.gateway.attestation.state).toBe('attested');
    expect(kidOf((await fetchAttestationBundle(gw.url)).ear!)).toBe(rotated.kid);
    expect(rotated.kid).not.toBe(before);
    expect(logLines.map((l) => JSON.parse(l) as { event?: string }).some((l) => l.event === 'attestation.jwks_refreshed')).toBe(true);
    // A client that fetches the broker's JWKS itself verifies the new EAR; one pinned to the JWKS
    // from before the rotation refuses it, before sending anything.
    const fromUrl = createConfidentialFetch({ gateway: gw.url, jwksUrl: broker.jwksUrl, allowSimulated: true });
    expect((await fromUrl(`${gw.url}/v1/chat/completions`, chat('after the rotation'))).status).toBe(200);
    await expect(pinned(`${gw.url}/v1/chat/completions`, chat('pinned to the old key set'))).rejects.toMatchObject({ code: 'ERR_EAR_KEY_UNKNOWN' });
  });

  it('with its ledger gone the gateway forwards nothing and answers ERR_GATEWAY_LEDGER', async () => {
    // The broker's key set from its endpoint (its signing key was rotated above).
    const cfetch = createConfidentialFetch({ gateway: gw.url, jwksUrl: broker.jwksUrl, allowSimulated: true });
    await cfetch.verify();
    const before = upstream.received.length;
    await ledger.close();
    const res = await cfetch(`${gw.url}/v1/chat/completions`, chat('must not reach the model'));
    expect(res.status).toBeGreaterThanOrEqual(500);
    expect(((await res.json()) as { code?: string }).code).toBe('ERR_GATEWAY_LEDGER');
    expect(upstream.received.length).toBe(before);
  });

  it('what the broker audits while the ledger is down waits in its interim table and reaches the ledger once it is back', async () => {
    // The ledger is down (the test above closed it): the broker still answers, and says where the event is.
    const admin = new BrokerAdminClient({ baseUrl: broker.url, apiKey: broker.adminKey! });
    const created = await admin.createKey({ name: 'during-outage', type: 'aes-256' });
    const interim = (await broker.broker.metadata.readAudit(null, -1, 1000)).map((r) => ({ index: r.index, event: JSON.parse(r.event) as { action: string; key?: { name: string }; detail?: Record<string, unknown> } }));
    const kept = interim.find((r) => r.event.action === 'key.create' && r.event.key?.name === 'during-outage');
    expect(kept?.event.detail).toMatchObject({ auditFallback: true });
    // A round now: the broker keeps its appraisal record in the interim table, so the bundle has
    // no ledger proof and strict clients refuse it; the gateway attests again within seconds.
    const tlogPolicy = parseTlogPolicy(`log ${vkey}\nquorum none\n`);
    const strict = { jwksUrl: broker.jwksUrl, allowSimulated: true, strict: { tlogPolicy } };
    const outage = await gw.gateway.attestation.reattest();
    expect(outage.ledgerProofMissing).toBe(true);
    expect(outage.bundle.ledger).toBeUndefined();
    expect(logLines.some((l) => l.includes('"event":"attestation.ledger_retry"'))).toBe(true);
    await expect(createConfidentialFetch({ gateway: gw.url, ...strict }).verify()).rejects.toMatchObject({ code: expect.stringMatching(/^ERR_/) });
    // The ledger comes back at the same address; the broker forwards what it kept.
    const port = Number(new URL(ledger.url).port);
    ledger = await serveLedger(port);
    const reader = new HttpAuditSink(ledger.url);
    const forwardedIndex = async () => {
      const rows = (await broker.broker.metadata.readAudit(null, kept!.index, 1000)).map((r) => JSON.parse(r.event) as { action: string; detail?: Record<string, number> });
      return rows.find((r) => r.action === 'audit.forwarded' && r.detail?.interimIndex === kept!.index)?.detail?.ledgerIndex;
    };
    await expect.poll(forwardedIndex, { timeout: 10_000 }).toBeTypeOf('number');
    const entry = decodeEvent(await reader.entry((await forwardedIndex())!)) as unknown as Record<string, unknown>;
    expect(entry).toMatchObject({ type: 'audit.recorded', action: 'key.create' });
    expect(entry.detail).toMatchObject({ auditFallback: true, interimIndex: kept!.index });
    expect(created.name).toBe('during-outage');
    // The gateway serves again without a restart, and within the early round (5 s after the
    // outage round, well before the 60 s interval) publishes a bundle strict clients accept.
    const cfetch = createConfidentialFetch({ gateway: gw.url, jwksUrl: broker.jwksUrl, allowSimulated: true });
    expect((await cfetch(`${gw.url}/v1/chat/completions`, chat('the ledger is back'))).status).toBe(200);
    await expect.poll(async () => (await fetchAttestationBundle(gw.url)).ledger?.event.action, { timeout: 15_000, interval: 250 }).toBe('attest.appraise');
    expect(gw.gateway.attestation.snapshot!.ledgerProofMissing).toBeUndefined();
    const strictFetch = createConfidentialFetch({ gateway: gw.url, ...strict });
    expect((await strictFetch(`${gw.url}/v1/chat/completions`, chat('strict again'))).status).toBe(200);
  });

  it('no writer key appears in any log line or in the startup summary', () => {
    expect(logLines.length).toBeGreaterThan(5);
    const text = logLines.join('\n') + gw.summary.join('\n');
    for (const k of [brokerWriter.key, gatewayWriter.key]) expect(text).not.toContain(k.slice(4));
  });

  it('refuses to start against a ledger that does not answer', async () => {
    const e = await launchGateway({ ledger: 'http://127.0.0.1:9/', logger: silent, port: 0 }).then(
      (g) => g.close().then(() => undefined),
      (err: unknown) => err,
    );
    expect(e).toBeInstanceOf(CustodyError);
    expect((e as CustodyError).code).toBe('ERR_TLOG_UNAVAILABLE');
  });
});
