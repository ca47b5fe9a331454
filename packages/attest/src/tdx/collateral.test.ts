import { describe, expect, it } from 'vitest';
import { toHex, toPem, utf8 } from '@custody/core';
import { readVector, readVectorText } from '../../../../test/vectors.js';
import { CollateralCache } from './cache.js';
import { parseCollateralBundle, parseQeIdentity, parseTdxTcbInfo, readCrl, readSignedResponse, readTdxCollateral } from './collateral.js';
import { splitSignedJson, topLevelMembers } from './signed-json.js';
import { G, T, bundleFrom, collateral2023 } from './testing/sets.js';

describe('signed PCS responses: the exact signed text is extracted, never re-serialised', () => {
  it('TCB Info body is the byte-exact substring between "tcbInfo": and ,"signature"', () => {
    const text = readVectorText(G + 'sample_tcbInfo_response');
    const s = readSignedResponse(utf8(text), 'tcbInfo', 'TCB Info');
    expect(text.includes(s.body)).toBe(true);
    expect(s.body.startsWith('{"id":"TDX"')).toBe(true);
    expect(text.trimEnd()).toBe(`{"tcbInfo":${s.body},"signature":"${toHex(s.signature)}"}`);
  });

  it('keeps whitespace and member order as served (a pretty-printed response stays byte-exact)', () => {
    const text = '{\n  "signature" : "' + 'ab'.repeat(64) + '",\n  "enclaveIdentity" : { "b": [1, 2.5e3, "x\\"y"], "a": null }\n}\n';
    const s = splitSignedJson(text, 'enclaveIdentity', 'QE Identity');
    expect(s.body).toBe('{ "b": [1, 2.5e3, "x\\"y"], "a": null }');
  });

  const bad = [
    ['not JSON', 'hello'],
    ['trailing garbage', '{"tcbInfo":{},"signature":"' + '00'.repeat(64) + '"}x'],
    ['duplicate body member', '{"tcbInfo":{},"tcbInfo":{"id":"TDX"},"signature":"' + '00'.repeat(64) + '"}'],
    ['missing signature', '{"tcbInfo":{}}'],
    ['short signature', '{"tcbInfo":{},"signature":"00"}'],
    ['non-hex signature', '{"tcbInfo":{},"signature":"' + 'zz'.repeat(64) + '"}'],
    ['body is not an object', '{"tcbInfo":"{}","signature":"' + '00'.repeat(64) + '"}'],
    ['unterminated string', '{"tcbInfo":{"a":"b}'],
    ['deep nesting', '{"tcbInfo":' + '['.repeat(100) + ']'.repeat(100) + ',"signature":"' + '00'.repeat(64) + '"}'],
  ];
  for (const [name, text] of bad) {
    it(`rejects ${name} with ERR_COLLATERAL_INVALID`, () => {
      expect(() => splitSignedJson(text!, 'tcbInfo', 'TCB Info')).toThrow(expect.objectContaining({ code: 'ERR_COLLATERAL_INVALID' }));
    });
  }

  it('topLevelMembers spans agree with JSON.parse on the real responses', () => {
    for (const f of [G + 'sample_tcbInfo_response', G + 'sample_qeIdentity_response', G + 'sample_tcbinfo_response_v5', T + 'tcbInfo.json', T + 'enclaveIdentity.json']) {
      const text = readVectorText(f);
      const parsed = JSON.parse(text) as Record<string, unknown>;
      const spans = topLevelMembers(text, f);
      expect([...spans.keys()].sort()).toEqual(Object.keys(parsed).sort());
      for (const [k, { start, end }] of spans) expect(JSON.parse(text.slice(start, end))).toEqual(parsed[k]);
    }
  });
});

