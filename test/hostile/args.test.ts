/**
 * The service argument and the caller's identity, against a hostile build VM.
 * test/foundation/names.test.ts already refuses empty, -h, --help,
 * --db=/tmp/x, ., .., paths, 65 characters, `ünï`, spaces, newlines, `_x`
 * and sequential case conflicts; this file adds what it lacks: huge and
 * non-ASCII arguments, lookalike characters, terminal-hostile arguments
 * (the refusal must not echo them raw), every way to abuse the `_framed.`
 * prefix, case conflicts raced at the same instant and across modes, and
 * proof that a VM can only ever append bytes to its own logs: there is no
 * way through qubes.AppendLog to seal, read, export or write another VM's log.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FRAME_PROTOCOL, FrameType, claimBytes, encodeFrame } from '../../packages/shared/src/index.js';
import {
  EXIT,
  RPC_SERVICE,
  expectAllVerified,
  expectNoCrash,
  expectReceipt,
  expectServiceError,
  jsonLines,
  listLogs,
  service,
  serviceEnv,
  sh,
  showRaw,
  sqlite,
  startService,
  tempDir,
  type Receipt,
  type Run,
} from './util.js';

const tmp = tempDir('appendlog-hostile-args-');
afterAll(() => tmp.cleanup());
let fresh = 0;
const freshDb = (): string => join(tmp.dir, `fresh-${++fresh}.db`);

/** A refusal that does not echo the argument raw: no control, C1 or bidi character reaches stderr or stdout. */
function expectSafeRefusal(r: Run, code: 'NAME_INVALID' | 'NAME_CONFLICT'): string {
  const { message } = expectServiceError(r, code);
  for (const out of [r.stderr, r.stdout.toString('utf8'), message]) {
    expect(out).not.toMatch(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/);
    // The message is bounded whatever the argument's length.
    expect(out.length).toBeLessThan(1000);
  }
  return message;
}

describe('when the service argument is hostile', () => {
  const REFUSED: Array<[string, string]> = [
    ['1000 characters', 'a'.repeat(1000)],
    ['100000 characters', 'b'.repeat(100_000)],
    ['é', 'é'],
    ['日本', '日本'],
    ['a name with an accent: release-é', 'release-é'],
    ['fullwidth letters ｒｅｌ (look like rel)', 'ｒｅｌ'],
    ['a Kelvin sign (folds to k)', 'release-\u212a'],
    ['a zero-width space inside', 'rel\u200bease'],
    ['a right-to-left override', 'rel\u202eexe.txt'],
    ['an ESC sequence that would clear the screen', 'rel\x1b[2J\x1b[H'],
    ['an OSC title sequence', '\x1b]0;owned\x07'],
    ['a C1 CSI (U+009B)', 'rel\u009b31m'],
    ['a NUL-free control: BEL and backspace', 'rel\x07\x08'],
    ['a tab', 'rel\tx'],
    ['a single space', ' '],
    ['a shell substitution', '$(touch /tmp/appendlog-pwned)'],
    ['a glob', '*'],
    ['`_framed.` alone (framed mode, empty name)', '_framed.'],
    ['`_framed.-h` (framed mode, an option)', '_framed.-h'],
    ['`_framed.--db=/tmp/x`', '_framed.--db=/tmp/x'],
    ['`_framed.._` (framed mode, a dot name)', '_framed.._'],
    ['`_framed...`', '_framed...'],
    ['`_framed._framed.x` (the prefix twice)', '_framed._framed.x'],
    ['`_framed.a/b`', '_framed.a/b'],
    ['`_framed` without the dot', '_framed'],
    ['`_FRAMED.x` (another case of the prefix: a raw name starting with _)', '_FRAMED.x'],
    ['`_framed.` and 65 characters', `_framed.${'c'.repeat(65)}`],
  ];

  it.each(REFUSED)('refuses %s: NAME_INVALID (exit 3), a JSON error, nothing echoed raw, no store created', async (_what, argument) => {
    const db = freshDb();
    const r = await service('build-vm', argument, db, { input: 'line that must not be stored\n' });
    expectSafeRefusal(r, 'NAME_INVALID');
    expect(existsSync(db)).toBe(false);
    expect(existsSync('/tmp/appendlog-pwned')).toBe(false);
  });

  it('a non-UTF-8 argument (byte 0xff, set through the environment by a shell) is refused too', async () => {
    const db = freshDb();
    // Node cannot put a raw 0xff byte into a child's environment; printf in a shell can.
    const r = await sh(`QREXEC_SERVICE_ARGUMENT="$(printf 'rel\\377')" exec '${RPC_SERVICE}'`, { env: serviceEnv('build-vm', 'unused', db), input: 'x\n' });
    expectSafeRefusal(r, 'NAME_INVALID');
    expect(existsSync(db)).toBe(false);
  });
});

