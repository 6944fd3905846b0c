/**
 * FrameParser (framed mode, docs/FORMAT.md section 10) against arbitrary
 * bytes from a hostile build VM, cut into arbitrary reads:
 *   - it never throws anything but a coded AppendlogError FRAME_INVALID;
 *   - what it reports (events up to the first error, and that error) does
 *     not depend on how the bytes were cut into reads;
 *   - a valid frame sequence yields exactly its frames, whatever the cuts.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AppendlogError, FrameParser, FrameType, MAX_DATA_FRAME, MAX_JSON_FRAME, encodeFrame, type FrameEvent } from '../src/index.js';
import { split } from './support.js';

/** A normalized event: data of one stream merged across reads. */
type Ev = { type: 'data'; stream: number; hex: string } | { type: 'json'; frame: number; hex: string } | { type: 'end' };

interface Outcome {
  events: Ev[];
  /** The first error's code and message, or null if none (end() included). */
  error: { code: string; message: string } | null;
  /** Anything thrown that is not a coded FRAME_INVALID. */
  uncoded: unknown[];
}

function run(parts: readonly Uint8Array[], callEnd = true): Outcome {
  const p = new FrameParser();
  const events: Ev[] = [];
  const uncoded: unknown[] = [];
  const emit = (e: FrameEvent): void => {
    // Payloads are valid only during the call: copy.
    if (e.type === 'data') {
      const last = events[events.length - 1];
      const hex = Buffer.from(e.bytes).toString('hex');
      if (last?.type === 'data' && last.stream === e.stream) last.hex += hex;
      else events.push({ type: 'data', stream: e.stream, hex });
    } else if (e.type === 'json') events.push({ type: 'json', frame: e.frame, hex: Buffer.from(e.payload).toString('hex') });
    else events.push({ type: 'end' });
  };
  const attempt = (f: () => void): { code: string; message: string } | null => {
    try {
      f();
      return null;
    } catch (e) {
      if (!(e instanceof AppendlogError) || e.code !== 'FRAME_INVALID') uncoded.push(e);
      return { code: (e as AppendlogError).code ?? 'UNCODED', message: String((e as Error).message) };
    }
  };
  for (const part of parts) {
    const err = attempt(() => p.push(Buffer.from(part.buffer, part.byteOffset, part.byteLength), emit));
    if (err) return { events, error: err, uncoded };
  }
  return { events, error: callEnd ? attempt(() => p.end()) : null, uncoded };
}

const TYPES = [FrameType.HELLO, FrameType.CLAIM, FrameType.END, FrameType.DATA, FrameType.STDOUT, FrameType.STDERR];

/** A frame header with a type and declared length that may lie about what follows. */
const header = fc
  .record({
    type: fc.oneof(fc.constantFrom(...TYPES), fc.integer({ min: 0, max: 255 })),
    length: fc.oneof(
      fc.integer({ min: 0, max: 40 }),
      fc.constantFrom(0, 1, MAX_JSON_FRAME, MAX_JSON_FRAME + 1, MAX_DATA_FRAME, MAX_DATA_FRAME + 1, 0xffffffff),
      fc.integer({ min: 0, max: 0xffffffff }),
    ),
  })
  .map(({ type, length }) => {
    const h = Buffer.alloc(5);
    h[0] = type;
    h.writeUInt32BE(length >>> 0, 1);
    return Uint8Array.from(h);
  });

/** Hostile byte streams: pure noise, or frame-shaped pieces (headers, bodies, whole frames) in any order. */
const hostile = fc.oneof(
  fc.uint8Array({ maxLength: 300 }),
  fc
    .array(
      fc.oneof(
        header,
        fc.uint8Array({ maxLength: 40 }),
        fc.uint8Array({ maxLength: 40 }).map((b) => Uint8Array.from(encodeFrame(FrameType.STDOUT, b))),
        fc.constant(Uint8Array.from(encodeFrame(FrameType.HELLO, Buffer.from('{"claim":"hello"}')))),
        fc.constant(Uint8Array.from(encodeFrame(FrameType.END))),
      ),
      { maxLength: 12 },
    )
    .map((parts) => Uint8Array.from(Buffer.concat(parts.map((p) => Buffer.from(p))))),
);
const cuts = fc.array(fc.nat(), { maxLength: 30 });

const RUNS = { numRuns: 2000 };

