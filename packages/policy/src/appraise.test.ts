/* eslint-disable @typescript-eslint/no-explicit-any -- tests edit policy documents as free-form JSON */
import { describe, it, expect } from 'vitest';
import type { NormalizedClaims, VerificationResult } from '@custody/attest';
import { appraisalReasons, appraise, compilePolicy, loadPolicy, readPolicyText, validatePolicyObject, type CompiledPolicy, type Finding } from './index.js';
import * as F from './testing/claims.js';

const NOW = new Date('2025-06-01T12:00:00Z');

/** The fixture policy, edited as a plain object (as if the YAML had been written that way). */
async function policy(edit?: (doc: Record<string, any>) => void): Promise<CompiledPolicy> {
  const doc = readPolicyText(F.POLICY_YAML) as Record<string, any>;
  edit?.(doc);
  return compilePolicy(validatePolicyObject(doc));
}

function failures(findings: Finding[]): Finding[] {
  return findings.filter((f) => !f.passed && (f.tier === 'contraindicated' || f.tier === 'warning'));
}

interface PlatformCase {
  name: string;
  claims: () => NormalizedClaims;
  /** A code measurement to corrupt. */
  executable: string;
  /** A configuration measurement to corrupt, where the platform has one in the policy. */
  configuration?: string;
  vector: Record<string, number>;
}

const platformCases: PlatformCase[] = [
  {
    name: 'sev-snp',
    claims: F.snpClaims,
    executable: 'measurement',
    configuration: 'hostData',
    vector: { 'instance-identity': 2, hardware: 2, executables: 2, configuration: 2, 'runtime-opaque': 2 },
  },
  {
    name: 'tdx',
    claims: F.tdxClaims,
    executable: 'rtmr1',
    configuration: 'rtmr0',
    vector: { 'instance-identity': 2, hardware: 2, executables: 2, configuration: 2, 'runtime-opaque': 2 },
  },
  {
    name: 'nitro',
    claims: F.nitroClaims,
    executable: 'pcr0',
    configuration: 'pcr3',
    vector: { 'instance-identity': 2, hardware: 2, executables: 2, configuration: 2, 'runtime-opaque': 2 },
  },
  {
    name: 'tpm',
    claims: F.tpmClaims,
    executable: 'pcr4',
    configuration: 'pcr7',
    // The policy pins the attestation key, which identifies the instance.
    vector: { 'instance-identity': 2, hardware: 2, executables: 2, configuration: 2, 'runtime-opaque': 2 },
  },
  {
    name: 'azure-vtpm',
    claims: F.azureSnpClaims,
    executable: 'pcr0',
    configuration: 'pcr7',
    vector: { 'instance-identity': 2, hardware: 2, executables: 2, configuration: 2, 'runtime-opaque': 2 },
  },
  {
    name: 'nvidia',
    claims: F.nvidiaClaims,
    executable: 'measurement10',
    vector: { 'instance-identity': 2, hardware: 2, executables: 2, 'runtime-opaque': 2 },
  },
];

