/**
 * A seal takes precedence over a build VM that trickles lines into the log
 * (docs/FORMAT.md 7.3): real processes throughout. The sender is
 * rpc/qubes.AppendLog with the qrexec environment, fed a line every ~80 ms;
 * the sealer is `logvm seal` with real gpg (throwaway GNUPGHOME) behind a
 * wrapper script that records every call and waits for a gate file before
 * it signs (the vault's user thinking). Readiness waits only, no timing
 * assertions.
 *
 * Attacks / faults, one per test group:
 *   1. trickling during the signature: one signer call, the sender gets
 *      LOG_SEALED, the cut is recorded with its refused counts, the seal
 *      verifies (store and bundle) with nothing after the SEAL entry;
 *   2. the signer fails while the VM trickles: the log is open again, the cut
 *      session is closed (reason error), a new session appends;
 *   3. the sealer is SIGKILLed while it holds the claim: the next session
 *      clears the stale claim, records it, and is stored.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers.js';
import {
  KIND,
  entries,
  events,
  expectNoCrash,
  expectServiceError,
  killGroup,
  numbered,
  reconstruct,
  service,
  sleep,
  start,
  startService,
  waitForLines,
  waitUntil,
  LOGVM,
  type Run,
  type Started,
} from '../hostile/util.js';
import { EXIT, gpgHome, signerScript, verifyChain, expectOk, type GpgHome } from './util.js';

const VM = 'trickle-vm';
const tmp = tempDir('appendlog-seal-trickle-');
let gpg: GpgHome;
let alice: string;
const alicePub = join(tmp.dir, 'alice.asc');

beforeAll(async () => {
  gpg = gpgHome();
  alice = await gpg.genKey('Alice Release <alice@example.org>', 'ed25519');
  await gpg.exportPublic(alice, alicePub);
}, 60_000);
afterAll(async () => {
  await gpg.cleanup();
  tmp.cleanup();
});

/** A gpg wrapper that records each call and signs (or fails: `then`) once `gate` exists. */
function gated(tag: string, then = 'exec gpg "$@"'): { script: ReturnType<typeof signerScript>; open: () => void } {
  const gate = join(tmp.dir, `${tag}.gate`);
  const script = signerScript(tmp.dir, `gpg-${tag}`, `n=0\nwhile [ ! -e '${gate}' ] && [ $n -lt 1200 ]; do sleep 0.05; n=$((n+1)); done\n${then}`);
  return { script, open: () => writeFileSync(gate, '') };
}

/** `logvm seal VM/NAME` through `command` (as APPENDLOG_GPG). */
function startSeal(db: string, name: string, command: string): Started {
  return start(process.execPath, [LOGVM, 'seal', `${VM}/${name}`, '--signer', `gpg:${alice}`], {
    env: { APPENDLOG_DB: db, APPENDLOG_GPG: command, ...gpg.env },
    timeoutMs: 120_000,
  });
}

/** Starts the service and writes a numbered line every ~80 ms until it exits (or `stop` is set). */
function trickle(db: string, name: string, env: Record<string, string> = {}): { s: Started; sent: () => Buffer; stop: () => void; done: Promise<void> } {
  const s = startService(VM, name, db, { stdin: 'keep', timeoutMs: 120_000, env });
  let sent = Buffer.alloc(0);
  let stopped = false;
  let exited = false;
  void s.done.then(() => (exited = true));
  const done = (async () => {
    for (let i = 0; i < 3000 && !exited && !stopped; i++) {
      const line = numbered('t', 1, i);
      sent = Buffer.concat([sent, line]);
      await new Promise<void>((resolve) => s.child.stdin!.write(line, () => resolve()));
      await sleep(80);
    }
    s.child.stdin!.end();
  })();
  return { s, sent: () => sent, stop: () => (stopped = true), done };
}

