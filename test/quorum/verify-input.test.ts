/**
 * `logsend --verify-input FILE=SIG --keyring KEYS`: every source is checked
 * against its detached signature in the build VM before the build starts;
 * each result is a claim in the log; any failure stops everything with exit
 * 65 (INPUT_UNVERIFIED), the build never runs, and the failure is in the
 * log, in the sealed claims summary and in verify-chain's report.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { logvm, run, tempDir } from '../helpers.js';
import { EXIT, build, builder, logvmOk, person, pipeBuild, sourceRelease, type Builder, type Person } from './util.js';

const tmp = tempDir('appendlog-verify-input-');
let upstream: Person;
let mallory: Person;
let b: Builder;
let source: { tarball: string; sig: string };

interface Claim {
  claim: string;
  path?: string;
  code?: string;
  signer?: string;
  sha256?: string | null;
  reason?: string;
}

/** The claim entries of a log, from `logvm export` (docs/FORMAT.md 9.3). */
async function claimsOf(name: string): Promise<Claim[]> {
  const out = join(tmp.dir, `bundle-${name}`);
  await logvmOk(['seal', `${b.vm}/${name}`, '--signer', `gpg:${b.key.email}`], { db: b.db, env: b.key.gpg.env });
  await logvmOk(['export', `${b.vm}/${name}`, '--out', out, '--bundle-version', '1'], { db: b.db });
  return readFileSync(join(out, 'entries.jsonl'), 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as { kind: string; text: string })
    .filter((r) => r.kind === 'claim')
    .map((r) => JSON.parse(r.text) as Claim);
}

beforeAll(async () => {
  upstream = await person(tmp.dir, 'upstream');
  mallory = await person(tmp.dir, 'mallory');
  source = await sourceRelease(tmp.dir, upstream);
  b = await builder(tmp.dir, 1);
}, 120_000);

afterAll(async () => {
  for (const p of [upstream, mallory, b?.key]) await p?.gpg.cleanup();
  tmp.cleanup();
});

describe('when every source verifies', () => {
  it('sends input-verified claims with the signer, builds, and verify-chain counts the verified inputs by signer', async () => {
    const r = await build(b, 'good', { source, keyring: upstream.pub });
    expect(r.code, r.stderr).toBe(0);
    expect(existsSync(join(b.dir, 'dist/hello-1.0.tar.gz'))).toBe(true);
    const sha = (await run('sha256sum', [source.tarball])).stdout.toString().split(' ')[0];
    const claims = await claimsOf('good');
    expect(claims.find((c) => c.claim === 'input-verified')).toMatchObject({ path: 'hello-1.0-src.tar.gz', sha256: sha, signer: upstream.fingerprint.toLowerCase() });
    const v = await logvmOk(['verify-chain', join(tmp.dir, 'bundle-good'), '--key', b.key.pub]);
    const text = v.stdout.toString('utf8');
    expect(text).toContain("verified inputs: 1 checked against the build VM's keyring before the build");
    expect(text).toContain(`1 signed by ${upstream.fingerprint}`);
    expect(text).not.toContain('REJECTED');
  });
});

describe('when a source was modified after upstream signed it', () => {
  it('does not start the build, exits 65 INPUT_UNVERIFIED, and the failure is in the log and the sealed summary', async () => {
    const evil = join(tmp.dir, 'evil.tar.gz');
    const bytes = readFileSync(source.tarball);
    bytes[bytes.length - 9] = bytes[bytes.length - 9]! ^ 1; // the gzip CRC: a one-bit change of the tarball
    writeFileSync(evil, bytes);
    await run('rm', ['-rf', join(b.dir, 'dist')]);
    const r = await build(b, 'tampered', { source: { tarball: evil, sig: source.sig }, keyring: upstream.pub });
    expect(r.code).toBe(EXIT.INPUT_UNVERIFIED);
    expect(r.stderr).toContain('logsend: SIGNATURE_INVALID: hello-1.0-src.tar.gz: the signature by');
    expect(r.stderr).toContain('the build was not started');
    expect(r.stdout.toString(), 'make printed nothing: it never ran').toBe('');
    expect(existsSync(join(b.dir, 'dist')), 'no build output').toBe(false);
    const show = (await logvmOk(['show', `${b.vm}/tampered`], { db: b.db })).stdout.toString('utf8');
    expect(show).toContain('logsend: refusing to build: 1 of 1 input(s) failed verification');
    const claims = await claimsOf('tampered');
    expect(claims.find((c) => c.claim === 'input-rejected')).toMatchObject({ path: 'hello-1.0-src.tar.gz', code: 'SIGNATURE_INVALID' });
    expect(claims.some((c) => c.claim === 'exit'), 'no exit claim: the build did not run').toBe(false);
    const v = await logvm(['verify-chain', join(tmp.dir, 'bundle-tampered'), '--key', b.key.pub, '--json']);
    const summary = (JSON.parse(v.stdout.toString('utf8')) as { claims: { rejectedInputs: Claim[]; verifiedInputs: Claim[] } }).claims;
    expect(summary.verifiedInputs).toEqual([]);
    expect(summary.rejectedInputs).toEqual([expect.objectContaining({ code: 'SIGNATURE_INVALID', path: 'hello-1.0-src.tar.gz' })]);
    const t = (await logvm(['verify-chain', join(tmp.dir, 'bundle-tampered'), '--key', b.key.pub])).stdout.toString('utf8');
    expect(t).toContain('REJECTED inputs: 1 failed verification (the build was not started)');
  });
});

describe('when a source is signed by a key that is not in the keyring', () => {
  it('refuses it as SIGNATURE_UNTRUSTED, exit 65, build not started', async () => {
    const sig = join(tmp.dir, 'mallory.asc');
    await mallory.gpg.signDetached(mallory.email, source.tarball, sig);
    const r = await build(b, 'untrusted', { source: { tarball: source.tarball, sig }, keyring: upstream.pub });
    expect(r.code).toBe(EXIT.INPUT_UNVERIFIED);
    expect(r.stderr).toContain(`logsend: SIGNATURE_UNTRUSTED: hello-1.0-src.tar.gz: signed only by key(s) not in the keyring: ${mallory.fingerprint}`);
    expect((await claimsOf('untrusted')).find((c) => c.claim === 'input-rejected')).toMatchObject({ code: 'SIGNATURE_UNTRUSTED' });
  });
});

describe('when a signature file is missing or not a signature', () => {
  it('refuses it as SIGNATURE_MALFORMED in the log (missing file: also recorded)', async () => {
    writeFileSync(join(b.dir, 'notes.txt'), 'x\n');
    writeFileSync(join(b.dir, 'junk.asc'), 'not a signature\n');
    const r = await pipeBuild(b, 'malformed', 'x\n', ['--verify-input', 'notes.txt=junk.asc', '--verify-input', 'notes.txt=absent.asc', '--keyring', upstream.pub]);
    expect(r.code).toBe(EXIT.INPUT_UNVERIFIED);
    const rejected = (await claimsOf('malformed')).filter((c) => c.claim === 'input-rejected');
    expect(rejected.map((c) => c.code)).toEqual(['SIGNATURE_MALFORMED', 'SIGNATURE_MALFORMED']);
  });

  it('needs --keyring with --verify-input (USAGE, nothing sent)', async () => {
    const r = await pipeBuild(b, 'nokeyring', 'x\n', ['--verify-input', 'notes.txt=junk.asc']);
    expect(r.code).toBe(EXIT.USAGE);
    expect((await logvm(['show', `${b.vm}/nokeyring`], { db: b.db })).code).toBe(EXIT.LOG_NOT_FOUND);
  });
});
