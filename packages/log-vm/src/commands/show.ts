import { setTimeout as sleep } from 'node:timers/promises';
import type { CommandModule } from 'yargs';
import { AppendlogError, Flag, KIND_NAMES, Kind, escapeForTerminal, isLineKind, parseLogRef } from '@appendlog/shared';
import { storedEntries, type StoredEntry } from '../entries.js';
import { bundleEntries, isBundlePath } from '../bundle-entries.js';
import { BufferedWriter, isoTime, reportError } from '../output.js';
import { stripAnsi } from '../report/patterns.js';
import type { LogRow, Store } from '../store.js';
import { openStore, withDb, type DbArgs } from './common.js';

interface ShowArgs extends DbArgs {
  target: string;
  from: number;
  lines?: number;
  since?: string;
  until?: string;
  time?: boolean;
  json?: boolean;
  grep?: string;
  follow?: boolean;
  raw?: boolean;
}

const NEWLINE = Buffer.from('\n');

/** A --since/--until bound: a seq (an integer) or a receive time. */
export type Bound = { seq: number } | { time: number };

/**
 * Parses --since/--until: a plain integer is a seq; anything else must be a
 * date and time (ISO 8601, e.g. 2026-11-24T05:12:00Z or "2026-11-24 05:12"),
 * or a time relative to now ("-10min", "-2h", "-1d"), as with journalctl.
 */
export function parseBound(v: string, what: string, now = Date.now()): Bound {
  if (/^\d{1,16}$/.test(v)) return { seq: Number(v) };
  const rel = /^-(\d{1,9})\s*(s|sec|m|min|h|d)$/.exec(v);
  if (rel !== null) {
    const unit = { s: 1e3, sec: 1e3, m: 6e4, min: 6e4, h: 36e5, d: 864e5 }[rel[2] as 's'];
    return { time: now - Number(rel[1]) * unit };
  }
  // A date first (so "1.5" or "tomorrow" are not taken for times); a time without zone is UTC.
  if (/^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?)?(Z|[+-]\d{2}:?\d{2})?$/.test(v)) {
    const iso = v.replace(' ', 'T');
    const t = Date.parse(/T/.test(iso) && !/(Z|[+-]\d{2}:?\d{2})$/.test(iso) ? `${iso}Z` : iso);
    if (Number.isFinite(t)) return { time: t };
  }
  throw new AppendlogError('USAGE', `${what} ${JSON.stringify(v)}: give a seq (a number), an ISO 8601 time (2026-11-24T05:12:00Z) or -N{s,min,h,d}`);
}

/** journalctl's smart case: a pattern without capitals matches either case. */
export function grepRegex(pattern: string): RegExp {
  try {
    return new RegExp(pattern, /[A-Z]/.test(pattern) ? '' : 'i');
  } catch (e) {
    throw new AppendlogError('USAGE', `--grep: ${(e as Error).message}`);
  }
}

/**
 * `logvm show`: prints a log for a human, like journalctl. Every line is
 * escaped (escapeForTerminal) so a hostile build cannot drive the reader's
 * terminal; a fixed-width prefix (seq, stream mark, flag mark) comes before
 * it, so a line cannot pass itself off as a log-VM event. `--raw` writes the
 * exact bytes instead: `show --raw` reproduces the sender's input. The
 * target is VM/NAME in the store or an exported bundle directory (read, not
 * verified: that is verify-chain's and report's job).
 */
