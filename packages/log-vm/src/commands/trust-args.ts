import type { Argv } from 'yargs';
import { AppendlogError } from '@appendlog/shared';
import type { TrustedKey } from '@appendlog/shared/signatures';
import { asList } from '../output.js';

export interface TrustArgs {
  key?: string | string[];
  keyring?: string | string[];
  signer?: string | string[];
}

/** --key / --keyring / --signer, as verify-chain takes them. */
export function withTrust<T>(y: Argv<T>): Argv<T & TrustArgs> {
  return y
    .option('key', { type: 'string', describe: 'trusted public key file (armored; may hold several); repeatable' })
    .option('keyring', { type: 'string', describe: 'keyring of trusted certificates (gpg --export -a); repeatable' })
    .option('signer', { type: 'string', describe: 'only this primary fingerprint counts (repeatable); default: every certificate given' }) as Argv<T & TrustArgs>;
}

/**
 * Trust material first, read once into plain data: the builders are the
 * certificates given, narrowed to the --signer pins. A pin that names no
 * certificate given is a usage error (a typo must not quietly shrink N).
 */
export async function loadTrust(args: TrustArgs): Promise<TrustedKey[]> {
  const { loadKeys } = await import('./keys.js');
  const files = [...asList(args.key), ...asList(args.keyring)];
  if (files.length === 0) throw new AppendlogError('USAGE', 'give the builders\' certificates: --key PUB.asc (repeatable) or --keyring KEYS.asc');
  const keys = await loadKeys(files);
  const pins = asList(args.signer).map((s) => s.replace(/\s+/g, '').toUpperCase());
  if (pins.length === 0) return keys;
  for (const p of pins) {
    if (!/^(?:[0-9A-F]{40}|[0-9A-F]{64})$/.test(p)) throw new AppendlogError('USAGE', `--signer ${p.slice(0, 80)}: not a primary key fingerprint (40 or 64 hex digits)`);
    if (!keys.some((k) => k.fingerprint === p)) throw new AppendlogError('USAGE', `--signer ${p}: no such certificate among --key/--keyring`);
  }
  return keys.filter((k) => pins.includes(k.fingerprint));
}
