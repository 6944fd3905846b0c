import { AppendlogError } from './errors.js';
import {
  ENTRY_HEADER_SIZE,
  FORMAT_VERSION,
  GENESIS_PREFIX,
  MAX_PAYLOAD,
  MAX_SAFE,
} from './constants.js';

/**
 * Canonical entry encoding (docs/FORMAT.md section 3), all integers big-endian:
 *
 *   offset size field
 *        0    8 seq      (u64, 1-based, gap-free)
 *        8    8 time     (u64, log VM receive time, ms since the Unix epoch)
 *       16    4 session  (u32, 0 = no session: the seal)
 *       20    1 kind     (u8)
 *       21    1 flags    (u8)
 *       22    4 length   (u32, payload bytes)
 *       26    n payload  (bytes exactly as received)
 *
 * A fixed layout costs a few stores per entry; JSON with base64 costs an order
 * of magnitude more and has several encodings of one value.
 */
export interface Entry {
  seq: number;
  time: number;
  session: number;
  kind: number;
  flags: number;
  payload: Uint8Array;
}

const TWO32 = 2 ** 32;

export function writeU64(buf: Uint8Array, off: number, value: number): void {
  const hi = Math.floor(value / TWO32);
  const lo = value >>> 0;
  buf[off] = hi >>> 24;
  buf[off + 1] = (hi >>> 16) & 0xff;
  buf[off + 2] = (hi >>> 8) & 0xff;
  buf[off + 3] = hi & 0xff;
  buf[off + 4] = lo >>> 24;
  buf[off + 5] = (lo >>> 16) & 0xff;
  buf[off + 6] = (lo >>> 8) & 0xff;
  buf[off + 7] = lo & 0xff;
}

export function readU32(buf: Uint8Array, off: number): number {
  return ((buf[off]! << 24) >>> 0) + ((buf[off + 1]! << 16) | (buf[off + 2]! << 8) | buf[off + 3]!);
}

export function writeU32(buf: Uint8Array, off: number, value: number): void {
  buf[off] = value >>> 24;
  buf[off + 1] = (value >>> 16) & 0xff;
  buf[off + 2] = (value >>> 8) & 0xff;
  buf[off + 3] = value & 0xff;
}

/** Reads a u64; returns -1 when it exceeds 2^53 - 1 (the format's limit). */
export function readU64(buf: Uint8Array, off: number): number {
  const hi = readU32(buf, off);
  if (hi > 0x1fffff) return -1;
  return hi * TWO32 + readU32(buf, off + 4);
}

export function encodedSize(payloadLength: number): number {
  return ENTRY_HEADER_SIZE + payloadLength;
}

/** Writes the entry header at `off`; the payload goes at off + ENTRY_HEADER_SIZE. */
export function writeHeader(
  buf: Uint8Array,
  off: number,
  seq: number,
  time: number,
  session: number,
  kind: number,
  flags: number,
  length: number,
): void {
  writeU64(buf, off, seq);
  writeU64(buf, off + 8, time);
  writeU32(buf, off + 16, session);
  buf[off + 20] = kind;
  buf[off + 21] = flags;
  writeU32(buf, off + 22, length);
}

export function encodeEntry(e: Entry): Buffer {
  checkEntryFields(e);
  const out = Buffer.allocUnsafe(ENTRY_HEADER_SIZE + e.payload.length);
  writeHeader(out, 0, e.seq, e.time, e.session, e.kind, e.flags, e.payload.length);
  out.set(e.payload, ENTRY_HEADER_SIZE);
  return out;
}

function checkEntryFields(e: Entry): void {
  const int = (v: number, max: number): boolean => Number.isInteger(v) && v >= 0 && v <= max;
  if (!int(e.seq, MAX_SAFE) || !int(e.time, MAX_SAFE) || !int(e.session, 0xffffffff) || !int(e.kind, 0xff) || !int(e.flags, 0xff)) {
    throw new AppendlogError('BAD_ENTRY', 'entry field out of range', { seq: Number.isSafeInteger(e.seq) ? e.seq : undefined });
  }
  if (e.payload.length > MAX_PAYLOAD) {
    throw new AppendlogError('BAD_ENTRY', `payload of ${e.payload.length} bytes exceeds the format limit`, { seq: e.seq });
  }
}

export interface DecodedHeader {
  seq: number;
  time: number;
  session: number;
  kind: number;
  flags: number;
  length: number;
}

/**
 * Decodes the header at `off` in `buf`. Returns undefined when fewer than a
 * header's bytes remain; throws BAD_ENTRY on values the format forbids.
 */
export function decodeHeader(buf: Uint8Array, off: number): DecodedHeader | undefined {
  if (buf.length - off < ENTRY_HEADER_SIZE) return undefined;
  const seq = readU64(buf, off);
  const time = readU64(buf, off + 8);
  const length = readU32(buf, off + 22);
  if (seq < 0 || time < 0) throw new AppendlogError('BAD_ENTRY', 'seq or time beyond 2^53 - 1');
  if (length > MAX_PAYLOAD) throw new AppendlogError('BAD_ENTRY', `payload length ${length} exceeds the format limit`, { seq });
  return { seq, time, session: readU32(buf, off + 16), kind: buf[off + 20]!, flags: buf[off + 21]!, length };
}

export function decodeEntry(buf: Uint8Array, off = 0): { entry: Entry; next: number } {
  const h = decodeHeader(buf, off);
  if (h === undefined || buf.length - off - ENTRY_HEADER_SIZE < h.length) {
    throw new AppendlogError('BAD_ENTRY', 'entry encoding is truncated', { seq: h?.seq });
  }
  const start = off + ENTRY_HEADER_SIZE;
  const payload = buf.subarray(start, start + h.length);
  return {
    entry: { seq: h.seq, time: h.time, session: h.session, kind: h.kind, flags: h.flags, payload },
    next: start + h.length,
  };
}

/** Genesis input (docs/FORMAT.md section 2): what the first hash commits to. */
export interface LogIdentity {
  vm: string;
  name: string;
  /** Log creation time in the log VM, ms since the Unix epoch. */
  created: number;
}

export function encodeGenesis(id: LogIdentity): Buffer {
  if (!Number.isSafeInteger(id.created) || id.created < 0) throw new AppendlogError('BAD_ENTRY', 'log creation time out of range');
  const vm = Buffer.from(id.vm, 'utf8');
  const name = Buffer.from(id.name, 'utf8');
  if (vm.length > 255 || name.length > 255) throw new AppendlogError('BAD_ENTRY', 'log identity too long');
  const out = Buffer.alloc(GENESIS_PREFIX.length + 1 + 1 + vm.length + 1 + name.length + 8);
  let o = GENESIS_PREFIX.copy(out, 0);
  out[o++] = FORMAT_VERSION;
  out[o++] = vm.length;
  o += vm.copy(out, o);
  out[o++] = name.length;
  o += name.copy(out, o);
  writeU64(out, o, id.created);
  return out;
}
