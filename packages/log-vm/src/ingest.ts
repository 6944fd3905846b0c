import {
  AppendlogError,
  BlockBuilder,
  DEFAULT_MAX_LINE,
  FrameParser,
  FrameType,
  Kind,
  LineScanner,
  canonicalBytes,
  isAppendlogError,
  parseClaim,
  type CanonicalValue,
  type CloseReason,
  type FrameEvent,
  type PendingBlock,
} from '@appendlog/shared';
import { SealRefusal, type LogRow, type OpenOptions, type Store } from './store.js';
import type { ByteSource } from './source.js';

/**
 * One `logvm append` session: reads the (attacker-controlled) input to EOF
 * and commits it in batches. A batch is committed when it reaches
 * `batchBytes`, and at the latest `commitIntervalMs` after its first entry
 * arrived, so a received line is durable within that interval (the loss
 * window on a crash). Memory is bounded by three batches (the one being
 * filled, one hashed ahead and waiting for its commit, and for the length of
 * a commit the one before it: see Session) + `maxLine` per stream + one
 * input chunk, whatever the input: the loop reads no more input while a
 * commit runs (better-sqlite3 is synchronous).
 *
 * Raw mode splits stdin into LINE entries. Framed mode (logsend) parses
 * frames: STDOUT/STDERR/DATA bytes are split into lines per stream; HELLO and
 * CLAIM frames are stored as CLAIM entries, byte for byte; a frame that
 * breaks the protocol is recorded as a NOTICE event and ends the session.
 */
export interface AppendOptions {
  store: Store;
  vm: string;
  name: string;
  /** The service argument exactly as received, recorded in the open event. */
  argument: string;
  framed?: boolean;
  /** The sender's bytes: stdinSource() in the service, streamSource(readable) elsewhere. */
  input: ByteSource;
  /** Receives receipts during (framed mode) and at the end of the session. */
  onReceipt?: (r: Receipt) => void;
  maxLine?: number;
  commitIntervalMs?: number;
  batchBytes?: number;
  /** Close the session (reason `idle`, IDLE_TIMEOUT) after this long without input; none when unset. */
  idleTimeoutMs?: number;
  /** Framed mode: send a receipt at least this often while data flows. */
  receiptIntervalMs?: number;
  receiptEntries?: number;
  now?: () => number;
  /** Aborting ends the session with a clean close event (SIGTERM). */
  signal?: AbortSignal;
  /** How the session is opened: the service, create-only (qubesbuilder.BuildLog picks fresh names). */
  open?: OpenOptions;
  /** More members of the session-open event (qubesbuilder.BuildLog: the legacy path). */
  openDetails?: Record<string, CanonicalValue>;
  /** The time of the open transaction's entries and of `created` (qubesbuilder.BuildLog: its start time, which names the file). */
  openTime?: number;
}

export interface Receipt {
  type: 'receipt';
  log: string;
  session: number;
  /** Entries in the whole log up to this point: the head is the hash of entry `entries`. */
  entries: number;
  head: string;
  /** Lines and payload bytes this session stored so far. */
  lines: number;
  bytes: number;
  final: boolean;
}

export interface SessionResult {
  receipt: Receipt | null;
  /** How the session ended: its close reason, or `sealed` (cut by a seal: no close entry, 3.5). */
  reason: CloseReason | 'sealed';
  error: AppendlogError | null;
}

const STREAM_KIND: Record<number, number> = {
  [FrameType.DATA]: Kind.LINE,
  [FrameType.STDOUT]: Kind.STDOUT,
  [FrameType.STDERR]: Kind.STDERR,
};

/** A full batch hashed ahead of its commit (ingest's pipeline), with what it holds. */
interface Batch {
  pending: PendingBlock;
  lines: number;
  bytes: number;
  /** When its first entry arrived (performance.now()): it is committed within commitIntervalMs of that. */
  first: number;
}

/**
 * The pipeline (both cores): when the batch being filled is full, a thread
 * numbers and hashes it (BlockBuilder.start, chained onto the head the batch
 * before it will leave) while this thread commits that batch before it and
 * goes on reading and splitting. So at most one full batch waits, hashed,
 * for its commit; it is committed when the next one is full, when the
 * commit interval of its first entry runs out, or at the end, whichever
 * comes first, so the loss window stays commitIntervalMs. The store checks
 * the head it was chained onto and chains it again if another session's
 * batch came first (store.ts chainedOnto), so the chain is the same as
 * committing each batch at once.
 */
