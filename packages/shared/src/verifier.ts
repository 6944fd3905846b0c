import { AppendlogError } from './errors.js';
import { ENTRY_HEADER_SIZE, Flag, HASH_SIZE, KIND_NAMES, Kind, MAX_PAYLOAD, isLineKind } from './constants.js';
import { decodeHeader, type DecodedHeader, type LogIdentity } from './encoding.js';
import { chainEntries, chainTagged, chainTaggedAsync, genesisHash } from './chain.js';
import { ClaimsCollector, parseClaim } from './claims.js';
import type { ClaimsSummary } from './manifest.js';
import { parseStrictJson } from './strict-json.js';

/**
 * Streaming chain verifier (docs/FORMAT.md section 6). Feed it every entry's
 * canonical encoding in order with `push`, then call `end`; it keeps O(1)
 * state, so the same code checks a SQLite store and an exported bundle of
 * any size. The first violation throws a coded AppendlogError naming the seq.
 */
export interface ChainFacts {
  identity: LogIdentity;
  genesis: string;
  entries: number;
  head: string;
  lines: number;
  bytes: number;
  sessions: number;
  /** Close reasons seen, with counts (e.g. { eof: 2, error: 1 }). */
  closes: Record<string, number>;
  /**
   * Sessions that did not close with `eof` (refused, lost, error, quota, cut
   * by the seal...), in chain order: the first MAX_LISTED_SESSIONS of them
   * (the counts in `closes` are complete).
   */
  notEof: Array<{ session: number; reason: string; seq: number }>;
  firstTime: number | null;
  lastTime: number | null;
  /** The SEAL entry, when the chain ends with one. */
  seal: { seq: number; time: number; payload: Buffer } | null;
  /** Summary of the sender's CLAIM entries, when there are any. */
  claims?: ClaimsSummary;
}

export interface ChainExpectation {
  entries?: number;
  head?: Uint8Array;
  /** What to call the source of the expectation in messages. */
  source?: string;
}

const MAX_EVENT_PAYLOAD = 64 * 1024;
const TWO32 = 2 ** 32;
/** Bound on ChainFacts.notEof, so a flood of refused sessions cannot grow a verifier's memory. */
export const MAX_LISTED_SESSIONS = 100;

export class ChainVerifier {
  private readonly head: Buffer;
  private readonly identity: LogIdentity;
  private offsets = new Uint32Array(4097);
  private scratch = Buffer.allocUnsafe(4096 * HASH_SIZE);
  private readonly genesis: Buffer;
  private next = 1;
  /** Entries checked but not hashed yet. */
  private pending = 0;
  private sessions = 0;
  private lines = 0;
  private bytes = 0;
  private firstTime: number | null = null;
  private lastTime: number | null = null;
  private closes: Record<string, number> = {};
  private notEof: ChainFacts['notEof'] = [];
  private seal: ChainFacts['seal'] = null;
  private readonly claims = new ClaimsCollector();
  /** One bit per session: closed. 1M sessions take 125 KiB. */
  private closed = new Uint8Array(64);
  private checkpoints: Array<{ seq: number; head: Buffer; label: string }> = [];
  private nextCheckpoint = 0;

  constructor(identity: LogIdentity) {
    this.identity = identity;
    this.genesis = genesisHash(identity);
    this.head = Buffer.from(this.genesis);
  }

  /**
   * Heads the log VM acknowledged earlier (sender receipts): the hash of
   * entry `seq` must be `head`. A mismatch means an acknowledged entry was
   * dropped or rewritten (RECEIPT_MISMATCH).
   */
  expectHeads(list: Array<{ seq: number; head: Uint8Array; label: string }>): void {
    this.checkpoints = list.map((c) => ({ seq: c.seq, head: Buffer.from(c.head), label: c.label })).sort((a, b) => a.seq - b.seq);
    this.nextCheckpoint = 0;
  }

  /** Entries accepted so far. */
  get entries(): number {
    return this.next - 1;
  }

