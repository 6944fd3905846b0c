/**
 * The verifier checks a version 2 run's line entries where they lie (a fast
 * path without a header object per entry: ChainVerifier.checkTagged) and
 * sends anything else to the full check. pushBlock (store blocks, version 1
 * batches) always takes the full check. So for every header rule the fast
 * path looks at, a line entry that breaks only that rule (its chain hashed
 * again, so nothing else is wrong) must fail the same way, at the same seq,
 * on both paths; and a good chain must give the same facts.
 */
import { describe, expect, it } from 'vitest';
import { AppendlogError, ChainVerifier, Flag, Kind, TAG_BYTES, canonicalBytes, entryHash, genesisHash, tagRecords, type ChainFacts, type LogIdentity } from '../src/index.js';
import { buildChain, type Item } from './support.js';

const ID: LogIdentity = { vm: 'work', name: 'fast', created: 1_700_000_000_000 };

function base(extra: Item[] = []): Item[] {
  const out: Item[] = [
    { time: 5, session: 1, kind: Kind.SESSION_OPEN, payload: canonicalBytes({ argument: 'fast', maxLine: 65536, mode: 'raw', pid: 1, session: 1, vm: ID.vm }) },
  ];
  for (let i = 0; i < 20; i++) out.push({ time: 6 + i, session: 1, kind: i % 3 === 0 ? Kind.STDERR : Kind.LINE, flags: i === 4 ? Flag.CONT : i === 19 ? Flag.NOEOL : 0, payload: `line ${i}` });
  return [...out, ...extra];
}

/** The encodings with entry `seq` changed by `edit`, and the chain hashed again over them. */
function variant(items: Item[], seq: number | null, edit: (e: Buffer) => void): { data: Buffer; hashes: Buffer; count: number } {
  const chain = buildChain(ID, items);
  const encs = chain.encodings.map((e) => Buffer.from(e));
  if (seq !== null) edit(encs[seq - 1]!);
  let h = genesisHash(ID);
  const hashes = encs.map((e) => (h = entryHash(h, e)));
  return { data: Buffer.concat(encs), hashes: Buffer.concat(hashes), count: encs.length };
}

type Outcome = { ok: true; facts: ChainFacts } | { ok: false; code: string; seq: number | undefined };

function outcome(run: (v: ChainVerifier) => void | Promise<void>): Promise<Outcome> {
  const v = new ChainVerifier(ID);
  return (async () => {
    try {
      await run(v);
      return { ok: true as const, facts: v.end() };
    } catch (e) {
      if (!(e instanceof AppendlogError)) throw e;
      return { ok: false as const, code: e.code, seq: e.seq };
    }
  })();
}

async function allPaths(x: { data: Buffer; hashes: Buffer; count: number }): Promise<[Outcome, Outcome, Outcome]> {
  const recs = tagRecords(x.data, x.hashes, x.count);
  return Promise.all([
    outcome((v) => void v.pushBlock(x.data, x.hashes)),
    outcome((v) => void v.pushTagged(recs, TAG_BYTES)),
    outcome(async (v) => {
      await v.pushTaggedAsync(recs, TAG_BYTES);
      await v.settle();
    }),
  ]);
}

const setU32 = (e: Buffer, at: number, v: number): void => void e.writeUInt32BE(v >>> 0, at);

const CASES: Array<{ name: string; items?: Item[]; seq: number | null; edit: (e: Buffer) => void; code: string | null }> = [
  { name: 'a good chain (lines, CONT, NOEOL, STDERR)', seq: null, edit: () => undefined, code: null },
  { name: 'an unknown kind', seq: 10, edit: (e) => void (e[20] = 0x7f), code: 'BAD_ENTRY' },
  { name: 'a kind that is not a line (a notice with flags)', seq: 10, edit: (e) => ((e[20] = Kind.NOTICE), (e[21] = Flag.CONT)), code: 'BAD_ENTRY' },
  { name: 'invalid flags', seq: 10, edit: (e) => void (e[21] = 0x03), code: 'BAD_ENTRY' },
  { name: 'a session never opened', seq: 10, edit: (e) => setU32(e, 16, 2), code: 'BAD_ENTRY' },
  { name: 'session 0', seq: 10, edit: (e) => setU32(e, 16, 0), code: 'BAD_ENTRY' },
  { name: 'a seq field one ahead', seq: 10, edit: (e) => setU32(e, 4, 11), code: 'SEQ_OUT_OF_ORDER' },
  { name: 'a seq field beyond 2^53 - 1', seq: 10, edit: (e) => setU32(e, 0, 0x00200000), code: 'BAD_ENTRY' },
  { name: 'a time beyond 2^53 - 1', seq: 10, edit: (e) => setU32(e, 8, 0x00200000), code: 'BAD_ENTRY' },
  {
    name: 'a line of a session after its close',
    items: base([
      { time: 30, session: 1, kind: Kind.SESSION_CLOSE, payload: canonicalBytes({ bytes: 0, lines: 20, reason: 'eof', session: 1 }) },
      { time: 31, session: 1, kind: Kind.LINE, payload: 'late' },
    ]),
    seq: null,
    edit: () => undefined,
    code: 'BAD_ENTRY',
  },
  {
    name: 'a line after the seal',
    items: base([
      { time: 30, session: 1, kind: Kind.SESSION_CLOSE, payload: canonicalBytes({ bytes: 0, lines: 20, reason: 'eof', session: 1 }) },
      { time: 31, session: 0, kind: Kind.SEAL, payload: canonicalBytes({ seal: 1 }) },
      { time: 32, session: 1, kind: Kind.LINE, payload: 'after the seal' },
    ]),
    seq: null,
    edit: () => undefined,
    code: 'ENTRY_AFTER_SEAL',
  },
];

describe('the line fast path of a version 2 run against the full check', () => {
  it.each(CASES.map((c) => [c.name, c] as const))('%s: the same outcome on pushBlock, pushTagged and pushTaggedAsync', async (_name, c) => {
    const [block, tagged, pipelined] = await allPaths(variant(c.items ?? base(), c.seq, c.edit));
    if (c.code === null) expect(block.ok).toBe(true);
    else expect(block).toMatchObject({ ok: false, code: c.code });
    expect(tagged).toEqual(block);
    expect(pipelined).toEqual(block);
  });

  it('counts lines, bytes and times the same on both paths for a long run', async () => {
    const items = base();
    for (let i = 0; i < 5000; i++) items.push({ time: 100 + (i >> 4), session: 1, kind: Kind.STDOUT, payload: 'y'.repeat(i % 300) });
    const [block, tagged] = await allPaths(variant(items, null, () => undefined));
    expect(block.ok).toBe(true);
    expect(tagged).toEqual(block);
    if (block.ok) expect(block.facts.lines).toBe(5020);
  });
});
