// One loader per logvm command, by the command's name, so that cli.ts loads
// only the command that runs (see there). Importing this file loads none of
// them. test/foundation/cli-lazy.test.ts checks that it names every command of
// commands/index.ts, each loader giving that very command.
import type { CommandModule } from 'yargs';

export const COMMAND_LOADERS: Record<string, () => Promise<CommandModule<any, any>>> = {
  append: async () => (await import('./append.js')).appendCommand,
  list: async () => (await import('./list.js')).listCommand,
  show: async () => (await import('./show.js')).showCommand,
  'verify-chain': async () => (await import('./verify-chain.js')).verifyChainCommand,
  seal: async () => (await import('./seal.js')).sealCommand,
  export: async () => (await import('./export.js')).exportCommand,
  cosign: async () => (await import('./cosign.js')).cosignCommand,
  attest: async () => (await import('./attest.js')).attestCommand,
  'verify-artifact': async () => (await import('./verify-artifact.js')).verifyArtifactCommand,
  compare: async () => (await import('./compare.js')).compareCommand,
  buildlog: async () => (await import('./buildlog.js')).buildLogCommand,
  render: async () => (await import('./render.js')).renderCommand,
  publish: async () => (await import('./publish.js')).publishCommand,
  report: async () => (await import('./report.js')).reportCommand,
};
