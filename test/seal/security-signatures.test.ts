/**
 * Security: one case per attack on the signature trust rules
 * (docs/FORMAT.md 6.4). Keys and signatures are made by real gpg with its
 * clock frozen (--faked-system-time): expired and revoked keys (each
 * revocation reason), SHA-1, back-dated and future signatures, a subkey.
 * The pure trust core (evaluateSignatures) is given the times of the case;
 * the end-to-end cases run `logvm verify-chain` on a real sealed bundle.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppendlogError } from '../../packages/shared/src/index.js';
import {
  evaluateSignatures,
  loadTrustStore,
  requireThreshold,
  type SignatureVerdict,
  type TrustStore,
} from '../../packages/shared/src/signatures.js';
import { callService, tempDir } from '../helpers.js';
import { CASE_NAMES, NOW, SEALED, makeFixture, withVersion, type Fixture } from './sigcases.js';
import { EXIT, copyBundle, expectFailure, expectOk, logvmOk, verifyChain } from './util.js';

const tmp = tempDir('appendlog-sec-sigs-');
let fx: Fixture;
let trust: TrustStore;

const one = async (sig: Buffer, t: TrustStore = trust, file = 'signatures/01.asc'): Promise<SignatureVerdict> =>
  evaluateSignatures({ manifest: fx.manifest, sealed: SEALED * 1000, signatures: [{ file, bytes: sig }], trust: t, now: NOW * 1000 });
const caseSig = (name: string): Buffer => fx.cases.find((c) => c.name === name)!.sig;

beforeAll(async () => {
  fx = await makeFixture(join(tmp.dir, 'fixture'));
  trust = await loadTrustStore([{ name: 'trusted.asc', bytes: fx.trustedKeys, kind: 'key' }]);
}, 120_000);

afterAll(async () => {
  await fx?.gpg.cleanup();
  tmp.cleanup();
});

describe('when each signature is judged alone (real gpg signatures, frozen clocks)', () => {
  // Listed in sigcases.ts, each with the one outcome the rules allow.
  it.each(CASE_NAMES)('%s', async (name) => {
    const c = fx.cases.find((x) => x.name === name)!;
    expect(c, name).toBeDefined();
    const v = await one(c.sig);
    expect(v.results).toHaveLength(1);
    const r = v.results[0]!;
    if (c.expect === 'counted' || c.expect === 'bad') {
      expect(r.status, r.message).toBe(c.expect);
      expect(r.code).toBeUndefined();
    } else {
      expect(r.status, r.message).toBe('refused');
      expect(r.code).toBe(c.expect);
    }
    if (c.cert !== '') expect(r.certificate).toBe(c.cert);
    expect(v.counted.map((x) => x.fingerprint)).toEqual(c.expect === 'counted' ? [c.cert] : []);
  });

  it('a subkey signature counts for its primary certificate, naming the subkey', async () => {
    const r = (await one(caseSig('a signature by a signing subkey'))).results[0]!;
    expect(r.certificate).toBe(fx.fpr.ivan);
    expect(r.signingKey).not.toBe(fx.fpr.ivan);
    expect(r.signingKey).toMatch(/^[0-9A-F]{40}$/);
  });

  it('a v3 signature packet is a PACKET_VERSION refusal, not an error', async () => {
    const { unarmor } = await import('openpgp');
    const bin = (await unarmor(caseSig('a SHA-512 signature made after the seal by a valid key').toString('utf8'))).data as Uint8Array;
    const r = (await one(withVersion(bin, 3))).results[0]!;
    expect(r).toMatchObject({ status: 'refused', code: 'PACKET_VERSION', version: 3 });
  });

  it('a v5 signature packet is a PACKET_VERSION refusal', async () => {
    const { unarmor } = await import('openpgp');
    const bin = (await unarmor(caseSig('a SHA-512 signature made after the seal by a valid key').toString('utf8'))).data as Uint8Array;
    expect((await one(withVersion(bin, 5))).results[0]).toMatchObject({ status: 'refused', code: 'PACKET_VERSION', version: 5 });
  });

  it('an unknown signature packet version (0x2a) is a PACKET_VERSION refusal', async () => {
    const { unarmor } = await import('openpgp');
    const bin = (await unarmor(caseSig('a SHA-512 signature made after the seal by a valid key').toString('utf8'))).data as Uint8Array;
    expect((await one(withVersion(bin, 0x2a))).results[0]).toMatchObject({ status: 'refused', code: 'PACKET_VERSION' });
  });

  it('a binary (unarmored) signature file is read like an armored one', async () => {
    const { unarmor } = await import('openpgp');
    const bin = (await unarmor(caseSig('a SHA-512 signature made after the seal by a valid key').toString('utf8'))).data as Uint8Array;
    expect((await one(Buffer.from(bin))).results[0]).toMatchObject({ status: 'counted', certificate: fx.fpr.alice });
  });
});

describe('when signatures are counted toward M', () => {
  const all = () => fx.cases.map((c, i) => ({ file: `signatures/${String(i + 1).padStart(2, '0')}.asc`, bytes: c.sig }));
  const good = () => fx.cases.filter((c) => c.expect !== 'bad').map((c, i) => ({ file: `signatures/${String(i + 1).padStart(2, '0')}.asc`, bytes: c.sig }));
  const evalAll = (signatures: Array<{ file: string; bytes: Buffer }>) =>
    evaluateSignatures({ manifest: fx.manifest, sealed: SEALED * 1000, signatures, trust, now: NOW * 1000 });

  it('one certificate counts once however many of its signatures count (alice: two)', async () => {
    const v = await evalAll(good());
    const alice = v.counted.find((c) => c.fingerprint === fx.fpr.alice)!;
    expect(alice.signatures).toBe(2);
    expect(v.counted.map((c) => c.fingerprint).sort()).toEqual([fx.fpr.alice, fx.fpr.erin, fx.fpr.grace, fx.fpr.ivan].sort());
  });

  it('policy refusals do not veto a threshold the counted signatures meet (M = 4 is met)', async () => {
    const v = await evalAll(good());
    expect(requireThreshold(v, 4, trust).counted).toHaveLength(4);
  });

  it('M = 5 with four counted certificates is THRESHOLD_NOT_MET, naming the refusal codes', async () => {
    const v = await evalAll(good());
    let err: unknown;
    try {
      requireThreshold(v, 5, trust);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(AppendlogError);
    expect((err as AppendlogError).code).toBe('THRESHOLD_NOT_MET');
    expect((err as AppendlogError).message).toContain('KEY_COMPROMISED');
  });

  it('one cryptographically bad signature by a trusted key fails the whole check (SIGNATURE_INVALID) even when M is met', async () => {
    const v = await evalAll(all());
    expect(v.bad).toHaveLength(1);
    expect(() => requireThreshold(v, 1, trust)).toThrow(expect.objectContaining({ code: 'SIGNATURE_INVALID' }) as Error);
  });

  it('only untrusted signatures: SIGNATURE_UNTRUSTED', async () => {
    const v = await evalAll([{ file: 'signatures/01.asc', bytes: caseSig('a signature by a key that is not trusted') }]);
    expect(() => requireThreshold(v, 1, trust)).toThrow(expect.objectContaining({ code: 'SIGNATURE_UNTRUSTED' }) as Error);
  });
});

describe('when the trust material is given the usual ways', () => {
  it('a file of several certificates (gpg --armor --export A B ...) loads every one', async () => {
    expect(trust.certificates.map((c) => c.fingerprint).sort()).toEqual(
      ['alice', 'carol', 'erin', 'frank', 'nora', 'grace', 'heidi', 'ivan', 'judy'].map((w) => fx.fpr[w]).sort(),
    );
  });

  it('concatenated armored files (cat a.asc b.asc) load both', async () => {
    const a = (await fx.gpg.gpg(['--armor', '--export', fx.fpr.alice!])).stdout;
    const b = (await fx.gpg.gpg(['--armor', '--export', fx.fpr.grace!])).stdout;
    const t = await loadTrustStore([{ name: 'ab.asc', bytes: Buffer.concat([a, b]), kind: 'key' }]);
    expect(t.certificates.map((c) => c.fingerprint)).toEqual([fx.fpr.alice, fx.fpr.grace]);
  });

  it('a binary export of several keys (gpg --export > keyring.gpg) loads as a --keyring', async () => {
    const ring = (await fx.gpg.gpg(['--export', fx.fpr.alice!, fx.fpr.ivan!])).stdout;
    expect(ring[0]! & 0x80).toBe(0x80); // binary, not armored
    const t = await loadTrustStore([{ name: 'ring.gpg', bytes: ring, kind: 'keyring' }]);
    expect(t.certificates.map((c) => c.fingerprint).sort()).toEqual([fx.fpr.alice, fx.fpr.ivan].sort());
  });

  it('a GnuPG keybox (pubring.kbx) is KEY_INVALID with a hint to export', async () => {
    const kbx = readFileSync(join(fx.gpg.home, 'pubring.kbx'));
    await expect(loadTrustStore([{ name: 'pubring.kbx', bytes: kbx, kind: 'keyring' }])).rejects.toMatchObject({ code: 'KEY_INVALID', message: expect.stringContaining('gpg --export') as string });
  });

  it('a damaged certificate in a --key file is KEY_INVALID (never skipped silently)', async () => {
    const a = (await fx.gpg.gpg(['--export', fx.fpr.alice!])).stdout;
    const broken = Buffer.from(a);
    broken[8] = broken[8]! ^ 0xff; // inside the primary key packet's body
    await expect(loadTrustStore([{ name: 'k.gpg', bytes: Buffer.concat([broken]), kind: 'key' }])).rejects.toMatchObject({ code: 'KEY_INVALID' });
  });

  it('--signer pins: a valid signature by a trusted but unpinned certificate is KEY_NOT_PINNED', async () => {
    const pinned = await loadTrustStore([{ name: 'trusted.asc', bytes: fx.trustedKeys, kind: 'key' }], { signers: [fx.fpr.grace!] });
    const v = await one(caseSig('a SHA-512 signature made after the seal by a valid key'), pinned);
    expect(v.results[0]).toMatchObject({ status: 'refused', code: 'KEY_NOT_PINNED', certificate: fx.fpr.alice });
  });

  it('--signer with a fingerprint of no given key is a USAGE error', async () => {
    await expect(loadTrustStore([{ name: 'trusted.asc', bytes: fx.trustedKeys, kind: 'key' }], { signers: [fx.fpr.mallory!] })).rejects.toMatchObject({ code: 'USAGE' });
  });

  it('a user ID that no valid self-signature binds is not shown (only the fingerprint)', async () => {
    // Alice's certificate with Mallory's user ID packet and Mallory's self-signature spliced in.
    const { splitForTest } = await packets();
    const a = splitForTest((await fx.gpg.gpg(['--export', fx.fpr.alice!])).stdout);
    const m = splitForTest((await fx.gpg.gpg(['--export', fx.fpr.mallory!])).stdout);
    const mUid = m.findIndex((p) => p.tag === 13);
    const spliced = Buffer.concat([...a.map((p) => p.bytes), m[mUid]!.bytes, m[mUid + 1]!.bytes]);
    const t = await loadTrustStore([{ name: 'spliced.gpg', bytes: spliced, kind: 'key' }]);
    expect(t.certificates[0]!.fingerprint).toBe(fx.fpr.alice);
    expect(t.certificates[0]!.userIds).toEqual(['alice <alice@example.org>']);
  });
});

/** Minimal packet splitter for crafting certificates in tests (header parsing as RFC 9580 4.2). */
async function packets() {
  return {
    splitForTest(b: Buffer): Array<{ tag: number; bytes: Buffer }> {
      const out: Array<{ tag: number; bytes: Buffer }> = [];
      let i = 0;
      while (i < b.length) {
        const h = b[i]!;
        let tag: number;
        let len: number;
        let hl: number;
        if (h & 0x40) {
          tag = h & 0x3f;
          const o = b[i + 1]!;
          if (o < 192) [len, hl] = [o, 2];
          else if (o < 224) [len, hl] = [((o - 192) << 8) + b[i + 2]! + 192, 3];
          else [len, hl] = [b.readUInt32BE(i + 2), 6];
        } else {
          tag = (h >> 2) & 15;
          const n = [1, 2, 4][h & 3]!;
          len = n === 1 ? b[i + 1]! : n === 2 ? b.readUInt16BE(i + 1) : b.readUInt32BE(i + 1);
          hl = 1 + n;
        }
        out.push({ tag, bytes: b.subarray(i, i + hl + len) });
        i += hl + len;
      }
      return out;
    },
  };
}

