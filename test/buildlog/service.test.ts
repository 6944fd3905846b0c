/**
 * rpc/qubesbuilder.BuildLog as the Qubes builder uses it: its own calling
 * code (builder_client.py) through a stand-in qrexec-client-vm, the real
 * service file, the built logvm, real SQLite, real xz, real GnuPG standing in
 * for Split-GPG. test/buildlog/lab.test.ts repeats the main case through
 * the real qrexec.
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callService, jsonLines, logvm, run, tempDir } from '../helpers.js';
import { EXIT, gpgHome, signerScript, type GpgHome } from '../seal/util.js';
import { BUILDER_RE, LEGACY_LINE, VM, builderLogs, callBuildLog, fakeQrexecClient, logVmHome, sentBytes, type LogVmHome } from './util.js';

const tmp = tempDir('appendlog-buildlog-');
let gpg: GpgHome;
let fpr: string;
let pub: string;

beforeAll(async () => {
  gpg = gpgHome();
  fpr = await gpg.genKey('Build Log Signer <logs@example.org>', 'ed25519');
  pub = await gpg.exportPublic(fpr, join(tmp.dir, 'signer.pub.asc'));
});

afterAll(async () => {
  await gpg.cleanup();
  tmp.cleanup();
});

let n = 0;
function fresh(): { dir: string; h: LogVmHome } {
  const dir = join(tmp.dir, `case-${++n}`);
  mkdirSync(dir);
  return { dir, h: logVmHome(dir) };
}

interface Listed {
  vm: string;
  name: string;
  state: string;
  flag: string | null;
  lines: number;
}
async function list(h: LogVmHome): Promise<Listed[]> {
  const r = await logvm(['list', '--json'], { db: h.db });
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout.toString('utf8')) as Listed[];
}

/** The legacy sanitizing, written out: every byte outside 0x20-0x7e becomes '.'. */
const legacy = (s: string): string => Array.from(Buffer.from(s, 'utf8'), (b) => (b >= 0x20 && b <= 0x7e ? String.fromCharCode(b) : '.')).join('');

const fileTime = /^log_(\d{4})-(\d\d)-(\d\d)_(\d\d)-(\d\d)-(\d\d)$/;

const HOSTILE = [
  '> starting build with log',
  'gcc -O2 -c main.c',
  'wörld \u00e9t\u00e9 \u202e gnp.exe',
  '\x1b[31mred\x1b[0m and \x1b]0;title\x07',
  'carriage\rreturn',
  '',
  'tab\there  ',
  'x'.repeat(100_000),
  '> done',
];

