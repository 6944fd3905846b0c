/**
 * The auditor's single-file verifier: built from the source by
 * scripts/build-verifier.mjs, copied ALONE into an empty directory (no
 * node_modules above it, no compiler, no SQLite), and run with `node`. For
 * each bundle, good or tampered, it must give exactly what
 * `logvm verify-chain BUNDLE` gives: stdout, stderr, exit status, with and
 * without --json.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, callService, logvm, run, tempDir, type RunResult } from '../helpers.js';
import { EXIT, copyBundle, gpgHome, helloMake, logvmOk, readRecords, writeRecords, type GpgHome } from '../seal/util.js';

const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const REF = 'build-vm/hello-v';
const tmp = tempDir('appendlog-verifier-');
const db = join(tmp.dir, 'logs.db');
const auditorDir = join(tmp.dir, 'auditor'); // the verifier, alone
const work = join(tmp.dir, 'bundles');
const verifier = join(auditorDir, `appendlog-verify-${VERSION}.cjs`);
let signer: GpgHome;
let other: GpgHome;
let pub: string;
let otherPub: string;
let good: string;

beforeAll(async () => {
  const built = join(tmp.dir, 'build');
  const b = spawnSync(process.execPath, [join(ROOT, 'scripts/build-verifier.mjs'), built], { encoding: 'utf8' });
  expect(b.status, b.stderr).toBe(0);
  mkdirSync(auditorDir);
  copyFileSync(join(built, `appendlog-verify-${VERSION}.cjs`), verifier);
  mkdirSync(work);

  signer = gpgHome();
  other = gpgHome();
  const fpr = await signer.genKey('Release <release@example.org>', 'ed25519');
  const ofpr = await other.genKey('Other <other@example.org>', 'ed25519');
  pub = await signer.exportPublic(fpr, join(work, 'release.asc'));
  otherPub = await other.exportPublic(ofpr, join(work, 'other.asc'));
  const r = await callService('build-vm', 'hello-v', db, { input: await helloMake(tmp.dir) });
  expect(r.code, r.stderr).toBe(0);
  await logvmOk(['seal', REF, '--signer', 'gpg:release@example.org'], { db, env: signer.env });
  good = join(work, 'good');
  // Version 1 (entries.jsonl), which the tamper cases edit; the default form and an archive are checked below.
  await logvmOk(['export', REF, '--out', good, '--bundle-version', '1'], { db });
  await logvmOk(['export', REF, '--out', join(work, 'default')], { db });
  await logvmOk(['export', REF, '--out', join(work, 'good.tar.gz')], { db });
}, 120_000);

afterAll(async () => {
  await signer.cleanup();
  await other.cleanup();
  tmp.cleanup();
});

/** The single file, from the empty directory, with no NODE_PATH or NODE_OPTIONS to lean on. */
function single(args: string[]): Promise<RunResult> {
  return run(process.execPath, [verifier, ...args], { cwd: auditorDir, env: { NODE_PATH: undefined, NODE_OPTIONS: undefined } });
}

async function same(args: string[]): Promise<RunResult> {
  const [a, b] = await Promise.all([single(args), logvm(['verify-chain', ...args], { cwd: work })]);
  expect(a.stdout.toString('utf8')).toBe(b.stdout.toString('utf8'));
  expect(a.stderr).toBe(b.stderr);
  expect(a.code).toBe(b.code);
  return a;
}

