/*! Given names: the human-names package, Copyright (c) 2015 Alessandro Minoccheri, MIT licence,
 * reproduced in THIRD_PARTY_NOTICES.md. */
/**
 * Given names: the popular English, German, Spanish, French, Italian and Dutch given names of the
 * `human-names` package (about 5,300, lower-cased). The positive evidence a single word needs on
 * a weak cue ("Ann from Legal", "talked to zane"): drug, vendor and product names are missing
 * from word lists just as names are, but they are not on this list. It covers about two thirds of
 * the given names a US-English name generator produces; names not on it are missed on such cues.
 *
 * The set is built on first use.
 */
import femaleDe from 'human-names/data/female-human-names-de.json' with { type: 'json' };
import femaleEn from 'human-names/data/female-human-names-en.json' with { type: 'json' };
import femaleEs from 'human-names/data/female-human-names-es.json' with { type: 'json' };
import femaleFr from 'human-names/data/female-human-names-fr.json' with { type: 'json' };
import femaleIt from 'human-names/data/female-human-names-it.json' with { type: 'json' };
import femaleNl from 'human-names/data/female-human-names-nl.json' with { type: 'json' };
import maleDe from 'human-names/data/male-human-names-de.json' with { type: 'json' };
import maleEn from 'human-names/data/male-human-names-en.json' with { type: 'json' };
import maleEs from 'human-names/data/male-human-names-es.json' with { type: 'json' };
import maleFr from 'human-names/data/male-human-names-fr.json' with { type: 'json' };
import maleIt from 'human-names/data/male-human-names-it.json' with { type: 'json' };
import maleNl from 'human-names/data/male-human-names-nl.json' with { type: 'json' };

let names: Set<string> | undefined;

/** Whether a lower-case word is a given name of the list. */
export function isGivenName(word: string): boolean {
  names ??= new Set<string>([femaleDe, femaleEn, femaleEs, femaleFr, femaleIt, femaleNl, maleDe, maleEn, maleEs, maleFr, maleIt, maleNl].flat().map((w: string) => w.toLowerCase()));
  return names.has(word);
}
