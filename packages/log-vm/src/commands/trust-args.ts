import type { Argv } from 'yargs';
import { AppendlogError } from '@appendlog/shared';
import type { TrustStore } from '@appendlog/shared/signatures';
import { asList } from '../output.js';

export interface TrustArgs {
  key?: string | string[];
  keyring?: string | string[];
  signer?: string | string[];
}

/** --key / --keyring / --signer, as verify-chain takes them. */
export function withTrust<T>(y: Argv<T>): Argv<T & TrustArgs> {
  return y
    .option('key', { type: 'string', describe: 'trusted certificate file (armored or binary; may hold several); repeatable' })
    .option('keyring', { type: 'string', describe: 'a keyring exported with gpg --export (repeatable)' })
    .option('signer', { type: 'string', describe: 'only this primary fingerprint (40 hex) counts; repeatable' }) as Argv<T & TrustArgs>;
}

/**
 * Trust material first, read once into plain data with verify-chain's own
 * loader (docs/FORMAT.md 6.4 G0). The builders are the certificates given,
 * narrowed to the --signer pins.
 */
export async function loadBuilders(args: TrustArgs): Promise<TrustStore> {
  const { loadTrust } = await import('./keys.js');
  const keys = asList(args.key);
  const keyrings = asList(args.keyring);
  if (keys.length + keyrings.length === 0) throw new AppendlogError('USAGE', "give the builders' certificates: --key PUB.asc (repeatable) or --keyring KEYRING.gpg");
  return loadTrust({ keys, keyrings, signers: asList(args.signer) });
}

/** The builders: the pinned certificates, or every one given. */
export function buildersOf(trust: TrustStore): Array<{ fingerprint: string; userIds: string[] }> {
  const all = trust.certificates.map((c) => ({ fingerprint: c.fingerprint, userIds: c.userIds }));
  return trust.pinned === null ? all : all.filter((c) => trust.pinned!.includes(c.fingerprint));
}
