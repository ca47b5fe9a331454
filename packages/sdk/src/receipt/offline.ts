/**
 * Offline verification of an inference receipt, for an auditor who holds the receipt, the
 * gateway's attestation bundle it was answered under, and optionally a ledger proof and the
 * response body: no gateway, broker or log needs to be reachable.
 *
 * Steps, each reported (the first failure stops the rest):
 *  1. receipt    its shape and format;
 *  2. gateway    the bundle verifies under the caller's trust (broker JWKS or appraisal
 *                policy, platforms, measurements, and with `strict` the broker's appraisal
 *                record in the ledger, as the SDK's strict mode) at the time the receipt says
 *                the request was received: the gateway was attested when it accepted it (a
 *                revocation during the answer would have withheld the receipt); without
 *                `strict` the bundle's ledger record is reported as not checked;
 *  3. binding    the receipt names exactly that attestation (its digest, platform, mode,
 *                measurements, EAR id and number of attested GPUs), and at least `minGpus` GPUs;
 *                the bundle's own statements are the signed ones where something signs them
 *                (platform and mode: the evidence; policy version and the answering model: the
 *                receipt), and the rest (issuedAt, the model's label) is reported as not checked;
 *  4. signature  Ed25519 by the receipt key the evidence binds, over the RFC 8785 form, and
 *                the id derived from the body;
 *  5. ledger     with a C2SP tlog-proof and a log policy: the receipt's `inference.receipt`
 *                entry is at its ledger index under a trusted checkpoint;
 *  6. response   with the response content: its SHA-256 is the one the receipt signs.
 */
import { CustodyError, toCustodyError } from '@custody/core';
import type { TlogPolicy, TlogProof } from '@custody/ledger';
import { bundleAttestationDigest, type AttestationBundle } from '../attestation/bundle.js';
import { printableLine, verifyGatewayBundle, type GatewayTrustOptions, type VerificationDocument } from '../attestation/verify.js';
import { digestOf, parseReceipt, verifyReceipt, verifyReceiptInclusion, type Receipt } from './receipt.js';

export const RECEIPT_VERIFICATION_FORMAT = 'custody.dev/receipt-verification/v1';

export type ReceiptStepName = 'receipt' | 'gateway' | 'binding' | 'signature' | 'ledger' | 'response';

export interface ReceiptVerificationStep {
  name: ReceiptStepName;
  ok: boolean;
  /** False when the step did not apply or did not run. */
  ran: boolean;
  detail: string;
  code?: string;
}

export interface ReceiptVerificationDocument {
  format: typeof RECEIPT_VERIFICATION_FORMAT;
  ok: boolean;
  receiptId?: string;
  /** The time the gateway's attestation was checked at (the receipt's receivedAt unless given). */
  attestedAt?: string;
  steps: ReceiptVerificationStep[];
  /** The gateway bundle's own verification, step by step. */
  gateway?: VerificationDocument;
  error?: { code: string; message: string; step: ReceiptStepName };
}

export interface VerifyReceiptOfflineInput extends GatewayTrustOptions {
  /** The receipt: its header value (base64url) or the parsed JSON object. */
  receipt: unknown;
  /** The attestation bundle the gateway published when it answered. */
  bundle: AttestationBundle;
  /** A C2SP tlog-proof for the receipt's ledger entry, with the policy trusting its log. */
  proof?: string | Uint8Array | TlogProof;
  tlogPolicy?: TlogPolicy;
  /** The response content the caller received (the whole stream for a streamed answer). */
  response?: Uint8Array;
  /** When to check the attestation; default the receipt's `receivedAt`. */
  attestedAt?: Date;
  /** The current time: the log's witness cosignatures are checked against it. */
  now: Date;
}

const ORDER: readonly ReceiptStepName[] = ['receipt', 'gateway', 'binding', 'signature', 'ledger', 'response'];

