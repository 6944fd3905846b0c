/**
 * A failing build is logged faithfully: logsend exits with the build's own
 * status (128 + N for a signal, as a shell does), and the exit claim in the
 * log and in the seal manifest says how the build ended.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers.js';
import {
  EXIT,
  KIND,
  STACK_TRACE,
  VM,
  fakeQrexecClient,
  jsonOf,
  logsend,
  makeSigner,
  sealAndExport,
  senderLines,
  storedEntries,
  verifyJson,
  type Bundle,
  type FakeQrexec,
  type Signer,
  type TimedResult,
} from './util.js';

const tmp = tempDir('appendlog-sender-fail-');
const db = join(tmp.dir, 'logs.db');
let signer: Signer;
let qrexec: FakeQrexec;

beforeAll(async () => {
  signer = await makeSigner(tmp.dir);
  qrexec = fakeQrexecClient(tmp.dir, db);
});

afterAll(async () => {
  await signer?.cleanup();
  tmp.cleanup();
});

function exitClaims(ref: string): Array<Record<string, unknown>> {
  return storedEntries(db, ref)
    .filter((e) => e.kind === KIND.CLAIM)
    .map(jsonOf)
    .filter((c) => c.claim === 'exit');
}

describe('when the build exits with status 3', () => {
  const NAME = 'exit-three';
  const REF = `${VM}/${NAME}`;
  let r: TimedResult;
  let bundle: Bundle;

  beforeAll(async () => {
    r = await logsend(['--qrexec-client', qrexec.path, '--name', NAME, '--', 'sh', '-c', 'echo compiling; echo "error: boom" >&2; exit 3'], { cwd: tmp.dir, home: tmp.dir });
    bundle = await sealAndExport(db, REF, signer, join(tmp.dir, `bundle-${NAME}`));
  });

  it('logsend exits 3, the build status', () => {
    expect(r.code, r.stderr).toBe(3);
    expect(r.stdout.toString('utf8')).toBe('compiling\n');
    expect(r.stderr.startsWith('error: boom\n')).toBe(true);
  });

  it('does not report a log failure: the log is complete', () => {
    expect(senderLines(r.stderr).join('\n')).not.toMatch(/LOG_FAILED|TRANSPORT_REFUSED/);
    expect(r.stderr).not.toMatch(STACK_TRACE);
  });

  it('the log holds the exit claim {code: 3, signal: null}', () => {
    expect(exitClaims(REF)).toEqual([{ claim: 'exit', code: 3, signal: null }]);
  });

  it("the seal manifest's claims carry exit code 3", () => {
    expect(bundle.manifest.claims).toMatchObject({ exit: { code: 3, signal: null }, command: ['sh', '-c', 'echo compiling; echo "error: boom" >&2; exit 3'] });
  });

  it('the bundle verifies: a failed build is a valid log of a failed build', async () => {
    const { result, code, stderr } = await verifyJson([bundle.dir, '--key', signer.pub]);
    expect(code, stderr).toBe(EXIT.OK);
    expect(result).toMatchObject({ ok: true, claims: { exit: { code: 3, signal: null } } });
  });
});

describe('when the build is killed by SIGTERM', () => {
  const NAME = 'killed-by-term';
  const REF = `${VM}/${NAME}`;
  let r: TimedResult;
  let bundle: Bundle;

  beforeAll(async () => {
    r = await logsend(['--qrexec-client', qrexec.path, '--name', NAME, '--', 'sh', '-c', 'echo started; kill -TERM $$; echo not reached'], { cwd: tmp.dir, home: tmp.dir });
    bundle = await sealAndExport(db, REF, signer, join(tmp.dir, `bundle-${NAME}`));
  });

  it('logsend exits 143 (128 + 15), as a shell reports a SIGTERM death', () => {
    expect(r.code, r.stderr).toBe(143);
    expect(r.stdout.toString('utf8')).toBe('started\n');
    expect(senderLines(r.stderr).join('\n')).not.toMatch(/LOG_FAILED/);
  });

  it('the log holds the exit claim {code: null, signal: "SIGTERM"}', () => {
    expect(exitClaims(REF)).toEqual([{ claim: 'exit', code: null, signal: 'SIGTERM' }]);
  });

  it("the seal manifest's claims carry signal SIGTERM", () => {
    expect(bundle.manifest.claims).toMatchObject({ exit: { code: null, signal: 'SIGTERM' } });
  });
});
