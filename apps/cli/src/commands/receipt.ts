import type { JSONWebKeySet } from 'jose';
import { CustodyError, fromUtf8, parseJsonUnique } from '@custody/core';
import { defaultRegistry } from '@custody/attest';
import { parseTlogProof } from '@custody/ledger';
import { loadPolicy } from '@custody/policy';
import { parseAttestationBundleText, renderReceiptVerificationText, verifyReceiptOffline, type VerifyReceiptOfflineInput } from '@custody/sdk';
import { readInputFile, parseTime } from '../files.js';
import { gpuRoots, minGpus } from '../gpu.js';
import { failWith, printJson } from '../output.js';
import { EXIT_NOT_VERIFIED, EXIT_OK } from '../exit.js';
import type { Register } from './index.js';
import { readTrust } from './log.js';

interface ReceiptVerifyOptions {
  bundle: string;
  jwks?: string;
  policy?: string;
  allowSimulated?: boolean;
  allowDebug?: boolean;
  measurement?: string[];
  minGpus?: number;
  gpuRoot?: string[];
  proof?: string;
  strict?: boolean;
  tlogPolicy?: string;
  vkey?: string[];
  response?: string;
  at?: string;
  json?: boolean;
}

const collect = (v: string, prev: string[] = []): string[] => [...prev, v];

export const register: Register = (program) => {
  const receipt = program.command('receipt').description('Verify inference receipts offline: the attested gateway, the signature, the ledger entry and the response');
  receipt
    .command('verify')
    .description('Verify a receipt against the attestation bundle it was answered under, offline')
    .argument('<receipt>', 'the receipt: its JSON, or its header value (base64url)')
    .requiredOption('--bundle <file>', "the gateway's attestation bundle (/.well-known/custody/attestation) the receipt was answered under")
    .option('--jwks <file>', "the broker's JWKS that signed the gateway's EAR")
    .option('--policy <file>', 'an appraisal policy for the raw evidence (without a broker, or in addition)')
    .option('--allow-simulated', 'accept a SIMULATED gateway (development only)')
    .option('--allow-debug', 'accept a debug-mode TEE')
    .option('--measurement <name=hex>', 'a measurement the gateway must have reported (repeatable)', collect)
    .option('--min-gpus <n>', 'at least this many attested NVIDIA GPUs must be bound to the gateway\'s evidence (default 0; published GPU evidence is checked whatever this says)', minGpus)
    .option('--gpu-root <file>', 'trust anchor (PEM/DER) for GPU evidence instead of the pinned NVIDIA Device Identity CA (private PKI, tests; repeatable)', collect)
    .option('--proof <file>', "a C2SP tlog-proof for the receipt's ledger entry (custody log proof INDEX)")
    .option('--strict', "also prove from the ledger that the broker appraised this gateway, as the SDK's strict mode: the bundle's appraisal record for its EAR, included under a checkpoint --tlog-policy or --vkey trusts")
    .option('--tlog-policy <file>', 'the tlog-policy trusting the ledger (of --proof, and of the bundle\'s appraisal record with --strict)')
    .option('--vkey <vkey>', 'or: the ledger verifier key (repeatable; no witness quorum)', collect)
    .option('--response <file>', 'the response content received (the whole stream for a streamed answer)')
    .option('--at <rfc3339>', "when to check the gateway's attestation (default: the receipt's receivedAt)")
    .option('--json', 'print the verification document as JSON')
    .addHelpText(
      'after',
      `
Checked: the bundle verifies at the receipt's receivedAt under --jwks and/or --policy (evidence,
EAR, the keys and GPUs they bind); its platform and mode are the attested ones, and its gateway
policy version and model the ones the receipt signs; the receipt names that attestation and is
signed by the receipt key the evidence binds. With --proof the receipt is that ledger entry; with
--response the response is the one the receipt signs; with --strict the broker's appraisal of
this gateway is in the ledger. The account says "not checked" for whatever was not asked for (no
--proof, no --response, no --strict: the bundle's ledger record), and for what nothing signs: the
bundle's issuedAt, its model's label, and a model it names other than the one that answered.

Exit codes: 0 verified, 1 not verified, 2 bad input or usage.

Example (what ./custody up writes to .custody/last-request/):
  custody receipt verify receipt.json --bundle bundle.json --jwks jwks.json --allow-simulated \\
    --proof receipt.tlog-proof --vkey 'custody.local/ledger+...' --response response.json --strict`,
    )
    .action(async (file: string, opts: ReceiptVerifyOptions) => {
      const json = opts.json ?? false;
      try {
        const doc = await verifyReceiptOffline(await inputFrom(file, opts));
        if (json) printJson(doc);
        else process.stdout.write(renderReceiptVerificationText(doc) + '\n');
        process.exitCode = doc.ok ? EXIT_OK : EXIT_NOT_VERIFIED;
      } catch (e) {
        failWith(e, json);
      }
    });
};

/** A JSON input file: not JSON, or an object with a repeated member (a reader taking the first would see another document), is bad input. */
function jsonFile(text: string, what: string): unknown {
  try {
    return parseJsonUnique(text);
  } catch (e) {
    throw new CustodyError('ERR_INPUT_MALFORMED', e instanceof CustodyError ? `the ${what} file: ${e.message}` : `the ${what} file is not JSON`, { cause: e });
  }
}

