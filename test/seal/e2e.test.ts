/**
 * End to end: a real build's output goes through rpc/qubes.AppendLog into the
 * store, `logvm seal` signs it with real GnuPG (standing in for Split-GPG),
 * `logvm export` writes the bundle, and an auditor checks it twice: with
 * `logvm verify-chain` and with nothing but plain `gpg --verify`.
 */
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callService, jsonLines, logvm, tempDir } from '../helpers.js';
import {
  EXIT,
  copyBundle,
  expectFailure,
  expectOk,
  gpgHome,
  helloMake,
  logvmOk,
  readRecords,
  signerScript,
  verifyChain,
  writeRecords,
  type GpgHome,
} from './util.js';

const VM = 'build-vm';
const NAME = 'hello-1';
const REF = `${VM}/${NAME}`;
const UID = 'Release Signer <release@example.org>';
const EMAIL = 'release@example.org';

const tmp = tempDir('appendlog-seal-e2e-');
const db = join(tmp.dir, 'logs.db');
const bundle = join(tmp.dir, 'bundle');
const pub = join(tmp.dir, 'release.pub.asc');
let gpg: GpgHome;
let auditor: GpgHome;
let fpr: string;
let makeOutput: Buffer;
let sealJson: { ok: boolean; manifest: Record<string, unknown>; signedBy: string[] };

beforeAll(async () => {
  gpg = gpgHome();
  auditor = gpgHome();
  fpr = await gpg.genKey(UID, 'ed25519');
  await gpg.exportPublic(fpr, pub);
  await auditor.importKey(pub);

  makeOutput = await helloMake(tmp.dir);
  const r = await callService(VM, NAME, db, { input: makeOutput });
  expect(r.code, r.stderr).toBe(0);
  expect(jsonLines(r.stdout)[0]).toMatchObject({ type: 'receipt', log: REF });

  const sealed = await logvmOk(['seal', REF, '--signer', `gpg:${EMAIL}`, '--json'], { db, env: gpg.env });
  sealJson = JSON.parse(sealed.stdout.toString('utf8')) as typeof sealJson;
  await logvmOk(['export', REF, '--out', bundle, '--bundle-version', '1'], { db });
});

afterAll(async () => {
  await gpg.cleanup();
  await auditor.cleanup();
  tmp.cleanup();
});

describe('when a real make output is logged, sealed with gpg and exported', () => {
  it('the make output is the real build (compiler call, program output, stderr warning)', () => {
    const text = makeOutput.toString('utf8');
    expect(text).toContain('hello.c');
    expect(text).toContain('Hello from the build VM');
    expect(text).toContain('this line went to stderr');
    expect(text).toContain('tests passed');
  });

  it('the seal names the signing key and a manifest ending in the seal entry', () => {
    expect(sealJson.ok).toBe(true);
    expect(sealJson.signedBy.length).toBe(1);
    expect(fpr.endsWith(sealJson.signedBy[0]!)).toBe(true);
    expect(sealJson.manifest).toMatchObject({ format: 'appendlog-seal/1', vm: VM, name: NAME, sealIndex: 1, prevSeal: null, sessions: 1 });
  });

  it('writes manifest.json, signatures/01.asc, entries.jsonl and README.txt', () => {
    expect(readdirSync(bundle).sort()).toEqual(['README.txt', 'entries.jsonl', 'manifest.json', 'signatures']);
    expect(readdirSync(join(bundle, 'signatures'))).toEqual(['01.asc']);
    expect(readFileSync(join(bundle, 'signatures/01.asc'), 'utf8')).toMatch(/^-----BEGIN PGP SIGNATURE-----/);
    expect(existsSync(`${bundle}.partial`)).toBe(false);
  });

  it('manifest.json holds exactly the manifest the seal signed (canonical JSON and a newline)', () => {
    const bytes = readFileSync(join(bundle, 'manifest.json'), 'utf8');
    expect(bytes.endsWith('}\n')).toBe(true);
    expect(JSON.parse(bytes)).toEqual(sealJson.manifest);
  });

  it('entries.jsonl holds every line of the make output, byte for byte, then the seal entry', () => {
    const recs = readRecords(bundle);
    const lines = recs.filter((r) => r.kind === 'line').map((r) => r.text);
    expect(`${lines.join('\n')}\n`).toBe(makeOutput.toString('utf8'));
    expect(recs.map((r) => r.seq)).toEqual(recs.map((_, i) => i + 1));
    expect(recs.at(-1)).toMatchObject({ kind: 'seal', session: 0, hash: sealJson.manifest.head });
  });

  it('verify-chain BUNDLE --key pub.asc says OK (exit 0) with entries, head, signer fingerprint and user ID, and seal time', async () => {
    const o = await verifyChain([bundle, '--key', pub], { json: true });
    expectOk(o);
    const m = sealJson.manifest;
    const lineCount = makeOutput.toString('utf8').split('\n').length - 1;
    expect(o.result).toMatchObject({
      ok: true,
      source: 'bundle',
      log: REF,
      vm: VM,
      name: NAME,
      state: 'sealed',
      entries: m.entries,
      lines: lineCount,
      head: m.head,
      sealed: m.sealed,
      sealIndex: 1,
      signaturesChecked: true,
      threshold: 1,
      signatures: [{ fingerprint: fpr, userIds: [UID], file: 'signatures/01.asc' }],
    });
    const human = o.human.stdout.toString('utf8');
    expect(human).toContain(`OK bundle ${REF}: chain intact and sealed`);
    expect(human).toContain(fpr);
    expect(human).toContain(UID);
    expect(human).toContain(String(m.head));
    expect(human).toContain(new Date(m.sealed as number).toISOString());
  });

  it('plain gpg, knowing only the exported public key, verifies signatures/01.asc over manifest.json', async () => {
    const r = await auditor.verify(join(bundle, 'signatures/01.asc'), join(bundle, 'manifest.json'));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.toString('utf8')).toMatch(new RegExp(`^\\[GNUPG:\\] VALIDSIG ${fpr} `, 'm'));
    expect(r.stderr).toContain(`Good signature from "${UID}"`);
  });

  it('verify-chain --db on the store says OK and sealed, with the signature checked against the key', async () => {
    const r = await logvm(['verify-chain', '--store', REF, '--json', '--key', pub], { db });
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout.toString('utf8'))).toMatchObject({ ok: true, source: 'store', state: 'sealed', head: sealJson.manifest.head, signatures: [{ fingerprint: fpr }] });
  });
});

