import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { repoRoot } from '../../../../test/vectors.js';

const data = mkdtempSync(join(tmpdir(), 'custody-up-'));
let firstRun = '';
afterAll(() => rmSync(data, { recursive: true, force: true }));

function custody(...args: string[]) {
  return spawnSync(process.execPath, ['--conditions=source', '--import', 'tsx', 'apps/cli/src/main.ts', ...args], { cwd: repoRoot, encoding: 'utf8', timeout: 120_000, env: { ...process.env, CUSTODY_COMMAND: '' } });
}

describe('custody up (the quick start)', () => {
  it('verifies the samples, releases a key to an attested workload, refuses a tampered one, and runs one confidential request', () => {
    const r = custody('up', '--data', data, '--once');
    firstRun = r.stdout;
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout.match(/PASS {2}(AMD SEV-SNP|Intel TDX|AWS Nitro)/g)).toHaveLength(3);
    expect(r.stdout).toMatch(/released "model-key" v1 \(32 bytes/);
    expect(r.stdout).toMatch(/refused a tampered workload .*: ERR_EVIDENCE_MEASUREMENT/);
    expect(r.stdout).toContain('Custody gateway verification: VERIFIED');
    expect(r.stdout).toContain('SIMULATED');
    expect(r.stdout).toMatch(/ledger entry \d+/);
    // Strict mode: the SDK proved the broker's appraisal of the gateway from the ledger.
    expect(r.stdout).toMatch(/PASS ledger +the broker's appraisal is entry \d+ of custody\.local\/ledger/);
    // The PII in the prompt never reached the model: it was masked, then restored in the answer.
    expect(r.stdout).toMatch(/person_name_1/);
    // The commands it suggests name an installed `custody` when no launcher says otherwise.
    expect(r.stdout).toMatch(/^ {2}custody receipt verify \//m);
  });

  it('suggests commands as the launcher was run, quoted for the shell when they need it', () => {
    const dir = mkdtempSync(join(tmpdir(), "custody up's dir "));
    try {
      const r = spawnSync(process.execPath, ['--conditions=source', '--import', 'tsx', 'apps/cli/src/main.ts', 'up', '--data', dir, '--once'], {
        cwd: repoRoot,
        encoding: 'utf8',
        timeout: 120_000,
        env: { ...process.env, CUSTODY_COMMAND: '/opt/my tools/custody' },
      });
      expect(r.status, r.stderr).toBe(0);
      const quotedDir = `'${dir.replace(/'/g, `'\\''`)}`;
      expect(r.stdout).toContain(`  '/opt/my tools/custody' log verify --checkpoint ${quotedDir}/ledger/checkpoint' --vkey '`);
      expect(r.stdout).toContain(`  '/opt/my tools/custody' receipt verify ${quotedDir}/last-request/receipt.json' --bundle `);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('is idempotent on its state directory, and its log and ledger hold no prompt text', () => {
    const again = custody('up', '--data', data, '--once', '--json');
    expect(again.status).toBe(0);
    const j = JSON.parse(again.stdout);
    expect(j.ok).toBe(true);
    expect(j.receipt.ledger.index).toBeGreaterThan(0);
    expect(j.verification.steps.find((x: { name: string }) => x.name === 'ledger')).toMatchObject({ ok: true, ran: true });
    const texts: string[] = [readFileSync(join(data, 'custody.log'), 'utf8')];
    const walk = (d: string): void => {
      for (const e of readdirSync(d, { withFileTypes: true })) {
        const p = join(d, e.name);
        if (e.isDirectory()) walk(p);
        else texts.push(readFileSync(p).toString('latin1'));
      }
    };
    walk(join(data, 'ledger'));
    for (const t of texts) {
      expect(t).not.toContain('Jane Roe');
      expect(t).not.toContain('jane.roe@example.com');
    }
  });

  it('saves what an auditor needs, and `custody receipt verify` checks it offline; a changed answer fails', () => {
    const saved = join(data, 'last-request');
    const vkey = /--vkey '([^']+)'/.exec(firstRun.split('custody receipt verify')[1] ?? '')?.[1];
    expect(vkey).toBeDefined();
    const args = [join(saved, 'receipt.json'), '--bundle', join(saved, 'bundle.json'), '--jwks', join(saved, 'jwks.json'), '--allow-simulated', '--proof', join(saved, 'receipt.tlog-proof'), '--vkey', vkey!];
    // The first run's files were replaced by the second run's: verify what is there now.
    // As printed: with --strict, the broker's appraisal of the gateway is proved from the log too.
    expect(firstRun).toMatch(/receipt\.tlog-proof --vkey '[^']+' --strict$/m);
    const ok = custody('receipt', 'verify', ...args, '--response', join(saved, 'response.json'), '--strict', '--json');
    expect(ok.status).toBe(0);
    const doc = JSON.parse(ok.stdout);
    expect(doc.ok).toBe(true);
    expect(doc.steps.find((x: { name: string }) => x.name === 'gateway').detail).toMatch(/strict: the broker's appraisal is entry \d+ of custody\.local\/ledger/);
    expect(doc.steps.map((x: { name: string; ran: boolean }) => `${x.name}:${x.ran}`)).toEqual(['receipt:true', 'gateway:true', 'binding:true', 'signature:true', 'ledger:true', 'response:true']);
    const changed = join(data, 'changed-response.json');
    writeFileSync(changed, readFileSync(join(saved, 'response.json'), 'utf8').replace('custody-demo', 'custody-dem0'));
    const bad = custody('receipt', 'verify', ...args, '--response', changed);
    expect(bad.status).toBe(1);
    expect(bad.stdout).toMatch(/FAIL {2}response .*\[ERR_RECEIPT_MISMATCH\]/);
    // The demo gateway has no GPU: an auditor who requires one is refused, naming why.
    const gpu = custody('receipt', 'verify', ...args, '--min-gpus', '1', '--json');
    expect(gpu.status).toBe(1);
    expect(JSON.parse(gpu.stdout).error).toMatchObject({ step: 'gateway', code: 'ERR_SDK_DEVICE_MISSING' });
    expect(custody('receipt', 'verify', ...args, '--min-gpus', 'one').status).toBe(2);
    // Usage: no trust anchor for the gateway's attestation.
    const usage = custody('receipt', 'verify', join(saved, 'receipt.json'), '--bundle', join(saved, 'bundle.json'));
    expect(usage.status).toBe(2);
    expect(usage.stderr).toContain('ERR_USAGE');
  });

  it('`custody receipt verify` refuses bad files as bad input (exit 2), typed, and never waits on a FIFO or reads a device', () => {
    const saved = join(data, 'last-request');
    const vkey = /--vkey '([^']+)'/.exec(firstRun.split('custody receipt verify')[1] ?? '')?.[1];
    const rest = (over: Record<string, string> = {}) => {
      const o: Record<string, string> = { '--bundle': join(saved, 'bundle.json'), '--jwks': join(saved, 'jwks.json'), '--proof': join(saved, 'receipt.tlog-proof'), '--vkey': vkey!, ...over };
      return [...Object.entries(o).flat(), '--allow-simulated'];
    };
    const receipt = readFileSync(join(saved, 'receipt.json'), 'utf8');
    const tenant = /"tenant": ?"([^"]+)"/.exec(receipt)?.[1];
    expect(tenant).toBeDefined();
    const bad = mkdtempSync(join(tmpdir(), 'custody-bad-'));
    try {
      // A repeated member: JSON.parse keeps the last (the signed one), a reader may take the first.
      const dup = join(bad, 'dup.json');
      writeFileSync(dup, receipt.replace(/"tenant": ?"[^"]+"/, `"tenant": "another-tenant", "tenant": "${tenant}"`));
      const fifo = join(bad, 'fifo');
      expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
      const nullJwks = join(bad, 'null.json');
      writeFileSync(nullJwks, 'null');
      const empty = join(bad, 'empty.json');
      writeFileSync(empty, '');
      const cases: Array<[string, string[], string]> = [
        ['repeated member', [dup, ...rest()], 'ERR_INPUT_MALFORMED'],
        ['FIFO receipt', [fifo, ...rest()], 'ERR_FILE_NOT_REGULAR'],
        ['FIFO proof', [join(saved, 'receipt.json'), ...rest({ '--proof': fifo })], 'ERR_FILE_NOT_REGULAR'],
        ['a device', ['/dev/zero', ...rest()], 'ERR_FILE_NOT_REGULAR'],
        ['a directory', [bad, ...rest()], 'ERR_FILE_NOT_REGULAR'],
        ['JWKS null', [join(saved, 'receipt.json'), ...rest({ '--jwks': nullJwks })], 'ERR_INPUT_MALFORMED'],
        ['empty receipt', [empty, ...rest()], 'ERR_INPUT_MALFORMED'],
        ['bundle not JSON', [join(saved, 'receipt.json'), ...rest({ '--bundle': empty })], 'ERR_INPUT_MALFORMED'],
        // An unset shell variable must not skip the check it was meant to ask for.
        ['empty --proof', [join(saved, 'receipt.json'), ...rest({ '--proof': '' })], 'ERR_USAGE'],
        ['empty --response', [join(saved, 'receipt.json'), ...rest({ '--response': '' })], 'ERR_USAGE'],
      ];
      for (const [what, args, code] of cases) {
        const r = custody('receipt', 'verify', ...args);
        expect({ what, status: r.status, code: /custody: (ERR_[A-Z0-9_]+)/.exec(r.stderr)?.[1] }).toEqual({ what, status: 2, code });
        expect(r.stderr).not.toMatch(/\n\s+at /);
      }
    } finally {
      rmSync(bad, { recursive: true, force: true });
    }
  });

  it('refuses a bad --port before anything starts, and a state path that is a file or holds an unwritable log file, typed', () => {
    const port = custody('up', '--once', '--data', join(data, 'never'), '--port', 'abc');
    expect([port.status, /custody: (ERR_[A-Z_]+)/.exec(port.stderr)?.[1]]).toEqual([2, 'ERR_USAGE']);
    expect(port.stdout).toBe('');
    // A model that is not there: said at once, with the file and why; nothing started or logged.
    const model = custody('up', '--once', '--data', join(data, 'never'), '--model', join(data, 'nosuch.gguf'));
    expect([model.status, /custody: (ERR_[A-Z_]+)/.exec(model.stderr)?.[1]]).toEqual([2, 'ERR_GATEWAY_MODEL_FILE']);
    expect(model.stderr).toContain('nosuch.gguf cannot be opened (no such file)');
    expect(model.stdout).toBe('');
    expect(existsSync(join(data, 'never'))).toBe(false);
    const file = join(data, 'a-file');
    writeFileSync(file, 'x');
    const notDir = custody('up', '--once', '--data', file);
    expect([notDir.status, /custody: (ERR_[A-Z_]+)/.exec(notDir.stderr)?.[1]]).toEqual([2, 'ERR_FILE_NOT_REGULAR']);
    const blocked = join(data, 'blocked');
    mkdirSync(join(blocked, 'custody.log'), { recursive: true });
    const log = custody('up', '--once', '--data', blocked);
    expect([log.status, /custody: (ERR_[A-Z_]+)/.exec(log.stderr)?.[1]]).toEqual([3, 'ERR_FILE_UNWRITABLE']);
    expect(log.stderr).not.toMatch(/\n\s+at /);
  });

  it('a second custody up on a state directory in use says so (exit 3, ERR_TLOG_LOCKED), and the first one keeps serving', async () => {
    const busy = join(data, 'busy');
    const first = spawn(process.execPath, ['--conditions=source', '--import', 'tsx', 'apps/cli/src/main.ts', 'up', '--data', busy], { cwd: repoRoot, env: { ...process.env, CUSTODY_COMMAND: '' } });
    try {
      let out = '';
      first.stdout.on('data', (d: Buffer) => (out += d.toString()));
      await new Promise<void>((resolve, reject) => {
        const t = setInterval(() => {
          if (out.includes('Serving until interrupted')) {
            clearInterval(t);
            resolve();
          }
        }, 100);
        first.once('exit', (code) => {
          clearInterval(t);
          reject(new Error(`the first custody up exited ${code}`));
        });
      });
      const second = custody('up', '--once', '--data', busy);
      expect([second.status, /custody: (ERR_[A-Z_]+)/.exec(second.stderr)?.[1]]).toEqual([3, 'ERR_TLOG_LOCKED']);
      expect(second.stderr).toContain('another custody up (or a log serve) is using');
      expect(first.exitCode).toBeNull();
    } finally {
      first.kill('SIGINT');
      await new Promise((r) => (first.exitCode !== null ? r(undefined) : first.once('exit', r)));
    }
  }, 180_000);

  it('--model: seals the GGUF under a broker key in the state directory, serves it sealed, and reuses both on the next run', () => {
    const dir = mkdtempSync(join(tmpdir(), 'custody-up-model-'));
    try {
      const model = join(dir, 'tiny.gguf');
      const made = spawnSync(process.execPath, ['--conditions=source', '--import', 'tsx', 'services/gateway/src/testing/make-tiny-gguf.ts', model], { cwd: repoRoot, encoding: 'utf8' });
      expect(made.status, made.stderr).toBe(0);
      const state = join(dir, 'state');
      const first = custody('up', '--data', state, '--once', '--model', model);
      expect(first.status, first.stderr).toBe(0);
      expect(first.stdout).toMatch(/PASS {2}model weights sealed under broker key "model-weights-[0-9a-f]{12}" v1 \(sealed now: .*\.sealed\); the broker released the key to the attested gateway/);
      expect(first.stdout).toContain('Custody gateway verification: VERIFIED');
      expect(first.stdout).toMatch(/answer \(custody-tiny-llama\)/);
      const sealed = readdirSync(join(state, 'models'));
      expect(sealed).toHaveLength(1);
      // The sealed file holds no stretch of the weights.
      expect(readFileSync(join(state, 'models', sealed[0]!)).includes(readFileSync(model).subarray(-4096))).toBe(false);
      const second = custody('up', '--data', state, '--once', '--model', model);
      expect(second.status, second.stderr).toBe(0);
      expect(second.stdout).toContain('(kept from an earlier run');
      expect(readdirSync(join(state, 'models'))).toEqual(sealed);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
