import { spawn } from 'node:child_process';
import { copyFileSync, createWriteStream, existsSync, lstatSync, mkdirSync, readdirSync, realpathSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { AppendlogError, BUILDLOG_XZ_THRESHOLD, BUNDLE_FILES, parseManifest, sealHash, type SealManifest } from '@appendlog/shared';
import { openBundle, verifyBundleEntries } from './bundle-io.js';
import { BufferedWriter } from './output.js';
import { renderBundle } from './render-io.js';

/**
 * `logvm publish BUNDLE --git DIR`: publication like QubesOS/build-logs, of
 * a sealed bundle. The bundle, checked against its manifest first, is copied
 * with its rendered text (the legacy build-log format, `log.txt`, xz over
 * 10 MiB) into DIR/{VM}/{NAME}/ of a git work tree, and committed alone with
 * a message naming the log, its head and its seal, signed through the
 * configured gpg program (`git -c gpg.program=qubes-gpg-client-wrapper`, so
 * the key stays in the vault). A published log is never overwritten, and a
 * push is never forced. The directory is itself a bundle:
 * `logvm verify-chain DIR/{VM}/{NAME} --key ...` checks it.
 */
export interface PublishOptions {
  bundle: string;
  git: string;
  gpgProgram: string;
  signingKey?: string;
  /** Push HEAD to this remote afterwards (a plain push: a diverged remote is an error). */
  push?: string;
}

export interface PublishResult {
  manifest: SealManifest;
  dir: string;
  commit: string;
  pushed: boolean;
}

interface GitRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

function git(cwd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<GitRun> {
  return new Promise((resolve) => {
    const child = spawn('git', args, { cwd, env: { ...env, GIT_TERMINAL_PROMPT: '0' }, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.on('error', (e) => resolve({ code: null, stdout: '', stderr: e.message }));
    child.on('close', (code) => resolve({ code, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') }));
  });
}

async function gitOk(cwd: string, args: string[], what: string): Promise<string> {
  const r = await git(cwd, args);
  if (r.code !== 0) throw new AppendlogError('GIT_FAILED', `${what}: git ${args[0] === '-c' ? args.find((a) => !a.startsWith('-') && !a.includes('=')) : args[0]} ${r.code === null ? 'could not run' : `exited ${r.code}`}: ${r.stderr.trim().slice(0, 500)}`);
  return r.stdout;
}

const KEY_RE = /^(?:0x)?[0-9A-Fa-f]{8,40}$|^[^\s-][^\s]{0,254}$/;

export async function publishBundle(o: PublishOptions): Promise<PublishResult> {
  if (o.signingKey !== undefined && !KEY_RE.test(o.signingKey)) throw new AppendlogError('USAGE', 'the signing key is not a key ID, fingerprint or user ID');
  if (o.push !== undefined && !/^[A-Za-z0-9][A-Za-z0-9._/-]{0,99}$/.test(o.push)) throw new AppendlogError('USAGE', `--push ${JSON.stringify(o.push).slice(0, 80)} is not a remote name`);
  // The bundle first: never publish a chain that does not match its manifest.
  const opened = await openBundle(o.bundle);
  let manifest: SealManifest;
  try {
    // A git work tree holds the directory form (its files diff and blame there).
    if (opened.form !== 'directory') throw new AppendlogError('USAGE', `${o.bundle} is a bundle archive; publish takes a bundle directory (tar xf it first)`);
    manifest = parseManifest(opened.manifestBytes);
    await verifyBundleEntries(opened, manifest);
  } finally {
    opened.close();
  }
  const entriesFile = opened.version === 2 ? 'entries.bin' : BUNDLE_FILES.entries;
  const sigDir = join(o.bundle, BUNDLE_FILES.signatures);
  const sigs = existsSync(sigDir) ? readdirSync(sigDir).filter((f) => /^[0-9A-Za-z._-]+\.asc$/.test(f)).sort() : [];
  if (sigs.length === 0) throw new AppendlogError('SIGNATURE_MISSING', `${o.bundle} has no signatures/*.asc: only sealed, signed bundles are published`);

  // The work tree: its top level, and no symlink on the way to the log's folder.
  if (!existsSync(o.git)) throw new AppendlogError('GIT_FAILED', `${o.git} does not exist`);
  const top = (await gitOk(o.git, ['rev-parse', '--show-toplevel'], `${o.git} is not a git work tree`)).trim();
  if (realpathSync(top) !== realpathSync(o.git)) throw new AppendlogError('GIT_FAILED', `${o.git} is not the top of its git work tree (${top})`);
  const rel = `${manifest.vm}/${manifest.name}`; // both checked by the manifest rules (1.4): no `/`, `.` or `..`
  const vmDir = join(o.git, manifest.vm);
  const dir = join(vmDir, manifest.name);
  for (const p of [vmDir, dir]) {
    if (existsSync(p) && lstatSync(p).isSymbolicLink()) throw new AppendlogError('GIT_FAILED', `${p} is a symbolic link; refusing to write through it`);
  }
  // Refuse to overwrite: neither in the work tree nor in HEAD nor in the index.
  const tracked = (await git(o.git, ['ls-files', '--', rel])).stdout.trim();
  const inHead = await git(o.git, ['ls-tree', '-r', '--name-only', 'HEAD', '--', rel]);
  if (existsSync(dir) || tracked !== '' || (inHead.code === 0 && inHead.stdout.trim() !== '')) {
    throw new AppendlogError('PUBLISH_EXISTS', `${rel} is already published in ${o.git}; a published log is never overwritten`);
  }

  mkdirSync(join(dir, BUNDLE_FILES.signatures), { recursive: true });
  try {
    for (const f of [BUNDLE_FILES.manifest, entriesFile, 'README.txt']) {
      if (existsSync(join(o.bundle, f))) copyFileSync(join(o.bundle, f), join(dir, f));
    }
    for (const s of sigs) copyFileSync(join(sigDir, s), join(dir, BUNDLE_FILES.signatures, s));
    const text = join(dir, 'log.txt');
    const stream = createWriteStream(text, { flags: 'wx' });
    const out = new BufferedWriter(stream, 256 * 1024);
    await renderBundle(o.bundle, manifest.vm, 'buildlog', out);
    await new Promise<void>((resolve, reject) => stream.end((e?: Error | null) => (e ? reject(e) : resolve())));
    const { statSync } = await import('node:fs');
    if (statSync(text).size > BUILDLOG_XZ_THRESHOLD) {
      const status = await new Promise<number | null>((resolve) => {
        const c = spawn('xz', ['--force', '--', text], { stdio: 'ignore' });
        c.on('error', () => resolve(null));
        c.on('close', resolve);
      });
      if (status !== 0) throw new AppendlogError('FILE_ERROR', 'xz failed on log.txt');
    }
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }

  const sealed = new Date(manifest.sealed).toISOString();
  const message = [
    `Add ${rel} (sealed log, head ${manifest.head.slice(0, 16)})`,
    '',
    `log: ${rel}`,
    `head: ${manifest.head}`,
    `entries: ${manifest.entries}, lines: ${manifest.lines}, sessions: ${manifest.sessions}`,
    `seal: #${manifest.sealIndex} at ${sealed}, seal hash ${sealHash(opened.manifestBytes).toString('hex')}`,
    `previous seal: ${manifest.prevSeal ?? 'none'}`,
    `signatures: ${sigs.length}`,
    '',
    `Check: logvm verify-chain ${rel} --key RELEASE-KEY.asc`,
    '',
  ].join('\n');
  try {
    await gitOk(o.git, ['add', '--', rel], 'cannot stage the log');
    // Only this log's folder goes into the commit, whatever else is staged.
    await gitOk(
      o.git,
      ['-c', `gpg.program=${o.gpgProgram}`, ...(o.signingKey ? ['-c', `user.signingkey=${o.signingKey}`] : []), 'commit', '--quiet', `--gpg-sign${o.signingKey ? `=${o.signingKey}` : ''}`, '-m', message, '--', rel],
      'cannot make the signed commit',
    );
  } catch (e) {
    await git(o.git, ['reset', '--quiet', '--', rel]);
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  const commit = (await gitOk(o.git, ['rev-parse', 'HEAD'], 'cannot read the commit')).trim();
  let pushed = false;
  if (o.push !== undefined) {
    // A plain push: if the remote moved, git refuses, and so do we (never --force).
    await gitOk(o.git, ['push', '--quiet', '--', o.push, 'HEAD'], `the commit ${commit} is made, but the push to ${o.push} was refused (fetch and merge, then push; never forced)`);
    pushed = true;
  }
  return { manifest, dir, commit, pushed };
}