describe('appraisal per platform', () => {
  for (const c of platformCases) {
    describe(c.name, () => {
      it('affirms the expected workload', async () => {
        const a = appraise(await policy(), c.claims(), { now: NOW });
        const sub = Object.values(a.submods)[0]!;
        expect(a.status).toBe('affirming');
        expect(sub.status).toBe('affirming');
        expect(failures(sub.findings)).toEqual([]);
        for (const [claim, value] of Object.entries(c.vector)) expect(sub.trustVector[claim as keyof typeof sub.trustVector], claim).toBe(value);
        expect(a.policyId).toMatch(/^custody:policy:trainer:3:sha256:[0-9a-f]{64}$/);
      });

      it('contraindicates a wrong code measurement, naming it', async () => {
        const claims = c.claims();
        claims.measurements[c.executable] = 'ee'.repeat(claims.measurements[c.executable]!.length / 2);
        const a = appraise(await policy(), claims, { now: NOW });
        const sub = Object.values(a.submods)[0]!;
        expect(a.status).toBe('contraindicated');
        expect(sub.trustVector.executables).toBe(96);
        const [f] = failures(sub.findings);
        expect(f).toMatchObject({ rule: 'executables', claim: 'executables', code: 'ERR_EVIDENCE_MEASUREMENT', tier: 'contraindicated' });
        expect(f!.reason).toContain(`${c.executable} = ee`);
      });

      it('contraindicates a missing code measurement', async () => {
        const claims = c.claims();
        delete claims.measurements[c.executable];
        const sub = Object.values(appraise(await policy(), claims, { now: NOW }).submods)[0]!;
        expect(sub.status).toBe('contraindicated');
        expect(failures(sub.findings)[0]!.reason).toContain(`${c.executable} = missing`);
      });

      if (c.configuration) {
        const name = c.configuration;
        it('contraindicates a wrong configuration measurement', async () => {
          const claims = c.claims();
          claims.measurements[name] = 'dd'.repeat(claims.measurements[name]!.length / 2);
          const sub = Object.values(appraise(await policy(), claims, { now: NOW }).submods)[0]!;
          expect(sub.status).toBe('contraindicated');
          expect(sub.trustVector.configuration).toBe(96);
          expect(sub.trustVector.executables).toBe(2);
          expect(failures(sub.findings).map((f) => [f.rule, f.code])).toEqual([['configuration', 'ERR_EVIDENCE_MEASUREMENT']]);
        });
      }

      it('contraindicates debug mode by default', async () => {
        const claims = c.claims();
        claims.debug = true;
        const sub = Object.values(appraise(await policy(), claims, { now: NOW }).submods)[0]!;
        expect(sub.status).toBe('contraindicated');
        expect(sub.trustVector.configuration).toBe(96);
        expect(failures(sub.findings).map((f) => f.code)).toContain('ERR_EVIDENCE_DEBUG');
      });

      it('warns on debug mode when the policy allows debug', async () => {
        const claims = c.claims();
        claims.debug = true;
        const sub = Object.values(appraise(await policy((d) => (d.allowDebug = true)), claims, { now: NOW }).submods)[0]!;
        expect(sub.status).toBe('warning');
        expect(sub.trustVector.configuration).toBe(32);
        expect(sub.trustVector['runtime-opaque']).toBe(32);
      });

      it('contraindicates evidence that claims to be simulated', async () => {
        const claims = c.claims();
        claims.simulated = true;
        const sub = Object.values(appraise(await policy(), claims, { now: NOW }).submods)[0]!;
        expect(sub.status).toBe('contraindicated');
        expect(failures(sub.findings).map((f) => f.code)).toContain('ERR_EVIDENCE_SIMULATED');
      });

      it('contraindicates a platform the policy does not name', async () => {
        const a = appraise(await policy((d) => delete d.platforms[c.name]), c.claims(), { now: NOW });
        expect(a.status).toBe('contraindicated');
        expect(failures(Object.values(a.submods)[0]!.findings).map((f) => f.code)).toEqual(['ERR_POLICY_PLATFORM']);
      });
    });
  }
});

describe('signer roots', () => {
  const rootCases = [
    { name: 'sev-snp', claims: F.snpClaims },
    { name: 'tdx', claims: F.tdxClaims },
    { name: 'nitro', claims: F.nitroClaims },
    { name: 'nvidia', claims: F.nvidiaClaims },
    { name: 'tpm', claims: F.tpmClaims },
  ];
  for (const c of rootCases) {
    it(`${c.name}: a chain to another root is contraindicated`, async () => {
      const claims = c.claims();
      claims.signer.rootSha256 = 'cc'.repeat(32);
      const sub = Object.values(appraise(await policy(), claims, { now: NOW }).submods)[0]!;
      expect(sub.status).toBe('contraindicated');
      expect(sub.trustVector.hardware).toBe(97);
      expect(failures(sub.findings).map((f) => [f.rule, f.code])).toEqual([['signer-root', 'ERR_POLICY_SIGNER']]);
    });
  }

  it('a TPM attestation key must be pinned by the policy', async () => {
    await expect(policy((d) => delete d.platforms.tpm.signerRoots)).rejects.toMatchObject({ code: 'ERR_POLICY_INVALID' });
    const p = await policy((d) => (d.platforms.tpm.signerRoots = ['99'.repeat(32)]));
    const a = appraise(p, F.tpmClaims(), { now: NOW });
    expect(a.status).toBe('contraindicated');
    expect(appraisalReasons(a).map((r) => r.code)).toEqual(['ERR_POLICY_SIGNER']);
  });

  it('evidence with no trust anchor makes no hardware or identity claim', async () => {
    const c = F.nvidiaClaims();
    delete c.signer.rootSha256;
    const a = appraise(await policy((d) => delete d.platforms.nvidia.signerRoots), c, { now: NOW });
    expect(a.submods.gpu0!.trustVector).toMatchObject({ hardware: 0, 'instance-identity': 0, executables: 2 });
    expect(a.status).toBe('affirming');
  });

  it('sim keys can be pinned too', async () => {
    const p = await policy((d) => {
      d.allowSimulated = true;
      d.platforms.sim.signerRoots = ['77'.repeat(32)];
    });
    expect(appraisalReasons(appraise(p, F.simClaims(), { now: NOW })).map((r) => r.code)).toEqual(['ERR_POLICY_SIGNER']);
  });

  it('without signerRoots in the policy the verifier pinned roots stand', async () => {
    const claims = F.snpClaims();
    claims.signer.rootSha256 = 'cc'.repeat(32);
    const a = appraise(await policy((d) => delete d.platforms['sev-snp'].signerRoots), claims, { now: NOW });
    expect(a.status).toBe('affirming');
  });
});

