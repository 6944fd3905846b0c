import { readFileSync, statSync } from 'node:fs';
import { AppendlogError } from '@appendlog/shared';
import { MAX_ARMORED_BYTES, MAX_KEYRING_BYTES, loadTrustStore, type KeySource, type TrustStore } from '@appendlog/shared/signatures';

function readSource(path: string, kind: KeySource['kind']): KeySource {
  const max = kind === 'keyring' ? MAX_KEYRING_BYTES : MAX_ARMORED_BYTES;
  try {
    const st = statSync(path);
    if (!st.isFile()) throw new Error('not a regular file');
    if (st.size > max) throw new Error('file too large');
    return { name: path, bytes: readFileSync(path), kind };
  } catch (e) {
    throw new AppendlogError('KEY_INVALID', `cannot read ${kind} ${path}: ${(e as Error).message}`);
  }
}

/**
 * Trust material first: read every --key and --keyring file once, into plain
 * data (docs/FORMAT.md 6.4 G0), with the --signer pins.
 */
export async function loadTrust(opts: { keys?: string[]; keyrings?: string[]; signers?: string[] }): Promise<TrustStore> {
  const sources = [...(opts.keys ?? []).map((p) => readSource(p, 'key')), ...(opts.keyrings ?? []).map((p) => readSource(p, 'keyring'))];
  return loadTrustStore(sources, { signers: opts.signers });
}
