/**
 * Hostile input shapes not already in test/foundation (which covers empty
 * input, a few newlines, NUL/CR/invalid UTF-8, ESC/CSI/OSC, a C1 CSI, a bidi
 * override and --max-line 16 on the command line): a million empty lines,
 * the default --max-line of the real service and one byte either side, the
 * admin's APPENDLOG_MAX_LINE at its limits, and every way a line could try to
 * drive or fool the reader's terminal through `show` (DCS, APC, OSC 52,
 * 8-bit C1 bytes, backspace and CR overwrites, bidi isolates, line
 * separators, a forged event row), also in the sender's claims as shown by
 * `show` and `verify-chain`. `show --raw` keeps every byte.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FRAME_PROTOCOL, FrameType, claimBytes, encodeFrame } from '../../packages/shared/src/index.js';
import {
  FLAG,
  KIND,
  entries,
  expectAllVerified,
  expectFinalReceipt,
  expectNoCrash,
  expectReceipt,
  expectServiceError,
  expectVerified,
  listLogs,
  logvm,
  makeKey,
  report,
  sealAndExport,
  service,
  showRaw,
  showText,
  tempDir,
  type KeyPair,
} from './util.js';

const tmp = tempDir('appendlog-hostile-inputs-');
const db = join(tmp.dir, 'logs.db');
afterAll(() => tmp.cleanup());

const b = (...parts: Array<string | number[]>): Buffer =>
  Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'utf8') : Buffer.from(p))));

/** Bytes a terminal would act on: C0 controls other than \n and \t, DEL. */
const c0OrDel = (out: Buffer): number[] => [...out].filter((c) => (c < 0x20 && c !== 0x0a && c !== 0x09) || c === 0x7f);
/** Code points a terminal or a bidi-aware viewer would act on, after UTF-8 decoding. */
const DANGEROUS = /[\u0080-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]/u;

describe('when a build VM sends a million empty lines', () => {
  const N = 1_000_000;
  const input = Buffer.alloc(N, 0x0a);

  it('stores them as a million zero-length entries (exit 0, receipt 1000000 lines, 0 bytes)', async () => {
    const r = expectReceipt(await service('build-vm', 'empties', db, { input, measure: true, timeoutMs: 120_000 }));
    expect(r).toMatchObject({ lines: N, bytes: 0, entries: N + 2 });
  }, 130_000);

  it('show --raw gives back exactly a million newlines, and the chain verifies', async () => {
    expect((await showRaw(db, 'build-vm/empties')).equals(input)).toBe(true);
    expect(await expectVerified(db, 'build-vm/empties')).toMatchObject({ lines: N, bytes: 0, entries: N + 2 });
  }, 120_000);
});

describe('when lines sit at the service\'s default --max-line (65536) and one byte either side', () => {
  const M = 65536;
  // Lengths and the entries each must become: [length, flags of each entry].
  const shapes: Array<[number, number[]]> = [
    [M - 1, [0]],
    [M, [0]],
    [M + 1, [FLAG.CONT, 0]],
    [2 * M, [FLAG.CONT, 0]],
    [2 * M + 1, [FLAG.CONT, FLAG.CONT, 0]],
  ];
  const input = Buffer.concat(shapes.map(([n], i) => Buffer.concat([Buffer.alloc(n, 0x61 + i), Buffer.from('\n')])));

  it('cuts each line into chunks of exactly 65536 bytes, flagged CONT, and never an empty last chunk', async () => {
    expectReceipt(await service('build-vm', 'edges', db, { input }));
    const lines = entries(db, 'build-vm', 'edges').filter((e) => e.kind === KIND.LINE);
    expect(lines.map((e) => e.flags)).toEqual(shapes.flatMap(([, f]) => f));
    expect(lines.filter((e) => e.flags === FLAG.CONT).every((e) => e.length === M)).toBe(true);
    expect(lines.every((e) => e.length >= 1 && e.length <= M)).toBe(true);
  });

  it('show --raw joins them back into the exact input', async () => {
    expect((await showRaw(db, 'build-vm/edges')).equals(input)).toBe(true);
  });
});

