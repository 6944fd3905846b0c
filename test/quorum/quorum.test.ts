/**
 * M of N independent builders, end to end: three builders each build the
 * examples/quorum release under logsend, in their own build VM, into their
 * own log VM, and seal with their own key; `logvm attest` writes the
 * evidence files; `logvm verify-artifact` decides, per trusted certificate,
 * whether M of N agree on the downloaded file; `logvm compare` shows where
 * the builds part. One case per rule of docs/FORMAT.md section 12.
 */
import { readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { logvm, run, tempDir } from '../helpers.js';
import { EXIT, build, builder, editEvidence, logvmOk, person, pipeBuild, publish, sourceRelease, verifyArtifact, type Builder, type Person } from './util.js';

const tmp = tempDir('appendlog-quorum-');
const at = (f: string): string => join(tmp.dir, f);
let upstream: Person;
let mallory: Person;
let b1: Builder;
let b2: Builder;
let b3: Builder;
let keys: string[];
let artifact: string;
const ev: Record<string, string> = {};

beforeAll(async () => {
  upstream = await person(tmp.dir, 'upstream');
  mallory = await person(tmp.dir, 'mallory');
  const source = await sourceRelease(tmp.dir, upstream);
  b1 = await builder(tmp.dir, 1);
  b2 = await builder(tmp.dir, 2);
  b3 = await builder(tmp.dir, 3);
  keys = [b1.key.pub, b2.key.pub, b3.key.pub];
  const opts = { source, keyring: upstream.pub };
  const ok = async (b: Builder, name: string, o: Partial<Parameters<typeof build>[2]> = {}): Promise<void> => {
    const r = await build(b, name, { ...opts, ...o });
    expect(r.code, `build ${b.vm}/${name}: ${r.stderr}`).toBe(0);
  };

  await ok(b1, 'hello-1.0');
  ev.e1 = await publish(b1, 'hello-1.0', at('e1.json'));
  artifact = at('hello-1.0.tar.gz');
  writeFileSync(artifact, readFileSync(join(b1.dir, 'dist/hello-1.0.tar.gz')));
  await ok(b2, 'hello-1.0');
  ev.e2 = await publish(b2, 'hello-1.0', at('e2.json'));
  // The odd builder: a changed toolchain flag, so a different binary.
  await ok(b3, 'hello-1.0', { make: ['dist', 'CFLAGS=-O0'] });
  ev.e3flag = await publish(b3, 'hello-1.0', at('e3flag.json'));
  // Builder 3 again, honest flags but its own Makefile (a comment added): other inputs, same output.
  writeFileSync(join(b3.dir, 'Makefile'), `${readFileSync(join(b3.dir, 'Makefile'), 'utf8')}# builder 3's local note\n`);
  await ok(b3, 'hello-1.0-local');
  ev.e3local = await publish(b3, 'hello-1.0-local', at('e3local.json'));
  // Builder 1 a second time: a second evidence sealed by the same certificate.
  await ok(b1, 'hello-1.0-rebuild');
  ev.e1again = await publish(b1, 'hello-1.0-rebuild', at('e1again.json'));
  // Builder 2 vouches for another file (a pipe-mode log with another artifact).
  writeFileSync(join(b2.dir, 'other.bin'), 'another release file\n');
  const other = await pipeBuild(b2, 'other-1.0', 'built other\n', ['--artifact', 'other.bin']);
  expect(other.code, other.stderr).toBe(0);
  ev.e2other = await publish(b2, 'other-1.0', at('e2other.json'));
  // A log VM holding a key nobody trusts seals an honest build of the same file.
  const m = await builder(tmp.dir, 9, mallory);
  await ok(m, 'hello-1.0');
  ev.emallory = await publish(m, 'hello-1.0', at('emallory.json'));
}, 300_000);

afterAll(async () => {
  for (const p of [upstream, mallory, b1?.key, b2?.key, b3?.key]) await p?.gpg.cleanup();
  tmp.cleanup();
});

describe('when two of three builders agree and the third built with another toolchain flag', () => {
  it('passes --threshold 2 with exit 0 and names the odd builder, its artifact DIFFERENT', async () => {
    const { r, out } = await verifyArtifact(artifact, [ev.e1!, ev.e2!, ev.e3flag!], keys, 2);
    expect(r.code, r.stderr).toBe(EXIT.OK);
    expect(out!.ok).toBe(true);
    expect(out!.verdict).toBe('OK: 2 of 3 builders agree on hello-1.0.tar.gz (threshold 2)');
    const row3 = out!.rows.find((x) => x.fingerprint === b3.key.fingerprint)!;
    expect(row3.agrees).toBe(false);
    expect(row3.userIds).toEqual([`builder3 <${b3.key.email}>`]);
    expect(row3.evidences[0]).toMatchObject({ log: 'build-3/hello-1.0', artifact: 'different', inputs: 'same', exit: { code: 0, signal: null } });
    for (const b of [b1, b2]) expect(out!.rows.find((x) => x.fingerprint === b.key.fingerprint)).toMatchObject({ agrees: true, evidences: [{ artifact: 'same' }] });
  });

  it('prints one row per builder, the verdict line and the odd builder in text', async () => {
    const { r, text } = await verifyArtifact(artifact, [ev.e1!, ev.e2!, ev.e3flag!], keys, 2, false);
    expect(r.code).toBe(EXIT.OK);
    expect(text).toContain(`AGREES   ${b1.key.fingerprint} builder1 <${b1.key.email}>`);
    expect(text).toContain(`DIFFERS  ${b3.key.fingerprint} builder3 <${b3.key.email}>`);
    expect(text).toMatch(/artifact: DIFFERENT \(claimed dist\/hello-1\.0\.tar\.gz sha256 [0-9a-f]{16}…/);
    expect(text).toContain('OK: 2 of 3 builders agree on hello-1.0.tar.gz (threshold 2)');
    expect(text).toContain(`disagrees: ${b3.key.fingerprint} (builder3 <${b3.key.email}>) in build-3/hello-1.0: built a different dist/hello-1.0.tar.gz`);
    expect(text).toContain("checked against the log VM's signed summary only");
  });
});

describe('when the builders come as one keyring, narrowed with --signer', () => {
  it('takes N from the pins: builder 3 is not a builder, its evidence does not count', async () => {
    const ring = at('builders.asc');
    writeFileSync(ring, keys.map((k) => readFileSync(k, 'utf8')).join(''));
    const base = ['verify-artifact', artifact, '--evidence', ev.e1!, '--evidence', ev.e2!, '--evidence', ev.e3flag!, '--keyring', ring, '--json'];
    const all = await logvm([...base, '--threshold', '3']);
    expect(JSON.parse(all.stdout.toString('utf8'))).toMatchObject({ builders: 3, agreeing: 2 });
    const pinned = await logvm([...base, '--signer', b1.key.fingerprint, '--signer', b2.key.fingerprint, '--threshold', '2']);
    expect(pinned.code, pinned.stderr).toBe(EXIT.OK);
    const out = JSON.parse(pinned.stdout.toString('utf8')) as { builders: number; rows: Array<{ fingerprint: string }>; uncounted: Array<{ source: string; message: string }> };
    expect(out.builders).toBe(2);
    expect(out.rows.map((r) => r.fingerprint)).not.toContain(b3.key.fingerprint);
    expect(out.uncounted).toEqual([expect.objectContaining({ source: ev.e3flag, message: expect.stringContaining('KEY_NOT_PINNED') })]);
    const tooMany = await logvm([...base, '--signer', b1.key.fingerprint, '--signer', b2.key.fingerprint, '--threshold', '3']);
    expect(tooMany.code, 'M > N (two pinned builders)').toBe(EXIT.USAGE);
    expect(JSON.parse(tooMany.stdout.toString('utf8')).message).toContain('more than the 2 trusted builder');
  });
});

describe('when the quorum is not met', () => {
  it('fails --threshold 3 with QUORUM_NOT_MET (exit 70), naming the builder that disagrees', async () => {
    const { r, out } = await verifyArtifact(artifact, [ev.e1!, ev.e2!, ev.e3flag!], keys, 3);
    expect(r.code).toBe(EXIT.QUORUM_NOT_MET);
    expect(out).toMatchObject({ ok: false, code: 'QUORUM_NOT_MET', agreeing: 2, builders: 3, threshold: 3 });
    expect(out!.verdict).toBe('FAIL QUORUM_NOT_MET: 2 of 3 builders agree on hello-1.0.tar.gz, 3 required');
  });
});

describe('when one certificate sealed two evidences', () => {
  it('counts it once: two evidences by builder 1 do not make a quorum of 2', async () => {
    const { r, out } = await verifyArtifact(artifact, [ev.e1!, ev.e1again!], keys, 2);
    expect(r.code).toBe(EXIT.QUORUM_NOT_MET);
    expect(out!.agreeing).toBe(1);
    const row1 = out!.rows.find((x) => x.fingerprint === b1.key.fingerprint)!;
    expect(row1.evidences.map((e) => e.log)).toEqual(['build-1/hello-1.0', 'build-1/hello-1.0-rebuild']);
    expect(row1.agrees).toBe(true);
    const text = (await verifyArtifact(artifact, [ev.e1!, ev.e1again!], keys, 2, false)).text;
    expect(text).toContain('(2 evidences, counted once)');
  });
});

describe('when an evidence is for another file', () => {
  it('shows the artifact ABSENT for that builder and does not count it', async () => {
    const { r, out } = await verifyArtifact(artifact, [ev.e1!, ev.e2other!], keys, 2);
    expect(r.code).toBe(EXIT.QUORUM_NOT_MET);
    const row2 = out!.rows.find((x) => x.fingerprint === b2.key.fingerprint)!;
    expect(row2).toMatchObject({ agrees: false, evidences: [{ log: 'build-2/other-1.0', artifact: 'absent', exit: null }] });
  });
});

describe('when an evidence manifest was edited after sealing', () => {
  it('refuses that evidence as SIGNATURE_INVALID and counts only the others', async () => {
    const edited = at('e3-edited.json');
    // Claim builder 1's artifact hash in builder 3's (-O0) manifest, keeping it canonical.
    const sha = JSON.parse(JSON.parse(readFileSync(ev.e1!, 'utf8')).manifest).claims.artifacts[0].sha256 as string;
    editEvidence(ev.e3flag!, edited, (m) => m.replace(/"sha256":"[0-9a-f]{64}","size":(\d+)\}\],"command"/, `"sha256":"${sha}","size":$1}],"command"`));
    const { r, out } = await verifyArtifact(artifact, [ev.e1!, edited], keys, 2);
    expect(r.code).toBe(EXIT.QUORUM_NOT_MET);
    expect(out!.agreeing).toBe(1);
    expect(out!.uncounted).toEqual([expect.objectContaining({ source: edited, reason: 'SIGNATURE_INVALID', log: 'build-3/hello-1.0' })]);
    const ok = await verifyArtifact(artifact, [ev.e1!, ev.e2!, edited], keys, 2);
    expect(ok.r.code, 'the other two still make the quorum').toBe(EXIT.OK);
  });

  it('refuses an evidence that is not in canonical form as EVIDENCE_INVALID', async () => {
    const spaced = at('e1-spaced.json');
    writeFileSync(spaced, readFileSync(ev.e1!, 'utf8').replace('{"format"', '{ "format"'));
    const { out } = await verifyArtifact(artifact, [spaced, ev.e2!], keys, 2);
    expect(out!.uncounted).toEqual([expect.objectContaining({ source: spaced, reason: 'EVIDENCE_INVALID' })]);
    const c = await logvm(['compare', spaced, ev.e2!]);
    expect(c.code).toBe(EXIT.EVIDENCE_INVALID);
  });
});

