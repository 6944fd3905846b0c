/**
 * Makes hostile log bytes safe to print on a terminal. Every C0 control
 * (except TAB), DEL, C1 control, Unicode format character (Cf: bidi, zero-width,
 * tags), U+2028/U+2029 and byte that is not valid UTF-8 is shown as an escape (`\x1b`, `\u202e`, `\xff`), and a
 * backslash as `\\`, so the output is unambiguous and can never move the
 * cursor, change colours, set the title (OSC) or reorder text. Pure: the
 * caller writes the result.
 */
const HEX = '0123456789abcdef';
const hex2 = (b: number): string => HEX[b >> 4]! + HEX[b & 15]!;

const NAMED: Readonly<Record<number, string>> = { 0x0d: '\\r', 0x1b: '\\e', 0x00: '\\0', 0x5c: '\\\\' };

/**
 * Code points that control a terminal or hide/reorder text: C1 controls,
 * every Unicode format character (general category Cf: bidi embeddings,
 * overrides, isolates and marks, zero-width space/joiners, word joiner, BOM,
 * soft hyphen, interlinear annotation controls, tag characters U+E0000..),
 * and the line and paragraph separators U+2028/U+2029.
 */
const CF = /^\p{Cf}$/u;
export function isDangerousCodePoint(cp: number): boolean {
  if (cp < 0xa0) return cp >= 0x80; // C1 (0x9b is a one-byte CSI); ASCII is handled by the caller
  if (cp === 0x2028 || cp === 0x2029) return true;
  return CF.test(String.fromCodePoint(cp));
}

const showCodePoint = (cp: number): string => (cp > 0xffff ? `\\u{${cp.toString(16)}}` : `\\u${cp.toString(16).padStart(4, '0')}`);

/**
 * The same escaping for a JS string (user IDs, file names, manifest values,
 * parser messages): one escaper for everything printed from an untrusted
 * source. Lone surrogates are shown as `\udXXX`.
 */
export function escapeText(s: string): string {
  let out = '';
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    if (cp < 0x80) {
      if (cp >= 0x20 && cp !== 0x7f && cp !== 0x5c) out += ch;
      else if (cp === 0x09) out += '\t';
      else out += NAMED[cp] ?? `\\x${hex2(cp)}`;
    } else if ((cp >= 0xd800 && cp <= 0xdfff) || isDangerousCodePoint(cp)) {
      out += showCodePoint(cp);
    } else {
      out += ch;
    }
  }
  return out;
}

export function escapeForTerminal(bytes: Uint8Array): string {
  let out = '';
  let i = 0;
  const n = bytes.length;
  while (i < n) {
    const b = bytes[i]!;
    if (b < 0x80) {
      if (b >= 0x20 && b !== 0x7f && b !== 0x5c) out += String.fromCharCode(b);
      else if (b === 0x09) out += '\t';
      else out += NAMED[b] ?? `\\x${hex2(b)}`;
      i++;
      continue;
    }
    // Decode one UTF-8 sequence strictly (no overlongs, no surrogates, <= U+10FFFF).
    let cp = -1;
    let len = 0;
    if (b >= 0xc2 && b <= 0xdf) {
      len = 2;
      cp = b & 0x1f;
    } else if (b >= 0xe0 && b <= 0xef) {
      len = 3;
      cp = b & 0x0f;
    } else if (b >= 0xf0 && b <= 0xf4) {
      len = 4;
      cp = b & 0x07;
    }
    let ok = len > 0 && i + len <= n;
    for (let k = 1; ok && k < len; k++) {
      const c = bytes[i + k]!;
      if ((c & 0xc0) !== 0x80) ok = false;
      else cp = (cp << 6) | (c & 0x3f);
    }
    if (ok) {
      if ((len === 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (len === 4 && (cp < 0x10000 || cp > 0x10ffff))) ok = false;
    }
    if (!ok) {
      out += `\\x${hex2(b)}`;
      i++;
      continue;
    }
    out += isDangerousCodePoint(cp) ? showCodePoint(cp) : String.fromCodePoint(cp);
    i += len;
  }
  return out;
}