describe('FrameParser on arbitrary bytes in arbitrary reads', () => {
  it('never throws anything but a coded FRAME_INVALID error (push or end)', () => {
    fc.assert(
      fc.property(hostile, cuts, (bytes, c) => {
        expect(run(split(bytes, c)).uncoded).toEqual([]);
      }),
      RUNS,
    );
  });

  it('reports the same events and the same first error however the bytes are cut', () => {
    fc.assert(
      fc.property(hostile, cuts, cuts, (bytes, c1, c2) => {
        const whole = run([bytes]);
        expect(run(split(bytes, c1))).toEqual(whole);
        expect(run(split(bytes, c2))).toEqual(whole);
      }),
      RUNS,
    );
  });

  it('byte by byte gives the same outcome as in one read', () => {
    fc.assert(
      fc.property(hostile, (bytes) => {
        const single = [...bytes].map((b) => Uint8Array.of(b));
        expect(run(single)).toEqual(run([bytes]));
      }),
      { numRuns: 500 },
    );
  });
});

describe('FrameParser on valid frame sequences in arbitrary reads', () => {
  const dataFrame = fc.record({
    type: fc.constantFrom(FrameType.DATA, FrameType.STDOUT, FrameType.STDERR),
    payload: fc.uint8Array({ maxLength: 200 }),
  });
  const claimFrame = fc.record({ type: fc.constant(FrameType.CLAIM), payload: fc.uint8Array({ minLength: 1, maxLength: 100 }) });
  const sequence = fc.record({
    hello: fc.uint8Array({ minLength: 1, maxLength: 100 }),
    body: fc.array(fc.oneof({ arbitrary: dataFrame, weight: 4 }, { arbitrary: claimFrame, weight: 1 }), { maxLength: 20 }),
  });

  /** The events a correct parser must report for the sequence. */
  function expected(s: { hello: Uint8Array; body: Array<{ type: number; payload: Uint8Array }> }): Ev[] {
    const out: Ev[] = [{ type: 'json', frame: FrameType.HELLO, hex: Buffer.from(s.hello).toString('hex') }];
    for (const f of s.body) {
      if (f.type === FrameType.CLAIM) out.push({ type: 'json', frame: FrameType.CLAIM, hex: Buffer.from(f.payload).toString('hex') });
      else if (f.payload.length > 0) {
        const last = out[out.length - 1]!;
        const hex = Buffer.from(f.payload).toString('hex');
        if (last.type === 'data' && last.stream === f.type) last.hex += hex;
        else out.push({ type: 'data', stream: f.type, hex });
      }
    }
    out.push({ type: 'end' });
    return out;
  }

  it('yields exactly the frames sent, and end() accepts the stream', () => {
    fc.assert(
      fc.property(sequence, cuts, (s, c) => {
        const bytes = Buffer.concat([
          encodeFrame(FrameType.HELLO, s.hello),
          ...s.body.map((f) => encodeFrame(f.type, f.payload)),
          encodeFrame(FrameType.END),
        ]);
        expect(run(split(bytes, c))).toEqual({ events: expected(s), error: null, uncoded: [] });
      }),
      RUNS,
    );
  });

  it('accepts a data frame of exactly MAX_DATA_FRAME bytes and a claim of exactly MAX_JSON_FRAME bytes, refuses one byte more', () => {
    const hello = encodeFrame(FrameType.HELLO, Buffer.from('{}'));
    const ok = run([hello, encodeFrame(FrameType.STDOUT, Buffer.alloc(MAX_DATA_FRAME, 0x61)), encodeFrame(FrameType.CLAIM, Buffer.alloc(MAX_JSON_FRAME, 0x20)), encodeFrame(FrameType.END)]);
    expect(ok.error).toBeNull();
    const bigData = run([hello, encodeFrame(FrameType.STDOUT, Buffer.alloc(MAX_DATA_FRAME + 1))]);
    expect(bigData.error?.code).toBe('FRAME_INVALID');
    const bigClaim = run([hello, encodeFrame(FrameType.CLAIM, Buffer.alloc(MAX_JSON_FRAME + 1))]);
    expect(bigClaim.error?.code).toBe('FRAME_INVALID');
    expect([...ok.uncoded, ...bigData.uncoded, ...bigClaim.uncoded]).toEqual([]);
  });
});
