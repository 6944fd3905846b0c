/**
 * Coded errors. Every failure a user or auditor can meet has a stable string
 * `code` and a documented process exit code (README "Exit codes"). Callers
 * match on `code`, never on message text.
 */
export const EXIT_CODES = {
  INTERNAL: 1,
  USAGE: 2,
  NAME_INVALID: 3,
  VM_INVALID: 3,
  LOG_NOT_FOUND: 4,
  LOG_SEALED: 5,
  NAME_CONFLICT: 6,
  STORE_ERROR: 7,
  INPUT_ERROR: 8,
  TERMINATED: 9,
  CHAIN_HASH_MISMATCH: 10,
  SEQ_OUT_OF_ORDER: 11,
  CHAIN_TRUNCATED: 12,
  HEAD_MISMATCH: 13,
  ENTRY_AFTER_SEAL: 14,
  BAD_ENTRY: 15,
  STORE_INCONSISTENT: 16,
  FRAME_INVALID: 17,
  QUOTA_EXCEEDED: 18,
  /** the VM already has as many sessions open as the log VM allows at once. */
  SESSION_LIMIT: 19,
  /** a session sent nothing for the idle timeout and was closed. */
  IDLE_TIMEOUT: 23,
  MALFORMED_BUNDLE: 20,
  MANIFEST_INVALID: 21,
  MANIFEST_MISMATCH: 22,
  SIGNATURE_MISSING: 30,
  SIGNATURE_INVALID: 31,
  SIGNATURE_UNTRUSTED: 32,
  THRESHOLD_NOT_MET: 33,
  SEAL_CHAIN_BROKEN: 34,
  KEY_INVALID: 35,
  SIGNER_FAILED: 40,
  SIGNER_REFUSED: 41,
  NOT_SEALED: 42,
  LOG_EMPTY: 43,
  LOG_BUSY: 44,
  BUNDLE_EXISTS: 45,
  RECEIPT_MISMATCH: 50,
  ARTIFACT_NOT_FOUND: 51,
  /** verify-artifact: fewer than M distinct trusted builders claim the file (issue 12). */
  QUORUM_NOT_MET: 70,
  /** an evidence file (docs/FORMAT.md section 12) is malformed. */
  EVIDENCE_INVALID: 71,
  LOG_FAILED: 60,
  TRANSPORT_REFUSED: 61,
  /** logsend --verify-input: an input's signature did not verify; the build was not started. */
  INPUT_UNVERIFIED: 65,
  PUBLISH_EXISTS: 80,
  GIT_FAILED: 81,
  HOOK_FAILED: 82,
  FILE_ERROR: 83,
  // Checked by the bin wrappers (bin/logvm.js, bin/logsend.js) before any
  // code loads; they hard-code 78 because they must run on old Node.
  NODE_TOO_OLD: 78,
} as const;

export type ErrorCode = keyof typeof EXIT_CODES;

export class AppendlogError extends Error {
  readonly code: ErrorCode;
  /** The entry the failure is about, when there is one. */
  readonly seq: number | undefined;
  /** The entries.jsonl line a MALFORMED_BUNDLE failure is about (1-based), when there is one. */
  readonly line: number | undefined;

  constructor(code: ErrorCode, message: string, opts: { seq?: number; line?: number; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'AppendlogError';
    this.code = code;
    this.seq = opts.seq;
    this.line = opts.line;
  }

  get exitCode(): number {
    return EXIT_CODES[this.code];
  }
}

export function isAppendlogError(e: unknown): e is AppendlogError {
  return e instanceof AppendlogError;
}
