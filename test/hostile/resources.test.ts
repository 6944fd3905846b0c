/**
 * Resource exhaustion by a hostile build VM: byte quotas per log and per VM
 * (APPENDLOG_QUOTA_LOG_MIB / APPENDLOG_QUOTA_VM_MIB), a capped store
 * (APPENDLOG_MAX_STORE_MIB, SQLite max_page_count) and a really full
 * filesystem (a 4 MiB tmpfs, when this machine lets us mount one). Past a
 * limit the session ends with a chained event that says why, the sender gets
 * a coded error, other VMs are unaffected, and the store is never corrupted.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  KIND,
  ROOT,
  entries,
  events,
  expectAllVerified,
  expectNoCrash,
  expectReceipt,
  expectServiceError,
  expectVerified,
  listLogs,
  logvm,
  numbered,
  report,
  service,
  showRaw,
  sqlite,
  tempDir,
  type Run,
} from './util.js';
import { FRAME_PROTOCOL, FrameType, claimBytes, encodeFrame } from '../../packages/shared/src/index.js';

const tmp = tempDir('appendlog-hostile-resources-');

const MiB = 1024 * 1024;
/** Per stored entry beyond its payload: the 26-byte header (docs/FORMAT.md 3.1) and its 32-byte hash. */
const OVERHEAD = 26 + 32;
/** `n` lines of exactly --max-line (65536) bytes, one entry each. */
const maxLines = (n: number): Buffer => Buffer.concat(Array.from({ length: n }, (_, i) => Buffer.concat([Buffer.alloc(65536, 0x61 + i), Buffer.from('\n')])));
/** 15 such lines: 15 * (65536 + 58) stored bytes, room in 1 MiB for a session's open and close. */
const FIFTEEN = maxLines(15);
const isPrefix = (stored: Buffer, sent: Buffer): boolean => stored.length <= sent.length && sent.subarray(0, stored.length).equals(stored);

async function integrityOk(db: string): Promise<void> {
  const r = await sqlite(db, 'PRAGMA integrity_check');
  expectNoCrash(r, 'sqlite3');
  expect(r.stdout.toString().trim(), r.stderr).toBe('ok');
}

/** What the store says a log holds: its usage row (what quotas count) and the bytes of its blocks and hashes. */
async function storedBytes(db: string, vm: string, name: string): Promise<{ usage: number; blocks: number }> {
  const r = await sqlite(
    db,
    `SELECT (SELECT stored FROM usage u WHERE u.log_id = l.id), (SELECT SUM(length(data) + length(hashes)) FROM blocks b WHERE b.log_id = l.id) FROM logs l WHERE l.vm = '${vm}' AND l.name = '${name}'`,
  );
  expectNoCrash(r, 'sqlite3');
  const [usage, blocks] = r.stdout.toString().trim().split('|').map(Number);
  return { usage: usage!, blocks: blocks! };
}

/** The quota-exceeded notice, then the close with reason quota, end the log's last session. */
function expectQuotaTail(db: string, vm: string, name: string, quota: RegExp): void {
  const tail = events(db, vm, name).slice(-2);
  expect(tail.map((e) => e.kind)).toEqual([KIND.NOTICE, KIND.SESSION_CLOSE]);
  expect(tail[0]!.json).toMatchObject({ notice: 'quota-exceeded' });
  expect(String(tail[0]!.json.detail)).toMatch(quota);
  expect(tail[1]!.json).toMatchObject({ reason: 'quota' });
  expect(String(tail[1]!.json.detail)).toMatch(/not stored/);
}

