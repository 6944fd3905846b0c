/**
 * Receipts: while a long build streams, the log VM acknowledges the head of
 * the log from time to time, and logsend keeps every acknowledgement in
 * --receipts. They are what an attacker who controls the store cannot undo:
 * deleting the tail of a log and rewriting the head row to match makes the
 * store consistent again, so verifying the store alone passes, but the
 * receipts held by the sender name the acknowledged entry that is gone.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LOGVM, logvm, run, tempDir } from '../helpers.js';
import { EXIT, STACK_TRACE, VM, linesOf, logsend, verifyJson, type TimedResult } from './util.js';

const NAME = 'long-build';
const REF = `${VM}/${NAME}`;
const LINES = 120_000;

interface Receipt {
  type: 'receipt';
  log: string;
  session: number;
  entries: number;
  head: string;
  lines: number;
  bytes: number;
  final: boolean;
}

const tmp = tempDir('appendlog-sender-receipts-');
const db = join(tmp.dir, 'logs.db');
const tampered = join(tmp.dir, 'tampered.db');
const receiptsFile = join(tmp.dir, 'r.jsonl');
let r: TimedResult;
let receipts: Receipt[];

const sq = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

beforeAll(async () => {
  // The command transport: any command whose stdin/stdout reach the service.
  const command = `${sq(process.execPath)} ${sq(LOGVM)} append --vm ${VM} --name "$APPENDLOG_NAME" --framed --db ${sq(db)}`;
  r = await logsend(['--transport', 'command', '--command', command, '--name', NAME, '--receipts', receiptsFile, '--', 'seq', '1', String(LINES)], {
    cwd: tmp.dir,
    home: tmp.dir,
  });
  receipts = linesOf(readFileSync(receiptsFile, 'utf8')).map((l) => JSON.parse(l) as Receipt);
});

afterAll(() => tmp.cleanup());

describe(`when a build prints ${LINES} lines`, () => {
  it('logsend exits 0 and passes every line through', () => {
    expect(r.code, r.stderr).toBe(EXIT.OK);
    const out = r.stdout.toString('utf8');
    expect(out.startsWith('1\n2\n3\n')).toBe(true);
    expect(out.endsWith(`\n${LINES}\n`)).toBe(true);
  });

  it('the log VM sent periodic receipts during the build, then one final receipt', () => {
    expect(receipts.length).toBeGreaterThan(1);
    const periodic = receipts.slice(0, -1);
    expect(periodic.length).toBeGreaterThanOrEqual(1);
    for (const x of periodic) expect(x).toMatchObject({ type: 'receipt', log: REF, session: 1, final: false });
    expect(receipts.at(-1)).toMatchObject({ type: 'receipt', log: REF, session: 1, final: true, lines: LINES });
  });

  it('each receipt acknowledges more entries than the one before', () => {
    for (let i = 1; i < receipts.length; i++) expect(receipts[i]!.entries).toBeGreaterThan(receipts[i - 1]!.entries);
  });

  it('the store verifies against all the receipts', async () => {
    const { result, code, stderr } = await verifyJson(['--db', db, '--store', REF, '--receipt', receiptsFile]);
    expect(code, stderr).toBe(EXIT.OK);
    expect(result).toMatchObject({ ok: true, entries: receipts.at(-1)!.entries, head: receipts.at(-1)!.head, receiptsChecked: 1 });
  });
});

describe('when an attacker deletes the tail of the log and rewrites the head row to match', () => {
  let cut: Receipt;

  beforeAll(async () => {
    // Cut back to the first periodic receipt: a point where the chain really
    // ended once, so its head, line and byte counts are consistent.
    cut = receipts[0]!;
    expect(cut.final).toBe(false);
    const backup = await run('sqlite3', [db, `.backup ${sq(tampered)}`]);
    expect(backup.code, backup.stderr).toBe(0);
    const triggers = (await run('sqlite3', [tampered, "SELECT name FROM sqlite_master WHERE type = 'trigger'"])).stdout.toString('utf8');
    const drop = linesOf(triggers)
      .map((t) => `DROP TRIGGER ${t};`)
      .join(' ');
    const log = `(SELECT id FROM logs WHERE vm = '${VM}' AND name = '${NAME}')`;
    const sql = `${drop}
      DELETE FROM blocks WHERE log_id = ${log} AND first_seq > ${cut.entries};
      UPDATE heads SET entries = ${cut.entries}, lines = ${cut.lines}, bytes = ${cut.bytes}, sessions = 1, head = X'${cut.head}',
        last_time = (SELECT max(last_time) FROM blocks WHERE log_id = ${log}) WHERE log_id = ${log};`;
    const t = await run('sqlite3', ['-bail', tampered, sql]);
    expect(t.code, t.stderr).toBe(0);
  });

  it('verifying the store alone cannot tell: it passes, with the shortened chain', async () => {
    const { result, code, stderr } = await verifyJson(['--db', tampered, '--store', REF]);
    expect(code, stderr).toBe(EXIT.OK);
    expect(result).toMatchObject({ ok: true, entries: cut.entries, head: cut.head });
    expect(result.entries).toBeLessThan(receipts.at(-1)!.entries);
  });

  it('verifying with the receipts fails with RECEIPT_MISMATCH (exit 50) at the first missing seq', async () => {
    const { result, code, stderr } = await verifyJson(['--db', tampered, '--store', REF, '--receipt', receiptsFile]);
    expect(code, stderr).toBe(EXIT.RECEIPT_MISMATCH);
    expect(result).toMatchObject({ ok: false, code: 'RECEIPT_MISMATCH', exitCode: EXIT.RECEIPT_MISMATCH, seq: cut.entries + 1 });
    // It names the receipt whose acknowledged entries are gone.
    const next = receipts.find((x) => x.entries > cut.entries)!;
    expect(result.message).toContain(String(next.entries));
  });

  it('the human form says FAIL: RECEIPT_MISMATCH, never OK, without a stack trace', async () => {
    const h = await logvm(['verify-chain', '--db', tampered, '--store', REF, '--receipt', receiptsFile]);
    expect(h.code).toBe(EXIT.RECEIPT_MISMATCH);
    expect(h.stderr).toContain('FAIL: RECEIPT_MISMATCH');
    expect(h.stdout.toString('utf8')).not.toMatch(/^OK/m);
    expect(h.stderr).not.toMatch(STACK_TRACE);
  });
});
