/**
 * Faults around a session: the sender goes away mid-line or mid-frame, its
 * connection is reset, the log VM's service is killed (SIGKILL), stopped
 * (SIGTERM, SIGINT, SIGHUP), blocked by another writer's lock, or loses its
 * stdout. Whatever happens, the store stays intact (every chain verifies),
 * what was committed is a prefix of what was sent, and the chain says how the
 * session ended: a close entry with its reason, or, after a SIGKILL, a `lost`
 * close written by the next session. A committed line survives a SIGKILL
 * once one commit interval has passed.
 */
import { once } from 'node:events';
import net from 'node:net';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FRAME_PROTOCOL, FrameType, claimBytes, encodeFrame } from '../../packages/shared/src/index.js';
import {
  FLAG,
  KIND,
  SQLITE3,
  entries,
  events,
  expectAllVerified,
  expectFinalReceipt,
  expectNoCrash,
  expectReceipt,
  expectServiceError,
  expectVerified,
  numbered,
  reconstruct,
  report,
  service,
  showRaw,
  sleep,
  start,
  startService,
  committed,
  waitForLines,
  waitForOpenFile,
  waitUntil,
  tempDir,
  type Run,
  type Started,
} from './util.js';

const tmp = tempDir('appendlog-hostile-faults-');
afterAll(() => tmp.cleanup());
let dbs = 0;
const newDb = (): string => join(tmp.dir, `faults-${++dbs}.db`);

/** Writes to the service's stdin and resolves once the pipe took the bytes. */
function send(s: Started, data: Buffer | string): Promise<void> {
  return new Promise((resolve) => {
    if (s.child.stdin!.destroyed) return resolve();
    s.child.stdin!.write(data, () => resolve());
  });
}

/** True if `stored` is a prefix of `sent`. */
const isPrefix = (stored: Buffer, sent: Buffer): boolean => stored.length <= sent.length && sent.subarray(0, stored.length).equals(stored);

const closes = (db: string, vm: string, name: string) => events(db, vm, name).filter((e) => e.kind === KIND.SESSION_CLOSE);
const notices = (db: string, vm: string, name: string) => events(db, vm, name).filter((e) => e.kind === KIND.NOTICE);

const faultsTried: string[] = [];
afterAll(() => report('fault kinds exercised', `${faultsTried.length}: ${faultsTried.join(', ')}`));

describe('when the sender disconnects in the middle of a line (raw mode)', () => {
  const db = newDb();

  it('keeps the cut-off line, flagged NOEOL, and closes with eof (exit 0, one receipt)', async () => {
    faultsTried.push('disconnect mid-line');
    const s = startService('build-vm', 'cut', db, { stdin: 'keep' });
    await send(s, 'line 1\nline 2\npart');
    // Read, and the whole lines committed, while the last line is still open.
    await waitForLines(db, 'build-vm', 'cut', 2, s);
    await send(s, 'ial li');
    await sleep(100);
    s.child.stdin!.end();
    const r = await s.done;
    expect(expectReceipt(r)).toMatchObject({ lines: 3, bytes: 22 });
    const lines = entries(db, 'build-vm', 'cut').filter((e) => e.kind === KIND.LINE);
    expect(lines.map((e) => [e.payload!.toString(), e.flags])).toEqual([
      ['line 1', 0],
      ['line 2', 0],
      ['partial li', FLAG.NOEOL],
    ]);
    expect(closes(db, 'build-vm', 'cut').map((e) => e.json.reason)).toEqual(['eof']);
    expect((await showRaw(db, 'build-vm/cut')).toString()).toBe('line 1\nline 2\npartial li');
  });

  it('a long line cut off mid-chunk keeps its CONT chunks and a NOEOL rest (APPENDLOG_MAX_LINE=16)', async () => {
    faultsTried.push('disconnect mid long line');
    const s = startService('build-vm', 'cut-long', db, { stdin: 'keep', env: { APPENDLOG_MAX_LINE: '16' } });
    const sent = 'x'.repeat(20) + 'y'.repeat(20);
    for (let i = 0; i < sent.length; i += 7) {
      await send(s, sent.slice(i, i + 7));
      await sleep(20);
    }
    s.child.stdin!.end();
    expectReceipt(await s.done);
    const lines = entries(db, 'build-vm', 'cut-long').filter((e) => e.kind === KIND.LINE);
    expect(lines.map((e) => [e.length, e.flags])).toEqual([
      [16, FLAG.CONT],
      [16, FLAG.CONT],
      [8, FLAG.NOEOL],
    ]);
    expect((await showRaw(db, 'build-vm/cut-long')).toString()).toBe(sent);
    await expectAllVerified(db);
  });
});

