import { describe, expect, it } from 'vitest';
import { AppendlogError, ChainVerifier, Kind } from '../src/index.js';
import { buildChain } from './support.js';

const ID = { vm: 'build-vm', name: 'sessions', created: 1_700_000_000_000 };
const open = (session: number) => ({ time: 1, session, kind: Kind.SESSION_OPEN, payload: '{}' });
const close = (session: number) => ({ time: 2, session, kind: Kind.SESSION_CLOSE, payload: '{"reason":"eof"}' });
const line = (session: number, text = 'x') => ({ time: 3, session, kind: Kind.LINE, payload: text });

function verify(items: Parameters<typeof buildChain>[1]): () => unknown {
  const chain = buildChain(ID, items);
  return () => {
    const v = new ChainVerifier(ID);
    chain.encodings.forEach((e, i) => v.push(e, chain.hashes[i]));
    return v.end({ entries: chain.encodings.length, head: chain.head });
  };
}

function failure(fn: () => unknown): AppendlogError {
  try {
    fn();
  } catch (e) {
    if (e instanceof AppendlogError) return e;
    throw e;
  }
  throw new Error('expected a coded failure');
}

describe('when sessions interleave (two senders on one log)', () => {
  it('accepts lines of a session while another one is open and after the other closed', () => {
    expect(verify([open(1), open(2), line(1), line(2), close(2), line(1), close(1)])()).toMatchObject({ sessions: 2, lines: 3, closes: { eof: 2 } });
  });
});

describe('when an entry follows its session close', () => {
  it('fails with BAD_ENTRY at the seq of that entry', () => {
    const e = failure(verify([open(1), line(1), close(1), line(1)]));
    expect(e.code).toBe('BAD_ENTRY');
    expect(e.seq).toBe(4);
  });

  it('fails with BAD_ENTRY at a second close of the same session', () => {
    const e = failure(verify([open(1), close(1), open(2), close(1)]));
    expect(e.code).toBe('BAD_ENTRY');
    expect(e.seq).toBe(4);
  });

  it('tracks closes past the first bitmap bytes (session 1000)', () => {
    const items = [];
    for (let s = 1; s <= 1000; s++) items.push(open(s), close(s));
    items.push(line(1000));
    const e = failure(verify(items));
    expect(e.code).toBe('BAD_ENTRY');
    expect(e.seq).toBe(2001);
  });
});
