/// <reference lib="dom" />
// (Code passed to page.evaluate runs in the browser.)
/**
 * The report stays usable for the 1M-line benchmark corpus (bench/corpus.mjs,
 * generated here once): the whole log is embedded in at most 1.5x its size,
 * and Chromium opens it, log loaded and shown, in under 3 s. The time is the
 * page's own (navigation start to the viewer's "ready" mark); the best of
 * up to five opens is taken, so a busy CI machine does not decide it.
 */
import { createReadStream, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, callService, run, tempDir } from '../helpers.js';
import { HAVE_CHROMIUM, launch, openReport, type Browser, type Opened } from './browser.js';
import { VM, logvmOk, makeSigner, sealAndExport, type Signer } from './util.js';

const LINES = 1_000_000;
const tmp = tempDir('appendlog-report-corpus-');
const db = join(tmp.dir, 'logs.db');
const corpus = join(tmp.dir, 'corpus.log');
const bundle = join(tmp.dir, 'bundle');
const report = join(tmp.dir, 'report.html');
let signer: Signer;
let browser: Browser;
let best: Opened;
const opens: number[] = [];
let corpusText: string;

describe.skipIf(!HAVE_CHROMIUM)('the report of the 1M-line corpus', () => {
  beforeAll(async () => {
    const gen = await run(process.execPath, [join(ROOT, 'bench/corpus.mjs'), corpus, String(LINES)]);
    expect(gen.code, gen.stderr).toBe(0);
    signer = await makeSigner(tmp.dir);
    const sent = await callService(VM, 'corpus', db, { input: createReadStream(corpus), timeoutMs: 300_000 });
    expect(sent.code, sent.stderr).toBe(0);
    await sealAndExport(db, `${VM}/corpus`, signer, bundle);
    await logvmOk(['report', bundle, '--key', signer.pub, '--out', report], { timeoutMs: 300_000 });
    corpusText = readFileSync(corpus, 'latin1');
    browser = await launch();
    for (let i = 0; i < 5; i++) {
      const o = await openReport(browser, report);
      opens.push(o.readyMs);
      if (best === undefined || o.readyMs < best.readyMs) {
        await best?.page.close();
        best = o;
      } else {
        await o.page.close();
      }
      if (o.readyMs < 3000) break;
    }
    console.log(
      `corpus report: ${statSync(report).size} bytes for a ${statSync(corpus).size}-byte log (${(statSync(report).size / statSync(corpus).size).toFixed(3)}x); opened in ${opens.map((t) => `${Math.round(t)} ms`).join(', ')}`,
    );
  }, 600_000);

  afterAll(async () => {
    await browser?.close();
    await signer?.cleanup();
    tmp.cleanup();
  });

  it('embeds the whole log in at most 1.5 times its size', () => {
    expect(statSync(report).size).toBeLessThanOrEqual(1.5 * statSync(corpus).size);
  });

  it('opens in Chromium, the log loaded and shown, in under 3 s', async () => {
    expect(Math.min(...opens)).toBeGreaterThan(0);
    expect(Math.min(...opens)).toBeLessThan(3000);
    expect(await best.page.textContent('#log-count')).toBe(`${(LINES + 3).toLocaleString('en-US')} entries`);
    expect(await best.page.locator('#window-note').count()).toBe(0);
    expect(await best.page.locator('#rows .row').count()).toBeGreaterThan(10);
  });

  it('counts the FAIL lines of the corpus, and shows the verdict', async () => {
    const fails = corpusText.split('\n').filter((l) => l.includes('FAIL')).length;
    expect(fails).toBeGreaterThan(10_000);
    expect(await best.page.getAttribute('[data-group="failed"]', 'data-count')).toBe(String(fails));
    expect(await best.page.getAttribute('#verdict', 'data-ok')).toBe('true');
  });

  it('searches all million lines', async () => {
    const { page } = best;
    const expected = corpusText.split('\n').filter((l) => l.includes('unused variable')).length;
    await page.fill('#search', 'unused variable');
    await page.press('#search', 'Enter');
    await page.waitForSelector('#search-count[data-count]', { timeout: 60_000 });
    expect(await page.getAttribute('#search-count', 'data-count')).toBe(String(expected));
  });

  it('goes to the last entry', async () => {
    const { page } = best;
    await page.evaluate((s) => (location.hash = `#L${s}`), LINES + 3);
    await page.waitForSelector(`#rows .row.target[data-seq="${LINES + 3}"]`);
    expect(await page.textContent(`#rows .row[data-seq="${LINES + 3}"]`)).toContain('sealed');
  });

  it('made no network request and logged no error', () => {
    expect(best.requests).toEqual([best.url]);
    expect(best.errors).toEqual([]);
  });
});
