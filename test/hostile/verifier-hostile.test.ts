/**
 * An auditor's `logvm verify-chain BUNDLE --key ...` against bundles built to
 * hang it, exhaust its memory or crash it. test/seal/security-bundle.test.ts
 * already covers a signed claim of 10^12 entries, negative and huge seq
 * values, a /dev/zero entries.jsonl, a signature file that is not OpenPGP
 * and manifest size limits; this file adds special files (FIFOs, devices,
 * directories) in every place the verifier reads, over-long and maximal
 * records, a deeply nested manifest, and signature files packed to the
 * limits. Every case must end, quickly and in bounded memory, with a coded
 * failure (or OK for a valid bundle), never a hang or a stack trace.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  EXIT,
  LOGVM,
  expectNoCrash,
  expectReceipt,
  makeKey,
  report,
  sealAndExport,
  service,
  start,
  tempDir,
  type Code,
  type KeyPair,
  type Run,
} from './util.js';

const tmp = tempDir('appendlog-hostile-verifier-');
afterAll(() => tmp.cleanup());
const db = join(tmp.dir, 'logs.db');
const base = join(tmp.dir, 'bundle');
const huge = join(tmp.dir, 'bundle-huge');
const MAX_PAYLOAD = 16 * 1024 * 1024;
/** ⌈16 MiB × 4/3⌉ + 4096 (docs/FORMAT.md 9.3 reader rule 3). */
const MAX_RECORD = Math.ceil((MAX_PAYLOAD * 4) / 3) + 4096;
let key: KeyPair;
let attacks = 0;
let badInputs = 0;
afterAll(() => report('verifier: hostile bundles tried', String(badInputs)));

beforeAll(async () => {
  key = await makeKey(tmp.dir, 'Auditor');
  expectReceipt(await service('build-vm', 'rel', db, { input: 'compiling\nlinking\ntests passed\n' }));
  await sealAndExport(db, 'build-vm/rel', key, base);
  // A real log whose one line is MAX_PAYLOAD bytes of non-UTF-8: its record is base64, near the length limit.
  const line = randomBytes(MAX_PAYLOAD);
  for (let i = 0; i < line.length; i++) if (line[i] === 0x0a) line[i] = 0xff;
  line[0] = 0xff;
  expectReceipt(await service('build-vm', 'huge', db, { input: line, env: { APPENDLOG_MAX_LINE: String(MAX_PAYLOAD) }, timeoutMs: 60_000 }));
  await sealAndExport(db, 'build-vm/huge', key, huge);
}, 120_000);

/** A fresh copy of a bundle to damage. */
function attack(src = base): string {
  badInputs++;
  const dir = join(tmp.dir, `attack-${++attacks}`);
  cpSync(src, dir, { recursive: true });
  return dir;
}

interface Verified extends Run {
  json: { ok: boolean; code?: string; message?: string; seq?: number | null };
}

/** `logvm verify-chain DIR --key PUB --json`, with a timeout and peak RSS. */
async function verify(dir: string, extra: string[] = [], timeoutMs = 20_000): Promise<Verified> {
  const rssFile = join(tmp.dir, `rss-${attacks}-${Math.random().toString(36).slice(2)}`);
  const r = await start(process.execPath, [LOGVM, 'verify-chain', dir, '--key', key.pub, '--json', ...extra], { timeoutMs, rssFile }).done;
  let json: Verified['json'] = { ok: false };
  try {
    json = JSON.parse(r.stdout.toString('utf8')) as Verified['json'];
  } catch {
    // asserted by the caller
  }
  return { ...r, json };
}

/** Ends by itself, in time, with the coded failure; memory under `maxRssMB`. */
function expectRefused(r: Verified, code: Code, maxRssMB = 200, message?: RegExp): void {
  expect(r.timedOut, `verify-chain did not finish within its timeout (hung): ${r.stderr}`).toBe(false);
  expectNoCrash(r, 'verify-chain');
  expect(r.json, r.stdout.toString('utf8') + r.stderr).toMatchObject({ ok: false, code });
  expect(r.code).toBe(EXIT[code]);
  if (message) expect(r.json.message).toMatch(message);
  expect(r.peakRssKiB, 'peak RSS measured').toBeDefined();
  expect(r.peakRssKiB!).toBeLessThan((maxRssMB * 1e6) / 1024);
}

const mkfifo = (path: string): void => {
  rmSync(path, { recursive: true, force: true });
  execFileSync('mkfifo', [path]);
};

