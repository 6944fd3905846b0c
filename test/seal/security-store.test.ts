/**
 * Security and robustness of sealing in the store: what `logvm seal`,
 * `logvm export`, the service and `verify-chain --db` do when a log is in the
 * wrong state, when the signer fails, refuses or lies, and when someone with
 * write access to the SQLite file tampers with it after the seal (with the
 * real sqlite3 CLI, triggers dropped).
 *
 * Signers are real gpg with a throwaway GNUPGHOME, called through small
 * scripts set as APPENDLOG_GPG / APPENDLOG_SPLIT_GPG, which record each call.
 */
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callService, jsonLines, logvm, run, tempDir, type RunResult } from '../helpers.js';
import { EXIT, SQLITE3, expectFailure, expectOk, gpgHome, logvmOk, signerScript, verifyChain, type Code, type GpgHome } from './util.js';

const VM = 'build-vm';
const ALICE = 'Alice Release <alice@example.org>';
const BOB = 'Bob Release <bob@example.org>';

const tmp = tempDir('appendlog-seal-store-');
const db = join(tmp.dir, 'logs.db');
const alicePub = join(tmp.dir, 'alice.asc');
const bobPub = join(tmp.dir, 'bob.asc');
let gpg: GpgHome;
let alice: string;
let signer: ReturnType<typeof signerScript>;
let copies = 0;

interface Listed {
  vm: string;
  name: string;
  state: 'open' | 'sealed';
  entries: number;
  lines: number;
  head: string;
}

async function listed(store: string, name: string): Promise<Listed | undefined> {
  const r = await logvmOk(['list', '--json'], { db: store });
  return (JSON.parse(r.stdout.toString('utf8')) as Listed[]).find((l) => l.vm === VM && l.name === name);
}

async function append(store: string, name: string, text: string): Promise<RunResult> {
  return callService(VM, name, store, { input: text });
}

async function appendOk(store: string, name: string, text: string): Promise<void> {
  const r = await append(store, name, text);
  expect(r.code, r.stderr).toBe(0);
  expect(jsonLines(r.stdout)).toMatchObject([{ type: 'receipt' }]);
}

/** `logvm seal` through the recording gpg wrapper (or another signer command). */
function seal(store: string, name: string, opts: { command?: string; spec?: string; env?: Record<string, string> } = {}): Promise<RunResult> {
  return logvm(['seal', `${VM}/${name}`, '--signer', opts.spec ?? 'gpg:alice@example.org'], {
    db: store,
    env: { ...gpg.env, APPENDLOG_GPG: opts.command ?? signer.path, ...opts.env },
  });
}

/** The command failed with `code`, its exit status, and said so on stderr. */
function expectCode(r: RunResult, code: Code): void {
  expect(r.code, `exit status; stderr: ${r.stderr}`).toBe(EXIT[code]);
  expect(r.stderr).toContain(`${code}:`);
  expect(r.stderr).not.toMatch(/\n\s+at /);
}

/** A copy of the store as it is now, for one attack. */
function copyStore(): string {
  expect(existsSync(`${db}-wal`), 'the store was checkpointed when its last writer closed').toBe(false);
  const path = join(tmp.dir, `attack-${++copies}.db`);
  copyFileSync(db, path);
  return path;
}

async function sqliteOk(store: string, sql: string): Promise<string> {
  const r = await run(SQLITE3, ['-bail', store, sql]);
  expect(r.code, `sqlite3 ${sql}: ${r.stderr}`).toBe(0);
  return r.stdout.toString('utf8');
}

/** Drops every trigger of the store: the attacker's first step. */
async function dropTriggers(store: string): Promise<void> {
  const names = (await sqliteOk(store, "SELECT name FROM sqlite_master WHERE type = 'trigger'")).split('\n').filter((n) => n !== '');
  expect(names.length).toBeGreaterThan(0);
  await sqliteOk(store, names.map((n) => `DROP TRIGGER ${n};`).join(' '));
}

const lines = (tag: string, n: number): string => Array.from({ length: n }, (_, i) => `${tag} line ${i + 1}: cc -c file${i}.c\n`).join('');

