/**
 * One version everywhere: the `version` file (qubes-builderv2 reads it), every
 * package.json, debian/changelog, `logvm --version`, `logsend --version`, and
 * the rendered rpm specs. The rpm specs and .qubesbuilder take it as @VERSION@.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT, run } from '../helpers.js';

const VERSION = readFileSync(join(ROOT, 'version'), 'utf8').trim();
const json = (p: string): { version?: string } => JSON.parse(readFileSync(join(ROOT, p), 'utf8')) as { version?: string };

describe('the release version', () => {
  it('is a plain x.y.z in the version file', () => {
    expect(VERSION).toMatch(/^\d+\.\d+\.\d+$/);
  });

  it.each(['package.json', 'packages/shared/package.json', 'packages/log-vm/package.json', 'packages/log-sender/package.json'])('%s has it', (p) => {
    expect(json(p).version).toBe(VERSION);
  });

  it('debian/changelog has it (first entry)', () => {
    const first = readFileSync(join(ROOT, 'debian/changelog'), 'utf8').split('\n')[0]!;
    expect(first).toMatch(new RegExp(`^qubes-appendlog \\(${VERSION.replace(/\./g, '\\.')}-\\d+\\) `));
  });

  it('the rpm specs and .qubesbuilder take @VERSION@, not a copy', () => {
    for (const f of ['rpm_spec/qubes-appendlog.spec.in', 'rpm_spec/qubes-appendlog-dom0.spec.in']) {
      expect(readFileSync(join(ROOT, f), 'utf8')).toMatch(/^Version:\s+@VERSION@$/m);
    }
    expect(readFileSync(join(ROOT, '.qubesbuilder'), 'utf8')).toContain('sha512: appendlog-deps-@VERSION@.tar.gz.sha512');
  });

  it.each([
    ['logvm', 'packages/log-vm/bin/logvm.js'],
    ['logsend', 'packages/log-sender/bin/logsend.js'],
  ])('%s --version prints it', async (_name, bin) => {
    const r = await run(process.execPath, [join(ROOT, bin), '--version']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.toString('utf8')).toBe(`${VERSION}\n`);
  });
});