export const showCommand: CommandModule<object, ShowArgs> = {
  command: 'show <target>',
  describe: 'print a log (VM/NAME, or a bundle directory), made safe for a terminal',
  builder: (y) =>
    withDb(y)
      .positional('target', { type: 'string', demandOption: true, describe: 'VM/NAME in the store, or a bundle directory' })
      .option('from', { type: 'number', default: 1, describe: 'first seq to print' })
      .option('lines', { alias: 'n', type: 'number', describe: 'only the last N entries (that pass the other filters)' })
      .option('since', { type: 'string', describe: 'entries from this seq or receive time on (ISO 8601, or -10min)' })
      .option('until', { type: 'string', describe: 'entries up to this seq or receive time' })
      .option('time', { type: 'boolean', describe: 'print each entry\'s receive time (ISO 8601, UTC)' })
      .option('json', { type: 'boolean', describe: 'one JSON object per entry: seq, kind, time, session, flags, text or base64' })
      .option('grep', { type: 'string', describe: 'only entries whose text matches this regular expression (smart case)' })
      .option('follow', { alias: 'f', type: 'boolean', describe: 'keep printing new entries until the log is sealed; waits for a log that does not exist yet' })
      .option('raw', { type: 'boolean', describe: 'write the exact received bytes of the lines (no events)' })
      .conflicts('raw', 'json')
      .check((a) => {
        if (!Number.isSafeInteger(a.from) || a.from < 1) throw new Error('--from must be a positive integer');
        if (a.lines !== undefined && (!Number.isSafeInteger(a.lines) || a.lines < 0)) throw new Error('-n/--lines must be a non-negative integer');
        return true;
      }) as never,
  handler: async (args) => {
    try {
      const since = args.since !== undefined ? parseBound(args.since, '--since') : undefined;
      const until = args.until !== undefined ? parseBound(args.until, '--until') : undefined;
      const grep = args.grep !== undefined ? grepRegex(args.grep) : undefined;
      const isBundle = args.db === undefined && isBundlePath(args.target);
      if (isBundle && args.follow) throw new AppendlogError('USAGE', '--follow needs a log in the store (VM/NAME); a bundle is sealed');
      const format = args.json ? formatJson : args.raw ? undefined : (e: StoredEntry) => formatEntry(e, args.time === true);
      const from = Math.max(args.from, since !== undefined && 'seq' in since ? since.seq : 1);
      const untilSeq = until !== undefined && 'seq' in until ? until.seq : Infinity;
      const keep = (e: StoredEntry): boolean => {
        const h = e.header;
        if (h.seq < from || h.seq > untilSeq) return false;
        if (since !== undefined && 'time' in since && h.time < since.time) return false;
        if (until !== undefined && 'time' in until && h.time > until.time) return false;
        if (args.raw && !isLineKind(h.kind)) return false;
        if (grep !== undefined && !grep.test(plainText(e))) return false;
        return true;
      };
      const out = new BufferedWriter(process.stdout);
      const tail = args.lines !== undefined ? new Tail(args.lines) : undefined;
      const emit = async (e: StoredEntry): Promise<void> => {
        if (format === undefined) await writeRaw(out, e);
        else await out.write(format(e));
      };
      if (isBundle) {
        if (process.stderr.isTTY) process.stderr.write('logvm show: reading the bundle without verifying it (logvm verify-chain or report does)\n');
        for await (const e of bundleEntries(args.target, from)) {
          if (e.header.seq > untilSeq) break;
          if (!keep(e)) continue;
          if (tail) tail.push(format === undefined ? rawBytes(e) : format(e));
          else await emit(e);
        }
        if (tail) for (const t of tail.items()) await out.write(t);
        await out.flush();
        return;
      }
      const { vm, name } = parseLogRef(args.target);
      let stop = false;
      process.once('SIGINT', () => {
        stop = true;
      });
      const found = await findLogWaiting(args, vm, name, args.follow === true, () => stop);
      if (found === undefined) return;
      const { store, log } = found;
      let next = from;
      let first = true;
      for (;;) {
        for (const e of storedEntries(store, log.id, next)) {
          if (e.header.seq < next) continue;
          next = e.header.seq + 1;
          if (e.header.seq > untilSeq) break;
          if (!keep(e)) continue;
          if (tail && first) tail.push(format === undefined ? rawBytes(e) : format(e));
          else await emit(e);
        }
        if (tail && first) for (const t of tail.items()) await out.write(t);
        first = false;
        await out.flush();
        if (!args.follow || stop || next > untilSeq || store.getHead(log.id).sealed) break;
        await sleep(200);
        if (stop) break;
      }
      store.close();
    } catch (e) {
      reportError(e, 'logvm show');
    }
  },
};

