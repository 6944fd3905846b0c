import { readFileSync } from 'node:fs';
import { AppendlogError, parseStrictJson } from '@appendlog/shared';
import type { Checkpoint } from './bundle-io.js';

const MAX_RECEIPTS_FILE = 64 << 20;

/**
 * Reads receipt files kept by `logsend --receipts` (JSON lines from the log
 * VM) into checkpoints for the verifier. Every receipt must name the log
 * being verified.
 */
export function readReceipts(paths: string[], log: string): Checkpoint[] {
  const out: Checkpoint[] = [];
  for (const path of paths) {
    let text: string;
    try {
      const buf = readFileSync(path);
      if (buf.length > MAX_RECEIPTS_FILE) throw new Error('file too large');
      text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(buf); // a BOM stays, and is refused (5.1)
    } catch (e) {
      throw new AppendlogError('USAGE', `cannot read receipts ${path}: ${(e as Error).message}`); // includes text that is not UTF-8
    }
    text.split('\n').forEach((line, i) => {
      if (line.trim() === '') return;
      const label = `${path}:${i + 1}`;
      let r: Record<string, unknown>;
      try {
        r = parseStrictJson(line) as Record<string, unknown>;
      } catch (e) {
        throw new AppendlogError('USAGE', `${label}: not a JSON receipt (${(e as Error).message})`);
      }
      if (r === null || typeof r !== 'object' || r.type !== 'receipt') throw new AppendlogError('USAGE', `${label}: not a receipt`);
      if (typeof r.entries !== 'number' || !Number.isSafeInteger(r.entries) || r.entries < 1 || typeof r.head !== 'string' || !/^[0-9a-f]{64}$/.test(r.head)) {
        throw new AppendlogError('USAGE', `${label}: receipt without valid entries/head`);
      }
      if (r.log !== log) throw new AppendlogError('RECEIPT_MISMATCH', `${label}: the receipt is for log ${String(r.log)}, not ${log}`);
      out.push({ seq: r.entries, head: Buffer.from(r.head, 'hex'), label });
    });
  }
  if (out.length === 0) throw new AppendlogError('USAGE', 'the receipts file(s) hold no receipt');
  return out;
}
