import { CustodyError } from '@custody/core';

/**
 * Bounds on the structure of a JSON request body, checked before it is parsed. What JSON.parse,
 * the schema check and the handlers spend grows with the number of values and the nesting, not
 * only with the bytes: a 4 MiB body of 385 000 one-character members held the event loop for
 * about 4 s, a million nested `[` for half a second.
 */
export interface JsonShapeBounds {
  /** Deepest nesting of objects and arrays (the root object is depth 1). */
  readonly maxDepth: number;
  /**
   * Most members and elements in the whole body, counted as the brackets that open containers
   * and the commas that separate their values (a container of n values adds at most n).
   */
  readonly maxValues: number;
}

/**
 * Every JSON body the broker takes. The largest legitimate one, an attestation with 16
 * certificates, 32 collateral entries and 8 devices of 8 certificates each, has about 170
 * values and nests 4 deep (body, devices, device, certs); evidence, certificates and runtime
 * data are strings, whose length only the byte limit bounds.
 */
export const REQUEST_JSON_BOUNDS: JsonShapeBounds = { maxDepth: 8, maxValues: 1024 };

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;

/**
 * Refuses text whose structure exceeds `bounds` (ERR_INPUT_TOO_LARGE, `detail.bound` `depth` or
 * `values`), in one linear pass that skips over strings: strings are found with indexOf, and a
 * quote is escaped when an odd run of backslashes precedes it. Malformed JSON passes unless it
 * crosses a bound; JSON.parse refuses it after.
 */
export function checkJsonShape(text: string, bounds: JsonShapeBounds): void {
  let depth = 0;
  let values = 0;
  const end = text.length;
  for (let i = 0; i < end; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) i = closingQuote(text, i);
    else if (c === COMMA) {
      if (++values > bounds.maxValues) throw tooManyValues(bounds);
    } else if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
      if (++depth > bounds.maxDepth) throw new CustodyError('ERR_INPUT_TOO_LARGE', `request body nests deeper than ${bounds.maxDepth}`, { detail: { bound: 'depth', max: bounds.maxDepth } });
      if (++values > bounds.maxValues) throw tooManyValues(bounds);
    } else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) depth--;
  }
}

/** JSON text checked against `bounds`, then parsed; text that is not JSON is ERR_INPUT_MALFORMED. */
export function parseJsonBody(text: string, bounds: JsonShapeBounds = REQUEST_JSON_BOUNDS): unknown {
  checkJsonShape(text, bounds);
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new CustodyError('ERR_INPUT_MALFORMED', 'request body is not JSON');
  }
}

/** The index of the quote closing the string opened at `open` (the text's length when it is unterminated). */
function closingQuote(text: string, open: number): number {
  let at = open;
  for (;;) {
    at = text.indexOf('"', at + 1);
    if (at < 0) return text.length;
    let b = at - 1;
    while (text.charCodeAt(b) === BACKSLASH) b--;
    // Each backslash run precedes one quote and is walked once: linear in all.
    if ((at - 1 - b) % 2 === 0) return at;
  }
}

function tooManyValues(bounds: JsonShapeBounds): CustodyError {
  return new CustodyError('ERR_INPUT_TOO_LARGE', `request body holds more than ${bounds.maxValues} values`, { detail: { bound: 'values', max: bounds.maxValues } });
}
