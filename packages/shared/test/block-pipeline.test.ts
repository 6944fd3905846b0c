/**
 * The ingest pipeline's two addon paths, against the plain ones they stand
 * in for:
 * - BlockBuilder.start (number and chain a batch on a thread of its own,
 *   join later) gives byte for byte what finish gives, on both backends;
 * - BlockBuilder.addLines (whole short lines in one call per read) stores
 *   exactly the entries LineScanner's per-line emit stores, whatever the
 *   bytes, the read boundaries and maxLine.
 */
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { BlockBuilder, Flag, Kind, LineScanner, ZERO_HASH, chainEntriesStart, hashBackend, setHashBackend, type FinishedBlock } from '../src/index.js';
import { split } from './support.js';

afterEach(() => {
  setHashBackend('openssl-batch');
});

/** A builder holding a mix of kinds and sizes, including empty payloads. */
function filled(n: number, seed = 1): BlockBuilder {
  const b = new BlockBuilder(64);
  for (let i = 0; i < n; i++) {
    const len = (i * 37 + seed) % 300;
    const kind = i % 7 === 0 ? Kind.NOTICE : i % 3 === 0 ? Kind.STDERR : Kind.LINE;
    b.add(1_700_000_000_000 + i, 3, kind, i % 5 === 0 ? Flag.CONT : 0, Buffer.alloc(len, (i * 13 + seed) & 0xff));
  }
  return b;
}

const plain = (b: FinishedBlock): Record<string, unknown> => ({
  data: Buffer.from(b.data).toString('hex'),
  hashes: Buffer.from(b.hashes).toString('hex'),
  head: b.head.toString('hex'),
  count: b.count,
  firstSeq: b.firstSeq,
  lines: b.lines,
  lineBytes: b.lineBytes,
  firstTime: b.firstTime,
  lastTime: b.lastTime,
});

describe.each(['openssl-batch', 'node-crypto'] as const)('BlockBuilder.start with the %s backend', (backend) => {
  it('joins to the very block finish gives (seqs, hashes, head, counts)', () => {
    expect(setHashBackend(backend)).toBe(backend);
    const head = Buffer.alloc(32, 0x5a);
    for (const n of [1, 2, 100, 5000]) {
      const expected = plain(filled(n).finish(41, head));
      const b = filled(n);
      const p = b.start(41, head);
      expect(p.firstSeq).toBe(41);
      expect(p.prev.equals(head)).toBe(true);
      expect(plain(p.join())).toEqual(expected);
      // join is idempotent
      expect(plain(p.join())).toEqual(expected);
    }
    expect(head.equals(Buffer.alloc(32, 0x5a))).toBe(true);
  });

  it('refuses entries while the batch is being hashed, and is reusable after reset', () => {
    setHashBackend(backend);
    const b = filled(3000);
    const p = b.start(1, ZERO_HASH);
    expect(() => b.add(1, 1, Kind.LINE, 0, Buffer.from('late'))).toThrow(/being hashed/);
    const first = plain(p.join());
    b.reset();
    b.add(5, 1, Kind.LINE, 0, Buffer.from('next'));
    const again = new BlockBuilder();
    again.add(5, 1, Kind.LINE, 0, Buffer.from('next'));
    expect(plain(b.start(7, ZERO_HASH).join())).toEqual(plain(again.finish(7, ZERO_HASH)));
    expect(first.count).toBe(3000);
  });

  it('finish after start (a stale head: another batch came first) chains again on the new head', () => {
    setHashBackend(backend);
    const other = Buffer.alloc(32, 0x11);
    const expected = plain(filled(500).finish(900, other));
    const b = filled(500);
    const stale = b.start(10, ZERO_HASH);
    expect(stale.join().firstSeq).toBe(10);
    expect(plain(b.finish(900, other))).toEqual(expected);
  });

  it('refuses a firstSeq that is not a safe integer from 1', () => {
    setHashBackend(backend);
    for (const bad of [0, -1, 1.5, Number.NaN, Number.MAX_SAFE_INTEGER]) {
      expect(() => filled(2).start(bad, ZERO_HASH)).toThrow(RangeError);
    }
  });
});

