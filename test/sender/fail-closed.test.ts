/**
 * logsend fails closed: a build must not succeed with a broken log. When the
 * log cannot be written (the log VM dies, qrexec policy refuses the call, the
 * transport cannot start, the log is sealed), logsend says so on stderr with
 * a coded message, stops the build (unless --on-log-failure=continue) and
 * exits 60 (LOG_FAILED) or 61 (TRANSPORT_REFUSED) whatever the build did.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers.js';
import {
  EXIT,
  STACK_TRACE,
  VM,
  fakeQrexecClient,
  logsend,
  logvmOk,
  makeSigner,
  senderLines,
  showRaw,
  verifyJson,
  type Signer,
  type TimedResult,
} from './util.js';

const tmp = tempDir('appendlog-sender-closed-');
const db = join(tmp.dir, 'logs.db');
const home = tmp.dir;

/** A build printing `line 1` .. `line N`, one every 50 ms. */
const slowBuild = (n: number): string[] => ['sh', '-c', `for i in $(seq 1 ${n}); do echo line $i; sleep 0.05; done`];
/** A build that says `built` only after `s` seconds. */
const lateBuild = (s: number): string[] => ['sh', '-c', `sleep ${s}; echo built`];

afterAll(() => tmp.cleanup());

describe('when the log VM service is killed mid-build', () => {
  const NAME = 'killed-service';
  let r: TimedResult;

  beforeAll(async () => {
    const qrexec = fakeQrexecClient(tmp.dir, db, { kind: 'kill-after-lines', lines: 3 }, 'qrexec-killer');
    // 200 lines, 10 s if nothing stops it.
    r = await logsend(['--qrexec-client', qrexec.path, '--name', NAME, '--', ...slowBuild(200)], { cwd: tmp.dir, home });
  });

  it('exits 60 (LOG_FAILED)', () => {
    expect(r.code, r.stderr).toBe(EXIT.LOG_FAILED);
  });

  it('says LOG_FAILED on stderr, as a coded message without a stack trace', () => {
    expect(senderLines(r.stderr).some((l) => l.startsWith('logsend: LOG_FAILED: '))).toBe(true);
    expect(r.stderr).not.toMatch(STACK_TRACE);
  });

  it('stops the build: it does not run to the end', () => {
    const out = r.stdout.toString('utf8');
    expect(out).toMatch(/^line 1\nline 2\nline 3\n/);
    expect(out).not.toContain('line 200\n');
    expect(r.elapsedMs).toBeLessThan(6000);
  });

  it('the lines that reached the log VM are stored, and the chain verifies', async () => {
    expect((await showRaw(db, `${VM}/${NAME}`)).toString('utf8')).toMatch(/^line 1\nline 2\nline 3\n/);
    const { result, code } = await verifyJson(['--db', db, '--store', `${VM}/${NAME}`]);
    expect(code).toBe(EXIT.OK);
    expect(result.ok).toBe(true);
  });
});

describe('when the command transport reads a few bytes and exits mid-build', () => {
  let r: TimedResult;

  beforeAll(async () => {
    // It acknowledges the session like the service does, then reads ~400
    // bytes (HELLO is ~150, each line ~12) and goes away mid-build.
    const ack = JSON.stringify({ type: 'receipt', log: 'build-vm/short-pipe', session: 1, entries: 1, head: '0'.repeat(64), lines: 0, bytes: 0, final: false });
    r = await logsend(['--transport', 'command', '--command', `echo '${ack}'; head -c 400 >/dev/null`, '--name', 'short-pipe', '--', ...slowBuild(200)], { cwd: tmp.dir, home });
  });

  it('exits 60 and says LOG_FAILED', () => {
    expect(r.code, r.stderr).toBe(EXIT.LOG_FAILED);
    expect(senderLines(r.stderr).some((l) => l.startsWith('logsend: LOG_FAILED: '))).toBe(true);
  });

  it('stops the build early', () => {
    expect(r.stdout.toString('utf8')).not.toContain('line 200\n');
    expect(r.elapsedMs).toBeLessThan(6000);
  });
});

describe('when the transport never acknowledges the session', () => {
  let r: TimedResult;

  beforeAll(async () => {
    // A transport that reads but never answers, like a hung log VM.
    r = await logsend(['--transport', 'command', '--command', 'cat >/dev/null', '--connect-timeout', '1', '--name', 'no-ack', '--', 'sh', '-c', 'echo built'], { cwd: tmp.dir, home });
  });

  it('exits 60 (LOG_FAILED) naming the missing acknowledgement', () => {
    expect(r.code, r.stderr).toBe(EXIT.LOG_FAILED);
    expect(r.stderr).toContain('did not acknowledge the session');
  });

  it('never starts the build', () => {
    expect(r.stdout.toString('utf8')).not.toContain('built');
  });
});

