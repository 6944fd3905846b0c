import { AppendlogError, ChainVerifier, HASH_SIZE, checkManifestAgainstChain, parseManifest, sealHash, type ChainFacts, type SealManifest } from '@appendlog/shared';
import { verifyManifestSignatures, type SignatureReport, type TrustStore } from '@appendlog/shared/signatures';
import type { BlockRow, LogRow, Store } from './store.js';
import type { Checkpoint } from './bundle-io.js';

export type Progress = (done: number, total: number) => void;

/**
 * Recomputes a log's chain from the store: every entry hash against the one
 * stored beside it (naming the first changed seq), seq continuity, and the
 * end against the store's head row (a deleted tail or a rewritten chain).
 */
export function verifyStoredChain(store: Store, log: LogRow, progress?: Progress, checkpoints?: Checkpoint[]): ChainFacts {
  const head = store.getHead(log.id);
  const verifier = new ChainVerifier({ vm: log.vm, name: log.name, created: log.created });
  if (checkpoints !== undefined) verifier.expectHeads(checkpoints);
  for (const block of store.blocks(log.id)) pushStoredBlock(verifier, block, progress, head.entries);
  progress?.(verifier.entries, head.entries);
  const facts = verifier.end({ entries: head.entries, head: head.head, source: 'the store head' });
  if (facts.lines !== head.lines || facts.bytes !== head.bytes || facts.sessions !== head.sessions) {
    throw new AppendlogError(
      'STORE_INCONSISTENT',
      `the store head row says ${head.lines} lines, ${head.bytes} bytes, ${head.sessions} sessions; the chain has ${facts.lines}, ${facts.bytes}, ${facts.sessions}`,
    );
  }
  return facts;
}

/** One store row into the verifier: its entries, checked against the hashes stored beside them. */
export function pushStoredBlock(verifier: ChainVerifier, block: BlockRow, progress?: Progress, total = 0): void {
  if (block.hashes.length !== block.count * HASH_SIZE) {
    throw new AppendlogError('STORE_INCONSISTENT', `block at seq ${block.first_seq}: ${block.hashes.length / HASH_SIZE} hashes for ${block.count} entries`, {
      seq: block.first_seq,
    });
  }
  const before = verifier.entries;
  const n = verifier.pushBlock(block.data, block.hashes);
  if (n !== block.count || before + 1 !== block.first_seq) {
    throw new AppendlogError('STORE_INCONSISTENT', `block row at seq ${block.first_seq} says ${block.count} entries from seq ${block.first_seq}; it holds ${n} from seq ${before + 1}`, {
      seq: before + 1,
    });
  }
  progress?.(verifier.entries, total);
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
  opts: { trust?: TrustStore; threshold?: number; now?: number; progress?: Progress; checkpoints?: Checkpoint[] } = {},
): Promise<StoredLogVerification> {
  const facts = verifyStoredChain(store, log, opts.progress, opts.checkpoints);
  const seal = store.getSeal(log.id);
  const sealed = store.getHead(log.id).sealed === 1;
  if (!sealed && seal === undefined) {
    if (facts.seal !== null) throw new AppendlogError('STORE_INCONSISTENT', `seq ${facts.seal.seq} is a seal entry but the log is not marked sealed`, { seq: facts.seal.seq });
    return { facts, state: 'open' };
  }
  if (seal === undefined) throw new AppendlogError('STORE_INCONSISTENT', 'the log is marked sealed but its seal is missing');
  if (!sealed) throw new AppendlogError('STORE_INCONSISTENT', 'the store has a seal for this log but its head is not marked sealed');
  const manifest = parseManifest(seal.manifest);
  if (manifest.entries !== facts.entries || manifest.head !== facts.head) {
    // The seq of 6.10, as for a bundle: the first missing or extra entry, or the last one for another head.
    const seq = manifest.entries === facts.entries ? facts.entries : Math.min(facts.entries, manifest.entries) + 1;
    throw new AppendlogError(
      facts.entries < manifest.entries ? 'CHAIN_TRUNCATED' : 'HEAD_MISMATCH',
      `seq ${seq}: the store's chain (${facts.entries} entries, head ${facts.head}) differs from its seal manifest (${manifest.entries}, ${manifest.head})`,
      { seq },
    );
  }
  checkManifestAgainstChain(manifest, facts);
  const seals = verifySealChain(store);
  let signatures: SignatureReport | undefined;
  if (opts.trust !== undefined) {
    signatures = await verifyManifestSignatures({
      manifest: seal.manifest,
      sealed: manifest.sealed,
      signatures: store.signatures(seal.seal_index).map((armored, i) => ({ file: `signature ${i + 1}`, bytes: Buffer.from(armored, 'utf8') })),
      trust: opts.trust,
      threshold: opts.threshold ?? 1,
      now: opts.now ?? Date.now(),
    });
  }
  return { facts, state: 'sealed', manifest, seals, signatures };
}
