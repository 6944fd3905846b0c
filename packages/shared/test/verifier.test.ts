/**
 * ChainVerifier, the streaming checker (push / end) behind `verify`: every
 * violation is a coded AppendlogError naming the seq it is about, never a
 * crash. Chains are built the way the log VM builds them (BlockBuilder +
 * ChainHasher), then tampered with as an attacker with write access to the
 * store or the exported bundle would.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AppendlogError,
  ChainVerifier,
  ENTRY_HEADER_SIZE,
  Flag,
  Kind,
  MAX_PAYLOAD,
  canonicalBytes,
  encodeEntry,
  genesisHash,
  type ChainFacts,
  type LogIdentity,
} from '../src/index.js';
import { BACKENDS, buildChain, expectAppendlogError, useBackend, type BuiltChain, type Item } from './support.js';

const ID: LogIdentity = { vm: 'work', name: 'build-1', created: 1_700_000_000_000 };
const T = 1_700_000_000_100;

const open = (session: number, time = T): Item => ({
  time,
  session,
  kind: Kind.SESSION_OPEN,
  payload: canonicalBytes({ argument: 'build-1', mode: 'raw', pid: 100 + session, session, vm: ID.vm }),
});
const line = (session: number, text: string, flags = 0, time = T + 1): Item => ({ time, session, kind: Kind.LINE, flags, payload: text });
const close = (session: number, reason: string, time = T + 9): Item => ({
  time,
  session,
  kind: Kind.SESSION_CLOSE,
  payload: canonicalBytes({ bytes: 0, lines: 0, reason, session }),
});
const seal = (time = T + 20): Item => ({ time, session: 0, kind: Kind.SEAL, payload: canonicalBytes({ manifest: 'm' }) });

/** seq 1 open, 2-4 lines (one CONT + its end), 5 close, 6 open, 7 NOEOL line, 8 close, 9 seal. */
const GOOD: Item[] = [
  open(1, T),
  line(1, 'configure', 0, T + 1),
  line(1, 'abcd', Flag.CONT, T + 2),
  line(1, 'ef', 0, T + 2),
  close(1, 'eof', T + 3),
  open(2, T + 10),
  line(2, 'partial', Flag.NOEOL, T + 11),
  close(2, 'signal', T + 12),
  seal(T + 20),
];

type Mode = 'push' | 'pushBlock';
const MODES: readonly Mode[] = ['push', 'pushBlock'];
/** Entries per block in pushBlock mode: small, so chains span several blocks. */
const BLOCK = 4;

interface VerifyOptions {
  hashes?: boolean;
  entries?: number;
  head?: Buffer;
  identity?: LogIdentity;
}

/**
 * Feeds the chain to a fresh verifier, entry by entry (`push`, as for a
 * bundle) or in blocks of BLOCK entries (`pushBlock`, as for store rows), with
 * the stored hashes unless told not to.
 */
function verifyWith(mode: Mode, chain: BuiltChain, opts: VerifyOptions = {}) {
  const v = new ChainVerifier(opts.identity ?? chain.identity);
  const withHashes = opts.hashes !== false;
  if (mode === 'push') {
    chain.encodings.forEach((enc, i) => v.push(enc, withHashes ? chain.hashes[i] : undefined));
  } else {
    for (let i = 0; i < chain.encodings.length; i += BLOCK) {
      const data = Buffer.concat(chain.encodings.slice(i, i + BLOCK));
      v.pushBlock(data, withHashes ? Buffer.concat(chain.hashes.slice(i, i + BLOCK)) : undefined);
    }
  }
  return v.end({ entries: opts.entries, head: opts.head });
}

/** Flips bits of one byte in place. */
function flip(buf: Buffer, at: number, mask: number): void {
  buf[at] = buf[at]! ^ mask;
}

/** Asserts the chain fails with `code` at `seq`. */
function expectFailure(run: () => unknown, code: AppendlogError['code'], seq: number | undefined): void {
  const err = expectAppendlogError(run, code);
  expect(err.seq).toBe(seq);
}

for (const { backend, available } of BACKENDS) {
  for (const mode of MODES) {
    describe.skipIf(!available)(`ChainVerifier.${mode} with the ${backend} hash backend`, () => {
      useBackend(backend, { beforeAll, afterAll });
      const verify = (chain: BuiltChain, opts?: VerifyOptions) => verifyWith(mode, chain, opts);
      specification(mode, verify);
    });
  }
}

