/**
 * The runtime floor, for real: npm's Node 18 binary (what a Debian 12
 * template ships) runs the entry points a user and qrexec run. Each refuses
 * with one clear line and exit 78 (NODE_TOO_OLD) instead of a SyntaxError,
 * and the qrexec service still answers the build VM with a coded error line.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT } from '../exit-codes.js';
import { ROOT, RPC_SERVICE, jsonLines, run, tempDir } from '../helpers.js';
import { NODE_VERSIONS, nodeDist, type NodeDist } from './node-dist.js';

const LOGVM_BIN = join(ROOT, 'packages/log-vm/bin/logvm.js');
const LOGSEND_BIN = join(ROOT, 'packages/log-sender/bin/logsend.js');
let node18: NodeDist;
const tmp = tempDir('appendlog-node18-');
const db = join(tmp.dir, 'logs.db');

beforeAll(() => {
  node18 = nodeDist(NODE_VERSIONS[18]);
}, 600_000);
afterAll(() => tmp.cleanup());

/** Node 18 first on PATH, as in a Debian 12 template: `#!/usr/bin/env node` finds it. */
const env = (): Record<string, string> => ({ PATH: `${node18.binDir}:${process.env.PATH ?? ''}`, APPENDLOG_DB: db });

describe(`on Node ${NODE_VERSIONS[18]} (below the floor 20.19)`, () => {
  it('is really that Node', async () => {
    const r = await run('node', ['--version'], { env: env() });
    expect(r.stdout.toString('utf8').trim()).toBe(`v${NODE_VERSIONS[18]}`);
  });

  it('the built code alone dies with a SyntaxError or worse: why the check must come first', async () => {
    const r = await run(node18.bin, [join(ROOT, 'packages/log-vm/dist/cli.js'), 'list'], { env: env() });
    expect(r.code).not.toBe(0);
    expect(r.code).not.toBe(EXIT.NODE_TOO_OLD);
  });

  it.each([
    ['logvm', LOGVM_BIN, ['list']],
    ['logvm', LOGVM_BIN, ['--version']],
    ['logsend', LOGSEND_BIN, ['--name', 'x', '--', 'true']],
  ])('%s %s refuses with one line and exit 78, nothing on stdout', async (name, bin, args) => {
    const r = await run(bin, args, { env: env() });
    expect(r.code).toBe(EXIT.NODE_TOO_OLD);
    expect(r.stderr).toBe(`${name}: NODE_TOO_OLD: appendlog needs Node.js >= 20.19; this is ${NODE_VERSIONS[18]}\n`);
    expect(r.stdout.length).toBe(0);
  });

  it('logsend does not run the build when it refuses', async () => {
    const marker = join(tmp.dir, 'built');
    const r = await run(LOGSEND_BIN, ['--name', 'x', '--', 'touch', marker], { env: env() });
    expect(r.code).toBe(EXIT.NODE_TOO_OLD);
    expect(existsSync(marker)).toBe(false);
  });

  it('the qrexec service answers the caller with a coded error line on stdout, exit 78, and stores nothing', async () => {
    const r = await run(RPC_SERVICE, [], {
      env: { ...env(), APPENDLOG_LOGVM: LOGVM_BIN, QREXEC_REMOTE_DOMAIN: 'build-vm', QREXEC_SERVICE_ARGUMENT: 'old-node' },
      input: 'line 1\nline 2\n',
    });
    expect(r.code).toBe(EXIT.NODE_TOO_OLD);
    expect(jsonLines(r.stdout)).toEqual([
      { type: 'error', code: 'NODE_TOO_OLD', message: `appendlog needs Node.js >= 20.19; this is ${NODE_VERSIONS[18]}` },
    ]);
    expect(r.stderr).toBe(`logvm: NODE_TOO_OLD: appendlog needs Node.js >= 20.19; this is ${NODE_VERSIONS[18]}\n`);
    expect(existsSync(db)).toBe(false);
  });

  it('the single-file verifier refuses the same way', async () => {
    const { spawnSync } = await import('node:child_process');
    const out = join(tmp.dir, 'verifier');
    const b = spawnSync(process.execPath, [join(ROOT, 'scripts/build-verifier.mjs'), out], { encoding: 'utf8' });
    expect(b.status, b.stderr).toBe(0);
    const file = b.stdout.trim();
    const r = await run(node18.bin, [file, tmp.dir, '--key', 'k.asc'], { env: env() });
    expect(r.code).toBe(EXIT.NODE_TOO_OLD);
    expect(r.stderr).toBe(`appendlog-verify: NODE_TOO_OLD: appendlog needs Node.js >= 20.19; this is ${NODE_VERSIONS[18]}\n`);
  });
});
