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
const HEX64_RE = /^[0-9a-f]{64}$/;

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
    if (text.length <= base64Length + 2) body = `"text":${text}`;
  } catch {
    body = undefined;
  }
  body ??= `"base64":"${Buffer.from(e.payload.buffer, e.payload.byteOffset, e.payload.length).toString('base64')}"`;
  const kind = KIND_NAMES[e.kind] ?? String(e.kind);
  return `{"seq":${e.seq},"time":${e.time},"session":${e.session},"kind":"${kind}","flags":${e.flags},${body},"hash":"${Buffer.from(e.hash).toString('hex')}"}\n`;
}

export interface ParsedRecord {
  /** The entry's canonical encoding, ready for ChainVerifier.push. */
  encoded: Buffer;
  hash: Buffer;
  seq: number;
}

function bad(lineNo: number, msg: string): never {
  throw new AppendlogError('MALFORMED_BUNDLE', `entries.jsonl line ${lineNo}: ${msg}`);
}

const isUint = (v: unknown, max: number): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 && v <= max;

/**
 * Parses one line of an untrusted entries.jsonl into the canonical encoding.
 * Every deviation (broken JSON, unknown or missing fields, wrong types, huge
 * numbers, bad base64) is a coded MALFORMED_BUNDLE naming the line.
 */
export function parseRecord(line: string, lineNo: number): ParsedRecord {
  if (line.length > MAX_RECORD_CHARS) bad(lineNo, 'line too long');
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch (e) {
    bad(lineNo, `not valid JSON (${(e as Error).message.slice(0, 100)})`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) bad(lineNo, 'not a JSON object');
  const o = v as Record<string, unknown>;
  let fields = 0;
  for (const k in o) {
    fields++;
    if (!['seq', 'time', 'session', 'kind', 'flags', 'text', 'base64', 'hash'].includes(k)) bad(lineNo, `unknown field ${JSON.stringify(k).slice(0, 60)}`);
  }
  if (fields !== 7) bad(lineNo, 'expected exactly seq, time, session, kind, flags, hash and one of text/base64');
  const { seq, time, session, kind, flags, text, base64, hash } = o;
  if (!isUint(seq, Number.MAX_SAFE_INTEGER) || seq < 1) bad(lineNo, 'seq is not a positive safe integer');
  if (!isUint(time, Number.MAX_SAFE_INTEGER)) bad(lineNo, 'time is not a non-negative safe integer');
  if (!isUint(session, 0xffffffff)) bad(lineNo, 'session is not a u32');
  if (!isUint(flags, 0xff)) bad(lineNo, 'flags is not a u8');
  const kindValue = typeof kind === 'string' ? KIND_BY_NAME.get(kind) : undefined;
  if (kindValue === undefined) bad(lineNo, 'kind is not a known kind name');
  if (typeof hash !== 'string' || !HEX64_RE.test(hash)) bad(lineNo, 'hash is not 64 lowercase hex digits');
  let payload: Buffer;
  if (text !== undefined) {
    if (typeof text !== 'string') bad(lineNo, 'text is not a string');
    payload = Buffer.from(text, 'utf8');
  } else {
    if (typeof base64 !== 'string' || !BASE64_RE.test(base64)) bad(lineNo, 'base64 is not canonical base64');
    payload = Buffer.from(base64, 'base64');
  }
  if (payload.length > MAX_PAYLOAD) bad(lineNo, 'payload exceeds the format limit');
  const encoded = Buffer.allocUnsafe(ENTRY_HEADER_SIZE + payload.length);
  writeHeader(encoded, 0, seq, time, session, kindValue, flags, payload.length);
  payload.copy(encoded, ENTRY_HEADER_SIZE);
  const hashBytes = Buffer.from(hash, 'hex');
  if (hashBytes.length !== HASH_SIZE) bad(lineNo, 'hash has the wrong length');
  return { encoded, hash: hashBytes, seq };
}
