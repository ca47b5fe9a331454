import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defaultRegistry } from '@custody/attest';
import { TpmAttester } from '@custody/attester-service';
import { startSwtpm, type SwtpmInstance } from '@custody/attester-service/testing';
import { BrokerAdminClient } from '@custody/broker-service/client';
import { unsealModelFile } from '@custody/gateway-service';
import { SIG_TYPE_ED25519, decodeEvent, generateSignerKey } from '@custody/ledger';
import { readVectorText } from '../../../../test/vectors.js';
import { HttpAuditSink, createEventsNodeHandler, createLogApp, listen, newWriterKey, openLog, parseWriters, type RunningServer, type TransparencyLog } from '@custody/ledger-service';

// `custody broker serve` as a real process (a sim + TPM policy, state in a temp dir, audit
// events to a transparency ledger served by this process) and
// `custody fetch-key` against it from other processes: with sim evidence, and with a TPM
// (swtpm) quote under a persistent attestation key the policy pins. Real exit codes and output.
const cliDir = resolve(fileURLToPath(import.meta.url), '../../..');
const runner =
  "import { Command } from 'commander'; " +
  "const { register: broker } = await import('./src/commands/broker.ts'); const { register: fetchKey } = await import('./src/commands/fetch-key.ts'); const { register: model } = await import('./src/commands/model.ts'); " +
  "const program = new Command().name('custody').exitOverride(); broker(program); fetchKey(program); model(program); " +
  "try { await program.parseAsync(process.argv.slice(1), { from: 'user' }); } catch (e) { if (e && e.code === 'commander.helpDisplayed') process.exit(0); process.exit(2); }";
const nodeArgs = ['--conditions=source', '--import', 'tsx', '--input-type=module', '-e', runner, '--'];

const SIM = 'a1'.repeat(48);
const AK = '0x81010002';

let dir: string;
let tpm: SwtpmInstance;
let broker: ChildProcess;
let brokerOut = '';
let brokerErr = '';
let url: string;
let adminKeyFile: string;
let log: TransparencyLog;
let ledger: RunningServer;
const material = randomBytes(32);

