/**
 * The build VM is untrusted: whatever bytes it sends are stored exactly
 * (`show --raw` gives them back byte for byte), and `show` never lets them
 * reach the reader's terminal as control sequences.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { callService, logvm, tempDir } from '../helpers.js';
import { findLog, listLogs, receiptOf, showRaw, trickle, verifyJson } from '../e2e-util.js';

const b = (...parts: Array<string | number[]>): Buffer =>
  Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : Buffer.from(p))));

interface Case {
  name: string;
  what: string;
  input: Buffer;
}

const CASES: Case[] = [
  { name: 'nul', what: 'NUL bytes inside and as a whole line', input: b('a\0b\n', '\0\n', 'end\0\n') },
  { name: 'lone-cr', what: 'lone \\r (progress bars)', input: b('progress 10%\rprogress 20%\rdone\n', '\r') },
  { name: 'crlf', what: 'CRLF line ends', input: b('line one\r\nline two\r\n\r\n') },
  {
    name: 'bad-utf8',
    what: 'invalid UTF-8: 0xff, overlong 0xc0 0x80, lone continuation, truncated sequence, surrogate',
    input: b([0xff, 0x0a], [0xc0, 0x80, 0x0a], 'x', [0x80], 'y\n', [0xe2, 0x82, 0x0a], [0xed, 0xa0, 0x80, 0x0a], [0xfe, 0xff]),
  },
  {
    name: 'escapes',
    what: 'ESC/CSI/OSC sequences, BEL, a C1 CSI and a bidi override',
    input: b('\x1b]0;owned title\x07\n', '\x1b[2J\x1b[H\x1b[31mred\x1b[0m\n', [0xc2, 0x9b], '31m\n', [0xe2, 0x80, 0xae], 'txt.exe\n', '\x07\x08\x7f\n'),
  },
  { name: 'backslash', what: 'text that looks like an escape', input: b('literal \\e[33m and \\x1b\n') },
  { name: 'empty-lines', what: 'empty lines between lines', input: b('a\n\n\nb\n\n') },
  { name: 'only-newlines', what: 'only newlines', input: b('\n\n\n\n') },
  { name: 'one-newline', what: 'a single newline', input: b('\n') },
  { name: 'no-newline', what: 'one line without a newline, ending in \\r', input: b('half a line\r') },
  { name: 'empty', what: 'no input at all', input: b('') },
  { name: 'utf8', what: 'valid multi-byte UTF-8 and tabs', input: b(Buffer.from('grüße\tnaïve ✓ 𝄞\n', 'utf8').toString('latin1')) },
];

const newlines = (x: Buffer): number => x.reduce((n, c) => n + (c === 0x0a ? 1 : 0), 0);
/** Line entries the scanner must make with the default max line (no line here is that long). */
const expectedLines = (x: Buffer): number => newlines(x) + (x.length > 0 && x[x.length - 1] !== 0x0a ? 1 : 0);

/** Bytes a terminal would act on; only \n (row end) and \t may reach it. */
const hasControlBytes = (out: Buffer): boolean => out.some((c) => (c < 0x20 && c !== 0x0a && c !== 0x09) || c === 0x7f);

describe('when the build prints hostile bytes', () => {
  const tmp = tempDir();
  const db = join(tmp.dir, 'logs.db');
  afterAll(() => tmp.cleanup());

  describe.each(CASES)('when the input is $what', ({ name, input }) => {
    it('stores it: exit 0, receipt counts the lines and payload bytes', async () => {
      const r = receiptOf(await callService('build-vm', name, db, { input }));
      expect(r).toMatchObject({ log: `build-vm/${name}`, lines: expectedLines(input), bytes: input.length - newlines(input) });
    });

    it('show --raw gives back exactly the bytes received', async () => {
      const raw = await showRaw(db, `build-vm/${name}`);
      expect(raw.toString('hex')).toBe(input.toString('hex'));
    });

    it('show prints valid UTF-8 without a single control byte', async () => {
      const r = await logvm(['show', `build-vm/${name}`], { db });
      expect(r.code, r.stderr).toBe(0);
      expect(hasControlBytes(r.stdout)).toBe(false);
      expect(Buffer.from(r.stdout.toString('utf8'), 'utf8').equals(r.stdout)).toBe(true);
      // One row per entry: the open event, the lines, the close event.
      expect(r.stdout.toString('utf8').trimEnd().split('\n')).toHaveLength(expectedLines(input) + 2);
    });
  });

  it('show renders ESC as \\e, BEL as \\x07, C1 CSI and bidi override as \\u escapes', async () => {
    const out = (await logvm(['show', 'build-vm/escapes'], { db })).stdout.toString('utf8');
    expect(out).toContain('\\e]0;owned title\\x07');
    expect(out).toContain('\\e[2J\\e[H\\e[31mred\\e[0m');
    expect(out).toContain('\\u009b31m');
    expect(out).toContain('\\u202etxt.exe');
  });

  it('show renders invalid UTF-8 bytes as \\xNN', async () => {
    const out = (await logvm(['show', 'build-vm/bad-utf8'], { db })).stdout.toString('utf8');
    for (const s of ['\\xff', '\\xc0\\x80', 'x\\x80y', '\\xe2\\x82', '\\xed\\xa0\\x80', '\\xfe\\xff']) expect(out).toContain(s);
  });

  it('show keeps a literal backslash distinguishable from an escaped byte', async () => {
    const lit = (await logvm(['show', 'build-vm/backslash'], { db })).stdout.toString('utf8');
    expect(lit).toContain('literal \\\\e[33m and \\\\x1b');
  });

  it('every chain of the store verifies', async () => {
    const logs = await listLogs(db);
    expect(logs).toHaveLength(CASES.length);
    const verified = await Promise.all(logs.map((l) => verifyJson(db, `${l.vm}/${l.name}`)));
    logs.forEach((l, i) => {
      const { code, result } = verified[i]!;
      expect(code, `${l.vm}/${l.name}: ${result.message}`).toBe(0);
      expect(result).toMatchObject({ ok: true, entries: l.entries, head: l.head });
    });
  });
});

