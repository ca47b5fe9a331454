import { Command, CommanderError, type ErrorOptions } from 'commander';
import { CustodyError, toCustodyError } from '@custody/core';
import { printableLine } from '@custody/sdk';
import { EXIT_BAD_INPUT, EXIT_NOT_VERIFIED, EXIT_UNAVAILABLE } from './exit.js';

/** Codes that mean "the input could not be read", as opposed to "it was read and failed". */
const BAD_INPUT_CODES = new Set([
  'ERR_USAGE',
  'ERR_INPUT_TRUNCATED',
  'ERR_INPUT_TOO_LARGE',
  'ERR_INPUT_MALFORMED',
  'ERR_INPUT_UNSUPPORTED',
  'ERR_FORMAT_UNKNOWN',
  'ERR_FILE_NOT_FOUND',
  'ERR_FILE_NOT_REGULAR',
  'ERR_FILE_EXISTS',
  'ERR_LISTEN',
  'ERR_FILE_UNREADABLE',
  'ERR_POLICY_INVALID',
  'ERR_KEY_NAME',
  'ERR_KEY_TYPE',
  'ERR_KEY_MATERIAL',
  'ERR_STORE_CONFIG',
  'ERR_NOTE_MALFORMED',
  'ERR_NOTE_KEY',
  'ERR_TLOG_CHECKPOINT',
  'ERR_TLOG_PROOF',
  'ERR_TLOG_POLICY',
  'ERR_TLOG_EVENT',
  'ERR_TLOG_EVENT_SECRET',
  // A missing or refused credential is configuration, not a failed check.
  'ERR_AUTH_REQUIRED',
  'ERR_AUTH_INVALID',
  // --fetch-collateral cannot fetch a VLEK: the operator must supply it.
  'ERR_SNP_VLEK_NOT_FETCHABLE',
  // Sealed models: a file that is no sealed model, a plaintext directory on a disk.
  'ERR_MODEL_SEALED',
  'ERR_MODEL_PLAINTEXT_DIR',
  'ERR_GATEWAY_MODEL_FILE',
]);

const UNAVAILABLE_CODES = new Set(['ERR_FILE_UNWRITABLE', 'ERR_ATTESTER_UNAVAILABLE', 'ERR_SERVICE_UNAVAILABLE', 'ERR_STORE_UNAVAILABLE', 'ERR_STORE_AUDIT_UNAVAILABLE', 'ERR_TLOG_UNAVAILABLE', 'ERR_WITNESS_UNAVAILABLE', 'ERR_TLOG_LOCKED', 'ERR_VERIFIER_UNAVAILABLE', 'ERR_MASTER_KEY_TPM', 'ERR_GATEWAY_REPLAY_STORE', 'ERR_GATEWAY_BACKEND_UNAVAILABLE', 'ERR_RATE_LIMITED', 'ERR_COLLATERAL_UNAVAILABLE', 'ERR_COLLATERAL_NOT_FOUND', 'ERR_COLLATERAL_RESPONSE']);

/** Whether a code means the input could not be read, or a dependency was unavailable (not "checked and failed"). */
export function isInputOrAvailabilityCode(code: string): boolean {
  return BAD_INPUT_CODES.has(code) || UNAVAILABLE_CODES.has(code);
}

export function exitCodeFor(code: string): number {
  if (BAD_INPUT_CODES.has(code)) return EXIT_BAD_INPUT;
  if (UNAVAILABLE_CODES.has(code)) return EXIT_UNAVAILABLE;
  return EXIT_NOT_VERIFIED;
}

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

/**
 * The failure every command prints with --json, as one line: commands whose --json output is a
 * line per event (log monitor, log serve, witness serve, broker serve) then end with one more
 * JSON line, and a reader of a single document parses it the same.
 */
export function printJsonFailure(err: CustodyError): void {
  process.stdout.write(JSON.stringify({ ok: false, errors: [err.toJSON()] }) + '\n');
}

/** Reports an error the way every command does: JSON on stdout with --json, text on stderr otherwise. */
export function failWith(e: unknown, json: boolean): never {
  const err: CustodyError = toCustodyError(e);
  if (json) printJsonFailure(err);
  else process.stderr.write(`custody: ${err.code}: ${printableLine(err.message)}\n`);
  process.exit(exitCodeFor(err.code));
}

/**
 * The CLI's commander command: a usage error commander finds itself (an unknown option, a missing
 * required option or argument, a value an option's parser refuses) in a command given --json is
 * that command's JSON failure, ERR_USAGE, instead of text and help on stderr. The plain-text path
 * is commander's own. Used with exitOverride: the error is then thrown as commander's, exit 2.
 */
export class CustodyCommand extends Command {
  /** The arguments this command parses (after its name), for --json: an error may come before commander reads that flag. */
  private givenArgs: readonly string[] = [];

  override createCommand(name?: string): CustodyCommand {
    return new CustodyCommand(name);
  }

  override parseOptions(argv: string[]): ReturnType<Command['parseOptions']> {
    this.givenArgs = argv;
    return super.parseOptions(argv);
  }

  override error(message: string, errorOptions?: ErrorOptions): never {
    if (!this.wantsJson()) return super.error(message, errorOptions);
    printJsonFailure(new CustodyError('ERR_USAGE', message.replace(/^error: /, '')));
    throw new CommanderError(EXIT_BAD_INPUT, errorOptions?.code ?? 'commander.error', message);
  }

  private wantsJson(): boolean {
    const end = this.givenArgs.indexOf('--');
    const args = end < 0 ? this.givenArgs : this.givenArgs.slice(0, end);
    return args.includes('--json') && this.options.some((o) => o.long === '--json');
  }
}

const useColor = process.stdout.isTTY && !process.env.NO_COLOR;
export const mark = (ok: boolean): string => (ok ? (useColor ? '\x1b[32mPASS\x1b[0m' : 'PASS') : useColor ? '\x1b[31mFAIL\x1b[0m' : 'FAIL');

/**
 * How the user ran this command, for the commands it suggests: the checkout's launcher sets
 * CUSTODY_COMMAND to its own path as invoked (`./custody`, `/opt/custody/custody`); an
 * installed binary is `custody`.
 */
export function commandName(): string {
  const c = process.env.CUSTODY_COMMAND;
  return c ? shellWord(c) : 'custody';
}

/** A word for a POSIX shell: as is when it needs no quoting, else single-quoted. */
export function shellWord(s: string): string {
  return /^[A-Za-z0-9_./:@%+=,-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}