/** Opens the store and finds the log; with `wait`, polls until both exist (or `stopped`). */
async function findLogWaiting(args: DbArgs, vm: string, name: string, wait: boolean, stopped: () => boolean): Promise<{ store: Store; log: LogRow } | undefined> {
  let told = false;
  for (;;) {
    let store: Store | undefined;
    try {
      store = openStore(args);
      const log = store.findLog(vm, name);
      if (log !== undefined) return { store, log };
      if (!wait) store.requireLog(vm, name);
    } catch (e) {
      if (!wait || !(e instanceof AppendlogError) || e.code !== 'LOG_NOT_FOUND') {
        store?.close();
        throw e;
      }
    }
    store?.close();
    if (!told) {
      process.stderr.write(`logvm show: waiting for ${vm}/${name} to appear (Ctrl-C to stop)\n`);
      told = true;
    }
    await sleep(200);
    if (stopped()) return undefined;
  }
}

/** The last N items, in a ring: memory bounded by N whatever the log holds. */
class Tail<T = string | Buffer> {
  private ring: T[] = [];
  private at = 0;
  constructor(private readonly n: number) {}
  push(v: T): void {
    if (this.n === 0) return;
    if (this.ring.length < this.n) this.ring.push(v);
    else {
      this.ring[this.at] = v;
      this.at = (this.at + 1) % this.n;
    }
  }
  items(): T[] {
    return [...this.ring.slice(this.at), ...this.ring.slice(0, this.at)];
  }
}

/** What --grep matches: a line's text without ANSI sequences, or an event as show describes it. */
function plainText(e: StoredEntry): string {
  return isLineKind(e.header.kind) ? stripAnsi(e.payload.toString('utf8')) : describeEvent(e);
}

