import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { hostname } from 'node:os';
import type { Readable, Writable } from 'node:stream';
import split2 from 'split2';
import {
  AppendlogError,
  FRAME_PROTOCOL,
  FrameType,
  MAX_DATA_FRAME,
  claimBytes,
  VM_NAME_RE,
  encodeFrame,
  escapeText,
  type Claim,
} from '@appendlog/shared';
import type { TrustStore } from '@appendlog/shared/signatures';
import { fileClaims, verifyInputs, type VerifyPair } from './files.js';
import { describeTransport, startTransport, type TransportSpec } from './transport.js';

export const SENDER_VERSION = 'logsend/0.1.0';

/**
 * logsend: runs the build (or reads a pipe), passes its output through to the
 * local terminal unchanged, and streams it as frames to the log VM together
 * with claims: the sender's hostname and command line, the hashes of inputs
 * before and artifacts after the build, and the exit status. It fails closed:
 * if the log cannot be written, the build is stopped (or, with
 * onLogFailure 'continue', the run still ends non-zero).
 */
export interface SendOptions {
  name: string;
  transport: TransportSpec;
  /** The build command; empty for pipe mode (stdin). */
  command: string[];
  inputs: string[];
  artifacts: string[];
  /** --verify-input pairs, checked against `keyring` before the build starts. */
  verifyInputs?: VerifyPair[];
  keyring?: TrustStore;
  receipts?: string;
  onLogFailure: 'stop' | 'continue';
  stdin?: Readable;
  stdout?: Writable;
  stderr?: Writable;
  /** How long to wait for the log VM's first receipt before giving up (the build has not started). */
  connectTimeoutMs?: number;
  /** Grace period between SIGTERM and SIGKILL when the build is stopped. */
  killAfterMs?: number;
}

export interface SendResult {
  exitCode: number;
  build: { code: number | null; signal: string | null } | null;
  logError: AppendlogError | null;
  finalReceipt: Record<string, unknown> | null;
}

interface Receipt {
  type: 'receipt';
  log: string;
  entries: number;
  head: string;
  final?: boolean;
}

/** Longest reply line accepted from the service. */
export const MAX_REPLY_LINE = 16 * 1024;

const isCount = (v: unknown): boolean => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/**
 * Why a receipt from the log VM cannot be right, or null: it must be for the
 * log this session opened (VM/NAME, NAME ours; the VM part is the log VM's
 * attestation), with a 64-hex head and counts that are sane and never go
 * back (docs/FORMAT.md 10.7).
 */
export function receiptProblem(m: Record<string, unknown>, name: string, lastEntries: number): string | null {
  const known = ['type', 'log', 'session', 'entries', 'head', 'lines', 'bytes', 'final'];
  for (const k of Object.keys(m)) if (!known.includes(k)) return 'unknown field';
  if (typeof m.log !== 'string') return 'no log';
  const slash = m.log.indexOf('/');
  if (slash < 0 || !VM_NAME_RE.test(m.log.slice(0, slash)) || m.log.slice(slash + 1) !== name) return `not for log ${name}`;
  if (typeof m.head !== 'string' || !/^[0-9a-f]{64}$/.test(m.head)) return 'head is not 64 hex digits';
  if (!isCount(m.entries) || (m.entries as number) < 1) return 'entries is not a positive count';
  if ((m.entries as number) < lastEntries) return 'entries went back';
  if (!isCount(m.session) || (m.session as number) < 1) return 'session is not a positive count';
  if (!isCount(m.lines) || !isCount(m.bytes)) return 'lines or bytes are not counts';
  if ((m.lines as number) > (m.entries as number)) return 'more lines than entries';
  if (m.final !== undefined && typeof m.final !== 'boolean') return 'final is not a boolean';
  return null;
}

/** The frame stream to the log VM, with failure detection and receipts. */
class LogLink {
  readonly child: ChildProcess;
  failure: AppendlogError | null = null;
  serviceError: { code: string; message: string } | null = null;
  finalReceipt: Receipt | null = null;
  private readonly exited: Promise<void>;
  private closed = false;
  private broken = false;
  private readyWaiters: Array<{ resolve: () => void; reject: (e: AppendlogError) => void }> = [];
  private acknowledged = false;
  private readonly listeners: Array<(e: AppendlogError) => void> = [];

  private lastEntries = 0;

