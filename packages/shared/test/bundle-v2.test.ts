/**
 * Bundle version 2 records (docs/FORMAT.md 9.7) and the fast paths behind
 * them, on both hashing backends: tagRecords / TaggedRecordSplitter, the
 * verifier's pushTagged and its pipelined pushTaggedAsync (hashing on a
 * worker thread), and pushBlock's two-thread comparison of large blocks
 * against stored hashes. Every path must name the first changed seq exactly,
 * whichever run or half of a block it falls in, and before a later failure.
 */
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import {
  AppendlogError,
  ChainVerifier,
  HASH_SIZE,
  Kind,
  TAG_BYTES,
  TaggedRecordSplitter,
  TarStream,
  ArchiveLayout,
  canonicalBytes,
  tagRecords,
  tarHeader,
  tarPadding,
  TAR_END,
  type LogIdentity,
} from '../src/index.js';
import { BACKENDS, buildChain, split, useBackend, type BuiltChain, type Item } from './support.js';

const ID: LogIdentity = { vm: 'work', name: 'big', created: 1_700_000_000_000 };
const N = 9000; // lines: more than 2048 per block, so the two-thread path is taken

function items(): Item[] {
  const out: Item[] = [
    { time: 1, session: 1, kind: Kind.SESSION_OPEN, payload: canonicalBytes({ argument: 'big', maxLine: 65536, mode: 'raw', pid: 1, session: 1, vm: ID.vm }) },
  ];
  for (let i = 0; i < N; i++) out.push({ time: 2, session: 1, kind: Kind.LINE, payload: `line ${i} ${'x'.repeat(i % 97)}` });
  out.push({ time: 3, session: 1, kind: Kind.SESSION_CLOSE, payload: canonicalBytes({ bytes: 0, lines: N, reason: 'eof', session: 1 }) });
  return out;
}

let chain: BuiltChain;
beforeAll(() => {
  chain = buildChain(ID, items());
});

const data = (): Buffer => Buffer.concat(chain.encodings);
const hashes = (): Buffer => Buffer.concat(chain.hashes);
const records = (): Buffer => tagRecords(data(), hashes(), chain.encodings.length);

/** Offset of entry `seq`'s payload in the version 2 records. */
function payloadAt(seq: number): number {
  let off = 0;
  for (let i = 0; i < seq - 1; i++) off += chain.encodings[i]!.length + TAG_BYTES;
  return off + 26;
}

function code(e: unknown): { code: string; seq: number | undefined } {
  expect(e).toBeInstanceOf(AppendlogError);
  return { code: (e as AppendlogError).code, seq: (e as AppendlogError).seq };
}

async function feedAsync(recs: Buffer, cuts: number[]): Promise<ChainVerifier> {
  const v = new ChainVerifier(ID);
  const runs: Buffer[] = [];
  const s = new TaggedRecordSplitter((r) => runs.push(Buffer.from(r)));
  try {
    for (const part of split(recs, cuts)) {
      s.push(Buffer.from(part));
      for (const r of runs.splice(0)) await v.pushTaggedAsync(r, TAG_BYTES);
    }
    await v.settle();
  } catch (e) {
    await v.settle().catch(() => undefined);
    throw e;
  }
  s.end(v.entries + 1);
  return v;
}

