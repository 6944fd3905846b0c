/**
 * escapeForTerminal: log bytes are attacker-controlled, and `show` prints them
 * on an auditor's terminal. Nothing in the output may move the cursor, change
 * colours, set the title, reorder text or hide bytes; the escaping must stay
 * lossless so the auditor sees exactly what was stored.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { escapeForTerminal, escapeText } from '../src/index.js';

const esc = (bytes: number[] | string): string =>
  escapeForTerminal(typeof bytes === 'string' ? Buffer.from(bytes, 'utf8') : Uint8Array.from(bytes));

/** ESC, NUL and CR may be shown by name or as \xNN; both are inert. */
const ESC = String.raw`(?:\\e|\\x1b)`;

/**
 * Characters that must never reach the terminal: C0 controls except TAB, DEL,
 * C1 controls, bidi embeddings/overrides/isolates and marks, line/paragraph
 * separators, BOM, interlinear annotation controls, and lone surrogates.
 */
const FORBIDDEN =
  /[\x00-\x08\x0a-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff\ufff9-\ufffb]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/u;

/**
 * Inverse of the escaping: proves the output is unambiguous (no two inputs
 * print alike). Backslash always starts an escape.
 */
function unescape(s: string): Buffer {
  const out: Buffer[] = [];
  const named: Record<string, number> = { '\\': 0x5c, '0': 0x00, e: 0x1b, r: 0x0d, t: 0x09, n: 0x0a };
  let i = 0;
  while (i < s.length) {
    if (s[i] === '\\') {
      const k = s[i + 1]!;
      if (k === 'x' && /^[0-9a-f]{2}$/.test(s.slice(i + 2, i + 4))) {
        out.push(Buffer.from([parseInt(s.slice(i + 2, i + 4), 16)]));
        i += 4;
      } else if (k === 'u' && /^\{[0-9a-f]{5,6}\}/.test(s.slice(i + 2))) {
        const m = /^\{([0-9a-f]{5,6})\}/.exec(s.slice(i + 2))!;
        out.push(Buffer.from(String.fromCodePoint(parseInt(m[1]!, 16)), 'utf8'));
        i += 2 + m[0].length;
      } else if (k === 'u' && /^[0-9a-f]{4}$/.test(s.slice(i + 2, i + 6))) {
        out.push(Buffer.from(String.fromCodePoint(parseInt(s.slice(i + 2, i + 6), 16)), 'utf8'));
        i += 6;
      } else if (named[k] !== undefined) {
        out.push(Buffer.from([named[k]]));
        i += 2;
      } else {
        throw new Error(`unknown escape \\${k} at ${i}`);
      }
    } else {
      const cp = s.codePointAt(i)!;
      out.push(Buffer.from(String.fromCodePoint(cp), 'utf8'));
      i += cp > 0xffff ? 2 : 1;
    }
  }
  return Buffer.concat(out);
}