  /**
   * Checks one entry. `storedHash`, when the source keeps per-entry hashes
   * (store rows, bundle lines), must equal the recomputed hash: this is what
   * names the exact seq of a changed entry.
   */
  push(encoded: Uint8Array, storedHash?: Uint8Array): void {
    try {
      this.check(encoded, 0, encoded.length);
    } catch (e) {
      if (storedHash?.length === HASH_SIZE) this.preferHashMismatch(e, encoded, 0, encoded.length, storedHash);
      throw e;
    }
    if (storedHash !== undefined && storedHash.length !== HASH_SIZE) {
      const seq = this.next - 1;
      throw new AppendlogError('CHAIN_HASH_MISMATCH', `seq ${seq}: the stored hash is ${storedHash.length} bytes, not ${HASH_SIZE}`, { seq });
    }
    this.offsets[0] = 0;
    this.offsets[1] = encoded.length;
    this.chain(encoded, 1, storedHash);
  }

  /**
   * Checks a run of entries laid end to end in `data` (a store block), with
   * their stored hashes concatenated in `storedHashes` if the source has
   * them. Same rules and errors as `push` for each entry in turn, but the
   * chain is hashed in one batch.
   */
  pushBlock(data: Uint8Array, storedHashes?: Uint8Array): number {
    let off = 0;
    let n = 0;
    let failure: unknown;
    let badEntry: { start: number; end: number } | undefined;
    while (off < data.length) {
      if (n + 1 >= this.offsets.length) this.grow();
      let h: DecodedHeader | undefined;
      try {
        try {
          h = decodeHeader(data, off);
        } catch (e) {
          throw new AppendlogError('BAD_ENTRY', `seq ${this.next}: the entry after seq ${this.next - 1}: ${(e as Error).message}`, { seq: this.next });
        }
        const end = h === undefined ? -1 : off + ENTRY_HEADER_SIZE + h.length;
        if (h === undefined || end > data.length) {
          throw new AppendlogError('BAD_ENTRY', `seq ${this.next}: entry encoding is truncated`, { seq: this.next });
        }
        try {
          this.check(data, off, end, h);
        } catch (e) {
          // The entry is delimited: if it was changed, say so rather than what its new content breaks.
          badEntry = { start: off, end };
          throw e;
        }
        this.offsets[n] = off;
        this.offsets[n + 1] = end;
        n++;
        off = end;
      } catch (e) {
        failure = e;
        break;
      }
    }
    // Earlier entries first: a changed entry before a malformed one is the first failure.
    // (After a failure the rest of the block is unread, so its count is unknown.)
    if (storedHashes !== undefined && (failure === undefined ? storedHashes.length !== n * HASH_SIZE : storedHashes.length < n * HASH_SIZE)) {
      const have = Math.min(n, Math.floor(storedHashes.length / HASH_SIZE));
      const first = this.next - this.pending;
      if (have > 0) this.chain(data, have, storedHashes);
      this.pending = 0;
      throw failure ?? new AppendlogError('BAD_ENTRY', `seq ${first + have}: ${storedHashes.length / HASH_SIZE} stored hashes for ${n} entries`, { seq: first + have });
    }
    if (n > 0) this.chain(data, n, storedHashes?.subarray(0, n * HASH_SIZE));
    if (failure !== undefined && badEntry !== undefined && storedHashes !== undefined) {
      this.preferHashMismatch(failure, data, badEntry.start, badEntry.end, storedHashes.subarray(n * HASH_SIZE, (n + 1) * HASH_SIZE));
    }
    if (failure !== undefined) throw failure instanceof AppendlogError ? failure : new AppendlogError('BAD_ENTRY', `seq ${this.next}: ${String(failure)}`, { seq: this.next });
    return n;
  }

  /**
   * Checks a run of version 2 bundle records (docs/FORMAT.md section 9.7)
   * laid end to end in `data`: each is an entry encoding followed by a
   * `tail`-byte check tag, the first bytes of the entry's hash. Same rules
   * and errors as `pushBlock`; a tag that differs from the recomputed hash
   * names its seq (CHAIN_HASH_MISMATCH). The records are hashed where they
   * lie. Returns the number of records checked.
   */
  pushTagged(data: Uint8Array, tail: number): number {
    const { n, failure, badEntry } = this.checkTagged(data, tail);
    if (failure !== undefined) this.failTagged(data, tail, n, failure, badEntry);
    if (n > 0) this.chainTaggedRun(data, n, tail);
    return n;
  }

