/**
 * The README's first quick-start command, `npm run demo` (examples/demo.sh),
 * runs in CI: a real build through rpc/qubes.AppendLog, logsend, seal with a
 * throwaway gpg key, export, the auditor's checks, and a rewritten line
 * that verify-chain names. A change of the bundle format or of a command's
 * output that breaks the demo fails here, not in a user's first minute.
 */
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ROOT, run, tempDir } from './helpers.js';

const tmp = tempDir('appendlog-demo-test-');
afterAll(() => tmp.cleanup());

describe('npm run demo', () => {
  it('runs the whole pipeline, and the rewritten line is named (CHAIN_HASH_MISMATCH at its seq)', async () => {
    const r = await run('bash', [join(ROOT, 'examples/demo.sh')], { env: { TMPDIR: tmp.dir }, timeoutMs: 240_000 });
    const out = r.stdout.toString('utf8');
    expect(r.code, `${out.slice(-3000)}\n${r.stderr.slice(-2000)}`).toBe(0);
    // The admin's view and the chain of the raw log.
    expect(out).toMatch(/OK store build-vm\/hello-\d{8}-\d{6}: chain intact/);
    // The auditor's checks of the sealed bundle: logvm and plain gpg.
    expect(out).toMatch(/OK bundle build-vm\/hello-\d{8}-\d{6}-logsend: chain intact and sealed/);
    expect(r.stderr).toContain('gpg: Good signature from "Demo Release Key <release@example.org>"');
    expect(out).toMatch(/report written to .*report\.html/);
    // The tampered bundle: the changed entry is named, exit 10.
    expect(r.stderr).toMatch(/logvm verify-chain: FAIL: CHAIN_HASH_MISMATCH: seq \d+: /);
    expect(out).toContain('verify-chain exit code: 10 (10 = CHAIN_HASH_MISMATCH)');
  }, 300_000);
});