describe('when VMs hit the per-log (1 MiB) and per-VM (2 MiB) quotas, which count every stored byte', () => {
  const db = join(tmp.dir, 'quota.db');
  const Q = { APPENDLOG_QUOTA_LOG_MIB: '1', APPENDLOG_QUOTA_VM_MIB: '2' };
  const FLOOD = numbered('flood', 60_000); // about 3 MiB
  const EMPTY = Buffer.alloc(100_000, 0x0a); // 100000 empty lines: no payload, 5.8 MB stored
  const hello = encodeFrame(FrameType.HELLO, claimBytes({ claim: 'hello', protocol: FRAME_PROTOCOL, sender: 'flood', hostname: 'h', command: ['make'] }));
  const claim = encodeFrame(FrameType.CLAIM, claimBytes({ claim: 'artifact', path: 'out/a.bin', sha256: 'a'.repeat(64), size: 1 }));
  const CLAIMS = Buffer.concat([hello, ...Array.from({ length: 20_000 }, () => claim), encodeFrame(FrameType.END)]); // no lines at all
  const r: Record<string, Run> = {};
  const s: Record<string, { usage: number; blocks: number }> = {};

  beforeAll(async () => {
    r.fill = await service('vm-a', 'one', db, { input: FIFTEEN, env: Q });
    s.fill = await storedBytes(db, 'vm-a', 'one');
    r.sixteenth = await service('vm-a', 'one', db, { input: maxLines(1), env: Q });
    // Top the log up to just under its quota (what is left is less than the
    // next session's open, notice and close), so the next refusal takes it
    // past and the session after that is refused at open.
    const room = MiB - (await storedBytes(db, 'vm-a', 'one')).usage;
    r.topUp = await service('vm-a', 'one', db, { input: Buffer.concat([Buffer.alloc(room - 2 * OVERHEAD - 250, 0x7a), Buffer.from('\n')]), env: Q });
    r.over = await service('vm-a', 'one', db, { input: 'one more line\n', env: Q });
    r.again = await service('vm-a', 'one', db, { input: 'one more line\n', env: Q });
    r.flood = await service('vm-a', 'two', db, { input: FLOOD, env: Q, measure: true });
    r.empty = await service('vm-c', 'empty', db, { input: EMPTY, env: Q, measure: true });
    r.claims = await service('vm-d', '_framed.claims', db, { input: CLAIMS, env: Q, measure: true });
    r.otherVm1 = await service('vm-b', 'one', db, { input: FIFTEEN, env: Q });
    r.otherVm2 = await service('vm-b', 'two', db, { input: FIFTEEN, env: Q });
    r.vmOver = await service('vm-b', 'three', db, { input: FIFTEEN, env: Q });
  }, 120_000);

  it('a log that stays within its quota is accepted, and the quota counts every entry with its header and hash, not only payloads', () => {
    expect(expectReceipt(r.fill!)).toMatchObject({ bytes: 15 * 65536 });
    // The usage row (what quotas count) is exactly the bytes of the stored blocks and hashes.
    expect(s.fill!.usage).toBe(s.fill!.blocks);
    expect(s.fill!.usage).toBeGreaterThan(15 * (65536 + OVERHEAD));
    expect(s.fill!.usage).toBeLessThanOrEqual(MiB);
  });

  it('1 MiB of payload does not fit a 1 MiB quota: the 16th max-length line is refused, QUOTA_EXCEEDED (exit 18), chained notice and close reason quota', async () => {
    const { message } = expectServiceError(r.sixteenth!, 'QUOTA_EXCEEDED');
    expect(message).toMatch(/vm-a\/one/);
    expect(expectReceipt(r.topUp!).log).toBe('vm-a/one');
    expectServiceError(r.over!, 'QUOTA_EXCEEDED');
    expectQuotaTail(db, 'vm-a', 'one', /vm-a\/one.*quota/);
  });

  it('once the log holds its quota, the next session is refused at open: QUOTA_EXCEEDED (exit 18), a JSON error, nothing stored', async () => {
    const { message } = expectServiceError(r.again!, 'QUOTA_EXCEEDED');
    expect(message).toMatch(/vm-a\/one.*is at/);
    const log = (await listLogs(db)).find((l) => l.vm === 'vm-a' && l.name === 'one')!;
    // fill, the refused 16th line, the top-up, the refused line: 4 sessions, the refused-at-open one is not among them.
    expect(log).toMatchObject({ sessions: 4 });
    const u = await storedBytes(db, 'vm-a', 'one');
    expect(u.usage).toBe(u.blocks);
    expect(u.usage).toBeGreaterThanOrEqual(MiB);
    // Only the notice and close of the refused session go past the quota (a bounded overshoot).
    expect(u.usage).toBeLessThan(MiB + 2048);
  });

  describe('the session that floods a log past its quota', () => {
    it('gets QUOTA_EXCEEDED (exit 18) and a JSON error line, with bounded memory', () => {
      expectServiceError(r.flood!, 'QUOTA_EXCEEDED');
      expect(r.flood!.peakRssKiB!).toBeLessThan(150e6 / 1024);
    });

    it('its log holds at most the quota, as a prefix of whole lines of what was sent', async () => {
      const stored = await showRaw(db, 'vm-a/two');
      expect(isPrefix(stored, FLOOD)).toBe(true);
      if (stored.length > 0) expect(stored[stored.length - 1]).toBe(0x0a);
      const u = await storedBytes(db, 'vm-a', 'two');
      expect(u.usage).toBeLessThanOrEqual(MiB + 2048);
    });

    it('a NOTICE quota-exceeded event is chained, then the session closes with reason quota, saying what was not stored', () => {
      expectQuotaTail(db, 'vm-a', 'two', /vm-a\/two.*quota/);
    });
  });

  it('a flood of empty lines (no payload bytes at all) hits the quota: QUOTA_EXCEEDED (exit 18), chained notice, close reason quota, bounded memory', async () => {
    expectServiceError(r.empty!, 'QUOTA_EXCEEDED');
    expect(r.empty!.peakRssKiB!).toBeLessThan(150e6 / 1024);
    expectQuotaTail(db, 'vm-c', 'empty', /vm-c\/empty.*quota/);
    const u = await storedBytes(db, 'vm-c', 'empty');
    expect(u.usage).toBe(u.blocks);
    expect(u.usage).toBeLessThanOrEqual(MiB + 2048);
  });

  it('a flood of claims (framed, no lines at all) hits the quota: QUOTA_EXCEEDED (exit 18), chained notice, close reason quota', async () => {
    expectServiceError(r.claims!, 'QUOTA_EXCEEDED');
    expect(r.claims!.peakRssKiB!).toBeLessThan(150e6 / 1024);
    expectQuotaTail(db, 'vm-d', 'claims', /vm-d\/claims.*quota/);
    const claims = entries(db, 'vm-d', 'claims').filter((e) => e.kind === KIND.CLAIM).length;
    expect(claims).toBeLessThan(20_000);
    const u = await storedBytes(db, 'vm-d', 'claims');
    expect(u.usage).toBeLessThanOrEqual(MiB + 2048);
  });

  it('another VM is unaffected by vm-a\'s full log: vm-b stores 15 max lines in each of two logs', () => {
    expect(expectReceipt(r.otherVm1!)).toMatchObject({ log: 'vm-b/one', bytes: 15 * 65536 });
    expect(expectReceipt(r.otherVm2!)).toMatchObject({ log: 'vm-b/two', bytes: 15 * 65536 });
  });

  it('a session that would take the VM past its 2 MiB (though its log has room) gets QUOTA_EXCEEDED naming the VM quota, chained as a notice', () => {
    expectServiceError(r.vmOver!, 'QUOTA_EXCEEDED');
    expectQuotaTail(db, 'vm-b', 'three', /VM vm-b/);
  });

  it('every chain of the store verifies', async () => {
    await expectAllVerified(db);
  });

  it('QUOTA_EXCEEDED (exit 18) and FRAME_INVALID (exit 17), which the service returns, are in the documented exit code tables', () => {
    // README "Exit codes" and docs/FORMAT.md section 10 are the tables a caller matches on.
    for (const file of ['README.md', 'docs/FORMAT.md']) {
      const text = readFileSync(join(ROOT, file), 'utf8');
      expect(text, `${file} documents exit 18`).toMatch(/^\| 18 \|.*QUOTA_EXCEEDED/m);
      expect(text, `${file} documents exit 17`).toMatch(/^\| 17 \|.*FRAME_INVALID/m);
    }
  });
});