describe('the builder calls qrexec-client-vm dom0 qubesbuilder.BuildLog', () => {
  let h: LogVmHome;
  let got: Awaited<ReturnType<typeof builderLogs>>;
  let text: string;
  let name: string;

  beforeAll(async () => {
    const c = fresh();
    h = c.h;
    fakeQrexecClient(h);
    got = await builderLogs(h, c.dir, HOSTILE);
    const logs = await list(h);
    expect(logs).toHaveLength(1);
    name = logs[0]!.name;
    if (got.result.log_file) text = readFileSync(join(h.incoming, got.result.log_file), 'latin1');
  });

  it('gets the legacy path back as the first stdout line, and it matches the builder regex', () => {
    expect(got.result.exception, got.run.stderr).toBeUndefined();
    expect(got.result.returncode).toBe(0);
    const path = got.result.log_file!;
    expect(path).toMatch(BUILDER_RE);
    const [vm, file] = path.split('/');
    expect(vm).toBe(VM);
    expect(file).toMatch(fileTime);
    expect(got.result.url).toBe(`https://github.com/QubesOS/build-logs/tree/master/${path}`);
  });

  it('names the log buildlog.<file name> in the store (docs/FORMAT.md 13.2)', () => {
    expect(name).toBe(`buildlog.${got.result.log_file!.split('/')[1]}`);
  });

  it('writes the legacy format at that path: starting/closing lines, VM prefix, bytes outside 0x20-0x7e as dots', () => {
    const lines = text.split('\n');
    expect(lines.pop()).toBe('');
    expect(lines).toHaveLength(HOSTILE.length + 2);
    for (const l of lines) expect(l).toMatch(LEGACY_LINE);
    expect(lines[0]).toMatch(/ \+0000 > starting log$/);
    expect(lines.at(-1)).toMatch(/ \+0000 > closing log$/);
    HOSTILE.forEach((m, i) => expect(lines[i + 1]!.slice(33)).toBe(`${VM}: ${legacy(m)}`));
    // The file time is the starting line's second.
    const t = fileTime.exec(got.result.log_file!.split('/')[1]!)!;
    expect(lines[0]!.slice(0, 19)).toBe(`${t[1]}-${t[2]}-${t[3]} ${t[4]}:${t[5]}:${t[6]}`);
  });

  it('stores every byte the builder sent, unsanitized (logvm show --raw)', async () => {
    const r = await logvm(['show', '--raw', `${VM}/${name}`], { db: h.db });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.equals(sentBytes(HOSTILE))).toBe(true);
  });

  it('the file is a view of the chain: logvm render --format buildlog gives the same bytes', async () => {
    const r = await logvm(['render', `${VM}/${name}`, '--format', 'buildlog'], { db: h.db });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.toString('latin1')).toBe(text);
  });

  it('render --format text escapes as show does', async () => {
    const r = await logvm(['render', `${VM}/${name}`, '--format', 'text'], { db: h.db });
    expect(r.code, r.stderr).toBe(0);
    const out = r.stdout.toString('utf8').split('\n');
    expect(out[3]).toBe('\\e[31mred\\e[0m and \\e]0;title\\x07');
    expect(out[2]).toContain('\\u202e');
    expect(out[4]).toBe('carriage\\rreturn');
    expect(r.stdout.includes(0x1b)).toBe(false);
  });

  it('records the legacy path and the service in the session-open event', async () => {
    const r = await logvm(['export', `${VM}/${name}`, '--out', join(tmp.dir, 'never')], { db: h.db });
    expect(r.code).toBe(EXIT.NOT_SEALED);
    const blocks = await run('/usr/bin/sqlite3', [h.db, `SELECT hex(data) FROM blocks ORDER BY id LIMIT 1`]);
    const first = Buffer.from(blocks.stdout.toString('utf8').trim(), 'hex');
    const open = JSON.parse(first.subarray(26).toString('utf8')) as Record<string, unknown>;
    expect(open).toMatchObject({ service: 'qubesbuilder.BuildLog', path: got.result.log_file, vm: VM, argument: '', mode: 'raw' });
  });
});

