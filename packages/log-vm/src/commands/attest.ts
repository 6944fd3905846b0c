import { existsSync, statSync } from 'node:fs';
import type { CommandModule } from 'yargs';
import { escapeText, parseLogRef } from '@appendlog/shared';
import { isoTime, reportError, writeAll } from '../output.js';
import { openStore, withDb, type DbArgs } from './common.js';

interface AttestArgs extends DbArgs {
  source: string;
  out: string;
}

/**
 * `logvm attest VM/NAME|BUNDLE --out FILE`: the small evidence file of
 * docs/FORMAT.md section 12 (manifest bytes and signatures), for publishing
 * beside a release. The chain is re-verified first: a damaged log is never
 * attested.
 */
export const attestCommand: CommandModule<object, AttestArgs> = {
  command: 'attest <source>',
  describe: 'write a small evidence file (signed manifest + signatures) for a sealed log (VM/NAME) or a bundle',
  builder: (y) =>
    withDb(y)
      .positional('source', { type: 'string', demandOption: true, describe: 'VM/NAME in the store, or a bundle directory' })
      .option('out', { type: 'string', demandOption: true, describe: 'evidence file to create' }) as never,
  handler: async (args) => {
    try {
      const { attestBundle, attestStoredLog, writeEvidence } = await import('../evidence-io.js');
      const { looksLikeArchive } = await import('../archive-io.js');
      const isBundle = args.db === undefined && existsSync(args.source) && (statSync(args.source).isDirectory() || looksLikeArchive(args.source));
      let res;
      if (isBundle) {
        res = await attestBundle(args.source);
      } else {
        const { vm, name } = parseLogRef(args.source);
        const store = openStore(args);
        try {
          res = await attestStoredLog(store, vm, name);
        } finally {
          store.close();
        }
      }
      writeEvidence(args.out, res.bytes);
      const m = res.manifest;
      await writeAll(
        process.stdout,
        `attested ${isBundle ? `bundle ${escapeText(args.source)}` : `store log`} ${m.vm}/${m.name} (sealed ${isoTime(m.sealed)}, ${m.entries} entries, ${m.claims?.artifacts.length ?? 0} artifact(s)) to ${args.out}: ${res.bytes.length} bytes\n`,
      );
    } catch (e) {
      reportError(e, 'logvm attest');
    }
  },
};
