/**
 * The seal claim at the store level (docs/FORMAT.md 7.3): a real SQLite
 * file, two Store handles on it as two processes would have, the real
 * openpgp.js key-file signer. While a log is claimed for its seal every batch
 * and every open of it is refused LOG_SEALED (the head cannot move, so the
 * signer is called once); a failed seal gives the log back and closes the
 * sessions it cut; a stale claim (process gone, reused pid, too old) is
 * cleared by the next append or seal, and recorded.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppendlogError, BlockBuilder, Kind, type CanonicalValue } from '@appendlog/shared';
import { tempDir } from '../helpers.js';
import { makeKey, type KeyPair } from '../hostile/util.js';
import { SEAL_CLAIM_STALE_MS, SealRefusal, Store, type LogRow } from '../../packages/log-vm/src/store.js';
import { sealFailureRecorded, sealLog } from '../../packages/log-vm/src/seal.js';
import { sealAtClose } from '../../packages/log-vm/src/after-seal.js';
import { parseSignerSpec, type Signer } from '../../packages/log-vm/src/signers.js';
import { verifyStoredChain, verifyStoredLog } from '../../packages/log-vm/src/verify-store.js';
import { loadTrustStore } from '@appendlog/shared/signatures';
import { readFileSync } from 'node:fs';

const VM = 'unit-vm';
const tmp = tempDir('appendlog-seal-claim-');
let key: KeyPair;
let n = 0;

beforeAll(async () => {
  key = await makeKey(tmp.dir, 'Unit');
});
afterAll(() => tmp.cleanup());

/** A fresh store file and two handles on it: the sealer's and a service's. */
function fresh(): { path: string; sealer: Store; service: Store; close: () => void } {
  const path = join(tmp.dir, `s${++n}.db`);
  const sealer = Store.open(path, { create: true });
  const service = Store.open(path);
  return { path, sealer, service, close: () => (sealer.close(), service.close()) };
}

/** One session of `lines` lines, closed with eof. */
function session(store: Store, name: string, lines: string[]): LogRow {
  const o = store.openSession(VM, name, Date.now, { argument: name, mode: 'raw', pid: process.pid, maxLine: 65536 });
  const b = new BlockBuilder(4096);
  const t = Date.now();
  for (const l of lines) b.add(t, o.session, Kind.LINE, 0, Buffer.from(l));
  b.add(t, o.session, Kind.SESSION_CLOSE, 0, Buffer.from(JSON.stringify({ bytes: lines.join('').length, lines: lines.length, reason: 'eof', session: o.session })));
  store.append(o.log, b, { endSession: o.session });
  return o.log;
}

/** A session left open after `lines`, as a trickling sender's is. */
function openWith(store: Store, name: string, lines: string[]): { log: LogRow; session: number; stored: number; bytes: number } {
  const o = store.openSession(VM, name, Date.now, { argument: name, mode: 'raw', pid: process.pid, maxLine: 65536 });
  const b = new BlockBuilder(4096);
  for (const l of lines) b.add(Date.now(), o.session, Kind.LINE, 0, Buffer.from(l));
  store.append(o.log, b);
  return { log: o.log, session: o.session, stored: lines.length, bytes: lines.join('').length };
}

function batch(session: number, lines: string[]): BlockBuilder {
  const b = new BlockBuilder(4096);
  for (const l of lines) b.add(Date.now(), session, Kind.LINE, 0, Buffer.from(l));
  return b;
}

function notices(store: Store, kind: string): Array<Record<string, CanonicalValue>> {
  const log = store.findLog(VM, 'logvm-events');
  if (log === undefined) return [];
  const out: Array<Record<string, CanonicalValue>> = [];
  for (const b of store.blocks(log.id)) {
    let off = 0;
    while (off < b.data.length) {
      const len = b.data.readUInt32BE(off + 22);
      if (b.data[off + 20] === Kind.NOTICE) {
        const j = JSON.parse(b.data.toString('utf8', off + 26, off + 26 + len)) as Record<string, CanonicalValue>;
        if (j.notice === kind) out.push(j);
      }
      off += 26 + len;
    }
  }
  return out;
}

/** Entries of a log as (session, kind, payload). */
function entriesOf(store: Store, log: LogRow): Array<{ session: number; kind: number; json?: Record<string, unknown> }> {
  const out: Array<{ session: number; kind: number; json?: Record<string, unknown> }> = [];
  for (const b of store.blocks(log.id)) {
    let off = 0;
    while (off < b.data.length) {
      const len = b.data.readUInt32BE(off + 22);
      const kind = b.data[off + 20]!;
      const payload = b.data.toString('utf8', off + 26, off + 26 + len);
      out.push({ session: b.data.readUInt32BE(off + 16), kind, ...(kind >= 0x10 && kind !== Kind.SEAL ? { json: JSON.parse(payload) as Record<string, unknown> } : {}) });
      off += 26 + len;
    }
  }
  return out;
}

