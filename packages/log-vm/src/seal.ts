import {
  AppendlogError,
  BlockBuilder,
  Kind,
  MANIFEST_FORMAT,
  manifestBytes,
  sealEntryPayload,
  sealHash,
  type ChainFacts,
  type SealManifest,
} from '@appendlog/shared';
import { storeError } from './errors.js';
import type { Signer } from './signers.js';
import type { HeadRow, LogRow, Store } from './store.js';
import { verifyStoredChain } from './verify-store.js';

/**
 * Seals a log: appends the SEAL entry, and stores the manifest and its
 * signature, all in one transaction, so a log is either open or sealed with a
 * valid-looking seal, never in between.
 *
 * Signing can take long (Split-GPG may ask the vault's user), so it happens
 * outside the write lock: the manifest is built for the head as it is, signed,
 * and committed only if neither the log's head nor the store's last seal
 * moved meanwhile; otherwise it is rebuilt and signed again (LOG_BUSY after a
 * few tries). A failing or refusing signer leaves the log exactly as it was.
 * The chain is verified before anything is signed: a release key never signs
 * a broken log.
 */
export interface SealResult {
  manifest: SealManifest;
  bytes: Buffer;
  signature: string;
}

export interface SealOptions {
  now?: () => number;
  attempts?: number;
}

export async function sealLog(store: Store, vm: string, name: string, signer: Signer, opts: SealOptions = {}): Promise<SealResult> {
  const now = opts.now ?? Date.now;
  const attempts = opts.attempts ?? 5;
  const log = store.requireLog(vm, name);
  for (let attempt = 1; attempt <= attempts; attempt++) {
    // A consistent snapshot: head row, chain and last seal read in one read transaction.
    const snap = store.db.transaction(() => {
      const head = store.getHead(log.id);
      if (head.sealed) throw new AppendlogError('LOG_SEALED', `log ${vm}/${name} is already sealed`);
      if (head.lines === 0) throw new AppendlogError('LOG_EMPTY', `log ${vm}/${name} has no lines; refusing to seal an empty log`);
      const facts = verifyStoredChain(store, log);
      const prev = store.latestSeal();
      return { head, facts, prev };
    })();
    const sealIndex = (snap.prev?.seal_index ?? 0) + 1;
    const prevSeal = snap.prev ? snap.prev.seal_hash.toString('hex') : null;
    const sealed = Math.max(now(), snap.facts.lastTime ?? 0);
    const builder = new BlockBuilder(256);
    builder.add(sealed, 0, Kind.SEAL, 0, sealEntryPayload({ prevSeal, sealIndex, sealed }));
    const block = builder.finish(snap.head.entries + 1, snap.head.head);
    const manifest = buildManifest(log, snap.facts, {
      sealed,
      entries: snap.head.entries + 1,
      head: block.head.toString('hex'),
      sealIndex,
      prevSeal,
    });
    const bytes = manifestBytes(manifest);
    const signature = await signer.sign(bytes);

    const committed = store.db.transaction(() => {
      const head: HeadRow = store.getHead(log.id);
      if (head.sealed) throw new AppendlogError('LOG_SEALED', `log ${vm}/${name} was sealed by someone else meanwhile`);
      const last = store.latestSeal();
      if (head.entries !== snap.head.entries || !head.head.equals(snap.head.head) || (last?.seal_index ?? 0) !== sealIndex - 1) {
        return false;
      }
      store.insertBlock(log, head, builder, 0, 1);
      store.db
        .prepare('INSERT INTO seals (seal_index, log_id, manifest, seal_hash, prev_hash) VALUES (?, ?, ?, ?, ?)')
        .run(sealIndex, log.id, bytes, sealHash(bytes), snap.prev?.seal_hash ?? null);
      store.db.prepare('INSERT INTO signatures (seal_index, n, armored) VALUES (?, 1, ?)').run(sealIndex, signature);
      return true;
    });
    let ok: boolean;
    try {
      ok = committed.immediate();
    } catch (e) {
      throw storeError(`cannot seal ${vm}/${name}`, e);
    }
    if (ok) return { manifest, bytes, signature };
  }
  throw new AppendlogError('LOG_BUSY', `log ${vm}/${name} kept changing while it was being signed (${attempts} tries); seal it when the build has ended`);
}

export function buildManifest(
  log: LogRow,
  facts: ChainFacts,
  seal: { sealed: number; entries: number; head: string; sealIndex: number; prevSeal: string | null },
): SealManifest {
  return {
    format: MANIFEST_FORMAT,
    vm: log.vm,
    name: log.name,
    created: log.created,
    sealed: seal.sealed,
    genesis: log.genesis.toString('hex'),
    entries: seal.entries,
    lines: facts.lines,
    bytes: facts.bytes,
    sessions: facts.sessions,
    closes: facts.closes,
    head: seal.head,
    sealIndex: seal.sealIndex,
    prevSeal: seal.prevSeal,
    // What the sender claimed (framed mode), summarized from its CLAIM entries.
    ...(facts.claims !== undefined ? { claims: facts.claims } : {}),
  };
}
