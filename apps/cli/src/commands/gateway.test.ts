import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { connect } from 'node:net';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import { afterAll, describe, expect, it } from 'vitest';
import { SIG_TYPE_ED25519, decodeEvent, generateSignerKey } from '@custody/ledger';
import { HttpAuditSink, createEventsNodeHandler, createLogApp, listen, newWriterKey, openLog, parseWriters } from '@custody/ledger-service';
import { createConfidentialFetch, type Receipt } from '@custody/sdk';
import { fromHex, toPem } from '@custody/core';
import { FixtureGpuAttester } from '@custody/attester-service/testing';
import { DEV_SIM_MEASUREMENT } from '@custody/gateway-service';
import { compositePolicyYaml, fixtureGpuMeasurements } from '../../../../services/gateway/src/testing/index.js';
import { tempDir } from '../../../../services/ledger/src/testing/tmp.js';
import { takeBrokerKey } from './gateway.js';

// Runs `custody gateway serve` and `custody relay serve` through this module's `register`, in
// child processes, and talks to them with the SDK and the openai client.
const cliDir = resolve(fileURLToPath(import.meta.url), '../../..');
const runner =
  "import { Command } from 'commander'; const { register } = await import('./src/commands/gateway.ts'); " +
  "const program = new Command().name('custody').exitOverride(); register(program); " +
  "try { await program.parseAsync(process.argv.slice(1), { from: 'user' }); } catch (e) { if (e && e.code === 'commander.helpDisplayed') process.exit(0); process.exit(2); }";
const nodeArgs = ['--conditions=source', '--import', 'tsx', '--input-type=module', '-e', runner, '--'];

const children: ChildProcessWithoutNullStreams[] = [];

function start(...argsAndEnv: (string | Record<string, string>)[]): Promise<Record<string, unknown>> {
  const args = argsAndEnv.filter((a): a is string => typeof a === 'string');
  const extra = argsAndEnv.find((a): a is Record<string, string> => typeof a === 'object') ?? {};
  const child = spawn(process.execPath, [...nodeArgs, ...args], { cwd: cliDir, env: { ...process.env, NO_COLOR: '1', ...extra } });
  children.push(child);
  return new Promise((res, rej) => {
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      try {
        res(JSON.parse(out) as Record<string, unknown>);
      } catch {
        // not complete yet
      }
    });
    child.on('exit', (code) => rej(new Error(`exited ${code}: ${out}`)));
  });
}

/** Writes `request` on a fresh connection; resolves with all it read when the connection ends. */
function rawRequest(port: number, request: string): Promise<string> {
  return new Promise((res) => {
    const sock = connect(port, '127.0.0.1');
    let got = '';
    sock.on('data', (d: Buffer) => (got += d.toString('latin1')));
    sock.on('error', () => undefined);
    sock.on('close', () => res(got));
    sock.write(request);
    setTimeout(() => sock.destroy(), 10_000).unref();
  });
}

function exitOf(child: ChildProcessWithoutNullStreams): Promise<number | null> {
  return new Promise((res) => child.once('exit', (code) => res(code)));
}

afterAll(() => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
});

