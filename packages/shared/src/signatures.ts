/**
 * The one module that talks to openpgp.js. Callers get plain data or a coded
 * AppendlogError. Pure: keys and signatures come in as text, nothing is read.
 */
import * as openpgp from 'openpgp';
import { AppendlogError } from './errors.js';

export const MAX_ARMORED_BYTES = 1 << 20;
/**
 * Bounds on what a bundle may make a verifier do: an armored detached
 * signature is well under 4 KiB (RSA-4096 included), and M-of-N needs a
 * handful. Identical packets count once.
 */
export const MAX_SIGNATURE_FILES = 64;
export const MAX_SIGNATURE_FILE_BYTES = 64 * 1024;
export const MAX_SIGNATURE_PACKETS = 64;

export interface TrustedKey {
  /** Primary key fingerprint, upper-case hex. */
  fingerprint: string;
  userIds: string[];
  /** Key IDs (primary and subkeys), lower-case hex, for matching issuers. */
  keyIds: string[];
  key: openpgp.Key;
}

/** Reads armored public keys (a file may hold several); private keys are reduced to public. */
export async function loadTrustedKeys(files: Array<{ name: string; armored: string }>): Promise<TrustedKey[]> {
  const byFpr = new Map<string, TrustedKey>();
  for (const f of files) {
    if (f.armored.length > MAX_ARMORED_BYTES) throw new AppendlogError('KEY_INVALID', `${f.name}: too large for a key file`);
    let keys: openpgp.Key[];
    try {
      keys = await openpgp.readKeys({ armoredKeys: f.armored });
    } catch (e) {
      throw new AppendlogError('KEY_INVALID', `${f.name}: not an armored OpenPGP public key (${(e as Error).message})`);
    }
    for (const k of keys) {
      const pub = k.isPrivate() ? k.toPublic() : k;
      const fingerprint = pub.getFingerprint().toUpperCase();
      byFpr.set(fingerprint, {
        fingerprint,
        userIds: pub.getUserIDs(),
        keyIds: pub.getKeyIDs().map((id) => id.toHex().toLowerCase()),
        key: pub,
      });
    }
  }
  return [...byFpr.values()];
}

export interface SignatureCheck {
  /** Signature file name, e.g. signatures/01.asc. */
  file: string;
  issuer: string;
  status: 'valid' | 'untrusted';
  fingerprint?: string;
  userIds?: string[];
  created?: string;
}

export interface SignatureReport {
  valid: SignatureCheck[];
  untrusted: SignatureCheck[];
  /** Distinct trusted keys with a valid signature. */
  distinctKeys: number;
  threshold: number;
}

/**
 * Checks detached signatures over `data` against trusted keys, requiring
 * valid signatures by at least `threshold` distinct keys (M of N). A
 * signature by a trusted key that does not verify fails the whole check:
 * the data was changed after that key signed it. Each `verified` promise is
 * awaited; that is where openpgp.js reports a bad signature.
 */
