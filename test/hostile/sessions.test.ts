/**
 * A hostile build VM opening many sessions that send nothing: the log VM
 * limits the sessions one VM may have open at once (APPENDLOG_SESSIONS_PER_VM,
 * default 16), counted across the separate service processes (each qrexec
 * call is its own process) from the store's live_sessions rows whose process
 * still runs, and closes a session that sends nothing for the idle timeout
 * (APPENDLOG_IDLE_TIMEOUT_MS, default 10 min). Each is a coded refusal and a
 * chained event.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  EXIT,
  KIND,
  ROOT,
  events,
  expectAllVerified,
  expectNoCrash,
  expectReceipt,
  expectServiceError,
  killGroup,
  service,
  showRaw,
  start,
  startService,
  tempDir,
  waitUntil,
  type Run,
  type Started,
} from './util.js';
import { LOGVM } from '../helpers.js';

const tmp = tempDir('appendlog-hostile-sessions-');
afterAll(() => tmp.cleanup());

describe('when one VM opens 64 silent sessions at once (default limit 16)', () => {
  const db = join(tmp.dir, 'limit.db');
  const started: Started[] = [];
  let refused: Run[] = [];
  let kept: Started[] = [];

  beforeAll(async () => {
    // A first session creates the store, so 64 processes do not race to create its schema.
    expectReceipt(await service('flood-vm', 'warm', db, { input: 'x\n' }));
    for (let i = 0; i < 64; i++) started.push(startService('flood-vm', `s${i}`, db, { stdin: 'keep', measure: true, timeoutMs: 240_000 }));
    // The refused ones end on their own; the others wait for input.
    const ended = new Set<Started>();
    for (const s of started) void s.done.then(() => ended.add(s));
    await waitUntil('48 of the 64 silent sessions to be refused', () => ended.size >= 48, { timeoutMs: 200_000 });
    // A moment for any refusal beyond the 48 (a limit counted wrongly) to show.
    await new Promise((r) => setTimeout(r, 1000));
    refused = await Promise.all(started.filter((s) => ended.has(s)).map((s) => s.done));
    kept = started.filter((s) => !ended.has(s));
  }, 240_000);

  afterAll(() => {
    for (const s of started) if (s.child.exitCode === null) killGroup(s.child, 'SIGKILL');
  });

  it('exactly 48 are refused with SESSION_LIMIT (exit 19), a JSON error line, no crash; 16 stay open', () => {
    expect(refused).toHaveLength(48);
    expect(kept).toHaveLength(16);
    for (const r of refused) {
      expectNoCrash(r, 'refused session');
      const { message } = expectServiceError(r, 'SESSION_LIMIT');
      expect(message).toMatch(/flood-vm .*16/);
    }
  });

  it('memory stays bounded: each refused process peaked under 150 MB, and only 16 processes are left', () => {
    for (const r of refused) expect(r.peakRssKiB!).toBeLessThan(150e6 / 1024);
    expect(kept.filter((s) => s.child.exitCode === null)).toHaveLength(16);
  });

  it('the refusals are chained as session-limit notices in flood-vm/logvm-events, coalesced (13.5): single notices + counts + the count not chained yet = 48', async () => {
    const notices = events(db, 'flood-vm', 'logvm-events').filter((e) => e.kind === KIND.NOTICE && e.json.notice === 'session-limit');
    expect(notices.length).toBeGreaterThanOrEqual(1);
    expect(String(notices[0]!.json.detail)).toMatch(/at once \(16\)/);
    const single = notices.filter((n) => n.json.count === undefined).length;
    const counted = notices.reduce((sum, n) => sum + (typeof n.json.count === 'number' ? n.json.count : 0), 0);
    // Counted since the last chained notice; chained with the VM's next event (docs/FORMAT.md 7.2 event_tally).
    const conn = new Database(db, { readonly: true });
    const pending = (conn.prepare("SELECT coalesce(sum(count), 0) AS n FROM event_tally WHERE vm = 'flood-vm' AND notice = 'session-limit'").get() as { n: number }).n;
    conn.close();
    expect(single + counted + pending).toBe(48);
    // All 48 came within a few windows at most: a flood costs a few notices, not one each.
    expect(single).toBeLessThanOrEqual(4);
  });

  it('the 16 admitted sessions still work: what they send is stored and each closes with eof', async () => {
    const runs = kept.map((s, i) => {
      s.child.stdin!.end(`late line ${i}\n`);
      return s.done;
    });
    for (const r of await Promise.all(runs)) expectReceipt(r);
    await expectAllVerified(db);
  });

  it('a killed session does not hold its slot: after SIGKILL of 16 live sessions a new one is admitted', async () => {
    const more = Array.from({ length: 16 }, (_, i) => startService('flood-vm', `k${i}`, db, { stdin: 'keep', timeoutMs: 120_000 }));
    // Wait until all 16 are open (their session-open is committed), then kill them without a close.
    const opened = (i: number): boolean => {
      try {
        return events(db, 'flood-vm', `k${i}`).length > 0;
      } catch {
        return false; // the log is not created yet
      }
    };
    await waitUntil('16 sessions open', () => more.every((_, i) => opened(i)), { timeoutMs: 100_000 });
    for (const m of more) killGroup(m.child, 'SIGKILL');
    await Promise.all(more.map((m) => m.done));
    expectReceipt(await service('flood-vm', 'after-kill', db, { input: 'fine\n' }));
  });
});

describe('when a session sends one line and then nothing (idle timeout 1.5 s)', () => {
  const db = join(tmp.dir, 'idle.db');
  let r: Run;

  beforeAll(async () => {
    const s = startService('idle-vm', 'quiet', db, { stdin: 'keep', env: { APPENDLOG_IDLE_TIMEOUT_MS: '1500' }, timeoutMs: 60_000 });
    s.child.stdin!.write('one line\n');
    // stdin stays open: the sender neither sends nor ends.
    r = await s.done;
    s.child.stdin!.destroy();
  }, 90_000);

  it('the session is closed: IDLE_TIMEOUT (exit 23), a JSON error line, no crash', () => {
    expectNoCrash(r, 'idle session');
    expect(r.code).toBe(EXIT.IDLE_TIMEOUT);
    expectServiceError(r, 'IDLE_TIMEOUT');
  });

  it('the line is stored and the chained close has reason idle, saying why', async () => {
    expect((await showRaw(db, 'idle-vm/quiet')).toString()).toBe('one line\n');
    const close = events(db, 'idle-vm', 'quiet').filter((e) => e.kind === KIND.SESSION_CLOSE);
    expect(close).toHaveLength(1);
    expect(close[0]!.json).toMatchObject({ reason: 'idle', lines: 1 });
    expect(String(close[0]!.json.detail)).toMatch(/no input for 1500 ms/);
    await expectAllVerified(db);
  });

  it('SESSION_LIMIT (19) and IDLE_TIMEOUT (23) are in the documented exit code tables, and idle among FORMAT.md close reasons', () => {
    for (const file of ['README.md', 'docs/FORMAT.md']) {
      const text = readFileSync(join(ROOT, file), 'utf8');
      expect(text, `${file} documents exit 19`).toMatch(/^\| 19 \|.*SESSION_LIMIT/m);
      expect(text, `${file} documents exit 23`).toMatch(/^\| 23 \|.*IDLE_TIMEOUT/m);
    }
    expect(readFileSync(join(ROOT, 'docs/FORMAT.md'), 'utf8')).toMatch(/^\| `idle` \|/m);
  });
});

describe('when one VM opens 6 silent qubesbuilder.BuildLog sessions (sessionsPerVm 2)', () => {
  // The legacy front door is a process per call too: the same per-VM limit applies, shared with qubes.AppendLog.
  const home = join(tmp.dir, 'buildlog-home');
  const db = join(home, '.local/share/appendlog/logs.db');
  const started: Started[] = [];
  let refused: Run[] = [];
  let kept: Started[] = [];
  const env = (i: number): Record<string, string> => ({
    HOME: home,
    QREXEC_REMOTE_DOMAIN: 'bl-vm',
    QREXEC_SERVICE_ARGUMENT: `sub${i}`,
    QREXEC_REQUESTED_TARGET_TYPE: '',
    APPENDLOG_LOGVM: LOGVM,
    APPENDLOG_SESSIONS_PER_VM: '2',
    XDG_CONFIG_HOME: join(home, '.no-config'),
  });
  const buildLog = (i: number): Started => start(join(ROOT, 'rpc/qubesbuilder.BuildLog'), [`sub${i}`], { env: env(i), stdin: 'keep', timeoutMs: 120_000 });
  const liveRows = (): number => {
    try {
      const conn = new Database(db, { readonly: true });
      try {
        return (conn.prepare('SELECT count(*) AS n FROM live_sessions').get() as { n: number }).n;
      } finally {
        conn.close();
      }
    } catch {
      return 0; // the store is not created yet
    }
  };

  beforeAll(async () => {
    mkdirSync(home, { recursive: true });
    for (let i = 0; i < 2; i++) started.push(buildLog(i));
    await waitUntil('2 BuildLog sessions open', () => liveRows() >= 2, { timeoutMs: 60_000 });
    for (let i = 2; i < 6; i++) started.push(buildLog(i));
    const ended = new Set<Started>();
    for (const s of started) void s.done.then(() => ended.add(s));
    await waitUntil('4 of the 6 silent sessions to be refused', () => ended.size >= 4, { timeoutMs: 100_000 });
    await new Promise((r) => setTimeout(r, 1000));
    refused = await Promise.all(started.filter((s) => ended.has(s)).map((s) => s.done));
    kept = started.filter((s) => !ended.has(s));
  }, 180_000);

  afterAll(() => {
    for (const s of started) if (s.child.exitCode === null) killGroup(s.child, 'SIGKILL');
  });

  it('the 4 over the limit are refused with SESSION_LIMIT (exit 19), print no path, store nothing; the 2 first stay open', () => {
    expect(refused).toHaveLength(4);
    expect(kept).toHaveLength(2);
    expect(started.slice(0, 2)).toEqual(kept);
    for (const r of refused) {
      expectNoCrash(r, 'refused BuildLog session');
      expect(r.code, r.stderr).toBe(EXIT.SESSION_LIMIT);
      expect(r.stderr).toMatch(/^qubesbuilder\.BuildLog: SESSION_LIMIT: /);
      expect(r.stdout.length).toBe(0);
    }
    // No file and no directory: the caller picks SUBDIR, so a refused call must not leave one each.
    expect(readdirSync(join(home, 'QubesIncomingBuildLog', 'bl-vm')).sort()).toEqual(['sub0', 'sub1']);
  });

  it('the refusals are chained as session-limit notices in bl-vm/logvm-events, coalesced: single notices + counts + the count not chained yet = 4', () => {
    const notices = events(db, 'bl-vm', 'logvm-events').filter((e) => e.kind === KIND.NOTICE && e.json.notice === 'session-limit');
    expect(notices.length).toBeGreaterThanOrEqual(1);
    const single = notices.filter((n) => n.json.count === undefined).length;
    const counted = notices.reduce((sum, n) => sum + (typeof n.json.count === 'number' ? n.json.count : 0), 0);
    const conn = new Database(db, { readonly: true });
    const pending = (conn.prepare("SELECT coalesce(sum(count), 0) AS n FROM event_tally WHERE vm = 'bl-vm' AND notice = 'session-limit'").get() as { n: number }).n;
    conn.close();
    expect(single + counted + pending).toBe(4);
  });

  it('the 2 admitted sessions still work: what they send is stored, each prints its path and exits 0', async () => {
    const runs = kept.map((s, i) => {
      s.child.stdin!.end(`late line ${i}\n`);
      return s.done;
    });
    for (const r of await Promise.all(runs)) {
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.toString('utf8')).toMatch(/^bl-vm\/sub[01]\/log_[0-9_-]+\n$/);
    }
    await expectAllVerified(db);
  });
});

describe('when sealOnClose waits for a slow signer and the VM keeps ending sessions (sessionsPerVm 2)', () => {
  // Each ended session's process goes on to seal its log, one seal of the store at a time: it keeps its VM's slot meanwhile.
  const db = join(tmp.dir, 'seal-wait.db');
  const gate = join(tmp.dir, 'seal-wait.gate');
  const signer = join(tmp.dir, 'seal-wait-signer.sh');
  const env = (): Record<string, string> => ({ APPENDLOG_SESSIONS_PER_VM: '2', APPENDLOG_SEAL_ON_CLOSE: 'gpg:0123456789ABCDEF', APPENDLOG_GPG: signer });
  const closingRows = (): number => {
    if (!existsSync(db)) return 0;
    const conn = new Database(db, { readonly: true });
    try {
      return (conn.prepare('SELECT count(*) AS n FROM closing').get() as { n: number }).n;
    } catch {
      return 0; // the schema is being created
    } finally {
      conn.close();
    }
  };
  const first: Started[] = [];
  let late: Run[] = [];

  beforeAll(async () => {
    // The vault's user does not answer (yet); then the signer fails.
    writeFileSync(signer, `#!/bin/sh\nwhile [ ! -e '${gate}' ]; do sleep 0.05; done\nexit 1\n`);
    chmodSync(signer, 0o755);
    for (let i = 0; i < 2; i++) {
      first.push(startService('wait-vm', `w${i}`, db, { input: `line ${i}\n`, env: env(), timeoutMs: 120_000 }));
      await waitUntil(`session ${i} to be sealing at its end`, () => closingRows() >= i + 1, { timeoutMs: 60_000 });
    }
    late = await Promise.all(Array.from({ length: 4 }, (_, i) => service('wait-vm', `late${i}`, db, { input: 'more\n', env: env(), timeoutMs: 60_000 })));
    writeFileSync(gate, '');
  }, 180_000);

  afterAll(() => {
    writeFileSync(gate, '');
    for (const s of first) if (s.child.exitCode === null) killGroup(s.child, 'SIGKILL');
  });

  it('the 4 sessions opened while 2 processes are sealing are refused with SESSION_LIMIT (exit 19), storing nothing', () => {
    for (const r of late) {
      expectNoCrash(r, 'late session');
      expectServiceError(r, 'SESSION_LIMIT');
    }
    const conn = new Database(db, { readonly: true });
    const names = (conn.prepare("SELECT name FROM logs WHERE vm = 'wait-vm' ORDER BY name").all() as Array<{ name: string }>).map((r) => r.name);
    conn.close();
    expect(names).toEqual(['logvm-events', 'w0', 'w1']);
  });

  it('the 2 sealing processes end once the signer answers: their sessions were stored (exit 0), seal-failed is chained for each, and their slots are free again', async () => {
    for (const s of first) {
      const r = await s.done;
      expectNoCrash(r, 'sealing session');
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.toString('utf8')).toMatch(/"type":"receipt".*"final":true/);
      expect(r.stderr).toMatch(/^logvm append: SIGNER_FAILED: seal failed for wait-vm\/w[01]; the log is stored/);
    }
    const failed = events(db, 'wait-vm', 'logvm-events').filter((e) => e.kind === KIND.NOTICE && e.json.notice === 'seal-failed');
    expect(failed.map((e) => e.json.log).sort()).toEqual(['wait-vm/w0', 'wait-vm/w1']);
    expect(closingRows()).toBe(0);
    expectReceipt(await service('wait-vm', 'after', db, { input: 'fine\n', timeoutMs: 60_000 }));
    await expectAllVerified(db);
  });
});

describe('when qubesbuilder.BuildLog sessions end but their post-log-hook runs long (sessionsPerVm 2)', () => {
  // What a BuildLog process does after its session (text file, xz, seal, hook) keeps the VM's slot until it ends.
  const home = join(tmp.dir, 'buildlog-hook-home');
  const db = join(home, '.local/share/appendlog/logs.db');
  const gate = join(tmp.dir, 'buildlog-hook.gate');
  const env = (i: number): Record<string, string> => ({
    HOME: home,
    QREXEC_REMOTE_DOMAIN: 'hook-vm',
    QREXEC_SERVICE_ARGUMENT: `h${i}`,
    QREXEC_REQUESTED_TARGET_TYPE: '',
    APPENDLOG_LOGVM: LOGVM,
    APPENDLOG_SESSIONS_PER_VM: '2',
    XDG_CONFIG_HOME: join(home, '.no-config'),
  });
  const buildLog = (i: number): Started => start(join(ROOT, 'rpc/qubesbuilder.BuildLog'), [`h${i}`], { env: env(i), input: `build ${i}\n`, timeoutMs: 120_000 });
  const hookRuns = join(tmp.dir, 'buildlog-hook.runs');
  const first: Started[] = [];
  let late: Run[] = [];

  beforeAll(async () => {
    mkdirSync(join(home, 'QubesIncomingBuildLog'), { recursive: true });
    const hook = join(home, 'QubesIncomingBuildLog', 'post-log-hook');
    writeFileSync(hook, `#!/bin/sh\necho "$1" >> '${hookRuns}'\nwhile [ ! -e '${gate}' ]; do sleep 0.05; done\n`);
    chmodSync(hook, 0o755);
    const runs = (): number => (existsSync(hookRuns) ? readFileSync(hookRuns, 'utf8').split('\n').length - 1 : 0);
    for (let i = 0; i < 2; i++) {
      first.push(buildLog(i));
      await waitUntil(`the hook of session ${i} to run`, () => runs() >= i + 1, { timeoutMs: 60_000 });
    }
    late = await Promise.all([2, 3].map((i) => buildLog(i).done));
    writeFileSync(gate, '');
  }, 180_000);

  afterAll(() => {
    writeFileSync(gate, '');
    for (const s of first) if (s.child.exitCode === null) killGroup(s.child, 'SIGKILL');
  });

  it('calls made while 2 processes still run their hook are refused with SESSION_LIMIT (exit 19), print no path', () => {
    for (const r of late) {
      expectNoCrash(r, 'late BuildLog call');
      expect(r.code, r.stderr).toBe(EXIT.SESSION_LIMIT);
      expect(r.stdout.length).toBe(0);
    }
  });

  it('the 2 first printed their path and exit 0 once the hook ends; then a new call is admitted', async () => {
    for (const s of first) {
      const r = await s.done;
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.toString('utf8')).toMatch(/^hook-vm\/h[01]\/log_[0-9_-]+\n$/);
    }
    const again = await buildLog(9).done;
    expect(again.code, again.stderr).toBe(0);
  });
});
