/**
 * Bundles as one file (docs/FORMAT.md 9.6) and bundle version 2 (9.7):
 * `logvm export --out FILE.tar|.tar.gz|.tar.zst`, read in place by
 * verify-chain, cosign and show, checked against GNU tar, gzip and zstd; and
 * one hostile archive per refusal of 9.6. The hostile archives are built by
 * the small ustar writer below (independent of the code under test) from the
 * real files of an exported bundle, or by GNU tar itself.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT, expectNoCrash, expectReceipt, logvm, makeKey, seal, service, tempDir, type Code, type KeyPair, type Run } from '../hostile/util.js';

const tmp = tempDir('appendlog-archive-');
afterAll(() => tmp.cleanup());
const db = join(tmp.dir, 'logs.db');
const REF = 'build-vm/rel';
const dirV2 = join(tmp.dir, 'bundle-v2');
const dirV1 = join(tmp.dir, 'bundle-v1');
let key: KeyPair;
let key2: KeyPair;
const INPUT = 'compiling a.c\n\x1b[31mwarning\x1b[0m: \xff bytes\nlinking\ntests passed\n';

beforeAll(async () => {
  key = await makeKey(tmp.dir, 'Release');
  key2 = await makeKey(tmp.dir, 'Second');
  expectReceipt(await service('build-vm', 'rel', db, { input: Buffer.from(INPUT, 'latin1') }));
  const s = await seal(db, REF, key);
  expect(s.code, s.stderr).toBe(0);
  expect((await logvm(['export', REF, '--out', dirV2], { db })).code).toBe(0);
  expect((await logvm(['export', REF, '--out', dirV1, '--bundle-version', '1'], { db })).code).toBe(0);
}, 120_000);

async function exportTo(out: string, extra: string[] = []): Promise<Run> {
  const r = await logvm(['export', REF, '--out', out, ...extra], { db });
  expectNoCrash(r, 'export');
  return r;
}

async function verify(target: string, extra: string[] = []): Promise<{ run: Run; json: Record<string, unknown> }> {
  const run = await logvm(['verify-chain', target, '--key', key.pub, '--json', ...extra]);
  expectNoCrash(run, 'verify-chain');
  return { run, json: JSON.parse(run.stdout.toString('utf8')) as Record<string, unknown> };
}

function expectFail(r: { run: Run; json: Record<string, unknown> }, code: Code, message?: RegExp): void {
  expect(r.json.ok, JSON.stringify(r.json)).toBe(false);
  expect(r.json.code).toBe(code);
  expect(r.run.code).toBe(EXIT[code]);
  if (message) expect(String(r.json.message)).toMatch(message);
}

// ---------------------------------------------------------------------------
// A minimal ustar writer for the hostile archives (independent of the code under test)

interface Member {
  name: string;
  data?: Buffer;
  type?: string;
  link?: string;
  /** Size written in the header, if not data's length. */
  size?: number;
}

function header(m: Member): Buffer {
  const h = Buffer.alloc(512);
  h.write(m.name, 0, 100, 'utf8');
  h.write('0000644\0', 100, 'latin1');
  h.write('0000000\0', 108, 'latin1');
  h.write('0000000\0', 116, 'latin1');
  h.write(`${(m.size ?? m.data?.length ?? 0).toString(8).padStart(11, '0')}\0`, 124, 'latin1');
  h.write('14712345670\0', 136, 'latin1');
  h.fill(0x20, 148, 156);
  h.write(m.type ?? '0', 156, 'latin1');
  if (m.link) h.write(m.link, 157, 100, 'utf8');
  h.write('ustar\x0000', 257, 'latin1');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return h;
}

function tar(members: Member[], trailer: Buffer = Buffer.alloc(1024)): Buffer {
  const parts: Buffer[] = [];
  for (const m of members) {
    parts.push(header(m));
    const d = m.data ?? Buffer.alloc(0);
    parts.push(d, Buffer.alloc((512 - (d.length % 512)) % 512));
  }
  parts.push(trailer);
  return Buffer.concat(parts);
}

