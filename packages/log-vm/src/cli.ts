#!/usr/bin/env node
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { EXIT_CODES, VERSION } from '@appendlog/shared';
import { quietOnClosedPipe } from './output.js';
import { appendCommand } from './commands/append.js';
import { listCommand } from './commands/list.js';
import { showCommand } from './commands/show.js';
import { verifyChainCommand } from './commands/verify-chain.js';
import { sealCommand } from './commands/seal.js';
import { exportCommand } from './commands/export.js';
import { cosignCommand } from './commands/cosign.js';
import { attestCommand } from './commands/attest.js';
import { verifyArtifactCommand } from './commands/verify-artifact.js';
import { compareCommand } from './commands/compare.js';
import { buildLogCommand } from './commands/buildlog.js';
import { renderCommand } from './commands/render.js';
import { publishCommand } from './commands/publish.js';
import { reportCommand } from './commands/report.js';

// Every command but the services (append, buildlog): a closed pipe on stdout
// ends it quietly. The services must still close their session; they handle it.
if (process.argv[2] !== 'append' && process.argv[2] !== 'buildlog') quietOnClosedPipe();

await yargs(hideBin(process.argv))
  .scriptName('logvm')
  .usage('$0 <command>\n\nThe log VM side of qubes.AppendLog: hash-chained, append-only, sealed build logs.')
  .command(appendCommand)
  .command(listCommand)
  .command(showCommand)
  .command(verifyChainCommand)
  .command(sealCommand)
  .command(exportCommand)
  .command(cosignCommand)
  .command(attestCommand)
  .command(verifyArtifactCommand)
  .command(compareCommand)
  .command(buildLogCommand)
  .command(renderCommand)
  .command(publishCommand)
  .command(reportCommand)
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
