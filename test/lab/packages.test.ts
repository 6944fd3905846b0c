/**
 * The packages under the REAL qrexec (qrexec-lab): the .deb installed in the
 * log VM and the build VM as an admin would (dpkg -i), the dom0 package's
 * policy in dom0 (rpm -i, or the policy file if rpm is absent), then builds
 * logged from the build VM, both ways the README gives, and seal, export and
 * verify-chain in the log VM. Each failure is checked as the build VM really
 * sees it: qrexec-client-vm's or logsend's exit status, stdout and stderr
 * (which qrexec relays from the service: only short coded messages there).
 *
 * Needs the packages built by .ci/packages.sh (build/pkg, or APPENDLOG_DEB
 * and APPENDLOG_DOM0_RPM), root, and the lab; skips saying which is missing.
 */
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT } from '../exit-codes.js';
import { ROOT, jsonLines, run, type RunResult } from '../helpers.js';
import { labUnavailable, labUp, newest, type Lab } from './lab.js';

const DEB = process.env.APPENDLOG_DEB ?? newest(join(ROOT, 'build/pkg/deb'), /^qubes-appendlog_.*_amd64\.deb$/);
const RPM0 = process.env.APPENDLOG_DOM0_RPM ?? newest(join(ROOT, 'build/pkg/rpm/RPMS/noarch'), /^qubes-appendlog-dom0-.*\.noarch\.rpm$/);
const skip = labUnavailable() ?? (DEB === undefined || !existsSync(DEB) ? 'no qubes-appendlog .deb (run .ci/packages.sh, or set APPENDLOG_DEB)' : undefined);
if (skip) console.warn(`test/lab/packages.test.ts skipped: ${skip}`);

const tag = `${process.pid}`;
// Shared with the qubes (/tmp is not private in the lab): scripts, keys, copies.
const share = mkdtempSync(join(tmpdir(), 'appendlog-lab-share-'));
chmodSync(share, 0o755);
let lab: Lab;
let dom0Install = '';

/** A line of what the build VM's stderr may hold: a short coded message, nothing else (no stack, no path dump). */
const CODED = /^(logvm append|logsend): [A-Z_]+: [^\n]{1,240}$/;
function onlyCoded(stderr: string): void {
  const lines = stderr.split('\n').filter((l) => l !== '');
  expect(lines.length, stderr).toBeLessThanOrEqual(3);
  // The service's lines (relayed by qrexec from the log VM) are coded; logsend's own are short and prefixed.
  for (const l of lines) expect(l, stderr).toMatch(new RegExp(`${CODED.source}|^logsend: [^\n]{1,240}$|^Request refused$`));
  expect(stderr).not.toMatch(/\n\s+at |node:internal|\/usr\/lib\/appendlog/);
}

const buildVm = (script: string, input?: string): Promise<RunResult> => lab.sh(['build-vm', '-c', script], { input });
const logVm = (script: string): Promise<RunResult> => lab.sh(['log-vm', '-c', script]);
const out = (r: RunResult): string => r.stdout.toString('utf8');

/** The pid of the service process (node, `logvm append`) serving the call with this argument: only ours. */
function servicePid(argument: string): number | undefined {
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const env = readFileSync(`/proc/${d}/environ`, 'latin1').split('\0');
      const cmd = readFileSync(`/proc/${d}/cmdline`, 'latin1').split('\0');
      if (env.includes(`QREXEC_SERVICE_ARGUMENT=${argument}`) && env.includes('QREXEC_REMOTE_DOMAIN=build-vm') && cmd.includes('append') && cmd.includes('--qrexec')) return Number(d);
    } catch {
      // gone, or not readable
    }
  }
  return undefined;
}