describe('when the admin sets APPENDLOG_MAX_LINE for the service', () => {
  it('at 1, every byte is its own entry and the input still reads back exactly', async () => {
    const input = b('ab\n\nxyz');
    expectReceipt(await service('build-vm', 'max1', db, { input, env: { APPENDLOG_MAX_LINE: '1' } }));
    const lines = entries(db, 'build-vm', 'max1').filter((e) => e.kind === KIND.LINE);
    expect(lines.map((e) => [e.payload!.toString(), e.flags])).toEqual([
      ['a', FLAG.CONT],
      ['b', 0],
      ['', 0],
      ['x', FLAG.CONT],
      ['y', FLAG.CONT],
      ['z', FLAG.NOEOL],
    ]);
    expect((await showRaw(db, 'build-vm/max1')).equals(input)).toBe(true);
  });

  it('at the format limit (16 MiB), a 16 MiB + 1 byte line is one 16 MiB CONT chunk and a 1-byte NOEOL chunk, with bounded memory', async () => {
    const MAX = 16 * 1024 * 1024;
    const input = Buffer.alloc(MAX + 1, 0x7a);
    const r = await service('build-vm', 'max16m', db, { input, env: { APPENDLOG_MAX_LINE: String(MAX) }, measure: true });
    expectReceipt(r);
    report('16 MiB + 1 line at APPENDLOG_MAX_LINE=16 MiB: peak RSS of the service', `${r.peakRssKiB} KiB`);
    // Line buffer + batch buffer are each about one max line; allow 6 of them on top of node itself.
    expect(r.peakRssKiB!).toBeLessThan((100e6 + 6 * MAX) / 1024);
    const lines = entries(db, 'build-vm', 'max16m').filter((e) => e.kind === KIND.LINE);
    expect(lines.map((e) => [e.length, e.flags])).toEqual([
      [MAX, FLAG.CONT],
      [1, FLAG.NOEOL],
    ]);
  }, 60_000);

  it.each([
    ['0', 'below 1'],
    ['16777217', 'above the 16 MiB format limit'],
    ['lots', 'not a number'],
    ['-5', 'negative'],
  ])('refuses APPENDLOG_MAX_LINE=%s (%s) with USAGE (exit 2), a JSON error, and stores nothing', async (value) => {
    const name = `bad-max-${value.replace(/[^a-z0-9]/g, 'x')}`;
    expectServiceError(await service('build-vm', name, db, { input: 'x\n', env: { APPENDLOG_MAX_LINE: value } }), 'USAGE');
    expect((await listLogs(db)).find((l) => l.name === name)).toBeUndefined();
  });
});

describe('when lines carry terminal control sequences and display tricks', () => {
  // [what, line bytes, what `show` must print for it]
  const CASES: Array<[string, Buffer, string]> = [
    ['DCS (ESC P ... ESC \\): a device control string', b('\x1bP1$qm\x1b\\after'), '\\eP1$qm\\e\\\\after'],
    ['APC (ESC _ ...)', b('\x1b_hidden\x1b\\x'), '\\e_hidden\\e\\\\x'],
    ['OSC 52: write to the reader\'s clipboard', b('\x1b]52;c;cm0gLXJmIH4=\x07'), '\\e]52;c;cm0gLXJmIH4=\\x07'],
    ['OSC 8 hyperlink ending in ST', b('\x1b]8;;http://evil/\x1b\\click\x1b]8;;\x1b\\'), '\\e]8;;http://evil/\\e\\\\click\\e]8;;\\e\\\\'],
    ['8-bit C1 bytes 0x9b (CSI), 0x9d (OSC), 0x90 (DCS), not UTF-8', b([0x9b], '2J', [0x9d], '0;t', [0x07], [0x90], 'q'), '\\x9b2J\\x9d0;t\\x07\\x90q'],
    ['C1 controls as UTF-8: U+009B, U+009D, U+0090, U+0085 (NEL)', b('\u009b2J\u009d0;t\u0090q\u0085x'), '\\u009b2J\\u009d0;t\\u0090q\\u0085x'],
    ['backspaces that would erase "good" and print "evil"', b('good\b\b\b\bevil'), 'good\\x08\\x08\\x08\\x08evil'],
    ['a CR that would overwrite the line', b('status: FAILED\rstatus: OK    '), 'status: FAILED\\rstatus: OK    '],
    ['BEL, DEL, VT, FF', b('\x07\x7f\x0b\x0c'), '\\x07\\x7f\\x0b\\x0c'],
    ['bidi override U+202E (name.exe shown as exe.eman)', b('invoice\u202Efdp.exe'), 'invoice\\u202efdp.exe'],
    ['bidi isolates U+2066..U+2069 and marks U+200E, U+200F, U+061C', b('a\u2066b\u2067c\u2068d\u2069e\u200ef\u200fg\u061ch'), 'a\\u2066b\\u2067c\\u2068d\\u2069e\\u200ef\\u200fg\\u061ch'],
    ['line and paragraph separators U+2028, U+2029 and a BOM U+FEFF', b('x\u2028y\u2029z\ufeffw'), 'x\\u2028y\\u2029z\\ufeffw'],
  ];
  const SPOOF = b('       9 *  session 1 closed 2026-01-01T00:00:00.000Z: eof, 0 lines, 0 bytes');
  const input = Buffer.concat([...CASES.map(([, line]) => Buffer.concat([line, Buffer.from('\n')])), SPOOF, Buffer.from('\n')]);
  let out: string;
  let rows: string[];

  beforeAll(async () => {
    expectReceipt(await service('build-vm', 'tricks', db, { input }));
    out = await showText(db, 'build-vm/tricks');
    rows = out.trimEnd().split('\n');
  });

  it.each(CASES)('show renders %s as visible escapes', (_what, _line, shown) => {
    expect(rows.some((r) => r.endsWith(` |  ${shown}`)), `no row ending in |  ${shown}:\n${out}`).toBe(true);
  });

  it('show prints no C0 control (other than newline and tab) and no DEL', async () => {
    expect(c0OrDel(Buffer.from(out, 'utf8'))).toEqual([]);
  });

  it('show prints valid UTF-8 with no C1 control, bidi control, line separator or BOM', () => {
    expect(Buffer.from(out, 'utf8').toString('utf8')).toBe(out);
    expect(out).not.toMatch(DANGEROUS);
  });

  it('a line that imitates a session-close row is shown as a line (mark |), not as an event', () => {
    // One row per entry: open, the lines, close; only the first and last are events (*).
    expect(rows).toHaveLength(CASES.length + 1 + 2);
    expect(rows.filter((r) => /^ +\d+ \*/.test(r))).toHaveLength(2);
    expect(rows[rows.length - 2]).toMatch(/^ +\d+ \| {9}9 \* {2}session 1 closed/);
  });

  it('show --raw gives back every byte exactly', async () => {
    expect((await showRaw(db, 'build-vm/tricks')).equals(input)).toBe(true);
  });
});