/**
 * The VM trickles into NAME; once `lines` are stored, `logvm seal` starts
 * behind `wrapper`, and once the signer is called (the claim is taken
 * before it is), the sender's next batch is refused: returns when the sender
 * has ended, with the sealer still waiting at the gate.
 */
async function sealWhileTrickling(
  db: string,
  name: string,
  lines: number,
  wrapper: ReturnType<typeof gated>,
  env: Record<string, string> = {},
): Promise<{ sender: ReturnType<typeof trickle>; sealer: Started; senderRun: Run }> {
  const sender = trickle(db, name, env);
  await waitForLines(db, VM, name, lines, sender.s);
  const sealer = startSeal(db, name, wrapper.script.path);
  await waitUntil('the signer to be called', () => wrapper.script.calls().length >= 1, { s: sealer });
  const senderRun = await sender.s.done;
  await sender.done;
  return { sender, sealer, senderRun };
}

/** Rows of the store's `sealing` table (claims of seals in progress), read with the real sqlite3 CLI. */
const sealingRows = (db: string): number => Number(execFileSync('/usr/bin/sqlite3', ['-readonly', db, 'SELECT count(*) FROM sealing']).toString('utf8').trim());

describe('when a VM trickles a line every ~80 ms while the log is sealed', () => {
  const db = join(tmp.dir, 'trickle.db');
  const NAME = 'release';
  let sender: ReturnType<typeof trickle>;
  let senderRun: Run;
  let sealRun: Run;
  let wrapper: ReturnType<typeof gated>;

  beforeAll(async () => {
    wrapper = gated('once');
    // The claim is taken before the signer is called: the next batch of the trickling sender is refused.
    const r = await sealWhileTrickling(db, NAME, 3, wrapper);
    ({ sender, senderRun } = r);
    wrapper.open();
    sealRun = await r.sealer.done;
  }, 120_000);

  it('the seal succeeds (exit 0) with exactly one signer call', () => {
    expectNoCrash(sealRun, 'seal');
    expect(sealRun.code, sealRun.stderr).toBe(0);
    expect(wrapper.script.calls()).toHaveLength(1);
    console.log(`[seal-trickle] signer calls: ${wrapper.script.calls().length}; lines sent before the cut: ${sender.sent().toString().split('\n').length - 1}`);
  });

  it('the sender is refused with LOG_SEALED (exit 5) and a JSON error line', () => {
    expectNoCrash(senderRun, 'sender');
    expectServiceError(senderRun, 'LOG_SEALED');
  });

  it('VM/logvm-events records the cut session once, with where it was cut and the refused counts', () => {
    const cut = events(db, VM, 'logvm-events').filter((e) => e.kind === KIND.NOTICE && e.json.notice === 'seal-cut');
    expect(cut).toHaveLength(1);
    const n = cut[0]!.json;
    const list = entries(db, VM, NAME);
    const sealEntry = list[list.length - 1]!;
    expect(n).toMatchObject({ log: `${VM}/${NAME}`, session: 1, state: 'sealing', entries: sealEntry.seq - 1, sealIndex: 1, unread: 'the rest of the input was not read' });
    expect(n.lines as number).toBeGreaterThanOrEqual(1);
    // Stored + refused never exceed what was sent; the refused bytes are whole numbered lines.
    const stored = reconstruct(list.filter((e) => e.session === 1));
    const sent = sender.sent();
    expect(sent.subarray(0, stored.length).equals(stored)).toBe(true);
    expect(stored.length + (n.bytes as number) + (n.lines as number)).toBeLessThanOrEqual(sent.length);
    expect(n.bytes as number).toBe(((n.lines as number) * (numbered('t', 1, 0).length - 1)));
  });

  it('the chain ends with the SEAL entry, no session is closed after it, and no claim is left', () => {
    const list = entries(db, VM, NAME);
    expect(list[list.length - 1]!.kind).toBe(KIND.SEAL);
    expect(list.filter((e) => e.kind === KIND.SESSION_CLOSE)).toHaveLength(0);
    expect(sealingRows(db)).toBe(0);
  });

  it('verify-chain passes on the store and on the exported bundle, whose manifest matches the stored chain', async () => {
    const o = await verifyChain(['--store', `${VM}/${NAME}`, '--key', alicePub], { db, json: true });
    expectOk(o);
    const list = entries(db, VM, NAME);
    expect(o.result).toMatchObject({ state: 'sealed', entries: list.length, lines: list.filter((e) => e.kind === KIND.LINE).length });
    const out = join(tmp.dir, 'bundle');
    const ex = await start(process.execPath, [LOGVM, 'export', `${VM}/${NAME}`, '--out', out], { env: { APPENDLOG_DB: db } }).done;
    expect(ex.code, ex.stderr).toBe(0);
    const b = await verifyChain([out, '--key', alicePub], { json: true });
    expectOk(b);
    const manifest = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8')) as { entries: number; head: string };
    expect(manifest.entries).toBe(list.length);
    expect(manifest.head).toBe(o.result!.head);
  });

  it('a later session is refused with LOG_SEALED (exit 5)', async () => {
    expectServiceError(await service(VM, NAME, db, { input: 'too late\n' }), 'LOG_SEALED');
  });
});

