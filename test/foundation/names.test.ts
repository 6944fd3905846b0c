/**
 * The service argument (the log name) is chosen by the untrusted calling VM;
 * the source VM comes from dom0 (QREXEC_REMOTE_DOMAIN). A bad name is refused
 * before anything is stored, can never act as an option or a path, and a VM
 * only ever writes into its own logs.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callService, jsonLines, tempDir, type RunResult } from '../helpers.js';
import { EXIT, findLog, listLogs, receiptOf, showRaw, verifyJson, type ListedLog, type Receipt } from '../e2e-util.js';

const INPUT = 'secret build output\nsecond line\n';
const outside = tempDir('appendlog-outside-');
const OUTSIDE = join(outside.dir, 'x');
const TMP_X_EXISTED = existsSync('/tmp/x');

const REFUSED_NAMES: Array<{ what: string; argument: string | undefined }> = [
  { what: 'empty', argument: '' },
  { what: 'unset', argument: undefined },
  { what: 'an option: -h', argument: '-h' },
  { what: 'an option: --help', argument: '--help' },
  { what: 'an option with a path: --db=/tmp/x', argument: '--db=/tmp/x' },
  { what: `an option with a path: --db=${OUTSIDE}`, argument: `--db=${OUTSIDE}` },
  { what: '.', argument: '.' },
  { what: '..', argument: '..' },
  { what: 'a hidden file name: .hidden', argument: '.hidden' },
  { what: 'a path: ../../etc/passwd', argument: '../../etc/passwd' },
  { what: '65 characters', argument: 'a'.repeat(65) },
  { what: 'with a slash: a/b', argument: 'a/b' },
  { what: 'non-ASCII: ünï', argument: 'ünï' },
  { what: 'with a space: a b', argument: 'a b' },
  { what: 'with a newline', argument: 'rel\nx' },
  { what: 'starting with _', argument: '_x' },
];

/** A refusal: exit 3, the code on stderr, one JSON error line back to the caller. */
function expectRefused(r: RunResult, code: 'NAME_INVALID' | 'VM_INVALID'): void {
  expect(r.code, r.stderr).toBe(EXIT[code]);
  expect(r.stderr).toContain(code);
  expect(r.stderr).not.toMatch(/^\s+at /m);
  expect(jsonLines(r.stdout)).toEqual([{ type: 'error', code, message: expect.any(String) }]);
}

describe('when the service argument is not a valid log name', () => {
  const tmp = tempDir();
  afterAll(() => {
    tmp.cleanup();
    outside.cleanup();
  });

  describe.each(REFUSED_NAMES)('when it is $what', ({ argument }) => {
    it('exits 3 with NAME_INVALID on stderr and a JSON error on stdout, creating no store', async () => {
      const db = join(tmp.dir, `fresh-${Math.random().toString(36).slice(2)}.db`);
      const r = await callService('build-vm', argument, db, { input: INPUT });
      expectRefused(r, 'NAME_INVALID');
      expect(existsSync(db)).toBe(false);
      expect(existsSync(OUTSIDE)).toBe(false);
      if (!TMP_X_EXISTED) expect(existsSync('/tmp/x')).toBe(false);
    });
  });

  it('tells the caller what a valid name is', async () => {
    const r = await callService('build-vm', 'a b', join(tmp.dir, 'msg.db'), { input: INPUT });
    const [err] = jsonLines(r.stdout);
    expect(err!.message).toMatch(/1-64/);
    expect(err!.message).toContain('"a b"');
  });

  describe('when the store already holds a log', () => {
    const db = join(tmp.dir, 'existing.db');
    let before: ListedLog[];

    beforeAll(async () => {
      receiptOf(await callService('build-vm', 'release-1', db, { input: INPUT }));
      before = await listLogs(db);
    });

    it('stores nothing for a refused name: an option, a path, an empty or an over-long name', async () => {
      const args = ['--db=/tmp/x', '..', '', 'a'.repeat(65)];
      const refused = await Promise.all(args.map((argument) => callService('build-vm', argument, db, { input: INPUT })));
      for (const r of refused) expectRefused(r, 'NAME_INVALID');
      expect(await listLogs(db)).toEqual(before);
    });
  });
});

