// Test fixture: a throwaway SoftHSM2 token directory and token. Not part of the build.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const SOFTHSM_LIBRARY = process.env.CUSTODY_SOFTHSM_LIBRARY ?? '/usr/lib/softhsm/libsofthsm2.so';

export interface SoftHsmToken {
  library: string;
  tokenLabel: string;
  pin: string;
  soPin: string;
  dir: string;
  confPath: string;
  /** Removes the token directory; call after every store on it is closed. */
  cleanup(): void;
}

/**
 * Creates a temp SOFTHSM2_CONF and initialises one token in it with softhsm2-util. Sets
 * process.env.SOFTHSM2_CONF, which SoftHSM reads at C_Initialize: create the token before the
 * first store in this process opens the library. Needs the Debian package softhsm2.
 */
export function createSoftHsmToken(label = 'custody-test'): SoftHsmToken {
  if (!existsSync(SOFTHSM_LIBRARY)) throw new Error(`SoftHSM2 is not installed (${SOFTHSM_LIBRARY} missing): apt-get install softhsm2`);
  const dir = mkdtempSync(join(tmpdir(), 'custody-softhsm-'));
  const tokens = join(dir, 'tokens');
  execFileSync('mkdir', ['-p', tokens]);
  const confPath = join(dir, 'softhsm2.conf');
  writeFileSync(confPath, `directories.tokendir = ${tokens}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`);
  const pin = '2468';
  const soPin = '13579';
  execFileSync('softhsm2-util', ['--init-token', '--free', '--label', label, '--pin', pin, '--so-pin', soPin], { env: { ...process.env, SOFTHSM2_CONF: confPath }, stdio: 'pipe' });
  process.env.SOFTHSM2_CONF = confPath;
  return { library: SOFTHSM_LIBRARY, tokenLabel: label, pin, soPin, dir, confPath, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}
