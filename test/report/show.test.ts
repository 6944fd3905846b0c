/**
 * `logvm show` for people, as journalctl reads: tail, time and seq ranges,
 * receive times, JSON, grep, follow a log that does not exist yet, the same
 * options on an exported bundle, and a quiet end when the reader quits.
 * Real processes: the service file, logsend, gpg, the built logvm.
 */
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LOGVM, baseEnv, callService, logvm, run, tempDir } from '../helpers.js';
import { EXIT } from '../exit-codes.js';
import { formatProgress } from '../../packages/log-vm/src/progress.js';
import { VM, logBuild, logvmOk, makeSigner, sealAndExport, type Signer } from './util.js';

const tmp = tempDir('appendlog-show-');
const db = join(tmp.dir, 'logs.db');
const work = join(tmp.dir, 'work');
const bundle = join(tmp.dir, 'bundle');
const NAME = 'show-1';
const REF = `${VM}/${NAME}`;
let signer: Signer;

interface JsonEntry {
  seq: number;
  kind: string;
  time: string;
  session: number;
  flags: number;
  text?: string;
  base64?: string;
}

const lines = (b: Buffer | string): string[] => b.toString().split('\n').filter((l) => l !== '');
const show = async (args: string[]): Promise<string[]> => lines((await logvmOk(['show', ...args], { db })).stdout);
const showJson = async (args: string[]): Promise<JsonEntry[]> => (await show(['--json', ...args])).map((l) => JSON.parse(l) as JsonEntry);

beforeAll(async () => {
  mkdirSync(work);
  signer = await makeSigner(tmp.dir);
  // stdout and stderr, an invalid byte, a bidi override, an escape sequence, a pause in the middle.
  const script = [
    'echo "Compiling alpha"',
    'echo "warning: Beta is deprecated" >&2',
    "printf 'bad byte \\377 here\\n'",
    "printf 'bidi \\342\\200\\256abc\\n'",
    "printf '\\033[31mred\\033[0m\\n'",
    'sleep 1.2',
    'echo "Linking gamma"',
    'echo "error: delta failed" >&2',
  ].join('\n');
  expect((await logBuild(db, NAME, work, `${script}\n`)).code).toBe(0);
  await sealAndExport(db, REF, signer, bundle);
});

afterAll(async () => {
  await signer?.cleanup();
  tmp.cleanup();
});

describe('logvm show -n/--lines N', () => {
  it('prints only the last N entries', async () => {
    const all = await show([REF]);
    expect(await show([REF, '-n', '3'])).toEqual(all.slice(-3));
    expect(await show([REF, '--lines', '1'])).toEqual(all.slice(-1));
    expect(await show([REF, '-n', '0'])).toEqual([]);
  });

  it('counts after the other filters: the last 2 lines matching --grep', async () => {
    const matching = (await show([REF])).filter((l) => /ing/.test(l));
    expect(matching.length).toBeGreaterThan(2);
    expect(await show([REF, '--grep', 'ing', '-n', '2'])).toEqual(matching.slice(-2));
  });
});

describe('logvm show --since/--until', () => {
  it('takes seq numbers: --since 4 --until 6 prints seq 4 to 6', async () => {
    const got = await showJson([REF, '--since', '4', '--until', '6']);
    expect(got.map((e) => e.seq)).toEqual([4, 5, 6]);
  });

  it('takes ISO 8601 receive times: only entries received in the range', async () => {
    const all = await showJson([REF]);
    const linking = all.find((e) => e.text === 'Linking gamma')!;
    const since = await showJson([REF, '--since', linking.time]);
    expect(since.length).toBeGreaterThan(0);
    expect(since.every((e) => Date.parse(e.time) >= Date.parse(linking.time))).toBe(true);
    expect(since.map((e) => e.text)).toContain('Linking gamma');
    expect(since.map((e) => e.text)).not.toContain('Compiling alpha');
    const until = await showJson([REF, '--until', new Date(Date.parse(linking.time) - 1).toISOString()]);
    expect(until.map((e) => e.text)).toContain('Compiling alpha');
    expect(until.map((e) => e.text)).not.toContain('Linking gamma');
  });

  it('refuses a bound that is neither a seq nor a time (USAGE)', async () => {
    const r = await logvm(['show', REF, '--since', 'yesterday-ish'], { db });
    expect(r.code).toBe(EXIT.USAGE);
    expect(r.stderr).toContain('--since');
  });
});