beforeAll(async () => {
  gpg = gpgHome();
  alice = await gpg.genKey(ALICE, 'ed25519');
  const bob = await gpg.genKey(BOB, 'ed25519');
  await gpg.exportPublic(alice, alicePub);
  await gpg.exportPublic(bob, bobPub);
  signer = signerScript(tmp.dir, 'gpg-recording', 'exec gpg "$@"');

  // sealed-1 and sealed-2 are seals #1 and #2 of this store.
  for (const name of ['sealed-1', 'sealed-2']) {
    await appendOk(db, name, lines(name, 3));
    const r = await seal(db, name);
    expect(r.code, r.stderr).toBe(0);
  }
});

afterAll(async () => {
  await gpg.cleanup();
  tmp.cleanup();
});

describe('when a sealed log is sealed again', () => {
  it('fails with LOG_SEALED (exit 5) before calling the signer, and the log is unchanged', async () => {
    const before = await listed(db, 'sealed-1');
    const calls = signer.calls().length;
    expectCode(await seal(db, 'sealed-1'), 'LOG_SEALED');
    expect(signer.calls().length).toBe(calls);
    expect(await listed(db, 'sealed-1')).toEqual(before);
    expectOk(await verifyChain(['--store', `${VM}/sealed-1`, '--key', alicePub], { db }));
  });
});

describe('when the log does not exist', () => {
  it('seal fails with LOG_NOT_FOUND (exit 4)', async () => {
    expectCode(await seal(db, 'no-such-log'), 'LOG_NOT_FOUND');
  });

  it('seal without any store fails with LOG_NOT_FOUND (exit 4) and creates no store', async () => {
    const none = join(tmp.dir, 'none.db');
    expectCode(await seal(none, 'x'), 'LOG_NOT_FOUND');
    expect(existsSync(none)).toBe(false);
  });
});

describe('when the log has no lines (a session with empty input)', () => {
  it('seal fails with LOG_EMPTY (exit 43) before calling the signer, and the log stays open', async () => {
    await appendOk(db, 'empty', '');
    expect(await listed(db, 'empty')).toMatchObject({ state: 'open', lines: 0, entries: 2 });
    const calls = signer.calls().length;
    expectCode(await seal(db, 'empty'), 'LOG_EMPTY');
    expect(signer.calls().length).toBe(calls);
    expect(await listed(db, 'empty')).toMatchObject({ state: 'open', entries: 2 });
  });
});

describe('when the signer fails (exits 2)', () => {
  const NAME = 'signer-fails';
  let before: Listed | undefined;
  let result: RunResult;

  beforeAll(async () => {
    await appendOk(db, NAME, lines(NAME, 3));
    before = await listed(db, NAME);
    const failing = signerScript(tmp.dir, 'gpg-failing', "cat >/dev/null\necho 'gpg: signing failed: No secret key' >&2\nexit 2");
    result = await seal(db, NAME, { command: failing.path });
  });

  it('seal fails with SIGNER_FAILED (exit 40) and passes on what the signer said', () => {
    expectCode(result, 'SIGNER_FAILED');
    expect(result.stderr).toContain('No secret key');
  });

  it('the log is still open and unchanged (logvm list --json)', async () => {
    expect(before).toMatchObject({ state: 'open' });
    expect(await listed(db, NAME)).toEqual(before);
  });

  it('appending still works, and verify-chain --db says OK, open', async () => {
    await appendOk(db, NAME, 'one more line\n');
    const o = await verifyChain(['--store', `${VM}/${NAME}`], { db, json: true });
    expectOk(o);
    expect(o.result).toMatchObject({ state: 'open', lines: 4 });
  });

  it('a later seal with a working signer succeeds', async () => {
    const r = await seal(db, NAME);
    expect(r.code, r.stderr).toBe(0);
    expect(await listed(db, NAME)).toMatchObject({ state: 'sealed' });
  });
});

