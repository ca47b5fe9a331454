/**
 * The attestation bundle a gateway publishes at `/.well-known/custody/attestation` (and returns
 * from the challenge endpoint with fresh evidence). Everything in it is untrusted until
 * `verifyGatewayBundle` has checked it; nothing in it names a trust anchor.
 *
 * ```json
 * { "format": "custody.dev/attestation-bundle/v1",
 *   "platform": "sim", "simulated": true,
 *   "evidence": "<base64url evidence file>",
 *   "runtimeData": "<the RFC 8785 text the evidence binds>",
 *   "ear": "<EAR JWT from the broker>",                      // optional
 *   "earRuntimeData": "<runtime data the EAR appraised>",    // when it differs (fresh-nonce bundles)
 *   "ohttpKeys": "<base64url application/ohttp-keys>",       // equal to runtime data's ohttp-keys
 *   "receiptKey": {"kty":"OKP","crv":"Ed25519","x":"..."},   // equal to runtime data's receipt-key
 *   "devices": [{"platform": "nvidia", "evidence": "<base64url>"}], // optional: GPUs, each bound to runtimeData
 *   "model": {"id": "...", "digest": "sha256:...", "label": "..."},
 *   "policyVersion": "...",
 *   "issuedAt": "<RFC 3339>",
 *   "ledger": {"index": 12, "event": {...}, "proof": "<c2sp tlog-proof>"} }   // optional
 * ```
 */
import { z } from 'zod';
import { canonicalize, CustodyError, fromBase64Url, parseJsonUnique, sha256, toHex, utf8, type Bytes } from '@custody/core';
import type { Platform } from '@custody/attest';
import { MAX_RUNTIME_DATA, type OkpPublicJwk } from './runtime-data.js';

export const ATTESTATION_BUNDLE_FORMAT = 'custody.dev/attestation-bundle/v1';
export const ATTESTATION_PATH = '/.well-known/custody/attestation';
export const CHALLENGE_PATH = '/.well-known/custody/attestation/challenge';
export const MAX_BUNDLE_BYTES = 1024 * 1024;

export interface BundleLedgerEntry {
  /** Index of the broker's appraisal record in the transparency log (`attestation.appraised`, or the broker service's `audit.recorded` of `attest.appraise`). */
  index: number;
  /** The event as logged (canonical JSON object). */
  event: Record<string, unknown>;
  /** C2SP tlog-proof text proving the event at `index`, when the log had published it. */
  proof?: string;
}

/**
 * Evidence of a device attached to the gateway's TEE (an NVIDIA GPU in confidential-computing
 * mode), bound to the same runtime data as the CPU evidence: its SPDM request nonce is
 * SHA-256(runtimeData) (`runtimeDigest('nvidia', runtimeData)`).
 */
export interface BundleDevice {
  platform: 'nvidia';
  /** base64url of the device evidence file (`custody-nvidia-gpu/v1` JSON with its certificate chain). */
  evidence: string;
}

/** Most devices a bundle may carry (an HGX board holds 8 GPUs). */
export const MAX_BUNDLE_DEVICES = 8;
/** Largest device evidence file a bundle carries (a Hopper report with its chain is about 13 KB). */
export const MAX_BUNDLE_DEVICE_EVIDENCE = 72 * 1024;

export interface AttestationBundle {
  format: typeof ATTESTATION_BUNDLE_FORMAT;
  platform: Platform;
  simulated: boolean;
  evidence: string;
  runtimeData: string;
  ear?: string;
  earRuntimeData?: string;
  ohttpKeys: string;
  receiptKey: OkpPublicJwk;
  devices?: BundleDevice[];
  model?: { id: string; digest?: string; label?: string; backend?: string };
  policyVersion?: string;
  issuedAt: string;
  ledger?: BundleLedgerEntry;
}

const PLATFORM_NAMES = ['sev-snp', 'tdx', 'nitro', 'tpm', 'azure-vtpm', 'nvidia', 'sim'] as const;
const b64 = (max: number) => z.string().max(max).regex(/^[A-Za-z0-9_-]*$/, 'base64url');

