import { createHash } from 'node:crypto';
import { createReadStream, readFileSync } from 'node:fs';
import type { Writable } from 'node:stream';
import { writeAll } from '../output.js';

/**
 * The report page: one self-contained file. Trusted markup (this skeleton,
 * the stylesheet and the viewer script from assets/) plus three data blocks
 * that the browser never executes:
 *   <script type="application/json" id="report-data">  verdict, highlights, claims, pictures
 *   <script type="application/json" id="log-index">    seq runs and receive times of the log text
 *   <script type="text/plain" id="log-text">           the log's display text, one entry per line
 * A data block ends at the first "</script"; the JSON has every `<` as
 * \u003c and the log text has none at all (collect.ts), so no byte of the
 * log can end a block, open a comment or become a tag. The viewer builds
 * the page from them with Text nodes only.
 *
 * The Content-Security-Policy allows exactly this stylesheet and this
 * script, by SHA-256, and nothing else: no network (default-src 'none'), no
 * other inline script or style, no plugins, no base URL, no form target, and
 * Trusted Types without any policy, so even a bug that reached innerHTML
 * would be refused by the browser.
 */
const ASSETS = new URL('../../assets/', import.meta.url);

export interface Assets {
  css: string;
  js: string;
}

export function loadAssets(): Assets {
  const a = { css: readFileSync(new URL('report.css', ASSETS), 'utf8'), js: readFileSync(new URL('report.js', ASSETS), 'utf8') };
  // Our own files, but a `</` in them would end their element early.
  if (/<\//.test(a.css) || /<\/script|<!--/i.test(a.js)) throw new Error('report assets must not contain </ or <!--');
  return a;
}

const sha256b64 = (s: string): string => createHash('sha256').update(s, 'utf8').digest('base64');

/** JSON safe inside a <script> data block: `<` (and the JS line separators) as escapes. */
export function scriptJson(v: unknown): string {
  return JSON.stringify(v).replace(/</g, '\\u003c').replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029');
}

export function contentSecurityPolicy(a: Assets): string {
  return [
    "default-src 'none'",
    `script-src 'sha256-${sha256b64(a.js)}'`,
    `style-src 'sha256-${sha256b64(a.css)}'`,
    "img-src 'none'",
    "font-src 'none'",
    "connect-src 'none'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'none'",
    "require-trusted-types-for 'script'",
    "trusted-types 'none'",
  ].join('; ');
}

/** Writes the page to `out`, copying the log text from the file `logTextPath`. */
export async function writeReportHtml(out: Writable, a: Assets, reportData: unknown, logIndex: unknown, logTextPath: string): Promise<void> {
  await writeAll(
    out,
    `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${contentSecurityPolicy(a)}">
<meta name="referrer" content="no-referrer">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="appendlog logvm report">
<title>appendlog report</title>
<style>${a.css}</style>
</head>
<body>
<noscript><p>This report shows its contents with JavaScript (one inline script, allowed by its hash; no network). The verdict and the log are in the data blocks of this file.</p></noscript>
<main id="app"></main>
<script type="application/json" id="report-data">${scriptJson(reportData)}</script>
<script type="application/json" id="log-index">${scriptJson(logIndex)}</script>
<script>${a.js}</script>
<script type="text/plain" id="log-text">`,
  );
  for await (const chunk of createReadStream(logTextPath, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) await writeAll(out, chunk);
  await writeAll(out, '</script>\n</body>\n</html>\n');
}