/** A signer that counts its calls and runs `during` while it "waits for the vault's user". */
function counting(real: Signer, during: () => void = () => undefined): Signer & { calls: number } {
  const s = {
    spec: real.spec,
    calls: 0,
    async sign(data: Buffer): Promise<string> {
      s.calls++;
      during();
      return real.sign(data);
    },
  };
  return s;
}

const refused = (f: () => unknown): SealRefusal => {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(SealRefusal);
    return e as SealRefusal;
  }
  throw new Error('expected a LOG_SEALED refusal');
};

describe('while a log is claimed for its seal', () => {
  it('a batch of an open session is refused LOG_SEALED (state sealing), nothing of it is stored, and the cut is kept for the close', () => {
    const s = fresh();
    const o = openWith(s.service, 'claimed', ['one\n', 'two\n']);
    const before = s.service.getHead(o.log.id);
    const c = s.sealer.claimSeal(s.sealer.requireLog(VM, 'claimed'), Date.now);
    expect('claim' in c).toBe(true);
    const e = refused(() => s.service.append(o.log, batch(o.session, ['three\n']), { cut: { session: o.session, lines: o.stored, bytes: o.bytes, refused: 'test' } }));
    expect(e.code).toBe('LOG_SEALED');
    expect(e.state).toBe('sealing');
    expect(e.entries).toBe(before.entries);
    expect(e.head).toBe(before.head.toString('hex'));
    const after = s.service.getHead(o.log.id);
    expect(after.entries).toBe(before.entries);
    expect(after.head.equals(before.head)).toBe(true);
    expect(s.service.db.prepare('SELECT session, lines, bytes FROM sealing_cuts').all()).toEqual([{ session: o.session, lines: 2, bytes: 8 }]);
    expect(s.service.liveSessions(o.log)).toBe(0);
    s.close();
  });

  it('a new session is refused at open (LOG_SEALED, state sealing) and stores nothing', () => {
    const s = fresh();
    const log = session(s.service, 'no-open', ['a\n']);
    const before = s.service.getHead(log.id);
    s.sealer.claimSeal(log, Date.now);
    const e = refused(() => s.service.openSession(VM, 'no-open', Date.now, { argument: 'no-open' }));
    expect(e.state).toBe('sealing');
    expect(s.service.getHead(log.id)).toEqual(before);
    s.close();
  });

  it('other logs of the same VM are written meanwhile', () => {
    const s = fresh();
    const log = session(s.service, 'busy', ['a\n']);
    s.sealer.claimSeal(log, Date.now);
    const other = session(s.service, 'other', ['b\n', 'c\n']);
    expect(s.service.getHead(other.id).lines).toBe(2);
    s.close();
  });

  it('a second seal of the store is not claimed while the first is in progress: busy names the first', () => {
    const s = fresh();
    const a = session(s.service, 'first', ['a\n']);
    const b = session(s.service, 'second', ['b\n']);
    expect('claim' in s.sealer.claimSeal(a, Date.now)).toBe(true);
    const r = s.service.claimSeal(b, Date.now);
    expect(r).toMatchObject({ busy: { vm: VM, name: 'first', pid: process.pid } });
    s.close();
  });

  it('an empty or sealed log is refused before any claim (LOG_EMPTY, LOG_SEALED)', async () => {
    const s = fresh();
    const empty = session(s.service, 'empty', []);
    expect(() => s.sealer.claimSeal(empty, Date.now)).toThrow(expect.objectContaining({ code: 'LOG_EMPTY' }) as AppendlogError);
    const log = session(s.service, 'once', ['a\n']);
    await sealLog(s.sealer, VM, 'once', parseSignerSpec(`key-file:${key.priv}`));
    expect(() => s.sealer.claimSeal(log, Date.now)).toThrow(expect.objectContaining({ code: 'LOG_SEALED' }) as AppendlogError);
    expect(s.sealer.db.prepare('SELECT count(*) AS n FROM sealing').get()).toEqual({ n: 0 });
    s.close();
  });
});