/** Verifies a receipt offline; never throws for a failed check (see `ok`, `steps`, `error`). */
export async function verifyReceiptOffline(input: VerifyReceiptOfflineInput): Promise<ReceiptVerificationDocument> {
  const doc: ReceiptVerificationDocument = { format: RECEIPT_VERIFICATION_FORMAT, ok: false, steps: [] };
  let receipt!: Receipt;
  let at!: Date;
  const run = async (name: ReceiptStepName, fn: () => Promise<string | { skipped: string }> | string | { skipped: string }): Promise<boolean> => {
    try {
      const r = await fn();
      doc.steps.push(typeof r === 'string' ? { name, ok: true, ran: true, detail: r } : { name, ok: true, ran: false, detail: r.skipped });
      return true;
    } catch (e) {
      const err = toCustodyError(e);
      doc.steps.push({ name, ok: false, ran: true, detail: err.message, code: err.code });
      doc.error = { code: err.code, message: err.message, step: name };
      for (const rest of ORDER.slice(ORDER.indexOf(name) + 1)) doc.steps.push({ name: rest, ok: false, ran: false, detail: 'not run' });
      return false;
    }
  };

  const steps: [ReceiptStepName, () => Promise<string | { skipped: string }> | string | { skipped: string }][] = [
    [
      'receipt',
      () => {
        receipt = parseReceipt(input.receipt);
        doc.receiptId = receipt.receiptId;
        // When the gateway accepted the request under this attestation: an answer that streamed
        // for minutes completed later, and a revocation meanwhile would have cut it off unsigned.
        at = input.attestedAt ?? new Date(receipt.timestamps.receivedAt);
        doc.attestedAt = at.toISOString();
        return `${receipt.format} ${receipt.receiptId}: ${receipt.route} for tenant ${receipt.tenant}, answered ${receipt.response.status} at ${receipt.timestamps.completedAt}`;
      },
    ],
    [
      'gateway',
      async () => {
        const { document } = await verifyGatewayBundle(input.bundle, { ...input, now: at, pastAnswer: true });
        doc.gateway = document;
        if (!document.ok) throw new CustodyError(document.error?.code ?? 'ERR_SDK_GATEWAY', `the gateway's attestation does not verify at ${at.toISOString()}: ${document.error?.message ?? 'failed'}`);
        // The bundle's ledger record of the broker's appraisal is proved only in strict mode (the
        // gateway document's step ledger); otherwise the auditor is told it was not checked.
        const ledger = document.steps.find((s) => s.name === 'ledger');
        const logged = ledger?.ran ? `; strict: ${ledger.detail}` : input.bundle.ledger ? `; not checked: the bundle's ledger record of the appraisal (index ${input.bundle.ledger.index}), strict mode off` : '';
        return `${document.platform}${document.simulated ? ' (SIMULATED)' : ''} attested at ${at.toISOString()}${document.earId ? `, EAR ${document.earId}` : ''}; receipt key bound to the evidence${logged}`;
      },
    ],
    [
      'binding',
      async () => {
        const b = input.bundle;
        const digest = await bundleAttestationDigest(b);
        const g = receipt.gateway;
        const d = doc.gateway!;
        const mismatch = (field: string) => new CustodyError('ERR_RECEIPT_MISMATCH', `the receipt names another gateway attestation than the bundle (${field})`, { detail: { field } });
        if (g.attestationDigest !== digest) throw mismatch('gateway.attestationDigest');
        if (g.platform !== d.platform) throw mismatch('gateway.platform');
        if (g.simulated !== d.simulated) throw mismatch('gateway.simulated');
        const want = d.measurements ?? {};
        if (Object.keys(want).length !== Object.keys(g.measurements).length || Object.entries(want).some(([k, v]) => g.measurements[k] !== v)) throw mismatch('gateway.measurements');
        // With a verified EAR its id must be the receipt's (without one, the raw evidence was
        // appraised, and the digest above already ties the receipt to the bundle's EAR bytes).
        if (d.earId !== undefined && g.earId !== d.earId) throw mismatch('gateway.earId');
        // The GPUs the answering gateway attested (absent: none) are the ones the bundle attests.
        const gpus = g.gpus ?? 0;
        if (gpus !== (d.devices?.length ?? 0)) throw mismatch('gateway.gpus');
        const minGpus = input.minGpus ?? 0;
        if (gpus < minGpus) throw new CustodyError('ERR_RECEIPT_MISMATCH', `the receipt names ${gpus} attested GPU(s), at least ${minGpus} required`, { detail: { field: 'gateway.gpus', gpus, required: minGpus } });
        const statements = bundleStatements(b, d, receipt);
        return `the receipt names this attestation (${digest.slice(0, 23)}...)${gpus > 0 ? ` and its ${gpus} GPU(s)` : ''}; ${statements}`;
      },
    ],
    [
      'signature',
      async () => {
        // The bundle's receipt key is the one its runtime data, and so its evidence, binds (step gateway).
        const key = input.bundle.receiptKey;
        await verifyReceipt(input.receipt, key);
        return `Ed25519 signature by the attested receipt key ${key.x.slice(0, 12)}...; receipt id derived from the body`;
      },
    ],
    [
      'ledger',
      async () => {
        if (input.proof === undefined) return { skipped: receipt.ledger ? `not checked: no proof given for ledger entry ${receipt.ledger.index}` : 'not checked: the receipt names no ledger entry' };
        if (!input.tlogPolicy) throw new CustodyError('ERR_USAGE', 'a ledger proof needs the policy (log key, witnesses) that trusts its log');
        const r = await verifyReceiptInclusion(receipt, input.proof, input.tlogPolicy, { now: input.now });
        return `entry ${r.index} of a log of ${r.treeSize} entries under a trusted checkpoint is this receipt's inference.receipt event`;
      },
    ],
    [
      'response',
      async () => {
        if (!input.response) return { skipped: 'not checked: no response content given' };
        const digest = await digestOf(input.response);
        if (digest !== receipt.response.digest) throw new CustodyError('ERR_RECEIPT_MISMATCH', 'the response content is not the one the receipt signs', { detail: { field: 'response.digest' } });
        return `the response content (${input.response.length} bytes) is the one the receipt signs`;
      },
    ],
  ];
  for (const [name, fn] of steps) if (!(await run(name, fn))) return doc;
  doc.ok = true;
  return doc;
}

