import { AppendlogError } from './errors.js';
import { ENTRY_HEADER_SIZE, HASH_SIZE, KIND_NAMES, MAX_PAYLOAD } from './constants.js';
import { isUtf8 } from 'node:buffer';
import { writeHeader } from './encoding.js';
import { interleaveTags } from './chain.js';

/**
 * Bundle entry records (docs/FORMAT.md section 9): one JSON object per line
 * of entries.jsonl, in seq order:
 *   {"seq":1,"time":1732412345678,"session":1,"kind":"line","flags":0,"text":"...","hash":"<64 hex>"}
 * The payload is `text` when it is valid UTF-8 (JSON escapes any control
 * character) and `base64` otherwise, so any bytes survive exactly. `hash` is
 * the entry's chain hash: it lets a verifier name the first changed seq.
 */
export const BUNDLE_FILES = {
  manifest: 'manifest.json',
  entries: 'entries.jsonl',
  signatures: 'signatures',
} as const;

/** Longest entries.jsonl line a verifier accepts (a MAX_PAYLOAD entry in base64, plus fields). */
export const MAX_RECORD_CHARS = Math.ceil((MAX_PAYLOAD * 4) / 3) + 4096;

const KIND_BY_NAME = new Map(Object.entries(KIND_NAMES).map(([k, v]) => [v, Number(k)]));
// ignoreBOM: a line may start with U+FEFF; it is payload, not a byte-order mark.
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
// No repeated group: a linear scan, whatever the length.
const BASE64_CHARS = /^[A-Za-z0-9+/]*={0,2}$/;

export interface EntryRecordInput {
  seq: number;
  time: number;
  session: number;
  kind: number;
  flags: number;
  payload: Uint8Array;
  hash: Uint8Array;
}

/** Formats one entries.jsonl line (with its newline). */
export function formatRecord(e: EntryRecordInput): string {
  // `text` when the payload is valid UTF-8 and its JSON string is no longer
  // than base64 would be (control bytes cost 6 characters each as \u00XX),
  // so no record is longer than MAX_RECORD_CHARS; `base64` otherwise.
  let body: string | undefined;
  const base64Length = 4 * Math.ceil(e.payload.length / 3);
  try {
    const text = JSON.stringify(strictUtf8.decode(e.payload));
    // Compared in bytes, as readers limit record length in bytes.
    if (text.length <= base64Length + 2 && Buffer.byteLength(text, 'utf8') <= base64Length + 2) body = `"text":${text}`;
  } catch {
    body = undefined;
  }
  body ??= `"base64":"${Buffer.from(e.payload.buffer, e.payload.byteOffset, e.payload.length).toString('base64')}"`;
  const kind = KIND_NAMES[e.kind] ?? String(e.kind);
  return `{"seq":${e.seq},"time":${e.time},"session":${e.session},"kind":"${kind}","flags":${e.flags},${body},"hash":"${Buffer.from(e.hash).toString('hex')}"}\n`;
}

/**
 * Parsed entries.jsonl records collected end to end as canonical encodings,
 * with their stated hashes, ready for ChainVerifier.pushBlock.
 */
export class RecordBatch {
  data = Buffer.allocUnsafe(1 << 20);
  hashes = Buffer.allocUnsafe(4096 * HASH_SIZE);
  used = 0;
  count = 0;

  get full(): boolean {
    return this.count === 4096 || this.used >= 1 << 20;
  }

  /** Room for one more entry with `payloadBytes` of payload; returns its offset. */
  reserve(payloadBytes: number): number {
    const need = this.used + ENTRY_HEADER_SIZE + payloadBytes;
    if (need > this.data.length) {
      const bigger = Buffer.allocUnsafe(Math.max(this.data.length * 2, need));
      this.data.copy(bigger, 0, 0, this.used);
      this.data = bigger;
    }
    return this.used;
  }

