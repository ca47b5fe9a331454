import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { findPersonNames, forEachWord } from './names.js';

const WORD_RE = /(?<![\p{L}0-9])(?:\p{L}[\p{L}\p{M}'’.-]*[\p{L}\p{M}.]|\p{L})/gu;
const words = (text: string): [number, number][] => {
  const out: [number, number][] = [];
  forEachWord(text, (s, e) => out.push([s, e]));
  return out;
};

describe('forEachWord', () => {
  it('finds the same words as the regular expression it replaces', () => {
    // Text over the characters that matter: letters, digits, apostrophes, periods, hyphens, spaces.
    const alphabet = fc.constantFrom(...'aZq09.-\'’ ,:@éÉßñ\n\u0301\u0323\u20dd'.split(''));
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

describe('findPersonNames: weak cues (known given names only), lower case, Unicode', () => {
  it('stays linear in the length of a text full of names found in different ways', () => {
    // Each rule's spans are merged in one pass: 40 times the text, 40 times the spans.
    const unit = 'spoke to tasha jaskolski now Ann Lee and Smith, John. ';
    const count = (n: number) => findPersonNames(unit.repeat(n)).length;
    expect(count(1000)).toBe(3000);
    expect(count(40_000)).toBe(120_000);
    // Runs of cue words were unbounded and dropped one by one (quadratic: 1 MB of "Pt " took 36 s).
    expect(findPersonNames('Pt '.repeat(300_000))).toEqual([]);
    expect(findPersonNames('Customer Member '.repeat(100_000))).toEqual([]);
  });

  it.each([
    // Two lower-case words after a phrase that introduces a person, neither of them everyday English.
    ['hi, this is tasha jaskolski, calling about my bill', ['tasha jaskolski']],
    ['this is tasha jaskolski.', ['tasha jaskolski']],
    ['my name is tasha jaskolski from the bank', ['tasha jaskolski']],
    ['spoke to tasha jaskolski earlier, she said', ['tasha jaskolski']],
    ['talked to josé garcía about it', ['josé garcía']],
    // Accented capitalised names are masked whole, never in part.
    ['Dr. José García saw the patient', ['Dr. José García']],
    ['This is José García from billing', ['José García']],
    ['Patient: Zoë', ['Zoë']],
    ['GARCÍA, José 09:40', ['GARCÍA, José']],
    // A single word on a weak cue: a known given name that is not everyday English.
    ['I talked to zane.', ['zane']],
    ['I talked to Zane yesterday', ['Zane']],
    ['Harriet from Legal will review', ['Harriet']],
    ['Fernando in accounts approved it', ['Fernando']],
    ["Per Edison's note, stable", ["Edison's"]],
    ['my name is maria lopez', ['maria lopez']],
    ['hi this is tasha here', ['tasha']],
    // Not taken: not a known given name, a given name that is everyday English, "per" before what an organisation issues.
    ['talked to zorblat', []],
    ['Mark from IT called', []],
    ['talked to grace about the period', []],
    ["Per Fernando's guidance", []],
    ['this is tasha jaskolski now', []],
    ['hi this is zane', ['zane']],
    ['this is zane doing the rollout', []],
    ['Zane said so', []],
    // Found in the third review: "this is X" describing a thing, a surname that is also a word, hyphenated given names.
    ['this is dev, prod is fine', []],
    ['This is Django 4.2 on Postgres 15', []],
    ['This is Jan data', []],
    ['this is max.', []],
    ['hi, this is Zane', ['Zane']],
    ['This is Zane from billing', ['Zane']],
    ['talked to zane smith about it', ['zane smith']],
    ['Ann-Marie from Legal signed', ['Ann-Marie']],
    ['this is redis evicting keys', []],
    ['Pt asked for dilaudid refill', []],
    ['this is idempotent, so retry', []],
    ['Spoke with hospitalist about discharge', []],
    ['Talked to Aetna about the claim', []],
    ['Xarelto in pharmacy is out of stock', []],
    ['Check with pharmacy', []],
    ['Results from radiology are pending', []],
    ['Spoke with pt and family', []],
    ['Talked to him about it', []],
    ['This is likely viral', []],
    ['Talked to support twice', []],
    ['spoke to caregivers yesterday', []],
    ['Routed to Customer Success via Salesforce', []],
    ['the New York office', []],
    ['San Diego office', []],
    ['see the Google Drive folder', []],
    ['this is urgent', []],
    ['spoke to the pharmacy', []],
    ['Lopez, Diego', ['Lopez, Diego']],
    ['Washington, Keisha', ['Washington, Keisha']],
    // Added with the SSA given-name list and the international name set (2026-11-27).
    // A list of names whose middle reads as "Surname, Given": every letter of both names is covered.
    ['cc: Itzel U. Mraz, Wilton McGlynn; Ann Lee', ['Itzel U. Mraz', 'Wilton McGlynn', 'Ann Lee']],
    // The part of an inverted name outside a forward one is added, trimmed to letters.
    ['cc: Itzel Mraz, Wilton', ['Itzel Mraz', 'Wilton']],
    // Given names on the SSA list, and accents ignored when looking a name up.
    ['Chadrick in accounts approved it', ['Chadrick']],
    ['called back, talked to madilyn at 555-0100', ['madilyn']],
    ['Fábio from Legal will review', ['Fábio']],
    ["Per Håkan's note, stable", ["Håkan's"]],
    ['Søren from Legal and Bjørn in accounts', ['Søren', 'Bjørn']],
    // Places on the SSA list are left out of it, and particles are never a lower-case name.
    ['Talked to Italy about the VAT registration; Nevada in finance files', []],
    ['talked to de la cruz', []],
    ['Dhr. van Dijk and Sig. Rossi', ['Dhr. van Dijk', 'Sig. Rossi']],
    // Multi-word surnames in "SURNAME, Given".
    ['DELVALLE GUTIÉRREZ, Denise 09:40; de Vries, Jacobo 10:15', ['DELVALLE GUTIÉRREZ, Denise', 'de Vries, Jacobo']],
    ['ATTN SMITH, John', ['SMITH, John']],
    // Found in the fifth review.
    // All-capitals words before an all-capitals surname are taken with it: a heading is masked
    // too rather than part of a double surname left out ("WHITE SMITH, Anna").
    ['FINAL NOTICE BROWN, David', ['FINAL NOTICE BROWN, David']],
    ['WHITE SMITH, Anna', ['WHITE SMITH, Anna']],
    ['(VAN DER MEER, Long) and "de Vries, Jacobo"', ['VAN DER MEER, Long', 'de Vries, Jacobo']],
    // Letters with combining marks ("Jose\u0301", "ọ̀" with no composed form) are one letter.
    ['Patient: Jose\u0301 Garci\u0301a, Dr. Adébáyọ̀ Okonkwo', ['Jose\u0301 Garci\u0301a', 'Dr. Adébáyọ̀ Okonkwo']],
    // A mark that ends a trimmed span stays in it (the mask covered "Adébáyọ" and left the grave accent out).
    ['Okonkwo, Adébáyọ̀ 09:40', ['Okonkwo, Adébáyọ̀']],
    ['𞤀𞤣𞤤𞤢𞤥, 𞤀𞤣𞤢 called', ['𞤀𞤣𞤤𞤢𞤥, 𞤀𞤣𞤢']],
    ['set in 11 pt Calibri, 12pt Arial', []],
    ['Pt Lorraine van der Meulen seen', ['Lorraine van der Meulen']],
    ['the SIG Meeting and the DRA Report', []],
    ['Senior Vice President Global Sales Kevin Brown will present', ['Senior Vice President Global Sales Kevin Brown']],
    // Surname particles between name words; not at the edges, not in places.
    ['was opened by Inger de Vries at noon', ['Inger de Vries']],
    ['Signed: Thirza van der Laan', ['Thirza van der Laan']],
    ['Dr. van der Berg will call', ['Dr. van der Berg']],
    ['Patient Lucia Carlos von Santos Gomez was seen', ['Lucia Carlos von Santos Gomez']],
    ['Inger Smit de said no', ['Inger Smit']],
    // Organisations and places with particles are not names (no title, cue or given name first).
    ['wire from Banco de Chile via Gare de Lyon and the Tour de France office', []],
    ['Universidad de los Andes and Politecnico di Milano', []],
    ['María de los Ángeles Marchal called', ['María de los Ángeles Marchal']],
    ['Jan de said no', []],
    ['the de Vries file', []],
    ['flights to Rio de Janeiro and Buenos Aires', []],
    // A third lower-case word of a name after an introducing phrase; an everyday word ends it.
    ['spoke to ana luiza agyei-ampadu earlier', ['ana luiza agyei-ampadu']],
    ['spoke to tasha jaskolski earlier today', ['tasha jaskolski']],
  ])('%s', (text, names) => {
    expect(findPersonNames(text).map((s) => text.slice(s.start, s.end))).toEqual(names);
  });
});