describe('when the exported bundle is then tampered with', () => {
  it('a changed "tests passed" line fails with CHAIN_HASH_MISMATCH (exit 10) naming its seq', async () => {
    const dir = copyBundle(bundle, join(tmp.dir, 'tampered-line'));
    const recs = readRecords(dir);
    const i = recs.findIndex((r) => r.text === 'tests passed');
    expect(i).toBeGreaterThan(0);
    recs[i] = { ...recs[i]!, text: 'tests FAILED' };
    writeRecords(dir, recs);
    expectFailure(await verifyChain([dir, '--key', pub], { json: true }), 'CHAIN_HASH_MISMATCH', recs[i]!.seq);
  });

  it('an edited manifest.json fails with SIGNATURE_INVALID (exit 31), and plain gpg reports a BAD signature', async () => {
    const dir = copyBundle(bundle, join(tmp.dir, 'tampered-manifest'));
    const path = join(dir, 'manifest.json');
    const text = readFileSync(path, 'utf8');
    const edited = text.replace(`"sessions":1`, `"sessions":2`);
    expect(edited).not.toBe(text);
    writeFileSync(path, edited);
    expectFailure(await verifyChain([dir, '--key', pub]), 'SIGNATURE_INVALID');
    const r = await auditor.verify(join(dir, 'signatures/01.asc'), path);
    expect(r.code).not.toBe(0);
    expect(r.stdout.toString('utf8')).toMatch(/^\[GNUPG:\] BADSIG /m);
  });
});

describe('when sealing through the split-gpg signer', () => {
  const NAME2 = 'hello-2';
  const REF2 = `${VM}/${NAME2}`;
  const bundle2 = join(tmp.dir, 'bundle-split');
  let wrapper: ReturnType<typeof signerScript>;
  let seal: Awaited<ReturnType<typeof logvm>>;

  beforeAll(async () => {
    const r = await callService(VM, NAME2, db, { input: makeOutput });
    expect(r.code, r.stderr).toBe(0);
    // A stand-in for qubes-gpg-client-wrapper: accepts exactly the options
    // Split-GPG's server allows, keeps a copy of stdin, and execs real gpg.
    wrapper = signerScript(
      tmp.dir,
      'qubes-gpg-client-wrapper',
      `
if [ "$#" -ne 9 ] || [ "$1" != --batch ] || [ "$2" != -u ] || [ "$3" != '${fpr}' ] || [ "$4" != --digest-algo ] \\
   || [ "$5" != SHA512 ] || [ "$6" != -a ] || [ "$7" != -b ] || [ "$8" != --status-fd ] || [ "$9" != 2 ]; then
  echo "qubes-gpg-client-wrapper: option not allowed: $*" >&2
  exit 3
fi
tee '${tmp.dir}/split-stdin' | gpg "$@"`,
    );
    seal = await logvm(['seal', REF2, '--signer', `split-gpg:${fpr}`], { db, env: { ...gpg.env, APPENDLOG_SPLIT_GPG: wrapper.path } });
  });

  it('seals (exit 0) after exactly one call with only --batch -u KEYID --digest-algo SHA512 -a -b --status-fd 2', () => {
    expect(seal.code, seal.stderr).toBe(0);
    expect(seal.stdout.toString('utf8')).toMatch(new RegExp(`^sealed ${REF2}: seal #2, `));
    expect(wrapper.calls()).toEqual([`--batch -u ${fpr} --digest-algo SHA512 -a -b --status-fd 2`]);
  });

  it('the wrapper got the manifest bytes on stdin, and the exported bundle verifies', async () => {
    await logvmOk(['export', REF2, '--out', bundle2], { db });
    expect(readFileSync(join(tmp.dir, 'split-stdin'))).toEqual(readFileSync(join(bundle2, 'manifest.json')));
    const o = await verifyChain([bundle2, '--key', pub, '--previous', bundle], { json: true });
    expectOk(o);
    expect(o.result).toMatchObject({ log: REF2, sealIndex: 2, signatures: [{ fingerprint: fpr, userIds: [UID] }] });
    const g = await auditor.verify(join(bundle2, 'signatures/01.asc'), join(bundle2, 'manifest.json'));
    expect(g.code, g.stderr).toBe(0);
  });

  it('a key spec that looks like an option fails with USAGE (exit 2) and never reaches the wrapper', async () => {
    const r = await callService(VM, 'hello-3', db, { input: 'x\n' });
    expect(r.code, r.stderr).toBe(0);
    const before = wrapper.calls().length;
    for (const spec of ['split-gpg:--export-secret-keys', 'split-gpg:-o/tmp/x', 'split-gpg:a b']) {
      const s = await logvm(['seal', `${VM}/hello-3`, '--signer', spec], { db, env: { ...gpg.env, APPENDLOG_SPLIT_GPG: wrapper.path } });
      expect(s.code, `${spec}: ${s.stderr}`).toBe(EXIT.USAGE);
    }
    expect(wrapper.calls().length).toBe(before);
  });
});
