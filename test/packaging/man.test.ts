/**
 * The man pages come from one source (docs/man/*.md) and the programs' own
 * --help: every command and every option of logvm and logsend is in the
 * rendered page, and so is every exit code of the code's table.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { EXIT } from '../exit-codes.js';
import { ROOT, run } from '../helpers.js';

const pages = new Map<string, string>();
function page(name: string): string {
  if (pages.has(name)) return pages.get(name)!;
  const r = spawnSync(process.execPath, [join(ROOT, 'scripts/md2man.mjs'), join(ROOT, `docs/man/${name}.1.md`), ROOT], { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  // roff to text, as far as comparing words goes
  const text = r.stdout.replace(/\\-/g, '-').replace(/\\f[BIR]/g, '').replace(/\\e/g, '\\');
  pages.set(name, text);
  return text;
}

async function optionsOf(bin: string, args: string[]): Promise<string[]> {
  const r = await run(process.execPath, [join(ROOT, bin), ...args, '--help']);
  expect(r.code, r.stderr).toBe(0);
  return [...r.stdout.toString('utf8').matchAll(/^\s+(?:-\w, )?(--[a-z][a-z-]*)/gm)].map((m) => m[1]!);
}

describe('man pages', () => {
  it('logvm(1) has every command and every option of each command', async () => {
    const text = page('logvm');
    expect(text).toMatch(/^\.TH LOGVM 1 /);
    const top = await run(process.execPath, [join(ROOT, 'packages/log-vm/bin/logvm.js'), '--help']);
    const commands = [...top.stdout.toString('utf8').matchAll(/^\s+logvm ([a-z][a-z-]*)/gm)].map((m) => m[1]!);
    expect(commands).toEqual(expect.arrayContaining(['append', 'list', 'show', 'verify-chain', 'seal', 'export', 'cosign']));
    const options = await Promise.all(commands.map((c) => optionsOf('packages/log-vm/bin/logvm.js', [c])));
    commands.forEach((c, i) => {
      expect(text).toContain(`.SS logvm ${c}`);
      const section = text.slice(text.indexOf(`.SS logvm ${c}\n`));
      for (const o of options[i]!) expect(section, `logvm ${c} ${o}`).toContain(o);
    });
  }, 240_000);

  it('logsend(1) has every option', async () => {
    const text = page('logsend');
    for (const o of await optionsOf('packages/log-sender/bin/logsend.js', [])) expect(text, o).toContain(o);
  });

  it('both list every exit code, NODE_TOO_OLD included', () => {
    for (const name of ['logvm', 'logsend']) {
      const text = page(name);
      for (const [code, n] of Object.entries(EXIT)) if (n !== 0) expect(text, `${name}: ${code}`).toMatch(new RegExp(`^${n}\\n(.*, )?${code}\\b`, 'm'));
    }
  });
});