describe('sealLog with a session that keeps appending during the signature', () => {
  it('calls the signer once, the append is refused, and the seal verifies with nothing after the SEAL entry', async () => {
    const s = fresh();
    const o = openWith(s.service, 'trickle', ['l1\n', 'l2\n']);
    let during: unknown;
    const signer = counting(parseSignerSpec(`key-file:${key.priv}`), () => {
      try {
        s.service.append(o.log, batch(o.session, ['late\n']), { cut: { session: o.session, lines: o.stored, bytes: o.bytes, refused: 'late' } });
      } catch (e) {
        during = e;
      }
    });
    const res = await sealLog(s.sealer, VM, 'trickle', signer);
    expect(signer.calls).toBe(1);
    expect(during).toBeInstanceOf(SealRefusal);
    expect((during as SealRefusal).state).toBe('sealing');
    const log = s.sealer.requireLog(VM, 'trickle');
    const trust = await loadTrustStore([{ name: 'unit', bytes: readFileSync(key.pub), kind: 'key' }]);
    const v = await verifyStoredLog(s.sealer, log, { trust, threshold: 1 });
    expect(v.state).toBe('sealed');
    expect(v.manifest).toMatchObject({ entries: res.manifest.entries, head: res.manifest.head, lines: 2 });
    const list = entriesOf(s.sealer, log);
    expect(list[list.length - 1]!.kind).toBe(Kind.SEAL);
    expect(list.filter((e) => e.kind === Kind.SESSION_CLOSE)).toHaveLength(0);
    // The claim and the cut are gone with the commit; the cut session stays without a close.
    expect(s.sealer.db.prepare('SELECT (SELECT count(*) FROM sealing) AS a, (SELECT count(*) FROM sealing_cuts) AS b').get()).toEqual({ a: 0, b: 0 });
    // After the seal, the refusal says sealed.
    const after = refused(() => s.service.append(o.log, batch(o.session, ['later\n'])));
    expect(after.state).toBe('sealed');
    expect(after.sealIndex).toBe(res.manifest.sealIndex);
    s.close();
  });
});

describe('when the signer fails after the claim', () => {
  it('the claim is released, the cut session is closed with reason error, one seal-failed event counts it, and the log takes new sessions', async () => {
    const s = fresh();
    const o = openWith(s.service, 'fails', ['l1\n']);
    const failing: Signer = {
      spec: 'unit:failing',
      sign: () => {
        try {
          s.service.append(o.log, batch(o.session, ['late\n']), { cut: { session: o.session, lines: o.stored, bytes: o.bytes, refused: 'refused while the log was being sealed' } });
        } catch {
          // expected: the cut
        }
        return Promise.reject(new AppendlogError('SIGNER_FAILED', 'the vault said no'));
      },
    };
    let err: unknown;
    await sealLog(s.sealer, VM, 'fails', failing).catch((e: unknown) => (err = e));
    expect(err).toMatchObject({ code: 'SIGNER_FAILED' });
    expect(sealFailureRecorded(err)).toBe(true);
    expect(s.sealer.sealClaim(o.log.id)).toBeUndefined();
    const closes = entriesOf(s.sealer, o.log).filter((e) => e.kind === Kind.SESSION_CLOSE);
    expect(closes).toHaveLength(1);
    expect(closes[0]!.json).toMatchObject({ reason: 'error', session: o.session, lines: 1, bytes: 3 });
    expect(String(closes[0]!.json!.detail)).toMatch(/refused while the log was being sealed.*the seal then failed \(SIGNER_FAILED\).*open again/);
    expect(notices(s.sealer, 'seal-failed')).toEqual([expect.objectContaining({ log: `${VM}/fails`, signer: 'unit:failing', sessions: 1, detail: 'SIGNER_FAILED: the vault said no' })]);
    session(s.service, 'fails', ['again\n']);
    const facts = verifyStoredChain(s.sealer, o.log);
    expect(facts).toMatchObject({ lines: 2, sessions: 2, closes: { error: 1, eof: 1 } });
    s.close();
  });
});

