import { access, constants } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { CustodyError } from '@custody/core';
import type { Attester, AttesterPlatform } from './attester.js';
import { ConfigfsTsmAttester, nodeTsmFs, probeTsmProvider, TSM_REPORT_ROOT, type TsmFs } from './configfs-tsm.js';
import { SimAttester, type SimAttesterOptions } from './sim.js';
import { TpmAttester, type TpmAttesterOptions } from './tpm.js';

export interface AttesterEnvironment {
  /** TPM device with a resource manager. Default /dev/tpmrm0. */
  tpmDevice?: string;
  /** An explicit TCTI (e.g. swtpm) counts as a TPM being present. Default: $TPM2TOOLS_TCTI. */
  tcti?: string;
  tsmRoot?: string;
  tsmFs?: TsmFs;
  /** PATH to look for tpm2-tools on. Default: $PATH. */
  path?: string;
}

export interface DetectedPlatform {
  platform: AttesterPlatform;
  /** How it is reached: a TCTI, the configfs-tsm root, or `software`. */
  via: string;
  /** False when the device exists but a tool it needs is missing. */
  usable: boolean;
  note?: string;
}

async function exists(path: string, mode = constants.F_OK): Promise<boolean> {
  try {
    await access(path, mode);
    return true;
  } catch {
    return false;
  }
}

async function onPath(tool: string, path: string): Promise<boolean> {
  for (const dir of path.split(delimiter).filter(Boolean)) if (await exists(join(dir, tool), constants.X_OK)) return true;
  return false;
}

/** What this machine can attest with, hardware first; `sim` is always last. */
export async function detectPlatforms(env: AttesterEnvironment = {}): Promise<DetectedPlatform[]> {
  const out: DetectedPlatform[] = [];
  const tsmRoot = env.tsmRoot ?? TSM_REPORT_ROOT;
  const provider = await probeTsmProvider(tsmRoot, env.tsmFs ?? nodeTsmFs);
  if (provider === 'sev_guest') out.push({ platform: 'sev-snp', via: tsmRoot, usable: true });
  else if (provider === 'tdx_guest') out.push({ platform: 'tdx', via: tsmRoot, usable: true });
  const tcti = env.tcti ?? process.env.TPM2TOOLS_TCTI;
  const device = env.tpmDevice ?? '/dev/tpmrm0';
  const via = tcti ?? ((await exists(device)) ? `device:${device}` : undefined);
  if (via) {
    const tools = await onPath('tpm2_quote', env.path ?? process.env.PATH ?? '');
    out.push(tools ? { platform: 'tpm', via, usable: true } : { platform: 'tpm', via, usable: false, note: 'tpm2-tools is not installed' });
  }
  out.push({ platform: 'sim', via: 'software', usable: true, note: 'SIMULATED: no hardware stands behind sim evidence' });
  return out;
}

export type AttesterChoice = AttesterPlatform | 'snp';

export interface CreateAttesterOptions {
  tpm?: TpmAttesterOptions;
  sim?: SimAttesterOptions;
  tsmRoot?: string;
  tsmFs?: TsmFs;
  privlevel?: number;
}

/** The attester for a platform name (`snp` is accepted for `sev-snp`). */
export function createAttester(platform: string, options: CreateAttesterOptions = {}): Attester {
  switch (platform) {
    case 'tpm':
      return new TpmAttester(options.tpm);
    case 'snp':
    case 'sev-snp':
    case 'tdx':
      return new ConfigfsTsmAttester({
        platform: platform === 'tdx' ? 'tdx' : 'sev-snp',
        ...(options.tsmRoot ? { root: options.tsmRoot } : {}),
        ...(options.tsmFs ? { fs: options.tsmFs } : {}),
        ...(options.privlevel !== undefined ? { privlevel: options.privlevel } : {}),
      });
    case 'sim':
      return new SimAttester(options.sim);
    default:
      throw new CustodyError('ERR_USAGE', `unknown attester platform "${platform}"; use tpm, snp, tdx or sim`);
  }
}

/** The best hardware attester on this machine; never falls back to sim silently. */
export async function createDetectedAttester(env: AttesterEnvironment = {}, options: CreateAttesterOptions = {}): Promise<Attester> {
  const hw = (await detectPlatforms(env)).find((d) => d.platform !== 'sim' && d.usable);
  if (!hw) throw new CustodyError('ERR_ATTESTER_UNAVAILABLE', 'no TPM or configfs-tsm on this machine; pass --platform sim for simulated evidence');
  if (hw.platform === 'tpm') return new TpmAttester({ ...options.tpm, tcti: options.tpm?.tcti ?? hw.via });
  return createAttester(hw.platform, { ...options, tsmRoot: env.tsmRoot ?? TSM_REPORT_ROOT, ...(env.tsmFs ? { tsmFs: env.tsmFs } : {}) });
}
