import { isAppendlogError, type InputRejectCode } from '@appendlog/shared';
import { evaluateSignatures, requireThreshold, type TrustStore } from '@appendlog/shared/signatures';

export interface SourceVerdict {
  signer?: { fingerprint: string; userIds: string[] };
  failure?: { code: InputRejectCode; reason: string };
}

/**
 * THE trust decision for a source file, made in the build VM: the
 * verifier's own signature rules (docs/FORMAT.md 6.4, the trust core shared
 * with verify-chain) with M = 1 over the file's bytes, the keyring as the
 * trusted certificates. There is no "sealed" time for a source, so only the
 * upper bound (not after now) applies to the signature's time. Signatures by
 * other keys are ignored; a keyring key's signature that does not verify is
 * SIGNATURE_INVALID; one refused by policy (expired or revoked key, SHA-1,
 * not a binary signature) is SIGNATURE_REFUSED; none by the keyring at all
 * is SIGNATURE_UNTRUSTED.
 */
export async function judgeSource(data: Uint8Array, signature: { file: string; bytes: Uint8Array }, trust: TrustStore, now = Date.now()): Promise<SourceVerdict> {
  let verdict;
  try {
    verdict = await evaluateSignatures({ manifest: data, sealed: 0, signatures: [signature], trust, now });
  } catch (e) {
    const reason = isAppendlogError(e) ? e.message : 'not an OpenPGP signature';
    return { failure: { code: 'SIGNATURE_MALFORMED', reason } };
  }
  try {
    requireThreshold(verdict, 1, trust);
  } catch (e) {
    const code = isAppendlogError(e) ? e.code : 'INTERNAL';
    const bad = verdict.bad[0];
    if (code === 'SIGNATURE_INVALID' && bad !== undefined) {
      return { failure: { code: 'SIGNATURE_INVALID', reason: `the signature by ${bad.certificate ?? bad.issuer} does not verify: the file differs from what was signed` } };
    }
    if (code === 'SIGNATURE_UNTRUSTED') {
      return { failure: { code: 'SIGNATURE_UNTRUSTED', reason: `signed only by key(s) not in the keyring: ${[...new Set(verdict.results.map((r) => r.issuer))].join(', ')}` } };
    }
    if (code === 'SIGNATURE_MISSING') return { failure: { code: 'SIGNATURE_MALFORMED', reason: 'the signature file holds no signature' } };
    const refused = verdict.results.filter((r) => r.status === 'refused' && r.code !== 'KEY_UNKNOWN');
    return {
      failure: {
        code: 'SIGNATURE_REFUSED',
        reason: refused.length > 0 ? refused.map((r) => `${r.code}: ${r.message}`).join('; ') : (e as Error).message,
      },
    };
  }
  const c = verdict.counted[0]!;
  return { signer: { fingerprint: c.fingerprint, userIds: c.userIds } };
}
