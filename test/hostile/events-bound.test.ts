/**
 * Bounded growth of VM/logvm-events (docs/FORMAT.md 13.5). A session refused
 * at open (SESSION_LIMIT) stores nothing in any log of the VM, so a hostile
 * VM opening sessions over the limit forever would grow its events log
 * without bound if each refusal were a notice of its own. Refusals are
 * coalesced per VM and kind: the first of a window is chained at once, the
 * others are counted and chained as one notice with `count` at the VM's next
 * event; the window doubles while the flood goes on. The fact is not lost:
 * individual notices + the counts = the refusals.
 *
 * Store level with a fake clock (real SQLite file), then end to end: a real
 * flood of over-limit sessions through rpc/qubes.AppendLog.
 */
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import {
  KIND,
  LOGVM,
  entries,
  events,
  expectAllVerified,
  expectReceipt,
  expectServiceError,
  start,
  startService,
  tempDir,
  waitUntil,
  type Run,
} from './util.js';
import { signerScript } from '../seal/util.js';
import { EVENT_WINDOW_MAX_MS, EVENT_WINDOW_MS, Store } from '../../packages/log-vm/src/store.js';

const tmp = tempDir('appendlog-events-bound-');
afterAll(() => tmp.cleanup());

type Notice = Record<string, unknown>;

/** session-limit notices of `vm` in the store, and the refusals they stand for. */
function refusals(db: string, vm: string): { notices: Notice[]; single: number; counted: number } {
  const notices = events(db, vm, 'logvm-events')
    .filter((e) => e.kind === KIND.NOTICE && e.json.notice === 'session-limit')
    .map((e) => e.json);
  const single = notices.filter((n) => n.count === undefined).length;
  const counted = notices.reduce((sum, n) => sum + (typeof n.count === 'number' ? n.count : 0), 0);
  return { notices, single, counted };
}

/** How many windows (EVENT_WINDOW_MS, doubling) a flood lasting `ms` can span: the most single notices it may cost. */
function windowsFor(ms: number): number {
  let n = 1;
  for (let span = EVENT_WINDOW_MS, end = span; end < ms; n++) {
    span = Math.min(span * 2, EVENT_WINDOW_MAX_MS);
    end += span;
  }
  return n;
}

describe('at the store level (fake clock)', () => {
  const refusal = (i: number): Record<string, string> & { notice: string } => ({ notice: 'session-limit', argument: `s${i}`, detail: `refused ${i}` });

  it('100 refusals in one window: one notice at once, 99 counted; the next event chains one notice with count 99, first and last', () => {
    const store = Store.open(join(tmp.dir, 'unit-1.db'), { create: true });
    let t = 1_700_000_000_000;
    const now = (): number => t;
    const chained: boolean[] = [];
    for (let i = 0; i < 100; i++) {
      chained.push(store.recordRefusal('vm-a', refusal(i), now));
      t += 100;
    }
    expect(chained.filter(Boolean)).toHaveLength(1);
    store.recordEvents('vm-a', [{ notice: 'hook', detail: 'another event' }], now);
    store.close();
    const r = refusals(join(tmp.dir, 'unit-1.db'), 'vm-a');
    expect(r.single).toBe(1);
    expect(r.notices).toHaveLength(2);
    expect(r.notices[1]).toMatchObject({ count: 99, first: 1_700_000_000_000 + 100, last: 1_700_000_000_000 + 99 * 100, argument: 's99' });
    expect(r.single + r.counted).toBe(100);
  });

  it('a flood that never stops: one refusal every 30 s for 12 hours costs a handful of notices, and the counts add up', () => {
    const db = join(tmp.dir, 'unit-2.db');
    const store = Store.open(db, { create: true });
    let t = 1_700_000_000_000;
    const now = (): number => t;
    const N = (12 * 3600) / 30;
    for (let i = 0; i < N; i++) {
      store.recordRefusal('vm-b', refusal(i), now);
      t += 30_000;
    }
    store.recordEvents('vm-b', [{ notice: 'hook', detail: 'flush' }], now);
    const stored = store.storedBytes(store.requireLog('vm-b', 'logvm-events').id);
    store.close();
    const r = refusals(db, 'vm-b');
    expect(r.single + r.counted).toBe(N);
    // Windows of 1, 2, 4, … min: 10 windows cover 12 h; each costs a single notice and at most one count notice.
    expect(r.single).toBeLessThanOrEqual(windowsFor(12 * 3600 * 1000));
    expect(r.notices.length).toBeLessThanOrEqual(2 * windowsFor(12 * 3600 * 1000));
    // One notice per refusal would be N sessions of three entries each.
    console.log(`[events-bound] ${N} refusals over 12 h (fake clock): ${r.notices.length} notices, ${stored} stored bytes`);
    expect(stored).toBeLessThan(64 * 1024);
  });

  it.each([61_000, 121_000, 3 * 3600_000])('a flood paced just past the windows (one refusal every %i ms for 3 days) is coalesced too: a few notices a day, not one per refusal', (gap) => {
    const db = join(tmp.dir, `unit-paced-${gap}.db`);
    const store = Store.open(db, { create: true });
    let t = 1_700_000_000_000;
    const now = (): number => t;
    const DAYS = 3;
    const N = Math.floor((DAYS * 24 * 3600_000) / gap);
    for (let i = 0; i < N; i++) {
      store.recordRefusal('vm-p', refusal(i), now);
      t += gap;
    }
    store.recordEvents('vm-p', [{ notice: 'hook', detail: 'flush' }], now);
    store.close();
    const r = refusals(db, 'vm-p');
    expect(r.single + r.counted).toBe(N);
    // Each new window is at least twice the last: no more windows than a flood with no gaps would open.
    expect(r.single).toBeLessThanOrEqual(windowsFor(DAYS * 24 * 3600_000));
    expect(r.notices.length).toBeLessThanOrEqual(2 * windowsFor(DAYS * 24 * 3600_000));
  });

  it('after a quiet spell the window is back to its base length', () => {
    const db = join(tmp.dir, 'unit-3.db');
    const store = Store.open(db, { create: true });
    let t = 1_700_000_000_000;
    const now = (): number => t;
    // A flood long enough to grow the window, then nothing for a day after its last window, then two refusals 2 min apart.
    for (let i = 0; i < 200; i++) {
      store.recordRefusal('vm-c', refusal(i), now);
      t += 10_000;
    }
    t += 2 * 24 * 3600 * 1000;
    expect(store.recordRefusal('vm-c', refusal(1000), now)).toBe(true);
    t += EVENT_WINDOW_MS + 1;
    expect(store.recordRefusal('vm-c', refusal(1001), now)).toBe(true);
    store.close();
    const r = refusals(db, 'vm-c');
    expect(r.single + r.counted).toBe(202);
  });

  it('refusals of two VMs are counted apart, each in its own events log', () => {
    const db = join(tmp.dir, 'unit-4.db');
    const store = Store.open(db, { create: true });
    const now = (): number => 1_700_000_000_000;
    for (let i = 0; i < 5; i++) store.recordRefusal('vm-x', refusal(i), now);
    for (let i = 0; i < 3; i++) store.recordRefusal('vm-y', refusal(i), now);
    store.recordEvents('vm-x', [{ notice: 'hook', detail: 'flush x' }], now);
    store.recordEvents('vm-y', [{ notice: 'hook', detail: 'flush y' }], now);
    store.close();
    const x = refusals(db, 'vm-x');
    const y = refusals(db, 'vm-y');
    expect(x.single + x.counted).toBe(5);
    expect(y.single + y.counted).toBe(3);
  });
});