  /** The E1–E7 checks of pushTagged, recording each record's span in this.offsets. */
  private checkTagged(data: Uint8Array, tail: number): { n: number; failure: unknown; badEntry: { start: number; end: number } | undefined } {
    let off = 0;
    let n = 0;
    let failure: unknown;
    let badEntry: { start: number; end: number } | undefined;
    const len = data.length;
    while (off < len) {
      if (n + 1 >= this.offsets.length) this.grow();
      // The common record, a line of an open session, checked where it lies
      // (no header object per entry: at a million entries, allocating them
      // cost more than hashing). Only what check() would accept with the
      // very same effect is taken here; anything else, and every failure,
      // goes through decodeHeader and check() below.
      if (len - off >= ENTRY_HEADER_SIZE && this.seal === null) {
        const length = ((data[off + 22]! << 24) >>> 0) + ((data[off + 23]! << 16) | (data[off + 24]! << 8) | data[off + 25]!);
        const end = off + ENTRY_HEADER_SIZE + length;
        const kind = data[off + 20]!;
        const flags = data[off + 21]!;
        const session = ((data[off + 16]! << 24) >>> 0) + ((data[off + 17]! << 16) | (data[off + 18]! << 8) | data[off + 19]!);
        const seqHi = ((data[off]! << 24) >>> 0) + ((data[off + 1]! << 16) | (data[off + 2]! << 8) | data[off + 3]!);
        const timeHi = ((data[off + 8]! << 24) >>> 0) + ((data[off + 9]! << 16) | (data[off + 10]! << 8) | data[off + 11]!);
        if (
          (kind === Kind.LINE || kind === Kind.STDOUT || kind === Kind.STDERR) &&
          (flags === 0 || flags === Flag.CONT || flags === Flag.NOEOL) &&
          length <= MAX_PAYLOAD &&
          end + tail <= len &&
          seqHi <= 0x1fffff &&
          timeHi <= 0x1fffff &&
          seqHi * TWO32 + (((data[off + 4]! << 24) >>> 0) + ((data[off + 5]! << 16) | (data[off + 6]! << 8) | data[off + 7]!)) === this.next &&
          session >= 1 &&
          session <= this.sessions &&
          !this.isClosed(session)
        ) {
          const time = timeHi * TWO32 + (((data[off + 12]! << 24) >>> 0) + ((data[off + 13]! << 16) | (data[off + 14]! << 8) | data[off + 15]!));
          this.lines++;
          this.bytes += length;
          if (this.firstTime === null) this.firstTime = time;
          this.lastTime = time;
          this.next++;
          this.pending++;
          this.offsets[n] = off;
          this.offsets[n + 1] = end + tail;
          n++;
          off = end + tail;
          continue;
        }
      }
      try {
        let h: DecodedHeader | undefined;
        try {
          h = decodeHeader(data, off);
        } catch (e) {
          throw new AppendlogError('BAD_ENTRY', `entry after seq ${this.next - 1}: ${(e as Error).message}`, { seq: this.next });
        }
        const end = h === undefined ? -1 : off + ENTRY_HEADER_SIZE + h.length;
        if (h === undefined || end + tail > data.length) {
          throw new AppendlogError('BAD_ENTRY', `seq ${this.next}: record is truncated`, { seq: this.next });
        }
        try {
          this.check(data, off, end, h);
        } catch (e) {
          badEntry = { start: off, end };
          throw e;
        }
        this.offsets[n] = off;
        this.offsets[n + 1] = end + tail;
        n++;
        off = end + tail;
      } catch (e) {
        failure = e;
        break;
      }
    }
    return { n, failure, badEntry };
  }

  /** A run whose check failed: the records before the failure are hashed first (an earlier change wins), then a changed bad entry is named as changed. Always throws. */
  private failTagged(data: Uint8Array, tail: number, n: number, failure: unknown, badEntry: { start: number; end: number } | undefined, stored?: Uint8Array): never {
    if (n > 0) this.chainTaggedRun(data, n, tail, stored);
    if (badEntry !== undefined && failure instanceof AppendlogError && failure.code === 'BAD_ENTRY') {
      // A changed entry whose new content also breaks a rule: report the change (as pushBlock does).
      const recEnd = badEntry.end + tail;
      if (recEnd <= data.length) {
        const offsets = Uint32Array.of(badEntry.start, recEnd);
        const head = Buffer.from(this.head);
        const hash = Buffer.allocUnsafe(HASH_SIZE);
        const tagBad = chainTagged(head, data, offsets, 1, hash, tail, true) === 0;
        const full = stored?.subarray(n * HASH_SIZE, (n + 1) * HASH_SIZE);
        if (tagBad || (full !== undefined && full.length === HASH_SIZE && !hash.equals(full))) {
          throw new AppendlogError('CHAIN_HASH_MISMATCH', `seq ${this.next}: entry hash does not match its content and predecessor (entry changed)`, {
            seq: this.next,
          });
        }
      }
    }
    throw failure instanceof AppendlogError ? failure : new AppendlogError('BAD_ENTRY', String(failure), { seq: this.next });
  }

