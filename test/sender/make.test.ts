/**
 * logsend wrapping a real `make` (examples/hello plus a target writing to both
 * streams) over the qrexec transport, end to end: the build's terminal output
 * is untouched, the log VM stores it tagged by stream with the sender's
 * claims, logsend keeps the receipts, and after seal + export an auditor can
 * tie the released binary to the log that built it.
 */
import { hostname } from 'node:os';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { logvm, run, tempDir, type RunResult } from '../helpers.js';
import {
  EXIT,
  KIND,
  SENDER,
  STACK_TRACE,
  VM,
  fakeQrexecClient,
  helloProject,
  jsonOf,
  linesOf,
  logsend,
  makeSigner,
  marked,
  payloadOf,
  sealAndExport,
  sha256sum,
  showText,
  storedEntries,
  verifyJson,
  type Bundle,
  type FakeQrexec,
  type Rec,
  type Signer,
  type TimedResult,
  type VerifyJson,
} from './util.js';

const NAME = 'hello-build';
const REF = `${VM}/${NAME}`;
const MAKE_ARGS = ['make', 'all', 'both'];

const tmp = tempDir('appendlog-sender-make-');
const db = join(tmp.dir, 'logs.db');
const receipts = join(tmp.dir, 'r.jsonl');
let signer: Signer;
let qrexec: FakeQrexec;
let direct: RunResult;
let logged: TimedResult;
let project: string;
let storeBeforeSeal: VerifyJson;
let show: string;
let bundle: Bundle;

beforeAll(async () => {
  signer = await makeSigner(tmp.dir);
  qrexec = fakeQrexecClient(tmp.dir, db);

  // The same project built twice: once directly, once wrapped by logsend.
  direct = await run(MAKE_ARGS[0]!, MAKE_ARGS.slice(1), { cwd: helloProject(tmp.dir, 'direct') });
  expect(direct.code, `make failed: ${direct.stderr}`).toBe(0);
  project = helloProject(tmp.dir, 'logged');
  logged = await logsend(
    ['--qrexec-client', qrexec.path, '--target', 'logvm', '--name', NAME, '--input', '*.c', '--input', 'Makefile', '--artifact', 'hello', '--receipts', receipts, '--', ...MAKE_ARGS],
    { cwd: project, home: tmp.dir },
  );

  storeBeforeSeal = (await verifyJson(['--db', db, '--store', REF])).result;
  show = await showText(db, REF);
  bundle = await sealAndExport(db, REF, signer, join(tmp.dir, 'bundle'));
});

afterAll(async () => {
  await signer?.cleanup();
  tmp.cleanup();
});

const ofKind = (kind: string): Rec[] => bundle.records.filter((r) => r.kind === kind);
const claims = (): Array<Record<string, unknown> & { seq: number }> => ofKind('claim').map((r) => ({ ...jsonOf(r), seq: r.seq }));
const receiptLines = (): Array<Record<string, unknown>> =>
  linesOf(readFileSync(receipts, 'utf8')).map((l) => JSON.parse(l) as Record<string, unknown>);

