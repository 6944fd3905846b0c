#!/usr/bin/env node
import { quietOnClosedPipe } from './output.js';
import { COMMAND_LOADERS } from './commands/loaders.js';
import type { CommandModule } from 'yargs';

// The qrexec services run as exactly `logvm append --qrexec` and `logvm
// buildlog --qrexec` (rpc/qubes.AppendLog, rpc/qubesbuilder.BuildLog), once
// per call, and until the session opens the sender waits: that very argv
// goes straight to the command's handler with the arguments yargs would
// give it (no other option is set; the check of --qrexec's companions has
// nothing to refuse), without loading yargs (~40 modules and string-width's
// tables: tens of ms of every call). Any other argv is parsed by yargs.
const SERVICE_ARGV = new Set(['append --qrexec', 'buildlog --qrexec']);
// verify-chain of a bundle: its signature thread boots on the second core
// while this one loads yargs and the command (signature-check.ts). Not for
// --store, which checks its seals here and hashes on both cores.
const argv = process.argv.slice(2);
if (argv[0] === 'verify-chain' && !argv.some((a) => a === '--store' || a.startsWith('--store='))) {
  (await import('./signature-check.js')).prestartSignatureWorker();
}
const direct = process.argv.length === 4 && SERVICE_ARGV.has(`${process.argv[2]} ${process.argv[3]}`);
if (direct) await COMMAND_LOADERS[process.argv[2]!]!().then((c) => c.handler({ qrexec: true, _: [process.argv[2]!], $0: 'logvm' }));
else await parseWithYargs();

async function parseWithYargs(): Promise<void> {
  const [{ yargs, hideBin }, { EXIT_CODES, VERSION }] = await Promise.all([loadYargs(), import('@appendlog/shared')]);

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
}

/**
 * yargs as one file (dist/yargs.js, scripts/bundle-yargs.mjs: about half
 * the load time of the package's 40-odd modules), else the package itself.
 */
async function loadYargs(): Promise<{ yargs: typeof import('yargs').default; hideBin: typeof import('yargs/helpers').hideBin }> {
  try {
    const m = (await import(new URL('./yargs.js', import.meta.url).href)) as { default: typeof import('yargs').default; hideBin: typeof import('yargs/helpers').hideBin };
    if (typeof m.default === 'function' && typeof m.hideBin === 'function') return { yargs: m.default, hideBin: m.hideBin };
  } catch (e) {
    if ((e as { code?: string }).code !== 'ERR_MODULE_NOT_FOUND') throw e;
  }
  const [{ default: yargs }, { hideBin }] = await Promise.all([import('yargs'), import('yargs/helpers')]);
  return { yargs, hideBin };
}

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