describe('when a framed sender puts escape sequences into its claims', () => {
  const EVIL = '\x1b]0;pwned\x07\x1b[2J\u202e\u009b31m';
  const hello = encodeFrame(
    FrameType.HELLO,
    claimBytes({ claim: 'hello', protocol: FRAME_PROTOCOL, sender: `logsend${EVIL}`, hostname: `host${EVIL}`, command: ['make', EVIL] }),
  );
  const artifact = encodeFrame(FrameType.CLAIM, claimBytes({ claim: 'artifact', path: `out/${EVIL}.bin`, sha256: 'a'.repeat(64), size: 1 }));
  const exit = encodeFrame(FrameType.CLAIM, claimBytes({ claim: 'exit', code: 0, signal: null }));
  const data = encodeFrame(FrameType.STDOUT, Buffer.from(`built ${EVIL}\n`));
  const input = Buffer.concat([hello, data, artifact, exit, encodeFrame(FrameType.END)]);
  const bundle = join(tmp.dir, 'bundle-claims');
  let key: KeyPair;

  beforeAll(async () => {
    key = await makeKey(tmp.dir);
    expectFinalReceipt(await service('build-vm', '_framed.claims', db, { input }));
    await sealAndExport(db, 'build-vm/claims', key, bundle);
  });

  it('show prints the claims with every control and bidi character escaped', async () => {
    const out = await showText(db, 'build-vm/claims');
    expect(out).toContain('\\e]0;pwned\\x07\\e[2J\\u202e\\u009b31m');
    expect(c0OrDel(Buffer.from(out, 'utf8'))).toEqual([]);
    expect(out).not.toMatch(DANGEROUS);
  });

  it('verify-chain of the bundle (human form) says OK and prints the claims escaped', async () => {
    const r = await logvm(['verify-chain', bundle, '--key', key.pub]);
    expectNoCrash(r, 'verify-chain');
    expect(r.code, r.stderr).toBe(0);
    const out = r.stdout.toString('utf8');
    expect(out).toMatch(/^OK /);
    expect(out).toContain('\\\\u001b]0;pwned');
    expect(c0OrDel(r.stdout)).toEqual([]);
    expect(out).not.toMatch(DANGEROUS);
  });

  it('every chain of the store verifies', async () => {
    await expectAllVerified(db);
  });
});
