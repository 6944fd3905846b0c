/**
 * Many service instances write one store file at once: qrexec starts one
 * `logvm append` per call, and builds run in parallel. Every line of every
 * session must be stored, and every chain must stay linear.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callService, tempDir, type RunResult } from '../helpers.js';
import { listLogs, numberedLines, openSessions, receiptOf, showRaw, trickle, verifyJson, waitFor, type ListedLog, type Receipt } from '../e2e-util.js';

const LINES = 20_000;

interface Writer {
  tag: string;
  vm: string;
  name: string;
  input: Buffer;
}

const WRITERS: Writer[] = [
  { tag: 'P1', vm: 'vm-a', name: 'log-1', input: numberedLines('P1', LINES) },
  { tag: 'P2', vm: 'vm-a', name: 'log-2', input: numberedLines('P2', LINES) },
  { tag: 'P3', vm: 'vm-b', name: 'shared', input: numberedLines('P3', LINES) },
  { tag: 'P4', vm: 'vm-b', name: 'shared', input: numberedLines('P4', LINES) },
];

const linesOf = (b: Buffer): string[] => b.toString('utf8').split('\n').slice(0, -1);

describe('when 4 sessions append to one new store at the same time', () => {
  const tmp = tempDir();
  const db = join(tmp.dir, 'logs.db');
  let results: RunResult[];
  let receipts: Receipt[];
  let logs: ListedLog[];

  beforeAll(async () => {
    expect(existsSync(db)).toBe(false);
    // All four processes race to create the store and open their sessions;
    // once all four sessions are open, each build prints about 200 lines
    // every 10 ms for about a second, so they commit many batches each,
    // interleaved, however slowly the processes started.
    let go!: () => void;
    const started = new Promise<void>((resolve) => (go = resolve));
    const running = Promise.all(
      WRITERS.map((w) => callService(w.vm, w.name, db, { input: trickle(w.input, 9_000, 10, started), timeoutMs: 55_000 })),
    );
    await waitFor(async () => openSessions(db) === WRITERS.length, 'all four sessions to open', 30_000, 20);
    go();
    results = await running;
    receipts = results.map((r) => receiptOf(r));
    logs = await listLogs(db);
  }, 60_000);
  afterAll(() => tmp.cleanup());

  it('every session exits 0 with a receipt for its own log', () => {
    results.forEach((r, i) => {
      expect(r.code, `${WRITERS[i]!.tag}: ${r.stderr}`).toBe(0);
      expect(receipts[i]).toMatchObject({
        log: `${WRITERS[i]!.vm}/${WRITERS[i]!.name}`,
        lines: LINES,
        bytes: WRITERS[i]!.input.length - LINES,
      });
    });
  });

  it('the two sessions on one log are sessions 1 and 2 of that log', () => {
    expect([receipts[2]!.session, receipts[3]!.session].sort()).toEqual([1, 2]);
  });

  it('lists three logs with every line counted', () => {
    expect(logs.map((l) => [`${l.vm}/${l.name}`, l.lines, l.sessions, l.entries])).toEqual([
      ['vm-a/log-1', LINES, 1, LINES + 2],
      ['vm-a/log-2', LINES, 1, LINES + 2],
      ['vm-b/shared', 2 * LINES, 2, 2 * (LINES + 2)],
    ]);
  });

  it('a log with one writer gives back its input exactly', async () => {
    expect((await showRaw(db, 'vm-a/log-1')).equals(WRITERS[0]!.input)).toBe(true);
    expect((await showRaw(db, 'vm-a/log-2')).equals(WRITERS[1]!.input)).toBe(true);
  });

  describe('the log written by two sessions at once', () => {
    let lines: string[];

    beforeAll(async () => {
      lines = linesOf(await showRaw(db, 'vm-b/shared'));
    });

    it('holds every line of both sessions, each session\'s lines in their order', () => {
      expect(lines).toHaveLength(2 * LINES);
      expect(lines.filter((l) => l.startsWith('P3 '))).toEqual(linesOf(WRITERS[2]!.input));
      expect(lines.filter((l) => l.startsWith('P4 '))).toEqual(linesOf(WRITERS[3]!.input));
    });

    it('interleaves the two sessions\' batches (they really ran at once)', () => {
      let switches = 0;
      for (let i = 1; i < lines.length; i++) if (lines[i]!.slice(0, 2) !== lines[i - 1]!.slice(0, 2)) switches++;
      expect(switches).toBeGreaterThan(1);
    });

    it('ends at the head of the session that closed last', () => {
      const shared = logs.find((l) => l.name === 'shared')!;
      const later = [receipts[2]!, receipts[3]!].find((r) => r.entries === shared.entries);
      expect(later?.head).toBe(shared.head);
    });
  });

  it('every chain verifies and ends at the listed head', async () => {
    const verified = await Promise.all(logs.map((l) => verifyJson(db, `${l.vm}/${l.name}`)));
    logs.forEach((l, i) => {
      const { code, result } = verified[i]!;
      expect(code, result.message).toBe(0);
      expect(result).toMatchObject({ ok: true, entries: l.entries, head: l.head, lines: l.lines, sessions: l.sessions });
    });
  });
});
