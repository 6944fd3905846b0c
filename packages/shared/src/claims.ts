import { AppendlogError } from './errors.js';
import { canonicalJson, type CanonicalValue } from './canonical-json.js';
import { parseStrictJson } from './strict-json.js';
import { FRAME_PROTOCOL } from './frames.js';
import type { ClaimedFile, ClaimsSummary, RejectedInput, VerifiedInput } from './manifest.js';

/**
 * Claims: what the sender says about its own build (framed mode). The log VM
 * stores them, in the exact bytes received, as CLAIM entries, apart from the
 * facts it attests itself (source VM, receive times, order). A claim must be
 * the canonical JSON of one of these shapes (docs/FORMAT.md section 10):
 *   {"claim":"hello","command":[...],"hostname":"...","protocol":"appendlog-frames/1","sender":"..."}
 *   {"claim":"input"|"artifact","path":"...","sha256":"<64 hex>","size":N}
 *   {"claim":"exit","code":N|null,"signal":"SIGTERM"|null}
 *   {"claim":"input-verified","path":"...","sha256":"<64 hex>","signature":"<64 hex>","signer":"<40|64 hex>","size":N}
 *   {"claim":"input-rejected","code":"SIGNATURE_INVALID"|...,"path":"...","reason":"...","sha256":"<64 hex>"|null,"size":N|null}
 */
export type Claim =
  | { claim: 'hello'; protocol: string; sender: string; hostname: string; command: string[] }
  | { claim: 'input' | 'artifact'; path: string; size: number; sha256: string }
  | { claim: 'exit'; code: number | null; signal: string | null }
  | InputVerifiedClaim
  | InputRejectedClaim;

/**
 * `logsend --verify-input FILE=SIG`: FILE's detached OpenPGP signature was
 * checked in the build VM against its keyring before the build started.
 * `signature` is the SHA-256 of the signature file, `signer` the primary
 * fingerprint (lower-case hex) of the certificate whose signature verified.
 */
export interface InputVerifiedClaim {
  claim: 'input-verified';
  path: string;
  size: number;
  sha256: string;
  signature: string;
  signer: string;
}

/** Why an input failed its check (docs/FORMAT.md section 10.5). */
export const INPUT_REJECT_CODES = ['SIGNATURE_INVALID', 'SIGNATURE_UNTRUSTED', 'SIGNATURE_REFUSED', 'SIGNATURE_MALFORMED', 'INPUT_UNREADABLE'] as const;
export type InputRejectCode = (typeof INPUT_REJECT_CODES)[number];
export const MAX_REJECT_REASON = 1024;

/** An input whose signature check failed: the build was not started. */
export interface InputRejectedClaim {
  claim: 'input-rejected';
  path: string;
  code: InputRejectCode;
  reason: string;
  /** null when the file could not be read. */
  size: number | null;
  sha256: string | null;
}

export const MAX_CLAIM_PATH = 1024;
/** Files listed in a seal manifest's claims summary, per list; the rest are counted. */
export const MAX_SUMMARY_FILES = 1000;
/**
 * Bytes of canonical JSON the listed files may take in all, so a sender's
 * claims (long paths of escaped control characters) can never push the
 * manifest past MAX_MANIFEST_BYTES.
 */
export const MAX_SUMMARY_FILE_BYTES = 2 << 20;

const HEX64 = /^[0-9a-f]{64}$/;
/** An OpenPGP v4 (40 hex) or v6 (64 hex) primary fingerprint, lower case. */
export const FINGERPRINT_RE = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/;

function bad(msg: string, code: 'FRAME_INVALID' | 'BAD_ENTRY', seq?: number): never {
  throw new AppendlogError(code, `${seq === undefined ? '' : `seq ${seq}: `}claim refused: ${msg}`, { seq });
}

const isStr = (v: unknown, max: number): v is string => typeof v === 'string' && v.length <= max;
const keysAre = (o: object, keys: string): boolean => Object.keys(o).sort().join(',') === keys;