describe('simulated evidence', () => {
  it('is contraindicated by default', async () => {
    const a = appraise(await policy(), F.simClaims(), { now: NOW });
    expect(a.status).toBe('contraindicated');
    expect(a.submods.cpu0!.trustVector.hardware).toBe(96);
    expect(appraisalReasons(a)).toEqual([expect.objectContaining({ submod: 'cpu0', rule: 'simulated', code: 'ERR_EVIDENCE_SIMULATED', tier: 'contraindicated' })]);
  });

  it('is accepted when the policy allows it, claiming nothing about hardware', async () => {
    const a = appraise(await policy((d) => (d.allowSimulated = true)), F.simClaims(), { now: NOW });
    expect(a.status).toBe('affirming');
    expect(a.submods.cpu0!.trustVector).toEqual({ hardware: 0, executables: 2 });
    expect(a.submods.cpu0!.findings.find((f) => f.rule === 'simulated-allowed')).toMatchObject({ tier: 'none', code: 'ERR_EVIDENCE_SIMULATED' });
  });

  it('still has to match its reference measurement when allowed', async () => {
    const claims = F.simClaims();
    claims.measurements.measurement = '00'.repeat(48);
    const a = appraise(await policy((d) => (d.allowSimulated = true)), claims, { now: NOW });
    expect(a.status).toBe('contraindicated');
    expect(appraisalReasons(a).map((r) => r.code)).toEqual(['ERR_EVIDENCE_MEASUREMENT']);
  });
});

describe('TCB status, SVNs and advisories', () => {
  const tdx = (status: NonNullable<NormalizedClaims['tcb']>['status'], advisoryIds: string[] = []) => {
    const c = F.tdxClaims();
    c.tcb!.status = status;
    c.tcb!.advisoryIds = advisoryIds;
    return c;
  };

  const table: { name: string; claims: () => NormalizedClaims; edit?: (d: Record<string, any>) => void; status: string; codes: string[] }[] = [
    { name: 'OutOfDate is contraindicated by default', claims: () => tdx('OutOfDate'), status: 'contraindicated', codes: ['ERR_TCB_OUT_OF_DATE'] },
    {
      name: 'OutOfDate is a warning when the policy lists it under warnStatuses',
      claims: () => tdx('OutOfDate'),
      edit: (d) => (d.platforms.tdx.tcb.warnStatuses = ['OutOfDate']),
      status: 'warning',
      codes: ['ERR_TCB_OUT_OF_DATE'],
    },
    {
      name: 'SWHardeningNeeded affirms when the policy allows it',
      claims: () => tdx('SWHardeningNeeded'),
      edit: (d) => (d.platforms.tdx.tcb.allowedStatuses = ['UpToDate', 'SWHardeningNeeded']),
      status: 'affirming',
      codes: [],
    },
    { name: 'Revoked is always contraindicated', claims: () => tdx('Revoked'), edit: (d) => (d.platforms.tdx.tcb.warnStatuses = ['OutOfDate']), status: 'contraindicated', codes: ['ERR_TCB_REVOKED'] },
    {
      name: 'a missing status is contraindicated for TDX',
      claims: () => {
        const c = F.tdxClaims();
        delete c.tcb!.status;
        return c;
      },
      status: 'contraindicated',
      codes: ['ERR_TCB_NO_MATCH'],
    },
    { name: 'an accepted advisory affirms', claims: () => tdx('UpToDate', ['INTEL-SA-00837']), status: 'affirming', codes: [] },
    { name: 'an unlisted advisory is contraindicated', claims: () => tdx('UpToDate', ['INTEL-SA-00837', 'INTEL-SA-01036']), status: 'contraindicated', codes: ['ERR_POLICY_ADVISORY'] },
    {
      name: 'an unlisted advisory is a warning when the policy says so',
      claims: () => tdx('UpToDate', ['INTEL-SA-01036']),
      edit: (d) => (d.platforms.tdx.tcb.unlistedAdvisory = 'warning'),
      status: 'warning',
      codes: ['ERR_POLICY_ADVISORY'],
    },
    {
      name: 'SNP below the minimum SVN is contraindicated',
      claims: () => {
        const c = F.snpClaims();
        c.tcb!.components.microcode = 60;
        return c;
      },
      status: 'contraindicated',
      codes: ['ERR_TCB_OUT_OF_DATE'],
    },
    {
      name: 'SNP without TCB claims fails a minimum SVN',
      claims: () => {
        const c = F.snpClaims();
        delete c.tcb;
        return c;
      },
      status: 'contraindicated',
      codes: ['ERR_TCB_OUT_OF_DATE'],
    },
    {
      name: 'SNP above the minimum SVN affirms',
      claims: () => {
        const c = F.snpClaims();
        c.tcb!.components = { bootloader: 3, tee: 1, snp: 8, microcode: 115 };
        return c;
      },
      status: 'affirming',
      codes: [],
    },
  ];

  for (const t of table) {
    it(t.name, async () => {
      const a = appraise(await policy(t.edit), t.claims(), { now: NOW });
      expect(a.status).toBe(t.status);
      expect([...new Set(appraisalReasons(a).map((r) => r.code))]).toEqual(t.codes);
    });
  }

  it('explains which SVN is low', async () => {
    const c = F.snpClaims();
    c.tcb!.components.snp = 4;
    const [r] = appraisalReasons(appraise(await policy(), c, { now: NOW }));
    expect(r!.reason).toContain('snp = 4 < 5');
  });
});

