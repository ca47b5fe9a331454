import type { Command } from 'commander';
import { CustodyError, fromUtf8, systemClock } from '@custody/core';
import type { DeviceInput } from '@custody/policy';
import { DEFAULT_RULES, TRUST_CLAIMS, appraisalReasons, appraise, loadPolicy, type AppraisalRule, type CompiledPolicy } from '@custody/policy';
import type { Register } from './index.js';
import { readInputFile, parseTime } from '../files.js';
import { failWith, mark, printJson } from '../output.js';
import { EXIT_NOT_VERIFIED, EXIT_OK } from '../exit.js';

/**
 * `custody policy show|test`: read a policy file and evaluate it against claims files, offline.
 * Nothing is released and no broker is contacted. (`policy set`, which installs a policy in a
 * running broker, belongs with the broker.)
 */
export const register: Register = (program: Command) => {
  const policy = program.command('policy').description('Inspect appraisal policies and test them against claims, offline');

  policy
    .command('show')
    .description('Validate a policy file and print its reference values and rules (without --policy: the default rules)')
    .option('--policy <file>', 'policy file (YAML or JSON)')
    .option('--json', 'machine-readable output')
    .action(async (opts: { policy?: string; json?: boolean }) => {
      const json = opts.json ?? false;
      try {
        if (!opts.policy) {
          if (json) printJson({ ok: true, defaultRules: DEFAULT_RULES });
          else printRules('default rules', DEFAULT_RULES);
          return;
        }
        const p = await readPolicy(opts.policy);
        if (json) {
          printJson({ ok: true, policyId: p.policyId, digest: p.digest, document: p.document, defaultRules: DEFAULT_RULES.length, rules: p.rules });
          return;
        }
        const d = p.document;
        out(`policy ${d.id} version ${d.version}`);
        out(`  id      ${p.policyId}`);
        if (d.description) out(`  about   ${d.description}`);
        out(`  simulated evidence ${d.allowSimulated ? 'ALLOWED' : 'rejected'}; debug TEEs ${d.allowDebug ? 'ALLOWED (warning)' : 'rejected'}`);
        for (const [platform, ref] of Object.entries(d.platforms)) {
          out(`\n${platform}`);
          for (const [kind, values] of [['code', ref.executables], ['config', ref.configuration]] as const) {
            for (const [name, list] of Object.entries(values)) out(`  ${kind.padEnd(6)} ${name.padEnd(14)} ${list.join('\n' + ' '.repeat(24))}`);
          }
          if (ref.signerRoots.length > 0) out(`  roots  ${ref.signerRoots.join(', ')}`);
          const t = ref.tcb;
          out(`  tcb    allowed ${t.allowedStatuses.join(', ') || '-'}; warning ${t.warnStatuses.join(', ') || '-'}; status ${t.requireStatus ? 'required' : 'optional'}`);
          if (Object.keys(t.minSvn).length > 0) out(`  svn    ${Object.entries(t.minSvn).map(([k, v]) => `${k} >= ${v}`).join(', ')}`);
          if (t.allowedAdvisories.length > 0) out(`  advisories accepted: ${t.allowedAdvisories.join(', ')}; others ${t.unlistedAdvisory}`);
        }
        out('');
        printRules(`rules (${DEFAULT_RULES.length} default, ${d.rules.length} custom)`, p.rules);
      } catch (e) {
        failWith(e, json);
      }
    });

  policy
    .command('test')
    .description('Appraise a claims file against a policy, printing the verdict and reasons; releases nothing')
    .requiredOption('--policy <file>', 'policy file (YAML or JSON)')
    .requiredOption('--claims <file>', 'JSON: NormalizedClaims, a VerificationResult, a list of them, or {"cpu0": ..., "gpu0": ...}')
    .option('--at <time>', 'appraisal time (RFC 3339); default now')
    .option('--json', 'machine-readable output')
    .action(async (opts: { policy: string; claims: string; at?: string; json?: boolean }) => {
      const json = opts.json ?? false;
      try {
        const now = parseTime(opts.at) ?? systemClock();
        const p = await readPolicy(opts.policy);
        const input = readClaims(opts.claims);
        const a = appraise(p, input, { now });
        const reasons = appraisalReasons(a);
        const ok = a.status === 'affirming';
        if (json) {
          printJson({
            ok,
            status: a.status,
            policyId: a.policyId,
            appraisedAt: a.appraisedAt,
            submods: Object.fromEntries(
              Object.entries(a.submods).map(([k, s]) => [k, { platform: s.platform, status: s.status, trustVector: s.trustVector, findings: s.findings }]),
            ),
            reasons,
          });
        } else {
          out(`policy ${p.policyId}`);
          for (const [name, s] of Object.entries(a.submods)) {
            out(`\n${name} (${s.platform}): ${s.status}`);
            for (const claim of TRUST_CLAIMS) {
              const v = s.trustVector[claim];
              if (v !== undefined) out(`  ${claim.padEnd(18)} ${v}`);
            }
            for (const f of s.findings) {
              if (f.passed) continue;
              out(`  ${mark(f.tier !== 'warning' && f.tier !== 'contraindicated')} ${f.rule}${f.device ? ` [${f.device}]` : ''} ${f.code ?? ''}: ${f.reason ?? ''}`);
            }
          }
          out(`\nverdict: ${a.status}${ok ? '' : ` (${reasons.length} reason${reasons.length === 1 ? '' : 's'})`}`);
        }
        process.exitCode = ok ? EXIT_OK : EXIT_NOT_VERIFIED;
      } catch (e) {
        failWith(e, json);
      }
    });
};

function out(line: string): void {
  process.stdout.write(line + '\n');
}

function printRules(title: string, rules: readonly AppraisalRule[]): void {
  out(title);
  for (const r of rules) {
    out(`\n  ${r.id}  [${r.claim}: ${r.affirm !== undefined ? `pass ${r.affirm}, ` : ''}fail ${r.fail}, ${r.code}]`);
    if (r.when) out(`    when  ${r.when}`);
    out(`    rule  ${r.expr}`);
    out(`    why   ${r.reason}`);
  }
}

async function readPolicy(path: string): Promise<CompiledPolicy> {
  const bytes = readInputFile(path, 'policy file');
  const format = /\.json$/i.test(path) ? 'json' : /\.ya?ml$/i.test(path) ? 'yaml' : 'auto';
  return loadPolicy(bytes, format);
}

function readClaims(path: string): DeviceInput[] | Record<string, DeviceInput> {
  const text = fromUtf8(readInputFile(path, 'claims file'));
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new CustodyError('ERR_INPUT_MALFORMED', `claims file is not JSON: ${path}`, { cause: e });
  }
  if (Array.isArray(v)) return v as DeviceInput[];
  if (typeof v !== 'object' || v === null) throw new CustodyError('ERR_INPUT_MALFORMED', 'claims file must hold an object or a list');
  const o = v as Record<string, unknown>;
  // A `custody verify --json` result, or claims: both name their platform.
  if (typeof o.platform === 'string') return [o as unknown as DeviceInput];
  return o as Record<string, DeviceInput>;
}
