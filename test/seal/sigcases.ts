/**
 * Signature cases for the trust rules (docs/FORMAT.md 6.4), made by real gpg
 * in a throwaway GNUPGHOME: expired keys, revoked keys with reasons,
 * SHA-1 signatures, back-dated and future signatures (--faked-system-time),
 * subkeys. Shared by security-signatures.test.ts and the gpg-recipe
 * agreement test.
 *
 * Timeline (seconds): keys are made at BASE; the "manifest" says it was
 * sealed at SEALED; verification happens at NOW. Signatures are made with
 * gpg's clock frozen at the time each case names.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { canonicalJson } from '../../packages/shared/src/index.js';
import { run } from '../helpers.js';
import { gpgHome, type GpgHome } from './util.js';

const DAY = 86400;
export const BASE = Math.floor(Date.now() / 1000) - 40 * DAY;
export const SEALED = BASE + 10 * DAY;
export const NOW = BASE + 20 * DAY;

/**
 * The cases' names, in the order makeFixture makes them: test names are
 * fixed before the fixture (real gpg, in beforeAll) exists, so the tests
 * list them from here, and makeFixture checks it made exactly these.
 */
export const CASE_NAMES = [
  'a SHA-512 signature made after the seal by a valid key',
  'a signature 4 minutes before the seal (within the 5-minute skew)',
  'a back-dated signature (a day before the seal)',
  'a signature from the future (an hour after verification)',
  'a SHA-1 signature',
  'a SHA-224 signature',
  'a signature by a key that had expired when it signed',
  'a signature made before the key expired, checked after it expired',
  'a signature by a key later revoked as compromised (reason 2)',
  'a signature by a key later revoked without a reason (reason 0)',
  'a signature made before the key was superseded (reason 1)',
  'a signature made after the key was retired (reason 3)',
  'a signature by a signing subkey',
  'a signature over other bytes (the manifest was changed)',
  'a signature by a key that is not trusted',
] as const;

export type Expect = 'counted' | 'bad' | string; // a refusal code

export interface SigCase {
  name: string;
  /** Signature file bytes (armored). */
  sig: Buffer;
  /** Certificate (primary fingerprint) it is by, or '' for a foreign key. */
  cert: string;
  expect: Expect;
}

export interface Fixture {
  gpg: GpgHome;
  dir: string;
  /** The manifest bytes every case signs. */
  manifest: Buffer;
  /** Armored public keys of every trusted certificate, concatenated. */
  trustedKeys: Buffer;
  fpr: Record<string, string>;
  cases: SigCase[];
}

const at = (t: number): string[] => ['--faked-system-time', `${t}!`];