describe('when the store is capped at 2 MiB (APPENDLOG_MAX_STORE_MIB=2) and a VM sends more', () => {
  const db = join(tmp.dir, 'capped.db');
  const INPUT = numbered('full', 100_000); // about 5 MiB
  let r: Run;
  let err: { message: string };

  beforeAll(async () => {
    r = await service('build-vm', 'big', db, { input: INPUT, env: { APPENDLOG_MAX_STORE_MIB: '2' } });
  });

  it('the sender gets STORE_ERROR (exit 7) saying disk full, as a JSON error line and on stderr, without a crash', () => {
    err = expectServiceError(r, 'STORE_ERROR');
    expect(err.message).toMatch(/disk full/);
    expect(r.stderr).toMatch(/disk full/);
  });

  it('the store is not corrupted: PRAGMA integrity_check says ok, and the chain verifies', async () => {
    await integrityOk(db);
    await expectVerified(db, 'build-vm/big');
  });

  it('what is stored is a prefix of the input, and a chained close entry says why the rest is not', async () => {
    expect(isPrefix(await showRaw(db, 'build-vm/big'), INPUT)).toBe(true);
    const close = events(db, 'build-vm', 'big').find((e) => e.kind === KIND.SESSION_CLOSE)!;
    expect(close.json).toMatchObject({ reason: 'error' });
    expect(String(close.json.detail)).toMatch(/disk full.*not stored/);
  });

  it('a small session under the same cap either fits or fails the same clean way; the store stays intact', async () => {
    const small = await service('build-vm', 'small', db, { input: 'small\n', env: { APPENDLOG_MAX_STORE_MIB: '2' } });
    if (small.code !== 0) expectServiceError(small, 'STORE_ERROR');
    else expectReceipt(small);
    await integrityOk(db);
  });

  it('without the cap the same store takes new sessions again, and every chain verifies', async () => {
    expectReceipt(await service('build-vm', 'big', db, { input: 'after the cap was lifted\n' }));
    await expectAllVerified(db);
    await integrityOk(db);
  });
});

