import { createReadStream, existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { AppendlogError, BUNDLE_FILES, MAX_RECORD_CHARS, RecordBatch, parseRecordBytes } from '@appendlog/shared';
import { LineSplitter } from './bundle-io.js';
import { blockEntries, type StoredEntry } from './entries.js';
import type { BlockRow } from './store.js';

/**
 * Reads the entries of an exported bundle (entries.jsonl) in seq order, with
 * the same strict record parser the verifier uses, one batch in memory at a
 * time. It does not verify the chain: readers (`show BUNDLE`, `report`) say
 * so, and `report` runs the verifier first. Every entry handed out is only
 * valid until the next one is asked for (the batch buffer is reused).
 */
export async function* bundleEntries(dir: string, fromSeq = 1): AsyncGenerator<StoredEntry> {
  const path = join(dir, BUNDLE_FILES.entries);
  if (!existsSync(path)) throw new AppendlogError('MALFORMED_BUNDLE', `${path} is missing`);
  // A FIFO or device would never end: only a regular file is read.
  if (!statSync(path).isFile()) throw new AppendlogError('MALFORMED_BUNDLE', `${BUNDLE_FILES.entries} is not a regular file`);
  const input = createReadStream(path, { highWaterMark: 1 << 20 });
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
    for await (const chunk of input as AsyncIterable<Buffer>) {
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
  } finally {
    input.destroy();
  }
}

/** True when `target` names a bundle (a directory) rather than VM/NAME in the store. */
export function isBundlePath(target: string): boolean {
  return existsSync(target) && statSync(target).isDirectory();
}
