import { closeSync, constants as fsConstants, createReadStream, fstatSync, lstatSync, openSync, readdirSync, readSync, statSync, type ReadStream } from 'node:fs';
import { join } from 'node:path';
import {
  AppendlogError,
  ARCHIVE_NAMES,
  BUNDLE_FILES,
  ChainVerifier,
  MAX_MANIFEST_BYTES,
  MAX_RECORD_CHARS,
  RecordBatch,
  TAG_BYTES,
  TaggedRecordSplitter,
  checkManifestAgainstChain,
  parseManifest,
  parseRecordBytes,
  sealHash,
  ENTRY_HEADER_SIZE,
  decodeHeader,
  type ChainFacts,
  type DecodedHeader,
  type SealManifest,
} from '@appendlog/shared';
import { MAX_SIGNATURE_FILES, MAX_SIGNATURE_FILE_BYTES, verifyManifestSignatures, type SignatureInput, type SignatureReport, type TrustStore } from '@appendlog/shared/signatures';
import type { SignatureCheck } from './signature-check.js';
import { openBundleArchive, type Compression } from './archive-io.js';
import type { Progress } from './verify-store.js';

export { exportBundle } from './bundle-export.js';

export function bundleReadme(m: SealManifest): string {
  return `appendlog bundle: log ${m.vm}/${m.name}, ${m.entries} entries, sealed ${new Date(m.sealed).toISOString()}
head ${m.head}

Check it with the release public key(s):
  logvm verify-chain . --key RELEASE-KEY.asc [--key ...] [--threshold M]
  gpg --verify signatures/01.asc manifest.json

Format: docs/FORMAT.md of appendlog.
`;
}

export interface BundleVerification {
  manifest: SealManifest;
  manifestBytes: Buffer;
  facts: ChainFacts;
  signatures: SignatureReport;
}

/**
 * Opens a file of an untrusted bundle directory (docs/FORMAT.md 9.1): judged
 * before anything is followed. A symbolic link is refused (O_NOFOLLOW: it
 * could point at the auditor's own files or at /dev/zero), and so is anything
 * but a regular file; O_NONBLOCK keeps a FIFO from blocking the open, and the
 * type is taken from the opened descriptor (fstat), so it cannot change
 * between the check and the read.
 */
