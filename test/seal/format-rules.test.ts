/**
 * docs/FORMAT.md, point by point, where an independent verifier used to have
 * to guess (issue 15): one case per code-and-seq rule of 6.10, and the bundle
 * rules of 6.6, 6.9 and 9.1 that decide which failure is reported. Every case
 * runs the built `logvm verify-chain` on a real bundle made by `logvm seal`
 * (gpg signer) and `logvm export`, in both the human and the --json form.
 *
 * The log, build-vm/rel-1 (seal #1), has 15 entries:
 *   1 session-open, 2..6 lines, 7 session-close,
 *   8 session-open, 9..13 lines, 14 session-close, 15 seal.
 */
import { mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { manifestBytes, type SealManifest } from '../../packages/shared/src/index.js';
import { callService, tempDir } from '../helpers.js';
import {
  EXIT,
  copyBundle,
  expectFailure,
  expectOk,
  gpgHome,
  logvmOk,
  readLines,
  readRecords,
  rehashFrom,
  verifyChain,
  writeLines,
  writeRecords,
  type Code,
  type GpgHome,
  type Rec,
  type VerifyOutcome,
} from './util.js';

const tmp = tempDir('appendlog-format-rules-');
const db = join(tmp.dir, 'a.db');
const bundle1 = join(tmp.dir, 'bundle-1');
const alicePub = join(tmp.dir, 'alice.asc');
const REF = 'build-vm/rel-1';
const N = 15;

let gpg: GpgHome;
let alice: string;
let manifest1: SealManifest;
let n = 0;

const attack = (): string => copyBundle(bundle1, join(tmp.dir, `case-${++n}`));
const verify = (dir: string, ...more: string[]): Promise<VerifyOutcome> => verifyChain([dir, '--key', alicePub, ...more], { json: true });

/** The code in both forms, and exactly this `seq` and `line` in --json (null: none). */
function expectCodeSeq(o: VerifyOutcome, code: Code, seq: number | null, line: number | null = null): void {
  expectFailure(o, code, seq ?? undefined, { seqInMessage: seq !== null });
  expect(o.result!.seq).toBe(seq);
  expect(o.result!.line).toBe(line);
}

const readManifest = (dir: string): SealManifest => JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as SealManifest;

/** A manifest edited and signed again by the trusted key: what a subverted signer would produce. */
async function resign(dir: string, m: SealManifest): Promise<void> {
  writeFileSync(join(dir, 'manifest.json'), manifestBytes(m));
  await gpg.signDetached(alice, join(dir, 'manifest.json'), join(dir, 'signatures/01.asc'));
}

function editRecord(dir: string, seq: number, f: (r: Rec) => Rec, rehash = true): Rec[] {
  const recs = readRecords(dir);
  recs[seq - 1] = f(recs[seq - 1]!);
  const out = rehash ? rehashFrom(recs, seq - 1) : recs;
  writeRecords(dir, out);
  return out;
}

beforeAll(async () => {
  gpg = gpgHome();
  alice = await gpg.genKey('Alice Release <alice@example.org>', 'ed25519');
  await gpg.exportPublic(alice, alicePub);
  for (let s = 1; s <= 2; s++) {
    const input = Array.from({ length: 5 }, (_, i) => `session ${s} line ${i + 1}: cc -c file${i}.c\n`).join('');
    const r = await callService('build-vm', 'rel-1', db, { input });
    expect(r.code, r.stderr).toBe(0);
  }
  await logvmOk(['seal', REF, '--signer', 'gpg:alice@example.org'], { db, env: gpg.env });
  // Version 1 (entries.jsonl): the cases edit JSON lines (9.3).
  await logvmOk(['export', REF, '--out', bundle1, '--bundle-version', '1'], { db });
  manifest1 = readManifest(bundle1);
  expect(manifest1.entries).toBe(N);
});

afterAll(async () => {
  await gpg.cleanup();
  tmp.cleanup();
});

describe('6.6 step 1: what is verified is named explicitly (issue 15 point 2)', () => {
  it('a bundle path says OK bundle VM/NAME first, and --json names the bundle', async () => {
    const o = await verify(bundle1);
    expectOk(o);
    expect(o.human.stdout.toString()).toMatch(new RegExp(`^OK bundle ${REF}: chain intact and sealed\\n  bundle: +${bundle1}\\n`));
    expect(o.result).toMatchObject({ ok: true, source: 'bundle', bundle: bundle1 });
  });

  it('--bundle PATH is the same as the positional PATH', async () => {
    expectOk(await verifyChain(['--bundle', bundle1, '--key', alicePub], { json: true }));
  });

  it('--store VM/NAME says OK store VM/NAME first, and --json names the store file', async () => {
    const o = await verifyChain(['--store', REF, '--key', alicePub], { db, json: true });
    expectOk(o);
    expect(o.human.stdout.toString()).toMatch(new RegExp(`^OK store ${REF}: chain intact and sealed\\n  store: +${db}\\n`));
    expect(o.result).toMatchObject({ ok: true, source: 'store', store: db });
  });

  it('a positional VM/NAME that is no directory is MALFORMED_BUNDLE, even when the store holds that log', async () => {
    // The store (APPENDLOG_DB) holds build-vm/rel-1; a mistyped bundle path must not verify it.
    const o = await verifyChain([REF, '--key', alicePub], { db, json: true });
    expectCodeSeq(o, 'MALFORMED_BUNDLE', null);
    expect(o.human.stderr).toContain('--store VM/NAME');
  });

  it('a positional path that is a regular file is MALFORMED_BUNDLE', async () => {
    expectCodeSeq(await verify(join(bundle1, 'manifest.json')), 'MALFORMED_BUNDLE', null);
  });

  it.each([
    ['a bundle and --store', [bundle1, '--store', REF]],
    ['--bundle and a positional bundle', [bundle1, '--bundle', bundle1]],
    ['nothing to verify', []],
    ['--db with a bundle', [bundle1, '--db', db]],
    ['--previous with --store', ['--store', REF, '--previous', bundle1]],
  ])('%s is USAGE (exit 2)', async (_what, args) => {
    expectCodeSeq(await verifyChain([...args, '--key', alicePub], { db, json: true }), 'USAGE', null);
  });
});

describe('6.6 step 4: records are judged strictly in order (point 1)', () => {
  it('a changed entry (seq 3) before a line that is not UTF-8 (line 6) is reported: CHAIN_HASH_MISMATCH at seq 3', async () => {
    const dir = attack();
    const lines = readLines(dir);
    lines[2] = lines[2]!.replace('line 2', 'line X');
    const bytes = Buffer.from(`${lines.join('\n')}\n`, 'utf8');
    const at = bytes.indexOf(Buffer.from('session 1 line 5'));
    bytes[at] = 0xff; // invalid UTF-8 inside line 6
    writeFileSync(join(dir, 'entries.jsonl'), bytes);
    expectCodeSeq(await verify(dir), 'CHAIN_HASH_MISMATCH', 3);
  });

  it('a changed entry (seq 3) before a line longer than any record (line 6) is reported: CHAIN_HASH_MISMATCH at seq 3', async () => {
    const dir = attack();
    const lines = readLines(dir);
    lines[2] = lines[2]!.replace('line 2', 'line X');
    lines[5] = 'x'.repeat(22_373_719);
    writeLines(dir, lines);
    expectCodeSeq(await verify(dir), 'CHAIN_HASH_MISMATCH', 3);
  }, 60_000);

  it('without the changed entry, the line that is not UTF-8 is MALFORMED_BUNDLE naming line 6 (seq null)', async () => {
    const dir = attack();
    const bytes = readFileSync(join(dir, 'entries.jsonl'));
    bytes[bytes.indexOf(Buffer.from('session 1 line 5'))] = 0xff;
    writeFileSync(join(dir, 'entries.jsonl'), bytes);
    const o = await verify(dir);
    expectCodeSeq(o, 'MALFORMED_BUNDLE', null, 6);
    expect(o.human.stderr).toContain('entries.jsonl line 6');
  });
});

describe('6.5: a --previous that cannot be read is SEAL_CHAIN_BROKEN (point 3)', () => {
  it('a missing PREV', async () => {
    expectCodeSeq(await verify(bundle1, '--previous', join(tmp.dir, 'no-such-bundle')), 'SEAL_CHAIN_BROKEN', null);
  });

  it('a PREV that is a regular file', async () => {
    expectCodeSeq(await verify(bundle1, '--previous', join(bundle1, 'manifest.json')), 'SEAL_CHAIN_BROKEN', null);
  });

  it('a PREV whose manifest.json does not parse', async () => {
    const prev = attack();
    writeFileSync(join(prev, 'manifest.json'), '{"format":');
    expectCodeSeq(await verify(bundle1, '--previous', prev), 'SEAL_CHAIN_BROKEN', null);
  });

  it('a PREV without manifest.json', async () => {
    const prev = attack();
    rmSync(join(prev, 'manifest.json'));
    expectCodeSeq(await verify(bundle1, '--previous', prev), 'SEAL_CHAIN_BROKEN', null);
  });
});

describe('6.9 / G3: signature files (points 4, 11)', () => {
  const MARKER = Buffer.from([0xa8, 0x03, 0x50, 0x47, 0x50]);
  const armor = async (bytes: Uint8Array): Promise<string> => { const o = await import('openpgp'); return o.armor(o.enums.armor.signature, bytes); };
  const packetOf = async (dir: string): Promise<Uint8Array> => {
    const openpgp = await import('openpgp');
    return (await openpgp.readSignature({ armoredSignature: readFileSync(join(dir, 'signatures/01.asc'), 'utf8') })).packets.write();
  };

  it('an armor with no packet at all is SIGNATURE_MISSING (exit 30)', async () => {
    const dir = attack();
    writeFileSync(join(dir, 'signatures/01.asc'), await armor(new Uint8Array()));
    expectCodeSeq(await verify(dir), 'SIGNATURE_MISSING', null);
  });

  it('an armor holding only a Marker packet is SIGNATURE_MISSING (exit 30)', async () => {
    const dir = attack();
    writeFileSync(join(dir, 'signatures/01.asc'), await armor(MARKER));
    expectCodeSeq(await verify(dir), 'SIGNATURE_MISSING', null);
  });

  it('a Marker packet before the signature is skipped: OK', async () => {
    const dir = attack();
    writeFileSync(join(dir, 'signatures/01.asc'), await armor(Buffer.concat([MARKER, await packetOf(dir)])));
    expectOk(await verify(dir));
  });

  it('a wrong CRC line is not checked: OK', async () => {
    const dir = attack();
    const p = join(dir, 'signatures/01.asc');
    const text = readFileSync(p, 'utf8');
    expect(text).toMatch(/^=[A-Za-z0-9+/]{4}$/m); // gpg writes one
    writeFileSync(p, text.replace(/^=[A-Za-z0-9+/]{4}$/m, '=AAAA'));
    expectOk(await verify(dir));
  });

  it('a stray character inside the base64 body is MALFORMED_BUNDLE, not decoded around (openpgp.js alone would skip it)', async () => {
    const dir = attack();
    const p = join(dir, 'signatures/01.asc');
    const lines = readFileSync(p, 'utf8').split('\n');
    const body = lines.findIndex((l) => l === '') + 1;
    lines[body] = `${lines[body]!.slice(0, 8)}*${lines[body]!.slice(8)}`;
    writeFileSync(p, lines.join('\n'));
    expectCodeSeq(await verify(dir), 'MALFORMED_BUNDLE', null);
  });

  it('armor headers and CRLF line ends are accepted: OK', async () => {
    const dir = attack();
    const p = join(dir, 'signatures/01.asc');
    writeFileSync(p, readFileSync(p, 'utf8').replace('-----\n', '-----\nComment: signed in the vault\n').replace(/\n/g, '\r\n'));
    expectOk(await verify(dir));
  });

  it('two armor blocks in one file are both read (as `cat a.asc b.asc` makes): the copy counts once, OK', async () => {
    const dir = attack();
    const p = join(dir, 'signatures/01.asc');
    writeFileSync(p, readFileSync(p, 'utf8').repeat(2));
    const o = await verify(dir);
    expectOk(o);
    expect(o.result).toMatchObject({ signers: 1, signatures: [{ fingerprint: alice }] });
  });

  it('a second armor block holding a damaged signature by the trusted key is read too: SIGNATURE_INVALID', async () => {
    const dir = attack();
    const p = join(dir, 'signatures/01.asc');
    const other = join(tmp.dir, `other-${++n}.json`);
    writeFileSync(other, manifestBytes({ ...manifest1, bytes: manifest1.bytes + 1 }));
    const sig2 = join(tmp.dir, `other-${n}.asc`);
    await gpg.signDetached(alice, other, sig2);
    writeFileSync(p, readFileSync(p, 'utf8') + readFileSync(sig2, 'utf8'));
    expectCodeSeq(await verify(dir), 'SIGNATURE_INVALID', null);
  });

  it('text before and between armor blocks is ignored: OK', async () => {
    const dir = attack();
    const p = join(dir, 'signatures/01.asc');
    writeFileSync(p, `Signed by Alice:\n${readFileSync(p, 'utf8')}-- end --\n`);
    expectOk(await verify(dir));
  });

  it('a text-mode (0x01) signature by the trusted key is refused (SIG_TYPE) and does not count: THRESHOLD_NOT_MET', async () => {
    const dir = attack();
    await gpg.gpg(['--yes', '-u', alice, '--textmode', '-a', '-b', '-o', join(dir, 'signatures/01.asc'), join(dir, 'manifest.json')]);
    const openpgp = await import('openpgp');
    const sig = await openpgp.readSignature({ armoredSignature: readFileSync(join(dir, 'signatures/01.asc'), 'utf8') });
    expect(sig.packets[0]!.signatureType).toBe(0x01);
    const o = await verify(dir);
    expectCodeSeq(o, 'THRESHOLD_NOT_MET', null);
    expect(o.human.stderr).toContain('SIG_TYPE');
  });
});

describe('6.8: anyone can deny, nobody can forge (point 14)', () => {
  it('the unhashed issuer subpacket changed to an unknown key ID: SIGNATURE_UNTRUSTED (exit 32), the signature is ignored', async () => {
    const dir = attack();
    const pkt = Buffer.from(await (async () => {
      const openpgp = await import('openpgp');
      return (await openpgp.readSignature({ armoredSignature: readFileSync(join(dir, 'signatures/01.asc'), 'utf8') })).packets.write();
    })());
    // Packet header (new format, one length octet for a small packet), then v4 body:
    // version, type, pk algo, hash algo, hashed length (2), hashed area, unhashed length (2), unhashed area.
    const bodyAt = pkt[1]! < 192 ? 2 : 3;
    expect(pkt[bodyAt]).toBe(4);
    const hashedLen = pkt.readUInt16BE(bodyAt + 4);
    const unhashedAt = bodyAt + 6 + hashedLen + 2;
    const unhashedLen = pkt.readUInt16BE(bodyAt + 6 + hashedLen);
    let edited = false;
    for (let p = unhashedAt; p < unhashedAt + unhashedLen; ) {
      const len = pkt[p]!; // gpg's subpackets here are short (one length octet)
      if ((pkt[p + 1]! & 0x7f) === 16) {
        pkt.fill(0x42, p + 2, p + 10); // issuer key ID 4242424242424242
        edited = true;
      }
      p += 1 + len;
    }
    expect(edited).toBe(true);
    const openpgp = await import('openpgp');
    writeFileSync(join(dir, 'signatures/01.asc'), openpgp.armor(openpgp.enums.armor.signature, pkt));
    const o = await verify(dir);
    expectCodeSeq(o, 'SIGNATURE_UNTRUSTED', null);
  });

  it('a trusted key\'s valid signature over another manifest added beside the real one: SIGNATURE_INVALID (exit 31)', async () => {
    const dir = attack();
    const other = join(tmp.dir, 'other-manifest.json');
    writeFileSync(other, manifestBytes({ ...manifest1, lines: manifest1.lines + 1 }));
    await gpg.signDetached(alice, other, join(dir, 'signatures/02.asc'));
    expectCodeSeq(await verify(dir), 'SIGNATURE_INVALID', null);
  });
});

describe('9.1: bundle files are judged before anything is followed (points 5, 10)', () => {
  it('signatures a regular file: MALFORMED_BUNDLE (exit 20), not INTERNAL', async () => {
    const dir = attack();
    rmSync(join(dir, 'signatures'), { recursive: true });
    writeFileSync(join(dir, 'signatures'), readFileSync(join(bundle1, 'signatures/01.asc')));
    expectCodeSeq(await verify(dir), 'MALFORMED_BUNDLE', null);
  });

  it('signatures a symbolic link to a directory of valid signatures: MALFORMED_BUNDLE', async () => {
    const dir = attack();
    rmSync(join(dir, 'signatures'), { recursive: true });
    symlinkSync(join(bundle1, 'signatures'), join(dir, 'signatures'));
    expectCodeSeq(await verify(dir), 'MALFORMED_BUNDLE', null);
  });

  it('manifest.json a symbolic link to the valid manifest: MALFORMED_BUNDLE', async () => {
    const dir = attack();
    rmSync(join(dir, 'manifest.json'));
    symlinkSync(join(bundle1, 'manifest.json'), join(dir, 'manifest.json'));
    expectCodeSeq(await verify(dir), 'MALFORMED_BUNDLE', null);
  });

  it('entries.jsonl a symbolic link to the valid entries: MALFORMED_BUNDLE', async () => {
    const dir = attack();
    rmSync(join(dir, 'entries.jsonl'));
    symlinkSync(join(bundle1, 'entries.jsonl'), join(dir, 'entries.jsonl'));
    expectCodeSeq(await verify(dir), 'MALFORMED_BUNDLE', null);
  });

  it('signatures/01.asc a symbolic link to the valid signature: MALFORMED_BUNDLE', async () => {
    const dir = attack();
    rmSync(join(dir, 'signatures/01.asc'));
    symlinkSync(join(bundle1, 'signatures/01.asc'), join(dir, 'signatures/01.asc'));
    expectCodeSeq(await verify(dir), 'MALFORMED_BUNDLE', null);
  });

  it('a file in signatures/ not ending in .asc is ignored, even a symbolic link: OK', async () => {
    const dir = attack();
    symlinkSync('/dev/zero', join(dir, 'signatures/README'));
    mkdirSync(join(dir, 'signatures/old'));
    expectOk(await verify(dir));
  });

  it('the bundle path itself may be a symbolic link to a bundle (the auditor named it): OK', async () => {
    const link = join(tmp.dir, `link-${++n}`);
    symlinkSync(bundle1, link);
    expectOk(await verify(link));
  });

  it('an empty entries.jsonl is zero records: CHAIN_TRUNCATED at seq 1', async () => {
    const dir = attack();
    writeFileSync(join(dir, 'entries.jsonl'), '');
    expectCodeSeq(await verify(dir), 'CHAIN_TRUNCATED', 1);
  });
});

describe('6.10: the seq each code names (point 6)', () => {
  it('CHAIN_HASH_MISMATCH names the changed entry (seq 10)', async () => {
    const dir = attack();
    editRecord(dir, 10, (r) => ({ ...r, text: r.text!.replace('cc', 'sh') }), false);
    expectCodeSeq(await verify(dir), 'CHAIN_HASH_MISMATCH', 10);
  });

  it('SEQ_OUT_OF_ORDER names the expected position (seq 4 removed: seq 4)', async () => {
    const dir = attack();
    const lines = readLines(dir);
    lines.splice(3, 1);
    writeLines(dir, lines);
    expectCodeSeq(await verify(dir), 'SEQ_OUT_OF_ORDER', 4);
  });

  it('ENTRY_AFTER_SEAL names the position after the seal (16), not the seq the record states (99)', async () => {
    const dir = attack();
    const recs = readRecords(dir);
    const extra: Rec = { seq: 99, time: manifest1.sealed + 1, session: 2, kind: 'line', flags: 0, text: 'after the seal', hash: '' };
    writeRecords(dir, rehashFrom([...recs, extra], N));
    expectCodeSeq(await verify(dir), 'ENTRY_AFTER_SEAL', 16);
  });

  it('BAD_ENTRY names the entry (flags 3 on line seq 5, hashes recomputed)', async () => {
    const dir = attack();
    editRecord(dir, 5, (r) => ({ ...r, flags: 3 }));
    expectCodeSeq(await verify(dir), 'BAD_ENTRY', 5);
  });

  it('BAD_ENTRY for a session-close with reason `sealed`, not in the closed set (3.5, point 7): seq 7', async () => {
    const dir = attack();
    editRecord(dir, 7, (r) => ({ ...r, text: r.text!.replace('"reason":"eof"', '"reason":"sealed"') }));
    expectCodeSeq(await verify(dir), 'BAD_ENTRY', 7);
  });

  it('BAD_ENTRY for a session-close whose `reason` member is repeated (5.1, point 12): seq 7', async () => {
    const dir = attack();
    editRecord(dir, 7, (r) => ({ ...r, text: r.text!.replace('"reason":"eof"', '"reason":"eof","reason":"eof"') }));
    expectCodeSeq(await verify(dir), 'BAD_ENTRY', 7);
  });

  it('CHAIN_TRUNCATED names the first missing seq (last 3 dropped: 13)', async () => {
    const dir = attack();
    writeLines(dir, readLines(dir).slice(0, -3));
    expectCodeSeq(await verify(dir), 'CHAIN_TRUNCATED', 13);
  });

  it('HEAD_MISMATCH (F2, chain longer than signed) names the first extra seq: 15 for a manifest of 14 entries', async () => {
    const dir = attack();
    const recs = readRecords(dir);
    await resign(dir, { ...manifest1, entries: 14, head: recs[13]!.hash });
    expectCodeSeq(await verify(dir), 'HEAD_MISMATCH', 15);
  });

  it('HEAD_MISMATCH (F3, other head) names the last seq: 15', async () => {
    const dir = attack();
    editRecord(dir, 10, (r) => ({ ...r, text: r.text!.replace('cc', 'sh') }));
    expectFailure(await verify(dir), 'HEAD_MISMATCH', 15, { seqInMessage: false });
  });

  it('MANIFEST_MISMATCH M1 (genesis) names no seq', async () => {
    const dir = attack();
    await resign(dir, { ...manifest1, genesis: '0'.repeat(64) });
    expectCodeSeq(await verify(dir), 'MANIFEST_MISMATCH', null);
  });

  it('MANIFEST_MISMATCH M3 (the last entry is no seal) names the last seq: 14', async () => {
    const dir = attack();
    const recs = readRecords(dir);
    writeRecords(dir, recs.slice(0, 14));
    await resign(dir, { ...manifest1, entries: 14, head: recs[13]!.hash });
    expectCodeSeq(await verify(dir), 'MANIFEST_MISMATCH', 14);
  });

  it('MANIFEST_MISMATCH M4 (seal payload differs) names the seal: 15', async () => {
    const dir = attack();
    await resign(dir, { ...manifest1, sealed: manifest1.sealed + 1 });
    expectCodeSeq(await verify(dir), 'MANIFEST_MISMATCH', 15);
  });

  it('MANIFEST_MISMATCH M5 (seal time differs, payload equal) names the seal: 15', async () => {
    const dir = attack();
    const recs = editRecord(dir, 15, (r) => ({ ...r, time: r.time + 1 }));
    await resign(dir, { ...manifest1, head: recs[14]!.hash });
    expectCodeSeq(await verify(dir), 'MANIFEST_MISMATCH', 15);
  });

  it.each([
    ['M6 (lines)', (m: SealManifest) => ({ ...m, lines: m.lines + 1 })],
    ['M7 (sessions)', (m: SealManifest) => ({ ...m, sessions: m.sessions + 1 })],
    ['M8 (closes)', (m: SealManifest) => ({ ...m, closes: { eof: 1, lost: 1 } })],
    ['M9 (claims)', (m: SealManifest) => ({ ...m, claims: { inputs: [], artifacts: [] } })],
  ])('MANIFEST_MISMATCH %s names no seq', async (_rule, edit) => {
    const dir = attack();
    await resign(dir, edit(manifest1));
    expectCodeSeq(await verify(dir), 'MANIFEST_MISMATCH', null);
  });

  describe('RECEIPT_MISMATCH', () => {
    const receipt = (dir: string, r: Record<string, unknown>): string => {
      const p = join(dir, 'receipts.jsonl');
      writeFileSync(p, `${JSON.stringify({ type: 'receipt', log: REF, session: 1, lines: 5, bytes: 1, final: true, ...r })}\n`);
      return p;
    };

    it('for a receipt of another log names no seq', async () => {
      const p = receipt(attack(), { log: 'build-vm/rel-2', entries: 7, head: readRecords(bundle1)[6]!.hash });
      expectCodeSeq(await verify(bundle1, '--receipt', p), 'RECEIPT_MISMATCH', null);
    });

    it('for an acknowledged head that differs names K: 7', async () => {
      const p = receipt(attack(), { entries: 7, head: 'ab'.repeat(32) });
      expectCodeSeq(await verify(bundle1, '--receipt', p), 'RECEIPT_MISMATCH', 7);
    });

    it('for acknowledged entries beyond the chain names N + 1: 16', async () => {
      const p = receipt(attack(), { entries: 99, head: 'ab'.repeat(32) });
      expectCodeSeq(await verify(bundle1, '--receipt', p), 'RECEIPT_MISMATCH', 16);
    });

    it('a receipt line with a repeated member is USAGE (5.1)', async () => {
      const dir = attack();
      const p = join(dir, 'receipts.jsonl');
      writeFileSync(p, `{"type":"receipt","log":"${REF}","log":"${REF}","entries":7,"head":"${readRecords(bundle1)[6]!.hash}"}\n`);
      expectCodeSeq(await verify(bundle1, '--receipt', p), 'USAGE', null);
    });
  });

  it('MALFORMED_BUNDLE in entries.jsonl names the line (5) in --json `line`, and no seq', async () => {
    const dir = attack();
    const lines = readLines(dir);
    lines[4] = lines[4]!.slice(0, 40);
    writeLines(dir, lines);
    const o = await verify(dir);
    expectCodeSeq(o, 'MALFORMED_BUNDLE', null, 5);
    expect(o.human.stderr).toContain('entries.jsonl line 5:');
  });

  it('MALFORMED_BUNDLE outside entries.jsonl (manifest.json missing) names neither', async () => {
    const dir = attack();
    rmSync(join(dir, 'manifest.json'));
    expectCodeSeq(await verify(dir), 'MALFORMED_BUNDLE', null);
  });

  it('MANIFEST_INVALID for a manifest with a repeated member (5.1, 8.5) names no seq', async () => {
    const dir = attack();
    const text = readFileSync(join(dir, 'manifest.json'), 'utf8');
    writeFileSync(join(dir, 'manifest.json'), text.replace('"bytes":', '"bytes":0,"bytes":'));
    expectCodeSeq(await verify(dir), 'MANIFEST_INVALID', null);
  });

  it('the failure line is `logvm verify-chain: FAIL: CODE: message` on stderr, nothing on stdout (README, point 15)', async () => {
    const dir = attack();
    editRecord(dir, 10, (r) => ({ ...r, text: r.text!.replace('cc', 'sh') }), false);
    const o = await verify(dir);
    expect(o.human.stdout.length).toBe(0);
    expect(o.human.stderr).toMatch(/^logvm verify-chain: FAIL: CHAIN_HASH_MISMATCH: seq 10: /);
    expect(o.human.code).toBe(EXIT.CHAIN_HASH_MISMATCH);
  });
});