describe('when the split-gpg signer refuses (qrexec "Request refused", exit 126)', () => {
  const NAME = 'signer-refuses';

  it('seal fails with SIGNER_REFUSED (exit 41), and the log stays open', async () => {
    await appendOk(db, NAME, lines(NAME, 2));
    const before = await listed(db, NAME);
    const refusing = signerScript(tmp.dir, 'split-refusing', "cat >/dev/null\necho 'Request refused' >&2\nexit 126");
    const r = await seal(db, NAME, { spec: `split-gpg:${alice}`, env: { APPENDLOG_SPLIT_GPG: refusing.path } });
    expectCode(r, 'SIGNER_REFUSED');
    expect(refusing.calls()).toHaveLength(1);
    expect(await listed(db, NAME)).toEqual(before);
    await appendOk(db, NAME, 'still open\n');
  });
});

describe('when the signer prints garbage instead of a signature', () => {
  const SIG_CREATED = `echo '[GNUPG:] SIG_CREATED D 22 10 00 1700000000 ${'0'.repeat(40)}' >&2`;
  const cases: Array<[string, string]> = [
    ['exit 0, text on stdout, no SIG_CREATED status', "cat >/dev/null\necho 'this is not a signature'"],
    ['exit 0, SIG_CREATED status, text on stdout', `cat >/dev/null\n${SIG_CREATED}\necho 'this is not a signature'`],
    ['exit 0, SIG_CREATED status, nothing on stdout', `cat >/dev/null\n${SIG_CREATED}`],
    ['exit 0, SIG_CREATED status, a public key on stdout', `cat >/dev/null\n${SIG_CREATED}\ncat '${alicePub}'`],
  ];

  it.each(cases)('%s: fails with SIGNER_FAILED (exit 40), and the log stays open', async (what, body) => {
    const name = `garbage-${cases.findIndex((c) => c[0] === what) + 1}`;
    await appendOk(db, name, lines(name, 2));
    const before = await listed(db, name);
    const garbage = signerScript(tmp.dir, `gpg-${name}`, body);
    expectCode(await seal(db, name, { command: garbage.path }), 'SIGNER_FAILED');
    expect(garbage.calls()).toHaveLength(1);
    expect(await listed(db, name)).toEqual(before);
  });
});

describe('when the log or the store moves while the signer works', () => {
  /**
   * A signer that, until `go` exists, announces each call by the calls file
   * and waits: the test decides what happens between the seal's snapshot and
   * its commit. Calls after `go` exists sign at once.
   */
  function gatedSigner(tag: string): { script: ReturnType<typeof signerScript>; go: () => void } {
    const go = path(`${tag}.go`);
    const script = signerScript(tmp.dir, `gpg-gated-${tag}`, `n=0\nwhile [ ! -e '${go}' ] && [ $n -lt 400 ]; do sleep 0.05; n=$((n+1)); done\nexec gpg "$@"`);
    return { script, go: () => writeFileSync(go, '') };
  }
  const path = (f: string): string => join(tmp.dir, f);

  async function until(what: string, cond: () => boolean): Promise<void> {
    for (let i = 0; i < 400 && !cond(); i++) await new Promise((r) => setTimeout(r, 25));
    expect(cond(), what).toBe(true);
  }

  it('a session opened while signing is refused with LOG_SEALED (exit 5): the head does not move, the signer is called once', async () => {
    const NAME = 'moves-while-signing';
    await appendOk(db, NAME, lines(NAME, 2));
    const { script, go } = gatedSigner('append');
    const sealing = seal(db, NAME, { command: script.path });
    await until('the signer was called', () => script.calls().length === 1);
    const late = await append(db, NAME, 'a late line\n');
    expect(late.code, late.stderr).toBe(EXIT.LOG_SEALED);
    expect(jsonLines(late.stdout)).toEqual([expect.objectContaining({ type: 'error', code: 'LOG_SEALED' })]);
    go();
    const r = await sealing;
    expect(r.code, r.stderr).toBe(0);
    expect(script.calls()).toHaveLength(1);
    const o = await verifyChain(['--store', `${VM}/${NAME}`, '--key', alicePub], { db, json: true });
    expectOk(o);
    expect(o.result).toMatchObject({ state: 'sealed', lines: 2, sessions: 1 });
  });

  it('two seals of one log at once: the second waits for the first, then fails with LOG_SEALED (exit 5); one signer call, one seal entry', async () => {
    const NAME = 'sealed-twice-at-once';
    await appendOk(db, NAME, lines(NAME, 2));
    const { script, go } = gatedSigner('twice');
    const a = seal(db, NAME, { command: script.path });
    await until('the first seal reached the signer', () => script.calls().length === 1);
    const b = seal(db, NAME, { command: script.path });
    go();
    const runs = await Promise.all([a, b]);
    expect(runs.map((r) => r.code)).toEqual([0, EXIT.LOG_SEALED]);
    expect(script.calls()).toHaveLength(1);
    const o = await verifyChain(['--store', `${VM}/${NAME}`, '--key', alicePub], { db, json: true });
    expectOk(o);
    expect(o.result).toMatchObject({ state: 'sealed', entries: 2 + 2 + 1 });
  });

  it('two logs sealed at once: the second waits for the first, both succeed with consecutive seal indexes, one signer call each', async () => {
    const names = ['race-a', 'race-b'];
    for (const n of names) await appendOk(db, n, lines(n, 2));
    const { script, go } = gatedSigner('two-logs');
    const first = seal(db, names[0]!, { command: script.path });
    await until('the first seal reached the signer', () => script.calls().length === 1);
    const second = seal(db, names[1]!, { command: script.path });
    go();
    const runs = await Promise.all([first, second]);
    for (const r of runs) expect(r.code, r.stderr).toBe(0);
    // Signed one after the other (the seal chain is linear): no manifest is signed twice.
    expect(script.calls()).toHaveLength(2);
    const results = await Promise.all(names.map((n) => verifyChain(['--store', `${VM}/${n}`, '--key', alicePub], { db, json: true })));
    for (const o of results) expectOk(o);
    const indexes = results.map((o) => o.result!.sealIndex as number);
    expect(indexes[1]).toBe(indexes[0]! + 1);
  });
});

