import {
  AppendlogError,
  ChainVerifier,
  checkManifestAgainstChain,
  checkSignatures,
  parseManifest,
  sealHash,
  type ChainFacts,
  type SealManifest,
  type SignatureReport,
  type TrustedKey,
} from '@appendlog/shared';
import { storedEntries } from './entries.js';
import type { LogRow, Store } from './store.js';

export type Progress = (done: number, total: number) => void;

/**
 * Recomputes a log's chain from the store: every entry hash against the one
 * stored beside it (naming the first changed seq), seq continuity, and the
 * end against the store's head row (a deleted tail or a rewritten chain).
 */
export function verifyStoredChain(store: Store, log: LogRow, progress?: Progress): ChainFacts {
  const head = store.getHead(log.id);
  const verifier = new ChainVerifier({ vm: log.vm, name: log.name, created: log.created });
  let n = 0;
  for (const e of storedEntries(store, log.id)) {
    verifier.push(e.encoded, e.hash);
    if (progress !== undefined && (++n & 0xffff) === 0) progress(n, head.entries);
  }
  return verifier.end({ entries: head.entries, head: head.head, source: 'the store head' });
}

/**
 * The chain of seals in the store: indexes 1..N without a gap, each seal
 * hash the hash of its manifest, each linking to the one before. Deleting or
 * replacing a whole sealed log breaks it.
 */
export function verifySealChain(store: Store): number {
  let prev: Buffer | null = null;
  let expected = 1;
  for (const s of store.seals()) {
    if (s.seal_index !== expected) {
      throw new AppendlogError('SEAL_CHAIN_BROKEN', `seal #${expected} is missing from the store (next is #${s.seal_index})`);
    }
    if (!sealHash(s.manifest).equals(s.seal_hash)) {
      throw new AppendlogError('SEAL_CHAIN_BROKEN', `seal #${s.seal_index}: stored seal hash is not the hash of its manifest`);
    }
    const m = parseManifest(s.manifest);
    const link = prev === null ? null : prev.toString('hex');
    if (m.prevSeal !== link || m.sealIndex !== s.seal_index || !(s.prev_hash === null ? prev === null : prev !== null && s.prev_hash.equals(prev))) {
      throw new AppendlogError('SEAL_CHAIN_BROKEN', `seal #${s.seal_index} does not link to seal #${s.seal_index - 1}`);
    }
    prev = s.seal_hash;
    expected++;
  }
  return expected - 1;
}

export interface StoredLogVerification {
  facts: ChainFacts;
  state: 'open' | 'sealed';
  manifest?: SealManifest;
  seals?: number;
  signatures?: SignatureReport;
}

/** Chain, and for a sealed log its manifest, the seal chain and (given keys) the signatures. */
export async function verifyStoredLog(
  store: Store,
  log: LogRow,
  opts: { keys?: TrustedKey[]; threshold?: number; progress?: Progress } = {},
): Promise<StoredLogVerification> {
  const facts = verifyStoredChain(store, log, opts.progress);
  const seal = store.getSeal(log.id);
  const sealed = store.getHead(log.id).sealed === 1;
  if (!sealed && seal === undefined) {
    if (facts.seal !== null) throw new AppendlogError('STORE_INCONSISTENT', `seq ${facts.seal.seq} is a seal entry but the log is not marked sealed`, { seq: facts.seal.seq });
    return { facts, state: 'open' };
  }
  if (seal === undefined) throw new AppendlogError('STORE_INCONSISTENT', 'the log is marked sealed but its seal is missing');
  const manifest = parseManifest(seal.manifest);
  if (manifest.entries !== facts.entries || manifest.head !== facts.head) {
    throw new AppendlogError(
      facts.entries < manifest.entries ? 'CHAIN_TRUNCATED' : 'HEAD_MISMATCH',
      `the store's chain (${facts.entries} entries, head ${facts.head}) differs from its seal manifest (${manifest.entries}, ${manifest.head})`,
      { seq: Math.min(facts.entries, manifest.entries) + 1 },
    );
  }
  checkManifestAgainstChain(manifest, facts);
  const seals = verifySealChain(store);
  let signatures: SignatureReport | undefined;
  if (opts.keys !== undefined && opts.keys.length > 0) {
    signatures = await checkSignatures(
      seal.manifest,
      store.signatures(seal.seal_index).map((armored, i) => ({ file: `signature ${i + 1}`, armored })),
      opts.keys,
      opts.threshold ?? 1,
    );
  }
  return { facts, state: 'sealed', manifest, seals, signatures };
}
