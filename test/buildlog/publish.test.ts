/**
 * `logvm publish BUNDLE --git DIR`, with a real git repository and remote,
 * and real GnuPG as git's gpg.program (standing in for
 * qubes-gpg-client-wrapper, which git calls the same way).
 */
import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callService, logvm, run, tempDir, type RunResult } from '../helpers.js';
import { EXIT, copyBundle, gpgHome, readLines, signerScript, writeLines, type GpgHome } from '../seal/util.js';

const tmp = tempDir('appendlog-publish-');
const db = join(tmp.dir, 'logs.db');
let gpg: GpgHome;
let fpr: string;
let pub: string;
const bundles: string[] = [];

async function gitIn(cwd: string, args: string[], env: Record<string, string> = {}): Promise<RunResult> {
  return run('git', args, { cwd, env: { GIT_CONFIG_NOSYSTEM: '1', HOME: tmp.dir, ...env } });
}
async function gitOk(cwd: string, args: string[], env: Record<string, string> = {}): Promise<string> {
  const r = await gitIn(cwd, args, env);
  expect(r.code, `git ${args.join(' ')}: ${r.stderr}`).toBe(0);
  return r.stdout.toString('utf8');
}

let repoN = 0;
/** A work tree cloned from a fresh bare remote, with one signed-off first commit. */
async function repo(): Promise<{ work: string; remote: string }> {
  const base = join(tmp.dir, `repo-${++repoN}`);
  const remote = `${base}.git`;
  await gitOk(tmp.dir, ['init', '--quiet', '--bare', '--initial-branch=main', remote]);
  await gitOk(tmp.dir, ['clone', '--quiet', remote, base]);
  await gitOk(base, ['config', 'user.name', 'Build Log Bot']);
  await gitOk(base, ['config', 'user.email', 'logs@example.org']);
  await gitOk(base, ['checkout', '--quiet', '-b', 'main']);
  writeFileSync(join(base, 'README.md'), 'build logs\n');
  await gitOk(base, ['add', 'README.md']);
  await gitOk(base, ['commit', '--quiet', '-m', 'init']);
  await gitOk(base, ['push', '--quiet', 'origin', 'main']);
  return { work: base, remote };
}

function publish(bundle: string, work: string, extra: string[] = [], env: Record<string, string> = {}): Promise<RunResult> {
  return logvm(['publish', bundle, '--git', work, '--gpg-program', 'gpg', '--signing-key', fpr, ...extra], { env: { ...gpg.env, HOME: tmp.dir, GIT_CONFIG_NOSYSTEM: '1', ...env } });
}

beforeAll(async () => {
  gpg = gpgHome();
  fpr = await gpg.genKey('Build Log Signer <logs@example.org>', 'ed25519');
  pub = await gpg.exportPublic(fpr, join(tmp.dir, 'pub.asc'));
  for (const name of ['pub-1', 'pub-2', 'pub-3']) {
    const r = await callService('build-vm', name, db, { input: `building ${name}\n\x1b[1mdone\x1b[0m\n` });
    expect(r.code, r.stderr).toBe(0);
    const s = await logvm(['seal', `build-vm/${name}`, '--signer', `gpg:${fpr}`], { db, env: gpg.env });
    expect(s.code, s.stderr).toBe(0);
    const out = join(tmp.dir, `bundle-${name}`);
    const e = await logvm(['export', `build-vm/${name}`, '--out', out, '--bundle-version', '1'], { db });
    expect(e.code, e.stderr).toBe(0);
    bundles.push(out);
  }
});

afterAll(async () => {
  await gpg.cleanup();
  tmp.cleanup();
});

