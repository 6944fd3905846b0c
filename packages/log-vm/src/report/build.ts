import { createWriteStream, renameSync, rmSync, statSync } from 'node:fs';
import { once } from 'node:events';
import { join } from 'node:path';
import { AppendlogError, BUNDLE_FILES, escapeText, parseLogRef, type ChainFacts, type ClaimsSummary, type SealManifest } from '@appendlog/shared';
import type { SignatureReport, TrustStore } from '@appendlog/shared/signatures';
import { BufferedWriter, toCodedError } from '../output.js';
import { storedEntries, type StoredEntry } from '../entries.js';
import { bundleEntries } from '../bundle-entries.js';
import { readBundleManifest, verifyBundle } from '../bundle-io.js';
import { verifyStoredLog, type Progress } from '../verify-store.js';
import type { Store } from '../store.js';
import { ReportCollector, type CollectedReport } from './collect.js';
import { loadAssets, writeReportHtml } from './html.js';
import type { HighlightPattern } from './patterns.js';

export interface ReportOptions {
  /** A bundle directory, or VM/NAME with `store`. */
  target: string;
  isBundle: boolean;
  openStore?: () => Store;
  /** verify-chain's trust material (--key, --keyring, --signer), loaded by its own loader. */
  trust?: TrustStore;
  threshold: number;
  patterns: readonly HighlightPattern[];
  maxEmbedBytes: number;
  out: string;
  progress?: (label: string) => Progress & { done(): void };
}

/** What the report says about verification: the facts verify-chain prints, or its failure. */
export interface Verdict {
  ok: boolean;
  code: string | null;
  exitCode: number;
  seq: number | null;
  message: string | null;
  source: 'bundle' | 'store';
  log: string | null;
  vm: string | null;
  name: string | null;
  state: 'open' | 'sealed' | null;
  entries?: number;
  lines?: number;
  bytes?: number;
  sessions?: number;
  closes?: Record<string, number>;
  head?: string;
  created?: number;
  sealed?: number;
  sealIndex?: number;
  prevSeal?: string | null;
  seals?: number;
  threshold: number;
  signaturesChecked: boolean;
  keys: Array<{ fingerprint: string; userIds: string[]; file: string; pinned: boolean }>;
  signers: Array<{ fingerprint: string; userIds: string[]; created: string | null; file: string; hash: string | null }>;
  /** Signatures that did not count, with verify-chain's refusal code. */
  notCounted: Array<{ file: string; code: string; message: string }>;
  ignoredSignatures: number;
}

export interface ReportResult {
  verdict: Verdict;
  collected: CollectedReport;
  readError: string | null;
  bytes: number;
}

/** Text from outside (messages may quote the bundle, keys carry user IDs) through the one escaper. */
const safe = escapeText;
const iso = (ms: number | undefined): string | null => (ms === undefined ? null : new Date(ms).toISOString());

/**
 * Verifies the log with the same verifier as `verify-chain` (verifyBundle,
 * verifyStoredLog), then reads it once more for the page. A failed
 * verification still gives a report: it says FAILED with the code and seq,
 * and marks everything else as coming from unverified data.
 */
