import { randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import { join } from 'node:path';
import { CustodyError, toBase64Url, utf8 } from '@custody/core';
import { checkReportData, MAX_REPORT_DATA, SerialQueue, type Attester } from './attester.js';

/** Where Linux (6.7+) exposes TSM attestation reports (Documentation/ABI/testing/configfs-tsm). */
export const TSM_REPORT_ROOT = '/sys/kernel/config/tsm/report';

/**
 * The few file operations the configfs-tsm attester needs. The default is the real file system;
 * tests pass a stand-in that behaves like the kernel.
 */
export interface TsmFs {
  mkdir(path: string): Promise<void>;
  rmdir(path: string): Promise<void>;
  readFile(path: string): Promise<Uint8Array>;
  writeFile(path: string, data: Uint8Array): Promise<void>;
}

export const nodeTsmFs: TsmFs = {
  mkdir: async (p) => {
    await fsp.mkdir(p);
  },
  rmdir: (p) => fsp.rmdir(p),
  readFile: async (p) => new Uint8Array(await fsp.readFile(p)),
  writeFile: (p, d) => fsp.writeFile(p, d),
};

const PROVIDERS: Record<string, 'sev-snp' | 'tdx'> = { sev_guest: 'sev-snp', tdx_guest: 'tdx' };

export interface ConfigfsTsmOptions {
  /** The platform the caller expects; collect fails if the provider is another one. */
  platform: 'sev-snp' | 'tdx';
  root?: string;
  fs?: TsmFs;
  /** SNP only: the VMPL to request (written to `privlevel`). */
  privlevel?: number;
}

function errno(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException | undefined)?.code;
}

/** The provider of the configfs-tsm report interface: `sev_guest`, `tdx_guest`, ... */
export async function probeTsmProvider(root = TSM_REPORT_ROOT, fs: TsmFs = nodeTsmFs): Promise<string | undefined> {
  const dir = join(root, `custody-probe-${randomBytes(8).toString('hex')}`);
  try {
    await fs.mkdir(dir);
  } catch {
    return undefined;
  }
  try {
    return new TextDecoder().decode(await fs.readFile(join(dir, 'provider'))).trim();
  } catch {
    return undefined;
  } finally {
    await fs.rmdir(dir).catch(() => undefined);
  }
}

/**
 * SEV-SNP and TDX reports through configfs-tsm: create a report entry, write the 64-byte
 * `inblob` (report data, zero-padded: TDX requires exactly 64 bytes), read `outblob` (the
 * report or quote), `auxblob` (SNP: the GUID-keyed certificate table, when the host supplies
 * one) and `provider`, check `generation` did not move (no other writer raced us), remove the
 * entry. Output: `{"provider","outblob","auxblob"}` JSON, blobs base64url; `auxblob` is left
 * out when the kernel has none.
 */
export class ConfigfsTsmAttester implements Attester {
  readonly platform: 'sev-snp' | 'tdx';
  private readonly root: string;
  private readonly fs: TsmFs;
  private readonly queue = new SerialQueue();

  constructor(private readonly options: ConfigfsTsmOptions) {
    this.platform = options.platform;
    this.root = options.root ?? TSM_REPORT_ROOT;
    this.fs = options.fs ?? nodeTsmFs;
    if (options.privlevel !== undefined && (!Number.isInteger(options.privlevel) || options.privlevel < 0 || options.privlevel > 3)) {
      throw new CustodyError('ERR_USAGE', 'privlevel must be 0..3');
    }
  }

  async collect(reportData: Uint8Array): Promise<Uint8Array> {
    checkReportData(reportData);
    return this.queue.run(() => this.collectOnce(reportData));
  }

  private async read(dir: string, name: string): Promise<Uint8Array> {
    try {
      return await this.fs.readFile(join(dir, name));
    } catch (e) {
      throw new CustodyError('ERR_ATTESTER_FAILED', `reading configfs-tsm ${name} failed (${errno(e) ?? 'error'})`, { cause: e });
    }
  }

  private async collectOnce(reportData: Uint8Array): Promise<Uint8Array> {
    const dir = join(this.root, `custody-${randomBytes(8).toString('hex')}`);
    try {
      await this.fs.mkdir(dir);
    } catch (e) {
      const code = errno(e);
      throw new CustodyError('ERR_ATTESTER_UNAVAILABLE', `configfs-tsm is not available at ${this.root} (${code ?? 'error'})`, { cause: e });
    }
    try {
      const provider = new TextDecoder().decode(await this.read(dir, 'provider')).trim();
      if (PROVIDERS[provider] !== this.platform) {
        throw new CustodyError('ERR_ATTESTER_UNAVAILABLE', `configfs-tsm provider is ${JSON.stringify(provider.slice(0, 32))}, not the ${this.platform} one`);
      }
      if (this.options.privlevel !== undefined) await this.fs.writeFile(join(dir, 'privlevel'), utf8(String(this.options.privlevel)));
      const inblob = new Uint8Array(MAX_REPORT_DATA);
      inblob.set(reportData);
      await this.fs.writeFile(join(dir, 'inblob'), inblob);
      const before = await this.generation(dir);
      const outblob = await this.read(dir, 'outblob');
      let auxblob: Uint8Array | undefined;
      try {
        auxblob = await this.fs.readFile(join(dir, 'auxblob'));
      } catch (e) {
        // Absent (older kernels, TDX) or not supplied by the host: the verifier then needs certificates.
        if (!['ENOENT', 'EOPNOTSUPP', 'ENXIO', 'ENOTSUP'].includes(errno(e) ?? '')) {
          throw new CustodyError('ERR_ATTESTER_FAILED', `reading configfs-tsm auxblob failed (${errno(e) ?? 'error'})`, { cause: e });
        }
      }
      const after = await this.generation(dir);
      if (before !== after) throw new CustodyError('ERR_ATTESTER_FAILED', 'configfs-tsm report entry was changed by another writer while reading it');
      if (outblob.length === 0) throw new CustodyError('ERR_ATTESTER_FAILED', 'configfs-tsm returned an empty outblob');
      const doc: Record<string, string> = { provider, outblob: toBase64Url(outblob) };
      if (auxblob && auxblob.length > 0) doc.auxblob = toBase64Url(auxblob);
      return utf8(JSON.stringify(doc) + '\n');
    } finally {
      await this.fs.rmdir(dir).catch(() => undefined);
    }
  }

  private async generation(dir: string): Promise<string> {
    return new TextDecoder().decode(await this.read(dir, 'generation')).trim();
  }
}
