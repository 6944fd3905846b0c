import { AppendlogError } from './errors.js';
import { canonicalJson, parseJsonObject, type CanonicalValue } from './canonical-json.js';
import { genesisHash } from './chain.js';
import { CLOSE_REASONS, type ChainFacts } from './verifier.js';

import { STORED_LOG_NAME_RE, VM_NAME_RE } from './names.js';

/**
 * The seal manifest (docs/FORMAT.md section 8): canonical JSON plus one
 * newline. Its exact bytes are what the release signatures sign, what
 * `gpg --verify SIG manifest.json` checks, and what the next seal in the
 * store links to (prevSeal = SHA-256(SEAL_PREFIX || bytes)).
 */
export const MANIFEST_FORMAT = 'appendlog-seal/1';
export const MAX_MANIFEST_BYTES = 4 << 20;

export interface ClaimedFile {
  path: string;
  size: number;
  sha256: string;
}

/** An input whose detached signature the build VM checked (logsend --verify-input). */
export interface VerifiedInput extends ClaimedFile {
  /** Primary fingerprint of the certificate that signed it, lower-case hex. */
  signer: string;
}

/** An input whose signature check failed (the build was not started). */
export interface RejectedInput {
  path: string;
  code: string;
  reason: string;
  size: number | null;
  sha256: string | null;
}

/** What the sender said about its build (framed mode); claims, not facts. */
export interface ClaimsSummary {
  exit?: { code: number | null; signal: string | null };
  inputs: ClaimedFile[];
  artifacts: ClaimedFile[];
  /** Present (both) exactly when the log holds an input-verified or input-rejected claim. */
  verifiedInputs?: VerifiedInput[];
  rejectedInputs?: RejectedInput[];
  /** File claims beyond MAX_SUMMARY_FILES per list (or the byte budget), counted only. */
  omitted?: { inputs: number; artifacts: number; verifiedInputs?: number; rejectedInputs?: number };
  hostname?: string;
  command?: string[];
}

export interface SealManifest {
  format: typeof MANIFEST_FORMAT;
  vm: string;
  name: string;
  created: number;
  sealed: number;
  genesis: string;
  entries: number;
  lines: number;
  bytes: number;
  sessions: number;
  closes: Record<string, number>;
  head: string;
  sealIndex: number;
  prevSeal: string | null;
  claims?: ClaimsSummary;
}

/** Payload of the SEAL entry: binds the seal chain into the log chain. */
export interface SealEntryPayload {
  prevSeal: string | null;
  sealIndex: number;
  sealed: number;
}

export function manifestBytes(m: SealManifest): Buffer {
  return Buffer.from(`${canonicalJson(m as unknown as CanonicalValue)}\n`, 'utf8');
}

export function sealEntryPayload(p: SealEntryPayload): Buffer {
  return Buffer.from(canonicalJson(p as unknown as CanonicalValue), 'utf8');
}

const HEX64 = /^[0-9a-f]{64}$/;

type Check = (v: unknown) => boolean;
const isCount: Check = (v) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const isHex64: Check = (v) => typeof v === 'string' && HEX64.test(v);

function fail(msg: string): never {
  throw new AppendlogError('MANIFEST_INVALID', `manifest: ${msg}`);
}

function checkFiles(v: unknown, what: string): ClaimedFile[] {
  if (!Array.isArray(v) || v.length > 100_000) fail(`${what} is not a list`);
  return v.map((f: unknown, i) => {
    if (f === null || typeof f !== 'object') fail(`${what}[${i}] is not an object`);
    const o = f as Record<string, unknown>;
    if (Object.keys(o).sort().join(',') !== 'path,sha256,size') fail(`${what}[${i}] has unexpected fields`);
    if (typeof o.path !== 'string' || o.path.length > 4096) fail(`${what}[${i}].path is not a string`);
    if (!isCount(o.size)) fail(`${what}[${i}].size is not a count`);
    if (!isHex64(o.sha256)) fail(`${what}[${i}].sha256 is not a SHA-256 hex digest`);
    return { path: o.path as string, size: o.size as number, sha256: o.sha256 as string };
  });
}

const FPR = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/;

function checkVerified(v: unknown): VerifiedInput[] {
  if (!Array.isArray(v) || v.length > 100_000) fail('claims.verifiedInputs is not a list');
  return v.map((f: unknown, i) => {
    if (f === null || typeof f !== 'object' || Array.isArray(f)) fail(`claims.verifiedInputs[${i}] is not an object`);
    const o = f as Record<string, unknown>;
    if (Object.keys(o).sort().join(',') !== 'path,sha256,signer,size') fail(`claims.verifiedInputs[${i}] has unexpected fields`);
    if (typeof o.path !== 'string' || o.path.length > 4096) fail(`claims.verifiedInputs[${i}].path is not a string`);
    if (!isCount(o.size)) fail(`claims.verifiedInputs[${i}].size is not a count`);
    if (!isHex64(o.sha256)) fail(`claims.verifiedInputs[${i}].sha256 is not a SHA-256 hex digest`);
    if (typeof o.signer !== 'string' || !FPR.test(o.signer)) fail(`claims.verifiedInputs[${i}].signer is not a fingerprint`);
    return { path: o.path as string, size: o.size as number, sha256: o.sha256 as string, signer: o.signer };
  });
}

