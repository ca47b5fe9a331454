import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CustodyError, toHex } from '@custody/core';
import { encodeTpmEvidence } from '@custody/attest';
import { checkReportData, SerialQueue, type Attester } from './attester.js';
import { runTpm2Tool } from './tpm2-tools.js';

export type TpmPcrBankName = 'sha1' | 'sha256' | 'sha384' | 'sha512';

export interface TpmAttesterOptions {
  /** TCTI of the TPM: `device:/dev/tpmrm0` (default), `swtpm:host=127.0.0.1,port=P`, ... */
  tcti?: string;
  /** Algorithm of the AK created under the EK (`tpm2_createek` + `tpm2_createak`). Default rsa. */
  keyAlgorithm?: 'rsa' | 'ecc';
  /** Use an existing persistent AK (e.g. `0x81000003` on Azure vTPMs) instead of creating one. */
  akHandle?: string;
  /** PCRs to quote. Default 0..23. */
  pcrs?: number[];
  bank?: TpmPcrBankName;
  /** Where context files go; a fresh temporary directory (removed by close) by default. */
  workDir?: string;
  timeoutMs?: number;
}

const DIGEST_SIZES: Record<TpmPcrBankName, number> = { sha1: 20, sha256: 32, sha384: 48, sha512: 64 };
const ALL_PCRS = [...Array(24).keys()];

interface AkFiles {
  /** What tpm2_quote -c takes: a context file or a persistent handle. */
  context: string;
  /** TPM2B_PUBLIC of the AK. */
  publicPath: string;
}

/**
 * TPM 2.0 quotes through tpm2-tools. The AK is created once per attester (a restricted signing
 * key under the endorsement key, so the TPM itself refuses to sign forged TPMS_ATTEST data) and
 * reused; each `collect` runs `tpm2_quote -q <reportData>` and writes custody-tpm-quote/v1.
 * Transient objects are flushed after every command, because a bare TPM (swtpm, /dev/tpm0)
 * has no resource manager to do it and only a few object slots.
 */
export class TpmAttester implements Attester {
  readonly platform = 'tpm' as const;
  readonly tcti: string;
  private readonly alg: 'rsa' | 'ecc';
  private readonly pcrs: number[];
  private readonly bank: TpmPcrBankName;
  private readonly queue = new SerialQueue();
  private dir: string | undefined;
  private ownsDir: boolean;
  private ak: AkFiles | undefined;

  constructor(private readonly options: TpmAttesterOptions = {}) {
    this.tcti = options.tcti ?? 'device:/dev/tpmrm0';
    this.alg = options.keyAlgorithm ?? 'rsa';
    this.pcrs = [...new Set(options.pcrs ?? ALL_PCRS)].sort((a, b) => a - b);
    this.bank = options.bank ?? 'sha256';
    this.dir = options.workDir;
    this.ownsDir = options.workDir === undefined;
    if (this.pcrs.length === 0 || this.pcrs.some((p) => !Number.isInteger(p) || p < 0 || p > 23)) {
      throw new CustodyError('ERR_USAGE', 'PCR indices must be integers 0..23');
    }
    if (options.akHandle !== undefined && !/^0x81[0-9a-fA-F]{6}$/.test(options.akHandle)) {
      throw new CustodyError('ERR_USAGE', 'akHandle must be a persistent handle such as 0x81000003');
    }
  }

  async collect(reportData: Uint8Array): Promise<Uint8Array> {
    checkReportData(reportData);
    return this.queue.run(async () => {
      try {
        return await this.quote(reportData);
      } catch (e) {
        // A saved AK context dies with a TPM reset; recreate it once.
        if (this.ak && this.options.akHandle === undefined && e instanceof CustodyError && e.code === 'ERR_ATTESTER_FAILED') {
          this.ak = undefined;
          return this.quote(reportData);
        }
        throw e;
      }
    });
  }

  async close(): Promise<void> {
    await this.queue.run(async () => {
      if (this.dir && this.ownsDir) await rm(this.dir, { recursive: true, force: true });
      this.dir = undefined;
      this.ak = undefined;
    });
  }

  private tool(name: string, args: string[]): Promise<string> {
    return runTpm2Tool(name, args, { tcti: this.tcti, ...(this.options.timeoutMs ? { timeoutMs: this.options.timeoutMs } : {}) });
  }

  private async flushTransient(): Promise<void> {
    await this.tool('tpm2_flushcontext', ['-t']);
  }

  private async workDir(): Promise<string> {
    this.dir ??= await mkdtemp(join(tmpdir(), 'custody-tpm-'));
    return this.dir;
  }

  private async ensureAk(): Promise<AkFiles> {
    if (this.ak) return this.ak;
    const dir = await this.workDir();
    const publicPath = join(dir, 'ak.pub');
    if (this.options.akHandle !== undefined) {
      await this.tool('tpm2_readpublic', ['-c', this.options.akHandle, '-o', publicPath]);
      this.ak = { context: this.options.akHandle, publicPath };
      return this.ak;
    }
    const ek = join(dir, 'ek.ctx');
    const ak = join(dir, 'ak.ctx');
    await this.tool('tpm2_createek', ['-c', ek, '-G', 'rsa', '-u', join(dir, 'ek.pub')]);
    await this.flushTransient();
    const scheme = this.alg === 'rsa' ? 'rsassa' : 'ecdsa';
    await this.tool('tpm2_createak', ['-C', ek, '-c', ak, '-G', this.alg, '-g', 'sha256', '-s', scheme, '-u', publicPath, '-n', join(dir, 'ak.name')]);
    await this.flushTransient();
    this.ak = { context: ak, publicPath };
    return this.ak;
  }

  private async quote(reportData: Uint8Array): Promise<Uint8Array> {
    const ak = await this.ensureAk();
    const dir = await this.workDir();
    const msg = join(dir, 'quote.msg');
    const sig = join(dir, 'quote.sig');
    const pcrOut = join(dir, 'quote.pcrs');
    const args = ['-c', ak.context, '-l', `${this.bank}:${this.pcrs.join(',')}`, '-m', msg, '-s', sig, '-o', pcrOut, '-F', 'values', '-g', 'sha256'];
    if (reportData.length > 0) args.push('-q', toHex(reportData));
    try {
      await this.tool('tpm2_quote', args);
    } catch (e) {
      // A TPM that did not answer the quote would not answer the flush either: one deadline, not two.
      if (e instanceof CustodyError && e.detail?.timedOut === true) throw e;
      await this.flushTransient().catch(() => undefined);
      throw e;
    }
    await this.flushTransient().catch(() => undefined);
    const [akPublic, quote, signature, pcrBytes] = await Promise.all([readFile(ak.publicPath), readFile(msg), readFile(sig), readFile(pcrOut)]);
    await Promise.all([msg, sig, pcrOut].map((f) => rm(f, { force: true })));
    const size = DIGEST_SIZES[this.bank];
    if (pcrBytes.length !== size * this.pcrs.length) {
      throw new CustodyError('ERR_ATTESTER_FAILED', `tpm2_quote returned ${pcrBytes.length} bytes of PCR values, expected ${size * this.pcrs.length} (is the ${this.bank} bank allocated?)`);
    }
    const values = new Map<number, Uint8Array>();
    this.pcrs.forEach((p, i) => values.set(p, new Uint8Array(pcrBytes.subarray(i * size, (i + 1) * size))));
    return encodeTpmEvidence({
      akPublic: new Uint8Array(akPublic),
      quote: new Uint8Array(quote),
      signature: new Uint8Array(signature),
      pcrs: [{ bank: this.bank, values }],
    });
  }
}
