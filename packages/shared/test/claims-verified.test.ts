/**
 * Signature-check claims (docs/FORMAT.md 10.5) and their place in the
 * manifest's claims summary (8.4): the shapes, the shared budget, and that
 * a log without them keeps the old summary byte for byte.
 */
import { describe, expect, it } from 'vitest';
import {
  ClaimsCollector,
  MAX_SUMMARY_FILE_BYTES,
  canonicalJson,
  evaluateQuorum,
  evidenceBytes,
  majorityInputs,
  manifestBytes,
  parseClaim,
  parseEvidence,
  parseManifest,
  type CanonicalValue,
  type Claim,
  type SealManifest,
} from '../src/index.js';
import { expectAppendlogError } from './support.js';

const H = (c: string): string => c.repeat(64);
const FPR = 'ab'.repeat(20);
const bytes = (o: object): Buffer => Buffer.from(canonicalJson(o as CanonicalValue), 'utf8');
const verified = { claim: 'input-verified', path: 'src.tar.gz', sha256: H('a'), signature: H('b'), signer: FPR, size: 10 };
const rejected = { claim: 'input-rejected', code: 'SIGNATURE_INVALID', path: 'src.tar.gz', reason: 'bad', sha256: H('c'), size: 11 };

describe('input-verified and input-rejected claims', () => {
  it('accepts the canonical shapes, including a v6 fingerprint and an unreadable file', () => {
    expect(parseClaim(bytes(verified))).toEqual(verified);
    expect(parseClaim(bytes({ ...verified, signer: 'cd'.repeat(32) }))).toMatchObject({ signer: 'cd'.repeat(32) });
    expect(parseClaim(bytes({ ...rejected, code: 'INPUT_UNREADABLE', sha256: null, size: null }))).toMatchObject({ sha256: null, size: null });
  });

  it.each([
    ['an upper-case signer', { ...verified, signer: FPR.toUpperCase() }],
    ['a short signer', { ...verified, signer: 'ab'.repeat(8) }],
    ['a missing signature hash', { ...verified, signature: undefined }],
    ['an extra member', { ...verified, note: 'x' }],
    ['an unknown rejection code', { ...rejected, code: 'OOPS' }],
    ['a reason over 1024 units', { ...rejected, reason: 'x'.repeat(1025) }],
    ['an empty path', { ...rejected, path: '' }],
  ])('refuses %s (FRAME_INVALID, BAD_ENTRY in a verifier)', (_what, claim) => {
    expectAppendlogError(() => parseClaim(bytes(claim)), 'FRAME_INVALID');
    expectAppendlogError(() => parseClaim(bytes(claim), 'BAD_ENTRY', 3), 'BAD_ENTRY');
  });
});

describe('the claims summary', () => {
  const fold = (claims: object[]): ReturnType<ClaimsCollector['summary']> => {
    const c = new ClaimsCollector();
    for (const x of claims) c.add(parseClaim(bytes(x)));
    return c.summary();
  };

  it('has no verifiedInputs/rejectedInputs when no input was signature-checked (old manifests unchanged)', () => {
    const s = fold([{ claim: 'input', path: 'a', sha256: H('a'), size: 1 }]);
    expect(canonicalJson(s as unknown as CanonicalValue)).toBe(`{"artifacts":[],"inputs":[{"path":"a","sha256":"${H('a')}","size":1}]}`);
  });

  it('lists verified inputs with their signer and rejected ones with their reason', () => {
    expect(fold([verified, rejected])).toMatchObject({
      verifiedInputs: [{ path: 'src.tar.gz', sha256: H('a'), signer: FPR, size: 10 }],
      rejectedInputs: [{ code: 'SIGNATURE_INVALID', path: 'src.tar.gz', reason: 'bad', sha256: H('c'), size: 11 }],
    });
  });

  it('shares one 2 MiB budget across all four lists and counts the rest in omitted', () => {
    const long = 'x'.repeat(1000);
    const claims: Claim[] = [];
    for (let i = 0; i < 1000; i++) claims.push({ claim: 'input', path: `${long}${i}`, sha256: H('a'), size: 1 });
    for (let i = 0; i < 1000; i++) claims.push({ claim: 'input-verified', path: `${long}${i}`, sha256: H('a'), signature: H('b'), signer: FPR, size: 1 });
    for (let i = 0; i < 1000; i++) claims.push({ claim: 'artifact', path: `${long}${i}`, sha256: H('a'), size: 1 });
    const c = new ClaimsCollector();
    for (const x of claims) c.add(x);
    const s = c.summary()!;
    const listed = [...s.inputs, ...s.artifacts, ...(s.verifiedInputs ?? [])].reduce((n, f) => n + Buffer.byteLength(canonicalJson(f as unknown as CanonicalValue)) + 1, 0);
    expect(listed).toBeLessThanOrEqual(MAX_SUMMARY_FILE_BYTES);
    expect(s.omitted).toBeDefined();
    expect(s.omitted!.inputs + s.omitted!.artifacts + s.omitted!.verifiedInputs! + s.inputs.length + s.artifacts.length + s.verifiedInputs!.length).toBe(3000);
    expect(Object.keys(s.omitted!).sort()).toEqual(['artifacts', 'inputs', 'rejectedInputs', 'verifiedInputs']);
  });

  it('keeps a hostile sender\'s summary (paths of 1024 escaped control characters) far below the 4 MiB manifest limit', () => {
    const evil = '\u0001'.repeat(1024); // 6 bytes each in canonical JSON
    const c = new ClaimsCollector();
    for (let i = 0; i < 1000; i++) {
      c.add({ claim: 'input', path: `${evil}${i}`, sha256: H('a'), size: 1 });
      c.add({ claim: 'artifact', path: `${evil}${i}`, sha256: H('a'), size: 1 });
      c.add({ claim: 'input-verified', path: `${evil}${i}`, sha256: H('a'), signature: H('b'), signer: FPR, size: 1 });
      c.add({ claim: 'input-rejected', path: `${evil}${i}`, code: 'SIGNATURE_INVALID', reason: evil, sha256: null, size: null });
    }
    const size = Buffer.byteLength(canonicalJson(c.summary() as unknown as CanonicalValue));
    expect(size).toBeGreaterThan(MAX_SUMMARY_FILE_BYTES - 20_000);
    expect(size).toBeLessThan(MAX_SUMMARY_FILE_BYTES + 4096);
  });
});

