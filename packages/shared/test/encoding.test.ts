/**
 * Field ranges of the canonical encodings (docs/FORMAT.md sections 2 and 3):
 * every u64 holds an integer in 0..2^53-1, and a value outside a field's range
 * is refused rather than silently wrapped, so that two different records can
 * never share an encoding (and so a hash).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  ENTRY_HEADER_SIZE,
  Kind,
  MAX_PAYLOAD,
  MAX_SAFE,
  decodeEntry,
  decodeHeader,
  encodeEntry,
  encodeGenesis,
  genesisHash,
  readU64,
  writeU64,
  type Entry,
} from '../src/index.js';
import { expectAppendlogError } from './support.js';

const ok: Entry = { seq: 1, time: 1_700_000_000_000, session: 1, kind: Kind.LINE, flags: 0, payload: Buffer.from('x') };
const ID = { vm: 'work', name: 'build-1', created: 1_700_000_000_000 };

describe('u64 fields', () => {
  it('write and read back every integer in 0..2^53-1, big-endian', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: MAX_SAFE }), (n) => {
        const buf = Buffer.alloc(8);
        writeU64(buf, 0, n);
        expect(buf.readBigUInt64BE(0)).toBe(BigInt(n));
        expect(readU64(buf, 0)).toBe(n);
      }),
      { numRuns: 500 },
    );
  });

  it('read as -1 when above 2^53-1 (the caller turns that into BAD_ENTRY)', () => {
    const buf = Buffer.alloc(8);
    buf.writeBigUInt64BE(2n ** 53n, 0);
    expect(readU64(buf, 0)).toBe(-1);
    buf.writeBigUInt64BE(2n ** 64n - 1n, 0);
    expect(readU64(buf, 0)).toBe(-1);
  });
});

describe('encodeEntry', () => {
  describe.each([
    ['seq -1', { seq: -1 }],
    ['seq 1.5', { seq: 1.5 }],
    ['seq 2^53', { seq: 2 ** 53 }],
    ['seq NaN', { seq: Number.NaN }],
    ['time -1', { time: -1 }],
    ['time 2^53', { time: 2 ** 53 }],
    ['session -1', { session: -1 }],
    ['session 2^32', { session: 2 ** 32 }],
    ['kind 256', { kind: 256 }],
    ['flags 256', { flags: 256 }],
    ['flags -1', { flags: -1 }],
  ])('when given %s', (_what, patch) => {
    it('fails with BAD_ENTRY', () => {
      expectAppendlogError(() => encodeEntry({ ...ok, ...patch }), 'BAD_ENTRY');
    });
  });

  it('fails with BAD_ENTRY for a payload one byte above MAX_PAYLOAD', () => {
    expectAppendlogError(() => encodeEntry({ ...ok, payload: new Uint8Array(MAX_PAYLOAD + 1) }), 'BAD_ENTRY');
  });
});

describe('decodeEntry', () => {
  const enc = encodeEntry({ ...ok, payload: Buffer.from('hello') });

  it('fails with BAD_ENTRY when the payload is cut short', () => {
    expectAppendlogError(() => decodeEntry(enc.subarray(0, enc.length - 1)), 'BAD_ENTRY');
  });

  it('fails with BAD_ENTRY when the header is cut short', () => {
    expectAppendlogError(() => decodeEntry(enc.subarray(0, ENTRY_HEADER_SIZE - 1)), 'BAD_ENTRY');
  });

  it('fails with BAD_ENTRY for a seq above 2^53-1', () => {
    const bad = Buffer.from(enc);
    bad.writeBigUInt64BE(2n ** 53n, 0);
    expectAppendlogError(() => decodeEntry(bad), 'BAD_ENTRY');
  });

  it('returns undefined from decodeHeader when fewer than 26 bytes remain', () => {
    expect(decodeHeader(enc, enc.length - ENTRY_HEADER_SIZE + 1)).toBeUndefined();
  });

  it('round-trips arbitrary entries', () => {
    fc.assert(
      fc.property(
        fc.record({
          seq: fc.integer({ min: 0, max: MAX_SAFE }),
          time: fc.integer({ min: 0, max: MAX_SAFE }),
          session: fc.integer({ min: 0, max: 0xffffffff }),
          kind: fc.integer({ min: 0, max: 255 }),
          flags: fc.integer({ min: 0, max: 255 }),
          payload: fc.uint8Array({ maxLength: 64 }),
        }),
        (e) => {
          const { entry, next } = decodeEntry(encodeEntry(e));
          expect(next).toBe(ENTRY_HEADER_SIZE + e.payload.length);
          expect({ ...entry, payload: Buffer.from(entry.payload) }).toEqual({ ...e, payload: Buffer.from(e.payload) });
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('encodeGenesis', () => {
  it('fails with BAD_ENTRY for a vm or name longer than 255 UTF-8 bytes', () => {
    expectAppendlogError(() => encodeGenesis({ ...ID, name: 'n'.repeat(256) }), 'BAD_ENTRY');
    expectAppendlogError(() => encodeGenesis({ ...ID, vm: '\u00e9'.repeat(128) }), 'BAD_ENTRY');
  });

  it('accepts 255-byte names (the u8 length limit)', () => {
    expect(encodeGenesis({ ...ID, name: 'n'.repeat(255) }).length).toBe(21 + 1 + 1 + 4 + 1 + 255 + 8);
  });

  // A created time outside 0..2^53-1 has no u64 encoding in the format; written
  // anyway it wraps or truncates onto another identity's genesis.
  describe.each([
    ['-1', -1],
    ['1.5', 1.5],
    ['NaN', Number.NaN],
    ['2^53', 2 ** 53],
    ['2^64', 2 ** 64],
    ['Infinity', Number.POSITIVE_INFINITY],
  ])('when created is %s', (_what, created) => {
    it('fails with BAD_ENTRY instead of encoding another value', () => {
      expectAppendlogError(() => encodeGenesis({ ...ID, created }), 'BAD_ENTRY');
    });
  });

  it('never gives two identities with different created values the same genesis hash', () => {
    const hashOf = (created: number): string | undefined => {
      try {
        return genesisHash({ ...ID, created }).toString('hex');
      } catch {
        return undefined; // refused: fine
      }
    };
    for (const [a, b] of [
      [0, Number.NaN],
      [1, 1.5],
      [0, 2 ** 64],
    ] as const) {
      const ha = hashOf(a);
      expect(ha).toBeDefined();
      expect(hashOf(b)).not.toBe(ha);
    }
  });
});
