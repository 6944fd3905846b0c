/**
 * Known-answer tests: the TypeScript code must reproduce, byte for byte, the
 * vectors written by docs/vectors/gen_vectors.py, an independent Python
 * implementation of docs/FORMAT.md.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  BlockBuilder,
  ChainHasher,
  ChainVerifier,
  ENTRY_HEADER_SIZE,
  HASH_SIZE,
  Kind,
  LineScanner,
  ZERO_HASH,
  canonicalBytes,
  chainEntries,
  decodeEntry,
  decodeHeader,
  encodeEntry,
  encodeGenesis,
  entryHash,
  genesisHash,
  type CanonicalValue,
  type Entry,
} from '../src/index.js';
import { BACKENDS, hex, loadVectors, useBackend, type EntryFields, type ScannerVector } from './support.js';

const V = loadVectors();

const toEntry = (f: EntryFields): Entry => ({
  seq: f.seq,
  time: f.time,
  session: f.session,
  kind: f.kind,
  flags: f.flags,
  payload: hex(f.payload_hex),
});

describe('the vector file', () => {
  it('has a comment on every case and enough cases of each kind', () => {
    expect(V.genesis.length).toBeGreaterThanOrEqual(8);
    expect(V.entries.length).toBeGreaterThanOrEqual(8);
    expect(V.chains.length).toBeGreaterThanOrEqual(3);
    expect(V.scanner.length).toBeGreaterThanOrEqual(10);
    for (const c of [...V.genesis, ...V.entries, ...V.chains, ...V.scanner]) {
      expect(c.comment.length).toBeGreaterThan(0);
    }
  });
});

describe('genesis encoding', () => {
  describe.each(V.genesis.map((g) => [g.comment, g] as const))('%s', (_comment, g) => {
    const id = { vm: g.vm, name: g.name, created: g.created };

    it('encodes to the vector bytes', () => {
      expect(encodeGenesis(id).toString('hex')).toBe(g.encoding_hex);
    });

    it('hashes to the vector H0', () => {
      expect(genesisHash(id).toString('hex')).toBe(g.hash_hex);
    });
  });

  it('gives a different H0 for every identity in the vectors', () => {
    const hashes = new Set(V.genesis.map((g) => g.hash_hex));
    expect(hashes.size).toBe(V.genesis.length);
  });
});

describe('entry encoding', () => {
  describe.each(V.entries.map((e) => [e.comment, e] as const))('%s', (_comment, v) => {
    it('encodes to the vector bytes', () => {
      const enc = encodeEntry(toEntry(v));
      expect(enc.length).toBe(ENTRY_HEADER_SIZE + v.payload_hex.length / 2);
      expect(enc.toString('hex')).toBe(v.encoding_hex);
    });

    it('decodes back to the same fields and payload', () => {
      const { entry, next } = decodeEntry(hex(v.encoding_hex));
      expect(next).toBe(v.encoding_hex.length / 2);
      expect({ ...entry, payload: Buffer.from(entry.payload).toString('hex') }).toEqual({
        seq: v.seq,
        time: v.time,
        session: v.session,
        kind: v.kind,
        flags: v.flags,
        payload: v.payload_hex,
      });
    });
  });

  it('decodes all entries laid end to end, each from its offset', () => {
    const all = Buffer.concat(V.entries.map((e) => hex(e.encoding_hex)));
    let off = 0;
    for (const v of V.entries) {
      const h = decodeHeader(all, off);
      expect(h?.seq).toBe(v.seq);
      const { entry, next } = decodeEntry(all, off);
      expect(entry.seq).toBe(v.seq);
      expect(Buffer.from(entry.payload).toString('hex')).toBe(v.payload_hex);
      off = next;
    }
    expect(off).toBe(all.length);
    expect(decodeHeader(all, off)).toBeUndefined();
  });

  it('writes session events as canonical JSON (re-encoding the parsed payload gives the same bytes)', () => {
    const events = V.entries.filter((e) => e.kind === Kind.SESSION_OPEN || e.kind === Kind.SESSION_CLOSE);
    expect(events.length).toBeGreaterThanOrEqual(2);
    for (const e of events) {
      const payload = hex(e.payload_hex);
      const parsed = JSON.parse(payload.toString('utf8')) as CanonicalValue;
      expect(canonicalBytes(parsed).toString('hex')).toBe(e.payload_hex);
    }
  });
});

/** Encodings of a vector chain laid end to end, with offsets as chainEntries takes them. */
function layOut(encodings: readonly Buffer[]): { data: Buffer; offsets: Uint32Array } {
  const offsets = new Uint32Array(encodings.length + 1);
  encodings.forEach((e, i) => (offsets[i + 1] = offsets[i]! + e.length));
  return { data: Buffer.concat(encodings), offsets };
}