  /** Offset of the next entry's stated hash in `hashes` (growing it if need be). */
  hashSlot(): number {
    const off = this.count * HASH_SIZE;
    if (off + HASH_SIZE > this.hashes.length) {
      const bigger = Buffer.allocUnsafe(this.hashes.length * 2);
      this.hashes.copy(bigger, 0, 0, off);
      this.hashes = bigger;
    }
    return off;
  }

  clear(): void {
    this.used = 0;
    this.count = 0;
    if (this.data.length > 8 << 20) this.data = Buffer.allocUnsafe(1 << 20);
  }
}

function bad(lineNo: number, msg: string): never {
  throw new AppendlogError('MALFORMED_BUNDLE', `entries.jsonl line ${lineNo}: ${msg}`, { line: lineNo });
}


/** Writes one record into the batch (header and payload; its stated hash is already in place). */
function put(batch: RecordBatch, lineNo: number, seq: number, time: number, session: number, kind: number, flags: number, payload: string | Buffer): void {
  const length = typeof payload === 'string' ? Buffer.byteLength(payload, 'utf8') : payload.length;
  if (length > MAX_PAYLOAD) bad(lineNo, 'payload exceeds the format limit');
  const off = batch.reserve(length);
  writeHeader(batch.data, off, seq, time, session, kind, flags, length);
  if (typeof payload === 'string') batch.data.write(payload, off + ENTRY_HEADER_SIZE, length, 'utf8');
  else payload.copy(batch.data, off + ENTRY_HEADER_SIZE);
  batch.used = off + ENTRY_HEADER_SIZE + length;
  batch.count++;
}

/**
 * Parses one line of an untrusted entries.jsonl into the batch. A record has
 * exactly the layout `formatRecord` writes (fields in that order, no
 * whitespace; the payload as `text` or `base64`), so every record has one
 * reading: no duplicate fields, no parser differences. Any deviation (broken
 * JSON, unknown, missing or repeated fields, wrong types, huge numbers, bad
 * base64, upper-case hex, bytes that are not UTF-8) is a coded
 * MALFORMED_BUNDLE naming the line.
 *
 * It works on the line's bytes: a `text` without escapes is copied straight
 * into the entry (after a UTF-8 check), with no string decoding at all.
 */
export function parseRecordBytes(line: Buffer, lineNo: number, batch: RecordBatch): void {
  if (line.length > MAX_RECORD_CHARS) bad(lineNo, 'line too long');
  let i = lit(line, 0, L_SEQ);
  if (i < 0) bad(lineNo, 'not a record: expected {"seq":');
  const seq = digitsAt(line, i);
  if (seq < 1) bad(lineNo, 'seq is not a positive safe integer');
  if ((i = lit(line, numEnd, L_TIME)) < 0) bad(lineNo, 'expected "time" after "seq"');
  const time = digitsAt(line, i);
  if (time < 0) bad(lineNo, 'time is not a non-negative safe integer');
  if ((i = lit(line, numEnd, L_SESSION)) < 0) bad(lineNo, 'expected "session" after "time"');
  const session = digitsAt(line, i);
  if (session < 0 || session > 0xffffffff) bad(lineNo, 'session is not a u32');
  if ((i = lit(line, numEnd, L_KIND)) < 0) bad(lineNo, 'expected "kind" after "session"');
  const q = line.indexOf(0x22, i);
  const kind = q < 0 || q - i > 16 ? undefined : KIND_BY_NAME.get(line.toString('latin1', i, q));
  if (kind === undefined) bad(lineNo, 'kind is not a known kind name');
  if ((i = lit(line, q, L_FLAGS)) < 0) bad(lineNo, 'expected "flags" after "kind"');
  const flags = digitsAt(line, i);
  if (flags < 0 || flags > 0xff) bad(lineNo, 'flags is not a u8');
  const afterFlags = numEnd;
  // The rest is "text":"..." or "base64":"...", then ,"hash":"<64 hex>"}
  const tail = line.length - 76;
  if (tail < afterFlags || lit(line, tail, L_HASH) < 0 || line[line.length - 2] !== 0x22 || line[line.length - 1] !== 0x7d) {
    bad(lineNo, 'expected ,"hash":"<64 hex digits>"} at the end');
  }
  if (!hexInto(line, tail + 10, batch.hashes, batch.hashSlot())) bad(lineNo, 'hash is not 64 lowercase hex digits');
  if ((i = lit(line, afterFlags, L_TEXT)) >= 0) {
    const raw = line.subarray(i, tail);
    if (plainText(raw)) {
      if (!isUtf8(raw)) bad(lineNo, 'text is not valid UTF-8');
      put(batch, lineNo, seq, time, session, kind, flags, raw);
    } else {
      // Escapes (\u001b of colour codes, \t, \"): decode the string literal
      // alone; it must be exactly one valid JSON string.
      let text: string;
      try {
        text = JSON.parse(`"${utf8.decode(raw)}"`) as string;
      } catch {
        bad(lineNo, 'text is not a valid JSON string of UTF-8');
      }
      put(batch, lineNo, seq, time, session, kind, flags, text);
    }
  } else if ((i = lit(line, afterFlags, L_BASE64)) >= 0) {
    const raw = line.toString('latin1', i, tail);
    // Canonical base64: decoding and encoding again gives the same text (alphabet, padding, zero pad bits).
    const payload = raw.length % 4 === 0 && BASE64_CHARS.test(raw) ? Buffer.from(raw, 'base64') : null;
    if (payload === null || payload.toString('base64') !== raw) bad(lineNo, 'base64 is not canonical base64');
    put(batch, lineNo, seq, time, session, kind, flags, payload);
  } else {
    bad(lineNo, 'expected "text" or "base64" after "flags"');
  }
}