describe('when the sender\'s connection is reset (TCP RST) in the middle of a line', () => {
  const db = newDb();
  let r: Run;

  beforeAll(async () => {
    faultsTried.push('connection reset');
    const server = net.createServer({ pauseOnConnect: true });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    const [sock] = (await once(server, 'connection')) as [net.Socket];
    const s = startService('build-vm', 'reset', db, { stdinFrom: sock });
    client.write('line one\npartial li');
    // The service has read the bytes (its first line is committed) and
    // holds the open line when the reset comes.
    await waitForLines(db, 'build-vm', 'reset', 1, s);
    client.resetAndDestroy();
    sock.destroy();
    server.close();
    r = await s.done;
  });

  it('exits 8 (INPUT_ERROR) with a JSON error line and the message on stderr', () => {
    expectServiceError(r, 'INPUT_ERROR');
  });

  it('stores what arrived (the cut-off line flagged NOEOL) and closes with reason error, naming the reset', async () => {
    expect((await showRaw(db, 'build-vm/reset')).toString()).toBe('line one\npartial li');
    const c = closes(db, 'build-vm', 'reset');
    expect(c).toHaveLength(1);
    expect(c[0]!.json).toMatchObject({ reason: 'error', lines: 2, bytes: 18 });
    expect(String(c[0]!.json.detail)).toMatch(/ECONNRESET/);
    await expectVerified(db, 'build-vm/reset');
  });
});

describe('when a framed sender disconnects in the middle of a frame', () => {
  const db = newDb();
  const hello = encodeFrame(FrameType.HELLO, claimBytes({ claim: 'hello', protocol: FRAME_PROTOCOL, sender: 'hostile', hostname: 'h', command: ['make'] }));
  const header = (type: number, length: number): Buffer => {
    const h = Buffer.alloc(5);
    h[0] = type;
    h.writeUInt32BE(length, 1);
    return h;
  };

  async function framed(name: string, pieces: Buffer[]): Promise<Run> {
    const s = startService('build-vm', `_framed.${name}`, db, { stdin: 'keep' });
    for (const p of pieces) {
      await send(s, p);
      await sleep(80); // separate reads, some after a commit
    }
    s.child.stdin!.end();
    return s.done;
  }

  it('inside a data frame, after a partial line: every received byte is stored, a stream-broken notice and an error close are chained, exit 17', async () => {
    faultsTried.push('framed disconnect mid data frame');
    const r = await framed('mid-data', [hello, encodeFrame(FrameType.STDOUT, Buffer.from('complete line\npartial')), header(FrameType.STDOUT, 100), Buffer.from(' and more')]);
    expectServiceError(r, 'FRAME_INVALID');
    const list = entries(db, 'build-vm', 'mid-data');
    const lines = list.filter((e) => e.kind === KIND.STDOUT);
    expect(lines.map((e) => [e.payload!.toString(), e.flags])).toEqual([
      ['complete line', 0],
      ['partial and more', FLAG.NOEOL],
    ]);
    const n = notices(db, 'build-vm', 'mid-data');
    expect(n.map((e) => e.json.notice)).toEqual(['stream-broken']);
    expect(String(n[0]!.json.detail)).toMatch(/91 bytes short/);
    expect(closes(db, 'build-vm', 'mid-data').map((e) => e.json.reason)).toEqual(['error']);
    await expectVerified(db, 'build-vm/mid-data');
  });

  it('inside a CLAIM frame: the half claim is not stored, the lines before it are, and the notice says the stream broke', async () => {
    faultsTried.push('framed disconnect mid claim frame');
    const claim = claimBytes({ claim: 'exit', code: 0, signal: null });
    const r = await framed('mid-claim', [hello, encodeFrame(FrameType.STDOUT, Buffer.from('built\n')), header(FrameType.CLAIM, claim.length), claim.subarray(0, 10)]);
    expectServiceError(r, 'FRAME_INVALID');
    const list = entries(db, 'build-vm', 'mid-claim');
    expect(reconstruct(list).toString()).toBe('built\n');
    // Only the HELLO claim is stored; the cut-off exit claim is not.
    expect(list.filter((e) => e.kind === KIND.CLAIM)).toHaveLength(1);
    expect(notices(db, 'build-vm', 'mid-claim').map((e) => e.json.notice)).toEqual(['stream-broken']);
    expect(closes(db, 'build-vm', 'mid-claim').map((e) => e.json.reason)).toEqual(['error']);
    await expectVerified(db, 'build-vm/mid-claim');
  });
});

