import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { findPersonNames, forEachWord } from './names.js';

const WORD_RE = /(?<![A-Za-z0-9])(?:[A-Za-z][A-Za-z'’.-]*[A-Za-z.]|[A-Za-z])/g;
const words = (text: string): [number, number][] => {
  const out: [number, number][] = [];
  forEachWord(text, (s, e) => out.push([s, e]));
  return out;
};

describe('forEachWord', () => {
  it('finds the same words as the regular expression it replaces', () => {
    // Text over the characters that matter: letters, digits, apostrophes, periods, hyphens, spaces.
    const alphabet = fc.constantFrom(...'aZq09.-\'’ ,:@é\n'.split(''));
    fc.assert(
      fc.property(fc.array(alphabet, { maxLength: 60 }), (chars) => {
        const text = chars.join('');
        expect(words(text)).toEqual([...text.matchAll(WORD_RE)].map((m) => [m.index, m.index + m[0].length]));
      }),
      { numRuns: 3000 },
    );
  });

  it('handles words that end in a run of apostrophes and hyphens', () => {
    expect(words("O'- x-- y.")).toEqual([[0, 1], [4, 5], [8, 10]]);
  });
});

describe('findPersonNames with lower-case words left out', () => {
  it.each([
    ['Dr. Jane Roe saw the patient', [[0, 12]]],
    ['we met jane roe and John Smith jr. today', [[20, 34]]],
    ['Patient: Alvarez was seen', [[9, 16]]],
    ['the board and Maria Lopez, then Bob', [[14, 25]]],
    ['report from the health care team of Dr', []],
    ['Acme Health care team', [[0, 11]]],
    ['Jane Roe phd.. and JOHN', [[0, 13]]],
    // A suffix that starts lower-case counts whatever the case of its other letters (as before the hand scanner).
    ['John Smith pHD', [[0, 14]]],
    ['Jane Roe, iII', [[0, 13]]],
    ['Jane Roe dO.', [[0, 12]]],
  ])('%s', (text, spans) => {
    expect(findPersonNames(text).map((s) => [s.start, s.end])).toEqual(spans);
  });
});

describe('findPersonNames beside a cue after the name, and in lower case', () => {
  it.each([
    // A team after a single word, a possessive after "per".
    ['Harriet from Legal will review', ['Harriet']],
    ['Fernando in accounts approved it', ['Fernando']],
    ["Per Edison's note, stable", ["Edison's"]],
    // Lower case after a phrase that introduces a person.
    ['hi, this is maria lopez, calling about my bill', ['maria lopez']],
    ['hi this is zane here', ['zane']],
    ['called back, talked to zane at 555-1234', ['zane']],
    ['this is gustave ward, my card', ['gustave ward']],
    ['this is will ortiz-armstrong, my card', ['will ortiz-armstrong']],
    // Look-alikes that stay unflagged.
    ['this is urgent', []],
    ['this is still broken', []],
    ['this is unbelievable.', []],
    ['this is totally unacceptable.', []],
    ['this is a test', []],
    ['this is my account', []],
    ['my name is jo', []],
    ['spoke to the pharmacy', []],
    ['talked to someone earlier', []],
    ['spoke to billing again', []],
    ['talked to dispatch', []],
    ['ask for a refund', []],
    ['Routed to Customer Success via Salesforce', []],
    ['the New York office', []],
    ['see the Google Drive folder', []],
    ['Data from billing shows', []],
    ['Requests in accounts are slow', []],
    ['per Section 4', []],
    ['Per policy, no.', []],
  ])('%s', (text, names) => {
    expect(findPersonNames(text).map((s) => text.slice(s.start, s.end))).toEqual(names);
  });
});
