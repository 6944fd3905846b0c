/**
 * The vendored dependencies: scripts/vendor.mjs refuses every lockfile an
 * offline package build must not trust (one test per way in), and a
 * vendored .tgz that is not the registry's is refused before npm sees it.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ROOT, tempDir } from '../helpers.js';

const tmp = tempDir('appendlog-vendor-');
afterAll(() => tmp.cleanup());

interface LockPkg { version?: string; resolved?: string; integrity?: string; link?: boolean; optional?: boolean; os?: string[] }
const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockPkg> };

function vendor(args: string[]): { code: number | null; out: string } {
  const r = spawnSync(process.execPath, [join(ROOT, 'scripts/vendor.mjs'), ...args], { encoding: 'utf8' });
  return { code: r.status, out: r.stdout + r.stderr };
}

function variant(name: string, edit: (l: typeof lock) => void): string {
  const l = structuredClone(lock);
  edit(l);
  const f = join(tmp.dir, `${name}.json`);
  writeFileSync(f, JSON.stringify(l));
  return f;
}

const someRegistryPackage = (): string => Object.keys(lock.packages).find((k) => k.startsWith('node_modules/') && !lock.packages[k]!.link && !lock.packages[k]!.optional && lock.packages[k]!.integrity)!;

describe('scripts/vendor.mjs', () => {
  it('accepts the project lockfile: every registry package pinned with a sha512, @appendlog/* only links into packages/', () => {
    const r = vendor(['check']);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/\d+ registry packages, each with a sha512/);
  });

  it('refuses @appendlog/shared from a registry (the scope is not ours)', () => {
    const f = variant('scope', (l) => {
      l.packages['node_modules/@appendlog/shared'] = { version: '0.1.0', resolved: 'https://registry.npmjs.org/@appendlog/shared/-/shared-0.1.0.tgz', integrity: 'sha512-AAAA' };
    });
    const r = vendor(['check', f]);
    expect(r.code).toBe(1);
    expect(r.out).toContain('@appendlog/shared must be a link to the workspace');
  });

  it('refuses a nested @appendlog package that is not a link', () => {
    const f = variant('nested', (l) => {
      l.packages['node_modules/yargs/node_modules/@appendlog/log-vm'] = { version: '9.9.9', integrity: 'sha512-AAAA' };
    });
    expect(vendor(['check', f]).out).toContain('@appendlog/log-vm must be a link to the workspace');
  });

  it('refuses a package resolved from anywhere but the npm registry', () => {
    const k = someRegistryPackage();
    const f = variant('elsewhere', (l) => {
      l.packages[k]!.resolved = 'https://evil.example/x.tgz';
    });
    const r = vendor(['check', f]);
    expect(r.code).toBe(1);
    expect(r.out).toContain('not the npm registry');
  });

  it('refuses a package without a sha512 integrity', () => {
    const k = someRegistryPackage();
    const f = variant('nointegrity', (l) => {
      l.packages[k]!.integrity = 'sha1-AAAA';
    });
    expect(vendor(['check', f]).out).toContain('no sha512 integrity');
  });

  it('refuses a link out of the workspace', () => {
    const f = variant('link', (l) => {
      l.packages['node_modules/evil'] = { link: true, resolved: '../../elsewhere' };
    });
    expect(vendor(['check', f]).out).toContain('outside the workspace');
  });

  it('lock: a vendored .tgz whose sha512 is not the lockfile\'s is refused, naming the file', () => {
    // A one-package lockfile and a "vendored" tarball with other bytes.
    const dir = join(tmp.dir, 'deps');
    mkdirSync(dir);
    const k = someRegistryPackage();
    const p = lock.packages[k]!;
    const name = k.slice(k.lastIndexOf('node_modules/') + 13);
    const file = `${name.replace(/^@/, '').replace('/', '-')}-${p.version}.tgz`;
    writeFileSync(join(dir, file), 'not the registry tarball');
    const one = join(tmp.dir, 'one.json');
    writeFileSync(one, JSON.stringify({ lockfileVersion: 3, packages: { '': {}, [k]: p } }));
    const r = vendor(['lock', dir, one, join(tmp.dir, 'out.json')]);
    expect(r.code).toBe(1);
    expect(r.out).toContain(`${file}: sha512`);
    expect(r.out).toContain("is not the lockfile's");
    // and a missing file is named too
    copyFileSync(one, join(tmp.dir, 'two.json'));
    const r2 = vendor(['lock', join(tmp.dir, 'empty'), one, join(tmp.dir, 'out2.json')]);
    expect(r2.out).toContain('run make vendor');
  });
});
