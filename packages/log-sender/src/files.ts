import { createReadStream, statSync } from 'node:fs';
import { glob, isDynamicPattern } from 'tinyglobby';
import { AppendlogError, MAX_CLAIM_PATH, sha256Stream, type Claim } from '@appendlog/shared';

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