/** The members of the real version 2 bundle, in the layout's order. */
function realMembers(dir = dirV2, entries = 'entries.bin'): Member[] {
  return [
    { name: 'manifest.json', data: readFileSync(join(dir, 'manifest.json')) },
    { name: 'signatures/01.asc', data: readFileSync(join(dir, 'signatures/01.asc')) },
    { name: 'README.txt', data: readFileSync(join(dir, 'README.txt')) },
    { name: entries, data: readFileSync(join(dir, entries)) },
  ];
}

let n = 0;
function writeArchive(bytes: Buffer, ext = '.tar'): string {
  const p = join(tmp.dir, `hostile-${++n}${ext}`);
  writeFileSync(p, bytes);
  return p;
}

// ---------------------------------------------------------------------------

describe('logvm export --out FILE.tar / .tar.gz / .tar.zst', () => {
  for (const ext of ['.tar', '.tar.gz', '.tar.zst']) {
    it(`writes ${ext}: members in the order of 9.6, readable by GNU tar, and verify-chain reads it in place`, async () => {
      const out = join(tmp.dir, `bundle${ext}`);
      const e = await exportTo(out);
      expect(e.code, e.stderr).toBe(0);
      expect(existsSync(`${out}.partial`)).toBe(false);
      const listing = execFileSync('sh', ['-c', ext === '.tar.zst' ? `zstd -dc "${out}" | tar tf -` : `tar tf "${out}"`], { encoding: 'utf8' });
      expect(listing.trim().split('\n')).toEqual(['manifest.json', 'signatures/01.asc', 'README.txt', 'entries.bin']);
      // The members are the directory form's files, byte for byte.
      const x = join(tmp.dir, `x${ext}`);
      mkdirSync(x);
      execFileSync('sh', ['-c', ext === '.tar.zst' ? `zstd -dc "${out}" | tar xf - -C "${x}"` : `tar xf "${out}" -C "${x}"`]);
      for (const f of ['manifest.json', 'signatures/01.asc', 'entries.bin']) expect(readFileSync(join(x, f)).equals(readFileSync(join(dirV2, f)))).toBe(true);
      const before = readdirSync(tmp.dir).length;
      const v = await verify(out);
      expect(v.json, v.run.stderr).toMatchObject({ ok: true, source: 'bundle', entries: 7, lines: 4, log: REF });
      expect(readdirSync(tmp.dir).length, 'verify-chain unpacked nothing').toBe(before);
    });
  }

  it('a version 1 archive (entries.jsonl) verifies too, with the same head', async () => {
    const out = join(tmp.dir, 'bundle-v1.tar');
    expect((await exportTo(out, ['--bundle-version', '1'])).code).toBe(0);
    expect(execFileSync('tar', ['tf', out], { encoding: 'utf8' }).trim().split('\n').pop()).toBe('entries.jsonl');
    const a = await verify(out);
    const b = await verify(dirV2);
    expect(a.json.ok).toBe(true);
    expect(a.json.head).toBe(b.json.head);
  });

  it('refuses an existing output file with BUNDLE_EXISTS and leaves it alone', async () => {
    const out = join(tmp.dir, 'exists.tar');
    writeFileSync(out, 'precious');
    const r = await exportTo(out);
    expect(r.code).toBe(EXIT.BUNDLE_EXISTS);
    expect(readFileSync(out, 'utf8')).toBe('precious');
  });
});