  constructor(
    transport: TransportSpec,
    private readonly name: string,
    private readonly receiptsFile: string | undefined,
  ) {
    const what = describeTransport(transport, name);
    this.child = startTransport(transport, name);
    this.exited = new Promise((resolve) => {
      this.child.on('error', (e: NodeJS.ErrnoException) => {
        this.fail(new AppendlogError('LOG_FAILED', `cannot start the transport (${what}): ${e.code === 'ENOENT' ? 'command not found' : e.message}`));
        resolve();
      });
      this.child.on('exit', (code, signal) => {
        if (code === 126 && transport.kind === 'qrexec') {
          // qrexec-client-vm exits 126 whenever dom0 ends the request
          // without connecting it: a policy deny, but also an allowed target
          // that could not be started (qubes-core-qrexec).
          this.fail(new AppendlogError('TRANSPORT_REFUSED', `qrexec did not connect the call (${what}): refused by dom0 or the target could not be started`));
        } else if (this.serviceError !== null) {
          this.fail(new AppendlogError('LOG_FAILED', `the log VM refused: ${this.serviceError.code}: ${this.serviceError.message}`));
        } else if (code !== 0 || !this.closed) {
          this.fail(new AppendlogError('LOG_FAILED', `the log VM connection ended ${this.closed ? '' : 'before the build did '}(${what} exited ${code ?? signal})`));
        }
      });
      this.child.on('close', () => resolve());
    });
    // A write error (EPIPE) says the transport is gone; its exit status says
    // why (126: policy refused), so wait a moment for it before judging.
    this.child.stdin!.on('error', (e) => {
      this.broken = true;
      setTimeout(() => this.fail(new AppendlogError('LOG_FAILED', `cannot write to the log VM: ${e.message}`)), 2000).unref();
    });
    // The service answers with JSON lines: receipts, or an error.
    // The service's stderr (qrexec passes it back to us) is the other side's
    // text: shown escaped, line by line, bounded.
    this.child.stderr
      ?.pipe(split2({ maxLength: MAX_REPLY_LINE, skipOverflow: true } as split2.Options))
      .on('data', (line: string) => process.stderr.write(`logsend: log VM: ${escapeText(line.slice(0, 1000))}\n`))
      .on('error', () => undefined);
    // A hostile or broken service must not grow our memory: reply lines are
    // bounded (a receipt is ~300 bytes, an error line a few KiB).
    this.child.stdout!
      .pipe(split2({ maxLength: MAX_REPLY_LINE }))
      .on('data', (line: string) => this.onLine(line))
      .on('error', () => {
        this.fail(new AppendlogError('LOG_FAILED', `the log VM sent a reply line longer than ${MAX_REPLY_LINE} bytes: refused, not a receipt`));
        this.child.stdout!.destroy();
      });
  }

  onFailure(fn: (e: AppendlogError) => void): void {
    this.listeners.push(fn);
  }

  private fail(e: AppendlogError): void {
    if (this.failure !== null) return;
    this.failure = e;
    for (const fn of this.listeners) fn(e);
    for (const w of this.readyWaiters.splice(0)) w.reject(e);
  }

  /** Ends the wait for the acknowledgement with a failure. */
  giveUp(e: AppendlogError): void {
    this.fail(e);
  }

  /** Resolves once the log VM has acknowledged the session (its first receipt). */
  ready(): Promise<void> {
    if (this.failure !== null) return Promise.reject(this.failure);
    if (this.acknowledged) return Promise.resolve();
    return new Promise((resolve, reject) => this.readyWaiters.push({ resolve, reject }));
  }

  private onLine(line: string): void {
    if (line.length > MAX_REPLY_LINE) {
      this.fail(new AppendlogError('LOG_FAILED', `the log VM sent a reply line longer than ${MAX_REPLY_LINE} bytes: refused, not a receipt`));
      return;
    }
    let msg: unknown;
    try {
      msg = JSON.parse(line);
    } catch {
      return; // not ours (e.g. a wrapper's banner); receipts are JSON
    }
    if (msg === null || typeof msg !== 'object') return;
    const m = msg as Record<string, unknown>;
    if (m.type === 'receipt') {
      // Validate before trusting or keeping it: fail closed on anything else.
      const bad = receiptProblem(m, this.name, this.lastEntries);
      if (bad !== null) {
        this.fail(new AppendlogError('LOG_FAILED', `the log VM sent an invalid receipt (${bad}): refused, not written to --receipts`));
        return;
      }
      this.lastEntries = m.entries as number;
      if (m.final === true) this.finalReceipt = m as unknown as Receipt;
      if (!this.acknowledged) {
        this.acknowledged = true;
        for (const w of this.readyWaiters.splice(0)) w.resolve();
      }
      if (this.receiptsFile !== undefined) appendFileSync(this.receiptsFile, `${JSON.stringify(m)}\n`);
    } else if (m.type === 'error' && typeof m.code === 'string') {
      // Shown on the builder's terminal: escaped and bounded.
      this.serviceError = { code: escapeText(m.code.slice(0, 64)), message: escapeText(String(m.message ?? '').slice(0, 1000)) };
    }
  }

