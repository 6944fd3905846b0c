import { AppendlogError } from './errors.js';
import { ENTRY_HEADER_SIZE, HASH_SIZE, KIND_NAMES, MAX_PAYLOAD } from './constants.js';
import { writeHeader } from './encoding.js';

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
const BASE64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

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

  clear(): void {
    this.used = 0;
    this.count = 0;
    if (this.data.length > 8 << 20) this.data = Buffer.allocUnsafe(1 << 20);
  }
}

function bad(lineNo: number, msg: string): never {
  throw new AppendlogError('MALFORMED_BUNDLE', `entries.jsonl line ${lineNo}: ${msg}`);
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
 * base64, upper-case hex) is a coded MALFORMED_BUNDLE naming the line.
 */
export function parseRecordInto(line: string, lineNo: number, batch: RecordBatch): void {
  if (line.length > MAX_RECORD_CHARS) bad(lineNo, 'line too long');
  let i = expect(line, 0, '{"seq":');
  if (i < 0) bad(lineNo, 'not a record: expected {"seq":');
  const seq = digits(line, i);
  if (seq === null || seq[0] < 1) bad(lineNo, 'seq is not a positive safe integer');
  if ((i = expect(line, seq[1], ',"time":')) < 0) bad(lineNo, 'expected "time" after "seq"');
  const time = digits(line, i);
  if (time === null) bad(lineNo, 'time is not a non-negative safe integer');
  if ((i = expect(line, time[1], ',"session":')) < 0) bad(lineNo, 'expected "session" after "time"');
  const session = digits(line, i);
  if (session === null || session[0] > 0xffffffff) bad(lineNo, 'session is not a u32');
  if ((i = expect(line, session[1], ',"kind":"')) < 0) bad(lineNo, 'expected "kind" after "session"');
  const q = line.indexOf('"', i);
  const kind = q < 0 ? undefined : KIND_BY_NAME.get(line.slice(i, q));
  if (kind === undefined) bad(lineNo, 'kind is not a known kind name');
  if ((i = expect(line, q, '","flags":')) < 0) bad(lineNo, 'expected "flags" after "kind"');
  const flags = digits(line, i);
  if (flags === null || flags[0] > 0xff) bad(lineNo, 'flags is not a u8');
  // The rest is "text":"..." or "base64":"...", then ,"hash":"<64 hex>"}
  const tail = line.length - 76;
  if (tail < flags[1] || expect(line, tail, '","hash":"') < 0 || !line.endsWith('"}')) bad(lineNo, 'expected ,"hash":"<64 hex digits>"} at the end');
  const hash = line.slice(tail + 10, tail + 74);
  // Buffer#write('hex') stops at the first non-hex character; upper case is refused too.
  if (batch.hashes.write(hash, batch.count * HASH_SIZE, HASH_SIZE, 'hex') !== HASH_SIZE || UPPER_HEX.test(hash)) {
    bad(lineNo, 'hash is not 64 lowercase hex digits');
  }
  let payload: string | Buffer;
  if ((i = expect(line, flags[1], ',"text":"')) >= 0) {
    const raw = line.slice(i, tail);
    if (SIMPLE_TEXT.test(raw)) payload = raw;
    else {
      // Escapes (\u001b of colour codes, \t, \"): decode the string literal
      // alone; it must be exactly one valid JSON string.
      try {
        payload = JSON.parse(`"${raw}"`) as string;
      } catch {
        bad(lineNo, 'text is not a valid JSON string');
      }
    }
  } else if ((i = expect(line, flags[1], ',"base64":"')) >= 0) {
    const raw = line.slice(i, tail);
    if (!BASE64_RE.test(raw)) bad(lineNo, 'base64 is not canonical base64');
    payload = Buffer.from(raw, 'base64');
  } else {
    bad(lineNo, 'expected "text" or "base64" after "flags"');
  }
  put(batch, lineNo, seq[0], time[0], session[0], kind, flags[0], payload);
}

const UPPER_HEX = /[A-F]/;

const SIMPLE_TEXT = /^[^"\\\u0000-\u001f]*$/;

/** Reads a JSON non-negative integer without leading zeros at `i`; returns [value, next] or null. */
function digits(line: string, i: number): [number, number] | null {
  const start = i;
  let v = 0;
  while (i < line.length) {
    const c = line.charCodeAt(i);
    if (c < 48 || c > 57) break;
    v = v * 10 + (c - 48);
    i++;
  }
  const n = i - start;
  if (n === 0 || n > 16 || (n > 1 && line.charCodeAt(start) === 48) || !Number.isSafeInteger(v)) return null;
  return [v, i];
}

function expect(line: string, i: number, lit: string): number {
  return line.startsWith(lit, i) ? i + lit.length : -1;
}