describe('SUBDIR, names and collisions', () => {
  it('qubesbuilder.BuildLog+sub.dir/x: dom0 gives sub.dir_x, the legacy rule makes it sub_dir_x', async () => {
    const c = fresh();
    fakeQrexecClient(c.h);
    const { result } = await builderLogs(c.h, c.dir, ['hello'], 'sub.dir/x');
    expect(result.log_file).toMatch(/^build-vm\/sub_dir_x\/log_[0-9_-]+$/);
    expect(result.log_file).toMatch(BUILDER_RE);
    expect(existsSync(join(c.h.incoming, result.log_file!))).toBe(true);
    const logs = await list(c.h);
    expect(logs.map((l) => l.name)).toEqual([`buildlog.sub_dir_x.${result.log_file!.split('/')[2]}`]);
  });

  it('picks .1 when log_T or log_T.xz exists, like the legacy O_EXCL loop, and leaves no placeholder', async () => {
    const c = fresh();
    fakeQrexecClient(c.h);
    const dir = join(c.h.incoming, VM);
    mkdirSync(dir, { recursive: true });
    const pad = (x: number): string => String(x).padStart(2, '0');
    const now = Date.now();
    // Every second the service could start in: log_T for even seconds, log_T.xz for odd ones.
    for (let s = -2; s < 120; s++) {
      const d = new Date(now + s * 1000);
      const t = `log_${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}_${pad(d.getUTCHours())}-${pad(d.getUTCMinutes())}-${pad(d.getUTCSeconds())}`;
      writeFileSync(join(dir, d.getUTCSeconds() % 2 === 0 ? t : `${t}.xz`), 'old\n');
    }
    const { result } = await builderLogs(c.h, c.dir, ['one']);
    expect(result.log_file).toMatch(/^build-vm\/log_[0-9_-]+\.1$/);
    const base = join(c.h.incoming, result.log_file!);
    expect(readFileSync(base, 'latin1')).toMatch(/build-vm: one\n/);
    expect(existsSync(`${base}.xz`)).toBe(false);
    expect((await list(c.h))[0]!.name).toBe(`buildlog.${result.log_file!.split('/')[1]}`);
  });

  it('two builds of one VM at once get two paths, each with its own lines', async () => {
    const c = fresh();
    fakeQrexecClient(c.h);
    const [a, b] = await Promise.all([builderLogs(c.h, c.dir, ['build A', 'A2']), builderLogs(c.h, c.dir, ['build B'])]);
    expect(a.result.log_file).not.toBe(b.result.log_file);
    expect(readFileSync(join(c.h.incoming, a.result.log_file!), 'latin1')).toMatch(/build-vm: build A\n.*build-vm: A2\n/s);
    expect(readFileSync(join(c.h.incoming, b.result.log_file!), 'latin1')).not.toContain('build A');
  });

  it.each([
    ['../../etc', 'build-vm/______etc/'],
    ['-h', 'build-vm/-h/'],
    ['été', 'build-vm/_t_/'],
    ['a b\u00e9', 'build-vm/a_b_/'],
  ])('a direct call with argument %j lands under %s, never outside its VM folder', async (arg, prefix) => {
    const c = fresh();
    const r = await callBuildLog(c.h, arg, 'x\n');
    expect(r.code, r.stderr).toBe(0);
    const path = r.stdout.toString('utf8');
    expect(path.startsWith(prefix)).toBe(true);
    expect(path.endsWith('\n')).toBe(true);
    expect(existsSync(join(c.h.incoming, path.trim()))).toBe(true);
    expect(readdirSync(c.h.incoming)).toEqual([VM]);
  });

  it('shortens a SUBDIR longer than 26 characters in the log name with its SHA-256', async () => {
    const c = fresh();
    const sub = 'component-with-a-rather-long-name_r4.3';
    const r = await callBuildLog(c.h, sub, 'x\n');
    expect(r.code, r.stderr).toBe(0);
    const legacySub = sub.replace(/[^A-Za-z0-9_-]/g, '_');
    expect(r.stdout.toString('utf8')).toMatch(new RegExp(`^build-vm/${legacySub}/log_`));
    const { createHash } = await import('node:crypto');
    const h12 = createHash('sha256').update(legacySub).digest('hex').slice(0, 12);
    expect((await list(c.h))[0]!.name).toMatch(new RegExp(`^buildlog\\.${legacySub.slice(0, 13)}-${h12}\\.log_`));
  });

  it('refuses a SUBDIR longer than a file name before storing anything (FILE_ERROR, no path)', async () => {
    const c = fresh();
    const r = await callBuildLog(c.h, 'a'.repeat(300), 'secret build output\n');
    expect(r.code).toBe(EXIT.FILE_ERROR);
    expect(r.stdout.length).toBe(0);
    expect(r.stderr).toMatch(/^qubesbuilder\.BuildLog: FILE_ERROR: /);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    const l = await logvm(['list', '--json'], { db: c.h.db });
    expect(l.code === EXIT.LOG_NOT_FOUND || JSON.parse(l.stdout.toString('utf8')).length === 0).toBe(true);
  });

  it('refuses a call without QREXEC_REMOTE_DOMAIN (VM_INVALID), prints nothing on stdout', async () => {
    const c = fresh();
    const r = await callBuildLog(c.h, '', 'x\n', {}, null);
    expect(r.code).toBe(EXIT.VM_INVALID);
    expect(r.stdout.length).toBe(0);
  });

  it('qubes.AppendLog cannot append to a BuildLog log, nor write VM/logvm-events', async () => {
    const c = fresh();
    const r = await callBuildLog(c.h, '', 'x\n');
    const name = (await list(c.h))[0]!.name;
    const a = await callService(VM, name, c.h.db, { input: 'injected\n' });
    // BuildLog names (buildlog.log_...) hold `_`, which a qrexec caller can
    // never create (FORMAT.md 1.4): refused as a name before any lookup.
    expect(a.code).toBe(EXIT.NAME_INVALID);
    expect(jsonLines(a.stdout)[0]).toMatchObject({ type: 'error', code: 'NAME_INVALID' });
    const e = await callService(VM, 'LogVM-Events', c.h.db, { input: 'fake event\n' });
    expect(e.code).toBe(EXIT.NAME_INVALID);
    expect(r.code).toBe(0);
    const shown = await logvm(['show', '--raw', `${VM}/${name}`], { db: c.h.db });
    expect(shown.stdout.toString()).toBe('x\n');
  });
});

