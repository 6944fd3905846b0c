import { existsSync, statSync } from 'node:fs';
import { AppendlogError, BUNDLE_FILES, ENTRY_HEADER_SIZE, MAX_RECORD_CHARS, RecordBatch, TAG_BYTES, TaggedRecordSplitter, decodeHeader, parseRecordBytes } from '@appendlog/shared';
import { LineSplitter, openBundle } from './bundle-io.js';
import { looksLikeArchive } from './archive-io.js';
import { blockEntries, type StoredEntry } from './entries.js';
import type { BlockRow } from './store.js';

/**
 * Reads the entries of an exported bundle in seq order: a directory or an
 * archive (read in place, never unpacked), version 1 (entries.jsonl, with
 * the same strict record parser the verifier uses) or version 2
 * (entries.bin), one batch in memory at a time. It does not verify the
 * chain: readers (`show BUNDLE`, `report`) say so, and `report` runs the
 * verifier first. Every entry handed out is only valid until the next one is
 * asked for (the batch buffer is reused). For version 2, `hash` holds the
 * record's 8-byte check tag, not a whole hash.
 */
export async function* bundleEntries(target: string, fromSeq = 1): AsyncGenerator<StoredEntry> {
  const bundle = await openBundle(target);
  try {
    if (bundle.version === 2) {
      const ready: StoredEntry[] = [];
      let expected = 1;
      const splitter = new TaggedRecordSplitter((records) => {
        for (let off = 0; off < records.length; ) {
          let header;
          try {
            header = decodeHeader(records, off);
          } catch (e) {
            throw new AppendlogError('BAD_ENTRY', `entries.bin, entry ${expected}: ${(e as Error).message}`, { seq: expected });
          }
          const end = off + ENTRY_HEADER_SIZE + header!.length;
          if (end + TAG_BYTES > records.length) throw new AppendlogError('MALFORMED_BUNDLE', `entries.bin ends inside the record of seq ${expected}`, { seq: expected });
          if (header!.seq >= fromSeq) {
            ready.push({ header: header!, encoded: records.subarray(off, end), payload: records.subarray(off + ENTRY_HEADER_SIZE, end), hash: records.subarray(end, end + TAG_BYTES) });
          }
          expected++;
          off = end + TAG_BYTES;
        }
      });
      for await (const chunk of bundle.entries()) {
        splitter.push(chunk);
        yield* ready.splice(0);
      }
      splitter.end(expected);
      yield* ready.splice(0);
      return;
    }
    const lines = new LineSplitter(MAX_RECORD_CHARS);
    const batch = new RecordBatch();
    let n = 0;
    const onLine = (line: Buffer): void => {
      n++;
      if (line.length === 0) throw new AppendlogError('MALFORMED_BUNDLE', `${BUNDLE_FILES.entries} line ${n}: empty line`);
      parseRecordBytes(line, n, batch);
    };
    function* drain(): Generator<StoredEntry> {
      if (batch.count === 0) return;
      const block: BlockRow = {
        id: 0,
        first_seq: 0,
        first_time: 0,
        last_time: 0,
        count: batch.count,
        data: batch.data.subarray(0, batch.used),
        hashes: batch.hashes.subarray(0, batch.count * 32),
      };
      for (const e of blockEntries(block)) if (e.header.seq >= fromSeq) yield e;
      batch.clear();
    }
    try {
      for await (const chunk of bundle.entries()) {
        // Parse the chunk's whole lines into the batch, then hand them out;
        // a chunk of 1 MiB holds at most a few thousand records.
        lines.push(chunk, onLine);
        yield* drain();
      }
      lines.end(onLine);
      yield* drain();
    } catch (e) {
      if (e instanceof AppendlogError) throw e;
      throw new AppendlogError('MALFORMED_BUNDLE', `${BUNDLE_FILES.entries} line ${n}: ${(e as Error).message}`);
    }
  } finally {
    bundle.close();
  }
}

/** True when `target` names a bundle (a directory, or an archive file by its first bytes) rather than VM/NAME in the store. */
export function isBundlePath(target: string): boolean {
  return existsSync(target) && (statSync(target).isDirectory() || looksLikeArchive(target));
}
