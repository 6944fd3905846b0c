/**
 * qubesbuilder.BuildLog under the REAL qrexec (../shared/qrexec-lab: the
 * qrexec-daemon, the policy engine, qrexec-agent with PAM, qrexec-client-vm,
 * built from source), the way the Qubes build infrastructure runs it:
 *
 * - dom0 policy rpc/31-qubesbuilder-buildlog.policy, whose first line
 *   redirects `qrexec-client-vm dom0 qubesbuilder.BuildLog` to the log VM;
 * - in the log VM: rpc/qubesbuilder.BuildLog in /usr/local/etc/qubes-rpc,
 *   logvm on PATH, ~/QubesIncomingBuildLog a clone of a "build-logs"
 *   repository (here a bare repository in the log VM standing in for
 *   GitHub), the QubesOS post-log-hook steps (fetch, check the signature
 *   of origin, fast-forward, add FILE, signed commit, push), and the
 *   appendlog settings sealOnClose + postSealHook (`logvm publish`);
 * - in the build VM: the builder's own calling code (builder_client.py).
 *
 * GnuPG with a throwaway key stands in for Split-GPG. Needs root (the lab
 * makes mount namespaces); skipped, saying why, without the lab folder.
 */
import { chmodSync, existsSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, run, tempDir, type RunResult } from '../helpers.js';
import { gpgHome, type GpgHome } from '../seal/util.js';
import { BUILDER_RE, LEGACY_LINE } from './util.js';

const LAB_DIR = process.env.QREXEC_LAB_DIR ?? resolve(ROOT, '..', 'shared', 'qrexec-lab');
const LAB = join(LAB_DIR, 'lab.sh');
const why = !existsSync(LAB)
  ? `the qrexec lab is not at ${LAB_DIR} (set QREXEC_LAB_DIR): real-qrexec suite skipped`
  : process.getuid?.() !== 0
    ? 'the qrexec lab needs root: real-qrexec suite skipped'
    : null;
if (why !== null) console.warn(`test/buildlog/lab.test.ts: ${why}`);

const tmp = tempDir('appendlog-lab-buildlog-');
const RUN_DIR = join(tmp.dir, 'run');
let gpg: GpgHome;
let fpr: string;

function lab(args: string[], input?: string): Promise<RunResult> {
  return run('bash', [LAB, '--run-dir', RUN_DIR, ...args], { input, timeoutMs: 120_000 });
}
async function logVm(script: string): Promise<string> {
  const r = await lab(['log-vm', '-c', script]);
  expect(r.code, `log VM: ${script}\n${r.stderr}`).toBe(0);
  return r.stdout.toString('utf8');
}

const MESSAGES = ['> starting build with log', 'make[1]: Entering directory \u2018/builder\u2019', '\x1b[32mOK\x1b[0m   built hello-1.0.tar.gz', '> done'];