describe('when a VM appends to a sealed log', () => {
  it('the service exits 5 with one JSON error line {type:"error", code:"LOG_SEALED"} on stdout and stores nothing', async () => {
    const before = await listed(db, 'sealed-2');
    const r = await append(db, 'sealed-2', 'late line\n');
    expect(r.code, r.stderr).toBe(EXIT.LOG_SEALED);
    expect(jsonLines(r.stdout)).toEqual([expect.objectContaining({ type: 'error', code: 'LOG_SEALED' })]);
    expect(await listed(db, 'sealed-2')).toEqual(before);
    expectOk(await verifyChain(['--store', `${VM}/sealed-2`, '--key', alicePub], { db }));
  });
});

describe('when exporting', () => {
  it('an unsealed log fails with NOT_SEALED (exit 42) and writes nothing', async () => {
    await appendOk(db, 'unsealed', lines('unsealed', 2));
    const out = join(tmp.dir, 'out-unsealed');
    expectCode(await logvm(['export', `${VM}/unsealed`, '--out', out], { db }), 'NOT_SEALED');
    expect(existsSync(out)).toBe(false);
    expect(existsSync(`${out}.partial`)).toBe(false);
  });

  it('into a non-empty directory fails with BUNDLE_EXISTS (exit 45) and leaves the directory as it was', async () => {
    const out = join(tmp.dir, 'out-nonempty');
    mkdirSync(out);
    writeFileSync(join(out, 'precious.txt'), 'keep me\n');
    expectCode(await logvm(['export', `${VM}/sealed-1`, '--out', out], { db }), 'BUNDLE_EXISTS');
    expect(readdirSync(out)).toEqual(['precious.txt']);
    expect(readFileSync(join(out, 'precious.txt'), 'utf8')).toBe('keep me\n');
  });

  it('onto an existing file fails with BUNDLE_EXISTS (exit 45) and leaves the file as it was', async () => {
    const out = join(tmp.dir, 'out-file');
    writeFileSync(out, 'a file\n');
    expectCode(await logvm(['export', `${VM}/sealed-1`, '--out', out], { db }), 'BUNDLE_EXISTS');
    expect(readFileSync(out, 'utf8')).toBe('a file\n');
  });

  it('into an existing empty directory fails with BUNDLE_EXISTS (exit 45): export never replaces a directory', async () => {
    const out = join(tmp.dir, 'out-empty');
    mkdirSync(out);
    expectCode(await logvm(['export', `${VM}/sealed-1`, '--out', out], { db }), 'BUNDLE_EXISTS');
    expect(readdirSync(out)).toEqual([]);
  });

  it('when DIR.partial exists (a crashed or concurrent export) it fails with BUNDLE_EXISTS and deletes nothing', async () => {
    const out = join(tmp.dir, 'out-partial');
    mkdirSync(`${out}.partial`);
    writeFileSync(join(`${out}.partial`, 'evidence.txt'), 'keep\n');
    expectCode(await logvm(['export', `${VM}/sealed-1`, '--out', out], { db }), 'BUNDLE_EXISTS');
    expect(readFileSync(join(`${out}.partial`, 'evidence.txt'), 'utf8')).toBe('keep\n');
    expect(existsSync(out)).toBe(false);
  });

  it('into a new directory works, and the bundle verifies', async () => {
    const out = join(tmp.dir, 'out-new');
    await logvmOk(['export', `${VM}/sealed-1`, '--out', out], { db });
    expectOk(await verifyChain([out, '--key', alicePub]));
    expect(existsSync(`${out}.partial`)).toBe(false);
  });
});

