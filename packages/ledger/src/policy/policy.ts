import { CustodyError, ParseError, VerificationError, equalBytes, fromUtf8 } from '@custody/core';
import { openCheckpoint, type OpenedCheckpoint } from '../checkpoint/checkpoint.js';
import { SIG_TYPE_COSIGNATURE_V1, SIG_TYPE_ED25519, parseVerifierKey, type VerifierKey } from '../note/keys.js';
import { createCosignatureVerifier, createEd25519Verifier, type NoteVerifier } from '../note/note.js';

/**
 * C2SP tlog-policy: which logs are trusted, which witnesses exist, and the quorum rule a
 * checkpoint's cosignatures must satisfy. Line based:
 *
 *   log <vkey> [<url>]
 *   witness <name> <vkey> [<url>]
 *   group <name> all|any|<k> <member>...
 *   quorum <name>|none
 */
export interface TlogPolicy {
  logs: { key: VerifierKey; url?: string }[];
  witnesses: Map<string, { key: VerifierKey; url?: string }>;
  groups: Map<string, { threshold: number; members: string[] }>;
  /** A witness name, a group name, or 'none'. */
  quorum: string;
}

export const MAX_POLICY_SIZE = 64 * 1024;
const MAX_POLICY_ENTRIES = 256;

function bad(why: string, line?: number): ParseError {
  return new ParseError('ERR_TLOG_POLICY', why, line === undefined ? undefined : { detail: { line } });
}

export function parseTlogPolicy(input: string | Uint8Array): TlogPolicy {
  const size = typeof input === 'string' ? input.length : input.length;
  if (size > MAX_POLICY_SIZE) throw new ParseError('ERR_INPUT_TOO_LARGE', 'policy file is too large', { detail: { size } });
  let text: string;
  try {
    text = typeof input === 'string' ? input : fromUtf8(input);
  } catch (e) {
    throw new ParseError('ERR_TLOG_POLICY', 'policy file is not UTF-8', { cause: e });
  }
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if ((c < 0x20 && c !== 0x09 && c !== 0x0a) || c === 0x7f) throw bad('policy file contains a control character');
  }
  const policy: TlogPolicy = { logs: [], witnesses: new Map(), groups: new Map(), quorum: '' };
  const names = new Set<string>();
  let quorumSeen = false;
  const lines = text.split('\n');
  lines.forEach((raw, idx) => {
    const lineNo = idx + 1;
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const f = line.split(/[ \t]+/);
    const kw = f[0]!;
    if (policy.logs.length + names.size > MAX_POLICY_ENTRIES) throw bad('policy has too many entries', lineNo);
    const keyOf = (s: string, type: number, what: string): VerifierKey => {
      let k: VerifierKey;
      try {
        k = parseVerifierKey(s);
      } catch (e) {
        throw new ParseError('ERR_TLOG_POLICY', `${what} key is not a valid vkey`, { cause: e, detail: { line: lineNo } });
      }
      if (k.type !== type) throw bad(`${what} key has the wrong signature type`, lineNo);
      return k;
    };
    const allKeys = () => [...policy.logs.map((l) => l.key), ...[...policy.witnesses.values()].map((w) => w.key)];
    switch (kw) {
      case 'log': {
        if (f.length < 2 || f.length > 3) throw bad('log line needs a vkey and an optional URL', lineNo);
        const key = keyOf(f[1]!, SIG_TYPE_ED25519, 'log');
        if (allKeys().some((k) => equalBytes(k.publicKey, key.publicKey))) throw bad('duplicate key', lineNo);
        policy.logs.push(f[2] ? { key, url: f[2] } : { key });
        return;
      }
      case 'witness': {
        if (f.length < 3 || f.length > 4) throw bad('witness line needs a name, a vkey and an optional URL', lineNo);
        const name = f[1]!;
        if (name === 'none' || names.has(name)) throw bad('witness name is reserved or already defined', lineNo);
        const key = keyOf(f[2]!, SIG_TYPE_COSIGNATURE_V1, 'witness');
        if (allKeys().some((k) => equalBytes(k.publicKey, key.publicKey))) throw bad('duplicate key', lineNo);
        names.add(name);
        policy.witnesses.set(name, f[3] ? { key, url: f[3] } : { key });
        return;
      }
      case 'group': {
        if (f.length < 4) throw bad('group line needs a name, a threshold and at least one member', lineNo);
        const name = f[1]!;
        if (name === 'none' || names.has(name)) throw bad('group name is reserved or already defined', lineNo);
        const members = f.slice(3);
        if (new Set(members).size !== members.length) throw bad('group lists a member twice', lineNo);
        for (const m of members) if (!names.has(m)) throw bad('group member is not defined on an earlier line', lineNo);
        const t = f[2]!;
        let threshold: number;
        if (t === 'all') threshold = members.length;
        else if (t === 'any') threshold = 1;
        else if (/^[1-9][0-9]{0,3}$/.test(t)) threshold = Number(t);
        else throw bad('group threshold must be all, any or a decimal', lineNo);
        if (threshold < 1 || threshold > members.length) throw bad('group threshold out of range', lineNo);
        names.add(name);
        policy.groups.set(name, { threshold, members });
        return;
      }
      case 'quorum': {
        if (f.length !== 2) throw bad('quorum line needs exactly one name', lineNo);
        if (quorumSeen) throw bad('policy has more than one quorum line', lineNo);
        const q = f[1]!;
        if (q !== 'none' && !names.has(q)) throw bad('quorum names an undefined witness or group', lineNo);
        policy.quorum = q;
        quorumSeen = true;
        return;
      }
      default:
        throw bad('unknown policy keyword', lineNo);
    }
  });
  if (!quorumSeen) throw bad('policy has no quorum line');
  return policy;
}

