import { spawn } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeNewSecretFile } from '@custody/crypto-node';
import { CustodyError, fromBase64, isCustodyError, secureRandom, timingSafeEqual, toBase64, wipe, type Bytes } from '@custody/core';
import { importMasterKey, MASTER_KEY_BYTES, type MasterKeyProvider } from './master-key.js';

export type TpmSealBank = 'sha1' | 'sha256' | 'sha384' | 'sha512';

export interface TpmMasterKeyOptions {
  /** The sealed-blob file (created 0600 on first start, never overwritten), e.g. `<data>/master-key.tpm.json`. */
  path: string;
  /** TCTI of the TPM. Default `device:/dev/tpmrm0`; swtpm: `swtpm:host=127.0.0.1,port=P`. */
  tcti?: string;
  /**
   * PCRs the sealed key is bound to (PolicyPCR over their values at sealing time), so it only
   * unseals in the same measured boot state. Default [0, 7] (firmware and Secure Boot state);
   * `[]` seals without a PCR policy. Used when sealing; later starts use what the file records.
   */
  pcrs?: number[];
  /** PCR bank of the policy. Default sha256. */
  bank?: TpmSealBank;
  timeoutMs?: number;
  /** Randomness for the new master key (tests inject it). Default: the system CSPRNG. */
  random?: (n: number) => Bytes;
}

export const DEFAULT_TPM_TCTI = 'device:/dev/tpmrm0';
export const DEFAULT_SEAL_PCRS: readonly number[] = [0, 7];
const SEALED_FORMAT = 'custody-tpm-sealed-master-key/v1';
/** The primary key template: a deterministic ECC P-256 storage key in the owner hierarchy. */
const PRIMARY_ARGS = ['-C', 'o', '-g', 'sha256', '-G', 'ecc'];
const MAX_SEALED_FILE = 64 * 1024;
const MAX_TOOL_OUTPUT = 1024 * 1024;

interface SealedFile {
  format: typeof SEALED_FORMAT;
  primary: 'owner/ecc-sha256';
  policy: { bank: TpmSealBank; pcrs: number[] } | null;
  /** TPM2B_PUBLIC and TPM2B_PRIVATE of the sealed data object, base64. The private part is encrypted by the TPM; neither holds the key. */
  public: string;
  private: string;
}

type TpmFailure = 'unavailable' | 'policy' | 'failed' | 'blob';

function tpmError(reason: TpmFailure, message: string, detail: Record<string, string | number | boolean> = {}, cause?: unknown): CustodyError {
  return new CustodyError('ERR_MASTER_KEY_TPM', message, { detail: { reason, ...detail }, ...(cause !== undefined ? { cause } : {}) });
}

/** Child environment: tools need PATH and the like, never Custody's own secrets. */
function childEnv(tcti: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('CUSTODY_') && !k.startsWith('TPM2TOOLS_') && !k.startsWith('TSS2_')) env[k] = v;
  env.TPM2TOOLS_TCTI = tcti;
  return env;
}

/**
 * Runs one tpm2-tools command without a shell; `stdin` (the secret when sealing) goes through a
 * pipe, never argv or the environment. Returns stdout as bytes (the unsealed secret when
 * unsealing); the caller wipes it. Errors carry the tool's last stderr line (response codes).
 */
function runTool(tool: string, args: string[], tcti: string, timeoutMs: number, stdin?: Uint8Array): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn(tool, [...args, `--tcti=${tcti}`], { env: childEnv(tcti), stdio: ['pipe', 'pipe', 'pipe'], shell: false });
    const out: Buffer[] = [];
    let outLen = 0;
    let stderr = '';
    let settled = false;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    const finish = (err: CustodyError | undefined) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      const stdout = Buffer.concat(out);
      for (const b of out) b.fill(0);
      if (err) {
        stdout.fill(0);
        reject(err);
      } else {
        resolve(stdout);
      }
    };
    child.stdout.on('data', (b: Buffer) => {
      outLen += b.length;
      if (outLen > MAX_TOOL_OUTPUT) child.kill('SIGKILL');
      else out.push(b);
    });
    child.stderr.on('data', (b: Buffer) => {
      if (stderr.length < 16_384) stderr += b.toString('utf8');
    });
    child.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') finish(tpmError('unavailable', `${tool} not found: install tpm2-tools`, { tool }, e));
      else finish(tpmError('failed', `${tool} could not be started`, { tool }, e));
    });
    child.on('close', (code, signal) => {
      if (code === 0) return finish(undefined);
      // Killed at the deadline: the TPM does not answer (it may again later).
      if (timedOut) return finish(tpmError('unavailable', `${tool} got no answer from the TPM within ${timeoutMs} ms`, { tool, timedOut: true }));
      const lines = stderr.split('\n').map((l) => l.trim()).filter(Boolean);
      const last = (lines.at(-1) === 'ERROR: Unable to run ' + tool ? lines.at(-2) : lines.at(-1)) ?? '';
      let reason: TpmFailure = 'failed';
      if (/policy check failed|0x0*99d\b|0x0*9a2\b|authorization failure|TPM_RC_POLICY_FAIL/i.test(stderr)) reason = 'policy';
      else if (/tcti|Connection refused|No such file or directory|Failed to initialize|Could not load|cannot open/i.test(stderr)) reason = 'unavailable';
      finish(tpmError(reason, `${tool} failed: ${last.slice(0, 200)}`, { tool, exit: code ?? -1, ...(signal ? { signal } : {}) }));
    });
    child.stdin.on('error', () => undefined); // a tool that exits early closes the pipe
    child.stdin.end(stdin ? Buffer.from(stdin.buffer, stdin.byteOffset, stdin.byteLength) : undefined);
  });
}