function custody(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((res) => {
    const child = spawn(process.execPath, [...nodeArgs, ...args], { cwd: cliDir, env: { ...process.env, NO_COLOR: '1', TPM2TOOLS_TCTI: '' } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('exit', (code) => res({ code, stdout, stderr }));
  });
}

const json = (r: { stdout: string }) => JSON.parse(r.stdout) as Record<string, unknown> & { errors?: Array<{ code: string }> };

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'custody-fetch-key-'));
  tpm = await startSwtpm();
  await tpm.tool('tpm2_createek', ['-c', `${dir}/ek.ctx`, '-G', 'rsa', '-u', `${dir}/ek.pub`]);
  await tpm.tool('tpm2_flushcontext', ['-t']);
  await tpm.tool('tpm2_createak', ['-C', `${dir}/ek.ctx`, '-c', `${dir}/ak.ctx`, '-G', 'ecc', '-g', 'sha256', '-s', 'ecdsa', '-u', `${dir}/ak.pub`]);
  await tpm.tool('tpm2_flushcontext', ['-t']);
  await tpm.tool('tpm2_evictcontrol', ['-C', 'o', '-c', `${dir}/ak.ctx`, AK]);
  await tpm.tool('tpm2_flushcontext', ['-t']);
  const probeAttester = new TpmAttester({ tcti: tpm.tcti, akHandle: AK, pcrs: [0, 7] });
  const probe = await defaultRegistry.verify({ evidence: await probeAttester.collect(new Uint8Array(32)), now: new Date(), platform: 'tpm' });
  await probeAttester.close();
  const m = probe.claims!.measurements;
  const policy = join(dir, 'policy.yaml');
  writeFileSync(
    policy,
    `apiVersion: custody.dev/policy/v1
id: cli-test
version: 1
allowSimulated: true
platforms:
  sim:
    measurement: ${SIM}
  tpm:
    pcrs:
      sha256: { 0: ${m.pcr0}, 7: ${m.pcr7} }
    signerRoots: [${probe.claims!.signer.rootSha256}]
`,
  );
  const logKey = await generateSignerKey('custody.test/cli-broker', SIG_TYPE_ED25519, (n) => new Uint8Array(n).fill(5));
  const opened = await openLog({ dir: join(dir, 'ledger'), skey: logKey.skey, integrateIntervalMs: 50 });
  log = opened.log;
  // The ledger admits one writer, the broker, whose key it gets from $BROKER_LEDGER_KEY.
  const writer = newWriterKey('broker');
  const writers = parseWriters(writer.line);
  ledger = await listen(createLogApp(opened.log, opened.store, { writers }), '127.0.0.1', 0, { intercept: createEventsNodeHandler(opened.log, { writers }) });
  broker = spawn(process.execPath, [...nodeArgs, 'broker', 'serve', '--port', '0', '--data', join(dir, 'data'), '--policy', policy, '--tenant', 'acme', '--ledger', ledger.url, '--ledger-key-env', 'BROKER_LEDGER_KEY', '--json'], {
    cwd: cliDir,
    env: { ...process.env, CUSTODY_DATABASE_URL: '', BROKER_LEDGER_KEY: writer.key },
  });
  broker.stderr!.on('data', (d: Buffer) => (brokerErr += d.toString()));
  const first = await new Promise<string>((res, rej) => {
    broker.stdout!.on('data', (d: Buffer) => {
      brokerOut += d.toString();
      if (brokerOut.includes('\n')) res(brokerOut.slice(0, brokerOut.indexOf('\n')));
    });
    broker.once('exit', (code) => rej(new Error(`broker serve exited ${code}: ${brokerErr}`)));
  });
  const started = JSON.parse(first) as { url: string; adminKeyFile: string; adminKeyCreated: boolean; policies: { default: string } };
  expect(started).toMatchObject({ ok: true, tenant: 'acme', adminKeyCreated: true, storage: { metadata: 'sqlite', keystore: 'embedded' }, ledger: new URL(ledger.url).toString() });
  expect(started.policies.default).toMatch(/^custody:policy:cli-test:1:/);
  url = started.url;
  adminKeyFile = started.adminKeyFile;
  const admin = new BrokerAdminClient({ baseUrl: url, apiKey: readFileSync(adminKeyFile, 'utf8').trim() });
  await admin.importKey({ name: 'dk', type: 'aes-256', material, releasePolicy: "status == 'affirming'" });
}, 120_000);

afterAll(async () => {
  if (broker && broker.exitCode === null) {
    broker.kill('SIGTERM');
    await new Promise((r) => broker.once('exit', r));
  }
  await tpm?.stop();
  await ledger?.close();
  await log?.close({ integrate: false });
  rmSync(dir, { recursive: true, force: true });
});

describe('custody broker serve', () => {
  it('writes the bootstrap admin key 0600 into the data dir and never prints or logs it', () => {
    expect(statSync(adminKeyFile).mode & 0o777).toBe(0o600);
    const token = readFileSync(adminKeyFile, 'utf8').trim();
    expect(token).toMatch(/^cst_/);
    expect(brokerOut + brokerErr).not.toContain(token.slice(21));
    expect(brokerErr).toMatch(/"msg":"broker listening"/);
  });

  it('--ledger: its audit events (the bootstrap key, the key import) are entries of the transparency ledger', async () => {
    const reader = new HttpAuditSink(ledger.url);
    const events = [await reader.entry(0), await reader.entry(1)].map((b) => decodeEvent(b) as unknown as Record<string, unknown>);
    expect(events.map((e) => [e.type, e.action, e.verdict])).toEqual([
      ['audit.recorded', 'apikey.create', 'allow'],
      ['audit.recorded', 'key.import', 'allow'],
    ]);
    // Public facts only: the imported key's bytes are in no entry.
    for (const i of [0, 1]) expect(Buffer.from(await reader.entry(i)).includes(material)).toBe(false);
  });

  it('--ledger refuses, before it serves, a ledger that does not take its writes (no writer key)', async () => {
    const r = await custody('broker', 'serve', '--port', '0', '--data', join(dir, 'data-3'), '--ledger', ledger.url, '--ledger-key-env', 'NO_SUCH_VARIABLE', '--json');
    expect(r.code).toBe(2);
    expect(json(r).errors?.[0]?.code).toBe('ERR_AUTH_REQUIRED');
  });

  it('--ledger refuses a ledger that does not answer before it serves (exit 3)', async () => {
    const r = await custody('broker', 'serve', '--port', '0', '--data', join(dir, 'data-2'), '--ledger', 'http://127.0.0.1:9/', '--json');
    expect(r.code).toBe(3);
    expect(json(r).errors?.[0]?.code).toBe('ERR_TLOG_UNAVAILABLE');
  });
});

