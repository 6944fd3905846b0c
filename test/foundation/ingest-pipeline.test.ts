/**
 * The ingest pipeline (packages/log-vm/src/ingest.ts, docs/FORMAT.md 7.1):
 * a full batch is numbered and hashed on the addon's thread, chained onto
 * the head the batch before it will leave, while that batch is committed.
 * Real SQLite files, two Store handles where two processes would have them.
 * - a batch hashed onto a head that another session's batch then moved is
 *   chained again at its commit, and the chain verifies;
 * - a full batch followed by silence is still committed within the commit
 *   interval (the loss window does not grow);
 * - a quota that refuses the batch being committed while the next one is
 *   hashed: every received line is either stored or counted as not stored.
 */
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BlockBuilder, Kind } from '@appendlog/shared';
import { tempDir } from '../helpers.js';
import { Store } from '../../packages/log-vm/src/store.js';
import { appendSession } from '../../packages/log-vm/src/ingest.js';
import { verifyStoredChain } from '../../packages/log-vm/src/verify-store.js';
import type { ByteSource } from '../../packages/log-vm/src/source.js';

const tmp = tempDir('appendlog-ingest-pipeline-');
afterAll(() => tmp.cleanup());
let n = 0;
const freshPath = (): string => join(tmp.dir, `p${++n}.db`);

const linesOf = (count: number, tag: string): Buffer => Buffer.from(Array.from({ length: count }, (_, i) => `${tag} line ${i} ${'x'.repeat(i % 50)}\n`).join(''));

/** Entries of a log as {session, kind, payload} in chain order (store rows). */
function entries(store: Store, vm: string, name: string): Array<{ seq: number; session: number; kind: number; payload: string }> {
  const log = store.findLog(vm, name)!;
  const out: Array<{ seq: number; session: number; kind: number; payload: string }> = [];
  for (const b of store.blocks(log.id)) {
    let off = 0;
    const data = b.data as Buffer;
    while (off < data.length) {
      const len = data.readUInt32BE(off + 22);
      out.push({ seq: Number(data.readBigUInt64BE(off)), session: data.readUInt32BE(off + 16), kind: data[off + 20]!, payload: data.toString('utf8', off + 26, off + 26 + len) });
      off += 26 + len;
    }
  }
  return out;
}

describe('a batch hashed ahead of its commit', () => {
  it('is committed as it is when the head did not move, and chained again when another session moved it', () => {
    const path = freshPath();
    const a = Store.open(path, { create: true });
    const b = Store.open(path);
    try {
      const sa = a.openSession('vm', 'shared', Date.now, { argument: 'shared', mode: 'raw', pid: process.pid, maxLine: 65536 });
      const sb = b.openSession('vm', 'shared', Date.now, { argument: 'shared', mode: 'raw', pid: process.pid, maxLine: 65536 });
      const headNow = a.getHead(sa.log.id);

      // Unmoved head: the pending block's own hashes go in.
      const first = new BlockBuilder(1 << 16);
      for (let i = 0; i < 3000; i++) first.add(Date.now(), sa.session, Kind.LINE, 0, Buffer.from(`A${i}`));
      const p1 = first.start(headNow.entries + 1, headNow.head);
      const committed1 = a.append(sa.log, p1);
      expect(committed1).toBe(p1.join());

      // A's next batch is hashed onto the head A's first batch left...
      const after1 = a.getHead(sa.log.id);
      const second = new BlockBuilder(1 << 16);
      for (let i = 0; i < 3000; i++) second.add(Date.now(), sa.session, Kind.LINE, 0, Buffer.from(`A2-${i}`));
      const p2 = second.start(after1.entries + 1, after1.head);
      // ...but B's batch is committed first (another process, same log).
      const other = new BlockBuilder(4096);
      for (let i = 0; i < 5; i++) other.add(Date.now(), sb.session, Kind.LINE, 0, Buffer.from(`B${i}`));
      b.append(sb.log, other);
      const committed2 = a.append(sa.log, p2);
      expect(committed2).not.toBe(p2.join());
      expect(committed2.firstSeq).toBe(after1.entries + 5 + 1);

      const facts = verifyStoredChain(a, sa.log);
      expect(facts.entries).toBe(a.getHead(sa.log.id).entries);
      const e = entries(a, 'vm', 'shared');
      expect(e.map((x) => x.seq)).toEqual(e.map((_, i) => i + 1));
      expect(e.filter((x) => x.payload.startsWith('B')).map((x) => x.seq)).toEqual([1, 2, 3, 4, 5].map((k) => after1.entries + k));
    } finally {
      a.close();
      b.close();
    }
  });
});

