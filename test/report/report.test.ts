/// <reference lib="dom" />
// (Code passed to page.evaluate runs in the browser.)
/**
 * `logvm report`, checked in a real browser: a build logged through logsend
 * and the real service, sealed with GnuPG and exported; the report of its
 * bundle is opened from file:// in Debian's headless Chromium, and the
 * verdict, the highlights, the claims, the pictures and the log are read back
 * from the DOM.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { RPC_SERVICE, baseEnv, callService, logvm, qrexecEnv, run, tempDir } from '../helpers.js';
import { SIGNER_EMAIL } from '../sender/util.js';
import { EXIT } from '../exit-codes.js';
import { HAVE_CHROMIUM, NO_CHROMIUM, launch, openReport, type Browser, type Opened } from './browser.js';
import { VM, logBuild, logvmOk, makeSigner, sealAndExport, type Signer } from './util.js';

if (!HAVE_CHROMIUM) console.warn(`test/report: skipped: ${NO_CHROMIUM}`);

/** The build: each line is annotated with the "look here first" groups it belongs to. */
const BUILD: Array<{ out: 'stdout' | 'stderr'; text: string; groups: string[] }> = [
  { out: 'stdout', text: '  CC      src/main.c', groups: [] },
  { out: 'stderr', text: "\x1b[1;31msrc/main.c:12:5: error: expected ';' before '}'\x1b[0m", groups: ['error'] },
  { out: 'stdout', text: "src/main.c:40:1: warning: unused variable 'x'", groups: [] },
  { out: 'stderr', text: "/usr/bin/ld: main.o: undefined reference to 'frob'", groups: ['linker-error'] },
  { out: 'stderr', text: 'collect2: error: ld returned 1 exit status', groups: ['linker-error', 'error'] },
  { out: 'stdout', text: 'gpg: BAD signature from "Upstream <u@example.org>"', groups: ['bad-signature'] },
  { out: 'stdout', text: 'sha256sum: WARNING: 1 computed checksum did NOT match', groups: ['verification-failed'] },
  { out: 'stdout', text: 'ERROR: source verification failed, continuing anyway', groups: ['verification-failed', 'error'] },
  { out: 'stdout', text: 'FAILED test_parser (3 of 12)', groups: ['failed'] },
  { out: 'stderr', text: 'make: *** [Makefile:4: all] Error 2', groups: ['exit-status'] },
  { out: 'stderr', text: 'cat: missing.txt: No such file or directory', groups: ['no-such-file'] },
  { out: 'stdout', text: 'done', groups: [] },
];
const EXIT_STATUS = 3;

function shellScript(): string {
  const q = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
  const body = BUILD.map((l) => `printf '%s\\n' ${q(l.text)}${l.out === 'stderr' ? ' >&2' : ''}`).join('\n');
  return `set -u\nprintf 'artifact\\n' > out.bin\n${body}\nexit ${EXIT_STATUS}\n`;
}

const expectedCount = (group: string): number => BUILD.filter((l) => l.groups.includes(group)).length;

const tmp = tempDir('appendlog-report-');
const db = join(tmp.dir, 'logs.db');
const work = join(tmp.dir, 'work');
const bundle = join(tmp.dir, 'bundle');
const report = join(tmp.dir, 'report.html');
const NAME = 'release-1';
let signer: Signer;
let browser: Browser;
let opened: Opened;
let reportRun: Awaited<ReturnType<typeof logvm>>;
let fingerprint: string;