describe('custody model seal (a key the broker creates)', () => {
  it('creates the key at the broker with the release policy, and that key, released to an attested workload, opens the sealed model', async () => {
    const weights = join(dir, 'weights.bin');
    writeFileSync(weights, randomBytes(70_000));
    const sealed = join(dir, 'weights.sealed');
    const r = await custody('model', 'seal', weights, '--out', sealed, '--key', 'weights-key', '--model-id', 'acme-weights', '--policy', `status == 'affirming' && claims.measurements.measurement == '${SIM}'`, '--broker', url, '--api-key-file', adminKeyFile, '--json');
    expect(r.code, r.stderr).toBe(0);
    expect(json(r)).toMatchObject({ ok: true, header: { key: { name: 'weights-key', version: 1 }, model: { id: 'acme-weights' }, size: 70_000 } });
    const admin = new BrokerAdminClient({ baseUrl: url, apiKey: readFileSync(adminKeyFile, 'utf8').trim() });
    expect(await admin.getKey('weights-key')).toMatchObject({ type: 'aes-256', exportable: true, currentVersion: 1, releasePolicy: `status == 'affirming' && claims.measurements.measurement == '${SIM}'` });
    // Only an attested workload with that measurement gets the key; with it the model opens.
    const keyOut = join(dir, 'weights.key');
    const f = await custody('fetch-key', 'weights-key', '--broker', url, '--tenant', 'acme', '--platform', 'sim', '--sim-measurement', SIM, '--out', keyOut);
    expect(f.code, f.stderr).toBe(0);
    await unsealModelFile(sealed, readFileSync(keyOut), join(dir, 'weights.plain'));
    expect(readFileSync(join(dir, 'weights.plain')).equals(readFileSync(weights))).toBe(true);
    const other = await custody('fetch-key', 'weights-key', '--broker', url, '--tenant', 'acme', '--platform', 'sim', '--sim-measurement', 'b2'.repeat(48), '--print');
    expect(other.code).toBe(1);
    // A second seal under the same name is refused before any work: the broker's key is never replaced.
    const again = await custody('model', 'seal', weights, '--out', join(dir, 'again.sealed'), '--key', 'weights-key', '--model-id', 'acme-weights', '--policy', 'true', '--broker', url, '--api-key-file', adminKeyFile, '--json');
    expect(again.code).toBe(2);
    expect(json(again).errors?.[0]?.code).toBe('ERR_USAGE');
    expect(() => statSync(join(dir, 'again.sealed'))).toThrow();
  });
});

