import { AppendlogError } from './errors.js';
import { Flag, Kind, isLineKind } from './constants.js';
import { escapeForTerminal } from './render.js';

/**
 * qubesbuilder.BuildLog compatibility (docs/FORMAT.md section 13): how the
 * log VM names a log that arrives through the builder's service, and the two
 * text views of a chain (`logvm render --format buildlog|text`). Pure: the
 * caller reads entries and writes the output.
 *
 * Facts of the legacy service (QubesOS/qubes-builder and
 * fepitre/qubes-builderv2-github `rpc-services/qubesbuilder.BuildLog`) this
 * follows: SUBDIR keeps [A-Za-z0-9_-] of the argument and turns every other
 * character into `_`; the file is `{VM}/[{SUBDIR}/]log_{%Y-%m-%d_%H-%M-%S}[.N]`
 * of the session start in UTC; each line is `{%F %T.%f} +0000 {VM}: {line}`
 * with every byte outside 0x20-0x7e made `.`; the service's own lines are
 * `... +0000 > starting log` / `> closing log`; files over 10 MiB are xz'ed.
 */

/** Prefix of every log name the compatible service creates: never the legacy file name itself. */
export const BUILDLOG_NAME_PREFIX = 'buildlog.';
/** The log VM's own events about a VM's logs (seal, export and hook results) go to VM/logvm-events. */
export const EVENTS_LOG_NAME = 'logvm-events';
/** Longest SUBDIR kept as it is in a log name; a longer one is shortened with a hash (13.2). */
export const BUILDLOG_MAX_SUBDIR_IN_NAME = 26;
/** Highest collision suffix `.N` (the legacy loop has no bound; a bound keeps the name <= 64 characters). */
export const BUILDLOG_MAX_SUFFIX = 9999;
/** Rendered files larger than this are compressed with xz, as by the legacy service (strictly greater). */
export const BUILDLOG_XZ_THRESHOLD = 10 * 2 ** 20;

/** The legacy SUBDIR rule, per character of the (decoded) argument. */
export function buildLogSubdir(argument: string): string {
  let out = '';
  for (const ch of argument) out += /^[A-Za-z0-9_-]$/.test(ch) ? ch : '_';
  return out;
}

const pad = (n: number, w: number): string => String(n).padStart(w, '0');

/** `YYYY-MM-DD_HH-MM-SS` of a time in ms, UTC (the legacy file name's time). */
export function buildLogFileTime(ms: number): string {
  const d = new Date(ms);
  return `${pad(d.getUTCFullYear(), 4)}-${pad(d.getUTCMonth() + 1, 2)}-${pad(d.getUTCDate(), 2)}_${pad(d.getUTCHours(), 2)}-${pad(d.getUTCMinutes(), 2)}-${pad(d.getUTCSeconds(), 2)}`;
}

/** `YYYY-MM-DD HH:MM:SS.ffffff` (Python's `%F %T.%f`) of a time in ms; the chain has ms, so the last three digits are 000. */
export function buildLogLineTime(ms: number): string {
  const d = new Date(ms);
  return `${pad(d.getUTCFullYear(), 4)}-${pad(d.getUTCMonth() + 1, 2)}-${pad(d.getUTCDate(), 2)} ${pad(d.getUTCHours(), 2)}:${pad(d.getUTCMinutes(), 2)}:${pad(d.getUTCSeconds(), 2)}.${pad(d.getUTCMilliseconds(), 3)}000`;
}

export interface BuildLogTarget {
  /** The legacy relative path, without `.xz`: `VM/[SUBDIR/]log_TIME[.N]`. */
  path: string;
  /** The file name alone: `log_TIME[.N]`. */
  file: string;
  /** The appendlog log name (1.4). */
  name: string;
}

/**
 * Where a session's log goes, for collision suffix `n` (0: none): the
 * legacy path and the appendlog name (docs/FORMAT.md 13.2). `subdirHash` is
 * the hex SHA-256 of the SUBDIR's UTF-8 bytes, needed only when SUBDIR is
 * longer than BUILDLOG_MAX_SUBDIR_IN_NAME (hashing is I/O-free but lives in
 * node:crypto, so the caller supplies it).
 */
