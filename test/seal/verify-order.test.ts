/**
 * verify-chain checks a bundle's trust material and signatures on a thread
 * of their own while the entries stream (packages/log-vm/src/signature-check.ts).
 * What it reports must not change: the first failure in the documented order
 * (docs/FORMAT.md 6.4, G0 trust material, then the signatures, then the
 * entries) wins, whichever thread finds its failure first.
 */
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT, expectNoCrash, expectReceipt, logvm, makeKey, seal, service, tempDir, type Code, type KeyPair } from '../hostile/util.js';

const tmp = tempDir('appendlog-verify-order-');
afterAll(() => tmp.cleanup());
const db = join(tmp.dir, 'logs.db');
const REF = 'build-vm/order';
let key: KeyPair;
let other: KeyPair;
const bundles: Record<string, string> = {};
const badKey = join(tmp.dir, 'not-a-key.asc');

/** The bundle of `form` with the payload byte of "line 2000" changed (seq 2001: a changed entry). */
function tampered(form: 'dir' | 'tar'): string {
  const src = bundles[form]!;
  const out = join(tmp.dir, `tampered.${form === 'dir' ? 'd' : 'tar'}`);
  cpSync(src, out, { recursive: true });
  const file = form === 'dir' ? join(out, 'entries.bin') : out;
  const bytes = readFileSync(file);
  const at = bytes.indexOf(Buffer.from('line 2000 '));
  expect(at).toBeGreaterThan(0);
  bytes[at] = 'L'.charCodeAt(0);
  writeFileSync(file, bytes);
  return out;
}

async function verify(target: string, keyFile: string, extra: string[] = []): Promise<{ code: number; json: Record<string, unknown> }> {
  const r = await logvm(['verify-chain', target, '--key', keyFile, '--json', ...extra]);
  expectNoCrash(r, 'verify-chain');
  return { code: r.code ?? -1, json: JSON.parse(r.stdout.toString('utf8')) as Record<string, unknown> };
}

function expectCode(r: { code: number; json: Record<string, unknown> }, code: Code): void {
  expect(r.json.ok, JSON.stringify(r.json)).toBe(false);
  expect(r.json.code, JSON.stringify(r.json)).toBe(code);
  expect(r.code).toBe(EXIT[code]);
}

beforeAll(async () => {
  key = await makeKey(tmp.dir, 'Release');
  other = await makeKey(tmp.dir, 'Other');
  writeFileSync(badKey, '-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnot a key\n-----END PGP PUBLIC KEY BLOCK-----\n');
  // Several blocks of entries, so that the entries are still streaming when the signatures are judged.
  const lines = Array.from({ length: 30_000 }, (_, i) => `line ${i} ${'x'.repeat(i % 80)}`).join('\n');
  expectReceipt(await service('build-vm', 'order', db, { input: `${lines}\n`, timeoutMs: 60_000 }));
  const s = await seal(db, REF, key);
  expect(s.code, s.stderr).toBe(0);
  for (const [form, out] of [['dir', join(tmp.dir, 'bundle')], ['tar', join(tmp.dir, 'bundle.tar')]] as const) {
    const e = await logvm(['export', REF, '--out', out], { db });
    expect(e.code, e.stderr).toBe(0);
    bundles[form] = out;
  }
}, 120_000);

describe.each(['dir', 'tar'] as const)('verify-chain on a bundle %s', (form) => {
  it('verifies with the release key, and names a changed entry at its seq', async () => {
    expect((await verify(bundles[form]!, key.pub)).json).toMatchObject({ ok: true, entries: 30_003 });
    const r = await verify(tampered(form), key.pub);
    expectCode(r, 'CHAIN_HASH_MISMATCH');
    expect(r.json.seq).toBe(2002);
  });

  it('not signed by a trusted key and with a changed entry: the signature failure is reported, as for the intact bundle', async () => {
    const intact = await verify(bundles[form]!, other.pub);
    expect(intact.json.ok).toBe(false);
    expect(['SIGNATURE_MISSING', 'SIGNATURE_UNTRUSTED', 'THRESHOLD_NOT_MET']).toContain(intact.json.code);
    const r = await verify(tampered(form), other.pub);
    expectCode(r, intact.json.code as Code);
    expect(r.json.message).toBe(intact.json.message);
  });

  it('a key file that is not a key and a changed entry: KEY_INVALID (the trust material comes first)', async () => {
    expectCode(await verify(tampered(form), badKey), 'KEY_INVALID');
  });

  it('a key file that is not a key and a missing --artifact file: KEY_INVALID, as when the keys were read first', async () => {
    expectCode(await verify(bundles[form]!, badKey, ['--artifact', join(tmp.dir, 'no-such-artifact')]), 'KEY_INVALID');
  });
});

