#!/usr/bin/env node
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { EXIT_CODES, VERSION } from '@appendlog/shared';
import { quietOnClosedPipe } from './output.js';
import { COMMAND_LOADERS } from './commands/loaders.js';
import type { CommandModule } from 'yargs';

// Only the command that runs is loaded: every other one pulls in modules it
// never uses (report rendering, bundles, trust, SQLite), and at the sizes
// logs have, loading them is a large share of a command's time (for the
// qrexec services, `append` from qubes.AppendLog and `buildlog` from
// qubesbuilder.BuildLog, it delays the moment the session opens and starts
// reading the sender's stdin). Anything else (no command, --help, a typo,
// completion) loads them all, in commands/index.ts's order, for yargs.
// (commands/loaders.ts has one loader per command; a test keeps the two lists equal.)
const SERVICES = new Set(['append', 'buildlog']);
const name = process.argv[2] ?? '';
const one = Object.hasOwn(COMMAND_LOADERS, name) ? COMMAND_LOADERS[name] : undefined;
const commands: Array<CommandModule<any, any>> = one ? [await one()] : (await import('./commands/index.js')).ALL_COMMANDS;
const service = one !== undefined && SERVICES.has(name);

// Every command but the services (append, buildlog): a closed pipe on stdout
// ends it quietly. The services must still close their session; they handle it.
if (!service) quietOnClosedPipe();

const parser = yargs(hideBin(process.argv))
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
  });
skipHelpCache(parser);
await parser.parseAsync();

/**
 * yargs renders the running command's whole --help text (cliui, string-width,
 * wrap-ansi) right after starting its handler, to have it ready should the
 * handler fail and ask for help; ours never do (failures print their coded
 * error, see .fail above). That rendering ran on the command's critical path,
 * 20-40 ms of every run (node --cpu-prof). Reaching it needs yargs'
 * internal methods: if a yargs version lacks them, nothing is changed.
 */
function skipHelpCache(y: unknown): void {
  const usage = (y as { getInternalMethods?: () => { getUsageInstance?: () => { cacheHelpMessage?: unknown } } }).getInternalMethods?.().getUsageInstance?.();
  if (usage !== undefined && typeof usage.cacheHelpMessage === 'function') usage.cacheHelpMessage = (): void => undefined;
}
