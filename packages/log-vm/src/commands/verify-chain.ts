import type { CommandModule } from 'yargs';
import { AppendlogError, escapeForTerminal, escapeText, parseLogRef, parseManifest, sha256Stream, type ChainFacts, type SealManifest } from '@appendlog/shared';
import type { SignatureReport } from '@appendlog/shared/signatures';
import { asList, isoTime, reportError, toCodedError, writeAll } from '../output.js';
import { makeProgress } from '../progress.js';
import { dbPath, openStore, withDb, type DbArgs } from './common.js';

interface VerifyArgs extends DbArgs {
  target?: string;
  bundle?: string;
  store?: string;
  key?: string | string[];
  keyring?: string | string[];
  signer?: string | string[];
  threshold: number;
  previous?: string;
  receipt?: string | string[];
  artifact?: string | string[];
  json?: boolean;
}

interface Outcome {
  source: 'bundle' | 'store';
  /** The bundle path, or the store file. */
  where: string;
  state: 'open' | 'sealed';
  facts: ChainFacts;
  manifest?: SealManifest;
  signatures?: SignatureReport;
  seals?: number;
  receipts?: number;
  artifacts?: Array<{ file: string; sha256: string; claimedPath: string; claimedPaths: string[]; otherLogs: string[] }>;
}

/** Sender-controlled text, made safe for a terminal. */
const safe = (v: unknown): string => escapeForTerminal(Buffer.from(JSON.stringify(v), 'utf8'));

const logName = (m: { vm: string; name: string }): string => `${m.vm}/${m.name}`;

async function hashArtifacts(files: string[]): Promise<Array<{ file: string; sha256: string }>> {
  const { createReadStream } = await import('node:fs');
  const out: Array<{ file: string; sha256: string }> = [];
  for (const file of files) {
    try {
      out.push({ file, sha256: (await sha256Stream(createReadStream(file))).sha256 });
    } catch (e) {
      throw new AppendlogError('USAGE', `cannot read artifact ${file}: ${(e as Error).message}`);
    }
  }
  return out;
}

/**
 * Ties release files to this log: each file's SHA-256 must be among the
 * artifacts the sender claimed in the sealed manifest. (The hash list is a
 * claim by the build VM, bound to this log by the seal.)
 */
function matchArtifacts(hashed: Array<{ file: string; sha256: string }>, o: Outcome, others: Map<string, string[]>): NonNullable<Outcome['artifacts']> {
  const sealed = o.manifest?.claims?.artifacts ?? [];
  return hashed.map(({ file, sha256 }) => {
    const hits = sealed.filter((a) => a.sha256 === sha256);
    if (o.manifest === undefined || hits.length === 0) {
      throw new AppendlogError(
        'ARTIFACT_NOT_FOUND',
        `${file} (sha256 ${sha256}) is not among the ${sealed.length} artifact(s) sealed in log ${logName(o.facts.identity)}${o.manifest ? '' : ' (the log is not sealed)'}`,
      );
    }
    return { file, sha256, claimedPaths: hits.map((h) => h.path), claimedPath: hits[0]!.path, otherLogs: others.get(sha256) ?? [] };
  });
}

/** Other sealed logs in the store whose build VM claimed the same file hash. */
function otherClaims(store: { seals(): Iterable<{ log_id: number; manifest: Buffer }> }, logId: number, hashes: string[]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  if (hashes.length === 0) return out;
  for (const seal of store.seals()) {
    if (seal.log_id === logId) continue;
    let m: SealManifest;
    try {
      m = parseManifest(seal.manifest);
    } catch {
      continue; // verified elsewhere; here only a hint
    }
    for (const a of m.claims?.artifacts ?? []) {
      if (!hashes.includes(a.sha256)) continue;
      const l = out.get(a.sha256) ?? [];
      if (!l.includes(logName(m))) l.push(logName(m));
      out.set(a.sha256, l);
    }
  }
  return out;
}


/**
 * `logvm verify-chain`: for an auditor with a bundle and public keys, or an
 * admin with the store. Says OK with the facts an auditor wants, or names the
 * first failure with its code and documented exit code. Never OK on partial
 * data: a bundle needs its signatures to verify too.
 */

/**
 * What to verify, chosen explicitly (docs/FORMAT.md 6.6 step 1): a bundle
 * (`--bundle PATH`, or the positional PATH) or a log in the local store
 * (`--store VM/NAME`). A positional argument is always a bundle path, never
 * a store log: a mistyped bundle path such as `work/release-1` must fail
 * (MALFORMED_BUNDLE), not verify a log of the auditor's own store.
 */
