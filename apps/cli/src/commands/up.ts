import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { pino } from 'pino';
import { CustodyError, secureRandom, toCustodyError, wipe } from '@custody/core';
import { makePrivateDir, privateDirWarning, secretFileWarning } from '@custody/crypto-node';
import { defaultRegistry, type VerificationResult } from '@custody/attest';
import { SimAttester } from '@custody/attester-service';
import { createEd25519Signer, formatTlogProof, generateSignerKey, parseTlogPolicy } from '@custody/ledger';
import { createEventsNodeHandler, createLogApp, listen, newWriterKey, openLog, parseWriters } from '@custody/ledger-service';
import { BrokerAdminClient, fetchKey, startBroker } from '@custody/broker-service';
import { DEV_SIM_MEASUREMENT, describeGgufFile, launchGateway, readGgufHeader, runConfidentialRequest, sealModelFile } from '@custody/gateway-service';
import { readInputFile, readNamedFiles } from '../files.js';
import { commandName, failWith, mark, printJson, shellWord } from '../output.js';
import { EXIT_NOT_VERIFIED, EXIT_OK } from '../exit.js';
import { writeSecretFile } from './log.js';
import { tcbText } from './attest.js';
import { parsePort } from '../numbers.js';
import type { Register } from './index.js';

/** Real evidence bundled in samples/ (see samples/README.md), verified at its capture time. */
const SAMPLES = [
  { name: 'AMD SEV-SNP report v2 (Milan) + VCEK', evidence: 'sev-snp/attestation.bin', certs: ['sev-snp/vcek.der'], at: '2023-06-01T00:00:00Z' },
  { name: 'Intel TDX quote v4 + Intel PCS collateral', evidence: 'tdx/quote.dat', collateral: 'tdx/collateral', at: '2023-07-01T01:00:00Z' },
  { name: 'AWS Nitro Enclaves attestation document', evidence: 'nitro/attestation.cbor', at: '2024-09-17T20:47:10Z' },
] as const;

export function samplesDir(): string {
  // Same depth from src/commands and dist/commands.
  return fileURLToPath(new URL('../../../../samples/', import.meta.url));
}

export async function verifySamples(): Promise<{ name: string; result: VerificationResult }[]> {
  const dir = samplesDir();
  const out: { name: string; result: VerificationResult }[] = [];
  for (const s of SAMPLES) {
    const result = await defaultRegistry.verify({
      evidence: readInputFile(dir + s.evidence, 'sample'),
      certs: 'certs' in s ? s.certs.map((c) => readInputFile(dir + c, 'sample')) : [],
      ...('collateral' in s && { collateral: readNamedFiles(dir + s.collateral, 'collateral') }),
      now: new Date(s.at),
    });
    out.push({ name: s.name, result });
  }
  return out;
}

/**
 * `up`'s log file, opened now and written synchronously (it logs warnings only): a state
 * directory that cannot take it (read-only, full) fails here with a typed error, not later in the
 * logger's asynchronous open, which would end the process with an unhandled error.
 */
function openLogFile(path: string): ReturnType<typeof pino.destination> {
  try {
    return pino.destination({ dest: path, sync: true, mkdir: false });
  } catch (e) {
    throw new CustodyError('ERR_FILE_UNWRITABLE', `cannot write ${path} (${(e as NodeJS.ErrnoException).code ?? 'error'})`, { cause: e, detail: { path } });
  }
}

/**
 * Seals the model `custody up` serves under a key of the broker (once per weights digest: the
 * sealed file and its key are reused from the data directory), so the gateway gets the weights
 * only as the broker releases the key to it after attestation. Returns the sealed file and key.
 */
