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
import { isAppendlogError, storeError } from './errors.js';
import type { Signer } from './signers.js';
import type { HeadRow, LogRow, SealClaim, SealRow, Store } from './store.js';
import { verifyStoredChain } from './verify-store.js';

/**
 * Seals a log: appends the SEAL entry, and stores the manifest and its
 * signature, all in one transaction, so a log is either open or sealed with a
 * valid-looking seal, never in between.
 *
 * Signing can take long (Split-GPG may ask the vault's user), so it happens
 * outside the write lock, but the log is claimed first (docs/FORMAT.md 7.3):
 * a `sealing` row, written in one BEGIN IMMEDIATE transaction with the
 * snapshot it signs, after which every batch and open of that log is refused
 * as if it were sealed. A build VM trickling lines into the log therefore
 * cannot move the head under the signer, and the signer is called once (each
 * call may be a prompt in the vault). Other logs go on being written. One
 * seal of a store is signed at a time (the seal chain is linear): a second
 * seal waits for the first. A failing or refusing signer gives the log back
 * (the claim removed, the sessions it cut closed, a seal-failed event, in one
 * transaction). The chain is verified before anything is signed: a release
 * key never signs a broken log.
 */
export interface SealResult {
  manifest: SealManifest;
  bytes: Buffer;
  signature: string;
}

export interface SealOptions {
  now?: () => number;
  /** How often to look again while another seal of the store is in progress (ms). */
  pollMs?: number;
  /** Called once when the seal has to wait for another one. */
  onWait?: (other: { vm: string; name: string; pid: number; time: number }) => void;
}

/** Failures sealLog has already chained as seal-failed in VM/logvm-events (sealAtClose must not repeat them). */
const recorded = new WeakSet<object>();
export function sealFailureRecorded(e: unknown): boolean {
  return typeof e === 'object' && e !== null && recorded.has(e);
}

export async function sealLog(store: Store, vm: string, name: string, signer: Signer, opts: SealOptions = {}): Promise<SealResult> {
  const now = opts.now ?? Date.now;
  const log = store.requireLog(vm, name);
  let waited = false;
  let taken: { claim: SealClaim; head: HeadRow; prev: SealRow | undefined };
  for (;;) {
    const r = store.claimSeal(log, now);
    if ('claim' in r) {
      taken = r;
      break;
    }
    if (!waited) opts.onWait?.({ vm: r.busy.vm, name: r.busy.name, pid: r.busy.pid, time: r.busy.time });
    waited = true;
    // Until that seal commits or fails, or its claim turns stale (SEAL_CLAIM_STALE_MS) and is cleared.
    await new Promise((resolve) => setTimeout(resolve, opts.pollMs ?? 200));
  }
  const { claim, head, prev } = taken;

  let manifest: SealManifest;
  let bytes: Buffer;
  let signature: string;
  let builder: BlockBuilder;
  try {
    // The claim keeps the head where it was: the chain read here is the one claimed.
    const facts = store.db.transaction(() => verifyStoredChain(store, log))();
    if (facts.entries !== claim.entries || facts.head !== claim.head.toString('hex')) {
      throw new AppendlogError('STORE_INCONSISTENT', `log ${vm}/${name} moved while it was claimed for its seal`);
    }
    const sealIndex = claim.seal_index;
    const prevSeal = prev ? prev.seal_hash.toString('hex') : null;
    const sealed = Math.max(now(), facts.lastTime ?? 0);
    builder = new BlockBuilder(256);
    builder.add(sealed, 0, Kind.SEAL, 0, sealEntryPayload({ prevSeal, sealIndex, sealed }));
    const block = builder.finish(head.entries + 1, head.head);
    manifest = buildManifest(log, facts, { sealed, entries: head.entries + 1, head: block.head.toString('hex'), sealIndex, prevSeal });
    bytes = manifestBytes(manifest);
    signature = await signer.sign(bytes);
  } catch (e) {
    throw giveBack(store, log, claim, signer, e);
  }

  const commit = store.db.transaction(() => {
    const c = store.sealClaim(log.id);
    if (c === undefined || c.token !== claim.token) {
      throw new AppendlogError('LOG_BUSY', `the claim of this seal on ${vm}/${name} was cleared meanwhile (held longer than the bound, docs/FORMAT.md 7.3); nothing was committed, seal it again`);
    }
    const now2: HeadRow = store.getHead(log.id);
    const last = store.latestSeal();
    if (now2.sealed || now2.entries !== head.entries || !now2.head.equals(head.head) || (last?.seal_index ?? 0) !== claim.seal_index - 1) {
      throw new AppendlogError('STORE_INCONSISTENT', `log ${vm}/${name} or the store's seal chain moved although the log was claimed for its seal`);
    }
    store.insertBlock(log, now2, builder, 0, 1);
    store.db
      .prepare('INSERT INTO seals (seal_index, log_id, manifest, seal_hash, prev_hash) VALUES (?, ?, ?, ?, ?)')
      .run(claim.seal_index, log.id, bytes, sealHash(bytes), prev?.seal_hash ?? null);
    store.db.prepare('INSERT INTO signatures (seal_index, n, armored) VALUES (?, 1, ?)').run(claim.seal_index, signature);
    // Sessions cut meanwhile stay without a close: nothing may follow the seal (3.5).
    store.db.prepare('DELETE FROM sealing WHERE log_id = ?').run(log.id);
    store.db.prepare('DELETE FROM sealing_cuts WHERE log_id = ?').run(log.id);
  });
  try {
    commit.immediate();
  } catch (e) {
    throw giveBack(store, log, claim, signer, storeError(`cannot seal ${vm}/${name}`, e));
  }
  return { manifest, bytes, signature };
}

/**
 * After a failure with the claim taken: releases it (closing the sessions it
 * cut) with a seal-failed event, and returns the coded error to throw.
 */
function giveBack(store: Store, log: LogRow, claim: SealClaim, signer: Signer, e: unknown): AppendlogError {
  const err = isAppendlogError(e) ? e : new AppendlogError('INTERNAL', String((e as Error)?.message ?? e));
  try {
    const closed = store.releaseSeal(log, claim.token, `the seal then failed (${err.code})`, {
      notice: 'seal-failed',
      log: `${log.vm}/${log.name}`,
      head: claim.head.toString('hex'),
      signer: signer.spec,
      detail: `${err.code}: ${err.message}`,
    });
    if (closed !== null) recorded.add(err);
  } catch {
    // The claim stays until it is found stale (its process gone) and cleared, recorded then.
  }
  return err;
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
