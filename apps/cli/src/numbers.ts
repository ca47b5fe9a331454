import { CustodyError } from '@custody/core';

/** Longest a timer takes in Node (2^31 - 1 ms); a longer one fires at once. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** An option's number; an empty value is not a number (Number('') would be 0). */
function numberOf(s: string): number {
  return s.trim() === '' ? Number.NaN : Number(s);
}

/** A TCP port option: an integer 0..65535 (0: any free port). An empty value is refused, not read as 0. */
export function parsePort(s: string, name = '--port'): number {
  const n = numberOf(s);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new CustodyError('ERR_USAGE', `${name} must be 0..65535, got ${JSON.stringify(s)}`);
  return n;
}

/**
 * Most connections one process can hold: Linux's default ceiling on a process's open files
 * (fs.nr_open). A larger --max-connections is a typo, not a setting.
 */
export const MAX_CONNECTIONS_BOUND = 1_048_576;

/** A whole-number option from `min` up to `max`: digits only, so a sign, a fraction, an exponent or an empty value is refused. */
export function parseCount(s: string, name: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const n = /^[0-9]{1,16}$/.test(s) ? Number(s) : Number.NaN;
  if (!(n >= min && n <= max)) throw new CustodyError('ERR_USAGE', `${name} must be a whole number ${max === Number.MAX_SAFE_INTEGER ? `of at least ${min}` : `from ${min} to ${max}`}, got ${JSON.stringify(s)}`);
  return n;
}

/**
 * A duration option in milliseconds: a number from `min` up to what a timer can wait (about 24.8
 * days), so a value past it cannot turn into a timer that fires at once.
 */
export function parseMilliseconds(s: string, name: string, min: number): number {
  const n = numberOf(s);
  if (!Number.isFinite(n) || n < min || n > MAX_TIMER_MS) throw new CustodyError('ERR_USAGE', `${name} must be a number of milliseconds from ${min} to ${MAX_TIMER_MS}, got ${JSON.stringify(s)}`);
  return n;
}

/** A duration option in seconds, as milliseconds: from `minSeconds` up to what a timer can wait. */
export function parseSeconds(s: string, name: string, minSeconds: number): number {
  const n = numberOf(s);
  if (!Number.isFinite(n) || n < minSeconds || n * 1000 > MAX_TIMER_MS) throw new CustodyError('ERR_USAGE', `${name} must be a number of seconds from ${minSeconds} to ${Math.floor(MAX_TIMER_MS / 1000)}, got ${JSON.stringify(s)}`);
  return n * 1000;
}
