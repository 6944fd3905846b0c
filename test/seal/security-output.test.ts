/**
 * Security: nothing hostile reaches the auditor's terminal, and the OK
 * report says what an auditor must see. One case per attack: a key whose
 * user ID carries escape sequences and invisible characters, a manifest whose
 * JSON error would quote hostile bytes, sessions that did not end with eof,
 * and artifact claims (what they prove; several logs claiming one file).
 */
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FRAME_PROTOCOL, FrameType, claimBytes, encodeFrame } from '../../packages/shared/src/index.js';
import { callService, logvm, tempDir } from '../helpers.js';
import { EXIT, copyBundle, expectOk, gpgHome, logvmOk, verifyChain, type GpgHome } from './util.js';

const tmp = tempDir('appendlog-sec-output-');
let gpg: GpgHome;
let fpr: string;
let pub: string;
const db = join(tmp.dir, 'out.db');
const bundle = join(tmp.dir, 'bundle');

/** ESC [31m, RLO, zero-width space, a tag character, U+2028, DEL and a C1 CSI in one user ID. */
const HOSTILE_UID = 'Evil \x1b[31mRed\u202e gnp.exe\u200b\u{e0041}\u2028x\x7fy\u009b2J <evil@example.org>';

/** Every code point that must not reach a terminal raw. */
const RAW_FORBIDDEN = /[\x00-\x08\x0a-\x1f\x7f-\x9f\u200b\u202e\u2028\u{e0041}]/u;

beforeAll(async () => {
  gpg = gpgHome();
  fpr = await gpg.genKey(HOSTILE_UID, 'ed25519');
  pub = await gpg.exportPublic(fpr, join(tmp.dir, 'pub.asc'));
  // Session 1: ends with eof. Session 2: cut by the per-log quota.
  expect((await callService('build-vm', 'rel-1', db, { input: 'cc -c a.c\n' })).code).toBe(0);
  const flood = Buffer.alloc(2048 * 1024, `${'x'.repeat(127)}\n`);
  await callService('build-vm', 'rel-1', db, { input: flood, env: { APPENDLOG_QUOTA_LOG_MIB: '1' } });
  await logvmOk(['seal', 'build-vm/rel-1', '--signer', `gpg:${fpr}`], { db, env: gpg.env });
  await logvmOk(['export', 'build-vm/rel-1', '--out', bundle], { db });
}, 120_000);

afterAll(async () => {
  await gpg.cleanup();
  tmp.cleanup();
});

describe('when a signing key carries a hostile user ID', () => {
  it('verify-chain shows it escaped (\\e, \\u202e, \\u200b, \\u{e0041}, \\u2028, \\x7f, \\u009b), never raw', async () => {
    const r = await logvm(['verify-chain', bundle, '--key', pub]);
    expect(r.code, r.stderr).toBe(0);
    const out = r.stdout.toString('utf8').replace(/\n/g, ''); // the report's own newlines
    expect(out).not.toMatch(RAW_FORBIDDEN);
    for (const e of ['\\e[31m', '\\u202e', '\\u200b', '\\u{e0041}', '\\u2028', '\\x7f', '\\u009b']) expect(out).toContain(e);
  });
});

describe('when manifest.json is not valid JSON and holds hostile bytes', () => {
  it('MANIFEST_INVALID names the position only: no byte of the input is quoted', async () => {
    const dir = copyBundle(bundle, join(tmp.dir, 'bad-json'));
    writeFileSync(join(dir, 'manifest.json'), '{"format":SECRET\x1b]0;pwned\x07}\n');
    const r = await logvm(['verify-chain', dir, '--key', pub]);
    expect(r.code).toBe(EXIT.MANIFEST_INVALID);
    // (The strict reader of FORMAT.md 5.1 adds why, in its own words, never the input's.)
    expect(r.stderr).toMatch(/not valid JSON \(syntax error( at character \d+)?(: [^)]*)?\)/);
    expect(r.stderr).not.toContain('SECRET');
    expect(r.stderr).not.toContain('pwned');
  });
});

describe('when a session did not close with eof', () => {
  it('the OK report names it with its reason and seq, without --json', async () => {
    const o = await verifyChain([bundle, '--key', pub], { json: true });
    expectOk(o);
    expect(o.human.stdout.toString('utf8')).toMatch(/sessions not closed by eof: 1\n\s+session 2: quota \(seq \d+\)/);
    expect(o.result).toMatchObject({ notEof: [{ session: 2, reason: 'quota' }] });
  });
});

describe('when an artifact is checked (--artifact)', () => {
  const art = join(tmp.dir, 'release.bin');
  const sdb = join(tmp.dir, 'art.db');
  beforeAll(async () => {
    writeFileSync(art, 'the release\n');
    const sha256 = createHash('sha256').update('the release\n').digest('hex');
    const framed = Buffer.concat([
      encodeFrame(FrameType.HELLO, claimBytes({ claim: 'hello', protocol: FRAME_PROTOCOL, sender: 'test/1', hostname: 'b', command: ['make'] })),
      encodeFrame(FrameType.CLAIM, claimBytes({ claim: 'artifact', path: 'out/release.bin', sha256, size: 12 })),
      encodeFrame(FrameType.STDOUT, Buffer.from('built\n')),
      encodeFrame(FrameType.END),
    ]);
    for (const name of ['rel-a', 'rel-b']) {
      const r = await callService('build-vm', `_framed.${name}`, sdb, { input: framed });
      expect(r.code, r.stderr).toBe(0);
      await logvmOk(['seal', `build-vm/${name}`, '--signer', `gpg:${fpr}`], { db: sdb, env: gpg.env });
    }
  }, 60_000);

  it('says it is the build VM\'s claim, attested only as to source VM and time', async () => {
    const r = await logvm(['verify-chain', '--store', 'build-vm/rel-a', '--db', sdb, '--artifact', art]);
    expect(r.code, r.stderr).toBe(0);
    const out = r.stdout.toString('utf8');
    expect(out).toContain("the build VM build-vm claimed this file's hash as an output of log build-vm/rel-a");
    expect(out).toContain('the log VM attests the source VM and the time');
    expect(out).not.toMatch(/was built by/);
  });

  it('says so when several logs claim the same file', async () => {
    const r = await logvm(['verify-chain', '--store', 'build-vm/rel-a', '--db', sdb, '--artifact', art, '--json']);
    expect(JSON.parse(r.stdout.toString('utf8'))).toMatchObject({ artifacts: [{ otherLogs: ['build-vm/rel-b'] }] });
    const h = await logvm(['verify-chain', '--store', 'build-vm/rel-a', '--db', sdb, '--artifact', art]);
    expect(h.stdout.toString('utf8')).toContain('also claimed by 1 other sealed log(s) in this store: build-vm/rel-b');
  });
});