describe('when verify-chain --db is given keys for a sealed log', () => {
  it('with the signer\'s key: OK, sealed, the signature checked, two linked seals', async () => {
    const o = await verifyChain(['--store', `${VM}/sealed-2`, '--key', alicePub], { db, json: true });
    expectOk(o);
    expect(o.result).toMatchObject({ source: 'store', state: 'sealed', sealIndex: 2, signaturesChecked: true, signatures: [{ fingerprint: alice, userIds: [ALICE] }] });
    expect(o.human.stdout.toString()).toMatch(/seal chain: \d+ seal\(s\) in the store, linked/);
  });

  it('with a wrong key only: fails with SIGNATURE_UNTRUSTED (exit 32)', async () => {
    expectFailure(await verifyChain(['--store', `${VM}/sealed-2`, '--key', bobPub], { db, json: true }), 'SIGNATURE_UNTRUSTED');
  });

  it('with a file that is not a key: fails with KEY_INVALID (exit 35)', async () => {
    expectFailure(await verifyChain(['--store', `${VM}/sealed-2`, '--key', join(tmp.dir, 'gpg-recording')], { db }), 'KEY_INVALID');
  });
});

describe('when the store is tampered with after the seal (triggers dropped)', () => {
  let sealedEntries: number;

  beforeAll(async () => {
    sealedEntries = (await listed(db, 'sealed-1'))!.entries;
  });

  describe('when the seals row of seal #1 is deleted', () => {
    let store: string;
    beforeAll(async () => {
      store = copyStore();
      await dropTriggers(store);
      await sqliteOk(store, 'DELETE FROM signatures WHERE seal_index = 1; DELETE FROM seals WHERE seal_index = 1;');
    });

    it('verify-chain of seal #2\'s log fails with SEAL_CHAIN_BROKEN (exit 34)', async () => {
      expectFailure(await verifyChain(['--store', `${VM}/sealed-2`], { db: store, json: true }), 'SEAL_CHAIN_BROKEN');
    });

    it('verify-chain of the first log fails with STORE_INCONSISTENT (exit 16): marked sealed, seal missing', async () => {
      expectFailure(await verifyChain(['--store', `${VM}/sealed-1`], { db: store }), 'STORE_INCONSISTENT');
    });
  });

  describe('when the manifest of seal #1 is replaced by an edited one', () => {
    let store: string;
    beforeAll(async () => {
      store = copyStore();
      await dropTriggers(store);
      const manifest = (await sqliteOk(store, 'SELECT CAST(manifest AS TEXT) FROM seals WHERE seal_index = 1')).trimEnd();
      const edited = manifest.replace(/"lines":3/, '"lines":2');
      expect(edited).not.toBe(manifest);
      await sqliteOk(store, `UPDATE seals SET manifest = CAST('${edited}\n' AS BLOB) WHERE seal_index = 1;`);
    });

    it('verify-chain of seal #2\'s log fails with SEAL_CHAIN_BROKEN (exit 34)', async () => {
      expectFailure(await verifyChain(['--store', `${VM}/sealed-2`], { db: store }), 'SEAL_CHAIN_BROKEN');
    });

    it('verify-chain of the first log fails with MANIFEST_MISMATCH (exit 22)', async () => {
      expectFailure(await verifyChain(['--store', `${VM}/sealed-1`], { db: store }), 'MANIFEST_MISMATCH');
    });
  });

  describe('when the signature of seal #1 is replaced by the one of seal #2', () => {
    it('verify-chain --db --key fails with SIGNATURE_INVALID (exit 31)', async () => {
      const store = copyStore();
      await dropTriggers(store);
      await sqliteOk(store, 'UPDATE signatures SET armored = (SELECT armored FROM signatures WHERE seal_index = 2) WHERE seal_index = 1;');
      expectFailure(await verifyChain(['--store', `${VM}/sealed-1`, '--key', alicePub], { db: store, json: true }), 'SIGNATURE_INVALID');
    });
  });

  describe('when the sealed flag is cleared and the log appended to again', () => {
    let store: string;
    beforeAll(async () => {
      store = copyStore();
      await dropTriggers(store);
      await sqliteOk(store, `UPDATE heads SET sealed = 0 WHERE log_id = (SELECT id FROM logs WHERE vm = '${VM}' AND name = 'sealed-1');`);
      await appendOk(store, 'sealed-1', 'appended after the seal\n');
    });

    it(`verify-chain --db fails with ENTRY_AFTER_SEAL (exit 14) naming the seq after the seal`, async () => {
      expectFailure(await verifyChain(['--store', `${VM}/sealed-1`], { db: store, json: true }), 'ENTRY_AFTER_SEAL', sealedEntries + 1);
    });

    it('export refuses it too: ENTRY_AFTER_SEAL (exit 14), no bundle written', async () => {
      const out = join(tmp.dir, 'out-after-seal');
      expectCode(await logvm(['export', `${VM}/sealed-1`, '--out', out], { db: store }), 'ENTRY_AFTER_SEAL');
      expect(existsSync(out)).toBe(false);
      expect(existsSync(`${out}.partial`)).toBe(false);
    });
  });
});