for (const { backend, available } of BACKENDS) {
  describe.skipIf(!available)(`bundle version 2 with the ${backend} backend`, () => {
    useBackend(backend, { beforeAll, afterAll });

    it('tagRecords writes each encoding followed by the first 8 bytes of its hash', () => {
      const r = records();
      expect(r.length).toBe(data().length + chain.encodings.length * TAG_BYTES);
      const first = chain.encodings[0]!.length;
      expect(r.subarray(first, first + TAG_BYTES).equals(chain.hashes[0]!.subarray(0, TAG_BYTES))).toBe(true);
      expect(() => tagRecords(data().subarray(1), hashes(), chain.encodings.length)).toThrow(RangeError);
    });

    it('the records verify whatever the chunking, sync and pipelined, to the same head', async () => {
      const cuts = [1, 25, 26, 27, 4096, 70_000, 70_001, 150_000, 400_000];
      const v1 = new ChainVerifier(ID);
      const s = new TaggedRecordSplitter((r) => v1.pushTagged(r, TAG_BYTES));
      for (const part of split(records(), cuts)) s.push(Buffer.from(part));
      s.end(v1.entries + 1);
      expect(v1.end({ entries: N + 2, head: chain.head }).head).toBe(chain.head.toString('hex'));
      const v2 = await feedAsync(records(), cuts);
      expect(v2.end({ entries: N + 2, head: chain.head }).head).toBe(chain.head.toString('hex'));
    });

    it('a changed payload byte is CHAIN_HASH_MISMATCH at its exact seq, in an early run, before a later structural failure', async () => {
      const r = Buffer.from(records());
      r[payloadAt(1500)] = r[payloadAt(1500)]! ^ 0x20;
      // A later entry with a wrong seq: SEQ_OUT_OF_ORDER there, but the change at 1500 comes first.
      r[payloadAt(8000) - 26 + 7] = r[payloadAt(8000) - 26 + 7]! ^ 0x01;
      await expect(feedAsync(r, [20_000, 40_000, 60_000, 80_000, 200_000])).rejects.toSatisfy((e) => {
        expect(code(e)).toEqual({ code: 'CHAIN_HASH_MISMATCH', seq: 1500 });
        return true;
      });
      const v = new ChainVerifier(ID);
      let err: unknown;
      try {
        v.pushTagged(r, TAG_BYTES);
      } catch (e) {
        err = e;
      }
      expect(code(err).seq).toBe(1500);
    });

    it('a structural failure alone is named at its seq by the pipelined path too', async () => {
      const r = Buffer.from(records());
      r[payloadAt(8000) - 26 + 7] = r[payloadAt(8000) - 26 + 7]! ^ 0x01;
      // E3 comes before E8 for an entry (6.1), as in version 1: the reordering is named at 8000.
      await expect(feedAsync(r, [30_000, 90_000])).rejects.toSatisfy((e) => {
        expect(code(e)).toEqual({ code: 'SEQ_OUT_OF_ORDER', seq: 8000 });
        return true;
      });
    });

    it('a changed tag alone names its seq; a cut record is MALFORMED_BUNDLE', async () => {
      const r = Buffer.from(records());
      const tagAt = payloadAt(4000) - 26 + chain.encodings[3999]!.length; // first tag byte of seq 4000
      r[tagAt] = r[tagAt]! ^ 0xff;
      await expect(feedAsync(r, [50_000])).rejects.toSatisfy((e) => {
        expect(code(e)).toEqual({ code: 'CHAIN_HASH_MISMATCH', seq: 4000 });
        return true;
      });
      await expect(feedAsync(records().subarray(0, records().length - 3), [])).rejects.toSatisfy((e) => {
        expect(code(e).code).toBe('MALFORMED_BUNDLE');
        return true;
      });
    });

    it('receipts (checkpoints) are checked on the pipelined path', async () => {
      const v = new ChainVerifier(ID);
      v.expectHeads([{ seq: 5000, head: Buffer.alloc(HASH_SIZE, 1), label: 'receipt' }]);
      await expect(v.pushTaggedAsync(records(), TAG_BYTES).then(() => v.settle())).rejects.toSatisfy((e) => {
        expect(code(e)).toEqual({ code: 'RECEIPT_MISMATCH', seq: 5000 });
        return true;
      });
    });

    it('pushBlock against stored hashes (two threads on a large block) names a change in either half exactly', () => {
      for (const seq of [10, 2000, 4600, 8999]) {
        const d = data();
        let off = 0;
        for (let i = 0; i < seq - 1; i++) off += chain.encodings[i]!.length;
        d[off + 26] = d[off + 26]! ^ 0x01;
        const v = new ChainVerifier(ID);
        let err: unknown;
        try {
          v.pushBlock(d, hashes());
        } catch (e) {
          err = e;
        }
        expect(code(err), `change at ${seq}`).toEqual({ code: 'CHAIN_HASH_MISMATCH', seq });
      }
      const ok = new ChainVerifier(ID);
      ok.pushBlock(data(), hashes());
      expect(ok.end({ entries: N + 2, head: chain.head }).entries).toBe(N + 2);
    });
  });
}

describe('TarStream and ArchiveLayout (docs/FORMAT.md 9.6)', () => {
  const limits = { manifest: 4 << 20, signature: 64 << 10, signatureFiles: 64 };
  async function* chunks(b: Buffer, size: number): AsyncGenerator<Buffer> {
    for (let i = 0; i < b.length; i += size) yield b.subarray(i, i + size);
  }
  const member = (name: string, body: Buffer): Buffer => Buffer.concat([tarHeader(name, body.length, 0), body, tarPadding(body.length)]);

  it('reads the members in order whatever the chunk size, and base-256 sizes', async () => {
    const arc = Buffer.concat([member('manifest.json', Buffer.from('{}\n')), member('entries.bin', Buffer.alloc(1000, 7)), TAR_END, Buffer.alloc(4096)]);
    for (const size of [1, 7, 512, 100_000]) {
      const t = new TarStream(chunks(arc, size));
      const layout = new ArchiveLayout(limits);
      const seen: string[] = [];
      for (let m = await t.next(); m !== null; m = await t.next()) {
        expect(layout.admit(m)).toBe(m.name === 'manifest.json' ? 'manifest' : 'entries');
        let n = 0;
        for await (const c of t.body()) n += c.length;
        expect(n).toBe(m.size);
        seen.push(m.name);
      }
      layout.finish();
      expect(seen).toEqual(['manifest.json', 'entries.bin']);
    }
    const big = tarHeader('entries.bin', 2 ** 34, 0);
    expect(big[124]).toBe(0x80);
    const t = new TarStream(chunks(Buffer.concat([big]), 512));
    expect((await t.next())?.size).toBe(2 ** 34);
  });
});
