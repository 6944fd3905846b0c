import { closeSync, createReadStream, createWriteStream, existsSync, lstatSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, statSync, writeFileSync, writeSync, type WriteStream } from 'node:fs';
import { once } from 'node:events';
import { pipeline } from 'node:stream/promises';
import type { Duplex, Writable } from 'node:stream';
import { join } from 'node:path';
import {
  AppendlogError,
  ARCHIVE_NAMES,
  BUNDLE_FILES,
  ChainVerifier,
  HASH_SIZE,
  TAG_BYTES,
  TAR_END,
  checkManifestAgainstChain,
  formatRecord,
  parseManifest,
  tagRecords,
  tarHeader,
  tarPadding,
  type ChainFacts,
  type SealManifest,
} from '@appendlog/shared';
import { blockEntries } from './entries.js';
import { pushStoredBlock, type Progress } from './verify-store.js';
import { BufferedWriter, writeAll } from './output.js';
import { archiveCompressionFor, compressor, type Compression } from './archive-io.js';
import { bundleReadme, openBundle } from './bundle-io.js';
import type { Store, BlockRow } from './store.js';

export interface ExportResult {
  manifest: SealManifest;
  facts: ChainFacts;
  form: 'directory' | 'archive';
  compression: Compression;
  version: 1 | 2;
}

/**
 * Export writes a sealed log as a self-contained bundle (docs/FORMAT.md
 * section 9): a directory, or one archive file when `out` ends in .tar,
 * .tar.gz / .tgz or .tar.zst (9.6). Version 2 (the default) stores the
 * entries as `entries.bin` (9.7); version 1 as `entries.jsonl` (9.3). The
 * chain is re-verified against the manifest while it is written, so a
 * damaged store is never exported as if it were fine. Everything is written
 * under OUT.partial and renamed to OUT only when complete.
 */
