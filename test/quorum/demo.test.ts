/**
 * `npm run demo:quorum` (examples/quorum/demo.sh) runs in CI: three builders,
 * three log VMs, three keys; the refused builds, the quorum of 2 with the
 * odd builder named, the failing quorum of 3 and compare's pinpointing.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT, run } from '../helpers.js';

describe('npm run demo:quorum', () => {
  it('shows the refused builds, 2 of 3 agreeing, 3 of 3 failing and where builder 3 parts', async () => {
    const r = await run('bash', [join(ROOT, 'examples/quorum/demo.sh')], { timeoutMs: 240_000 });
    const out = r.stdout.toString('utf8');
    expect(r.code, `${out.slice(-2000)}\n${r.stderr.slice(-2000)}`).toBe(0);
    const err = r.stderr;
    expect(err).toMatch(/logsend: SIGNATURE_INVALID: hello-1\.0-src\.tar\.gz: the signature by [0-9A-F]{40} does not verify/);
    expect(err).toMatch(/logsend: SIGNATURE_UNTRUSTED: hello-1\.0-src\.tar\.gz: signed only by key\(s\) not in the keyring/);
    expect(out.match(/\(exit status 65\)/g)).toHaveLength(2);
    expect(out).toContain('OK: 2 of 3 builders agree on hello-1.0.tar.gz (threshold 2)');
    expect(out).toMatch(/disagrees: [0-9A-F]{40} \(Builder 3 <builder3@example\.org>\) in build-3\/hello-1\.0: built a different dist\/hello-1\.0\.tar\.gz/);
    expect(out).toContain('FAIL QUORUM_NOT_MET: 2 of 3 builders agree on hello-1.0.tar.gz, 3 required\n');
    expect(out).toContain('(exit status 70)');
    expect(out).toContain('differences are marked *: command, artifact dist/hello-1.0.tar.gz');
    expect(out).toContain('OK: 2 of 2 builders agree on hello-1.0.tar.gz (threshold 2)');
  }, 300_000);
});