describe('when a line of a sealed log is changed in the store', () => {
  let store: string;
  beforeAll(async () => {
    store = copyStore();
    await dropTriggers(store);
    const id = (await sqliteOk(store, `SELECT b.id FROM blocks b JOIN logs l ON l.id = b.log_id WHERE l.name = 'sealed-1' AND instr(b.data, CAST('sealed-1 line 2' AS BLOB)) > 0`)).trim();
    expect(id).toMatch(/^\d+$/);
    const from = Buffer.from('sealed-1 line 2').toString('hex').toUpperCase();
    const to = Buffer.from('sealed-1 LINE 2').toString('hex').toUpperCase();
    const hex = (await sqliteOk(store, `SELECT hex(data) FROM blocks WHERE id = ${id}`)).trim();
    await sqliteOk(store, `UPDATE blocks SET data = X'${hex.replace(from, to)}' WHERE id = ${id};`);
  });

  // seq 1 is the session-open event, seq 2 "line 1", seq 3 "line 2".
  it('verify-chain --db fails with CHAIN_HASH_MISMATCH (exit 10) naming seq 3', async () => {
    expectFailure(await verifyChain(['--store', `${VM}/sealed-1`], { db: store, json: true }), 'CHAIN_HASH_MISMATCH', 3);
  });

  it('export refuses it: CHAIN_HASH_MISMATCH (exit 10), no bundle written', async () => {
    const out = join(tmp.dir, 'out-changed-line');
    const r = await logvm(['export', `${VM}/sealed-1`, '--out', out], { db: store });
    expectCode(r, 'CHAIN_HASH_MISMATCH');
    expect(existsSync(out)).toBe(false);
    expect(existsSync(`${out}.partial`)).toBe(false);
  });
});