/** The attestation bundle file: one that is not a bundle at all is bad input (exit 2), not a failed check. */
function bundleFile(text: string): ReturnType<typeof parseAttestationBundleText> {
  try {
    return parseAttestationBundleText(text);
  } catch (e) {
    if (e instanceof CustodyError && e.code === 'ERR_SDK_DISCOVERY') throw new CustodyError('ERR_INPUT_MALFORMED', `the attestation bundle file: ${e.message}`, { cause: e });
    throw e;
  }
}

async function inputFrom(file: string, opts: ReceiptVerifyOptions): Promise<VerifyReceiptOfflineInput> {
  // An empty value (an unset shell variable) is a mistake, not "skip this check".
  for (const [name, value] of [['--bundle', opts.bundle], ['--jwks', opts.jwks], ['--policy', opts.policy], ['--proof', opts.proof], ['--tlog-policy', opts.tlogPolicy], ['--response', opts.response]] as const) {
    if (value !== undefined && value.trim() === '') throw new CustodyError('ERR_USAGE', `${name} was given an empty value`);
  }
  if (opts.jwks === undefined && opts.policy === undefined) throw new CustodyError('ERR_USAGE', "give --jwks (the broker's EAR keys) or --policy (an appraisal policy for the raw evidence)");
  if (opts.proof !== undefined && opts.tlogPolicy === undefined && !opts.vkey?.length) throw new CustodyError('ERR_USAGE', '--proof needs --tlog-policy or --vkey');
  if (opts.strict && opts.tlogPolicy === undefined && !opts.vkey?.length) throw new CustodyError('ERR_USAGE', '--strict needs --tlog-policy or --vkey: the ledger the broker logs its appraisals to');
  // A proof file that is no tlog-proof is bad input (exit 2), as for `custody log verify`, not a failed ledger step.
  const proof = opts.proof !== undefined ? parseTlogProof(readInputFile(opts.proof, 'tlog-proof')) : undefined;
  const text = fromUtf8(readInputFile(file, 'receipt')).trim();
  if (text === '') throw new CustodyError('ERR_INPUT_MALFORMED', 'the receipt file is empty');
  let receipt: unknown = text;
  if (text.startsWith('{')) receipt = jsonFile(text, 'receipt');
  const bundle = bundleFile(fromUtf8(readInputFile(opts.bundle, 'attestation bundle')));
  let jwks: JSONWebKeySet | undefined;
  if (opts.jwks !== undefined) {
    const v = jsonFile(fromUtf8(readInputFile(opts.jwks, 'JWKS')), 'JWKS') as Partial<JSONWebKeySet> | null;
    if (typeof v !== 'object' || v === null || !Array.isArray(v.keys)) throw new CustodyError('ERR_INPUT_MALFORMED', 'the JWKS file has no keys');
    jwks = v as JSONWebKeySet;
  }
  const policy = opts.policy !== undefined ? await loadPolicy(readInputFile(opts.policy, 'appraisal policy')) : undefined;
  const expectedMeasurements: Record<string, string> = {};
  for (const m of opts.measurement ?? []) {
    const at = m.indexOf('=');
    if (at < 1 || !/^[0-9a-fA-F]+$/.test(m.slice(at + 1))) throw new CustodyError('ERR_USAGE', `--measurement wants name=hex, got "${m.slice(0, 40)}"`);
    expectedMeasurements[m.slice(0, at)] = m.slice(at + 1).toLowerCase();
  }
  const attestedAt = parseTime(opts.at);
  // One trust for the ledger: the gateway and its broker log to the same one.
  const tlogPolicy = proof !== undefined || opts.strict ? readTrust({ ...(opts.tlogPolicy !== undefined ? { policy: opts.tlogPolicy } : {}), ...(opts.vkey ? { vkey: opts.vkey } : {}) }, '--tlog-policy') : undefined;
  return {
    receipt,
    bundle,
    now: new Date(),
    ...(jwks ? { jwks } : {}),
    ...(policy ? { policy } : {}),
    // Every platform Custody verifies, not only the SDK's browser-sized default (sim and TPM).
    verifiers: defaultRegistry,
    allowSimulated: opts.allowSimulated ?? false,
    allowDebug: opts.allowDebug ?? false,
    ...(Object.keys(expectedMeasurements).length > 0 ? { expectedMeasurements } : {}),
    ...(opts.minGpus !== undefined ? { minGpus: opts.minGpus } : {}),
    ...(opts.gpuRoot ? { gpuRoots: gpuRoots(opts.gpuRoot) } : {}),
    ...(proof !== undefined && tlogPolicy ? { proof, tlogPolicy } : {}),
    // The SDK's strict mode, run by verifyGatewayBundle at the receipt's time: no second verifier here.
    ...(opts.strict && tlogPolicy ? { strict: { tlogPolicy } } : {}),
    ...(opts.response !== undefined ? { response: readInputFile(opts.response, 'response') } : {}),
    ...(attestedAt ? { attestedAt } : {}),
  };
}