describe('logvm publish', () => {
  let work: string;
  let remote: string;
  let first: RunResult;

  beforeAll(async () => {
    ({ work, remote } = await repo());
    first = await publish(bundles[0]!, work, ['--push', 'origin']);
  });

  it('commits VM/NAME/ with the bundle and its text, signed: git verify-commit passes', async () => {
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout.toString()).toMatch(/^published build-vm\/pub-1 to .*: commit [0-9a-f]{40} \(signed\)/);
    for (const f of ['manifest.json', 'entries.jsonl', 'signatures/01.asc', 'log.txt']) expect(existsSync(join(work, 'build-vm/pub-1', f)), f).toBe(true);
    const v = await gitIn(work, ['verify-commit', '--raw', 'HEAD'], gpg.env);
    expect(v.code, v.stderr).toBe(0);
    expect(v.stderr).toContain(`[GNUPG:] VALIDSIG ${fpr}`);
    const files = (await gitOk(work, ['show', '--name-only', '--format=', 'HEAD'])).trim().split('\n').sort();
    expect(files).toEqual(['build-vm/pub-1/README.txt', 'build-vm/pub-1/entries.jsonl', 'build-vm/pub-1/log.txt', 'build-vm/pub-1/manifest.json', 'build-vm/pub-1/signatures/01.asc']);
  });

  it('names the log, its head and its seal in the commit message', async () => {
    const manifest = JSON.parse(readFileSync(join(bundles[0]!, 'manifest.json'), 'utf8')) as { head: string; sealIndex: number };
    const msg = await gitOk(work, ['log', '-1', '--format=%B']);
    expect(msg).toContain('log: build-vm/pub-1\n');
    expect(msg).toContain(`head: ${manifest.head}\n`);
    expect(msg).toMatch(new RegExp(`seal: #${manifest.sealIndex} at \\S+, seal hash [0-9a-f]{64}`));
  });

  it('the published folder is itself a bundle an auditor verifies, and log.txt is its legacy rendering', async () => {
    const v = await logvm(['verify-chain', join(work, 'build-vm/pub-1'), '--key', pub]);
    expect(v.code, v.stderr).toBe(0);
    const r = await logvm(['render', bundles[0]!, '--format', 'buildlog']);
    expect(readFileSync(join(work, 'build-vm/pub-1/log.txt')).equals(r.stdout)).toBe(true);
    expect(r.stdout.toString('latin1')).toMatch(/ \+0000 build-vm: \.\[1mdone\.\[0m\n/);
  });

  it('pushes with a plain push: the remote branch is the signed commit', async () => {
    const head = (await gitOk(work, ['rev-parse', 'HEAD'])).trim();
    expect((await gitOk(remote, ['rev-parse', 'refs/heads/main'])).trim()).toBe(head);
  });

  it('refuses to overwrite a published log (PUBLISH_EXISTS), and commits nothing', async () => {
    const before = (await gitOk(work, ['rev-parse', 'HEAD'])).trim();
    const r = await publish(bundles[0]!, work);
    expect(r.code).toBe(EXIT.PUBLISH_EXISTS);
    expect(r.stderr).toMatch(/^logvm publish: PUBLISH_EXISTS: build-vm\/pub-1 is already published/);
    expect((await gitOk(work, ['rev-parse', 'HEAD'])).trim()).toBe(before);
  });

  it('commits only the log: another staged change stays staged, out of the commit', async () => {
    writeFileSync(join(work, 'unrelated.txt'), 'admin work in progress\n');
    await gitOk(work, ['add', 'unrelated.txt']);
    const r = await publish(bundles[1]!, work);
    expect(r.code, r.stderr).toBe(0);
    const files = (await gitOk(work, ['show', '--name-only', '--format=', 'HEAD'])).trim().split('\n');
    expect(files.every((f) => f.startsWith('build-vm/pub-2/'))).toBe(true);
    expect((await gitOk(work, ['diff', '--cached', '--name-only'])).trim()).toBe('unrelated.txt');
    await gitOk(work, ['reset', '--quiet', '--', 'unrelated.txt']);
  });

  it('never forces a push: a remote that moved refuses it (GIT_FAILED), and keeps its commits', async () => {
    // Someone else pushed meanwhile.
    const other = join(tmp.dir, 'other-clone');
    await gitOk(tmp.dir, ['clone', '--quiet', remote, other]);
    await gitOk(other, ['-c', 'user.name=x', '-c', 'user.email=x@example.org', 'commit', '--quiet', '--allow-empty', '-m', 'someone else']);
    await gitOk(other, ['push', '--quiet', 'origin', 'HEAD:main']);
    const theirs = (await gitOk(remote, ['rev-parse', 'refs/heads/main'])).trim();
    const r = await publish(bundles[2]!, work, ['--push', 'origin']);
    expect(r.code).toBe(EXIT.GIT_FAILED);
    expect(r.stderr).toContain('the push to origin was refused');
    expect((await gitOk(remote, ['rev-parse', 'refs/heads/main'])).trim()).toBe(theirs);
    expect((await gitOk(work, ['log', '-1', '--format=%s'])).trim()).toMatch(/^Add build-vm\/pub-3 /);
  });
});

describe('logvm publish refuses', () => {
  it('a bundle whose chain was changed (CHAIN_HASH_MISMATCH), before touching the repository', async () => {
    const { work } = await repo();
    const bad = copyBundle(bundles[0]!, join(tmp.dir, 'tampered'));
    const lines = readLines(bad);
    lines[1] = lines[1]!.replace('building', 'BUILDING');
    writeLines(bad, lines);
    const r = await publish(bad, work);
    expect(r.code).toBe(EXIT.CHAIN_HASH_MISMATCH);
    expect(existsSync(join(work, 'build-vm'))).toBe(false);
    // logvm render checks the bundle before printing anything too.
    const shown = await logvm(['render', bad]);
    expect(shown.code).toBe(EXIT.CHAIN_HASH_MISMATCH);
    expect(shown.stdout.length).toBe(0);
    expect((await gitOk(work, ['log', '--format=%s'])).trim()).toBe('init');
  });

  it('a VM folder that is a symbolic link (GIT_FAILED), writing nothing through it', async () => {
    const { work } = await repo();
    const elsewhere = join(tmp.dir, 'elsewhere');
    mkdirSync(elsewhere, { recursive: true });
    symlinkSync(elsewhere, join(work, 'build-vm'));
    const r = await publish(bundles[0]!, work);
    expect(r.code).toBe(EXIT.GIT_FAILED);
    expect(existsSync(join(elsewhere, 'pub-1'))).toBe(false);
  });

  it('when the gpg program refuses to sign: GIT_FAILED, no commit, no folder left', async () => {
    const { work } = await repo();
    const refusing = signerScript(tmp.dir, 'refusing-gpg-git', 'cat >/dev/null; echo "gpg: signing failed: Operation cancelled" >&2; exit 2');
    const r = await logvm(['publish', bundles[0]!, '--git', work, '--gpg-program', refusing.path], { env: { HOME: tmp.dir, GIT_CONFIG_NOSYSTEM: '1' } });
    expect(r.code).toBe(EXIT.GIT_FAILED);
    expect(refusing.calls().length).toBeGreaterThan(0);
    expect(existsSync(join(work, 'build-vm/pub-1'))).toBe(false);
    expect((await gitOk(work, ['log', '--format=%s'])).trim()).toBe('init');
    expect((await gitOk(work, ['status', '--porcelain'])).trim()).toBe('');
  });

  it('a directory that is not the top of a git work tree', async () => {
    const r = await publish(bundles[0]!, tmp.dir);
    expect(r.code).toBe(EXIT.GIT_FAILED);
  });
});
