/**
 * Security: one case per attack on a store at rest. The attacker has write
 * access to the SQLite file and the real `sqlite3` CLI: first against the
 * append-only triggers, then with the triggers dropped. `verify-chain` must
 * name the failure and the first seq it concerns.
 *
 * The tampering itself is done only through the sqlite3 CLI; better-sqlite3
 * is used read-only to find where a given seq sits inside a block.
 */
import { copyFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callService, logvm, tempDir } from '../helpers.js';
import {
  EXIT,
  HASH_SIZE,
  HEADER_SIZE,
  KIND,
  blobLiteral,
  dropTriggersSql,
  entriesOf,
  entryHash,
  listLogs,
  readBlocks,
  receiptOf,
  showRaw,
  sqlite,
  sqliteOk,
  verifyJson,
  type BlockInfo,
  type Receipt,
} from '../e2e-util.js';

const VM = 'build-vm';
const NAME = 'release-1';
const REF = `${VM}/${NAME}`;
const SESSIONS = 5;
const LINES_PER_SESSION = 10;

const tmp = tempDir();
const original = join(tmp.dir, 'original.db');
let receipts: Receipt[] = [];
let last: Receipt;
let inputs: Buffer[] = [];
let blocks: BlockInfo[];
let copies = 0;

/** A copy of the untouched store for one attack. */
function copyStore(): string {
  expect(existsSync(`${original}-wal`), 'the store was checkpointed when its last writer closed').toBe(false);
  const path = join(tmp.dir, `attack-${++copies}.db`);
  copyFileSync(original, path);
  return path;
}

/** Where seq `seq` is: its block and its entry inside the block. */
function locate(seq: number): { block: BlockInfo; index: number; offset: number; length: number; kind: number } {
  for (const block of blocks) {
    const entries = entriesOf(block.data);
    const index = entries.findIndex((e) => e.seq === seq);
    if (index >= 0) return { block, index, ...entries[index]! };
  }
  throw new Error(`seq ${seq} not found`);
}

/** verify-chain in both forms: human (exit status, stderr) and --json (code, seq). */
async function expectFailure(db: string, code: keyof typeof EXIT, seq: number, { seqInMessage = true } = {}): Promise<void> {
  const human = await logvm(['verify-chain', '--store', REF], { db });
  expect(human.code, human.stderr).toBe(EXIT[code]);
  expect(human.stdout.toString()).not.toMatch(/^OK/m);
  expect(human.stderr).toContain(`FAIL: ${code}`);
  if (seqInMessage) expect(human.stderr).toMatch(new RegExp(`seq ${seq}\\b`));
  const { code: exit, result } = await verifyJson(db, REF);
  expect(exit).toBe(EXIT[code]);
  expect(result).toMatchObject({ ok: false, code, seq });
}

beforeAll(async () => {
  for (let s = 1; s <= SESSIONS; s++) {
    const lines = Array.from({ length: LINES_PER_SESSION }, (_, i) => `session ${s} line ${i + 1}: cc -c file${i}.c\n`);
    inputs.push(Buffer.from(lines.join('')));
    receipts.push(receiptOf(await callService(VM, NAME, original, { input: inputs.at(-1) })));
  }
  last = receipts.at(-1)!;
  blocks = readBlocks(original, VM, NAME);
});
afterAll(() => tmp.cleanup());

describe('the store under attack', () => {
  it('starts as 5 sessions of 10 lines in several blocks, and verifies', async () => {
    expect(last.entries).toBe(SESSIONS * (LINES_PER_SESSION + 2));
    expect(blocks.length).toBeGreaterThanOrEqual(2 * SESSIONS);
    expect(blocks.map((b) => b.first_seq)).toEqual([...blocks.map((b) => b.first_seq)].sort((x, y) => x - y));
    const { code, result } = await verifyJson(original, REF);
    expect(code).toBe(0);
    expect(result).toMatchObject({ ok: true, entries: last.entries, head: last.head, sessions: SESSIONS });
  });
});

