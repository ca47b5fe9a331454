import { describe, expect, it } from 'vitest';
import { assertKeyName } from './types.js';

describe('assertKeyName', () => {
  // `.` and `..` would be dot segments in /v1/keys/<name>: an HTTP client normalises them away.
  it.each(['.', '..', '...', '.hidden', '', '-x', 'a/b', 'a%2Fb', 'a b', 'a'.repeat(129)])('refuses %j (ERR_KEY_NAME)', (name) => {
    expect(() => assertKeyName(name)).toThrow(expect.objectContaining({ code: 'ERR_KEY_NAME' }));
  });

  it.each(['a', 'dataset-kek', 'v1.2_key', 'a..b', 'a'.repeat(128)])('takes %j', (name) => {
    expect(() => assertKeyName(name)).not.toThrow();
  });
});
