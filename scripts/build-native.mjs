#!/usr/bin/env node
/**
 * Builds the optional batch-hashing addon (packages/shared/native) with
 * node-gyp against the running Node's headers, offline. If it cannot be
 * built, appendlog still works: hashing falls back to node:crypto (slower),
 * and this script says so instead of failing the install.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const pkg = join(root, 'packages/shared/native');
const candidates = [
  process.env.npm_config_node_gyp,
  join(dirname(process.execPath), '../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js'),
  '/usr/lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js',
  '/usr/local/lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js',
].filter(Boolean);
const gyp = candidates.find((p) => existsSync(p));
// Headers of this very Node, so nothing is downloaded.
const prefix = resolve(dirname(process.execPath), '..');
const nodedir = existsSync(join(prefix, 'include/node/node_api.h')) ? prefix : process.env.npm_config_nodedir;

if (!gyp) {
  console.warn('appendlog: node-gyp not found; chain hashing will use node:crypto (slower)');
  process.exit(0);
}
const args = [gyp, 'rebuild', '--directory', pkg, ...(nodedir ? [`--nodedir=${nodedir}`] : [])];
const r = spawnSync(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
if (r.status !== 0) {
  console.warn(`appendlog: building the hashing addon failed; chain hashing will use node:crypto (slower)\n${r.stderr.slice(-2000)}`);
  process.exit(0);
}
console.log('appendlog: built packages/shared/native/build/Release/chainhash.node');