describe('when an evidence is signed by a key that is not a trusted builder', () => {
  it('lists it as SIGNATURE_UNTRUSTED and does not count it, though it claims the same artifact', async () => {
    const { r, out } = await verifyArtifact(artifact, [ev.e1!, ev.emallory!], keys, 2);
    expect(r.code).toBe(EXIT.QUORUM_NOT_MET);
    expect(out!.agreeing).toBe(1);
    expect(out!.uncounted).toEqual([expect.objectContaining({ source: ev.emallory, reason: 'SIGNATURE_UNTRUSTED', log: 'build-9/hello-1.0' })]);
    // Trusted, the same evidence counts: the refusal above is about the key alone.
    const trusted = await verifyArtifact(artifact, [ev.e1!, ev.emallory!], [...keys, mallory.pub], 2);
    expect(trusted.r.code).toBe(EXIT.OK);
  });
});

describe('when one log was cosigned by two builders', () => {
  it('counts both certificates (each evidence counts for every builder that sealed it) and says it is one build', async () => {
    const bundle = at('bundle2-cosigned');
    await logvmOk(['export', 'build-2/hello-1.0', '--out', bundle], { db: b2.db });
    await logvmOk(['cosign', bundle, '--key', b2.key.pub, '--signer', `gpg:${b3.key.email}`], { env: b3.key.gpg.env });
    const e = at('e2-cosigned.json');
    await logvmOk(['attest', bundle, '--out', e]);
    const { r, out } = await verifyArtifact(artifact, [e], keys, 2);
    expect(r.code).toBe(EXIT.OK);
    const { text } = await verifyArtifact(artifact, [e], keys, 2, false);
    expect(out!.rows.filter((x) => x.agrees).map((x) => x.fingerprint).sort()).toEqual([b2.key.fingerprint, b3.key.fingerprint].sort());
    expect(text).toMatch(/note: [0-9A-F]{40}, [0-9A-F]{40} sealed the same log \(one build, cosigned\), not separate builds/);
  });
});