export async function checkSignatures(
  data: Uint8Array,
  signatures: Array<{ file: string; armored: string }>,
  trusted: TrustedKey[],
  threshold: number,
): Promise<SignatureReport> {
  if (!Number.isSafeInteger(threshold) || threshold < 1) throw new AppendlogError('USAGE', 'threshold must be at least 1');
  if (threshold > trusted.length) {
    throw new AppendlogError('USAGE', `threshold ${threshold} is more than the ${trusted.length} trusted key(s) given`);
  }
  if (signatures.length === 0) throw new AppendlogError('SIGNATURE_MISSING', 'the bundle has no signature over manifest.json');
  const message = await openpgp.createMessage({ binary: data });
  const valid: SignatureCheck[] = [];
  const untrusted: SignatureCheck[] = [];
  const seen = new Set<string>();
  const seenPackets = new Set<string>();
  for (const s of signatures) {
    if (s.armored.length > MAX_SIGNATURE_FILE_BYTES) throw new AppendlogError('MALFORMED_BUNDLE', `${s.file}: too large for a signature`);
    let signature: openpgp.Signature;
    try {
      signature = await openpgp.readSignature({ armoredSignature: s.armored });
    } catch (e) {
      throw new AppendlogError('MALFORMED_BUNDLE', `${s.file}: not an armored OpenPGP signature (${(e as Error).message})`);
    }
    if (signature.packets.length === 0) throw new AppendlogError('SIGNATURE_MISSING', `${s.file}: holds no signature`);
    for (const packet of signature.packets) {
      const bytes = Buffer.from(packet.write()).toString('base64');
      if (seenPackets.has(bytes)) continue; // a copy proves nothing more
      seenPackets.add(bytes);
      if (seenPackets.size > MAX_SIGNATURE_PACKETS) {
        throw new AppendlogError('MALFORMED_BUNDLE', `more than ${MAX_SIGNATURE_PACKETS} distinct signatures in the bundle`);
      }
      const issuer = packet.issuerKeyID.toHex().toLowerCase();
      const key = trusted.find((k) => k.keyIds.includes(issuer));
      if (key === undefined) {
        untrusted.push({ file: s.file, issuer, status: 'untrusted' });
        continue;
      }
      const one = new openpgp.Signature(new openpgp.PacketList());
      one.packets.push(packet);
      let ok = false;
      let reason = '';
      try {
        const res = await openpgp.verify({ message, signature: one, verificationKeys: [key.key], expectSigned: true, format: 'binary' });
        ok = (await res.signatures[0]?.verified) === true;
      } catch (e) {
        reason = (e as Error).message;
      }
      if (!ok) {
        throw new AppendlogError(
          'SIGNATURE_INVALID',
          `${s.file}: the signature by ${key.fingerprint} (${key.userIds.join(', ')}) does not verify over manifest.json: ` +
            `the manifest was changed after signing, or the signature is damaged (${reason})`,
        );
      }
      const check: SignatureCheck = {
        file: s.file,
        issuer,
        status: 'valid',
        fingerprint: key.fingerprint,
        userIds: key.userIds,
        created: packet.created?.toISOString(),
      };
      valid.push(check);
      seen.add(key.fingerprint);
    }
  }
  const report = { valid, untrusted, distinctKeys: seen.size, threshold };
  if (seen.size >= threshold) return report;
  if (seen.size === 0 && untrusted.length > 0) {
    throw new AppendlogError(
      'SIGNATURE_UNTRUSTED',
      `no signature by a trusted key: signed only by unknown key(s) ${[...new Set(untrusted.map((u) => u.issuer.toUpperCase()))].join(', ')}`,
    );
  }
  throw new AppendlogError(
    'THRESHOLD_NOT_MET',
    `valid signatures by ${seen.size} distinct trusted key(s), ${threshold} required` +
      (untrusted.length > 0 ? `; ${untrusted.length} signature(s) by unknown keys ignored` : ''),
  );
}

/** Parses an armored detached signature just to name its issuer(s); throws if it is not one. */
export async function signatureIssuers(armored: string): Promise<string[]> {
  try {
    const sig = await openpgp.readSignature({ armoredSignature: armored });
    if (sig.packets.length === 0) throw new Error('no signature packet');
    return sig.packets.map((p) => p.issuerKeyID.toHex().toUpperCase());
  } catch (e) {
    throw new AppendlogError('SIGNER_FAILED', `the signer's output is not an armored OpenPGP signature (${(e as Error).message})`);
  }
}

/**
 * Signs `data` with an armored private key: a detached, armored, binary-mode
 * signature, as `gpg -a -b` makes, so `gpg --verify` accepts it.
 */
export async function signDetached(data: Uint8Array, armoredKey: string, passphrase?: string): Promise<string> {
  let key: openpgp.PrivateKey;
  try {
    key = await openpgp.readPrivateKey({ armoredKey });
  } catch (e) {
    throw new AppendlogError('KEY_INVALID', `not an armored OpenPGP private key (${(e as Error).message})`);
  }
  if (!key.isDecrypted()) {
    if (passphrase === undefined) throw new AppendlogError('KEY_INVALID', 'the private key is encrypted and no passphrase was given');
    try {
      key = await openpgp.decryptKey({ privateKey: key, passphrase });
    } catch (e) {
      throw new AppendlogError('KEY_INVALID', `cannot unlock the private key (${(e as Error).message})`);
    }
  }
  try {
    const message = await openpgp.createMessage({ binary: data });
    return await openpgp.sign({ message, signingKeys: key, detached: true, format: 'armored' });
  } catch (e) {
    throw new AppendlogError('SIGNER_FAILED', `openpgp.js could not sign (${(e as Error).message})`);
  }
}
