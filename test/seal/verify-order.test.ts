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
