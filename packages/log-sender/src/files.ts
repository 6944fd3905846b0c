import { createHash } from 'node:crypto';
import { createReadStream, existsSync, readFileSync, statSync } from 'node:fs';
import { glob, isDynamicPattern } from 'tinyglobby';
import {
  AppendlogError,
  MAX_CLAIM_PATH,
  MAX_REJECT_REASON,
  sha256Stream,
  type Claim,
  type InputRejectCode,
  type InputRejectedClaim,
  type InputVerifiedClaim,
} from '@appendlog/shared';
import { MAX_SIGNATURE_FILE_BYTES, type TrustStore } from '@appendlog/shared/signatures';
import { judgeSource } from './source-check.js';

/**
 * Expands --input/--artifact patterns (globs, or plain paths) and hashes each
 * regular file, streaming, into a claim. A plain path that does not exist is
 * an error (a release that silently lost its artifact must not look fine); a
 * glob that matches nothing is too.
 */
export async function fileClaims(kind: 'input' | 'artifact', patterns: string[], cwd = process.cwd()): Promise<Array<Extract<Claim, { claim: 'input' | 'artifact' }>>> {
  const out: Array<Extract<Claim, { claim: 'input' | 'artifact' }>> = [];
  for (const pattern of patterns) {
    let paths: string[];
    if (isDynamicPattern(pattern)) {
      paths = (await glob(pattern, { cwd, onlyFiles: true, dot: false, expandDirectories: false })).sort();
      if (paths.length === 0) throw new AppendlogError('USAGE', `--${kind} ${pattern}: matches no file`);
    } else {
      paths = [pattern];
    }
    for (const path of paths) {
      const full = path.startsWith('/') ? path : `${cwd}/${path}`;
      try {
        if (!statSync(full).isFile()) throw new Error('not a regular file');
      } catch (e) {
        throw new AppendlogError('USAGE', `--${kind} ${path}: ${(e as Error).message}`);
      }
      if (path.length > MAX_CLAIM_PATH) throw new AppendlogError('USAGE', `--${kind} ${path.slice(0, 60)}...: path longer than ${MAX_CLAIM_PATH}`);
      out.push({ claim: kind, path, ...(await sha256File(full)) });
    }
  }
  return out;
}

/** SHA-256 and size of the bytes actually read (not a separate stat). */
export function sha256File(path: string): Promise<{ size: number; sha256: string }> {
  return sha256Stream(createReadStream(path));
}

/** One `--verify-input` pair: a source file and its detached signature. */
export interface VerifyPair {
  path: string;
  signature: string;
}

/**
 * Expands `--verify-input` specs: `FILE=SIG` (split at the last `=`), or a
 * file or glob alone, each match paired with `MATCH.asc` (else `MATCH.sig`).
 * In glob form the signature files themselves are not inputs. A glob that
 * matches nothing is a usage error; a missing file or signature is not (it is
 * checked, and refused, in the log: the log must show why a build did not
 * start).
 */
export async function expandVerifyPairs(specs: string[], cwd = process.cwd()): Promise<VerifyPair[]> {
  const out: VerifyPair[] = [];
  for (const spec of specs) {
    const eq = spec.lastIndexOf('=');
    if (eq > 0 && eq < spec.length - 1) {
      out.push({ path: spec.slice(0, eq), signature: spec.slice(eq + 1) });
      continue;
    }
    if (eq >= 0) throw new AppendlogError('USAGE', `--verify-input ${spec}: give FILE=SIGNATURE, or FILE / a glob (signature FILE.asc)`);
    let paths: string[];
    if (isDynamicPattern(spec)) {
      paths = (await glob(spec, { cwd, onlyFiles: true, dot: false, expandDirectories: false })).sort().filter((p) => !/\.(asc|sig)$/.test(p));
      if (paths.length === 0) throw new AppendlogError('USAGE', `--verify-input ${spec}: matches no file`);
    } else {
      paths = [spec];
    }
    for (const path of paths) {
      const full = path.startsWith('/') ? path : `${cwd}/${path}`;
      const sig = existsSync(`${full}.asc`) || !existsSync(`${full}.sig`) ? `${path}.asc` : `${path}.sig`;
      out.push({ path, signature: sig });
    }
  }
  for (const p of out) {
    if (p.path.length > MAX_CLAIM_PATH) throw new AppendlogError('USAGE', `--verify-input ${p.path.slice(0, 60)}...: path longer than ${MAX_CLAIM_PATH}`);
  }
  return out;
}

/** Sources are read into memory once, so the bytes hashed are the bytes checked: at most this many. */
export const MAX_VERIFY_INPUT_BYTES = 2 ** 31 - 1;

/**
 * Checks each pair against the keyring and returns one claim per result. A
 * file is read once, into memory: the hash in the claim is of the bytes the
 * signature was checked over (no second read a racing writer could change).
 * The signature's own SHA-256 goes into the claim too, so an auditor holding
 * the .asc can tie it to the log.
 */
export async function verifyInputs(
  pairs: VerifyPair[],
  keyring: TrustStore,
  cwd = process.cwd(),
): Promise<Array<InputVerifiedClaim | InputRejectedClaim>> {
  const out: Array<InputVerifiedClaim | InputRejectedClaim> = [];
  for (const p of pairs) {
    const full = p.path.startsWith('/') ? p.path : `${cwd}/${p.path}`;
    const sigFull = p.signature.startsWith('/') ? p.signature : `${cwd}/${p.signature}`;
    const reject = (code: InputRejectCode, reason: string, file: { size: number; sha256: string } | null): InputRejectedClaim => ({
      claim: 'input-rejected',
      path: p.path,
      code,
      reason: reason.slice(0, MAX_REJECT_REASON),
      size: file?.size ?? null,
      sha256: file?.sha256 ?? null,
    });
    let data: Buffer;
    try {
      const st = statSync(full);
      if (!st.isFile()) throw new Error('not a regular file');
      if (st.size > MAX_VERIFY_INPUT_BYTES) throw new Error(`larger than ${MAX_VERIFY_INPUT_BYTES} bytes`);
      data = readFileSync(full);
    } catch (e) {
      out.push(reject('INPUT_UNREADABLE', `cannot read the file: ${(e as Error).message}`, null));
      continue;
    }
    const file = { size: data.length, sha256: createHash('sha256').update(data).digest('hex') };
    let sigBytes: Buffer;
    try {
      const st = statSync(sigFull);
      if (!st.isFile()) throw new Error('not a regular file');
      if (st.size > MAX_SIGNATURE_FILE_BYTES) throw new Error(`larger than ${MAX_SIGNATURE_FILE_BYTES} bytes`);
      sigBytes = readFileSync(sigFull);
    } catch (e) {
      out.push(reject('SIGNATURE_MALFORMED', `cannot read the signature ${p.signature}: ${(e as Error).message}`, file));
      continue;
    }
    const r = await judgeSource(data, { file: p.signature, bytes: sigBytes }, keyring);
    if (r.signer !== undefined) {
      out.push({
        claim: 'input-verified',
        path: p.path,
        size: file.size,
        sha256: file.sha256,
        signature: createHash('sha256').update(sigBytes).digest('hex'),
        signer: r.signer.fingerprint.toLowerCase(),
      });
    } else {
      out.push(reject(r.failure!.code, r.failure!.reason, file));
    }
  }
  return out;
}
