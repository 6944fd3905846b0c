import { AppendlogError } from './errors.js';

/**
 * The bundle as one file (docs/FORMAT.md section 9.6): a POSIX ustar archive
 * whose members are the bundle's files in a fixed order, manifest first and
 * entries last, so that a reader checks the signatures before a single entry
 * streams past. This module is pure (no fs): it formats headers and reads an
 * archive from any async stream of chunks, in constant memory, refusing
 * everything the layout does not name.
 *
 * Only plain regular-file members exist. Links, directories, devices and the
 * pax / GNU extension headers are refused: an extension header changes the
 * name or size of the member after it for readers that know it and not for
 * readers that do not, so one archive would have two readings.
 */
export const TAR_BLOCK = 512;

/** Limits of the members other than the entries (section 9.6). */
export const MAX_README_BYTES = 64 * 1024;

/** ustar's 11 octal digits: larger sizes use the base-256 form (entries member only). */
const MAX_OCTAL_SIZE = 0o77777777777;

function bad(msg: string): never {
  throw new AppendlogError('MALFORMED_BUNDLE', `archive: ${msg}`);
}

function octal(buf: Buffer, off: number, len: number, value: number): void {
  // len - 1 digits, zero padded, then NUL (POSIX).
  const s = value.toString(8).padStart(len - 1, '0');
  buf.write(s, off, len - 1, 'latin1');
  buf[off + len - 1] = 0;
}

/**
 * A ustar header block for a regular file. `mtime` in seconds. Sizes above
 * 8 GiB - 1 use the base-256 form (0x80 then 11 bytes big-endian), which GNU
 * tar, bsdtar and Python's tarfile read.
 */
export function tarHeader(name: string, size: number, mtime: number): Buffer {
  const h = Buffer.alloc(TAR_BLOCK);
  const n = Buffer.from(name, 'utf8');
  if (n.length > 99) throw new RangeError(`tar member name too long: ${name}`);
  n.copy(h, 0);
  octal(h, 100, 8, 0o644); // mode
  octal(h, 108, 8, 0); // uid
  octal(h, 116, 8, 0); // gid
  if (size <= MAX_OCTAL_SIZE) {
    octal(h, 124, 12, size);
  } else {
    h[124] = 0x80;
    let v = size;
    for (let i = 135; i > 124; i--) {
      h[i] = v % 256;
      v = Math.floor(v / 256);
    }
  }
  octal(h, 136, 12, Math.max(0, Math.floor(mtime)));
  h.fill(0x20, 148, 156); // checksum counted as spaces
  h[156] = 0x30; // typeflag '0': regular file
  h.write('ustar\x0000', 257, 8, 'latin1');
  let sum = 0;
  for (let i = 0; i < TAR_BLOCK; i++) sum += h[i]!;
  // Six octal digits, NUL, space (the classic form every reader accepts).
  h.write(`${sum.toString(8).padStart(6, '0')}\x00 `, 148, 8, 'latin1');
  return h;
}

/** Zero bytes that pad a member of `size` bytes to a whole block. */
export function tarPadding(size: number): Buffer {
  return Buffer.alloc((TAR_BLOCK - (size % TAR_BLOCK)) % TAR_BLOCK);
}

/** The end-of-archive marker: two zero blocks. */
export const TAR_END = Buffer.alloc(2 * TAR_BLOCK);

/** A ustar numeric field: octal digits, optionally space-led, ended by NUL or space; or base-256. */
function readNumber(h: Buffer, off: number, len: number, what: string, allowBase256: boolean): number {
  if (h[off]! & 0x80) {
    if (!allowBase256 || h[off] !== 0x80) bad(`${what} field is not a non-negative number`);
    let v = 0;
    for (let i = off + 1; i < off + len; i++) v = v * 256 + h[i]!;
    if (!Number.isSafeInteger(v)) bad(`${what} is too large`);
    return v;
  }
  let i = off;
  const end = off + len;
  while (i < end && h[i] === 0x20) i++;
  let v = 0;
  let digits = 0;
  while (i < end && h[i]! >= 0x30 && h[i]! <= 0x37) {
    v = v * 8 + (h[i]! - 0x30);
    i++;
    digits++;
  }
  if (digits === 0) bad(`${what} field is not an octal number`);
  while (i < end && (h[i] === 0 || h[i] === 0x20)) i++;
  if (i !== end) bad(`${what} field is not an octal number`);
  return v;
}

