import { homedir } from 'node:os';
import type { CommandModule } from 'yargs';
import { AppendlogError, DEFAULT_MAX_LINE, MAX_PAYLOAD, checkVmName } from '@appendlog/shared';
import { readServiceConfig } from '../config.js';
import { reportError, toCodedError, writeAll } from '../output.js';
import { stdinSource, type ByteSource } from '../source.js';
import { DEFAULT_QUOTAS, Store } from '../store.js';
import { DEFAULT_SESSIONS_PER_VM } from './append.js';
import { dbPath, withDb, type DbArgs } from './common.js';

interface BuildLogArgs extends DbArgs {
  qrexec?: boolean;
  vm?: string;
  argument?: string;
}

/**
 * `logvm buildlog --qrexec`: the qubesbuilder.BuildLog-compatible service
 * (rpc/qubesbuilder.BuildLog). Under qrexec the source VM comes from
 * QREXEC_REMOTE_DOMAIN and SUBDIR from QREXEC_SERVICE_ARGUMENT (the same
 * value qrexec passes as $1), never from a command line.
 *
 * Stdout goes back to the build VM: only the first line, the legacy path,
 * and only when the log is complete and its text file written (an empty
 * stdout makes the builder fail the build, as with the legacy service).
 * Stderr (the log VM's journal, and also the caller's stderr) gets one short
 * coded line per failure; details are chained in VM/logvm-events.
 */
export const buildLogCommand: CommandModule<object, BuildLogArgs> = {
  command: 'buildlog',
  describe: 'store stdin as a qubesbuilder.BuildLog log (the compatible service)',
  builder: (y) =>
    withDb(y)
      .option('qrexec', { type: 'boolean', describe: 'take the source VM and SUBDIR from QREXEC_REMOTE_DOMAIN and QREXEC_SERVICE_ARGUMENT' })
      .option('vm', { type: 'string', describe: 'source VM (without --qrexec)' })
      .option('argument', { type: 'string', describe: 'SUBDIR argument (without --qrexec)' })
      .check((a) => {
        if (a.qrexec && (a.vm !== undefined || a.argument !== undefined)) throw new Error('--qrexec takes the VM and argument from qrexec; do not pass --vm/--argument');
        if (!a.qrexec && a.vm === undefined) throw new Error('give --qrexec, or --vm');
        return true;
      }) as never,
  handler: async (args) => {
    // The service's code is loaded on use: every other command starts without it.
    const { BUILDLOG_SERVICE, buildLogSession } = await import('../buildlog-service.js');
    const prefix = BUILDLOG_SERVICE;
    let store: Store | undefined;
    let sessionVm: string | undefined;
    let sessionArgument = '';
    let source: ByteSource | undefined;
    const controller = new AbortController();
    const onTerm = (): void => controller.abort();
    process.once('SIGTERM', onTerm);
    process.once('SIGINT', onTerm);
    try {
      const vm = checkVmName(args.qrexec ? process.env.QREXEC_REMOTE_DOMAIN : args.vm);
      const argument = args.qrexec ? (process.env.QREXEC_SERVICE_ARGUMENT ?? '') : (args.argument ?? '');
      sessionVm = vm;
      sessionArgument = argument;
      const config = readServiceConfig();
      const maxLine = config.maxLine ?? DEFAULT_MAX_LINE;
      if (!Number.isInteger(maxLine) || maxLine < 1 || maxLine > MAX_PAYLOAD) throw new AppendlogError('USAGE', `max line ${maxLine} out of range`);
      const mib = (v: number | undefined, d: number): number => (v !== undefined && v > 0 ? v * 2 ** 20 : d);
      store = Store.open(dbPath(args), {
        create: true,
        maxStoreMiB: config.maxStoreMiB || undefined,
        quotas: { logBytes: mib(config.quotaLogMiB, DEFAULT_QUOTAS.logBytes), vmBytes: mib(config.quotaVmMiB, DEFAULT_QUOTAS.vmBytes) },
      });
      const result = await buildLogSession({
        store,
        vm,
        argument,
        input: (source = stdinSource()),
        home: process.env.HOME || homedir(),
        config,
        maxLine,
        commitIntervalMs: config.commitIntervalMs ?? 50,
        // The same per-VM limit as qubes.AppendLog, shared with its sessions (7.4).
        maxSessionsPerVm: config.sessionsPerVm || DEFAULT_SESSIONS_PER_VM,
        signal: controller.signal,
        printPath: async (line) => {
          try {
            await writeAll(process.stdout, line);
            // Nothing else ever goes to the build VM's stdout.
            process.stdout.end();
          } catch {
            // The caller went away; the log is stored all the same.
          }
        },
      });
      // Short coded lines only: stderr reaches the build VM too.
      for (const f of result.failures) {
        process.stderr.write(`${prefix}: ${f.error.code}: ${f.step} failed for ${result.log}; the log is stored; details in ${vm}/logvm-events\n`);
      }
      if (result.error !== null) throw result.error;
      if (result.failures.length > 0) process.exitCode = result.failures[0]!.error.exitCode;
    } catch (e) {
      const err = toCodedError(e);
      if (err.code === 'SESSION_LIMIT' && store !== undefined && sessionVm !== undefined) {
        // As for qubes.AppendLog: chained in VM/logvm-events, coalesced per window (13.5).
        try {
          store.recordRefusal(sessionVm, { notice: 'session-limit', argument: sessionArgument.slice(0, 100), detail: err.message });
        } catch {
          // The refusal stands; the caller gets no path in any case.
        }
      }
      // An internal error's stack stays out of the build VM's stderr.
      reportError(err.code === 'INTERNAL' ? new AppendlogError('INTERNAL', 'internal error') : err, prefix);
    } finally {
      process.off('SIGTERM', onTerm);
      process.off('SIGINT', onTerm);
      store?.close();
      source?.destroy();
    }
  },
};