describe('composite evidence', () => {
  it('gives one submodule per device: cpu0 and gpu0', async () => {
    const a = appraise(await policy(), [F.tdxClaims(), F.nvidiaClaims()], { now: NOW });
    expect(Object.keys(a.submods)).toEqual(['cpu0', 'gpu0']);
    expect(a.submods.cpu0!.platform).toBe('tdx');
    expect(a.submods.gpu0!.platform).toBe('nvidia');
    expect(a.status).toBe('affirming');
  });

  it('a wrong GPU measurement contraindicates the whole, not the CPU', async () => {
    const gpu = F.nvidiaClaims();
    gpu.measurements.measurement12 = '00'.repeat(48);
    const a = appraise(await policy(), { cpu0: F.snpClaims(), gpu0: gpu }, { now: NOW });
    expect(a.status).toBe('contraindicated');
    expect(a.submods.cpu0!.status).toBe('affirming');
    expect(a.submods.gpu0!.status).toBe('contraindicated');
    expect(appraisalReasons(a)).toEqual([expect.objectContaining({ submod: 'gpu0', code: 'ERR_EVIDENCE_MEASUREMENT' })]);
  });

  it('a GPU in debug mode contraindicates', async () => {
    const gpu = F.nvidiaClaims();
    gpu.debug = true;
    const a = appraise(await policy(), [F.tdxClaims(), gpu], { now: NOW });
    expect(a.status).toBe('contraindicated');
    expect(a.submods.gpu0!.status).toBe('contraindicated');
  });

  it('a warning on one device and affirming on another is a warning overall', async () => {
    const cpu = F.tdxClaims();
    cpu.tcb!.status = 'OutOfDate';
    const a = appraise(await policy((d) => (d.platforms.tdx.tcb.warnStatuses = ['OutOfDate'])), [cpu, F.nvidiaClaims()], { now: NOW });
    expect(a.status).toBe('warning');
  });

  it('the SNP report behind an Azure vTPM is appraised against the SNP reference values', async () => {
    const az = F.azureSnpClaims();
    az.devices!['sev-snp']!.measurements.measurement = '11'.repeat(48);
    const a = appraise(await policy(), az, { now: NOW });
    expect(a.status).toBe('contraindicated');
    expect(appraisalReasons(a)).toEqual([expect.objectContaining({ submod: 'cpu0', device: 'sev-snp', code: 'ERR_EVIDENCE_MEASUREMENT' })]);
    expect(a.submods.cpu0!.trustVector.executables).toBe(96);
  });

  it('rejects bad submodule names and empty input', async () => {
    const p = await policy();
    expect(() => appraise(p, { 'bad name': F.snpClaims() }, { now: NOW })).toThrowError(expect.objectContaining({ code: 'ERR_USAGE' }));
    expect(() => appraise(p, [], { now: NOW })).toThrowError(expect.objectContaining({ code: 'ERR_USAGE' }));
    expect(() => appraise(p, F.snpClaims(), { now: new Date(Number.NaN) })).toThrowError(expect.objectContaining({ code: 'ERR_USAGE' }));
  });
});

