/**
 * Framed mode against a hostile sender: raw frame bytes written straight into
 * rpc/qubes.AppendLog (argument `_framed.NAME`), one attack per case. Every
 * violation of the frame protocol must end as a recorded event, not a crash:
 * a NOTICE entry in the chain, the session closed with reason `refused` (or
 * `error` when the stream broke off), a FRAME_INVALID error line for the
 * caller, a non-zero exit, no stack trace, a chain that still verifies, and
 * everything sent before the bad frame kept.
 *
 * And the mode is chosen by the argument, never by the data: frames sent
 * under a bare name are just bytes of a raw log.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FRAME_PROTOCOL, FrameType, claimBytes, encodeFrame } from '../../packages/shared/src/index.js';
import { callService, tempDir, type RunResult } from '../helpers.js';
import {
  EXIT,
  KIND,
  STACK_TRACE,
  VM,
  jsonLines,
  jsonOf,
  makeSigner,
  marked,
  payloadOf,
  sealAndExport,
  showRaw,
  showText,
  storedEntries,
  verifyJson,
  type Bundle,
  type Signer,
  type VerifyJson,
} from './util.js';

const tmp = tempDir('appendlog-sender-hostile-');
const db = join(tmp.dir, 'logs.db');
let signer: Signer;

beforeAll(async () => {
  signer = await makeSigner(tmp.dir);
});

afterAll(async () => {
  await signer?.cleanup();
  tmp.cleanup();
});

const HELLO = encodeFrame(
  FrameType.HELLO,
  claimBytes({ claim: 'hello', protocol: FRAME_PROTOCOL, sender: 'hostile/1', hostname: 'attacker', command: ['make'] }),
);
const BEFORE_TEXT = 'stored before the bad frame\n';
const BEFORE = encodeFrame(FrameType.STDOUT, Buffer.from(BEFORE_TEXT));
const END = encodeFrame(FrameType.END);
const claim = (json: string): Buffer => encodeFrame(FrameType.CLAIM, Buffer.from(json, 'utf8'));
/** A frame header alone: type and a declared length, whatever follows. */
const header = (type: number, length: number): Buffer => {
  const b = Buffer.alloc(5);
  b[0] = type;
  b.writeUInt32BE(length, 1);
  return b;
};

interface Case {
  title: string;
  name: string;
  input: Buffer;
  reason: 'refused' | 'error';
  notice: 'frame-refused' | 'stream-broken';
  /** What `show --raw` must start with (the lines sent before the bad frame). */
  stored: string;
  /** `show --raw` is exactly `stored` (nothing of the bad frame is kept). */
  exact: boolean;
}

const refused = (title: string, name: string, input: Buffer[], stored = BEFORE_TEXT): Case => ({
  title,
  name,
  input: Buffer.concat(input),
  reason: 'refused',
  notice: 'frame-refused',
  stored,
  exact: true,
});
const broken = (title: string, name: string, input: Buffer[]): Case => ({
  title,
  name,
  input: Buffer.concat(input),
  reason: 'error',
  notice: 'stream-broken',
  stored: BEFORE_TEXT,
  exact: false,
});