class Session {
  builder: BlockBuilder;
  lines = 0;
  bytes = 0;
  time: number;
  head: { entries: number; hash: Buffer };
  failure: AppendlogError | null = null;
  private timer: NodeJS.Timeout | undefined;
  private lastReceipt: { time: number; entries: number };
  /** Lines/bytes in the batch being filled (not counted as stored). */
  private pendingLines = 0;
  private pendingBytes = 0;
  /** When the batch being filled got its first entry (performance.now()). */
  private fillFirst = 0;
  /** Full batches hashed ahead, oldest first, not committed yet (one at a time but during a rotation). */
  private queue: Batch[] = [];
  /** Builders of committed batches, for reuse. */
  private free: BlockBuilder[] = [];
  private readonly builderBytes: number;
  /**
   * Set once a quota refused a batch: what follows is only the notice that
   * says so and the close, which must go in although the quota counts them.
   */
  quotaExempt = false;

  constructor(
    readonly opts: AppendOptions,
    readonly log: LogRow,
    readonly session: number,
    first: { entries: number; hash: Buffer },
    private readonly onFail: (e: unknown) => void,
  ) {
    const maxLine = opts.maxLine ?? DEFAULT_MAX_LINE;
    this.builderBytes = Math.min(opts.batchBytes ?? 1 << 20, 1 << 20) + maxLine + 64;
    this.builder = new BlockBuilder(this.builderBytes);
    this.time = this.now();
    this.head = first;
    this.lastReceipt = { time: this.time, entries: first.entries };
  }

  now(): number {
    return (this.opts.now ?? Date.now)();
  }

  line(kind: number, flags: number, payload: Buffer): void {
    if (this.builder.count === 0) this.fillFirst = performance.now();
    this.builder.add(this.time, this.session, kind, flags, payload);
    this.pendingLines++;
    this.pendingBytes += payload.length;
  }

  /** The bulk path for `kind` (LineScanner.push's third argument): whole short lines straight into the batch. */
  bulk(kind: number, maxLine: number): (chunk: Buffer, pos: number) => number {
    return (chunk, pos) => {
      const b = this.builder;
      const count = b.count;
      const lineBytes = b.lineBytes;
      const reached = b.addLines(this.time, this.session, kind, chunk, pos, maxLine);
      if (b.count > count) {
        if (count === 0) this.fillFirst = performance.now();
        this.pendingLines += b.count - count;
        this.pendingBytes += b.lineBytes - lineBytes;
      }
      return reached;
    };
  }

  event(kind: number, payload: Uint8Array): void {
    if (this.builder.count === 0) this.fillFirst = performance.now();
    this.builder.add(this.now(), this.session, kind, 0, payload);
  }

  /** After input: hand the batch on when it is full, else make sure a timer commits it in time. */
  afterInput(): void {
    if (this.builder.byteLength >= (this.opts.batchBytes ?? 1 << 20)) this.rotate();
    else this.armTimer();
  }

  /** Commits what is received and not committed within the commit interval of the oldest of it. */
  private armTimer(): void {
    if (this.timer !== undefined) return;
    const oldest = this.queue.length > 0 ? this.queue[0]!.first : this.builder.count > 0 ? this.fillFirst : undefined;
    if (oldest === undefined) return;
    const interval = this.opts.commitIntervalMs ?? 50;
    const delay = Math.min(interval, Math.max(0, oldest + interval - performance.now()));
    this.timer = setTimeout(() => {
      this.timer = undefined;
      try {
        this.flush();
      } catch (e) {
        this.onFail(e);
      }
    }, delay);
  }

  private clearTimer(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
  }

  /**
   * The batch being filled is full: a thread hashes it, chained onto the
   * head the queued batch will leave (or the committed head), while the
   * queued batch is committed here; reading goes on into another builder.
   */
  private rotate(): void {
    const last = this.queue[this.queue.length - 1];
    let firstSeq = this.head.entries + 1;
    let prev = this.head.hash;
    if (last !== undefined) {
      const b = last.pending.join();
      firstSeq = b.firstSeq + b.count;
      prev = b.head;
    }
    this.queue.push({ pending: this.builder.start(firstSeq, prev), lines: this.pendingLines, bytes: this.pendingBytes, first: this.fillFirst });
    this.pendingLines = 0;
    this.pendingBytes = 0;
    this.builder = this.free.pop() ?? new BlockBuilder(this.builderBytes);
    this.clearTimer();
    while (this.queue.length > 1) this.commitFirst(false);
    this.armTimer();
  }