async function until<T>(what: string, f: () => Promise<T | undefined> | T | undefined, timeoutMs = 30_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe.skipIf(skip !== undefined)(`the packages under the real qrexec${skip ? ` (skipped: ${skip})` : ''}`, () => {
  beforeAll(async () => {
    // As an admin would: the package, in each VM (a copy of this machine's
    // installation, if any, is removed first so the install is from scratch).
    const vmSetup = join(share, 'vm-setup.sh');
    writeFileSync(
      vmSetup,
      `#!/bin/sh
set -eu
if dpkg -s qubes-appendlog >/dev/null 2>&1; then dpkg --purge qubes-appendlog >/dev/null; fi
if command -v logvm >/dev/null; then echo "logvm is there before the package"; exit 1; fi
dpkg -i '${DEB}' >/dev/null
`,
      { mode: 0o755 },
    );
    const dom0Setup = join(share, 'dom0-setup.sh');
    writeFileSync(
      dom0Setup,
      `#!/bin/sh
set -eu
if [ -n '${RPM0 ?? ''}' ] && command -v rpm >/dev/null; then
  rpm -i --nodeps --force-debian '${RPM0 ?? ''}' 2>/dev/null || rpm -i --nodeps '${RPM0 ?? ''}'
  echo rpm > '${share}/dom0-install'
else
  install -m 0644 '${ROOT}/rpc/30-appendlog.policy' /etc/qubes/policy.d/
  echo file > '${share}/dom0-install'
fi
test -f /etc/qubes/policy.d/30-appendlog.policy
`,
      { mode: 0o755 },
    );
    lab = await labUp([
      '--log-setup', vmSetup,
      '--build-setup', vmSetup,
      '--dom0-setup', dom0Setup,
      '--build-copy', `${join(ROOT, 'examples/hello')}:/home/user/hello`,
    ]);
    dom0Install = readFileSync(join(share, 'dom0-install'), 'utf8').trim();
  }, 300_000);

  afterAll(async () => {
    await lab?.down();
    rmSync(share, { recursive: true, force: true });
  });

  it('installed: logvm and logsend from the package in both VMs, the service in /etc/qubes-rpc, the policy in dom0', async () => {
    const l = await logVm('command -v logvm; readlink -f "$(command -v logvm)"; logvm --version; ls /etc/qubes-rpc/qubes.AppendLog; dpkg -s qubes-appendlog | grep ^Status');
    expect(l.code, l.stderr).toBe(0);
    expect(out(l)).toMatch(/^\/usr\/bin\/logvm\n\/usr\/lib\/appendlog\/packages\/log-vm\/bin\/logvm\.js\n\d+\.\d+\.\d+\n\/etc\/qubes-rpc\/qubes\.AppendLog\nStatus: install ok installed\n$/);
    const b = await buildVm('command -v logsend; logsend --version');
    expect(b.code, b.stderr).toBe(0);
    expect(out(b)).toMatch(/^\/usr\/bin\/logsend\n\d+\.\d+\.\d+\n$/);
    const d = await lab.sh(['dom0', 'cat', '/etc/qubes/policy.d/30-appendlog.policy']);
    expect(out(d)).toContain('qubes.AppendLog  *  build-vm   logvm     allow');
    if (RPM0) expect(dom0Install).toBe('rpm');
  });

  it('`make 2>&1 | qrexec-client-vm logvm qubes.AppendLog+NAME`: exit 0, the receipt on stdout, nothing on stderr', async () => {
    const r = await buildVm('make -C hello 2>&1 | qrexec-client-vm logvm qubes.AppendLog+hello-raw');
    expect(r.code, r.stderr).toBe(0);
    const lines = jsonLines(r.stdout);
    expect(lines.at(-1)).toMatchObject({ type: 'receipt', log: 'build-vm/hello-raw', final: true });
    expect(r.stderr).toBe('');
    const show = await logVm('logvm show --raw build-vm/hello-raw');
    expect(out(show)).toContain('tests passed');
    const v = await logVm('logvm verify-chain --store build-vm/hello-raw');
    expect(v.code, v.stderr).toBe(0);
    expect(out(v)).toMatch(/^OK store build-vm\/hello-raw: chain intact/);
  });

  it('`logsend --target logvm ... -- make`: the build\'s exit status, its output on the terminal, receipts kept in the build VM', async () => {
    const r = await buildVm(
      `make -C hello clean >/dev/null && logsend --target logvm --name hello-framed --input 'hello/*.c' --artifact hello/hello --receipts r.jsonl -- make -C hello`,
    );
    expect(r.code, r.stderr).toBe(0);
    expect(out(r)).toContain('tests passed');
    const receipts = await buildVm('cat r.jsonl');
    const rs = jsonLines(receipts.stdout);
    expect(rs.length).toBeGreaterThan(0);
    expect(rs.at(-1)).toMatchObject({ type: 'receipt', log: 'build-vm/hello-framed', final: true });
    writeFileSync(join(share, 'r.jsonl'), receipts.stdout);
    const bin = await buildVm('cat hello/hello');
    writeFileSync(join(share, 'hello.bin'), bin.stdout);
    chmodSync(join(share, 'r.jsonl'), 0o644);
    chmodSync(join(share, 'hello.bin'), 0o644);
  });

  it('seal, export and verify-chain in the log VM: OK with the key, the receipts and the artifact', async () => {
    // A throwaway release key standing in for Split-GPG's vault.
    const gnupg = mkdtempSync(join(tmpdir(), 'appendlog-lab-gpg-'));
    const g = (args: string[]): Promise<RunResult> => run('gpg', ['--batch', '--no-tty', '--homedir', gnupg, ...args]);
    expect((await g(['--pinentry-mode', 'loopback', '--passphrase', '', '--quick-gen-key', 'Lab Release <lab@example.org>', 'ed25519', 'sign', 'never'])).code).toBe(0);
    writeFileSync(join(share, 'key.asc'), (await g(['--pinentry-mode', 'loopback', '--passphrase', '', '--armor', '--export-secret-keys', 'lab@example.org'])).stdout, { mode: 0o644 });
    writeFileSync(join(share, 'pub.asc'), (await g(['--armor', '--export', 'lab@example.org'])).stdout, { mode: 0o644 });
    await run('gpgconf', ['--homedir', gnupg, '--kill', 'gpg-agent']);
    rmSync(gnupg, { recursive: true, force: true });

    const s = await logVm(`logvm seal build-vm/hello-framed --signer key-file:${share}/key.asc`);
    expect(s.code, s.stderr).toBe(0);
    const e = await logVm('logvm export build-vm/hello-framed --out bundle');
    expect(e.code, e.stderr).toBe(0);
    const v = await logVm(`logvm verify-chain bundle --key ${share}/pub.asc --receipt ${share}/r.jsonl --artifact ${share}/hello.bin`);
    expect(v.code, v.stderr).toBe(0);
    expect(out(v)).toMatch(/^OK bundle build-vm\/hello-framed: chain intact and sealed/);
    expect(out(v)).toContain('receipts:  the log extends every receipt');
    const sha = createHash('sha256').update(readFileSync(join(share, 'hello.bin'))).digest('hex');
    expect(out(v)).toContain(`(sha256 ${sha})`);
  });

  it('a sealed log: the build VM gets LOG_SEALED (exit 5) from qrexec-client-vm, 60 from logsend, and the build does not start', async () => {
    const r = await buildVm('echo more | qrexec-client-vm logvm qubes.AppendLog+hello-framed');
    expect(r.code).toBe(EXIT.LOG_SEALED);
    expect(jsonLines(r.stdout)).toEqual([expect.objectContaining({ type: 'error', code: 'LOG_SEALED' })]);
    onlyCoded(r.stderr);
    const l = await buildVm("logsend --target logvm --name hello-framed -- sh -c 'touch started'; s=$?; test -e started && echo STARTED; exit $s");
    expect(l.code).toBe(EXIT.LOG_FAILED);
    expect(out(l)).not.toContain('STARTED');
    expect(l.stderr).toContain('LOG_SEALED');
    onlyCoded(l.stderr);
  });

  it.each([['-h'], ['..'], ['--db=x'], ['_framed'], ['a'.repeat(65)]])('a refused name %s: NAME_INVALID (exit 3) and a coded line, nothing stored', async (name) => {
    const r = await buildVm(`echo x | qrexec-client-vm logvm 'qubes.AppendLog+${name}'`);
    expect(r.code).toBe(EXIT.NAME_INVALID);
    expect(jsonLines(r.stdout)).toEqual([expect.objectContaining({ type: 'error', code: 'NAME_INVALID' })]);
    onlyCoded(r.stderr);
    const list = await logVm('logvm list --json');
    expect(out(list)).not.toContain(name === '..' ? '"name":".."' : name);
  });

  it('a denied policy: qrexec-client-vm exits 126 "Request refused"; logsend exits 61 TRANSPORT_REFUSED and never starts the build', async () => {
    const d = await lab.sh(['dom0', 'sh', '-c', `printf 'qubes.AppendLog  +denied-${tag}  build-vm  @anyvm  deny\\nqubes.AppendLog  +_framed.denied-${tag}  build-vm  @anyvm  deny\\n' > /etc/qubes/policy.d/20-appendlog-lab-deny.policy`]);
    expect(d.code, d.stderr).toBe(0);
    // The policy daemon reloads on change; wait until the rule is in force.
    const r = await until('the deny rule', async () => {
      const x = await buildVm(`echo x | qrexec-client-vm logvm qubes.AppendLog+denied-${tag}`);
      return x.code === 126 ? x : undefined;
    });
    expect(r.stderr.trim()).toBe('Request refused');
    expect(r.stdout.length).toBe(0);
    const l = await buildVm(`logsend --target logvm --name denied-${tag} -- sh -c 'touch started-denied'; s=$?; test -e started-denied && echo STARTED; exit $s`);
    expect(l.code).toBe(EXIT.TRANSPORT_REFUSED);
    expect(out(l)).not.toContain('STARTED');
    expect(l.stderr).toMatch(/^logsend: TRANSPORT_REFUSED: /m);
    onlyCoded(l.stderr);
    const list = await logVm('logvm list --json');
    expect(out(list)).not.toContain(`denied-${tag}`);
  });

  it('a killed service: qrexec-client-vm exits 137, logsend exits 60 LOG_FAILED and stops the build, the next session records the loss', async () => {
    const name = `killed-${tag}`;
    const call = buildVm(`i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.1; done | qrexec-client-vm logvm qubes.AppendLog+${name}`);
    const pid = await until('the service process', () => servicePid(name));
    await until('a committed line', async () => (out(await logVm(`logvm show build-vm/${name} 2>/dev/null`)).includes('tick 3') ? true : undefined));
    process.kill(pid, 'SIGKILL');
    const r = await call;
    expect(r.code).toBe(128 + 9);
    onlyCoded(r.stderr);

    const fname = `killed-framed-${tag}`;
    const sent = buildVm(`logsend --target logvm --name ${fname} -- sh -c 'i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.1; done'`);
    const fpid = await until('the framed service process', () => servicePid(`_framed.${fname}`));
    await until('a committed line', async () => (out(await logVm(`logvm show build-vm/${fname} 2>/dev/null`)).includes('tick 3') ? true : undefined));
    process.kill(fpid, 'SIGKILL');
    const l = await sent;
    expect(l.code).toBe(EXIT.LOG_FAILED);
    expect(l.stderr).toMatch(/^logsend: LOG_FAILED: /m);
    onlyCoded(l.stderr);

    const again = await buildVm(`echo after | qrexec-client-vm logvm qubes.AppendLog+${name}`);
    expect(again.code, again.stderr).toBe(0);
    const show = await logVm(`logvm show build-vm/${name}`);
    expect(out(show)).toMatch(/lost/);
    const v = await logVm(`logvm verify-chain --store build-vm/${name}`);
    expect(v.code, v.stderr).toBe(0);
  });
});
