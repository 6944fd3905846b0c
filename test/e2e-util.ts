/**
 * Helpers for the end-to-end specifications in test/foundation. Everything
 * that inspects a store goes through the built `logvm` binary or the real
 * `sqlite3` CLI; better-sqlite3 is only used read-only, to locate bytes inside
 * a block before a test tampers with them through the CLI.
 *
 * The format facts used here (26-byte header, entry hash prefix) are written
 * out from docs/FORMAT.md on purpose instead of imported from the project, so
 * a change of the format in src shows up as a failing test.
 */
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import Database from 'better-sqlite3';
import { expect } from 'vitest';
import { ROOT, jsonLines, logvm, run, type RunResult } from './helpers.js';

export const SQLITE3 = '/usr/bin/sqlite3';

/** docs/FORMAT.md section 3: seq u64, time u64, session u32, kind u8, flags u8, length u32. */
export const HEADER_SIZE = 26;
export const HASH_SIZE = 32;
/** docs/FORMAT.md section 4: Hn = SHA-256("appendlog/v1/entry\0" || Hn-1 || encoding). */
export const ENTRY_PREFIX = Buffer.from('appendlog/v1/entry\0', 'latin1');

export const KIND = { LINE: 0x01, SESSION_OPEN: 0x10, SESSION_CLOSE: 0x11 } as const;
export const FLAG = { CONT: 0x01, NOEOL: 0x02 } as const;

export { EXIT, type Code } from './exit-codes.js';

export interface Receipt {
  type: 'receipt';
  log: string;
  session: number;
  entries: number;
  head: string;
  lines: number;
  bytes: number;
  final?: boolean;
}

/** One record of a bundle's entries.jsonl, as written by `logvm export`. */
export interface Rec {
  seq: number;
  time: number;
  session: number;
  kind: string;
  flags: number;
  text?: string;
  base64?: string;
  hash: string;
}

export interface ListedLog {
  vm: string;
  name: string;
  state: 'open' | 'sealed';
  entries: number;
  lines: number;
  bytes: number;
  sessions: number;
  head: string;
}

export interface VerifyJson {
  ok: boolean;
  code?: string;
  seq?: number | null;
  entries?: number;
  head?: string;
  lines?: number;
  sessions?: number;
  message?: string;
}

/** The single receipt line a successful session prints; fails the test otherwise. */
export function receiptOf(r: RunResult): Receipt {
  expect(r.stderr, 'stderr of a successful session').toBe('');
  expect(r.code, `exit status (stderr: ${r.stderr})`).toBe(0);
  const lines = jsonLines(r.stdout);
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatchObject({ type: 'receipt' });
  // Raw mode sends one receipt, at the end of the session.
  expect(lines[0]!.final ?? true).toBe(true);
  return lines[0] as unknown as Receipt;
}

export async function listLogs(db: string): Promise<ListedLog[]> {
  const r = await logvm(['list', '--json'], { db });
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout.toString('utf8')) as ListedLog[];
}

export async function findLog(db: string, ref: string): Promise<ListedLog | undefined> {
  return (await listLogs(db)).find((l) => `${l.vm}/${l.name}` === ref);
}

export async function showRaw(db: string, ref: string): Promise<Buffer> {
  const r = await logvm(['show', '--raw', ref], { db });
  expect(r.code, r.stderr).toBe(0);
  return r.stdout;
}

export async function verifyJson(db: string, ref: string): Promise<{ result: VerifyJson; code: number | null }> {
  const r = await logvm(['verify-chain', '--json', '--store', ref], { db });
  return { result: JSON.parse(r.stdout.toString('utf8')) as VerifyJson, code: r.code };
}

/** Runs one statement (or several, `;`-separated) with the real sqlite3 CLI. */
export function sqlite(db: string, sql: string): Promise<RunResult> {
  return run(SQLITE3, ['-bail', db, sql]);
}

/** Like `sqlite` but the statement must succeed. */
export async function sqliteOk(db: string, sql: string): Promise<string> {
  const r = await sqlite(db, sql);
  expect(r.code, `sqlite3 ${sql}: ${r.stderr}`).toBe(0);
  return r.stdout.toString('utf8');
}

/** Every trigger of the store (they make it append-only), for an attacker to drop. */
export const TRIGGERS = [
  'logs_no_update',
  'logs_no_delete',
  'blocks_no_update',
  'blocks_no_delete',
  'heads_no_delete',
  'heads_forward_only',
  'seals_no_update',
  'seals_no_delete',
  'signatures_no_update',
  'signatures_no_delete',
];

export function dropTriggersSql(): string {
  return TRIGGERS.map((t) => `DROP TRIGGER IF EXISTS ${t};`).join(' ');
}

