/**
 * The one module that talks to openpgp.js. Callers get plain data or a coded
 * AppendlogError. Pure: keys and signatures come in as bytes, nothing is read,
 * and the time of verification is a parameter.
 *
 * Trust rules (docs/FORMAT.md 6.4). A signature over the manifest counts
 * toward M only if it is a v4 binary-document signature with a SHA-256 or
 * stronger digest, made by a signing-capable key (the primary, or a subkey
 * bound with a back-signature) of a trusted certificate, that key being valid
 * (created, not expired, not revoked) at the signature's creation time, and
 * that time lying within [sealed - skew, now + skew]. Everything else that a
 * trusted certificate did not cryptographically refute is a *refusal* with a
 * code, which never vetoes a threshold other signatures meet. Only a
 * signature by a trusted key that is cryptographically bad over the manifest
 * bytes means the manifest changed (SIGNATURE_INVALID).
 *
 * openpgp.js is used for parsing and for the raw signature mathematics only
 * (SignaturePacket.verify with date = null); the validity decisions
 * (expiry, revocation reasons, capability, times) are made here, so each has
 * its own code and no library default decides for us.
 */
import type * as OpenPGP from 'openpgp';
import { AppendlogError } from './errors.js';

export const MAX_ARMORED_BYTES = 1 << 20;
/** A keyring (gpg --export of a whole public keyring) may be larger than one key. */
export const MAX_KEYRING_BYTES = 64 << 20;
/**
 * Bounds on what a bundle may make a verifier do: an armored detached
 * signature is well under 4 KiB (RSA-4096 included), and M-of-N needs a
 * handful. Identical packets count once.
 */
export const MAX_SIGNATURE_FILES = 64;
export const MAX_SIGNATURE_FILE_BYTES = 64 * 1024;
export const MAX_SIGNATURE_PACKETS = 64;
/** Clock skew allowed between the log VM, the signers and the verifier (FORMAT.md 6.4). */
export const CLOCK_SKEW_MS = 5 * 60 * 1000;

/**
 * Why a signature does not count (FORMAT.md 6.4 table S). These are not
 * process exit codes: they describe one signature; the verification's
 * outcome is decided by `requireThreshold`.
 */
export const REFUSAL_CODES = [
  'KEY_UNKNOWN',
  'KEY_NOT_PINNED',
  'PACKET_VERSION',
  'PACKET_UNSUPPORTED',
  'SIG_TYPE',
  'HASH_WEAK',
  'SIG_BACKDATED',
  'SIG_FUTURE',
  'SIG_EXPIRED',
  'CERT_INVALID',
  'KEY_NOT_YET_VALID',
  'KEY_EXPIRED',
  'KEY_REVOKED',
  'KEY_COMPROMISED',
  'KEY_NOT_SIGNING',
] as const;
export type RefusalCode = (typeof REFUSAL_CODES)[number];

/** Digests accepted for the manifest signature: SHA-256 or stronger (RFC 9580 9.5 ids). */
const STRONG_HASHES: ReadonlyMap<number, string> = new Map([
  [8, 'SHA256'],
  [9, 'SHA384'],
  [10, 'SHA512'],
  [12, 'SHA3-256'],
  [14, 'SHA3-512'],
]);
const HASH_NAMES: Readonly<Record<number, string>> = { 1: 'MD5', 2: 'SHA1', 3: 'RIPEMD160', 11: 'SHA224' };
const hashName = (id: number): string => STRONG_HASHES.get(id) ?? HASH_NAMES[id] ?? `hash #${id}`;

/** Revocation reasons (RFC 9580 5.2.3.31) after which earlier signatures keep counting. */
const SOFT_REVOCATION = new Set([1 /* superseded */, 3 /* retired */]);

/**
 * openpgp.js config for the raw checks: no hash is rejected there, because
 * the digest rule is applied (with its own code) before the mathematics;
 * everything else at the library defaults.
 */
let RAW_CONFIG: typeof OpenPGP.config;

/** Signing-capable public-key algorithms (set once openpgp.js is loaded). */
let SIGNING_ALGORITHMS: ReadonlySet<number>;

