/**
 * `logvm attest`: an evidence file's size depends on the claims, not on the
 * log. A 1M-line log with a few artifacts gives well under 64 KiB, and the
 * evidence still proves, through verify-artifact, which sealed log claims
 * which file.
 */
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers.js';
import { EXIT, builder, logvmOk, pipeBuild, publish, verifyArtifact, type Builder } from './util.js';

const tmp = tempDir('appendlog-attest-');
let b: Builder;

beforeAll(async () => {
  b = await builder(tmp.dir, 1);
}, 60_000);

afterAll(async () => {
  await b?.key.gpg.cleanup();
  tmp.cleanup();
});

describe('when the log has 1,000,000 lines and four artifacts', () => {
  it('writes an evidence file under 64 KiB that verify-artifact accepts for each artifact', async () => {
    const lines: string[] = [];
    for (let i = 0; i < 1_000_000; i++) lines.push(`cc -O2 -c src/file${i % 977}.c -o obj/file${i}.o   # step ${i}`);
    const input = `${lines.join('\n')}\n`;
    const artifacts = ['a.iso', 'b.tar.gz', 'c.deb', 'd.rpm'];
    artifacts.forEach((a, i) => writeFileSync(join(b.dir, a), `artifact ${i}\n`.repeat(1000 * (i + 1))));
    const r = await pipeBuild(b, 'big', input, artifacts.flatMap((a) => ['--artifact', a]));
    expect(r.code, r.stderr).toBe(0);
    const list = JSON.parse((await logvmOk(['list', '--json'], { db: b.db })).stdout.toString('utf8')) as Array<{ name: string; lines: number }>;
    expect(list.find((l) => l.name === 'big')!.lines).toBe(1_000_000);
    const e = await publish(b, 'big', join(tmp.dir, 'big.evidence.json'));
    const size = statSync(e).size;
    console.log(`[attest] 1,000,000 lines (${input.length} bytes), 4 artifacts: evidence ${size} bytes`);
    expect(size).toBeLessThan(64 * 1024);
    expect(input.length / size, 'the evidence is a tiny fraction of the log').toBeGreaterThan(1000);
    const ev = JSON.parse(readFileSync(e, 'utf8')) as { manifest: string };
    expect(JSON.parse(ev.manifest)).toMatchObject({ lines: 1_000_000, claims: { artifacts: artifacts.map((path) => expect.objectContaining({ path })) } });
    for (const a of artifacts) {
      const v = await verifyArtifact(join(b.dir, a), [e], [b.key.pub], 1);
      expect(v.r.code, `${a}: ${v.r.stderr}`).toBe(EXIT.OK);
    }
  }, 180_000);
});
