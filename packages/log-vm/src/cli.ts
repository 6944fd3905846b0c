#!/usr/bin/env node
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { EXIT_CODES, VERSION } from '@appendlog/shared';
import { quietOnClosedPipe } from './output.js';
import type { CommandModule } from 'yargs';

// The qrexec services (`append` from qubes.AppendLog, `buildlog` from
// qubesbuilder.BuildLog) load only their own command: every other command
// pulls in modules a session never uses (report rendering, bundles, trust),
// and each of them delays the moment the session opens and starts reading
// the sender's stdin. The other commands are loaded together, for --help.
const SERVICES: Record<string, () => Promise<CommandModule<any, any>>> = {
  append: async () => (await import('./commands/append.js')).appendCommand,
  buildlog: async () => (await import('./commands/buildlog.js')).buildLogCommand,
};
const service = SERVICES[process.argv[2] ?? ''];
const commands: Array<CommandModule<any, any>> = service ? [await service()] : (await import('./commands/index.js')).ALL_COMMANDS;

// Every command but the services (append, buildlog): a closed pipe on stdout
// ends it quietly. The services must still close their session; they handle it.
if (!service) quietOnClosedPipe();

await yargs(hideBin(process.argv))
  .scriptName('logvm')
  .usage('$0 <command>\n\nThe log VM side of qubes.AppendLog: hash-chained, append-only, sealed build logs.')
  .command(commands)
  .demandCommand(1, 'give a command: append, list, show, verify-chain, seal, export, cosign, attest, verify-artifact, compare, buildlog, render, publish, report')
  // `logvm completion >> ~/.bashrc` (the packages install it system-wide).
  .completion('completion', 'print a bash/zsh completion script')
  .strict()
  .version(VERSION)
  .help()
  .fail((msg, err) => {
    // A message means a usage problem (including our .check()s); an error
    // without one came from a handler and is reported there.
    if (!msg && err) throw err;
    process.stderr.write(`logvm: USAGE: ${msg}\n(see logvm --help)\n`);
    process.exit(EXIT_CODES.USAGE);
  })
  .parseAsync();
