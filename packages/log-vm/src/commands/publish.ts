import type { CommandModule } from 'yargs';
import { reportError, writeAll } from '../output.js';

interface PublishArgs {
  bundle: string;
  git: string;
  'gpg-program'?: string;
  'signing-key'?: string;
  push?: string;
}

/**
 * `logvm publish BUNDLE --git DIR`: commits a sealed bundle and its rendered
 * text to DIR/{VM}/{NAME}/ of a git work tree, signed with the configured
 * gpg program (Split-GPG by default), never overwriting a published log and
 * never forcing a push. The logic lives in ../publish.ts.
 */
export const publishCommand: CommandModule<object, PublishArgs> = {
  command: 'publish <bundle>',
  describe: 'commit a sealed bundle and its text log to a git work tree (like QubesOS/build-logs), signed',
  builder: (y) =>
    y
      .positional('bundle', { type: 'string', demandOption: true, describe: 'bundle directory (logvm export)' })
      .option('git', { type: 'string', demandOption: true, describe: 'top of the git work tree; the log goes to VM/NAME/ in it' })
      .option('gpg-program', { type: 'string', describe: 'gpg program git signs with (default: gitGpgProgram setting, else qubes-gpg-client-wrapper)' })
      .option('signing-key', { type: 'string', describe: "key to sign the commit with (default: publishSigningKey setting, else git's user.signingkey)" })
      .option('push', { type: 'string', describe: 'then push HEAD to this remote (plain push; never forced)' }) as never,
  handler: async (args) => {
    try {
      const { readServiceConfig } = await import('../config.js');
      const { publishBundle } = await import('../publish.js');
      const config = readServiceConfig();
      const r = await publishBundle({
        bundle: args.bundle,
        git: args.git,
        gpgProgram: args['gpg-program'] ?? config.gitGpgProgram ?? 'qubes-gpg-client-wrapper',
        signingKey: args['signing-key'] ?? config.publishSigningKey,
        push: args.push,
      });
      const m = r.manifest;
      await writeAll(
        process.stdout,
        `published ${m.vm}/${m.name} to ${r.dir}: commit ${r.commit} (signed), head ${m.head}, seal #${m.sealIndex}${r.pushed ? `, pushed to ${args.push}` : ''}\n`,
      );
    } catch (e) {
      reportError(e, 'logvm publish');
    }
  },
};
