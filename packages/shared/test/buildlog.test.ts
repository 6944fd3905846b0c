/**
 * qubesbuilder.BuildLog compatibility (docs/FORMAT.md section 13): the name
 * and path rule (13.2, with the examples of its table) and the legacy text
 * rendering of a chain (13.3), as pure functions.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ChainRenderer, buildLogLineTime, buildLogSubdir, buildLogTarget, sanitizeLegacy, type RenderEntry } from '../src/index.js';

const T = Date.UTC(2026, 11, 1, 21, 9, 53, 386); // 2026-12-01 21:09:53.386 UTC

describe('the name and path rule (13.2)', () => {
  it.each([
    ['', 0, 'build-vm/log_2026-12-01_21-09-53', 'buildlog.log_2026-12-01_21-09-53'],
    ['sub.dir', 0, 'build-vm/sub_dir/log_2026-12-01_21-09-53', 'buildlog.sub_dir.log_2026-12-01_21-09-53'],
    ['', 1, 'build-vm/log_2026-12-01_21-09-53.1', 'buildlog.log_2026-12-01_21-09-53.1'],
  ])('argument %j, suffix %d: path %s, name %s (the examples of 13.2)', (arg, n, path, name) => {
    const t = buildLogTarget('build-vm', buildLogSubdir(arg), T, n);
    expect(t.path).toBe(path);
    expect(t.name).toBe(name);
  });

  it('keeps [A-Za-z0-9_-] and makes every other character one _ (per character, as the legacy service)', () => {
    expect(buildLogSubdir('a/b:c d+e.f')).toBe('a_b_c_d_e_f');
    expect(buildLogSubdir('été')).toBe('_t_');
    expect(buildLogSubdir('..')).toBe('__');
    expect(buildLogSubdir('-_Az09')).toBe('-_Az09');
  });

  it('shortens a SUBDIR over 26 characters with its SHA-256, and the name stays a valid log name', () => {
    const sub = 'x'.repeat(200);
    const hash = createHash('sha256').update(sub).digest('hex');
    const t = buildLogTarget('build-vm', sub, T, 9999, hash);
    expect(t.name).toBe(`buildlog.${'x'.repeat(13)}-${hash.slice(0, 12)}.log_2026-12-01_21-09-53.9999`);
    expect(t.name.length).toBe(64);
    expect(t.name).toMatch(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/);
  });

  it('a 26-character SUBDIR with the largest suffix still fits in 64 characters', () => {
    const t = buildLogTarget('build-vm', '-'.repeat(26), T, 9999);
    expect(t.name.length).toBe(64);
    expect(t.name).toMatch(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/);
  });

  it('refuses a suffix beyond 9999 (NAME_CONFLICT)', () => {
    expect(() => buildLogTarget('build-vm', '', T, 10000)).toThrow(expect.objectContaining({ code: 'NAME_CONFLICT' }));
  });
});

describe('the legacy text rendering (13.3)', () => {
  const open = (time: number, session = 1): RenderEntry => ({ time, session, kind: 0x10, flags: 0, payload: Buffer.from('{"mode":"raw"}') });
  const close = (time: number, reason = 'eof', session = 1): RenderEntry => ({ time, session, kind: 0x11, flags: 0, payload: Buffer.from(`{"reason":"${reason}","session":${session}}`) });
  const line = (time: number, text: string | Buffer, flags = 0, session = 1, kind = 0x01): RenderEntry => ({ time, session, kind, flags, payload: typeof text === 'string' ? Buffer.from(text, 'latin1') : text });
  const render = (fmt: 'buildlog' | 'text', entries: RenderEntry[]): string => {
    const r = new ChainRenderer(fmt, 'build-vm');
    return Buffer.concat([...entries.flatMap((e) => r.push(e)), ...r.end()]).toString('latin1');
  };

  it('writes %F %T.%f with the milliseconds and 000', () => {
    expect(buildLogLineTime(T)).toBe('2026-12-01 21:09:53.386000');
    expect(buildLogLineTime(Date.UTC(2027, 0, 2, 3, 4, 5, 6))).toBe('2027-01-02 03:04:05.006000');
  });

  it('makes every byte outside 0x20-0x7e a dot', () => {
    expect(sanitizeLegacy(Buffer.from([0x00, 0x1f, 0x20, 0x7e, 0x7f, 0xff, 0x0d])).toString('latin1')).toBe('.. ~...');
  });

  it('renders a session as starting log, VM-prefixed lines, closing log', () => {
    expect(render('buildlog', [open(T), line(T + 1, 'a\x1bb'), line(T + 2, ''), close(T + 3)])).toBe(
      '2026-12-01 21:09:53.386000 +0000 > starting log\n' +
        '2026-12-01 21:09:53.387000 +0000 build-vm: a.b\n' +
        '2026-12-01 21:09:53.388000 +0000 build-vm: \n' +
        '2026-12-01 21:09:53.389000 +0000 > closing log\n',
    );
  });

  it('joins CONT chunks into one line with the first chunk time, and the next line gets its own prefix', () => {
    const out = render('buildlog', [line(T, 'aa', 0x01), line(T + 5, 'bb'), line(T + 6, 'next')]);
    expect(out).toBe('2026-12-01 21:09:53.386000 +0000 build-vm: aabb\n2026-12-01 21:09:53.392000 +0000 build-vm: next\n');
  });

  it('splits a CONT line interrupted by another session or stream, and ends a dangling CONT line', () => {
    const out = render('text', [line(T, 'a1', 0x01, 1), line(T, 'b', 0, 2), line(T, 'a2', 0, 1), line(T, 'tail', 0x01, 1)]);
    expect(out).toBe('a1\nb\na2\ntail\n');
  });

  it('shows a close reason other than eof and a notice, and never a claim or the seal', () => {
    const notice: RenderEntry = { time: T, session: 1, kind: 0x12, flags: 0, payload: Buffer.from('{"detail":"over \\u001b quota","notice":"quota-exceeded","unread":"x"}') };
    const claim: RenderEntry = { time: T, session: 1, kind: 0x30, flags: 0, payload: Buffer.from('{"claim":"exit","code":0,"signal":null}') };
    const seal: RenderEntry = { time: T, session: 0, kind: 0x20, flags: 0, payload: Buffer.from('{"prevSeal":null,"sealIndex":1,"sealed":1}') };
    const out = render('buildlog', [claim, notice, close(T, 'quota'), seal]);
    expect(out).toBe('2026-12-01 21:09:53.386000 +0000 > notice: quota-exceeded: over . quota\n2026-12-01 21:09:53.386000 +0000 > closing log (quota)\n');
  });

  it('text: the lines alone, escaped as show escapes them', () => {
    expect(render('text', [open(T), line(T, Buffer.from('r\x1b[1m\r\xff', 'latin1')), close(T)])).toBe('r\\e[1m\\r\\xff\n');
  });
});