function chooseTarget(a: VerifyArgs): { kind: 'bundle'; path: string } | { kind: 'store'; ref: string } {
  const bundles = [a.target, ...asList(a.bundle)].filter((v): v is string => v !== undefined);
  const stores = asList(a.store);
  if (bundles.length + stores.length !== 1) {
    throw new AppendlogError('USAGE', 'name exactly one thing to verify: a bundle (PATH or --bundle PATH) or a store log (--store VM/NAME)');
  }
  if (stores.length === 1) return { kind: 'store', ref: stores[0]! };
  if (a.db !== undefined) throw new AppendlogError('USAGE', '--db names a store; it goes with --store VM/NAME, not with a bundle');
  return { kind: 'bundle', path: bundles[0]! };
}

export const verifyChainCommand: CommandModule<object, VerifyArgs> = {
  command: 'verify-chain [target]',
  describe: 'verify an exported bundle (PATH or --bundle PATH: a directory or a .tar/.tar.gz/.tar.zst archive) or a log in the store (--store VM/NAME)',
  builder: (y) =>
    withDb(y)
      .positional('target', { type: 'string', describe: 'bundle directory or archive (the same as --bundle PATH); never a store log' })
      .option('bundle', { type: 'string', describe: 'bundle directory or archive to verify' })
      .option('store', { type: 'string', describe: 'log in the local store to verify, as VM/NAME' })
      .option('key', { type: 'string', describe: 'trusted public key file(s), armored or binary, one or more certificates each (repeatable)' })
      .option('keyring', { type: 'string', describe: 'a keyring exported with gpg --export (repeatable)' })
      .option('signer', { type: 'string', describe: 'only this primary fingerprint (40 hex) may count; repeatable, like gpgv with a pinned list' })
      .option('threshold', { type: 'number', default: 1, describe: 'signatures needed, by distinct trusted certificates (primary fingerprints)' })
      .option('previous', { type: 'string', describe: 'bundle of the seal made just before: check the link of the seal chain' })
      .option('receipt', { type: 'string', describe: 'receipts kept by logsend --receipts: the log must extend every one' })
      .option('artifact', { type: 'string', describe: 'a release file: its SHA-256 must be among the sealed artifacts' })
      .option('json', { type: 'boolean', describe: 'print the result as JSON' })
      .check((a) => {
        if (!Number.isSafeInteger(a.threshold) || a.threshold < 1) throw new Error('--threshold must be a positive integer');
        return true;
      }) as never,
  handler: async (args) => {
    // Loaded on use: openpgp.js and friends stay out of `logvm append`.
    const progress = makeProgress('verifying');
    try {
      const target = chooseTarget(args);
      const keyFiles = asList(args.key);
      const keyringFiles = asList(args.keyring);
      const signerPins = asList(args.signer);
      const receiptFiles = asList(args.receipt);
      const artifactFiles = asList(args.artifact);
      if (signerPins.length > 0 && keyFiles.length + keyringFiles.length === 0) throw new AppendlogError('USAGE', '--signer pins keys given with --key or --keyring; give those too');
      const hasTrust = keyFiles.length + keyringFiles.length > 0;
      let others = new Map<string, string[]>();
      let outcome: Outcome;
      const { readReceipts } = await import('../receipts.js');
      if (target.kind === 'bundle') {
        if (!hasTrust) throw new AppendlogError('USAGE', 'verifying a bundle needs the trusted public key(s): --key PUB.asc or --keyring KEYRING.gpg');
        // The trust material and the signatures are checked on a thread of
        // their own while this one reads the bundle (signature-check.ts);
        // a failure here still waits for the trust material, whose error
        // comes first, as when it was loaded before anything else.
        const { startSignatureCheck } = await import('../signature-check.js');
        // Started before the bundle modules load: the thread boots meanwhile.
        const check = startSignatureCheck({ keys: keyFiles, keyrings: keyringFiles, signers: signerPins });
        try {
          const { verifyBundle, readBundleManifest } = await import('../bundle-io.js');
          let hashed: Array<{ file: string; sha256: string }>;
          let checkpoints: ReturnType<typeof readReceipts> | undefined;
          try {
            hashed = await hashArtifacts(artifactFiles);
            checkpoints = receiptFiles.length > 0 ? readReceipts(receiptFiles, logName((await readBundleManifest(target.path)).manifest)) : undefined;
          } catch (e) {
            await check.trusted;
            throw e;
          }
          const r = await verifyBundle(target.path, check, args.threshold, { progress, previous: args.previous, checkpoints });
          outcome = { source: 'bundle', where: target.path, state: 'sealed', facts: r.facts, manifest: r.manifest, signatures: r.signatures };
          if (artifactFiles.length > 0) outcome.artifacts = matchArtifacts(hashed, outcome, others);
        } finally {
          check.close();
        }
      } else {
        const { verifyStoredLog } = await import('../verify-store.js');
        const { loadTrust } = await import('./keys.js');
        const trust = hasTrust ? await loadTrust({ keys: keyFiles, keyrings: keyringFiles, signers: signerPins }) : undefined;
        const hashed = await hashArtifacts(artifactFiles);
        if (args.previous !== undefined) throw new AppendlogError('USAGE', '--previous links two bundles; a store log is checked against the whole seal chain of its store');
        const { vm, name } = parseLogRef(target.ref);
        const store = openStore(args);
        try {
          const checkpoints = receiptFiles.length > 0 ? readReceipts(receiptFiles, `${vm}/${name}`) : undefined;
          const row = store.requireLog(vm, name);
          const r = await verifyStoredLog(store, row, { trust, threshold: args.threshold, progress, checkpoints });
          outcome = { source: 'store', where: dbPath(args), ...r };
          others = otherClaims(store, row.id, hashed.map((h) => h.sha256));
        } finally {
          store.close();
        }
        if (artifactFiles.length > 0) outcome.artifacts = matchArtifacts(hashed, outcome, others);
      }
      progress.done();
      if (receiptFiles.length > 0) outcome.receipts = receiptFiles.length;
      await printOk(args.json === true, outcome);
    } catch (e) {
      progress.done();
      const err = toCodedError(e);
      if (args.json) {
        await writeAll(
          process.stdout,
          `${JSON.stringify({ ok: false, code: err.code, exitCode: err.exitCode, seq: err.seq ?? null, line: err.line ?? null, message: err.message })}\n`,
        );
        process.exitCode = err.exitCode;
      } else {
        reportError(err, 'logvm verify-chain: FAIL');
      }
    }
  },
};