  /** The hashing of the last pushTaggedAsync batch, if it is still running. */
  private inflight: Promise<void> | undefined;
  /** Whether the last pushTaggedAsync returned without waiting for the run before it. */
  private skippedWait = false;
  private spare: { offsets: Uint32Array<ArrayBuffer>; out: Buffer } | undefined;

  /**
   * pushTagged, pipelined: the records are checked now (E1–E7, on this
   * thread) and hashed in the background (chainTaggedAsync), so the caller
   * reads and checks the next run while this one hashes: both cores work.
   * Runs are hashed strictly in order, one at a time (memory stays flat).
   * Failures still come out in seq order: a run that fails its checks first
   * waits for the hashing of the runs before it (a mismatch there is an
   * earlier seq and wins), then is judged as pushTagged judges it. Call
   * `settle` before `end`.
   *
   * `stored`: the records' full 32-byte hashes as a store holds them (export
   * makes the tags from them): each recomputed hash must equal its stored
   * hash in all 32 bytes, not just in the tag, as pushBlock checks a store
   * block; the first that differs is named.
   */
  async pushTaggedAsync(data: Uint8Array, tail: number, stored?: Uint8Array): Promise<number> {
    const before = this.inflight;
    const start = this.next;
    const cap = Math.ceil(data.length / (ENTRY_HEADER_SIZE + tail)) + 1;
    let job = this.spare;
    this.spare = undefined;
    if (job === undefined || job.offsets.length < cap) job = { offsets: new Uint32Array(Math.max(cap, 4097)), out: Buffer.allocUnsafe(Math.max(cap, 4097) * HASH_SIZE) };
    const saved = this.offsets;
    this.offsets = job.offsets;
    let r: { n: number; failure: unknown; badEntry: { start: number; end: number } | undefined };
    try {
      r = this.checkTagged(data, tail);
    } finally {
      this.offsets = saved;
    }
    if (r.failure !== undefined) {
      await before; // an earlier run's mismatch is the first failure
      this.inflight = undefined;
      this.offsets = job.offsets;
      try {
        this.failTagged(data, tail, r.n, r.failure, r.badEntry, stored);
      } finally {
        this.offsets = saved;
      }
    }
    const n = r.n;
    if (stored !== undefined && stored.length !== n * HASH_SIZE) {
      await before;
      this.inflight = undefined;
      const first = this.next - this.pending;
      this.pending = 0;
      throw new AppendlogError('BAD_ENTRY', `seq ${first}: ${stored.length / HASH_SIZE} stored hashes for ${n} entries`, { seq: first });
    }
    const { offsets, out } = job;
    const jobBuffers = job;
    const hashing = (async (): Promise<void> => {
      await before;
      let bad = await chainTaggedAsync(this.head, data, offsets, n, out, tail);
      if (stored !== undefined) bad = earlierDifference(out, stored, bad, n);
      this.pending -= n;
      this.spare = jobBuffers; // free again: the run after next may use it
      this.checkCheckpoints(start, bad >= 0 ? bad : n, out);
      if (bad >= 0) {
        throw new AppendlogError('CHAIN_HASH_MISMATCH', `seq ${start + bad}: entry hash does not match its content and predecessor (entry changed)`, {
          seq: start + bad,
        });
      }
    })();
    hashing.catch(() => undefined); // surfaced by the next push or by settle()
    this.inflight = hashing;
    // At most one run hashes while the caller reads the next. A small run
    // (a record that a chunk boundary cut, stitched together) does not wait
    // for the run before it, once in a row: waiting there would make the
    // caller's next, large run wait to be checked until the run before is
    // hashed, and reading would stop overlapping hashing. So at most a large
    // run and a small one are queued: memory stays flat.
    if (data.length < SMALL_RUN && !this.skippedWait) {
      this.skippedWait = true;
      return n;
    }
    this.skippedWait = false;
    await before;
    return n;
  }

  /** Waits for background hashing; throws its failure. */
  async settle(): Promise<void> {
    const j = this.inflight;
    this.inflight = undefined;
    await j;
  }