describe('when the signer fails while a VM trickles into the log', () => {
  const db = join(tmp.dir, 'fails.db');
  const NAME = 'fails';
  let senderRun: Run;
  let sealRun: Run;
  let wrapper: ReturnType<typeof gated>;

  beforeAll(async () => {
    wrapper = gated('fails', "cat >/dev/null\necho 'gpg: signing failed: No secret key' >&2\nexit 2");
    const r = await sealWhileTrickling(db, NAME, 2, wrapper);
    senderRun = r.senderRun;
    wrapper.open();
    sealRun = await r.sealer.done;
  }, 120_000);

  it('the seal fails with SIGNER_FAILED (exit 40) after one signer call, and the sender got LOG_SEALED', () => {
    expectNoCrash(sealRun, 'seal');
    expect(sealRun.code, sealRun.stderr).toBe(EXIT.SIGNER_FAILED);
    expect(wrapper.script.calls()).toHaveLength(1);
    expectServiceError(senderRun, 'LOG_SEALED');
  });

  it('the cut session is closed with reason error, saying it was refused during the seal and that the seal failed', () => {
    const closes = events(db, VM, NAME).filter((e) => e.kind === KIND.SESSION_CLOSE);
    expect(closes).toHaveLength(1);
    expect(closes[0]!.json).toMatchObject({ reason: 'error', session: 1 });
    expect(String(closes[0]!.json.detail)).toMatch(/^refused while the log was being sealed \(LOG_SEALED\): \d+ received line\(s\).*the seal then failed \(SIGNER_FAILED\); the log is open again$/);
    expect(sealingRows(db)).toBe(0);
  });

  it('VM/logvm-events has the seal-cut and one seal-failed event that counts the closed session', () => {
    const ev = events(db, VM, 'logvm-events').filter((e) => e.kind === KIND.NOTICE);
    expect(ev.filter((e) => e.json.notice === 'seal-cut')).toHaveLength(1);
    const failed = ev.filter((e) => e.json.notice === 'seal-failed');
    expect(failed).toHaveLength(1);
    expect(failed[0]!.json).toMatchObject({ log: `${VM}/${NAME}`, sessions: 1, signer: `gpg:${alice}` });
    expect(String(failed[0]!.json.detail)).toMatch(/^SIGNER_FAILED: /);
  });

  it('the log is open again: a new session appends, and verify-chain --store says OK, open', async () => {
    const r = await service(VM, NAME, db, { input: 'after the failed seal\n' });
    expect(r.code, r.stderr).toBe(0);
    const o = await verifyChain(['--store', `${VM}/${NAME}`], { db, json: true });
    expectOk(o);
    expect(o.result).toMatchObject({ state: 'open', sessions: 2 });
  });
});

