import type { CommandModule } from 'yargs';
import { parseLogRef } from '@appendlog/shared';
import { reportError, writeAll } from '../output.js';
import { makeProgress } from '../progress.js';
import { openStore, withDb, type DbArgs } from './common.js';

interface ExportArgs extends DbArgs {
  log: string;
  out: string;
  'bundle-version': number;
}

export const exportCommand: CommandModule<object, ExportArgs> = {
  command: 'export <log>',
  describe: 'write a sealed log (VM/NAME) as a self-contained bundle: a directory, or one .tar/.tar.gz/.tar.zst file',
  builder: (y) =>
    withDb(y)
      .positional('log', { type: 'string', demandOption: true, describe: 'VM/NAME' })
      .option('out', { type: 'string', demandOption: true, describe: 'bundle to create: a directory, or FILE.tar, FILE.tar.gz, FILE.tar.zst' })
      .option('bundle-version', { type: 'number', default: 2, describe: 'entries as entries.bin (2) or entries.jsonl (1, JSON lines)' })
      .check((a) => {
        if (a['bundle-version'] !== 1 && a['bundle-version'] !== 2) throw new Error('--bundle-version must be 1 or 2');
        return true;
      }) as never,
  handler: async (args) => {
    // Loaded on use: openpgp.js and friends stay out of `logvm append`.
    try {
      const { exportBundle } = await import('../bundle-export.js');
      const { vm, name } = parseLogRef(args.log);
      const store = openStore(args);
      const progress = makeProgress('exporting');
      try {
        const r = await exportBundle(store, vm, name, args.out, { version: args['bundle-version'] as 1 | 2, progress });
        progress.done();
        const form = r.form === 'archive' ? `archive${r.compression === 'none' ? '' : `, ${r.compression}`}` : 'directory';
        await writeAll(process.stdout, `exported ${vm}/${name} to ${args.out} (${form}, bundle version ${r.version}): ${r.manifest.entries} entries, head ${r.manifest.head}\n`);
      } finally {
        progress.done();
        store.close();
      }
    } catch (e) {
      reportError(e, 'logvm export');
    }
  },
};
