import { createReadStream } from 'node:fs';
import { basename } from 'node:path';
import type { CommandModule } from 'yargs';
import { AppendlogError, escapeText, sha256Stream, type BuilderEvidence, type QuorumResult } from '@appendlog/shared';
import { asList, isoTime, reportError, toCodedError, writeAll } from '../output.js';
import { withTrust, type TrustArgs } from './trust-args.js';

interface VerifyArtifactArgs extends TrustArgs {
  file: string;
  evidence?: string | string[];
  threshold: number;
  json?: boolean;
}

/** Text from an evidence or a key, safe for a terminal. */
const esc = (s: string): string => escapeText(s);
const short = (h: string | null): string => (h === null ? 'none' : h.slice(0, 16));

export const TRUST_NOTE =
  'an evidence file is checked against the log VM\'s signed summary only: the log lines were not re-checked; give the bundle directory as --evidence to re-check the log itself';

/**
 * `logvm verify-artifact FILE --evidence E... --key ... --threshold M`: M of N
 * independent builders. Each trusted certificate is one builder; it agrees
 * when a log it sealed claims FILE's SHA-256 as an artifact. One row per
 * builder, then the verdict. Exit 0 when at least M agree, 70 otherwise.
 */
export const verifyArtifactCommand: CommandModule<object, VerifyArtifactArgs> = {
  command: 'verify-artifact <file>',
  describe: 'check that at least M of N trusted builders sealed a log claiming FILE as an artifact',
  builder: (y) =>
    withTrust(y)
      .positional('file', { type: 'string', demandOption: true, describe: 'the release file (e.g. the ISO a user downloaded)' })
      .option('evidence', { type: 'string', describe: 'an evidence file (logvm attest) or a bundle directory; repeatable' })
      .option('threshold', { type: 'number', demandOption: true, describe: 'distinct trusted builders that must agree (M)' })
      .option('json', { type: 'boolean', describe: 'print the result as JSON' })
      .check((a) => {
        if (!Number.isSafeInteger(a.threshold) || a.threshold < 1) throw new Error('--threshold must be a positive integer');
        return true;
      }) as never,
  handler: async (args) => {
    try {
      const { loadBuilders, buildersOf } = await import('./trust-args.js');
      const { loadCheckedEvidence } = await import('../evidence-io.js');
      const { evaluateQuorum } = await import('@appendlog/shared');
      const trust = await loadBuilders(args);
      const builders = buildersOf(trust);
      if (args.threshold > builders.length) {
        throw new AppendlogError('USAGE', `--threshold ${args.threshold} is more than the ${builders.length} trusted builder certificate(s) given`);
      }
      const sources = asList(args.evidence);
      if (sources.length === 0) throw new AppendlogError('USAGE', 'give at least one --evidence FILE or bundle directory');
      let file;
      try {
        file = { name: basename(args.file), ...(await sha256Stream(createReadStream(args.file))) };
      } catch (e) {
        throw new AppendlogError('USAGE', `cannot read ${args.file}: ${(e as Error).message}`);
      }
      const evidences = [];
      for (const s of sources) evidences.push(await loadCheckedEvidence(s, trust));
      const result = evaluateQuorum({
        file,
        threshold: args.threshold,
        builders,
        evidences,
      });
      if (args.json) {
        await writeAll(process.stdout, `${JSON.stringify(toJson(result))}\n`);
      } else {
        await writeAll(process.stdout, render(result));
      }
      process.exitCode = result.met ? 0 : new AppendlogError('QUORUM_NOT_MET', '').exitCode;
    } catch (e) {
      const err = toCodedError(e);
      if (args.json) {
        await writeAll(process.stdout, `${JSON.stringify({ ok: false, code: err.code, exitCode: err.exitCode, message: err.message })}\n`);
        process.exitCode = err.exitCode;
      } else {
        reportError(err, 'logvm verify-artifact: FAIL');
      }
    }
  },
};

function toJson(r: QuorumResult): Record<string, unknown> {
  return {
    ok: r.met,
    ...(r.met ? {} : { code: 'QUORUM_NOT_MET', exitCode: 70 }),
    file: r.file,
    threshold: r.threshold,
    builders: r.builders.length,
    agreeing: r.agreeing,
    verdict: verdictLine(r),
    rows: r.builders.map((b) => ({ fingerprint: b.fingerprint, userIds: b.userIds, agrees: b.agrees, evidences: b.evidences })),
    uncounted: r.uncounted.map((e) => ({
      source: e.source,
      kind: e.kind,
      log: e.manifest ? `${e.manifest.vm}/${e.manifest.name}` : null,
      reason: e.error ? e.error.code : 'SIGNATURE_UNTRUSTED',
      message: e.error ? e.error.message : `signed only by keys that are not trusted builders: ${e.ignored.join(', ') || 'none'}`,
      ignoredSigners: e.ignored,
    })),
    note: TRUST_NOTE,
  };
}

function verdictLine(r: QuorumResult): string {
  return r.met
    ? `OK: ${r.agreeing} of ${r.builders.length} builders agree on ${r.file.name} (threshold ${r.threshold})`
    : `FAIL QUORUM_NOT_MET: ${r.agreeing} of ${r.builders.length} builders agree on ${r.file.name}, ${r.threshold} required`;
}