  /** Sends a frame; resolves when the transport accepted it (backpressure). */
  async send(type: number, payload?: Uint8Array): Promise<void> {
    if (this.failure !== null || this.closed || this.broken) return;
    const stdin = this.child.stdin!;
    if (!stdin.write(encodeFrame(type, payload))) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          stdin.off('drain', done);
          stdin.off('close', done);
          resolve();
        };
        stdin.on('drain', done);
        stdin.on('close', done);
      });
    }
  }

  async sendData(type: number, data: Buffer): Promise<void> {
    for (let off = 0; off < data.length; off += MAX_DATA_FRAME) await this.send(type, data.subarray(off, off + MAX_DATA_FRAME));
  }

  async close(): Promise<void> {
    if (!this.closed) {
      await this.send(FrameType.END);
      this.closed = true;
      this.child.stdin!.end();
    }
    await this.exited;
  }

  abort(): void {
    this.closed = true;
    this.child.stdin!.destroy();
    this.child.kill('SIGTERM');
  }
}

export async function send(opts: SendOptions): Promise<SendResult> {
  const stdout = opts.stdout ?? process.stdout;
  const stderr = opts.stderr ?? process.stderr;
  const say = (msg: string): void => {
    stderr.write(`logsend: ${msg}\n`);
  };

  // Inputs are hashed before the build starts (and before connecting: a
  // missing input is a usage error, not a log failure).
  const inputs = await fileClaims('input', opts.inputs);
  const link = new LogLink(opts.transport, opts.name, opts.receipts);
  let build: ChildProcess | null = null;
  let stopped = false;
  link.onFailure((e) => {
    say(`${e.code}: ${e.message}`);
    if (opts.onLogFailure === 'stop' && build !== null && build.exitCode === null && !stopped) {
      stopped = true;
      say('stopping the build: a build must not succeed with a broken log (--on-log-failure=continue to let it finish)');
      killGroup(build, 'SIGTERM');
      setTimeout(() => killGroup(build!, 'SIGKILL'), opts.killAfterMs ?? 5000).unref();
    }
  });

  const hello: Claim = { claim: 'hello', protocol: FRAME_PROTOCOL, sender: SENDER_VERSION, hostname: hostname(), command: opts.command };
  await link.send(FrameType.HELLO, claimBytes(hello));
  for (const c of inputs) await link.send(FrameType.CLAIM, claimBytes(c));

  // Source verification happens here, in the build VM, after the session is
  // open: every result, good or bad, is a claim in the log, and a failure
  // stops everything before the build starts (an error message that scrolls
  // by while the build goes on is exactly what this prevents).
  let rejected = 0;
  if (opts.verifyInputs !== undefined && opts.verifyInputs.length > 0) {
    for (const c of await verifyInputs(opts.verifyInputs, opts.keyring ?? { certificates: [], pinned: null, skipped: [] })) {
      await link.send(FrameType.CLAIM, claimBytes(c));
      if (c.claim === 'input-verified') {
        say(`verified ${c.path} (sha256 ${c.sha256}): signed by ${c.signer.toUpperCase()}`);
      } else {
        rejected++;
        const line = `logsend: ${c.code}: ${c.path}: ${c.reason}`;
        stderr.write(`${line}\n`);
        await link.sendData(FrameType.STDERR, Buffer.from(`${line}\n`, 'utf8'));
      }
    }
    if (rejected > 0) {
      const line = `logsend: refusing to build: ${rejected} of ${opts.verifyInputs.length} input(s) failed verification`;
      await link.sendData(FrameType.STDERR, Buffer.from(`${line}\n`, 'utf8'));
    }
  }

  // Fail closed from the start: the build runs only once the log VM has
  // acknowledged the session (a dom0 `ask` policy may take a while).
  const timeout = setTimeout(
    () => link.giveUp(new AppendlogError('LOG_FAILED', `the log VM did not acknowledge the session within ${Math.round((opts.connectTimeoutMs ?? 300_000) / 1000)} s`)),
    opts.connectTimeoutMs ?? 300_000,
  );
  try {
    await link.ready();
  } catch {
    link.abort();
    const f = link.failure!;
    say(`the build was not started: ${f.code === 'TRANSPORT_REFUSED' ? 'qrexec refused the call' : 'the log VM is not writing this log'}`);
    return { exitCode: f.exitCode, build: null, logError: f, finalReceipt: null };
  } finally {
    clearTimeout(timeout);
  }
  if (rejected > 0) {
    await link.close();
    const f = link.failure;
    if (f !== null) return { exitCode: f.exitCode, build: null, logError: f, finalReceipt: null };
    const r = link.finalReceipt;
    say(`the build was not started: ${rejected} input(s) failed verification (recorded in log ${r?.log ?? opts.name}); exiting 65`);
    const err = new AppendlogError('INPUT_UNVERIFIED', `${rejected} input(s) failed verification`);
    return { exitCode: err.exitCode, build: null, logError: null, finalReceipt: r as Record<string, unknown> | null };
  }

  let result: { code: number | null; signal: string | null };
  if (opts.command.length > 0) {
    build = spawn(opts.command[0]!, opts.command.slice(1), { stdio: ['inherit', 'pipe', 'pipe'], detached: true });
    const forward = (sig: NodeJS.Signals): void => killGroup(build!, sig);
    process.on('SIGINT', forward);
    process.on('SIGTERM', forward);
    process.on('SIGHUP', forward);
    const spawned = new Promise<void>((resolve, reject) => {
      build!.once('spawn', resolve);
      build!.once('error', reject);
    });
    try {
      await spawned;
    } catch (e) {
      await link.close();
      throw new AppendlogError('USAGE', `cannot run ${opts.command[0]}: ${(e as Error).message}`);
    }
    const exit = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
      build!.on('close', (code, signal) => resolve({ code, signal })),
    );
    await Promise.all([
      relay(build.stdout!, stdout, link, FrameType.STDOUT),
      relay(build.stderr!, stderr, link, FrameType.STDERR),
    ]);
    result = await exit;
    process.off('SIGINT', forward);
    process.off('SIGTERM', forward);
    process.off('SIGHUP', forward);
  } else {
    await relay(opts.stdin ?? process.stdin, stdout, link, FrameType.DATA);
    result = { code: 0, signal: null };
  }

  let artifactError: AppendlogError | null = null;
  if (link.failure === null) {
    try {
      for (const c of await fileClaims('artifact', opts.artifacts)) await link.send(FrameType.CLAIM, claimBytes(c));
    } catch (e) {
      artifactError = e instanceof AppendlogError ? e : new AppendlogError('INTERNAL', String(e));
      say(`${artifactError.code}: ${artifactError.message}`);
    }
    if (opts.command.length > 0) await link.send(FrameType.CLAIM, claimBytes({ claim: 'exit', code: result.code, signal: result.signal }));
  }
  if (link.failure === null) await link.close();
  else link.abort();

  const buildCode = result.code ?? 128 + signalNumber(result.signal);
  if (link.failure !== null) {
    const f = link.failure;
    say(`the build ${stopped ? 'was stopped' : `ended (${result.signal ?? `exit ${result.code}`})`}; its log is incomplete: exiting ${f.exitCode}`);
    return { exitCode: f.exitCode, build: result, logError: f, finalReceipt: link.finalReceipt as Record<string, unknown> | null };
  }
  const r = link.finalReceipt;
  if (r !== null) say(`log ${r.log}: ${r.entries} entries, head ${r.head}`);
  return {
    exitCode: artifactError !== null && buildCode === 0 ? 2 : buildCode,
    build: result,
    logError: null,
    finalReceipt: r as Record<string, unknown> | null,
  };
}

/** Copies a build stream to the local terminal and to the log, with backpressure on both. */
async function relay(source: Readable, local: Writable, link: LogLink, type: number): Promise<void> {
  for await (const chunk of source as AsyncIterable<Buffer>) {
    const localDone = local.write(chunk) ? null : new Promise<void>((resolve) => local.once('drain', resolve));
    await link.sendData(type, chunk);
    if (localDone !== null) await localDone;
  }
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.kill(signal);
    } catch {
      // already gone
    }
  }
}

const SIGNALS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGPIPE: 13, SIGALRM: 14, SIGTERM: 15 };
function signalNumber(signal: string | null): number {
  return signal === null ? 0 : (SIGNALS[signal] ?? 0);
}
