import { closeSync, createReadStream, openSync, readSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { pipeline, type Duplex, type Readable } from 'node:stream';
import { createGunzip, createGzip, constants as zlibConstants } from 'node:zlib';
import { AppendlogError, ArchiveLayout, MAX_MANIFEST_BYTES, TarStream } from '@appendlog/shared';
import { MAX_SIGNATURE_FILES, MAX_SIGNATURE_FILE_BYTES, type SignatureInput } from '@appendlog/shared/signatures';
import type { OpenedBundle } from './bundle-io.js';

/**
 * Files and streams of the archive form (docs/FORMAT.md section 9.6): which
 * compression a path asks for, compressors and decompressors, and opening an
 * archive for one streaming pass. Nothing is ever unpacked to disk.
 */
export type Compression = 'none' | 'gzip' | 'zstd';

/** The archive form an --out path asks for by its extension, or null for a directory. */
export function archiveCompressionFor(path: string): Compression | null {
  if (path.endsWith('.tar')) return 'none';
  if (path.endsWith('.tar.gz') || path.endsWith('.tgz')) return 'gzip';
  if (path.endsWith('.tar.zst') || path.endsWith('.tzst')) return 'zstd';
  return null;
}

interface ZstdModule {
  CompressStream: new (params?: Record<string, number>) => Duplex;
  DecompressStream: new () => Duplex;
}

let zstd: ZstdModule | null | undefined;

/**
 * Zstandard. Node 20's zlib has no zstd (createZstdCompress arrived in Node
 * 22.15 / 23.8), so it comes from zstd-napi (Node-API bindings to the
 * reference libzstd, built from its bundled sources at install). Where a
 * newer Node has it in zlib, that is used instead.
 */
function zstdStreams(): { compress: () => Duplex; decompress: () => Duplex } {
  const z = (process as unknown as { getBuiltinModule?: (m: string) => unknown }).getBuiltinModule?.('node:zlib') as
    | { createZstdCompress?: () => Duplex; createZstdDecompress?: () => Duplex }
    | undefined;
  if (typeof z?.createZstdCompress === 'function' && typeof z.createZstdDecompress === 'function') {
    return { compress: () => z.createZstdCompress!(), decompress: () => z.createZstdDecompress!() };
  }
  if (zstd === undefined) {
    try {
      zstd = createRequire(import.meta.url)('zstd-napi') as ZstdModule;
    } catch {
      zstd = null;
    }
  }
  if (zstd === null) {
    throw new AppendlogError('USAGE', 'zstd is not available here (no zlib zstd in this Node, zstd-napi not installed): use .tar or .tar.gz');
  }
  const m = zstd;
  // Level 3, zstd's default: fast, and most of the gain on logs.
  return { compress: () => new m.CompressStream({ compressionLevel: 3 }), decompress: () => new m.DecompressStream() };
}

export function compressor(kind: Compression): Duplex | null {
  if (kind === 'gzip') return createGzip({ level: 6 });
  if (kind === 'zstd') return zstdStreams().compress();
  return null;
}

/**
 * Whether a file looks like a bundle archive by its first bytes (gzip, zstd,
 * or a ustar header): so `attest`, `verify-artifact` and `compare` can tell
 * one from an evidence file (JSON) without trusting its name.
 */
export function looksLikeArchive(path: string): boolean {
  let fd: number | undefined;
  try {
    // Only a regular file: opening a FIFO would wait for a writer forever.
    if (!statSync(path).isFile()) return false;
    fd = openSync(path, 'r');
    const b = Buffer.alloc(512);
    const n = readSync(fd, b, 0, 512, 0);
    if (n >= 2 && b[0] === 0x1f && b[1] === 0x8b) return true;
    if (n >= 4 && b.readUInt32BE(0) === 0x28b52ffd) return true;
    return n === 512 && b.toString('latin1', 257, 262) === 'ustar';
  } catch {
    return false;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** What the archive's first bytes say it is: gzip (1f 8b), zstd (28 b5 2f fd) or plain tar. */
function sniff(path: string): Compression {
  const fd = openSync(path, 'r');
  try {
    const b = Buffer.alloc(4);
    const n = readSync(fd, b, 0, 4, 0);
    if (n >= 2 && b[0] === 0x1f && b[1] === 0x8b) return 'gzip';
    if (n === 4 && b.readUInt32BE(0) === 0x28b52ffd) return 'zstd';
    return 'none';
  } finally {
    closeSync(fd);
  }
}

/** The archive's tar bytes as a stream: decompressed on the fly. Decompressor errors are MALFORMED_BUNDLE. */
function tarBytes(path: string, kind: Compression): Readable {
  const file = createReadStream(path, { highWaterMark: 1 << 20 });
  if (kind === 'none') return file;
  const d = kind === 'gzip' ? createGunzip({ chunkSize: 1 << 20, finishFlush: zlibConstants.Z_SYNC_FLUSH }) : zstdStreams().decompress();
  pipeline(file, d, () => undefined);
  const out = d as unknown as Readable;
  out.on('error', () => undefined);
  return out;
}

function wrapDecompressError(e: unknown, kind: Compression): never {
  if (e instanceof AppendlogError) throw e;
  throw new AppendlogError('MALFORMED_BUNDLE', `archive: ${kind === 'none' ? 'read failed' : `${kind} data is damaged`}: ${(e as Error).message}`);
}

/** Reads one whole (small, size-checked) member. */
async function readMember(tar: TarStream, size: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of tar.body()) parts.push(Buffer.from(c));
  const b = Buffer.concat(parts);
  if (b.length !== size) throw new AppendlogError('MALFORMED_BUNDLE', 'archive: member shorter than its header says');
  return b;
}

/**
 * Opens a bundle archive for one pass: reads and checks every header up to
 * the entries member (manifest, signatures, README), which it leaves ready to
 * stream. The layout rules (ArchiveLayout) refuse links, duplicate, absolute,
 * `..` and unknown members, wrong order and oversize members.
 */
export async function openBundleArchive(path: string): Promise<OpenedBundle> {
  const kind = sniff(path);
  const source = tarBytes(path, kind);
  const tar = new TarStream(source as AsyncIterable<Buffer>);
  const layout = new ArchiveLayout({ manifest: MAX_MANIFEST_BYTES, signature: MAX_SIGNATURE_FILE_BYTES, signatureFiles: MAX_SIGNATURE_FILES });
  let manifestBytes: Buffer | undefined;
  let readme: Buffer | undefined;
  const signatures: SignatureInput[] = [];
  let version: 1 | 2 | undefined;
  let entriesSize = 0;
  try {
    for (;;) {
      const m = await tar.next();
      if (m === null) {
        layout.finish();
        break;
      }
      const role = layout.admit(m);
      if (role === 'manifest') manifestBytes = await readMember(tar, m.size);
      else if (role === 'signature') signatures.push({ file: m.name, bytes: await readMember(tar, m.size) });
      else if (role === 'readme') readme = await readMember(tar, m.size);
      else {
        version = m.name.endsWith('.bin') ? 2 : 1;
        entriesSize = m.size;
        break;
      }
    }
  } catch (e) {
    source.destroy();
    wrapDecompressError(e, kind);
  }
  const entriesVersion = version!;
  return {
    form: 'archive',
    compression: kind,
    version: entriesVersion,
    manifestBytes: manifestBytes!,
    signatures,
    ...(readme !== undefined ? { readme } : {}),
    entriesSize,
    entries: () => guard(tar.body(), kind),
    finish: async () => {
      try {
        const after = await tar.next();
        if (after !== null) layout.admit(after); // refuses: nothing may follow the entries
      } catch (e) {
        wrapDecompressError(e, kind);
      }
    },
    close: () => source.destroy(),
  };
}

async function* guard(it: AsyncIterable<Buffer>, kind: Compression): AsyncGenerator<Buffer> {
  try {
    yield* it;
  } catch (e) {
    wrapDecompressError(e, kind);
  }
}
