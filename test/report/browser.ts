/**
 * Real Chromium for the report specifications: Debian's `chromium` package
 * (/usr/bin/chromium, installed by .ci/run), driven by playwright-core; no
 * browser is ever downloaded. Each launch gets a fresh profile and the flags
 * that keep Chromium from talking to the network on its own, so "no request
 * was made" is about the page alone.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium, type BrowserContext, type Page } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';
export const HAVE_CHROMIUM = existsSync(CHROMIUM);
export const NO_CHROMIUM = `${CHROMIUM} is missing: apt-get install -y chromium (.ci/run installs it)`;

export const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export interface Browser {
  context: BrowserContext;
  close(): Promise<void>;
}

export async function launch(): Promise<Browser> {
  const profile = mkdtempSync(join(tmpdir(), 'appendlog-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: FLAGS,
    viewport: { width: 1280, height: 900 },
  });
  return {
    context,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

export interface Opened {
  page: Page;
  /** Every URL the page requested (the report itself is the only one allowed). */
  requests: string[];
  /** Script errors, console errors (CSP violations among them) and dialogs. */
  errors: string[];
  dialogs: string[];
  url: string;
  /** ms from navigation start to the viewer's "ready" mark (the log loaded and shown). */
  readyMs: number;
}

/** Opens a report from file:// and waits until the viewer says it is ready. */
export async function openReport(b: Browser, file: string): Promise<Opened> {
  const page = await b.context.newPage();
  const requests: string[] = [];
  const errors: string[] = [];
  const dialogs: string[] = [];
  page.on('request', (r) => requests.push(r.url()));
  page.on('pageerror', (e) => errors.push(`pageerror: ${String(e)}`));
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') errors.push(`console.${m.type()}: ${m.text()}`);
  });
  page.on('dialog', (d) => {
    dialogs.push(d.message());
    void d.dismiss();
  });
  const url = pathToFileURL(file).href;
  await page.goto(url);
  await page.waitForSelector('html[data-ready="true"]', { timeout: 60_000 });
  const readyMs = await page.evaluate(() => performance.getEntriesByName('appendlog-ready')[0]?.startTime ?? -1);
  return { page, requests, errors, dialogs, url, readyMs };
}
