import { Ar4si } from './ar4si.js';
import type { AppraisalRule } from './reference-values.js';

/**
 * The default appraisal rules, in CEL, in the order they run. Custom rules from a policy file
 * run after these; they can add findings but cannot remove these.
 *
 * Variables:
 * - `claims`: the verified NormalizedClaims of one device (platform, simulated, measurements,
 *   reportData, debug, tcb {status, advisoryIds, components}, signer {chain, rootSha256, kind},
 *   nonce, publicKey, platformClaims). Numbers are CEL doubles.
 * - `ref`: the policy's reference values for that device's platform: platformKnown,
 *   allowSimulated, allowDebug, executables and configuration (claim name -> accepted hex
 *   values), signerRoots, requireSignerRoots, tcb {allowedStatuses, warnStatuses, minSvn, allowedAdvisories,
 *   unlistedAdvisory, requireStatus}, values (free-form), policyId, policyVersion.
 * - `now`: the appraisal time, Unix seconds (int).
 *
 * Each rule speaks for one AR4SI trustworthiness claim. `when` says whether it applies; `expr`
 * true gives `affirm` (if set), false gives `fail`. Several findings on one claim keep the
 * worst. A rule that cannot be evaluated counts as failed.
 */
export const DEFAULT_RULES: readonly AppraisalRule[] = [
  {
    id: 'platform-known',
    claim: 'executables',
    expr: 'ref.platformKnown',
    fail: Ar4si.executables.CONTRAINDICATED,
    code: 'ERR_POLICY_PLATFORM',
    reason: 'the policy has no reference values for this platform',
    explain: 'claims.platform',
  },
  {
    id: 'simulated',
    claim: 'hardware',
    when: '!ref.allowSimulated',
    expr: '!claims.simulated',
    fail: Ar4si.hardware.CONTRAINDICATED,
    code: 'ERR_EVIDENCE_SIMULATED',
    reason: 'the evidence is simulated (no hardware TEE stands behind it) and the policy does not allow simulated evidence',
  },
  {
    id: 'simulated-allowed',
    claim: 'hardware',
    when: 'ref.allowSimulated && claims.simulated',
    expr: 'false',
    fail: Ar4si.NO_CLAIM,
    code: 'ERR_EVIDENCE_SIMULATED',
    reason: 'the evidence is simulated; the policy allows it, so nothing is claimed about the hardware',
  },
  {
    id: 'signer-root',
    claim: 'hardware',
    when: 'size(ref.signerRoots) > 0 || ref.requireSignerRoots',
    expr: 'has(claims.signer.rootSha256) && claims.signer.rootSha256 in ref.signerRoots',
    fail: Ar4si.hardware.UNRECOGNIZED,
    code: 'ERR_POLICY_SIGNER',
    reason: 'the evidence does not chain to a root (or attestation key) the policy accepts',
    explain: "has(claims.signer.rootSha256) ? 'root ' + claims.signer.rootSha256 : 'no root'",
  },
  {
    id: 'hardware-genuine',
    claim: 'hardware',
    when: '!claims.simulated',
    expr: 'has(claims.signer.rootSha256)',
    affirm: Ar4si.hardware.GENUINE,
    fail: Ar4si.NO_CLAIM,
    code: 'ERR_CERT_MISSING',
    reason: 'the evidence signer does not chain to a trust anchor, so nothing is claimed about the hardware',
  },
  {
    id: 'instance-identity',
    claim: 'instance-identity',
    when: '!claims.simulated',
    expr: 'has(claims.signer.rootSha256)',
    affirm: Ar4si.instanceIdentity.RECOGNIZED,
    fail: Ar4si.NO_CLAIM,
    code: 'ERR_CERT_MISSING',
    reason: 'the evidence signer does not chain to a trust anchor, so the instance is not identified',
  },
  {
    id: 'debug',
    claim: 'configuration',
    when: '!ref.allowDebug',
    expr: '!claims.debug',
    fail: Ar4si.configuration.UNSUPPORTABLE,
    code: 'ERR_EVIDENCE_DEBUG',
    reason: 'the TEE runs in debug mode (the host can read its memory) and the policy forbids debug',
  },
  {
    id: 'debug-allowed',
    claim: 'configuration',
    when: 'ref.allowDebug && claims.debug',
    expr: 'false',
    fail: Ar4si.configuration.UNSAFE,
    code: 'ERR_EVIDENCE_DEBUG',
    reason: 'the TEE runs in debug mode; the policy allows it, so this is a warning',
  },
  {
    id: 'memory-encrypted',
    claim: 'runtime-opaque',
    when: '!claims.simulated',
    expr: '!claims.debug',
    affirm: Ar4si.runtimeOpaque.ENCRYPTED_MEMORY,
    fail: Ar4si.runtimeOpaque.ISOLATED_MEMORY,
    code: 'ERR_EVIDENCE_DEBUG',
    reason: 'TEE memory is encrypted but readable through the debug interface',
  },
  {
    id: 'executables',
    claim: 'executables',
    when: 'ref.platformKnown && size(ref.executables) > 0',
    expr: 'ref.executables.all(n, n in claims.measurements && claims.measurements[n] in ref.executables[n])',
    affirm: Ar4si.executables.APPROVED_RUNTIME,
    fail: Ar4si.executables.CONTRAINDICATED,
    code: 'ERR_EVIDENCE_MEASUREMENT',
    reason: 'a code measurement does not match the reference values',
    explain:
      "ref.executables.filter(n, !(n in claims.measurements) || !(claims.measurements[n] in ref.executables[n])).map(n, n + ' = ' + (n in claims.measurements ? claims.measurements[n] : 'missing'))",
  },
  {
    id: 'configuration',
    claim: 'configuration',
    when: 'ref.platformKnown && size(ref.configuration) > 0',
    expr: 'ref.configuration.all(n, n in claims.measurements && claims.measurements[n] in ref.configuration[n])',
    affirm: Ar4si.configuration.APPROVED,
    fail: Ar4si.configuration.UNSUPPORTABLE,
    code: 'ERR_EVIDENCE_MEASUREMENT',
    reason: 'a configuration measurement does not match the reference values',
    explain:
      "ref.configuration.filter(n, !(n in claims.measurements) || !(claims.measurements[n] in ref.configuration[n])).map(n, n + ' = ' + (n in claims.measurements ? claims.measurements[n] : 'missing'))",
  },
  {
    id: 'tcb-status-present',
    claim: 'hardware',
    when: 'ref.tcb.requireStatus',
    expr: 'has(claims.tcb) && has(claims.tcb.status)',
    fail: Ar4si.hardware.CONTRAINDICATED,
    code: 'ERR_TCB_NO_MATCH',
    reason: 'the evidence carries no TCB status and the policy requires one',
  },
  {
    id: 'tcb-revoked',
    claim: 'hardware',
    when: 'has(claims.tcb) && has(claims.tcb.status)',
    expr: "claims.tcb.status != 'Revoked'",
    fail: Ar4si.hardware.CONTRAINDICATED,
    code: 'ERR_TCB_REVOKED',
    reason: 'the platform TCB is revoked',
  },
  {
    id: 'tcb-status',
    claim: 'hardware',
    when: "has(claims.tcb) && has(claims.tcb.status) && claims.tcb.status != 'Revoked'",
    expr: 'claims.tcb.status in ref.tcb.allowedStatuses || claims.tcb.status in ref.tcb.warnStatuses',
    fail: Ar4si.hardware.CONTRAINDICATED,
    code: 'ERR_TCB_OUT_OF_DATE',
    reason: 'the platform TCB status is not one the policy accepts',
    explain: "'status ' + claims.tcb.status",
  },
  {
    id: 'tcb-status-warning',
    claim: 'hardware',
    when: 'has(claims.tcb) && has(claims.tcb.status) && claims.tcb.status in ref.tcb.warnStatuses',
    expr: 'false',
    fail: Ar4si.hardware.UNSAFE,
    code: 'ERR_TCB_OUT_OF_DATE',
    reason: 'the platform TCB status is accepted by the policy with a warning',
    explain: "'status ' + claims.tcb.status",
  },
  {
    id: 'tcb-min-svn',
    claim: 'hardware',
    when: 'size(ref.tcb.minSvn) > 0',
    expr: 'has(claims.tcb) && ref.tcb.minSvn.all(c, c in claims.tcb.components && claims.tcb.components[c] >= ref.tcb.minSvn[c])',
    fail: Ar4si.hardware.CONTRAINDICATED,
    code: 'ERR_TCB_OUT_OF_DATE',
    reason: 'a TCB component is below the minimum security version',
    explain:
      "!has(claims.tcb) ? ['no TCB in the evidence'] : ref.tcb.minSvn.filter(c, !(c in claims.tcb.components) || !(claims.tcb.components[c] >= ref.tcb.minSvn[c])).map(c, c + ' = ' + (c in claims.tcb.components ? string(claims.tcb.components[c]) : 'missing') + ' < ' + string(ref.tcb.minSvn[c]))",
  },
  {
    id: 'tcb-advisories',
    claim: 'hardware',
    when: "has(claims.tcb) && has(claims.tcb.advisoryIds) && ref.tcb.unlistedAdvisory == 'contraindicated'",
    expr: 'claims.tcb.advisoryIds.all(a, a in ref.tcb.allowedAdvisories)',
    fail: Ar4si.hardware.CONTRAINDICATED,
    code: 'ERR_POLICY_ADVISORY',
    reason: 'the platform is affected by security advisories the policy does not accept',
    explain: 'claims.tcb.advisoryIds.filter(a, !(a in ref.tcb.allowedAdvisories))',
  },
  {
    id: 'tcb-advisories-warning',
    claim: 'hardware',
    when: "has(claims.tcb) && has(claims.tcb.advisoryIds) && ref.tcb.unlistedAdvisory == 'warning'",
    expr: 'claims.tcb.advisoryIds.all(a, a in ref.tcb.allowedAdvisories)',
    fail: Ar4si.hardware.UNSAFE,
    code: 'ERR_POLICY_ADVISORY',
    reason: 'the platform is affected by security advisories the policy has not reviewed (warning)',
    explain: 'claims.tcb.advisoryIds.filter(a, !(a in ref.tcb.allowedAdvisories))',
  },
];
