import { ENTRY_HEADER_SIZE, HASH_SIZE, MAX_PAYLOAD, isLineKind } from './constants.js';
import { writeHeader, writeU64 } from './encoding.js';
import { chainEntries } from './chain.js';

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

export class BlockBuilder {
  private buf: Buffer;
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
    if (payload.length > MAX_PAYLOAD) throw new RangeError('payload exceeds MAX_PAYLOAD');
    const size = ENTRY_HEADER_SIZE + payload.length;
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
   * Numbers the entries from `firstSeq` and chains them onto `head` (not
   * modified). The returned data is a view into the builder: use it before
   * `reset`.
   */
  finish(firstSeq: number, head: Uint8Array): FinishedBlock {
    const n = this.n;
    if (this.offsets.length < n + 1) {
      const bigger = new Uint32Array(n + 1);
      bigger.set(this.offsets.subarray(0, n));
      this.offsets = bigger;
    }
    this.offsets[n] = this.used;
    for (let i = 0; i < n; i++) writeU64(this.buf, this.offsets[i]!, firstSeq + i);
    const hashes = Buffer.allocUnsafe(n * HASH_SIZE);
    const h = Buffer.from(head);
    chainEntries(h, this.buf, this.offsets, n, hashes, false);
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

  reset(): void {
    this.used = 0;
    this.n = 0;
    this.lineBytesSum = 0;
    this.lines = 0;
    // Give back memory after a burst of long lines.
    if (this.buf.length > 8 << 20) this.buf = Buffer.allocUnsafe(1 << 20);
  }
}
