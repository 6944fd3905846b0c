/**
 * Log and VM names. The log name comes from the qrexec service argument,
 * chosen by the (untrusted) calling VM; it becomes part of file names, CLI
 * arguments and the genesis hash, so it must never look like an option, a path
 * or anything but a short plain word.
 */
import { describe, expect, it } from 'vitest';
import { checkLogName, checkVmName, parseLogRef, quoteUntrusted } from '../src/index.js';
import { expectAppendlogError } from './support.js';

/** C0/C1 controls, DEL and bidi controls: nothing a terminal should receive raw. */
const UNPRINTABLE = /[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

describe('checkLogName', () => {
  describe.each([
    ['a plain word', 'build'],
    ['letters, digits, dot, dash and plus', 'release-1.2+x'],
    ['a leading digit', '2024-05-01'],
    ['a single character', 'a'],
    ['64 characters (the maximum)', 'n'.repeat(64)],
    ['a name ending in dots', 'a..'],
  ])('when the name is %s', (_what, name) => {
    it('accepts it unchanged', () => {
      expect(checkLogName(name)).toBe(name);
    });
  });

  describe.each([
    ['undefined (no service argument)', undefined],
    ['empty', ''],
    ['an option "-h"', '-h'],
    ['an option "--db=/tmp/x"', '--db=/tmp/x'],
    ['"."', '.'],
    ['".."', '..'],
    ['hidden ".hidden"', '.hidden'],
    ['a leading underscore', '_x'],
    ['an underscore (reserved: dom0 writes it for every other byte)', 'release-1.2_x'],
    ['65 characters', 'n'.repeat(65)],
    ['a path "a/b"', 'a/b'],
    ['a path "../x"', '../x'],
    ['non-ASCII "ünï"', '\u00fcn\u00ef'],
    ['"a b" with a space', 'a b'],
    ['a trailing newline', 'abc\n'],
    ['a NUL byte', 'a\0b'],
    ['a backslash', 'a\\b'],
    ['a fullwidth digit', '\uff11'],
  ])('when the name is %s', (_what, name) => {
    it('fails with NAME_INVALID', () => {
      expectAppendlogError(() => checkLogName(name), 'NAME_INVALID');
    });
  });

  describe('when the refused name holds control or bidi characters', () => {
    it.each([
      ['ESC', 'x\x1b[2J'],
      ['DEL', 'x\x7f'],
      ['the C1 CSI U+009B', 'x\u009b2J'],
      ['the right-to-left override U+202E', 'x\u202egpj.exe'],
    ])('does not echo %s raw in the error message', (_what, name) => {
      const err = expectAppendlogError(() => checkLogName(name), 'NAME_INVALID');
      expect(err.message).not.toMatch(UNPRINTABLE);
    });

    it('bounds the echoed name for a very long argument', () => {
      const err = expectAppendlogError(() => checkLogName('x'.repeat(100_000)), 'NAME_INVALID');
      expect(err.message.length).toBeLessThan(400);
    });
  });
});

describe('checkVmName', () => {
  describe.each([
    ['a typical name', 'work'],
    ['a disposable name', 'disp1234'],
    ['dashes, dots and underscores', 'sys-usb.x_1'],
    ['31 characters (the maximum)', 'v'.repeat(31)],
  ])('when the VM name is %s', (_what, vm) => {
    it('accepts it unchanged', () => {
      expect(checkVmName(vm)).toBe(vm);
    });
  });

  describe.each([
    ['undefined (QREXEC_REMOTE_DOMAIN unset)', undefined],
    ['empty', ''],
    ['a leading digit', '1work'],
    ['a leading dash', '-work'],
    ['a leading dot', '.work'],
    ['32 characters', 'v'.repeat(32)],
    ['a path', 'a/b'],
    ['a space', 'my vm'],
    ['non-ASCII', 'w\u00f6rk'],
    ['a trailing newline', 'work\n'],
  ])('when the VM name is %s', (_what, vm) => {
    it('fails with VM_INVALID', () => {
      expectAppendlogError(() => checkVmName(vm), 'VM_INVALID');
    });
  });
});

describe('parseLogRef', () => {
  it('splits VM/NAME', () => {
    expect(parseLogRef('work/release-1.2_x')).toEqual({ vm: 'work', name: 'release-1.2_x' });
  });

  it('fails with USAGE when there is no slash', () => {
    expectAppendlogError(() => parseLogRef('build-1'), 'USAGE');
  });

  it('fails with VM_INVALID for a bad VM part', () => {
    expectAppendlogError(() => parseLogRef('1work/build'), 'VM_INVALID');
    expectAppendlogError(() => parseLogRef('/build'), 'VM_INVALID');
  });

  it('fails with NAME_INVALID for a bad name part', () => {
    expectAppendlogError(() => parseLogRef('work/'), 'NAME_INVALID');
    expectAppendlogError(() => parseLogRef('work/-h'), 'NAME_INVALID');
  });

  it('splits at the first slash, so a second slash lands in the name and is refused', () => {
    expectAppendlogError(() => parseLogRef('work/a/b'), 'NAME_INVALID');
  });
});

describe('quoteUntrusted', () => {
  it('quotes a short value as a JSON string', () => {
    expect(quoteUntrusted('a"b')).toBe('"a\\"b"');
  });

  it('cuts a long value at max characters and says how long it was', () => {
    const q = quoteUntrusted('y'.repeat(1000), 10);
    expect(q.startsWith(JSON.stringify('y'.repeat(10)))).toBe(true);
    expect(q).toContain('1000');
    expect(q.length).toBeLessThan(50);
  });
});