describe('bundle version 2 (entries.bin)', () => {
  it('a log of many blocks, small and large (one first entry, then 256 KiB+), exports and verifies in every form, by logvm and by the Python reader', async () => {
    const lines = Array.from({ length: 40_000 }, (_, i) => `line ${i} ${'y'.repeat(i % 120)}`).join('\n');
    expectReceipt(await service('build-vm', 'many', db, { input: `${lines}\n`, timeoutMs: 60_000 }));
    const s = await seal(db, 'build-vm/many', key);
    expect(s.code, s.stderr).toBe(0);
    for (const out of [join(tmp.dir, 'many'), join(tmp.dir, 'many.tar'), join(tmp.dir, 'many.tar.zst')]) {
      const e = await logvm(['export', 'build-vm/many', '--out', out], { db });
      expect(e.code, e.stderr).toBe(0);
      const v = await verify(out);
      expect(v.json, v.run.stderr).toMatchObject({ ok: true, entries: 40_003 });
      expect(JSON.parse(execFileSync('python3', [join(__dirname, '../../docs/vectors/verify_bundle.py'), out], { encoding: 'utf8' }))).toMatchObject({ ok: true, entries: 40_003 });
    }
  }, 120_000);

  // Export checks a block's records, then hashes them on the addon's thread
  // while the next block is read and written: a change in any block is still
  // named at its exact seq, the earlier of two changes wins, and every stored
  // hash is compared in full (the tag written is only its first 8 bytes).
  it('export of a store changed in later blocks names the first changed seq, and writes no bundle', async () => {
    const lines = Array.from({ length: 30_000 }, (_, i) => `block line ${i} ${'z'.repeat(i % 90)}`).join('\n');
    expectReceipt(await service('build-vm', 'blocks', db, { input: `${lines}\n`, timeoutMs: 60_000 }));
    const s = await seal(db, 'build-vm/blocks', key);
    expect(s.code, s.stderr).toBe(0);
    const Database = (await import('better-sqlite3')).default;
    /** A copy of the store with the changes made by `attack` to its block rows (triggers dropped first). */
    const attacked = (name: string, attack: (rows: Array<{ id: number; first_seq: number; count: number; data: Buffer; hashes: Buffer }>) => void): string => {
      const path = join(tmp.dir, `${name}.db`);
      const src = new Database(db, { readonly: true });
      src.prepare('VACUUM INTO ?').run(path);
      src.close();
      const d = new Database(path);
      for (const t of d.prepare("SELECT name FROM sqlite_master WHERE type = 'trigger'").all() as Array<{ name: string }>) d.exec(`DROP TRIGGER ${t.name}`);
      const rows = d.prepare("SELECT b.id, b.first_seq, b.count, b.data, b.hashes FROM blocks b JOIN logs l ON l.id = b.log_id WHERE l.name = 'blocks' ORDER BY b.first_seq").all() as Array<{ id: number; first_seq: number; count: number; data: Buffer; hashes: Buffer }>;
      expect(rows.length).toBeGreaterThanOrEqual(3);
      attack(rows);
      const upd = d.prepare('UPDATE blocks SET data = ?, hashes = ? WHERE id = ?');
      for (const r of rows) upd.run(r.data, r.hashes, r.id);
      d.close();
      return path;
    };
    const seqIn = (r: { first_seq: number; count: number }, k: number): number => r.first_seq + Math.min(k, r.count - 1);
    const flipHash = (r: { first_seq: number; hashes: Buffer }, seq: number, byte: number): void => {
      const at = (seq - r.first_seq) * 32 + byte;
      r.hashes[at] = r.hashes[at]! ^ 0x40;
    };
    const flipPayload = (r: { first_seq: number; data: Buffer }, seq: number): void => {
      // Walk the encodings (26-byte header, payload length at 22) to the entry, then change its last payload byte.
      let off = 0;
      for (let q = r.first_seq; q < seq; q++) off += 26 + r.data.readUInt32BE(off + 22);
      const at = off + 26 + r.data.readUInt32BE(off + 22) - 1;
      r.data[at] = r.data[at]! ^ 0x01;
    };
    const cases: Array<{ name: string; attack: Parameters<typeof attacked>[1]; seq: (rows: Array<{ first_seq: number; count: number }>) => number }> = [
      { name: 'payload-block-3', attack: (rows) => flipPayload(rows[2]!, seqIn(rows[2]!, 17)), seq: (rows) => seqIn(rows[2]!, 17) },
      { name: 'hash-tail-block-2', attack: (rows) => flipHash(rows[1]!, seqIn(rows[1]!, 5), 20), seq: (rows) => seqIn(rows[1]!, 5) },
      {
        name: 'hash-tail-block-2-and-payload-block-3',
        attack: (rows) => {
          flipPayload(rows[2]!, seqIn(rows[2]!, 3));
          flipHash(rows[1]!, seqIn(rows[1]!, 900), 31);
        },
        seq: (rows) => seqIn(rows[1]!, 900),
      },
    ];
    for (const c of cases) {
      let rows: Array<{ first_seq: number; count: number }> = [];
      const store = attacked(c.name, (r) => {
        c.attack(r);
        rows = r;
      });
      const want = c.seq(rows);
      for (const ext of ['', '.tar']) {
        const out = join(tmp.dir, `${c.name}-out${ext}`);
        const e = await logvm(['export', 'build-vm/blocks', '--out', out], { db: store });
        expectNoCrash(e, 'export');
        expect(e.code, `${c.name}${ext}: ${e.stderr}`).toBe(EXIT.CHAIN_HASH_MISMATCH);
        expect(e.stderr.toString()).toContain(`seq ${want}:`);
        expect(existsSync(out)).toBe(false);
        expect(existsSync(`${out}.partial`)).toBe(false);
      }
    }
  }, 120_000);

  it('the directory holds entries.bin and verifies', async () => {
    expect(readdirSync(dirV2).sort()).toEqual(['README.txt', 'entries.bin', 'manifest.json', 'signatures']);
    expect((await verify(dirV2)).json.ok).toBe(true);
  });

  it('a changed payload byte is named at its exact seq (CHAIN_HASH_MISMATCH), in the directory and in a .tar.gz', async () => {
    const bin = readFileSync(join(dirV2, 'entries.bin'));
    const at = bin.indexOf(Buffer.from('linking'));
    expect(at).toBeGreaterThan(0);
    const bad = Buffer.from(bin);
    bad[at] = 'L'.charCodeAt(0);
    const dir = join(tmp.dir, 'v2-tampered');
    execFileSync('cp', ['-r', dirV2, dir]);
    writeFileSync(join(dir, 'entries.bin'), bad);
    const d = await verify(dir);
    expectFail(d, 'CHAIN_HASH_MISMATCH', /seq 4:/);
    expect(d.json.seq).toBe(4);
    const members = realMembers();
    members[3]!.data = bad;
    const t = await verify(writeArchive(gzipSync(tar(members)), '.tar.gz'));
    expectFail(t, 'CHAIN_HASH_MISMATCH', /seq 4:/);
  });

  it('a bundle directory with both entries.bin and entries.jsonl is refused', async () => {
    const dir = join(tmp.dir, 'both');
    execFileSync('cp', ['-r', dirV2, dir]);
    writeFileSync(join(dir, 'entries.jsonl'), readFileSync(join(dirV1, 'entries.jsonl')));
    expectFail(await verify(dir), 'MALFORMED_BUNDLE', /both/);
  });

  it('entries.bin cut inside a record is MALFORMED_BUNDLE naming the seq', async () => {
    const members = realMembers();
    members[3]!.data = members[3]!.data!.subarray(0, members[3]!.data!.length - 3);
    expectFail(await verify(writeArchive(tar(members))), 'MALFORMED_BUNDLE', /ends inside the record of seq 7/);
  });
});