describe('when a VM floods the log VM with 40 sessions over its limit (sessionsPerVm 1)', () => {
  const db = join(tmp.dir, 'flood.db');
  const VM = 'flood-vm';
  const N = 40;
  const env = { APPENDLOG_SESSIONS_PER_VM: '1' };
  let runs: Run[] = [];
  let elapsed = 0;
  let seal: Run;

  it('every over-limit session is refused with SESSION_LIMIT (exit 19)', async () => {
    expectReceipt(await startService(VM, 'warm', db, { input: 'x\n', env }).done);
    const holder = startService(VM, 'holder', db, { stdin: 'keep', env, timeoutMs: 240_000 });
    await waitUntil('the holder session to be open', () => {
      try {
        return entries(db, VM, 'holder').length > 0;
      } catch {
        return false;
      }
    }, { s: holder });
    const t0 = Date.now();
    for (let i = 0; i < N; i += 4) {
      const batch = Array.from({ length: Math.min(4, N - i) }, (_, k) => startService(VM, `over${i + k}`, db, { input: 'never stored\n', env, timeoutMs: 120_000 }).done);
      runs.push(...(await Promise.all(batch)));
    }
    elapsed = Date.now() - t0;
    for (const r of runs) expectServiceError(r, 'SESSION_LIMIT');
    holder.child.stdin!.end('held\n');
    expectReceipt(await holder.done);
    // The VM's next event: a seal of the holder log whose signer fails (after the claim, so seal-failed is chained).
    const failing = signerScript(tmp.dir, 'gpg-failing', "cat >/dev/null\necho 'gpg: signing failed: No secret key' >&2\nexit 2");
    seal = await start(process.execPath, [LOGVM, 'seal', `${VM}/holder`, '--signer', 'gpg:nobody'], { env: { APPENDLOG_DB: db, APPENDLOG_GPG: failing.path } }).done;
    expect(seal.code, seal.stderr).toBe(40);
  }, 240_000);

  it('the events log holds at most a window\'s worth of notices, and single notices + counts = the 40 refusals', () => {
    const r = refusals(db, VM);
    expect(r.single + r.counted).toBe(N);
    expect(r.single).toBeGreaterThanOrEqual(1);
    expect(r.single).toBeLessThanOrEqual(windowsFor(elapsed));
    const sessions = events(db, VM, 'logvm-events').filter((e) => e.kind === KIND.SESSION_OPEN).length;
    // Each single notice is one events session; the counts ride with the seal-failed event.
    expect(sessions).toBeLessThanOrEqual(r.single + 1);
    const conn = new Database(db, { readonly: true });
    const stored = (conn.prepare("SELECT u.stored FROM usage u JOIN logs l ON l.id = u.log_id WHERE l.vm = ? AND l.name = 'logvm-events'").get(VM) as { stored: number }).stored;
    conn.close();
    console.log(`[events-bound] ${N} over-limit sessions in ${elapsed} ms: ${r.notices.length} session-limit notice(s), events log ${stored} stored bytes`);
  });

  it('the refused sessions stored nothing, and every chain verifies', async () => {
    for (let i = 0; i < N; i++) expect(() => entries(db, VM, `over${i}`)).not.toThrow();
    for (let i = 0; i < N; i++) expect(entries(db, VM, `over${i}`)).toHaveLength(0);
    await expectAllVerified(db);
  });
});