export function openBundleFile(path: string, what: string): { fd: number; size: number } {
  let fd: number;
  try {
    fd = openSync(path, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ELOOP') throw new AppendlogError('MALFORMED_BUNDLE', `${what} is a symbolic link; a bundle holds only regular files`);
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new AppendlogError('MALFORMED_BUNDLE', `${what} is missing`);
    throw new AppendlogError('MALFORMED_BUNDLE', `${what} cannot be opened (${code ?? (e as Error).message})`);
  }
  const st = fstatSync(fd);
  if (!st.isFile()) {
    closeSync(fd);
    throw new AppendlogError('MALFORMED_BUNDLE', `${what} is not a regular file`);
  }
  return { fd, size: st.size };
}

function readLimited(path: string, max: number, what: string): Buffer {
  const { fd, size } = openBundleFile(path, what);
  try {
    if (size > max) throw new AppendlogError('MALFORMED_BUNDLE', `${what} is ${size} bytes, more than any valid one`);
    // Read at most max + 1 bytes: a file growing under us is still bounded.
    const buf = Buffer.allocUnsafe(Math.min(size, max) + 1);
    let used = 0;
    for (let n = 1; n > 0 && used < buf.length; used += n) n = readSync(fd, buf, used, buf.length - used, null);
    if (used > max) throw new AppendlogError('MALFORMED_BUNDLE', `${what} is more than ${max} bytes, more than any valid one`);
    return buf.subarray(0, used);
  } finally {
    closeSync(fd);
  }
}

/** Whether a path exists, without following a link (a dangling link exists). */
function lexists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** The manifest of a bundle directory or archive (an archive is read only up to its entries). */
export async function readBundleManifest(target: string): Promise<{ manifest: SealManifest; bytes: Buffer }> {
  const bundle = await openBundle(target);
  bundle.close();
  return { manifest: parseManifest(bundle.manifestBytes), bytes: bundle.manifestBytes };
}

export function readDirSignatures(dir: string): SignatureInput[] {
  const sigDir = join(dir, BUNDLE_FILES.signatures);
  let st;
  try {
    st = lstatSync(sigDir);
  } catch {
    return []; // no signatures/ at all: SIGNATURE_MISSING (G2)
  }
  if (st.isSymbolicLink()) throw new AppendlogError('MALFORMED_BUNDLE', `${BUNDLE_FILES.signatures} is a symbolic link; it must be a directory`);
  if (!st.isDirectory()) throw new AppendlogError('MALFORMED_BUNDLE', `${BUNDLE_FILES.signatures} is not a directory`);
  let all: string[];
  try {
    all = readdirSync(sigDir);
  } catch (e) {
    throw new AppendlogError('MALFORMED_BUNDLE', `${BUNDLE_FILES.signatures} cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  const names = all.filter((n) => n.endsWith('.asc')).sort();
  if (names.length > MAX_SIGNATURE_FILES) throw new AppendlogError('MALFORMED_BUNDLE', `${names.length} signature files; at most ${MAX_SIGNATURE_FILES}`);
  return names.map((n) => ({
    file: `${BUNDLE_FILES.signatures}/${n}`,
    bytes: readLimited(join(sigDir, n), MAX_SIGNATURE_FILE_BYTES, `${BUNDLE_FILES.signatures}/${n}`),
  }));
}

/**
 * A bundle opened for one pass: the manifest and signatures are read (small,
 * bounded), the entries are ready to stream. For an archive, `finish` reads
 * what follows the entries (only the end-of-archive marker may).
 */
export interface OpenedBundle {
  form: 'directory' | 'archive';
  compression: Compression;
  version: 1 | 2;
  manifestBytes: Buffer;
  signatures: SignatureInput[];
  readme?: Buffer;
  /** Archive only: the entries member's size. */
  entriesSize?: number;
  entries(): AsyncIterable<Buffer>;
  finish(): Promise<void>;
  close(): void;
}

export async function openBundle(target: string): Promise<OpenedBundle> {
  let st;
  try {
    st = statSync(target);
  } catch (e) {
    // The positional argument is always a bundle (6.6): say how to name a store log instead.
    throw new AppendlogError('MALFORMED_BUNDLE', `${target} is not a bundle: it does not exist (to verify a log in the store: --store VM/NAME)`, { cause: e });
  }
  // The target itself is followed if it is a link: the auditor named it.
  if (st.isDirectory()) return openBundleDir(target);
  if (st.isFile()) return openBundleArchive(target);
  throw new AppendlogError('MALFORMED_BUNDLE', `${target} is neither a bundle directory nor a bundle archive`);
}

function openBundleDir(dir: string): OpenedBundle {
  const manifestBytes = readLimited(join(dir, BUNDLE_FILES.manifest), MAX_MANIFEST_BYTES, BUNDLE_FILES.manifest);
  const signatures = readDirSignatures(dir);
  const v1 = join(dir, ARCHIVE_NAMES.entriesV1);
  const v2 = join(dir, ARCHIVE_NAMES.entriesV2);
  const has1 = lexists(v1);
  const has2 = lexists(v2);
  if (has1 && has2) throw new AppendlogError('MALFORMED_BUNDLE', `both ${ARCHIVE_NAMES.entriesV1} and ${ARCHIVE_NAMES.entriesV2}: a bundle has one`);
  if (!has1 && !has2) throw new AppendlogError('MALFORMED_BUNDLE', `${ARCHIVE_NAMES.entriesV2} (or ${ARCHIVE_NAMES.entriesV1}) is missing`);
  const path = has2 ? v2 : v1;
  // A FIFO or device would never end (or never start), a link could point anywhere: only a regular file is read.
  const { fd } = openBundleFile(path, has2 ? ARCHIVE_NAMES.entriesV2 : ARCHIVE_NAMES.entriesV1);
  let input: ReadStream | undefined;
  return {
    form: 'directory',
    compression: 'none',
    version: has2 ? 2 : 1,
    manifestBytes,
    signatures,
    entries: () => (input = createReadStream('', { fd, highWaterMark: 1 << 20 })) as AsyncIterable<Buffer>,
    finish: async () => undefined,
    close: () => {
      if (input !== undefined) input.destroy();
      else closeSync(fd);
    },
  };
}

/** A receipt's checkpoint: the hash of entry `seq` must be `head`. */
export interface Checkpoint {
  seq: number;
  head: Buffer;
  label: string;
}

/**
 * Streams a bundle's entries (version 1 `entries.jsonl` or version 2
 * `entries.bin`, from a directory or an archive) through the chain verifier
 * in constant memory, then checks the end against the manifest.
 */
export async function verifyBundleEntries(
  bundle: OpenedBundle,
  manifest: SealManifest,
  progress?: Progress,
  checkpoints?: Checkpoint[],
  stop?: () => boolean,
): Promise<ChainFacts> {
  const verifier = new ChainVerifier({ vm: manifest.vm, name: manifest.name, created: manifest.created });
  if (checkpoints !== undefined) verifier.expectHeads(checkpoints);
  const input = stop === undefined ? bundle.entries() : stopping(bundle.entries(), stop);
  if (bundle.version === 2) await pushTaggedEntries(verifier, input, manifest, progress);
  else await pushJsonEntries(verifier, input, manifest, progress);
  await bundle.finish();
  const facts = verifier.end({ entries: manifest.entries, head: Buffer.from(manifest.head, 'hex'), source: 'the signed manifest' });
  checkManifestAgainstChain(manifest, facts);
  return facts;
}

/** The chunks of `input` until `stop()` says the check has already failed elsewhere (that failure is reported). */
async function* stopping(input: AsyncIterable<Buffer>, stop: () => boolean): AsyncGenerator<Buffer> {
  for await (const chunk of input) {
    if (stop()) throw new AppendlogError('INTERNAL', 'the entries were not read to the end: the signature check failed');
    yield chunk;
  }
}

/**
 * Version 2: runs of whole records go to the verifier as they arrive; each
 * run is checked here and hashed in the background while the next is read
 * (ChainVerifier.pushTaggedAsync), so reading, checking and hashing use both
 * cores and the first bad seq is still the one reported.
 */
async function pushTaggedEntries(verifier: ChainVerifier, input: AsyncIterable<Buffer>, manifest: SealManifest, progress?: Progress): Promise<void> {
  const runs: Buffer[] = [];
  const splitter = new TaggedRecordSplitter((records) => runs.push(records));
  let chunks = 0;
  try {
    for await (const chunk of input) {
      splitter.push(chunk);
      // A record cut by the chunk boundary comes as a small run of its own
      // before the chunk's run; pushTaggedAsync queues it without waiting,
      // so checking the chunk's run still overlaps hashing the one before.
      for (const r of runs.splice(0)) await verifier.pushTaggedAsync(r, TAG_BYTES);
      if ((++chunks & 15) === 0) progress?.(verifier.entries, manifest.entries);
    }
    await verifier.settle();
  } catch (e) {
    await verifier.settle().catch(() => undefined);
    throw e;
  }
  splitter.end(verifier.entries + 1);
}

async function pushJsonEntries(verifier: ChainVerifier, input: AsyncIterable<Buffer>, manifest: SealManifest, progress?: Progress): Promise<void> {
  const lines = new LineSplitter(MAX_RECORD_CHARS);
  const batch = new RecordBatch();
  const flush = (): void => {
    if (batch.count === 0) return;
    const data = batch.data.subarray(0, batch.used);
    const hashes = batch.hashes.subarray(0, batch.count * 32);
    batch.clear(); // first: a failing batch must not be pushed twice
    verifier.pushBlock(data, hashes);
  };
  let n = 0;
  const onLine = (line: Buffer): void => {
    n++;
    try {
      if (line.length === 0) throw new AppendlogError('MALFORMED_BUNDLE', `${BUNDLE_FILES.entries} line ${n}: empty line`, { line: n });
      parseRecordBytes(line, n, batch);
    } catch (e) {
      flush(); // a changed entry before the bad line is the first failure
      throw e;
    }
    if (batch.full) {
      flush();
      progress?.(n, manifest.entries);
    }
  };
  try {
    try {
      for await (const chunk of input) lines.push(chunk, onLine);
      lines.end(onLine);
    } catch (e) {
      flush(); // records before an over-long or non-UTF-8 line are checked first
      throw e;
    }
    flush();
  } catch (e) {
    if (e instanceof AppendlogError) throw e;
    throw new AppendlogError('MALFORMED_BUNDLE', `${BUNDLE_FILES.entries} line ${n}: ${(e as Error).message}`, { line: n });
  }
}

/**
 * The whole bundle check, trust first: manifest shape, then signatures by at
 * least `threshold` distinct trusted keys, then every entry against the
 * (now authenticated) manifest, then optionally the link to the previous seal.
 * `target` is a bundle directory or a bundle archive (9.6), read in one pass.
 *
 * With a SignatureCheck (verify-chain) the trust material and the
 * signatures are checked on another thread while the entries stream; the
 * failures reported are the same, in the same order: one found here waits
 * for the trust material (its error comes first), an entry failure waits for
 * the signatures (theirs comes first), and a signature failure stops the
 * entries at their next read.
 */
export async function verifyBundle(
  target: string,
  trust: TrustStore | SignatureCheck,
  threshold: number,
  opts: { progress?: Progress; previous?: string; checkpoints?: Checkpoint[]; now?: number } = {},
): Promise<BundleVerification> {
  const check = 'verify' in trust ? trust : undefined;
  const trustFirst = async (e: unknown): Promise<never> => {
    await check?.trusted;
    throw e;
  };
  const bundle = await openBundle(target).catch(trustFirst);
  try {
    let manifest: SealManifest;
    try {
      manifest = parseManifest(bundle.manifestBytes);
    } catch (e) {
      return await trustFirst(e);
    }
    const input = { manifest: bundle.manifestBytes, sealed: manifest.sealed, signatures: bundle.signatures, threshold, now: opts.now ?? Date.now() };
    let signatures: SignatureReport;
    let facts: ChainFacts;
    if (check === undefined) {
      signatures = await verifyManifestSignatures({ ...input, trust: trust as TrustStore });
      facts = await verifyBundleEntries(bundle, manifest, opts.progress, opts.checkpoints);
    } else {
      const pending = check.verify(input);
      let refused = false;
      pending.catch(() => {
        refused = true;
      });
      try {
        facts = await verifyBundleEntries(bundle, manifest, opts.progress, opts.checkpoints, () => refused);
      } catch (e) {
        await pending; // a trust or signature failure is the first failure
        throw e;
      }
      signatures = await pending;
    }
    if (opts.previous !== undefined) checkSealLink(await readPreviousManifest(opts.previous), manifest);
    return { manifest, manifestBytes: bundle.manifestBytes, facts, signatures };
  } finally {
    bundle.close();
  }
}

/**
 * PREV's manifest bytes for the seal-chain link (6.5). Whatever is wrong with
 * PREV (missing, not a bundle, a manifest that does not parse) means the link
 * cannot be shown: SEAL_CHAIN_BROKEN, never one of the bundle codes, which
 * would say that the bundle being verified is broken.
 */
export async function readPreviousManifest(prev: string): Promise<Buffer> {
  try {
    return (await readBundleManifest(prev)).bytes;
  } catch (e) {
    if (!(e instanceof AppendlogError)) throw e;
    const why = e.message.replace(/ \(to verify a log in the store: --store VM\/NAME\)/, '');
    throw new AppendlogError('SEAL_CHAIN_BROKEN', `--previous ${prev}: ${why}; the link to the previous seal cannot be checked`);
  }
}

/** Checks that `manifest` is the seal made right after the one whose bytes are `previousBytes`. */
export function checkSealLink(previousBytes: Buffer, manifest: SealManifest): void {
  const prev = parseManifest(previousBytes);
  const link = sealHash(previousBytes).toString('hex');
  if (manifest.prevSeal !== link || manifest.sealIndex !== prev.sealIndex + 1) {
    throw new AppendlogError(
      'SEAL_CHAIN_BROKEN',
      `seal #${manifest.sealIndex} does not follow seal #${prev.sealIndex} (${prev.vm}/${prev.name}): prevSeal ${manifest.prevSeal ?? 'null'}, expected ${link}`,
    );
  }
}

/**
 * Splits a file into lines, in linear time and bounded memory: a line longer
 * than `maxBytes` is refused as soon as it is that long (split2 would re-scan
 * its buffer on every chunk: quadratic on a hostile long line). Lines are
 * handed over synchronously as bytes; parseRecordBytes checks their UTF-8.
 */
export class LineSplitter {
  private parts: Buffer[] = [];
  private size = 0;
  private lineNo = 0;

  constructor(private readonly maxBytes: number) {}

  private tooLong(): never {
    throw new AppendlogError('MALFORMED_BUNDLE', `${BUNDLE_FILES.entries} line ${this.lineNo + 1}: longer than any valid record`, { line: this.lineNo + 1 });
  }

  push(chunk: Buffer, onLine: (line: Buffer) => void): void {
    let pos = 0;
    for (let nl = chunk.indexOf(10, pos); nl >= 0; nl = chunk.indexOf(10, pos)) {
      const piece = chunk.subarray(pos, nl);
      if (this.size + piece.length > this.maxBytes) this.tooLong();
      this.lineNo++;
      onLine(this.parts.length === 0 ? piece : Buffer.concat([...this.parts, piece]));
      this.parts = [];
      this.size = 0;
      pos = nl + 1;
    }
    if (pos < chunk.length) {
      this.size += chunk.length - pos;
      if (this.size > this.maxBytes) this.tooLong();
      this.parts.push(chunk.subarray(pos));
    }
  }

  /** A last line without its newline. */
  end(onLine: (line: Buffer) => void): void {
    if (this.size === 0) return;
    this.lineNo++;
    onLine(Buffer.concat(this.parts));
    this.parts = [];
    this.size = 0;
  }
}

/** One entry of a bundle, after its batch verified. */
export interface BundleEntry {
  header: DecodedHeader;
  encoded: Buffer;
  payload: Buffer;
  hash: Buffer;
}

/**
 * The entries of an opened bundle in seq order, in verified batches: each
 * batch is yielded only once the chain up to its end has checked, and the
 * end is checked against the manifest (not the signatures: `show` has no
 * keys; verify-chain checks them).
 */
export async function* verifiedBundleEntries(bundle: OpenedBundle, manifest: SealManifest): AsyncGenerator<BundleEntry[]> {
  const verifier = new ChainVerifier({ vm: manifest.vm, name: manifest.name, created: manifest.created });
  const none = Buffer.alloc(0);
  const split = (data: Buffer, tail: number): BundleEntry[] => {
    const out: BundleEntry[] = [];
    for (let off = 0; off < data.length; ) {
      const header = decodeHeader(data, off)!;
      const end = off + ENTRY_HEADER_SIZE + header.length;
      out.push({ header, encoded: data.subarray(off, end), payload: data.subarray(off + ENTRY_HEADER_SIZE, end), hash: none });
      off = end + tail;
    }
    return out;
  };
  const ready: BundleEntry[][] = [];
  if (bundle.version === 2) {
    const splitter = new TaggedRecordSplitter((records) => {
      verifier.pushTagged(records, TAG_BYTES);
      ready.push(split(Buffer.from(records), TAG_BYTES));
    });
    for await (const chunk of bundle.entries()) {
      splitter.push(chunk);
      yield* ready.splice(0);
    }
    splitter.end(verifier.entries + 1);
  } else {
    const lines = new LineSplitter(MAX_RECORD_CHARS);
    const batch = new RecordBatch();
    const flush = (): void => {
      if (batch.count === 0) return;
      const data = Buffer.from(batch.data.subarray(0, batch.used));
      const hashes = batch.hashes.subarray(0, batch.count * 32);
      batch.clear();
      verifier.pushBlock(data, hashes);
      ready.push(split(data, 0));
    };
    let n = 0;
    const onLine = (line: Buffer): void => {
      n++;
      if (line.length === 0) throw new AppendlogError('MALFORMED_BUNDLE', `${BUNDLE_FILES.entries} line ${n}: empty line`);
      parseRecordBytes(line, n, batch);
      if (batch.full) flush();
    };
    for await (const chunk of bundle.entries()) {
      lines.push(chunk, onLine);
      yield* ready.splice(0);
    }
    lines.end(onLine);
    flush();
  }
  yield* ready.splice(0);
  await bundle.finish();
  checkManifestAgainstChain(manifest, verifier.end({ entries: manifest.entries, head: Buffer.from(manifest.head, 'hex'), source: 'the manifest' }));
}
