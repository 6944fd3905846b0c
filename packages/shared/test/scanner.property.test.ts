/**
 * LineScanner properties over arbitrary bytes, arbitrary read boundaries and
 * maxLine in 1..64: the stored entries are a lossless, bounded, chunking-
 * independent transcription of the input.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Flag, LineScanner } from '../src/index.js';
import { split } from './support.js';

interface Line {
  payload: Buffer;
  flags: number;
}

function scan(maxLine: number, parts: readonly Uint8Array[]): Line[] {
  const scanner = new LineScanner(maxLine);
  const out: Line[] = [];
  // The payload may point into the scanner's buffer: copy it during the call.
  const emit = (payload: Buffer, flags: number): void => {
    out.push({ payload: Buffer.from(payload), flags });
  };
  for (const p of parts) scanner.push(Buffer.from(p.buffer, p.byteOffset, p.byteLength), emit);
  scanner.end(emit);
  return out;
}

/**
 * Two input shapes: rich in newlines (many short and empty lines) and nearly
 * free of them (long lines, so CONT chunks at every maxLine).
 */
const byteArray = (newlineWeight: number) =>
  fc
    .array(
      fc.oneof(
        { arbitrary: fc.constant(0x0a), weight: newlineWeight },
        { arbitrary: fc.integer({ min: 0, max: 255 }), weight: 20 },
      ),
      { maxLength: 400 },
    )
    .map((a) => Uint8Array.from(a));
const bytes = fc.oneof(byteArray(5), byteArray(0), fc.uint8Array({ maxLength: 400 }));
const cuts = fc.array(fc.nat(), { maxLength: 40 });
const maxLine = fc.integer({ min: 1, max: 64 });

/** Reconstructs the input: a newline after every entry that ended its line. */
function reconstruct(lines: readonly Line[]): Buffer {
  const parts: Buffer[] = [];
  for (const l of lines) {
    parts.push(l.payload);
    if ((l.flags & (Flag.CONT | Flag.NOEOL)) === 0) parts.push(Buffer.from('\n'));
  }
  return Buffer.concat(parts);
}

const RUNS = { numRuns: 1000 };

describe('LineScanner on arbitrary input', () => {
  it('reconstructs the input exactly from the entries (payload + newline unless CONT or NOEOL)', () => {
    fc.assert(
      fc.property(bytes, cuts, maxLine, (input, c, max) => {
        expect(reconstruct(scan(max, split(input, c))).toString('hex')).toBe(Buffer.from(input).toString('hex'));
      }),
      RUNS,
    );
  });

  it('emits identical entries whatever the chunking', () => {
    fc.assert(
      fc.property(bytes, cuts, maxLine, (input, c, max) => {
        const whole = scan(max, [input]);
        expect(scan(max, split(input, c))).toEqual(whole);
        expect(scan(max, split(input, Array.from({ length: input.length }, (_, i) => i)))).toEqual(whole);
      }),
      RUNS,
    );
  });

  it('never emits a payload longer than maxLine, and CONT chunks are exactly maxLine', () => {
    fc.assert(
      fc.property(bytes, cuts, maxLine, (input, c, max) => {
        for (const l of scan(max, split(input, c))) {
          expect(l.payload.length).toBeLessThanOrEqual(max);
          if (l.flags === Flag.CONT) expect(l.payload.length).toBe(max);
        }
      }),
      RUNS,
    );
  });

  it('puts NOEOL only on the last entry, and only when the input does not end with a newline', () => {
    fc.assert(
      fc.property(bytes, cuts, maxLine, (input, c, max) => {
        const lines = scan(max, split(input, c));
        lines.forEach((l, i) => {
          if (i < lines.length - 1) expect(l.flags & Flag.NOEOL).toBe(0);
        });
        const last = lines.at(-1);
        const endsOpen = input.length > 0 && input[input.length - 1] !== 0x0a;
        expect(last !== undefined && (last.flags & Flag.NOEOL) !== 0).toBe(endsOpen);
      }),
      RUNS,
    );
  });

  it('uses only the flags 0, CONT and NOEOL, and never puts a newline in a payload', () => {
    fc.assert(
      fc.property(bytes, cuts, maxLine, (input, c, max) => {
        for (const l of scan(max, split(input, c))) {
          expect([0, Flag.CONT, Flag.NOEOL]).toContain(l.flags);
          expect(l.payload.includes(0x0a)).toBe(false);
        }
      }),
      RUNS,
    );
  });

  it('refuses a maxLine that is not a positive integer', () => {
    for (const bad of [0, -1, 1.5, Number.NaN]) expect(() => new LineScanner(bad)).toThrow(RangeError);
  });
});
