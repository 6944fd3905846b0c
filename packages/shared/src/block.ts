import { ENTRY_HEADER_SIZE, HASH_SIZE, MAX_PAYLOAD, isLineKind } from './constants.js';
import { writeHeader } from './encoding.js';
import { chainEntriesStart, chainNumbered, nativeAddLines, type ChainJob } from './chain.js';

/**
 * Collects entries for one committed batch as their canonical encodings laid
 * end to end. Seq numbers are assigned in `finish`, inside the store's write
 * transaction, when the log's current head is known; until then each header
 * holds seq 0. The store keeps the encodings as one row per batch, which is
 * what lets ingest beat a row-per-line design (docs/FORMAT.md section 7).
 */
export interface FinishedBlock {
  data: Buffer;
  hashes: Buffer;
  count: number;
  firstSeq: number;
  head: Buffer;
  /** Payload bytes of line entries. */
  lineBytes: number;
  lines: number;
  firstTime: number;
  lastTime: number;
}

/** addLines' results: position, used, count, lines, line bytes, stopped for room. */
const ADD_LINES_RESULT = new Float64Array(6);

/**
 * A batch numbered and chained onto a head it was given before the store's
 * transaction (`BlockBuilder.start`), on a thread of its own: `join` gives
 * the block. The store commits it as it is when the log's head is still
 * `prev` at `firstSeq - 1`; else (another session's batch came first) it
 * numbers and chains the builder again on the true head (`finish`).
 */
export class PendingBlock {
  private block: FinishedBlock | null = null;

  constructor(
    readonly builder: BlockBuilder,
    readonly firstSeq: number,
    /** The head the batch was chained onto (a copy). */
    readonly prev: Buffer,
    private readonly job: ChainJob,
    private readonly make: () => FinishedBlock,
  ) {}

  get count(): number {
    return this.builder.count;
  }

  /** Waits for the hashing thread (rarely still running) and gives the block. */
  join(): FinishedBlock {
    if (this.block === null) {
      this.job.join();
      this.block = this.make();
    }
    return this.block;
  }
}

export class BlockBuilder {
  private buf: Buffer;
  /** Set while a thread numbers and hashes this builder's entries (start); add and reset wait for / refuse it. */
  private pending: PendingBlock | null = null;
  /** Where `start` puts the hashes (grown as needed; given back in reset after a burst). */
  private hashBuf: Buffer = Buffer.alloc(0);
  private used = 0;
  private offsets: Uint32Array;
  private n = 0;
  private lineBytesSum = 0;
  private lines = 0;
  private firstTime = 0;
  private lastTime = 0;

  constructor(initialBytes = 1 << 20) {
    this.buf = Buffer.allocUnsafe(initialBytes);
    this.offsets = new Uint32Array(4096);
  }

  get count(): number {
    return this.n;
  }

  get byteLength(): number {
    return this.used;
  }

  /** Payload bytes of the line entries added so far (what quotas count). */
  get lineBytes(): number {
    return this.lineBytesSum;
  }

  add(time: number, session: number, kind: number, flags: number, payload: Uint8Array): void {
    if (this.pending !== null) throw new Error('BlockBuilder: entries added while the batch is being hashed');
    if (payload.length > MAX_PAYLOAD) throw new RangeError('payload exceeds MAX_PAYLOAD');
    const size = ENTRY_HEADER_SIZE + payload.length;
    this.room(size);
    this.offsets[this.n++] = this.used;
    writeHeader(this.buf, this.used, 0, time, session, kind, flags, payload.length);
    this.buf.set(payload, this.used + ENTRY_HEADER_SIZE);
    this.used += size;
    if (isLineKind(kind)) {
      this.lines++;
      this.lineBytesSum += payload.length;
    }
    if (this.n === 1) this.firstTime = time;
    this.lastTime = time;
  }