describe('when the store is not a usable SQLite file', () => {
  it.each([
    ['a text file', (p: string) => writeFileSync(p, 'this is not a database\n'.repeat(100))],
    ['a directory', (p: string) => mkdirSync(p)],
  ])('%s: STORE_ERROR (exit 7) with a JSON error, no crash, and the file is left as it was', async (_what, make) => {
    const p = join(tmp.dir, `not-a-store-${Math.random().toString(36).slice(2)}`);
    make(p);
    expectServiceError(await service('build-vm', 'x', p, { input: 'line\n' }), 'STORE_ERROR');
    const v = await logvm(['verify-chain', '--json', '--db', p, '--store', 'build-vm/x']);
    expectNoCrash(v, 'verify-chain');
    expect(v.code).not.toBe(0);
  });
});

// A real ENOSPC needs a small filesystem: try to mount a 4 MiB tmpfs (root in
// a sandbox may or may not be allowed to).
const mnt = join(tmp.dir, 'tmpfs');
const tmpfs = ((): { ok: boolean; reason: string } => {
  try {
    mkdirSync(mnt, { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', mnt], { stdio: 'pipe' });
    return { ok: true, reason: '' };
  } catch (e) {
    return { ok: false, reason: String((e as { stderr?: Buffer }).stderr ?? (e as Error).message).trim().split('\n')[0]! };
  }
})();
afterAll(() => {
  // Unmount before the temporary directory (which holds the mount point) is removed.
  if (tmpfs.ok) execFileSync('umount', [mnt]);
  tmp.cleanup();
});

describe.skipIf(!tmpfs.ok)(
  tmpfs.ok ? 'when the store\'s filesystem is really full (a 4 MiB tmpfs: ENOSPC)' : `SKIPPED: real ENOSPC on a 4 MiB tmpfs (mount -t tmpfs failed: ${tmpfs.reason})`,
  () => {
    const db = join(mnt, 'logs.db');
    const ballast = join(mnt, 'ballast');
    let closedAtOnce: ReturnType<typeof events>[number] | undefined;
    const INPUT = numbered('enospc', 120_000); // about 6 MiB
    let r: Run;

    beforeAll(async () => {
      // Other files take part of the disk, so that freeing them later leaves
      // room for the store to checkpoint its WAL and go on. What is left
      // holds a new store's schema (one 64 KiB page per table and index,
      // written through the WAL, then checkpointed: about twice the size of
      // an empty store) and its first session, not the input. The empty
      // store is measured, so a table added to the schema cannot leave too
      // little room for the first session (the log would never be created).
      const probe = join(tmp.dir, 'probe.db');
      expectReceipt(await service('build-vm', 'probe', probe, { input: 'probe\n' }));
      const empty = statSync(probe).size;
      const free = 2 * empty + 0.5 * MiB;
      expect(free, 'room for a new store and its first session, not for the 6 MiB input').toBeLessThan(3.5 * MiB);
      writeFileSync(ballast, Buffer.alloc(4 * MiB - free));
      r = await service('build-vm', 'big', db, { input: INPUT });
    });

    it('the sender gets STORE_ERROR (exit 7) saying disk full, without a crash', () => {
      const { message } = expectServiceError(r, 'STORE_ERROR');
      expect(message).toMatch(/disk full/);
    });

    it('the store is not corrupted: integrity_check ok, the chain verifies, what is stored is a prefix of the input', async () => {
      await integrityOk(db);
      await expectVerified(db, 'build-vm/big');
      expect(isPrefix(await showRaw(db, 'build-vm/big'), INPUT)).toBe(true);
      closedAtOnce = events(db, 'build-vm', 'big').find((e) => e.kind === KIND.SESSION_CLOSE && e.session === 1);
      if (closedAtOnce !== undefined) {
        expect(closedAtOnce.json).toMatchObject({ reason: 'error' });
        expect(String(closedAtOnce.json.detail)).toMatch(/disk full/);
      }
    });

    it('a new store on the full filesystem is refused with STORE_ERROR (exit 7), no crash', async () => {
      const filler = join(mnt, 'filler');
      try {
        execFileSync('dd', ['if=/dev/zero', `of=${filler}`, 'bs=64k'], { stdio: 'pipe' });
      } catch {
        // dd stops with ENOSPC: the filesystem is now full
      }
      expectServiceError(await service('build-vm', 'x', join(mnt, 'second.db'), { input: 'line\n' }), 'STORE_ERROR');
    });

    it('once the other files are deleted, the store takes a new session and every chain verifies', async () => {
      for (const f of ['filler', 'ballast', 'second.db', 'second.db-wal', 'second.db-shm', 'second.db-journal']) rmSync(join(mnt, f), { force: true });
      expectReceipt(await service('build-vm', 'big', db, { input: 'space again\n' }));
      // The cut session's end is in the chain: its own error close saying
      // disk full, or, if the disk was too full even for that close
      // (FORMAT.md 3.5), a `lost` close written by this next session.
      const first = events(db, 'build-vm', 'big').filter((e) => e.kind === KIND.SESSION_CLOSE && e.session === 1);
      expect(first).toHaveLength(1);
      expect(first[0]!.json.reason).toBe(closedAtOnce === undefined ? 'lost' : 'error');
      report('real ENOSPC: how the cut session was closed', closedAtOnce === undefined ? 'no close fitted; lost close written by the next session' : 'error close with detail disk full');
      await expectAllVerified(db);
      await integrityOk(db);
    });
  },
);