describe('when the service is SIGKILLed mid-stream', () => {
  const db = newDb();
  let sent = Buffer.alloc(0);
  let pid = 0;
  let killed: Run;

  beforeAll(async () => {
    faultsTried.push('SIGKILL mid-stream');
    const s = startService('build-vm', 'killed', db, { stdin: 'keep' });
    pid = s.pid;
    // Streams for 800 ms and at least until a first line is committed (the
    // service may be slow to start on a loaded machine): the kill lands
    // mid-stream, after something was stored.
    const until = Date.now() + 800;
    let checked = 0;
    for (let i = 0; ; i++) {
      const chunk = numbered(`k${i}`, 200);
      sent = Buffer.concat([sent, chunk]);
      await send(s, chunk);
      await sleep(5);
      if (Date.now() < until || Date.now() - checked < 100) continue;
      checked = Date.now();
      if (committed(db, 'build-vm', 'killed').some((e) => e.kind === KIND.LINE)) break;
      if (Date.now() > until + 60_000) throw new Error('the service stored nothing in 60 s');
    }
    process.kill(pid, 'SIGKILL');
    killed = await s.done;
  });

  it('the service died of SIGKILL (the test killed it)', () => {
    expect(killed.signal).toBe('SIGKILL');
  });

  it('the store stays intact: the chain verifies, and what is stored is a prefix of what was sent, in whole lines', async () => {
    await expectVerified(db, 'build-vm/killed');
    const stored = await showRaw(db, 'build-vm/killed');
    expect(stored.length).toBeGreaterThan(0);
    expect(isPrefix(stored, sent)).toBe(true);
    expect(stored[stored.length - 1]).toBe(0x0a);
    report('SIGKILL mid-stream: committed before the kill', `${stored.length} of ${sent.length} bytes sent`);
  });

  it('the killed session has no close entry yet', () => {
    expect(closes(db, 'build-vm', 'killed')).toHaveLength(0);
  });

  describe('when the next session of that log opens', () => {
    let next: ReturnType<typeof expectReceipt>;
    beforeAll(async () => {
      next = expectReceipt(await service('build-vm', 'killed', db, { input: 'after the crash\n' }));
    });

    it('it records a `lost` session-close for the killed session, naming its pid, before its own open', () => {
      const ev = events(db, 'build-vm', 'killed');
      const lost = ev.filter((e) => e.kind === KIND.SESSION_CLOSE && e.json.reason === 'lost');
      expect(lost).toHaveLength(1);
      expect(lost[0]).toMatchObject({ session: 1, json: { reason: 'lost', session: 1 } });
      expect(String(lost[0]!.json.detail)).toContain(String(pid));
      const open2 = ev.find((e) => e.kind === KIND.SESSION_OPEN && e.session === 2)!;
      expect(open2.seq).toBe(lost[0]!.seq + 1);
      expect(next.session).toBe(2);
    });

    it('the chain continues and verifies, with closes {lost: 1, eof: 1}', async () => {
      expect(await expectVerified(db, 'build-vm/killed')).toMatchObject({ sessions: 2, closes: { lost: 1, eof: 1 } });
    });

    it('a third session records nothing more as lost', async () => {
      expectReceipt(await service('build-vm', 'killed', db, { input: 'third\n' }));
      expect(closes(db, 'build-vm', 'killed').filter((e) => e.json.reason === 'lost')).toHaveLength(1);
    });
  });
});

