import { CustodyError } from './errors.js';

/**
 * A service's base URL as a caller configured it (a gateway, a relay, a broker, a collateral
 * source): http(s), without credentials, a query or a fragment. Routes are appended to its path,
 * so a query or a fragment would swallow them or be cut off, and credentials would be printed in
 * summaries and verification documents and sent with every request (an API key belongs in a
 * header). `what` names the setting in the error ("--broker", "the gateway URL"); the error never
 * repeats the value, which may carry a secret. Errors: ERR_USAGE.
 */
export function checkServiceUrl(value: string | URL, what: string): URL {
  const text = String(value);
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    // No cause: the parser's error carries the input.
    throw new CustodyError('ERR_USAGE', `${what} is not a URL`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new CustodyError('ERR_USAGE', `${what} must be an http:// or https:// URL`);
  if (u.username !== '' || u.password !== '') throw new CustodyError('ERR_USAGE', `${what} must not carry credentials (user:password@)`);
  // The text, not u.search: "http://h/?" and "http://h/#" parse to an empty query and fragment.
  if (text.includes('?') || text.includes('#')) throw new CustodyError('ERR_USAGE', `${what} must not have a query (?) or a fragment (#): give the base URL the routes are appended to`);
  return u;
}
