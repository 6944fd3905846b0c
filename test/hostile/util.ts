/**
 * Helpers for the standing hostile suite (test/hostile). The build VM is
 * assumed compromised: every case throws something at the real
 * rpc/qubes.AppendLog (run as qrexec runs it) or at `logvm verify-chain`, and
 * checks the same invariant:
 *
 *   - the process neither crashes (no stack trace, an exit status from the
 *     documented table, never killed by a signal we did not send) nor hangs
 *     (every spawn here has a timeout and kills its whole process group);
 *   - its memory stays bounded (peak RSS via `/usr/bin/time -f %M`);
 *   - every received byte is stored exactly, or a chained log-VM event says
 *     why not;
 *   - every chain still verifies;
 *   - the sender gets a clear error: one JSON error line with a code on
 *     stdout, and the message on stderr.
 *
 * Exit codes and entry kinds are written out from README / docs/FORMAT.md on
 * purpose instead of imported from src, so a change of a documented value
 * shows up as a failing test.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, readlinkSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import Database from 'better-sqlite3';
import { expect } from 'vitest';
import { LOGVM, RPC_SERVICE, baseEnv, jsonLines, qrexecEnv, type RunResult } from '../helpers.js';

export { LOGVM, RPC_SERVICE, ROOT, jsonLines, tempDir, type RunResult } from '../helpers.js';

export const TIME = '/usr/bin/time';
export const SQLITE3 = '/usr/bin/sqlite3';

export { EXIT, type Code } from '../exit-codes.js';
import { EXIT, type Code } from '../exit-codes.js';

/** Every exit status a log VM process may end with; 1 (INTERNAL) is a bug, so it is not here. */
export const DOCUMENTED_EXITS = new Set<number>(Object.values(EXIT).filter((c) => c !== EXIT.INTERNAL));

/** docs/FORMAT.md section 3.2 / 3.3, written out. */
export const KIND = { LINE: 0x01, STDOUT: 0x02, STDERR: 0x03, SESSION_OPEN: 0x10, SESSION_CLOSE: 0x11, NOTICE: 0x12, SEAL: 0x20, CLAIM: 0x30 } as const;
export const FLAG = { CONT: 0x01, NOEOL: 0x02 } as const;
export const HEADER_SIZE = 26;

/** A stack trace line: a coded error never prints one. */
export const STACK_TRACE = /(^|\n)[ \t]+at \S/;

// ---------------------------------------------------------------------------
// Processes

export interface Run extends RunResult {
  elapsedMs: number;
  /** True if the timeout fired and the process group was killed. */
  timedOut: boolean;
  /** Peak RSS in KiB, when measured with /usr/bin/time. */
  peakRssKiB?: number;
  /** With discardStdout: how many bytes went by. */
  stdoutBytes?: number;
}

export interface Started {
  child: ChildProcess;
  /** The pid of the spawned program (the service's node process: rpc/qubes.AppendLog execs it). */
  pid: number;
  done: Promise<Run>;
}

export interface StartOptions {
  env?: Record<string, string | undefined>;
  input?: Buffer | string | Readable;
  /** 'keep': the caller writes to child.stdin and ends it. */
  stdin?: 'keep';
  /** A socket (or other stream with a file descriptor) to use as the child's stdin. */
  stdinFrom?: import('node:net').Socket;
  timeoutMs?: number;
  /** Wrap the program in /usr/bin/time -o FILE -f %M. */
  rssFile?: string;
  /** Do not collect stdout (a stream of gigabytes); only its length is kept. */
  discardStdout?: boolean;
}

/**
 * Spawns `cmd` in its own process group with a hard timeout: on timeout the
 * whole group (a shell pipeline included) is killed, so nothing outlives a
 * test. Only processes started here are ever signalled.
 */
