/**
 * docs/FORMAT.md 5.1: strict JSON reading. Each refusal is a case a parser
 * would otherwise read differently from another one (JSON.parse, Python's
 * json, jq), so two verifiers could see two values.
 */
import { describe, expect, it } from 'vitest';
import { MAX_JSON_DEPTH, StrictJsonError, parseStrictJson } from '../src/strict-json.js';

const refuse = (text: string, why: RegExp): void => {
  expect(() => parseStrictJson(text)).toThrow(StrictJsonError);
  expect(() => parseStrictJson(text)).toThrow(why);
};

describe('parseStrictJson', () => {
  it('reads what JSON.parse reads for plain appendlog values', () => {
    const text = '{"a":[1,-2,true,false,null],"b":"x\\u0001\\"\\\\\\/\\b\\f\\n\\r\\t","c":{},"d":[]}';
    expect(parseStrictJson(text)).toEqual(JSON.parse(text));
    expect(parseStrictJson(' \t\r\n{ "a" : 1 } \n')).toEqual({ a: 1 });
  });

  it('keeps a lone surrogate escape as that UTF-16 unit (valid JSON)', () => {
    expect(parseStrictJson('"\\ud800x"')).toBe('\ud800x');
  });

  it('keeps "__proto__" as an ordinary own member, never as the prototype', () => {
    const v = parseStrictJson('{"__proto__":{"x":1}}') as Record<string, unknown>;
    expect(Object.keys(v)).toEqual(['__proto__']);
    expect((v as { x?: unknown }).x).toBeUndefined();
  });

  it('refuses a member name repeated in one object, also when spelled with an escape', () => {
    refuse('{"reason":"eof","reason":"lost"}', /repeated/);
    refuse('{"a":1,"\\u0061":2}', /repeated/);
  });

  it('allows the same name in different objects', () => {
    expect(parseStrictJson('{"a":{"a":1},"b":{"a":2}}')).toEqual({ a: { a: 1 }, b: { a: 2 } });
  });

  it('refuses NaN, Infinity, -Infinity and a leading BOM', () => {
    refuse('NaN', /unexpected/);
    refuse('{"code":Infinity}', /unexpected/);
    refuse('[-Infinity]', /bad number/);
    refuse('\ufeff{}', /unexpected/);
  });

  it('refuses fractions and exponents, and integers beyond 2^53 - 1', () => {
    refuse('1.0', /fraction or exponent/);
    refuse('1e3', /fraction or exponent/);
    refuse('1E3', /fraction or exponent/);
    refuse('9007199254740992', /beyond 2\^53/);
    refuse('-9007199254740992', /beyond 2\^53/);
    expect(parseStrictJson('[9007199254740991,-9007199254740991,0,-0]')).toEqual([9007199254740991, -9007199254740991, 0, -0]);
  });

  it('refuses leading zeros, a plus sign, trailing commas, comments and text after the value', () => {
    refuse('01', /text after/);
    refuse('+1', /unexpected/);
    refuse('[1,]', /unexpected/);
    refuse('{"a":1,}', /member name/);
    refuse('{"a":1}/**/', /text after/);
    refuse('{"a":1}{"a":1}', /text after/);
  });

  it('refuses raw control characters and bad escapes in strings', () => {
    refuse('"a\nb"', /control/);
    refuse('"\\x41"', /bad escape/);
    refuse('"\\u12"', /\\u escape/);
    refuse('"abc', /unterminated/);
  });

  it(`accepts ${MAX_JSON_DEPTH} nested containers and refuses ${MAX_JSON_DEPTH + 1}`, () => {
    expect(() => parseStrictJson('['.repeat(MAX_JSON_DEPTH) + ']'.repeat(MAX_JSON_DEPTH))).not.toThrow();
    refuse('['.repeat(MAX_JSON_DEPTH + 1) + ']'.repeat(MAX_JSON_DEPTH + 1), /nesting/);
  });

  it('refuses two million nested arrays at once, without a stack overflow', () => {
    refuse('['.repeat(2_000_000), /nesting/);
  });

  it('never quotes the input in its message', () => {
    try {
      parseStrictJson('{"\u001b[2J":1,"\u001b[2J":2}');
    } catch (e) {
      expect((e as Error).message).not.toContain('\u001b');
    }
    expect.assertions(1);
  });
});