describe('a stale claim', () => {
  /** Writes a claim row as a sealer would have, with the given process and time. */
  function plant(store: Store, log: LogRow, pid: number, start: string | null, time: number): void {
    const head = store.getHead(log.id);
    store.db
      .prepare('INSERT INTO sealing (log_id, token, pid, start, time, entries, head, seal_index) VALUES (?, ?, ?, ?, ?, ?, ?, 1)')
      .run(log.id, 'planted', pid, start, time, head.entries, head.head);
  }

  function deadPid(): number {
    const r = spawnSync('/bin/sh', ['-c', 'echo $$']);
    return Number(r.stdout.toString().trim());
  }

  it.each([
    ['its process is gone', () => ({ pid: deadPid(), start: null as string | null, time: Date.now() })],
    ['its pid now belongs to another process (start time differs)', () => ({ pid: process.pid, start: '1', time: Date.now() })],
    ['it is older than the bound, whatever its pid', () => ({ pid: process.pid, start: null as string | null, time: Date.now() - SEAL_CLAIM_STALE_MS - 1000 })],
  ])('%s: the next append clears it, records seal-abandoned, and is stored', (_what, who) => {
    const s = fresh();
    const o = openWith(s.service, 'stale', ['l1\n']);
    const w = who();
    plant(s.sealer, o.log, w.pid, w.start, w.time);
    s.service.append(o.log, batch(o.session, ['l2\n']));
    expect(s.service.getHead(o.log.id).lines).toBe(2);
    expect(s.service.sealClaim(o.log.id)).toBeUndefined();
    expect(notices(s.service, 'seal-abandoned')).toEqual([expect.objectContaining({ log: `${VM}/stale`, pid: w.pid, since: w.time, sessions: 0 })]);
    s.close();
  });

  it('a live claim of this process with its own start time is not stale', () => {
    const s = fresh();
    const log = session(s.service, 'live', ['a\n']);
    const c = s.sealer.claimSeal(log, Date.now);
    expect('claim' in c && s.sealer.claimStale(c.claim, Date.now())).toBe(null);
    s.close();
  });

  it('a stale claim that had cut a session: the next open closes that session (reason error) in the same transaction', () => {
    const s = fresh();
    const o = openWith(s.service, 'stale-cut', ['l1\n', 'l2\n']);
    plant(s.sealer, o.log, deadPid(), null, Date.now());
    // Planted while "alive": the cut goes in as a seal in progress would record it.
    s.service.db.prepare('INSERT INTO sealing_cuts (log_id, session, lines, bytes, refused) VALUES (?, ?, 2, 6, ?)').run(o.log.id, o.session, 'refused while the log was being sealed (LOG_SEALED): 1 received line(s) (3 bytes) of the last batch and the rest of the input were not stored');
    const next = s.service.openSession(VM, 'stale-cut', Date.now, { argument: 'stale-cut' });
    expect(next.session).toBe(o.session + 1);
    const list = entriesOf(s.service, o.log);
    const close = list.find((e) => e.kind === Kind.SESSION_CLOSE && e.session === o.session);
    expect(close?.json).toMatchObject({ reason: 'error', lines: 2, bytes: 6 });
    expect(String(close!.json!.detail)).toContain('the seal in progress was abandoned: its process');
    expect(notices(s.service, 'seal-abandoned')).toEqual([expect.objectContaining({ sessions: 1 })]);
    s.close();
  });

  it('a sealer still waiting for its signer when its claim is cleared as too old fails LOG_BUSY and commits nothing; the append that cleared it is stored', async () => {
    const s = fresh();
    const o = openWith(s.service, 'too-slow', ['l1\n']);
    let appended = false;
    // The sealer's clock puts its claim past the bound: the service's next batch finds it stale.
    const signer = counting(parseSignerSpec(`key-file:${key.priv}`), () => {
      s.service.append(o.log, batch(o.session, ['l2\n']));
      appended = true;
    });
    let err: unknown;
    await sealLog(s.sealer, VM, 'too-slow', signer, { now: () => Date.now() - SEAL_CLAIM_STALE_MS - 60_000 }).catch((e: unknown) => (err = e));
    expect(err).toMatchObject({ code: 'LOG_BUSY' });
    expect(signer.calls).toBe(1);
    expect(appended).toBe(true);
    expect(s.sealer.getHead(o.log.id)).toMatchObject({ sealed: 0, lines: 2 });
    expect(s.sealer.getSeal(o.log.id)).toBeUndefined();
    expect(notices(s.sealer, 'seal-abandoned')).toEqual([expect.objectContaining({ log: `${VM}/too-slow` })]);
    expect(String(notices(s.sealer, 'seal-abandoned')[0]!.detail)).toContain('minutes ago');
    s.close();
  });

  it('a seal that meets a stale claim of another log clears it and is signed once', async () => {
    const s = fresh();
    const dead = session(s.service, 'dead-seal', ['a\n']);
    session(s.service, 'next-seal', ['b\n']);
    plant(s.sealer, dead, deadPid(), null, Date.now());
    const signer = counting(parseSignerSpec(`key-file:${key.priv}`));
    const res = await sealLog(s.sealer, VM, 'next-seal', signer);
    expect(signer.calls).toBe(1);
    expect(res.manifest.sealIndex).toBe(1);
    expect(notices(s.sealer, 'seal-abandoned')).toEqual([expect.objectContaining({ log: `${VM}/dead-seal` })]);
    s.close();
  });
});

describe('sealOnClose: two sessions of one log end at the same moment and both seal it', () => {
  it('one seals; the other waits for it, finds the log sealed, and is no failure: no seal-failed is chained for a sealed log', async () => {
    const s = fresh();
    session(s.service, 'both', ['a\n']);
    const config = { sealOnClose: `key-file:${key.priv}` };
    const [r1, r2] = await Promise.all([sealAtClose(s.sealer, VM, 'both', config), sealAtClose(s.service, VM, 'both', config)]);
    expect([r1.sealed, r2.sealed].sort()).toEqual([false, true]);
    expect([...r1.failures, ...r2.failures]).toEqual([]);
    expect(notices(s.service, 'seal-failed')).toEqual([]);
    expect(s.service.getHead(s.service.requireLog(VM, 'both').id).sealed).toBe(1);
    s.close();
  });
});