describe('when one of two concurrent sessions of one log is SIGKILLed', () => {
  const db = newDb();

  it('the other session finishes with all its lines; the next session records only the killed one as lost', async () => {
    faultsTried.push('SIGKILL of one of two concurrent sessions');
    const a = startService('build-vm', 'shared', db, { stdin: 'keep' });
    // a's session is open (and so has its number) before b starts.
    await waitUntil('session a open', () => committed(db, 'build-vm', 'shared').some((e) => e.kind === KIND.SESSION_OPEN), { s: a });
    const bInput = numbered('B', 5000);
    const b = startService('build-vm', 'shared', db, { stdin: 'keep' });
    for (let i = 0; i < 10; i++) {
      await send(a, numbered(`A${i}`, 100));
      await send(b, bInput.subarray((i * bInput.length) / 10, ((i + 1) * bInput.length) / 10));
      await sleep(30);
    }
    process.kill(a.pid, 'SIGKILL');
    b.child.stdin!.end();
    expect((await a.done).signal).toBe('SIGKILL');
    expectReceipt(await b.done);
    expectReceipt(await service('build-vm', 'shared', db, { input: 'next\n' }));
    const ev = events(db, 'build-vm', 'shared');
    const sessionOf = (pidOf: number) => ev.find((e) => e.kind === KIND.SESSION_OPEN && e.json.pid === pidOf)!.session;
    const lost = ev.filter((e) => e.kind === KIND.SESSION_CLOSE && e.json.reason === 'lost');
    expect(lost.map((e) => e.session)).toEqual([sessionOf(a.pid)]);
    const bLines = entries(db, 'build-vm', 'shared').filter((e) => e.kind === KIND.LINE && e.session === sessionOf(b.pid));
    expect(reconstruct(bLines).equals(bInput)).toBe(true);
    await expectVerified(db, 'build-vm/shared');
  });
});

describe.each([
  ['SIGTERM', 'SIGTERM'],
  ['SIGINT', 'SIGINT'],
] as const)('when the service gets %s while the sender is idle', (_what, signal) => {
  const db = newDb();
  let r: Run;
  const sent = 'one\ntwo\nhalf a li';

  beforeAll(async () => {
    faultsTried.push(`${signal} while idle`);
    const s = startService('build-vm', 'stopped', db, { stdin: 'keep' });
    await send(s, sent);
    // Up (its handlers are set before it opens the store), the whole lines
    // read and committed; the open line waits for more that never comes.
    await waitForLines(db, 'build-vm', 'stopped', 2, s);
    process.kill(s.pid, signal);
    r = await s.done;
    s.child.stdin!.destroy();
  });

  it('exits 9 (TERMINATED) with a JSON error line, not by the signal', () => {
    expectServiceError(r, 'TERMINATED');
  });

  it('writes a clean close entry with reason signal, and keeps every byte received (the open line flagged NOEOL)', async () => {
    const c = closes(db, 'build-vm', 'stopped');
    expect(c.map((e) => e.json.reason)).toEqual(['signal']);
    expect(c[0]!.json).toMatchObject({ lines: 3, bytes: sent.length - 2 });
    expect((await showRaw(db, 'build-vm/stopped')).toString()).toBe(sent);
    expect(entries(db, 'build-vm', 'stopped').filter((e) => e.kind === KIND.LINE).pop()!.flags).toBe(FLAG.NOEOL);
    await expectVerified(db, 'build-vm/stopped');
  });
});