function cString(h: Buffer, off: number, len: number): string {
  const z = h.indexOf(0, off);
  const end = z < 0 || z > off + len ? off + len : z;
  return h.toString('utf8', off, end);
}

export interface TarMember {
  name: string;
  size: number;
}

/**
 * Reads a tar stream member by member. `next()` parses and checks the next
 * header (null at the end-of-archive marker, after checking that only zero
 * bytes follow); `body()` then yields that member's data in order, as views
 * into the source's chunks (valid until the next chunk is pulled). A member
 * whose body is not read is skipped.
 */
export class TarStream {
  private buf: Buffer = Buffer.alloc(0);
  private pos = 0;
  private ended = false;
  private remaining = 0;
  private pad = 0;
  private readonly it: AsyncIterator<Uint8Array>;
  /** Offset of the current header in the archive, for messages. */
  private offset = 0;
  private consumed = 0;

  constructor(source: AsyncIterable<Uint8Array>) {
    this.it = source[Symbol.asyncIterator]();
  }

  private async fill(): Promise<boolean> {
    if (this.ended) return false;
    const r = await this.it.next();
    if (r.done === true) {
      this.ended = true;
      return false;
    }
    const chunk = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength);
    const rest = this.buf.length - this.pos;
    this.buf = rest > 0 ? Buffer.concat([this.buf.subarray(this.pos), chunk]) : chunk;
    this.pos = 0;
    return true;
  }

  /** Exactly `n` bytes (n <= 2 blocks), or null at a clean end of input before any of them. */
  private async take(n: number): Promise<Buffer | null> {
    while (this.buf.length - this.pos < n) {
      if (!(await this.fill())) {
        if (this.buf.length - this.pos === 0) return null;
        bad(`truncated: the input ends inside a header or padding at byte ${this.consumed + (this.buf.length - this.pos)}`);
      }
    }
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    this.consumed += n;
    return out;
  }

  /** Skips what is left of the current member (body and padding). */
  private async skipRest(): Promise<void> {
    for await (const _ of this.body()) void _;
  }

  async next(): Promise<(TarMember & { type: string }) | null> {
    await this.skipRest();
    this.offset = this.consumed;
    const h = await this.take(TAR_BLOCK);
    if (h === null) bad('truncated: no end-of-archive marker (two zero blocks)');
    if (isZero(h)) {
      const second = await this.take(TAR_BLOCK);
      if (second === null || !isZero(second)) bad(`a zero block at byte ${this.offset} that is not the end-of-archive marker`);
      await this.expectOnlyZeros();
      return null;
    }
    let sum = 0;
    for (let i = 0; i < TAR_BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i]!;
    if (readNumber(h, 148, 8, 'checksum', false) !== sum) bad(`header at byte ${this.offset}: bad checksum (not a tar archive, or damaged)`);
    const magic = h.toString('latin1', 257, 265);
    if (magic !== 'ustar\x0000' && magic !== 'ustar  \x00') bad(`header at byte ${this.offset}: not a ustar header`);
    const type = String.fromCharCode(h[156]!);
    const prefix = cString(h, 345, 155);
    const base = cString(h, 0, 100);
    const name = prefix.length > 0 ? `${prefix}/${base}` : base;
    const size = readNumber(h, 124, 12, 'size', true);
    this.remaining = size;
    this.pad = (TAR_BLOCK - (size % TAR_BLOCK)) % TAR_BLOCK;
    return { name, size, type: type === '\0' ? '0' : type };
  }

  /** The current member's data, then its padding is consumed. */
  async *body(): AsyncGenerator<Buffer> {
    while (this.remaining > 0) {
      if (this.buf.length - this.pos === 0 && !(await this.fill())) {
        bad(`truncated: the input ends inside a member, ${this.remaining} bytes short`);
      }
      const n = Math.min(this.remaining, this.buf.length - this.pos);
      const out = this.buf.subarray(this.pos, this.pos + n);
      this.pos += n;
      this.consumed += n;
      this.remaining -= n;
      yield out;
    }
    if (this.pad > 0) {
      const pad = this.pad;
      this.pad = 0;
      const p = await this.take(pad);
      if (p === null) bad('truncated: the input ends inside a member\'s padding');
    }
  }

  /** After the end marker, tar writers pad to a record size with zeros: anything else is refused. */
  private async expectOnlyZeros(): Promise<void> {
    for (;;) {
      const rest = this.buf.subarray(this.pos);
      if (!isZero(rest)) bad(`data after the end-of-archive marker (byte ${this.consumed + firstNonZero(rest)})`);
      this.consumed += rest.length;
      this.pos = this.buf.length;
      if (!(await this.fill())) return;
    }
  }
}