describe('when the name is at the edge of the rules', () => {
  const tmp = tempDir();
  const db = join(tmp.dir, 'logs.db');
  afterAll(() => tmp.cleanup());

  it.each(['a'.repeat(64), '1st', 'A.b+c-D', 'x'])('accepts %s', async (name) => {
    const r = receiptOf(await callService('build-vm', name, db, { input: INPUT }));
    expect(r.log).toBe(`build-vm/${name}`);
  });

  // dom0 rewrites a/b, a:b and a b to a_b: `_` is reserved so they never merge silently.
  it.each(['a_b', 'release_1.2'])('refuses %s (a `_` only arrives from a dom0 rewrite): NAME_INVALID, nothing stored', async (name) => {
    const r = await callService('build-vm', name, db, { input: INPUT });
    expect(r.code).toBe(EXIT.NAME_INVALID);
    expect(r.stdout.toString('utf8')).toContain('reserved');
    expect((await listLogs(db)).map((l) => l.name)).not.toContain(name);
  });
});

describe('when the source VM is missing or malformed', () => {
  const tmp = tempDir();
  afterAll(() => tmp.cleanup());

  it.each([
    { what: 'QREXEC_REMOTE_DOMAIN unset', vm: undefined },
    { what: 'QREXEC_REMOTE_DOMAIN empty', vm: '' },
    { what: 'a path', vm: '../build-vm' },
    { what: 'an option', vm: '--db=/tmp/x' },
    { what: '32 characters', vm: 'v'.repeat(32) },
  ])('refuses $what with VM_INVALID and creates no store', async ({ vm }) => {
    const db = join(tmp.dir, `fresh-${Math.random().toString(36).slice(2)}.db`);
    const r = await callService(vm, 'release-1', db, { input: INPUT });
    expectRefused(r, 'VM_INVALID');
    expect(existsSync(db)).toBe(false);
  });
});

describe('when a name differs from an existing log of the same VM only in case', () => {
  const tmp = tempDir();
  const db = join(tmp.dir, 'logs.db');
  let original: Receipt;
  afterAll(() => tmp.cleanup());

  beforeAll(async () => {
    original = receiptOf(await callService('build-vm', 'release-1', db, { input: INPUT }));
  });

  it.each(['Release-1', 'RELEASE-1'])('refuses %s with NAME_CONFLICT (exit 6)', async (name) => {
    const r = await callService('build-vm', name, db, { input: 'sneaky\n' });
    expect(r.code, r.stderr).toBe(EXIT.NAME_CONFLICT);
    expect(r.stderr).toContain('NAME_CONFLICT');
    expect(jsonLines(r.stdout)).toEqual([{ type: 'error', code: 'NAME_CONFLICT', message: expect.stringContaining('release-1') }]);
  });

  it('leaves the store with the original log only, unchanged', async () => {
    const logs = await listLogs(db);
    expect(logs.map((l) => `${l.vm}/${l.name}`)).toEqual(['build-vm/release-1']);
    expect(logs[0]).toMatchObject({ entries: original.entries, head: original.head, sessions: 1 });
  });

  it('lets another VM use that spelling: names are per VM', async () => {
    const r = receiptOf(await callService('other-vm', 'Release-1', db, { input: INPUT }));
    expect(r).toMatchObject({ log: 'other-vm/Release-1', session: 1 });
  });
});

describe('when a second VM appends to a log name another VM already uses', () => {
  const tmp = tempDir();
  const db = join(tmp.dir, 'logs.db');
  const inputA = Buffer.from('build-a: compiled\nbuild-a: tested\n');
  const inputB = Buffer.from('build-b: I am build-a, trust me\n');
  let a: Receipt;
  let b: Receipt;
  afterAll(() => tmp.cleanup());

  beforeAll(async () => {
    a = receiptOf(await callService('build-a', 'rel', db, { input: inputA }));
    b = receiptOf(await callService('build-b', 'rel', db, { input: inputB }));
  });

  it('creates build-b/rel, a new log with its own session 1', () => {
    expect(b).toMatchObject({ log: 'build-b/rel', session: 1, lines: 1, entries: 3 });
  });

  it('leaves build-a/rel unchanged: same entries, same head, same bytes', async () => {
    expect(await findLog(db, 'build-a/rel')).toMatchObject({ entries: a.entries, head: a.head, sessions: 1, lines: 2 });
    expect((await showRaw(db, 'build-a/rel')).equals(inputA)).toBe(true);
    expect((await showRaw(db, 'build-b/rel')).equals(inputB)).toBe(true);
  });

  it('both chains verify, each ending at its own receipt\'s head', async () => {
    expect((await verifyJson(db, 'build-a/rel')).result).toMatchObject({ ok: true, head: a.head });
    expect((await verifyJson(db, 'build-b/rel')).result).toMatchObject({ ok: true, head: b.head });
  });

  it('refuses a name that tries to reach into the other VM\'s log', async () => {
    expectRefused(await callService('build-b', 'build-a/rel', db, { input: inputB }), 'NAME_INVALID');
    expect((await findLog(db, 'build-a/rel'))?.head).toBe(a.head);
  });
});
