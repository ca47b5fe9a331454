/**
 * Text with combining marks, read as letters. "José" may arrive as "Jose" + U+0301 (macOS file
 * names, some keyboards and databases write decomposed text), and some letters have no composed
 * form at all ("ọ̀" in "Adébáyọ̀"). The detectors work on letters: a name read up to its first
 * mark would be masked in part. So each letter with its marks is composed (NFC) and any mark
 * that does not compose is left out of the text the detectors read, and detections are mapped
 * back to the original text, which is masked as it came (the vault gives back exactly what was
 * sent).
 */

/** A letter (or any code point) with the combining marks after it, or marks with nothing before them. */
const CLUSTER = /[\s\S]?\p{M}+/gu;
const MARKS = /\p{M}+/gu;
export const COMBINING_MARK = /\p{M}/u;

export interface ComposedText {
  /** What the detectors read. */
  text: string;
  /** Maps a start offset in `text` to the original. */
  startOf(at: number): number;
  /** Maps an end offset in `text` to the original (the end of the letter with its marks). */
  endOf(at: number): number;
}

interface Piece {
  /** Start in the composed text. */
  c: number;
  /** Start in the original. */
  o: number;
  /** Length in the original; -1 for a stretch copied as it is (offsets map one to one). */
  olen: number;
}

/** The text the detectors read and the way back, or undefined when the text has no combining mark. */
export function composeForDetection(original: string): ComposedText | undefined {
  if (!COMBINING_MARK.test(original)) return undefined;
  const pieces: Piece[] = [];
  let text = '';
  let at = 0;
  for (const m of original.matchAll(CLUSTER)) {
    if (m.index > at) {
      pieces.push({ c: text.length, o: at, olen: -1 });
      text += original.slice(at, m.index);
    }
    pieces.push({ c: text.length, o: m.index, olen: m[0].length });
    text += m[0].normalize('NFC').replace(MARKS, '');
    at = m.index + m[0].length;
  }
  if (at < original.length) {
    pieces.push({ c: text.length, o: at, olen: -1 });
    text += original.slice(at);
  }
  /** The last piece that starts at or before `c` (pieces of length 0 are skipped by taking the last). */
  const find = (c: number): Piece => {
    let lo = 0;
    let hi = pieces.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (pieces[mid]!.c <= c) lo = mid;
      else hi = mid - 1;
    }
    return pieces[lo]!;
  };
  return {
    text,
    startOf(c) {
      const p = find(c);
      return p.olen < 0 ? p.o + (c - p.c) : p.o;
    },
    endOf(c) {
      if (c === 0) return 0;
      const p = find(c - 1);
      return p.olen < 0 ? p.o + (c - p.c) : p.o + p.olen;
    },
  };
}
