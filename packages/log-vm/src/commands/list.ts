import type { CommandModule } from 'yargs';
import { escapeText } from '@appendlog/shared';
import { isoTime, reportError, writeAll } from '../output.js';
import { openStore, withDb, type DbArgs } from './common.js';

interface ListArgs extends DbArgs {
  json?: boolean;
}

export const listCommand: CommandModule<object, ListArgs> = {
  command: 'list',
  describe: 'list the logs in the store',
  builder: (y) => withDb(y).option('json', { type: 'boolean', describe: 'one JSON array' }),
  handler: async (args) => {
    try {
      const store = openStore(args);
      const logs = store.listLogs();
      store.close();
      if (args.json) {
        await writeAll(process.stdout, `${JSON.stringify(logs, null, 2)}\n`);
        return;
      }
      const rows = [
        ['VM', 'NAME', 'STATE', 'ENTRIES', 'LINES', 'BYTES', 'FIRST RECEIVED', 'LAST RECEIVED'],
        // Names come from the store, which may have been tampered with: escaped.
        ...logs.map((l) => [escapeText(l.vm), escapeText(l.name), l.state, String(l.entries), String(l.lines), String(l.bytes), isoTime(l.firstTime), isoTime(l.lastTime)]),
      ];
      const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
      const text = rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
      // Open logs the service did not seal at the end of their session (sealOnClose), and why.
      const flagged = logs.filter((l) => l.flag !== null).map((l) => `! ${escapeText(l.vm)}/${escapeText(l.name)}: ${escapeText(l.flag!)}\n`);
      await writeAll(process.stdout, `${text}\n${flagged.join('')}`);
    } catch (e) {
      reportError(e, 'logvm list');
    }
  },
};