describe('when builders used different inputs but built the same artifact', () => {
  it('agrees on the artifact and names the input that differs from the majority', async () => {
    const { r, out, } = await verifyArtifact(artifact, [ev.e1!, ev.e2!, ev.e3local!], keys, 3);
    expect(r.code).toBe(EXIT.OK);
    const row3 = out!.rows.find((x) => x.fingerprint === b3.key.fingerprint)!;
    expect(row3.agrees).toBe(true);
    const e = row3.evidences[0]!;
    expect(e.artifact).toBe('same');
    expect(e.inputs).toBe('different');
    expect(e.inputDifferences.map((d) => d.path)).toEqual(['Makefile']);
    const sha = (f: string): string => JSON.parse(JSON.parse(readFileSync(f, 'utf8')).manifest).claims.inputs[0].sha256 as string;
    expect(e.inputDifferences[0]).toEqual({ path: 'Makefile', sha256: sha(ev.e3local!), majority: sha(ev.e1!) });
    for (const b of [b1, b2]) expect(out!.rows.find((x) => x.fingerprint === b.key.fingerprint)!.evidences[0]!.inputs).toBe('same');
    const { text } = await verifyArtifact(artifact, [ev.e1!, ev.e2!, ev.e3local!], keys, 3, false);
    expect(text).toContain(`note: ${b3.key.fingerprint} built the same artifact from different inputs: Makefile`);
  });
});

