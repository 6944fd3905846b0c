/** docs/FORMAT.md 6.9: the inside of one armor block, read strictly (openpgp.js alone is lenient). */
import { describe, expect, it } from 'vitest';
import { armorBlockWellFormed } from '../src/signatures.js';

const block = (inner: string[]): string => ['-----BEGIN PGP SIGNATURE-----', ...inner, '-----END PGP SIGNATURE-----'].join('\n');

describe('armorBlockWellFormed', () => {
  it('accepts headers, the empty line, base64 lines, an optional CRC line (any value), CRLF and trailing spaces', () => {
    expect(armorBlockWellFormed(block(['', 'qANQR1AB', 'AgMEBQ==', '=Pn5E']))).toBe(true);
    expect(armorBlockWellFormed(block(['', 'qANQR1ABAgMEBQ==']))).toBe(true);
    expect(armorBlockWellFormed(block(['Comment: x', 'Version: 1', '', 'qANQR1ABAgMEBQ==', '=AAAA']))).toBe(true);
    expect(armorBlockWellFormed(block(['', 'qANQR1ABAgMEBQ==  ']).replace(/\n/g, '\r\n'))).toBe(true);
    expect(armorBlockWellFormed(block(['']))).toBe(true); // an empty body: no packets (SIGNATURE_MISSING later)
  });

  it('refuses a missing empty line, a header that is not "Key: value", stray characters, inner padding, a bad length', () => {
    expect(armorBlockWellFormed(block(['qANQR1ABAgMEBQ==']))).toBe(false);
    expect(armorBlockWellFormed(block(['not a header', '', 'qANQR1ABAgMEBQ==']))).toBe(false);
    expect(armorBlockWellFormed(block(['', 'qANQ*R1ABAgMEBQ==']))).toBe(false);
    expect(armorBlockWellFormed(block(['', 'qANQ R1ABAgMEBQ==']))).toBe(false);
    expect(armorBlockWellFormed(block(['', 'qA==R1ABAgMEBQ==']))).toBe(false);
    expect(armorBlockWellFormed(block(['', 'qANQR1ABAgMEBQ=']))).toBe(false);
  });
});