  /** Hashes the `n` checked tagged records at this.offsets; tags and receipts checked. */
  private chainTaggedRun(data: Uint8Array, n: number, tail: number, stored?: Uint8Array): void {
    const first = this.next - this.pending;
    this.pending = 0;
    if (this.scratch.length < n * HASH_SIZE) this.scratch = Buffer.allocUnsafe(n * HASH_SIZE);
    let bad = chainTagged(this.head, data, this.offsets, n, this.scratch, tail, true);
    if (stored !== undefined) bad = earlierDifference(this.scratch, stored, bad, n);
    // Receipts up to the first bad record are still checked first: the earlier failure wins.
    this.checkCheckpoints(first, bad >= 0 ? bad : n, this.scratch);
    if (bad >= 0) {
      throw new AppendlogError('CHAIN_HASH_MISMATCH', `seq ${first + bad}: entry hash does not match its content and predecessor (entry changed)`, {
        seq: first + bad,
      });
    }
  }

  private checkCheckpoints(first: number, n: number, hashes: Uint8Array): void {
    while (this.nextCheckpoint < this.checkpoints.length && this.checkpoints[this.nextCheckpoint]!.seq < first + n) {
      const c = this.checkpoints[this.nextCheckpoint++]!;
      const i = c.seq - first;
      if (i < 0 || !c.head.equals(hashes.subarray(i * HASH_SIZE, (i + 1) * HASH_SIZE))) {
        throw new AppendlogError(
          'RECEIPT_MISMATCH',
          `seq ${c.seq}: ${c.label}: the log VM acknowledged seq ${c.seq} with head ${c.head.toString('hex')}, but this log has a different entry there: an acknowledged entry was dropped or rewritten`,
          { seq: c.seq },
        );
      }
    }
  }

  /**
   * A malformed entry that also does not match its stored hash was changed
   * after it was written: that is the failure to report (naming its seq),
   * not the rule its new content happens to break.
   */
  private preferHashMismatch(failure: unknown, data: Uint8Array, start: number, end: number, stored: Uint8Array): void {
    if (!(failure instanceof AppendlogError) || failure.code !== 'BAD_ENTRY' || stored.length !== HASH_SIZE) return;
    const offsets = Uint32Array.of(start, end);
    const head = Buffer.from(this.head);
    if (chainEntries(head, data, offsets, 1, stored, true) === 0) {
      throw new AppendlogError('CHAIN_HASH_MISMATCH', `seq ${this.next}: entry hash does not match its content and predecessor (entry changed)`, {
        seq: this.next,
      });
    }
  }

  private isClosed(session: number): boolean {
    const byte = session >>> 3;
    return byte < this.closed.length && (this.closed[byte]! & (1 << (session & 7))) !== 0;
  }

  private markClosed(session: number): void {
    const byte = session >>> 3;
    if (byte >= this.closed.length) {
      const bigger = new Uint8Array(Math.max(byte + 1, this.closed.length * 2));
      bigger.set(this.closed);
      this.closed = bigger;
    }
    this.closed[byte]! |= 1 << (session & 7);
  }

  private grow(): void {
    const bigger = new Uint32Array(this.offsets.length * 2);
    bigger.set(this.offsets);
    this.offsets = bigger;
    this.scratch = Buffer.allocUnsafe((bigger.length - 1) * HASH_SIZE);
  }

  /** Hashes the `n` checked entries at this.offsets onto the head. */
  private chain(data: Uint8Array, n: number, stored: Uint8Array | undefined): void {
    const first = this.next - this.pending;
    this.pending = 0;
    if (stored !== undefined) {
      const bad = chainEntries(this.head, data, this.offsets, n, stored.subarray(0, n * HASH_SIZE), true);
      if (bad >= 0) {
        throw new AppendlogError(
          'CHAIN_HASH_MISMATCH',
          `seq ${first + bad}: entry hash does not match its content and predecessor (entry changed)`,
          { seq: first + bad },
        );
      }
    } else {
      if (this.scratch.length < n * HASH_SIZE) this.scratch = Buffer.allocUnsafe(n * HASH_SIZE);
      chainEntries(this.head, data, this.offsets, n, this.scratch, false);
    }
    this.checkCheckpoints(first, n, stored ?? this.scratch);
  }

