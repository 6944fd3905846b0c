import { createReadStream, existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import {
  BUNDLE_FILES,
  ChainRenderer,
  ENTRY_HEADER_SIZE,
  MAX_RECORD_CHARS,
  RecordBatch,
  decodeHeader,
  parseRecordBytes,
  type RenderFormat,
} from '@appendlog/shared';
import { LineSplitter } from './bundle-io.js';
import { storedEntries } from './entries.js';
import type { BufferedWriter } from './output.js';
import type { LogRow, Store } from './store.js';

/**
 * `logvm render` and the qubesbuilder.BuildLog text file: a chain, from the
 * store or from a bundle, through the pure ChainRenderer into a writer, one
 * block (or 4096 bundle records) in memory at a time.
 */
export async function renderStoredLog(store: Store, log: LogRow, format: RenderFormat, out: BufferedWriter): Promise<void> {
  const r = new ChainRenderer(format, log.vm);
  for (const e of storedEntries(store, log.id)) {
    const h = e.header;
    for (const b of r.push({ time: h.time, session: h.session, kind: h.kind, flags: h.flags, payload: e.payload })) await out.write(b);
  }
  for (const b of r.end()) await out.write(b);
  await out.flush();
}

/** Renders a bundle's entries.jsonl; the caller has verified the bundle first. */
export async function renderBundle(dir: string, vm: string, format: RenderFormat, out: BufferedWriter): Promise<void> {
  const path = join(dir, BUNDLE_FILES.entries);
  if (!existsSync(path) || !statSync(path).isFile()) throw new Error(`${path} is not a regular file`);
  const r = new ChainRenderer(format, vm);
  const lines = new LineSplitter(MAX_RECORD_CHARS);
  const batch = new RecordBatch();
  const pending: Buffer[] = [];
  const drain = (): void => {
    const data = batch.data.subarray(0, batch.used);
    let off = 0;
    while (off < data.length) {
      const h = decodeHeader(data, off)!;
      const payload = data.subarray(off + ENTRY_HEADER_SIZE, off + ENTRY_HEADER_SIZE + h.length);
      // Copied: the batch buffer is reused for the next records.
      for (const b of r.push({ time: h.time, session: h.session, kind: h.kind, flags: h.flags, payload })) pending.push(Buffer.from(b));
      off += ENTRY_HEADER_SIZE + h.length;
    }
    batch.clear();
  };
  let n = 0;
  const input = createReadStream(path, { highWaterMark: 1 << 20 });
  try {
    for await (const chunk of input as AsyncIterable<Buffer>) {
      lines.push(chunk, (line) => {
        parseRecordBytes(line, ++n, batch);
        if (batch.full) drain();
      });
      for (const b of pending.splice(0)) await out.write(b);
    }
    lines.end((line) => parseRecordBytes(line, ++n, batch));
    drain();
    for (const b of [...pending.splice(0), ...r.end()]) await out.write(b);
    await out.flush();
  } finally {
    input.destroy();
  }
}