describe('TCB Info and QE Identity bodies', () => {
  it('parses the 2025 TDX TCB Info v3 with module identities', () => {
    const s = readSignedResponse(readVector(T + 'tcbInfo.json'), 'tcbInfo', 'TCB Info');
    const info = parseTdxTcbInfo(s.body);
    expect(info).toMatchObject({ id: 'TDX', version: 3, fmspc: '00a06d080000', pceId: '0000', tcbEvaluationDataNumber: 17 });
    expect(info.nextUpdate.toISOString()).toBe('2025-11-26T13:07:17.000Z');
    expect(info.tcbLevels).toHaveLength(2);
    expect(info.tcbLevels[0]).toMatchObject({ pceSvn: 13, tcbStatus: 'UpToDate', sgxTcbComponents: [2, 2, 2, 2, 4, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0] });
    expect(info.tdxModuleIdentities!.map((m) => m.id)).toEqual(['TDX_03', 'TDX_01']);
  });

  it('reads advisory IDs (v5 TCB Info)', () => {
    const info = parseTdxTcbInfo(readSignedResponse(readVector(G + 'sample_tcbinfo_response_v5'), 'tcbInfo', 'TCB Info').body);
    expect(info.tcbLevels[1]!.advisoryIds).toContain('INTEL-SA-01036');
    expect(info.tdxModuleIdentities![1]!.tcbLevels[1]!.advisoryIds).toEqual(['INTEL-SA-01036', 'INTEL-SA-01099']);
  });

  it('parses the TD_QE identity', () => {
    const q = parseQeIdentity(readSignedResponse(readVector(G + 'sample_qeIdentity_response'), 'enclaveIdentity', 'QE Identity').body);
    expect(q).toMatchObject({ id: 'TD_QE', version: 2, isvProdId: 2, tcbEvaluationDataNumber: 15 });
    expect(toHex(q.mrSigner)).toBe('dc9e2a7c6f948f17474e34a7fc43ed030f7c1563f1babddf6340c82e0e54a8c5');
    expect(q.tcbLevels).toEqual([{ isvSvn: 4, tcbDate: '2023-02-15T00:00:00Z', tcbStatus: 'UpToDate', advisoryIds: [] }]);
  });

  const base = () => JSON.parse(readSignedResponse(readVector(T + 'tcbInfo.json'), 'tcbInfo', 'TCB Info').body) as Record<string, unknown>;
  const edits: [string, (b: Record<string, unknown>) => void, string][] = [
    ['SGX TCB Info', (b) => (b.id = 'SGX'), 'ERR_COLLATERAL_MISMATCH'],
    ['version 2', (b) => (b.version = 2), 'ERR_COLLATERAL_MISMATCH'],
    ['bad fmspc', (b) => (b.fmspc = '00A06D08'), 'ERR_COLLATERAL_INVALID'],
    ['bad date', (b) => (b.nextUpdate = 'next tuesday'), 'ERR_COLLATERAL_INVALID'],
    ['unknown status', (b) => ((b.tcbLevels as { tcbStatus: string }[])[0]!.tcbStatus = 'Fine'), 'ERR_COLLATERAL_INVALID'],
    ['15 SGX components', (b) => ((b.tcbLevels as { tcb: { sgxtcbcomponents: unknown[] } }[])[0]!.tcb.sgxtcbcomponents.pop()), 'ERR_COLLATERAL_INVALID'],
    ['SVN above 255', (b) => ((b.tcbLevels as { tcb: { pcesvn: number; tdxtcbcomponents: { svn: number }[] } }[])[0]!.tcb.tdxtcbcomponents[0]!.svn = 256), 'ERR_COLLATERAL_INVALID'],
    ['negative pcesvn', (b) => ((b.tcbLevels as { tcb: { pcesvn: number } }[])[0]!.tcb.pcesvn = -1), 'ERR_COLLATERAL_INVALID'],
    ['tcbType 1', (b) => (b.tcbType = 1), 'ERR_COLLATERAL_INVALID'],
    ['no tdxModule', (b) => delete b.tdxModule, 'ERR_COLLATERAL_INVALID'],
  ];
  for (const [name, edit, code] of edits) {
    it(`TCB Info with ${name} -> ${code}`, () => {
      const b = base();
      edit(b);
      expect(() => parseTdxTcbInfo(JSON.stringify(b))).toThrow(expect.objectContaining({ code }));
    });
  }
});

