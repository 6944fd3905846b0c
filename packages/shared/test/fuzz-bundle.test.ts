/**
 * Bundle records (docs/FORMAT.md 9.3) against a hostile bundle:
 *   - parseRecordInto on arbitrary strings, and on valid records with random
 *     edits, never throws anything but a coded MALFORMED_BUNDLE;
 *   - formatRecord -> parseRecordInto gives back, for arbitrary entries with
 *     arbitrary payload bytes, exactly the canonical encoding (section 3.1)
 *     and the stated hash, whatever the payload form (text or base64);
 *   - that holds up to the format's limit, MAX_PAYLOAD.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  AppendlogError,
  HASH_SIZE,
  KIND_NAMES,
  MAX_PAYLOAD,
  RecordBatch,
  encodeEntry,
  formatRecord,
  parseRecordInto,
  type EntryRecordInput,
} from '../src/index.js';

const batch = new RecordBatch();

/** Parses one line into a fresh batch state; returns the thrown value, if any. */
function parse(line: string): { error: unknown; data: Buffer; hash: Buffer } {
  batch.clear();
  try {
    parseRecordInto(line, 1, batch);
    return { error: undefined, data: Buffer.from(batch.data.subarray(0, batch.used)), hash: Buffer.from(batch.hashes.subarray(0, HASH_SIZE)) };
  } catch (e) {
    return { error: e, data: Buffer.alloc(0), hash: Buffer.alloc(0) };
  }
}

const isMalformed = (e: unknown): boolean => e instanceof AppendlogError && e.code === 'MALFORMED_BUNDLE';

const KINDS = Object.keys(KIND_NAMES).map(Number);
const MAX_SAFE = Number.MAX_SAFE_INTEGER;

/** Payloads: raw bytes, or UTF-8 text rich in controls, escapes, BOMs and astral characters. */
const payload = fc.oneof(
  fc.uint8Array({ maxLength: 300 }),
  fc.string({ unit: 'binary', maxLength: 120 }).map((s) => Uint8Array.from(Buffer.from(s, 'utf8'))),
  fc
    .array(fc.constantFrom('\u001b[31m', '\\', '"', '\ufeff', '\u2028', '€', '𝄞', '\u0000', '\n', '\r', 'a', ' ', '\u007f', '\u0085'), { maxLength: 60 })
    .map((a) => Uint8Array.from(Buffer.from(a.join(''), 'utf8'))),
);

const entry: fc.Arbitrary<EntryRecordInput> = fc.record({
  seq: fc.oneof(fc.integer({ min: 1, max: 1000 }), fc.constant(MAX_SAFE), fc.integer({ min: 1, max: MAX_SAFE })),
  time: fc.oneof(fc.constant(0), fc.constant(MAX_SAFE), fc.integer({ min: 0, max: MAX_SAFE })),
  session: fc.oneof(fc.integer({ min: 0, max: 10 }), fc.constant(0xffffffff), fc.integer({ min: 0, max: 0xffffffff })),
  kind: fc.constantFrom(...KINDS),
  flags: fc.integer({ min: 0, max: 255 }),
  payload,
  hash: fc.uint8Array({ minLength: HASH_SIZE, maxLength: HASH_SIZE }),
});

/** Random edits of a string: replace, insert or delete characters at random places. */
const edits = fc.array(
  fc.record({ at: fc.nat(), op: fc.constantFrom('replace', 'insert', 'delete'), ch: fc.oneof(fc.constantFrom('"', '\\', ',', '{', '}', ':', '0', '-', 'e', '.', ' ', '\u0000', 'A', '=', '\ud800'), fc.string({ unit: 'binary', maxLength: 2 })) }),
  { minLength: 1, maxLength: 5 },
);

function applyEdits(line: string, list: ReadonlyArray<{ at: number; op: string; ch: string }>): string {
  let s = line;
  for (const { at, op, ch } of list) {
    const i = at % (s.length + 1);
    if (op === 'insert') s = s.slice(0, i) + ch + s.slice(i);
    else if (op === 'delete') s = s.slice(0, i) + s.slice(i + 1);
    else s = s.slice(0, i) + ch + s.slice(i + 1);
  }
  return s;
}

