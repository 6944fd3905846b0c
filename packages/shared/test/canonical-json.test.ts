/**
 * Canonical JSON (docs/FORMAT.md section 5, a subset of RFC 8785 / JCS): one
 * byte encoding per value, because session events and seal manifests are
 * hashed and signed as bytes.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalBytes, canonicalJson, parseJsonObject, type CanonicalValue } from '../src/index.js';
import { expectAppendlogError } from './support.js';

describe('canonicalJson', () => {
  describe('when given an object', () => {
    it('sorts keys and writes no whitespace', () => {
      expect(canonicalJson({ vm: 'work', session: 1, pid: 123, mode: 'raw', argument: 'b1' })).toBe(
        '{"argument":"b1","mode":"raw","pid":123,"session":1,"vm":"work"}',
      );
    });

    it('sorts keys of nested objects, and keeps array order', () => {
      expect(canonicalJson({ b: [3, 1, { z: 1, a: 2 }], a: { y: null, x: true } })).toBe(
        '{"a":{"x":true,"y":null},"b":[3,1,{"a":2,"z":1}]}',
      );
    });

    it('sorts integer-like keys as strings ("10" before "9"), not in JS property order', () => {
      expect(canonicalJson({ 9: 'a', 10: 'b', x: 'c' })).toBe('{"10":"b","9":"a","x":"c"}');
    });

    it('sorts by UTF-16 code units: uppercase before lowercase, U+1F600 before U+FF61', () => {
      expect(canonicalJson({ a: 1, B: 2 })).toBe('{"B":2,"a":1}');
      // Code point order would put U+FF61 first; RFC 8785 3.2.3 compares UTF-16 units (0xD83D < 0xFF61).
      expect(canonicalJson({ '\uff61': 1, '\u{1f600}': 2 })).toBe('{"\u{1f600}":2,"\uff61":1}');
    });

    it('leaves out keys whose value is undefined', () => {
      expect(canonicalJson({ a: 1, detail: undefined })).toBe('{"a":1}');
    });

    it('writes empty containers as {} and []', () => {
      expect(canonicalJson({ o: {}, a: [] })).toBe('{"a":[],"o":{}}');
    });
  });

  describe('when given numbers', () => {
    it('writes safe integers in plain decimal, including the extremes', () => {
      expect(canonicalJson([0, -1, 2 ** 53 - 1, -(2 ** 53 - 1), 123456789012])).toBe(
        '[0,-1,9007199254740991,-9007199254740991,123456789012]',
      );
    });

    it('writes -0 as 0', () => {
      expect(canonicalJson(-0)).toBe('0');
    });

    it.each([
      ['a fraction', 1.5],
      ['NaN', Number.NaN],
      ['Infinity', Number.POSITIVE_INFINITY],
      ['-Infinity', Number.NEGATIVE_INFINITY],
      ['2^53 (not safe)', 2 ** 53],
      ['1e21 (exponent notation)', 1e21],
    ])('refuses %s with INTERNAL', (_what, n) => {
      expectAppendlogError(() => canonicalJson({ n }), 'INTERNAL');
    });
  });

  describe('when given strings', () => {
    it('escapes quote, backslash and controls as JSON.stringify does', () => {
      expect(canonicalJson('a"b\\c\n\r\t\b\f\u0000\u001b\u007f')).toBe('"a\\"b\\\\c\\n\\r\\t\\b\\f\\u0000\\u001b\u007f"');
    });

    it('keeps non-ASCII characters as UTF-8, unescaped', () => {
      expect(canonicalJson('\u00e9\u{1f600}')).toBe('"\u00e9\u{1f600}"');
      expect(canonicalBytes('\u00e9').toString('hex')).toBe('22c3a922');
    });

    it('escapes lone surrogates, so the bytes are valid UTF-8', () => {
      expect(canonicalJson('\ud800')).toBe('"\\ud800"');
      expect(canonicalBytes('x\udfff').toString('utf8')).toBe('"x\\udfff"');
    });

    it('escapes keys the same way', () => {
      expect(canonicalJson({ 'a"\n': 1 })).toBe('{"a\\"\\n":1}');
    });
  });

  describe('on arbitrary values', () => {
    const value: fc.Arbitrary<CanonicalValue> = fc.letrec<{ v: CanonicalValue }>((tie) => ({
      v: fc.oneof(
        { depthSize: 'small' },
        fc.constant(null),
        fc.boolean(),
        fc.maxSafeInteger(),
        fc.string({ unit: 'binary', maxLength: 12 }),
        fc.array(tie('v'), { maxLength: 4 }),
        fc.dictionary(fc.string({ unit: 'binary', maxLength: 6 }), tie('v'), { maxKeys: 4 }),
      ),
    })).v;

    it('parses back to an equal value, and re-encodes to the same text (one encoding per value)', () => {
      fc.assert(
        fc.property(value, (v) => {
          const text = canonicalJson(v);
          const parsed = JSON.parse(text) as CanonicalValue;
          expect(parsed).toEqual(v);
          expect(canonicalJson(parsed)).toBe(text);
        }),
        { numRuns: 500 },
      );
    });

    it('does not depend on key insertion order', () => {
      fc.assert(
        fc.property(fc.dictionary(fc.string({ maxLength: 6 }), fc.maxSafeInteger(), { maxKeys: 8 }), (d) => {
          const reversed = Object.fromEntries(Object.entries(d).reverse());
          expect(canonicalJson(reversed)).toBe(canonicalJson(d));
        }),
        { numRuns: 300 },
      );
    });
  });
});

describe('parseJsonObject', () => {
  it('returns the object of valid JSON object text', () => {
    expect(parseJsonObject('{"a":[1,2],"b":"x"}', 'MANIFEST_INVALID', 'manifest')).toEqual({ a: [1, 2], b: 'x' });
  });

  describe.each([
    ['invalid JSON', '{"a":'],
    ['empty text', ''],
    ['a JSON array', '[1]'],
    ['JSON null', 'null'],
    ['a JSON string', '"x"'],
    ['a JSON number', '1'],
  ])('when the text is %s', (_what, text) => {
    it('fails with the caller\'s code, never a SyntaxError', () => {
      expectAppendlogError(() => parseJsonObject(text, 'MALFORMED_BUNDLE', 'bundle line'), 'MALFORMED_BUNDLE');
      expectAppendlogError(() => parseJsonObject(text, 'MANIFEST_INVALID', 'manifest'), 'MANIFEST_INVALID');
    });
  });

  it('names the seq it was given', () => {
    const err = expectAppendlogError(() => parseJsonObject('nope', 'BAD_ENTRY', 'close event', 42), 'BAD_ENTRY');
    expect(err.seq).toBe(42);
  });
});