export interface BlockInfo {
  id: number;
  log_id: number;
  first_seq: number;
  count: number;
  data: Buffer;
  hashes: Buffer;
}

/** Reads a log's block rows (read-only), in seq order. */
export function readBlocks(db: string, vm: string, name: string): BlockInfo[] {
  const conn = new Database(db, { readonly: true, fileMustExist: true });
  try {
    return conn
      .prepare(
        `SELECT b.id, b.log_id, b.first_seq, b.count, b.data, b.hashes
           FROM blocks b JOIN logs l ON l.id = b.log_id
          WHERE l.vm = ? AND l.name = ? ORDER BY b.first_seq`,
      )
      .all(vm, name) as BlockInfo[];
  } finally {
    conn.close();
  }
}

/**
 * Sessions opened so far in the whole store (0 while it does not exist yet):
 * a read-only peek, cheap enough to poll while writers are starting.
 */
export function openSessions(db: string): number {
  if (!existsSync(db)) return 0;
  try {
    const conn = new Database(db, { readonly: true, fileMustExist: true });
    try {
      return (conn.prepare('SELECT coalesce(sum(sessions), 0) AS n FROM heads').get() as { n: number }).n;
    } finally {
      conn.close();
    }
  } catch {
    return 0; // the schema is still being created
  }
}

export interface EntryAt {
  seq: number;
  session: number;
  kind: number;
  flags: number;
  /** Byte offset of the entry's header inside its block's `data`. */
  offset: number;
  length: number;
  payload: Buffer;
  encoded: Buffer;
}

/** Walks the 26-byte headers of one block's `data`. */
export function entriesOf(data: Buffer): EntryAt[] {
  const out: EntryAt[] = [];
  let off = 0;
  while (off < data.length) {
    const seq = Number(data.readBigUInt64BE(off));
    const session = data.readUInt32BE(off + 16);
    const kind = data[off + 20]!;
    const flags = data[off + 21]!;
    const length = data.readUInt32BE(off + 22);
    const end = off + HEADER_SIZE + length;
    out.push({
      seq,
      session,
      kind,
      flags,
      offset: off,
      length,
      payload: data.subarray(off + HEADER_SIZE, end),
      encoded: data.subarray(off, end),
    });
    off = end;
  }
  expect(off, 'block data ends on an entry boundary').toBe(data.length);
  return out;
}

export function entryHash(prev: Buffer, encoded: Buffer): Buffer {
  return createHash('sha256').update(ENTRY_PREFIX).update(prev).update(encoded).digest();
}

/** An SQLite blob literal. */
export function blobLiteral(b: Buffer): string {
  return `X'${b.toString('hex')}'`;
}

/**
 * Copies examples/hello to a fresh directory and runs the real `make` there,
 * stdout and stderr interleaved as `make 2>&1 | qrexec-client-vm ...` would
 * send them. Returns the exact bytes.
 */
export async function helloBuildOutput(): Promise<Buffer> {
  const dir = mkdtempSync(join(tmpdir(), 'appendlog-hello-'));
  cpSync(join(ROOT, 'examples/hello'), dir, { recursive: true });
  const r = await run('sh', ['-c', 'make 2>&1'], { cwd: dir }).finally(() => rmSync(dir, { recursive: true, force: true }));
  expect(r.code, `make failed: ${r.stdout.toString()}${r.stderr}`).toBe(0);
  expect(r.stderr).toBe('');
  return r.stdout;
}

/**
 * A stream that hands `data` to the child in pieces of `pieceSize` bytes,
 * `delayMs` apart, so the service sees many separate reads (as with a build
 * that prints slowly) instead of one big one. With `start`, nothing is sent
 * before that promise resolves.
 */
export function trickle(data: Buffer, pieceSize: number, delayMs: number, start: Promise<void> = Promise.resolve()): Readable {
  let off = 0;
  return new Readable({
    read() {
      void start.then(() => {
        if (off >= data.length) {
          this.push(null);
          return;
        }
        const piece = data.subarray(off, off + pieceSize);
        off += pieceSize;
        setTimeout(() => this.push(piece), delayMs);
      });
    },
  });
}

/** Polls `check` every `everyMs` until it returns true, or fails after `timeoutMs`. */
export async function waitFor(check: () => Promise<boolean>, what: string, timeoutMs = 30_000, everyMs = 50): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Lines `${tag} NNNNNN ...` numbered 0..n-1, each ending in \n. */
export function numberedLines(tag: string, n: number): Buffer {
  const parts: string[] = [];
  for (let i = 0; i < n; i++) parts.push(`${tag} ${String(i).padStart(6, '0')} the quick brown fox\n`);
  return Buffer.from(parts.join(''), 'utf8');
}
