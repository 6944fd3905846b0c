/// <reference lib="dom" />
/// <reference lib="dom.iterable" />
// (Code passed to page.evaluate runs in the browser.)
/**
 * The report of a hostile log. Everything in the bundle is the attacker's:
 * the lines, the claims (file names, host name, command line). None of it may
 * become markup or script in the report, and none of it may reorder what the
 * reader sees. One case per attack, each checked in Chromium.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers.js';
import { HAVE_CHROMIUM, launch, openReport, type Browser, type Opened } from './browser.js';
import { VM, logBuild, logvmOk, makeSigner, sealAndExport, type Signer } from './util.js';

/** Each attack: a line the build prints, and what the reader must see instead (show's escapes). */
const ATTACKS: Array<{ name: string; line: string; shown: string }> = [
  { name: 'a script element', line: '<script>window.__pwned="script"</script>', shown: '<script>window.__pwned="script"</script>' },
  { name: 'the end of the data block', line: '</script><script>window.__pwned="breakout"</script>', shown: '</script><script>window.__pwned="breakout"</script>' },
  { name: 'the end of the style sheet', line: '</style><style>body{display:none}</style>', shown: '</style><style>body{display:none}</style>' },
  { name: 'an attribute breakout with onerror', line: '"><img src=x onerror="window.__pwned=\'img\'">', shown: '"><img src=x onerror="window.__pwned=\'img\'">' },
  { name: 'a javascript: link', line: '<a href="javascript:window.__pwned=\'link\'">click</a> javascript:window.__pwned=1', shown: '<a href="javascript:window.__pwned=\'link\'">click</a> javascript:window.__pwned=1' },
  { name: 'an HTML comment opener', line: '<!-- <script>window.__pwned="comment"</script>', shown: '<!-- <script>window.__pwned="comment"</script>' },
  { name: 'an entity', line: '&lt;b&gt; &amp; &#x3c;script&#x3e;', shown: '&lt;b&gt; &amp; &#x3c;script&#x3e;' },
  { name: 'a right-to-left override', line: 'evil\u202Efdp.exe\u202C safe', shown: 'evil\\u202efdp.exe\\u202c safe' },
  { name: 'bidi isolates', line: 'a\u2067b\u2066c\u2069d', shown: 'a\\u2067b\\u2066c\\u2069d' },
  { name: 'a terminal title (OSC) and a cursor move', line: '\x1b]0;owned\x07\x1b[2Aup', shown: '\\e]0;owned\\x07\\e[2Aup' },
  { name: 'the escape language itself', line: 'x3c \\x3c \\e[31m not red', shown: 'x3c \\\\x3c \\\\e[31m not red' },
];

const HOSTILE_FILE = '"><img src=x onerror=window.__pwned=9>\u202E.c';

const tmp = tempDir('appendlog-report-hostile-');
const db = join(tmp.dir, 'logs.db');
const work = join(tmp.dir, 'work');
const bundle = join(tmp.dir, 'bundle');
const report = join(tmp.dir, 'report.html');
let signer: Signer;
let browser: Browser;
let o: Opened;
/** seq of each attack line, from `logvm show --json`. */
const seqOf = new Map<string, number>();