export function start(cmd: string, args: string[], opts: StartOptions = {}): Started {
  const [file, argv] = opts.rssFile !== undefined ? [TIME, ['-o', opts.rssFile, '-f', '%M', cmd, ...args]] : [cmd, args];
  const started = Date.now();
  const child = spawn(file, argv, { env: baseEnv(opts.env), stdio: [opts.stdinFrom ?? 'pipe', 'pipe', 'pipe'], detached: true });
  const done = new Promise<Run>((resolve, reject) => {
    const out: Buffer[] = [];
    let outBytes = 0;
    const err: Buffer[] = [];
    let timedOut = false;
    child.stdout!.on('data', (d: Buffer) => {
      outBytes += d.length;
      if (!opts.discardStdout) out.push(d);
    });
    child.stderr!.on('data', (d: Buffer) => err.push(d));
    child.stdin?.on('error', () => undefined); // the child may refuse and close early
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child, 'SIGKILL');
    }, opts.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      let peakRssKiB: number | undefined;
      if (opts.rssFile !== undefined) {
        try {
          // GNU time may write "Command exited with non-zero status N" before the figure.
          const last = readFileSync(opts.rssFile, 'utf8').trim().split('\n').pop() ?? '';
          peakRssKiB = /^\d+$/.test(last) ? Number(last) : undefined;
        } catch {
          peakRssKiB = undefined;
        }
        rmSync(opts.rssFile, { force: true });
      }
      resolve({
        code,
        signal,
        stdout: opts.discardStdout ? Buffer.alloc(0) : Buffer.concat(out),
        stderr: Buffer.concat(err).toString('utf8'),
        elapsedMs: Date.now() - started,
        timedOut,
        ...(peakRssKiB !== undefined ? { peakRssKiB } : {}),
        ...(opts.discardStdout ? { stdoutBytes: outBytes } : {}),
      });
    });
  });
  if (opts.stdin !== 'keep' && opts.stdinFrom === undefined) {
    const input = opts.input;
    if (input === undefined) child.stdin!.end();
    else if (typeof input === 'string' || Buffer.isBuffer(input)) child.stdin!.end(input);
    else input.pipe(child.stdin!);
  }
  return { child, pid: child.pid!, done };
}

export function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    if (child.pid !== undefined) process.kill(-child.pid, signal);
  } catch {
    // already gone
  }
}

/** Environment of the service as qrexec sets it, plus a config dir of its own (no user config leaks in). */
export function serviceEnv(vm: string | undefined, argument: string | undefined, db: string, extra: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  return { ...qrexecEnv(vm, argument, db), XDG_CONFIG_HOME: join(db, '..', '.no-config'), ...extra };
}

export interface ServiceOptions extends Omit<StartOptions, 'env'> {
  env?: Record<string, string | undefined>;
  /** Extra argv for the service file (qrexec passes none that matter; it must ignore them). */
  argv?: string[];
  /** Measure peak RSS with /usr/bin/time. */
  measure?: boolean;
}

let rssFiles = 0;

/** Starts rpc/qubes.AppendLog exactly as qrexec would. */
export function startService(vm: string | undefined, argument: string | undefined, db: string, opts: ServiceOptions = {}): Started {
  const rssFile = opts.measure ? join(tmpdir(), `appendlog-hostile-rss-${process.pid}-${++rssFiles}`) : undefined;
  return start(RPC_SERVICE, opts.argv ?? [], { ...opts, env: serviceEnv(vm, argument, db, opts.env), ...(rssFile ? { rssFile } : {}) });
}

/** Runs rpc/qubes.AppendLog to the end (default timeout 60 s). */
export function service(vm: string | undefined, argument: string | undefined, db: string, opts: ServiceOptions = {}): Promise<Run> {
  return startService(vm, argument, db, opts).done;
}

/** `logvm ARGS...` against the store `db`, with a timeout. */
export function logvm(args: string[], opts: StartOptions & { db?: string } = {}): Promise<Run> {
  return start(process.execPath, [LOGVM, ...args], { ...opts, env: { ...(opts.db ? { APPENDLOG_DB: opts.db } : {}), ...opts.env } }).done;
}