describe('when two names that differ only in case are created at the same instant', () => {
  const db = join(tmp.dir, 'race.db');
  const PAIRS = 6;
  let results: Array<[Run, Run]>;

  beforeAll(async () => {
    // Create the store first, so the race is on the log, not on the schema.
    expectReceipt(await service('build-vm', 'warmup', db, { input: 'x\n' }));
    results = await Promise.all(
      Array.from({ length: PAIRS }, async (_, k) => {
        const input = `race ${k}\n`.repeat(200);
        const [a, b] = [startService('build-vm', `Race-${k}`, db, { input }), startService('build-vm', `race-${k}`, db, { input })];
        return [await a.done, await b.done] as [Run, Run];
      }),
    );
  }, 60_000);

  it('exactly one of each pair succeeds; the other gets NAME_CONFLICT (exit 6) and a JSON error', () => {
    for (const [a, b] of results) {
      const ok = [a, b].filter((r) => r.code === 0);
      const refused = [a, b].filter((r) => r.code !== 0);
      expect(ok).toHaveLength(1);
      expect(refused).toHaveLength(1);
      expectReceipt(ok[0]!);
      expectSafeRefusal(refused[0]!, 'NAME_CONFLICT');
    }
  });

  it('the store holds exactly one log per pair, and every chain verifies', async () => {
    const logs = await expectAllVerified(db);
    for (let k = 0; k < PAIRS; k++) expect(logs.filter((l) => l.name.toLowerCase() === `race-${k}`)).toHaveLength(1);
  });
});

describe('when a framed argument differs from an existing raw log only in case', () => {
  it('`_framed.RELEASE-9` next to `release-9` fails with NAME_CONFLICT (exit 6) before any frame is read', async () => {
    const db = join(tmp.dir, 'framed-case.db');
    const first = expectReceipt(await service('build-vm', 'release-9', db, { input: 'original\n' }));
    const hello = encodeFrame(FrameType.HELLO, claimBytes({ claim: 'hello', protocol: FRAME_PROTOCOL, sender: 'x', hostname: 'h', command: [] }));
    const r = await service('build-vm', '_framed.RELEASE-9', db, { input: Buffer.concat([hello, encodeFrame(FrameType.END)]) });
    expectSafeRefusal(r, 'NAME_CONFLICT');
    const logs = await listLogs(db);
    expect(logs.map((l) => `${l.vm}/${l.name}`)).toEqual(['build-vm/release-9']);
    expect(logs[0]).toMatchObject({ entries: first.entries, head: first.head });
  });
});

