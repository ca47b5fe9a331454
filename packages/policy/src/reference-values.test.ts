/* eslint-disable @typescript-eslint/no-explicit-any -- tests edit policy documents as free-form JSON */
import { describe, it, expect } from 'vitest';
import { utf8 } from '@custody/core';
import { loadPolicy, parsePolicyDocument, policyDigest, readPolicyText, validatePolicyObject, MAX_POLICY_BYTES } from './index.js';
import * as F from './testing/claims.js';

const base = () => readPolicyText(F.POLICY_YAML) as Record<string, any>;

describe('policy documents', () => {
  it('normalise every platform to named reference values', () => {
    const doc = parsePolicyDocument(F.POLICY_YAML);
    expect(doc.id).toBe('trainer');
    expect(doc.version).toBe(3);
    expect(doc.allowSimulated).toBe(false);
    expect(doc.allowDebug).toBe(false);
    expect(doc.platforms['sev-snp']).toMatchObject({ executables: { measurement: [F.SNP_MEASUREMENT] }, configuration: { hostData: [F.SNP_HOST_DATA] }, signerRoots: [F.ROOTS.amdMilanArk] });
    expect(doc.platforms['sev-snp']!.tcb).toEqual({ allowedStatuses: ['UpToDate'], warnStatuses: [], minSvn: { bootloader: 2, tee: 0, snp: 5, microcode: 68 }, allowedAdvisories: [], unlistedAdvisory: 'contraindicated', requireStatus: false });
    expect(Object.keys(doc.platforms.tdx!.executables).sort()).toEqual(['mrtd', 'rtmr1', 'rtmr2']);
    expect(doc.platforms.tdx!.executables.rtmr1).toEqual(['ff'.repeat(48), F.TDX.rtmr1]);
    expect(Object.keys(doc.platforms.tdx!.configuration)).toEqual(['rtmr0']);
    expect(doc.platforms.tdx!.tcb.requireStatus).toBe(true);
    expect(doc.platforms.nitro).toMatchObject({ executables: { pcr0: [F.NITRO.pcr0], pcr1: [F.NITRO.pcr1], pcr2: [F.NITRO.pcr2] }, configuration: { pcr3: [F.NITRO.pcr3] } });
    expect(doc.platforms.tpm).toMatchObject({ executables: { pcr0: [F.TPM_PCRS.pcr0], pcr4: [F.TPM_PCRS.pcr4] }, configuration: { pcr7: [F.TPM_PCRS.pcr7] } });
    expect(doc.platforms.nvidia!.executables).toEqual({ measurement2: [F.NVIDIA.measurement2], measurement10: [F.NVIDIA.measurement10], measurement12: [F.NVIDIA.measurement12] });
    expect(doc.platforms.tpm!.requireSignerRoots).toBe(true);
    expect(doc.platforms.tdx!.requireSignerRoots).toBe(false);
    expect(doc.platforms.sim!.executables).toEqual({ measurement: [F.SIM_MEASUREMENT] });
    expect(doc.rules).toEqual([]);
  });

  it('keep unquoted all-digit and exponent-looking hex in YAML as text', () => {
    const yaml = `apiVersion: custody.dev/policy/v1\nid: x\nversion: 1\nplatforms:\n  tdx:\n    mrtd: ${'0'.repeat(96)}\n    rtmr0: ${'1e5' + '0'.repeat(93)}\n    rtmr1: ${'1'.repeat(96)}\n`;
    const doc = parsePolicyDocument(yaml);
    expect(doc.platforms.tdx!.executables.mrtd).toEqual(['0'.repeat(96)]);
    expect(doc.platforms.tdx!.configuration.rtmr0).toEqual(['1e5' + '0'.repeat(93)]);
    expect(doc.platforms.tdx!.executables.rtmr1).toEqual(['1'.repeat(96)]);
  });

  it('accept JSON, YAML text and UTF-8 bytes with the same digest', async () => {
    const fromYaml = parsePolicyDocument(F.POLICY_YAML);
    const json = JSON.stringify(base());
    const fromJson = parsePolicyDocument(json);
    const fromBytes = parsePolicyDocument(utf8(F.POLICY_YAML), 'yaml');
    expect(fromJson).toEqual(fromYaml);
    expect(fromBytes).toEqual(fromYaml);
    expect(await policyDigest(fromJson)).toBe(await policyDigest(fromYaml));
  });

  it('normalise hex case and 0x prefixes, so equal policies have equal digests', async () => {
    const a = base();
    a.platforms.sim.measurement = '0x' + F.SIM_MEASUREMENT.toUpperCase();
    expect(await policyDigest(validatePolicyObject(a))).toBe(await policyDigest(validatePolicyObject(base())));
  });

  it('change digest and id with the version', async () => {
    const a = base();
    a.version = 4;
    const p3 = await loadPolicy(F.POLICY_YAML);
    const p4 = await loadPolicy(JSON.stringify(a));
    expect(p4.digest).not.toBe(p3.digest);
    expect(p4.policyId).toMatch(/^custody:policy:trainer:4:/);
  });

  const invalid: [string, (d: Record<string, any>) => void][] = [
    ['an unknown apiVersion', (d) => (d.apiVersion = 'custody.dev/policy/v9')],
    ['a missing id', (d) => delete d.id],
    ['an id with spaces', (d) => (d.id = 'my policy')],
    ['a zero version', (d) => (d.version = 0)],
    ['a fractional version', (d) => (d.version = 1.5)],
    ['a string for allowSimulated', (d) => (d.allowSimulated = 'yes')],
    ['an unknown top-level key', (d) => (d.allowEverything = true)],
    ['an unknown platform', (d) => (d.platforms.sgx = { measurements: { mrenclave: 'aa' } })],
    ['an unknown platform key', (d) => (d.platforms.tdx.mrenclave = F.TDX.mrtd)],
    ['camel-case TDX names (claims use mrconfigid)', (d) => (d.platforms.tdx.mrConfigId = F.TDX.mrtd)],
    ['a GPU index out of range', (d) => (d.platforms.nvidia.indices['255'] = F.TDX.mrtd)],
    ['a TPM without pinned attestation keys', (d) => delete d.platforms.tpm.signerRoots],
    ['a short SNP measurement', (d) => (d.platforms['sev-snp'].measurement = 'ab'.repeat(32))],
    ['non-hex in a measurement', (d) => (d.platforms.tdx.mrtd = 'zz'.repeat(48))],
    ['odd-length hex', (d) => (d.platforms.sim.measurement = 'abc')],
    ['an empty list of values', (d) => (d.platforms.tdx.rtmr1 = [])],
    ['a numeric measurement', (d) => (d.platforms.sim.measurement = 12345)],
    ['a sha1 PCR of sha256 length', (d) => (d.platforms.tpm.pcrs.sha1 = { 0: F.TPM_PCRS.pcr0 })],
    ['a PCR index out of range', (d) => (d.platforms.nitro.pcrs['32'] = F.NITRO.pcr0)],
    ['an unknown PCR bank', (d) => (d.platforms.tpm.pcrs.sm3 = { 0: F.TPM_PCRS.pcr0 })],
    ['a signer root that is not SHA-256', (d) => (d.platforms.tdx.signerRoots = ['ab'.repeat(20)])],
    ['Revoked as an allowed TCB status', (d) => (d.platforms.tdx.tcb.allowedStatuses = ['UpToDate', 'Revoked'])],
    ['Revoked as a warning TCB status', (d) => (d.platforms.tdx.tcb.warnStatuses = ['Revoked'])],
    ['an unknown TCB status', (d) => (d.platforms.tdx.tcb.allowedStatuses = ['Fine'])],
    ['a status both allowed and warned', (d) => (d.platforms.tdx.tcb.warnStatuses = ['UpToDate'])],
    ['a negative minimum SVN', (d) => (d.platforms['sev-snp'].tcb.minSvn.snp = -1)],
    ['a platform section without measurements', (d) => (d.platforms.nvidia = { signerRoots: [F.ROOTS.nvidiaDevice] })],
    ['no platforms', (d) => (d.platforms = {})],
    ['a rule without reason', (d) => (d.rules = [{ id: 'r', expr: 'true', claim: 'hardware' }])],
    ['a rule with an unknown claim', (d) => (d.rules = [{ id: 'r', expr: 'true', claim: 'firmware', reason: 'x' }])],
    ['a rule with an out-of-range value', (d) => (d.rules = [{ id: 'r', expr: 'true', claim: 'hardware', fail: 200, reason: 'x' }])],
    ['a rule with an unknown tier', (d) => (d.rules = [{ id: 'r', expr: 'true', claim: 'hardware', fail: 'bad', reason: 'x' }])],
    ['a rule with a malformed code', (d) => (d.rules = [{ id: 'r', expr: 'true', claim: 'hardware', code: 'denied', reason: 'x' }])],
    ['duplicate rule ids', (d) => (d.rules = [{ id: 'r', expr: 'true', claim: 'hardware', reason: 'x' }, { id: 'r', expr: 'true', claim: 'hardware', reason: 'y' }])],
  ];
  for (const [name, edit] of invalid) {
    it(`reject ${name} with ERR_POLICY_INVALID`, () => {
      const d = base();
      edit(d);
      expect(() => validatePolicyObject(d)).toThrowError(expect.objectContaining({ code: 'ERR_POLICY_INVALID' }));
      expect(() => parsePolicyDocument(JSON.stringify(d), 'json')).toThrowError(expect.objectContaining({ code: 'ERR_POLICY_INVALID' }));
    });
  }

  const badText: [string, string | Uint8Array][] = [
    ['empty input', ''],
    ['a YAML scalar', 'just a string'],
    ['a JSON array', '[1,2,3]'],
    ['broken JSON', '{"apiVersion": '],
    ['broken YAML', 'a: [1, 2\nb: }'],
    ['duplicate YAML keys', 'id: a\nid: b\n'],
    ['a YAML alias bomb', 'a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n'],
    ['a __proto__ key', '{"apiVersion":"custody.dev/policy/v1","id":"x","version":1,"platforms":{"sim":{"measurement":"aa","values":{"__proto__":{"polluted":true}}}}}'],
    ['deep nesting', '{"a":'.repeat(200) + '1' + '}'.repeat(200)],
    ['invalid UTF-8', Uint8Array.of(0x61, 0x3a, 0x20, 0xff, 0xfe)],
    ['an oversized file', 'a'.repeat(MAX_POLICY_BYTES + 1)],
  ];
  for (const [name, text] of badText) {
    it(`reject ${name} with ERR_POLICY_INVALID`, () => {
      expect(() => parsePolicyDocument(text)).toThrowError(expect.objectContaining({ code: 'ERR_POLICY_INVALID' }));
    });
  }

  it('refuse a repeated YAML key at any depth as the YAML parser did itself, in time linear in the keys', () => {
    const repeated = (text: string) => {
      try {
        parsePolicyDocument(text);
      } catch (e) {
        const err = e as { code: string; message: string; cause?: { code?: string; message?: string } };
        return [err.code, err.message, err.cause?.code, err.cause?.message];
      }
      return ['accepted'];
    };
    const refusal = ['ERR_POLICY_INVALID', 'policy is not valid YAML', 'DUPLICATE_KEY', 'Map keys must be unique'];
    for (const text of ['id: a\nid: b\n', 'a:\n  b: 1\n  c: 2\n  b: 3\n', 'a: [{x: 1, x: 2}]\n', 'x: {a: 1, b: {c: 1, c: 1}}\n', '1: a\n0x1: b\n', '!!set {a, b, a}\n']) {
      expect(repeated(text), text).toEqual(refusal);
    }
    // The same key in different maps is no repetition.
    expect(repeated('a: {x: 1}\nb: {x: 1}\n')[2]).toBeUndefined();
    // 60 000 keys (about 52 s with the parser's quadratic check): refused in about a second, with
    // one of them repeated as a repetition.
    const keys = Array.from({ length: 60_000 }, (_, i) => `k${i}: 1`).join('\n');
    const started = performance.now();
    expect(repeated(keys)[0]).toBe('ERR_POLICY_INVALID');
    expect(repeated(`${keys}\nk5: 2`)).toEqual(refusal);
    expect(performance.now() - started).toBeLessThan(15_000);
  });

  it('do not let __proto__ reach the object prototype', () => {
    try {
      parsePolicyDocument('{"__proto__":{"polluted":true}}', 'json');
    } catch {
      // expected
    }
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  // Measurement names are the author's: one named like an Object.prototype member is a name like
  // any other (toString, valueOf, ...), or a reserved key refused as such (constructor, __proto__),
  // the same whether the document is read from text or validated as an object (a database row).
  for (const name of ['constructor', 'toString', '__proto__', 'hasOwnProperty', 'valueOf']) {
    for (const field of ['measurements', 'configuration'] as const) {
      it(`read a ${field} name ${name} as a name, or refuse it as reserved (ERR_POLICY_INVALID)`, () => {
        const value = 'ab'.repeat(32);
        const text = `{"apiVersion":"custody.dev/policy/v1","id":"p","version":1,"platforms":{"sim":{"measurement":"${'cd'.repeat(32)}","${field}":{"${name}":"${value}"}}}}`;
        const reserved = name === 'constructor' || name === '__proto__';
        for (const read of [() => parsePolicyDocument(text, 'json'), () => validatePolicyObject(JSON.parse(text))]) {
          if (reserved) {
            expect(read).toThrowError(expect.objectContaining({ code: 'ERR_POLICY_INVALID' }));
            continue;
          }
          const sim = read().platforms.sim!;
          const named = field === 'measurements' ? sim.executables : sim.configuration;
          expect(Object.hasOwn(named, name)).toBe(true);
          expect(named[name]).toEqual([value]);
        }
      });
    }
  }

  it('accept custom rules with tier names and integers', () => {
    const d = base();
    d.rules = [
      { id: 'a', expr: 'true', claim: 'hardware', fail: 'warning', reason: 'x' },
      { id: 'b', expr: 'true', claim: 'sourced-data', affirm: 'affirming', fail: 33, reason: 'y', code: 'ERR_CUSTOM_B' },
    ];
    const doc = validatePolicyObject(d);
    expect(doc.rules).toEqual([
      { id: 'a', claim: 'hardware', expr: 'true', fail: 32, code: 'ERR_POLICY_DENIED', reason: 'x' },
      { id: 'b', claim: 'sourced-data', expr: 'true', affirm: 2, fail: 33, code: 'ERR_CUSTOM_B', reason: 'y' },
    ]);
  });
});