describe('escapeForTerminal', () => {
  describe('when the bytes hold terminal control sequences', () => {
    it('neutralizes an SGR colour sequence (ESC [ 31 m)', () => {
      const out = esc('\x1b[31mred\x1b[0m');
      expect(out).toMatch(new RegExp(`^${ESC}\\[31mred${ESC}\\[0m$`));
    });

    it('neutralizes an OSC set-title sequence ending in BEL', () => {
      const out = esc('\x1b]0;pwned\x07');
      expect(out).toMatch(new RegExp(`^${ESC}\\]0;pwned\\\\x07$`));
    });

    it('neutralizes an OSC 8 hyperlink ending in ST (ESC \\)', () => {
      const out = esc('\x1b]8;;http://evil\x1b\\click\x1b]8;;\x1b\\');
      expect(out).not.toMatch(FORBIDDEN);
      expect(out).toContain('http://evil');
    });

    it('shows the C1 CSI (U+009B, bytes 0xc2 0x9b) as \\u009b', () => {
      expect(esc([0xc2, 0x9b, 0x32, 0x4a])).toBe('\\u009b2J');
    });

    it('shows every C1 control U+0080..U+009F as \\u00NN', () => {
      for (let cp = 0x80; cp <= 0x9f; cp++) {
        expect(esc(String.fromCodePoint(cp))).toBe(`\\u00${cp.toString(16)}`);
      }
    });

    it('shows a raw 0x9b byte (8-bit CSI, invalid UTF-8) as \\x9b', () => {
      expect(esc([0x9b, 0x32, 0x4a])).toBe('\\x9b2J');
    });
  });

  describe('when the bytes would reorder or hide text', () => {
    it('shows the right-to-left override U+202E as \\u202e', () => {
      expect(esc('exe.\u202etxt')).toBe('exe.\\u202etxt');
    });

    it('shows bidi isolates and marks (U+2066..U+2069, U+200E, U+200F, U+061C) as \\uNNNN', () => {
      for (const cp of [0x2066, 0x2067, 0x2068, 0x2069, 0x200e, 0x200f, 0x061c, 0x202a, 0x202b, 0x202c, 0x202d]) {
        expect(esc(String.fromCodePoint(cp))).toBe(`\\u${cp.toString(16).padStart(4, '0')}`);
      }
    });
  });

  describe('when the bytes are C0 controls or DEL', () => {
    it('escapes NUL, CR, newline, BEL, backspace and DEL', () => {
      expect(esc([0x00])).toMatch(/^\\(0|x00)$/);
      expect(esc([0x0d])).toMatch(/^\\(r|x0d)$/);
      expect(esc([0x0a])).toBe('\\x0a');
      expect(esc([0x07])).toBe('\\x07');
      expect(esc([0x08])).toBe('\\x08');
      expect(esc([0x7f])).toBe('\\x7f');
    });

    it('keeps a tab as a tab', () => {
      expect(esc('a\tb')).toBe('a\tb');
    });
  });

  describe('when the bytes are not valid UTF-8', () => {
    const cases: Array<[string, number[], string]> = [
      ['a lone 0xff', [0xff], '\\xff'],
      ['a lone continuation byte 0x80', [0x80], '\\x80'],
      ['an overlong 2-byte "/" (0xc0 0xaf)', [0xc0, 0xaf], '\\xc0\\xaf'],
      ['an overlong 2-byte NUL (0xc1 0x80)', [0xc1, 0x80], '\\xc1\\x80'],
      ['an overlong 3-byte "/" (0xe0 0x80 0xaf)', [0xe0, 0x80, 0xaf], '\\xe0\\x80\\xaf'],
      ['an overlong 4-byte "/" (0xf0 0x80 0x80 0xaf)', [0xf0, 0x80, 0x80, 0xaf], '\\xf0\\x80\\x80\\xaf'],
      ['a UTF-8 encoded high surrogate U+D800', [0xed, 0xa0, 0x80], '\\xed\\xa0\\x80'],
      ['a UTF-8 encoded low surrogate U+DFFF', [0xed, 0xbf, 0xbf], '\\xed\\xbf\\xbf'],
      ['a code point above U+10FFFF (0xf4 0x90 0x80 0x80)', [0xf4, 0x90, 0x80, 0x80], '\\xf4\\x90\\x80\\x80'],
      ['a 0xf5 lead byte', [0xf5, 0x80, 0x80, 0x80], '\\xf5\\x80\\x80\\x80'],
      ['a sequence cut off by the end', [0xe2, 0x82], '\\xe2\\x82'],
      ['a sequence cut off by ASCII', [0xe2, 0x82, 0x41], '\\xe2\\x82A'],
      ['a lead byte before an ESC', [0xc2, 0x1b], '\\xc2'],
    ];
    describe.each(cases)('with %s', (_what, bytes, shown) => {
      it(`shows it as ${shown}`, () => {
        expect(esc(bytes).startsWith(shown)).toBe(true);
        expect(esc(bytes)).not.toMatch(FORBIDDEN);
      });
    });
  });

  describe('when the bytes are ordinary text', () => {
    it('keeps printable ASCII', () => {
      expect(esc('make -j4 all # ok ~!@')).toBe('make -j4 all # ok ~!@');
    });

    it('keeps valid UTF-8: accents, CJK, emoji, the last code point', () => {
      for (const s of ['\u00e9t\u00e9', '\u65e5\u672c', '\u{1f600}', '\u{10ffff}', 'a\u00a0b']) expect(esc(s)).toBe(s);
    });

    it('escapes a backslash as \\\\, so a literal "\\x1b" in the log is not mistaken for an escape', () => {
      expect(esc('C:\\dir')).toBe('C:\\\\dir');
      expect(esc('\\x1b')).toBe('\\\\x1b');
      expect(esc('\\x1b')).not.toBe(esc('\x1b'));
    });
  });

  describe('on arbitrary bytes', () => {
    const bytes = fc.oneof(
      fc.uint8Array({ maxLength: 200 }),
      // Bytes that are mostly UTF-8 lead / continuation bytes and controls.
      fc.array(fc.oneof(fc.integer({ min: 0x80, max: 0xff }), fc.integer({ min: 0, max: 0x20 }), fc.constant(0x5c)), { maxLength: 100 }).map((a) => Uint8Array.from(a)),
      // Valid UTF-8 of arbitrary code points (including C1 and bidi controls).
      fc.string({ unit: 'grapheme', maxLength: 50 }).map((s) => Buffer.from(s, 'utf8')),
      fc.array(fc.integer({ min: 0, max: 0x10ffff }), { maxLength: 40 })
        .map((cps) => Buffer.from(cps.filter((c) => c < 0xd800 || c > 0xdfff).map((c) => String.fromCodePoint(c)).join(''), 'utf8')),
    );

    it('never outputs a control character (other than tab), DEL, C1, bidi control or lone surrogate', () => {
      fc.assert(
        fc.property(bytes, (b) => {
          expect(escapeForTerminal(b)).not.toMatch(FORBIDDEN);
        }),
        { numRuns: 2000 },
      );
    });

    it('is lossless: unescaping the output gives back the input bytes', () => {
      fc.assert(
        fc.property(bytes, (b) => {
          expect(unescape(escapeForTerminal(b)).toString('hex')).toBe(Buffer.from(b).toString('hex'));
        }),
        { numRuns: 2000 },
      );
    });
  });
});

