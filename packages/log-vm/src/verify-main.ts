/**
 * The auditor's single-file verifier (`appendlog-verify-VERSION.mjs`, built by
 * scripts/build-verifier.mjs with esbuild): `logvm verify-chain BUNDLE`, the
 * very same command module, with nothing but Node.js needed to run it. It
 * checks exported bundles only: the store half of verify-chain needs SQLite,
 * which the bundle leaves out (better-sqlite3 is replaced by a stub that
 * refuses). No top-level await: the bundle is CommonJS, so that its Node
 * version check runs before any module is loaded (an ES module's imports are
 * linked before its first line runs, and Node 18's node:crypto lacks names
 * this code imports).
 */
import { existsSync, statSync } from 'node:fs';
import yargs, { type Argv } from 'yargs';
import { hideBin } from 'yargs/helpers';
import { AppendlogError, EXIT_CODES, VERSION } from '@appendlog/shared';
import { reportError } from './output.js';
import { verifyChainCommand } from './commands/verify-chain.js';

type Handler = NonNullable<typeof verifyChainCommand.handler>;
type Args = Parameters<Handler>[0];
const builder = verifyChainCommand.builder as (y: Argv) => Argv;

void yargs(hideBin(process.argv))
  .scriptName('appendlog-verify')
  .usage(`$0 BUNDLE --key PUB.asc [--key ...] [--threshold M] [--previous PREV] [--receipt FILE] [--artifact FILE] [--json]\n\nappendlog ${VERSION}: verify an exported appendlog bundle offline, exactly as \`logvm verify-chain BUNDLE\` does.`)
  .command({
    command: '$0 <target>',
    describe: 'verify an exported bundle (directory)',
    builder: (y: Argv) => builder(y).option('db', { type: 'string', hidden: true }) as never,
    handler: async (args: Args) => {
      if (args.db !== undefined || args.store !== undefined) {
        reportError(new AppendlogError('USAGE', 'this single-file verifier checks exported bundles; a log in a store needs logvm verify-chain --store VM/NAME'), 'appendlog-verify');
        return;
      }
      const target = args.target as string; // `<target>`: required here
      // A bundle is a directory or an archive file, as for verify-chain; never a store look-up.
      if (!existsSync(target) || !(statSync(target).isDirectory() || statSync(target).isFile())) {
        reportError(new AppendlogError('MALFORMED_BUNDLE', `${JSON.stringify(target)} is not a bundle directory`), 'logvm verify-chain: FAIL');
        return;
      }
      await (verifyChainCommand.handler as Handler)(args);
    },
  })
  .strict()
  .version(VERSION)
  .help()
  .fail((msg, err) => {
    if (!msg && err) throw err;
    process.stderr.write(`appendlog-verify: USAGE: ${msg}\n(see appendlog-verify --help)\n`);
    process.exit(EXIT_CODES.USAGE);
  })
  .parseAsync();