describe.skipIf(!HAVE_CHROMIUM)('the report of a hostile log', () => {
  beforeAll(async () => {
    mkdirSync(work);
    writeFileSync(join(work, HOSTILE_FILE), 'input\n');
    signer = await makeSigner(tmp.dir);
    const printf = (s: string): string => `printf '%s\\n' '${s.replace(/'/g, `'\\''`)}'`;
    const script = ATTACKS.map((a, i) => `${printf(a.line)}${i % 2 ? ' >&2' : ''}`).join('\n');
    const r = await logBuild(db, 'hostile', work, `${script}\n`, { inputs: [HOSTILE_FILE] });
    expect(r.code, r.stderr).toBe(0);
    await sealAndExport(db, `${VM}/hostile`, signer, bundle);
    for (const l of readFileSync(join(bundle, 'entries.jsonl'), 'utf8').split('\n')) {
      if (l === '') continue;
      const rec = JSON.parse(l) as { seq: number; text?: string; base64?: string };
      const text = rec.text ?? Buffer.from(rec.base64!, 'base64').toString('utf8');
      const a = ATTACKS.find((x) => x.line === text);
      if (a) seqOf.set(a.name, rec.seq);
    }
    expect(ATTACKS.filter((a) => !seqOf.has(a.name)).map((a) => a.name)).toEqual([]);
    await logvmOk(['report', bundle, '--key', signer.pub, '--out', report]);
    browser = await launch();
    o = await openReport(browser, report);
    // Give any injected handler (img onerror, a timer) a chance to run.
    await o.page.waitForTimeout(300);
  });

  afterAll(async () => {
    await browser?.close();
    await signer?.cleanup();
    tmp.cleanup();
  });

  it('runs none of it: no injected script, handler or link fired, no dialog, no error', async () => {
    expect(await o.page.evaluate(() => (window as unknown as { __pwned?: unknown }).__pwned)).toBeUndefined();
    expect(o.dialogs).toEqual([]);
    expect(o.errors).toEqual([]);
    expect(o.requests).toEqual([o.url]);
  });

  it('adds no element: no img, no extra script or style, no link but #L fragments', async () => {
    const { page } = o;
    // Show every attack row at once, so their DOM is there to inspect.
    await page.setViewportSize({ width: 1280, height: 4000 });
    await page.evaluate(() => (location.hash = '#L1'));
    await page.waitForSelector('#rows .row[data-seq="1"]');
    expect(await page.locator('img, iframe, object, embed, link, base, form, meta[http-equiv="refresh"]').count()).toBe(0);
    expect(await page.locator('style').count()).toBe(1);
    // The two JSON data blocks and the viewer (the log text block is consumed and removed).
    expect(await page.locator('script').count()).toBe(3);
    const hrefs = await page.locator('a').evaluateAll((as) => as.map((a) => a.getAttribute('href')));
    expect(hrefs.length).toBeGreaterThan(ATTACKS.length);
    for (const h of hrefs) expect(h).toMatch(/^#L\d+$/);
    expect(await page.evaluate(() => [...document.querySelectorAll('*')].some((e) => [...e.attributes].some((a) => a.name.startsWith('on'))))).toBe(false);
  });

  for (const a of ATTACKS) {
    it(`shows ${a.name} as text, exactly as logvm show does`, async () => {
      const seq = seqOf.get(a.name)!;
      const { page } = o;
      await page.evaluate((s) => (location.hash = `#L${s}`), seq);
      const row = page.locator(`#rows .row[data-seq="${seq}"]`);
      await row.waitFor();
      const text = (await row.textContent())!;
      // seq, the two marks, then the line.
      expect(text).toBe(`${seq}${ATTACKS.indexOf(a) % 2 ? 'E ' : '| '}${a.shown}`);
      const show = (await logvmOk(['show', bundle, '--since', String(seq), '--until', String(seq)])).stdout.toString('utf8');
      expect(show).toBe(`${String(seq).padStart(8)} ${ATTACKS.indexOf(a) % 2 ? 'E' : '|'}  ${a.shown}\n`);
    });
  }

  it('reorders nothing: every character of a bidi line is laid out left to right, in order', async () => {
    const seq = seqOf.get('a right-to-left override')!;
    const { page } = o;
    await page.evaluate((s) => (location.hash = `#L${s}`), seq);
    const row = page.locator(`#rows .row[data-seq="${seq}"]`);
    await row.waitFor();
    const xs = await row.evaluate((r) => {
      const out: number[] = [];
      const walker = document.createTreeWalker(r, NodeFilter.SHOW_TEXT);
      for (let n = walker.nextNode(); n !== null; n = walker.nextNode()) {
        for (let i = 0; i < n.textContent!.length; i++) {
          const range = document.createRange();
          range.setStart(n, i);
          range.setEnd(n, i + 1);
          out.push(range.getBoundingClientRect().left);
        }
      }
      return out;
    });
    expect(xs.length).toBeGreaterThan(20);
    for (let i = 1; i < xs.length; i++) expect(xs[i]!, `character ${i}`).toBeGreaterThanOrEqual(xs[i - 1]!);
    // And no bidi control reached the page at all.
    expect(await page.evaluate(() => /[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]/.test(document.body.textContent!))).toBe(false);
  });

  it('shows a hostile claimed file name as text, its override escaped', async () => {
    const cell = await o.page.textContent('#claims-inputs tbody td.path');
    expect(cell).toBe('"><img src=x onerror=window.__pwned=9>\\u202e.c');
  });

  it('keeps every `<` out of the file outside its own markup: the data cannot end a block', () => {
    const html = readFileSync(report, 'utf8');
    const logText = html.slice(html.indexOf('<script type="text/plain" id="log-text">') + 40, html.lastIndexOf('</script>'));
    expect(logText).not.toContain('<');
    expect(logText).toContain('\\x3cscript>');
    // Exactly the page's own elements end: one style, four script blocks.
    expect(html.match(/<\/script/gi)).toHaveLength(4);
    expect(html.match(/<\/style/gi)).toHaveLength(1);
  });
});