/**
 * The bundle's own statements beside its evidence and EAR, each compared with what signs it, or
 * named as not checked: a reader must never take a changed one for a verified one. Platform and
 * mode are the attested ones (the evidence or the EAR, which the receipt names too). The gateway
 * policy version and the model are the receipt's: one gateway process publishes its bundles and
 * signs its receipts with one tenant policy and one backend. A gateway serving several models
 * names the first in its bundle, so a receipt answered by another one says nothing about it.
 * Nothing signs issuedAt or the model's label. Returns the account; throws on a mismatch.
 */
function bundleStatements(b: AttestationBundle, d: VerificationDocument, receipt: Receipt): string {
  const differs = (field: string, code: string, signedBy: string) =>
    new CustodyError(code, `the bundle's ${field} is not the one ${signedBy} (the bundle was altered, or is not the one this receipt was answered under)`, { detail: { field: `bundle.${field}` } });
  if (b.platform !== d.platform) throw differs('platform', 'ERR_EVIDENCE_BINDING', 'its evidence attests');
  if (b.simulated !== d.simulated) throw differs('simulated', 'ERR_EVIDENCE_BINDING', 'its evidence attests');
  const checked = ['platform', 'mode'];
  const unsigned = ['issuedAt'];
  let otherModel = '';
  if (b.policyVersion !== undefined) {
    if (b.policyVersion !== receipt.policy.version) throw differs('policyVersion', 'ERR_RECEIPT_MISMATCH', 'the receipt signs');
    checked.push('policy version');
  }
  const m = b.model;
  if (m && m.id !== receipt.model.id) otherModel = `; not checked: its model ${m.id}, not the one that answered (${receipt.model.id})`;
  else if (m) {
    if (m.digest !== receipt.model.digest) throw differs('model.digest', 'ERR_RECEIPT_MISMATCH', 'the receipt signs');
    if (m.backend !== undefined && m.backend !== receipt.model.backend) throw differs('model.backend', 'ERR_RECEIPT_MISMATCH', 'the receipt signs');
    checked.push('model');
    if (m.label !== undefined) unsigned.push('model label');
  }
  return `the bundle's ${checked.join(', ')} are the attested and signed ones; not checked (nothing signs them): its ${unsigned.join(' and ')}${otherModel}`;
}

/** The document as plain text, one line a step, for a terminal or a log. */
export function renderReceiptVerificationText(doc: ReceiptVerificationDocument): string {
  const lines = [`receipt ${doc.receiptId ?? '(unreadable)'}: ${doc.ok ? 'VERIFIED' : `NOT VERIFIED (${doc.error?.code ?? 'failed'} at ${doc.error?.step ?? '?'})`}`];
  for (const s of doc.steps) lines.push(`  ${s.ok ? (s.ran ? 'ok  ' : 'skip') : s.ran ? 'FAIL' : '-   '}  ${s.name.padEnd(9)} ${s.detail}${s.code ? ` [${s.code}]` : ''}`);
  // The gateway step's detail quotes the gateway document's error message: one line each, whatever it says.
  return lines.map(printableLine).join('\n');
}