it('a key file that is not a key and a bundle that is not one: KEY_INVALID', async () => {
  const notBundle = join(tmp.dir, 'not-a-bundle.tar');
  writeFileSync(notBundle, Buffer.alloc(4096, 0x41));
  expectCode(await verify(notBundle, badKey), 'KEY_INVALID');
  // And with the release key, the same file is MALFORMED_BUNDLE.
  expectCode(await verify(notBundle, key.pub), 'MALFORMED_BUNDLE');
});

// Reads of 1 MiB cut records: the cut record is checked and hashed as a run
// of its own, queued behind the run before it (pushTaggedAsync): a change in
// it, or just after it, is still named at its seq, and the earlier one wins.
describe('a changed entry at a read boundary (1 MiB) of entries.bin', () => {
  /** [start, end) of each record of entries.bin, in seq order (seq = index + 1). */
  const records = (bin: Buffer): Array<[number, number]> => {
    const out: Array<[number, number]> = [];
    for (let off = 0; off < bin.length; ) {
      const end = off + 26 + bin.readUInt32BE(off + 22) + 8;
      out.push([off, end]);
      off = end;
    }
    return out;
  };
  const variant = (name: string, change: (bin: Buffer, recs: Array<[number, number]>) => void): string => {
    const dir = join(tmp.dir, `boundary-${name}`);
    cpSync(bundles.dir!, dir, { recursive: true });
    const bin = readFileSync(join(dir, 'entries.bin'));
    change(bin, records(bin));
    writeFileSync(join(dir, 'entries.bin'), bin);
    return dir;
  };
  /** Index of the record that the read boundary at `at` cuts. */
  const cutAt = (recs: Array<[number, number]>, at: number): number => recs.findIndex(([s, e]) => s < at && e > at);
  // The last payload byte of record i (a line's text: changing it breaks only the hash).
  const flip = (bin: Buffer, recs: Array<[number, number]>, i: number): void => {
    const at = recs[i]![1] - 8 - 1;
    bin[at] = bin[at]! ^ 0x01;
  };

  it('the cut record itself: CHAIN_HASH_MISMATCH at its seq', async () => {
    let seq = 0;
    const dir = variant('cut', (bin, recs) => {
      const i = cutAt(recs, 1 << 20);
      expect(i).toBeGreaterThan(0);
      flip(bin, recs, i);
      seq = i + 1;
    });
    const r = await verify(dir, key.pub);
    expectCode(r, 'CHAIN_HASH_MISMATCH');
    expect(r.json.seq).toBe(seq);
  });

  it('the record after the cut one: named at its seq', async () => {
    let seq = 0;
    const dir = variant('after', (bin, recs) => {
      const i = cutAt(recs, 1 << 20) + 1;
      flip(bin, recs, i);
      seq = i + 1;
    });
    const r = await verify(dir, key.pub);
    expectCode(r, 'CHAIN_HASH_MISMATCH');
    expect(r.json.seq).toBe(seq);
  });

  it('the record before the cut one and the cut one: the earlier is named', async () => {
    let seq = 0;
    const dir = variant('before-and-cut', (bin, recs) => {
      const i = cutAt(recs, 2 << 20);
      flip(bin, recs, i);
      flip(bin, recs, i - 1);
      seq = i;
    });
    const r = await verify(dir, key.pub);
    expectCode(r, 'CHAIN_HASH_MISMATCH');
    expect(r.json.seq).toBe(seq);
  });
});
