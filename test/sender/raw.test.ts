/**
 * Raw mode is unchanged by framed mode: `make 2>&1 | qrexec-client-vm logvm
 * qubes.AppendLog+NAME` (bare name) and `logsend --name NAME` (argument
 * `_framed.NAME`) append to the same log, session after session. Raw sessions
 * hold LINE entries only, framed ones tagged streams and claims; the chain
 * verifies across both, and `show --raw` reproduces every session's bytes in
 * order.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RPC_SERVICE, jsonLines, qrexecEnv, run, tempDir, type RunResult } from '../helpers.js';
import {
  EXIT,
  KIND,
  VM,
  fakeQrexecClient,
  helloProject,
  logsend,
  marked,
  showRaw,
  showText,
  storedEntries,
  verifyJson,
  type FakeQrexec,
  type StoredEntry,
  type TimedResult,
  type VerifyJson,
} from './util.js';

const NAME = 'mixed';
const REF = `${VM}/${NAME}`;

const tmp = tempDir('appendlog-sender-raw-');
const db = join(tmp.dir, 'logs.db');
let qrexec: FakeQrexec;

/** Session by session: how it was sent, what it sent, how the sender ended. */
const sessions: Array<{ mode: 'raw' | 'framed'; bytes: Buffer; result: RunResult | TimedResult }> = [];
let entries: StoredEntry[];
let verified: VerifyJson;
let rawShown: Buffer;
let show: string;

/** The raw pipeline of the README, with the real service file: `CMD 2>&1 | tee | qubes.AppendLog`. */
async function rawSession(cmd: string, cwd: string): Promise<void> {
  const copy = join(cwd, `sent-${sessions.length + 1}`);
  const result = await run('sh', ['-c', `(${cmd}) 2>&1 | tee "$1" | "$2"`, 'sh', copy, RPC_SERVICE], { cwd, env: qrexecEnv(VM, NAME, db) });
  sessions.push({ mode: 'raw', bytes: readFileSync(copy), result });
}

async function framedSession(command: string[], expected: string): Promise<void> {
  const result = await logsend(['--qrexec-client', qrexec.path, '--name', NAME, '--', ...command], { cwd: tmp.dir, home: tmp.dir });
  sessions.push({ mode: 'framed', bytes: Buffer.from(expected), result });
}

beforeAll(async () => {
  qrexec = fakeQrexecClient(tmp.dir, db);
  const project = helloProject(tmp.dir, 'hello');
  await rawSession('make all both', project);
  await framedSession(['sh', '-c', 'echo framed stdout; sleep 0.1; echo framed stderr >&2'], 'framed stdout\nframed stderr\n');
  await rawSession("printf 'raw line\\nraw tail without newline'", tmp.dir);
  await framedSession(['printf', 'second framed session\\n'], 'second framed session\n');
  await rawSession("printf '\\020\\000\\000\\000\\005looks like a frame\\n\\377\\376 binary\\n'", tmp.dir);
  entries = storedEntries(db, REF);
  [verified, rawShown, show] = await Promise.all([verifyJson(['--db', db, '--store', REF]).then((v) => v.result), showRaw(db, REF), showText(db, REF)]);
});

afterAll(() => tmp.cleanup());

const inSession = (n: number): StoredEntry[] => entries.filter((e) => e.session === n && e.kind !== KIND.SESSION_OPEN && e.kind !== KIND.SESSION_CLOSE);

describe('when raw and framed sessions alternate in one log', () => {
  it('every raw session succeeds as before: exit 0, nothing on stderr, one final receipt', () => {
    for (const s of sessions.filter((x) => x.mode === 'raw')) {
      expect(s.result.code, s.result.stderr).toBe(EXIT.OK);
      expect(s.result.stderr).toBe('');
      const lines = jsonLines(s.result.stdout);
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatchObject({ type: 'receipt', log: REF });
      expect(lines[0]!.final ?? true).toBe(true);
    }
  });

  it('every framed session succeeds', () => {
    for (const s of sessions.filter((x) => x.mode === 'framed')) expect(s.result.code, s.result.stderr).toBe(EXIT.OK);
  });

  it('the raw make session really is the make output (compiler call, stdout and stderr merged)', () => {
    const text = sessions[0]!.bytes.toString('utf8');
    expect(text).toContain('hello.c');
    expect(text).toContain('Hello from the build VM');
    expect(text).toContain('this line went to stderr');
    expect(text).toContain('both: stderr line 1');
  });

  it('all sessions went to the same log, in order, with the mode their argument selected', () => {
    const opens = marked(show, '*').filter((l) => l.includes(' opened '));
    expect(opens).toHaveLength(sessions.length);
    sessions.forEach((s, i) => {
      expect(opens[i]).toContain(`session ${i + 1} opened`);
      expect(opens[i]).toContain(`argument ${JSON.stringify(s.mode === 'raw' ? NAME : `_framed.${NAME}`)},`);
      expect(opens[i]).toContain(`mode ${s.mode}`);
    });
  });

  it('raw sessions hold LINE entries only; framed ones STDOUT/STDERR lines and claims, never LINE', () => {
    sessions.forEach((s, i) => {
      const kinds = new Set(inSession(i + 1).map((e) => e.kind));
      if (s.mode === 'raw') expect([...kinds]).toEqual([KIND.LINE]);
      else {
        expect(kinds.has(KIND.LINE)).toBe(false);
        expect(kinds.has(KIND.CLAIM)).toBe(true);
        expect(kinds.has(KIND.STDOUT)).toBe(true);
      }
    });
    expect(inSession(2).filter((e) => e.kind === KIND.STDERR).map((e) => e.payload.toString())).toEqual(['framed stderr']);
  });

  it('the chain verifies across all sessions, each closed at eof', () => {
    expect(verified).toMatchObject({ ok: true, state: 'open', sessions: sessions.length, closes: { eof: sessions.length } });
  });

  it('show --raw reproduces each session byte for byte, in order', () => {
    const expected = Buffer.concat(sessions.map((s) => s.bytes));
    expect(rawShown.toString('latin1')).toBe(expected.toString('latin1'));
  });

  it('a raw line without a newline stays one line, flagged NOEOL, and the next session starts a new entry', () => {
    const tail = inSession(3).at(-1)!;
    expect(tail.payload.toString()).toBe('raw tail without newline');
    expect(tail.flags).toBe(2);
    expect(inSession(4).find((e) => e.kind === KIND.STDOUT)!.payload.toString()).toBe('second framed session');
  });

  it('raw bytes that look like a frame header are a plain line, not a frame', () => {
    const lines = inSession(5);
    expect(lines.map((e) => e.kind)).toEqual([KIND.LINE, KIND.LINE]);
    expect(lines[0]!.payload.equals(Buffer.from('\x10\x00\x00\x00\x05looks like a frame', 'latin1'))).toBe(true);
  });
});