// openpgp.js is loaded on first use, not at import: it is the largest module
// we have (~1.2 MB of JavaScript, a few hundred ms to compile on a loaded
// machine), and the qrexec service (`logvm append`), which imports this
// package for the chain and frame code, never checks a signature. Loaded at
// startup, it made every session open that much later.
let openpgp: typeof OpenPGP;
let loading: Promise<void> | undefined;
function loadOpenpgp(): Promise<void> {
  loading ??= import('openpgp').then((m) => {
    openpgp = m;
    SIGNING_ALGORITHMS = new Set<number>([
      m.enums.publicKey.rsaEncryptSign,
      m.enums.publicKey.rsaSign,
      m.enums.publicKey.dsa,
      m.enums.publicKey.ecdsa,
      m.enums.publicKey.eddsaLegacy,
      m.enums.publicKey.ed25519,
      m.enums.publicKey.ed448,
    ]);
    RAW_CONFIG = { ...m.config, rejectHashAlgorithms: new Set<number>(), rejectMessageHashAlgorithms: new Set<number>() } as typeof OpenPGP.config;
  });
  return loading;
}

// ---------------------------------------------------------------------------
// OpenPGP framing (RFC 9580 4.2), just enough to split a file into packets
// before openpgp.js sees them: so one odd packet is refused with a code
// instead of being dropped silently (openpgp.js skips unsupported packets)
// or failing a whole keyring.

interface RawPacket {
  tag: number;
  /** Header and body. */
  bytes: Uint8Array;
  body: Uint8Array;
}

function splitPackets(data: Uint8Array, what: string, code: 'KEY_INVALID' | 'MALFORMED_BUNDLE'): RawPacket[] {
  const out: RawPacket[] = [];
  let i = 0;
  const bad = (m: string): never => {
    throw new AppendlogError(code, `${what}: not OpenPGP data (${m} at byte ${i})`);
  };
  while (i < data.length) {
    const start = i;
    const h = data[i++]!;
    if ((h & 0x80) === 0) bad('no packet header');
    let tag: number;
    let len: number;
    if (h & 0x40) {
      tag = h & 0x3f;
      if (i >= data.length) bad('truncated length');
      const o1 = data[i++]!;
      if (o1 < 192) len = o1;
      else if (o1 < 224) {
        if (i >= data.length) bad('truncated length');
        len = ((o1 - 192) << 8) + data[i++]! + 192;
      } else if (o1 === 255) {
        if (i + 4 > data.length) bad('truncated length');
        len = ((data[i]! << 24) >>> 0) + (data[i + 1]! << 16) + (data[i + 2]! << 8) + data[i + 3]!;
        i += 4;
      } else {
        // Partial body lengths belong to data packets, never to keys or signatures.
        bad('partial body length');
      }
    } else {
      tag = (h >> 2) & 0x0f;
      const lt = h & 3;
      if (lt === 3) bad('indeterminate length');
      const n = lt === 0 ? 1 : lt === 1 ? 2 : 4;
      if (i + n > data.length) bad('truncated length');
      len = 0;
      for (let k = 0; k < n; k++) len = len * 256 + data[i + k]!;
      i += n;
    }
    if (i + len! > data.length) bad('truncated packet');
    out.push({ tag: tag!, bytes: data.subarray(start, i + len!), body: data.subarray(i, i + len!) });
    i += len!;
  }
  return out;
}

const ARMOR_RE = /-----BEGIN PGP ([A-Z ,/0-9]+)-----\r?\n[\s\S]*?-----END PGP \1-----/g;

function looksArmored(bytes: Uint8Array): boolean {
  const head = new TextDecoder('latin1').decode(bytes.subarray(0, Math.min(bytes.length, 4096)));
  return head.includes('-----BEGIN PGP ');
}

/**
 * The inside of one armor block, strictly (docs/FORMAT.md 6.9): header lines
 * up to a mandatory empty line, a base64 body (RFC 4648 alphabet, `=` only at
 * its end, length a multiple of 4), an optional CRC line (never checked),
 * the END line. Trailing spaces and CRs are ignored.
 */
export function armorBlockWellFormed(block: string): boolean {
  const lines = block.split('\n').map((l) => l.replace(/[ \t\r]+$/, ''));
  let i = 1; // after the BEGIN line
  while (i < lines.length - 1 && lines[i] !== '') {
    if (!/^[\x21-\x39\x3b-\x7e]+:( |$)/.test(lines[i]!)) return false;
    i++;
  }
  if (lines[i] !== '') return false;
  let end = lines.length - 1; // the END line
  if (end - 1 > i && /^=[A-Za-z0-9+/]{4}$/.test(lines[end - 1]!)) end--;
  const body = lines.slice(i + 1, end).join('');
  return /^[A-Za-z0-9+/]*={0,2}$/.test(body) && body.length % 4 === 0;
}