describe('collateral containers', () => {
  it('reads the separate named files', () => {
    const c = readTdxCollateral({ ...collateral2023(), extra: new Uint8Array(1) });
    expect(c.tcbInfo!.body.length).toBeGreaterThan(100);
    expect(c.qeIdentity!.signature).toHaveLength(64);
    expect(c.pckCrl!.issuer.text).toContain('Intel SGX PCK Platform CA');
    expect(c.rootCaCrl!.issuer.text).toContain('Intel SGX Root CA');
    expect(c.tcbInfoIssuerChain!.map((x) => x.subject.text.split(',')[0])).toEqual(['CN=Intel SGX TCB Signing', 'CN=Intel SGX Root CA']);
    expect(c.pckCrlIssuerChain).toHaveLength(2);
    expect(c.ignored).toEqual(['extra']);
  });

  it('the dcap-qvl bundle (hex DER CRLs, raw JSON strings) reads to the same values', () => {
    const sep = readTdxCollateral(collateral2023());
    const b = parseCollateralBundle(bundleFrom(collateral2023()));
    expect(b.tcbInfo).toEqual(sep.tcbInfo);
    expect(b.qeIdentity).toEqual(sep.qeIdentity);
    expect(toHex(b.pckCrl!.der)).toBe(toHex(sep.pckCrl!.der));
    expect(toHex(b.rootCaCrl!.der)).toBe(toHex(sep.rootCaCrl!.der));
    expect(b.tcbInfoIssuerChain!.map((x) => x.serialHex)).toEqual(sep.tcbInfoIssuerChain!.map((x) => x.serialHex));
  });

  it('accepts byte arrays (serde_bytes) for CRLs and signatures, as dcap-qvl serialises them', () => {
    const c = collateral2023();
    const hexBundle = JSON.parse(new TextDecoder().decode(bundleFrom(c))) as Record<string, string>;
    const arr = (hex: string) => Array.from(Buffer.from(hex, 'hex'));
    const asArrays = { ...hexBundle, pck_crl: arr(hexBundle.pck_crl!), root_ca_crl: arr(hexBundle.root_ca_crl!), tcb_info_signature: arr(hexBundle.tcb_info_signature!) };
    const b = parseCollateralBundle(utf8(JSON.stringify(asArrays)));
    expect(toHex(b.tcbInfo!.signature)).toBe(hexBundle.tcb_info_signature);
    expect(b.pckCrl!.revokedSerials.size).toBeGreaterThan(0);
  });

  it('reads a CRL as DER, PEM or hex', () => {
    const der = readVector(G + 'pckcrl');
    for (const form of [der, utf8(toPem('X509 CRL', der)), utf8(toHex(der) + '\n')]) expect(readCrl(form, 'PCK CRL').thisUpdate.toISOString()).toBe('2023-06-08T07:27:52.000Z');
    expect(() => readCrl(utf8('not a crl'), 'PCK CRL')).toThrow(expect.objectContaining({ code: 'ERR_CRL_INVALID' }));
  });

  const badBundles: [string, string, string][] = [
    ['not JSON', '{', 'ERR_COLLATERAL_INVALID'],
    ['an array', '[]', 'ERR_COLLATERAL_INVALID'],
    ['tcb_info not a string', '{"tcb_info":{},"tcb_info_signature":"00"}', 'ERR_COLLATERAL_INVALID'],
    ['bad signature', '{"tcb_info":"{}","tcb_info_signature":"00"}', 'ERR_COLLATERAL_INVALID'],
    ['bad CRL hex', '{"pck_crl":"zz"}', 'ERR_COLLATERAL_INVALID'],
    ['CRL bytes out of range', '{"pck_crl":[300]}', 'ERR_COLLATERAL_INVALID'],
    ['CRL garbage', '{"pck_crl":"3000"}', 'ERR_CRL_INVALID'],
    ['chain without PEM', '{"tcb_info_issuer_chain":"hello"}', 'ERR_CERT_PARSE'],
  ];
  for (const [name, text, code] of badBundles) {
    it(`bundle with ${name} -> ${code}`, () => {
      expect(() => parseCollateralBundle(utf8(text))).toThrow(expect.objectContaining({ code }));
    });
  }
});

describe('CollateralCache', () => {
  it('keeps an entry until its nextUpdate, then reports it stale once and forgets it', () => {
    const c = new CollateralCache();
    c.set('tcbInfo', 'x', 42, new Date('2025-01-02T00:00:00Z'));
    expect(c.get('tcbInfo', 'x', new Date('2025-01-01T00:00:00Z'))).toMatchObject({ state: 'fresh', value: 42 });
    expect(c.get('tcbInfo', 'x', new Date('2025-01-03T00:00:00Z'))).toMatchObject({ state: 'stale' });
    expect(c.get('tcbInfo', 'x', new Date('2025-01-01T00:00:00Z'))).toEqual({ state: 'missing' });
  });

  it('is bounded', () => {
    const c = new CollateralCache(2);
    const later = new Date('2030-01-01T00:00:00Z');
    c.set('pckCrl', 'a', 1, later);
    c.set('pckCrl', 'b', 2, later);
    c.set('pckCrl', 'c', 3, later);
    expect(c.size).toBe(2);
    expect(c.peek('pckCrl', 'a')).toBeUndefined();
  });
});
