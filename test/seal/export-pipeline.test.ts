/**
 * Export hashes each block on the addon's thread while it tags the next
 * into one of its reused output buffers; a small block is queued behind the
 * one being hashed without waiting (ChainVerifier.pushTaggedAsync). A log
 * whose batches alternate large and small (a build VM trickling single lines
 * between bursts) must export: no buffer may be written over while a block
 * in it is still being hashed (that failed CHAIN_HASH_MISMATCH on a good
 * store). Real SQLite, the real key-file signer, the built verify-chain.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlockBuilder, Kind } from '@appendlog/shared';
import { tempDir } from '../helpers.js';
import { logvm, makeKey, type KeyPair } from '../hostile/util.js';
import { Store } from '../../packages/log-vm/src/store.js';
import { sealLog } from '../../packages/log-vm/src/seal.js';
import { parseSignerSpec } from '../../packages/log-vm/src/signers.js';
import { exportBundle } from '../../packages/log-vm/src/bundle-io.js';

const tmp = tempDir('appendlog-export-pipeline-');
let key: KeyPair;
const db = join(tmp.dir, 'alt.db');

beforeAll(async () => {
  key = await makeKey(tmp.dir, 'Pipeline');
  const store = Store.open(db, { create: true });
  const o = store.openSession('pipe-vm', 'alt', Date.now, { argument: 'alt', mode: 'raw', pid: process.pid, maxLine: 65536 });
  const line = Buffer.from('x'.repeat(40));
  let lines = 0;
  for (let i = 0; i < 24; i++) {
    // ~1 MiB of short lines (slow to hash), then one line (a small run, queued without waiting).
    const big = new BlockBuilder(1 << 21);
    for (let j = 0; j < 16_000; j++) big.add(Date.now(), o.session, Kind.LINE, 0, line);
    store.append(o.log, big);
    const small = new BlockBuilder(4096);
    small.add(Date.now(), o.session, Kind.LINE, 0, Buffer.from(`small ${i}`));
    store.append(o.log, small);
    lines += 16_001;
  }
  const close = new BlockBuilder(4096);
  close.add(Date.now(), o.session, Kind.SESSION_CLOSE, 0, Buffer.from(JSON.stringify({ bytes: 0, lines, reason: 'eof', session: o.session })));
  store.append(o.log, close, { endSession: o.session });
  await sealLog(store, 'pipe-vm', 'alt', parseSignerSpec(`key-file:${key.priv}`));
  store.close();
}, 120_000);
afterAll(() => tmp.cleanup());

describe('a sealed log whose blocks alternate ~1 MiB and one line', () => {
  it.each([1, 2, 3])('exports (try %i) to a directory that verify-chain accepts', async (n) => {
    const store = Store.open(db, { readonly: true });
    const out = join(tmp.dir, `bundle-${n}`);
    try {
      await exportBundle(store, 'pipe-vm', 'alt', out);
    } finally {
      store.close();
    }
    const v = await logvm(['verify-chain', out, '--key', key.pub]);
    expect(v.code, v.stderr).toBe(0);
  }, 120_000);

  it('exports to a .tar with the CLI', async () => {
    const out = join(tmp.dir, 'bundle.tar');
    const e = await logvm(['export', 'pipe-vm/alt', '--out', out], { db });
    expect(e.code, e.stderr).toBe(0);
    const v = await logvm(['verify-chain', out, '--key', key.pub]);
    expect(v.code, v.stderr).toBe(0);
  }, 120_000);
});