describe('custody gateway serve / custody relay serve', () => {
  it('serves the demo model through OHTTP (directly and through the relay) and stops cleanly on SIGTERM', async () => {
    const apiKey = 'sk-cli-test-key-0001';
    const gw = await start('gateway', 'serve', '--port', '0', '--json', '--api-key', apiKey);
    expect(gw.ok).toBe(true);
    expect(gw.simulated).toBe(true);
    const url = gw.url as string;
    const relayInfo = await start('relay', 'serve', '--gateway', url, '--port', '0', '--json');
    for (const relay of [undefined, relayInfo.url as string]) {
      const cfetch = createConfidentialFetch({ gateway: url, ...(relay ? { relay } : {}), jwks: gw.jwks as never, allowSimulated: true });
      const openai = new OpenAI({ baseURL: `${url}/v1`, apiKey, fetch: cfetch, maxRetries: 0 });
      const r = await openai.chat.completions.create({ model: 'custody-demo', messages: [{ role: 'user', content: 'hello from the CLI test' }] });
      expect(r.choices[0]!.message.content).toContain('custody-demo (not a real LLM)');
    }
    const plain = await fetch(`${url}/v1/chat/completions`, { method: 'POST', body: '{}' });
    expect(plain.status).toBe(403);
    const [g, r] = children.slice(-2);
    const exits = [exitOf(g!), exitOf(r!)];
    g!.kill('SIGTERM');
    r!.kill('SIGTERM');
    expect(await Promise.all(exits)).toEqual([0, 0]);
  }, 60_000);

  it('refuses contradictory backends with a usage error (exit 2)', async () => {
    const child = spawn(process.execPath, [...nodeArgs, 'gateway', 'serve', '--demo', '--upstream', 'http://127.0.0.1:1', '--json'], { cwd: cliDir });
    children.push(child);
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    expect(await exitOf(child)).toBe(2);
    expect(out).toContain('ERR_USAGE');
  }, 30_000);

  it('a service URL that is not a plain http(s) base is a usage error (exit 2) naming the flag, never the URL', async () => {
    for (const args of [
      ['--upstream', 'ftp://127.0.0.1:9/'],
      ['--upstream', 'http://vllm:s3cr3t@127.0.0.1:9'],
      ['--ledger', 'http://127.0.0.1:9/?s3cr3t'],
      ['--broker', 'http://admin:s3cr3t@127.0.0.1:9'],
    ]) {
      const child = spawn(process.execPath, [...nodeArgs, 'gateway', 'serve', '--port', '0', '--json', ...args], { cwd: cliDir, env: { ...process.env, CUSTODY_BROKER_API_KEY: 'cst_unused' } });
      children.push(child);
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (out += d.toString()));
      expect(await exitOf(child), args.join(' ')).toBe(2);
      expect(out).toContain('ERR_USAGE');
      expect(out).toContain(args[0]);
      expect(out).not.toContain('s3cr3t');
    }
  }, 60_000);

  it('--max-connections bounds the gateway and the relay (a connection past it is closed unanswered); bad bounds are usage errors (exit 2)', async () => {
    const gw = await start('gateway', 'serve', '--port', '0', '--json', '--max-connections', '1', '--drain', '0');
    const relay = await start('relay', 'serve', '--gateway', gw.url as string, '--port', '0', '--json', '--max-connections', '1');
    for (const url of [gw.url as string, relay.url as string]) {
      const { port } = new URL(url);
      // The first connection is held open; the second is closed as it is accepted, before any answer.
      const held = connect(Number(port), '127.0.0.1');
      await new Promise((r) => held.once('connect', r));
      const second = await rawRequest(Number(port), 'GET /.well-known/custody/attestation HTTP/1.1\r\nhost: x\r\n\r\n');
      expect(second, url).toBe('');
      held.destroy();
      await new Promise((r) => setTimeout(r, 100));
      expect(await rawRequest(Number(port), 'GET /.well-known/custody/attestation HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n'), url).toMatch(/^HTTP\/1\.1 200/);
    }
    for (const args of [['gateway', 'serve', '--max-connections', '0'], ['gateway', 'serve', '--max-connections', '1.5'], ['gateway', 'serve', '--drain', '-1'], ['relay', 'serve', '--gateway', 'http://127.0.0.1:9', '--max-connections', '']]) {
      const child = spawn(process.execPath, [...nodeArgs, ...args, '--port', '0', '--json'], { cwd: cliDir });
      children.push(child);
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      expect(await exitOf(child), args.join(' ')).toBe(2);
      expect(out).toContain('ERR_USAGE');
    }
  }, 90_000);

  it('a key file without the service it is for is a usage error (exit 2)', async () => {
    const t = tempDir();
    try {
      const file = join(t.dir, 'k');
      writeFileSync(file, 'cst_key\n', { mode: 0o600 });
      for (const args of [['--broker-key-file', file], ['--ledger-key-file', file]]) {
        const child = spawn(process.execPath, [...nodeArgs, 'gateway', 'serve', '--port', '0', '--json', ...args], { cwd: cliDir });
        children.push(child);
        let out = '';
        child.stdout.on('data', (d: Buffer) => (out += d.toString()));
        expect(await exitOf(child), args[0]).toBe(2);
        expect(out).toContain('ERR_USAGE');
      }
    } finally {
      t.cleanup();
    }
  }, 30_000);

  it('--ledger with a writer key from --ledger-key-env: receipts and policy decisions go to the transparency ledger; a bad or unreachable ledger stops the start (exit 2, exit 3)', async () => {
    const t = tempDir();
    const key = await generateSignerKey('custody.test/cli-gateway', SIG_TYPE_ED25519, (n) => new Uint8Array(n).fill(4));
    const { log, store } = await openLog({ dir: t.dir + '/log', skey: key.skey, integrateIntervalMs: 50 });
    const writer = newWriterKey('gateway');
    const writers = parseWriters(writer.line);
    const server = await listen(createLogApp(log, store, { writers }), '127.0.0.1', 0, { intercept: createEventsNodeHandler(log, { writers }) });
    try {
      const apiKey = 'sk-cli-test-key-0002';
      // The key as a secret file gives it: with its trailing newline.
      const gw = await start('gateway', 'serve', '--port', '0', '--json', '--api-key', apiKey, '--ledger', server.url, '--ledger-key-env', 'GW_LEDGER_KEY', { GW_LEDGER_KEY: `${writer.key}\n` });
      expect(gw.ledger).toBe(new URL(server.url).toString());
      let receipt: Receipt | undefined;
      const cfetch = createConfidentialFetch({ gateway: gw.url as string, jwks: gw.jwks as never, allowSimulated: true, onReceipt: (r) => (receipt = r) });
      const res = await cfetch(`${gw.url as string}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${apiKey}` }, body: JSON.stringify({ model: 'custody-demo', messages: [{ role: 'user', content: 'logged remotely' }] }) });
      expect(res.status).toBe(200);
      const entry = decodeEvent(await new HttpAuditSink(server.url).entry(receipt!.ledger!.index));
      expect(entry).toMatchObject({ type: 'inference.receipt', receiptId: receipt!.receiptId });
      const g = children.at(-1)!;
      const exited = exitOf(g);
      g.kill('SIGTERM');
      expect(await exited).toBe(0);
      // Without a key the log does not take this gateway's writes, and a malformed key is a usage error: both exit 2 before serving.
      for (const [env, code] of [[{}, 'ERR_AUTH_REQUIRED'], [{ CUSTODY_LEDGER_KEY: 'ctw_not-a-key' }, 'ERR_USAGE']] as const) {
        const child = spawn(process.execPath, [...nodeArgs, 'gateway', 'serve', '--port', '0', '--json', '--ledger', server.url], { cwd: cliDir, env: { ...process.env, CUSTODY_LEDGER_KEY: '', ...env } });
        children.push(child);
        let o = '';
        child.stdout.on('data', (d: Buffer) => (o += d.toString()));
        expect(await exitOf(child)).toBe(2);
        expect(o).toContain(code);
      }
    } finally {
      await server.close();
      await log.close({ integrate: false });
      t.cleanup();
    }
    for (const [ledger, code, exit] of [
      ['ftp://127.0.0.1/', 'ERR_USAGE', 2],
      // An empty value (an unset variable) is an error, not the in-memory log.
      ['', 'ERR_USAGE', 2],
      ['http://127.0.0.1:9/', 'ERR_TLOG_UNAVAILABLE', 3],
    ] as const) {
      const child = spawn(process.execPath, [...nodeArgs, 'gateway', 'serve', '--port', '0', '--json', '--ledger', ledger], { cwd: cliDir });
      children.push(child);
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      expect(await exitOf(child)).toBe(exit);
      expect(out).toContain(code);
    }
  }, 60_000);
  it('--gpu-evidence-cmd: the program\'s GPU evidence, bound to the runtime data, is appraised with the CPU and published; a failing program stops the start', async () => {
    // The GPU evidence program: asks this test process (which holds the FixtureGpuAttester TEST
    // DOUBLE and its test root) for evidence for the nonce it was given, and prints it.
    const gpu = new FixtureGpuAttester();
    const evidenceServer = createServer((req, res) => {
      const nonce = (req.url ?? '').slice(1);
      if (!/^[0-9a-f]{64}$/.test(nonce)) return void res.writeHead(400).end();
      void gpu.collect(fromHex(nonce)).then((ev) => res.writeHead(200).end(Buffer.from(ev)));
    });
    await new Promise<void>((r) => evidenceServer.listen(0, '127.0.0.1', r));
    const evidenceUrl = `http://127.0.0.1:${(evidenceServer.address() as { port: number }).port}`;
    const t = tempDir();
    try {
      const program = join(t.dir, 'gpu-evidence.mjs');
      writeFileSync(program, "const [url, nonce] = process.argv.slice(2); const r = await fetch(url + '/' + nonce); if (!r.ok) process.exit(1); process.stdout.write(Buffer.from(await r.arrayBuffer()));\n");
      const failing = join(t.dir, 'gpu-broken.mjs');
      writeFileSync(failing, 'process.exit(4);\n');
      const root = await FixtureGpuAttester.testRoot();
      const rootFile = join(t.dir, 'gpu-root.pem');
      writeFileSync(rootFile, toPem('CERTIFICATE', root));
      const policyFile = join(t.dir, 'policy.yaml');
      writeFileSync(policyFile, compositePolicyYaml([DEV_SIM_MEASUREMENT], await fixtureGpuMeasurements()));
      const apiKey = 'sk-cli-test-key-0003';
      const gw = await start('gateway', 'serve', '--port', '0', '--json', '--api-key', apiKey, '--gpu-evidence-cmd', `${process.execPath} ${program} ${evidenceUrl} {nonce}`, '--gpu-root', rootFile, '--appraisal-policy', policyFile);
      expect(gw.gpus).toBe(1);
      const cfetch = createConfidentialFetch({ gateway: gw.url as string, jwks: gw.jwks as never, allowSimulated: true, minGpus: 1, gpuRoots: [root] });
      const res = await cfetch(`${gw.url as string}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${apiKey}` }, body: JSON.stringify({ model: 'custody-demo', messages: [{ role: 'user', content: 'on the GPU' }] }) });
      expect(res.status).toBe(200);
      expect(cfetch.lastVerification!.devices?.map((d) => d.name)).toEqual(['gpu0']);
      expect(cfetch.lastBundle!.devices).toHaveLength(1);
      expect(gpu.nonces.length).toBeGreaterThan(0);
      const g = children.at(-1)!;
      const exited = exitOf(g);
      g.kill('SIGTERM');
      expect(await exited).toBe(0);
      // Refused before serving: a program that fails (not attested, exit 1), a command without
      // {nonce} and GPUs without a policy that knows them (usage, exit 2).
      for (const [args, code, exit] of [
        [['--gpu-evidence-cmd', `${process.execPath} ${failing} {nonce}`, '--gpu-root', rootFile, '--appraisal-policy', policyFile], 'ERR_GATEWAY_NOT_ATTESTED', 1],
        [['--gpu-evidence-cmd', `${process.execPath} ${program} ${evidenceUrl}`], 'ERR_USAGE', 2],
        [['--gpu-evidence-cmd', `${process.execPath} ${program} ${evidenceUrl} {nonce}`, '--gpu-root', rootFile], 'ERR_USAGE', 2],
      ] as const) {
        const child = spawn(process.execPath, [...nodeArgs, 'gateway', 'serve', '--port', '0', '--json', ...args], { cwd: cliDir });
        children.push(child);
        let out = '';
        let err = '';
        child.stdout.on('data', (d: Buffer) => (out += d.toString()));
        child.stderr.on('data', (d: Buffer) => (err += d.toString()));
        expect(await exitOf(child)).toBe(exit);
        expect(out).toContain(code);
        if (code === 'ERR_GATEWAY_NOT_ATTESTED') expect(err).toContain('ERR_ATTESTER_FAILED');
      }
    } finally {
      evidenceServer.close();
      t.cleanup();
    }
  }, 90_000);

  it('relay serve logs through its own log on stderr: a gateway it cannot reach is relay.unreachable there, not only a 502 to the client', async () => {
    const child = spawn(process.execPath, [...nodeArgs, 'relay', 'serve', '--gateway', `http://127.0.0.1:${await freePort()}`, '--port', '0', '--json'], { cwd: cliDir });
    children.push(child);
    let out = '';
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const info = await new Promise<{ url: string }>((res, rej) => {
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        try {
          res(JSON.parse(out) as { url: string });
        } catch {
          // not complete yet
        }
      });
      child.on('exit', (code) => rej(new Error(`exited ${code}: ${out}`)));
    });
    const res = await fetch(`${info.url}/ohttp`, { method: 'POST', headers: { 'content-type': 'message/ohttp-req' }, body: new Uint8Array(40) });
    expect(res.status).toBe(502);
    await res.arrayBuffer();
    const exited = exitOf(child);
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    const events = err
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => (JSON.parse(l) as { event?: string }).event);
    expect(events).toContain('relay.unreachable');
  }, 30_000);

  it("relay serve refuses a --gateway that is the relay's own address (it would forward every request to itself), and one with credentials, without printing them (exit 2)", async () => {
    const port = await freePort();
    for (const gateway of [`http://127.0.0.1:${port}`, `http://localhost:${port}/`, 'http://admin:s3cret@127.0.0.1:8443']) {
      const child = spawn(process.execPath, [...nodeArgs, 'relay', 'serve', '--gateway', gateway, '--port', String(port), '--json'], { cwd: cliDir });
      children.push(child);
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      expect(await exitOf(child), gateway).toBe(2);
      expect(out).toContain('ERR_USAGE');
      expect(out).not.toContain('s3cret');
    }
  }, 60_000);
});