export async function exportBundle(
  store: Store,
  vm: string,
  name: string,
  out: string,
  opts: { version?: 1 | 2; progress?: Progress } = {},
): Promise<ExportResult> {
  const version = opts.version ?? 2;
  const log = store.requireLog(vm, name);
  const seal = store.getSeal(log.id);
  if (seal === undefined) throw new AppendlogError('NOT_SEALED', `log ${vm}/${name} is not sealed; seal it first (logvm seal)`);
  const compression = archiveCompressionFor(out);
  // Never delete what is there: an existing OUT (even an empty directory,
  // or a symlink) or OUT.partial (another export running, or what a crashed
  // one left) is the user's to look at and remove.
  for (const p of [out, `${out}.partial`]) {
    if (lexists(p)) throw new AppendlogError('BUNDLE_EXISTS', `${p} already exists; export never replaces or deletes it (remove it, or choose another --out)`);
  }
  const manifest = parseManifest(seal.manifest);
  const signatures = store.signatures(seal.seal_index).map((armored, i) => ({ name: `${String(i + 1).padStart(2, '0')}.asc`, armored }));
  const verifier = new ChainVerifier({ vm: log.vm, name: log.name, created: log.created });
  /**
   * The entries member's bytes, block by block. Version 2: each block's
   * records are checked (E1-E7) before they are handed on and hashed on the
   * addon's worker thread while the next block is read and written
   * (ChainVerifier.pushTaggedAsync, every hash compared in full with the
   * stored one), so the two cores share the work; a failure anywhere
   * throws, and nothing is renamed into place before `finish` has checked
   * the end. Version 1: each block is verified before it is written.
   * `reuse`: the sink copies what it is given at once, so three output
   * buffers serve every block: while one fills, up to two may still be in
   * the verifier (a block being hashed, and a small one queued behind it
   * without waiting, pushTaggedAsync); with two, the block being hashed was
   * written over and a good store failed CHAIN_HASH_MISMATCH.
   */
  const chunks = async function* (reuse: boolean): AsyncGenerator<Buffer | string> {
    const bufs: Array<Buffer | undefined> = [undefined, undefined, undefined];
    let k = 0;
    for (const block of store.blocks(log.id)) {
      if (version === 1) {
        pushStoredBlock(verifier, block, opts.progress, manifest.entries);
        yield* jsonRecords(block);
        continue;
      }
      const size = block.data.length + block.count * TAG_BYTES;
      let out: Buffer | undefined;
      if (reuse) {
        // Not from Buffer's shared pool: these buffers are written over block after block.
        const cur = bufs[k];
        out = cur !== undefined && cur.length >= size ? cur : (bufs[k] = Buffer.allocUnsafeSlow(Math.max(size, 1 << 20)));
        k = (k + 1) % bufs.length;
      }
      const records = block.hashes.length === block.count * HASH_SIZE ? tryTagRecords(block, out) : undefined;
      const before = verifier.entries;
      if (records === undefined || before + 1 !== block.first_seq) {
        // A row that is not what it says: judged entry by entry, after the blocks before it.
        await verifier.settle();
        pushStoredBlock(verifier, block, opts.progress, manifest.entries);
        throw new AppendlogError('STORE_INCONSISTENT', `block row at seq ${block.first_seq} cannot be exported`, { seq: block.first_seq });
      }
      const n = await verifier.pushTaggedAsync(records, TAG_BYTES, block.hashes);
      if (n !== block.count) {
        await verifier.settle();
        throw new AppendlogError('STORE_INCONSISTENT', `block row at seq ${block.first_seq} says ${block.count} entries from seq ${block.first_seq}; it holds ${n} from seq ${before + 1}`, {
          seq: before + 1,
        });
      }
      opts.progress?.(verifier.entries, manifest.entries);
      yield records;
    }
    await verifier.settle();
  };
  const finish = (): ChainFacts => {
    const facts = verifier.end({ entries: manifest.entries, head: Buffer.from(manifest.head, 'hex'), source: 'the seal manifest' });
    checkManifestAgainstChain(manifest, facts);
    return facts;
  };
  const partial = `${out}.partial`;
  if (compression === null) {
    try {
      mkdirSync(partial); // not recursive: fails if it appeared meanwhile
    } catch (e) {
      throw new AppendlogError((e as NodeJS.ErrnoException).code === 'EEXIST' ? 'BUNDLE_EXISTS' : 'USAGE', `cannot create ${partial}: ${(e as Error).message}`);
    }
  }
  const readme = Buffer.from(bundleReadme(manifest), 'utf8');
  try {
    let facts: ChainFacts;
    if (compression === null) {
      facts = await writeDirectory(partial, seal.manifest, signatures, readme, version, chunks, finish);
    } else {
      facts = await writeArchive(partial, compression, seal.manifest, signatures, readme, version, store, log.id, chunks, finish);
    }
    if (lexists(out)) throw new AppendlogError('BUNDLE_EXISTS', `${out} appeared while exporting; it was left as it is`);
    renameSync(partial, out);
    return { manifest, facts, form: compression === null ? 'directory' : 'archive', compression: compression ?? 'none', version };
  } catch (e) {
    rmSync(partial, { recursive: true, force: true });
    rmSync(`${partial}.entries`, { force: true });
    throw e;
  }
}

