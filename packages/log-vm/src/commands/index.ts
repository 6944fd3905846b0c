// Every logvm command, in the order --help lists them, for cli.ts (which
// loads only the command that runs, through loaders.ts: see there).
// Register a new command here, in loaders.ts and in cli.ts's demandCommand message.
import type { CommandModule } from 'yargs';
import { appendCommand } from './append.js';
import { listCommand } from './list.js';
import { showCommand } from './show.js';
import { verifyChainCommand } from './verify-chain.js';
import { sealCommand } from './seal.js';
import { exportCommand } from './export.js';
import { cosignCommand } from './cosign.js';
import { attestCommand } from './attest.js';
import { verifyArtifactCommand } from './verify-artifact.js';
import { compareCommand } from './compare.js';
import { buildLogCommand } from './buildlog.js';
import { renderCommand } from './render.js';
import { publishCommand } from './publish.js';
import { reportCommand } from './report.js';

export const ALL_COMMANDS: Array<CommandModule<any, any>> = [
  appendCommand,
  listCommand,
  showCommand,
  verifyChainCommand,
  sealCommand,
  exportCommand,
  cosignCommand,
  attestCommand,
  verifyArtifactCommand,
  compareCommand,
  buildLogCommand,
  renderCommand,
  publishCommand,
  reportCommand,
];