describe('when a build VM tries to reach another VM\'s log through qubes.AppendLog', () => {
  const db = join(tmp.dir, 'victim.db');
  const SECRET = 'SECRET-signing-passphrase-of-the-vault-build';
  const VICTIM = 'vault-build';
  const ATTACKER = 'attacker-vm';
  const evilDb = join(tmp.dir, 'evil.db');
  const exportDir = join(tmp.dir, 'stolen-bundle');
  let victim: Receipt;

  // Everything a sender could try to say to the log VM: only bytes to store.
  const COMMANDS = Buffer.concat([
    Buffer.from(`seal ${VICTIM}/release --signer key-file:/dev/null\n`),
    Buffer.from(`logvm show ${VICTIM}/release\n`),
    Buffer.from(`logvm export ${VICTIM}/release --out ${exportDir}\n`),
    Buffer.from(`{"op":"seal","log":"${VICTIM}/release"}\n`),
    Buffer.from(`{"type":"read","vm":"${VICTIM}","name":"release"}\n`),
    Buffer.from(`QREXEC_REMOTE_DOMAIN=${VICTIM} QREXEC_SERVICE_ARGUMENT=release\n`),
    Buffer.from(`--db=${evilDb} --vm ${VICTIM} --name release\n`),
    Buffer.from("'; DELETE FROM blocks; UPDATE heads SET sealed = 1; --\n"),
    encodeFrame(FrameType.HELLO, claimBytes({ claim: 'hello', protocol: FRAME_PROTOCOL, sender: 'x', hostname: 'h', command: ['seal'] })),
    encodeFrame(FrameType.CLAIM, Buffer.from(`{"claim":"seal","log":"${VICTIM}/release"}`)),
    encodeFrame(FrameType.END),
    Buffer.from('\n'),
  ]);

  beforeAll(async () => {
    victim = expectReceipt(await service(VICTIM, 'release', db, { input: `${SECRET}\nbuild ok\n` }));
  });

  it('commands in the input are stored as bytes in the caller\'s own log: exit 0, its own receipt, nothing of the victim in the answer', async () => {
    const r = await service(ATTACKER, 'release', db, { input: COMMANDS });
    const receipt = expectReceipt(r);
    expect(receipt).toMatchObject({ log: `${ATTACKER}/release`, session: 1 });
    const answer = r.stdout.toString('utf8') + r.stderr;
    expect(answer).not.toContain(SECRET);
    expect(answer).not.toContain(VICTIM);
    expect(answer).not.toContain(victim.head);
    expect((await showRaw(db, `${ATTACKER}/release`)).equals(COMMANDS)).toBe(true);
  });

  it('argv given to the service file (as a multiplexer might pass the argument) is ignored: no option, no path, no subcommand', async () => {
    for (const argv of [['--db', evilDb], [`--db=${evilDb}`], ['seal', `${VICTIM}/release`, '--signer', 'key-file:/dev/null'], ['show', `${VICTIM}/release`], ['-h'], ['--vm', VICTIM, '--name', 'release']]) {
      const r = await service(ATTACKER, 'argv-test', db, { argv, input: 'argv\n' });
      expect(expectReceipt(r)).toMatchObject({ log: `${ATTACKER}/argv-test` });
      expect(r.stdout.toString('utf8')).not.toContain(SECRET);
    }
    expect(existsSync(evilDb)).toBe(false);
  });

  it('APPENDLOG_VM / APPENDLOG_NAME in the environment do not change whose log is written', async () => {
    const r = await service(ATTACKER, 'env-test', db, { env: { APPENDLOG_VM: VICTIM, APPENDLOG_NAME: 'release' }, input: 'env\n' });
    expect(expectReceipt(r)).toMatchObject({ log: `${ATTACKER}/env-test` });
  });

  it('the victim\'s log is untouched: same entries, head and bytes, still open, no seal anywhere, nothing exported', async () => {
    const logs = await listLogs(db);
    expect(logs.find((l) => l.vm === VICTIM && l.name === 'release')).toMatchObject({ entries: victim.entries, head: victim.head, state: 'open', sessions: 1 });
    expect(logs.filter((l) => l.vm === VICTIM)).toHaveLength(1);
    expect((await showRaw(db, `${VICTIM}/release`)).toString()).toBe(`${SECRET}\nbuild ok\n`);
    const seals = await sqlite(db, 'SELECT count(*) FROM seals');
    expectNoCrash(seals, 'sqlite3');
    expect(seals.stdout.toString().trim()).toBe('0');
    expect(existsSync(exportDir)).toBe(false);
    expect(existsSync(evilDb)).toBe(false);
  });

  it('every chain of the store verifies', async () => {
    await expectAllVerified(db);
  });

  it('every answer the attacker got was a receipt for one of its own logs', async () => {
    const r = await service(ATTACKER, 'release', db, { input: 'second session\n' });
    const lines = jsonLines(r.stdout);
    expect(lines).toEqual([expect.objectContaining({ type: 'receipt', log: `${ATTACKER}/release`, session: 2 })]);
    expect(r.code).toBe(EXIT.OK);
  });
});
