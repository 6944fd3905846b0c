import { existsSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import {
  AppendlogError,
  MAX_EVIDENCE_BYTES,
  evidenceBytes,
  isAppendlogError,
  parseEvidence,
  parseManifest,
  type Certificate,
  type CheckedEvidence,
  type Evidence,
  type SealManifest,
} from '@appendlog/shared';
import { evaluateSignatures, requireThreshold, type SignatureInput, type TrustStore } from '@appendlog/shared/signatures';
import { openBundle, verifyBundleEntries, type OpenedBundle } from './bundle-io.js';
import { looksLikeArchive } from './archive-io.js';
import { verifyStoredLog } from './verify-store.js';
import type { Store } from './store.js';

/**
 * Evidence files (docs/FORMAT.md section 12): written by `logvm attest`,
 * read by `verify-artifact` and `compare`.
 */

/** Writes FILE for a sealed log of the store, after re-verifying its chain, manifest and seal chain. */
export async function attestStoredLog(store: Store, vm: string, name: string): Promise<{ bytes: Buffer; manifest: SealManifest }> {
  const log = store.requireLog(vm, name);
  const seal = store.getSeal(log.id);
  if (seal === undefined) throw new AppendlogError('NOT_SEALED', `log ${vm}/${name} is not sealed; seal it first (logvm seal)`);
  await verifyStoredLog(store, log);
  const signatures = store.signatures(seal.seal_index);
  if (signatures.length === 0) throw new AppendlogError('SIGNATURE_MISSING', `log ${vm}/${name} has no signature`);
  return { bytes: evidenceBytes(seal.manifest, signatures), manifest: parseManifest(seal.manifest) };
}

/** The same from a bundle directory or archive (read in place): its entries are checked against its manifest first. */
export async function attestBundle(dir: string): Promise<{ bytes: Buffer; manifest: SealManifest }> {
  const bundle = await openBundle(dir);
  let manifest: SealManifest;
  let bytes: Buffer;
  let signatures: SignatureInput[];
  try {
    bytes = bundle.manifestBytes;
    manifest = parseManifest(bytes);
    await verifyBundleEntries(bundle, manifest);
    signatures = bundle.signatures;
  } finally {
    bundle.close();
  }
  if (signatures.length === 0) throw new AppendlogError('SIGNATURE_MISSING', `${dir} has no signature`);
  const armored = signatures.map((s) => {
    const text = Buffer.from(s.bytes).toString('utf8');
    // An evidence carries armored text (12.1); a binary .asc would not survive as a JSON string.
    if (!text.trimStart().startsWith('-----BEGIN PGP SIGNATURE-----')) throw new AppendlogError('MALFORMED_BUNDLE', `${s.file} is not an armored signature`);
    return text;
  });
  return { bytes: evidenceBytes(bytes, armored), manifest };
}

/** Writes the file whole or not at all (FILE.partial, then a rename); never replaces an existing FILE. */
export function writeEvidence(path: string, bytes: Buffer): void {
  if (existsSync(path)) throw new AppendlogError('BUNDLE_EXISTS', `${path} exists; refusing to replace it`);
  const partial = `${path}.partial`;
  try {
    writeFileSync(partial, bytes, { flag: 'w' });
    renameSync(partial, path);
  } catch (e) {
    rmSync(partial, { force: true });
    throw new AppendlogError('STORE_ERROR', `cannot write ${path}: ${(e as Error).message}`);
  }
}

export function readEvidenceFile(path: string): Evidence {
  let bytes: Buffer;
  try {
    const st = statSync(path);
    if (!st.isFile()) throw new Error('not a regular file');
    if (st.size > MAX_EVIDENCE_BYTES) throw new Error(`${st.size} bytes, more than any evidence file`);
    bytes = readFileSync(path);
  } catch (e) {
    throw new AppendlogError('EVIDENCE_INVALID', `cannot read evidence ${path}: ${(e as Error).message}`);
  }
  return parseEvidence(bytes);
}

export interface SealedBy {
  signers: Certificate[];
  /** Signatures that did not count: "ISSUER (CODE)". */
  ignored: string[];
  /** Set when no builder's signature counts, or one is bad: the code and message verify-chain would give with M = 1. */
  error?: { code: string; message: string };
}

/**
 * THE trust decision for an evidence: which builders' certificates validly
 * sealed these manifest bytes, by verify-chain's own rules (docs/FORMAT.md
 * 6.4: time, validity, revocation, digest, pins; issue 9's trust core) with
 * M = 1. A cryptographically bad signature by a builder means the manifest
 * was edited: SIGNATURE_INVALID, and the evidence does not count at all.
 */
export async function sealedBy(manifestBytes: Uint8Array, manifest: SealManifest, signatures: SignatureInput[], trust: TrustStore): Promise<SealedBy> {
  const verdict = await evaluateSignatures({ manifest: manifestBytes, sealed: manifest.sealed, signatures, trust, now: Date.now() });
  const ignored = verdict.results.filter((r) => r.status !== 'counted').map((r) => `${r.issuer || '?'} (${r.code ?? r.status})`);
  try {
    requireThreshold(verdict, 1, trust);
  } catch (e) {
    const err = isAppendlogError(e) ? e : new AppendlogError('INTERNAL', String(e));
    return { signers: [], ignored, error: { code: err.code, message: err.message } };
  }
  return { signers: verdict.counted.map((c) => ({ fingerprint: c.fingerprint, userIds: c.userIds })), ignored };
}

/**
 * Loads one `--evidence` argument: an evidence file (the signed summary is
 * trusted, lines are not re-checked), or a bundle directory (the whole chain
 * is re-checked against the manifest once a trusted key has signed it).
 * Problems become the evidence's `error`, so one bad evidence is named in
 * the output rather than hiding the others.
 */
export async function loadCheckedEvidence(path: string, trust: TrustStore): Promise<CheckedEvidence & { manifestBytes?: Buffer }> {
  const isDir = existsSync(path) && (statSync(path).isDirectory() || looksLikeArchive(path));
  const kind = isDir ? 'bundle' : 'evidence';
  let bundle: OpenedBundle | undefined;
  let manifest: SealManifest | undefined;
  try {
    let manifestBytes: Buffer;
    let signatures: SignatureInput[];
    if (isDir) {
      bundle = await openBundle(path);
      manifestBytes = bundle.manifestBytes;
      manifest = parseManifest(manifestBytes);
      signatures = bundle.signatures;
    } else {
      const ev = readEvidenceFile(path);
      manifest = ev.manifest;
      manifestBytes = ev.manifestBytes;
      signatures = ev.signatures.map((x) => ({ file: x.file, bytes: Buffer.from(x.armored, 'utf8') }));
    }
    if (signatures.length === 0) throw new AppendlogError('SIGNATURE_MISSING', 'no signature over the manifest');
    const by = await sealedBy(manifestBytes, manifest, signatures, trust);
    if (by.error !== undefined) return { source: path, kind, manifest, signers: [], ignored: by.ignored, error: by.error };
    // Trust first: entries are read only once a builder vouches for the manifest.
    if (bundle !== undefined) await verifyBundleEntries(bundle, manifest);
    return { source: path, kind, manifest, manifestBytes, signers: by.signers, ignored: by.ignored };
  } catch (e) {
    const err = isAppendlogError(e) ? e : new AppendlogError('INTERNAL', String((e as Error)?.stack ?? e));
    return { source: path, kind, manifest, signers: [], ignored: [], error: { code: err.code, message: err.message } };
  } finally {
    bundle?.close();
  }
}