function isZero(b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

function firstNonZero(b: Buffer): number {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return i;
  return b.length;
}

/** Names of the bundle's members (section 9.6). */
export const ARCHIVE_NAMES = {
  manifest: 'manifest.json',
  readme: 'README.txt',
  entriesV1: 'entries.jsonl',
  entriesV2: 'entries.bin',
} as const;

/** A signature member's name: signatures/ then a plain file name ending in .asc. */
export const SIGNATURE_MEMBER = /^signatures\/[A-Za-z0-9_-][A-Za-z0-9._-]{0,59}\.asc$/;

export type MemberRole = 'manifest' | 'signature' | 'readme' | 'entries';

/**
 * The layout rules of section 9.6 as a state machine: `admit` is called with
 * each header in archive order and returns the member's role, or refuses it
 * with MALFORMED_BUNDLE naming the rule. `finish` checks that nothing the
 * layout requires is missing.
 */
export class ArchiveLayout {
  private readonly seen = new Set<string>();
  private stage = 0; // 0 nothing, 1 manifest, 2 signatures, 3 readme, 4 entries
  private lastSignature = '';
  private signatures = 0;
  entriesName: string | undefined;

  constructor(private readonly limits: { manifest: number; signature: number; signatureFiles: number }) {}

  admit(m: TarMember & { type: string }): MemberRole {
    const { name, size, type } = m;
    const shown = JSON.stringify(name);
    if (type === '1' || type === '2') bad(`member ${shown} is a ${type === '1' ? 'hard' : 'symbolic'} link; links are refused`);
    if (type === 'x' || type === 'g' || type === 'L' || type === 'K') {
      bad(`member ${shown} is a pax or GNU extension header (type ${type}); they are refused, as they change how readers see the next member`);
    }
    if (type !== '0') bad(`member ${shown} is not a regular file (type ${JSON.stringify(type)}); only regular files are allowed`);
    if (name.startsWith('/')) bad(`member ${shown} has an absolute path`);
    if (name.split('/').includes('..')) bad(`member ${shown} has a ".." path component`);
    if (this.seen.has(name)) bad(`duplicate member ${shown}`);
    this.seen.add(name);
    if (this.stage === 4) bad(`member ${shown} after ${this.entriesName}: outside the layout (the entries are the last member)`);
    let role: MemberRole;
    let stage: number;
    let limit: number;
    if (name === ARCHIVE_NAMES.manifest) {
      role = 'manifest';
      stage = 1;
      limit = this.limits.manifest;
    } else if (SIGNATURE_MEMBER.test(name)) {
      role = 'signature';
      stage = 2;
      limit = this.limits.signature;
      if (name <= this.lastSignature) bad(`signature member ${shown} is not in name order`);
      if (++this.signatures > this.limits.signatureFiles) bad(`more than ${this.limits.signatureFiles} signature members`);
      this.lastSignature = name;
    } else if (name === ARCHIVE_NAMES.readme) {
      role = 'readme';
      stage = 3;
      limit = MAX_README_BYTES;
    } else if (name === ARCHIVE_NAMES.entriesV1 || name === ARCHIVE_NAMES.entriesV2) {
      role = 'entries';
      stage = 4;
      limit = Number.MAX_SAFE_INTEGER;
      this.entriesName = name;
    } else {
      bad(`member ${shown} is outside the bundle layout`);
    }
    if (this.stage === 0 && role !== 'manifest') bad(`the first member is ${shown}, not ${ARCHIVE_NAMES.manifest}`);
    if (stage < this.stage) bad(`member ${shown} is out of order (manifest.json, signatures/, README.txt, then the entries)`);
    if (size > limit) bad(`member ${shown} is ${size} bytes, over its limit of ${limit}`);
    if (role !== 'entries' && size > MAX_OCTAL_SIZE) bad(`member ${shown} is too large`);
    this.stage = stage;
    return role;
  }

  finish(): void {
    if (this.stage === 0) bad(`empty archive: no ${ARCHIVE_NAMES.manifest}`);
    if (this.stage < 4) bad(`no entries member (${ARCHIVE_NAMES.entriesV2} or ${ARCHIVE_NAMES.entriesV1})`);
  }
}