const CASES: Case[] = [
  refused('a CLAIM frame declaring 2^32-1 bytes', 'claim-len-max', [HELLO, BEFORE, header(FrameType.CLAIM, 0xffffffff), Buffer.from('{"claim":')]),
  refused('a STDOUT frame longer than 1 MiB', 'data-too-long', [HELLO, BEFORE, header(FrameType.STDOUT, (1 << 20) + 1), Buffer.alloc(4096, 0x41)]),
  refused('an unknown frame type (0x7f)', 'unknown-type', [HELLO, BEFORE, encodeFrame(0x7f, Buffer.from('what is this'))]),
  refused('a first frame that is not HELLO', 'no-hello-first', [BEFORE, HELLO], ''),
  refused('a second HELLO', 'second-hello', [HELLO, BEFORE, HELLO]),
  refused('a claim that is not canonical JSON (keys out of order)', 'claim-not-canonical', [HELLO, BEFORE, claim('{"code":0,"claim":"exit","signal":null}')]),
  refused('a claim with whitespace (not canonical)', 'claim-whitespace', [HELLO, BEFORE, claim('{"claim": "exit", "code": 0, "signal": null}')]),
  refused('an unknown claim type', 'claim-unknown-type', [HELLO, BEFORE, claim('{"claim":"deploy","target":"prod"}')]),
  refused('an artifact claim with a malformed sha256', 'claim-bad-sha256', [HELLO, BEFORE, claim(`{"claim":"artifact","path":"hello","sha256":"${'AB'.repeat(32)}","size":1}`)]),
  refused('a claim that is not UTF-8', 'claim-not-utf8', [HELLO, BEFORE, encodeFrame(FrameType.CLAIM, Buffer.from([0xff, 0xfe, 0x7b, 0x7d]))]),
  refused('a claim after the END frame', 'claim-after-end', [HELLO, BEFORE, END, claim('{"claim":"exit","code":0,"signal":null}')]),
  refused('an END frame with a payload', 'end-with-payload', [HELLO, BEFORE, encodeFrame(FrameType.END, Buffer.from('x'))]),
  broken('a stream that ends in the middle of a frame (disconnect)', 'mid-frame', [HELLO, BEFORE, header(FrameType.STDOUT, 100), Buffer.from('partial')]),
  broken('a stream that ends inside a frame header', 'mid-header', [HELLO, BEFORE, header(FrameType.STDOUT, 100).subarray(0, 3)]),
  broken('a stream that ends without an END frame', 'no-end', [HELLO, BEFORE]),
];

describe.each(CASES)('when a framed session sends $title', (c) => {
  const REF = `${VM}/${c.name}`;
  let r: RunResult;
  let show: string;
  let raw: Buffer;
  let verified: { result: VerifyJson; code: number | null; stderr: string };
  let bundle: Bundle | undefined;

  beforeAll(async () => {
    r = await callService(VM, `_framed.${c.name}`, db, { input: c.input });
    [show, raw, verified] = await Promise.all([showText(db, REF), showRaw(db, REF), verifyJson(['--db', db, '--store', REF])]);
    // A log without a single line cannot be sealed (LOG_EMPTY).
    if (c.stored !== '') bundle = await sealAndExport(db, REF, signer, join(tmp.dir, `bundle-${c.name}`));
  });

  it('the service exits non-zero with FRAME_INVALID (17), without crashing', () => {
    expect(r.code, r.stderr).toBe(EXIT.FRAME_INVALID);
    expect(r.signal).toBeNull();
    expect(r.stderr).toContain('FRAME_INVALID');
    expect(r.stderr).not.toMatch(STACK_TRACE);
    expect(r.stderr).not.toContain('INTERNAL');
  });

  it('tells the caller with a JSON error line coded FRAME_INVALID', () => {
    const lines = jsonLines(r.stdout);
    expect(lines.at(-1)).toMatchObject({ type: 'error', code: 'FRAME_INVALID' });
  });

  it(`records a ${c.notice} NOTICE event, shown with the mark '!'`, () => {
    const notices = storedEntries(db, REF).filter((e) => e.kind === KIND.NOTICE);
    expect(notices).toHaveLength(1);
    expect(jsonOf(notices[0]!)).toMatchObject({ notice: c.notice, detail: expect.any(String) as unknown });
    const shown = marked(show, '!');
    expect(shown).toHaveLength(1);
    expect(shown[0]).toContain(c.notice);
  });

  it(`closes the session with reason ${c.reason}`, () => {
    const closes = storedEntries(db, REF).filter((e) => e.kind === KIND.SESSION_CLOSE);
    expect(closes).toHaveLength(1);
    expect(jsonOf(closes[0]!)).toMatchObject({ reason: c.reason });
    expect(marked(show, '*').some((l) => l.includes(`closed`) && l.includes(`: ${c.reason},`))).toBe(true);
  });

  it('the chain still verifies, with that close reason', () => {
    expect(verified.code, verified.stderr).toBe(EXIT.OK);
    expect(verified.result).toMatchObject({ ok: true, sessions: 1, closes: { [c.reason]: 1 } });
  });

  it(c.exact ? 'keeps exactly the lines sent before the bad frame' : 'keeps the lines sent before the stream broke off', () => {
    if (c.exact) expect(raw.toString('utf8')).toBe(c.stored);
    else expect(raw.toString('utf8').startsWith(c.stored)).toBe(true);
  });

  // A log without lines cannot be sealed (LOG_EMPTY), so only cases that stored lines are exported.
  if (c.stored !== '') {
    it('the exported bundle carries the notice and the close, and verifies', async () => {
      const recs = bundle!.records;
      expect(recs.filter((x) => x.kind === 'notice').map((x) => jsonOf(x).notice)).toEqual([c.notice]);
      expect(recs.filter((x) => x.kind === 'session-close').map((x) => jsonOf(x).reason)).toEqual([c.reason]);
      expect(payloadOf(recs.find((x) => x.kind === 'stdout')!).toString('utf8')).toBe(BEFORE_TEXT.slice(0, -1));
      const v = await verifyJson([bundle!.dir, '--key', signer.pub]);
      expect(v.code, v.stderr).toBe(EXIT.OK);
    });
  }
});

