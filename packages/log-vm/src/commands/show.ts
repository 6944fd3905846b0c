import { setTimeout as sleep } from 'node:timers/promises';
import type { CommandModule } from 'yargs';
import { Flag, KIND_NAMES, Kind, escapeForTerminal, isLineKind, parseLogRef } from '@appendlog/shared';
import { storedEntries, type StoredEntry } from '../entries.js';
import { BufferedWriter, isoTime, reportError } from '../output.js';
import { openStore, withDb, type DbArgs } from './common.js';

interface ShowArgs extends DbArgs {
  log: string;
  from: number;
  follow?: boolean;
  raw?: boolean;
  events?: boolean;
}

const NEWLINE = Buffer.from('\n');

/**
 * `logvm show`: prints a log for a human. Every line is escaped
 * (escapeForTerminal) so a hostile build cannot drive the reader's terminal;
 * a fixed-width prefix (seq, stream mark, flag mark) comes before it, so a
 * line cannot pass itself off as a log-VM event. `--raw` writes the exact
 * bytes instead: `show --raw` reproduces the sender's input.
 */
export const showCommand: CommandModule<object, ShowArgs> = {
  command: 'show <log>',
  describe: 'print a log (VM/NAME), made safe for a terminal',
  builder: (y) =>
    withDb(y)
      .positional('log', { type: 'string', demandOption: true, describe: 'VM/NAME' })
      .option('from', { type: 'number', default: 1, describe: 'first seq to print' })
      .option('follow', { alias: 'f', type: 'boolean', describe: 'keep printing new entries until the log is sealed' })
      .option('raw', { type: 'boolean', describe: 'write the exact received bytes of the lines (no events)' })
      .check((a) => {
        if (!Number.isSafeInteger(a.from) || a.from < 1) throw new Error('--from must be a positive integer');
        return true;
      }) as never,
  handler: async (args) => {
    try {
      const { vm, name } = parseLogRef(args.log);
      const store = openStore(args);
      const log = store.requireLog(vm, name);
      const out = new BufferedWriter(process.stdout);
      let next = args.from;
      let stop = false;
      process.once('SIGINT', () => {
        stop = true;
      });
      for (;;) {
        for (const e of storedEntries(store, log.id, next)) {
          if (e.header.seq < next) continue;
          await (args.raw ? writeRaw(out, e) : out.write(formatEntry(e)));
          next = e.header.seq + 1;
        }
        await out.flush();
        if (!args.follow || stop || store.getHead(log.id).sealed) break;
        await sleep(200);
        if (stop) break;
      }
      store.close();
    } catch (e) {
      reportError(e, 'logvm show');
    }
  },
};

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

export function formatEntry(e: StoredEntry): string {
  const { seq, kind, flags } = e.header;
  const mark = STREAM_MARK[kind] ?? '?';
  const flag = flags & Flag.CONT ? '>' : flags & Flag.NOEOL ? '%' : ' ';
  const text = isLineKind(kind) ? escapeForTerminal(e.payload) : describeEvent(e);
  return `${String(seq).padStart(8)} ${mark}${flag} ${text}\n`;
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