async function printOk(json: boolean, o: Outcome): Promise<void> {
  const f = o.facts;
  const log = `${f.identity.vm}/${f.identity.name}`;
  const results = o.signatures?.results ?? [];
  const userIdsOf = new Map((o.signatures?.counted ?? []).map((c) => [c.fingerprint, c.userIds]));
  const signers = results
    .filter((r) => r.status === 'counted')
    .map((r) => ({ fingerprint: r.certificate, signingKey: r.signingKey, userIds: userIdsOf.get(r.certificate ?? '') ?? [], created: r.created === undefined ? null : isoTime(r.created), hash: r.hash, file: r.file }));
  const notCounted = results.filter((r) => r.status !== 'counted');
  if (json) {
    await writeAll(
      process.stdout,
      `${JSON.stringify({
        ok: true,
        source: o.source,
        ...(o.source === 'bundle' ? { bundle: o.where } : { store: o.where }),
        log,
        vm: f.identity.vm,
        name: f.identity.name,
        state: o.state,
        entries: f.entries,
        lines: f.lines,
        bytes: f.bytes,
        sessions: f.sessions,
        closes: f.closes,
        notEof: f.notEof,
        head: f.head,
        genesis: f.genesis,
        created: f.identity.created,
        sealed: o.manifest?.sealed ?? null,
        sealIndex: o.manifest?.sealIndex ?? null,
        prevSeal: o.manifest?.prevSeal ?? null,
        claims: o.manifest?.claims ?? null,
        signatures: signers,
        signaturesChecked: o.signatures !== undefined,
        threshold: o.signatures?.threshold ?? null,
        signers: o.signatures?.counted.length ?? 0,
        ignoredSignatures: notCounted.length,
        refusedSignatures: notCounted.map((r) => ({ file: r.file, index: r.index, code: r.code, issuer: r.issuer, certificate: r.certificate ?? null, created: r.created === undefined ? null : isoTime(r.created), message: r.message })),
        receiptsChecked: o.receipts ?? 0,
        artifacts: o.artifacts ?? [],
      })}\n`,
    );
    return;
  }
  const lines = [
    // What was verified comes first: a bundle, or a log of the local store.
    `OK ${o.source} ${log}: chain intact${o.state === 'sealed' ? ' and sealed' : ''}`,
    `  ${o.source === 'bundle' ? 'bundle: ' : 'store:  '}   ${escapeText(o.where)}`,
    `  source VM: ${f.identity.vm} (attested by the log VM via qrexec)`,
    `  log name:  ${f.identity.name}`,
    `  state:     ${o.state}`,
    `  entries:   ${f.entries} (${f.lines} lines, ${f.bytes} bytes, ${f.sessions} sessions)`,
    `  head:      ${f.head}`,
    `  created:   ${isoTime(f.identity.created)}`,
  ];
  if (o.manifest) {
    lines.push(`  sealed:    ${isoTime(o.manifest.sealed)} (seal #${o.manifest.sealIndex}${o.manifest.prevSeal ? `, after ${o.manifest.prevSeal}` : ', first seal'})`);
  } else {
    lines.push(`  last:      ${isoTime(f.lastTime)}`);
  }
  if (o.signatures) {
    const sg = o.signatures;
    lines.push(`  signed by: ${sg.counted.length} trusted certificate(s) counted, ${sg.threshold} required`);
    for (const c of sg.counted) {
      // A user ID is shown only when a valid self-signature binds it (FORMAT.md 6.4).
      lines.push(`    ${c.fingerprint}${c.userIds.length > 0 ? ` ${c.userIds.map(escapeText).join(', ')}` : ' (no user ID bound to this key)'}`);
      for (const s of signers.filter((x) => x.fingerprint === c.fingerprint)) {
        lines.push(`      ${escapeText(s.file)}: ${s.created ?? '?'}, ${s.hash ?? '?'}${s.signingKey !== c.fingerprint ? `, subkey ${s.signingKey}` : ''}`);
      }
    }
    for (const r of notCounted) lines.push(`  not counted: ${escapeText(r.file)}: ${r.code ?? r.status}: ${escapeText(r.message)}`);
  } else if (o.state === 'sealed') {
    lines.push('  signatures: not checked (give --key to check them)');
  }
  if (f.notEof.length > 0) {
    const total = Object.entries(f.closes).reduce((n, [r, c]) => (r === 'eof' ? n : n + c), 0);
    lines.push(`  sessions not closed by eof: ${total}`);
    for (const x of f.notEof) lines.push(`    session ${x.session}: ${x.reason} (seq ${x.seq})`);
    if (total > f.notEof.length) lines.push(`    (+${total - f.notEof.length} more; see show)`);
  }
  if (o.seals !== undefined) lines.push(`  seal chain: ${o.seals} seal(s) in the store, linked`);
  if (o.manifest?.claims) {
    const c = o.manifest.claims;
    lines.push(`  claims (made by the build VM, sealed by the log VM):`);
    if (c.exit) lines.push(`    exit:      ${c.exit.signal ?? c.exit.code}`);
    if (c.command) lines.push(`    command:   ${safe(c.command)} on host ${safe(c.hostname ?? '?')}`);
    lines.push(`    inputs:    ${c.inputs.length}, artifacts: ${c.artifacts.length}${c.omitted ? ` (+${c.omitted.inputs + c.omitted.artifacts} not listed)` : ''}`);
    lines.push(...verifiedInputLines(c));
  }
  if (o.receipts) lines.push(`  receipts:  the log extends every receipt in ${o.receipts} file(s)`);
  for (const a of o.artifacts ?? []) {
    // What this proves, and no more: a claim by the build VM, attested only
    // as to which VM made it and when (FORMAT.md 10.8).
    lines.push(`  artifact:  ${escapeText(a.file)} (sha256 ${a.sha256})`);
    lines.push(`    the build VM ${f.identity.vm} claimed this file's hash as an output of log ${log} (as ${a.claimedPaths.map((p) => safe(p)).join(', ')});`);
    lines.push(`    the log VM attests the source VM and the time (sealed ${o.manifest ? isoTime(o.manifest.sealed) : '-'}), not how the file was built`);
    if (a.otherLogs.length > 0) lines.push(`    also claimed by ${a.otherLogs.length} other sealed log(s) in this store: ${a.otherLogs.join(', ')}`);
    else if (o.source === 'bundle') lines.push('    (only this bundle was checked: other logs may claim the same file)');
  }
  await writeAll(process.stdout, `${lines.join('\n')}\n`);
}

