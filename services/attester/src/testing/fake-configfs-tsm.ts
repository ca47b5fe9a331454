// Test stand-in for the kernel side of configfs-tsm, over a real temporary directory. It is
// NOT the kernel: it mimics the documented behaviour (Documentation/ABI/testing/configfs-tsm)
// so the attester's file handling can be tested on machines without SEV-SNP or TDX.
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, basename, join } from 'node:path';
import type { TsmFs } from '../configfs-tsm.js';

function fsError(code: string, path: string): NodeJS.ErrnoException {
  const e = new Error(`${code}: ${path}`) as NodeJS.ErrnoException;
  e.code = code;
  return e;
}

export interface FakeTsmOptions {
  /** `sev_guest`, `tdx_guest`, or anything else to test a foreign provider. */
  provider: string;
  /** Builds the outblob from the inblob, like the TEE firmware would. */
  report: (inblob: Uint8Array) => Uint8Array;
  /** SNP certificate table; undefined = no auxblob attribute (like TDX). */
  auxblob?: Uint8Array;
  /** Called while outblob is being read: lets a test play a concurrent writer. */
  duringOutblobRead?: (entry: string) => Promise<void>;
}

export class FakeTsmFs implements TsmFs {
  readonly created: string[] = [];
  private readonly generations = new Map<string, number>();

  constructor(
    readonly root: string,
    private readonly options: FakeTsmOptions,
  ) {}

  private entry(path: string): string {
    const dir = dirname(path);
    if (dirname(dir) !== this.root) throw fsError('ENOENT', path);
    if (!this.generations.has(dir)) throw fsError('ENOENT', path);
    return dir;
  }

  async mkdir(path: string): Promise<void> {
    if (dirname(path) !== this.root) throw fsError('ENOENT', path);
    await mkdir(path); // fails with ENOENT when the root is missing, EEXIST when taken
    this.created.push(basename(path));
    this.generations.set(path, 0);
    await writeFile(join(path, 'provider'), this.options.provider + '\n');
  }

  async rmdir(path: string): Promise<void> {
    if (!this.generations.delete(path)) throw fsError('ENOENT', path);
    await rm(path, { recursive: true, force: true });
  }

  async writeFile(path: string, data: Uint8Array): Promise<void> {
    const dir = this.entry(path);
    const name = basename(path);
    if (name !== 'inblob' && name !== 'privlevel') throw fsError('EACCES', path);
    if (name === 'inblob' && data.length > 64) throw fsError('EINVAL', path);
    await writeFile(path, data);
    this.generations.set(dir, this.generations.get(dir)! + 1);
  }

  /** What a concurrent writer does: any write bumps the generation. */
  bumpGeneration(dir: string): void {
    this.generations.set(dir, (this.generations.get(dir) ?? 0) + 1);
  }

  async readFile(path: string): Promise<Uint8Array> {
    const dir = this.entry(path);
    switch (basename(path)) {
      case 'generation':
        return new TextEncoder().encode(`${this.generations.get(dir)}\n`);
      case 'outblob': {
        let inblob: Uint8Array;
        try {
          inblob = new Uint8Array(await readFile(join(dir, 'inblob')));
        } catch {
          throw fsError('EINVAL', path);
        }
        await this.options.duringOutblobRead?.(dir);
        return this.options.report(inblob);
      }
      case 'auxblob':
        if (!this.options.auxblob) throw fsError('ENOENT', path);
        return this.options.auxblob;
      default:
        return new Uint8Array(await readFile(path));
    }
  }
}
