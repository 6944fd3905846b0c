/**
 * Known answers for the rules an independent verifier used to have to guess
 * (issue 15): name rules, strict JSON (5.1), claims (10.5), close reasons
 * (3.5, E7) and the claims summary budget (8.4). The answers come from
 * docs/vectors/gen_vectors.py, which implements the spec in Python's
 * standard library; the TypeScript code must agree on every case.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  AppendlogError,
  ChainVerifier,
  ClaimsCollector,
  Kind,
  LOG_NAME_RE,
  STORED_LOG_NAME_RE,
  VM_NAME_RE,
  canonicalJson,
  encodeEntry,
  parseClaim,
  parseStrictJson,
  type CanonicalValue,
} from '../src/index.js';
import { loadVectors } from './support.js';

interface Case { comment: string; valid: boolean }
const V = loadVectors() as unknown as {
  names: Array<Case & { kind: 'log' | 'log-stored' | 'vm'; name: string }>;
  json: Array<Case & { bytes_hex: string }>;
  claims: Array<Case & { bytes_hex: string }>;
  closes: Array<Case & { payload_hex: string }>;
  summaries: Array<{
    comment: string;
    claims: Array<Record<string, unknown>>;
    summary_present: boolean;
    summary_sha256?: string;
    summary?: string;
    inputs_listed?: number;
    artifacts_listed?: number;
    omitted?: { artifacts: number; inputs: number } | null;
  }>;
};
const hex = (s: string): Buffer => Buffer.from(s, 'hex');

describe('the vector file has the issue-15 sections, each case with a comment, both outcomes present', () => {
  it.each(['names', 'json', 'claims', 'closes'] as const)('%s', (k) => {
    const cases = V[k] as Case[];
    expect(cases.length).toBeGreaterThanOrEqual(10);
    expect(cases.every((c) => c.comment.length > 0)).toBe(true);
    expect(new Set(cases.map((c) => c.valid))).toEqual(new Set([true, false]));
  });
});

describe('name rules (1.4)', () => {
  it.each(V.names.map((c) => [c.comment, c] as const))('%s', (_c, c) => {
    expect((c.kind === 'log' ? LOG_NAME_RE : c.kind === 'log-stored' ? STORED_LOG_NAME_RE : VM_NAME_RE).test(c.name)).toBe(c.valid);
  });
});

describe('strict JSON reading (5.1)', () => {
  const reads = (bytes: Buffer): boolean => {
    try {
      parseStrictJson(new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes));
      return true;
    } catch {
      return false;
    }
  };
  it.each(V.json.map((c) => [c.comment, c] as const))('%s', (_c, c) => {
    expect(reads(hex(c.bytes_hex))).toBe(c.valid);
  });
});

describe('claims (10.5)', () => {
  it.each(V.claims.map((c) => [c.comment, c] as const))('%s', (_c, c) => {
    let ok = true;
    try {
      parseClaim(hex(c.bytes_hex), 'BAD_ENTRY', 3);
    } catch (e) {
      expect(e).toBeInstanceOf(AppendlogError);
      expect((e as AppendlogError).code).toBe('BAD_ENTRY');
      ok = false;
    }
    expect(ok).toBe(c.valid);
  });
});

describe('session-close payloads (3.5, E7)', () => {
  const ID = { vm: 'work', name: 'x', created: 1 };
  const open = encodeEntry({ seq: 1, time: 1, session: 1, kind: Kind.SESSION_OPEN, flags: 0, payload: Buffer.from('{}') });
  it.each(V.closes.map((c) => [c.comment, c] as const))('%s', (_c, c) => {
    const v = new ChainVerifier(ID);
    v.push(open);
    const close = encodeEntry({ seq: 2, time: 2, session: 1, kind: Kind.SESSION_CLOSE, flags: 0, payload: hex(c.payload_hex) });
    let code: string | undefined;
    try {
      v.push(close);
    } catch (e) {
      code = (e as AppendlogError).code;
      expect((e as AppendlogError).seq).toBe(2);
    }
    expect(code).toBe(c.valid ? undefined : 'BAD_ENTRY');
  });
});

describe('claims summary and its budget (8.4)', () => {
  const SHA_E = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
  const expand = (groups: Array<Record<string, unknown>>): Array<Record<string, unknown>> =>
    groups.flatMap((g) => {
      if (g.count === undefined) return [g];
      return Array.from({ length: g.count as number }, (_, i) => ({
        claim: g.claim,
        path: `${g.path_prefix as string}${String(i).padStart(5, '0')}${((g.path_fill as string | undefined) ?? '').repeat((g.path_fill_len as number | undefined) ?? 0)}`,
        sha256: SHA_E,
        size: i,
      }));
    });

  it.each(V.summaries.map((c) => [c.comment, c] as const))('%s', (_c, c) => {
    const collector = new ClaimsCollector();
    // Each claim goes through the claim parser first, as the verifier does.
    for (const claim of expand(c.claims)) collector.add(parseClaim(Buffer.from(canonicalJson(claim as CanonicalValue), 'utf8'), 'BAD_ENTRY', 1));
    const s = collector.summary();
    expect(s !== undefined).toBe(c.summary_present);
    if (s === undefined) return;
    const text = canonicalJson(s as unknown as CanonicalValue);
    if (c.summary !== undefined) expect(text).toBe(c.summary);
    expect(createHash('sha256').update(text, 'utf8').digest('hex')).toBe(c.summary_sha256);
    expect(s.inputs.length).toBe(c.inputs_listed);
    expect(s.artifacts.length).toBe(c.artifacts_listed);
    expect(s.omitted ?? null).toEqual(c.omitted ?? null);
  });
});