export function buildLogTarget(vm: string, subdir: string, startMs: number, n: number, subdirHash?: string): BuildLogTarget {
  if (!Number.isSafeInteger(n) || n < 0 || n > BUILDLOG_MAX_SUFFIX) throw new AppendlogError('NAME_CONFLICT', `no free log name: suffixes .1 to .${BUILDLOG_MAX_SUFFIX} are taken`);
  const file = `log_${buildLogFileTime(startMs)}${n > 0 ? `.${n}` : ''}`;
  let part = '';
  if (subdir !== '') {
    if (subdir.length <= BUILDLOG_MAX_SUBDIR_IN_NAME) part = `${subdir}.`;
    else {
      if (subdirHash === undefined || !/^[0-9a-f]{64}$/.test(subdirHash)) throw new AppendlogError('INTERNAL', 'a long SUBDIR needs its SHA-256');
      part = `${subdir.slice(0, 13)}-${subdirHash.slice(0, 12)}.`;
    }
  }
  return { path: subdir === '' ? `${vm}/${file}` : `${vm}/${subdir}/${file}`, file, name: `${BUILDLOG_NAME_PREFIX}${part}${file}` };
}

/** The legacy sanitizing: every byte outside 0x20-0x7e becomes `.` (0x2e). */
export function sanitizeLegacy(bytes: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(bytes.length);
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!;
    out[i] = b >= 0x20 && b <= 0x7e ? b : 0x2e;
  }
  return out;
}

export interface RenderEntry {
  time: number;
  session: number;
  kind: number;
  flags: number;
  payload: Uint8Array;
}

export type RenderFormat = 'buildlog' | 'text';

/**
 * Streams a chain as text, entry by entry, in constant memory (a line split
 * into CONT chunks is written chunk by chunk). `buildlog` is the legacy
 * format: every line as `TIME +0000 VM: LINE` (sanitized), each session-open
 * as `TIME +0000 > starting log`, each session-close as `> closing log`
 * (with the reason in parentheses when it is not `eof`), each notice as
 * `> notice: ...`; claims and the seal are not shown, so a sealed log renders
 * exactly as the file written before its seal. A line's time is the time of
 * its first entry. `text` is the lines alone, escaped as `logvm show`
 * escapes them. Chunks of one line are joined while they follow each other in
 * the chain; a line interrupted by an entry of another session or stream
 * (concurrent sessions, framed stdout/stderr) goes on on a new output line.
 */
export class ChainRenderer {
  /** (session, kind) of the line whose CONT chunk was last written, or null. */
  private open: { session: number; kind: number } | null = null;
  private readonly prefix: Buffer;

  constructor(
    private readonly format: RenderFormat,
    vm: string,
  ) {
    this.prefix = Buffer.from(` +0000 ${vm}: `, 'latin1');
  }

  /** Output for one entry (possibly empty). */
  push(e: RenderEntry): Buffer[] {
    const out: Buffer[] = [];
    const continuing = this.open !== null && this.open.session === e.session && this.open.kind === e.kind && isLineKind(e.kind);
    if (this.open !== null && !continuing) {
      out.push(NL); // the interrupted line ends here
      this.open = null;
    }
    if (isLineKind(e.kind)) {
      if (!continuing) {
        if (this.format === 'buildlog') out.push(Buffer.from(buildLogLineTime(e.time), 'latin1'), this.prefix);
      }
      out.push(this.format === 'buildlog' ? sanitizeLegacy(e.payload) : Buffer.from(escapeForTerminal(e.payload), 'utf8'));
      if (e.flags & Flag.CONT) this.open = { session: e.session, kind: e.kind };
      else {
        this.open = null;
        out.push(NL);
      }
      return out;
    }
    if (this.format !== 'buildlog') return out;
    const own = (text: string): void => {
      out.push(Buffer.from(`${buildLogLineTime(e.time)} +0000 > `, 'latin1'), sanitizeLegacy(Buffer.from(text, 'utf8')), NL);
    };
    if (e.kind === Kind.SESSION_OPEN) own('starting log');
    else if (e.kind === Kind.SESSION_CLOSE) {
      const reason = field(e.payload, 'reason');
      own(reason === 'eof' ? 'closing log' : `closing log (${reason ?? 'unknown'})`);
    } else if (e.kind === Kind.NOTICE) {
      own(`notice: ${field(e.payload, 'notice') ?? 'unknown'}: ${field(e.payload, 'detail') ?? ''}`);
    }
    return out;
  }

  /** A line still open at the end (a CONT chunk without its continuation) is ended. */
  end(): Buffer[] {
    if (this.open === null) return [];
    this.open = null;
    return [NL];
  }
}

const NL = Buffer.from('\n');

/** A string member of a log-VM event's JSON payload, or undefined. */
function field(payload: Uint8Array, key: string): string | undefined {
  try {
    const v = JSON.parse(Buffer.from(payload).toString('utf8')) as Record<string, unknown>;
    const x = v?.[key];
    return typeof x === 'string' ? x : undefined;
  } catch {
    return undefined;
  }
}