describe('escapeForTerminal and escapeText on invisible format characters (Unicode Cf)', () => {
  // Zero-width space/joiners, word joiner, soft hyphen, BOM, a tag character,
  // an interlinear annotation anchor, and the line/paragraph separators.
  const CASES: Array<[string, string]> = [
    ['\u200b', '\\u200b'],
    ['\u200d', '\\u200d'],
    ['\u2060', '\\u2060'],
    ['\u00ad', '\\u00ad'],
    ['\ufeff', '\\ufeff'],
    ['\u{e0041}', '\\u{e0041}'],
    ['\ufff9', '\\ufff9'],
    ['\u2028', '\\u2028'],
    ['\u2029', '\\u2029'],
  ];
  it.each(CASES)('shows %j as %s, in bytes and in strings alike', (ch, shown) => {
    expect(esc(`a${ch}b`)).toBe(`a${shown}b`);
    expect(escapeText(`a${ch}b`)).toBe(`a${shown}b`);
  });

  it('escapeText agrees with escapeForTerminal on valid UTF-8 text', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), (s) => {
        const bytes = Buffer.from(s, 'utf8');
        // Lone surrogates become U+FFFD in UTF-8, so compare on what the bytes say.
        const text = bytes.toString('utf8');
        expect(escapeText(text)).toBe(escapeForTerminal(bytes));
      }),
    );
  });
});