export async function buildReport(o: ReportOptions): Promise<ReportResult> {
  const keysInfo = (o.trust?.certificates ?? []).map((c) => ({
    fingerprint: c.fingerprint,
    userIds: c.userIds.map(safe),
    file: safe(c.source),
    pinned: o.trust?.pinned === null || (o.trust?.pinned ?? []).includes(c.fingerprint),
  }));
  const verdict: Verdict = {
    ok: false,
    code: null,
    exitCode: 0,
    seq: null,
    message: null,
    source: o.isBundle ? 'bundle' : 'store',
    log: null,
    vm: null,
    name: null,
    state: null,
    threshold: o.threshold,
    signaturesChecked: false,
    keys: keysInfo,
    signers: [],
    notCounted: [],
    ignoredSignatures: 0,
  };
  let facts: ChainFacts | undefined;
  let manifest: SealManifest | undefined;
  let signatures: SignatureReport | undefined;
  let store: Store | undefined;
  let logId = 0;
  const p1 = o.progress?.('verifying');
  try {
    try {
      if (o.isBundle) {
        try {
          const m = (await readBundleManifest(o.target)).manifest;
          Object.assign(verdict, { vm: m.vm, name: m.name, log: `${m.vm}/${m.name}` });
        } catch {
          // the verifier names the problem below
        }
        if (o.trust === undefined) throw new AppendlogError('USAGE', 'a bundle report needs the trusted public key(s): --key PUB.asc or --keyring KEYRING.gpg');
        const r = await verifyBundle(o.target, o.trust, o.threshold, { progress: p1 });
        ({ facts, manifest, signatures } = r);
        verdict.state = 'sealed';
      } else {
        const { vm, name } = parseLogRef(o.target);
        Object.assign(verdict, { vm, name, log: `${vm}/${name}` });
        store = o.openStore!();
        const log = store.requireLog(vm, name);
        logId = log.id;
        const r = await verifyStoredLog(store, log, { trust: o.trust, threshold: o.threshold, progress: p1 });
        ({ facts, manifest, signatures } = r);
        verdict.state = r.state;
        if (r.seals !== undefined) verdict.seals = r.seals;
      }
      verdict.ok = true;
    } catch (e) {
      const err = toCodedError(e);
      if (err.code === 'USAGE' || err.code === 'KEY_INVALID' || err.code === 'LOG_NOT_FOUND' || err.code === 'NAME_INVALID' || err.code === 'VM_INVALID') throw err;
      Object.assign(verdict, { ok: false, code: err.code, exitCode: err.exitCode, seq: err.seq ?? null, message: safe(err.message) });
    } finally {
      p1?.done();
    }
    if (facts) {
      Object.assign(verdict, {
        entries: facts.entries,
        lines: facts.lines,
        bytes: facts.bytes,
        sessions: facts.sessions,
        closes: facts.closes,
        head: facts.head,
        created: facts.identity.created,
      });
    }
    if (manifest) Object.assign(verdict, { sealed: manifest.sealed, sealIndex: manifest.sealIndex, prevSeal: manifest.prevSeal });
    if (signatures) {
      verdict.signaturesChecked = true;
      // As verify-chain prints them: counted signatures with their certificate, the rest with the refusal code.
      const userIdsOf = new Map(signatures.counted.map((c) => [c.fingerprint, c.userIds]));
      verdict.signers = signatures.results
        .filter((r) => r.status === 'counted')
        .map((r) => ({ fingerprint: r.certificate ?? '?', userIds: (userIdsOf.get(r.certificate ?? '') ?? []).map(safe), created: iso(r.created), file: safe(r.file), hash: r.hash ?? null }));
      verdict.notCounted = signatures.results.filter((r) => r.status !== 'counted').map((r) => ({ file: safe(r.file), code: r.code ?? r.status, message: safe(r.message) }));
      verdict.ignoredSignatures = verdict.notCounted.length;
    }

    // The second pass: the page's contents.
    const expectedBytes = facts?.bytes ?? estimateBytes(o, store, logId);
    const total = facts?.entries ?? 0;
    const tmpText = `${o.out}.log-text.partial`;
    const textStream = createWriteStream(tmpText);
    const writer = new BufferedWriter(textStream, 1 << 20);
    const collector = new ReportCollector(writer, { patterns: o.patterns, maxEmbedBytes: o.maxEmbedBytes, expectedBytes });
    let readError: string | null = null;
    const p2 = o.progress?.('reading');
    try {
      const entries: AsyncIterable<StoredEntry> | Iterable<StoredEntry> = o.isBundle ? bundleEntries(o.target) : storedEntries(store!, logId);
      let n = 0;
      try {
        for await (const e of entries) {
          await collector.push(e);
          if ((++n & 4095) === 0) p2?.(n, total);
        }
      } catch (e) {
        readError = safe(toCodedError(e).message);
      }
      await writer.flush();
      textStream.end();
      await once(textStream, 'finish');
    } finally {
      p2?.done();
    }
    const collected = await collector.end();
    const claims: ClaimsSummary | null = manifest?.claims ?? collected.claims;
    const reportData = {
      generator: 'appendlog logvm report',
      generated: Date.now(),
      source: { kind: verdict.source, label: safe(o.target) },
      verdict,
      readError,
      groups: collected.groups,
      claims: claims === null ? null : sanitizeClaims(claims),
      claimsSource: manifest?.claims
        ? 'As sealed in the manifest: what the build VM said about its build, bound to this log by the seal. The log VM attests only the source VM, receive times and order.'
        : verdict.ok
          ? 'From the claim entries of the chain (the log is not sealed): what the build VM said about its build.'
          : 'From the claim entries of a log that did NOT verify.',
      badClaims: collected.badClaims,
      sessions: collected.sessions,
      sessionsOmitted: collected.sessionsOmitted,
      rate: collected.rate,
      firstTime: collected.firstTime,
      lastTime: collected.lastTime,
    };
    const tmpHtml = `${o.out}.partial`;
    const html = createWriteStream(tmpHtml);
    try {
      await writeReportHtml(html, loadAssets(), reportData, collected.log, tmpText);
      html.end();
      await once(html, 'finish');
      renameSync(tmpHtml, o.out);
    } finally {
      rmSync(tmpText, { force: true });
      rmSync(tmpHtml, { force: true });
    }
    return { verdict, collected, readError, bytes: statSync(o.out).size };
  } finally {
    store?.close();
  }
}

/** Claims are sender text: every string through the escaper. */
function sanitizeClaims(c: ClaimsSummary): ClaimsSummary {
  const f = (x: { path: string; size: number; sha256: string }) => ({ ...x, path: safe(x.path) });
  return {
    ...c,
    inputs: c.inputs.map(f),
    artifacts: c.artifacts.map(f),
    ...(c.verifiedInputs !== undefined ? { verifiedInputs: c.verifiedInputs.map((v) => ({ ...v, path: safe(v.path), signer: v.signer.toUpperCase() })) } : {}),
    ...(c.rejectedInputs !== undefined ? { rejectedInputs: c.rejectedInputs.map((r) => ({ ...r, path: safe(r.path), code: safe(r.code), reason: safe(r.reason) })) } : {}),
    ...(c.hostname !== undefined ? { hostname: safe(c.hostname) } : {}),
    ...(c.command !== undefined ? { command: c.command.map(safe) } : {}),
  };
}

/** Without verified facts: the bundle's entries file size, or the store's head row. */
function estimateBytes(o: ReportOptions, store: Store | undefined, logId: number): number {
  try {
    if (o.isBundle) return statSync(join(o.target, BUNDLE_FILES.entries)).size;
    if (store) return store.getHead(logId).bytes;
  } catch {
    // nothing to estimate from: embed what there is
  }
  return 0;
}

