import { createHash, hash as oneShotHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { ENTRY_HEADER_SIZE, ENTRY_PREFIX, HASH_SIZE, SEAL_PREFIX, ZERO_HASH } from './constants.js';
import { encodeGenesis, writeU64, type LogIdentity } from './encoding.js';

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

/**
 * Batch chaining. `chainEntries` chains `count` encoded entries laid end to
 * end in `data` (entry i is data[offsets[i], offsets[i + 1])) onto `head`,
 * which it updates in place. With `compare` false it writes each entry hash
 * to `out` (32 bytes each); with `compare` true it checks them against `out`
 * and returns the index of the first entry whose hash differs (else -1).
 *
 * The work is done by a small Node-API addon (packages/shared/native) that
 * calls Node's own OpenSSL in a loop: per entry that costs a third of what a
 * node:crypto call costs, because it skips the JS/C++ crossing, the digest
 * lookup and a Buffer allocation per hash. Without the addon the same bytes
 * come from node:crypto; tests check both against the vectors.
 */
interface NativeChain {
  chain(prefix: Uint8Array, head: Uint8Array, data: Uint8Array, offsets: Uint32Array, count: number, out: Uint8Array, compare: boolean): number;
  /** Absent from an addon built before it existed: then node:crypto does it. */
  chainTail?(prefix: Uint8Array, head: Uint8Array, data: Uint8Array, offsets: Uint32Array, count: number, out: Uint8Array, compare: boolean, tail: number): number;
  interleave?(data: Uint8Array, hashes: Uint8Array, count: number, tail: number, out: Uint8Array): number;
  chainTailAsync?(prefix: Uint8Array, head: Uint8Array, data: Uint8Array, offsets: Uint32Array, count: number, out: Uint8Array, tail: number): Promise<number>;
  chainStart?(prefix: Uint8Array, head: Uint8Array, data: Uint8Array, offsets: Uint32Array, count: number, out: Uint8Array, firstSeq: number): object;
  chainJoin?(job: object): void;
  addLines?(
    src: Uint8Array,
    pos: number,
    buf: Uint8Array,
    used: number,
    offsets: Uint32Array,
    n: number,
    maxLine: number,
    time: number,
    session: number,
    kind: number,
    res: Float64Array,
  ): void;
}

function loadNative(): NativeChain | null {
  try {
    const require = createRequire(import.meta.url);
    return require('../native/build/Release/chainhash.node') as NativeChain;
  } catch {
    return null;
  }
}

let native: NativeChain | null = loadNative();

export type HashBackend = 'openssl-batch' | 'node-crypto';

export function hashBackend(): HashBackend {
  return native !== null ? 'openssl-batch' : 'node-crypto';
}

/** Chooses the backend (tests compare both); returns the one in use. */
export function setHashBackend(backend: HashBackend): HashBackend {
  native = backend === 'openssl-batch' ? loadNative() : null;
  return hashBackend();
}

const fallback = new ChainHasher(ZERO_HASH);

export function chainEntries(
  head: Buffer,
  data: Uint8Array,
  offsets: Uint32Array,
  count: number,
  out: Uint8Array,
  compare: boolean,
): number {
  if (head.length !== HASH_SIZE || offsets.length < count + 1 || out.length < count * HASH_SIZE) {
    throw new RangeError('chainEntries: bad buffer sizes');
  }
  if (native !== null) return native.chain(ENTRY_PREFIX, head, data, offsets, count, out, compare);
  fallback.reset(head);
  for (let i = 0; i < count; i++) {
    const h = fallback.push(data.subarray(offsets[i]!, offsets[i + 1]!));
    if (compare) {
      if (!h.equals(out.subarray(i * HASH_SIZE, (i + 1) * HASH_SIZE))) {
        h.copy(head);
        return i;
      }
    } else {
      out.set(h, i * HASH_SIZE);
    }
  }
  head.set(fallback.head());
  return -1;
}

/**
 * Chains records that each end in a `tail`-byte check tag that is not
 * hashed (version 2 bundle records, docs/FORMAT.md section 9.7): record i is
 * data[offsets[i], offsets[i + 1]), its entry encoding all but the last
 * `tail` bytes. Every hash is written to `out`; with `compare`, returns the
 * index of the first record whose tag is not the first `tail` bytes of its
 * hash (the head then stands at that record), else -1.
 */
export function chainTagged(head: Buffer, data: Uint8Array, offsets: Uint32Array, count: number, out: Uint8Array, tail: number, compare: boolean): number {
  if (head.length !== HASH_SIZE || offsets.length < count + 1 || out.length < count * HASH_SIZE || tail < 1 || tail > HASH_SIZE) {
    throw new RangeError('chainTagged: bad buffer sizes');
  }
  if (native?.chainTail !== undefined) return native.chainTail(ENTRY_PREFIX, head, data, offsets, count, out, compare, tail);
  fallback.reset(head);
  for (let i = 0; i < count; i++) {
    const end = offsets[i + 1]! - tail;
    const h = fallback.push(data.subarray(offsets[i]!, end));
    out.set(h, i * HASH_SIZE);
    if (compare && Buffer.compare(h.subarray(0, tail), data.subarray(end, end + tail)) !== 0) {
      h.copy(head);
      return i;
    }
  }
  head.set(fallback.head());
  return -1;
}

/**
 * Writes each of the `count` entry encodings laid end to end in `data`
 * followed by the first `tail` bytes of its hash (32 bytes each in
 * `hashes`) into `out`: version 2 bundle records (docs/FORMAT.md 9.7).
 * Returns the bytes written, or -1 if `data` does not hold exactly `count`
 * whole entries. The addon does it in one call (a JS loop costs two buffer
 * copies per entry, each mostly call overhead).
 */
export function interleaveTags(data: Uint8Array, hashes: Uint8Array, count: number, tail: number, out: Uint8Array): number {
  if (hashes.length < count * HASH_SIZE || tail < 0 || tail > HASH_SIZE) throw new RangeError('interleaveTags: bad buffer sizes');
  if (native?.interleave !== undefined) return native.interleave(data, hashes, count, tail, out);
  const src = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const h = Buffer.from(hashes.buffer, hashes.byteOffset, hashes.byteLength);
  const dst = Buffer.from(out.buffer, out.byteOffset, out.byteLength);
  let off = 0;
  let pos = 0;
  for (let i = 0; i < count; i++) {
    if (src.length - off < 26) return -1;
    const len = 26 + src.readUInt32BE(off + 22);
    if (src.length - off < len || dst.length - pos < len + tail) return -1;
    pos += src.copy(dst, pos, off, off + len);
    pos += h.copy(dst, pos, i * HASH_SIZE, i * HASH_SIZE + tail);
    off += len;
  }
  return off === src.length ? pos : -1;
}

/**
 * chainTagged with `compare`, off the JS thread where the addon can (a libuv
 * worker: the caller goes on reading and checking the next records, so the
 * two cores share the work); otherwise the same computation, synchronously.
 * `head`, `data`, `offsets` and `out` must not be touched until it settles.
 */
export function chainTaggedAsync(head: Buffer, data: Uint8Array, offsets: Uint32Array, count: number, out: Uint8Array, tail: number): Promise<number> {
  if (native?.chainTailAsync === undefined || count === 0) {
    try {
      return Promise.resolve(chainTagged(head, data, offsets, count, out, tail, true));
    } catch (e) {
      return Promise.reject(e);
    }
  }
  if (head.length !== HASH_SIZE || offsets.length < count + 1 || out.length < count * HASH_SIZE || tail < 1 || tail > HASH_SIZE) {
    return Promise.reject(new RangeError('chainTaggedAsync: bad buffer sizes'));
  }
  return native.chainTailAsync(ENTRY_PREFIX, head, data, offsets, count, out, tail);
}

/** A batch being numbered and chained on a thread of its own (chainEntriesStart). */
export interface ChainJob {
  /** Waits until the hashes are in `out` and `head` is the last one; throws if hashing failed. Idempotent. */
  join(): void;
}

const DONE: ChainJob = { join: () => undefined };

/**
 * Numbers the `count` entry encodings of `data` from `firstSeq` (the seq at
 * the start of each header, docs/FORMAT.md 3.1) and chains them onto `head`
 * (updated in place), every hash written to `out`: chainEntries after the
 * seqs are set, but where the addon can, on a thread of its own, so the
 * caller goes on meanwhile (logvm append commits the previous batch while
 * this one is hashed: the second core). Without the addon it is done here
 * and now. `head`, `data`, `offsets` and `out` must not be touched until
 * `join()` returns.
 */
export function chainEntriesStart(head: Buffer, data: Uint8Array, offsets: Uint32Array, count: number, out: Uint8Array, firstSeq: number): ChainJob {
  if (head.length !== HASH_SIZE || offsets.length < count + 1 || out.length < count * HASH_SIZE) {
    throw new RangeError('chainEntriesStart: bad buffer sizes');
  }
  if (!Number.isSafeInteger(firstSeq) || firstSeq < 1 || !Number.isSafeInteger(firstSeq + count)) throw new RangeError('chainEntriesStart: bad firstSeq');
  if (count === 0) return DONE;
  const n = native;
  if (n?.chainStart !== undefined && n.chainJoin !== undefined) {
    const job = n.chainStart(ENTRY_PREFIX, head, data, offsets, count, out, firstSeq);
    let joined = false;
    return {
      join(): void {
        if (joined) return;
        joined = true;
        n.chainJoin!(job);
      },
    };
  }
  for (let i = 0; i < count; i++) {
    if (offsets[i]! > offsets[i + 1]! || offsets[i + 1]! - offsets[i]! < ENTRY_HEADER_SIZE || offsets[i + 1]! > data.length) throw new RangeError('chainEntriesStart: offsets out of range');
  }
  chainNumbered(head, data, offsets, count, out, firstSeq);
  return DONE;
}

/** chainEntries after numbering the entries from `firstSeq` (the u64 seq at the start of each header), here and now. */
export function chainNumbered(head: Buffer, data: Uint8Array, offsets: Uint32Array, count: number, out: Uint8Array, firstSeq: number): void {
  for (let i = 0; i < count; i++) writeU64(data, offsets[i]!, firstSeq + i);
  chainEntries(head, data, offsets, count, out, false);
}

/**
 * The addon's line splitter (BlockBuilder.addLines), or null without it.
 * Not hashing, but it lives in the same addon: one native module to build.
 */
export function nativeAddLines(): NonNullable<NativeChain['addLines']> | null {
  return native?.addLines ?? null;
}
