import { AppendlogError, ENTRY_HEADER_SIZE, HASH_SIZE, decodeHeader, type DecodedHeader } from '@appendlog/shared';
import type { BlockRow, Store } from './store.js';

/** One entry read from the store: its header, encoding and stored hash. */
export interface StoredEntry {
  header: DecodedHeader;
  encoded: Buffer;
  payload: Buffer;
  hash: Buffer;
}

/**
 * Walks a log's entries from the store in seq order, one block in memory at
 * a time. Structural damage to a block (a count or hash list that does not
 * fit its data) is reported as STORE_INCONSISTENT at the block's first seq.
 * The entry contents themselves are judged by the ChainVerifier.
 */
export function* storedEntries(store: Store, logId: number, fromSeq = 1): Generator<StoredEntry> {
  for (const block of store.blocks(logId, fromSeq)) yield* blockEntries(block);
}

export function* blockEntries(block: BlockRow): Generator<StoredEntry> {
  const { data, hashes } = block;
  if (hashes.length !== block.count * HASH_SIZE) {
    throw new AppendlogError('STORE_INCONSISTENT', `block at seq ${block.first_seq}: ${hashes.length / HASH_SIZE} hashes for ${block.count} entries`, {
      seq: block.first_seq,
    });
  }
  let off = 0;
  let i = 0;
  while (off < data.length) {
    let header: DecodedHeader | undefined;
    try {
      header = decodeHeader(data, off);
    } catch (e) {
      throw new AppendlogError('BAD_ENTRY', `block at seq ${block.first_seq}, entry ${i + 1}: ${(e as Error).message}`, { seq: block.first_seq + i });
    }
    const end = header === undefined ? -1 : off + ENTRY_HEADER_SIZE + header.length;
    if (header === undefined || end > data.length || i >= block.count) {
      throw new AppendlogError('STORE_INCONSISTENT', `block at seq ${block.first_seq}: data does not hold ${block.count} whole entries`, {
        seq: block.first_seq + i,
      });
    }
    yield {
      header,
      encoded: data.subarray(off, end),
      payload: data.subarray(off + ENTRY_HEADER_SIZE, end),
      hash: hashes.subarray(i * HASH_SIZE, (i + 1) * HASH_SIZE),
    };
    off = end;
    i++;
  }
  if (i !== block.count) {
    throw new AppendlogError('STORE_INCONSISTENT', `block at seq ${block.first_seq}: ${i} entries, the row says ${block.count}`, {
      seq: block.first_seq + i,
    });
  }
}
