import type { CommandModule } from 'yargs';
import { AppendlogError, escapeText, type CompareRow, type Comparison } from '@appendlog/shared';
import { asList, isoTime, reportError, toCodedError, writeAll } from '../output.js';
import { withTrust, type TrustArgs } from './trust-args.js';

interface CompareArgs extends TrustArgs {
  evidence: string[];
  all?: boolean;
  json?: boolean;
}

const esc = (s: string): string => escapeText(s);

/**
 * `logvm compare E1 E2 ...`: the claims of several builds side by side
 * (inputs and artifacts by path, size and hash; exit statuses; build
 * commands), marking where one parts from the others. With --key/--keyring
 * each build's seal is checked and its signers named; without, it says the
 * claims are unauthenticated.
 */
export const compareCommand: CommandModule<object, CompareArgs> = {
  command: 'compare <evidence..>',
  describe: 'show the claims of several sealed builds (evidence files or bundles) side by side, and where they differ',
  builder: (y) =>
    withTrust(y)
      .positional('evidence', { type: 'string', array: true, demandOption: true, describe: 'evidence files or bundle directories' })
      .option('all', { type: 'boolean', describe: 'also list the inputs and artifacts that are the same in every build' })
      .option('json', { type: 'boolean', describe: 'print the comparison as JSON' }) as never,
  handler: async (args) => {
    try {
      const { loadCheckedEvidence, readEvidenceFile } = await import('../evidence-io.js');
      const { readBundleManifest } = await import('../bundle-io.js');
      const { looksLikeArchive } = await import('../archive-io.js');
      const { compareBuilds } = await import('@appendlog/shared');
      const { existsSync, statSync } = await import('node:fs');
      const paths = asList(args.evidence);
      if (paths.length < 2) throw new AppendlogError('USAGE', 'give at least two evidence files or bundles to compare');
      const checkKeys = asList(args.key).length + asList(args.keyring).length > 0;
      const trust = checkKeys ? await (await import('./trust-args.js')).loadBuilders(args) : null;
      const builds = [];
      const seals: string[] = [];
      for (const p of paths) {
        if (trust !== null) {
          const e = await loadCheckedEvidence(p, trust);
          if (e.error !== undefined) throw new AppendlogError(e.error.code as never, `${p}: ${e.error.message}`);
          builds.push({ label: p, manifest: e.manifest! });
          seals.push(`sealed by ${e.signers.map((s) => `${s.fingerprint}${s.userIds[0] ? ` ${esc(s.userIds[0])}` : ''}`).join(', ')}`);
        } else {
          const isDir = existsSync(p) && (statSync(p).isDirectory() || looksLikeArchive(p));
          builds.push({ label: p, manifest: isDir ? (await readBundleManifest(p)).manifest : readEvidenceFile(p).manifest });
          seals.push('signatures not checked (give --key to check them)');
        }
      }
      const c = compareBuilds(builds);
      if (args.json) await writeAll(process.stdout, `${JSON.stringify({ ok: true, ...c, seals })}\n`);
      else await writeAll(process.stdout, render(c, seals, args.all === true));
    } catch (e) {
      const err = toCodedError(e);
      if (args.json) {
        await writeAll(process.stdout, `${JSON.stringify({ ok: false, code: err.code, exitCode: err.exitCode, message: err.message })}\n`);
        process.exitCode = err.exitCode;
      } else {
        reportError(err, 'logvm compare');
      }
    }
  },
};

function cell(v: CompareRow['values'][number]): string {
  if (v === null) return '(absent)';
  if (v.rejected !== undefined) return `REJECTED ${v.rejected} ${v.sha256 ? v.sha256.slice(0, 16) : 'unreadable'}`;
  return `${v.sha256.slice(0, 16)}… ${v.size} B${v.signer ? ` signed ${v.signer.slice(-16).toUpperCase()}` : ''}`;
}

function render(c: Comparison, seals: string[], all: boolean): string {
  const out: string[] = [];
  c.columns.forEach((col, i) => {
    out.push(`[${i + 1}] ${esc(col.label)}: log ${col.log}, sealed ${isoTime(col.sealed)}, ${seals[i]}`);
  });
  out.push('', `claims made by each build VM, sealed by its log VM${c.identical ? ': IDENTICAL in every build' : ''}`);
  const row = (title: string, values: string[], differs: boolean): void => {
    out.push(`${differs ? '*' : ' '} ${title}`);
    values.forEach((v, i) => out.push(`    [${i + 1}] ${v}`));
  };
  row(
    'command',
    c.columns.map((col) => (col.command === null ? '(none)' : esc(JSON.stringify(col.command)) + (col.hostname !== null ? ` on ${esc(JSON.stringify(col.hostname))}` : ''))),
    c.commandDiffers,
  );
  row(
    'exit',
    c.columns.map((col) => (col.exit === null ? '(none: the build did not run)' : col.exit.signal ?? String(col.exit.code))),
    c.exitDiffers,
  );
  for (const [title, rows] of [
    ['input', c.inputs],
    ['artifact', c.artifacts],
  ] as const) {
    const shown = all ? rows : rows.filter((r) => r.differs);
    for (const r of shown) row(`${title} ${esc(r.path)}`, r.values.map(cell), r.differs);
    const same = rows.filter((r) => !r.differs).length;
    if (!all && same > 0) out.push(`  ${same} ${title}(s) identical in every build (--all lists them)`);
  }
  out.push('', c.identical ? 'no difference' : `differences are marked *: ${[c.commandDiffers ? 'command' : '', c.exitDiffers ? 'exit' : '', ...c.inputs.filter((r) => r.differs).map((r) => `input ${esc(r.path)}`), ...c.artifacts.filter((r) => r.differs).map((r) => `artifact ${esc(r.path)}`)].filter(Boolean).join(', ')}`);
  return `${out.join('\n')}\n`;
}
