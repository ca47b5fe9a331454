import type { Command } from 'commander';
import { existsSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { CustodyError, ParseError, equalBytes, fromUtf8, parseJsonUnique, secureRandom, systemClock, toBase64, toCustodyError } from '@custody/core';
import {
  LogMonitor,
  SIG_TYPE_ED25519,
  buildTlogProof,
  consistencyProofFromTiles,
  createEd25519Verifier,
  encodeEvent,
  formatTlogPolicy,
  formatTlogProof,
  generateSignerKey,
  httpLogSource,
  inclusionProofFromTiles,
  openCheckpoint,
  parseCheckpointBody,
  parseNote,
  parseTlogPolicy,
  parseTlogProof,
  parseVerifierKey,
  readEntry,
  rfc6962,
  verifyCheckpointWithPolicy,
  verifyConsistency,
  verifyInclusion,
  verifierKeyOfSigner,
  type LogSource,
  type MonitorFinding,
  type MonitorState,
  type SupportedSigType,
  type TlogPolicy,
} from '@custody/ledger';
import { writeNewSecretFile } from '@custody/crypto-node';
import { DRAIN_MS, FsTileStore, createEventsNodeHandler, createLogApp, listen, newWriterKey, openLog, parseWriters } from '@custody/ledger-service';
import type { Register } from './index.js';
import { readInputFile, readSecretFile, parseTime } from '../files.js';
import { parseMilliseconds, parseSeconds } from '../numbers.js';
import { failWith, isInputOrAvailabilityCode, mark, printJson, shellWord } from '../output.js';
import { EXIT_NOT_VERIFIED, EXIT_OK, EXIT_UNAVAILABLE } from '../exit.js';

function out(line = ''): void {
  process.stdout.write(line + '\n');
}

/** `host:port`, `:port` or `port`. */
export function parseListen(s: string): { host: string; port: number } {
  const m = /^(?:(\[[^\]]+\]|[^:]*):)?(\d{1,5})$/.exec(s);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535) throw new CustodyError('ERR_USAGE', `--listen must be host:port, got ${JSON.stringify(s)}`);
  return { host: (m[1] || '127.0.0.1').replace(/^\[|\]$/g, ''), port };
}

/**
 * `log vkey` and `witness vkey`: the verifier key of a signer key file of that kind (a log's
 * Ed25519 key, a witness's cosignature/v1 key); the other kind is refused (ERR_NOTE_KEY), so a
 * log's key is never printed as a witness's or the reverse.
 */
export async function printVkeyOf(opts: { key: string; json?: boolean }, want: SupportedSigType): Promise<void> {
  const json = opts.json ?? false;
  try {
    const vkey = await verifierKeyOfSigner(readKeyFile(opts.key));
    if (parseVerifierKey(vkey).type !== want) {
      throw new CustodyError('ERR_NOTE_KEY', want === SIG_TYPE_ED25519 ? `${opts.key} is a witness key (cosignature/v1), not a log key: use \`custody witness vkey\`` : `${opts.key} is a log key (Ed25519), not a witness key: use \`custody log vkey\``);
    }
    if (json) printJson({ ok: true, vkey });
    else process.stdout.write(vkey + '\n');
  } catch (e) {
    failWith(e, json);
  }
}

/** Reads a signer key file, warning when other users could read it. */
export function readKeyFile(path: string): string {
  return fromUtf8(readSecretFile(path, 'key file')).trim();
}

/** Saves a monitor state (a temporary file renamed over it); a failure names the path (ERR_FILE_UNWRITABLE). */
export function writeMonitorState(path: string, state: MonitorState): void {
  const tmp = `${path}.tmp`;
  try {
    writeFileSync(tmp, JSON.stringify(state, null, 1));
    renameSync(tmp, path);
  } catch (e) {
    throw new CustodyError('ERR_FILE_UNWRITABLE', `cannot write the monitor state ${path} (${(e as NodeJS.ErrnoException).code ?? 'error'})`, { cause: e, detail: { path } });
  }
}

export function writeSecretFile(path: string, text: string): void {
  if (existsSync(path)) throw new CustodyError('ERR_USAGE', `${path} exists; refusing to overwrite a key`);
  // All or nothing: a full disk must not leave an empty key file that the next start takes for the key.
  writeNewSecretFile(path, text + '\n');
}

/**
 * `fetch` with a deadline on the whole call, its body included (CUSTODY_HTTP_TIMEOUT_MS, default
 * 30 s): a log or witness that accepts the connection and never answers, or trickles its answer,
 * ends in the reader's typed error (ERR_TLOG_UNAVAILABLE, ERR_WITNESS_UNAVAILABLE: exit 3).
 */
export function boundedFetch(defaultMs = 30_000): (url: string, init?: RequestInit) => Promise<Response> {
  const env = process.env.CUSTODY_HTTP_TIMEOUT_MS;
  const ms = env === undefined ? defaultMs : parseMilliseconds(env, 'CUSTODY_HTTP_TIMEOUT_MS', 1);
  return (url, init) => {
    const deadline = AbortSignal.timeout(ms);
    return fetch(url, { ...init, signal: init?.signal ? AbortSignal.any([init.signal, deadline]) : deadline });
  };
}

