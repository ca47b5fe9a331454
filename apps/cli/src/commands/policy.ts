import type { Command } from 'commander';
import { checkServiceUrl, CustodyError, fromUtf8, parseJsonUnique, systemClock, toCustodyError } from '@custody/core';
import { BrokerAdminClient, type TenantPolicyView } from '@custody/broker-service/client';
import type { DeviceInput } from '@custody/policy';
import { DEFAULT_RULES, TRUST_CLAIMS, appraisalReasons, appraise, loadPolicy, type AppraisalRule, type CompiledPolicy } from '@custody/policy';
import type { Register } from './index.js';
import { readInputFile, readSecretFile, parseTime } from '../files.js';
import { failWith, mark, printJson } from '../output.js';
import { EXIT_NOT_VERIFIED, EXIT_OK } from '../exit.js';
import { DEFAULT_BROKER_URL } from './keys.js';

/**
 * `custody policy show|test`: read a policy file and evaluate it against claims files, offline;
 * nothing is released and no broker is contacted. `custody policy set|get|delete`: install, read
 * or delete the appraisal policy of the API key's tenant in a running broker (PUT/GET/DELETE
 * /v1/policy). A policy set this way overrides the broker's file policies (--tenant-policy, then
 * --policy) for that tenant from its next attestation on; deleting it brings them back.
 */
export const register: Register = (program: Command) => {
  const policy = program.command('policy').description('Appraisal policies: inspect and test offline, set and get in a broker');

  policy
    .command('set')
    .description("Validate a policy file and install it as the tenant's appraisal policy in the broker (admin API key)")
    .requiredOption('--file <file>', 'policy file (YAML or JSON)')
    .option('--broker <url>', `broker URL (default CUSTODY_BROKER_URL or ${DEFAULT_BROKER_URL})`)
    .option('--api-key-file <file>', 'admin API key file (default: CUSTODY_API_KEY)')
    .option('--json', 'machine-readable output')
    .action(async (opts: ConnectionOptions & { file: string }) => {
      const json = opts.json ?? false;
      try {
        const bytes = readInputFile(opts.file, 'policy file');
        // Checked here first so a bad file fails fast, offline, with the code the broker would give.
        await loadPolicy(bytes, /\.json$/i.test(opts.file) ? 'json' : /\.ya?ml$/i.test(opts.file) ? 'yaml' : 'auto');
        const set = await adminClient(opts).setPolicy(fromUtf8(bytes));
        if (json) printJson({ ok: true, policy: withoutText(set) });
        else {
          out(`policy ${set.id} version ${set.version} set for tenant ${set.tenant} (revision ${set.revision ?? '-'})`);
          out(`  id      ${set.policyId}`);
        }
      } catch (e) {
        failWith(e, json);
      }
    });

  policy
    .command('get')
    .description("Print the appraisal policy in force for the API key's tenant in the broker (admin or auditor API key)")
    .option('--broker <url>', `broker URL (default CUSTODY_BROKER_URL or ${DEFAULT_BROKER_URL})`)
    .option('--api-key-file <file>', 'API key file (default: CUSTODY_API_KEY)')
    .option('--json', 'machine-readable output (includes the stored policy text)')
    .action(async (opts: ConnectionOptions) => {
      const json = opts.json ?? false;
      try {
        const p = await adminClient(opts).getPolicy();
        if (json) printJson({ ok: true, policy: p });
        else {
          out(`policy ${p.id} version ${p.version} for tenant ${p.tenant}`);
          out(`  id      ${p.policyId}`);
          out(`  source  ${p.source === 'stored' ? `stored (custody policy set), revision ${p.revision ?? '-'}, ${p.updatedAt ?? ''} by ${p.updatedBy ?? '-'}` : "the broker's policy file"}`);
          if (p.text !== undefined) out('\n' + p.text.replace(/\n$/, ''));
        }
      } catch (e) {
        failWith(e, json);
      }
    });

  policy
    .command('delete')
    .description("Delete the tenant's stored appraisal policy in the broker, so the broker's file policy is in force from the next attestation on (admin API key)")
    .requiredOption('--tenant <tenant>', "the tenant whose stored policy is deleted; must be the API key's (the broker refuses another with ERR_AUTH_TENANT)")
    .option('--missing-ok', 'exit 0 when no policy is stored (default: exit 1 with ERR_POLICY_NOT_STORED)')
    .option('--broker <url>', `broker URL (default CUSTODY_BROKER_URL or ${DEFAULT_BROKER_URL})`)
    .option('--api-key-file <file>', 'admin API key file (default: CUSTODY_API_KEY)')
    .option('--json', 'machine-readable output')
    .addHelpText('after', '\nExit codes: 0 deleted (or nothing stored with --missing-ok); 1 nothing stored, or refused (role, tenant);\n2 bad usage; 3 broker, store or audit sink unavailable (nothing deleted).')
    .action(async (opts: ConnectionOptions & { tenant: string; missingOk?: boolean }) => {
      const json = opts.json ?? false;
      try {
        const d = await adminClient(opts).deletePolicy(opts.tenant);
        if (json) printJson({ ok: true, tenant: d.tenant, deleted: d.deleted, inForce: d.inForce });
        else {
          out(`policy ${d.deleted.id} version ${d.deleted.version} (revision ${d.deleted.revision}) deleted for tenant ${d.tenant}`);
          out(`  now in force  ${d.inForce.id} version ${d.inForce.version}, the broker's policy file`);
          out(`  id            ${d.inForce.policyId}`);
        }
      } catch (e) {
        if (opts.missingOk && toCustodyError(e).code === 'ERR_POLICY_NOT_STORED') {
          if (json) printJson({ ok: true, tenant: opts.tenant, deleted: null });
          else out(`no stored policy for tenant ${opts.tenant}; the broker's policy file is in force`);
          return;
        }
        failWith(e, json);
      }
    });

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
        // As the broker: a warning verdict is admitted (its findings are printed); a key's release
        // policy may still ask for ear.status == 'affirming'.
        const ok = a.status === 'affirming' || a.status === 'warning';
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
          out(`\nverdict: ${a.status}${a.status === 'warning' ? ' (admitted by the broker; a release policy may still require affirming)' : ok ? '' : ` (${reasons.length} reason${reasons.length === 1 ? '' : 's'})`}`);
        }
        process.exitCode = ok ? EXIT_OK : EXIT_NOT_VERIFIED;
      } catch (e) {
        failWith(e, json);
      }
    });
};

