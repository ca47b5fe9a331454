import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { defaultRegistry, type VerificationResult } from '@custody/attest';
import { readInputFile, readNamedFiles } from '../files.js';
import { failWith, mark, printJson } from '../output.js';
import { EXIT_NOT_VERIFIED, EXIT_OK } from '../exit.js';
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

export const register: Register = (program: Command) => {
  program
    .command('up')
    .description('the quick start: verify real TEE evidence bundled with Custody and show every step')
    .option('--json', 'print one JSON object')
    .action(async (opts: { json?: boolean }) => {
      try {
        const results = await verifySamples();
        if (opts.json) printJson({ ok: results.every((r) => r.result.ok), samples: results });
        else {
          const lines = ['Custody quick start', '', '1. Attestation: real evidence from real hardware, verified against pinned vendor roots at its capture time', ''];
          for (const { name, result } of results) {
            const c = result.claims;
            const m = c ? Object.entries(c.measurements)[0] : undefined;
            lines.push(`  ${mark(result.ok)}  ${name}`);
            lines.push(`        ${result.steps.map((s) => `${s.name} ${s.ok ? 'ok' : 'FAILED'}`).join(', ')}`);
            if (m) lines.push(`        ${m[0]} ${m[1].slice(0, 32)}...  tcb ${c?.tcb?.status ?? '-'}  debug ${c?.debug}`);
            for (const e of result.errors) lines.push(`        ${e.code}: ${e.message}`);
          }
          lines.push('', 'See each step in full:', '  ./custody attest verify samples/sev-snp/attestation.bin --certs samples/sev-snp/vcek.der --at 2023-06-01T00:00:00Z');
          process.stdout.write(lines.join('\n') + '\n');
        }
        process.exitCode = results.every((r) => r.result.ok) ? EXIT_OK : EXIT_NOT_VERIFIED;
      } catch (e) {
        failWith(e, opts.json ?? false);
      }
    });
};