/** Parses and checks a claim's bytes; `code` says how a violation is reported. */
export function parseClaim(bytes: Uint8Array, code: 'FRAME_INVALID' | 'BAD_ENTRY' = 'FRAME_INVALID', seq?: number): Claim {
  let text: string;
  let v: unknown;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
    v = parseStrictJson(text);
  } catch {
    bad('not UTF-8 JSON (5.1)', code, seq);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) bad('not a JSON object', code, seq);
  const o = v as Record<string, unknown>;
  let claim: Claim;
  switch (o.claim) {
    case 'hello':
      if (!keysAre(o, 'claim,command,hostname,protocol,sender')) bad('hello has unexpected fields', code, seq);
      if (o.protocol !== FRAME_PROTOCOL) bad(`unsupported protocol (this log VM speaks ${FRAME_PROTOCOL})`, code, seq);
      if (!isStr(o.sender, 64) || !isStr(o.hostname, 255)) bad('hello sender/hostname malformed', code, seq);
      if (!Array.isArray(o.command) || o.command.length > 4096 || !o.command.every((a) => isStr(a, 16384))) bad('hello command malformed', code, seq);
      claim = { claim: 'hello', protocol: o.protocol, sender: o.sender, hostname: o.hostname, command: o.command as string[] };
      break;
    case 'input':
    case 'artifact':
      if (!keysAre(o, 'claim,path,sha256,size')) bad(`${o.claim} has unexpected fields`, code, seq);
      if (!isStr(o.path, MAX_CLAIM_PATH) || o.path === '') bad(`${o.claim} path malformed`, code, seq);
      if (typeof o.size !== 'number' || !Number.isSafeInteger(o.size) || o.size < 0) bad(`${o.claim} size malformed`, code, seq);
      if (typeof o.sha256 !== 'string' || !HEX64.test(o.sha256)) bad(`${o.claim} sha256 malformed`, code, seq);
      claim = { claim: o.claim, path: o.path, size: o.size, sha256: o.sha256 };
      break;
    case 'exit':
      if (!keysAre(o, 'claim,code,signal')) bad('exit has unexpected fields', code, seq);
      if (!(o.code === null || (typeof o.code === 'number' && Number.isSafeInteger(o.code) && o.code >= -2147483648 && o.code <= 2147483647))) bad('exit code malformed', code, seq);
      if (!(o.signal === null || (typeof o.signal === 'string' && /^SIG[A-Z0-9]{1,12}$/.test(o.signal)))) bad('exit signal malformed', code, seq);
      claim = { claim: 'exit', code: o.code as number | null, signal: o.signal as string | null };
      break;
    case 'input-verified':
      if (!keysAre(o, 'claim,path,sha256,signature,signer,size')) bad('input-verified has unexpected fields', code, seq);
      if (!isStr(o.path, MAX_CLAIM_PATH) || o.path === '') bad('input-verified path malformed', code, seq);
      if (typeof o.size !== 'number' || !Number.isSafeInteger(o.size) || o.size < 0) bad('input-verified size malformed', code, seq);
      if (typeof o.sha256 !== 'string' || !HEX64.test(o.sha256)) bad('input-verified sha256 malformed', code, seq);
      if (typeof o.signature !== 'string' || !HEX64.test(o.signature)) bad('input-verified signature malformed', code, seq);
      if (typeof o.signer !== 'string' || !FINGERPRINT_RE.test(o.signer)) bad('input-verified signer malformed', code, seq);
      claim = { claim: 'input-verified', path: o.path, size: o.size, sha256: o.sha256, signature: o.signature, signer: o.signer };
      break;
    case 'input-rejected':
      if (!keysAre(o, 'claim,code,path,reason,sha256,size')) bad('input-rejected has unexpected fields', code, seq);
      if (!isStr(o.path, MAX_CLAIM_PATH) || o.path === '') bad('input-rejected path malformed', code, seq);
      if (!(INPUT_REJECT_CODES as readonly unknown[]).includes(o.code)) bad('input-rejected code unknown', code, seq);
      if (!isStr(o.reason, MAX_REJECT_REASON)) bad('input-rejected reason malformed', code, seq);
      if (!(o.size === null || (typeof o.size === 'number' && Number.isSafeInteger(o.size) && o.size >= 0))) bad('input-rejected size malformed', code, seq);
      if (!(o.sha256 === null || (typeof o.sha256 === 'string' && HEX64.test(o.sha256)))) bad('input-rejected sha256 malformed', code, seq);
      claim = {
        claim: 'input-rejected',
        path: o.path,
        code: o.code as InputRejectCode,
        reason: o.reason,
        size: o.size as number | null,
        sha256: o.sha256 as string | null,
      };
      break;
    default:
      bad('unknown claim type', code, seq);
  }
  if (canonicalJson(claim as unknown as CanonicalValue) !== text!) bad('not in canonical JSON form', code, seq);
  return claim;
}