describe('logvm show --time', () => {
  it('prints each entry\'s receive time, ISO 8601 UTC, after the seq', async () => {
    const json = await showJson([REF]);
    const timed = await show([REF, '--time']);
    expect(timed).toHaveLength(json.length);
    timed.forEach((l, i) => expect(l).toMatch(new RegExp(`^ *${json[i]!.seq} ${json[i]!.time.replace(/\./g, '\\.')} `)));
    expect(json[0]!.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  });
});

describe('logvm show --json', () => {
  it('gives one object per entry: seq, kind, time, text, or base64 for bytes that are not UTF-8', async () => {
    const json = await showJson([REF]);
    expect(json.map((e) => e.seq)).toEqual(json.map((_, i) => i + 1));
    expect(json.find((e) => e.text === 'Compiling alpha')!.kind).toBe('stdout');
    expect(json.find((e) => e.text === 'warning: Beta is deprecated')!.kind).toBe('stderr');
    const bad = json.find((e) => e.base64 !== undefined)!;
    expect(Buffer.from(bad.base64!, 'base64')).toEqual(Buffer.from('bad byte \xff here', 'latin1'));
    expect(json.map((e) => e.text)).toContain('bidi \u202eabc');
    expect(json.map((e) => e.text)).toContain('\x1b[31mred\x1b[0m');
  });

  it('never writes a bidi override or an escape byte raw: they are JSON escapes', async () => {
    const raw = (await logvmOk(['show', REF, '--json'], { db })).stdout.toString('utf8');
    expect(raw).not.toContain('\u202e');
    expect(raw).not.toContain('\x1b');
    expect(raw).toContain('\\u202e');
  });
});

describe('logvm show --grep PATTERN', () => {
  it('matches without capitals in either case, with capitals exactly (smart case, as journalctl)', async () => {
    const lower = await showJson(['--grep', 'beta', REF]);
    expect(lower.map((e) => e.text)).toEqual(['warning: Beta is deprecated']);
    expect(await showJson(['--grep', 'BETA', REF])).toEqual([]);
  });

  it('matches the text without its colour codes', async () => {
    expect((await showJson(['--grep', '^red$', REF])).map((e) => e.text)).toEqual(['\x1b[31mred\x1b[0m']);
  });
});

describe('logvm show BUNDLE', () => {
  it('prints an exported bundle exactly as the log in the store', async () => {
    expect(await show([bundle])).toEqual(await show([REF]));
  });

  it('takes the same options', async () => {
    expect(await show([bundle, '-n', '2', '--time'])).toEqual(await show([REF, '-n', '2', '--time']));
    expect(await show([bundle, '--json', '--grep', 'gamma'])).toEqual(await show([REF, '--json', '--grep', 'gamma']));
    expect((await logvmOk(['show', bundle, '--raw'], { db })).stdout).toEqual((await logvmOk(['show', REF, '--raw'], { db })).stdout);
  });

  it('reads a bundle archive and a version 1 bundle the same way', async () => {
    const store = await show([REF, '--time']);
    for (const form of ['show.tar.gz', 'show.tar', 'show-v1']) {
      const target = join(tmp.dir, form);
      await logvmOk(['export', REF, '--out', target, ...(form.endsWith('v1') ? ['--bundle-version', '1'] : [])], { db });
      expect(await show([target, '--time']), form).toEqual(store);
      expect(await show([target, '-n', '2', '--json']), form).toEqual(await show([REF, '-n', '2', '--json']));
    }
  });

  it('refuses --follow on a bundle (USAGE)', async () => {
    expect((await logvm(['show', bundle, '--follow'])).code).toBe(EXIT.USAGE);
  });
});

describe('logvm show --follow', () => {
  it('waits for a log that does not exist yet, prints it as it arrives, and ends when it is sealed', async () => {
    const fdb = join(tmp.dir, 'follow.db');
    const child = spawn(process.execPath, [LOGVM, 'show', '--follow', `${VM}/later`], { env: baseEnv({ APPENDLOG_DB: fdb }), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const ended = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    // It says it waits (no wall-clock guess: poll for the message, up to 30 s).
    for (let i = 0; i < 300 && !err.includes('waiting for'); i++) await new Promise((r) => setTimeout(r, 100));
    expect(err).toContain(`waiting for ${VM}/later`);
    expect(child.exitCode).toBeNull();
    const sent = await callService(VM, 'later', fdb, { input: 'first line\nsecond line\n' });
    expect(sent.code, sent.stderr).toBe(0);
    await logvmOk(['seal', `${VM}/later`, '--signer', signer.spec], { db: fdb, env: signer.env });
    expect(await ended).toBe(0);
    expect(out).toMatch(/ \|  first line\n/);
    expect(out).toMatch(/ #  sealed /);
  });
});

describe('when the reader quits early (| head, less)', () => {
  const bigDb = join(tmp.dir, 'big.db');
  beforeAll(async () => {
    const input = Buffer.from(Array.from({ length: 200_000 }, (_, i) => `line ${i} of a log that is longer than any pipe buffer`).join('\n'));
    expect((await callService(VM, 'big', bigDb, { input })).code).toBe(0);
  });

  for (const args of [['show', `${VM}/big`], ['show', `${VM}/big`, '--json'], ['show', `${VM}/big`, '--raw']]) {
    it(`logvm ${args.join(' ')} | head -1 ends with status 0 and nothing on stderr`, async () => {
      // bash, for the exit status of logvm itself in a pipe whose reader quits after one line.
      const status = await run('bash', ['-c', '"$0" "$@" 2>"$ERR" | head -1 >/dev/null; s=${PIPESTATUS[0]}; cat "$ERR" >&2; exit $s', process.execPath, LOGVM, ...args], {
        env: { APPENDLOG_DB: bigDb, ERR: join(tmp.dir, 'err.txt') },
      });
      expect(status.stderr).toBe('');
      expect(status.code).toBe(0);
    });
  }
});

describe('progress on long work', () => {
  it('goes only to a terminal: nothing on a piped stderr', async () => {
    const r = await logvm(['verify-chain', bundle, '--key', signer.pub]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
  });

  it('on a terminal of 60 columns, draws lines that fit it and clears them at the end', async () => {
    // A real pseudo-terminal (util-linux script), 60 columns wide; stdout goes to a file.
    const pdb = join(tmp.dir, 'progress.db');
    const input = Buffer.from(Array.from({ length: 300_000 }, (_, i) => `progress line ${i}`).join('\n'));
    expect((await callService(VM, 'progress', pdb, { input })).code).toBe(0);
    await logvmOk(['seal', `${VM}/progress`, '--signer', signer.spec], { db: pdb, env: signer.env });
    const out = join(tmp.dir, 'progress-bundle');
    const cmd = `stty cols 60; "${process.execPath}" "${LOGVM}" export ${VM}/progress --db "${pdb}" --out "${out}" >/dev/null`;
    const r = await run('script', ['-qec', cmd, '/dev/null'], { env: signer.env });
    expect(r.code, r.stderr).toBe(0);
    const tty = r.stdout.toString('utf8');
    const frames = tty.split('\r').map((f) => f.replace(/\x1b\[K/g, '').replace(/\r?\n$/, '')).filter((f) => f.startsWith('exporting'));
    expect(frames.length).toBeGreaterThan(0);
    for (const f of frames) expect(f.length, f).toBeLessThan(60);
    expect(frames[0]).toMatch(/^exporting \[[#.]+\] \d+% \d+\/300003/);
    expect(tty.endsWith('\r\x1b[K') || tty.includes('\r\x1b[K')).toBe(true);
  });

  it('fits the terminal width and shows an ETA once it has a rate', () => {
    for (const columns of [20, 40, 60, 80, 120, 300]) {
      for (const done of [0, 1, 4096, 500_000, 999_999]) {
        const line = formatProgress('verifying', done, 1_000_003, 2000, columns);
        expect(line.length, `${columns} columns: ${line}`).toBeLessThan(columns);
      }
    }
    expect(formatProgress('exporting', 250_000, 1_000_000, 1000, 80)).toMatch(/^exporting \[#+\.+\] 25% 250000\/1000000 ETA 3s$/);
  });
});