/** A port nothing listens on (just now). */
async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

describe('the broker API key stays with the gateway', () => {
  it('takeBrokerKey reads the variable once and removes it from the environment', () => {
    process.env.GW_UNIT_BROKER_KEY = 'cst_unit_key';
    expect(takeBrokerKey('GW_UNIT_BROKER_KEY')).toBe('cst_unit_key');
    expect('GW_UNIT_BROKER_KEY' in process.env).toBe(false);
    expect(takeBrokerKey('GW_UNIT_BROKER_KEY')).toBeUndefined();
    process.env.GW_UNIT_BROKER_KEY = '';
    expect(takeBrokerKey('GW_UNIT_BROKER_KEY')).toBeUndefined();
    expect('GW_UNIT_BROKER_KEY' in process.env).toBe(false);
  });

  /**
   * `gateway serve --broker` against a broker stand-in that hands out one challenge (the GPU
   * program then runs for its nonce) and is unavailable after, with a GPU program that records its
   * environment and prints no evidence (so the gateway does not attest and exits 1). `keyArgs`
   * says where the broker key comes from; returns what the broker saw and what the program saw.
   */
  async function brokerKeyRun(keyArgs: (dir: string) => string[], env: Record<string, string>): Promise<{ seenAuth: string[]; seen: Record<string, string> }> {
    const seenAuth: string[] = [];
    const broker = createServer((req, res) => {
      seenAuth.push(req.headers.authorization ?? '');
      req.resume();
      if (req.method === 'POST' && req.url === '/v1/attest/challenge') {
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ session: 's1', nonce: Buffer.alloc(32, 7).toString('base64url'), expiresAt: new Date(Date.now() + 60_000).toISOString() }));
      } else res.writeHead(503, { 'content-type': 'application/json' }).end(JSON.stringify({ code: 'ERR_STORE_UNAVAILABLE' }));
    });
    await new Promise<void>((r) => broker.listen(0, '127.0.0.1', r));
    const t = tempDir();
    try {
      const envFile = join(t.dir, 'env.json');
      const program = join(t.dir, 'gpu-env.mjs');
      writeFileSync(program, "import { readFileSync, writeFileSync } from 'node:fs'; writeFileSync(process.argv[2], JSON.stringify(process.env));\n");
      const brokerUrl = `http://127.0.0.1:${(broker.address() as { port: number }).port}`;
      const child = spawn(process.execPath, [...nodeArgs, 'gateway', 'serve', '--port', '0', '--json', '--broker', brokerUrl, ...keyArgs(t.dir), '--gpu-evidence-cmd', `${process.execPath} ${program} ${envFile} {nonce}`], {
        cwd: cliDir,
        env: { ...process.env, NO_COLOR: '1', ...env },
      });
      children.push(child);
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      expect(await exitOf(child)).toBe(1);
      expect(out).toContain('ERR_GATEWAY_NOT_ATTESTED');
      const seen = JSON.parse(readFileSync(envFile, 'utf8')) as Record<string, string>;
      expect(seen.NO_COLOR).toBe('1');
      return { seenAuth, seen };
    } finally {
      broker.close();
      t.cleanup();
    }
  }

  it('--broker: the key is sent to the broker, and the GPU evidence program inherits neither it (whatever --broker-key-env names) nor any CUSTODY_* variable', async () => {
    const key = 'cst_broker_key_for_the_gateway_only';
    const { seenAuth, seen } = await brokerKeyRun(() => ['--broker-key-env', 'GW_TEST_BROKER_KEY'], { GW_TEST_BROKER_KEY: key, CUSTODY_OTHER_SECRET: 'custody_secret_marker' });
    expect(seenAuth).toContain(`Bearer ${key}`);
    expect(Object.keys(seen).filter((k) => k.startsWith('CUSTODY_') || k === 'GW_TEST_BROKER_KEY')).toEqual([]);
    expect(JSON.stringify(seen)).not.toContain(key);
    expect(JSON.stringify(seen)).not.toContain('custody_secret_marker');
  }, 60_000);

  it("--broker-key-file: the key is read from a file, so it is in no environment at all (not even the gateway's starting one, which /proc/<pid>/environ shows)", async () => {
    const key = 'cst_broker_key_for_the_gateway_only';
    const keyArgs = (dir: string) => {
      const file = join(dir, 'broker.key');
      writeFileSync(file, `${key}\n`, { mode: 0o600 });
      return ['--broker-key-file', file];
    };
    const { seenAuth, seen } = await brokerKeyRun(keyArgs, { PGPASSWORD: 'replay_store_password_marker' });
    expect(seenAuth).toContain(`Bearer ${key}`);
    expect(JSON.stringify(seen)).not.toContain(key);
    expect(Object.keys(seen)).not.toContain('PGPASSWORD');
  }, 60_000);
});