describe('when the service gets SIGTERM in the middle of a fast burst', () => {
  it('closes cleanly (exit 9, reason signal), and what is stored is a prefix of the input', async () => {
    faultsTried.push('SIGTERM mid-burst');
    const db = newDb();
    // An endless burst: the signal is sure to land in the middle of it.
    const parts: Buffer[] = [];
    let produced = 0;
    let from = 0;
    const source = new Readable({
      read() {
        const chunk = numbered('burst', 2000, from);
        from += 2000;
        parts.push(chunk);
        produced += chunk.length;
        this.push(chunk);
      },
    });
    const s = startService('build-vm', 'burst', db, { input: source });
    while (produced < 8e6) await sleep(20);
    process.kill(s.pid, 'SIGTERM');
    const r = await s.done;
    source.destroy();
    const input = Buffer.concat(parts);
    expectServiceError(r, 'TERMINATED');
    const stored = await showRaw(db, 'build-vm/burst');
    expect(stored.length).toBeGreaterThan(0);
    expect(stored.length).toBeLessThan(input.length);
    expect(isPrefix(stored, input)).toBe(true);
    expect(closes(db, 'build-vm', 'burst').map((e) => e.json.reason)).toEqual(['signal']);
    await expectVerified(db, 'build-vm/burst');
  });
});

describe('when the service gets SIGHUP (not one it handles)', () => {
  it('the store stays intact and the session\'s end is in the chain: a signal close, or a lost close by the next session', async () => {
    faultsTried.push('SIGHUP');
    const db = newDb();
    const s = startService('build-vm', 'hup', db, { stdin: 'keep' });
    await send(s, 'before hangup\n');
    await waitForLines(db, 'build-vm', 'hup', 1, s);
    process.kill(s.pid, 'SIGHUP');
    const r = await s.done;
    s.child.stdin!.destroy();
    if (r.signal === null) expectNoCrash(r, 'the service');
    expectReceipt(await service('build-vm', 'hup', db, { input: 'after\n' }));
    const first = closes(db, 'build-vm', 'hup').filter((e) => e.session === 1);
    expect(first).toHaveLength(1);
    expect(['signal', 'lost']).toContain(first[0]!.json.reason);
    expect((await showRaw(db, 'build-vm/hup')).toString()).toBe('before hangup\nafter\n');
    await expectVerified(db, 'build-vm/hup');
  });
});

describe('durability: lines are committed while the session is still open, and a SIGKILL loses none of them', () => {
  const ROUNDS: Array<[string, Record<string, string>]> = [
    ['default interval (50 ms), round 1', {}],
    ['default interval (50 ms), round 2', {}],
    ['default interval (50 ms), round 3', {}],
    ['APPENDLOG_COMMIT_INTERVAL_MS=200', { APPENDLOG_COMMIT_INTERVAL_MS: '200' }],
    ['APPENDLOG_COMMIT_INTERVAL_MS=1 (commit almost at once)', { APPENDLOG_COMMIT_INTERVAL_MS: '1' }],
  ];

  it.each(ROUNDS)('%s: every line written and committed before the kill survives', async (_what, env) => {
    faultsTried.push(`durability (${_what})`);
    const db = newDb();
    const s = startService('build-vm', 'durable', db, { stdin: 'keep', env });
    let sent = Buffer.alloc(0);
    for (let i = 0; i < 20; i++) {
      const chunk = numbered(`d${i}`, 50);
      sent = Buffer.concat([sent, chunk]);
      await send(s, chunk);
      await sleep(10);
    }
    // The sender stays connected: the lines must be committed by the commit
    // timer, not by the end of the session. No fixed wait (the service may
    // be slow to start on a loaded machine): we wait for all of them to be
    // committed, then kill, and the store must still hold them all.
    const t0 = Date.now();
    await waitForLines(db, 'build-vm', 'durable', sent.toString().split('\n').length - 1, s);
    report(`durability (${_what}): all lines committed, sender still connected`, `${Date.now() - t0} ms after the last write`);
    process.kill(s.pid, 'SIGKILL');
    expect((await s.done).signal).toBe('SIGKILL');
    const stored = await showRaw(db, 'build-vm/durable');
    expect(stored.length, `stored ${stored.length} of ${sent.length} bytes`).toBe(sent.length);
    expect(stored.equals(sent)).toBe(true);
    await expectVerified(db, 'build-vm/durable');
  });
});