describe('xz above 10 MiB, as the legacy service', () => {
  // Rendered size: 48 (starting) + 47 (closing) + 44 + length for each line.
  const TEN_MIB = 10 * 2 ** 20;
  const input = (extra: number): Buffer => {
    const full = 10043;
    const last = TEN_MIB - 95 - full * 1044 - 44 + extra;
    return Buffer.from(`${`${'y'.repeat(1000)}\n`.repeat(full)}${'z'.repeat(last)}\n`, 'latin1');
  };

  it('keeps a file of exactly 10 MiB as it is', async () => {
    const c = fresh();
    const r = await callBuildLog(c.h, '', input(0));
    expect(r.code, r.stderr).toBe(0);
    const path = r.stdout.toString('utf8').trim();
    expect(path).not.toMatch(/\.xz$/);
    const file = join(c.h.incoming, path);
    expect(readFileSync(file).length).toBe(TEN_MIB);
    expect(existsSync(`${file}.xz`)).toBe(false);
  });

  it('compresses one byte more with xz, prints the .xz path, and xz -dc gives the rendered log', async () => {
    const c = fresh();
    const r = await callBuildLog(c.h, '', input(1));
    expect(r.code, r.stderr).toBe(0);
    const path = r.stdout.toString('utf8').trim();
    expect(path).toMatch(/^build-vm\/log_[0-9_-]+\.xz$/);
    expect(path).toMatch(BUILDER_RE);
    const file = join(c.h.incoming, path);
    expect(existsSync(file.replace(/\.xz$/, ''))).toBe(false);
    const plain = await run('xz', ['-dc', file]);
    expect(plain.stdout.length).toBe(TEN_MIB + 1);
    const name = (await list(c.h))[0]!.name;
    const rendered = await logvm(['render', `${VM}/${name}`], { db: c.h.db });
    expect(rendered.stdout.equals(plain.stdout)).toBe(true);
  });
});