/**
 * `logsend --verify-input` results: how many sources the build VM checked
 * against its keyring before the build, and by whom they were signed. The
 * signer is a fingerprint the build VM reported; which person holds it is
 * for the reader to know (it is not one of the seal's keys).
 */
export function verifiedInputLines(c: NonNullable<SealManifest['claims']>): string[] {
  if (c.verifiedInputs === undefined) return [];
  const v = c.verifiedInputs;
  const r = c.rejectedInputs ?? [];
  const extraV = c.omitted?.verifiedInputs ?? 0;
  const extraR = c.omitted?.rejectedInputs ?? 0;
  const bySigner = new Map<string, number>();
  for (const f of v) bySigner.set(f.signer, (bySigner.get(f.signer) ?? 0) + 1);
  const out = [`    verified inputs: ${v.length + extraV} checked against the build VM's keyring before the build${extraV > 0 ? ` (${extraV} not listed)` : ''}`];
  for (const [fpr, n] of bySigner) out.push(`      ${n} signed by ${fpr.toUpperCase()}`);
  if (r.length + extraR > 0) {
    out.push(`    REJECTED inputs: ${r.length + extraR} failed verification (the build was not started)`);
    for (const f of r) out.push(`      ${safe(f.path)}: ${safe(f.code)}: ${safe(f.reason)}`);
  }
  return out;
}
