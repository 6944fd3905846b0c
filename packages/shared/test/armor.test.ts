/**
 * docs/FORMAT.md 6.9: the shape of a bundle signature file, checked before
 * openpgp.js reads it. Uses a real signature made by openpgp.js.
 */
import * as openpgp from 'openpgp';
import { beforeAll, describe, expect, it } from 'vitest';
import { checkSignatureFile } from '../src/armor.js';
import type { AppendlogError } from '../src/errors.js';

let armored = '';
let packet = new Uint8Array();

beforeAll(async () => {
  const { privateKey } = await openpgp.generateKey({ type: 'ecc', curve: 'ed25519Legacy', userIDs: [{ name: 'a' }], format: 'object' });
  const message = await openpgp.createMessage({ binary: new TextEncoder().encode('manifest\n') });
  armored = await openpgp.sign({ message, signingKeys: privateKey, detached: true, format: 'armored' });
  packet = new Uint8Array((await openpgp.readSignature({ armoredSignature: armored })).packets.write());
});

const code = (text: string): string => {
  try {
    checkSignatureFile(text, 'signatures/01.asc');
    return 'OK';
  } catch (e) {
    return (e as AppendlogError).code;
  }
};
const arm = (bytes: Uint8Array): string => openpgp.armor(openpgp.enums.armor.signature, bytes);
const MARKER = Uint8Array.of(0xa8, 0x03, 0x50, 0x47, 0x50);

describe('checkSignatureFile', () => {
  it('accepts the armor openpgp.js writes, with CRLF line ends, headers and blank lines around it', () => {
    expect(code(armored)).toBe('OK');
    expect(code(armored.replace(/\n/g, '\r\n'))).toBe('OK');
    expect(code(armored.replace('-----\n', '-----\nComment: made by hand\nVersion: x\n'))).toBe('OK');
    expect(code(`\n\n${armored}\n  \n`)).toBe('OK');
  });

  it('does not check the CRC line: a wrong or missing CRC is accepted (RFC 9580 section 6.1)', () => {
    const lines = armored.split('\n');
    const withCrc = lines.some((l) => /^=[A-Za-z0-9+/]{4}$/.test(l));
    const bad = withCrc ? lines.map((l) => (/^=[A-Za-z0-9+/]{4}$/.test(l) ? '=AAAA' : l)) : [...lines.slice(0, -2), '=AAAA', ...lines.slice(-2)];
    expect(code(bad.join('\n'))).toBe('OK');
    expect(code(lines.filter((l) => !/^=[A-Za-z0-9+/]{4}$/.test(l)).join('\n'))).toBe('OK');
  });

  it('counts the Signature packets and skips Marker packets', () => {
    expect(checkSignatureFile(arm(new Uint8Array([...MARKER, ...packet, ...packet])), 'f')).toBe(2);
  });

  it('an armor with no packet, or only a Marker packet, is SIGNATURE_MISSING', () => {
    expect(code(arm(new Uint8Array()))).toBe('SIGNATURE_MISSING');
    expect(code(arm(MARKER))).toBe('SIGNATURE_MISSING');
  });

  it('refuses (MALFORMED_BUNDLE) two armor blocks, text before or after the armor, and another armor type', () => {
    expect(code(armored + armored)).toBe('MALFORMED_BUNDLE');
    expect(code(`signed by alice\n${armored}`)).toBe('MALFORMED_BUNDLE');
    expect(code(`${armored}trailing words\n`)).toBe('MALFORMED_BUNDLE');
    expect(code(armored.replace(/PGP SIGNATURE/g, 'PGP MESSAGE'))).toBe('MALFORMED_BUNDLE');
    expect(code('\ufeff' + armored)).toBe('MALFORMED_BUNDLE');
  });

  it('refuses packets other than Signature and Marker (a Literal Data packet)', () => {
    const literal = Uint8Array.of(0xcb, 0x06, 0x62, 0x00, 0x00, 0x00, 0x00, 0x00, 0x78);
    expect(code(arm(new Uint8Array([...packet, ...literal])))).toBe('MALFORMED_BUNDLE');
  });

  it('refuses a truncated packet, a body that is not base64, and a missing blank line or END line', () => {
    expect(code(arm(packet.subarray(0, packet.length - 3)))).toBe('MALFORMED_BUNDLE');
    const lines = armored.split('\n');
    const body = lines.findIndex((l) => l === '') + 1;
    expect(code(lines.map((l, i) => (i === body ? `${l.slice(0, 10)}*${l.slice(11)}` : l)).join('\n'))).toBe('MALFORMED_BUNDLE');
    expect(code(lines.filter((_l, i) => i !== body - 1).join('\n'))).toBe('MALFORMED_BUNDLE');
    expect(code(lines.filter((l) => !l.startsWith('-----END')).join('\n'))).toBe('MALFORMED_BUNDLE');
  });
});