/** A log by URL (tlog-tiles over HTTP) or by directory (as `custody log serve` writes it). */
export function logSource(where: string): LogSource {
  if (/^https?:\/\//i.test(where)) return httpLogSource(boundedFetch(), where);
  const st = statSync(where, { throwIfNoEntry: false });
  if (!st) throw new CustodyError('ERR_FILE_NOT_FOUND', `log directory not found: ${where}`);
  if (!st.isDirectory()) throw new CustodyError('ERR_FILE_NOT_REGULAR', `the log must be a directory (as custody log serve writes it) or an http(s) URL: ${where}`);
  return new FsTileStore(where);
}

/**
 * Trust configuration: a tlog-policy file, or log vkeys (with quorum none). Both at once is a
 * usage error: the vkeys would be silently ignored (or, if merged, would drop the policy's quorum).
 */
export function readTrust(opts: { policy?: string; vkey?: string[] }, policyOption = '--policy'): TlogPolicy {
  if (opts.policy !== undefined && opts.vkey && opts.vkey.length > 0) throw new CustodyError('ERR_USAGE', `give ${policyOption} <file> or --vkey <vkey>, not both (the policy names its logs)`);
  if (opts.policy) return parseTlogPolicy(readInputFile(opts.policy, 'policy file'));
  if (opts.vkey && opts.vkey.length > 0) return parseTlogPolicy(opts.vkey.map((k) => `log ${parseVerifierKey(k).vkey}`).join('\n') + '\nquorum none\n');
  throw new CustodyError('ERR_USAGE', 'give --policy <file> or --vkey <vkey>');
}

/** Reads event JSON ("-" for stdin) and returns its ledger entry: canonical JSON, schema and secrets rule checked. */
export function readEventFile(path: string): Uint8Array<ArrayBuffer> {
  const text = path === '-' ? readFileSync(0, 'utf8') : fromUtf8(readInputFile(path, 'event file'));
  let value: unknown;
  try {
    // A repeated member is refused: a reader taking the first would see another event than the
    // one proven (JSON.parse keeps the last).
    value = parseJsonUnique(text);
  } catch (e) {
    throw new CustodyError('ERR_TLOG_EVENT', e instanceof CustodyError ? `event file: ${e.message}` : 'event file is not JSON', { cause: e });
  }
  return encodeEvent(value as Record<string, unknown>);
}

// Signed notes (checkpoints) are decoded byte for byte: a leading byte-order mark stays in the
// text, as in @custody/ledger's parsers, so a signature is never checked over other bytes than given.
const exactUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Decodes a signed note read from a file or a log exactly (invalid UTF-8: ERR_NOTE_MALFORMED). */
export function decodeNote(bytes: Uint8Array, what: string): string {
  try {
    return exactUtf8.decode(bytes);
  } catch (e) {
    throw new ParseError('ERR_NOTE_MALFORMED', `${what} is not valid UTF-8`, { cause: e });
  }
}

/**
 * What `log verify` will check, decided before anything is verified: every entry, event, index
 * or stored checkpoint given must be checked, or the command is a usage error (exit 2). An
 * entry with no way to prove it is never silently skipped.
 */
export function planVerify(opts: { proof?: string; entry?: string; event?: string; index?: string; old?: string; log?: string }): { inclusion: 'proof' | 'index' | undefined; index?: number } {
  const hasEntry = opts.entry !== undefined || opts.event !== undefined;
  if (opts.entry !== undefined && opts.event !== undefined) throw new CustodyError('ERR_USAGE', 'give one of --entry or --event, not both');
  if (opts.proof !== undefined && opts.index !== undefined) throw new CustodyError('ERR_USAGE', 'give --proof or --index, not both (a tlog-proof carries its own index)');
  if (opts.old !== undefined && opts.log === undefined) throw new CustodyError('ERR_USAGE', '--old needs --log to build the consistency proof');
  let inclusion: 'proof' | 'index' | undefined;
  let index: number | undefined;
  if (opts.proof !== undefined) inclusion = 'proof';
  else if (opts.index !== undefined) {
    if (!/^(0|[1-9][0-9]{0,15})$/.test(opts.index) || !Number.isSafeInteger(Number(opts.index))) throw new CustodyError('ERR_USAGE', '--index must be a non-negative integer');
    if (opts.log === undefined) throw new CustodyError('ERR_USAGE', '--index needs --log to build the inclusion proof from its tiles');
    inclusion = 'index';
    index = Number(opts.index);
  }
  if (inclusion && !hasEntry) throw new CustodyError('ERR_USAGE', 'inclusion needs exactly one of --entry or --event');
  // A log cannot be asked where an entry is (tlog-tiles has no lookup by content), so an entry
  // alone cannot be proven: say so instead of verifying only the checkpoint.
  if (!inclusion && hasEntry) {
    throw new CustodyError('ERR_USAGE', `${opts.entry !== undefined ? '--entry' : '--event'} needs a way to prove inclusion: --proof <tlog-proof>, or --index <n> with --log <url|dir>`);
  }
  return index === undefined ? { inclusion } : { inclusion, index };
}

/**
 * A saved monitor state is trusted only through its checkpoint: the checkpoint must be signed by
 * a policy log, and the size, root hash and origin saved beside it must be that checkpoint's
 * (they drive the rollback and consistency checks). Returns the state rebuilt from the checkpoint.
 */
export async function readMonitorState(text: string, policy: TlogPolicy, where: string): Promise<MonitorState> {
  let saved: unknown;
  try {
    saved = JSON.parse(text);
  } catch (e) {
    throw new CustodyError('ERR_INPUT_MALFORMED', `monitor state ${where} is not JSON`, { cause: e });
  }
  const s = saved as Partial<Record<keyof MonitorState, unknown>> | null;
  if (typeof s !== 'object' || s === null || typeof s.checkpoint !== 'string') throw new CustodyError('ERR_INPUT_MALFORMED', `monitor state ${where} has no checkpoint`);
  let cp;
  try {
    cp = (await openCheckpoint(s.checkpoint, await Promise.all(policy.logs.map((l) => createEd25519Verifier(l.key))))).checkpoint;
  } catch (e) {
    throw new CustodyError('ERR_INPUT_MALFORMED', `monitor state ${where}: its checkpoint is not signed by a trusted log (${toCustodyError(e).code})`, { cause: e });
  }
  const mismatched = [
    s.origin !== cp.origin ? 'origin' : '',
    s.size !== cp.size ? 'size' : '',
    s.rootHash !== toBase64(cp.rootHash) ? 'rootHash' : '',
  ].filter(Boolean);
  if (mismatched.length) {
    throw new CustodyError('ERR_INPUT_MALFORMED', `monitor state ${where}: ${mismatched.join(', ')} do not match its signed checkpoint (${cp.origin} size ${cp.size}); refusing it`);
  }
  return { origin: cp.origin, size: cp.size, rootHash: toBase64(cp.rootHash), checkpoint: s.checkpoint };
}

const collectVkey = (v: string, prev: string[] = []): string[] => [...prev, v];

function parseMaxAge(s: string | undefined): number | undefined {
  if (s === undefined) return undefined;
  if (!/^(0|[1-9][0-9]{0,9})$/.test(s)) throw new CustodyError('ERR_USAGE', '--max-age must be a whole number of seconds');
  return Number(s);
}

interface Step {
  step: string;
  ok: boolean;
  detail: string;
  code?: string;
}

async function step(steps: Step[], name: string, f: () => Promise<string>): Promise<boolean> {
  try {
    steps.push({ step: name, ok: true, detail: await f() });
    return true;
  } catch (e) {
    const err = toCustodyError(e);
    if (isInputOrAvailabilityCode(err.code)) throw err;
    steps.push({ step: name, ok: false, detail: err.message, code: err.code });
    return false;
  }
}

export const register: Register = (program: Command) => {
  const log = program.command('log').description('Run, append to, verify and monitor a Custody transparency log (C2SP tlog-tiles, signed checkpoints, witnesses)');

  log
    .command('keygen')
    .description("Generate a log signing key (C2SP signed-note Ed25519); the key name is the log's origin")
    .requiredOption('--origin <origin>', 'log origin, a schema-less URL such as example.com/custody-log')
    .requiredOption('--out <file>', 'where to write the private key (mode 0600)')
    .option('--json', 'machine-readable output')
    .action(async (opts: { origin: string; out: string; json?: boolean }) => {
      const json = opts.json ?? false;
      try {
        const k = await generateSignerKey(opts.origin, SIG_TYPE_ED25519, secureRandom);
        writeSecretFile(opts.out, k.skey);
        if (json) printJson({ ok: true, origin: opts.origin, vkey: k.vkey, keyFile: opts.out });
        else out(k.vkey);
      } catch (e) {
        failWith(e, json);
      }
    });

  log
    .command('vkey')
    .description('Print the verifier key (vkey) of a log signing key file, as keygen printed it')
    .requiredOption('--key <file>', 'the log signing key file')
    .option('--json', 'machine-readable output')
    .action((opts: { key: string; json?: boolean }) => printVkeyOf(opts, SIG_TYPE_ED25519));

  log
    .command('writer-key')
    .description("Generate a key that may append to a served log: writes the key (mode 0600) and prints the line that admits it to the log's --writers file")
    .requiredOption('--name <name>', 'the writer, e.g. broker or gateway-1 (1-64 of [A-Za-z0-9._-])')
    .requiredOption('--out <file>', 'where to write the key (mode 0600); give it to the writer as $CUSTODY_LEDGER_KEY')
    .option('--json', 'machine-readable output')
    .action((opts: { name: string; out: string; json?: boolean }) => {
      const json = opts.json ?? false;
      try {
        const { key, line } = newWriterKey(opts.name);
        writeSecretFile(opts.out, key);
        if (json) printJson({ ok: true, name: opts.name, keyFile: opts.out, writersLine: line });
        else out(line);
      } catch (e) {
        failWith(e, json);
      }
    });

  log
    .command('serve')
    .description('Run the log: sequence appends durably, integrate tiles, sign checkpoints, gather witness cosignatures, serve tiles and the write API')
    .requiredOption('--dir <dir>', 'public directory for checkpoint and tiles (static files)')
    .requiredOption('--key <file>', 'log signing key file (from `custody log keygen`)')
    .option('--db <file>', 'SQLite sequencing database (default <dir>.sqlite)')
    .option('--postgres <url>', 'share sequencing through PostgreSQL instead (several writers, one log; every writer needs the same --dir, a shared tile directory)')
    .option('--witnesses <file>', 'tlog-policy file naming witnesses with URLs and the quorum required before publishing')
    .option('--listen <host:port>', 'address to listen on', '127.0.0.1:8470')
    .option('--interval <ms>', 'integrate and sign a checkpoint this often', '250')
    .option('--writers <file>', 'who may append: lines `NAME sha256:<hex>` from `custody log writer-key`; without it anyone who reaches --listen may append')
    .option('--open-writes', 'listen beyond loopback without --writers (anyone who reaches the address may append)')
    .option('--json', 'log lines as JSON')
    .addHelpText(
      'after',
      `
Reads (C2SP tlog-tiles): GET /checkpoint, GET /tile/<L>/<N>[.p/<W>], GET /tile/entries/<N>[.p/<W>]
Writes: POST /add (raw entry), POST /events (Custody event JSON); add ?wait=1 for a tlog-proof.
With --writers, writes need Authorization: Bearer <writer key>; reads stay public.
One writer per SQLite log: a second process on the same database fails with ERR_TLOG_LOCKED.
Several writers (--postgres): each one integrates and publishes into --dir, so all of them
must share one tile directory (the same path on a shared filesystem); tiles they write are
byte-identical and the checkpoint never goes back.
Example:
  custody log keygen --origin example.com/custody-log --out log.key
  custody log writer-key --name broker --out broker.lkey >> writers.txt
  custody log serve --dir /var/lib/custody/log --key log.key --writers writers.txt --listen 0.0.0.0:8470`,
    )
    .action(async (opts: { dir: string; key: string; db?: string; postgres?: string; witnesses?: string; writers?: string; openWrites?: boolean; listen: string; interval: string; json?: boolean }) => {
      const json = opts.json ?? false;
      try {
        const { host, port } = parseListen(opts.listen);
        const interval = parseMilliseconds(opts.interval, '--interval', 10);
        const witnessPolicy = opts.witnesses ? parseTlogPolicy(readInputFile(opts.witnesses, 'witness policy')) : undefined;
        const writers = opts.writers !== undefined ? parseWriters(fromUtf8(readInputFile(opts.writers, 'writers file'))) : undefined;
        const loopback = host === '127.0.0.1' || host === '::1' || host === 'localhost';
        if (!writers && !loopback && !opts.openWrites) throw new CustodyError('ERR_USAGE', 'a log listening beyond loopback needs --writers FILE (or --open-writes to let anyone who reaches it append)');
        const say = (msg: string, fields: Record<string, unknown> = {}) =>
          json ? out(JSON.stringify({ msg, ...fields })) : out(`${msg}${Object.keys(fields).length ? ' ' + Object.entries(fields).map(([k, v]) => `${k}=${String(v)}`).join(' ') : ''}`);
        const { log: tlog, store } = await openLog({
          dir: opts.dir,
          skey: readKeyFile(opts.key),
          ...(opts.db ? { sqlitePath: opts.db } : {}),
          ...(opts.postgres ? { postgres: opts.postgres } : {}),
          ...(witnessPolicy ? { witnessPolicy } : {}),
          integrateIntervalMs: interval,
          onPublish: (_note, size) => say('checkpoint published', { size }),
          onError: (e) => say('retrying', { code: e.code, error: e.message }),
        });
        const server = await listen(createLogApp(tlog, store, writers ? { writers } : {}), host, port, { intercept: createEventsNodeHandler(tlog, writers ? { writers } : {}) });
        say('log serving', { origin: tlog.origin, url: server.url, dir: opts.dir, sequencing: opts.postgres ? 'postgres' : 'sqlite', writes: writers ? `writers ${writers.names.join(',')}` : 'open to anyone who can reach this address (give --writers FILE)' });
        let stopping = false;
        // The first signal drains (requests in progress, an append waiting for its checkpoint
        // among them, may finish for 10 s; new connections are refused), then the log closes; a
        // second one cuts what is left at once.
        const stop = () => {
          if (stopping) {
            say('stopping now: requests still in progress are cut');
            void server.close({ drainMs: 0 });
            return;
          }
          stopping = true;
          say('stopping', { drainMs: DRAIN_MS });
          void server
            .close({ drainMs: DRAIN_MS })
            .then(() => tlog.close())
            .then(
              () => process.exit(EXIT_OK),
              (e: unknown) => {
                say('stopping failed', { code: toCustodyError(e).code });
                process.exit(EXIT_UNAVAILABLE);
              },
            );
        };
        process.on('SIGINT', stop);
        process.on('SIGTERM', stop);
      } catch (e) {
        failWith(e, json);
      }
    });

  log
    .command('append')
    .description("Append an operator's own event (or raw entry) to a log, over HTTP or directly to a local log directory")
    .option('--url <url>', 'log server URL (POST /events or /add; a writer key in $CUSTODY_LEDGER_KEY is sent)')
    .option('--dir <dir>', 'local log directory (opens the log directly; do not use while `log serve` runs on it)')
    .option('--key <file>', 'log signing key (with --dir)')
    .option('--db <file>', 'SQLite sequencing database (with --dir)')
    .option('--event <file>', 'Custody event JSON ("-" for stdin); checked against the schema and the secrets rule')
    .option('--entry <file>', 'raw entry bytes instead of an event')
    .option('--wait', 'wait until a published checkpoint includes it and write a tlog-proof')
    .option('--proof-out <file>', 'where to write the tlog-proof (with --wait; default: print it)')
    .option('--json', 'machine-readable output')
    .action(async (opts: { url?: string; dir?: string; key?: string; db?: string; event?: string; entry?: string; wait?: boolean; proofOut?: string; json?: boolean }) => {
      const json = opts.json ?? false;
      try {
        if (!opts.url === !opts.dir) throw new CustodyError('ERR_USAGE', 'give exactly one of --url or --dir');
        if (!opts.event === !opts.entry) throw new CustodyError('ERR_USAGE', 'give exactly one of --event or --entry');
        let entry: Uint8Array<ArrayBuffer>;
        let isEvent = false;
        if (opts.event) {
          entry = readEventFile(opts.event);
          isEvent = true;
        } else entry = readInputFile(opts.entry!, 'entry file');
        let index: number;
        let proof: string | undefined;
        if (opts.url) {
          const path = `${isEvent ? '/events' : '/add'}${opts.wait ? '?wait=1' : ''}`;
          let res: Response;
          try {
            const writerKey = process.env.CUSTODY_LEDGER_KEY;
            res = await boundedFetch(60_000)(opts.url.replace(/\/+$/, '') + path, {
              method: 'POST',
              body: new Uint8Array(entry),
              headers: { 'content-type': isEvent ? 'application/json' : 'application/octet-stream', ...(writerKey ? { authorization: `Bearer ${writerKey}` } : {}) },
            });
          } catch (e) {
            const refused = (e as { cause?: { code?: unknown } } | null)?.cause?.code === 'ECONNREFUSED';
            throw new CustodyError('ERR_TLOG_UNAVAILABLE', refused ? `nothing listens at ${opts.url} (is \`custody log serve\` running?)` : `log at ${opts.url} did not answer`, { cause: e });
          }
          const body = (await res.json().catch(() => ({}))) as { index?: number; proof?: string; code?: string; detail?: string; facts?: { index?: unknown; sequenced?: unknown } };
          if (res.status !== 200 || typeof body.index !== 'number') {
            // Sequenced but not yet published: appending again would log the entry twice.
            const sequenced = body.facts?.sequenced === true && typeof body.facts.index === 'number' ? body.facts.index : undefined;
            const hint = sequenced !== undefined ? `; do not append it again: \`custody log proof ${sequenced} --log ${shellWord(opts.url)}\` proves it once it is published` : '';
            throw new CustodyError(body.code ?? 'ERR_TLOG_UNAVAILABLE', (body.detail ?? `log answered ${res.status}`) + hint, sequenced !== undefined ? { detail: { index: sequenced, sequenced: true } } : {});
          }
          index = body.index;
          proof = body.proof;
        } else {
          if (!opts.key) throw new CustodyError('ERR_USAGE', '--dir needs --key');
          const { log: tlog } = await openLog({ dir: opts.dir!, skey: readKeyFile(opts.key), ...(opts.db ? { sqlitePath: opts.db } : {}), integrateIntervalMs: 60_000 });
          try {
            index = (await tlog.addEntry(entry)).index;
            await tlog.integrateNow();
            if (opts.wait) proof = formatTlogProof(await tlog.proof(index));
          } finally {
            await tlog.close();
          }
        }
        if (proof && opts.proofOut) writeFileSync(opts.proofOut, proof);
        if (json) printJson({ ok: true, index, leafHash: toBase64(rfc6962.leaf(entry)), ...(proof ? { proof } : {}) });
        else {
          out(`appended at index ${index}`);
          if (proof && !opts.proofOut) process.stdout.write(proof);
        }
      } catch (e) {
        failWith(e, json);
      }
    });

  log
    .command('verify')
    .description('Verify a checkpoint against log keys or a tlog-policy; optionally an entry inclusion, a tlog-proof file, and consistency from a stored checkpoint')
    .option('--checkpoint <file>', 'signed checkpoint (default: from --proof, or the log at --log)')
    .option('--policy <file>', 'tlog-policy: trusted logs, witnesses, quorum')
    .option('--vkey <vkey>', 'trusted log verifier key (repeatable; no witness quorum)', collectVkey)
    .option('--proof <file>', 'C2SP tlog-proof file to verify (with --entry)')
    .option('--entry <file>', 'the entry bytes exactly as logged')
    .option('--event <file>', 'a Custody event JSON file (canonicalized, as `log append --event` logs it)')
    .option('--index <n>', 'entry index, to prove inclusion from the tiles at --log')
    .option('--old <file>', 'an earlier checkpoint you stored, to prove consistency (needs --log)')
    .option('--log <url|dir>', 'the log, for proofs built from its tiles (--index, --old, and a --proof against another checkpoint than --checkpoint)')
    .option('--at <time>', 'verification time for cosignature freshness (RFC 3339; default now): cosignatures dated over 60 s after it never count')
    .option('--max-age <seconds>', 'cosignatures older than this do not count toward the quorum (also for a proof against another checkpoint)')
    .option('--json', 'machine-readable output')
    .addHelpText(
      'after',
      `
Exit codes: 0 verified, 1 not verified, 2 bad input, 3 log unavailable.
Examples:
  custody log verify --checkpoint checkpoint --vkey 'example.com/custody-log+1a2b3c4d+AY...'
  custody log verify --proof entry-42.tlog-proof --event event.json --policy tlog-policy.txt
  custody log verify --proof entry-42.tlog-proof --entry entry.bin --policy tlog-policy.txt
  custody log verify --old saved-checkpoint --log https://log.example.com/ --policy tlog-policy.txt`,
    )
    .action(async (opts: { checkpoint?: string; policy?: string; vkey?: string[]; proof?: string; entry?: string; event?: string; index?: string; old?: string; log?: string; at?: string; maxAge?: string; json?: boolean }) => {
      const json = opts.json ?? false;
      try {
        const plan = planVerify(opts);
        const policy = readTrust(opts);
        const proofFile = opts.proof ? parseTlogProof(readInputFile(opts.proof, 'proof file')) : undefined;
        const source = opts.log ? logSource(opts.log) : undefined;
        let cpText: string;
        if (opts.checkpoint) cpText = decodeNote(readInputFile(opts.checkpoint, 'checkpoint'), 'checkpoint');
        else if (proofFile) cpText = proofFile.checkpoint;
        else if (source) cpText = decodeNote(await source.readCheckpoint(), "the log's checkpoint");
        else throw new CustodyError('ERR_USAGE', 'give --checkpoint, --proof or --log');
        // A proof against another checkpoint than --checkpoint proves the entry in that tree only:
        // unless the two are the same tree, the log's tiles must prove them one history.
        if (opts.checkpoint && proofFile && proofFile.checkpoint !== cpText && !source) {
          const given = parseCheckpointBody(parseNote(cpText).text);
          const proven = parseCheckpointBody(parseNote(proofFile.checkpoint).text);
          if (given.origin === proven.origin && given.size !== proven.size) {
            throw new CustodyError('ERR_USAGE', `the proof is against another checkpoint (size ${proven.size}) than --checkpoint (size ${given.size}): give --log <url|dir> to prove the two consistent, or verify the proof without --checkpoint`);
          }
        }
        const now = parseTime(opts.at) ?? new Date();
        const maxAge = parseMaxAge(opts.maxAge);
        const fresh = { now, ...(maxAge !== undefined ? { maxAgeSeconds: maxAge } : {}) };
        const steps: Step[] = [];
        let size = 0;
        let root = new Uint8Array();
        let origin = '';
        const cpOk = await step(steps, 'checkpoint', async () => {
          const cp = await verifyCheckpointWithPolicy(cpText, policy, fresh);
          origin = cp.checkpoint.origin;
          size = cp.checkpoint.size;
          root = cp.checkpoint.rootHash;
          return `${cp.checkpoint.origin} size ${size}, signed by the log${cp.witnesses.length ? `, cosigned by ${cp.witnesses.join(', ')}` : ''} (quorum ${policy.quorum})`;
        });
        if (cpOk && plan.inclusion) {
          const entry = opts.entry ? readInputFile(opts.entry, 'entry file') : readEventFile(opts.event!);
          await step(steps, 'inclusion', async () => {
            let index: number;
            let hashes;
            if (proofFile) {
              if (opts.checkpoint && proofFile.checkpoint !== cpText) {
                // A proof against another checkpoint: check that one too, then its inclusion, then
                // that it is the same history as --checkpoint (another tree the log signed would
                // otherwise pass: a fork).
                const other = (await verifyCheckpointWithPolicy(proofFile.checkpoint, policy, fresh)).checkpoint;
                if (other.origin !== origin) throw new CustodyError('ERR_TLOG_ORIGIN', `the proof is from another log (${other.origin.slice(0, 200)}) than the checkpoint`);
                verifyInclusion(proofFile.index, other.size, rfc6962.leaf(entry), proofFile.proof, other.rootHash);
                if (other.size === size) {
                  if (!equalBytes(other.rootHash, root)) throw new CustodyError('ERR_TLOG_SPLIT_VIEW', `the proof's checkpoint and the checkpoint are both of size ${size} with different roots: the log signed two histories`);
                  return `entry ${proofFile.index} is in the tree of size ${size}`;
                }
                const [older, newer] = other.size < size ? [other, { size, rootHash: root }] : [{ size, rootHash: root }, other];
                const p = await consistencyProofFromTiles(source!, older.size, newer.size);
                verifyConsistency(older.size, newer.size, older.rootHash, newer.rootHash, p);
                return `entry ${proofFile.index} is in the tree of size ${other.size}, which is consistent with the checkpoint's (size ${size}; ${p.length} proof hashes)`;
              }
              index = proofFile.index;
              hashes = proofFile.proof;
            } else {
              index = plan.index!;
              hashes = await inclusionProofFromTiles(source!, index, size);
            }
            verifyInclusion(index, size, rfc6962.leaf(entry), hashes, root);
            return `entry ${index} is in the tree of size ${size} (${hashes.length} proof hashes)`;
          });
        }
        if (cpOk && opts.old) {
          if (!source) throw new CustodyError('ERR_USAGE', '--old needs --log to build the consistency proof');
          const oldText = decodeNote(readInputFile(opts.old, 'old checkpoint'), 'old checkpoint');
          await step(steps, 'consistency', async () => {
            // A stored checkpoint is old by definition: only the log's signature matters here.
            const old = await verifyCheckpointWithPolicy(oldText, { ...policy, quorum: 'none' }, { now });
            if (old.checkpoint.origin !== parseCheckpointBody(parseNote(cpText).text).origin) throw new CustodyError('ERR_TLOG_ORIGIN', 'the two checkpoints are from different logs');
            if (old.checkpoint.size > size) throw new CustodyError('ERR_TLOG_ROLLBACK', `the stored checkpoint (size ${old.checkpoint.size}) is newer than this one (size ${size})`);
            const p = await consistencyProofFromTiles(source, old.checkpoint.size, size);
            verifyConsistency(old.checkpoint.size, size, old.checkpoint.rootHash, root, p);
            return `size ${old.checkpoint.size} -> ${size} is append-only (${p.length} proof hashes)`;
          });
        }
        const ok = steps.every((s) => s.ok);
        if (json) printJson({ ok, steps });
        else {
          for (const s of steps) out(`${mark(s.ok)} ${s.step.padEnd(12)} ${s.ok ? s.detail : `${s.code}: ${s.detail}`}`);
          out(ok ? 'verified' : 'NOT verified');
        }
        process.exitCode = ok ? EXIT_OK : EXIT_NOT_VERIFIED;
      } catch (e) {
        failWith(e, json);
      }
    });

  log
    .command('proof')
    .description('Write a C2SP tlog-proof for an entry: inclusion proof from the tiles plus the (cosigned) checkpoint')
    .argument('<index>', 'entry index')
    .requiredOption('--log <url|dir>', 'the log')
    .option('--out <file>', 'write the proof here (conventionally <name>.tlog-proof); default stdout')
    .option('--policy <file>', 'check the checkpoint and the proof before writing')
    .option('--vkey <vkey>', 'log verifier key to check with (repeatable)', collectVkey)
    .option('--json', 'machine-readable output')
    .action(async (indexStr: string, opts: { log: string; out?: string; policy?: string; vkey?: string[]; json?: boolean }) => {
      const json = opts.json ?? false;
      try {
        if (!/^(0|[1-9][0-9]{0,15})$/.test(indexStr)) throw new CustodyError('ERR_USAGE', '<index> must be a non-negative integer');
        const index = Number(indexStr);
        const source = logSource(opts.log);
        const cpText = decodeNote(await source.readCheckpoint(), "the log's checkpoint");
        const size = parseCheckpointBody(parseNote(cpText).text).size;
        if (index >= size) throw new CustodyError('ERR_TLOG_INCLUSION', `index ${index} is not in the latest checkpoint (size ${size})`);
        const p = await buildTlogProof(source, index, cpText);
        const entry = await readEntry(source, index, size);
        if (opts.policy || opts.vkey) {
          const policy = readTrust(opts);
          const cp = await verifyCheckpointWithPolicy(cpText, policy, { now: new Date() });
          verifyInclusion(index, size, rfc6962.leaf(entry), p.proof, cp.checkpoint.rootHash);
        } else {
          // Without trust configuration, still make sure the tiles agree with the checkpoint's root.
          verifyInclusion(index, size, rfc6962.leaf(entry), p.proof, parseCheckpointBody(parseNote(cpText).text).rootHash);
        }
        const text = formatTlogProof(p);
        if (opts.out) writeFileSync(opts.out, text);
        if (json) printJson({ ok: true, index, size, leafHash: toBase64(rfc6962.leaf(entry)), proof: text, ...(opts.out ? { file: opts.out } : {}) });
        else if (!opts.out) process.stdout.write(text);
        else out(`wrote ${opts.out} (entry ${index}, tree size ${size})`);
      } catch (e) {
        failWith(e, json);
      }
    });

  log
    .command('monitor')
    .description('Follow a log: verify each new checkpoint (signature, witness quorum, tiles, consistency) and report rollbacks and split views')
    .requiredOption('--log <url|dir>', 'the log to follow')
    .option('--policy <file>', 'tlog-policy (witness URLs are also checked for split views)')
    .option('--vkey <vkey>', 'trusted log verifier key (repeatable)', collectVkey)
    .option('--state <file>', 'remember the last verified checkpoint here (detects rollbacks across restarts)')
    .option('--interval <seconds>', 'poll interval', '10')
    .option('--once', 'check once and exit')
    .option('--entries', 'also check every new entry against the tiles')
    .option('--events', 'also check every new entry is a valid Custody event')
    .option('--max-age <seconds>', 'cosignatures older than this do not count toward the quorum (a frozen log becomes invalid)')
    .option('--json', 'one JSON object per finding')
    .addHelpText('after', '\nExit codes (with --once, or when an alarm stops the monitor): 0 ok, 1 rollback/split view/invalid, 2 bad input or usage, 3 unavailable (the log, or a witness to compare with).')
    .action(async (opts: { log: string; policy?: string; vkey?: string[]; state?: string; interval: string; once?: boolean; entries?: boolean; events?: boolean; maxAge?: string; json?: boolean }) => {
      const json = opts.json ?? false;
      try {
        const policy = readTrust(opts);
        const maxAge = parseMaxAge(opts.maxAge);
        // At most what a timer can wait: a longer one (or Infinity) would fire at once, every poll.
        const intervalMs = parseSeconds(opts.interval, '--interval', 0.1);
        let state: MonitorState | undefined;
        if (opts.state && existsSync(opts.state)) {
          state = await readMonitorState(fromUtf8(readInputFile(opts.state, 'monitor state')), policy, opts.state);
        }
        const monitor = new LogMonitor({
          source: logSource(opts.log),
          policy,
          ...(state ? { state } : {}),
          verifyEntries: opts.entries ?? false,
          verifyEvents: opts.events ?? false,
          fetch: boundedFetch(),
          clock: systemClock,
          ...(maxAge !== undefined ? { maxAgeSeconds: maxAge } : {}),
        });
        const report = (f: MonitorFinding) => {
          if (json) return out(JSON.stringify({ time: new Date().toISOString(), ...f }));
          switch (f.kind) {
            case 'checkpoint':
              return out(`${mark(true)} checkpoint size ${f.size} (+${f.newEntries})${f.witnesses.length ? ` cosigned by ${f.witnesses.join(', ')}` : ''}`);
            case 'unchanged':
              return out(`${mark(true)} unchanged at size ${f.size}`);
            case 'rollback':
              return out(`${mark(false)} ALERT rollback: size ${f.size} after ${f.seenSize} (${f.code})`);
            case 'split-view':
              return out(`${mark(false)} ALERT split view from ${f.source}: ${f.detail} (${f.code})`);
            default:
              return out(`${mark(false)} ${f.kind} from ${f.source}: ${f.code}: ${f.detail}`);
          }
        };
        for (;;) {
          const findings = await monitor.poll();
          findings.forEach(report);
          if (opts.state && monitor.current) writeMonitorState(opts.state, monitor.current);
          const alarm = findings.some((f) => f.kind === 'rollback' || f.kind === 'split-view');
          if (alarm) process.exit(EXIT_NOT_VERIFIED);
          if (opts.once) {
            process.exitCode = findings.some((f) => f.kind === 'invalid') ? EXIT_NOT_VERIFIED : findings.some((f) => f.kind === 'unavailable') ? EXIT_UNAVAILABLE : EXIT_OK;
            return;
          }
          await new Promise((r) => setTimeout(r, intervalMs));
        }
      } catch (e) {
        failWith(e, json);
      }
    });

  log
    .command('policy')
    .description('Print a tlog-policy in canonical form after checking it (logs, witnesses, quorum)')
    .requiredOption('--policy <file>', 'tlog-policy file')
    .action((opts: { policy: string }) => {
      try {
        process.stdout.write(formatTlogPolicy(parseTlogPolicy(readInputFile(opts.policy, 'policy file'))));
      } catch (e) {
        failWith(e, false);
      }
    });
};

