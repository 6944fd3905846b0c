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
import { checkSignatures, signatureIssuers, type TrustedKey } from '@appendlog/shared/signatures';
import { readBundleManifest, readBundleSignatures, verifyBundleEntries } from './bundle-io.js';
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

/** The same from a bundle directory: its entries are checked against its manifest first. */
export async function attestBundle(dir: string): Promise<{ bytes: Buffer; manifest: SealManifest }> {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new AppendlogError('MALFORMED_BUNDLE', `${dir} is not a bundle directory`);
  const { manifest, bytes } = readBundleManifest(dir);
  await verifyBundleEntries(dir, manifest);
  const signatures = readBundleSignatures(dir);
  if (signatures.length === 0) throw new AppendlogError('SIGNATURE_MISSING', `${dir} has no signature`);
  return { bytes: evidenceBytes(bytes, signatures.map((s) => s.armored)), manifest };
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
  ignored: string[];
}

/**
 * THE trust decision for evidences: which trusted certificates validly
 * signed these manifest bytes. One function, so the stricter certificate
 * rules of issue 9 (validity in time, revocation, bound user IDs) replace it
 * here and nowhere else. Today it is the verifier's own rule (docs/FORMAT.md
 * 6.4 G3-G5 with M = 1): signatures by other keys are ignored, a trusted
 * key's signature that fails means the manifest was edited (SIGNATURE_INVALID,
 * thrown), a signature file that is not one is MALFORMED_BUNDLE (thrown).
 */
export async function sealedBy(manifestBytes: Uint8Array, signatures: Array<{ file: string; armored: string }>, trust: TrustedKey[]): Promise<SealedBy> {
  try {
    const r = await checkSignatures(manifestBytes, signatures, trust, 1);
    const signers = new Map<string, Certificate>();
    for (const v of r.valid) signers.set(v.fingerprint!, { fingerprint: v.fingerprint!, userIds: v.userIds ?? [] });
    return { signers: [...signers.values()], ignored: [...new Set(r.untrusted.map((u) => u.issuer.toUpperCase()))] };
  } catch (e) {
    if (isAppendlogError(e) && e.code === 'SIGNATURE_UNTRUSTED') {
      const ignored = new Set<string>();
      for (const s of signatures) for (const i of await signatureIssuers(s.armored).catch(() => [])) ignored.add(i);
      return { signers: [], ignored: [...ignored] };
    }
    throw e;
  }
}

/**
 * Loads one `--evidence` argument: an evidence file (the signed summary is
 * trusted, lines are not re-checked), or a bundle directory (the whole chain
 * is re-checked against the manifest once a trusted key has signed it).
 * Problems become the evidence's `error`, so one bad evidence is named in
 * the output rather than hiding the others.
 */
export async function loadCheckedEvidence(path: string, trust: TrustedKey[]): Promise<CheckedEvidence & { manifestBytes?: Buffer }> {
  const isDir = existsSync(path) && statSync(path).isDirectory();
  const kind = isDir ? 'bundle' : 'evidence';
  let manifest: SealManifest | undefined;
  try {
    let manifestBytes: Buffer;
    let signatures: Array<{ file: string; armored: string }>;
    if (isDir) {
      const m = readBundleManifest(path);
      manifest = m.manifest;
      manifestBytes = m.bytes;
      signatures = readBundleSignatures(path);
    } else {
      const ev = readEvidenceFile(path);
      manifest = ev.manifest;
      manifestBytes = ev.manifestBytes;
      signatures = ev.signatures;
    }
    if (signatures.length === 0) throw new AppendlogError('SIGNATURE_MISSING', 'no signature over the manifest');
    const by = await sealedBy(manifestBytes, signatures, trust);
    // Trust first: entries are read only when a trusted key vouches for the manifest.
    if (isDir && by.signers.length > 0) await verifyBundleEntries(path, manifest);
    return { source: path, kind, manifest, manifestBytes, signers: by.signers, ignored: by.ignored };
  } catch (e) {
    const err = isAppendlogError(e) ? e : new AppendlogError('INTERNAL', String((e as Error)?.stack ?? e));
    return { source: path, kind, manifest, signers: [], ignored: [], error: { code: err.code, message: err.message } };
  }
}