describe('logvm compare', () => {
  it('pinpoints the changed toolchain flag: the command and the artifact differ, the inputs do not', async () => {
    const r = await logvmOk(['compare', ev.e1!, ev.e3flag!, '--key', keys[0]!, '--key', keys[2]!, '--json']);
    const c = JSON.parse(r.stdout.toString('utf8')) as {
      commandDiffers: boolean;
      exitDiffers: boolean;
      identical: boolean;
      columns: Array<{ command: string[] }>;
      inputs: Array<{ path: string; differs: boolean }>;
      artifacts: Array<{ path: string; differs: boolean; values: Array<{ sha256: string } | null> }>;
    };
    expect(c.identical).toBe(false);
    expect(c.commandDiffers).toBe(true);
    expect(c.exitDiffers).toBe(false);
    expect(c.columns.map((x) => x.command)).toEqual([['make', 'dist'], ['make', 'dist', 'CFLAGS=-O0']]);
    expect(c.inputs.filter((x) => x.differs)).toEqual([]);
    expect(c.artifacts).toHaveLength(1);
    expect(c.artifacts[0]!.differs).toBe(true);
    const text = (await logvmOk(['compare', ev.e1!, ev.e3flag!, '--key', keys[0]!, '--key', keys[2]!])).stdout.toString('utf8');
    expect(text).toContain('differences are marked *: command, artifact dist/hello-1.0.tar.gz');
    expect(text).toContain(`sealed by ${b3.key.fingerprint}`);
  });

  it('shows identical builds as identical', async () => {
    const r = await logvmOk(['compare', ev.e1!, ev.e2!, '--json']);
    expect(JSON.parse(r.stdout.toString('utf8'))).toMatchObject({ identical: true, seals: ['signatures not checked (give --key to check them)', 'signatures not checked (give --key to check them)'] });
  });
});