function checkRejected(v: unknown): RejectedInput[] {
  if (!Array.isArray(v) || v.length > 100_000) fail('claims.rejectedInputs is not a list');
  return v.map((f: unknown, i) => {
    if (f === null || typeof f !== 'object' || Array.isArray(f)) fail(`claims.rejectedInputs[${i}] is not an object`);
    const o = f as Record<string, unknown>;
    if (Object.keys(o).sort().join(',') !== 'code,path,reason,sha256,size') fail(`claims.rejectedInputs[${i}] has unexpected fields`);
    if (typeof o.path !== 'string' || o.path.length > 4096) fail(`claims.rejectedInputs[${i}].path is not a string`);
    if (typeof o.code !== 'string' || o.code.length > 64) fail(`claims.rejectedInputs[${i}].code is not a string`);
    if (typeof o.reason !== 'string' || o.reason.length > 4096) fail(`claims.rejectedInputs[${i}].reason is not a string`);
    if (!(o.size === null || isCount(o.size))) fail(`claims.rejectedInputs[${i}].size is not a count or null`);
    if (!(o.sha256 === null || isHex64(o.sha256))) fail(`claims.rejectedInputs[${i}].sha256 is not a SHA-256 hex digest or null`);
    return { path: o.path as string, code: o.code, reason: o.reason, size: o.size as number | null, sha256: o.sha256 as string | null };
  });
}

/**
 * Parses manifest bytes from an untrusted bundle. Strict: known fields only,
 * right types and ranges, and the bytes must be the canonical encoding of
 * what they say (so one manifest has exactly one byte form).
 */
export function parseManifest(bytes: Uint8Array): SealManifest {
  if (bytes.length > MAX_MANIFEST_BYTES) fail(`${bytes.length} bytes is larger than any manifest`);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    fail('not valid UTF-8');
  }
  const o = parseJsonObject(text, 'MANIFEST_INVALID', 'manifest');
  const known = ['format', 'vm', 'name', 'created', 'sealed', 'genesis', 'entries', 'lines', 'bytes', 'sessions', 'closes', 'head', 'sealIndex', 'prevSeal', 'claims'];
  for (const k of Object.keys(o)) if (!known.includes(k)) fail(`unknown field ${JSON.stringify(k).slice(0, 80)}`);
  if (o.format !== MANIFEST_FORMAT) fail(`format is not ${MANIFEST_FORMAT}`);
  if (typeof o.vm !== 'string' || !VM_NAME_RE.test(o.vm)) fail('vm is not a VM name');
  if (typeof o.name !== 'string' || !STORED_LOG_NAME_RE.test(o.name)) fail('name is not a log name');
  for (const k of ['created', 'sealed', 'entries', 'lines', 'bytes', 'sessions', 'sealIndex'] as const) {
    if (!isCount(o[k])) fail(`${k} is not a non-negative safe integer`);
  }
  if ((o.entries as number) < 2 || (o.sealIndex as number) < 1) fail('entries or sealIndex out of range');
  for (const k of ['genesis', 'head'] as const) if (!isHex64(o[k])) fail(`${k} is not a SHA-256 hex digest`);
  if (o.prevSeal !== null && !isHex64(o.prevSeal)) fail('prevSeal is neither null nor a SHA-256 hex digest');
  if ((o.sealIndex === 1) !== (o.prevSeal === null)) fail('prevSeal must be null exactly for the first seal');
  const closes = o.closes;
  if (closes === null || typeof closes !== 'object' || Array.isArray(closes)) fail('closes is not an object');
  for (const [k, v] of Object.entries(closes as Record<string, unknown>)) {
    if (!(CLOSE_REASONS as readonly string[]).includes(k) || !isCount(v)) fail('closes has an unknown reason or a bad count');
  }
  let claims: ClaimsSummary | undefined;
  if (o.claims !== undefined) {
    const c = o.claims as Record<string, unknown>;
    if (c === null || typeof c !== 'object' || Array.isArray(c)) fail('claims is not an object');
    for (const k of Object.keys(c)) {
      if (!['exit', 'inputs', 'artifacts', 'verifiedInputs', 'rejectedInputs', 'omitted', 'hostname', 'command'].includes(k)) fail(`claims has unknown field ${JSON.stringify(k).slice(0, 80)}`);
    }
    claims = { inputs: checkFiles(c.inputs, 'claims.inputs'), artifacts: checkFiles(c.artifacts, 'claims.artifacts') };
    const checked = c.verifiedInputs !== undefined || c.rejectedInputs !== undefined;
    if (checked) {
      claims.verifiedInputs = checkVerified(c.verifiedInputs);
      claims.rejectedInputs = checkRejected(c.rejectedInputs);
    }
    if (c.exit !== undefined) {
      const e = c.exit as Record<string, unknown>;
      if (e === null || typeof e !== 'object') fail('claims.exit is not an object');
      const codeOk = e.code === null || (typeof e.code === 'number' && Number.isSafeInteger(e.code));
      const sigOk = e.signal === null || (typeof e.signal === 'string' && e.signal.length <= 32);
      if (!codeOk || !sigOk || Object.keys(e).sort().join(',') !== 'code,signal') fail('claims.exit is malformed');
      claims.exit = { code: e.code as number | null, signal: e.signal as string | null };
    }
    if (c.omitted !== undefined) {
      const om = c.omitted as Record<string, unknown>;
      const members = checked ? 'artifacts,inputs,rejectedInputs,verifiedInputs' : 'artifacts,inputs';
      if (om === null || typeof om !== 'object' || Object.keys(om).sort().join(',') !== members || !Object.values(om).every(isCount)) {
        fail('claims.omitted is malformed');
      }
      claims.omitted = {
        inputs: om.inputs as number,
        artifacts: om.artifacts as number,
        ...(checked ? { verifiedInputs: om.verifiedInputs as number, rejectedInputs: om.rejectedInputs as number } : {}),
      };
    }
    if (c.hostname !== undefined) {
      if (typeof c.hostname !== 'string' || c.hostname.length > 255) fail('claims.hostname is not a string');
      claims.hostname = c.hostname;
    }
    if (c.command !== undefined) {
      if (!Array.isArray(c.command) || c.command.length > 4096 || !c.command.every((a) => typeof a === 'string')) fail('claims.command is not a list of strings');
      claims.command = c.command as string[];
    }
  }
  const m: SealManifest = {
    format: MANIFEST_FORMAT,
    vm: o.vm as string,
    name: o.name as string,
    created: o.created as number,
    sealed: o.sealed as number,
    genesis: o.genesis as string,
    entries: o.entries as number,
    lines: o.lines as number,
    bytes: o.bytes as number,
    sessions: o.sessions as number,
    closes: closes as Record<string, number>,
    head: o.head as string,
    sealIndex: o.sealIndex as number,
    prevSeal: o.prevSeal as string | null,
    ...(claims !== undefined ? { claims } : {}),
  };
  if (!manifestBytes(m).equals(bytes)) fail('bytes are not in canonical form (edited by hand?)');
  return m;
}

