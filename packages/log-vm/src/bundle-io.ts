import { createReadStream, createWriteStream, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import type { WriteStream } from 'node:fs';
import { join } from 'node:path';
import {
  AppendlogError,
  BUNDLE_FILES,
  ChainVerifier,
  MAX_MANIFEST_BYTES,
  MAX_RECORD_CHARS,
  RecordBatch,
  checkManifestAgainstChain,
  formatRecord,
  parseManifest,
  parseRecordBytes,
  sealHash,
  type ChainFacts,
  type SealManifest,
} from '@appendlog/shared';
import { MAX_SIGNATURE_FILES, MAX_SIGNATURE_FILE_BYTES, verifyManifestSignatures, type SignatureInput, type SignatureReport, type TrustStore } from '@appendlog/shared/signatures';
import { blockEntries } from './entries.js';
import { pushStoredBlock } from './verify-store.js';
import { BufferedWriter } from './output.js';
import type { Progress } from './verify-store.js';
import type { Store } from './store.js';

/**
 * Export writes a self-contained bundle directory (docs/FORMAT.md section 9):
 *   manifest.json        the signed seal manifest, exact bytes
 *   signatures/NN.asc    detached armored signatures over manifest.json
 *   entries.jsonl        every entry, one JSON object per line
 *   README.txt           how to check it
 * The chain is re-verified against the manifest while it is written, so a
 * damaged store is never exported as if it were fine. The bundle is written
 * to DIR.partial and renamed to DIR only when complete.
 */
export async function exportBundle(
  store: Store,
  vm: string,
  name: string,
  outDir: string,
  progress?: Progress,
): Promise<{ manifest: SealManifest; facts: ChainFacts }> {
  const log = store.requireLog(vm, name);
  const seal = store.getSeal(log.id);
  if (seal === undefined) throw new AppendlogError('NOT_SEALED', `log ${vm}/${name} is not sealed; seal it first (logvm seal)`);
  if (existsSync(outDir) && (!statSync(outDir).isDirectory() || readdirSync(outDir).length > 0)) {
    throw new AppendlogError('BUNDLE_EXISTS', `${outDir} exists and is not an empty directory`);
  }
  const manifest = parseManifest(seal.manifest);
  const partial = `${outDir}.partial`;
  rmSync(partial, { recursive: true, force: true });
  mkdirSync(join(partial, BUNDLE_FILES.signatures), { recursive: true });
  let stream: WriteStream | undefined;
  try {
    writeFileSync(join(partial, BUNDLE_FILES.manifest), seal.manifest);
    store.signatures(seal.seal_index).forEach((armored, i) => {
      writeFileSync(join(partial, BUNDLE_FILES.signatures, `${String(i + 1).padStart(2, '0')}.asc`), armored);
    });
    const verifier = new ChainVerifier({ vm: log.vm, name: log.name, created: log.created });
    stream = createWriteStream(join(partial, BUNDLE_FILES.entries));
    stream.on('error', () => undefined); // reported through the writes and end() below
    const out = new BufferedWriter(stream, 256 * 1024);
    for (const block of store.blocks(log.id)) {
      pushStoredBlock(verifier, block, progress, manifest.entries);
      for (const e of blockEntries(block)) {
        const h = e.header;
        await out.write(formatRecord({ seq: h.seq, time: h.time, session: h.session, kind: h.kind, flags: h.flags, payload: e.payload, hash: e.hash }));
      }
    }
    await out.flush();
    const ending = stream;
    await new Promise<void>((resolve, reject) => ending.end((err?: Error | null) => (err ? reject(err) : resolve())));
    const facts = verifier.end({ entries: manifest.entries, head: Buffer.from(manifest.head, 'hex'), source: 'the seal manifest' });
    checkManifestAgainstChain(manifest, facts);
    writeFileSync(join(partial, 'README.txt'), bundleReadme(manifest));
    if (existsSync(outDir)) rmSync(outDir, { recursive: true });
    renameSync(partial, outDir);
    return { manifest, facts };
  } catch (e) {
    // Let the half-written file close before removing it (else its late error is unhandled).
    if (stream !== undefined && !stream.closed) {
      stream.destroy();
      await once(stream, 'close').catch(() => undefined);
    }
    rmSync(partial, { recursive: true, force: true });
    throw e;
  }
}

function bundleReadme(m: SealManifest): string {
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

function readLimited(path: string, max: number, what: string): Buffer {
  let size: number;
  try {
    const st = statSync(path);
    if (!st.isFile()) throw new AppendlogError('MALFORMED_BUNDLE', `${what} is not a regular file`);
    size = st.size;
  } catch (e) {
    if (e instanceof AppendlogError) throw e;
    throw new AppendlogError('MALFORMED_BUNDLE', `${what} is missing (${(e as Error).message})`);
  }
  if (size > max) throw new AppendlogError('MALFORMED_BUNDLE', `${what} is ${size} bytes, more than any valid one`);
  return readFileSync(path);
}

export function readBundleManifest(dir: string): { manifest: SealManifest; bytes: Buffer } {
  const bytes = readLimited(join(dir, BUNDLE_FILES.manifest), MAX_MANIFEST_BYTES, BUNDLE_FILES.manifest);
  return { manifest: parseManifest(bytes), bytes };
}

export function readBundleSignatures(dir: string): SignatureInput[] {
  const sigDir = join(dir, BUNDLE_FILES.signatures);
  if (!existsSync(sigDir)) return [];
  const names = readdirSync(sigDir).filter((n) => n.endsWith('.asc')).sort();
  if (names.length > MAX_SIGNATURE_FILES) throw new AppendlogError('MALFORMED_BUNDLE', `${names.length} signature files; at most ${MAX_SIGNATURE_FILES}`);
  return names.map((n) => ({
    file: `${BUNDLE_FILES.signatures}/${n}`,
    bytes: readLimited(join(sigDir, n), MAX_SIGNATURE_FILE_BYTES, `${BUNDLE_FILES.signatures}/${n}`),
  }));
}

/**
 * Streams entries.jsonl through the chain verifier in constant memory and
 * checks the end against the manifest. A line longer than any valid record
 * is refused (LineSplitter), as is one that is not UTF-8 (parseRecordBytes).
 */
export interface Checkpoint {
  seq: number;
  head: Buffer;
  label: string;
}

export async function verifyBundleEntries(dir: string, manifest: SealManifest, progress?: Progress, checkpoints?: Checkpoint[]): Promise<ChainFacts> {
  const path = join(dir, BUNDLE_FILES.entries);
  if (!existsSync(path)) throw new AppendlogError('MALFORMED_BUNDLE', `${BUNDLE_FILES.entries} is missing`);
  // A FIFO or device would never end (or never start): only a regular file is read.
  if (!statSync(path).isFile()) throw new AppendlogError('MALFORMED_BUNDLE', `${BUNDLE_FILES.entries} is not a regular file`);
  const verifier = new ChainVerifier({ vm: manifest.vm, name: manifest.name, created: manifest.created });
  if (checkpoints !== undefined) verifier.expectHeads(checkpoints);
  const input = createReadStream(path, { highWaterMark: 1 << 20 });
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
      if (line.length === 0) throw new AppendlogError('MALFORMED_BUNDLE', `${BUNDLE_FILES.entries} line ${n}: empty line`);
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
      for await (const chunk of input as AsyncIterable<Buffer>) lines.push(chunk, onLine);
      lines.end(onLine);
    } catch (e) {
      flush(); // records before an over-long or non-UTF-8 line are checked first
      throw e;
    }
    flush();
  } catch (e) {
    if (e instanceof AppendlogError) throw e;
    throw new AppendlogError('MALFORMED_BUNDLE', `${BUNDLE_FILES.entries} line ${n}: ${(e as Error).message}`);
  } finally {
    input.destroy();
  }
  const facts = verifier.end({ entries: manifest.entries, head: Buffer.from(manifest.head, 'hex'), source: 'the signed manifest' });
  checkManifestAgainstChain(manifest, facts);
  return facts;
}

/**
 * The whole bundle check, trust first: manifest shape, then signatures by at
 * least `threshold` distinct trusted keys, then every entry against the
 * (now authenticated) manifest, then optionally the link to the previous seal.
 */
export async function verifyBundle(
  dir: string,
  trust: TrustStore,
  threshold: number,
  opts: { progress?: Progress; previous?: string; checkpoints?: Checkpoint[]; now?: number } = {},
): Promise<BundleVerification> {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new AppendlogError('MALFORMED_BUNDLE', `${dir} is not a bundle directory`);
  const { manifest, bytes } = readBundleManifest(dir);
  const signatures = await verifyManifestSignatures({
    manifest: bytes,
    sealed: manifest.sealed,
    signatures: readBundleSignatures(dir),
    trust,
    threshold,
    now: opts.now ?? Date.now(),
  });
  const facts = await verifyBundleEntries(dir, manifest, opts.progress, opts.checkpoints);
  if (opts.previous !== undefined) checkSealLink(readBundleManifest(opts.previous).bytes, manifest);
  return { manifest, manifestBytes: bytes, facts, signatures };
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
    throw new AppendlogError('MALFORMED_BUNDLE', `${BUNDLE_FILES.entries} line ${this.lineNo + 1}: longer than any valid record`);
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