function specification(mode: Mode, verify: (chain: BuiltChain, opts?: VerifyOptions) => ChainFacts): void {
  describe('when the chain is intact', () => {
    const chain = buildChain(ID, GOOD);

    it('accepts it against the stored hashes, entry count and head, and returns its facts', () => {
      const facts = verify(chain, { entries: GOOD.length, head: chain.head });
      expect(facts).toEqual({
        identity: ID,
        genesis: genesisHash(ID).toString('hex'),
        entries: 9,
        head: chain.head.toString('hex'),
        lines: 4,
        bytes: 'configure'.length + 'abcd'.length + 'ef'.length + 'partial'.length,
        sessions: 2,
        closes: { eof: 1, signal: 1 },
        notEof: [{ session: 2, reason: 'signal', seq: expect.any(Number) as number }],
        firstTime: T,
        lastTime: T + 20,
        seal: { seq: 9, time: T + 20, payload: canonicalBytes({ manifest: 'm' }) },
      });
    });

    it('accepts it without stored hashes (an exported file keeps only the head)', () => {
      expect(verify(chain, { hashes: false, head: chain.head }).entries).toBe(9);
    });

    it('counts entries as they are pushed', () => {
      const v = new ChainVerifier(ID);
      if (mode === 'push') chain.encodings.slice(0, 3).forEach((enc) => v.push(enc));
      else expect(v.pushBlock(Buffer.concat(chain.encodings.slice(0, 3)))).toBe(3);
      expect(v.entries).toBe(3);
    });

    it('accepts an empty chain whose head is the genesis hash', () => {
      const facts = new ChainVerifier(ID).end({ entries: 0, head: genesisHash(ID) });
      expect(facts).toMatchObject({ entries: 0, head: genesisHash(ID).toString('hex'), firstTime: null, seal: null });
    });

    it('accepts every close reason the log VM writes', () => {
      const reasons = ['eof', 'error', 'signal', 'refused', 'quota', 'lost', 'idle'];
      const items = reasons.flatMap((r, i) => [open(i + 1), close(i + 1, r)]);
      const facts = verify(buildChain(ID, items));
      expect(facts.closes).toEqual(Object.fromEntries(reasons.map((r) => [r, 1])));
    });

    // docs/FORMAT.md 3.5: a session cut by a seal has no close entry, so `sealed` is not in the closed set.
    it('refuses a close with reason `sealed` (BAD_ENTRY at its seq)', () => {
      expectFailure(() => verify(buildChain(ID, [open(1), close(1, 'sealed')])), 'BAD_ENTRY', 2);
    });

    // docs/FORMAT.md 5.1: a member name repeated in one object is refused, whichever copy a parser would keep.
    it('refuses a close payload with a repeated member name (BAD_ENTRY at its seq)', () => {
      const dup = { time: T, session: 1, kind: Kind.SESSION_CLOSE, payload: '{"bytes":0,"lines":0,"reason":"eof","reason":"eof","session":1}' };
      expectFailure(() => verify(buildChain(ID, [open(1), dup])), 'BAD_ENTRY', 2);
    });

    it('accepts stdout, stderr, notice and claim entries inside an open session', () => {
      const items: Item[] = [
        open(1),
        { time: T, session: 1, kind: Kind.STDOUT, payload: 'out' },
        { time: T, session: 1, kind: Kind.STDERR, flags: Flag.NOEOL, payload: 'err' },
        { time: T, session: 1, kind: Kind.NOTICE, payload: '{"notice":"x"}' },
        { time: T, session: 1, kind: Kind.CLAIM, payload: '{"claim":"exit","code":0,"signal":null}' },
      ];
      expect(verify(buildChain(ID, items))).toMatchObject({ entries: 5, lines: 2, bytes: 6 });
    });
  });

  describe('when one payload byte is changed (rewritten line)', () => {
    const chain = buildChain(ID, GOOD);
    const tampered = { ...chain, encodings: chain.encodings.map((e) => Buffer.from(e)) };
    flip(tampered.encodings[2]!, ENTRY_HEADER_SIZE, 0x20); // 'abcd' -> 'Abcd' at seq 3

    it('fails with CHAIN_HASH_MISMATCH at seq 3 against the stored hashes', () => {
      expectFailure(() => verify(tampered), 'CHAIN_HASH_MISMATCH', 3);
    });

    it('fails with HEAD_MISMATCH without stored hashes, against the recorded head', () => {
      expectFailure(() => verify(tampered, { hashes: false, entries: 9, head: chain.head }), 'HEAD_MISMATCH', 9);
    });
  });

  describe('when a changed entry comes before a malformed one', () => {
    it('fails with CHAIN_HASH_MISMATCH at the changed seq 2, the first violation', () => {
      const chain = buildChain(ID, [open(1), line(1, 'a'), line(1, 'b'), { time: T, session: 1, kind: 0x04, payload: 'x' }]);
      const enc = chain.encodings.map((e) => Buffer.from(e));
      flip(enc[1]!, ENTRY_HEADER_SIZE, 0x01);
      expectFailure(() => verify({ ...chain, encodings: enc }), 'CHAIN_HASH_MISMATCH', 2);
    });
  });

  describe('when a header field is changed (time of seq 4)', () => {
    it('fails with CHAIN_HASH_MISMATCH at seq 4', () => {
      const chain = buildChain(ID, GOOD);
      const enc = chain.encodings.map((e) => Buffer.from(e));
      flip(enc[3]!, 15, 0x01);
      expectFailure(() => verify({ ...chain, encodings: enc }), 'CHAIN_HASH_MISMATCH', 4);
    });
  });

  describe('when a stored hash has the wrong length (damaged store row)', () => {
    for (const length of [31, 33, 0]) {
      it(`fails with a coded error (not a RangeError) for a ${length}-byte stored hash of seq 2`, () => {
        const chain = buildChain(ID, GOOD);
        const hashes = chain.hashes.map((h, i) => (i === 1 ? Buffer.concat([h, Buffer.alloc(1)]).subarray(0, length) : h));
        let thrown: unknown;
        try {
          verify({ ...chain, hashes });
        } catch (e) {
          thrown = e;
        }
        expect(thrown).toBeInstanceOf(AppendlogError);
        const err = thrown as AppendlogError;
        expect(['CHAIN_HASH_MISMATCH', 'BAD_ENTRY']).toContain(err.code);
        // pushBlock sees the block's hashes as one run and cannot tell which one is short.
        if (mode === 'push') expect(err.seq).toBe(2);
      });
    }
  });

  describe('when the chain is verified as another log (another VM, name or creation time)', () => {
    const chain = buildChain(ID, GOOD);
    for (const other of [
      { ...ID, vm: 'untrusted' },
      { ...ID, name: 'build-2' },
      { ...ID, created: ID.created + 1 },
    ]) {
      it(`fails with CHAIN_HASH_MISMATCH at seq 1 for ${JSON.stringify(other)}`, () => {
        expectFailure(() => verify(chain, { identity: other }), 'CHAIN_HASH_MISMATCH', 1);
      });
    }
  });

  describe('when a line is rewritten and every later hash recomputed (consistent forgery)', () => {
    it('passes the stored hashes but fails with HEAD_MISMATCH against the recorded head', () => {
      const chain = buildChain(ID, GOOD);
      const forged = buildChain(ID, GOOD.map((it, i) => (i === 1 ? { ...it, payload: 'c0nfigure' } : it)));
      expectFailure(() => verify(forged, { entries: 9, head: chain.head }), 'HEAD_MISMATCH', 9);
    });
  });

  describe('when two entries are swapped (reordered rows)', () => {
    it('fails with SEQ_OUT_OF_ORDER at seq 2', () => {
      const chain = buildChain(ID, GOOD);
      const order = [0, 2, 1, 3, 4, 5, 6, 7, 8];
      const swap = <T>(a: T[]): T[] => order.map((i) => a[i]!);
      expectFailure(() => verify({ ...chain, encodings: swap(chain.encodings), hashes: swap(chain.hashes) }), 'SEQ_OUT_OF_ORDER', 2);
    });
  });

  describe('when an entry is deleted from the middle', () => {
    it('fails with SEQ_OUT_OF_ORDER at seq 4', () => {
      const chain = buildChain(ID, GOOD);
      const drop = <T>(a: T[]): T[] => a.filter((_, i) => i !== 3);
      expectFailure(() => verify({ ...chain, encodings: drop(chain.encodings), hashes: drop(chain.hashes) }), 'SEQ_OUT_OF_ORDER', 4);
    });
  });

  describe('when an entry is duplicated', () => {
    it('fails with SEQ_OUT_OF_ORDER at seq 3', () => {
      const chain = buildChain(ID, GOOD);
      const dup = <T>(a: T[]): T[] => [...a.slice(0, 2), a[1]!, ...a.slice(2)];
      expectFailure(() => verify({ ...chain, encodings: dup(chain.encodings), hashes: dup(chain.hashes) }), 'SEQ_OUT_OF_ORDER', 3);
    });
  });

  describe('when the tail is missing (deleted tail)', () => {
    it('fails with CHAIN_TRUNCATED at seq 6 when the record says 9 entries', () => {
      const chain = buildChain(ID, GOOD);
      const cut = { ...chain, encodings: chain.encodings.slice(0, 5), hashes: chain.hashes.slice(0, 5) };
      expectFailure(() => verify(cut, { entries: 9, head: chain.head }), 'CHAIN_TRUNCATED', 6);
    });
  });

  describe('when there are more entries than recorded', () => {
    it('fails with HEAD_MISMATCH at seq 8 when the record says 7 entries', () => {
      const chain = buildChain(ID, GOOD);
      expectFailure(() => verify(chain, { entries: 7 }), 'HEAD_MISMATCH', 8);
    });
  });

  describe('when the head differs from the recorded one', () => {
    it('fails with HEAD_MISMATCH at the last seq', () => {
      const chain = buildChain(ID, GOOD);
      const other = Buffer.from(chain.head);
      flip(other, 0, 0x01);
      expectFailure(() => verify(chain, { entries: 9, head: other }), 'HEAD_MISMATCH', 9);
    });
  });

  describe('when an entry follows the seal (re-opened sealed log)', () => {
    it('fails with ENTRY_AFTER_SEAL at seq 10', () => {
      const chain = buildChain(ID, [...GOOD, open(3), line(3, 'late')]);
      expectFailure(() => verify(chain), 'ENTRY_AFTER_SEAL', 10);
    });

    it('fails with ENTRY_AFTER_SEAL for a second seal (re-sealed log)', () => {
      expectFailure(() => verify(buildChain(ID, [...GOOD, seal()])), 'ENTRY_AFTER_SEAL', 10);
    });
  });

  describe('when an entry breaks the record model', () => {
    const cases: Array<[string, Item[], number]> = [
      ['an unknown kind 0x04', [open(1), { time: T, session: 1, kind: 0x04, payload: 'x' }], 2],
      ['an unknown kind 0xff', [open(1), { time: T, session: 1, kind: 0xff, payload: 'x' }], 2],
      ['flags on a session-open event', [{ ...open(1), flags: Flag.CONT }], 1],
      ['flags on a session-close event', [open(1), { ...close(1, 'eof'), flags: Flag.NOEOL }], 2],
      ['flags on a seal', [{ ...seal(), flags: Flag.CONT }], 1],
      ['CONT and NOEOL together on a line', [open(1), line(1, 'x', Flag.CONT | Flag.NOEOL)], 2],
      ['an undefined flag bit 0x04 on a line', [open(1), line(1, 'x', 0x04)], 2],
      ['a line in a session never opened', [open(1), line(2, 'x')], 2],
      ['a line before any session (session 0)', [line(0, 'x')], 1],
      ['a notice with session 0 before any session', [{ time: T, session: 0, kind: Kind.NOTICE, payload: '{}' }], 1],
      ['a session-close for a session never opened', [open(1), close(2, 'eof')], 2],
      ['a session-close with an unknown reason', [open(1), close(1, 'bogus')], 2],
      ['a session-close whose reason is inherited, not its own', [open(1), { ...close(1, 'eof'), payload: '{"__proto__":{"reason":"eof"}}' }], 2],
      ['a session-close without a reason', [open(1), { ...close(1, 'eof'), payload: '{"session":1}' }], 2],
      ['a session-close whose payload is not JSON', [open(1), { ...close(1, 'eof'), payload: Buffer.from('ff7b7265', 'hex') }], 2],
      ['a session-close whose payload is a JSON array', [open(1), { ...close(1, 'eof'), payload: '["eof"]' }], 2],
      ['a session opened out of order (2 before 1)', [open(2)], 1],
      ['a session opened twice', [open(1), open(1)], 2],
      ['a seal inside a session', [open(1), { ...seal(), session: 1 }], 2],
      ['an event payload above 64 KiB', [open(1), { time: T, session: 1, kind: Kind.NOTICE, payload: Buffer.alloc(64 * 1024 + 1, 0x20) }], 2],
    ];
    describe.each(cases)('with %s', (_what, items, seq) => {
      it(`fails with BAD_ENTRY at seq ${seq}`, () => {
        expectFailure(() => verify(buildChain(ID, items)), 'BAD_ENTRY', seq);
      });
    });
  });

  describe('when an encoding is malformed (hostile bundle or store bytes)', () => {
    const first = buildChain(ID, [open(1)]);

    /** Feeds seq 1 (valid) then `bad` as seq 2: two pushes, or one block of both. */
    const pushSecond = (bad: Uint8Array) => () => {
      const v = new ChainVerifier(ID);
      if (mode === 'push') {
        v.push(first.encodings[0]!, first.hashes[0]);
        v.push(bad);
      } else {
        v.pushBlock(Buffer.concat([first.encodings[0]!, bad]));
      }
    };
    const header = (seqHi: number, seqLo: number, timeHi = 0, length = 0): Buffer => {
      const b = Buffer.alloc(ENTRY_HEADER_SIZE + length);
      b.writeUInt32BE(seqHi, 0);
      b.writeUInt32BE(seqLo, 4);
      b.writeUInt32BE(timeHi, 8);
      b.writeUInt32BE(1, 16);
      b[20] = Kind.LINE;
      b.writeUInt32BE(length, 22);
      return b;
    };

    it('fails with BAD_ENTRY at seq 2 for a u64 seq of 2^53 (above 2^53 - 1), without crashing', () => {
      expectFailure(pushSecond(header(0x200000, 0)), 'BAD_ENTRY', 2);
    });

    it('fails with BAD_ENTRY at seq 2 for a u64 seq of 2^64 - 1', () => {
      expectFailure(pushSecond(header(0xffffffff, 0xffffffff)), 'BAD_ENTRY', 2);
    });

    it('fails with BAD_ENTRY at seq 2 for a u64 time above 2^53 - 1', () => {
      expectFailure(pushSecond(header(0, 2, 0x00200000)), 'BAD_ENTRY', 2);
    });

    it('fails with BAD_ENTRY at seq 2 for a header shorter than 26 bytes', () => {
      expectFailure(pushSecond(header(0, 2).subarray(0, 25)), 'BAD_ENTRY', 2);
    });

    // An empty run is no entry at all for pushBlock; only push sees an empty encoding.
    if (mode === 'push') {
      it('fails with BAD_ENTRY at seq 2 for an empty encoding', () => {
        expectFailure(pushSecond(Buffer.alloc(0)), 'BAD_ENTRY', 2);
      });
    }

    it('fails with BAD_ENTRY at seq 2 when the payload is shorter than its stated length', () => {
      expectFailure(pushSecond(header(0, 2, 0, 5).subarray(0, ENTRY_HEADER_SIZE + 4)), 'BAD_ENTRY', 2);
    });

    // In a block, bytes after an entry are the start of the next one: a truncated seq 3.
    it(`fails with BAD_ENTRY at seq ${mode === 'push' ? 2 : 3} when bytes follow the stated payload`, () => {
      expectFailure(pushSecond(Buffer.concat([header(0, 2, 0, 1), Buffer.from('xy')])), 'BAD_ENTRY', mode === 'push' ? 2 : 3);
    });

    // The header claims seq 7: the error names the position (2), not the attacker's number.
    it('fails with BAD_ENTRY at seq 2 for a stated length above MAX_PAYLOAD (no allocation of it)', () => {
      const b = header(0, 7);
      b.writeUInt32BE(MAX_PAYLOAD + 1, 22);
      expectFailure(pushSecond(b), 'BAD_ENTRY', 2);
    });

    it('fails with BAD_ENTRY at seq 2 for a stated length of 2^32 - 1', () => {
      const b = header(0, 7);
      b.writeUInt32BE(0xffffffff, 22);
      expectFailure(pushSecond(b), 'BAD_ENTRY', 2);
    });
  });

  describe('when a seq is out of order at the start', () => {
    it('fails with SEQ_OUT_OF_ORDER at seq 1 for a chain starting at seq 2', () => {
      const enc = encodeEntry({ seq: 2, time: T, session: 1, kind: Kind.SESSION_OPEN, flags: 0, payload: Buffer.from('{}') });
      const v = new ChainVerifier(ID);
      expectFailure(() => (mode === 'push' ? v.push(enc) : v.pushBlock(enc)), 'SEQ_OUT_OF_ORDER', 1);
    });
  });
}