const RUNS = { numRuns: 2000 };

describe('parseRecordInto on hostile lines', () => {
  it('never throws anything but MALFORMED_BUNDLE on arbitrary strings', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: 'binary', maxLength: 400 }), fc.string({ maxLength: 400 })), (line) => {
        const { error } = parse(line);
        if (error !== undefined) expect(isMalformed(error), String(error)).toBe(true);
      }),
      RUNS,
    );
  });

  it('never throws anything but MALFORMED_BUNDLE on valid records with random edits (and never yields an out-of-range field)', () => {
    fc.assert(
      fc.property(entry, edits, (e, list) => {
        const line = applyEdits(formatRecord(e).slice(0, -1), list);
        const { error, data } = parse(line);
        if (error !== undefined) expect(isMalformed(error), String(error)).toBe(true);
        else {
          // Accepted: the encoding is one well-formed entry (26-byte header + stated length).
          expect(data.length).toBeGreaterThanOrEqual(26);
          expect(data.readUInt32BE(22)).toBe(data.length - 26);
          expect(Number(data.readBigUInt64BE(0))).toBeLessThanOrEqual(MAX_SAFE);
          expect(Number(data.readBigUInt64BE(8))).toBeLessThanOrEqual(MAX_SAFE);
        }
      }),
      RUNS,
    );
  });

  it('refuses a record with a numeric field out of range or malformed, as MALFORMED_BUNDLE', () => {
    const good = formatRecord({ seq: 5, time: 7, session: 1, kind: 1, flags: 0, payload: Buffer.from('x'), hash: Buffer.alloc(32) }).slice(0, -1);
    for (const bad of [
      good.replace('"seq":5', '"seq":0'),
      good.replace('"seq":5', '"seq":9007199254740992'),
      good.replace('"seq":5', '"seq":05'),
      good.replace('"time":7', '"time":-7'),
      good.replace('"session":1', '"session":4294967296'),
      good.replace('"flags":0', '"flags":256'),
      good.replace('"kind":"line"', '"kind":"__proto__"'),
      good.replace('"kind":"line"', '"kind":"constructor"'),
    ]) {
      expect(isMalformed(parse(bad).error), bad).toBe(true);
    }
  });
});

describe('formatRecord -> parseRecordInto', () => {
  it('round-trips arbitrary entries to the same canonical encoding and hash', () => {
    fc.assert(
      fc.property(entry, (e) => {
        const line = formatRecord(e);
        expect(line.endsWith('\n')).toBe(true);
        const { error, data, hash } = parse(line.slice(0, -1));
        expect(error).toBeUndefined();
        expect(data.equals(encodeEntry(e))).toBe(true);
        expect(hash.equals(Buffer.from(e.hash))).toBe(true);
      }),
      RUNS,
    );
  });

  it('round-trips a payload of exactly MAX_PAYLOAD (16 MiB) bytes that is not UTF-8 (base64 form)', () => {
    const e: EntryRecordInput = { seq: 2, time: 1, session: 1, kind: 1, flags: 1, payload: Buffer.alloc(MAX_PAYLOAD, 0xff), hash: Buffer.alloc(HASH_SIZE, 7) };
    const line = formatRecord(e);
    expect(line).toContain('"base64":"');
    const { error, data } = parse(line.slice(0, -1));
    // A RangeError (regular-expression stack overflow) here is neither coded nor right: the record is valid.
    expect(error, String(error)).toBeUndefined();
    expect(data.equals(encodeEntry(e))).toBe(true);
  });

  it('round-trips a 4 MiB non-UTF-8 payload (well within the limit)', () => {
    const e: EntryRecordInput = { seq: 3, time: 1, session: 1, kind: 2, flags: 0, payload: Buffer.alloc(4 << 20, 0x80), hash: Buffer.alloc(HASH_SIZE, 9) };
    const { error, data } = parse(formatRecord(e).slice(0, -1));
    expect(error, String(error)).toBeUndefined();
    expect(data.equals(encodeEntry(e))).toBe(true);
  });
});