/** The same for a line already decoded to a string (tests, tools). */
export function parseRecordInto(line: string, lineNo: number, batch: RecordBatch): void {
  parseRecordBytes(Buffer.from(line, 'utf8'), lineNo, batch);
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const L_SEQ = Buffer.from('{"seq":');
const L_TIME = Buffer.from(',"time":');
const L_SESSION = Buffer.from(',"session":');
const L_KIND = Buffer.from(',"kind":"');
const L_FLAGS = Buffer.from('","flags":');
const L_TEXT = Buffer.from(',"text":"');
const L_BASE64 = Buffer.from(',"base64":"');
const L_HASH = Buffer.from('","hash":"');

/** Index after `lit` if it stands at `i`, else -1. */
function lit(b: Buffer, i: number, l: Buffer): number {
  if (i < 0 || i + l.length > b.length) return -1;
  for (let k = 0; k < l.length; k++) if (b[i + k] !== l[k]) return -1;
  return i + l.length;
}

/** Where the last digitsAt stopped. */
let numEnd = 0;

/** A JSON non-negative integer without leading zeros at `i` (at most 2^53 - 1), or -1. */
function digitsAt(b: Buffer, i: number): number {
  let v = 0;
  let k = i;
  while (k < b.length && b[k]! >= 0x30 && b[k]! <= 0x39) v = v * 10 + (b[k++]! - 0x30);
  numEnd = k;
  const n = k - i;
  if (n === 0 || n > 16 || (n > 1 && b[i] === 0x30) || !Number.isSafeInteger(v)) return -1;
  return v;
}

/** No quote, backslash or control byte: the JSON string's bytes are its value's bytes. */
function plainText(raw: Buffer): boolean {
  for (let k = 0; k < raw.length; k++) {
    const c = raw[k]!;
    if (c < 0x20 || c === 0x22 || c === 0x5c) return false;
  }
  return true;
}

const HEXVAL = new Int8Array(256).fill(-1);
for (let c = 0; c < 10; c++) HEXVAL[0x30 + c] = c;
for (let c = 0; c < 6; c++) HEXVAL[0x61 + c] = 10 + c;

/** 64 lowercase hex digits at `at` into 32 bytes of `out`; false if they are not. */
function hexInto(b: Buffer, at: number, out: Buffer, off: number): boolean {
  for (let k = 0; k < HASH_SIZE; k++) {
    const hi = HEXVAL[b[at + 2 * k]!]!;
    const lo = HEXVAL[b[at + 2 * k + 1]!]!;
    if (hi < 0 || lo < 0) return false;
    out[off + k] = (hi << 4) | lo;
  }
  return true;
}



/**
 * Bundle version 2 entries (docs/FORMAT.md section 9.7): `entries.bin`, the
 * entries' canonical encodings (3.1) in seq order, each followed by a check
 * tag, the first TAG_BYTES bytes of its hash Hn. The verifier recomputes
 * every hash anyway; the tag only tells it which seq changed.
 */
export const TAG_BYTES = 8;

/**
 * Version 2 records for a run of entries laid end to end (a store block)
 * with their 32-byte hashes: each encoding followed by its tag.
 */
export function tagRecords(data: Uint8Array, hashes: Uint8Array, count: number, out?: Buffer): Buffer {
  const size = data.length + count * TAG_BYTES;
  const dst = out !== undefined && out.length >= size ? out : Buffer.allocUnsafe(size);
  const n = interleaveTags(data, hashes, count, TAG_BYTES, dst);
  if (n !== size) throw new RangeError('tagRecords: data does not hold the entries');
  return dst.subarray(0, size);
}

/**
 * Cuts a stream of version 2 records into runs of whole records, in
 * constant memory (one record of at most MAX_PAYLOAD is the most it holds),
 * whatever the chunk boundaries. `sink` gets each run; a record whose header
 * declares a payload over MAX_PAYLOAD is handed on as it is, for the
 * verifier to refuse (BAD_ENTRY at its seq).
 */
export class TaggedRecordSplitter {
  private parts: Buffer[] = [];
  private size = 0;
  private need = -1;

  constructor(private readonly sink: (records: Buffer) => void) {}

  private static recordSize(header: Buffer, at: number): number {
    const length = header.readUInt32BE(at + 22);
    return length > MAX_PAYLOAD ? -2 : ENTRY_HEADER_SIZE + length + TAG_BYTES;
  }

  push(chunk: Buffer): void {
    let pos = 0;
    if (this.size > 0) {
      if (this.need === -1 && this.size + chunk.length >= ENTRY_HEADER_SIZE) {
        const head = Buffer.concat([...this.parts, chunk.subarray(0, ENTRY_HEADER_SIZE)]);
        this.need = TaggedRecordSplitter.recordSize(head, 0);
        if (this.need === -2) {
          this.parts = [];
          this.size = 0;
          this.sink(head); // refused there
          return;
        }
      }
      if (this.need === -1 || this.size + chunk.length < this.need) {
        this.parts.push(chunk);
        this.size += chunk.length;
        return;
      }
      pos = this.need - this.size;
      const record = Buffer.concat([...this.parts, chunk.subarray(0, pos)]);
      this.parts = [];
      this.size = 0;
      this.need = -1;
      this.sink(record);
    }
    const start = pos;
    while (pos + ENTRY_HEADER_SIZE <= chunk.length) {
      const n = TaggedRecordSplitter.recordSize(chunk, pos);
      if (n === -2) {
        this.sink(chunk.subarray(start, pos + ENTRY_HEADER_SIZE)); // refused there
        return;
      }
      if (pos + n > chunk.length) break;
      pos += n;
    }
    if (pos > start) this.sink(chunk.subarray(start, pos));
    if (pos < chunk.length) {
      this.parts.push(chunk.subarray(pos));
      this.size = chunk.length - pos;
      this.need = this.size >= ENTRY_HEADER_SIZE ? TaggedRecordSplitter.recordSize(chunk, pos) : -1;
    }
  }

  /** The end of the stream: a partial record left over is refused. */
  end(seq: number): void {
    if (this.size > 0) {
      throw new AppendlogError('MALFORMED_BUNDLE', `entries.bin ends inside the record of seq ${seq} (${this.size} bytes of it)`, { seq });
    }
  }
}