/** A source that hands over the given chunks, then (unless `end`) stays open until destroyed. */
function heldSource(chunks: Buffer[], end: boolean): ByteSource & { delivered: Buffer[] } {
  let stop: (() => void) | undefined;
  let destroyed = false;
  const delivered: Buffer[] = [];
  return {
    delivered,
    async run(onData) {
      for (const c of chunks) {
        if (destroyed) return;
        delivered.push(c);
        onData(c);
        await new Promise((r) => setImmediate(r));
      }
      if (!end && !destroyed) await new Promise<void>((r) => (stop = r));
    },
    destroy() {
      destroyed = true;
      stop?.();
    },
  };
}

describe('a full batch followed by silence', () => {
  it('is committed within the commit interval, with no more input and no end', async () => {
    const path = freshPath();
    const store = Store.open(path, { create: true });
    const reader = Store.open(path);
    try {
      // 3 batches' worth in one read: two are full (one committed at the
      // rotation, one queued, hashed), the rest waits in the builder.
      const input = linesOf(600, 'quiet');
      const source = heldSource([input], false);
      const done = appendSession({ store, vm: 'vm', name: 'quiet', argument: 'quiet', input: source, batchBytes: 8192, commitIntervalMs: 50 });
      const stored = (): number => reader.getHead(reader.findLog('vm', 'quiet')!.id).lines;
      const t0 = Date.now();
      while (stored() < 600 && Date.now() - t0 < 20_000) await new Promise((r) => setTimeout(r, 10));
      expect(stored()).toBe(600);
      source.destroy();
      const r = await done;
      expect(r.reason).toBe('eof');
      expect(r.receipt?.lines).toBe(600);
      expect(verifyStoredChain(reader, reader.findLog('vm', 'quiet')!).entries).toBe(r.receipt!.entries);
    } finally {
      store.close();
      reader.close();
    }
  });
});

describe('a quota that refuses the batch being committed while the next is hashed', () => {
  it('stores whole batches only, and counts every other received line as not stored', async () => {
    const path = freshPath();
    const store = Store.open(path, { create: true, quotas: { logBytes: 40_000, vmBytes: 1 << 30 } });
    try {
      const chunks = Array.from({ length: 40 }, (_, i) => linesOf(40, `q${i}`));
      const source = heldSource(chunks, true);
      const r = await appendSession({ store, vm: 'vm', name: 'q', argument: 'q', input: source, batchBytes: 4096, commitIntervalMs: 60_000 });
      expect(r.reason).toBe('quota');
      expect(r.error?.code).toBe('QUOTA_EXCEEDED');
      const received = source.delivered.reduce((k, c) => k + c.filter((x) => x === 0x0a).length, 0);
      const e = entries(store, 'vm', 'q');
      const storedLines = e.filter((x) => x.kind === Kind.LINE).length;
      const notice = e.find((x) => x.kind === Kind.NOTICE && x.payload.includes('quota-exceeded'));
      expect(notice, JSON.stringify(e.slice(-3))).toBeDefined();
      const unread = JSON.parse(notice!.payload) as { unread: string };
      const lost = Number(/^(\d+) received line\(s\)/.exec(unread.unread)?.[1]);
      // More than one batch was in the pipeline when the quota refused it.
      expect(lost).toBeGreaterThan(0);
      expect(storedLines + lost).toBe(received);
      expect(storedLines).toBeLessThan(received);
      const close = JSON.parse(e[e.length - 1]!.payload) as { reason: string; lines: number };
      expect(close).toMatchObject({ reason: 'quota', lines: storedLines });
      expect(verifyStoredChain(store, store.findLog('vm', 'q')!).entries).toBe(e.length);
    } finally {
      store.close();
    }
  });
});