describe('post-log-hook FILE, as the legacy service runs it', () => {
  function hook(h: LogVmHome, status: number): string {
    mkdirSync(h.incoming, { recursive: true });
    const path = join(h.incoming, 'post-log-hook');
    const out = join(h.home, 'hook.out');
    writeFileSync(
      path,
      `#!/bin/sh\nf0=$(readlink /proc/$$/fd/0); f1=$(readlink /proc/$$/fd/1); f2=$(readlink /proc/$$/fd/2)\n{ echo "arg=$1"; echo "argc=$#"; echo "vm=$QREXEC_REMOTE_DOMAIN"; echo "fd0=$f0"; echo "fd1=$f1"; echo "fd2=$f2"; } > '${out}'\necho "to stdout"; echo "to stderr" >&2\nexit ${status}\n`,
      { mode: 0o755 },
    );
    return out;
  }

  it('runs it with the absolute file path, stdio on /dev/null, QREXEC_REMOTE_DOMAIN set; the chain records its exit status', async () => {
    const c = fresh();
    fakeQrexecClient(c.h);
    const out = hook(c.h, 0);
    const { result, run: r } = await builderLogs(c.h, c.dir, ['built']);
    expect(result.returncode).toBe(0);
    const seen = readFileSync(out, 'utf8');
    expect(seen).toContain(`arg=${join(c.h.incoming, result.log_file!)}\n`);
    expect(seen).toContain('argc=1\n');
    expect(seen).toContain(`vm=${VM}\n`);
    expect(seen).toMatch(/fd0=\/dev\/null\nfd1=\/dev\/null\nfd2=\/dev\/null\n/);
    expect(r.stdout.toString()).not.toContain('to stdout');
    const ev = await logvm(['show', `${VM}/logvm-events`], { db: c.h.db });
    expect(ev.code, ev.stderr).toBe(0);
    expect(ev.stdout.toString()).toMatch(/log VM notice .*hook/);
    expect(ev.stdout.toString()).toContain('exited 0');
  });

  it('a failing hook changes nothing for the builder: same path, log stored, failure chained and on stderr', async () => {
    const c = fresh();
    const out = hook(c.h, 3);
    const r = await callBuildLog(c.h, '', 'line\n');
    expect(r.code).toBe(EXIT.HOOK_FAILED);
    const path = r.stdout.toString('utf8');
    expect(path).toMatch(/^build-vm\/log_[0-9_-]+\n$/);
    expect(existsSync(out)).toBe(true);
    expect(r.stderr).toMatch(/^qubesbuilder\.BuildLog: HOOK_FAILED: post-log-hook failed for build-vm\/buildlog\.log_/);
    const ev = await logvm(['show', `${VM}/logvm-events`], { db: c.h.db });
    expect(ev.stdout.toString()).toContain('exited 3');
    expect(ev.stdout.toString()).toMatch(/hook post-log-hook for build-vm\/buildlog\.log_/);
  });
});