describe('when lines are longer than --max-line 16', () => {
  const tmp = tempDir();
  const db = join(tmp.dir, 'logs.db');
  afterAll(() => tmp.cleanup());

  // Lengths around the limit: 0, 15, 16, 17, 32, 33, 40, then 20 bytes without a newline.
  const lens = [0, 15, 16, 17, 32, 33, 40];
  const line = (n: number, c: string): string => c.repeat(n);
  const input = Buffer.from(lens.map((n, i) => `${line(n, String.fromCharCode(97 + i))}\n`).join('') + line(20, 'z'), 'latin1');
  // Entries: an empty line is one entry, a line of L bytes is ceil(L / 16).
  const chunks = lens.reduce((n, l) => n + Math.max(1, Math.ceil(l / 16)), 0) + 2;
  const conts = lens.reduce((n, l) => n + Math.max(0, Math.ceil(l / 16) - 1), 0) + 1;
  const append = (name: string, stdin: Buffer | Readable) =>
    logvm(['append', '--vm', 'build-vm', '--name', name, '--max-line', '16'], { db, input: stdin });

  it('splits them into 16-byte chunks and stores every byte', async () => {
    const r = receiptOf(await append('x', input));
    expect(r).toMatchObject({ lines: chunks, bytes: input.length - lens.length });
  });

  it('show --raw joins the chunks back into the exact input', async () => {
    expect((await showRaw(db, 'build-vm/x')).toString('latin1')).toBe(input.toString('latin1'));
  });

  it('show marks every continued chunk with > and the cut-off last line with %', async () => {
    const rows = (await logvm(['show', 'build-vm/x'], { db })).stdout.toString('utf8').trimEnd().split('\n');
    expect(rows.filter((r) => /^ +\d+ \|> /.test(r))).toHaveLength(conts);
    expect(rows.filter((r) => /^ +\d+ \|% /.test(r))).toEqual([expect.stringMatching(/ \|% z{4}$/)]);
    expect(rows.filter((r) => /^ +\d+ \|[ >%] /.test(r)).every((r) => r.replace(/^ +\d+ \|. /, '').length <= 16)).toBe(true);
  });

  it('makes the same entries when the input arrives a few bytes at a time', async () => {
    receiptOf(await append('trickled', trickle(input, 3, 2)));
    const rows = async (name: string): Promise<string[]> =>
      (await logvm(['show', `build-vm/${name}`], { db })).stdout
        .toString('utf8')
        .split('\n')
        .filter((r) => /^ +\d+ \|/.test(r));
    expect(await rows('trickled')).toEqual(await rows('x'));
    expect((await showRaw(db, 'build-vm/trickled')).equals(input)).toBe(true);
  });

  it('refuses --max-line 0 as a usage error without storing anything', async () => {
    const r = await logvm(['append', '--vm', 'build-vm', '--name', 'zero', '--max-line', '0'], { db, input: 'x\n' });
    // A usage error is exit 2 with a one-line message, never an uncaught exception.
    expect(r.stderr).toContain('--max-line');
    expect(r.stderr).not.toMatch(/^\s+at /m);
    expect(r.code).toBe(2);
    expect(await findLog(db, 'build-vm/zero')).toBeUndefined();
  });
});

describe('when the build sends 1 MiB of random bytes', () => {
  const tmp = tempDir();
  const db = join(tmp.dir, 'logs.db');
  afterAll(() => tmp.cleanup());

  it('stores them through the service and show --raw gives them back exactly', async () => {
    const input = randomBytes(1 << 20);
    const r = receiptOf(await callService('build-vm', 'random', db, { input }));
    expect(r).toMatchObject({ lines: expectedLines(input), bytes: input.length - newlines(input) });
    expect((await showRaw(db, 'build-vm/random')).equals(input)).toBe(true);
    expect((await verifyJson(db, 'build-vm/random')).code).toBe(0);
  });

  it('stores 1 MiB without any newline as 16 chunks of the default 64 KiB max line', async () => {
    const input = randomBytes(1 << 20);
    for (let i = 0; i < input.length; i++) if (input[i] === 0x0a) input[i] = 0x0b;
    const r = receiptOf(await callService('build-vm', 'one-long-line', db, { input }));
    expect(r).toMatchObject({ lines: 16, bytes: input.length });
    expect((await showRaw(db, 'build-vm/one-long-line')).equals(input)).toBe(true);
    expect((await verifyJson(db, 'build-vm/one-long-line')).code).toBe(0);
  });
});
