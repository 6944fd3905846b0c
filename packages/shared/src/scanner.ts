import { DEFAULT_MAX_LINE, Flag } from './constants.js';

/**
 * Byte-exact line scanner for the ingest path. Splits on `\n` (0x0a) only;
 * every other byte (`\r`, NUL, invalid UTF-8, escape sequences) is passed
 * through untouched. Lines longer than `maxLine` become consecutive chunks of
 * exactly `maxLine` bytes flagged CONT, so memory stays bounded by `maxLine`
 * whatever the input. A chunk is only cut once a further byte of the same line
 * has been seen, so the entries depend on the bytes alone, never on how the
 * input was split into reads. At end of input a pending line is emitted with
 * NOEOL.
 *
 * The payload handed to `emit` is only valid during the call: it may point
 * into the caller's chunk or the scanner's own buffer.
 */
export type EmitLine = (payload: Buffer, flags: number) => void;

/**
 * A bulk path (BlockBuilder.addLines): takes whole lines of at most maxLine
 * bytes of `chunk` from `pos` on, as `emit(line, 0)` would, and returns the
 * position reached (`pos` when it takes none).
 */
export type BulkLines = (chunk: Buffer, pos: number) => number;

export class LineScanner {
  private readonly maxLine: number;
  private readonly pending: Buffer;
  private pendingLength = 0;
  /** Whether the current line already produced a CONT chunk. */
  private inLine = false;

  constructor(maxLine: number = DEFAULT_MAX_LINE) {
    if (!Number.isInteger(maxLine) || maxLine < 1) throw new RangeError('maxLine must be a positive integer');
    this.maxLine = maxLine;
    this.pending = Buffer.allocUnsafe(maxLine);
  }

  /** Bytes held back waiting for the end of the current line. */
  get buffered(): number {
    return this.pendingLength;
  }

  push(chunk: Buffer, emit: EmitLine, bulk?: BulkLines): void {
    const max = this.maxLine;
    let pos = 0;
    const len = chunk.length;
    while (pos < len) {
      if (bulk !== undefined && this.pendingLength === 0) {
        // At a line start: whole short lines go in bulk; the loop below takes
        // the one it stopped at (no newline yet, or longer than maxLine).
        const reached = bulk(chunk, pos);
        if (reached > pos) {
          this.inLine = false;
          pos = reached;
          if (pos >= len) break;
        }
      }
      const nl = chunk.indexOf(10, pos);
      const end = nl < 0 ? len : nl;
      // Bytes chunk[pos, end) extend the current line.
      if (this.pendingLength === 0) {
        // Fast path: cut whole chunks straight out of the input.
        while (end - pos > max) {
          emit(chunk.subarray(pos, pos + max), Flag.CONT);
          pos += max;
          this.inLine = true;
        }
        if (nl >= 0) {
          emit(chunk.subarray(pos, end), 0);
          this.inLine = false;
          pos = nl + 1;
          continue;
        }
      } else {
        while (pos < end) {
          if (this.pendingLength === max) {
            // A further byte of this line exists, so the full buffer is a CONT chunk.
            emit(this.pending.subarray(0, max), Flag.CONT);
            this.pendingLength = 0;
            this.inLine = true;
          }
          const n = Math.min(end - pos, max - this.pendingLength);
          chunk.copy(this.pending, this.pendingLength, pos, pos + n);
          this.pendingLength += n;
          pos += n;
        }
        if (nl >= 0) {
          emit(this.pending.subarray(0, this.pendingLength), 0);
          this.pendingLength = 0;
          this.inLine = false;
          pos = nl + 1;
        }
        continue;
      }
      // No newline in the rest of this chunk: keep it (at most `max` bytes).
      chunk.copy(this.pending, 0, pos, end);
      this.pendingLength = end - pos;
      pos = end;
    }
  }

  /**
   * End of input. A line without its newline is emitted with NOEOL; so is the
   * empty rest of a line whose chunks were all emitted with CONT.
   */
  end(emit: EmitLine): void {
    if (this.pendingLength > 0 || this.inLine) {
      emit(this.pending.subarray(0, this.pendingLength), Flag.NOEOL);
    }
    this.pendingLength = 0;
    this.inLine = false;
  }
}
