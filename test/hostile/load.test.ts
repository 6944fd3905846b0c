/**
 * Load and races: 16 senders at once into one store (four VMs, fifteen logs,
 * two senders on the same log), and a seal that races with senders still
 * streaming into the log. Nothing may be lost, duplicated, reordered within a
 * session or half in: every sender's lines are all there in its order, every
 * chain verifies, and after the seal every append is refused with LOG_SEALED.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  KIND,
  entries,
  events,
  expectAllVerified,
  expectNoCrash,
  expectReceipt,
  expectServiceError,
  expectVerified,
  listLogs,
  logvm,
  makeKey,
  numbered,
  reconstruct,
  report,
  seal,
  service,
  showRaw,
  sleep,
  committed,
  waitUntil,
  startService,
  tempDir,
  type KeyPair,
  type Receipt,
  type Run,
  type Started,
} from './util.js';

const tmp = tempDir('appendlog-hostile-load-');
afterAll(() => tmp.cleanup());

describe('when 16 senders append 100,000 lines each into one store at the same time', () => {
  const db = join(tmp.dir, 'load.db');
  const LINES = 100_000;
  // Four VMs; vm-d's `shared` log gets two senders at once.
  const SENDERS: Array<{ vm: string; name: string }> = [
    ...['a1', 'a2', 'a3', 'a4'].map((name) => ({ vm: 'vm-a', name })),
    ...['b1', 'b2', 'b3', 'b4'].map((name) => ({ vm: 'vm-b', name })),
    ...['c1', 'c2', 'c3', 'c4'].map((name) => ({ vm: 'vm-c', name })),
    { vm: 'vm-d', name: 'd1' },
    { vm: 'vm-d', name: 'd2' },
    { vm: 'vm-d', name: 'shared' },
    { vm: 'vm-d', name: 'shared' },
  ];
  const inputs = SENDERS.map((_, i) => numbered(`S${String(i).padStart(2, '0')}`, LINES));
  let results: Run[];
  let elapsedMs: number;

  beforeAll(async () => {
    // The store exists before the rush, as on a running log VM.
    expectReceipt(await service('vm-z', 'warmup', db, { input: 'warm\n' }));
    const started = Date.now();
    results = await Promise.all(SENDERS.map((s, i) => service(s.vm, s.name, db, { input: inputs[i], measure: true, timeoutMs: 240_000 })));
    elapsedMs = Date.now() - started;
    const total = SENDERS.length * LINES;
    report('16 x 100k lines: aggregate ingest rate', `${Math.round(total / (elapsedMs / 1000))} lines/s (${total} lines in ${(elapsedMs / 1000).toFixed(1)} s, ${(inputs.reduce((n, b) => n + b.length, 0) / 1e6).toFixed(1)} MB)`);
    report('16 x 100k lines: highest peak RSS of one service', `${Math.max(...results.map((r) => r.peakRssKiB ?? 0))} KiB`);
  }, 300_000);

  it('every sender exits 0 with a receipt for its own log counting 100,000 lines', () => {
    results.forEach((r, i) => {
      const receipt = expectReceipt(r);
      expect(receipt).toMatchObject({ log: `${SENDERS[i]!.vm}/${SENDERS[i]!.name}`, lines: LINES, bytes: inputs[i]!.length - LINES });
    });
  });

  it('the two sessions of vm-d/shared are its sessions 1 and 2', () => {
    const sessions = results.slice(14).map((r) => (JSON.parse(r.stdout.toString('utf8')) as Receipt).session);
    expect(sessions.sort()).toEqual([1, 2]);
  });

  it('every single-sender log gives back exactly its sender\'s bytes', async () => {
    for (let i = 0; i < 14; i++) {
      const s = SENDERS[i]!;
      expect((await showRaw(db, `${s.vm}/${s.name}`)).equals(inputs[i]!), `${s.vm}/${s.name}`).toBe(true);
    }
  }, 120_000);

  it('the shared log holds each sender\'s 100,000 lines complete and in order, in its own session', () => {
    const list = entries(db, 'vm-d', 'shared');
    for (const i of [14, 15]) {
      const session = (JSON.parse(results[i]!.stdout.toString('utf8')) as Receipt).session;
      const mine = list.filter((e) => e.session === session);
      expect(mine.filter((e) => e.kind === KIND.LINE)).toHaveLength(LINES);
      expect(reconstruct(mine).equals(inputs[i]!)).toBe(true);
    }
  });

  it('every chain of the store verifies, with the listed counts', async () => {
    const logs = await expectAllVerified(db);
    expect(logs).toHaveLength(16); // 15 logs + warmup
    expect(logs.find((l) => l.name === 'shared')).toMatchObject({ lines: 2 * LINES, sessions: 2 });
  }, 120_000);
});

describe('when a log is sealed while three senders still stream into it', () => {
  const db = join(tmp.dir, 'race.db');
  const REF = 'vm-s/release';
  const SENDERS = 3;
  let key: KeyPair;
  let senders: Started[];
  const sent: Buffer[] = Array.from({ length: SENDERS }, () => Buffer.alloc(0));
  let sealRun: Run;
  let sealAttempts = 0;
  let results: Run[];

  beforeAll(async () => {
    key = await makeKey(tmp.dir);
    senders = Array.from({ length: SENDERS }, () => startService('vm-s', 'release', db, { stdin: 'keep', timeoutMs: 60_000 }));
    let sealed = false;
    const stream = async (k: number): Promise<void> => {
      // A line every ~60 ms until well after the seal.
      for (let i = 0; ; i++) {
        const line = numbered(`s${k}`, 1, i);
        sent[k] = Buffer.concat([sent[k]!, line]);
        await new Promise<void>((resolve) => senders[k]!.child.stdin!.write(line, () => resolve()));
        if (senders[k]!.child.exitCode !== null) return;
        await sleep(60);
        if (sealed && Date.now() > sealedAt + 600) break;
      }
      senders[k]!.child.stdin!.end();
    };
    let sealedAt = 0;
    const streaming = senders.map((_, k) => stream(k));
    // The seal comes once every sender's session is open and has committed
    // lines (not after a fixed sleep: on a loaded machine a service may take
    // seconds to start), so it lands in the middle of all three streams.
    await waitUntil('a committed line from every sender', () => new Set(committed(db, 'vm-s', 'release').filter((e) => e.kind === KIND.LINE).map((e) => e.session)).size >= SENDERS);
    await sleep(300);
    // The seal claims the log before it signs (docs/FORMAT.md 7.3): one attempt, whatever the senders do.
    sealAttempts = 1;
    sealRun = await seal(db, REF, key);
    sealed = true;
    sealedAt = Date.now();
    await Promise.all(streaming);
    results = await Promise.all(senders.map((s) => s.done));
    report('seal racing 3 senders', `sealed after ${sealAttempts} attempt(s); ${sent.map((b) => b.toString().split('\n').length - 1).join('/')} lines sent`);
  }, 90_000);

  it('the seal succeeds (exit 0)', () => {
    expectNoCrash(sealRun, 'seal');
    expect(sealRun.code, sealRun.stderr).toBe(0);
  });

  it('every sender is refused with LOG_SEALED (exit 5) and a JSON error line', () => {
    for (const r of results) expectServiceError(r, 'LOG_SEALED');
  });

  it('each cut session is one seal-cut notice in vm-s/logvm-events, at the head the seal signed', () => {
    const cut = events(db, 'vm-s', 'logvm-events').filter((e) => e.kind === KIND.NOTICE && e.json.notice === 'seal-cut');
    expect(cut.map((e) => e.json.session).sort()).toEqual([1, 2, 3]);
    const list = entries(db, 'vm-s', 'release');
    // Cut while the seal was being signed (at the head it signs) or after its commit (at the SEAL entry).
    const sealSeq = list[list.length - 1]!.seq;
    for (const e of cut) expect(e.json).toMatchObject({ log: REF, entries: e.json.state === 'sealing' ? sealSeq - 1 : sealSeq });
  });

  it('the chain verifies as sealed, and the seal entry is the last entry', async () => {
    const v = await expectVerified(db, REF);
    expect(v.state).toBe('sealed');
    const list = entries(db, 'vm-s', 'release');
    expect(list[list.length - 1]!.kind).toBe(KIND.SEAL);
    expect(list.filter((e) => e.kind === KIND.SEAL)).toHaveLength(1);
  });

  it('nothing is half in: each session\'s stored lines are whole lines, a prefix of what it sent, and fewer than it sent', () => {
    const list = entries(db, 'vm-s', 'release');
    const opens = events(db, 'vm-s', 'release').filter((e) => e.kind === KIND.SESSION_OPEN);
    expect(opens).toHaveLength(SENDERS);
    for (const open of opens) {
      const k = senders.findIndex((s) => s.pid === open.json.pid);
      expect(k).toBeGreaterThanOrEqual(0);
      const stored = reconstruct(list.filter((e) => e.session === open.session));
      const mine = sent[k]!;
      expect(stored.length).toBeGreaterThan(0);
      expect(stored.length).toBeLessThan(mine.length);
      expect(mine.subarray(0, stored.length).equals(stored)).toBe(true);
      expect(stored[stored.length - 1]).toBe(0x0a);
    }
  });

  it('no session has a close entry after the seal (nothing may follow it), and the manifest counts what is stored', async () => {
    const list = entries(db, 'vm-s', 'release');
    expect(list.filter((e) => e.kind === KIND.SESSION_CLOSE)).toHaveLength(0);
    const v = await expectVerified(db, REF);
    expect(v.lines).toBe(list.filter((e) => e.kind === KIND.LINE).length);
  });

  it('a later append (raw or framed) is refused with LOG_SEALED (exit 5) and stores nothing', async () => {
    const before = (await listLogs(db)).find((l) => l.name === 'release')!;
    expectServiceError(await service('vm-s', 'release', db, { input: 'too late\n' }), 'LOG_SEALED');
    expectServiceError(await service('vm-s', '_framed.release', db, { input: Buffer.alloc(0) }), 'LOG_SEALED');
    expect((await listLogs(db)).find((l) => l.name === 'release')).toMatchObject({ entries: before.entries, head: before.head });
  });

  it('the exported bundle verifies with the key', async () => {
    const out = join(tmp.dir, 'bundle');
    const e = await logvm(['export', REF, '--out', out], { db });
    expect(e.code, e.stderr).toBe(0);
    const v = await logvm(['verify-chain', out, '--key', key.pub]);
    expectNoCrash(v, 'verify-chain');
    expect(v.code, v.stderr).toBe(0);
  });
});