describe('custody fetch-key', () => {
  it('attests with sim evidence and writes the key 0600 to --out', async () => {
    const out = join(dir, 'dk.bin');
    const r = await custody('fetch-key', 'dk', '--broker', url, '--tenant', 'acme', '--platform', 'sim', '--sim-measurement', SIM, '--out', out, '--json');
    expect(r.code, r.stderr).toBe(0);
    expect(json(r)).toMatchObject({ ok: true, key: { name: 'dk', version: 1, type: 'aes-256' }, platform: 'sim', status: 'affirming', bytes: 32, out });
    expect(json(r)).not.toHaveProperty('material');
    expect(readFileSync(out).equals(material)).toBe(true);
    expect(statSync(out).mode & 0o777).toBe(0o600);
  });

  it('prints the key only with --print: base64 alone on stdout, the summary on stderr', async () => {
    const r = await custody('fetch-key', 'dk', '--broker', url, '--tenant', 'acme', '--platform', 'sim', '--sim-measurement', SIM, '--print');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(material.toString('base64') + '\n');
    expect(r.stderr).toMatch(/^released dk version 1 \(aes-256, 32 bytes\) to this SIMULATED sim workload/);
  });

  it('attests with a TPM quote (swtpm, persistent AK pinned by the policy)', async () => {
    const out = join(dir, 'tpm.bin');
    const r = await custody('fetch-key', 'dk', '--broker', url, '--tenant', 'acme', '--platform', 'tpm', '--tcti', tpm.tcti, '--ak-handle', AK, '--pcrs', '0,7', '--out', out);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^released dk version 1 \(aes-256, 32 bytes\) to this tpm workload, written to .*tpm\.bin \(mode 0600\)/);
    expect(readFileSync(out).equals(material)).toBe(true);
  });

  it('--gpu-evidence-cmd: the GPU evidence goes with the CPU evidence; the real Hopper report (made for another nonce) is refused as gpu0', async () => {
    // A stand-in for an operator's NVML wrapper: prints real NVIDIA evidence (the vectors' report and
    // chain, which verify under the pinned NVIDIA root) and records the nonce it was given.
    const evidence = JSON.stringify({ format: 'custody-nvidia-gpu/v1', report: readVectorText('attestation/nvidia/hopperAttestationReport.txt').trim(), certChain: readVectorText('attestation/nvidia/hopper_cert_chain_case1.txt') });
    writeFileSync(join(dir, 'gpu.json'), evidence);
    writeFileSync(join(dir, 'gpu.mjs'), "import { readFileSync, writeFileSync } from 'node:fs'; writeFileSync(process.argv[3], process.argv[4]); process.stdout.write(readFileSync(process.argv[2]));");
    const out = join(dir, 'gpu-refused.bin');
    const cmd = `${process.execPath} ${join(dir, 'gpu.mjs')} ${join(dir, 'gpu.json')} ${join(dir, 'gpu.nonce')} {nonce}`;
    const r = await custody('fetch-key', 'dk', '--broker', url, '--tenant', 'acme', '--platform', 'sim', '--sim-measurement', SIM, '--gpu-evidence-cmd', cmd, '--out', out, '--json');
    expect(r.code, r.stderr).toBe(1);
    // The broker verified the GPU's chain and signature, then found it bound to another nonce than SHA-256(runtime data).
    expect(json(r).errors![0]!.code).toBe('ERR_EVIDENCE_NONCE');
    expect(readFileSync(join(dir, 'gpu.nonce'), 'utf8')).toMatch(/^[0-9a-f]{64}$/);
    expect(() => statSync(out)).toThrow();
    const usage = await custody('fetch-key', 'dk', '--broker', url, '--platform', 'sim', '--print', '--gpu-evidence-cmd', 'gpu-evidence 0');
    expect(usage.code).toBe(2);
  });

  it('exit codes: 1 when refused, 2 for usage, 3 when the broker is unreachable; nothing is written on refusal', async () => {
    const out = join(dir, 'refused.bin');
    const wrong = await custody('fetch-key', 'dk', '--broker', url, '--tenant', 'acme', '--platform', 'sim', '--sim-measurement', 'b2'.repeat(48), '--out', out, '--json');
    expect(wrong.code).toBe(1);
    expect(json(wrong).errors![0]!.code).toBe('ERR_EVIDENCE_MEASUREMENT');
    expect(() => statSync(out)).toThrow();
    const otherTenant = await custody('fetch-key', 'dk', '--broker', url, '--tenant', 'globex', '--platform', 'sim', '--sim-measurement', SIM, '--print', '--json');
    expect(otherTenant.code).toBe(1);
    expect(json(otherTenant).errors![0]!.code).toBe('ERR_KEY_NOT_FOUND');
    const usage = await custody('fetch-key', 'dk', '--broker', url, '--platform', 'sim');
    expect(usage.code).toBe(2);
    const offline = await custody('fetch-key', 'dk', '--broker', 'http://127.0.0.1:9', '--platform', 'sim', '--print', '--json');
    expect(offline.code).toBe(3);
    expect(json(offline).errors![0]!.code).toBe('ERR_SERVICE_UNAVAILABLE');
    // No key bytes in anything the broker wrote.
    expect(brokerErr).not.toContain(material.toString('base64').slice(0, 16));
    expect(brokerErr).not.toContain(material.toString('hex').slice(0, 24));
  });
});