describe('chainEntriesStart with the addon', () => {
  it('refuses offsets whose spans are shorter than an entry header', () => {
    expect(hashBackend()).toBe('openssl-batch');
    const data = Buffer.alloc(100);
    const out = Buffer.alloc(64);
    expect(() => chainEntriesStart(Buffer.alloc(32), data, Uint32Array.from([0, 10, 100]), 2, out, 1)).toThrow(RangeError);
    expect(() => chainEntriesStart(Buffer.alloc(32), data, Uint32Array.from([0, 50, 120]), 2, out, 1)).toThrow(RangeError);
    expect(() => chainEntriesStart(Buffer.alloc(31), data, Uint32Array.from([0, 50, 100]), 2, out, 1)).toThrow(RangeError);
  });
});

/** Scans `parts` into a builder, with or without the bulk path; the finished block as plain values. */
function scanInto(maxLine: number, parts: readonly Uint8Array[], bulk: boolean): { block: Record<string, unknown>; bulked: number } {
  const b = new BlockBuilder(32);
  const scanner = new LineScanner(maxLine);
  let time = 1000;
  let bulked = 0;
  const emit = (payload: Buffer, flags: number): void => b.add(time, 9, Kind.STDOUT, flags, payload);
  const take = (chunk: Buffer, pos: number): number => {
    const before = b.count;
    const reached = b.addLines(time, 9, Kind.STDOUT, chunk, pos, maxLine);
    bulked += b.count - before;
    return reached;
  };
  for (const p of parts) {
    time++;
    scanner.push(Buffer.from(p.buffer, p.byteOffset, p.byteLength), emit, bulk ? take : undefined);
  }
  scanner.end(emit);
  return { block: plain(b.finish(1, ZERO_HASH)), bulked };
}

const byteArray = (newlineWeight: number) =>
  fc
    .array(
      fc.oneof({ arbitrary: fc.constant(0x0a), weight: newlineWeight }, { arbitrary: fc.integer({ min: 0, max: 255 }), weight: 20 }),
      { maxLength: 600 },
    )
    .map((a) => Uint8Array.from(a));

describe('BlockBuilder.addLines (the bulk path) against per-line emit', () => {
  it('is in use here (the addon is built), so the property below compares two paths', () => {
    const { bulked } = scanInto(64, [Buffer.from('one\ntwo\nthree\n')], true);
    expect(bulked).toBe(3);
  });

  it('stores the same entries, byte for byte, whatever the bytes, reads and maxLine', () => {
    let bulkedTotal = 0;
    fc.assert(
      fc.property(fc.oneof(byteArray(6), byteArray(1), byteArray(40)), fc.array(fc.nat(), { maxLength: 30 }), fc.integer({ min: 1, max: 80 }), (input, cuts, max) => {
        const parts = split(input, cuts);
        const bulk = scanInto(max, parts, true);
        bulkedTotal += bulk.bulked;
        expect(bulk.block).toEqual(scanInto(max, parts, false).block);
      }),
      { numRuns: 1500 },
    );
    expect(bulkedTotal).toBeGreaterThan(1000);
  });

  it('grows the builder for a read of many empty lines (26 bytes stored per input byte)', () => {
    const input = Buffer.alloc(64 * 1024, 0x0a);
    const bulk = scanInto(16, [input], true);
    expect(bulk.bulked).toBe(input.length);
    expect(bulk.block).toEqual(scanInto(16, [input], false).block);
  });

  it('takes nothing for a kind that is not a line, and nothing without the addon', () => {
    const b = new BlockBuilder();
    const src = Buffer.from('a\nb\n');
    expect(b.addLines(1, 1, Kind.NOTICE, src, 0, 64)).toBe(0);
    setHashBackend('node-crypto');
    expect(b.addLines(1, 1, Kind.LINE, src, 0, 64)).toBe(0);
    expect(b.count).toBe(0);
  });
});