describe('when logsend wraps a real make over qrexec', () => {
  it('exits with the build status 0', () => {
    expect(logged.code, logged.stderr).toBe(EXIT.OK);
    expect(logged.stderr).not.toMatch(STACK_TRACE);
  });

  it('calls qrexec-client-vm TARGET qubes.AppendLog+_framed.NAME, once', () => {
    expect(qrexec.calls()).toEqual([`logvm qubes.AppendLog+_framed.${NAME}`]);
  });

  it("passes the build's stdout through byte for byte", () => {
    expect(direct.stdout.toString('utf8')).toContain('Hello from the build VM');
    expect(logged.stdout.equals(direct.stdout)).toBe(true);
  });

  it("passes the build's stderr through byte for byte, followed only by logsend's own status lines", () => {
    const buildStderr = direct.stderr;
    expect(buildStderr).toContain('\u001b[33mthis line went to stderr');
    expect(logged.stderr.startsWith(buildStderr)).toBe(true);
    const rest = logged.stderr.slice(buildStderr.length);
    for (const line of linesOf(rest)) expect(line).toMatch(/^logsend: /);
  });

  it('stores stdout lines as STDOUT entries and stderr lines as STDERR entries, each stream complete and in order', () => {
    expect(ofKind('line')).toEqual([]);
    expect(ofKind('stdout').map((r) => payloadOf(r).toString('utf8'))).toEqual(linesOf(direct.stdout));
    expect(ofKind('stderr').map((r) => payloadOf(r).toString('utf8'))).toEqual(linesOf(direct.stderr));
    // The last stderr line had no newline: kept, and marked NOEOL (flag 2).
    expect(ofKind('stderr').at(-1)).toMatchObject({ text: 'both: stderr line 2 (no newline)', flags: 2 });
  });

  it('keeps the order across the two streams', () => {
    const seqOf = (kind: string, text: string): number => {
      const r = bundle.records.find((x) => x.kind === kind && x.text === text);
      expect(r, `${kind} ${text}`).toBeDefined();
      return r!.seq;
    };
    const out1 = seqOf('stdout', 'both: stdout line 1');
    const err1 = seqOf('stderr', 'both: stderr line 1');
    const out2 = seqOf('stdout', 'both: stdout line 2');
    expect(out1).toBeLessThan(err1);
    expect(err1).toBeLessThan(out2);
  });

  it("shows stdout lines with the mark '|' and stderr lines with 'E'", () => {
    expect(marked(show, '|')).toContain('Hello from the build VM');
    expect(marked(show, 'E')).toContain('hello: warning: \\e[33mthis line went to stderr\\e[0m');
    expect(marked(show, 'E')).toContain('both: stderr line 1');
    expect(marked(show, '|')).not.toContain('both: stderr line 1');
  });

  it('records the HELLO claim first: protocol, sender, hostname and the command line', () => {
    expect(bundle.records[0]!.kind).toBe('session-open');
    expect(bundle.records[1]!.kind).toBe('claim');
    expect(jsonOf(bundle.records[1]!)).toEqual({
      claim: 'hello',
      protocol: 'appendlog-frames/1',
      sender: expect.stringMatching(/^logsend\//) as unknown,
      hostname: hostname(),
      command: MAKE_ARGS,
    });
  });

  it('records input claims with the sha256 of each input, before any output', async () => {
    const inputs = claims().filter((c) => c.claim === 'input');
    expect(inputs.map((c) => c.path).sort()).toEqual(['Makefile', 'hello.c']);
    for (const c of inputs) {
      const file = join(project, c.path as string);
      expect(c.sha256).toBe(await sha256sum(file));
      expect(c.size).toBe(statSync(file).size);
    }
    const firstOutput = bundle.records.find((r) => r.kind === 'stdout' || r.kind === 'stderr')!.seq;
    for (const c of inputs) expect(c.seq).toBeLessThan(firstOutput);
  });

  it('records an artifact claim with the sha256 and size of the built binary', async () => {
    const artifacts = claims().filter((c) => c.claim === 'artifact');
    expect(artifacts).toHaveLength(1);
    expect(artifacts[0]).toMatchObject({ path: 'hello', size: statSync(join(project, 'hello')).size, sha256: await sha256sum(join(project, 'hello')) });
  });

  it('stores all output, a last line without newline included, before the artifact and exit claims (the order it was sent in)', () => {
    // logsend sends the artifact and exit claims only after both output
    // streams reached EOF, so every output entry must precede them.
    const output = bundle.records.filter((r) => r.kind === 'stdout' || r.kind === 'stderr');
    const after = claims().filter((c) => c.claim === 'artifact' || c.claim === 'exit');
    expect(after).toHaveLength(2);
    const late = output.filter((r) => r.seq > Math.min(...after.map((c) => c.seq)));
    expect(late.map((r) => `seq ${r.seq} ${r.kind} ${JSON.stringify(r.text)} flags ${r.flags}`)).toEqual([]);
  });

  it('records the exit claim last, then the session closes cleanly (eof)', () => {
    const c = claims();
    expect(c.at(-1)).toMatchObject({ claim: 'exit', code: 0, signal: null });
    const close = ofKind('session-close');
    expect(close).toHaveLength(1);
    expect(close[0]!.seq).toBeGreaterThan(c.at(-1)!.seq);
    expect(jsonOf(close[0]!)).toMatchObject({ reason: 'eof', lines: linesOf(direct.stdout).length + linesOf(direct.stderr).length });
    expect(ofKind('notice')).toEqual([]);
  });

  it("keeps the receipts in --receipts: the final one is the store's head", () => {
    const list = receiptLines();
    expect(list.length).toBeGreaterThanOrEqual(1);
    for (const r of list) expect(r).toMatchObject({ type: 'receipt', log: REF });
    const last = list.at(-1)!;
    expect(last.final).toBe(true);
    expect(list.filter((r) => r.final === true)).toHaveLength(1);
    expect(storeBeforeSeal.ok).toBe(true);
    expect(last.head).toBe(storeBeforeSeal.head);
    expect(last.entries).toBe(storeBeforeSeal.entries);
  });

  it('puts the claims into the seal manifest', async () => {
    expect(bundle.manifest.claims).toMatchObject({
      exit: { code: 0, signal: null },
      hostname: hostname(),
      command: MAKE_ARGS,
      artifacts: [{ path: 'hello', sha256: await sha256sum(join(project, 'hello')) }],
    });
    expect((bundle.manifest.claims!.inputs as unknown[]).length).toBe(2);
  });
});

describe('when an auditor checks the release against the sealed bundle', () => {
  it('verify-chain BUNDLE --key --receipt --artifact hello passes and says which log built it', async () => {
    const args = [bundle.dir, '--key', signer.pub, '--receipt', receipts, '--artifact', join(project, 'hello')];
    const { result, code, stderr } = await verifyJson(args);
    expect(code, stderr).toBe(EXIT.OK);
    expect(result).toMatchObject({ ok: true, source: 'bundle', log: REF, state: 'sealed', receiptsChecked: 1 } as VerifyJson);
    expect(result.artifacts).toEqual([{ file: join(project, 'hello'), sha256: await sha256sum(join(project, 'hello')), claimedPath: 'hello', claimedPaths: ['hello'], otherLogs: [] }]);
  });

  it('the human form names the log whose build VM claimed the artifact', async () => {
    const r = await logvm(['verify-chain', bundle.dir, '--key', signer.pub, '--receipt', receipts, '--artifact', join(project, 'hello')]);
    expect(r.code, r.stderr).toBe(EXIT.OK);
    const out = r.stdout.toString('utf8');
    expect(out).toMatch(/^OK /);
    const lines = out.split('\n');
    const i = lines.findIndex((l) => l.includes(join(project, 'hello')));
    expect(i, out).toBeGreaterThan(0);
    expect(lines[i + 1]).toContain(`claimed this file's hash as an output of log ${REF}`);
  });

  it('a file that is not among the sealed artifacts fails with ARTIFACT_NOT_FOUND (exit 51)', async () => {
    const { result, code } = await verifyJson([bundle.dir, '--key', signer.pub, '--artifact', join(project, 'hello.c')]);
    expect(code).toBe(EXIT.ARTIFACT_NOT_FOUND);
    expect(result).toMatchObject({ ok: false, code: 'ARTIFACT_NOT_FOUND', exitCode: EXIT.ARTIFACT_NOT_FOUND });
  });
});

describe('when make is piped into logsend (CMD | logsend)', () => {
  const PIPED = 'hello-piped';
  let piped: RunResult;
  let merged: RunResult;

  beforeAll(async () => {
    const client = fakeQrexecClient(tmp.dir, db, { kind: 'allow' }, 'qrexec-client-vm-pipe');
    merged = await run('sh', ['-c', 'make all both 2>&1'], { cwd: helloProject(tmp.dir, 'piped-direct') });
    piped = await run('sh', ['-c', 'make all both 2>&1 | "$1" "$2" --qrexec-client "$3" --name "$4"', 'sh', process.execPath, SENDER, client.path, PIPED], {
      cwd: helloProject(tmp.dir, 'piped'),
      env: { XDG_CONFIG_HOME: join(tmp.dir, 'config') },
    });
  });

  it('exits 0 and passes the merged output through unchanged', () => {
    expect(piped.code, piped.stderr).toBe(EXIT.OK);
    expect(piped.stdout.equals(merged.stdout)).toBe(true);
    for (const line of linesOf(piped.stderr)) expect(line).toMatch(/^logsend: /);
  });

  it('stores the pipe as untagged lines (no stream is known), with a HELLO claim and no exit claim', () => {
    const entries = storedEntries(db, `${VM}/${PIPED}`);
    const lines = entries.filter((e) => e.kind === KIND.LINE || e.kind === KIND.STDOUT || e.kind === KIND.STDERR);
    expect(new Set(lines.map((e) => e.kind))).toEqual(new Set([KIND.LINE]));
    expect(lines.map((e) => e.payload.toString('utf8'))).toEqual(linesOf(merged.stdout));
    const c = entries.filter((e) => e.kind === KIND.CLAIM).map(jsonOf);
    expect(c).toEqual([expect.objectContaining({ claim: 'hello', command: [], hostname: hostname() })]);
  });
});