describe('logvm attest', () => {
  it('writes canonical evidence that plain gpg verifies, and refuses to overwrite it', async () => {
    const e = JSON.parse(readFileSync(ev.e1!, 'utf8')) as { format: string; manifest: string; signatures: string[] };
    expect(e.format).toBe('appendlog-evidence/1');
    writeFileSync(at('m.json'), e.manifest);
    writeFileSync(at('s.asc'), e.signatures[0]!);
    const v = await b1.key.gpg.verify(at('s.asc'), at('m.json'));
    expect(v.stdout.toString()).toMatch(new RegExp(`VALIDSIG .* ${b1.key.fingerprint}`));
    expect(statSync(ev.e1!).size).toBeLessThan(4096);
    const again = await logvm(['attest', 'build-1/hello-1.0', '--out', ev.e1!], { db: b1.db });
    expect(again.code).toBe(EXIT.BUNDLE_EXISTS);
  });

  it('accepts a full bundle as evidence, re-checking the chain, and fails it when a line was changed', async () => {
    const bundle = at('bundle1');
    await logvmOk(['export', 'build-1/hello-1.0', '--out', bundle, '--bundle-version', '1'], { db: b1.db });
    const good = await verifyArtifact(artifact, [bundle, ev.e2!], keys, 2);
    expect(good.r.code).toBe(EXIT.OK);
    expect(good.out!.rows.find((x) => x.fingerprint === b1.key.fingerprint)!.evidences[0]!.kind).toBe('bundle');
    const entries = join(bundle, 'entries.jsonl');
    writeFileSync(entries, readFileSync(entries, 'utf8').replace('"text":"rm -rf build dist"', '"text":"rm -rf build dist; curl evil"'));
    const bad = await verifyArtifact(artifact, [bundle, ev.e2!], keys, 2);
    expect(bad.r.code).toBe(EXIT.QUORUM_NOT_MET);
    expect(bad.out!.uncounted).toEqual([expect.objectContaining({ source: bundle, reason: 'CHAIN_HASH_MISMATCH' })]);
  });
});

describe('hostile evidence files', () => {
  it.each([
    ['a FIFO (never read, so never waited on)', async (p: string) => void (await run('mkfifo', [p]))],
    ['a 40 MiB file (refused by its size, not read)', async (p: string) => { writeFileSync(p, ''); truncateSync(p, 40 << 20); }],
    ['65 signatures', async (p: string) => {
      const e = JSON.parse(readFileSync(ev.e1!, 'utf8')) as { format: string; manifest: string; signatures: string[] };
      writeFileSync(p, `${JSON.stringify({ format: e.format, manifest: e.manifest, signatures: Array(65).fill(e.signatures[0]) })}\n`);
    }],
    ['a manifest with a lone surrogate', async (p: string) => {
      const e = JSON.parse(readFileSync(ev.e1!, 'utf8')) as { format: string; manifest: string; signatures: string[] };
      writeFileSync(p, `${JSON.stringify({ format: e.format, manifest: e.manifest.replace('"name":"hello-1.0"', '"name":"hello-1.0\ud800"'), signatures: e.signatures })}\n`);
    }],
  ])('refuses %s as EVIDENCE_INVALID, and still counts the others', async (_what, make) => {
    const p = at(`hostile-${Math.random().toString(36).slice(2)}.json`);
    writeFileSync(p, '');
    rmSync(p);
    await make(p);
    const { r, out } = await verifyArtifact(artifact, [p, ev.e1!, ev.e2!], keys, 2);
    expect(r.code, r.stderr).toBe(EXIT.OK);
    expect(out!.uncounted).toEqual([expect.objectContaining({ source: p, reason: 'EVIDENCE_INVALID' })]);
  });
});

describe('hostile text in an evidence', () => {
  it('never reaches the terminal raw: artifact paths with escape sequences and bidi overrides are shown escaped', async () => {
    const name = 'evil\u001b]0;pwned\u0007\u202e.bin';
    writeFileSync(join(b2.dir, name), 'x\n');
    const r = await pipeBuild(b2, 'hostile-text', 'x\n', ['--artifact', name]);
    expect(r.code, r.stderr).toBe(0);
    const e = await publish(b2, 'hostile-text', at('e-hostile.json'));
    const file = at('evil.bin');
    writeFileSync(file, 'x\n');
    const v = await verifyArtifact(file, [e], keys, 1, false);
    const c = await logvm(['compare', e, ev.e1!, '--all']);
    for (const out of [v.text, c.stdout.toString('utf8')]) {
      expect(out).not.toMatch(/[\u0000-\u0008\u000b-\u001f\u007f\u202e]/);
      expect(out).toContain('\\e]0;pwned');
    }
    expect(v.r.code, 'the hash still matches: the artifact is the same').toBe(EXIT.OK);
  });
});