// Export writes version 2 records, whose check tag is only the first 8 bytes
// of each stored hash, and hashes them in the background: the stored hash
// must still be compared in all 32 bytes, and the first wrong one named.
describe.each([
  ['its last 24 bytes (beyond what a version 2 tag carries)', 8],
  ['its first 8 bytes (the version 2 tag)', 0],
])('when the stored hash of seq 3 of a sealed log is changed in %s', (_what, at) => {
  let store: string;
  beforeAll(async () => {
    store = copyStore();
    await dropTriggers(store);
    const row = (await sqliteOk(store, `SELECT b.id || ' ' || b.first_seq || ' ' || hex(b.hashes) FROM blocks b JOIN logs l ON l.id = b.log_id WHERE l.name = 'sealed-1' AND b.first_seq <= 3 ORDER BY b.first_seq DESC LIMIT 1`)).trim();
    const [id, first, hex] = row.split(' ') as [string, string, string];
    const hashes = Buffer.from(hex, 'hex');
    const byte = (3 - Number(first)) * 32 + at + 5;
    expect(byte).toBeLessThan(hashes.length);
    hashes[byte] = hashes[byte]! ^ 0x01;
    await sqliteOk(store, `UPDATE blocks SET hashes = X'${hashes.toString('hex')}' WHERE id = ${id};`);
  });

  it.each([['directory', ''], ['.tar', '.tar']])('export to a %s refuses it: CHAIN_HASH_MISMATCH naming seq 3, no bundle written', async (_form, ext) => {
    const out = join(tmp.dir, `out-stored-hash-${at}${ext}`);
    const r = await logvm(['export', `${VM}/sealed-1`, '--out', out], { db: store });
    expectCode(r, 'CHAIN_HASH_MISMATCH');
    expect(r.stderr).toContain('seq 3:');
    expect(existsSync(out)).toBe(false);
    expect(existsSync(`${out}.partial`)).toBe(false);
  });

  it('verify-chain --store names seq 3 too', async () => {
    expectFailure(await verifyChain(['--store', `${VM}/sealed-1`], { db: store, json: true }), 'CHAIN_HASH_MISMATCH', 3);
  });
});

describe('when an open log is tampered with before the seal', () => {
  it('seal fails with CHAIN_HASH_MISMATCH (exit 10) naming seq 3 and never calls the signer', async () => {
    const NAME = 'tampered-open';
    await appendOk(db, NAME, 'first line of the build\nsecond line of the build\nthird line\n');
    const store = copyStore();
    await dropTriggers(store);
    // seq 1 session-open, seq 2 "first line...", seq 3 "second line...": rewrite seq 3 in place, same length.
    const id = (await sqliteOk(store, `SELECT b.id FROM blocks b JOIN logs l ON l.id = b.log_id WHERE l.name = '${NAME}' AND instr(b.data, CAST('second line' AS BLOB)) > 0`)).trim();
    expect(id).toMatch(/^\d+$/);
    const from = Buffer.from('second line').toString('hex').toUpperCase();
    const to = Buffer.from('SECOND LINE').toString('hex').toUpperCase();
    const hex = (await sqliteOk(store, `SELECT hex(data) FROM blocks WHERE id = ${id}`)).trim();
    expect(hex.split(from)).toHaveLength(2);
    await sqliteOk(store, `UPDATE blocks SET data = X'${hex.replace(from, to)}' WHERE id = ${id};`);
    expect(await sqliteOk(store, `SELECT count(*) FROM blocks WHERE instr(data, CAST('SECOND LINE' AS BLOB)) > 0`)).toBe('1\n');
    const calls = signer.calls().length;
    const r = await seal(store, NAME);
    expectCode(r, 'CHAIN_HASH_MISMATCH');
    expect(r.stderr).toMatch(/seq 3\b/);
    expect(signer.calls().length).toBe(calls);
    expect(await listed(store, NAME)).toMatchObject({ state: 'open' });
  });
});