/** Every armored block in `bytes` (a file may be several files concatenated), as binary. */
async function dearmorAll(bytes: Uint8Array, what: string, code: 'KEY_INVALID' | 'MALFORMED_BUNDLE'): Promise<Array<{ type: string; data: Uint8Array }>> {
  await loadOpenpgp();
  const text = new TextDecoder('utf-8').decode(bytes);
  const blocks = [...text.matchAll(ARMOR_RE)];
  if (blocks.length === 0) throw new AppendlogError(code, `${what}: no complete ASCII-armored OpenPGP block`);
  const out: Array<{ type: string; data: Uint8Array }> = [];
  for (const b of blocks) {
    // openpgp.js decodes base64 leniently (it drops stray characters); the
    // spec (6.9) does not, so every verifier gets the same bytes or refuses.
    if (!armorBlockWellFormed(b[0])) throw new AppendlogError(code, `${what}: an armored block is damaged (no blank line after the headers, or a body that is not base64)`);
    try {
      const { data } = await openpgp.unarmor(b[0]);
      out.push({ type: b[1]!, data: data as Uint8Array });
    } catch {
      // openpgp.js's message may quote input; keep ours fixed.
      throw new AppendlogError(code, `${what}: an armored block is damaged (bad base64 or checksum)`);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// Trust material

export interface KeySource {
  /** File name, for messages. */
  name: string;
  bytes: Uint8Array;
  /** 'key': every certificate must load. 'keyring': unloadable ones are skipped and listed. */
  kind: 'key' | 'keyring';
}

interface SelfSig {
  created: number;
  expires: number | null;
  flags: number | null;
}

interface Revocation {
  created: number;
  reason: number | null;
  hard: boolean;
}

interface KeyInfo {
  keyId: string;
  fingerprint: string;
  packet: OpenPGP.PublicKeyPacket | OpenPGP.PublicSubkeyPacket;
  primary: boolean;
  created: number;
  /** Valid binding (subkey) or self (primary) signatures, newest first. */
  selfSigs: SelfSig[];
  /** For a subkey: whether the newest binding that grants signing carries a valid back-signature. */
  backSigned: boolean;
  revocations: Revocation[];
}

export interface TrustedCertificate {
  /** Primary key fingerprint, upper-case hex. */
  fingerprint: string;
  /** Only user IDs bound by a valid, unrevoked self-signature (escape before printing). */
  userIds: string[];
  /** The --key/--keyring file it came from. */
  source: string;
  /** @internal */
  readonly keys: KeyInfo[];
}

export interface TrustStore {
  certificates: TrustedCertificate[];
  /** Upper-case primary fingerprints that may count (--signer), or null: every certificate may. */
  pinned: string[] | null;
  /** Keyring entries that could not be loaded (attacker-influenced text: escape). */
  skipped: Array<{ source: string; message: string }>;
}

const FPR_RE = /^(?:0x)?[0-9A-Fa-f]{40}$/;

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex').toUpperCase();

async function rawVerify(sig: OpenPGP.SignaturePacket, key: OpenPGP.PublicKeyPacket | OpenPGP.PublicSubkeyPacket, type: number, data: object): Promise<boolean> {
  await loadOpenpgp();
  try {
    // date = null: only the mathematics and the issuer; times are judged here.
    await sig.verify(key as never, type as never, data as never, null as never, false, RAW_CONFIG);
    return true;
  } catch {
    return false;
  }
}

const ms = (d: Date | null | undefined): number => (d ? d.getTime() : 0);

function keyExpiry(keyCreated: number, sig: OpenPGP.SignaturePacket): number | null {
  return sig.keyNeverExpires === false && sig.keyExpirationTime ? keyCreated + sig.keyExpirationTime * 1000 : null;
}

async function revocationsOf(list: OpenPGP.SignaturePacket[], primary: OpenPGP.PublicKeyPacket, type: number, data: object): Promise<Revocation[]> {
  const out: Revocation[] = [];
  for (const r of list) {
    // Third-party (designated revoker) revocations are not followed: their key is not given.
    if (r.signatureType !== type || !r.issuerKeyID.equals(primary.getKeyID())) continue;
    if (!(await rawVerify(r, primary, type, data))) continue;
    const reason = r.reasonForRevocationFlag ?? null;
    out.push({ created: ms(r.created), reason, hard: reason === null || !SOFT_REVOCATION.has(reason) });
  }
  return out;
}

async function certificateInfo(key: OpenPGP.Key, source: string): Promise<TrustedCertificate> {
  await loadOpenpgp();
  const primary = key.keyPacket as OpenPGP.PublicKeyPacket;
  const pCreated = ms(primary.created);
  const selfSigs: SelfSig[] = [];
  const userIds: string[] = [];
  const E = openpgp.enums.signature;
  for (const u of key.users) {
    if (!u.userID) continue; // user attributes (photos) bind nothing we show
    const data = { userID: u.userID, key: primary };
    const valid: OpenPGP.SignaturePacket[] = [];
    for (const s of u.selfCertifications) {
      if (s.signatureType === null || s.signatureType < E.certGeneric || s.signatureType > E.certPositive) continue;
      if (!s.issuerKeyID.equals(primary.getKeyID())) continue;
      if (await rawVerify(s, primary, s.signatureType, data)) valid.push(s);
    }
    if (valid.length === 0) continue;
    const newest = Math.max(...valid.map((s) => ms(s.created)));
    const revs = await revocationsOf(u.revocationSignatures, primary, E.certRevocation, data);
    if (revs.some((r) => r.created >= newest)) continue;
    userIds.push(u.userID.userID);
    for (const s of valid) selfSigs.push({ created: ms(s.created), expires: keyExpiry(pCreated, s), flags: s.keyFlags?.[0] ?? null });
  }
  for (const s of (key as unknown as { directSignatures: OpenPGP.SignaturePacket[] }).directSignatures) {
    if (s.signatureType !== E.key || !s.issuerKeyID.equals(primary.getKeyID())) continue;
    if (await rawVerify(s, primary, E.key, { key: primary })) selfSigs.push({ created: ms(s.created), expires: keyExpiry(pCreated, s), flags: s.keyFlags?.[0] ?? null });
  }
  selfSigs.sort((a, b) => b.created - a.created);
  const keys: KeyInfo[] = [
    {
      keyId: primary.getKeyID().toHex().toUpperCase(),
      fingerprint: primary.getFingerprint().toUpperCase(),
      packet: primary,
      primary: true,
      created: pCreated,
      selfSigs,
      backSigned: true,
      revocations: await revocationsOf(key.revocationSignatures, primary, E.keyRevocation, { key: primary }),
    },
  ];
  for (const sub of key.subkeys) {
    const sp = sub.keyPacket as OpenPGP.PublicSubkeyPacket;
    const sCreated = ms(sp.created);
    const data = { key: primary, bind: sp };
    const bindings: Array<{ sig: OpenPGP.SignaturePacket; info: SelfSig }> = [];
    for (const s of sub.bindingSignatures) {
      if (s.signatureType !== E.subkeyBinding || !s.issuerKeyID.equals(primary.getKeyID())) continue;
      if (await rawVerify(s, primary, E.subkeyBinding, data)) bindings.push({ sig: s, info: { created: ms(s.created), expires: keyExpiry(sCreated, s), flags: s.keyFlags?.[0] ?? null } });
    }
    bindings.sort((a, b) => b.info.created - a.info.created);
    // A signing subkey must sign the primary back (RFC 9580 5.2.1, 0x19), or
    // anyone could bind someone else's signing key to their certificate.
    const newest = bindings[0];
    const emb = newest?.sig.embeddedSignature;
    const backSigned = emb != null && emb.signatureType === E.keyBinding && (await rawVerify(emb, sp, E.keyBinding, data));
    keys.push({
      keyId: sp.getKeyID().toHex().toUpperCase(),
      fingerprint: sp.getFingerprint().toUpperCase(),
      packet: sp,
      primary: false,
      created: sCreated,
      selfSigs: bindings.map((b) => b.info),
      backSigned,
      revocations: await revocationsOf(sub.revocationSignatures, primary, E.subkeyRevocation, data),
    });
  }
  return { fingerprint: keys[0]!.fingerprint, userIds, source, keys };
}

/** Splits a binary packet stream into certificates: each starts at a primary key packet. */
function splitCertificates(packets: RawPacket[]): Uint8Array[][] {
  const certs: Uint8Array[][] = [];
  for (const p of packets) {
    if (p.tag === 6 || p.tag === 5) certs.push([p.bytes]);
    else if (p.tag === 12 || p.tag === 10) continue; // trust (old pubring.gpg) and marker packets carry nothing
    else if (certs.length > 0) certs[certs.length - 1]!.push(p.bytes);
    else throw new AppendlogError('KEY_INVALID', 'key data does not start with a primary key packet');
  }
  return certs;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/**
 * Loads trust material once: every certificate in every file, armored or
 * binary, one or several per file (`cat a.asc b.asc`, `gpg --export A B`,
 * a whole exported keyring). Private keys are reduced to public ones.
 * Certificates are deduplicated by primary fingerprint; the first copy met is
 * kept as it is (copies are not merged, so a later file cannot add a user ID
 * or subkey to a certificate given earlier).
 */
export async function loadTrustStore(sources: KeySource[], opts: { signers?: string[] } = {}): Promise<TrustStore> {
  await loadOpenpgp();
  const byFpr = new Map<string, TrustedCertificate>();
  const skipped: TrustStore['skipped'] = [];
  for (const src of sources) {
    const max = src.kind === 'keyring' ? MAX_KEYRING_BYTES : MAX_ARMORED_BYTES;
    if (src.bytes.length > max) throw new AppendlogError('KEY_INVALID', `${src.name}: too large for a key file`);
    if (src.bytes.length >= 12 && new TextDecoder('latin1').decode(src.bytes.subarray(8, 12)) === 'KBXf') {
      throw new AppendlogError('KEY_INVALID', `${src.name}: a GnuPG keybox (pubring.kbx), not an exported keyring: use gpg --export > keyring.gpg`);
    }
    const binaries: Uint8Array[] = [];
    if (looksArmored(src.bytes)) {
      for (const b of await dearmorAll(src.bytes, src.name, 'KEY_INVALID')) {
        if (b.type !== 'PUBLIC KEY BLOCK' && b.type !== 'PRIVATE KEY BLOCK') {
          throw new AppendlogError('KEY_INVALID', `${src.name}: holds an armored ${b.type.toLowerCase()}, not a key`);
        }
        binaries.push(b.data);
      }
    } else {
      binaries.push(src.bytes);
    }
    let found = 0;
    for (const bin of binaries) {
      const certs = splitCertificates(splitPackets(bin, src.name, 'KEY_INVALID'));
      for (const [i, parts] of certs.entries()) {
        let cert: TrustedCertificate;
        try {
          const [k] = await openpgp.readKeys({ binaryKeys: concat(parts) });
          if (k === undefined) throw new Error('no key');
          cert = await certificateInfo(k.isPrivate() ? k.toPublic() : k, src.name);
        } catch (e) {
          // Never quote the library's message: it may echo key bytes.
          const msg = `certificate #${i + 1} cannot be used (unsupported key version or algorithm, or damaged)`;
          if (src.kind === 'key') throw new AppendlogError('KEY_INVALID', `${src.name}: ${msg}`, { cause: e });
          skipped.push({ source: src.name, message: msg });
          continue;
        }
        found++;
        if (!byFpr.has(cert.fingerprint)) byFpr.set(cert.fingerprint, cert);
      }
    }
    if (found === 0 && src.kind === 'key') throw new AppendlogError('KEY_INVALID', `${src.name}: holds no OpenPGP certificate`);
  }
  let pinned: string[] | null = null;
  if (opts.signers !== undefined && opts.signers.length > 0) {
    pinned = [];
    for (const s of opts.signers) {
      if (!FPR_RE.test(s)) throw new AppendlogError('USAGE', `--signer ${JSON.stringify(s.slice(0, 80))} is not a 40-hex-digit primary key fingerprint`);
      const f = s.replace(/^0x/, '').toUpperCase();
      if (!byFpr.has(f)) throw new AppendlogError('USAGE', `--signer ${f} is not the primary fingerprint of any key given with --key/--keyring`);
      if (!pinned.includes(f)) pinned.push(f);
    }
  }
  return { certificates: [...byFpr.values()], pinned, skipped };
}

// ---------------------------------------------------------------------------
// Evaluation

export interface SignatureInput {
  /** File name, e.g. signatures/01.asc. */
  file: string;
  /** Armored or binary detached signature(s). */
  bytes: Uint8Array;
}

export type SignatureStatus = 'counted' | 'refused' | 'bad';

export interface SignatureResult {
  file: string;
  /** Index of the signature packet in its file, from 0. */
  index: number;
  status: SignatureStatus;
  code?: RefusalCode;
  /** Why (may contain bundle-derived text such as a hash id; escape before printing). */
  message: string;
  /** Key ID (16 hex) or fingerprint the packet names as its issuer, upper-case; '' if none. */
  issuer: string;
  /** The issuer key ID (16 hex, upper-case); '' if the packet could not be parsed. */
  keyId: string;
  /** Primary fingerprint of the trusted certificate the issuer belongs to. */
  certificate?: string;
  /** Fingerprint of the key (primary or subkey) that made it. */
  signingKey?: string;
  /** Creation time, ms since the epoch. */
  created?: number;
  hash?: string;
  version?: number;
}

export interface CountedCertificate {
  fingerprint: string;
  userIds: string[];
  /** Counted signatures by this certificate (it counts once toward M). */
  signatures: number;
}

export interface SignatureVerdict {
  results: SignatureResult[];
  /** Distinct certificates with at least one counted signature, in first-seen order. */
  counted: CountedCertificate[];
  /** Results with status 'bad': a trusted key's signature that does not verify over the manifest. */
  bad: SignatureResult[];
  /** Byte-identical signature packets seen more than once (counted once). */
  duplicates: number;
}

export interface EvaluateInput {
  manifest: Uint8Array;
  /** manifest.sealed, ms since the epoch. */
  sealed: number;
  signatures: SignatureInput[];
  trust: TrustStore;
  /** Time of verification, ms since the epoch. */
  now: number;
  skewMs?: number;
}

const iso = (t: number): string => new Date(t).toISOString().replace('.000Z', 'Z');

/** The newest self/binding signature in force at `t` (created <= t). */
const inForce = (k: KeyInfo, t: number): SelfSig | undefined => k.selfSigs.find((s) => s.created <= t);

/** Whether key `k` of `cert` could make a signature at time `t`: null, or the refusal. */
function keyRefusal(cert: TrustedCertificate, k: KeyInfo, t: number, now: number): { code: RefusalCode; message: string } | null {
  const primary = cert.keys[0]!;
  const pSelf = inForce(primary, now) ?? primary.selfSigs[primary.selfSigs.length - 1];
  if (pSelf === undefined) return { code: 'CERT_INVALID', message: `certificate ${cert.fingerprint} has no valid self-signature` };
  const chain = k.primary ? [k] : [primary, k];
  const what = (key: KeyInfo): string => (key.primary ? `primary key ${key.fingerprint}` : `subkey ${key.fingerprint}`);
  // Hard revocations first: a compromised key never counts, whatever the dates.
  for (const key of chain) {
    const r = key.revocations.find((x) => x.hard);
    if (r) return { code: 'KEY_COMPROMISED', message: `${what(key)} is revoked${r.reason === null ? ' (no reason given)' : ` (reason ${r.reason})`}: none of its signatures count` };
  }
  for (const key of chain) {
    const r = key.revocations.find((x) => t >= x.created);
    if (r) return { code: 'KEY_REVOKED', message: `${what(key)} was retired or superseded on ${iso(r.created)}, before this signature (${iso(t)})` };
  }
  if (t < primary.created || t < k.created) return { code: 'KEY_NOT_YET_VALID', message: `the signature (${iso(t)}) is older than the key that made it` };
  // Expiry as gpg judges it: by the newest self-signature (an owner may extend a key's life).
  if (pSelf.expires !== null && t >= pSelf.expires) return { code: 'KEY_EXPIRED', message: `certificate ${cert.fingerprint} expired on ${iso(pSelf.expires)}, before this signature (${iso(t)})` };
  let flags: number | null;
  if (k.primary) {
    flags = pSelf.flags;
  } else {
    const b = inForce(k, now) ?? k.selfSigs[k.selfSigs.length - 1];
    if (b === undefined) return { code: 'KEY_NOT_SIGNING', message: `subkey ${k.fingerprint} is not bound to its certificate by a valid binding signature` };
    if (b.expires !== null && t >= b.expires) return { code: 'KEY_EXPIRED', message: `subkey ${k.fingerprint} expired on ${iso(b.expires)}, before this signature (${iso(t)})` };
    flags = b.flags;
    if (flags !== null && (flags & 0x02) !== 0 && !k.backSigned) return { code: 'KEY_NOT_SIGNING', message: `subkey ${k.fingerprint} has no valid back-signature to its primary key` };
    if (flags === null) return { code: 'KEY_NOT_SIGNING', message: `subkey ${k.fingerprint} is not marked for signing` };
  }
  if (!SIGNING_ALGORITHMS.has(k.packet.algorithm as number) || (flags !== null && (flags & 0x02) === 0)) {
    return { code: 'KEY_NOT_SIGNING', message: `${k.primary ? 'primary key' : 'subkey'} ${k.fingerprint} is not a signing key` };
  }
  return null;
}

/**
 * Judges every signature over the manifest against the trust store. Never
 * throws for one signature's problem (each gets a status and code); throws
 * MALFORMED_BUNDLE only for files that are not OpenPGP signature data at all,
 * or for more distinct packets than any honest bundle has.
 */
export async function evaluateSignatures(input: EvaluateInput): Promise<SignatureVerdict> {
  await loadOpenpgp();
  const skew = input.skewMs ?? CLOCK_SKEW_MS;
  const literal = new openpgp.LiteralDataPacket();
  (literal as unknown as { setBytes(b: Uint8Array, f: number): void }).setBytes(input.manifest, openpgp.enums.literal.binary);
  const results: SignatureResult[] = [];
  const counted = new Map<string, CountedCertificate>();
  const seen = new Set<string>();
  let duplicates = 0;
  const pinned = input.trust.pinned;
  for (const s of input.signatures) {
    if (s.bytes.length > MAX_SIGNATURE_FILE_BYTES) throw new AppendlogError('MALFORMED_BUNDLE', `${s.file}: too large for a signature`);
    let binaries: Uint8Array[];
    if (looksArmored(s.bytes)) {
      const blocks = await dearmorAll(s.bytes, s.file, 'MALFORMED_BUNDLE');
      for (const b of blocks) if (b.type !== 'SIGNATURE') throw new AppendlogError('MALFORMED_BUNDLE', `${s.file}: holds an armored ${b.type.toLowerCase()}, not a signature`);
      binaries = blocks.map((b) => b.data);
    } else {
      binaries = [s.bytes];
    }
    const packets = binaries.flatMap((b) => splitPackets(b, s.file, 'MALFORMED_BUNDLE'));
    const sigPackets = packets.filter((p) => p.tag === 2);
    if (packets.some((p) => p.tag !== 2 && p.tag !== 10)) throw new AppendlogError('MALFORMED_BUNDLE', `${s.file}: holds OpenPGP packets other than signatures`);
    if (sigPackets.length === 0) throw new AppendlogError('SIGNATURE_MISSING', `${s.file}: holds no signature`);
    for (const [index, raw] of sigPackets.entries()) {
      const key = hex(raw.bytes);
      if (seen.has(key)) {
        duplicates++; // a copy proves nothing more
        continue;
      }
      seen.add(key);
      if (seen.size > MAX_SIGNATURE_PACKETS) throw new AppendlogError('MALFORMED_BUNDLE', `more than ${MAX_SIGNATURE_PACKETS} distinct signatures in the bundle`);
      results.push(await judge(raw, s.file, index));
    }
  }
  const bad = results.filter((r) => r.status === 'bad');
  return { results, counted: [...counted.values()], bad, duplicates };

  async function judge(raw: RawPacket, file: string, index: number): Promise<SignatureResult> {
    const base = { file, index, issuer: '', keyId: '' };
    const version = raw.body[0];
    if (version !== 4) {
      return { ...base, version, status: 'refused', code: 'PACKET_VERSION', message: `a version ${version ?? '?'} signature packet: only version 4 is supported` };
    }
    let sig: OpenPGP.SignaturePacket | undefined;
    try {
      sig = (await openpgp.readSignature({ binarySignature: raw.bytes })).packets[0];
    } catch {
      sig = undefined;
    }
    if (sig === undefined) {
      return { ...base, version, status: 'refused', code: 'PACKET_UNSUPPORTED', message: 'a signature packet openpgp.js cannot parse (unknown algorithm or critical subpacket, or damaged)' };
    }
    const issuer = sig.issuerFingerprint ? hex(sig.issuerFingerprint) : sig.issuerKeyID.toHex().toUpperCase();
    const created = ms(sig.created);
    const r: SignatureResult = { ...base, issuer, keyId: sig.issuerKeyID.toHex().toUpperCase(), version, created, hash: hashName(sig.hashAlgorithm as number), status: 'refused', message: '' };
    const refuse = (code: RefusalCode, message: string): SignatureResult => Object.assign(r, { status: 'refused' as const, code, message });
    // Find the key among the trusted certificates: by key ID, confirmed by the
    // issuer fingerprint when the packet has one (an 8-byte ID can collide).
    const keyId = sig.issuerKeyID.toHex().toUpperCase();
    let cert: TrustedCertificate | undefined;
    let k: KeyInfo | undefined;
    for (const c of input.trust.certificates) {
      k = c.keys.find((x) => x.keyId === keyId && (!sig!.issuerFingerprint || x.fingerprint === issuer));
      if (k) {
        cert = c;
        break;
      }
    }
    if (cert === undefined || k === undefined) return refuse('KEY_UNKNOWN', `signed by ${issuer}, which is not among the trusted keys`);
    Object.assign(r, { certificate: cert.fingerprint, signingKey: k.fingerprint });
    // Properties of the packet alone, before any mathematics.
    if (sig.signatureType !== openpgp.enums.signature.binary) {
      return refuse('SIG_TYPE', `signature type 0x${(sig.signatureType ?? 0).toString(16).padStart(2, '0')}: only a binary-document signature (0x00) over manifest.json counts`);
    }
    if (!STRONG_HASHES.has(sig.hashAlgorithm as number)) return refuse('HASH_WEAK', `digest ${r.hash}: only SHA-256 or stronger counts`);
    if (sig.unknownSubpackets.some((u) => u.critical) || sig.rawNotations.some((n) => n.critical) || sig.revocationKeyClass !== null) {
      return refuse('PACKET_UNSUPPORTED', 'the signature has a critical subpacket or notation this verifier does not know');
    }
    if (!(await rawVerify(sig, k.packet, openpgp.enums.signature.binary, literal))) {
      return Object.assign(r, {
        status: 'bad' as const,
        message: `the signature by ${cert.fingerprint} does not verify over manifest.json: the manifest was changed after signing, or the signature is damaged`,
      });
    }
    if (pinned !== null && !pinned.includes(cert.fingerprint)) return refuse('KEY_NOT_PINNED', `${cert.fingerprint} is not among the --signer fingerprints`);
    if (created < input.sealed - skew) return refuse('SIG_BACKDATED', `made ${iso(created)}, before the log was sealed (${iso(input.sealed)})`);
    if (created > input.now + skew) return refuse('SIG_FUTURE', `made ${iso(created)}, after the time of verification (${iso(input.now)})`);
    const sigExpires = sig.getExpirationTime();
    if (sigExpires !== Infinity && input.now >= +sigExpires) return refuse('SIG_EXPIRED', `the signature expired on ${iso(+sigExpires)}`);
    const kr = keyRefusal(cert, k, created, input.now);
    if (kr !== null) return refuse(kr.code, kr.message);
    const c = counted.get(cert.fingerprint) ?? { fingerprint: cert.fingerprint, userIds: cert.userIds, signatures: 0 };
    c.signatures++;
    counted.set(cert.fingerprint, c);
    return Object.assign(r, { status: 'counted' as const, message: 'counted' });
  }
}

/** A verdict with the threshold it met (what verify-chain reports). */
export interface SignatureReport extends SignatureVerdict {
  threshold: number;
  /** Certificates that could count (pinned, or all loaded). */
  trusted: number;
}

/**
 * The outcome: throws the first applicable coded error, else returns the
 * report. Any cryptographically bad signature by a trusted key fails
 * (SIGNATURE_INVALID) even if M is met; refusals never do.
 */
export function requireThreshold(v: SignatureVerdict, threshold: number, trust: TrustStore): SignatureReport {
  const trusted = trust.pinned?.length ?? trust.certificates.length;
  if (!Number.isSafeInteger(threshold) || threshold < 1) throw new AppendlogError('USAGE', 'threshold must be at least 1');
  if (threshold > trusted) {
    throw new AppendlogError('USAGE', `threshold ${threshold} is more than the ${trusted} trusted ${trust.pinned ? 'pinned signer(s)' : 'certificate(s)'} given`);
  }
  const first = v.bad[0];
  if (first !== undefined) throw new AppendlogError('SIGNATURE_INVALID', `${first.file}: ${first.message}`);
  if (v.results.length === 0) throw new AppendlogError('SIGNATURE_MISSING', 'the bundle has no signature over manifest.json');
  if (v.counted.length >= threshold) return { ...v, threshold, trusted };
  const refused = v.results.filter((r) => r.status === 'refused');
  if (v.counted.length === 0 && refused.every((r) => r.code === 'KEY_UNKNOWN')) {
    throw new AppendlogError('SIGNATURE_UNTRUSTED', `no signature by a trusted key: signed only by unknown key(s) ${[...new Set(refused.map((u) => u.issuer))].join(', ')}`);
  }
  const why = refused.map((r) => `${r.file}: ${r.code}`).join('; ');
  throw new AppendlogError('THRESHOLD_NOT_MET', `signatures by ${v.counted.length} distinct trusted certificate(s) count, ${threshold} required${why ? `; not counted: ${why}` : ''}`);
}

/** evaluateSignatures + requireThreshold. */
export async function verifyManifestSignatures(input: EvaluateInput & { threshold: number }): Promise<SignatureReport> {
  return requireThreshold(await evaluateSignatures(input), input.threshold, input.trust);
}

/** An empty trust store: evaluating against it names every signature's issuer (cosign). */
export const NO_TRUST: TrustStore = { certificates: [], pinned: null, skipped: [] };

/** Parses an armored detached signature just to name its issuer(s); throws if it is not one. */
export async function signatureIssuers(armored: string): Promise<string[]> {
  await loadOpenpgp();
  try {
    const sig = await openpgp.readSignature({ armoredSignature: armored });
    if (sig.packets.length === 0) throw new Error('no signature packet');
    return sig.packets.map((p) => p.issuerKeyID.toHex().toUpperCase());
  } catch (e) {
    throw new AppendlogError('SIGNER_FAILED', "the signer's output is not an armored OpenPGP signature", { cause: e });
  }
}

/**
 * Signs `data` with an armored private key: a detached, armored, binary-mode
 * signature, as `gpg -a -b` makes, so `gpg --verify` accepts it.
 */
export async function signDetached(data: Uint8Array, armoredKey: string, passphrase?: string): Promise<string> {
  await loadOpenpgp();
  let key: OpenPGP.PrivateKey;
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