describe('cosign and show read an archive in place', () => {
  it('logvm cosign FILE.tar.zst adds signatures/02.asc; the archive then meets a 2-of-2 threshold', async () => {
    const out = join(tmp.dir, 'cosign.tar.zst');
    expect((await exportTo(out)).code).toBe(0);
    const c = await logvm(['cosign', out, '--signer', `key-file:${key2.priv}`, '--key', key.pub]);
    expectNoCrash(c, 'cosign');
    expect(c.code, c.stderr).toBe(0);
    expect(execFileSync('sh', ['-c', `zstd -dc "${out}" | tar tf -`], { encoding: 'utf8' }).trim().split('\n')).toEqual([
      'manifest.json',
      'signatures/01.asc',
      'signatures/02.asc',
      'README.txt',
      'entries.bin',
    ]);
    const v = await verify(out, ['--key', key2.pub, '--threshold', '2']);
    expect(v.json, v.run.stderr).toMatchObject({ ok: true, threshold: 2 });
  });

  it('logvm show FILE.tar prints the log, and --raw gives back the input bytes', async () => {
    const out = join(tmp.dir, 'show.tar');
    expect((await exportTo(out)).code).toBe(0);
    const raw = await logvm(['show', out, '--raw']);
    expect(raw.code, raw.stderr).toBe(0);
    expect(raw.stdout.equals(Buffer.from(INPUT, 'latin1'))).toBe(true);
    const text = await logvm(['show', out]);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout.toString('utf8')).toContain('linking');
    expect(text.stdout.toString('utf8')).not.toContain('\x1b');
  });
});

