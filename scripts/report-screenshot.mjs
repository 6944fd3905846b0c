#!/usr/bin/env node
/**
 * Opens a `logvm report` page in Debian's headless Chromium (playwright-core
 * drives /usr/bin/chromium; no browser is downloaded) and saves a PNG of its
 * first screen. The demo uses it for docs/report.png.
 *   node scripts/report-screenshot.mjs report.html out.png [width] [height]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

export const CHROMIUM = process.env.APPENDLOG_CHROMIUM ?? '/usr/bin/chromium';

/** Chromium with no network side channels of its own, in a fresh profile. */
export async function launchChromium() {
  const { chromium } = await import('playwright-core');
  const profile = mkdtempSync(join(tmpdir(), 'appendlog-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
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

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const [html, png, w = '1280', h = '900'] = process.argv.slice(2);
  if (!html || !png) {
    console.error('usage: report-screenshot.mjs REPORT.html OUT.png [WIDTH] [HEIGHT]');
    process.exit(2);
  }
  const b = await launchChromium();
  try {
    const page = await b.context.newPage();
    await page.setViewportSize({ width: Number(w), height: Number(h) });
    await page.goto(pathToFileURL(resolve(html)).href);
    await page.waitForSelector('html[data-ready="true"]');
    await page.screenshot({ path: png });
  } finally {
    await b.close();
  }
}