describe('when the sender closes its end of stdout (it stops reading the answer)', () => {
  it('the service still stores everything and exits 0 without a crash', async () => {
    faultsTried.push('stdout closed by the caller');
    const db = newDb();
    const s = startService('build-vm', 'deaf', db, { stdin: 'keep' });
    s.child.stdout!.destroy();
    await send(s, numbered('deaf', 1000));
    s.child.stdin!.end();
    const r = await s.done;
    expectNoCrash(r, 'the service');
    expect(r.code, r.stderr).toBe(0);
    expect((await showRaw(db, 'build-vm/deaf')).equals(numbered('deaf', 1000))).toBe(true);
    await expectVerified(db, 'build-vm/deaf');
  });
});

describe('when another process holds the store\'s write lock', () => {
  /** sqlite3 holding BEGIN IMMEDIATE on `db` until released. */
  async function holdLock(db: string): Promise<{ release: () => Promise<void> }> {
    const s = start(SQLITE3, [db], { stdin: 'keep', timeoutMs: 60_000 });
    s.child.stdin!.write('BEGIN IMMEDIATE;\nSELECT \'locked\';\n');
    await new Promise<void>((resolve) => {
      s.child.stdout!.on('data', (d: Buffer) => {
        if (d.toString().includes('locked')) resolve();
      });
    });
    return {
      release: async () => {
        s.child.stdin!.end('COMMIT;\n');
        await s.done;
      },
    };
  }

  it('a session waits for it and then stores every line (exit 0)', async () => {
    faultsTried.push('store locked by another writer');
    const db = newDb();
    expectReceipt(await service('build-vm', 'locked', db, { input: 'create the store\n' }));
    const lock = await holdLock(db);
    const s = startService('build-vm', 'locked', db, { input: numbered('waiting', 500) });
    await sleep(1500);
    await lock.release();
    expectReceipt(await s.done);
    expect((await showRaw(db, 'build-vm/locked')).equals(Buffer.concat([Buffer.from('create the store\n'), numbered('waiting', 500)]))).toBe(true);
    await expectVerified(db, 'build-vm/locked');
  });

  it('a SIGTERM that arrives while it waits is honoured once the lock is free: exit 9, close reason signal', async () => {
    faultsTried.push('SIGTERM while waiting for the lock');
    const db = newDb();
    expectReceipt(await service('build-vm', 'locked', db, { input: 'create the store\n' }));
    const lock = await holdLock(db);
    const s = startService('build-vm', 'locked', db, { stdin: 'keep' });
    await send(s, 'queued line\n');
    // It has opened the store (its SIGTERM handler is set before that) and
    // waits for the lock; a little more so the wait is under way.
    await waitForOpenFile(s.pid, db, s);
    await sleep(300);
    process.kill(s.pid, 'SIGTERM');
    await sleep(300);
    await lock.release();
    const r = await s.done;
    s.child.stdin!.destroy();
    expectServiceError(r, 'TERMINATED');
    expect(closes(db, 'build-vm', 'locked').map((e) => e.json.reason)).toEqual(['eof', 'signal']);
    await expectVerified(db, 'build-vm/locked');
  });
});

describe('after all these faults', () => {
  it('a normal framed session in a fresh store still works end to end (control)', async () => {
    const db = newDb();
    const hello = encodeFrame(FrameType.HELLO, claimBytes({ claim: 'hello', protocol: FRAME_PROTOCOL, sender: 's', hostname: 'h', command: [] }));
    const r = await service('build-vm', '_framed.ok', db, { input: Buffer.concat([hello, encodeFrame(FrameType.STDOUT, Buffer.from('fine\n')), encodeFrame(FrameType.END)]) });
    expectFinalReceipt(r);
    await expectAllVerified(db);
  });
});