interface ConnectionOptions {
  broker?: string;
  apiKeyFile?: string;
  json?: boolean;
}

/** As `custody keys`: the API key comes from a file or CUSTODY_API_KEY, never from a flag value. */
function adminClient(opts: ConnectionOptions): BrokerAdminClient {
  const baseUrl = opts.broker ?? process.env.CUSTODY_BROKER_URL ?? DEFAULT_BROKER_URL;
  checkServiceUrl(baseUrl, '--broker');
  let apiKey: string | undefined;
  if (opts.apiKeyFile) {
    apiKey = fromUtf8(readSecretFile(opts.apiKeyFile, 'API key file')).trim();
  } else if (process.env.CUSTODY_API_KEY) {
    apiKey = process.env.CUSTODY_API_KEY.trim();
  }
  if (!apiKey) throw new CustodyError('ERR_USAGE', 'an API key is needed: --api-key-file <path> or CUSTODY_API_KEY');
  return new BrokerAdminClient({ baseUrl, apiKey });
}

function withoutText(p: TenantPolicyView): Omit<TenantPolicyView, 'text'> {
  const { text: _text, ...rest } = p;
  return rest;
}

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
    v = parseJsonUnique(text);
  } catch (e) {
    throw new CustodyError('ERR_INPUT_MALFORMED', e instanceof CustodyError ? `claims file ${path}: ${e.message}` : `claims file is not JSON: ${path}`, { cause: e });
  }
  if (Array.isArray(v)) return v as DeviceInput[];
  if (typeof v !== 'object' || v === null) throw new CustodyError('ERR_INPUT_MALFORMED', 'claims file must hold an object or a list');
  const o = v as Record<string, unknown>;
  // A `custody verify --json` result, or claims: both name their platform.
  if (typeof o.platform === 'string') return [o as unknown as DeviceInput];
  return o as Record<string, DeviceInput>;
}
