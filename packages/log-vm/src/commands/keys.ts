import { readFileSync } from 'node:fs';
import { AppendlogError } from '@appendlog/shared';
import { MAX_ARMORED_BYTES, loadTrustedKeys, type TrustedKey } from '@appendlog/shared/signatures';

/** Trust material first: read every --key file once, into plain data. */
export async function loadKeys(paths: string[]): Promise<TrustedKey[]> {
  const files = paths.map((p) => {
    let armored: string;
    try {
      const buf = readFileSync(p);
      if (buf.length > MAX_ARMORED_BYTES) throw new Error('file too large');
      armored = buf.toString('utf8');
    } catch (e) {
      throw new AppendlogError('KEY_INVALID', `cannot read key ${p}: ${(e as Error).message}`);
    }
    return { name: p, armored };
  });
  return loadTrustedKeys(files);
}
