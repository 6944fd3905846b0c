/**
 * The transports, attacked from either end. One case per attack:
 *   - a build host behind ssh picking its own identity or log (forced command,
 *     SSH_ORIGINAL_COMMAND checked like a qrexec argument, --vm refused);
 *   - a caller reading the service's stderr (qrexec passes it back): only
 *     short coded messages, the details stay in the log VM's service log;
 *   - a hostile or broken service answering logsend: receipts for another
 *     log, bad heads, counts going back, endless reply lines.
 */
import { existsSync, readFileSync, statSync, writeFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { LOGVM, callService, jsonLines, run, tempDir } from '../helpers.js';
import { EXIT } from '../exit-codes.js';
import { listLogs } from '../e2e-util.js';
import { logsend } from '../sender/util.js';

const tmp = tempDir('appendlog-transport-');
afterAll(() => tmp.cleanup());

/** `logvm append ARGS` as sshd would run a forced command: SSH_ORIGINAL_COMMAND is what the client asked for. */
function forced(args: string[], original: string | undefined, db: string, input = 'line one\nline two\n') {
  return run(process.execPath, [LOGVM, 'append', ...args], {
    input,
    env: {
      APPENDLOG_DB: db,
      SSH_CONNECTION: '192.0.2.7 50000 192.0.2.1 22',
      ...(original === undefined ? {} : { SSH_ORIGINAL_COMMAND: original }),
    },
  });
}

describe('when a build host sends over ssh with a forced command (command="logvm append --ssh-vm build1")', () => {
  const db = join(tmp.dir, 'ssh.db');

  it('the identity is the one in authorized_keys and the log name comes from SSH_ORIGINAL_COMMAND', async () => {
    const r = await forced(['--ssh-vm', 'build1'], 'rel-1', db);
    expect(r.code, r.stderr).toBe(0);
    expect(jsonLines(r.stdout).at(-1)).toMatchObject({ type: 'receipt', log: 'build1/rel-1', final: true, lines: 2 });
  });

  it('the qrexec spelling qubes.AppendLog+NAME is accepted too', async () => {
    const r = await forced(['--ssh-vm', 'build1'], 'qubes.AppendLog+rel-2', db);
    expect(r.code, r.stderr).toBe(0);
    expect(jsonLines(r.stdout).at(-1)).toMatchObject({ log: 'build1/rel-2' });
  });

  it.each([
    ['an option smuggled after the name', 'rel-3 --vm other'],
    ['a path', '../x'],
    ['a rewritten name with _', 'a_b'],
    ['an option as the name', '--db=/tmp/x'],
    ['a shell command', 'logvm append --vm other --name x'],
  ])('%s in SSH_ORIGINAL_COMMAND is NAME_INVALID (exit 3) and stores nothing', async (_what, original) => {
    const r = await forced(['--ssh-vm', 'build1'], original, db);
    expect(r.code, r.stderr).toBe(EXIT.NAME_INVALID);
    expect((await listLogs(db)).map((l) => `${l.vm}/${l.name}`).sort()).toEqual(['build1/rel-1', 'build1/rel-2']);
  });

  it('no command at all (ssh loghost) is NAME_INVALID', async () => {
    expect((await forced(['--ssh-vm', 'build1'], undefined, db)).code).toBe(EXIT.NAME_INVALID);
  });

  it('--vm under a forced command is refused (USAGE, exit 2): the build host cannot pick its identity', async () => {
    const r = await forced(['--vm', 'other-vm', '--name', 'x'], 'x', db);
    expect(r.code).toBe(EXIT.USAGE);
    expect(r.stderr).toContain('--ssh-vm');
    expect((await listLogs(db)).some((l) => l.vm === 'other-vm')).toBe(false);
  });

  it('--ssh-vm outside ssh is refused (USAGE): it is only for a forced command', async () => {
    const r = await run(process.execPath, [LOGVM, 'append', '--ssh-vm', 'build1'], { input: 'x\n', env: { APPENDLOG_DB: db } });
    expect(r.code).toBe(EXIT.USAGE);
  });
});

describe('when the service fails with details the caller must not read', () => {
  it('stderr and the JSON error carry only a short coded message; the path stays in the log VM service log', async () => {
    const secret = join(tmp.dir, 'not-a-dir');
    writeFileSync(secret, 'a file where the store directory should be\n');
    const serviceLog = join(tmp.dir, 'service.log');
    const r = await callService('build-vm', 'rel', join(secret, 'logs.db'), { input: 'x\n', env: { APPENDLOG_SERVICE_LOG: serviceLog } });
    expect(r.code).toBe(EXIT.STORE_ERROR);
    expect(r.stderr).toMatch(/^logvm append: STORE_ERROR: [^\n]+\n$/);
    expect(r.stderr).not.toContain(secret);
    expect(r.stdout.toString('utf8')).not.toContain(secret);
    expect(jsonLines(r.stdout).at(-1)).toMatchObject({ type: 'error', code: 'STORE_ERROR' });
    expect(r.stderr).not.toMatch(/\n\s+at /);
    const kept = readFileSync(serviceLog, 'utf8');
    expect(kept).toContain(secret);
    expect(kept).toContain('vm=build-vm');
  });

  it('refused calls in a loop cannot grow the service log without bound: past 8 MiB it is rotated to .1, the new detail goes in a fresh file', async () => {
    const serviceLog = join(tmp.dir, 'rotated.log');
    // As if a build VM had made thousands of refused calls already.
    writeFileSync(serviceLog, 'x'.repeat(8 * 2 ** 20));
    const r = await callService('build-vm', 'bad_name', join(tmp.dir, 'ok.db'), { input: 'x\n', env: { APPENDLOG_SERVICE_LOG: serviceLog } });
    expect(r.code).toBe(EXIT.NAME_INVALID);
    expect(statSync(`${serviceLog}.1`).size).toBe(8 * 2 ** 20);
    const kept = readFileSync(serviceLog, 'utf8');
    expect(kept).toMatch(/^\S+ vm=build-vm argument="bad_name" NAME_INVALID: /);
    expect(kept.length).toBeLessThan(64 * 1024);
  });

  it('a caller-side problem (a bad name) is still explained to the caller', async () => {
    const r = await callService('build-vm', '..', join(tmp.dir, 'ok.db'), { input: 'x\n' });
    expect(r.code).toBe(EXIT.NAME_INVALID);
    expect(r.stderr).toMatch(/NAME_INVALID: log name "\.\." refused/);
  });
});

describe('when a hostile or broken service answers logsend', () => {
  /** A "service" that answers with `reply` (then reads and discards the frames). */
  function fakeService(name: string, reply: string): string {
    const path = join(tmp.dir, name);
    writeFileSync(path, `#!/bin/sh\n${reply}\ncat >/dev/null\n`);
    chmodSync(path, 0o755);
    return path;
  }
  const good = (over: Record<string, unknown> = {}) =>
    JSON.stringify({ type: 'receipt', log: 'build-vm/rel', session: 1, entries: 1, head: 'a'.repeat(64), lines: 0, bytes: 0, final: false, ...over });
  async function send(name: string, reply: string) {
    const receipts = join(tmp.dir, `${name}.receipts`);
    const svc = fakeService(name, reply);
    const r = await logsend(['--transport', 'command', '--command', svc, '--name', 'rel', '--receipts', receipts, '--', 'echo', 'built'], { home: tmp.dir, cwd: tmp.dir });
    return { r, receipts };
  }

  it.each([
    ['a receipt for another log', `printf '%s\\n' '${good({ log: 'build-vm/other' })}'`],
    ['a head that is not 64 hex digits', `printf '%s\\n' '${good({ head: 'zz' })}'`],
    ['a negative entry count', `printf '%s\\n' '${good({ entries: -1 })}'`],
    ['entries that go back', `printf '%s\\n%s\\n' '${good({ entries: 9 })}' '${good({ entries: 3 })}'`],
    ['an unknown field', `printf '%s\\n' '${good({ extra: 1 })}'`],
  ])('%s: logsend fails closed (LOG_FAILED) and does not write it to --receipts', async (_what, reply) => {
    const { r, receipts } = await send(`svc-${Math.random().toString(36).slice(2)}`, reply);
    expect(r.code, r.stderr).toBe(EXIT.LOG_FAILED);
    expect(r.stderr).toContain('invalid receipt');
    const kept = existsSync(receipts) ? readFileSync(receipts, 'utf8') : '';
    for (const l of kept.split('\n').filter(Boolean)) expect(JSON.parse(l)).toMatchObject({ log: 'build-vm/rel' });
    if (_what !== 'entries that go back') expect(kept).toBe('');
  });

  it('an endless reply line (no newline) is cut at the limit: LOG_FAILED, memory bounded', async () => {
    const { r } = await send('svc-endless', `head -c 50000000 /dev/zero | tr '\\0' a`);
    expect(r.code, r.stderr).toBe(EXIT.LOG_FAILED);
    expect(r.stderr).toContain('reply line longer than');
  });

  it('service text on stderr reaches the builder escaped (no raw escape sequence)', async () => {
    const { r } = await send('svc-stderr', `printf '\\033]0;pwned\\007\\n' >&2; printf '%s\\n' '${good()}'`);
    expect(r.stderr).toContain('logsend: log VM: \\e]0;pwned\\x07');
    expect(r.stderr).not.toContain('\x1b]0;');
  });
});