  /** Commits the oldest queued batch (on failure it stays queued: discard() drops it and reports what it held). */
  private commitFirst(endSession: boolean): void {
    const b = this.queue[0]!;
    this.commit(b.pending, b.lines, b.bytes, endSession);
    this.queue.shift();
    b.pending.builder.reset();
    if (this.free.length < 2) this.free.push(b.pending.builder);
  }

  private commit(batch: BlockBuilder | PendingBlock, lines: number, bytes: number, endSession: boolean): void {
    // `cut`: what the close says if a seal in progress refuses this batch and then fails (7.3).
    const unstored = this.pendingCounts();
    const refused = `refused while the log was being sealed (LOG_SEALED): ${unstored.lines} received line(s) (${unstored.bytes} bytes) of the last batch(es)${endSession ? '' : ' and the rest of the input'} were not stored`;
    const block = this.opts.store.append(this.log, batch, {
      ...(endSession ? { endSession: this.session } : {}),
      ...(this.quotaExempt ? { skipQuota: true } : {}),
      cut: { session: this.session, lines: this.lines, bytes: this.bytes, refused },
      now: () => this.now(),
    });
    this.head = { entries: block.firstSeq + block.count - 1, hash: block.head };
    this.lines += lines;
    this.bytes += bytes;
    if (this.opts.framed) this.maybeReceipt();
  }

  /** Commits everything received: the queued batch, then the one being filled (with endSession, the session's last). */
  flush(endSession = false): void {
    this.clearTimer();
    while (this.queue.length > 0) this.commitFirst(endSession && this.queue.length === 1 && this.builder.count === 0);
    if (this.builder.count === 0) return;
    // On failure the batch stays as it is: discard() drops it and reports what it held.
    this.commit(this.builder, this.pendingLines, this.pendingBytes, endSession);
    this.pendingLines = 0;
    this.pendingBytes = 0;
    this.builder.reset();
  }

  /** Lines/bytes received and not committed: the queued batches and the one being filled. */
  pendingCounts(): { lines: number; bytes: number } {
    let lines = this.pendingLines;
    let bytes = this.pendingBytes;
    for (const b of this.queue) {
      lines += b.lines;
      bytes += b.bytes;
    }
    return { lines, bytes };
  }

  /** Drops what could not be stored (the close event says why). */
  discard(): void {
    this.clearTimer();
    for (const b of this.queue) b.pending.builder.reset();
    this.queue = [];
    this.builder.reset();
    this.pendingLines = 0;
    this.pendingBytes = 0;
  }

  receipt(final: boolean): Receipt {
    return {
      type: 'receipt',
      log: `${this.log.vm}/${this.log.name}`,
      session: this.session,
      entries: this.head.entries,
      head: this.head.hash.toString('hex'),
      lines: this.lines,
      bytes: this.bytes,
      final,
    };
  }

  private maybeReceipt(): void {
    const t = this.now();
    if (t - this.lastReceipt.time >= (this.opts.receiptIntervalMs ?? 2000) || this.head.entries - this.lastReceipt.entries >= (this.opts.receiptEntries ?? 50_000)) {
      this.lastReceipt = { time: t, entries: this.head.entries };
      this.opts.onReceipt?.(this.receipt(false));
    }
  }
}