/** `sh -c SCRIPT` in its own process group, with a timeout. */
export function sh(script: string, opts: StartOptions = {}): Promise<Run> {
  return start('/bin/sh', ['-c', script], opts).done;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Polls until `ready()` returns a value other than undefined/false, then
 * returns it. For waiting on something the test can observe (a committed
 * entry, an open file) instead of a fixed sleep: on a loaded machine the
 * service may take seconds to start, and a fault sent before it is ready
 * tests nothing. `s`, if given, ends the wait early if that process exits.
 */
export async function waitUntil<T>(what: string, ready: () => T | undefined | false, opts: { timeoutMs?: number; s?: Started } = {}): Promise<T> {
  const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
  let exited = false;
  void opts.s?.done.then(() => (exited = true), () => (exited = true));
  for (;;) {
    const v = ready();
    if (v !== undefined && v !== false) return v;
    if (exited) throw new Error(`gave up waiting for ${what}: the process exited first`);
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what} after ${opts.timeoutMs ?? 60_000} ms`);
    await sleep(20);
  }
}

/** The log's committed entries, or [] while the store or the log does not exist yet. */
export function committed(db: string, vm: string, name: string): StoredEntry[] {
  if (!existsSync(db)) return [];
  try {
    return entries(db, vm, name);
  } catch (e) {
    // The first session may not have created the tables yet.
    if (/no such table|SQLITE_BUSY|database is locked/i.test(String((e as Error).message))) return [];
    throw e;
  }
}

/** Waits until the log has at least `n` committed LINE entries (the service is up and reading). */
export function waitForLines(db: string, vm: string, name: string, n: number, s?: Started): Promise<StoredEntry[]> {
  return waitUntil(`${n} committed line(s) in ${vm}/${name}`, () => {
    const lines = committed(db, vm, name).filter((e) => e.kind === KIND.LINE);
    return lines.length >= n && lines;
  }, s ? { s } : {});
}

/** Waits until process `pid` has `path` open (it has got as far as opening the store). */
export function waitForOpenFile(pid: number, path: string, s?: Started): Promise<true> {
  const real = realpathSync(path);
  return waitUntil(`pid ${pid} to open ${path}`, () => {
    try {
      return readdirSync(`/proc/${pid}/fd`).some((fd) => {
        try {
          return readlinkSync(`/proc/${pid}/fd/${fd}`) === real;
        } catch {
          return false;
        }
      });
    } catch {
      return false;
    }
  }, s ? { s } : {});
}

// ---------------------------------------------------------------------------
// The invariant, as assertions

/** Not crashed: exited (no signal), with a documented status, and no stack trace anywhere. */
export function expectNoCrash(r: Run, what = 'process'): void {
  expect(r.timedOut, `${what} hung and was killed by the test's timeout`).toBe(false);
  expect(r.signal, `${what} died of a signal (stderr: ${r.stderr.slice(0, 500)})`).toBeNull();
  expect(DOCUMENTED_EXITS.has(r.code ?? -1), `${what} exited ${r.code}, not a documented status (stderr: ${r.stderr.slice(0, 500)})`).toBe(true);
  expect(r.stderr, `${what} printed a stack trace`).not.toMatch(STACK_TRACE);
  expect(r.stdout.toString('utf8'), `${what} printed a stack trace on stdout`).not.toMatch(STACK_TRACE);
}

import type { Receipt } from '../e2e-util.js';
export type { Receipt } from '../e2e-util.js';

/** A successful session: exit 0, nothing on stderr, exactly one receipt line. */
export function expectReceipt(r: Run): Receipt {
  expectNoCrash(r, 'the service');
  expect(r.code, `exit status (stderr: ${r.stderr})`).toBe(0);
  expect(r.stderr).toBe('');
  const lines = jsonLines(r.stdout);
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatchObject({ type: 'receipt' });
  return lines[0] as unknown as Receipt;
}

/** A successful framed session: exit 0, periodic receipts allowed, the last one final. */
export function expectFinalReceipt(r: Run): Receipt {
  expectNoCrash(r, 'the service');
  expect(r.code, `exit status (stderr: ${r.stderr})`).toBe(0);
  expect(r.stderr).toBe('');
  const lines = jsonLines(r.stdout);
  expect(lines.length).toBeGreaterThanOrEqual(1);
  expect(lines.every((l) => l.type === 'receipt')).toBe(true);
  expect(lines[lines.length - 1]).toMatchObject({ type: 'receipt', final: true });
  return lines[lines.length - 1] as unknown as Receipt;
}

/**
 * A refused or failed session: the documented exit status, the code on
 * stderr, and as the last stdout line a JSON error with that code and a
 * message. Every stdout line is JSON (nothing else reaches the caller).
 */
export function expectServiceError(r: Run, code: Code): { message: string; lines: Array<Record<string, unknown>> } {
  expectNoCrash(r, 'the service');
  expect(r.code, `exit status (stderr: ${r.stderr})`).toBe(EXIT[code]);
  expect(r.stderr).toContain(code);
  let lines: Array<Record<string, unknown>> = [];
  expect(() => (lines = jsonLines(r.stdout)), `stdout is JSON lines: ${r.stdout.toString('utf8').slice(0, 300)}`).not.toThrow();
  const last = lines[lines.length - 1];
  expect(last, 'the last stdout line is the error').toMatchObject({ type: 'error', code, message: expect.any(String) });
  expect((last!.message as string).length).toBeGreaterThan(0);
  return { message: last!.message as string, lines };
}

export interface VerifyJson {
  ok: boolean;
  code?: string;
  exitCode?: number;
  seq?: number | null;
  entries?: number;
  lines?: number;
  bytes?: number;
  sessions?: number;
  closes?: Record<string, number>;
  head?: string;
  state?: 'open' | 'sealed';
  message?: string;
}

export async function verifyJson(db: string, ref: string, timeoutMs = 120_000): Promise<{ result: VerifyJson; run: Run }> {
  const r = await logvm(['verify-chain', '--json', '--db', db, '--store', ref], { timeoutMs });
  expectNoCrash(r, `verify-chain ${ref}`);
  let result: VerifyJson = { ok: false };
  expect(() => (result = JSON.parse(r.stdout.toString('utf8')) as VerifyJson), `verify-chain --json output: ${r.stdout.toString('utf8')} ${r.stderr}`).not.toThrow();
  return { result, run: r };
}

/** The chain verifies (exit 0, ok). */
export async function expectVerified(db: string, ref: string, timeoutMs?: number): Promise<VerifyJson> {
  const { result, run } = await verifyJson(db, ref, timeoutMs);
  expect(run.code, `verify-chain ${ref}: ${result.code} ${result.message}`).toBe(0);
  expect(result.ok).toBe(true);
  return result;
}

import type { ListedLog } from '../e2e-util.js';
export type { ListedLog } from '../e2e-util.js';

export async function listLogs(db: string): Promise<ListedLog[]> {
  const r = await logvm(['list', '--json'], { db });
  expectNoCrash(r, 'logvm list');
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout.toString('utf8')) as ListedLog[];
}