describe('render and attest read an archive in place too', () => {
  it('logvm render FILE.tar.gz --format text gives the same text as for the directory', async () => {
    const out = join(tmp.dir, 'render.tar.gz');
    expect((await exportTo(out)).code).toBe(0);
    const a = await logvm(['render', out, '--format', 'text', '--key', key.pub]);
    const b = await logvm(['render', dirV2, '--format', 'text', '--key', key.pub]);
    expect(a.code, a.stderr).toBe(0);
    expect(a.stdout.length).toBeGreaterThan(0);
    expect(a.stdout.equals(b.stdout)).toBe(true);
  });

  it('logvm attest FILE.tar.zst writes the same evidence as for the directory', async () => {
    const out = join(tmp.dir, 'attest.tar.zst');
    expect((await exportTo(out)).code).toBe(0);
    const ea = join(tmp.dir, 'ev-archive.json');
    const ed = join(tmp.dir, 'ev-dir.json');
    const a = await logvm(['attest', out, '--out', ea]);
    const d = await logvm(['attest', dirV2, '--out', ed]);
    expect(a.code, a.stderr).toBe(0);
    expect(d.code, d.stderr).toBe(0);
    expect(readFileSync(ea).equals(readFileSync(ed))).toBe(true);
  });
});

describe('hostile archives: each refusal of 9.6', () => {
  it('duplicate member (a second manifest.json) -> MALFORMED_BUNDLE', async () => {
    const m = realMembers();
    expectFail(await verify(writeArchive(tar([m[0]!, m[0]!, ...m.slice(1)]))), 'MALFORMED_BUNDLE', /duplicate member "manifest.json"/);
  });

  it('duplicate signature member -> MALFORMED_BUNDLE', async () => {
    const m = realMembers();
    expectFail(await verify(writeArchive(tar([m[0]!, m[1]!, m[1]!, m[2]!, m[3]!]))), 'MALFORMED_BUNDLE', /duplicate member "signatures\/01.asc"/);
  });

  it('a symbolic link member -> MALFORMED_BUNDLE', async () => {
    const m = realMembers();
    const link: Member = { name: 'signatures/02.asc', type: '2', link: '/etc/passwd' };
    expectFail(await verify(writeArchive(tar([m[0]!, m[1]!, link, m[2]!, m[3]!]))), 'MALFORMED_BUNDLE', /symbolic link/);
  });

  it('a hard link member, made by GNU tar -> MALFORMED_BUNDLE', async () => {
    const d = join(tmp.dir, 'hardlink');
    execFileSync('cp', ['-r', dirV2, d]);
    execFileSync('ln', [join(d, 'signatures/01.asc'), join(d, 'signatures/02.asc')]);
    const out = join(tmp.dir, 'hardlink.tar');
    execFileSync('tar', ['cf', out, '--format=ustar', '-C', d, 'manifest.json', 'signatures/01.asc', 'signatures/02.asc', 'README.txt', 'entries.bin']);
    expectFail(await verify(out), 'MALFORMED_BUNDLE', /hard link/);
  });

  it('an absolute path (/manifest.json) -> MALFORMED_BUNDLE', async () => {
    const m = realMembers();
    m[0]!.name = '/manifest.json';
    expectFail(await verify(writeArchive(tar(m))), 'MALFORMED_BUNDLE', /absolute path/);
  });

  it('a ".." path (signatures/../../etc/x.asc) -> MALFORMED_BUNDLE', async () => {
    const m = realMembers();
    m[1]!.name = 'signatures/../../etc/x.asc';
    expectFail(await verify(writeArchive(tar(m))), 'MALFORMED_BUNDLE', /"\.\." path component/);
  });

  it('a member outside the layout (run.sh), and a directory member -> MALFORMED_BUNDLE', async () => {
    const m = realMembers();
    expectFail(await verify(writeArchive(tar([m[0]!, { name: 'run.sh', data: Buffer.from('rm -rf ~\n') }, ...m.slice(1)]))), 'MALFORMED_BUNDLE', /outside the bundle layout/);
    expectFail(await verify(writeArchive(tar([m[0]!, { name: 'signatures/', type: '5' }, ...m.slice(1)]))), 'MALFORMED_BUNDLE', /not a regular file/);
  });

  it('a member after the entries -> MALFORMED_BUNDLE (nothing follows the entries)', async () => {
    const m = realMembers();
    expectFail(await verify(writeArchive(tar([...m, { name: 'signatures/99.asc', data: m[1]!.data }]))), 'MALFORMED_BUNDLE', /after entries.bin/);
  });

  it('members out of order -> MALFORMED_BUNDLE; a signature after the entries is never trusted', async () => {
    const m = realMembers();
    expectFail(await verify(writeArchive(tar([m[0]!, m[2]!, m[1]!, m[3]!]))), 'MALFORMED_BUNDLE', /out of order/);
    expectFail(await verify(writeArchive(tar([m[1]!, m[0]!, m[3]!]))), 'MALFORMED_BUNDLE', /first member/);
    // Trust is checked when the entries begin: a signature placed after them does not count.
    expectFail(await verify(writeArchive(tar([m[0]!, m[3]!, m[1]!]))), 'SIGNATURE_MISSING');
  });

  it('a manifest member over its 4 MiB limit, and a signature over 64 KiB -> MALFORMED_BUNDLE, before reading them', async () => {
    const m = realMembers();
    // The header claims 5 MiB; the data is not even there: the size alone is refused.
    const big = tar([{ name: 'manifest.json', size: 5 << 20 }]);
    expectFail(await verify(writeArchive(big)), 'MALFORMED_BUNDLE', /over its limit/);
    const sig = { name: 'signatures/02.asc', data: Buffer.alloc(64 * 1024 + 1, 0x41) };
    expectFail(await verify(writeArchive(tar([m[0]!, m[1]!, sig, m[2]!, m[3]!]))), 'MALFORMED_BUNDLE', /over its limit/);
  });

  it('a pax extended header -> MALFORMED_BUNDLE (it would rename the next member for some readers only)', async () => {
    const m = realMembers();
    const pax = Buffer.from('30 path=signatures/01.asc\n');
    expectFail(await verify(writeArchive(tar([m[0]!, { name: 'PaxHeader', type: 'x', data: pax }, ...m.slice(1)]))), 'MALFORMED_BUNDLE', /pax or GNU extension/);
  });

  it('a truncated archive (no end-of-archive marker) and data after the marker -> MALFORMED_BUNDLE', async () => {
    const whole = tar(realMembers());
    expectFail(await verify(writeArchive(whole.subarray(0, whole.length - 1024))), 'MALFORMED_BUNDLE', /truncated/);
    expectFail(await verify(writeArchive(Buffer.concat([whole, Buffer.from('hidden')]))), 'MALFORMED_BUNDLE', /after the end-of-archive marker/);
  });

  it('a header with a bad checksum, and a damaged gzip stream -> MALFORMED_BUNDLE', async () => {
    const whole = tar(realMembers());
    const bad = Buffer.from(whole);
    bad[10] = bad[10]! ^ 1;
    expectFail(await verify(writeArchive(bad)), 'MALFORMED_BUNDLE', /checksum/);
    const gz = gzipSync(whole);
    const cut = gz.subarray(0, gz.length >> 1);
    expectFail(await verify(writeArchive(cut, '.tar.gz')), 'MALFORMED_BUNDLE', /gzip|truncated/);
  });

  it('an archive with no entries member, and one whose first member is not the manifest -> MALFORMED_BUNDLE', async () => {
    const m = realMembers();
    expectFail(await verify(writeArchive(tar(m.slice(0, 3)))), 'MALFORMED_BUNDLE', /no entries member/);
    expectFail(await verify(writeArchive(tar([]))), 'MALFORMED_BUNDLE', /empty archive/);
  });
});

