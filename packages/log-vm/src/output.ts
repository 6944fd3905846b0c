import type { Writable } from 'node:stream';
import { AppendlogError, escapeText, isAppendlogError } from '@appendlog/shared';

/** Writes to a stream with backpressure: resolves once the data is accepted. */
export async function writeAll(out: Writable, data: string | Uint8Array): Promise<void> {
  if (out.write(data)) return;
  await new Promise<void>((resolve, reject) => {
    const done = (): void => {
      out.off('drain', done);
      out.off('error', onError);
      out.off('close', done);
      resolve();
    };
    const onError = (e: Error): void => {
      out.off('drain', done);
      out.off('close', done);
      reject(e);
    };
    out.once('drain', done);
    out.once('close', done);
    out.once('error', onError);
  });
}

/** Buffers small writes into larger ones and respects backpressure. */
export class BufferedWriter {
  private parts: Array<string | Uint8Array> = [];
  private size = 0;
  constructor(
    private readonly out: Writable,
    private readonly limit = 64 * 1024,
  ) {}

  async write(data: string | Uint8Array): Promise<void> {
    this.parts.push(data);
    this.size += data.length;
    if (this.size >= this.limit) await this.flush();
  }

  async flush(): Promise<void> {
    if (this.parts.length === 0) return;
    const chunk = Buffer.concat(this.parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'utf8') : p)));
    this.parts = [];
    this.size = 0;
    await writeAll(this.out, chunk);
  }
}

export function toCodedError(e: unknown): AppendlogError {
  if (isAppendlogError(e)) return e;
  return new AppendlogError('INTERNAL', `internal error: ${(e as Error)?.stack ?? String(e)}`);
}

/** Reports a failure on stderr and sets the documented exit code. */
export function reportError(e: unknown, prefix = 'logvm'): AppendlogError {
  const err = toCodedError(e);
  // Messages can carry bundle, store or key text: one escaper for all of it.
  process.stderr.write(`${prefix}: ${err.code}: ${escapeText(err.message)}\n`);
  process.exitCode = err.exitCode;
  return err;
}

export function isoTime(ms: number | null | undefined): string {
  return ms === null || ms === undefined ? '-' : new Date(ms).toISOString();
}

/**
 * A repeatable option's values. Options are not declared `array` (which would
 * swallow a positional argument after them); yargs collects repeats.
 */
export function asList(v: string | string[] | undefined): string[] {
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

/**
 * A reader that stops early (`logvm show X | head`, quitting `less`) closes
 * the pipe: that is the reader's choice, not a failure, so the command ends
 * quietly with status 0 instead of an EPIPE stack trace. Node ignores
 * SIGPIPE, so the closed pipe arrives as an EPIPE error on the stream; this
 * listener is registered first and ends the process before anything else
 * sees it. Not for `logvm append` and `logvm buildlog`: a service must still close its session
 * when its caller goes away, and handles that itself.
 */
export function quietOnClosedPipe(): void {
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'EPIPE') process.exit(0);
      try {
        process.stderr.write(`logvm: cannot write output: ${e.message}\n`);
      } finally {
        process.exit(1);
      }
    });
  }
}