/** Every log in the store verifies; returns them. */
export async function expectAllVerified(db: string): Promise<ListedLog[]> {
  const logs = await listLogs(db);
  for (const l of logs) {
    const v = await expectVerified(db, `${l.vm}/${l.name}`);
    expect(v).toMatchObject({ entries: l.entries, head: l.head });
  }
  return logs;
}

export async function showRaw(db: string, ref: string): Promise<Buffer> {
  const r = await logvm(['show', '--raw', ref], { db, timeoutMs: 120_000 });
  expectNoCrash(r, 'show --raw');
  expect(r.code, r.stderr).toBe(0);
  return r.stdout;
}

export async function showText(db: string, ref: string): Promise<string> {
  const r = await logvm(['show', ref], { db, timeoutMs: 120_000 });
  expectNoCrash(r, 'show');
  expect(r.code, r.stderr).toBe(0);
  return r.stdout.toString('utf8');
}

// ---------------------------------------------------------------------------
// Reading the store (read-only), entry by entry, one block row at a time

export interface StoredEntry {
  seq: number;
  time: number;
  session: number;
  kind: number;
  flags: number;
  length: number;
  /** Only when asked for (payloads of a 1 GiB log are not kept). */
  payload?: Buffer;
}

/**
 * Walks a log's entries in seq order, one block row in memory at a time.
 * `withPayload(e)` says whether to keep a copy of that entry's payload.
 */
export function forEachEntry(db: string, vm: string, name: string, visit: (e: StoredEntry) => void, withPayload: (e: StoredEntry) => boolean = () => true): void {
  const conn = new Database(db, { readonly: true, fileMustExist: true });
  try {
    const rows = conn
      .prepare('SELECT b.data FROM blocks b JOIN logs l ON l.id = b.log_id WHERE l.vm = ? AND l.name = ? ORDER BY b.first_seq')
      .iterate(vm, name) as Iterable<{ data: Buffer }>;
    for (const { data } of rows) {
      let off = 0;
      while (off < data.length) {
        const length = data.readUInt32BE(off + 22);
        const e: StoredEntry = {
          seq: Number(data.readBigUInt64BE(off)),
          time: Number(data.readBigUInt64BE(off + 8)),
          session: data.readUInt32BE(off + 16),
          kind: data[off + 20]!,
          flags: data[off + 21]!,
          length,
        };
        if (withPayload(e)) e.payload = Buffer.from(data.subarray(off + HEADER_SIZE, off + HEADER_SIZE + length));
        visit(e);
        off += HEADER_SIZE + length;
      }
    }
  } finally {
    conn.close();
  }
}