describe('when verify-chain checks a real sealed bundle', () => {
  let bundle: string;
  let gpgEnv: Record<string, string>;
  let alicePub: string;
  let judyPub: string;
  let trustedAsc: string;

  beforeAll(async () => {
    const db = join(tmp.dir, 'e2e.db');
    gpgEnv = fx.gpg.env;
    const r = await callService('build-vm', 'rel-1', db, { input: 'cc -c a.c\nok\n' });
    expect(r.code, r.stderr).toBe(0);
    await logvmOk(['seal', 'build-vm/rel-1', '--signer', `gpg:${fx.fpr.alice}`], { db, env: gpgEnv });
    bundle = join(tmp.dir, 'bundle');
    await logvmOk(['export', 'build-vm/rel-1', '--out', bundle], { db });
    alicePub = join(tmp.dir, 'alice.asc');
    judyPub = join(tmp.dir, 'judy.asc');
    trustedAsc = join(tmp.dir, 'trusted.asc');
    writeFileSync(alicePub, (await fx.gpg.gpg(['--armor', '--export', fx.fpr.alice!])).stdout);
    writeFileSync(judyPub, (await fx.gpg.gpg(['--armor', '--export', fx.fpr.judy!])).stdout);
    writeFileSync(trustedAsc, fx.trustedKeys);
  }, 120_000);

  let n = 0;
  const copy = () => copyBundle(bundle, join(tmp.dir, `copy-${++n}`));
  const signInto = async (dir: string, fpr: string, file: string, extra: string[] = []) => {
    const r = await fx.gpg.gpg(['--allow-weak-digest-algos', ...extra, '--yes', '-u', `${fpr}!`, '-a', '-b', '-o', join(dir, 'signatures', file), join(dir, 'manifest.json')]);
    expect(r.code, r.stderr).toBe(0);
  };

  it('a SHA-1 signature beside a valid one is reported as HASH_WEAK and does not veto OK', async () => {
    const dir = copy();
    await signInto(dir, fx.fpr.judy!, '02.asc', ['--digest-algo', 'SHA1']);
    const o = await verifyChain([dir, '--key', alicePub, '--key', judyPub], { json: true });
    expectOk(o);
    expect(o.human.stdout.toString('utf8')).toMatch(/not counted: signatures\/02\.asc: HASH_WEAK/);
    expect(o.result).toMatchObject({ signers: 1, refusedSignatures: [{ file: 'signatures/02.asc', code: 'HASH_WEAK', certificate: fx.fpr.judy }] });
  });

  it('a SHA-1 signature is not counted: --threshold 2 fails THRESHOLD_NOT_MET (exit 33), not SIGNATURE_INVALID', async () => {
    const dir = copy();
    await signInto(dir, fx.fpr.judy!, '02.asc', ['--digest-algo', 'SHA1']);
    expectFailure(await verifyChain([dir, '--key', alicePub, '--key', judyPub, '--threshold', '2'], { json: true }), 'THRESHOLD_NOT_MET');
  });

  it('a back-dated signature (gpg clock a day early) is SIG_BACKDATED and does not count', async () => {
    const dir = copy();
    await signInto(dir, fx.fpr.judy!, '02.asc', ['--faked-system-time', `${Math.floor(Date.now() / 1000) - 86400}!`]);
    const o = await verifyChain([dir, '--key', alicePub, '--key', judyPub, '--threshold', '2'], { json: true });
    expectFailure(o, 'THRESHOLD_NOT_MET');
    expect(o.human.stderr).toContain('SIG_BACKDATED');
  });

  it('--key with a file of nine certificates loads them all (the bundle verifies with alice among them)', async () => {
    const o = await verifyChain([bundle, '--key', trustedAsc], { json: true });
    expectOk(o);
    expect(o.result).toMatchObject({ signatures: [{ fingerprint: fx.fpr.alice, userIds: ['alice <alice@example.org>'] }] });
  });

  it('--keyring with a binary gpg --export verifies', async () => {
    const ring = join(tmp.dir, 'ring.gpg');
    writeFileSync(ring, (await fx.gpg.gpg(['--export', fx.fpr.judy!, fx.fpr.alice!])).stdout);
    expectOk(await verifyChain([bundle, '--keyring', ring], { json: true }));
  });

  it('--signer pinning another certificate: alice\'s valid signature does not count (THRESHOLD_NOT_MET, KEY_NOT_PINNED)', async () => {
    const o = await verifyChain([bundle, '--key', trustedAsc, '--signer', fx.fpr.judy!], { json: true });
    expectFailure(o, 'THRESHOLD_NOT_MET');
    expect(o.human.stderr).toContain('KEY_NOT_PINNED');
  });

  it('--signer pinning alice: OK', async () => {
    expectOk(await verifyChain([bundle, '--key', trustedAsc, '--signer', fx.fpr.alice!], { json: true }));
  });

  it('a v3 signature packet in the bundle is a coded refusal, never INTERNAL', async () => {
    const dir = copy();
    const { unarmor, armor, enums } = await import('openpgp');
    const bin = (await unarmor(readFileSync(join(dir, 'signatures/01.asc'), 'utf8'))).data as Uint8Array;
    writeFileSync(join(dir, 'signatures/02.asc'), armor(enums.armor.signature, withVersion(bin, 3)));
    const o = await verifyChain([dir, '--key', alicePub], { json: true });
    expectOk(o);
    expect(o.result).toMatchObject({ refusedSignatures: [{ code: 'PACKET_VERSION' }] });
    const alone = copy();
    writeFileSync(join(alone, 'signatures/01.asc'), armor(enums.armor.signature, withVersion(bin, 3)));
    const f = await verifyChain([alone, '--key', alicePub], { json: true });
    expectFailure(f, 'THRESHOLD_NOT_MET');
    expect(f.human.code).not.toBe(EXIT.INTERNAL);
  });
});