function checkTcti(tcti: string): void {
  // The TCTI goes into argv; it is a public config string, but keep it one printable token.
  if (!/^[A-Za-z0-9_-]+(:[\x21-\x7e]*)?$/.test(tcti) || tcti.length > 512) throw new CustodyError('ERR_STORE_CONFIG', 'invalid TPM TCTI string');
}

function checkPcrs(pcrs: readonly number[]): number[] {
  if (pcrs.some((p) => !Number.isInteger(p) || p < 0 || p > 23)) throw new CustodyError('ERR_STORE_CONFIG', 'PCR indices must be integers 0..23');
  return [...new Set(pcrs)].sort((a, b) => a - b);
}

function parseSealedFile(path: string): SealedFile {
  let text: string;
  try {
    if (statSync(path).size > MAX_SEALED_FILE) throw tpmError('blob', 'sealed master key file is too large', { path });
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if (e instanceof CustodyError) throw e;
    throw tpmError('blob', 'sealed master key file cannot be read', { path }, e);
  }
  const bad = () => tpmError('blob', 'sealed master key file is malformed', { path });
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw bad();
  }
  if (typeof v !== 'object' || v === null) throw bad();
  const o = v as Record<string, unknown>;
  if (o.format !== SEALED_FORMAT || o.primary !== 'owner/ecc-sha256' || typeof o.public !== 'string' || typeof o.private !== 'string') throw bad();
  let policy: SealedFile['policy'] = null;
  if (o.policy !== null) {
    const p = o.policy as Record<string, unknown> | undefined;
    if (typeof p !== 'object' || p === null || !['sha1', 'sha256', 'sha384', 'sha512'].includes(p.bank as string) || !Array.isArray(p.pcrs) || p.pcrs.length === 0) throw bad();
    try {
      policy = { bank: p.bank as TpmSealBank, pcrs: checkPcrs(p.pcrs as number[]) };
    } catch {
      throw bad();
    }
  }
  try {
    fromBase64(o.public);
    fromBase64(o.private);
  } catch {
    throw bad();
  }
  return { format: SEALED_FORMAT, primary: 'owner/ecc-sha256', policy, public: o.public, private: o.private };
}

/** Writes the sealed file 0600 without ever replacing an existing one (write a temp name, then hard-link). */
function persistSealedFile(path: string, sealed: SealedFile): void {
  try {
    writeNewSecretFile(path, JSON.stringify(sealed, null, 2) + '\n');
  } catch (e) {
    if (isCustodyError(e) && e.code === 'ERR_FILE_EXISTS') throw new CustodyError('ERR_STORE_CONFIG', 'sealed master key file appeared concurrently; start again', { cause: e, detail: { path } });
    throw e;
  }
}

/**
 * A master key sealed to the TPM. First start: 32 random bytes are sealed as a TPM data object
 * (tpm2_create -i -, secret on stdin) under the owner-hierarchy primary key, optionally with a
 * PolicyPCR digest over the chosen PCRs, checked by one unseal, and only the TPM2B_PUBLIC /
 * TPM2B_PRIVATE blobs are written to `path`. Later starts: tpm2_createprimary (the same
 * template gives the same primary key), tpm2_load, tpm2_unseal (with a PCR policy session when
 * bound), and the bytes read from the tool's stdout are imported and wiped.
 *
 * Fails closed with ERR_MASTER_KEY_TPM (detail.reason: `unavailable` when the TPM or tools are
 * missing, `policy` when the PCRs no longer match, `failed` for other TPM errors such as a blob
 * from another TPM, `blob` for an unreadable file). An existing file is never overwritten.
 * The owner hierarchy must have an empty authorization value.
 */
