import type { CommandModule } from 'yargs';
import { escapeText, parseLogRef } from '@appendlog/shared';
import { reportError, writeAll } from '../output.js';
import { openStore, withDb, type DbArgs } from './common.js';

interface SealArgs extends DbArgs {
  log: string;
  signer: string;
  json?: boolean;
}

export const sealCommand: CommandModule<object, SealArgs> = {
  command: 'seal <log>',
  describe: 'close a log (VM/NAME) and sign its seal manifest',
  builder: (y) =>
    withDb(y)
      .positional('log', { type: 'string', demandOption: true, describe: 'VM/NAME' })
      .option('signer', {
        type: 'string',
        default: 'split-gpg',
        describe: 'split-gpg[:KEYID] (Qubes vault VM), gpg[:KEYID] or key-file:PATH',
      })
      .option('json', { type: 'boolean', describe: 'print the manifest as JSON' }) as never,
  handler: async (args) => {
    // Loaded on use: openpgp.js and friends stay out of `logvm append`.
    try {
      const { signatureIssuers } = await import('@appendlog/shared/signatures');
      const { sealLog } = await import('../seal.js');
      const { parseSignerSpec } = await import('../signers.js');
      const { vm, name } = parseLogRef(args.log);
      const signer = parseSignerSpec(args.signer);
      const store = openStore(args);
      try {
        // Settings first: a bad config file is a usage error before anything is signed.
        const { readServiceConfig } = await import('../config.js');
        const config = readServiceConfig();
        const res = await sealLog(store, vm, name, signer, {
          onWait: (o) => {
            // Names from the store: escaped (a log name is the build VM's choice).
            process.stderr.write(`logvm seal: waiting for the seal of ${escapeText(`${o.vm}/${o.name}`)} in progress (process ${o.pid}, since ${new Date(o.time).toISOString()}); one seal of a store is signed at a time\n`);
          },
        });
        const issuers = await signatureIssuers(res.signature);
        // postSealHook: the bundle is exported to bundleDir/VM/NAME first; the
        // hook's exit status is chained in VM/logvm-events. The seal stands
        // whatever happens there.
        const { afterSeal } = await import('../after-seal.js');
        const after = await afterSeal(store, vm, name, config);
        for (const f of after.failures) process.stderr.write(`logvm seal: ${f.error.code}: ${f.error.message} (the seal stands; recorded in ${vm}/logvm-events)\n`);
        if (after.failures.length > 0) process.exitCode = after.failures[0]!.error.exitCode;
        if (args.json) {
          await writeAll(process.stdout, `${JSON.stringify({ ok: true, manifest: res.manifest, signedBy: issuers })}\n`);
        } else {
          await writeAll(
            process.stdout,
            `sealed ${vm}/${name}: seal #${res.manifest.sealIndex}, ${res.manifest.entries} entries, head ${res.manifest.head}, signed by key ${issuers.join(', ')}\n`,
          );
        }
      } finally {
        store.close();
      }
    } catch (e) {
      reportError(e, 'logvm seal');
    }
  },
};