describe('appendlog-verify-VERSION.cjs, alone in an empty directory', () => {
  it('has nothing beside it: no node_modules in its directory or any parent', () => {
    expect(readdirSync(auditorDir)).toEqual([`appendlog-verify-${VERSION}.cjs`]);
    for (let d = auditorDir; ; d = dirname(d)) {
      expect(existsSync(join(d, 'node_modules')), `${d}/node_modules`).toBe(false);
      if (dirname(d) === d) break;
    }
    // No SQLite and no native addon inside: it is plain JavaScript.
    const text = readFileSync(verifier, 'utf8');
    expect(text.startsWith('#!/usr/bin/env node\n')).toBe(true);
    expect(text).not.toContain('better_sqlite3.node');
  });

  it('--version prints the release version', async () => {
    const r = await single(['--version']);
    expect(r.code).toBe(0);
    expect(r.stdout.toString('utf8').trim()).toBe(VERSION);
  });

  it('a good bundle: OK, exit 0, the same output as logvm verify-chain (text and --json)', async () => {
    const r = await same([good, '--key', pub]);
    expect(r.code).toBe(EXIT.OK);
    expect(r.stdout.toString('utf8')).toMatch(/^OK bundle build-vm\/hello-v: chain intact and sealed/);
    const j = await same([good, '--key', pub, '--json']);
    expect(JSON.parse(j.stdout.toString('utf8'))).toMatchObject({ ok: true, log: REF, state: 'sealed' });
  });

  it('the default bundle form and a .tar.gz archive: OK, the same output as logvm verify-chain', async () => {
    expect((await same([join(work, 'default'), '--key', pub])).code).toBe(EXIT.OK);
    expect((await same([join(work, 'good.tar.gz'), '--key', pub])).code).toBe(EXIT.OK);
  });

  it('a changed line: CHAIN_HASH_MISMATCH naming the seq, as logvm verify-chain', async () => {
    const bad = copyBundle(good, join(work, 'changed-line'));
    const recs = readRecords(bad);
    const i = recs.findIndex((x) => x.kind === 'line' && typeof x.text === 'string' && x.text.length > 3);
    recs[i] = { ...recs[i]!, text: `${recs[i]!.text as string}X` };
    writeRecords(bad, recs);
    const r = await same([bad, '--key', pub]);
    expect(r.code).toBe(EXIT.CHAIN_HASH_MISMATCH);
    expect(r.stderr).toContain(`FAIL: CHAIN_HASH_MISMATCH:`);
    expect(r.stderr).toMatch(new RegExp(`seq ${recs[i]!.seq}\\b`));
    await same([bad, '--key', pub, '--json']);
  });

  it('an edited manifest: SIGNATURE_INVALID, as logvm verify-chain', async () => {
    const bad = copyBundle(good, join(work, 'edited-manifest'));
    const m = readFileSync(join(bad, 'manifest.json'), 'utf8');
    writeFileSync(join(bad, 'manifest.json'), m.replace('"name":"hello-v"', '"name":"hello-w"'));
    const r = await same([bad, '--key', pub]);
    expect(r.code).toBe(EXIT.SIGNATURE_INVALID);
  });

  it('a cut tail: the same failure code and message as logvm verify-chain', async () => {
    const bad = copyBundle(good, join(work, 'cut'));
    writeRecords(bad, readRecords(bad).slice(0, -3));
    const r = await same([bad, '--key', pub]);
    expect(r.code).not.toBe(EXIT.OK);
    expect(r.stderr).toMatch(/FAIL: [A-Z_]+:/);
  });

  it('the wrong key and a threshold above the signatures: SIGNATURE_UNTRUSTED, THRESHOLD_NOT_MET', async () => {
    expect((await same([good, '--key', otherPub])).code).toBe(EXIT.SIGNATURE_UNTRUSTED);
    expect((await same([good, '--key', pub, '--key', otherPub, '--threshold', '2'])).code).toBe(EXIT.THRESHOLD_NOT_MET);
  });

  it('no --key: USAGE, as logvm verify-chain', async () => {
    expect((await same([good])).code).toBe(EXIT.USAGE);
  });

  it('a path that is not a bundle directory: MALFORMED_BUNDLE, never a store look-up', async () => {
    const r = await single([join(work, 'no-such-bundle'), '--key', pub]);
    expect(r.code).toBe(EXIT.MALFORMED_BUNDLE);
    expect(r.stderr).toBe(`logvm verify-chain: FAIL: MALFORMED_BUNDLE: ${JSON.stringify(join(work, 'no-such-bundle'))} is not a bundle directory\n`);
    const s = await single(['build-vm/hello-v', '--key', pub, '--db', db]);
    expect(s.code).toBe(EXIT.USAGE);
  });
});
