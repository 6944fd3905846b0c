/**
 * Format constants. docs/FORMAT.md is the normative text; every value here is
 * quoted there byte for byte.
 */
export const FORMAT_VERSION = 1;

const ascii = (s: string): Buffer => Buffer.from(s, 'latin1');

/** Domain-separation prefixes, one per hash kind (cf. RFC 6962 section 2.1). */
export const GENESIS_PREFIX = ascii('appendlog/v1/genesis\0');
export const ENTRY_PREFIX = ascii('appendlog/v1/entry\0');
export const SEAL_PREFIX = ascii('appendlog/v1/seal\0');

export const HASH_SIZE = 32;
export const ZERO_HASH = Buffer.alloc(HASH_SIZE);

/** Entry kinds (one byte). */
export const Kind = {
  /** A line read from the service's stdin in raw mode. */
  LINE: 0x01,
  /** A line of the build's stdout / stderr, tagged by the sender (framed mode). */
  STDOUT: 0x02,
  STDERR: 0x03,
  /** Log-VM events: facts the log VM attests itself. */
  SESSION_OPEN: 0x10,
  SESSION_CLOSE: 0x11,
  NOTICE: 0x12,
  /** The final entry of a sealed log. */
  SEAL: 0x20,
  /** A statement made by the sender about itself (framed mode): stored as a claim. */
  CLAIM: 0x30,
} as const;
export type KindValue = (typeof Kind)[keyof typeof Kind];

export const KIND_NAMES: Readonly<Record<number, string>> = {
  [Kind.LINE]: 'line',
  [Kind.STDOUT]: 'stdout',
  [Kind.STDERR]: 'stderr',
  [Kind.SESSION_OPEN]: 'session-open',
  [Kind.SESSION_CLOSE]: 'session-close',
  [Kind.NOTICE]: 'notice',
  [Kind.SEAL]: 'seal',
  [Kind.CLAIM]: 'claim',
};

export function isLineKind(kind: number): boolean {
  return kind === Kind.LINE || kind === Kind.STDOUT || kind === Kind.STDERR;
}

/** Entry flags (one byte). Only line kinds may carry flags. */
export const Flag = {
  /** The line goes on in the next line entry of the same session and kind. */
  CONT: 0x01,
  /** The line ended at end of input without a newline. */
  NOEOL: 0x02,
} as const;

/** Fixed header size of an encoded entry (docs/FORMAT.md section 3). */
export const ENTRY_HEADER_SIZE = 26;

/** Default longest line stored in one entry; longer lines become CONT chunks. */
export const DEFAULT_MAX_LINE = 64 * 1024;
/** Hard format limit on one payload: a verifier never buffers more than this. */
export const MAX_PAYLOAD = 16 * 1024 * 1024;

/** Largest integer the format allows in seq / time fields (2^53 - 1). */
export const MAX_SAFE = Number.MAX_SAFE_INTEGER;