function mismatch(msg: string, seq?: number): never {
  // The seq, when there is one, is in the message as "seq N" (FORMAT.md 6.10) as well as in `seq`.
  throw new AppendlogError('MANIFEST_MISMATCH', `${seq === undefined ? '' : `seq ${seq}: `}manifest and chain disagree: ${msg}`, { seq });
}

/**
 * Checks a verified chain against the (already signature-checked) manifest:
 * identity, the seal entry and every summary figure. Run after
 * `ChainVerifier.end({ entries: m.entries, head: m.head })`.
 */
export function checkManifestAgainstChain(m: SealManifest, f: ChainFacts): void {
  const genesis = genesisHash({ vm: m.vm, name: m.name, created: m.created }).toString('hex');
  if (genesis !== m.genesis) mismatch('genesis is not the hash of vm, name and created');
  if (f.identity.vm !== m.vm || f.identity.name !== m.name || f.identity.created !== m.created) mismatch('log identity differs');
  if (f.seal === null || f.seal.seq !== f.entries) mismatch('the chain does not end with a seal entry', f.entries);
  // M4 compares bytes: the payload is never parsed.
  const expected = sealEntryPayload({ prevSeal: m.prevSeal, sealIndex: m.sealIndex, sealed: m.sealed });
  if (!expected.equals(f.seal.payload)) mismatch('seal entry differs from the manifest (sealIndex, prevSeal or time)', f.seal.seq);
  if (f.seal.time !== m.sealed) mismatch('seal time differs', f.seal.seq);
  if (f.lines !== m.lines || f.bytes !== m.bytes) mismatch(`lines/bytes: chain ${f.lines}/${f.bytes}, manifest ${m.lines}/${m.bytes}`);
  if (f.sessions !== m.sessions) mismatch(`sessions: chain ${f.sessions}, manifest ${m.sessions}`);
  if (canonicalJson(f.closes) !== canonicalJson(m.closes)) mismatch('session close reasons differ');
  const chainClaims = f.claims === undefined ? null : canonicalJson(f.claims as unknown as CanonicalValue);
  const manifestClaims = m.claims === undefined ? null : canonicalJson(m.claims as unknown as CanonicalValue);
  if (chainClaims !== manifestClaims) mismatch('the claims summary differs from the CLAIM entries');
}
