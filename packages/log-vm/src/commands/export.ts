import type { CommandModule } from 'yargs';
import { parseLogRef } from '@appendlog/shared';
import { reportError, writeAll } from '../output.js';
import { makeProgress } from '../progress.js';
import { openStore, withDb, type DbArgs } from './common.js';

interface ExportArgs extends DbArgs {
  log: string;
  out: string;
}

export const exportCommand: CommandModule<object, ExportArgs> = {
  command: 'export <log>',
  describe: 'write a sealed log (VM/NAME) as a self-contained bundle directory',
  builder: (y) =>
    withDb(y)
      .positional('log', { type: 'string', demandOption: true, describe: 'VM/NAME' })
      .option('out', { type: 'string', demandOption: true, describe: 'bundle directory to create' }) as never,
  handler: async (args) => {
    // Loaded on use: openpgp.js and friends stay out of `logvm append`.
    try {
      const { exportBundle } = await import('../bundle-io.js');
      const { vm, name } = parseLogRef(args.log);
      const store = openStore(args);
      const progress = makeProgress('exporting');
      try {
        const { manifest } = await exportBundle(store, vm, name, args.out, progress);
        progress.done();
        await writeAll(process.stdout, `exported ${vm}/${name} to ${args.out}: ${manifest.entries} entries, head ${manifest.head}\n`);
      } finally {
        progress.done();
        store.close();
      }
    } catch (e) {
      reportError(e, 'logvm export');
    }
  },
};
