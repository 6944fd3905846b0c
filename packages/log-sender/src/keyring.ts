import { readFileSync } from 'node:fs';
import { AppendlogError } from '@appendlog/shared';
import { MAX_ARMORED_BYTES, loadTrustedKeys, type TrustedKey } from '@appendlog/shared/signatures';

/**
 * The build VM's keyring for `--verify-input`: the certificates of the people
 * who sign the sources (armored, e.g. `gpg --export -a FPR... > sources.asc`;
 * a file may hold several). Read once, before anything is checked.
 */
export async function loadKeyring(paths: string[]): Promise<TrustedKey[]> {
  const files = paths.map((p) => {
    try {
      const buf = readFileSync(p);
      if (buf.length > MAX_ARMORED_BYTES) throw new Error('file too large');
      return { name: p, armored: buf.toString('utf8') };
    } catch (e) {
      throw new AppendlogError('KEY_INVALID', `cannot read keyring ${p}: ${(e as Error).message}`);
    }
  });
  const keys = await loadTrustedKeys(files);
  if (keys.length === 0) throw new AppendlogError('KEY_INVALID', `no certificate in ${paths.join(', ')}`);
  return keys;
}
