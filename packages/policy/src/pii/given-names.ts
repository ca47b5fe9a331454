/*! Given names: the human-names package, Copyright (c) 2015 Alessandro Minoccheri, MIT licence,
 * reproduced in THIRD_PARTY_NOTICES.md. */
/**
 * Given names, the positive evidence a single word needs on a weak cue ("Ann from Legal",
 * "talked to zane"): drug, vendor and product names are missing from word lists just as names
 * are, but most are not on these lists. Two sources, lower-cased:
 * - the popular English, German, Spanish, French, Italian and Dutch given names of the
 *   `human-names` package (about 5,300);
 * - the names given to at least 1,000 US babies born 1880-2016, from the Social Security
 *   Administration's records, less brands, places and rarer words (ssa-given-names.ts, 10,240
 *   names; scripts/gen-ssa-given-names.mjs says which are left out).
 * Together they hold 96% of the given names a US-English name generator (faker) produces. Some
 * product, drug and place names are on them (Allegra, Haskell, Lourdes): 66 of a review list of
 * 865 such terms are taken as a name on a weak cue when they are not everyday English.
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
import { SSA_GIVEN_NAMES } from './ssa-given-names.js';

let names: Set<string> | undefined;

/** Letters that carry no separable accent, spelt as the lists spell them. */
const PLAIN: Record<string, string> = { ø: 'o', ł: 'l', ı: 'i', đ: 'd', ð: 'd', æ: 'ae', œ: 'oe', ß: 'ss', þ: 'th' };

/** A lower-case word without its accents ("fábio" to "fabio", "søren" to "soren"); ASCII words unchanged. */
export function foldAccents(word: string): string {
  // eslint-disable-next-line no-control-regex
  if (/^[\x00-\x7f]*$/.test(word)) return word;
  return word.normalize('NFD').replace(/\p{M}+/gu, '').replace(/[øłıđðæœßþ]/g, (c) => PLAIN[c]!);
}

/**
 * Whether a lower-case word is a given name of the lists. Accents are not compared: the lists
 * spell most names without them ("Fábio", "Håkan", "Søren", "Zoë" are found as fabio, hakan,
 * soren, zoe).
 */
export function isGivenName(word: string): boolean {
  if (names === undefined) {
    const set = new Set<string>();
    for (const w of [femaleDe, femaleEn, femaleEs, femaleFr, femaleIt, femaleNl, maleDe, maleEn, maleEs, maleFr, maleIt, maleNl].flat<string[][]>()) set.add(foldAccents(w.toLowerCase()));
    for (const line of SSA_GIVEN_NAMES) for (const name of line.split(' ')) set.add(name);
    names = set;
  }
  return names.has(foldAccents(word));
}