describe('when the argument is a bare name (raw mode), frames are just bytes', () => {
  it('a valid framed session sent under a bare name is stored byte for byte, nothing interpreted', async () => {
    const input = Buffer.concat([
      HELLO,
      claim(`{"claim":"artifact","path":"hello","sha256":"${'ab'.repeat(32)}","size":1}`),
      BEFORE,
      encodeFrame(FrameType.STDERR, Buffer.from('warning\n')),
      claim('{"claim":"exit","code":0,"signal":null}'),
      END,
    ]);
    const ref = `${VM}/framed-bytes-as-raw`;
    const r = await callService(VM, 'framed-bytes-as-raw', db, { input });
    expect(r.code, r.stderr).toBe(EXIT.OK);
    expect(jsonLines(r.stdout)).toEqual([expect.objectContaining({ type: 'receipt', final: true })]);
    expect((await showRaw(db, ref)).equals(input)).toBe(true);
    const kinds = new Set(storedEntries(db, ref).map((e) => e.kind));
    expect([...kinds].sort()).toEqual([KIND.LINE, KIND.SESSION_OPEN, KIND.SESSION_CLOSE].sort());
    const show = await showText(db, ref);
    expect(marked(show, 'C')).toEqual([]);
    expect(marked(show, 'E')).toEqual([]);
    expect(marked(show, '*')[0]).toContain('mode raw');
  });

  it('a raw log whose bytes look like hostile frames is stored byte for byte, with no notice', async () => {
    const input = Buffer.concat([...CASES.map((c) => c.input), randomBytes(4096), header(FrameType.CLAIM, 0xffffffff)]);
    const ref = `${VM}/frame-like-raw`;
    const r = await callService(VM, 'frame-like-raw', db, { input });
    expect(r.code, r.stderr).toBe(EXIT.OK);
    expect(r.stderr).toBe('');
    expect((await showRaw(db, ref)).equals(input)).toBe(true);
    expect(storedEntries(db, ref).filter((e) => e.kind === KIND.NOTICE || e.kind === KIND.CLAIM)).toEqual([]);
    const { result, code } = await verifyJson(['--db', db, '--store', ref]);
    expect(code).toBe(EXIT.OK);
    expect(result).toMatchObject({ ok: true, closes: { eof: 1 } });
  });
});
