import type { CommandModule } from 'yargs';
import { appendFileSync, renameSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { AppendlogError, DEFAULT_MAX_LINE, EVENTS_LOG_NAME, MAX_PAYLOAD, checkLogName, checkVmName, escapeText, parseServiceArgument, type ErrorCode } from '@appendlog/shared';
import { appendSession } from '../ingest.js';
import { reportError, toCodedError, writeAll } from '../output.js';
import { dbPath, withDb, type DbArgs } from './common.js';
import { DEFAULT_QUOTAS, Store } from '../store.js';
import { readServiceConfig } from '../config.js';
import { stdinSource, type ByteSource } from '../source.js';

interface AppendArgs extends DbArgs {
  qrexec?: boolean;
  'ssh-vm'?: string;
  vm?: string;
  name?: string;
  'max-line'?: number;
  'commit-interval'?: number;
  'quota-log-mib'?: number;
  'quota-vm-mib'?: number;
  'max-store-mib'?: number;
  framed?: boolean;
}

/**
 * `logvm append`: the service side of qubes.AppendLog. Under qrexec
 * (`--qrexec`, as rpc/qubes.AppendLog runs it) the source VM is read from
 * QREXEC_REMOTE_DOMAIN, which dom0 sets and the caller cannot forge, and the
 * log name from QREXEC_SERVICE_ARGUMENT, which the caller chooses: it is
 * untrusted and never passes through a command line.
 *
 * Stdout goes back to the caller (qrexec connects it to qrexec-client-vm):
 * one JSON line, a receipt or an error. Stderr goes to the log VM's own log.
 */
export const appendCommand: CommandModule<object, AppendArgs> = {
  command: 'append',
  describe: 'append stdin to a log (the qubes.AppendLog service)',
  builder: (y) =>
    withDb(y)
      .option('qrexec', {
        type: 'boolean',
        describe: 'take the source VM and log name from QREXEC_REMOTE_DOMAIN and QREXEC_SERVICE_ARGUMENT',
      })
      .option('ssh-vm', {
        type: 'string',
        describe: 'ssh forced command (authorized_keys command="logvm append --ssh-vm VM"): VM is the identity of that key, the log argument comes from SSH_ORIGINAL_COMMAND',
      })
      .option('vm', { type: 'string', describe: 'source VM, for a local caller (refused under an ssh forced command: use --ssh-vm)' })
      .option('name', { type: 'string', describe: 'log name (without --qrexec)' })
      .option('framed', { type: 'boolean', describe: 'framed mode (logsend) without --qrexec; under qrexec the argument _framed.NAME selects it' })
      .option('max-line', {
        type: 'number',
        describe: `longest line stored in one entry; longer lines become continued chunks (default ${DEFAULT_MAX_LINE})`,
      })
      .option('commit-interval', { type: 'number', describe: 'ms within which a received line is committed (default 50)' })
      .option('quota-log-mib', { type: 'number', describe: `line bytes one log may hold, MiB (default ${DEFAULT_QUOTAS.logBytes / 2 ** 20})` })
      .option('quota-vm-mib', { type: 'number', describe: `line bytes all logs of one VM may hold, MiB (default ${DEFAULT_QUOTAS.vmBytes / 2 ** 20})` })
      .option('max-store-mib', { type: 'number', describe: 'largest store file, MiB (default: no cap but the disk)' })
      .check((a) => {
        if (a.qrexec && (a.vm !== undefined || a.name !== undefined || a.framed !== undefined || a['ssh-vm'] !== undefined)) {
          throw new Error('--qrexec takes the VM, name and mode from qrexec; do not pass --vm/--name/--framed/--ssh-vm');
        }
        if (a['ssh-vm'] !== undefined && (a.vm !== undefined || a.name !== undefined || a.framed !== undefined)) {
          throw new Error('--ssh-vm takes the name and mode from SSH_ORIGINAL_COMMAND; do not pass --vm/--name/--framed');
        }
        if (!a.qrexec && a['ssh-vm'] === undefined && (a.vm === undefined || a.name === undefined)) throw new Error('give --qrexec, --ssh-vm VM, or both --vm and --name');
        const ml = a['max-line'];
        if (ml !== undefined && (!Number.isInteger(ml) || ml < 1 || ml > MAX_PAYLOAD)) throw new Error(`--max-line must be an integer from 1 to ${MAX_PAYLOAD}`);
        const ci = a['commit-interval'];
        if (ci !== undefined && (!Number.isInteger(ci) || ci < 1 || ci > 60_000)) throw new Error('--commit-interval must be an integer from 1 to 60000');
        for (const k of ['quota-log-mib', 'quota-vm-mib', 'max-store-mib'] as const) {
          const v = a[k];
          if (v !== undefined && (!Number.isSafeInteger(v) || v < 1)) throw new Error(`--${k} must be a positive integer`);
        }
        return true;
      }),
  handler: async (args) => {
    const tell = async (obj: object): Promise<void> => {
      try {
        await writeAll(process.stdout, `${JSON.stringify(obj)}\n`);
      } catch {
        // The caller went away; the log VM's stderr still has the story.
      }
    };
    const ssh = args['ssh-vm'] !== undefined;
    const argument = args.qrexec ? (process.env.QREXEC_SERVICE_ARGUMENT ?? '') : ssh ? sshArgument(process.env.SSH_ORIGINAL_COMMAND) : (args.name ?? '');
    let store: Store | undefined;
    let sessionVm: string | undefined;
    let source: ByteSource | undefined;
    const controller = new AbortController();
    const onTerm = (): void => controller.abort();
    process.once('SIGTERM', onTerm);
    process.once('SIGINT', onTerm);
    try {
      // Under an ssh forced command the build host wrote the command it
      // asked for (SSH_ORIGINAL_COMMAND), and --vm on a command line it
      // could choose would let it pick its identity: only --ssh-vm, fixed by
      // the admin in authorized_keys, names the VM there.
      if (!args.qrexec && !ssh && process.env.SSH_ORIGINAL_COMMAND !== undefined) {
        throw new AppendlogError('USAGE', 'running under an ssh forced command: --vm is refused; use command="logvm append --ssh-vm VM" in authorized_keys');
      }
      if (ssh && process.env.SSH_ORIGINAL_COMMAND === undefined && process.env.SSH_CONNECTION === undefined) {
        throw new AppendlogError('USAGE', '--ssh-vm is for an ssh forced command (authorized_keys command="logvm append --ssh-vm VM"); SSH_ORIGINAL_COMMAND is not set');
      }
      const vm = checkVmName(args.qrexec ? process.env.QREXEC_REMOTE_DOMAIN : ssh ? args['ssh-vm'] : args.vm);
      sessionVm = vm;
      // Under qrexec the argument selects the mode: `_framed.NAME` is framed
      // (logsend), a bare NAME raw. No name starts with `_`, so neither can
      // be taken for the other.
      const mode = args.qrexec || ssh ? parseServiceArgument(argument) : { framed: args.framed === true, name: argument };
      const name = checkLogName(mode.name);
      // The log VM's own events (VM/logvm-events) are written by the log VM alone.
      if (name.toLowerCase() === EVENTS_LOG_NAME) throw new AppendlogError('NAME_INVALID', `log name ${name} is reserved for the log VM's own events`);
      const config = readServiceConfig();
      const maxLine = args['max-line'] ?? config.maxLine ?? DEFAULT_MAX_LINE;
      if (!Number.isInteger(maxLine) || maxLine < 1 || maxLine > MAX_PAYLOAD) throw new AppendlogError('USAGE', `max line ${maxLine} out of range`);
      const mib = (v: number | undefined, d: number): number => (v !== undefined && v > 0 ? v * 2 ** 20 : d);
      store = Store.open(dbPath(args), {
        create: true,
        maxStoreMiB: args['max-store-mib'] ?? (config.maxStoreMiB || undefined),
        quotas: {
          logBytes: mib(args['quota-log-mib'] ?? config.quotaLogMiB, DEFAULT_QUOTAS.logBytes),
          vmBytes: mib(args['quota-vm-mib'] ?? config.quotaVmMiB, DEFAULT_QUOTAS.vmBytes),
        },
      });
      const result = await appendSession({
        store,
        vm,
        name,
        argument,
        input: (source = stdinSource()),
        framed: mode.framed,
        onReceipt: (r) => {
          void tell(r);
        },
        maxLine,
        commitIntervalMs: args['commit-interval'] ?? config.commitIntervalMs ?? 50,
        idleTimeoutMs: config.idleTimeoutMs || DEFAULT_IDLE_TIMEOUT_MS,
        open: { maxSessionsPerVm: config.sessionsPerVm || DEFAULT_SESSIONS_PER_VM },
        signal: controller.signal,
      });
      if (result.receipt) await tell(result.receipt);
      // sealOnClose: after the final receipt, so the sender already knows its
      // log is stored; what happens next is reported here and chained in
      // VM/logvm-events, and never turns a stored session into a failure.
      if (config.sealOnClose !== undefined) {
        const { sealAtClose, skipSeal } = await import('../after-seal.js');
        const clean = result.reason === 'eof' && result.error === null;
        const failures = !clean
          ? result.reason === 'sealed'
            ? [] // cut by a seal (7.3): that seal records its outcome, and seal-cut says where this session was cut
            : skipSeal(store, vm, name, config, result.error !== null ? `${result.error.code}: ${result.error.message}` : `session closed with reason ${result.reason}`)
          : store.liveSessions(store.requireLog(vm, name)) > 0
            ? [] // another session of this log is still writing: the last one to end seals it
            : (await sealAtClose(store, vm, name, config, { export: true })).failures;
        for (const f of failures) process.stderr.write(`logvm append: ${f.error.code}: ${f.step} failed for ${vm}/${name}; the log is stored; details in ${vm}/logvm-events\n`);
      }
      if (result.error?.code === 'QUOTA_EXCEEDED') {
        throw new AppendlogError('QUOTA_EXCEEDED', `${result.error.message}; recorded in the log, session closed`);
      }
      if (result.error?.code === 'FRAME_INVALID') {
        throw new AppendlogError('FRAME_INVALID', `${result.error.message}; recorded in the log, session closed (${result.reason})`);
      }
      if (result.error) throw result.error;
      if (result.reason === 'idle') throw new AppendlogError('IDLE_TIMEOUT', 'no input for the idle timeout; what arrived is stored and the session closed (reason idle)');
      if (result.reason === 'signal') throw new AppendlogError('TERMINATED', 'terminated by a signal; the session was closed cleanly');
      if (result.reason === 'error') throw new AppendlogError('INPUT_ERROR', 'the input broke off; what arrived is stored and the session closed');
    } catch (e) {
      const err = toCodedError(e);
      process.exitCode = err.exitCode;
      if (err.code === 'SESSION_LIMIT' && store !== undefined && sessionVm !== undefined) {
        // Refused before any session of its own: chained in VM/logvm-events.
        try {
          // Coalesced per window (docs/FORMAT.md 13.5): a VM opening sessions over the limit forever cannot grow its events log without bound.
          store.recordRefusal(sessionVm, { notice: 'session-limit', argument: argument.slice(0, 100), detail: err.message });
        } catch {
          // The refusal stands; the sender is told in any case.
        }
      }
      const remote = args.qrexec || ssh;
      if (remote) {
        // qrexec (and ssh) pass our stderr back to the calling, untrusted VM
        // as well as to the log VM's journal: only a short coded message
        // there and on stdout; the details (paths, store errors, stack
        // traces) go to the log VM's own service log.
        keepDetails(dbPath(args), `${new Date().toISOString()} vm=${process.env.QREXEC_REMOTE_DOMAIN ?? args['ssh-vm'] ?? '?'} argument=${JSON.stringify(argument.slice(0, 100))} ${err.code}: ${err.stack ?? err.message}`);
        const short = callerMessage(err);
        process.stderr.write(`logvm append: ${err.code}: ${short}\n`);
        await tell({ type: 'error', code: err.code, message: short });
      } else {
        reportError(err, 'logvm append');
        await tell({ type: 'error', code: err.code, message: escapeText(err.message) });
      }
    } finally {
      process.off('SIGTERM', onTerm);
      process.off('SIGINT', onTerm);
      store?.close();
      // Do not wait for a sender that keeps stdin open. (Before a session
      // starts nothing reads stdin, so a refusal exits at once.)
      source?.destroy();
    }
  },
};

/**
 * The log argument of an ssh forced command: what the build host asked for
 * (SSH_ORIGINAL_COMMAND), checked like a qrexec argument. One word: `NAME`,
 * `_framed.NAME`, optionally written `qubes.AppendLog+ARG` as with qrexec.
 */
export function sshArgument(original: string | undefined): string {
  if (original === undefined) return '';
  const word = original.trim();
  const arg = word.startsWith('qubes.AppendLog+') ? word.slice('qubes.AppendLog+'.length) : word;
  // Anything but one word of the qrexec argument alphabet is refused as a
  // name (checkLogName names it); nothing of it is ever run.
  return /^[A-Za-z0-9_.+-]{1,80}$/.test(arg) ? arg : `\u0000${arg.slice(0, 80)}`;
}

/** Live sessions one VM may hold at once (config sessionsPerVm), and the idle timeout (idleTimeoutMs): docs/FORMAT.md 7.4. */
export const DEFAULT_SESSIONS_PER_VM = 16;
export const DEFAULT_IDLE_TIMEOUT_MS = 10 * 60 * 1000;

/** Codes whose message is about the caller's own input and safe to send back. */
const CALLER_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'NAME_INVALID',
  'VM_INVALID',
  'LOG_SEALED',
  'NAME_CONFLICT',
  'QUOTA_EXCEEDED',
  'SESSION_LIMIT',
  'IDLE_TIMEOUT',
  'FRAME_INVALID',
  'INPUT_ERROR',
  'TERMINATED',
  'LOG_BUSY',
]);