export function masterKeyFromTpm(options: TpmMasterKeyOptions): MasterKeyProvider {
  const tcti = options.tcti ?? DEFAULT_TPM_TCTI;
  checkTcti(tcti);
  const requestedPcrs = checkPcrs(options.pcrs ?? DEFAULT_SEAL_PCRS);
  const bank = options.bank ?? 'sha256';
  const timeoutMs = options.timeoutMs ?? 60_000;
  const tool = (name: string, args: string[], stdin?: Uint8Array) => runTool(name, args, tcti, timeoutMs, stdin);
  const flush = async () => {
    await tool('tpm2_flushcontext', ['-t']).catch(() => undefined);
    // A failed policy unseal leaves its policy session loaded; a bare TPM (swtpm) has only three.
    await tool('tpm2_flushcontext', ['-l']).catch(() => undefined);
  };
  const policyDesc = (p: SealedFile['policy']) => (p ? `${p.bank}:${p.pcrs.join(',')}` : 'none');

  async function unseal(dir: string, sealed: SealedFile): Promise<Buffer> {
    const pub = join(dir, 'seal.pub');
    const priv = join(dir, 'seal.priv');
    const ctx = join(dir, 'seal.ctx');
    await writeFile(pub, fromBase64(sealed.public), { mode: 0o600 });
    await writeFile(priv, fromBase64(sealed.private), { mode: 0o600 });
    await tool('tpm2_load', ['-C', join(dir, 'primary.ctx'), '-u', pub, '-r', priv, '-c', ctx]);
    await flush();
    const args = ['-c', ctx];
    if (sealed.policy) args.push('-p', `pcr:${policyDesc(sealed.policy)}`);
    return afterFlush(tool('tpm2_unseal', args));
  }

  /**
   * Flushes transient objects after `op`, whatever its outcome, except after a command killed at
   * its deadline: a TPM that did not answer it would not answer the flush either (one deadline,
   * not three).
   */
  async function afterFlush<T>(op: Promise<T>): Promise<T> {
    let out: T;
    try {
      out = await op;
    } catch (e) {
      if (!(e instanceof CustodyError && e.detail?.timedOut === true)) await flush();
      throw e;
    }
    await flush();
    return out;
  }

  return {
    description: `tpm:${tcti} (sealed blobs ${options.path})`,
    async load() {
      const dir = await mkdtemp(join(tmpdir(), 'custody-tpm-seal-'));
      let secret: Buffer | undefined;
      let generated: Bytes | undefined;
      try {
        await tool('tpm2_createprimary', [...PRIMARY_ARGS, '-c', join(dir, 'primary.ctx')]);
        await flush();
        let sealed: SealedFile;
        let exists = true;
        try {
          statSync(options.path);
        } catch {
          exists = false;
        }
        if (exists) {
          sealed = parseSealedFile(options.path);
        } else {
          const policy = requestedPcrs.length > 0 ? { bank, pcrs: requestedPcrs } : null;
          const args = ['-C', join(dir, 'primary.ctx'), '-i', '-', '-u', join(dir, 'new.pub'), '-r', join(dir, 'new.priv')];
          if (policy) {
            await tool('tpm2_createpolicy', ['--policy-pcr', '-l', policyDesc(policy), '-L', join(dir, 'policy.digest')]);
            await flush();
            // No userwithauth: only the PCR policy authorizes unsealing.
            args.push('-L', join(dir, 'policy.digest'), '-a', 'fixedtpm|fixedparent');
          } else {
            args.push('-a', 'fixedtpm|fixedparent|userwithauth');
          }
          generated = (options.random ?? secureRandom)(MASTER_KEY_BYTES);
          await afterFlush(tool('tpm2_create', args, generated));
          const [pub, priv] = await Promise.all([readFile(join(dir, 'new.pub')), readFile(join(dir, 'new.priv'))]);
          sealed = { format: SEALED_FORMAT, primary: 'owner/ecc-sha256', policy, public: toBase64(pub), private: toBase64(priv) };
        }
        secret = await unseal(dir, sealed);
        if (secret.length !== MASTER_KEY_BYTES) throw tpmError('failed', 'the unsealed master key has the wrong length', { length: secret.length });
        if (generated) {
          // The round trip works: only now is the sealed object worth keeping.
          if (!timingSafeEqual(secret, generated)) throw tpmError('failed', 'the TPM returned different bytes than were sealed');
          persistSealedFile(options.path, sealed);
        }
        const raw = new Uint8Array(secret);
        return await importMasterKey(raw);
      } catch (e) {
        if (e instanceof CustodyError) {
          if (e.code === 'ERR_MASTER_KEY_TPM') throw new CustodyError(e.code, e.message, { cause: e, detail: { ...(e.detail ?? {}), path: options.path } });
          throw e;
        }
        throw tpmError('failed', 'the TPM-sealed master key could not be loaded', { path: options.path }, e);
      } finally {
        if (secret) wipe(secret);
        if (generated) wipe(generated);
        await rm(dir, { recursive: true, force: true });
      }
    },
  };
}