const manifest = (claims?: SealManifest['claims']): SealManifest => ({
  format: 'appendlog-seal/1',
  vm: 'build-1',
  name: 'hello',
  created: 1,
  sealed: 2,
  genesis: H('0'),
  entries: 3,
  lines: 1,
  bytes: 1,
  sessions: 1,
  closes: { eof: 1 },
  head: H('1'),
  sealIndex: 1,
  prevSeal: null,
  ...(claims ? { claims } : {}),
});

describe('manifest parsing', () => {
  it('round-trips a manifest with verifiedInputs and rejectedInputs', () => {
    const m = manifest({ inputs: [], artifacts: [], verifiedInputs: [{ path: 'a', size: 1, sha256: H('a'), signer: FPR }], rejectedInputs: [] });
    expect(parseManifest(manifestBytes(m))).toEqual(m);
  });

  it('refuses one list without the other, and omitted counts for absent lists', () => {
    const one = Buffer.from(manifestBytes(manifest({ inputs: [], artifacts: [] })).toString().replace('"inputs":[]', '"inputs":[],"verifiedInputs":[]'));
    expectAppendlogError(() => parseManifest(one), 'MANIFEST_INVALID');
    const om = Buffer.from(
      manifestBytes(manifest({ inputs: [], artifacts: [], omitted: { inputs: 1, artifacts: 0 } })).toString().replace('"inputs":1}', '"inputs":1,"verifiedInputs":0}'),
    );
    expectAppendlogError(() => parseManifest(om), 'MANIFEST_INVALID');
  });
});

describe('evidence files', () => {
  const mb = manifestBytes(manifest({ inputs: [], artifacts: [{ path: 'dist/x.tar.gz', size: 5, sha256: H('e') }] }));
  it('round-trips the exact manifest bytes', () => {
    const e = parseEvidence(evidenceBytes(mb, ['sig']));
    expect(e.manifestBytes.equals(mb)).toBe(true);
    expect(e.signatures).toEqual([{ file: 'signatures[0]', armored: 'sig' }]);
  });
  it.each([
    ['no signature', evidenceBytes(mb, [])],
    ['another format', Buffer.from(evidenceBytes(mb, ['s']).toString().replace('appendlog-evidence/1', 'appendlog-evidence/2'))],
    ['a missing newline', evidenceBytes(mb, ['s']).subarray(0, -1)],
    ['an extra member', Buffer.from(evidenceBytes(mb, ['s']).toString().replace('{"format"', '{"extra":1,"format"'))],
    ['not JSON', Buffer.from('{')],
  ])('refuses %s as EVIDENCE_INVALID', (_w, b) => {
    expectAppendlogError(() => parseEvidence(b), 'EVIDENCE_INVALID');
  });
  it('refuses an edited, non-canonical manifest inside as MANIFEST_INVALID', () => {
    const spaced = evidenceBytes(Buffer.from(mb.toString().replace('"bytes":1,', '"bytes": 1,')), ['s']);
    expectAppendlogError(() => parseEvidence(spaced), 'MANIFEST_INVALID');
  });
});

describe('the quorum', () => {
  const file = { name: 'x.tar.gz', sha256: H('e'), size: 5 };
  const m = (art: string, input: string): SealManifest => manifest({ inputs: [{ path: 'src', size: 1, sha256: input }], artifacts: [{ path: 'dist/x.tar.gz', size: 5, sha256: art }] });
  const cert = (c: string) => ({ fingerprint: c.repeat(40), userIds: [] });
  it('counts a certificate once and names the minority input', () => {
    const r = evaluateQuorum({
      file,
      threshold: 2,
      builders: [cert('A'), cert('B'), cert('C')],
      evidences: [
        { source: '1', kind: 'evidence', manifest: m(H('e'), H('1')), signers: [cert('A')], ignored: [] },
        { source: '2', kind: 'evidence', manifest: m(H('e'), H('1')), signers: [cert('A')], ignored: [] },
        { source: '3', kind: 'evidence', manifest: m(H('f'), H('2')), signers: [cert('C')], ignored: [] },
        { source: '4', kind: 'evidence', manifest: m(H('e'), H('1')), signers: [cert('D')], ignored: ['D'] },
      ],
    });
    expect(r.agreeing).toBe(1);
    expect(r.met).toBe(false);
    expect(r.uncounted.map((e) => e.source)).toEqual(['4']);
    const c = r.builders.find((b) => b.fingerprint === 'C'.repeat(40))!;
    expect(c.evidences[0]).toMatchObject({ artifact: 'different', inputs: 'different', inputDifferences: [{ path: 'src', sha256: H('2'), majority: H('1') }] });
  });
  it('takes the value most builders hold as the majority', () => {
    const maj = majorityInputs([new Map([['a', '1']]), new Map([['a', '2']]), new Map([['a', '2'], ['b', '3']])]);
    expect([...maj]).toEqual([['a', '2'], ['b', null]]);
  });
});
