import type { CommandModule } from 'yargs';
import { AppendlogError, DEFAULT_MAX_LINE, MAX_PAYLOAD, checkLogName, checkVmName, parseServiceArgument } from '@appendlog/shared';
import { appendSession } from '../ingest.js';
import { reportError, writeAll } from '../output.js';
import { dbPath, withDb, type DbArgs } from './common.js';
import { Store } from '../store.js';

interface AppendArgs extends DbArgs {
  qrexec?: boolean;
  vm?: string;
  name?: string;
  'max-line': number;
  'commit-interval': number;
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
      .option('vm', { type: 'string', describe: 'source VM (without --qrexec, e.g. for an ssh transport)' })
      .option('name', { type: 'string', describe: 'log name (without --qrexec)' })
      .option('framed', { type: 'boolean', describe: 'framed mode (logsend) without --qrexec; under qrexec the argument _framed.NAME selects it' })
      .option('max-line', {
        type: 'number',
        default: DEFAULT_MAX_LINE,
        describe: 'longest line stored in one entry; longer lines become continued chunks',
      })
      .option('commit-interval', { type: 'number', default: 50, describe: 'ms within which a received line is committed' })
      .check((a) => {
        if (a.qrexec && (a.vm !== undefined || a.name !== undefined || a.framed !== undefined)) {
          throw new Error('--qrexec takes the VM, name and mode from qrexec; do not pass --vm/--name/--framed');
        }
        if (!a.qrexec && (a.vm === undefined || a.name === undefined)) throw new Error('give --qrexec, or both --vm and --name');
        const ml = a['max-line'];
        if (!Number.isInteger(ml) || ml < 1 || ml > MAX_PAYLOAD) throw new Error(`--max-line must be an integer from 1 to ${MAX_PAYLOAD}`);
        const ci = a['commit-interval'];
        if (!Number.isInteger(ci) || ci < 1 || ci > 60_000) throw new Error('--commit-interval must be an integer from 1 to 60000');
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
    const argument = args.qrexec ? (process.env.QREXEC_SERVICE_ARGUMENT ?? '') : (args.name ?? '');
    let store: Store | undefined;
    const controller = new AbortController();
    const onTerm = (): void => controller.abort();
    process.once('SIGTERM', onTerm);
    process.once('SIGINT', onTerm);
    try {
      const vm = checkVmName(args.qrexec ? process.env.QREXEC_REMOTE_DOMAIN : args.vm);
      // Under qrexec the argument selects the mode: `_framed.NAME` is framed
      // (logsend), a bare NAME raw. No name starts with `_`, so neither can
      // be taken for the other.
      const mode = args.qrexec ? parseServiceArgument(argument) : { framed: args.framed === true, name: argument };
      const name = checkLogName(mode.name);
      store = Store.open(dbPath(args), { create: true });
      const result = await appendSession({
        store,
        vm,
        name,
        argument,
        input: process.stdin,
        framed: mode.framed,
        onReceipt: (r) => {
          void tell(r);
        },
        maxLine: args['max-line'],
        commitIntervalMs: args['commit-interval'],
        signal: controller.signal,
      });
      if (result.receipt) await tell(result.receipt);
      if (result.error?.code === 'FRAME_INVALID') {
        throw new AppendlogError('FRAME_INVALID', `${result.error.message}; recorded in the log, session closed (${result.reason})`);
      }
      if (result.error) throw result.error;
      if (result.reason === 'signal') throw new AppendlogError('TERMINATED', 'terminated by a signal; the session was closed cleanly');
      if (result.reason === 'error') throw new AppendlogError('INPUT_ERROR', 'the input broke off; what arrived is stored and the session closed');
    } catch (e) {
      const err = reportError(e, 'logvm append');
      await tell({ type: 'error', code: err.code, message: err.message });
    } finally {
      process.off('SIGTERM', onTerm);
      process.off('SIGINT', onTerm);
      store?.close();
      // Do not wait for a sender that keeps stdin open after a refusal.
      process.stdin.destroy();
    }
  },
};