  /** Structural rules for the entry at data[start, end); counts it as pending hashing. */
  private check(data: Uint8Array, start: number, end: number, decoded?: DecodedHeader): void {
    const expected = this.next;
    let h = decoded;
    if (h === undefined) {
      try {
        h = decodeHeader(data, start);
      } catch (e) {
        throw new AppendlogError('BAD_ENTRY', `seq ${expected}: the entry after seq ${expected - 1}: ${(e as Error).message}`, { seq: expected });
      }
    }
    if (h === undefined || end - start !== ENTRY_HEADER_SIZE + h.length) {
      throw new AppendlogError('BAD_ENTRY', `seq ${expected}: entry encoding has the wrong length`, { seq: expected });
    }
    if (this.seal !== null) {
      // Named by its position (seal + 1), like every other entry failure: the seq field is the attacker's.
      throw new AppendlogError('ENTRY_AFTER_SEAL', `seq ${expected}: an entry (stating seq ${h.seq}) follows the seal at seq ${this.seal.seq}`, { seq: expected });
    }
    if (h.seq !== expected) {
      throw new AppendlogError(
        'SEQ_OUT_OF_ORDER',
        `seq ${expected}: expected seq ${expected}, found seq ${h.seq} (entries missing, reordered or duplicated)`,
        { seq: expected },
      );
    }
    const kindName = KIND_NAMES[h.kind];
    if (kindName === undefined) {
      throw new AppendlogError('BAD_ENTRY', `seq ${h.seq}: unknown kind 0x${h.kind.toString(16)}`, { seq: h.seq });
    }
    if (isLineKind(h.kind)) {
      if (h.flags !== 0 && h.flags !== Flag.CONT && h.flags !== Flag.NOEOL) {
        throw new AppendlogError('BAD_ENTRY', `seq ${h.seq}: invalid flags 0x${h.flags.toString(16)}`, { seq: h.seq });
      }
      this.lines++;
      this.bytes += h.length;
    } else {
      if (h.flags !== 0) throw new AppendlogError('BAD_ENTRY', `seq ${h.seq}: ${kindName} entry with flags`, { seq: h.seq });
      if (h.length > MAX_EVENT_PAYLOAD) throw new AppendlogError('BAD_ENTRY', `seq ${h.seq}: ${kindName} payload too large`, { seq: h.seq });
    }
    if (h.kind === Kind.SESSION_OPEN) {
      if (h.session !== this.sessions + 1) {
        throw new AppendlogError('BAD_ENTRY', `seq ${h.seq}: session ${h.session} opened, expected session ${this.sessions + 1}`, { seq: h.seq });
      }
      this.sessions++;
    } else if (h.kind === Kind.SEAL) {
      if (h.session !== 0) throw new AppendlogError('BAD_ENTRY', `seq ${h.seq}: seal entry inside a session`, { seq: h.seq });
    } else if (h.session < 1 || h.session > this.sessions) {
      throw new AppendlogError('BAD_ENTRY', `seq ${h.seq}: entry of session ${h.session}, which was never opened`, { seq: h.seq });
    } else if (this.isClosed(h.session)) {
      throw new AppendlogError('BAD_ENTRY', `seq ${h.seq}: entry of session ${h.session} after that session was closed`, { seq: h.seq });
    }
    if (h.kind === Kind.CLAIM) {
      this.claims.add(parseClaim(data.subarray(start + ENTRY_HEADER_SIZE, end), 'BAD_ENTRY', h.seq));
    }
    if (h.kind === Kind.SESSION_CLOSE) {
      const reason = closeReason(data.subarray(start + ENTRY_HEADER_SIZE, end), h.seq);
      this.closes[reason] = (this.closes[reason] ?? 0) + 1;
      if (reason !== 'eof' && this.notEof.length < MAX_LISTED_SESSIONS) this.notEof.push({ session: h.session, reason, seq: h.seq });
      this.markClosed(h.session);
    }
    if (this.firstTime === null) this.firstTime = h.time;
    this.lastTime = h.time;
    if (h.kind === Kind.SEAL) {
      this.seal = { seq: h.seq, time: h.time, payload: Buffer.from(data.subarray(start + ENTRY_HEADER_SIZE, end)) };
    }
    this.next++;
    this.pending++;
  }