async function sealForUp(model: string, data: string, admin: BrokerAdminClient, releasePolicy: string): Promise<{ path: string; key: string; reused: boolean }> {
  const described = await describeGgufFile(model);
  const base = `model-weights-${described.digest.slice('sha256:'.length, 'sha256:'.length + 12)}`;
  const held = new Set((await admin.listKeys()).map((k) => k.name));
  const dir = resolve(data, 'models');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const path = resolve(dir, `${base}.sealed`);
  if (existsSync(path) && held.has(base)) return { path, key: base, reused: true };
  // A key whose sealed file is gone cannot be used again (its material never leaves the broker): a new name.
  const key = held.has(base) ? `${base}-${randomBytes(3).toString('hex')}` : base;
  const target = key === base ? path : resolve(dir, `${key}.sealed`);
  rmSync(target, { force: true });
  const material = new Uint8Array(randomBytes(32));
  try {
    const modelId = (described.header.name ?? basename(model, '.gguf')).replace(/[^A-Za-z0-9._:/@+-]/g, '-').slice(0, 128);
    await sealModelFile(model, target, { key: material, keyName: key, keyVersion: 1, modelId, ...(described.header.name ? { label: described.header.name } : {}) });
    await admin.importKey({ name: key, type: 'aes-256', material, releasePolicy, exportable: true });
  } catch (e) {
    rmSync(target, { force: true });
    throw e;
  } finally {
    wipe(material);
  }
  return { path: target, key, reused: false };
}

/** The development appraisal policy `custody up` runs with: it accepts SIMULATED evidence of one measurement. */
function devPolicy(measurement: string): string {
  return [
    'apiVersion: custody.dev/policy/v1',
    'id: custody-up-dev',
    'version: 1',
    'description: DEVELOPMENT policy of custody up. It accepts SIMULATED evidence (no hardware TEE) of one measurement; never use it in production.',
    'allowSimulated: true',
    'platforms:',
    '  sim:',
    `    measurement: ${measurement}`,
    '',
  ].join('\n');
}

interface UpOptions {
  json?: boolean;
  data: string;
  once?: boolean;
  port?: string;
  model?: string;
}