const bundleSchema = z.strictObject({
  format: z.literal(ATTESTATION_BUNDLE_FORMAT),
  platform: z.enum(PLATFORM_NAMES),
  simulated: z.boolean(),
  evidence: b64(700_000),
  runtimeData: z.string().max(MAX_RUNTIME_DATA),
  ear: z.string().max(256 * 1024).optional(),
  earRuntimeData: z.string().max(MAX_RUNTIME_DATA).optional(),
  ohttpKeys: b64(90_000),
  receiptKey: z.strictObject({ kty: z.literal('OKP'), crv: z.literal('Ed25519'), x: b64(64) }),
  devices: z.array(z.strictObject({ platform: z.literal('nvidia'), evidence: b64(Math.ceil((MAX_BUNDLE_DEVICE_EVIDENCE * 4) / 3)) })).min(1).max(MAX_BUNDLE_DEVICES).optional(),
  model: z.strictObject({ id: z.string().max(256), digest: z.string().max(140).optional(), label: z.string().max(256).optional(), backend: z.string().max(64).optional() }).optional(),
  policyVersion: z.string().max(512).optional(),
  issuedAt: z.string().max(64).refine((s) => !Number.isNaN(Date.parse(s)), 'RFC 3339 time'),
  ledger: z
    .strictObject({
      index: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
      event: z.record(z.string().max(64), z.unknown()),
      proof: z.string().max(MAX_BUNDLE_BYTES).optional(),
    })
    .optional(),
});

/** Validates an attestation bundle's shape and bounds (not its truth). ERR_SDK_DISCOVERY. */
export function parseAttestationBundle(value: unknown): AttestationBundle {
  const r = bundleSchema.safeParse(value);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new CustodyError('ERR_SDK_DISCOVERY', `attestation bundle is malformed at ${issue?.path.map(String).join('.') || '(root)'}`, {
      detail: { path: issue?.path.map(String).join('.').slice(0, 64) ?? '' },
    });
  }
  return r.data;
}

/** Parses bundle JSON text with a size bound. */
export function parseAttestationBundleText(text: string): AttestationBundle {
  if (text.length > MAX_BUNDLE_BYTES) throw new CustodyError('ERR_SDK_DISCOVERY', 'attestation bundle is too large', { detail: { size: text.length } });
  let v: unknown;
  try {
    v = parseJsonUnique(text);
  } catch (e) {
    throw new CustodyError('ERR_SDK_DISCOVERY', e instanceof CustodyError ? `attestation bundle: ${e.message}` : 'attestation bundle is not JSON', { cause: e });
  }
  return parseAttestationBundle(v);
}

export function bundleEvidence(bundle: AttestationBundle): Bytes {
  return fromBase64Url(bundle.evidence);
}

/**
 * What a receipt names as the attestation it was answered under (`gateway.attestationDigest`):
 * the EAR's digest when there is one (the broker appraised the CPU and every GPU in it, and its
 * appraisal record in the ledger names the same digest; a challenge bundle carries the same EAR).
 * An auditor without the broker's JWKS checks that the evidence published beside it is what it
 * appraised (verifyReceiptOffline). Without an EAR: the CPU evidence's digest, or with GPUs the
 * digest of the RFC 8785 JSON of the bundle's `devices` and `evidence` exactly as published
 * (base64url text), so that the GPU evidence is named too.
 */
export async function bundleAttestationDigest(bundle: Pick<AttestationBundle, 'ear' | 'evidence' | 'devices'>): Promise<string> {
  if (bundle.ear !== undefined) return 'sha256:' + toHex(await sha256(utf8(bundle.ear)));
  if (bundle.devices) return 'sha256:' + toHex(await sha256(utf8(canonicalize({ devices: bundle.devices, evidence: bundle.evidence }))));
  return 'sha256:' + toHex(await sha256(fromBase64Url(bundle.evidence)));
}
