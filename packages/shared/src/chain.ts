import { createHash, hash as oneShotHash } from 'node:crypto';
import { ENTRY_PREFIX, HASH_SIZE, SEAL_PREFIX } from './constants.js';
import { encodeGenesis, type LogIdentity } from './encoding.js';

/**
 * Hash chain (docs/FORMAT.md section 4):
 *   H0 = SHA-256(genesis encoding)             genesis encoding starts with GENESIS_PREFIX
 *   Hn = SHA-256(ENTRY_PREFIX || Hn-1 || encoding of entry n)
 * Distinct prefixes keep a genesis, an entry and a seal manifest from ever
 * hashing to a value that is valid in another role (cf. RFC 6962 2.1).
 */
export function genesisHash(id: LogIdentity): Buffer {
  return createHash('sha256').update(encodeGenesis(id)).digest();
}

const sha256 = (data: Uint8Array): Buffer =>
  typeof oneShotHash === 'function'
    ? (oneShotHash('sha256', data, 'buffer') as unknown as Buffer)
    : createHash('sha256').update(data).digest();

export function entryHash(prev: Uint8Array, encoded: Uint8Array): Buffer {
  return createHash('sha256').update(ENTRY_PREFIX).update(prev).update(encoded).digest();
}

/** Hash of a seal manifest's exact bytes: the link in the chain of seals. */
export function sealHash(manifestBytes: Uint8Array): Buffer {
  return createHash('sha256').update(SEAL_PREFIX).update(manifestBytes).digest();
}

/**
 * Chains entries one by one with a reused scratch buffer laid out as
 * PREFIX || prev || encoding, so each entry costs one copy and one one-shot
 * SHA-256 instead of a hash object and three updates.
 */
export class ChainHasher {
  private scratch: Buffer;
  private readonly base = ENTRY_PREFIX.length;

  constructor(head: Uint8Array) {
    this.scratch = Buffer.allocUnsafe(this.base + HASH_SIZE + 4096);
    ENTRY_PREFIX.copy(this.scratch, 0);
    this.scratch.set(head, this.base);
  }

  /** Starts over from another head. */
  reset(head: Uint8Array): void {
    this.scratch.set(head, this.base);
  }

  /** The current head hash (a copy). */
  head(): Buffer {
    return Buffer.from(this.scratch.subarray(this.base, this.base + HASH_SIZE));
  }

  /**
   * Chains one encoded entry; returns its hash, valid until the next call.
   * The returned buffer is also the new head.
   */
  push(encoded: Uint8Array): Buffer {
    const need = this.base + HASH_SIZE + encoded.length;
    if (need > this.scratch.length) {
      const bigger = Buffer.allocUnsafe(Math.max(need, this.scratch.length * 2));
      this.scratch.copy(bigger, 0, 0, this.base + HASH_SIZE);
      this.scratch = bigger;
    }
    this.scratch.set(encoded, this.base + HASH_SIZE);
    const h = sha256(this.scratch.subarray(0, need));
    h.copy(this.scratch, this.base);
    return h;
  }
}
