/**
 * qubes.AppendLog end to end: a real `make` in a build VM piped into the real
 * rpc/ service file, then the log VM's CLI as an admin or auditor uses it.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callService, jsonLines, logvm, tempDir } from '../helpers.js';
import { findLog, helloBuildOutput, receiptOf, showRaw, verifyJson, type Receipt } from '../e2e-util.js';

describe('when a build VM pipes a real make run into qubes.AppendLog+release-1', () => {
  const tmp = tempDir();
  const db = join(tmp.dir, 'store', 'logs.db');
  let make: Buffer;
  let first: Awaited<ReturnType<typeof callService>>;
  let receipt: Receipt;

  beforeAll(async () => {
    make = await helloBuildOutput();
    first = await callService('build-vm', 'release-1', db, { input: make });
    receipt = receiptOf(first);
  });
  afterAll(() => tmp.cleanup());

  it('is a real build whose output holds stdout, stderr and an ANSI colour sequence', () => {
    const text = make.toString('utf8');
    expect(text).toContain('Hello from the build VM');
    expect(text).toContain('this line went to stderr');
    expect(text).toContain('tests passed');
    expect(make.includes(0x1b)).toBe(true);
  });

  it('exits 0 and answers with exactly one JSON receipt line on stdout', () => {
    expect(first.code).toBe(0);
    expect(first.stderr).toBe('');
    expect(jsonLines(first.stdout)).toHaveLength(1);
    expect(first.stdout.toString('utf8').endsWith('\n')).toBe(true);
  });

  it('receipts the log, its entries, its head and the lines and bytes received', () => {
    const lines = make.toString('latin1').split('\n').length - 1;
    expect(receipt).toMatchObject({
      type: 'receipt',
      log: 'build-vm/release-1',
      session: 1,
      // session-open + one entry per line + session-close
      entries: lines + 2,
      head: expect.stringMatching(/^[0-9a-f]{64}$/),
      lines,
      bytes: make.length - lines,
    });
  });

  it('creates the store where APPENDLOG_DB points, parent directory included', () => {
    expect(existsSync(db)).toBe(true);
  });

  it('lists the log as open with the receipt\'s counts and head', async () => {
    const log = await findLog(db, 'build-vm/release-1');
    expect(log).toMatchObject({
      vm: 'build-vm',
      name: 'release-1',
      state: 'open',
      entries: receipt.entries,
      lines: receipt.lines,
      bytes: receipt.bytes,
      sessions: 1,
      head: receipt.head,
    });
  });

  it('reproduces the make output byte for byte with show --raw', async () => {
    expect((await showRaw(db, 'build-vm/release-1')).equals(make)).toBe(true);
  });

  it('escapes the ESC sequence in show so the reader\'s terminal is not driven', async () => {
    const r = await logvm(['show', 'build-vm/release-1'], { db });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.includes(0x1b)).toBe(false);
    const text = r.stdout.toString('utf8');
    expect(text).toContain('\\e[33mthis line went to stderr\\e[0m');
    expect(text).toContain('Hello from the build VM');
  });

  it('shows the session events around the lines, numbered from seq 1', async () => {
    const r = await logvm(['show', 'build-vm/release-1'], { db });
    const rows = r.stdout.toString('utf8').trimEnd().split('\n');
    expect(rows).toHaveLength(receipt.entries);
    expect(rows[0]).toMatch(/^ +1 \*  session 1 opened .* by VM build-vm, argument "release-1", mode raw$/);
    expect(rows.at(-1)).toMatch(new RegExp(`^ +${receipt.entries} \\*  session 1 closed .*: eof, ${receipt.lines} lines, ${receipt.bytes} bytes$`));
  });

  it('verifies the chain: exit 0, OK, and the same head as the receipt', async () => {
    const r = await logvm(['verify-chain', '--store', 'build-vm/release-1'], { db });
    expect(r.code, r.stderr).toBe(0);
    const text = r.stdout.toString('utf8');
    expect(text).toMatch(/^OK store build-vm\/release-1: chain intact\n/);
    expect(text).toContain(`head:      ${receipt.head}\n`);
    expect(text).toContain(`entries:   ${receipt.entries} (${receipt.lines} lines, ${receipt.bytes} bytes, 1 sessions)`);
  });

  describe('when a second session appends to the same log', () => {
    const more = Buffer.from('second build step\nall done\n');
    let second: Receipt;

    beforeAll(async () => {
      second = receiptOf(await callService('build-vm', 'release-1', db, { input: more }));
    });

    it('numbers it session 2 and continues the seq after the first session\'s close', () => {
      expect(second).toMatchObject({ log: 'build-vm/release-1', session: 2, lines: 2, bytes: more.length - 2 });
      expect(second.entries).toBe(receipt.entries + 2 + 2);
      expect(second.head).not.toBe(receipt.head);
    });

    it('counts two sessions and the sum of both sessions\' lines and bytes', async () => {
      expect(await findLog(db, 'build-vm/release-1')).toMatchObject({
        sessions: 2,
        entries: second.entries,
        lines: receipt.lines + second.lines,
        bytes: receipt.bytes + second.bytes,
        head: second.head,
      });
    });

    it('opens session 2 at seq first.entries + 1 in show', async () => {
      const r = await logvm(['show', 'build-vm/release-1'], { db });
      const rows = r.stdout.toString('utf8').trimEnd().split('\n');
      expect(rows[receipt.entries]).toMatch(new RegExp(`^ +${receipt.entries + 1} \\*  session 2 opened `));
      expect(rows.at(-1)).toMatch(new RegExp(`^ +${second.entries} \\*  session 2 closed `));
    });

    it('still verifies, ending at the second receipt\'s head', async () => {
      const { code, result } = await verifyJson(db, 'build-vm/release-1');
      expect(code).toBe(0);
      expect(result).toMatchObject({ ok: true, entries: second.entries, head: second.head, sessions: 2 });
    });

    it('show --raw gives both sessions\' bytes in order', async () => {
      expect((await showRaw(db, 'build-vm/release-1')).equals(Buffer.concat([make, more]))).toBe(true);
    });
  });

  describe('when the input ends without a newline', () => {
    const input = Buffer.from('compiling\nlinking\nno newline at the end');
    let r: Receipt;

    beforeAll(async () => {
      r = receiptOf(await callService('build-vm', 'noeol', db, { input }));
    });

    it('keeps the last line and counts it', () => {
      expect(r).toMatchObject({ log: 'build-vm/noeol', lines: 3, bytes: input.length - 2 });
    });

    it('show --raw reproduces the input without adding a newline', async () => {
      expect((await showRaw(db, 'build-vm/noeol')).equals(input)).toBe(true);
    });

    it('show marks the cut-off line with %', async () => {
      const out = (await logvm(['show', 'build-vm/noeol'], { db })).stdout.toString('utf8');
      expect(out).toMatch(/^ +4 \|% no newline at the end$/m);
    });
  });
});