describe('verification results', () => {
  const ok = (claims: NormalizedClaims): VerificationResult => ({ ok: true, platform: claims.platform, claims, steps: [{ name: 'signature', ok: true, detail: 'ok' }], errors: [], warnings: [], verifiedAt: NOW.toISOString() });

  it('a successful verification is appraised on its claims', async () => {
    expect(appraise(await policy(), ok(F.snpClaims()), { now: NOW }).status).toBe('affirming');
  });

  it('a failed verification is contraindicated (cryptographic validation failed), whatever its claims say', async () => {
    const r: VerificationResult = {
      ...ok(F.snpClaims()),
      ok: false,
      steps: [{ name: 'signature', ok: false, detail: 'bad', code: 'ERR_EVIDENCE_SIGNATURE' }],
      errors: [{ code: 'ERR_EVIDENCE_SIGNATURE', message: 'evidence signature is invalid', step: 'signature' }],
    };
    const a = appraise(await policy(), r, { now: NOW });
    expect(a.status).toBe('contraindicated');
    expect(a.submods.cpu0!.trustVector).toEqual({ 'instance-identity': 99 });
    expect(appraisalReasons(a).map((x) => x.code)).toEqual(['ERR_EVIDENCE_SIGNATURE']);
  });
});

describe('custom rules', () => {
  const vmplRule = {
    id: 'snp-vmpl0',
    when: "claims.platform == 'sev-snp'",
    expr: 'claims.platformClaims.vmpl == 0',
    claim: 'configuration',
    fail: 'contraindicated',
    code: 'ERR_POLICY_DENIED',
    reason: 'the workload must run at VMPL 0',
  };

  it('run after the defaults and can contraindicate', async () => {
    const p = await policy((d) => (d.rules = [vmplRule]));
    expect(p.rules.at(-1)!.id).toBe('snp-vmpl0');
    expect(appraise(p, F.snpClaims(), { now: NOW }).status).toBe('affirming');
    const c = F.snpClaims();
    c.platformClaims.vmpl = 1;
    const a = appraise(p, c, { now: NOW });
    expect(a.status).toBe('contraindicated');
    expect(appraisalReasons(a)).toEqual([expect.objectContaining({ rule: 'snp-vmpl0', code: 'ERR_POLICY_DENIED', reason: 'the workload must run at VMPL 0' })]);
  });

  it('do not apply where `when` is false', async () => {
    const p = await policy((d) => (d.rules = [vmplRule]));
    expect(appraise(p, F.tdxClaims(), { now: NOW }).status).toBe('affirming');
  });

  it('fail closed when they cannot be evaluated', async () => {
    const p = await policy((d) => (d.rules = [{ ...vmplRule, when: undefined, expr: 'claims.platformClaims.noSuchField == 1' }]));
    const a = appraise(p, F.snpClaims(), { now: NOW });
    expect(a.status).toBe('contraindicated');
    expect(appraisalReasons(a)).toEqual([expect.objectContaining({ rule: 'snp-vmpl0', code: 'ERR_POLICY_RULE' })]);
  });

  it('fail closed when they give a non-boolean', async () => {
    const p = await policy((d) => (d.rules = [{ ...vmplRule, expr: 'claims.platformClaims.vmpl' }]));
    expect(appraise(p, F.snpClaims(), { now: NOW }).status).toBe('contraindicated');
  });

  it('read free-form reference values and the appraisal time', async () => {
    const p = await policy((d) => {
      d.platforms.nvidia.values = { driverVersions: ['550.90.07', '550.54.15'], notAfter: 1767225600 };
      d.rules = [
        { id: 'gpu-driver', when: "claims.platform == 'nvidia'", expr: 'claims.platformClaims.driverVersion in ref.values.driverVersions', claim: 'executables', fail: 'warning', reason: 'GPU driver is not an approved version', explain: 'claims.platformClaims.driverVersion' },
        { id: 'policy-expiry', expr: 'now < ref.values.notAfter', when: "claims.platform == 'nvidia'", claim: 'sourced-data', fail: 96, code: 'ERR_POLICY_DENIED', reason: 'the GPU reference values have expired' },
      ];
    });
    expect(appraise(p, F.nvidiaClaims(), { now: NOW }).status).toBe('affirming');
    const old = F.nvidiaClaims();
    old.platformClaims.driverVersion = '535.104.05';
    const a = appraise(p, old, { now: NOW });
    expect(a.status).toBe('warning');
    expect(appraisalReasons(a)[0]!.reason).toBe('GPU driver is not an approved version: 535.104.05');
    expect(appraise(p, F.nvidiaClaims(), { now: new Date('2026-06-01T00:00:00Z') }).status).toBe('contraindicated');
  });

  it('affirm values count', async () => {
    const p = await policy((d) => (d.rules = [{ id: 'storage', expr: "claims.platform == 'tdx'", claim: 'storage-opaque', affirm: 2, fail: 'none', reason: 'no sealed storage' }]));
    expect(appraise(p, F.tdxClaims(), { now: NOW }).submods.cpu0!.trustVector['storage-opaque']).toBe(2);
    expect(appraise(p, F.snpClaims(), { now: NOW }).submods.cpu0!.trustVector['storage-opaque']).toBe(0);
  });

  it('may not reuse a default rule id', async () => {
    await expect(policy((d) => (d.rules = [{ ...vmplRule, id: 'debug' }]))).rejects.toMatchObject({ code: 'ERR_POLICY_INVALID' });
  });

  it('that could run for too long are refused when the policy loads: nested comprehensions are bounded by the lists they range over', async () => {
    const list = (n: number) => `[${Array(n).fill(1).join(',')}]`;
    // Four nested comprehensions over 200-element lists: 1.6e9 steps, hours of evaluation.
    const slow = `${list(200)}.all(a, ${list(200)}.all(b, ${list(200)}.all(c, ${list(200)}.all(d, a == b))))`;
    expect(slow.length).toBeLessThan(4096);
    for (const field of ['expr', 'when', 'explain'] as const) {
      await expect(policy((d) => (d.rules = [{ ...vmplRule, [field]: slow }]))).rejects.toMatchObject({ code: 'ERR_POLICY_INVALID', detail: { where: `rules.snp-vmpl0.${field}` } });
    }
    // Two nested over the claims' own lists (taken as up to 1000 elements each) are refused too...
    await expect(policy((d) => (d.rules = [{ ...vmplRule, expr: 'claims.platformClaims.all(k, claims.platformClaims.all(j, k == j))' }]))).rejects.toMatchObject({ code: 'ERR_POLICY_INVALID' });
    // ...while one over a claims list, with a short literal inside, loads and runs.
    const p = await policy((d) => (d.rules = [{ ...vmplRule, expr: "claims.measurements.all(k, ['measurement', 'hostData', 'reportData', 'launchDigest', 'idKeyDigest'].exists(n, n == k) || true)" }]));
    expect(appraise(p, F.snpClaims(), { now: NOW }).status).toBe('affirming');
  });

  it('together may not exceed the policy budget, though each is within its own', async () => {
    const list = (n: number) => `[${Array(n).fill(1).join(',')}]`;
    const heavy = `${list(400)}.all(a, ${list(40)}.exists(b, a == b))`;
    const rules = Array.from({ length: 40 }, (_, i) => ({ ...vmplRule, id: `heavy-${i}`, when: undefined, expr: heavy }));
    await expect(policy((d) => (d.rules = rules.slice(0, 1)))).resolves.toBeDefined();
    await expect(policy((d) => (d.rules = rules))).rejects.toMatchObject({ code: 'ERR_POLICY_INVALID', detail: { maxSteps: 2_000_000 } });
  });

  it('with CEL syntax errors make the policy invalid', async () => {
    await expect(policy((d) => (d.rules = [{ ...vmplRule, expr: 'claims.platform ==' }]))).rejects.toMatchObject({ code: 'ERR_POLICY_INVALID' });
    await expect(policy((d) => (d.rules = [{ ...vmplRule, explain: '(' }]))).rejects.toMatchObject({ code: 'ERR_POLICY_INVALID' });
  });
});

describe('determinism', () => {
  it('the same input gives the same appraisal', async () => {
    const p = await loadPolicy(F.POLICY_YAML);
    const a = appraise(p, [F.tdxClaims(), F.nvidiaClaims()], { now: NOW });
    const b = appraise(p, [F.tdxClaims(), F.nvidiaClaims()], { now: NOW });
    expect(JSON.stringify(a)).toBe(JSON.stringify(b));
    expect(a.appraisedAt).toBe('2025-06-01T12:00:00.000Z');
  });
});
