import { readFileSync, statSync } from 'node:fs';
import { AppendlogError } from '@appendlog/shared';
import { MAX_KEYRING_BYTES, loadTrustStore, type TrustStore } from '@appendlog/shared/signatures';

/**
 * The build VM's keyring for `--verify-input`: the certificates of the people
 * who sign the sources, armored or binary, several per file
 * (`gpg --export [-a] FPR... > sources.asc`). Read once, before anything is
 * checked, with the verifier's own trust rules (docs/FORMAT.md 6.4): only
 * user IDs bound by self-signatures, expiry and revocation judged at the
 * signature's time.
 */
export async function loadKeyring(paths: string[]): Promise<TrustStore> {
  const sources = paths.map((p) => {
    try {
      const st = statSync(p);
      if (!st.isFile()) throw new Error('not a regular file');
      if (st.size > MAX_KEYRING_BYTES) throw new Error('file too large');
      return { name: p, bytes: readFileSync(p), kind: 'keyring' as const };
    } catch (e) {
      throw new AppendlogError('KEY_INVALID', `cannot read keyring ${p}: ${(e as Error).message}`);
    }
  });
  const trust = await loadTrustStore(sources);
  if (trust.certificates.length === 0) throw new AppendlogError('KEY_INVALID', `no usable certificate in ${paths.join(', ')}`);
  return trust;
}