export async function appendSession(opts: AppendOptions): Promise<SessionResult> {
  const { store, vm, name, input } = opts;
  const now = opts.now ?? Date.now;
  const maxLine = opts.maxLine ?? DEFAULT_MAX_LINE;

  const openTime = opts.openTime;
  const opened = store.openSession(
    vm,
    name,
    openTime === undefined ? now : () => openTime,
    { ...opts.openDetails, argument: opts.argument, mode: opts.framed ? 'framed' : 'raw', pid: process.pid, maxLine },
    opts.open,
  );
  let failure: AppendlogError | null = null;
  const fail = (e: unknown): void => {
    if (failure === null) failure = isAppendlogError(e) ? e : new AppendlogError('INTERNAL', String((e as Error)?.message ?? e));
    input.destroy();
  };
  const s = new Session(opts, opened.log, opened.session, { entries: opened.block.firstSeq + opened.block.count - 1, hash: opened.block.head }, fail);
  // Framed mode: acknowledge the session at once, so the sender knows the log
  // VM is writing before it starts the build.
  if (opts.framed) opts.onReceipt?.(s.receipt(false));

  let reason = 'eof' as CloseReason;
  let detail: string | undefined;
  const onAbort = (): void => {
    reason = 'signal';
    detail = 'terminated by signal';
    input.destroy();
  };
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  // A session that sends nothing holds a process and a slot of its VM's
  // session limit: after the idle timeout it is closed, and says so.
  let idleTimer: NodeJS.Timeout | undefined;
  const idleMs = opts.idleTimeoutMs;
  const armIdle = (): void => {
    if (idleMs === undefined) return;
    if (idleTimer !== undefined) clearTimeout(idleTimer);
    idleTimer = setTimeout(() => {
      if (reason !== 'eof' || failure !== null) return;
      reason = 'idle';
      detail = `no input for ${idleMs} ms (the idle timeout); the session was closed`;
      input.destroy();
    }, idleMs);
  };
  armIdle();

  // One scanner per stream; raw mode has just the LINE stream.
  const scanners = new Map<number, LineScanner>();
  const scannerFor = (kind: number): LineScanner => {
    let sc = scanners.get(kind);
    if (sc === undefined) scanners.set(kind, (sc = new LineScanner(maxLine)));
    return sc;
  };
  const emitters = new Map<number, (p: Buffer, f: number) => void>();
  const emitterFor = (kind: number): ((p: Buffer, f: number) => void) => {
    let em = emitters.get(kind);
    if (em === undefined) emitters.set(kind, (em = (p, f) => s.line(kind, f, p)));
    return em;
  };
  const bulks = new Map<number, (chunk: Buffer, pos: number) => number>();
  const bulkFor = (kind: number): ((chunk: Buffer, pos: number) => number) => {
    let b = bulks.get(kind);
    if (b === undefined) bulks.set(kind, (b = s.bulk(kind, maxLine)));
    return b;
  };

  const parser = opts.framed ? new FrameParser() : null;
  let protocolError: AppendlogError | null = null;
  const onFrame = (e: FrameEvent): void => {
    if (e.type === 'data') {
      const kind = STREAM_KIND[e.stream]!;
      scannerFor(kind).push(e.bytes, emitterFor(kind), bulkFor(kind));
    } else {
      // A claim or the end follows all output sent before it: lines still
      // open end here (NOEOL), so the chain keeps the order of arrival.
      for (const [kind, sc] of scanners) sc.end(emitterFor(kind));
      if (e.type === 'json') {
        // Validate, then store the exact bytes received as a claim.
        const claim = parseClaim(e.payload, 'FRAME_INVALID');
        if ((e.frame === FrameType.HELLO) !== (claim.claim === 'hello')) {
          throw new AppendlogError('FRAME_INVALID', e.frame === FrameType.HELLO ? 'the HELLO frame does not hold a hello claim' : 'a CLAIM frame holds a hello claim');
        }
        s.event(Kind.CLAIM, e.payload);
      }
      // END: nothing to store; FrameParser refuses anything after it.
    }
  };

  const raw = scannerFor(Kind.LINE);
  const rawEmit = emitterFor(Kind.LINE);
  const rawBulk = bulkFor(Kind.LINE);
  try {
    await input.run((chunk) => {
      if (failure !== null || protocolError !== null || reason === 'idle') return; // the rest is not read
      armIdle();
      s.time = now();
      if (parser === null) raw.push(chunk, rawEmit, rawBulk);
      else {
        try {
          parser.push(chunk, onFrame);
        } catch (e) {
          protocolError = isAppendlogError(e) ? e : new AppendlogError('FRAME_INVALID', String(e));
          input.destroy();
          return;
        }
      }
      try {
        s.afterInput();
      } catch (e) {
        fail(e);
      }
    });
  } catch (e) {
    // The sender's side broke (disconnect, reset) or we destroyed the stream.
    if (failure === null && reason !== 'signal' && reason !== 'idle') {
      reason = 'error';
      detail = `input failed: ${(e as Error)?.message ?? String(e)}`;
    }
  } finally {
    if (idleTimer !== undefined) clearTimeout(idleTimer);
    opts.signal?.removeEventListener('abort', onAbort);
  }

  /**
   * A session cut by a seal (committed, or in progress: 7.3) has no close of
   * its own (nothing may follow the seal); one seal-cut notice in
   * VM/logvm-events says where it was cut and what was refused (13.5).
   */
  const sealCut = (e: AppendlogError, pending: { lines: number; bytes: number }, unread: string): SessionResult => {
    store.endLive(s.log, s.session);
    if (e instanceof SealRefusal) {
      try {
        store.recordEvents(vm, [{
          notice: 'seal-cut',
          log: `${s.log.vm}/${s.log.name}`,
          session: s.session,
          state: e.state,
          entries: e.entries,
          head: e.head,
          sealIndex: e.sealIndex,
          lines: pending.lines,
          bytes: pending.bytes,
          unread,
        }], now);
      } catch {
        // The refusal stands and the sender is told; only the record is missing.
      }
    }
    return { receipt: null, reason: 'sealed', error: e };
  };

  let dropRest = false;
  if (failure !== null) {
    const f: AppendlogError = failure;
    const pending = s.pendingCounts();
    s.discard();
    if (f.code === 'LOG_SEALED') {
      // Sealed under us: nothing may follow the seal, so there is no close
      // event; the sender is told, and the events log records it.
      return sealCut(f, pending, 'the rest of the input was not read');
    }
    // The refused batch and the rest of the input are not stored; the chain says so.
    dropRest = true;
    const lost = `${pending.lines} received line(s) (${pending.bytes} bytes) of the last batch(es) and the rest of the input were not stored`;
    if (f.code === 'QUOTA_EXCEEDED') {
      reason = 'quota';
      s.quotaExempt = true;
      s.event(Kind.NOTICE, canonicalBytes({ notice: 'quota-exceeded', detail: f.message, unread: lost }));
    } else {
      reason = 'error';
    }
    detail = `${f.message}; ${lost}`;
  }

  s.time = now();
  const refused = protocolError !== null;
  if (parser !== null && protocolError === null && reason === 'eof') {
    try {
      parser.end();
    } catch (e) {
      // The sender went away inside a frame or before END: a broken session.
      protocolError = isAppendlogError(e) ? e : new AppendlogError('FRAME_INVALID', String(e));
    }
  }
  if (protocolError !== null) {
    // Recorded in the chain: what was refused, and whether input went unread.
    s.event(
      Kind.NOTICE,
      canonicalBytes({
        notice: refused ? 'frame-refused' : 'stream-broken',
        detail: protocolError.message,
        unread: refused ? 'the rest of the input was not read' : 'nothing',
      }),
    );
    reason = refused ? 'refused' : 'error';
    detail = protocolError.message;
  }
  // A line cut off by the end of input (or a disconnect) is kept, marked NOEOL.
  if (!dropRest) for (const [kind, sc] of scanners) sc.end(emitterFor(kind));
  const writeClose = (): void => {
    const pending = s.pendingCounts();
    const close: Record<string, string | number> = {
      reason,
      session: s.session,
      lines: s.lines + pending.lines,
      bytes: s.bytes + pending.bytes,
    };
    if (detail !== undefined) close.detail = detail;
    s.event(Kind.SESSION_CLOSE, canonicalBytes(close));
    s.flush(true);
  };
  try {
    try {
      writeClose();
    } catch (e) {
      // The last lines crossed a quota (or the log was sealed meanwhile): they
      // are dropped, and the close goes in on its own, saying so.
      if (!isAppendlogError(e) || (e.code !== 'QUOTA_EXCEEDED' && e.code !== 'LOG_SEALED')) throw e;
      const pending = s.pendingCounts();
      s.discard();
      if (e.code === 'LOG_SEALED') return sealCut(e, pending, reason === 'eof' ? 'nothing' : 'the rest of the input was not read');
      const lost = `${pending.lines} received line(s) (${pending.bytes} bytes) of the last batch(es) were not stored`;
      reason = 'quota';
      detail = `${e.message}; ${lost}`;
      failure ??= e;
      s.quotaExempt = true;
      s.event(Kind.NOTICE, canonicalBytes({ notice: 'quota-exceeded', detail: e.message, unread: lost }));
      writeClose();
    }
  } catch (e) {
    const err = isAppendlogError(e) ? e : new AppendlogError('STORE_ERROR', String(e));
    return { receipt: null, reason, error: failure ?? err };
  }
  const receipt = s.receipt(true);
  return { receipt, reason, error: failure ?? protocolError };
}
