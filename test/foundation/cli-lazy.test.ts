/**
 * logvm loads only the command that runs (packages/log-vm/src/cli.ts, through
 * commands/loaders.ts); --help and anything unknown load them all
 * (commands/index.ts). The two lists must name the same commands, and a
 * command run on its own must still behave as in the full set.
 */
import { describe, expect, it } from 'vitest';
import { COMMAND_LOADERS } from '../../packages/log-vm/src/commands/loaders.js';
import { ALL_COMMANDS } from '../../packages/log-vm/src/commands/index.js';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, logvm } from '../helpers.js';

const nameOf = (c: { command?: string | readonly string[] }): string => String(Array.isArray(c.command) ? c.command[0] : c.command).split(' ')[0]!;

describe('logvm loads one command', () => {
  it('has one loader per command of commands/index.ts, each giving that very command', async () => {
    expect(Object.keys(COMMAND_LOADERS).sort()).toEqual(ALL_COMMANDS.map(nameOf).sort());
    for (const c of ALL_COMMANDS) expect(await COMMAND_LOADERS[nameOf(c)]!()).toBe(c);
  });

  it('--help still lists every command; a command loaded alone still has its own --help and refuses unknown options', async () => {
    const all = await logvm(['--help']);
    expect(all.code).toBe(0);
    for (const c of ALL_COMMANDS) expect(all.stdout.toString()).toContain(`logvm ${nameOf(c)}`);
    const one = await logvm(['verify-chain', '--help']);
    expect(one.code).toBe(0);
    expect(one.stdout.toString()).toContain('--threshold');
    const bad = await logvm(['export', 'a/b', '--out', '/nonexistent/x', '--no-such-option']);
    expect(bad.code).toBe(2);
    expect(bad.stderr.toString()).toContain('Unknown argument');
  });

  it('an unknown command is still refused as a usage error (all commands loaded for it)', async () => {
    const r = await logvm(['verify-chains']);
    expect(r.code).toBe(2);
    expect(r.stderr.toString()).toContain('USAGE');
  });

  it("the qrexec services' exact command lines go straight to their handler; any other is still parsed and checked by yargs", async () => {
    const a = await logvm(['append', '--qrexec', '--vm', 'x']);
    expect(a.code).toBe(2);
    expect(a.stderr.toString()).toContain('--qrexec takes the VM');
    const b = await logvm(['buildlog', '--qrexec', '--argument', 'x']);
    expect(b.code).toBe(2);
    expect(b.stderr.toString()).toContain('--qrexec takes the VM');
    // The direct path: no QREXEC_REMOTE_DOMAIN, so the handler itself refuses (coded, exit VM_INVALID's code).
    const d = await logvm(['append', '--qrexec'], { env: { QREXEC_REMOTE_DOMAIN: undefined }, input: Buffer.alloc(0) });
    expect(d.code).not.toBe(0);
    expect(JSON.parse(d.stdout.toString().trim())).toMatchObject({ type: 'error', code: 'VM_INVALID' });
  });

  it('verify-chain of a bundle starts its signature thread before parsing, and still exits at once on a usage error', async () => {
    const r = await logvm(['verify-chain', '/nonexistent-bundle'], { timeoutMs: 30_000 });
    expect(r.code).toBe(2);
    expect(r.stderr.toString()).toContain('needs the trusted public key');
  });

  it('loads yargs as one built file (dist/yargs.js), whose messages are still translated from the yargs package', async () => {
    expect(existsSync(join(ROOT, 'packages/log-vm/dist/yargs.js'))).toBe(true);
    const de = await logvm(['--help'], { env: { LANG: 'de_DE.UTF-8', LC_ALL: undefined, LC_MESSAGES: undefined } });
    expect(de.code).toBe(0);
    expect(de.stdout.toString()).toContain('Optionen:');
    expect(de.stdout.toString()).toContain('logvm verify-chain');
  });
});
