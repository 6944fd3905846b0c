/**
 * The documented exit codes (README "Exit codes", docs/FORMAT.md section 11),
 * written out here on purpose rather than imported from
 * packages/shared/src/errors.ts: if the code changes a value, the end-to-end
 * tests fail instead of following it. One table for every e2e suite.
 */
export const EXIT = {
  OK: 0,
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
  LOG_FAILED: 60,
  TRANSPORT_REFUSED: 61,
} as const;

export type Code = keyof typeof EXIT;