  /**
   * Adds one entry of `kind` (a line kind) for each whole line of `src` from
   * `pos` on, each ending in `\n` (not stored) and at most `maxLine` bytes,
   * as `add(time, session, kind, 0, line)` would, and returns the position
   * reached: it stops before the first line that is not whole or is longer
   * (LineScanner takes that one). This is the addon's bulk path, one call per
   * read instead of a Buffer and a call per line; without the addon it adds
   * nothing and returns `pos`, and LineScanner does it all.
   */
  addLines(time: number, session: number, kind: number, src: Uint8Array, pos: number, maxLine: number): number {
    const addLines = nativeAddLines();
    if (addLines === null || !isLineKind(kind) || maxLine > MAX_PAYLOAD) return pos;
    if (this.pending !== null) throw new Error('BlockBuilder: entries added while the batch is being hashed');
    const res = ADD_LINES_RESULT;
    for (;;) {
      addLines(src, pos, this.buf, this.used, this.offsets, this.n, maxLine, time, session, kind, res);
      if (res[2]! > this.n) {
        if (this.n === 0) this.firstTime = time;
        this.lastTime = time;
      }
      pos = res[0]!;
      this.used = res[1]!;
      this.n = res[2]!;
      this.lines += res[3]!;
      this.lineBytesSum += res[4]!;
      if (res[5] === 0) return pos;
      // Out of room for the next line: grow as add does, and go on.
      this.room(ENTRY_HEADER_SIZE + maxLine);
    }
  }

  /** Room for one more entry of `size` bytes (and its offset, with one to spare for `finish`): the buffers double as needed. */
  private room(size: number): void {
    if (this.used + size > this.buf.length) {
      const bigger = Buffer.allocUnsafe(Math.max(this.used + size, this.buf.length * 2));
      this.buf.copy(bigger, 0, 0, this.used);
      this.buf = bigger;
    }
    if (this.n + 1 >= this.offsets.length) {
      const bigger = new Uint32Array(this.offsets.length * 2);
      bigger.set(this.offsets);
      this.offsets = bigger;
    }
  }

  /**
   * Numbers the entries from `firstSeq` and chains them onto `head` (not
   * modified). The returned data is a view into the builder: use it before
   * `reset`.
   */
  finish(firstSeq: number, head: Uint8Array): FinishedBlock {
    // A pending hash of the same bytes (start) must be done before they are renumbered.
    this.pending?.join();
    this.pending = null;
    const n = this.endOffsets();
    const hashes = Buffer.allocUnsafe(n * HASH_SIZE);
    const h = Buffer.from(head);
    chainNumbered(h, this.buf, this.offsets, n, hashes, firstSeq);
    return {
      data: this.buf.subarray(0, this.used),
      hashes,
      count: n,
      firstSeq,
      head: h,
      lineBytes: this.lineBytesSum,
      lines: this.lines,
      firstTime: this.firstTime,
      lastTime: this.lastTime,
    };
  }

  /** Closes the offsets (offsets[n] = the end of the last entry, as chainEntries wants them); returns n. */
  private endOffsets(): number {
    const n = this.n;
    if (this.offsets.length < n + 1) {
      const bigger = new Uint32Array(n + 1);
      bigger.set(this.offsets.subarray(0, n));
      this.offsets = bigger;
    }
    this.offsets[n] = this.used;
    return n;
  }

  /**
   * `finish` on a thread of its own (the addon; without it, here and now):
   * the entries are numbered from `firstSeq` and chained onto `head` while
   * the caller goes on. Nothing may be added until the builder is reset.
   * The block's data and hashes are views into the builder: use them before
   * `reset`.
   */
  start(firstSeq: number, head: Uint8Array): PendingBlock {
    this.pending?.join();
    const n = this.endOffsets();
    // The builder's own, reused: a fresh buffer per batch is garbage the
    // collector (rarely run on the bulk path) lets pile up as external memory.
    if (this.hashBuf.length < n * HASH_SIZE) this.hashBuf = Buffer.allocUnsafe(Math.max(n * HASH_SIZE, this.hashBuf.length * 2));
    const hashes = this.hashBuf.subarray(0, n * HASH_SIZE);
    const h = Buffer.from(head);
    const prev = Buffer.from(head);
    const job = chainEntriesStart(h, this.buf, this.offsets, n, hashes, firstSeq);
    const data = this.buf.subarray(0, this.used);
    const { lineBytesSum: lineBytes, lines, firstTime, lastTime } = this;
    const pending = new PendingBlock(this, firstSeq, prev, job, () => ({ data, hashes, count: n, firstSeq, head: h, lineBytes, lines, firstTime, lastTime }));
    this.pending = pending;
    return pending;
  }

  reset(): void {
    // Never reuse bytes a hashing thread may still read.
    try {
      this.pending?.join();
    } catch {
      // hashing failed: its hashes are dropped with the batch
    }
    this.pending = null;
    this.used = 0;
    this.n = 0;
    this.lineBytesSum = 0;
    this.lines = 0;
    // Give back memory after a burst of long lines (or of empty ones).
    if (this.buf.length > 8 << 20) this.buf = Buffer.allocUnsafe(1 << 20);
    if (this.hashBuf.length > 8 << 20) this.hashBuf = Buffer.alloc(0);
  }
}