  /** Ends the stream; checks it against what the store or manifest recorded. */
  end(expect: ChainExpectation = {}): ChainFacts {
    const entries = this.next - 1;
    const head = this.head;
    const source = expect.source ?? 'the record';
    if (expect.entries !== undefined) {
      if (entries < expect.entries) {
        throw new AppendlogError(
          'CHAIN_TRUNCATED',
          `seq ${entries + 1}: chain ends at seq ${entries} but ${source} says ${expect.entries} entries (tail missing from seq ${entries + 1})`,
          { seq: entries + 1 },
        );
      }
      if (entries > expect.entries) {
        throw new AppendlogError(
          'HEAD_MISMATCH',
          `seq ${expect.entries + 1}: chain has ${entries} entries but ${source} says ${expect.entries} (entries added from seq ${expect.entries + 1})`,
          { seq: expect.entries + 1 },
        );
      }
    }
    if (this.nextCheckpoint < this.checkpoints.length) {
      const c = this.checkpoints[this.nextCheckpoint]!;
      throw new AppendlogError(
        'RECEIPT_MISMATCH',
        `seq ${entries + 1}: ${c.label}: the log VM acknowledged ${c.seq} entries, but this log ends at seq ${entries}: acknowledged entries are missing`,
        { seq: entries + 1 },
      );
    }
    if (expect.head !== undefined && !head.equals(expect.head)) {
      throw new AppendlogError(
        'HEAD_MISMATCH',
        `seq ${entries}: head hash ${head.toString('hex')} differs from ${source} ${Buffer.from(expect.head).toString('hex')} (chain rewritten)`,
        { seq: entries },
      );
    }
    const claims = this.claims.summary();
    return {
      identity: this.identity,
      genesis: this.genesis.toString('hex'),
      entries,
      head: head.toString('hex'),
      lines: this.lines,
      bytes: this.bytes,
      sessions: this.sessions,
      closes: { ...this.closes },
      notEof: [...this.notEof],
      firstTime: this.firstTime,
      lastTime: this.lastTime,
      seal: this.seal,
      ...(claims !== undefined ? { claims } : {}),
    };
  }
}

/**
 * Why a session ended: the closed set of docs/FORMAT.md 3.5. The log VM
 * writes one of these, nothing else. (A session cut by a seal ends with no
 * close entry at all, so `sealed` is not a close reason: a close that says
 * so was not written by the log VM.)
 */
export const CLOSE_REASONS = ['eof', 'error', 'signal', 'refused', 'quota', 'lost', 'idle'] as const;
export type CloseReason = (typeof CLOSE_REASONS)[number];

const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** E7: strict UTF-8, strict JSON (5.1), an object with a `reason` of the closed set. */
function closeReason(payload: Uint8Array, seq: number): CloseReason {
  let v: unknown;
  try {
    v = parseStrictJson(strictUtf8.decode(payload));
  } catch {
    v = undefined;
  }
  const r = v !== null && typeof v === 'object' ? (v as { reason?: unknown }).reason : undefined;
  if (typeof r === 'string' && (CLOSE_REASONS as readonly string[]).includes(r)) return r as CloseReason;
  throw new AppendlogError('BAD_ENTRY', `seq ${seq}: session-close entry without a known reason`, { seq });
}

/** Runs smaller than this may be queued behind one run being hashed (pushTaggedAsync). */
const SMALL_RUN = 64 * 1024;

/**
 * After chainTagged over `n` records found its first tag mismatch at `bad`
 * (-1: none; the hashes up to it are in `computed`): the first record whose
 * hash differs from its stored full hash, if that comes earlier, else `bad`.
 */
function earlierDifference(computed: Uint8Array, stored: Uint8Array, bad: number, n: number): number {
  const d = firstDifferent(computed, stored, bad >= 0 ? bad + 1 : n);
  return d >= 0 ? d : bad;
}

/** The first of the first `n` 32-byte hashes that differs between `computed` and `stored` (one missing from `stored` differs), else -1. */
function firstDifferent(computed: Uint8Array, stored: Uint8Array, n: number): number {
  const a = Buffer.from(computed.buffer, computed.byteOffset, computed.byteLength);
  const b = Buffer.from(stored.buffer, stored.byteOffset, stored.byteLength);
  const len = n * HASH_SIZE;
  // One comparison for the usual case (all equal), then the exact index.
  if (b.length >= len && a.compare(b, 0, len, 0, len) === 0) return -1;
  for (let i = 0; i < n; i++) {
    const at = i * HASH_SIZE;
    if (b.length < at + HASH_SIZE || a.compare(b, at, at + HASH_SIZE, at, at + HASH_SIZE) !== 0) return i;
  }
  return -1;
}