describe('when the log fails with --on-log-failure=continue', () => {
  let r: TimedResult;

  beforeAll(async () => {
    const qrexec = fakeQrexecClient(tmp.dir, db, { kind: 'kill-after-lines', lines: 3 }, 'qrexec-killer-2');
    r = await logsend(['--qrexec-client', qrexec.path, '--name', 'continue-build', '--on-log-failure=continue', '--', ...slowBuild(40)], { cwd: tmp.dir, home });
  });

  it('lets the build run to completion', () => {
    const out = r.stdout.toString('utf8');
    expect(out).toContain('line 40\n');
    expect(out.split('\n').filter((l) => l !== '')).toHaveLength(40);
  });

  it('still exits 60 (LOG_FAILED) although the build succeeded', () => {
    expect(r.code, r.stderr).toBe(EXIT.LOG_FAILED);
    expect(senderLines(r.stderr).some((l) => l.startsWith('logsend: LOG_FAILED: '))).toBe(true);
  });
});

describe('when dom0 policy refuses the qrexec call', () => {
  let r: TimedResult;

  beforeAll(async () => {
    const qrexec = fakeQrexecClient(tmp.dir, db, { kind: 'refuse' }, 'qrexec-deny');
    r = await logsend(['--qrexec-client', qrexec.path, '--name', 'denied', '--', ...lateBuild(2)], { cwd: tmp.dir, home });
  });

  it('exits 61 (TRANSPORT_REFUSED)', () => {
    expect(r.code, r.stderr).toBe(EXIT.TRANSPORT_REFUSED);
  });

  it('says TRANSPORT_REFUSED: refused by dom0 or the target could not be started (exit 126 means either)', () => {
    const said = senderLines(r.stderr).join('\n');
    expect(said).toMatch(/^logsend: TRANSPORT_REFUSED: /m);
    expect(said).toContain('refused by dom0 or the target could not be started');
    expect(said).not.toMatch(/policy does not allow/);
    expect(said).toMatch(/qrexec/);
  });

  it('does not let the build run to completion', () => {
    expect(r.stdout.toString('utf8')).not.toContain('built');
  });
});

describe('when the transport cannot start (--qrexec-client /nonexistent)', () => {
  let r: TimedResult;

  beforeAll(async () => {
    r = await logsend(['--qrexec-client', '/nonexistent/qrexec-client-vm', '--name', 'no-client', '--', ...lateBuild(2)], { cwd: tmp.dir, home });
  });

  it("exits 60 (LOG_FAILED) saying 'command not found'", () => {
    expect(r.code, r.stderr).toBe(EXIT.LOG_FAILED);
    const said = senderLines(r.stderr).join('\n');
    expect(said).toMatch(/^logsend: LOG_FAILED: /m);
    expect(said).toContain('command not found');
    expect(r.stderr).not.toMatch(STACK_TRACE);
  });

  it('does not let the build run to completion', () => {
    expect(r.stdout.toString('utf8')).not.toContain('built');
  });
});

describe('when the log is already sealed', () => {
  const NAME = 'sealed-log';
  const REF = `${VM}/${NAME}`;
  let signer: Signer;
  let sealedHead: string | undefined;
  let r: TimedResult;

  beforeAll(async () => {
    signer = await makeSigner(tmp.dir);
    const qrexec = fakeQrexecClient(tmp.dir, db, { kind: 'allow' }, 'qrexec-ok');
    const first = await logsend(['--qrexec-client', qrexec.path, '--name', NAME, '--', 'echo', 'first build'], { cwd: tmp.dir, home });
    expect(first.code, first.stderr).toBe(EXIT.OK);
    await logvmOk(['seal', REF, '--signer', signer.spec], { db, env: signer.env });
    sealedHead = (await verifyJson(['--db', db, '--store', REF])).result.head;
    r = await logsend(['--qrexec-client', qrexec.path, '--name', NAME, '--', ...lateBuild(2)], { cwd: tmp.dir, home });
  });

  afterAll(async () => {
    await signer?.cleanup();
  });

  it('exits 60 (LOG_FAILED), and the message carries the log VM code LOG_SEALED', () => {
    expect(r.code, r.stderr).toBe(EXIT.LOG_FAILED);
    const said = senderLines(r.stderr).join('\n');
    expect(said).toMatch(/^logsend: LOG_FAILED: /m);
    expect(said).toContain('LOG_SEALED');
  });

  it('stops the build', () => {
    expect(r.stdout.toString('utf8')).not.toContain('built');
  });

  it('the sealed log is unchanged and still verifies', async () => {
    const { result, code } = await verifyJson(['--db', db, '--store', REF, '--key', signer.pub]);
    expect(code).toBe(EXIT.OK);
    expect(result).toMatchObject({ ok: true, state: 'sealed', head: sealedHead });
  });
});
