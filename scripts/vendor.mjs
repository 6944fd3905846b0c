#!/usr/bin/env node
/**
 * The vendored npm dependencies: every registry package of package-lock.json,
 * as the registry's own .tgz files, so the deb and rpm builds never touch the
 * network.
 *
 *   node scripts/vendor.mjs pack OUT.tar.gz   (network: npm registry) fetch, check, write
 *   node scripts/vendor.mjs check [LOCK]      package-lock.json (or LOCK) is safe to install offline
 *   node scripts/vendor.mjs lock DIR IN OUT   IN with every package resolved to DIR/FILE.tgz
 *
 * Why .tgz files and a rewritten lockfile rather than a copy of the npm
 * cache: npm checks a `file:` tarball against the lockfile's sha512
 * `integrity` (EINTEGRITY otherwise) and needs no cache or registry for it,
 * and the vendored tarball is reproducible (the same lockfile gives the same
 * bytes, so its sha512 in .qubesbuilder can be checked by anyone who runs
 * `make vendor` again). A cache copy holds time stamps and HTTP headers.
 *
 * No package of the @appendlog scope ever comes from a registry: those are
 * our workspace packages, and the scope is not ours. `check` refuses a
 * lockfile where one is anything but a link into packages/.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

function die(msg) {
  process.stderr.write(`vendor: ${msg}\n`);
  process.exit(1);
}

/** Packages built for another platform are optional and never installed on Linux x64 (Qubes is x86_64 only). */
function foreign(p) {
  const fits = (list, want) => list === undefined || list.some((x) => x === want) || (list.every((x) => x.startsWith('!')) && !list.includes(`!${want}`));
  return !(fits(p.os, 'linux') && fits(p.cpu, 'x64') && fits(p.libc, 'glibc'));
}

/** The registry packages of a lockfile: [{ path, name, version, integrity, file }]. */
export function registryPackages(lock) {
  if (lock.lockfileVersion !== 3) die(`package-lock.json: lockfileVersion ${lock.lockfileVersion}, expected 3`);
  const out = [];
  for (const [path, p] of Object.entries(lock.packages)) {
    if (path === '') continue;
    const name = p.name ?? path.slice(path.lastIndexOf('node_modules/') + 'node_modules/'.length);
    if (name.startsWith('@appendlog/') || path.startsWith('packages/')) {
      // Ours: must be the workspace itself or a link to it, never a download.
      if (path.startsWith('packages/')) continue;
      if (p.link !== true || typeof p.resolved !== 'string' || !p.resolved.startsWith('packages/')) {
        die(`${path}: ${name} must be a link to the workspace (packages/), not ${JSON.stringify(p.resolved ?? p.version)}`);
      }
      continue;
    }
    if (p.link) die(`${path}: a link to ${p.resolved} outside the workspace`);
    if (p.resolved !== undefined && !p.resolved.startsWith('https://registry.npmjs.org/')) {
      die(`${path}: resolved from ${p.resolved}, not the npm registry`);
    }
    if (typeof p.version !== 'string' || !/^\d+\.\d+\.\d+([-+][0-9A-Za-z.+-]+)?$/.test(p.version)) die(`${path}: no exact version`);
    if (typeof p.integrity !== 'string' || !p.integrity.startsWith('sha512-')) die(`${path}: no sha512 integrity`);
    if (foreign(p)) {
      if (!p.optional) die(`${path}: built for another platform but not optional`);
      continue;
    }
    out.push({ path, name, version: p.version, integrity: p.integrity, file: `${name.replace(/^@/, '').replace('/', '-')}-${p.version}.tgz` });
  }
  return out;
}

const sri = (buf) => `sha512-${createHash('sha512').update(buf).digest('base64')}`;

function readLock(file) {
  return JSON.parse(readFileSync(file, 'utf8'));
}

const cmd = process.argv[2];
if (cmd === 'check') {
  const file = process.argv[3] ?? join(root, 'package-lock.json');
  const pkgs = registryPackages(readLock(file));
  console.log(`vendor: ${basename(file)}: ${pkgs.length} registry packages, each with a sha512; @appendlog/* only from the workspace`);
} else if (cmd === 'pack') {
  const outFile = resolve(process.argv[3] ?? die('pack OUT.tar.gz'));
  const top = basename(outFile).replace(/\.tar\.gz$/, '');
  const pkgs = registryPackages(readLock(join(root, 'package-lock.json')));
  const work = mkdtempSync(join(tmpdir(), 'appendlog-vendor-'));
  const dir = join(work, top);
  mkdirSync(dir);
  try {
    const specs = [...new Set(pkgs.map((p) => `${p.name}@${p.version}`))];
    const r = spawnSync('npm', ['pack', '--silent', '--ignore-scripts', '--pack-destination', dir, ...specs], { stdio: ['ignore', 'ignore', 'inherit'] });
    if (r.status !== 0) die(`npm pack exited ${r.status}`);
    for (const p of pkgs) {
      const f = join(dir, p.file);
      if (!existsSync(f)) die(`npm pack wrote no ${p.file}`);
      const got = sri(readFileSync(f));
      if (got !== p.integrity) die(`${p.file}: sha512 ${got} is not the lockfile's ${p.integrity}`);
    }
    const extra = readdirSync(dir).filter((f) => !pkgs.some((p) => p.file === f));
    if (extra.length > 0) die(`unexpected files: ${extra.join(' ')}`);
    // Reproducible: sorted names, fixed times and owners, no gzip time stamp.
    mkdirSync(dirname(outFile), { recursive: true });
    const t = spawnSync('sh', ['-c', 'tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --mode=a+r,u+w,go-w -cf - -C "$1" "$2" | gzip -9n > "$3"', 'sh', work, top, outFile], { stdio: 'inherit' });
    if (t.status !== 0) die('tar failed');
    const sum = createHash('sha512').update(readFileSync(outFile)).digest('hex');
    writeFileSync(`${outFile}.sha512`, `${sum}\n`);
    console.log(`vendor: ${relative(process.cwd(), outFile)}: ${pkgs.length} packages, each checked against package-lock.json\nsha512 ${sum}`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
} else if (cmd === 'lock') {
  const [dirArg, inFile, outFile] = process.argv.slice(3);
  if (!dirArg || !inFile || !outFile) die('lock DIR IN OUT');
  const dir = resolve(dirArg);
  const lock = readLock(inFile);
  for (const p of registryPackages(lock)) {
    const f = join(dir, p.file);
    if (!existsSync(f)) die(`${p.file} is not in ${dir} (run make vendor)`);
    // npm checks this too (EINTEGRITY); checking here names the file.
    const got = sri(readFileSync(f));
    if (got !== p.integrity) die(`${f}: sha512 ${got} is not the lockfile's ${p.integrity}`);
    lock.packages[p.path].resolved = `file:${relative(dirname(resolve(outFile)), f)}`;
  }
  writeFileSync(outFile, `${JSON.stringify(lock, null, 2)}\n`);
} else {
  die('usage: vendor.mjs pack OUT.tar.gz | check | lock DIR IN OUT');
}
