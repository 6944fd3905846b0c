import { AppendlogError } from './errors.js';
import { StrictJsonError, parseStrictJson } from './strict-json.js';

/**
 * Canonical JSON (docs/FORMAT.md section 5): the subset of RFC 8785 (JCS) that
 * appendlog needs. Values are objects, arrays, strings, safe integers,
 * booleans and null; object keys sorted by UTF-16 code units; no whitespace;
 * strings escaped as ECMAScript JSON.stringify does. No floats, so there is
 * exactly one encoding of every value.
 */
export type CanonicalValue =
  | string
  | number
  | boolean
  | null
  | readonly CanonicalValue[]
  | { readonly [key: string]: CanonicalValue | undefined };

export function canonicalJson(value: CanonicalValue): string {
  if (value === null || typeof value === 'boolean') return JSON.stringify(value);
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) throw new AppendlogError('INTERNAL', `canonical JSON has no encoding for ${value}`);
    return String(value);
  }
  if (Array.isArray(value)) return `[${value.map((v) => canonicalJson(v as CanonicalValue)).join(',')}]`;
  const obj = value as { readonly [key: string]: CanonicalValue | undefined };
  const keys = Object.keys(obj)
    .filter((k) => obj[k] !== undefined)
    .sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k] as CanonicalValue)}`).join(',')}}`;
}

export function canonicalBytes(value: CanonicalValue): Buffer {
  return Buffer.from(canonicalJson(value), 'utf8');
}

/**
 * What went wrong in a JSON.parse, without the input: V8's SyntaxError
 * messages quote the offending text ("Unexpected token 'x', \"...\" is not
 * valid JSON"), which may be hostile bytes headed for a terminal. Keeps only
 * the position.
 */
export function jsonErrorWithoutInput(e: unknown): string {
  const pos = /position (\d+)/.exec(String((e as Error)?.message ?? ''));
  if (pos) return `syntax error at character ${pos[1]}`;
  return /end of JSON input|Unterminated/i.test(String((e as Error)?.message ?? '')) ? 'syntax error: unexpected end' : 'syntax error';
}

/**
 * Parses attacker-controlled JSON text into a plain object by the strict
 * rules of docs/FORMAT.md 5.1 (no repeated member names, integers only,
 * bounded nesting), or throws the given coded error. Never lets a
 * SyntaxError escape.
 */
export function parseJsonObject(
  text: string,
  code: 'MALFORMED_BUNDLE' | 'MANIFEST_INVALID' | 'BAD_ENTRY',
  what: string,
  seq?: number,
): Record<string, unknown> {
  let v: unknown;
  try {
    v = parseStrictJson(text);
  } catch (e) {
    throw new AppendlogError(code, `${what} is not valid JSON (${e instanceof StrictJsonError ? e.message : jsonErrorWithoutInput(e)})`, { seq });
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) {
    throw new AppendlogError(code, `${what} is not a JSON object`, { seq });
  }
  return v as Record<string, unknown>;
}
