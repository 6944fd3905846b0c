/**
 * The plain-gpg second opinion (docs/gpg-verify.sh, FORMAT.md 9.4) must
 * agree with verify-chain's trust core on every signature case of
 * sigcases.ts: counted, refused, or bad. Counting VALIDSIG alone would count
 * the expired, revoked, SHA-1 and back-dated cases, so each case below can
 * fail for a recipe that does that.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { evaluateSignatures, loadTrustStore, type TrustStore } from '../../packages/shared/src/signatures.js';
import { ROOT, run, tempDir } from '../helpers.js';
import { CASE_NAMES, NOW, SEALED, makeFixture, type Fixture } from './sigcases.js';

const tmp = tempDir('appendlog-gpg-recipe-');
let fx: Fixture;
let trust: TrustStore;
let keys: string;

beforeAll(async () => {
  fx = await makeFixture(join(tmp.dir, 'fixture'));
  trust = await loadTrustStore([{ name: 'trusted.asc', bytes: fx.trustedKeys, kind: 'key' }]);
  keys = join(tmp.dir, 'trusted.asc');
  writeFileSync(keys, fx.trustedKeys);
}, 120_000);

afterAll(async () => {
  await fx?.gpg.cleanup();
  tmp.cleanup();
});

let n = 0;
function bundleWith(sigs: Buffer[]): string {
  const dir = join(tmp.dir, `b${++n}`);
  mkdirSync(join(dir, 'signatures'), { recursive: true });
  writeFileSync(join(dir, 'manifest.json'), fx.manifest);
  sigs.forEach((s, i) => writeFileSync(join(dir, 'signatures', `${String(i + 1).padStart(2, '0')}.asc`), s));
  return dir;
}

const recipe = (dir: string, extra: string[] = [], m = 1) =>
  run('sh', [join(ROOT, 'docs/gpg-verify.sh'), '--now', String(NOW), ...extra, dir, String(m), keys]);

describe('docs/gpg-verify.sh agrees with verify-chain on every signature case', () => {
  it('covers every case of sigcases.ts (15)', () => {
    expect(fx.cases.map((c) => c.name)).toEqual([...CASE_NAMES]);
    expect(CASE_NAMES).toHaveLength(15);
  });

  it.each(CASE_NAMES)('%s', async (name) => {
    const c = fx.cases.find((x) => x.name === name)!;
    const v = await evaluateSignatures({ manifest: fx.manifest, sealed: SEALED * 1000, signatures: [{ file: 'signatures/01.asc', bytes: c.sig }], trust, now: NOW * 1000 });
    const status = v.results[0]!.status;
    const r = await recipe(bundleWith([c.sig]));
    const out = r.stdout.toString('utf8');
    if (status === 'counted') {
      expect(r.code, out + r.stderr).toBe(0);
      expect(out).toContain(`signatures/01.asc: counted ${c.cert}`);
    } else if (status === 'bad') {
      expect(r.code, out + r.stderr).toBe(2);
      expect(out).toContain('BAD signature');
    } else {
      expect(r.code, out + r.stderr).toBe(1);
      expect(out).toContain('signatures/01.asc: not counted');
    }
    // And the expectation of the case itself, so both cannot drift together.
    expect(status === 'refused' ? v.results[0]!.code : status).toBe(c.expect);
  });

  it('all cases but the bad one together: both count the same four certificates, each once', async () => {
    const sigs = fx.cases.filter((c) => c.expect !== 'bad').map((c) => c.sig);
    const v = await evaluateSignatures({
      manifest: fx.manifest,
      sealed: SEALED * 1000,
      signatures: sigs.map((bytes, i) => ({ file: `signatures/${String(i + 1).padStart(2, '0')}.asc`, bytes })),
      trust,
      now: NOW * 1000,
    });
    const r = await recipe(bundleWith(sigs), [], 4);
    expect(r.code, r.stdout.toString()).toBe(0);
    const counted = [...new Set([...r.stdout.toString('utf8').matchAll(/: counted ([0-9A-F]{40})$/gm)].map((x) => x[1]))].sort();
    expect(counted).toEqual(v.counted.map((c) => c.fingerprint).sort());
    expect(r.stdout.toString('utf8')).toContain('OK: 4 distinct');
    expect((await recipe(bundleWith(sigs), [], 5)).code).toBe(1);
  });

  it('--signer pins in the recipe as in verify-chain: an unpinned valid signature does not count', async () => {
    const c = fx.cases[0]!;
    const r = await recipe(bundleWith([c.sig]), ['--signer', fx.fpr.grace!]);
    expect(r.code).toBe(1);
    expect(r.stdout.toString('utf8')).toContain('not among the --signer');
  });
});