// Characters JSON leaves as they are but a terminal would act on (C1 controls,
// bidi overrides, line separators): written as \u escapes, the same value.
// eslint-disable-next-line no-control-regex
const JSON_UNSAFE = /[\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff\ufff9-\ufffb]/g;
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** One JSON object per entry, as in a bundle: `text` when the payload is UTF-8, else `base64`. */
export function formatJson(e: StoredEntry): string {
  const h = e.header;
  let body: string;
  try {
    body = `"text":${JSON.stringify(strictUtf8.decode(e.payload))}`;
  } catch {
    body = `"base64":"${e.payload.toString('base64')}"`;
  }
  const line = `{"seq":${h.seq},"kind":"${KIND_NAMES[h.kind] ?? h.kind}","time":"${isoTime(h.time)}","session":${h.session},"flags":${h.flags},${body}}\n`;
  return line.replace(JSON_UNSAFE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

function rawBytes(e: StoredEntry): Buffer {
  return e.header.flags === 0 ? Buffer.concat([e.payload, NEWLINE]) : Buffer.from(e.payload);
}

async function writeRaw(out: BufferedWriter, e: StoredEntry): Promise<void> {
  if (!isLineKind(e.header.kind)) return;
  await out.write(Buffer.from(e.payload));
  if (e.header.flags === 0) await out.write(NEWLINE);
}

export const STREAM_MARK: Record<number, string> = {
  [Kind.LINE]: '|',
  [Kind.STDOUT]: '|',
  [Kind.STDERR]: 'E',
  [Kind.SESSION_OPEN]: '*',
  [Kind.SESSION_CLOSE]: '*',
  [Kind.NOTICE]: '!',
  [Kind.SEAL]: '#',
  [Kind.CLAIM]: 'C',
};

export function formatEntry(e: StoredEntry, withTime = false): string {
  const { seq, kind, flags } = e.header;
  const mark = STREAM_MARK[kind] ?? '?';
  const flag = flags & Flag.CONT ? '>' : flags & Flag.NOEOL ? '%' : ' ';
  const text = isLineKind(kind) ? escapeForTerminal(e.payload) : describeEvent(e);
  return `${String(seq).padStart(8)} ${withTime ? `${isoTime(e.header.time)} ` : ''}${mark}${flag} ${text}\n`;
}

/** Renders a log-VM event or a claim; any value from the sender is escaped. */
export function describeEvent(e: StoredEntry): string {
  let v: Record<string, unknown> = {};
  try {
    const parsed = JSON.parse(e.payload.toString('utf8')) as unknown;
    if (parsed !== null && typeof parsed === 'object') v = parsed as Record<string, unknown>;
  } catch {
    return `${KIND_NAMES[e.header.kind] ?? 'unknown'} ${escapeForTerminal(e.payload)}`;
  }
  const s = (x: unknown): string => escapeForTerminal(Buffer.from(typeof x === 'string' ? x : JSON.stringify(x) ?? '', 'utf8'));
  const when = isoTime(e.header.time);
  switch (e.header.kind) {
    case Kind.SESSION_OPEN:
      // The log VM's own event sessions (docs/FORMAT.md 13.5) have no caller and no argument.
      if (v.mode === 'event') return `session ${e.header.session} opened ${when} by the log VM: events about VM ${s(v.vm)}'s logs`;
      return `session ${e.header.session} opened ${when} by VM ${s(v.vm)}, argument ${s(JSON.stringify(v.argument))}, mode ${s(v.mode)}${
        v.service !== undefined ? `, service ${s(v.service)}` : ''
      }${v.path !== undefined ? `, path ${s(v.path)}` : ''}`;
    case Kind.SESSION_CLOSE:
      return `session ${e.header.session} closed ${when}: ${s(v.reason)}${v.lines !== undefined ? `, ${s(v.lines)} lines, ${s(v.bytes)} bytes` : ''}${
        v.detail !== undefined ? ` (${s(v.detail)})` : ''
      }`;
    case Kind.SEAL:
      return `sealed ${when} (seal #${s(v.sealIndex)})`;
    case Kind.NOTICE:
      // Events about another log (VM/logvm-events, docs/FORMAT.md 13.5) name it, and a hook.
      return `log VM notice ${when}: ${s(v.notice)}${v.hook !== undefined ? ` ${s(v.hook)}` : ''}${v.log !== undefined ? ` for ${s(v.log)}` : ''}: ${s(v.detail)}${
        v.unread && v.unread !== 'nothing' ? ` (${s(v.unread)})` : ''
      }`;
    case Kind.CLAIM:
      return `claim by the sender: ${describeClaim(v, s)}`;
    default:
      return `${KIND_NAMES[e.header.kind] ?? 'unknown'} ${when} ${s(e.payload.toString('utf8'))}`;
  }
}

function describeClaim(v: Record<string, unknown>, s: (x: unknown) => string): string {
  switch (v.claim) {
    case 'hello':
      return `${s(v.sender)} on host ${s(v.hostname)} runs ${s(v.command)}`;
    case 'input':
    case 'artifact':
      return `${s(v.claim)} ${s(v.path)} ${s(v.size)} bytes sha256 ${s(v.sha256)}`;
    case 'exit':
      return v.signal !== null ? `build killed by ${s(v.signal)}` : `build exit status ${s(v.code)}`;
    case 'input-verified':
      return `input ${s(v.path)} ${s(v.size)} bytes sha256 ${s(v.sha256)}: signature verified, signed by ${s(typeof v.signer === 'string' ? v.signer.toUpperCase() : v.signer)}`;
    case 'input-rejected':
      return `input ${s(v.path)} REJECTED ${s(v.code)}: ${s(v.reason)} (sha256 ${s(v.sha256)})`;
    default:
      return s(v);
  }
}