describe.skipIf(!HAVE_CHROMIUM)('logvm report BUNDLE, opened in Chromium', () => {
  beforeAll(async () => {
    mkdirSync(work);
    mkdirSync(join(work, 'src'));
    writeFileSync(join(work, 'src/main.c'), 'int main(void) { return 0; }\n');
    signer = await makeSigner(tmp.dir);
    // A signed source, checked by logsend --verify-input before the build (the signer's key stands in for upstream's).
    writeFileSync(join(work, 'src.tar.gz'), 'upstream sources\n');
    const signed = await run('gpg', ['--batch', '--yes', '-u', SIGNER_EMAIL, '-a', '-b', '-o', join(work, 'src.tar.gz.asc'), join(work, 'src.tar.gz')], { env: signer.env });
    expect(signed.code, signed.stderr).toBe(0);
    const sent = await logBuild(db, NAME, work, shellScript(), {
      inputs: ['src/main.c'],
      artifacts: ['out.bin'],
      extra: ['--verify-input', 'src.tar.gz=src.tar.gz.asc', '--keyring', signer.pub],
    });
    expect(sent.code, sent.stderr).toBe(EXIT_STATUS);
    await sealAndExport(db, `${VM}/${NAME}`, signer, bundle);
    reportRun = await logvm(['report', bundle, '--key', signer.pub, '--out', report]);
    const verified = JSON.parse((await logvmOk(['verify-chain', bundle, '--key', signer.pub, '--json'])).stdout.toString('utf8')) as {
      signatures: Array<{ fingerprint: string }>;
    };
    fingerprint = verified.signatures[0]!.fingerprint;
    browser = await launch();
    opened = await openReport(browser, report);
  });

  afterAll(async () => {
    await browser?.close();
    await signer?.cleanup();
    tmp.cleanup();
  });

  it('exits 0 and says OK, with the report file', () => {
    expect(reportRun.code, reportRun.stderr).toBe(0);
    expect(reportRun.stdout.toString('utf8')).toMatch(new RegExp(`^OK ${VM}/${NAME}: report written to `));
  });

  it('shows the verdict of verify-chain: VERIFIED, with the trusted key, the signer, the threshold and the seal time', async () => {
    const { page } = opened;
    expect(await page.getAttribute('#verdict', 'data-ok')).toBe('true');
    expect(await page.textContent('#verdict-headline')).toBe('VERIFIED: chain intact and sealed, signed by 1 trusted key(s), 1 required');
    expect(await page.textContent('#keys')).toContain(fingerprint);
    expect(await page.textContent('#signers')).toContain(fingerprint);
    const manifest = JSON.parse(readFileSync(join(bundle, 'manifest.json'), 'utf8')) as { sealed: number; head: string };
    const facts = await page.textContent('#verdict dl');
    expect(facts).toContain(new Date(manifest.sealed).toISOString());
    expect(facts).toContain(manifest.head);
  });

  it('groups and counts the lines that look like failures, each linking to its seq in the log', async () => {
    const { page } = opened;
    for (const group of ['error', 'linker-error', 'failed', 'bad-signature', 'verification-failed', 'no-such-file', 'exit-status']) {
      const n = expectedCount(group);
      expect(await page.getAttribute(`[data-group="${group}"]`, 'data-count'), group).toBe(String(n));
      expect(await page.locator(`[data-group="${group}"] li[data-seq]`).count(), group).toBe(n);
    }
    expect(await page.getAttribute('[data-group="stderr"]', 'data-count')).toBe(String(BUILD.filter((l) => l.out === 'stderr').length));
    expect(await page.locator('[data-group="permission-denied"]').count()).toBe(0);
    // The BAD signature hit links to the log row showing the same text.
    const hit = page.locator('[data-group="bad-signature"] li[data-seq]');
    const seq = await hit.getAttribute('data-seq');
    await page.locator('[data-group="bad-signature"] summary').click();
    await hit.locator('a').click();
    await page.waitForSelector(`#rows .row.target[data-seq="${seq}"]`);
    expect(await page.textContent(`#rows .row[data-seq="${seq}"]`)).toContain('gpg: BAD signature from "Upstream <u@example.org>"');
  });

  it('says first that the build exited with a non-zero status', async () => {
    expect(await opened.page.textContent('#exit-highlight')).toBe(`The build exited with status ${EXIT_STATUS} (claimed by the build VM).`);
  });

  it('prints: the first screen on paper, the log view replaced by a note', async () => {
    const { page } = opened;
    await page.emulateMedia({ media: 'print' });
    try {
      expect(await page.locator('#viewport').isVisible()).toBe(false);
      expect(await page.locator('#search').isVisible()).toBe(false);
      expect(await page.locator('#verdict').isVisible()).toBe(true);
      expect(await page.locator('.printnote').isVisible()).toBe(true);
      const pdf = await page.pdf({ format: 'A4' });
      expect(pdf.subarray(0, 5).toString('latin1')).toBe('%PDF-');
    } finally {
      await page.emulateMedia({ media: 'screen' });
    }
  });

  it('lists the claims: the exit status (non-zero, in red), the inputs and artifacts with size and SHA-256', async () => {
    const { page } = opened;
    expect(await page.textContent('#exit-status')).toBe(String(EXIT_STATUS));
    expect(await page.getAttribute('#exit-status', 'class')).toBe('exit-bad');
    const sha = (p: string): string => createHash('sha256').update(readFileSync(join(work, p))).digest('hex');
    const input = await page.textContent('#claims-inputs tbody');
    expect(input).toContain('src/main.c');
    expect(input).toContain(sha('src/main.c'));
    expect(input).toContain(String(readFileSync(join(work, 'src/main.c')).length));
    const artifact = await page.textContent('#claims-artifacts tbody');
    expect(artifact).toContain('out.bin');
    expect(artifact).toContain(sha('out.bin'));
  });

  it('lists the inputs the build VM verified before the build, with the signer', async () => {
    const { page } = opened;
    const row = await page.textContent('#claims-verified tbody');
    expect(row).toContain('src.tar.gz');
    expect(row).toContain(fingerprint);
    expect(row).toContain(createHash('sha256').update(readFileSync(join(work, 'src.tar.gz'))).digest('hex'));
    expect(await page.locator('#claims-rejected').count()).toBe(0);
  });

  it('draws the session timeline and the lines per second, stderr marked', async () => {
    const { page } = opened;
    expect(await page.locator('#timeline svg rect.session').count()).toBe(1);
    expect(await page.getAttribute('#timeline svg rect.session', 'data-reason')).toBe('eof');
    expect(await page.locator('#rate svg rect.bar').count()).toBeGreaterThan(0);
    expect(await page.locator('#rate svg rect.bar-stderr').count()).toBeGreaterThan(0);
  });

  it('shows the log with seq numbers, ANSI colours as colours and the same marks as show', async () => {
    const { page } = opened;
    const show = (await logvmOk(['show', bundle])).stdout.toString('utf8');
    const entries = show.split('\n').filter((l) => l !== '').length;
    expect(await page.textContent('#log-count')).toBe(`${entries} entries`);
    // The red, bold error line: its seq from show, its colour from the DOM.
    const showLine = show.split('\n').find((l) => l.includes('12:5: error'))!;
    const seq = /^ *(\d+) E/.exec(showLine)![1]!;
    await page.evaluate((s) => (location.hash = `#L${s}`), seq);
    const row = page.locator(`#rows .row[data-seq="${seq}"]`);
    await row.waitFor();
    expect(await row.locator('.mk').textContent()).toBe('E ');
    const span = row.locator('span.f1.b');
    expect(await span.textContent()).toBe("src/main.c:12:5: error: expected ';' before '}'");
    expect(await span.evaluate((e) => getComputedStyle(e).color)).toBe('rgb(255, 123, 114)');
    expect(await span.evaluate((e) => getComputedStyle(e).fontWeight)).toBe('700');
    expect(await row.textContent()).not.toContain('\\e[');
  });

  it('finds lines with the search box and counts them', async () => {
    const { page } = opened;
    await page.fill('#search', 'error');
    await page.press('#search', 'Enter');
    await page.waitForSelector('#search-count[data-count]');
    const expected = BUILD.filter((l) => /error/i.test(l.text)).length;
    expect(await page.getAttribute('#search-count', 'data-count')).toBe(String(expected));
    expect(await page.locator('#rows mark').count()).toBeGreaterThan(0);
  });

  it('makes no network request and logs no script error or CSP violation', () => {
    expect(opened.requests).toEqual([opened.url]);
    expect(opened.errors).toEqual([]);
    expect(opened.dialogs).toEqual([]);
  });

  it('allows scripts and styles only by hash, and no remote source at all', async () => {
    const csp = (await opened.page.getAttribute('meta[http-equiv="Content-Security-Policy"]', 'content'))!;
    const directives = new Map(csp.split(';').map((d) => d.trim().split(/\s+/)).map(([k, ...v]) => [k!, v]));
    expect(directives.get('default-src')).toEqual(["'none'"]);
    expect(directives.get('script-src')).toHaveLength(1);
    expect(directives.get('script-src')![0]).toMatch(/^'sha256-[A-Za-z0-9+/]+=*'$/);
    expect(directives.get('style-src')![0]).toMatch(/^'sha256-[A-Za-z0-9+/]+=*'$/);
    expect(directives.get('trusted-types')).toEqual(["'none'"]);
    expect(csp).not.toMatch(/unsafe|https?:|\*/);
  });

  it('takes a screenshot', async () => {
    const png = join(tmp.dir, 'report.png');
    await opened.page.screenshot({ path: png });
    const b = readFileSync(png);
    expect(b.subarray(0, 8).toString('hex')).toBe('89504e470d0a1a0a');
    expect(b.length).toBeGreaterThan(10_000);
  });

  describe('when the bundle was tampered with', () => {
    it('is written anyway, says FAILED in red with the code and the seq, and exits with verify-chain\'s code', async () => {
      const bad = join(tmp.dir, 'bad-bundle');
      await logvmOk(['export', `${VM}/${NAME}`, '--out', bad, '--bundle-version', '1'], { db });
      const lines = readFileSync(join(bad, 'entries.jsonl'), 'utf8').split('\n');
      const at = lines.findIndex((l) => l.includes('FAILED test_parser'));
      lines[at] = lines[at]!.replace('FAILED test_parser', 'PASSED test_parser');
      writeFileSync(join(bad, 'entries.jsonl'), lines.join('\n'));
      const out = join(tmp.dir, 'bad.html');
      const r = await logvm(['report', bad, '--key', signer.pub, '--out', out]);
      expect(r.code).toBe(EXIT.CHAIN_HASH_MISMATCH);
      expect(r.stderr).toContain('FAIL: CHAIN_HASH_MISMATCH');
      const o = await openReport(browser, out);
      expect(await o.page.getAttribute('#verdict', 'data-ok')).toBe('false');
      expect(await o.page.textContent('#verdict-headline')).toBe(`FAILED: CHAIN_HASH_MISMATCH at seq ${at + 1}`);
      expect(await o.page.evaluate(() => getComputedStyle(document.getElementById('verdict-headline')!).color)).toBe('rgb(207, 34, 46)');
      expect(o.errors).toEqual([]);
      await o.page.close();
    });
  });

  describe('a bundle archive (.tar.gz, .tar) and a version 1 bundle', () => {
    for (const form of ['bundle.tar.gz', 'bundle.tar', 'bundle-v1']) {
      it(`${form}: the same verdict, highlights and log as the directory`, async () => {
        const target = join(tmp.dir, form);
        await logvmOk(['export', `${VM}/${NAME}`, '--out', target, ...(form.endsWith('v1') ? ['--bundle-version', '1'] : [])], { db });
        const out = join(tmp.dir, `${form}.html`);
        const r = await logvm(['report', target, '--key', signer.pub, '--out', out]);
        expect(r.code, r.stderr).toBe(0);
        const o = await openReport(browser, out);
        expect(await o.page.getAttribute('#verdict', 'data-ok')).toBe('true');
        for (const sel of ['#log-count', '[data-group="error"] .count', '[data-group="stderr"] .count', '#claims-artifacts tbody', '#exit-status']) {
          expect(await o.page.textContent(sel), sel).toBe(await opened.page.textContent(sel));
        }
        expect(o.errors).toEqual([]);
        await o.page.close();
      });
    }
  });

  describe('when the bundle is checked with a key that did not sign it', () => {
    it('says FAILED with SIGNATURE_UNTRUSTED and exits 32; the log is still there to read, marked as unverified', async () => {
      mkdirSync(join(tmp.dir, 'other'), { recursive: true });
      const other = await makeSigner(join(tmp.dir, 'other'));
      try {
        const out = join(tmp.dir, 'untrusted.html');
        const r = await logvm(['report', bundle, '--key', other.pub, '--out', out]);
        expect(r.code).toBe(EXIT.SIGNATURE_UNTRUSTED);
        const o = await openReport(browser, out);
        expect(await o.page.getAttribute('#verdict', 'data-code')).toBe('SIGNATURE_UNTRUSTED');
        expect(await o.page.textContent('#verdict-headline')).toBe('FAILED: SIGNATURE_UNTRUSTED');
        expect(await o.page.textContent('#verdict')).toContain('did not verify: read it as evidence, not as fact');
        expect(await o.page.textContent('#log-count')).toMatch(/^\d+ entries$/);
        await o.page.close();
      } finally {
        await other.cleanup();
      }
    });
  });

  describe('a log in the store (VM/NAME), not sealed', () => {
    it('says the chain is intact but not sealed', async () => {
      const open = 'open-1';
      expect((await logBuild(db, open, work, 'echo hello\n')).code).toBe(0);
      const out = join(tmp.dir, 'open.html');
      const r = await logvm(['report', `${VM}/${open}`, '--out', out], { db });
      expect(r.code, r.stderr).toBe(0);
      const o = await openReport(browser, out);
      expect(await o.page.textContent('#verdict-headline')).toBe('VERIFIED: chain intact, not sealed');
      expect(await o.page.textContent('#exit-status')).toBe('0');
      expect(await o.page.getAttribute('#exit-status', 'class')).toBe('exit-ok');
      await o.page.close();
    });
  });

  describe('a log whose sessions were lost and refused', () => {
    it('marks them on the timeline and in the table, with the gap between sessions, and counts the log VM notice', async () => {
      const name = 'sessions-1';
      // Session 1: the service is SIGKILLed after its first lines are committed: the next session records it as lost.
      const child = spawn(RPC_SERVICE, [], { env: baseEnv(qrexecEnv(VM, name, db)), stdio: ['pipe', 'ignore', 'ignore'] });
      child.stdin.write('before the crash\n');
      for (let i = 0; i < 300; i++) {
        const r = await logvm(['show', `${VM}/${name}`], { db });
        if (r.stdout.toString().includes('before the crash')) break;
        await new Promise((res) => setTimeout(res, 100));
      }
      const died = new Promise((res) => child.on('close', res));
      child.kill('SIGKILL');
      await died;
      await new Promise((res) => setTimeout(res, 1100)); // a visible gap
      expect((await callService(VM, name, db, { input: 'after the crash\n' })).code).toBe(0);
      // Session 3: a framed session that breaks the protocol is refused, with a log VM notice.
      const bad = await callService(VM, `_framed.${name}`, db, { input: Buffer.from('this is not a frame\n') });
      expect(bad.code).not.toBe(0);
      const out = join(tmp.dir, 'sessions.html');
      expect((await logvm(['report', `${VM}/${name}`, '--out', out], { db })).code).toBe(0);
      const o = await openReport(browser, out);
      const reasons = await o.page.locator('#timeline rect.session').evaluateAll((rs) => rs.map((r) => r.getAttribute('data-reason')));
      expect(reasons).toEqual(['lost', 'eof', 'refused']);
      expect(await o.page.locator('#timeline svg text', { hasText: 'lost' }).count()).toBe(1);
      expect(await o.page.locator('#timeline svg text', { hasText: 'refused' }).count()).toBe(1);
      expect(await o.page.locator('#sessions-table tbody tr[data-reason="lost"]').count()).toBe(1);
      const gap = await o.page.textContent('#sessions-table tbody tr:nth-child(2) td:last-child');
      expect(gap).toMatch(/^\d+(\.\d)? s$/);
      expect(await o.page.getAttribute('[data-group="log-vm-notice"]', 'data-count')).toBe('1');
      expect(o.errors).toEqual([]);
      await o.page.close();
    });
  });

  describe('a log larger than --max-embed-mib', () => {
    it('holds the highlights and a window around them, and says what was left out', async () => {
      const big = 'big-1';
      const script = 'i=0\nwhile [ $i -lt 6000 ]; do echo "line $i"; [ $i -eq 3000 ] && echo "FAILED in the middle"; i=$((i+1)); done\n';
      expect((await logBuild(db, big, work, script)).code).toBe(0);
      const out = join(tmp.dir, 'big.html');
      // About 60 KB of text allowed: the log holds ~50 KB of lines beyond the head and tail windows.
      const r = await logvm(['report', `${VM}/${big}`, '--out', out, '--max-embed-mib', '0.03'], { db });
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.toString('utf8')).toContain('(window around the highlights)');
      const o = await openReport(browser, out);
      const note = o.page.locator('#window-note');
      const leftOut = Number(await note.getAttribute('data-left-out'));
      expect(leftOut).toBeGreaterThan(1000);
      expect(await note.textContent()).toContain(`${leftOut.toLocaleString('en-US')} entries are left out`);
      const hit = await o.page.getAttribute('[data-group="failed"] li[data-seq]', 'data-seq');
      await o.page.evaluate((s) => (location.hash = `#L${s}`), hit);
      await o.page.waitForSelector(`#rows .row[data-seq="${hit}"]`);
      // The window around it: 20 entries before and after are there.
      for (const s of [Number(hit) - 20, Number(hit) + 20]) {
        await o.page.evaluate((x) => (location.hash = `#L${x}`), s);
        await o.page.waitForSelector(`#rows .row.target[data-seq="${s}"]`);
        expect(await o.page.textContent('#log-status')).toBe(`seq ${s}`);
      }
      // Outside the windows: left out, and the viewer says so.
      await o.page.evaluate((x) => (location.hash = `#L${x}`), Number(hit) - 500);
      await o.page.waitForFunction(() => document.getElementById('log-status')!.textContent!.includes('not in this report'));
      expect(o.errors).toEqual([]);
      await o.page.close();
    });
  });

  describe('--patterns FILE', () => {
    it('adds a "look here first" group of its own', async () => {
      const file = join(tmp.dir, 'patterns.json');
      writeFileSync(file, JSON.stringify([{ id: 'unused-variable', title: 'unused variables', regex: 'unused variable' }]));
      const out = join(tmp.dir, 'patterns.html');
      await logvmOk(['report', bundle, '--key', signer.pub, '--out', out, '--patterns', file]);
      const o = await openReport(browser, out);
      expect(await o.page.getAttribute('[data-group="unused-variable"]', 'data-count')).toBe('1');
      await o.page.close();
    });

    it('refuses a pattern that is not a valid regular expression (USAGE)', async () => {
      const file = join(tmp.dir, 'bad-patterns.json');
      writeFileSync(file, JSON.stringify([{ id: 'x', regex: '(' }]));
      const r = await logvm(['report', bundle, '--key', signer.pub, '--out', join(tmp.dir, 'x.html'), '--patterns', file]);
      expect(r.code).toBe(EXIT.USAGE);
      expect(r.stderr).toMatch(/--patterns .*\[0\]/);
    });
  });
});