export function formatTlogPolicy(p: TlogPolicy): string {
  const out: string[] = [];
  for (const l of p.logs) out.push(['log', l.key.vkey, ...(l.url ? [l.url] : [])].join(' '));
  for (const [name, w] of p.witnesses) out.push(['witness', name, w.key.vkey, ...(w.url ? [w.url] : [])].join(' '));
  for (const [name, g] of p.groups) out.push(['group', name, String(g.threshold), ...g.members].join(' '));
  out.push(`quorum ${p.quorum}`);
  return out.join('\n') + '\n';
}

/** Whether the named witnesses (by policy name) that cosigned satisfy the quorum. */
export function quorumSatisfied(p: TlogPolicy, cosigned: ReadonlySet<string>): boolean {
  if (p.quorum === 'none') return true;
  const memo = new Map<string, boolean>();
  const ok = (name: string): boolean => {
    const m = memo.get(name);
    if (m !== undefined) return m;
    let r: boolean;
    const g = p.groups.get(name);
    if (g) r = g.members.filter(ok).length >= g.threshold;
    else r = cosigned.has(name);
    memo.set(name, r);
    return r;
  };
  return ok(p.quorum);
}

export interface PolicyVerifiers {
  logs: NoteVerifier[];
  witnesses: { name: string; verifier: NoteVerifier }[];
}

export async function policyVerifiers(p: TlogPolicy): Promise<PolicyVerifiers> {
  return {
    logs: await Promise.all(p.logs.map((l) => createEd25519Verifier(l.key))),
    witnesses: await Promise.all([...p.witnesses].map(async ([name, w]) => ({ name, verifier: await createCosignatureVerifier(w.key) }))),
  };
}

export interface PolicyCheckpoint extends OpenedCheckpoint {
  /** Policy names of the witnesses whose cosignatures verified. */
  witnesses: string[];
}

export interface PolicyVerifyOptions {
  origin?: string;
  verifiers?: PolicyVerifiers;
  /**
   * The verification time (injected; callers pass their clock's reading). A cosignature dated
   * more than `maxFutureSeconds` (default 60) after `now`, or with `maxAgeSeconds` older than
   * that, does not count toward the quorum. The age limit stops a log from serving an old,
   * once-cosigned checkpoint forever (a freeze); the future limit stops a witness with a wrong
   * clock (or a forged timestamp) from making a checkpoint look fresh for years.
   */
  now: Date;
  maxAgeSeconds?: number;
  maxFutureSeconds?: number;
}

/** Verifies a checkpoint against a policy: a trusted log signed it and a quorum of witnesses freshly cosigned it. */
export async function verifyCheckpointWithPolicy(input: string | Uint8Array, p: TlogPolicy, opts: PolicyVerifyOptions): Promise<PolicyCheckpoint> {
  const nowMs = (opts as PolicyVerifyOptions | undefined)?.now instanceof Date ? opts.now.getTime() : NaN;
  if (!Number.isFinite(nowMs)) throw new CustodyError('ERR_USAGE', 'verifyCheckpointWithPolicy needs `now`, a valid Date');
  return verifyCheckpointQuorum(input, p, opts, Math.floor(nowMs / 1000));
}

/**
 * The quorum check with an optional time. Without one, cosignatures are not checked for
 * freshness: only for callers that cannot pass a time yet (the deprecated 3-argument
 * `verifyTlogProof`); not exported from the package.
 */
export async function verifyCheckpointQuorum(
  input: string | Uint8Array,
  p: TlogPolicy,
  opts: Omit<PolicyVerifyOptions, 'now'>,
  nowSec: number | undefined,
): Promise<PolicyCheckpoint> {
  const v = opts.verifiers ?? (await policyVerifiers(p));
  const opened = await openCheckpoint(
    input,
    v.logs,
    v.witnesses.map((w) => w.verifier),
    opts.origin,
  );
  const fresh = (ts: number): boolean => {
    if (nowSec === undefined) return true;
    if (ts > nowSec + (opts.maxFutureSeconds ?? 60)) return false;
    return opts.maxAgeSeconds === undefined || nowSec - ts <= opts.maxAgeSeconds;
  };
  const witnesses = v.witnesses.filter((w) => opened.cosignatures.some((c) => c.vkey === w.verifier.vkey && fresh(c.timestamp))).map((w) => w.name);
  if (!quorumSatisfied(p, new Set(witnesses))) {
    throw new VerificationError('ERR_TLOG_QUORUM', 'checkpoint is not cosigned by a quorum of the policy witnesses (with fresh cosignatures)', {
      detail: { cosigned: witnesses.length, quorum: p.quorum },
    });
  }
  return { ...opened, witnesses };
}
