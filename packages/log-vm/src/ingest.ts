import type { Readable } from 'node:stream';
import {
  AppendlogError,
  BlockBuilder,
  DEFAULT_MAX_LINE,
  Kind,
  LineScanner,
  canonicalBytes,
  isAppendlogError,
  type CloseReason,
} from '@appendlog/shared';
import type { LogRow, Store } from './store.js';

/**
 * One `logvm append` session: reads the (attacker-controlled) input to EOF,
 * splits it byte-exactly into line entries and commits them in batches. A
 * batch is committed when it reaches `batchBytes`, and at the latest
 * `commitIntervalMs` after its first line arrived, so a received line is
 * durable within that interval (the loss window on a crash). Memory is bounded
 * by `batchBytes` + `maxLine` + one input chunk whatever the input: the loop
 * does not read more input while a commit runs (better-sqlite3 is synchronous).
 */
export interface AppendOptions {
  store: Store;
  vm: string;
  name: string;
  /** The service argument exactly as received, recorded in the open event. */
  argument: string;
  input: Readable;
  maxLine?: number;
  commitIntervalMs?: number;
  batchBytes?: number;
  now?: () => number;
  /** Aborting ends the session with a clean close event (SIGTERM). */
  signal?: AbortSignal;
}

export interface Receipt {
  type: 'receipt';
  log: string;
  session: number;
  /** Entries in the whole log, including this session's close event. */
  entries: number;
  head: string;
  /** Lines and payload bytes this session stored. */
  lines: number;
  bytes: number;
}

export interface SessionResult {
  receipt: Receipt | null;
  reason: CloseReason;
  error: AppendlogError | null;
}

export async function appendSession(opts: AppendOptions): Promise<SessionResult> {
  const { store, vm, name, input } = opts;
  const now = opts.now ?? Date.now;
  const maxLine = opts.maxLine ?? DEFAULT_MAX_LINE;
  const interval = opts.commitIntervalMs ?? 50;
  const batchBytes = opts.batchBytes ?? 1 << 20;

  const opened = store.openSession(vm, name, now, { argument: opts.argument, mode: 'raw', pid: process.pid });
  const log: LogRow = opened.log;
  const session = opened.session;
  let head = { entries: opened.block.firstSeq, hash: opened.block.head };

  const scanner = new LineScanner(maxLine);
  const builder = new BlockBuilder(Math.min(batchBytes, 1 << 20) + maxLine + 64);
  let lines = 0;
  let bytes = 0;
  let time = now();
  let timer: NodeJS.Timeout | undefined;
  let failure: AppendlogError | null = null;

  const emit = (payload: Buffer, flags: number): void => {
    builder.add(time, session, Kind.LINE, flags, payload);
    lines++;
    bytes += payload.length;
  };

  const flush = (): void => {
    if (timer !== undefined) {
      clearTimeout(timer);
      timer = undefined;
    }
    if (builder.count === 0) return;
    try {
      const block = store.append(log, builder);
      head = { entries: block.firstSeq + block.count - 1, hash: block.head };
    } finally {
      builder.reset();
    }
  };

  const fail = (e: unknown): void => {
    if (failure === null) failure = isAppendlogError(e) ? e : new AppendlogError('INTERNAL', String((e as Error)?.message ?? e));
    input.destroy();
  };

  const onTimer = (): void => {
    timer = undefined;
    try {
      flush();
    } catch (e) {
      fail(e);
    }
  };

  let reason = 'eof' as CloseReason;
  let detail: string | undefined;
  const onAbort = (): void => {
    reason = 'signal';
    detail = 'terminated by signal';
    input.destroy();
  };
  opts.signal?.addEventListener('abort', onAbort, { once: true });

  try {
    for await (const chunk of input as AsyncIterable<Buffer>) {
      time = now();
      scanner.push(chunk, emit);
      if (builder.byteLength >= batchBytes) {
        try {
          flush();
        } catch (e) {
          fail(e);
          break;
        }
      } else if (timer === undefined && builder.count > 0) timer = setTimeout(onTimer, interval);
      if (failure !== null) break;
    }
  } catch (e) {
    // The sender's side broke (disconnect, reset) or we destroyed the stream.
    if (failure === null && reason !== 'signal') {
      reason = 'error';
      detail = `input failed: ${(e as Error)?.message ?? String(e)}`;
    }
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
  }

  if (failure !== null) {
    const f: AppendlogError = failure;
    if (f.code === 'LOG_SEALED') {
      // The log was sealed under us: nothing may follow the seal, so there is
      // no close event; the sender is told.
      builder.reset();
      return { receipt: null, reason: 'sealed', error: f };
    }
    reason = 'error';
    detail = f.message;
  }

  // A line cut off by the end of input (or a disconnect) is kept, marked NOEOL.
  time = now();
  scanner.end(emit);
  const close: Record<string, string | number> = { reason, session, lines, bytes };
  if (detail !== undefined) close.detail = detail;
  try {
    if (failure !== null) builder.reset(); // the failed batch cannot be stored; the event says why
    builder.add(now(), session, Kind.SESSION_CLOSE, 0, canonicalBytes(close));
    flush();
  } catch (e) {
    const err = isAppendlogError(e) ? e : new AppendlogError('STORE_ERROR', String(e));
    return { receipt: null, reason, error: failure ?? err };
  }
  const receipt: Receipt = {
    type: 'receipt',
    log: `${vm}/${name}`,
    session,
    entries: head.entries,
    head: head.hash.toString('hex'),
    lines,
    bytes,
  };
  return { receipt, reason, error: failure };
}