export const register: Register = (program: Command) => {
  program
    .command('up')
    .description('the quick start: verify bundled real evidence, then run ledger, broker and gateway on embedded defaults and show a key release and one confidential request end to end')
    .option('--data <dir>', 'state directory (ledger tiles, broker database, keys)', '.custody')
    .option('--port <port>', 'gateway port (default: a free port)')
    .option('--model <file.gguf>', 'serve a GGUF model in process (node-llama-cpp, CPU) instead of custody-demo; it is sealed under a broker key first, and the gateway decrypts it only after attesting')
    .option('--once', 'run the tour and exit instead of serving until interrupted')
    .option('--json', 'print one JSON object')
    .action(async (opts: UpOptions) => {
      const json = opts.json ?? false;
      const say = (line = '') => {
        if (!json) process.stdout.write(line + '\n');
      };
      const closers: (() => Promise<void>)[] = [];
      const closeAll = async () => {
        for (const c of closers.reverse()) await c().catch(() => undefined);
      };
      try {
        // Options first: a bad one must not cost the whole tour.
        const port = opts.port !== undefined ? parsePort(opts.port) : undefined;
        // A model that cannot be read fails now, before anything starts or is logged.
        if (opts.model) await readGgufHeader(opts.model);
        // 1. Attestation on real evidence.
        const samples = await verifySamples();
        say('Custody quick start');
        say('');
        say('1. Attestation: real evidence from real hardware, verified against pinned vendor roots at its capture time');
        for (const { name, result } of samples) {
          const c = result.claims;
          const m = c ? Object.entries(c.measurements)[0] : undefined;
          say(`  ${mark(result.ok)}  ${name}`);
          say(`        ${result.steps.map((st) => `${st.name} ${st.checked === false ? 'not checked' : st.ok ? 'ok' : 'FAILED'}`).join(', ')}`);
          if (m) say(`        ${m[0]} ${m[1].slice(0, 32)}...  tcb ${c?.tcb ? tcbText(c.tcb) : '-'}  debug ${c?.debug}`);
          for (const e of result.errors) say(`        ${e.code}: ${e.message}`);
        }

        // 2. Ledger, broker and gateway on embedded defaults.
        const data = resolve(opts.data);
        makePrivateDir(data);
        const logger = pino({ level: 'warn' }, openLogFile(resolve(data, 'custody.log')));
        const keyFile = resolve(data, 'ledger.key');
        if (!existsSync(keyFile)) writeSecretFile(keyFile, (await generateSignerKey('custody.local/ledger', 1, secureRandom)).skey);
        for (const w of [privateDirWarning(data, 'state directory'), secretFileWarning(keyFile, 'ledger signing key file')]) if (w) process.stderr.write(`custody: warning: ${w}\n`);
        const skey = readFileSync(keyFile, 'utf8').trim();
        const vkey = (await createEd25519Signer(skey)).vkey;
        const { log, store } = await openLog({
          dir: resolve(data, 'ledger'),
          skey,
          integrateIntervalMs: 100,
          // A log that cannot publish (a full disk, say) says so in custody.log, with the system's code.
          onError: (e) => logger.warn({ event: 'ledger.retrying', code: e.code, error: e.message }, 'the ledger could not integrate or publish; retrying'),
        }).catch((e: unknown) => {
          const err = toCustodyError(e);
          if (err.code !== 'ERR_TLOG_LOCKED') throw err;
          throw new CustodyError('ERR_TLOG_LOCKED', `another custody up (or a log serve) is using ${data}; stop it, or give this one another --data`, { cause: err });
        });
        closers.push(() => log.close());
        // Reads only over HTTP: the broker and the gateway here write in process, so the log's
        // one writer key is made and thrown away.
        const noWriters = { writers: parseWriters(newWriterKey('nobody').line) };
        const ledgerServer = await listen(createLogApp(log, store, noWriters), '127.0.0.1', 0, { intercept: createEventsNodeHandler(log, noWriters) });
        closers.push(() => ledgerServer.close());

        const measurement = DEV_SIM_MEASUREMENT;
        const broker = await startBroker({ dataDir: resolve(data, 'broker'), tenant: 'demo', policy: { text: devPolicy(measurement) }, audit: log, logger });
        closers.push(() => broker.close());
        for (const w of broker.warnings) process.stderr.write(`custody: warning: ${w}\n`);
        const admin = new BrokerAdminClient({ baseUrl: broker.url, apiKey: broker.adminKey! });
        const keyName = 'model-key';
        const releasePolicy = `status == 'affirming' && claims.measurements.measurement == '${measurement}'`;
        if (!(await admin.listKeys()).some((k) => k.name === keyName)) {
          await admin.createKey({ name: keyName, type: 'aes-256', releasePolicy });
        }
        say('');
        say('2. Services on embedded defaults (SQLite, local keystore, ledger tiles on disk; state in ' + opts.data + ')');
        say(`  ledger   ${ledgerServer.url}   (checkpoint, tiles: C2SP tlog-tiles)`);
        say(`  broker   ${broker.url}   (JWKS ${broker.jwksUrl})`);

        // 3. Key release to an attested workload, and refusal to a tampered one.
        say('');
        say('3. Attestation-gated key release (SIMULATED TEE: development only, the policy above allows it)');
        const good = await fetchKey({ broker: broker.url, tenant: 'demo', name: keyName, attester: new SimAttester({ measurements: { measurement } }) });
        say(`  ${mark(true)}  released "${keyName}" v${good.key.version} (${good.material.length} bytes, HPKE-wrapped to the workload's TEE key) to a workload with the expected measurement; ledger entry ${good.auditIndex ?? `pending (interim table row ${good.auditInterimIndex})`}`);
        wipe(good.material);
        const tampered = 'ee'.repeat(48);
        try {
          const bad = await fetchKey({ broker: broker.url, tenant: 'demo', name: keyName, attester: new SimAttester({ measurements: { measurement: tampered } }) });
          wipe(bad.material);
          throw new Error('a tampered workload received a key');
        } catch (e) {
          const err = toCustodyError(e);
          if (err.message === 'a tampered workload received a key') throw e;
          say(`  ${mark(true)}  refused a tampered workload (measurement ${tampered.slice(0, 16)}...): ${err.code}`);
        }

        // 4. The gateway attests to the broker; one confidential request through the SDK.
        const workload = await admin.createApiKey('workload', 'custody-up gateway');
        // A model is served sealed: encrypted at rest under a broker key with the same release policy.
        const sealed = opts.model ? await sealForUp(opts.model, data, admin, releasePolicy) : undefined;
        const gw = await launchGateway({ broker: { url: broker.url, apiKey: workload.token, tenant: 'demo', jwksUrl: broker.jwksUrl }, ledger: log, logger, simMeasurement: measurement, ...(port !== undefined ? { port } : {}), ...(sealed ? { modelPath: sealed.path } : {}) });
        closers.push(() => gw.close());
        const prompt = 'Summarise the visit of patient Jane Roe (jane.roe@example.com, DOB: 1961-03-14).';
        // Strict: the SDK also checks that the broker's appraisal of this gateway is in the ledger.
        const r = await runConfidentialRequest({ url: gw.url, jwks: gw.jwks, apiKey: gw.apiKey!, allowSimulated: true, tlogPolicy: parseTlogPolicy(`log ${vkey}\nquorum none\n`) }, prompt);
        say('');
        say(`4. Confidential inference: the SDK verified the gateway, then sent the prompt with Oblivious HTTP (gateway ${gw.url})`);
        if (sealed) say(`  ${mark(true)}  model weights sealed under broker key "${sealed.key}" v1 (${sealed.reused ? 'kept from an earlier run' : 'sealed now'}: ${sealed.path}); the broker released the key to the attested gateway, which decrypted them inside the TEE (tmpfs) and unlinked the plaintext`);
        for (const line of r.verificationText.split('\n')) say('  ' + line);
        say(`  answer (${r.receipt.model.id}): ${r.answer.slice(0, 160)}`);
        say('  receipt (signed by the gateway\'s attested receipt key, verified by the SDK):');
        say(`    id ${r.receipt.receiptId}`);
        say(`    request ${r.receipt.request.digest}  forwarded ${r.receipt.request.forwardedDigest ?? '-'}  response ${r.receipt.response.digest}`);
        if (r.receipt.ledger) say(`    ledger entry ${r.receipt.ledger.index}`);
        // What an auditor needs to check the receipt offline, with `custody receipt verify`.
        const saved = resolve(data, 'last-request');
        mkdirSync(saved, { recursive: true, mode: 0o700 });
        writeFileSync(resolve(saved, 'receipt.json'), JSON.stringify(r.receipt, null, 2) + '\n');
        writeFileSync(resolve(saved, 'bundle.json'), JSON.stringify(r.bundle, null, 2) + '\n');
        writeFileSync(resolve(saved, 'jwks.json'), JSON.stringify(gw.jwks, null, 2) + '\n');
        writeFileSync(resolve(saved, 'response.json'), r.response);
        let proofFile: string | undefined;
        if (r.receipt.ledger) {
          await log.entry(r.receipt.ledger.index, 5000);
          proofFile = resolve(saved, 'receipt.tlog-proof');
          writeFileSync(proofFile, formatTlogProof(await log.proof(r.receipt.ledger.index)));
        }
        say('');
        say('How to verify what happened:');
        const cmd = commandName();
        const q = shellWord;
        say(`  ${cmd} log verify --checkpoint ${q(resolve(data, 'ledger', 'checkpoint'))} --vkey '${vkey}'`);
        say(`  ${cmd} receipt verify ${q(resolve(saved, 'receipt.json'))} --bundle ${q(resolve(saved, 'bundle.json'))} --jwks ${q(resolve(saved, 'jwks.json'))} --allow-simulated \\`);
        say(`      --response ${q(resolve(saved, 'response.json'))}${proofFile ? ` --proof ${q(proofFile)} --vkey '${vkey}' --strict` : ''}`);
        say(`    (offline: the gateway was attested when it answered and the broker's appraisal of it is in the log, the receipt is signed by its attested key, is in the log, and covers this answer)`);
        say(`  Every appraisal, release, refusal and receipt above is an entry of that log; no prompt text or key bytes are in it.`);
        if (json) printJson({ ok: samples.every((x) => x.result.ok), samples, ledger: ledgerServer.url, broker: broker.url, gateway: gw.url, release: { key: good.key, ...(good.auditIndex !== undefined ? { auditIndex: good.auditIndex } : { auditInterimIndex: good.auditInterimIndex }) }, receipt: r.receipt, verification: r.verification });
        if (opts.once) {
          await closeAll();
          process.exitCode = samples.every((x) => x.result.ok) ? EXIT_OK : EXIT_NOT_VERIFIED;
          return;
        }
        say('');
        say('Serving until interrupted (Ctrl-C).');
        await new Promise<void>((done) => {
          process.once('SIGINT', done);
          process.once('SIGTERM', done);
        });
        await closeAll();
      } catch (e) {
        await closeAll();
        failWith(e, json);
      }
    });
};