describe('the bundles under attack', () => {
  it('verify as OK: the small one, and one whose single entry is MAX_PAYLOAD (16 MiB) of non-UTF-8 bytes, in bounded memory', async () => {
    const small = await verify(base);
    expectNoCrash(small, 'verify-chain');
    expect(small.json, small.stderr).toMatchObject({ ok: true });
    // The exporter wrote this bundle from a store that verifies; its reader must accept it (FORMAT.md 9.3:
    // a record of up to MAX_RECORD_CHARS, base64 for a non-UTF-8 payload of up to MAX_PAYLOAD).
    const r = await verify(huge, [], 60_000);
    report('verify-chain of a bundle with one 16 MiB entry: peak RSS', `${r.peakRssKiB} KiB`);
    expectNoCrash(r, 'verify-chain');
    expect(r.json, `${r.json.code}: ${r.json.message}`).toMatchObject({ ok: true, entries: 4, bytes: MAX_PAYLOAD });
    expect(r.peakRssKiB!).toBeLessThan(400e6 / 1024);
  }, 90_000);
});

describe('when entries.jsonl is not a regular file', () => {
  it('a FIFO that nobody writes to: refused (MALFORMED_BUNDLE), not waited on forever', async () => {
    const dir = attack();
    mkfifo(join(dir, 'entries.jsonl'));
    expectRefused(await verify(dir, [], 15_000), 'MALFORMED_BUNDLE');
  }, 30_000);

  it('a symlink to /dev/urandom: refused quickly (MALFORMED_BUNDLE), memory bounded', async () => {
    const dir = attack();
    rmSync(join(dir, 'entries.jsonl'));
    symlinkSync('/dev/urandom', join(dir, 'entries.jsonl'));
    const r = await verify(dir);
    expectRefused(r, 'MALFORMED_BUNDLE');
    expect(r.elapsedMs).toBeLessThan(10_000);
  });

  it('a directory: refused (MALFORMED_BUNDLE)', async () => {
    const dir = attack();
    rmSync(join(dir, 'entries.jsonl'));
    mkdirSync(join(dir, 'entries.jsonl'));
    expectRefused(await verify(dir), 'MALFORMED_BUNDLE');
  });
});

describe('when a record is too long or too big', () => {
  it('a 30 MB JSON line is refused quickly as longer than any valid record, memory bounded', async () => {
    const dir = attack();
    const lines = readFileSync(join(dir, 'entries.jsonl'), 'utf8').split('\n');
    lines[1] = `{"seq":2,"time":1,"session":1,"kind":"line","flags":0,"text":"${'x'.repeat(30_000_000)}","hash":"${'0'.repeat(64)}"}`;
    writeFileSync(join(dir, 'entries.jsonl'), lines.join('\n'));
    const r = await verify(dir);
    expectRefused(r, 'MALFORMED_BUNDLE', 200, /line 2: longer than any valid record/);
    expect(r.elapsedMs).toBeLessThan(10_000);
    report('verify-chain refusing a 30 MB record: peak RSS / time', `${r.peakRssKiB} KiB / ${r.elapsedMs} ms`);
  });

  it('30 MB without any newline is refused the same way', async () => {
    const dir = attack();
    writeFileSync(join(dir, 'entries.jsonl'), `{"seq":1,${'7'.repeat(30_000_000)}`);
    expectRefused(await verify(dir), 'MALFORMED_BUNDLE', 200, /longer than any valid record/);
  });

  it('a base64 payload one byte over MAX_PAYLOAD (the line itself within the length limit) fails with MALFORMED_BUNDLE naming the format limit', async () => {
    const dir = attack();
    const b64 = Buffer.alloc(MAX_PAYLOAD + 1, 0xff).toString('base64');
    const line = `{"seq":2,"time":1,"session":1,"kind":"line","flags":0,"base64":"${b64}","hash":"${'0'.repeat(64)}"}`;
    expect(line.length).toBeLessThanOrEqual(MAX_RECORD);
    const lines = readFileSync(join(dir, 'entries.jsonl'), 'utf8').split('\n');
    lines[1] = line;
    writeFileSync(join(dir, 'entries.jsonl'), lines.join('\n'));
    expectRefused(await verify(dir), 'MALFORMED_BUNDLE', 300, /line 2: payload exceeds the format limit/);
  });

  it('a text record of 3.7 million \\u0000 escapes is decoded in bounded time and memory, then fails its hash (exit 10 at seq 2)', async () => {
    const dir = attack();
    const lines = readFileSync(join(dir, 'entries.jsonl'), 'utf8').split('\n');
    lines[1] = lines[1]!.replace(/"text":"[^"]*"/, `"text":"${'\\u0000'.repeat(3_700_000)}"`);
    writeFileSync(join(dir, 'entries.jsonl'), lines.join('\n'));
    const r = await verify(dir);
    expectRefused(r, 'CHAIN_HASH_MISMATCH', 300);
    expect(r.json.seq).toBe(2);
  });
});