describe('hash chain', () => {
  describe.each(V.chains.map((c) => [c.comment, c] as const))('%s', (_comment, c) => {
    const id = { vm: c.vm, name: c.name, created: c.created };
    const encodings = c.entries.map((e) => encodeEntry(toEntry(e)));

    it('gives the vector hashes with entryHash, one entry at a time', () => {
      let prev: Buffer = genesisHash(id);
      const got: string[] = [];
      for (const enc of encodings) {
        prev = entryHash(prev, enc);
        got.push(prev.toString('hex'));
      }
      expect(got).toEqual(c.hashes_hex);
      expect(prev.toString('hex')).toBe(c.head_hex);
    });

    it('gives the vector hashes with ChainHasher, and the vector head', () => {
      const hasher = new ChainHasher(genesisHash(id));
      const got = encodings.map((enc) => Buffer.from(hasher.push(enc)).toString('hex'));
      expect(got).toEqual(c.hashes_hex);
      expect(hasher.head().toString('hex')).toBe(c.head_hex);
    });

    for (const { backend, available } of BACKENDS) {
      describe.skipIf(!available)(`with the ${backend} hash backend`, () => {
        useBackend(backend, { beforeAll, afterAll });

        it('gives the vector bytes, hashes and head with BlockBuilder.finish', () => {
          // A tiny initial buffer forces the builder to grow while adding.
          const builder = new BlockBuilder(8);
          for (const e of c.entries) builder.add(e.time, e.session, e.kind, e.flags, hex(e.payload_hex));
          const h0 = genesisHash(id);
          const block = builder.finish(1, h0);
          expect(block.count).toBe(c.entries.length);
          expect(block.firstSeq).toBe(1);
          expect(Buffer.from(block.data).toString('hex')).toBe(Buffer.concat(encodings).toString('hex'));
          expect(Buffer.from(block.hashes).toString('hex')).toBe(c.hashes_hex.join(''));
          expect(block.head.toString('hex')).toBe(c.head_hex);
          expect(h0.toString('hex')).toBe(genesisHash(id).toString('hex')); // the given head is not modified
        });

        it('gives the same hashes and head when committed in two batches', () => {
          const cut = Math.floor(c.entries.length / 2);
          const builder = new BlockBuilder(8);
          let head: Buffer = genesisHash(id);
          const hashes: string[] = [];
          for (const [first, part] of [
            [1, c.entries.slice(0, cut)],
            [cut + 1, c.entries.slice(cut)],
          ] as const) {
            builder.reset();
            for (const e of part) builder.add(e.time, e.session, e.kind, e.flags, hex(e.payload_hex));
            const block = builder.finish(first, head);
            hashes.push(Buffer.from(block.hashes).toString('hex'));
            head = Buffer.from(block.head);
          }
          expect(hashes.join('')).toBe(c.hashes_hex.join(''));
          expect(head.toString('hex')).toBe(c.head_hex);
        });

        it('gives the vector hashes with chainEntries, updating the head in place', () => {
          const { data, offsets } = layOut(encodings);
          const head = genesisHash(id);
          const out = Buffer.alloc(encodings.length * HASH_SIZE);
          expect(chainEntries(head, data, offsets, encodings.length, out, false)).toBe(-1);
          expect(out.toString('hex')).toBe(c.hashes_hex.join(''));
          expect(head.toString('hex')).toBe(c.head_hex);
        });

        it('confirms the vector hashes with chainEntries in compare mode, and finds a changed one', () => {
          const { data, offsets } = layOut(encodings);
          const stored = hex(c.hashes_hex.join(''));
          expect(chainEntries(genesisHash(id), data, offsets, encodings.length, stored, true)).toBe(-1);
          if (encodings.length > 0) {
            const last = encodings.length - 1;
            stored[last * HASH_SIZE + 7] = stored[last * HASH_SIZE + 7]! ^ 1;
            expect(chainEntries(genesisHash(id), data, offsets, encodings.length, stored, true)).toBe(last);
          }
        });

        it('is accepted by ChainVerifier.push with its stored hashes, entry count and head', () => {
          const verifier = new ChainVerifier(id);
          encodings.forEach((enc, i) => verifier.push(enc, hex(c.hashes_hex[i]!)));
          const facts = verifier.end({ entries: c.entries.length, head: hex(c.head_hex) });
          expect(facts.entries).toBe(c.entries.length);
          expect(facts.head).toBe(c.head_hex);
        });

        it('is accepted by ChainVerifier.pushBlock as one block, with and without stored hashes', () => {
          for (const stored of [hex(c.hashes_hex.join('')), undefined]) {
            const verifier = new ChainVerifier(id);
            if (encodings.length > 0) expect(verifier.pushBlock(Buffer.concat(encodings), stored)).toBe(encodings.length);
            const facts = verifier.end({ entries: c.entries.length, head: hex(c.head_hex) });
            expect(facts.head).toBe(c.head_hex);
          }
        });
      });
    }
  });

  it('ChainHasher.reset starts over from another head', () => {
    const c = V.chains.find((x) => x.entries.length >= 2)!;
    const hasher = new ChainHasher(ZERO_HASH);
    hasher.push(Buffer.from('unrelated'));
    hasher.reset(genesisHash({ vm: c.vm, name: c.name, created: c.created }));
    for (const e of c.entries) hasher.push(encodeEntry(toEntry(e)));
    expect(hasher.head().toString('hex')).toBe(c.head_hex);
  });

  it('ChainHasher grows its scratch buffer for an entry larger than it (and stays correct)', () => {
    const id = { vm: 'work', name: 'big', created: 1 };
    const big = encodeEntry({ seq: 1, time: 1, session: 1, kind: Kind.LINE, flags: 0, payload: Buffer.alloc(100_000, 0x61) });
    const small = encodeEntry({ seq: 2, time: 1, session: 1, kind: Kind.LINE, flags: 0, payload: Buffer.from('x') });
    const hasher = new ChainHasher(genesisHash(id));
    hasher.push(big);
    hasher.push(small);
    expect(hasher.head().toString('hex')).toBe(entryHash(entryHash(genesisHash(id), big), small).toString('hex'));
  });

  for (const { backend, available } of BACKENDS) {
    describe.skipIf(!available)(`chainEntries with the ${backend} backend`, () => {
      useBackend(backend, { beforeAll, afterAll });

      it('hashes 5000 entries of 0..300 bytes exactly as entryHash does (batch and buffer growth)', () => {
        const encodings = Array.from({ length: 5000 }, (_, i) =>
          encodeEntry({ seq: i + 1, time: i, session: 1, kind: Kind.LINE, flags: 0, payload: Buffer.alloc(i % 301, i & 0xff) }),
        );
        const { data, offsets } = layOut(encodings);
        const head = Buffer.from(ZERO_HASH);
        const out = Buffer.alloc(encodings.length * HASH_SIZE);
        chainEntries(head, data, offsets, encodings.length, out, false);
        let prev: Buffer = Buffer.from(ZERO_HASH);
        for (const [i, enc] of encodings.entries()) {
          prev = entryHash(prev, enc);
          if (i % 997 === 0) expect(out.subarray(i * HASH_SIZE, (i + 1) * HASH_SIZE).toString('hex')).toBe(prev.toString('hex'));
        }
        expect(head.toString('hex')).toBe(prev.toString('hex'));
      });

      it('refuses buffers that are too short with a RangeError', () => {
        const { data, offsets } = layOut([Buffer.from('x')]);
        expect(() => chainEntries(Buffer.alloc(31), data, offsets, 1, Buffer.alloc(32), false)).toThrow(RangeError);
        expect(() => chainEntries(Buffer.alloc(32), data, offsets, 1, Buffer.alloc(31), false)).toThrow(RangeError);
        expect(() => chainEntries(Buffer.alloc(32), data, offsets, 2, Buffer.alloc(64), false)).toThrow(RangeError);
      });
    });
  }
});