describe('when the append-only triggers are in place', () => {
  let db: string;
  beforeAll(() => {
    db = copyStore();
  });

  it.each([
    ['UPDATE blocks SET data = data', 'appendlog: entries are append-only'],
    ['DELETE FROM blocks', 'appendlog: entries are append-only'],
    [`DELETE FROM blocks WHERE first_seq = (SELECT max(first_seq) FROM blocks)`, 'appendlog: entries are append-only'],
    ['UPDATE heads SET entries = entries - 1', 'appendlog: a head only moves forward'],
    ['DELETE FROM heads', 'appendlog: heads are append-only'],
    [`UPDATE logs SET vm = 'other-vm'`, 'appendlog: logs are append-only'],
    ['DELETE FROM logs', 'appendlog: logs are append-only'],
  ])('sqlite3 "%s" fails with the append-only message', async (sql, message) => {
    const r = await sqlite(db, sql);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(message);
  });

  it('leaves the store as it was: the chain verifies at the last receipt\'s head', async () => {
    const { code, result } = await verifyJson(db, REF);
    expect(code).toBe(0);
    expect(result).toMatchObject({ ok: true, entries: last.entries, head: last.head });
  });
});

describe('when the head row\'s counters are rewritten', () => {
  let db: string;

  beforeAll(async () => {
    db = copyStore();
    // heads_forward_only refuses lowering them; an attacker drops the triggers first.
    await sqliteOk(db, `${dropTriggersSql()} UPDATE heads SET lines = 1, bytes = 2, sessions = sessions + 3;`);
  });

  it('with the triggers in place, lowering them fails with the append-only message', async () => {
    const fresh = copyStore();
    const r = await sqlite(fresh, 'UPDATE heads SET lines = 1, bytes = 2;');
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('appendlog: a head only moves forward');
  });

  it('logvm list shows the forged counts', async () => {
    expect((await listLogs(db))[0]).toMatchObject({ lines: 1, bytes: 2, sessions: SESSIONS + 3, head: last.head });
  });

  // README: STORE_INCONSISTENT (16) "store rows contradict each other". The
  // head row now contradicts the blocks it summarizes, so verify-chain, which
  // recomputes lines, bytes and sessions anyway, must not print OK.
  it('verify-chain exits 16 with STORE_INCONSISTENT', async () => {
    const { code, result } = await verifyJson(db, REF);
    expect(result).toMatchObject({ ok: false, code: 'STORE_INCONSISTENT' });
    expect(code).toBe(16);
  });
});