export function claimBytes(c: Claim): Buffer {
  return Buffer.from(canonicalJson(c as unknown as CanonicalValue), 'utf8');
}

/**
 * Folds the CLAIM entries of a chain, in seq order, into the manifest's
 * summary: the last hello's hostname and command, the last exit, and the
 * input and artifact files (the first MAX_SUMMARY_FILES of each, the rest
 * counted). Bounded memory whatever the log holds.
 */
export class ClaimsCollector {
  private any = false;
  private hello: Extract<Claim, { claim: 'hello' }> | null = null;
  private exit: Extract<Claim, { claim: 'exit' }> | null = null;
  private inputs: ClaimedFile[] = [];
  private artifacts: ClaimedFile[] = [];
  private omittedInputs = 0;
  private omittedArtifacts = 0;
  /** Whether any signature-check claim was seen: only then the summary has the two lists (old manifests stay byte-identical). */
  private checked = false;
  private verified: VerifiedInput[] = [];
  private rejected: RejectedInput[] = [];
  private omittedVerified = 0;
  private omittedRejected = 0;

  add(c: Claim): void {
    this.any = true;
    switch (c.claim) {
      case 'hello':
        this.hello = c;
        break;
      case 'exit':
        this.exit = c;
        break;
      case 'input':
        // Counted as the listed object, like the other lists (8.4): not the whole claim with its `claim` member.
        if (this.fits(this.inputs, { path: c.path, sha256: c.sha256, size: c.size })) this.inputs.push({ path: c.path, size: c.size, sha256: c.sha256 });
        else this.omittedInputs++;
        break;
      case 'artifact':
        if (this.fits(this.artifacts, { path: c.path, sha256: c.sha256, size: c.size })) this.artifacts.push({ path: c.path, size: c.size, sha256: c.sha256 });
        else this.omittedArtifacts++;
        break;
      case 'input-verified': {
        this.checked = true;
        const v: VerifiedInput = { path: c.path, size: c.size, sha256: c.sha256, signer: c.signer };
        if (this.fits(this.verified, { path: v.path, sha256: v.sha256, signer: v.signer, size: v.size })) this.verified.push(v);
        else this.omittedVerified++;
        break;
      }
      case 'input-rejected': {
        this.checked = true;
        const r: RejectedInput = { path: c.path, code: c.code, reason: c.reason, size: c.size, sha256: c.sha256 };
        if (this.fits(this.rejected, { code: r.code, path: r.path, reason: r.reason, sha256: r.sha256, size: r.size })) this.rejected.push(r);
        else this.omittedRejected++;
        break;
      }
    }
  }

  private listedBytes = 0;

  /**
   * The budget of docs/FORMAT.md 8.4, shared by all four lists: each listed
   * object counts the bytes of its canonical JSON plus 1.
   */
  private fits(list: unknown[], item: Record<string, CanonicalValue>): boolean {
    if (list.length >= MAX_SUMMARY_FILES) return false;
    const bytes = Buffer.byteLength(canonicalJson(item), 'utf8') + 1;
    if (this.listedBytes + bytes > MAX_SUMMARY_FILE_BYTES) return false;
    this.listedBytes += bytes;
    return true;
  }

  summary(): ClaimsSummary | undefined {
    if (!this.any) return undefined;
    const omitted = this.omittedInputs + this.omittedArtifacts + this.omittedVerified + this.omittedRejected;
    return {
      inputs: this.inputs,
      artifacts: this.artifacts,
      ...(this.checked ? { verifiedInputs: this.verified, rejectedInputs: this.rejected } : {}),
      ...(omitted > 0
        ? {
            omitted: {
              inputs: this.omittedInputs,
              artifacts: this.omittedArtifacts,
              ...(this.checked ? { verifiedInputs: this.omittedVerified, rejectedInputs: this.omittedRejected } : {}),
            },
          }
        : {}),
      ...(this.exit ? { exit: { code: this.exit.code, signal: this.exit.signal } } : {}),
      ...(this.hello ? { hostname: this.hello.hostname, command: this.hello.command } : {}),
    };
  }
}

/** SHA-256 and length of a byte stream (callers pass e.g. a file's read stream). */
export async function sha256Stream(source: AsyncIterable<Uint8Array>): Promise<{ size: number; sha256: string }> {
  const { createHash } = await import('node:crypto');
  const h = createHash('sha256');
  let size = 0;
  for await (const chunk of source) {
    size += chunk.length;
    h.update(chunk);
  }
  return { size, sha256: h.digest('hex') };
}
