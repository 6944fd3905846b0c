import type { CommandModule } from 'yargs';
import { asList, reportError, writeAll } from '../output.js';
import { makeProgress } from '../progress.js';
import { AppendlogError } from '@appendlog/shared';
import { openStore, withDb, type DbArgs } from './common.js';
import { withTrust, type TrustArgs } from './trust-args.js';

interface ReportArgs extends DbArgs, TrustArgs {
  target: string;
  threshold: number;
  out: string;
  patterns?: string | string[];
  'max-embed-mib': number;
}

/**
 * `logvm report`: the auditor's view of a log, as one self-contained HTML
 * file (src/report/). Verification is verify-chain's own; the report is
 * written whatever the verdict, and the exit status is verify-chain's.
 */
export const reportCommand: CommandModule<object, ReportArgs> = {
  command: 'report <target>',
  describe: 'write a self-contained HTML report of a bundle (directory) or a log in the store (VM/NAME)',
  builder: (y) =>
    withTrust(withDb(y))
      .positional('target', { type: 'string', demandOption: true, describe: 'bundle directory, or VM/NAME in the store' })
      .option('threshold', { type: 'number', default: 1, describe: 'signatures needed, by distinct trusted certificates (as verify-chain)' })
      .option('out', { type: 'string', demandOption: true, describe: 'the HTML file to write' })
      .option('patterns', { type: 'string', describe: 'JSON file of more "look here first" patterns (repeatable)' })
      .option('max-embed-mib', {
        type: 'number',
        default: 256,
        describe: 'embed the whole log up to this size; a larger log gets the highlights and windows around them',
      })
      .check((a) => {
        if (!Number.isSafeInteger(a.threshold) || a.threshold < 1) throw new Error('--threshold must be a positive integer');
        if (!(a['max-embed-mib'] > 0)) throw new Error('--max-embed-mib must be a positive number');
        return true;
      }) as never,
  handler: async (args) => {
    try {
      const { buildReport } = await import('../report/build.js');
      const { DEFAULT_PATTERNS, loadPatternFile } = await import('../report/patterns.js');
      const { loadTrust } = await import('./keys.js');
      const { isBundlePath } = await import('../bundle-entries.js');
      // The same trust options and loader as verify-chain.
      const keyFiles = asList(args.key);
      const keyringFiles = asList(args.keyring);
      const signerPins = asList(args.signer);
      if (signerPins.length > 0 && keyFiles.length + keyringFiles.length === 0) throw new AppendlogError('USAGE', '--signer pins keys given with --key or --keyring; give those too');
      const trust = keyFiles.length + keyringFiles.length > 0 ? await loadTrust({ keys: keyFiles, keyrings: keyringFiles, signers: signerPins }) : undefined;
      const patterns = [...DEFAULT_PATTERNS, ...asList(args.patterns).flatMap(loadPatternFile)];
      const isBundle = args.db === undefined && isBundlePath(args.target);
      const r = await buildReport({
        target: args.target,
        isBundle,
        openStore: () => openStore(args),
        trust,
        threshold: args.threshold,
        patterns,
        maxEmbedBytes: Math.floor(args['max-embed-mib'] * 1024 * 1024),
        out: args.out,
        progress: (label) => makeProgress(label),
      });
      const v = r.verdict;
      const found = r.collected.groups.filter((g) => g.count > 0).map((g) => `${g.title} ${g.count}`);
      const summary = [
        `${v.ok ? 'OK' : 'FAIL'} ${v.log ?? args.target}: report written to ${args.out} (${r.bytes} bytes)`,
        `  verdict:    ${v.ok ? `chain intact${v.state === 'sealed' ? ' and sealed' : ', not sealed'}` : `${v.code}${v.seq !== null ? ` at seq ${v.seq}` : ''}`}`,
        `  log:        ${r.collected.log.embedded} of ${r.collected.log.entries} entries embedded${r.collected.log.mode === 'window' ? ' (window around the highlights)' : ''}`,
        `  look here:  ${found.length > 0 ? found.join(', ') : 'nothing matched'}`,
      ];
      if (r.readError !== null) summary.push(`  unreadable: ${r.readError}`);
      await writeAll(process.stdout, `${summary.join('\n')}\n`);
      if (!v.ok) {
        process.stderr.write(`logvm report: FAIL: ${v.code}: ${v.message}\n`);
        process.exitCode = v.exitCode;
      }
    } catch (e) {
      reportError(e, 'logvm report');
    }
  },
};