function lexists(p: string): boolean {
  try {
    lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

/** A block's version 2 records (tags from its stored hashes); undefined if its data is not `count` whole entries. */
function tryTagRecords(block: BlockRow, out: Buffer | undefined): Buffer | undefined {
  try {
    return tagRecords(block.data, block.hashes, block.count, out);
  } catch (e) {
    if (e instanceof RangeError) return undefined;
    throw e;
  }
}

function* jsonRecords(block: BlockRow): Generator<string> {
  for (const e of blockEntries(block)) {
    const h = e.header;
    yield formatRecord({ seq: h.seq, time: h.time, session: h.session, kind: h.kind, flags: h.flags, payload: e.payload, hash: e.hash });
  }
}

/**
 * The output file. Uncompressed, it is written with plain synchronous writes
 * through a 1 MiB coalescing buffer (the kernel copies the data, so the
 * caller may reuse its buffers at once: `reusable`). Through a compressor it
 * is a stream pipeline with backpressure.
 */
class FileSink {
  private readonly fd: number | undefined;
  private readonly stream: WriteStream | undefined;
  private readonly out: BufferedWriter | undefined;
  private readonly target: Writable | undefined;
  private done: Promise<void> | undefined;
  private readonly buf = Buffer.allocUnsafe(1 << 20);
  private used = 0;
  written = 0;
  /** Whether a buffer passed to write() may be changed once write() has returned. */
  readonly reusable: boolean;

  constructor(path: string, through?: Duplex) {
    if (through === undefined) {
      this.fd = openSync(path, 'wx');
      this.reusable = true;
      return;
    }
    this.reusable = false;
    const stream = createWriteStream(path, { flags: 'wx' });
    this.stream = stream;
    stream.on('error', () => undefined); // reported through the pipeline below
    this.done = pipeline(through, stream);
    this.done.catch(() => undefined);
    this.target = through;
    this.out = new BufferedWriter(through, 1 << 20);
  }

  private put(b: Buffer): void {
    for (let off = 0; off < b.length; ) off += writeSync(this.fd!, b, off, b.length - off);
  }

  private drain(): void {
    if (this.used > 0) this.put(this.buf.subarray(0, this.used));
    this.used = 0;
  }

  async write(data: Buffer | string): Promise<void> {
    const b = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    this.written += b.length;
    if (this.out !== undefined) {
      await this.out.write(b);
      return;
    }
    // In order: what is buffered goes out before a large write that bypasses the buffer.
    if (this.used + b.length > this.buf.length || b.length >= this.buf.length >> 2) this.drain();
    if (b.length >= this.buf.length >> 2) this.put(b);
    else this.used += b.copy(this.buf, this.used);
  }

  async close(): Promise<void> {
    if (this.fd !== undefined) {
      this.drain();
      closeSync(this.fd);
      return;
    }
    await this.out!.flush();
    const t = this.target!;
    await new Promise<void>((resolve, reject) => t.end((err?: Error | null) => (err ? reject(err) : resolve())));
    await this.done;
  }

  async abort(): Promise<void> {
    if (this.fd !== undefined) {
      try {
        closeSync(this.fd);
      } catch {
        // already closed
      }
      return;
    }
    this.target!.destroy();
    if (!this.stream!.closed) {
      this.stream!.destroy();
      await once(this.stream!, 'close').catch(() => undefined);
    }
  }
}

async function writeDirectory(
  dir: string,
  manifestBytes: Buffer,
  signatures: Array<{ name: string; armored: string }>,
  readme: Buffer,
  version: 1 | 2,
  chunks: (reuse: boolean) => AsyncGenerator<Buffer | string>,
  finish: () => ChainFacts,
): Promise<ChainFacts> {
  mkdirSync(join(dir, BUNDLE_FILES.signatures), { recursive: true });
  writeFileSync(join(dir, BUNDLE_FILES.manifest), manifestBytes);
  for (const s of signatures) writeFileSync(join(dir, BUNDLE_FILES.signatures, s.name), s.armored);
  const sink = new FileSink(join(dir, version === 2 ? ARCHIVE_NAMES.entriesV2 : ARCHIVE_NAMES.entriesV1));
  try {
    for await (const c of chunks(sink.reusable)) await sink.write(c);
    await sink.close();
  } catch (e) {
    await sink.abort();
    throw e;
  }
  const facts = finish();
  writeFileSync(join(dir, ARCHIVE_NAMES.readme), readme);
  return facts;
}

/**
 * The archive, in the order of 9.6: manifest.json, signatures/NN.asc,
 * README.txt, then the entries. A tar header states its member's size before
 * the data, and the archive is streamed (compressed on the fly): version 2's
 * size comes from the store rows (encodings plus a tag per entry) before any
 * entry is read, and the bytes written are checked against it; version 1's
 * JSON is written to a temporary file first.
 */
async function writeArchive(
  path: string,
  compression: Compression,
  manifestBytes: Buffer,
  signatures: Array<{ name: string; armored: string }>,
  readme: Buffer,
  version: 1 | 2,
  store: Store,
  logId: number,
  chunks: (reuse: boolean) => AsyncGenerator<Buffer | string>,
  finish: () => ChainFacts,
): Promise<ChainFacts> {
  const mtime = Math.floor(parseManifest(manifestBytes).sealed / 1000);
  let entriesFile: string | undefined;
  let entriesSize: number;
  let facts: ChainFacts | undefined;
  if (version === 1) {
    entriesFile = `${path}.entries`;
    rmSync(entriesFile, { force: true });
    const tmp = new FileSink(entriesFile);
    try {
      for await (const c of chunks(tmp.reusable)) await tmp.write(c);
      await tmp.close();
    } catch (e) {
      await tmp.abort();
      throw e;
    }
    facts = finish();
    entriesSize = tmp.written;
  } else {
    const t = store.blockTotals(logId);
    entriesSize = t.bytes + t.count * TAG_BYTES;
  }
  const sink = new FileSink(path, compressor(compression) ?? undefined);
  try {
    const member = async (name: string, data: Buffer): Promise<void> => {
      await sink.write(tarHeader(name, data.length, mtime));
      await sink.write(data);
      await sink.write(tarPadding(data.length));
    };
    await member(ARCHIVE_NAMES.manifest, manifestBytes);
    for (const s of signatures) await member(`${BUNDLE_FILES.signatures}/${s.name}`, Buffer.from(s.armored, 'utf8'));
    await member(ARCHIVE_NAMES.readme, readme);
    await sink.write(tarHeader(version === 2 ? ARCHIVE_NAMES.entriesV2 : ARCHIVE_NAMES.entriesV1, entriesSize, mtime));
    const start = sink.written;
    if (entriesFile !== undefined) {
      for await (const c of createReadStream(entriesFile, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) await sink.write(c);
    } else {
      for await (const c of chunks(sink.reusable)) await sink.write(c);
      facts = finish();
    }
    if (sink.written - start !== entriesSize) {
      throw new AppendlogError('STORE_INCONSISTENT', `the store's block rows hold ${entriesSize} bytes of records, but ${sink.written - start} were written`);
    }
    await sink.write(tarPadding(entriesSize));
    await sink.write(TAR_END);
    await sink.close();
  } catch (e) {
    await sink.abort();
    throw e;
  } finally {
    if (entriesFile !== undefined) rmSync(entriesFile, { force: true });
  }
  return facts!;
}

/**
 * `logvm cosign` on an archive: writes ARCHIVE.partial with the same
 * compression, the same members and the new signature member in name order
 * (9.6), streaming the entries across, then renames it over the archive.
 * Returns the new member's name.
 */
export async function addSignatureToArchive(path: string, armored: string, signedManifest: Buffer): Promise<string> {
  const b = await openBundle(path);
  const partial = `${path}.partial`;
  let sink: FileSink | undefined;
  try {
    if (b.form !== 'archive' || b.entriesSize === undefined) throw new AppendlogError('USAGE', `${path} is not a bundle archive`);
    // The archive was verified in an earlier pass: it must still hold the manifest that was signed.
    if (!b.manifestBytes.equals(signedManifest)) throw new AppendlogError('MALFORMED_BUNDLE', `${path} changed while it was being cosigned`);
    const taken = new Set(b.signatures.map((s) => s.file));
    let n = b.signatures.length + 1;
    const nameOf = (i: number): string => `${BUNDLE_FILES.signatures}/${String(i).padStart(2, '0')}.asc`;
    while (taken.has(nameOf(n))) n++;
    const added = nameOf(n);
    const sigs = [...b.signatures, { file: added, bytes: Buffer.from(armored, 'utf8') }].sort((x, y) => (x.file < y.file ? -1 : x.file > y.file ? 1 : 0));
    const mtime = Math.floor(parseManifest(b.manifestBytes).sealed / 1000);
    rmSync(partial, { force: true });
    const out = new FileSink(partial, compressor(b.compression) ?? undefined);
    sink = out;
    const member = async (name: string, data: Buffer): Promise<void> => {
      await out.write(tarHeader(name, data.length, mtime));
      await out.write(data);
      await out.write(tarPadding(data.length));
    };
    await member(ARCHIVE_NAMES.manifest, b.manifestBytes);
    for (const s of sigs) await member(s.file, Buffer.from(s.bytes));
    if (b.readme !== undefined) await member(ARCHIVE_NAMES.readme, b.readme);
    await out.write(tarHeader(b.version === 2 ? ARCHIVE_NAMES.entriesV2 : ARCHIVE_NAMES.entriesV1, b.entriesSize, mtime));
    for await (const c of b.entries()) await out.write(Buffer.from(c));
    await b.finish();
    await out.write(tarPadding(b.entriesSize));
    await out.write(TAR_END);
    await out.close();
    renameSync(partial, path);
    return added;
  } catch (e) {
    await sink?.abort();
    rmSync(partial, { force: true });
    throw e;
  } finally {
    b.close();
  }
}