describe('when the sealer is SIGKILLed while it holds the claim', () => {
  const db = join(tmp.dir, 'killed.db');
  const NAME = 'killed';
  let killedPid: number;

  beforeAll(async () => {
    const { sealer, senderRun } = await sealWhileTrickling(db, NAME, 2, gated('never'));
    killedPid = sealer.pid;
    expectServiceError(senderRun, 'LOG_SEALED');
    killGroup(sealer.child, 'SIGKILL');
    const r = await sealer.done;
    expect(r.signal).toBe('SIGKILL');
    expect(sealingRows(db)).toBe(1);
  }, 120_000);

  it('the next session clears the stale claim and is stored (exit 0)', async () => {
    const r = await service(VM, NAME, db, { input: 'after the killed seal\n' });
    expect(r.code, r.stderr).toBe(0);
    expect(sealingRows(db)).toBe(0);
  });

  it('the clearing is recorded: seal-abandoned names the dead process; the cut session got its close', () => {
    const ab = events(db, VM, 'logvm-events').filter((e) => e.kind === KIND.NOTICE && e.json.notice === 'seal-abandoned');
    expect(ab).toHaveLength(1);
    expect(ab[0]!.json).toMatchObject({ log: `${VM}/${NAME}`, pid: killedPid, sessions: 1 });
    expect(String(ab[0]!.json.detail)).toContain(`its process ${killedPid} no longer runs`);
    const close = events(db, VM, NAME).find((e) => e.kind === KIND.SESSION_CLOSE && e.session === 1);
    expect(close?.json).toMatchObject({ reason: 'error' });
    expect(String(close!.json.detail)).toContain('the seal in progress was abandoned');
  });

  it('the log verifies open, and a seal with a working signer now succeeds', async () => {
    expectOk(await verifyChain(['--store', `${VM}/${NAME}`], { db }));
    const ok = signerScript(tmp.dir, 'gpg-ok', 'exec gpg "$@"');
    const r = await startSeal(db, NAME, ok.path).done;
    expect(r.code, r.stderr).toBe(0);
    expect(ok.calls()).toHaveLength(1);
    expectOk(await verifyChain(['--store', `${VM}/${NAME}`, '--key', alicePub], { db }));
    expect(existsSync(db)).toBe(true);
  });
});

describe('when the trickling session\'s service is set to seal at the end (sealOnClose) and the admin seals the log under it', () => {
  const db = join(tmp.dir, 'seal-on-close-cut.db');
  const NAME = 'soc';
  let senderRun: Run;
  let sealRun: Run;

  beforeAll(async () => {
    const wrapper = gated('soc');
    const r = await sealWhileTrickling(db, NAME, 2, wrapper, { APPENDLOG_SEAL_ON_CLOSE: `gpg:${alice}`, ...gpg.env });
    senderRun = r.senderRun;
    wrapper.open();
    sealRun = await r.sealer.done;
  }, 120_000);

  it('the seal succeeds and the cut sender gets LOG_SEALED', () => {
    expect(sealRun.code, sealRun.stderr).toBe(0);
    expectServiceError(senderRun, 'LOG_SEALED');
  });

  it('the cut is recorded once (seal-cut), and no seal-skipped says the sealed log stayed open; list shows no flag', async () => {
    const notices = events(db, VM, 'logvm-events').filter((e) => e.kind === KIND.NOTICE);
    expect(notices.filter((e) => e.json.notice === 'seal-cut')).toHaveLength(1);
    expect(notices.filter((e) => e.json.notice === 'seal-skipped' || e.json.notice === 'seal-failed')).toEqual([]);
    const flags = execFileSync('/usr/bin/sqlite3', ['-readonly', db, 'SELECT count(*) FROM log_flags']).toString('utf8').trim();
    expect(flags).toBe('0');
    expectOk(await verifyChain(['--store', `${VM}/${NAME}`, '--key', alicePub], { db }));
  });
});
