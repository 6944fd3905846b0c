/**
 * Strict JSON reading (docs/FORMAT.md 5.1) for every JSON text that comes
 * from outside: manifests, claims, session-close payloads, receipt files,
 * the service configuration. RFC 8259, minus what parsers disagree on:
 *
 *   - a member name repeated in one object is refused (JSON.parse keeps the
 *     last, other parsers the first or fail: two readers must never see two
 *     values);
 *   - numbers are integers only (no fraction, no exponent) within
 *     -(2^53 - 1) ... 2^53 - 1, so every reader gets the exact value;
 *   - nesting deeper than MAX_JSON_DEPTH arrays/objects is refused (Python's
 *     json recurses and fails on deep input; this parser's recursion is bounded
 *     by the same limit);
 *   - NaN, Infinity, a BOM, comments and trailing commas are not JSON and are
 *     refused, like any other syntax error.
 *
 * Lone surrogate escapes (\ud800) are valid JSON and are kept as such in the
 * string. Pure: text in, a value or a StrictJsonError out (callers turn it
 * into their coded error). Messages never quote the input.
 */
export const MAX_JSON_DEPTH = 32;

export class StrictJsonError extends Error {
  constructor(
    message: string,
    readonly offset: number,
  ) {
    // The shape of V8's messages without their quotation of the input: position, then why.
    super(`syntax error at character ${offset}: ${message}`);
    this.name = 'StrictJsonError';
  }
}

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

const ESCAPES: Record<string, string> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };

export function parseStrictJson(text: string): JsonValue {
  let i = 0;
  const fail = (msg: string): never => {
    throw new StrictJsonError(msg, i);
  };
  const ws = (): void => {
    for (;;) {
      const c = text.charCodeAt(i);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) i++;
      else return;
    }
  };
  const str = (): string => {
    i++; // opening quote
    let out = '';
    let start = i;
    for (;;) {
      if (i >= text.length) fail('unterminated string');
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        out += text.slice(start, i);
        i++;
        return out;
      }
      if (c < 0x20) fail('control character in a string');
      if (c !== 0x5c) {
        i++;
        continue;
      }
      out += text.slice(start, i);
      const e = text[i + 1];
      if (e === 'u') {
        const hex = text.slice(i + 2, i + 6);
        if (!/^[0-9A-Fa-f]{4}$/.test(hex)) fail('bad \\u escape');
        out += String.fromCharCode(parseInt(hex, 16));
        i += 6;
      } else if (e !== undefined && ESCAPES[e] !== undefined) {
        out += ESCAPES[e];
        i += 2;
      } else {
        fail('bad escape');
      }
      start = i;
    }
  };
  const num = (): number => {
    const m = /-?(?:0|[1-9][0-9]*)/y;
    m.lastIndex = i;
    const r = m.exec(text);
    if (r === null) fail('bad number');
    const after = text.charCodeAt(i + r![0].length);
    if (after === 0x2e || after === 0x65 || after === 0x45) fail('a number with a fraction or exponent: only integers are allowed');
    const v = Number(r![0]);
    if (!Number.isSafeInteger(v)) fail('an integer beyond 2^53 - 1 in magnitude');
    i += r![0].length;
    return v;
  };
  const value = (depth: number): JsonValue => {
    ws();
    const c = text[i];
    if (c === '"') return str();
    if (c === '{' || c === '[') {
      if (depth >= MAX_JSON_DEPTH) fail(`nesting deeper than ${MAX_JSON_DEPTH}`);
      i++;
      if (c === '[') {
        const arr: JsonValue[] = [];
        ws();
        if (text[i] === ']') {
          i++;
          return arr;
        }
        for (;;) {
          arr.push(value(depth + 1));
          ws();
          if (text[i] === ',') i++;
          else if (text[i] === ']') {
            i++;
            return arr;
          } else fail('expected , or ]');
        }
      }
      const obj: { [key: string]: JsonValue } = Object.create(null) as { [key: string]: JsonValue };
      const seen = new Set<string>();
      ws();
      if (text[i] === '}') {
        i++;
        return { ...obj };
      }
      for (;;) {
        ws();
        if (text[i] !== '"') fail('expected a member name');
        const k = str();
        if (seen.has(k)) fail('a member name repeated in one object');
        seen.add(k);
        ws();
        if (text[i] !== ':') fail('expected :');
        i++;
        obj[k] = value(depth + 1);
        ws();
        if (text[i] === ',') i++;
        else if (text[i] === '}') {
          i++;
          // A plain object again (no null prototype), with "__proto__" kept as an own member.
          const plain: { [key: string]: JsonValue } = {};
          for (const key of Object.keys(obj)) Object.defineProperty(plain, key, { value: obj[key], enumerable: true, writable: true, configurable: true });
          return plain;
        } else fail('expected , or }');
      }
    }
    if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) return num();
    if (text.startsWith('true', i)) {
      i += 4;
      return true;
    }
    if (text.startsWith('false', i)) {
      i += 5;
      return false;
    }
    if (text.startsWith('null', i)) {
      i += 4;
      return null;
    }
    return fail(i >= text.length ? 'unexpected end of input' : 'unexpected character');
  };
  const v = value(0);
  ws();
  if (i !== text.length) fail('text after the JSON value');
  return v;
}