describe('the independent Python reader (docs/vectors/verify_bundle.py) reads the same forms, from the spec', () => {
  const PY = join(__dirname, '../../docs/vectors/verify_bundle.py');
  function py(target: string): { code: number; json: Record<string, unknown> } {
    try {
      const out = execFileSync('python3', [PY, target], { encoding: 'utf8' });
      return { code: 0, json: JSON.parse(out) as Record<string, unknown> };
    } catch (e) {
      const err = e as { status: number; stdout: string; stderr: string };
      expect(err.stdout, err.stderr).not.toBe('');
      return { code: err.status, json: JSON.parse(err.stdout) as Record<string, unknown> };
    }
  }

  it('directory v1 and v2, .tar, .tar.gz and .tar.zst: OK, with the head logvm reports', async () => {
    const head = (await verify(dirV2)).json.head;
    const targets = [dirV1, dirV2];
    for (const ext of ['.tar', '.tar.gz', '.tar.zst']) {
      const out = join(tmp.dir, `py${ext}`);
      expect((await exportTo(out)).code).toBe(0);
      targets.push(out);
    }
    for (const t of targets) {
      const r = py(t);
      expect(r.json, t).toMatchObject({ ok: true, entries: 7, head, log: REF });
      expect(r.code).toBe(0);
    }
  });

  it('refuses the hostile archives as logvm does (MALFORMED_BUNDLE, exit 20), and names a changed entry at its seq', () => {
    const m = realMembers();
    const cases: Array<[string, Buffer]> = [
      ['duplicate', tar([m[0]!, m[0]!, ...m.slice(1)])],
      ['symlink', tar([m[0]!, m[1]!, { name: 'signatures/02.asc', type: '2', link: '/etc/passwd' }, m[2]!, m[3]!])],
      ['hard link', tar([m[0]!, m[1]!, { name: 'signatures/02.asc', type: '1', link: 'signatures/01.asc' }, m[2]!, m[3]!])],
      ['absolute', tar([{ ...m[0]!, name: '/manifest.json' }, ...m.slice(1)])],
      ['dot-dot', tar([m[0]!, { ...m[1]!, name: 'signatures/../x.asc' }, m[2]!, m[3]!])],
      ['outside the layout', tar([m[0]!, { name: 'run.sh', data: Buffer.from('x') }, ...m.slice(1)])],
      ['oversize', tar([{ name: 'manifest.json', size: 5 << 20 }])],
      ['pax', tar([m[0]!, { name: 'PaxHeader', type: 'x', data: Buffer.from('30 path=signatures/01.asc\n') }, ...m.slice(1)])],
      ['after the entries', tar([...m, { name: 'signatures/99.asc', data: m[1]!.data }])],
      ['out of order', tar([m[0]!, m[2]!, m[1]!, m[3]!])],
      ['trailing data', Buffer.concat([tar(m), Buffer.from('hidden')])],
    ];
    for (const [label, bytes] of cases) {
      const r = py(writeArchive(bytes));
      expect(r.json.code, `${label}: ${JSON.stringify(r.json)}`).toBe('MALFORMED_BUNDLE');
      expect(r.code).toBe(EXIT.MALFORMED_BUNDLE);
    }
    const bin = Buffer.from(m[3]!.data!);
    bin[bin.indexOf(Buffer.from('linking'))] = 0x4c;
    const t = py(writeArchive(gzipSync(tar([m[0]!, m[1]!, m[2]!, { name: 'entries.bin', data: bin }])), '.tar.gz'));
    expect(t.json).toMatchObject({ ok: false, code: 'CHAIN_HASH_MISMATCH', seq: 4 });
  });
});