export function entries(db: string, vm: string, name: string): StoredEntry[] {
  const out: StoredEntry[] = [];
  forEachEntry(db, vm, name, (e) => out.push(e));
  return out;
}

/** The log VM's events (open, close, notice, seal) with their JSON payloads parsed. */
export function events(db: string, vm: string, name: string): Array<StoredEntry & { json: Record<string, unknown> }> {
  return entries(db, vm, name)
    .filter((e) => e.kind === KIND.SESSION_OPEN || e.kind === KIND.SESSION_CLOSE || e.kind === KIND.NOTICE || e.kind === KIND.SEAL)
    .map((e) => ({ ...e, json: JSON.parse(e.payload!.toString('utf8')) as Record<string, unknown> }));
}

/** Reconstruction per docs/FORMAT.md 3.4: payload, then LF unless CONT or NOEOL. */
export function reconstruct(list: StoredEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of list) {
    if (e.kind !== KIND.LINE && e.kind !== KIND.STDOUT && e.kind !== KIND.STDERR) continue;
    parts.push(e.payload!);
    if (e.flags === 0) parts.push(Buffer.from('\n'));
  }
  return Buffer.concat(parts);
}

/** Runs `sqlite3 db SQL` (real CLI). */
export function sqlite(db: string, sqlText: string): Promise<Run> {
  return start(SQLITE3, [db, sqlText]).done;
}

/** Lines `TAG NNNNNNN padding` numbered 0..n-1, each ending in \n. */
export function numbered(tag: string, n: number, from = 0): Buffer {
  const parts: string[] = [];
  for (let i = from; i < from + n; i++) parts.push(`${tag} ${String(i).padStart(7, '0')} cc -O2 -c src/file.c -o obj/file.o\n`);
  return Buffer.from(parts.join(''), 'latin1');
}

export function mkdirp(dir: string): string {
  mkdirSync(dir, { recursive: true });
  return dir;
}

export function rmrf(path: string): void {
  rmSync(path, { recursive: true, force: true });
}

/** Peak RSS figures collected by the suite, printed so they can be quoted. */
export function report(what: string, value: string): void {
  console.log(`[hostile] ${what}: ${value}`);
}

// ---------------------------------------------------------------------------
// Keys (openpgp.js, generated per test file) and sealing

export interface KeyPair {
  priv: string;
  pub: string;
  fingerprint: string;
}

/** An ed25519 signing key made with openpgp.js, written as armored files into `dir`. */
export async function makeKey(dir: string, name = 'Release'): Promise<KeyPair> {
  const openpgp = await import('openpgp');
  const { privateKey, publicKey } = await openpgp.generateKey({
    type: 'ecc',
    curve: 'ed25519Legacy',
    userIDs: [{ name, email: `${name.toLowerCase()}@example.org` }],
    format: 'armored',
  });
  const priv = join(dir, `${name}.priv.asc`);
  const pub = join(dir, `${name}.pub.asc`);
  writeFileSync(priv, privateKey, { mode: 0o600 });
  writeFileSync(pub, publicKey);
  const key = await openpgp.readKey({ armoredKey: publicKey });
  return { priv, pub, fingerprint: key.getFingerprint().toUpperCase() };
}

/** `logvm seal REF --signer key-file:PRIV`. */
export function seal(db: string, ref: string, key: KeyPair, timeoutMs = 60_000): Promise<Run> {
  return logvm(['seal', ref, '--signer', `key-file:${key.priv}`], { db, timeoutMs });
}

export async function sealAndExport(db: string, ref: string, key: KeyPair, out: string): Promise<void> {
  const s = await seal(db, ref, key);
  expectNoCrash(s, 'seal');
  expect(s.code, s.stderr).toBe(0);
  const e = await logvm(['export', ref, '--out', out, '--bundle-version', '1'], { db });
  expectNoCrash(e, 'export');
  expect(e.code, e.stderr).toBe(0);
}
