import { describe, expect, it } from 'vitest';
import { CustodyError, ErrorCodes } from './errors.js';

describe('CustodyError', () => {
  it('takes the message of a known code from ErrorCodes, and is the code itself otherwise', () => {
    expect(new CustodyError('ERR_INTERNAL').message).toBe(ErrorCodes.ERR_INTERNAL);
    expect(new CustodyError('ERR_SOMETHING_NEW').message).toBe('ERR_SOMETHING_NEW');
  });

  // Codes can come from another service's problem document: a name Object.prototype has is no known code.
  for (const code of ['constructor', 'toString', '__proto__', 'hasOwnProperty', 'valueOf']) {
    it(`has the message "${code}" for a code ${code}, not Object.prototype's member`, () => {
      const e = new CustodyError(code);
      expect(e.message).toBe(code);
      expect(e.code).toBe(code);
    });
  }
});
