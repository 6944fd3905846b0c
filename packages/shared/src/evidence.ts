import { AppendlogError } from './errors.js';
import { canonicalJson } from './canonical-json.js';
import { MAX_MANIFEST_BYTES, parseManifest, type SealManifest } from './manifest.js';

/**
 * Evidence file (docs/FORMAT.md section 12): what a downloader needs to learn
 * which sealed build log vouches for a file, without the log itself. It is
 * the seal manifest's exact bytes and the detached signatures over them, as
 * canonical JSON plus one newline:
 *
 *   {"format":"appendlog-evidence/1","manifest":"<manifest bytes as a string>","signatures":["-----BEGIN PGP SIGNATURE-----…"]}
 *
 * Its size depends on the claims summary, never on the number of lines. A
 * checker trusts the log VM's signed summary: it cannot re-check the lines,
 * which only the full bundle can.
 */
export const EVIDENCE_FORMAT = 'appendlog-evidence/1';
/** Manifest ≤ 4 MiB, which JSON escaping can grow to 6 × (control characters), plus 64 signatures of ≤ 64 KiB. */
export const MAX_EVIDENCE_BYTES = 6 * MAX_MANIFEST_BYTES + 64 * 64 * 1024 * 2 + 4096;
export const MAX_EVIDENCE_SIGNATURES = 64;
export const MAX_EVIDENCE_SIGNATURE_CHARS = 64 * 1024;

export interface Evidence {
  manifestBytes: Buffer;
  manifest: SealManifest;
  /** Named `signatures[i]` for messages, as files are in a bundle. */
  signatures: Array<{ file: string; armored: string }>;
}

function bad(msg: string): never {
  throw new AppendlogError('EVIDENCE_INVALID', `evidence: ${msg}`);
}

/** The exact bytes of an evidence file for a manifest and its signatures. */
export function evidenceBytes(manifestBytes: Uint8Array, signatures: string[]): Buffer {
  const manifest = new TextDecoder('utf-8', { fatal: true }).decode(manifestBytes);
  return Buffer.from(`${canonicalJson({ format: EVIDENCE_FORMAT, manifest, signatures })}\n`, 'utf8');
}

/**
 * Parses an untrusted evidence file. Strict, one byte form: exactly the three
 * members, canonical JSON plus `\n`, the manifest by the rules of 8.5
 * (MANIFEST_INVALID), 1 … 64 signature strings of ≤ 64 KiB. Signatures are
 * not checked here (trust material is the caller's).
 */
export function parseEvidence(bytes: Uint8Array): Evidence {
  if (bytes.length > MAX_EVIDENCE_BYTES) bad(`${bytes.length} bytes is larger than any evidence file`);
  let text: string;
  let v: unknown;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    v = JSON.parse(text);
  } catch {
    bad('not UTF-8 JSON');
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) bad('not a JSON object');
  const o = v as Record<string, unknown>;
  if (Object.keys(o).sort().join(',') !== 'format,manifest,signatures') bad('members must be exactly format, manifest, signatures');
  if (o.format !== EVIDENCE_FORMAT) bad(`format is not ${EVIDENCE_FORMAT}`);
  if (typeof o.manifest !== 'string') bad('manifest is not a string');
  const sigs = o.signatures;
  if (!Array.isArray(sigs) || sigs.length === 0 || sigs.length > MAX_EVIDENCE_SIGNATURES) bad(`signatures must be a list of 1 to ${MAX_EVIDENCE_SIGNATURES} strings`);
  if (!sigs.every((s) => typeof s === 'string' && s.length <= MAX_EVIDENCE_SIGNATURE_CHARS)) bad('a signature is not a string of at most 64 KiB');
  if (`${canonicalJson({ format: o.format, manifest: o.manifest, signatures: sigs as string[] })}\n` !== text!) bad('not in canonical form (edited?)');
  const manifestBytes = Buffer.from(o.manifest, 'utf8');
  // A lone surrogate would not survive the round trip: refuse it rather than sign-check other bytes.
  if (manifestBytes.toString('utf8') !== o.manifest) bad('manifest is not valid Unicode text');
  const manifest = parseManifest(manifestBytes);
  return { manifestBytes, manifest, signatures: (sigs as string[]).map((armored, i) => ({ file: `signatures[${i}]`, armored })) };
}