/** Ways to split an input into reads; the entries must not depend on them. */
function chunkings(input: Buffer): Array<[string, Buffer[]]> {
  const out: Array<[string, Buffer[]]> = [['one read', [input]]];
  for (const size of [1, 2, 3, 5]) {
    const parts: Buffer[] = [];
    for (let i = 0; i < input.length; i += size) parts.push(input.subarray(i, i + size));
    out.push([`${size}-byte reads`, parts]);
  }
  for (let cut = 0; cut <= input.length; cut++) {
    out.push([`two reads cut at ${cut}`, [input.subarray(0, cut), Buffer.alloc(0), input.subarray(cut)]]);
  }
  return out;
}

function scanAll(maxLine: number, parts: readonly Buffer[]): Array<{ payload_hex: string; flags: number }> {
  const scanner = new LineScanner(maxLine);
  const got: Array<{ payload_hex: string; flags: number }> = [];
  // The payload is only valid during the call: copy it out right away.
  const emit = (payload: Buffer, flags: number): void => {
    got.push({ payload_hex: payload.toString('hex'), flags });
  };
  for (const p of parts) scanner.push(p, emit);
  scanner.end(emit);
  expect(scanner.buffered).toBe(0);
  return got;
}

describe('line scanner', () => {
  describe.each(V.scanner.map((s) => [s.comment, s] as const))('%s', (_comment, s: ScannerVector) => {
    it('emits the vector lines whatever the chunking', () => {
      for (const [how, parts] of chunkings(hex(s.input_hex))) {
        expect(scanAll(s.maxLine, parts), how).toEqual(s.lines);
      }
    });
  });
});