describe.skipIf(why !== null)('under the real qrexec: the builder, the dom0 redirect, the service, the hook', () => {
  let first: { log_file?: string | null; url?: string; exception?: string; returncode?: number };
  let second: typeof first;

  beforeAll(async () => {
    const b = await run('bash', [join(LAB_DIR, 'build.sh')], { timeoutMs: 300_000 });
    expect(b.code, b.stderr).toBe(0);
    gpg = gpgHome();
    fpr = await gpg.genKey('Qubes OS build bot <builder-bot@example.org>', 'ed25519');
    // A throwaway key, readable by the log VM's user, who imports it.
    chmodSync(await gpg.exportSecret(fpr, join(tmp.dir, 'secret.asc')), 0o644);
    await gpg.exportPublic(fpr, join(tmp.dir, 'public.asc'));
    writeFileSync(join(tmp.dir, 'messages.txt'), MESSAGES.map((m) => `${m}\n`).join(''));
    chmodSync(tmp.dir, 0o755);

    // As `user` in the log VM: the key, the "GitHub" repository and its clone, the hook, the settings.
    const hook = [
      '#!/bin/sh',
      '# The QubesOS/build-logs post-log-hook steps.',
      'exec >>~/logs-upload.log 2>&1',
      'set -e',
      'cd ~/QubesIncomingBuildLog',
      'git fetch origin',
      '[ "$(git log -1 --format=%G? origin/main)" = G ]',
      'git merge --ff-only origin/main',
      'git add "$1"',
      'git commit -m "Add $(realpath --relative-to=. "$1")"',
      'git push origin main',
      '',
    ].join('\n');
    const publishHook = ['#!/bin/sh', '# postSealHook BUNDLE VM/NAME: the sealed bundle into the same work tree, signed; post-log-hook pushes it.', 'exec logvm publish "$1" --git ~/QubesIncomingBuildLog', ''].join('\n');
    const userSetup = `set -eu
cd ~
gpg --batch --import '${tmp.dir}/secret.asc' 2>/dev/null
echo '${fpr}:6:' | gpg --batch --import-ownertrust 2>/dev/null
git config --global user.name 'Qubes OS build bot'
git config --global user.email builder-bot@example.org
git config --global user.signingkey ${fpr}
git config --global commit.gpgsign true
git config --global gpg.program gpg
git init --quiet --bare --initial-branch=main ~/build-logs.git
git clone --quiet ~/build-logs.git ~/QubesIncomingBuildLog 2>/dev/null
cd ~/QubesIncomingBuildLog
git checkout --quiet -b main
echo 'build logs' > README.md
git add README.md
git commit --quiet -m init
git push --quiet origin main
cat > post-log-hook <<'EOF'
${hook}EOF
chmod +x post-log-hook
echo post-log-hook > .git/info/exclude
mkdir -p ~/bin ~/.config/appendlog
cat > ~/bin/post-seal-publish <<'EOF'
${publishHook}EOF
chmod +x ~/bin/post-seal-publish
cat > ~/.config/appendlog/logvm.json <<EOF
{"sealOnClose": "gpg:${fpr}", "postSealHook": "/home/user/bin/post-seal-publish", "gitGpgProgram": "gpg"}
EOF
`;
    writeFileSync(join(tmp.dir, 'user-setup.sh'), userSetup);
    writeFileSync(join(tmp.dir, 'log-setup.sh'), `#!/bin/sh\nset -e\nrunuser -l user -c 'sh ${tmp.dir}/user-setup.sh'\n`, { mode: 0o755 });

    const up = await lab([
      'up',
      '--service', join(ROOT, 'rpc/qubesbuilder.BuildLog'),
      '--policy', join(ROOT, 'rpc/31-qubesbuilder-buildlog.policy'),
      '--log-bind', `${ROOT}:/home/user/appendlog`,
      '--log-bin', 'logvm=/home/user/appendlog/packages/log-vm/bin/logvm.js',
      '--log-setup', join(tmp.dir, 'log-setup.sh'),
      '--build-copy', `${join(ROOT, 'test/buildlog/builder_client.py')}:/home/user/`,
      '--build-copy', `${join(tmp.dir, 'messages.txt')}:/home/user/`,
    ]);
    expect(up.code, up.stderr).toBe(0);
    const call = async (extra: string[]): Promise<typeof first> => {
      const r = await lab(['build-vm', '/usr/bin/python3', '/home/user/builder_client.py', '/home/user/messages.txt', ...extra]);
      expect(r.code, r.stderr).toBe(0);
      return JSON.parse(r.stdout.toString('utf8').trim()) as typeof first;
    };
    first = await call([]);
    second = await call(['vm-fc41']);
  }, 600_000);

  afterAll(async () => {
    if (existsSync(RUN_DIR)) await lab(['down']);
    await gpg?.cleanup();
    tmp.cleanup();
  });

  it('the builder gets its path back through qrexec-client-vm dom0 (the policy redirect), and it matches its regex', () => {
    expect(first.exception).toBeUndefined();
    expect(first.returncode).toBe(0);
    expect(first.log_file).toMatch(/^build-vm\/log_\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d$/);
    expect(first.log_file).toMatch(BUILDER_RE);
    expect(first.url).toBe(`https://github.com/QubesOS/build-logs/tree/master/${first.log_file}`);
    expect(second.log_file).toMatch(/^build-vm\/vm-fc41\/log_/);
  });

  it('the hook published the text log at that path, in the legacy format, with a signed commit', async () => {
    const text = await logVm(`git -C ~/build-logs.git show main:${first.log_file}`);
    const lines = text.split('\n').slice(0, -1);
    expect(lines).toHaveLength(MESSAGES.length + 2);
    for (const l of lines) expect(l).toMatch(LEGACY_LINE);
    expect(lines[3]).toMatch(/build-vm: \.\[32mOK\.\[0m   built hello-1\.0\.tar\.gz$/);
    const subjects = await logVm('git -C ~/build-logs.git log --format=%s main');
    expect(subjects).toContain(`Add ${first.log_file}\n`);
    expect(subjects).toContain(`Add ${second.log_file}\n`);
  });

  it('and the sealed bundle beside it, committed by logvm publish; every commit verifies (git verify-commit)', async () => {
    const name = `buildlog.${first.log_file!.split('/')[1]}`;
    const subjects = await logVm('git -C ~/build-logs.git log --format=%s main');
    expect(subjects).toMatch(new RegExp(`^Add build-vm/${name.replace(/\./g, '\\.')} \\(sealed log, head [0-9a-f]{16}\\)$`, 'm'));
    const verified = await logVm('cd ~/build-logs.git && for c in $(git rev-list main); do git verify-commit "$c" 2>/dev/null && echo ok; done | wc -l; git rev-list main | wc -l');
    const [ok, all] = verified.trim().split('\n');
    expect(Number(all)).toBeGreaterThanOrEqual(5); // init, 2 x (publish, Add)
    expect(ok).toBe(all);
  });

  it('an auditor with a clone and the public key verifies the published log and gets the same text', async () => {
    const name = `buildlog.${first.log_file!.split('/')[1]}`;
    const out = await logVm(
      `set -e; rm -rf /tmp/${'audit'}-$$; git clone --quiet ~/build-logs.git /tmp/audit-$$; cd /tmp/audit-$$; ` +
        `logvm verify-chain build-vm/${name} --key '${tmp.dir}/public.asc' >/dev/null && echo VERIFIED; ` +
        `logvm render build-vm/${name} --format buildlog | cmp - ${first.log_file} && echo SAME; rm -rf /tmp/audit-$$`,
    );
    expect(out).toBe('VERIFIED\nSAME\n');
  });

  it('the store chains the hook results; the service said nothing on stderr', async () => {
    const ev = await logVm('logvm show build-vm/logvm-events');
    expect(ev).toMatch(/hook post-seal-hook for build-vm\/buildlog\.log_.*: exited 0/);
    expect(ev).toMatch(/hook post-log-hook for build-vm\/buildlog\.log_.*: exited 0/);
    const journal = (await lab(['journal'])).stdout.toString('utf8');
    expect(journal).not.toMatch(/qubesbuilder\.BuildLog: [A-Z_]+:/);
  });
});
