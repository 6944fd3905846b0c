#!/usr/bin/env node
/**
 * Turns a man page written in a small Markdown subset (docs/man/*.md) into
 * roff, so the pages have one source that test/packaging/man.test.ts checks
 * against `--help`.
 *
 *   node scripts/md2man.mjs docs/man/logvm.1.md [ROOT] > logvm.1
 *
 * ROOT holds the built packages (default: this checkout). `@VERSION@` and
 * `@EXIT_CODES@` are filled in from packages/shared/dist, so the exit-code
 * list is the code's own table, and `@HELP PROGRAM@` with the built
 * program's own `--help`, and that of each of its commands: the options in
 * the man page are the ones yargs parses, so the two cannot drift apart.
 *
 * The subset: `% NAME(SECTION) title` first; `# H` (.SH), `## H` (.SS);
 * paragraphs; `- item`; `term` lines followed by `: definition` lines (.TP);
 * indented (4 spaces) literal blocks; **bold**, `code` (bold), *italic*.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const [src, rootArg] = process.argv.slice(2);
if (!src) {
  process.stderr.write('usage: md2man.mjs PAGE.md [ROOT]\n');
  process.exit(2);
}
const root = resolve(rootArg ?? '.');
const shared = await import(pathToFileURL(resolve(root, 'packages/shared/dist/index.js')).href);

/** Escapes roff specials in plain text, then applies the inline markup. */
function inline(text) {
  let t = text.replace(/\\/g, '\\e').replace(/-/g, '\\-');
  t = t.replace(/\*\*([^*]+)\*\*/g, '\\fB$1\\fR');
  t = t.replace(/`([^`]+)`/g, '\\fB$1\\fR');
  t = t.replace(/\*([^*\s][^*]*)\*/g, '\\fI$1\\fR');
  return t;
}
/** A line must not start with . or ' (roff requests). */
const line = (t) => (/^[.']/.test(t) ? `\\&${t}` : t);

function exitCodes() {
  const byCode = new Map();
  for (const [name, code] of Object.entries(shared.EXIT_CODES)) byCode.set(code, [...(byCode.get(code) ?? []), name]);
  return [...byCode.entries()].sort((a, b) => a[0] - b[0]).flatMap(([code, names]) => [`\`${code}\``, `: ${names.join(', ')}`]);
}

const BINS = { logvm: 'packages/log-vm/bin/logvm.js', logsend: 'packages/log-sender/bin/logsend.js' };

function helpOf(prog, args) {
  const r = spawnSync(process.execPath, [resolve(root, BINS[prog]), ...args, '--help'], { encoding: 'utf8', env: { ...process.env, COLUMNS: '78' } });
  if (r.status !== 0) throw new Error(`${prog} ${args.join(' ')} --help exited ${r.status}: ${r.stderr}`);
  return r.stdout.trimEnd().split('\n');
}

/** The program's --help, then a subsection with each command's --help. */
function help(prog) {
  const top = helpOf(prog, []);
  const out = top.map((l) => `    ${l}`);
  const at = top.findIndex((l) => l === 'Commands:');
  if (at < 0) return out;
  for (const l of top.slice(at + 1)) {
    if (l.trim() === '') break;
    const m = new RegExp(`^  ${prog} ([a-z][a-z-]*)`).exec(l);
    if (!m) continue; // a wrapped description
    out.push('', `## ${prog} ${m[1]}`, '', ...helpOf(prog, [m[1]]).map((h) => `    ${h}`));
  }
  return out;
}

const input = readFileSync(src, 'utf8')
  .replace(/@VERSION@/g, shared.VERSION)
  .split('\n')
  .flatMap((l) => {
    if (l.trim() === '@EXIT_CODES@') return exitCodes();
    const h = /^@HELP (logvm|logsend)@$/.exec(l.trim());
    return h ? help(h[1]) : [l];
  });
const out = [];
const title = /^% ([A-Za-z0-9_-]+)\((\d)\) (.*)$/.exec(input[0] ?? '');
if (!title) throw new Error(`${src}: the first line must be "% NAME(SECTION) title"`);
out.push(`.TH ${title[1].toUpperCase()} ${title[2]} "" "appendlog ${shared.VERSION}" "${title[3]}"`);
let inLiteral = false;
for (let i = 1; i < input.length; i++) {
  const l = input[i];
  if (l.startsWith('    ') || (inLiteral && l === '')) {
    if (!inLiteral) {
      out.push('.PP', '.RS 4', '.nf');
      inLiteral = true;
    }
    out.push(line(l.slice(4).replace(/\\/g, '\\e').replace(/-/g, '\\-')));
    continue;
  }
  if (inLiteral) {
    while (out.at(-1) === '') out.pop();
    out.push('.fi', '.RE');
    inLiteral = false;
  }
  if (l === '') continue;
  if (l.startsWith('## ')) out.push(`.SS ${inline(l.slice(3))}`);
  else if (l.startsWith('# ')) out.push(`.SH ${inline(l.slice(2)).toUpperCase()}`);
  else if (l.startsWith('- ')) out.push('.IP \\(bu 2', line(inline(l.slice(2))));
  else if (l.startsWith(': ')) out.push(line(inline(l.slice(2))));
  else if ((input[i + 1] ?? '').startsWith(': ')) out.push('.TP', line(inline(l)));
  else {
    if (!/^[^.#:-]/.test(input[i - 1] ?? '') || (input[i - 1] ?? '') === '' || /^(#|- |: )/.test(input[i - 1] ?? '')) out.push('.PP');
    out.push(line(inline(l)));
  }
}
if (inLiteral) out.push('.fi', '.RE');
process.stdout.write(`${out.join('\n')}\n`);
