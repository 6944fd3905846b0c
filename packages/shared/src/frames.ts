import { AppendlogError } from './errors.js';
import { writeU32, readU32 } from './encoding.js';

/**
 * Framed mode (docs/FORMAT.md section 10): what `logsend` speaks to
 * `logvm append`. Selected by the service argument, never by the data: the
 * argument `_framed.NAME` means framed mode for log NAME. A raw log's
 * argument is the bare NAME, and a name can never start with `_`, so no raw
 * log is ever read as frames, and no framed stream as a raw log.
 *
 * A frame is: u8 type, u32 length (big-endian), then `length` bytes.
 *   0x10 HELLO   canonical JSON: {"protocol":"appendlog-frames/1", ...claims}
 *   0x11 CLAIM   canonical JSON: one claim (input, artifact, exit)
 *   0x12 END     empty: the sender is done; nothing may follow
 *   0x20 DATA    untagged output bytes (pipe mode)
 *   0x21 STDOUT  bytes the build wrote to stdout
 *   0x22 STDERR  bytes the build wrote to stderr
 * Data frames may cut lines anywhere; the log VM splits each stream into
 * lines itself. HELLO must come first, exactly once.
 */
export const FRAMED_ARG_PREFIX = '_framed.';
export const FRAME_PROTOCOL = 'appendlog-frames/1';
export const FRAME_HEADER_SIZE = 5;

export const FrameType = {
  HELLO: 0x10,
  CLAIM: 0x11,
  END: 0x12,
  DATA: 0x20,
  STDOUT: 0x21,
  STDERR: 0x22,
} as const;

/** Largest HELLO or CLAIM frame; data frames stream, so any length is fine up to this. */
export const MAX_JSON_FRAME = 64 * 1024;
export const MAX_DATA_FRAME = 1 << 20;

export function encodeFrame(type: number, payload: Uint8Array = new Uint8Array(0)): Buffer {
  const out = Buffer.allocUnsafe(FRAME_HEADER_SIZE + payload.length);
  out[0] = type;
  writeU32(out, 1, payload.length);
  out.set(payload, FRAME_HEADER_SIZE);
  return out;
}

/** Splits a service argument into mode and (still unchecked) log name. */
export function parseServiceArgument(argument: string): { framed: boolean; name: string } {
  return argument.startsWith(FRAMED_ARG_PREFIX)
    ? { framed: true, name: argument.slice(FRAMED_ARG_PREFIX.length) }
    : { framed: false, name: argument };
}

export type FrameEvent =
  | { type: 'data'; stream: number; bytes: Buffer }
  | { type: 'json'; frame: number; payload: Buffer }
  | { type: 'end' };

/**
 * Streaming frame parser for attacker-controlled input. Data frame payloads
 * are handed on piece by piece as they arrive (bounded memory whatever the
 * length); JSON frames are collected up to MAX_JSON_FRAME. Any violation
 * throws a coded FRAME_INVALID error; the caller records it as an event.
 * `bytes` handed to `emit` are only valid during the call.
 */
export class FrameParser {
  private header = Buffer.alloc(FRAME_HEADER_SIZE);
  private headerFill = 0;
  private type = -1;
  private remaining = 0;
  private json: Buffer | null = null;
  private jsonFill = 0;
  private frames = 0;
  private ended = false;

  /** Bytes of the current frame still expected (0 between frames). */
  get inFrame(): { type: number; remaining: number } | null {
    return this.type < 0 && this.headerFill === 0 ? null : { type: this.type, remaining: this.remaining };
  }

  push(chunk: Buffer, emit: (e: FrameEvent) => void): void {
    let pos = 0;
    while (pos < chunk.length) {
      if (this.type < 0) {
        if (this.ended) throw new AppendlogError('FRAME_INVALID', 'data after the END frame');
        const n = Math.min(FRAME_HEADER_SIZE - this.headerFill, chunk.length - pos);
        chunk.copy(this.header, this.headerFill, pos, pos + n);
        this.headerFill += n;
        pos += n;
        if (this.headerFill < FRAME_HEADER_SIZE) return;
        this.startFrame(emit);
        continue;
      }
      const n = Math.min(this.remaining, chunk.length - pos);
      if (this.json !== null) {
        chunk.copy(this.json, this.jsonFill, pos, pos + n);
        this.jsonFill += n;
      } else if (n > 0) {
        emit({ type: 'data', stream: this.type, bytes: chunk.subarray(pos, pos + n) });
      }
      pos += n;
      this.remaining -= n;
      if (this.remaining === 0) this.finishFrame(emit);
    }
  }

  private startFrame(emit: (e: FrameEvent) => void): void {
    const type = this.header[0]!;
    const length = readU32(this.header, 1);
    this.headerFill = 0;
    const first = this.frames === 0;
    this.frames++;
    if (first && type !== FrameType.HELLO) {
      throw new AppendlogError('FRAME_INVALID', `the first frame must be HELLO, got type 0x${type.toString(16)}`);
    }
    if (!first && type === FrameType.HELLO) throw new AppendlogError('FRAME_INVALID', 'a second HELLO frame');
    switch (type) {
      case FrameType.HELLO:
      case FrameType.CLAIM:
        if (length === 0 || length > MAX_JSON_FRAME) {
          throw new AppendlogError('FRAME_INVALID', `a ${type === FrameType.HELLO ? 'HELLO' : 'CLAIM'} frame of ${length} bytes (1 to ${MAX_JSON_FRAME} allowed)`);
        }
        this.json = Buffer.allocUnsafe(length);
        this.jsonFill = 0;
        break;
      case FrameType.END:
        if (length !== 0) throw new AppendlogError('FRAME_INVALID', `an END frame of ${length} bytes (0 allowed)`);
        break;
      case FrameType.DATA:
      case FrameType.STDOUT:
      case FrameType.STDERR:
        if (length > MAX_DATA_FRAME) throw new AppendlogError('FRAME_INVALID', `a data frame of ${length} bytes (at most ${MAX_DATA_FRAME})`);
        break;
      default:
        throw new AppendlogError('FRAME_INVALID', `unknown frame type 0x${type.toString(16)} (${length} bytes)`);
    }
    this.type = type;
    this.remaining = length;
    if (length === 0) this.finishFrame(emit);
  }

  private finishFrame(emit: (e: FrameEvent) => void): void {
    const type = this.type;
    this.type = -1;
    if (type === FrameType.END) {
      this.ended = true;
      emit({ type: 'end' });
    } else if (this.json !== null) {
      const payload = this.json;
      this.json = null;
      emit({ type: 'json', frame: type, payload });
    }
  }

  /** End of input: throws if it came inside a frame or before END. */
  end(): void {
    if (this.type >= 0 || this.headerFill > 0) {
      const what = this.type >= 0 ? `${this.remaining} bytes short of the end of a frame of type 0x${this.type.toString(16)}` : 'inside a frame header';
      throw new AppendlogError('FRAME_INVALID', `the stream ended ${what}`);
    }
    if (!this.ended) throw new AppendlogError('FRAME_INVALID', 'the stream ended without an END frame');
  }
}