describe('when the triggers are dropped', () => {
  describe('when one byte of a line\'s payload is changed', () => {
    const SEQ = 30;
    let db: string;

    beforeAll(async () => {
      db = copyStore();
      const at = locate(SEQ);
      expect(at.kind).toBe(KIND.LINE);
      const pos = at.offset + HEADER_SIZE + 8; // 0-based byte in `data`, inside the payload
      const old = at.block.data[pos]!;
      await sqliteOk(
        db,
        `${dropTriggersSql()} UPDATE blocks SET data = CAST(substr(data, 1, ${pos}) || X'${(old ^ 0x20).toString(16).padStart(2, '0')}' || substr(data, ${pos + 2}) AS BLOB) WHERE id = ${at.block.id};`,
      );
      // The attack did what it meant to: exactly that one byte differs.
      const after = readBlocks(db, VM, NAME).find((b) => b.id === at.block.id)!;
      expect(after.data.length).toBe(at.block.data.length);
      const diff = [...after.data].flatMap((c, i) => (c !== at.block.data[i] ? [i] : []));
      expect(diff).toEqual([pos]);
    });

    it('verify-chain exits 10 with CHAIN_HASH_MISMATCH naming that seq', async () => {
      await expectFailure(db, 'CHAIN_HASH_MISMATCH', SEQ);
    });

    it('the untouched store still verifies', async () => {
      expect((await verifyJson(original, REF)).code).toBe(0);
    });
  });

  describe('when a line is rewritten and every later hash recomputed, but not the head row', () => {
    const SEQ = 30;
    let db: string;
    let forgedHead: Buffer;

    beforeAll(async () => {
      db = copyStore();
      const at = locate(SEQ);
      const pos = at.offset + HEADER_SIZE;
      // The attacker knows the format: rewrite the payload's first byte, then
      // recompute the hashes of seq 30 to the end from the stored hash of seq 29.
      const forged = blocks.map((b) => ({ ...b, data: Buffer.from(b.data), hashes: Buffer.from(b.hashes) }));
      const target = forged.find((b) => b.id === at.block.id)!;
      target.data[pos] = target.data[pos]! ^ 0x20;
      const prevAt = locate(SEQ - 1);
      let prev = prevAt.block.hashes.subarray(prevAt.index * HASH_SIZE, (prevAt.index + 1) * HASH_SIZE);
      const updates: string[] = [dropTriggersSql()];
      for (const b of forged) {
        let touched = false;
        entriesOf(b.data).forEach((e, i) => {
          if (e.seq < SEQ) return;
          prev = entryHash(prev, e.encoded);
          prev.copy(b.hashes, i * HASH_SIZE);
          touched = true;
        });
        if (touched) updates.push(`UPDATE blocks SET data = ${blobLiteral(b.data)}, hashes = ${blobLiteral(b.hashes)} WHERE id = ${b.id};`);
      }
      forgedHead = prev;
      await sqliteOk(db, updates.join(' '));
    });

    it('verify-chain exits 13 with HEAD_MISMATCH at the last seq', async () => {
      // The human message shows both heads; the seq is in the --json result.
      await expectFailure(db, 'HEAD_MISMATCH', last.entries, { seqInMessage: false });
    });

    describe('when the attacker also moves the head row to the forged head', () => {
      beforeAll(async () => {
        await sqliteOk(db, `${dropTriggersSql()} UPDATE heads SET head = ${blobLiteral(forgedHead)};`);
      });

      // The store alone cannot tell a consistent rewrite from the truth: a
      // chain proves order and completeness relative to a head held elsewhere.
      // The receipt the sender got (and, later, a signed seal) is that head.
      it('verify-chain passes, but reports a head that differs from the sender\'s receipt', async () => {
        const { code, result } = await verifyJson(db, REF);
        expect(code).toBe(0);
        expect(result.entries).toBe(last.entries);
        expect(result.head).toBe(forgedHead.toString('hex'));
        expect(result.head).not.toBe(last.head);
      });
    });
  });

  describe('when the last block rows are deleted', () => {
    let db: string;
    let firstMissing: number;

    beforeAll(async () => {
      db = copyStore();
      const tail = blocks.slice(-2);
      firstMissing = tail[0]!.first_seq;
      await sqliteOk(db, `${dropTriggersSql()} DELETE FROM blocks WHERE id IN (${tail.map((b) => b.id).join(', ')});`);
    });

    it('verify-chain exits 12 with CHAIN_TRUNCATED naming the first missing seq', async () => {
      expect(firstMissing).toBe(last.entries - (LINES_PER_SESSION + 2) + 1);
      await expectFailure(db, 'CHAIN_TRUNCATED', firstMissing);
    });

    describe('when the attacker also rewinds the head row to the truncated chain', () => {
      let survivingHead: Buffer;

      beforeAll(async () => {
        const kept = blocks.filter((b) => b.first_seq < firstMissing);
        const lastKept = kept.at(-1)!;
        survivingHead = lastKept.hashes.subarray(lastKept.hashes.length - HASH_SIZE);
        // A careful attacker makes every counter of the head row match the kept entries.
        let lines = 0;
        let bytes = 0;
        for (const b of kept) {
          for (const e of entriesOf(b.data)) {
            if (e.kind === KIND.LINE) {
              lines++;
              bytes += e.length;
            }
          }
        }
        await sqliteOk(
          db,
          `${dropTriggersSql()} UPDATE heads SET entries = ${firstMissing - 1}, head = ${blobLiteral(survivingHead)}, sessions = ${SESSIONS - 1}, lines = ${lines}, bytes = ${bytes};`,
        );
      });

      // Deleting a whole tail and rewinding the head is consistent as far as
      // the store can see; only the receipts (or the seal) show that entries
      // were lost: the chain ends before the last receipt's entries and head.
      it('verify-chain passes on a chain shorter than the last receipt', async () => {
        const { code, result } = await verifyJson(db, REF);
        expect(code).toBe(0);
        expect(result.entries).toBe(firstMissing - 1);
        expect(result.entries).toBeLessThan(last.entries);
        expect(result.head).toBe(survivingHead.toString('hex'));
        expect(result.head).not.toBe(last.head);
        // ... but it is the head an earlier receipt gave: the tail after it is gone.
        expect(receipts.map((r) => r.head)).toContain(result.head);
      });
    });
  });

  describe('when a block in the middle is deleted', () => {
    let db: string;
    let gone: BlockInfo;

    beforeAll(async () => {
      db = copyStore();
      gone = blocks[Math.floor(blocks.length / 2)]!;
      await sqliteOk(db, `${dropTriggersSql()} DELETE FROM blocks WHERE id = ${gone.id};`);
    });

    it('verify-chain exits 11 with SEQ_OUT_OF_ORDER at the first missing seq', async () => {
      await expectFailure(db, 'SEQ_OUT_OF_ORDER', gone.first_seq);
    });
  });

  describe('when two block rows swap their data and hashes', () => {
    let db: string;
    let x: BlockInfo;

    beforeAll(async () => {
      db = copyStore();
      // Two blocks with the same entry count (the session-open events of
      // sessions 2 and 4), so each row stays self-consistent.
      const opens = blocks.filter((b) => b.count === 1 && entriesOf(b.data)[0]!.kind === KIND.SESSION_OPEN);
      expect(opens.length).toBeGreaterThanOrEqual(4);
      x = opens[1]!;
      const y = opens[3]!;
      await sqliteOk(
        db,
        `${dropTriggersSql()}
         UPDATE blocks SET data = ${blobLiteral(y.data)}, hashes = ${blobLiteral(y.hashes)} WHERE id = ${x.id};
         UPDATE blocks SET data = ${blobLiteral(x.data)}, hashes = ${blobLiteral(x.hashes)} WHERE id = ${y.id};`,
      );
    });

    it('verify-chain exits 11 with SEQ_OUT_OF_ORDER at the first swapped seq', async () => {
      await expectFailure(db, 'SEQ_OUT_OF_ORDER', x.first_seq);
    });
  });

  describe('when two block rows swap their first_seq values', () => {
    let db: string;
    let x: BlockInfo;

    beforeAll(async () => {
      db = copyStore();
      // The blocks holding the lines of sessions 2 and 4.
      const lineBlocks = blocks.filter((b) => b.count > 1);
      x = lineBlocks[1]!;
      const y = lineBlocks[3]!;
      await sqliteOk(
        db,
        `${dropTriggersSql()}
         UPDATE blocks SET first_seq = -1 WHERE id = ${x.id};
         UPDATE blocks SET first_seq = ${x.first_seq} WHERE id = ${y.id};
         UPDATE blocks SET first_seq = ${y.first_seq} WHERE id = ${x.id};`,
      );
    });

    it('verify-chain exits 11 with SEQ_OUT_OF_ORDER at the first displaced seq', async () => {
      await expectFailure(db, 'SEQ_OUT_OF_ORDER', x.first_seq);
    });
  });

  describe('when the log is moved to another VM', () => {
    let db: string;

    beforeAll(async () => {
      db = copyStore();
      await sqliteOk(db, `${dropTriggersSql()} UPDATE logs SET vm = 'trusted-vm';`);
    });

    it('lists it under the new VM, bytes unchanged', async () => {
      expect((await listLogs(db)).map((l) => `${l.vm}/${l.name}`)).toEqual([`trusted-vm/${NAME}`]);
      expect((await showRaw(db, `trusted-vm/${NAME}`)).equals(Buffer.concat(inputs))).toBe(true);
    });

    // The genesis hash commits to the source VM, so seq 1 no longer chains.
    it('verify-chain exits 10 with CHAIN_HASH_MISMATCH at seq 1', async () => {
      const { code, result } = await verifyJson(db, `trusted-vm/${NAME}`);
      expect(code).toBe(EXIT.CHAIN_HASH_MISMATCH);
      expect(result).toMatchObject({ ok: false, code: 'CHAIN_HASH_MISMATCH', seq: 1 });
    });
  });
});