describe('sealOnClose and postSealHook', () => {
  it('seals at the end with the vault signer, exports the bundle, runs postSealHook BUNDLE VM/NAME; the bundle renders to the same file', async () => {
    const c = fresh();
    const seen = join(c.dir, 'post-seal.args');
    const postSeal = join(c.dir, 'post-seal');
    writeFileSync(postSeal, `#!/bin/sh\nprintf '%s\\n' "$@" > '${seen}'\n`, { mode: 0o755 });
    const env = {
      APPENDLOG_SEAL_ON_CLOSE: `split-gpg:${fpr}`,
      APPENDLOG_SPLIT_GPG: 'gpg',
      APPENDLOG_POST_SEAL_HOOK: postSeal,
      GNUPGHOME: gpg.home,
    };
    fakeQrexecClient(c.h, env);
    const { result } = await builderLogs(c.h, c.dir, ['make all', 'ok']);
    expect(result.log_file).toMatch(BUILDER_RE);
    const logs = await list(c.h);
    const log = logs.find((l) => l.name.startsWith('buildlog.'))!;
    expect(log.state).toBe('sealed');
    const bundle = join(c.h.home, '.local/share/appendlog/bundles', VM, log.name);
    expect(readFileSync(seen, 'utf8')).toBe(`${bundle}\n${VM}/${log.name}\n`);
    const v = await logvm(['verify-chain', bundle, '--key', pub]);
    expect(v.code, v.stderr).toBe(0);
    const rendered = await logvm(['render', bundle, '--format', 'buildlog', '--key', pub]);
    expect(rendered.code, rendered.stderr).toBe(0);
    expect(rendered.stdout.toString('latin1')).toBe(readFileSync(join(c.h.incoming, result.log_file!), 'latin1'));
  });

  it('a refusing signer changes nothing for the builder: same path, log open, SIGNER_REFUSED chained, post-log-hook still runs', async () => {
    const c = fresh();
    const signer = signerScript(c.dir, 'refusing-gpg', 'cat >/dev/null; echo "gpg: signing refused by the vault user" >&2; exit 1');
    mkdirSync(c.h.incoming, { recursive: true });
    writeFileSync(join(c.h.incoming, 'post-log-hook'), `#!/bin/sh\ntouch '${join(c.dir, 'hook-ran')}'\n`, { mode: 0o755 });
    const r = await callBuildLog(c.h, '', 'line\n', { APPENDLOG_SEAL_ON_CLOSE: 'split-gpg:0xDEADBEEF', APPENDLOG_SPLIT_GPG: signer.path });
    expect(r.code).toBe(EXIT.SIGNER_REFUSED);
    expect(r.stdout.toString('utf8')).toMatch(/^build-vm\/log_[0-9_-]+\n$/);
    expect(signer.calls()).toHaveLength(1);
    expect(existsSync(join(c.dir, 'hook-ran'))).toBe(true);
    const log = (await list(c.h)).find((l) => l.name.startsWith('buildlog.'))!;
    expect(log.state).toBe('open');
    const ev = await logvm(['show', `${VM}/logvm-events`], { db: c.h.db });
    expect(ev.stdout.toString()).toContain('seal-failed');
    expect(ev.stdout.toString()).toContain('SIGNER_REFUSED');
    expect(r.stderr).toMatch(/SIGNER_REFUSED: seal failed for build-vm\/buildlog\.log_/);
  });

  it('an unclean session (SIGTERM) is left open and flagged, gets no path and no file', async () => {
    const c = fresh();
    const { spawn } = await import('node:child_process');
    const { RPC_BUILDLOG } = await import('./util.js');
    const { baseEnv, collect, LOGVM } = await import('../helpers.js');
    const child = spawn(RPC_BUILDLOG, [], {
      env: baseEnv({ HOME: c.h.home, QREXEC_REMOTE_DOMAIN: VM, QREXEC_SERVICE_ARGUMENT: '', APPENDLOG_LOGVM: LOGVM, APPENDLOG_SEAL_ON_CLOSE: `gpg:${fpr}`, GNUPGHOME: gpg.home }),
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const { PassThrough } = await import('node:stream');
    const input = new PassThrough();
    const done = collect(child, { input });
    input.write('first line\n');
    // Wait for the line to be committed, then stop the service as a VM shutdown would.
    const { waitFor } = await import('../e2e-util.js');
    await waitFor(async () => (await list(c.h).catch(() => [])).some((l) => l.lines === 1), 'the first line committed');
    child.kill('SIGTERM');
    const r = await done;
    expect(r.code).toBe(EXIT.TERMINATED);
    expect(r.stdout.length).toBe(0);
    const log = (await list(c.h))[0]!;
    expect(log.state).toBe('open');
    expect(log.flag).toMatch(/^not sealed: .*signal/);
    expect(readdirSync(join(c.h.incoming, VM))).toEqual([]);
    const human = await logvm(['list'], { db: c.h.db });
    expect(human.stdout.toString()).toMatch(/^! build-vm\/buildlog\.log_.*not sealed/m);
  });

  it('never holds the write lock while the signer thinks: another VM appends and BEGIN IMMEDIATE succeeds meanwhile', async () => {
    const c = fresh();
    const gate = join(c.dir, 'gate');
    const signer = signerScript(c.dir, 'slow-gpg', `i=0; while [ ! -e '${gate}' ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; exec gpg "$@"`);
    const { spawn } = await import('node:child_process');
    const { RPC_BUILDLOG } = await import('./util.js');
    const { baseEnv, collect, LOGVM } = await import('../helpers.js');
    const child = spawn(RPC_BUILDLOG, [], {
      env: baseEnv({ HOME: c.h.home, QREXEC_REMOTE_DOMAIN: VM, QREXEC_SERVICE_ARGUMENT: '', APPENDLOG_LOGVM: LOGVM, APPENDLOG_SEAL_ON_CLOSE: `split-gpg:${fpr}`, APPENDLOG_SPLIT_GPG: signer.path, GNUPGHOME: gpg.home }),
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const done = collect(child, { input: 'to be sealed\n' });
    const { waitFor } = await import('../e2e-util.js');
    await waitFor(async () => signer.calls().length > 0, 'the signer to be called');
    // The signer is waiting for its user: the store must be free.
    const other = await callService('other-vm', 'meanwhile', c.h.db, { input: 'other VM line\n' });
    expect(other.code, other.stderr).toBe(0);
    const lock = await run('/usr/bin/sqlite3', [c.h.db, 'BEGIN IMMEDIATE; COMMIT;']);
    expect(lock.code, lock.stderr).toBe(0);
    expect((await list(c.h)).find((l) => l.name.startsWith('buildlog.'))!.state).toBe('open');
    writeFileSync(gate, '');
    const r = await done;
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.toString('utf8')).toMatch(/^build-vm\/log_/);
    expect((await list(c.h)).find((l) => l.name.startsWith('buildlog.'))!.state).toBe('sealed');
  });
});

describe('settings', () => {
  it('reads sealOnClose and postSealHook from ~/.config/appendlog/logvm.json', async () => {
    const c = fresh();
    const seen = join(c.dir, 'hook.args');
    const postSeal = join(c.dir, 'post-seal');
    writeFileSync(postSeal, `#!/bin/sh\necho "$2" > '${seen}'\n`, { mode: 0o755 });
    mkdirSync(join(c.h.home, '.config/appendlog'), { recursive: true });
    writeFileSync(join(c.h.home, '.config/appendlog/logvm.json'), JSON.stringify({ sealOnClose: `gpg:${fpr}`, postSealHook: postSeal }));
    const r = await callBuildLog(c.h, '', 'from the config\n', { GNUPGHOME: gpg.home });
    expect(r.code, r.stderr).toBe(0);
    const log = (await list(c.h)).find((l) => l.name.startsWith('buildlog.'))!;
    expect(log.state).toBe('sealed');
    expect(readFileSync(seen, 'utf8')).toBe(`${VM}/${log.name}\n`);
  });

  it.each([
    [{ postSealHook: 'bin/hook' }, 'must be an absolute path'],
    [{ sealOnClose: 42 }, 'must be a string'],
    [{ sealOnClose: 'gpg', sealOnCloze: 'x' }, 'unknown setting'],
  ])('refuses the config %j before storing anything (USAGE, nothing on stdout)', async (config, message) => {
    const c = fresh();
    mkdirSync(join(c.h.home, '.config/appendlog'), { recursive: true });
    writeFileSync(join(c.h.home, '.config/appendlog/logvm.json'), JSON.stringify(config));
    const r = await callBuildLog(c.h, '', 'x\n');
    expect(r.code).toBe(EXIT.USAGE);
    expect(r.stdout.length).toBe(0);
    expect(r.stderr).toContain(message);
    expect(existsSync(c.h.db)).toBe(false);
  });
});

describe('sealOnClose for qubes.AppendLog', () => {
  it('seals a log when its session ends cleanly; the sender still gets its receipt and exit 0', async () => {
    const c = fresh();
    const r = await callService(VM, 'release-1', c.h.db, { input: 'built\n', env: { HOME: c.h.home, APPENDLOG_SEAL_ON_CLOSE: `gpg:${fpr}`, GNUPGHOME: gpg.home } });
    expect(r.code, r.stderr).toBe(0);
    expect(jsonLines(r.stdout)).toEqual([expect.objectContaining({ type: 'receipt', log: `${VM}/release-1`, final: true })]);
    expect((await list(c.h)).find((l) => l.name === 'release-1')!.state).toBe('sealed');
    const bundle = join(c.h.home, '.local/share/appendlog/bundles', VM, 'release-1');
    const v = await logvm(['verify-chain', bundle, '--key', pub]);
    expect(v.code, v.stderr).toBe(0);
  });

  it('an unclean session (SIGTERM) leaves the log open and flagged, with a chained seal-skipped event', async () => {
    const c = fresh();
    const { spawn } = await import('node:child_process');
    const { PassThrough } = await import('node:stream');
    const { baseEnv, collect, qrexecEnv, RPC_SERVICE } = await import('../helpers.js');
    const child = spawn(RPC_SERVICE, [], { env: baseEnv({ ...qrexecEnv(VM, 'cut-1', c.h.db), HOME: c.h.home, APPENDLOG_SEAL_ON_CLOSE: `gpg:${fpr}`, GNUPGHOME: gpg.home }), stdio: ['pipe', 'pipe', 'pipe'] });
    const input = new PassThrough();
    const done = collect(child, { input });
    input.write('half a build\n');
    const { waitFor } = await import('../e2e-util.js');
    await waitFor(async () => (await list(c.h).catch(() => [])).some((l) => l.name === 'cut-1' && l.lines === 1), 'the line committed');
    child.kill('SIGTERM');
    const r = await done;
    expect(r.code).toBe(EXIT.TERMINATED);
    const log = (await list(c.h)).find((l) => l.name === 'cut-1')!;
    expect(log.state).toBe('open');
    expect(log.flag).toMatch(/^not sealed: session closed with reason signal/);
    const ev = await logvm(['show', `${VM}/logvm-events`], { db: c.h.db });
    expect(ev.stdout.toString()).toMatch(/seal-skipped for build-vm\/cut-1: session closed with reason signal/);
  });

  it('a refusing signer leaves the log open, chained, and the session still exits 0 for logsend', async () => {
    const c = fresh();
    const signer = signerScript(c.dir, 'no-gpg', 'cat >/dev/null; echo "denied" >&2; exit 126');
    const r = await callService(VM, 'release-2', c.h.db, { input: 'built\n', env: { HOME: c.h.home, APPENDLOG_SEAL_ON_CLOSE: 'split-gpg', APPENDLOG_SPLIT_GPG: signer.path } });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/^logvm append: SIGNER_REFUSED: seal failed for build-vm\/release-2/);
    expect((await list(c.h)).find((l) => l.name === 'release-2')!.state).toBe('open');
  });
});

describe('logvm seal with postSealHook', () => {
  it('exports the bundle to bundleDir/VM/NAME first, runs the hook with it, and chains its exit status', async () => {
    const c = fresh();
    const r0 = await callService(VM, 'manual-1', c.h.db, { input: 'x\n' });
    expect(r0.code, r0.stderr).toBe(0);
    const seen = join(c.dir, 'args');
    const postSeal = join(c.dir, 'hook');
    writeFileSync(postSeal, `#!/bin/sh\nprintf '%s\\n' "$@" > '${seen}'\ntest -f "$1/manifest.json"\n`, { mode: 0o755 });
    const bundles = join(c.dir, 'bundles');
    const r = await logvm(['seal', `${VM}/manual-1`, '--signer', `gpg:${fpr}`], {
      db: c.h.db,
      env: { ...gpg.env, APPENDLOG_POST_SEAL_HOOK: postSeal, APPENDLOG_BUNDLE_DIR: bundles, HOME: c.h.home },
    });
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(seen, 'utf8')).toBe(`${join(bundles, VM, 'manual-1')}\n${VM}/manual-1\n`);
    const ev = await logvm(['show', `${VM}/logvm-events`], { db: c.h.db });
    expect(ev.stdout.toString()).toContain('post-seal-hook');
    expect(ev.stdout.toString()).toContain('exited 0');
  });
});