/** The short message the caller gets: its own input's problem, or a fixed text per code. */
export function callerMessage(err: AppendlogError): string {
  if (CALLER_CODES.has(err.code)) return escapeText(err.message).slice(0, 500);
  if (err.code === 'STORE_ERROR') {
    return /disk full/.test(err.message) ? "the log VM's store is full (disk full); details in the log VM's service log" : "the log VM could not store the data; details in the log VM's service log";
  }
  return `the log VM failed (${err.code}); details in the log VM's service log`;
}

/**
 * Appends a line to the log VM's service log (APPENDLOG_SERVICE_LOG, default
 * service.log beside the store). Best effort: a failure here must not hide
 * the refusal itself.
 */
function keepDetails(db: string, line: string): void {
  try {
    const file = process.env.APPENDLOG_SERVICE_LOG ?? join(dirname(db), 'service.log');
    // Every refused call adds a line (a build VM can make them in a loop):
    // past SERVICE_LOG_MAX_BYTES the file becomes FILE.1 (replacing the
    // older one), so the service log takes at most twice that on disk.
    try {
      if (statSync(file).size >= SERVICE_LOG_MAX_BYTES) renameSync(file, `${file}.1`);
    } catch {
      // no file yet
    }
    appendFileSync(file, `${line.replace(/\n/g, '\n    ')}\n`, { mode: 0o600 });
  } catch {
    // the journal still has the code
  }
}

/** Size at which the service log is rotated (README, docs/FORMAT.md 7.4). */
export const SERVICE_LOG_MAX_BYTES = 8 * 2 ** 20;