export async function makeFixture(dir: string): Promise<Fixture> {
  const gpg = gpgHome('appendlog-sigcases-');
  const g = async (args: string[], input?: string | Buffer) => {
    const r = await gpg.gpg(['--pinentry-mode', 'loopback', '--passphrase', '', ...args], input);
    expect(r.code, `gpg ${args.join(' ')}: ${r.stderr}`).toBe(0);
    return r;
  };
  const fprOf = async (uid: string, sub = false): Promise<string> => {
    const out = (await g(['--with-colons', '--list-keys', uid])).stdout.toString('utf8');
    const fprs = [...out.matchAll(/^fpr:+([0-9A-F]{40}):/gm)].map((m) => m[1]!);
    return sub ? fprs[1]! : fprs[0]!;
  };
  const key = async (who: string, algo = 'ed25519'): Promise<string> => {
    await g([...at(BASE), '--quick-gen-key', `${who} <${who}@example.org>`, algo, 'sign', 'never']);
    return fprOf(`${who}@example.org`);
  };
  mkdirSync(dir, { recursive: true });
  const manifest = Buffer.from(`${canonicalJson({ format: 'appendlog-seal/1', name: 'rel', sealed: SEALED * 1000, vm: 'build' })}\n`);
  const mpath = join(dir, 'manifest.json');
  writeFileSync(mpath, manifest);
  const sign = async (signer: string, t: number, digest = 'SHA512', data = mpath): Promise<Buffer> => {
    const out = join(dir, `sig-${Math.random().toString(36).slice(2)}.asc`);
    await g([...at(t), '--allow-weak-digest-algos', '--yes', '-u', `${signer}!`, '--digest-algo', digest, '-a', '-b', '-o', out, data]);
    return readFileSync(out);
  };
  /** gpg's menu: 0 none, 1 compromised, 2 superseded, 3 retired. */
  const revoke = async (fpr: string, t: number, menu: '0' | '1' | '2' | '3'): Promise<void> => {
    // --gen-revoke refuses --batch; its prompts are answered on --command-fd.
    const r = await run('gpg', ['--no-tty', '--pinentry-mode', 'loopback', '--passphrase', '', ...at(t), '--command-fd', '0', '-a', '--gen-revoke', fpr], { env: gpg.env, input: `y\n${menu}\ntest\n\ny\n` });
    expect(r.code, r.stderr).toBe(0);
    await g(['--import'], r.stdout);
  };

  const fpr: Record<string, string> = {};
  for (const who of ['alice', 'carol', 'erin', 'frank', 'nora', 'grace', 'heidi', 'ivan', 'judy']) fpr[who] = await key(who);
  fpr.mallory = await key('mallory');
  // Ivan signs with a subkey.
  await g([...at(BASE), '--quick-add-key', fpr.ivan!, 'ed25519', 'sign', 'never']);
  const ivanSub = await fprOf('ivan@example.org', true);

  const cases: SigCase[] = [];
  const add = (name: string, sig: Buffer, cert: string, e: Expect) => cases.push({ name, sig, cert, expect: e });

  add('a SHA-512 signature made after the seal by a valid key', await sign(fpr.alice!, SEALED + 60), fpr.alice!, 'counted');
  add('a signature 4 minutes before the seal (within the 5-minute skew)', await sign(fpr.alice!, SEALED - 240, 'SHA256'), fpr.alice!, 'counted');
  add('a back-dated signature (a day before the seal)', await sign(fpr.alice!, SEALED - DAY), fpr.alice!, 'SIG_BACKDATED');
  add('a signature from the future (an hour after verification)', await sign(fpr.alice!, NOW + 3600), fpr.alice!, 'SIG_FUTURE');
  add('a SHA-1 signature', await sign(fpr.alice!, SEALED + 120, 'SHA1'), fpr.alice!, 'HASH_WEAK');
  add('a SHA-224 signature', await sign(fpr.alice!, SEALED + 180, 'SHA224'), fpr.alice!, 'HASH_WEAK');
  // Carol: expiry set (at BASE+1d) to BASE+5d, before she signed at SEALED.
  const carolSig = await sign(fpr.carol!, SEALED + 60);
  await g([...at(BASE + DAY), '--quick-set-expire', fpr.carol!, `seconds=${4 * DAY}`]);
  add('a signature by a key that had expired when it signed', carolSig, fpr.carol!, 'KEY_EXPIRED');
  // Erin: expires at BASE+15d, after signing at SEALED, before NOW: still counts.
  const erinSig = await sign(fpr.erin!, SEALED + 60);
  await g([...at(BASE + DAY), '--quick-set-expire', fpr.erin!, `seconds=${14 * DAY}`]);
  add('a signature made before the key expired, checked after it expired', erinSig, fpr.erin!, 'counted');
  // Frank: revoked as compromised after signing: never counts.
  const frankSig = await sign(fpr.frank!, SEALED + 60);
  await revoke(fpr.frank!, SEALED + DAY, '1');
  add('a signature by a key later revoked as compromised (reason 2)', frankSig, fpr.frank!, 'KEY_COMPROMISED');
  const noraSig = await sign(fpr.nora!, SEALED + 60);
  await revoke(fpr.nora!, SEALED + DAY, '0');
  add('a signature by a key later revoked without a reason (reason 0)', noraSig, fpr.nora!, 'KEY_COMPROMISED');
  // Grace: superseded a day after signing: the earlier signature counts.
  const graceSig = await sign(fpr.grace!, SEALED + 60);
  await revoke(fpr.grace!, SEALED + DAY, '2');
  add('a signature made before the key was superseded (reason 1)', graceSig, fpr.grace!, 'counted');
  // Heidi: signed two days after the seal, but the key was retired one day after it.
  const heidiSig = await sign(fpr.heidi!, SEALED + 2 * DAY);
  await revoke(fpr.heidi!, SEALED + DAY, '3');
  add('a signature made after the key was retired (reason 3)', heidiSig, fpr.heidi!, 'KEY_REVOKED');
  add('a signature by a signing subkey', await sign(ivanSub, SEALED + 60), fpr.ivan!, 'counted');
  add('a signature over other bytes (the manifest was changed)', await sign(fpr.judy!, SEALED + 60, 'SHA512', await other()), fpr.judy!, 'bad');
  add('a signature by a key that is not trusted', await sign(fpr.mallory!, SEALED + 60), '', 'KEY_UNKNOWN');

  async function other(): Promise<string> {
    const p = join(dir, 'other.json');
    writeFileSync(p, Buffer.concat([manifest, Buffer.from(' ')]));
    return p;
  }

  expect(cases.map((c) => c.name)).toEqual([...CASE_NAMES]);

  const trusted = ['alice', 'carol', 'erin', 'frank', 'nora', 'grace', 'heidi', 'ivan', 'judy'].map((w) => fpr[w]!);
  const trustedKeys = (await g(['--armor', '--export', ...trusted])).stdout;
  // Sanity: every certificate is in the export (one armored block, several keys).
  expect(trustedKeys.toString('utf8').match(/BEGIN PGP PUBLIC KEY BLOCK/g)).toHaveLength(1);
  return { gpg, dir, manifest, trustedKeys, fpr, cases };
}

/** A v4 signature packet from armored bytes, with its version byte set to `v` (a v3/v5/unknown packet). */
export function withVersion(binarySig: Uint8Array, v: number): Buffer {
  const b = Buffer.from(binarySig);
  // New-format or old-format header: find the body start.
  const h = b[0]!;
  let body: number;
  if (h & 0x40) body = b[1]! < 192 ? 2 : b[1]! < 224 ? 3 : 6;
  else body = 1 + [1, 2, 4][h & 3]!;
  b[body] = v;
  return b;
}
