import { CustodyError, readBodyLimited } from '@custody/core';

const text = new TextDecoder();

/**
 * A broker answer's text, read up to `max` bytes (ERR_INPUT_TOO_LARGE past it, having read no
 * more), decoded as fetch's `text()` does; a body that breaks off is the broker being unavailable.
 */
export async function readBroker(res: Response, max: number): Promise<string> {
  let bytes: Uint8Array;
  try {
    bytes = await readBodyLimited(res, max, 'the broker answer');
  } catch (e) {
    if (e instanceof CustodyError && e.code === 'ERR_INPUT_TOO_LARGE') throw e;
    throw new CustodyError('ERR_SERVICE_UNAVAILABLE', 'the broker answer broke off', { cause: e });
  }
  return text.decode(bytes);
}