describe('when manifest.json or signatures are special or packed files', () => {
  it('manifest.json a FIFO: refused (MALFORMED_BUNDLE), not waited on', async () => {
    const dir = attack();
    mkfifo(join(dir, 'manifest.json'));
    expectRefused(await verify(dir, [], 15_000), 'MALFORMED_BUNDLE');
  }, 30_000);

  it('a manifest nested two million arrays deep (under the 4 MiB limit): MANIFEST_INVALID, no stack overflow', async () => {
    const dir = attack();
    const n = 2_000_000;
    writeFileSync(join(dir, 'manifest.json'), `{"a":${'['.repeat(n)}${']'.repeat(n)}}\n`);
    const r = await verify(dir);
    report('verify-chain refusing a 4 MB manifest nested 2M deep: peak RSS', `${r.peakRssKiB} KiB`);
    // JSON.parse builds two million arrays before the unknown field is seen: allow for that.
    expectRefused(r, 'MANIFEST_INVALID', 500);
  });

  it('signatures/01.asc a FIFO: refused (MALFORMED_BUNDLE), not waited on', async () => {
    const dir = attack();
    mkfifo(join(dir, 'signatures/01.asc'));
    expectRefused(await verify(dir, [], 15_000), 'MALFORMED_BUNDLE');
  }, 30_000);

  it('signatures/01.asc a symlink to /dev/urandom: refused (MALFORMED_BUNDLE)', async () => {
    const dir = attack();
    rmSync(join(dir, 'signatures/01.asc'));
    symlinkSync('/dev/urandom', join(dir, 'signatures/01.asc'));
    expectRefused(await verify(dir), 'MALFORMED_BUNDLE');
  });

  it('257 signature files: refused (MALFORMED_BUNDLE) before any is parsed', async () => {
    const dir = attack();
    const sig = readFileSync(join(dir, 'signatures/01.asc'));
    for (let i = 2; i <= 257; i++) writeFileSync(join(dir, `signatures/${String(i).padStart(3, '0')}.asc`), sig);
    expectRefused(await verify(dir), 'MALFORMED_BUNDLE', 200, /257 signature files/);
  });

  it('--previous whose manifest.json is a FIFO: refused (SEAL_CHAIN_BROKEN: the link cannot be shown), not waited on', async () => {
    const prev = attack();
    mkfifo(join(prev, 'manifest.json'));
    expectRefused(await verify(base, ['--previous', prev], 15_000), 'SEAL_CHAIN_BROKEN');
  }, 30_000);

  // Limits (signatures.ts): at most 64 signature files of 64 KiB, 64 distinct packets; copies count once.
  async function packed(copies: number): Promise<string> {
    const dir = attack();
    const openpgp = await import('openpgp');
    const sig = await openpgp.readSignature({ armoredSignature: readFileSync(join(dir, 'signatures/01.asc'), 'utf8') });
    const list = new openpgp.PacketList<import('openpgp').SignaturePacket>();
    for (let i = 0; i < copies; i++) list.push(sig.packets[0]!);
    return new openpgp.Signature(list).armor();
  }

  it('one signature file packed with ~3900 copies of the real signature (~1 MiB): refused as MALFORMED_BUNDLE at once', async () => {
    const armored = await packed(3900);
    const dir = attack();
    writeFileSync(join(dir, 'signatures/01.asc'), armored);
    const r = await verify(dir, [], 30_000);
    expect(r.timedOut).toBe(false);
    expectRefused(r, 'MALFORMED_BUNDLE');
    expect(r.elapsedMs).toBeLessThan(10_000);
    report('one 1 MiB signature file of 3900 copies: refused in', `${r.elapsedMs} ms`);
  }, 40_000);

  it('a signature file with 200 copies of the real signature (under 64 KiB): OK, the copies count once', async () => {
    const armored = await packed(200);
    expect(armored.length).toBeLessThan(64 * 1024);
    const dir = attack();
    writeFileSync(join(dir, 'signatures/01.asc'), armored);
    const r = await verify(dir, [], 30_000);
    expect(r.timedOut).toBe(false);
    expectNoCrash(r, 'verify-chain');
    expect(r.json).toMatchObject({ ok: true });
  }, 40_000);

  it('256 signature files, each packed with copies of the real signature: refused (more than 64 files), within seconds', async () => {
    const armored = await packed(200);
    const dir = attack();
    for (let i = 1; i <= 256; i++) writeFileSync(join(dir, `signatures/${String(i).padStart(3, '0')}.asc`), armored);
    rmSync(join(dir, 'signatures/01.asc'), { force: true });
    const r = await verify(dir, [], 30_000);
    report('256 packed signature files: verify-chain', r.timedOut ? 'still running after 30 s (killed)' : `${r.elapsedMs} ms, peak RSS ${r.peakRssKiB} KiB`);
    expect(r.timedOut).toBe(false);
    expectRefused(r, 'MALFORMED_BUNDLE');
    rmSync(dir, { recursive: true, force: true });
  }, 60_000);
});