function describeEvidence(e: BuilderEvidence): string {
  const art =
    e.artifact === 'same'
      ? `same (claimed as ${esc(e.claimed!.path)})`
      : e.artifact === 'different'
        ? `DIFFERENT (claimed ${esc(e.claimed!.path)} sha256 ${short(e.claimed!.sha256)}…, ${e.claimed!.size} bytes)`
        : 'ABSENT (no artifact of that hash or name)';
  const ins =
    e.inputs === 'same'
      ? 'same'
      : `DIFFERENT: ${e.inputDifferences.map((d) => `${esc(d.path)} (${short(d.sha256)} vs majority ${short(d.majority)})`).join(', ')}`;
  const exit = e.exit === null ? 'none (the build did not run)' : e.exit.signal !== null ? `signal ${e.exit.signal}` : String(e.exit.code);
  const checked = e.kind === 'bundle' ? 'bundle: whole chain re-checked' : 'evidence: signed summary';
  return [
    `    log:      ${e.log}, sealed ${isoTime(e.sealed)} (${esc(e.source)}; ${checked})`,
    `    artifact: ${art}`,
    `    inputs:   ${ins}${e.verifiedInputs > 0 ? `; ${e.verifiedInputs} signature-checked before the build` : ''}${e.rejectedInputs > 0 ? `; ${e.rejectedInputs} REJECTED` : ''}`,
    `    exit:     ${exit}`,
  ].join('\n');
}

function render(r: QuorumResult): string {
  const out: string[] = [
    `artifact ${esc(r.file.name)}: sha256 ${r.file.sha256}, ${r.file.size} bytes; ${r.builders.length} trusted builder(s), ${r.threshold} must agree`,
    '',
  ];
  for (const b of r.builders) {
    const who = `${b.fingerprint}${b.userIds.length > 0 ? ` ${esc(b.userIds[0]!)}` : ''}`;
    if (b.evidences.length === 0) {
      out.push(`${b.agrees ? 'AGREES  ' : 'MISSING '} ${who}`, '    no evidence sealed by this builder');
      continue;
    }
    out.push(`${b.agrees ? 'AGREES  ' : 'DIFFERS '} ${who}${b.evidences.length > 1 ? ` (${b.evidences.length} evidences, counted once)` : ''}`);
    for (const e of b.evidences) out.push(describeEvidence(e));
  }
  if (r.uncounted.length > 0) {
    out.push('', 'not counted:');
    for (const e of r.uncounted) {
      const log = e.manifest ? ` (log ${e.manifest.vm}/${e.manifest.name})` : '';
      out.push(
        e.error
          ? `  ${esc(e.source)}${log}: ${e.error.code}: ${esc(e.error.message)}`
          : `  ${esc(e.source)}${log}: SIGNATURE_UNTRUSTED: sealed only by key(s) that are not trusted builders: ${e.ignored.join(', ') || '?'}`,
      );
    }
  }
  out.push('', verdictLine(r));
  for (const b of r.builders.filter((x) => !x.agrees)) {
    const who = `${b.fingerprint}${b.userIds.length > 0 ? ` (${esc(b.userIds[0]!)})` : ''}`;
    if (b.evidences.length === 0) {
      out.push(`  ${who}: no evidence`);
      continue;
    }
    const e = b.evidences[0]!;
    const how = [
      e.artifact === 'different' ? `built a different ${esc(e.claimed!.path)} (sha256 ${e.claimed!.sha256})` : 'claims no such artifact',
      ...(e.inputs === 'different' ? [`inputs differ: ${e.inputDifferences.map((d) => esc(d.path)).join(', ')}`] : []),
      ...(e.rejectedInputs > 0 ? [`${e.rejectedInputs} input(s) failed signature verification`] : []),
      ...(e.exit === null ? ['the build did not run'] : e.exit.code !== 0 ? [`exit ${e.exit.signal ?? e.exit.code}`] : []),
    ];
    out.push(`  disagrees: ${who} in ${e.log}: ${how.join('; ')}`);
  }
  for (const b of r.builders.filter((x) => x.agrees)) {
    const bad = b.evidences.filter((e) => e.artifact === 'same' && e.exit !== null && e.exit.code !== 0);
    if (bad.length > 0) out.push(`  warning: ${b.fingerprint} claims the artifact from a build that exited ${bad[0]!.exit!.signal ?? bad[0]!.exit!.code}`);
    const same = b.evidences.find((e) => e.artifact === 'same');
    if (same !== undefined && same.inputs === 'different') {
      out.push(`  note: ${b.fingerprint} built the same artifact from different inputs: ${same.inputDifferences.map((d) => esc(d.path)).join(', ')}`);
    }
  }
  // The issue's rule counts every builder that sealed an agreeing log; say
  // plainly when two of them vouch for one and the same build (a cosigned log).
  const byLog = new Map<string, string[]>();
  for (const b of r.builders.filter((x) => x.agrees)) {
    for (const e of b.evidences.filter((x) => x.artifact === 'same')) byLog.set(e.logId, [...new Set([...(byLog.get(e.logId) ?? []), b.fingerprint])]);
  }
  for (const [, who] of byLog) if (who.length > 1) out.push(`  note: ${who.join(', ')} sealed the same log (one build, cosigned), not separate builds`);
  out.push(`note: ${TRUST_NOTE}`);
  return `${out.join('\n')}\n`;
}
