import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CommandModule } from 'yargs';
import { AppendlogError, BUNDLE_FILES, escapeText, parseManifest, type SealManifest } from '@appendlog/shared';
import { asList, reportError, writeAll } from '../output.js';

interface CosignArgs {
  bundle: string;
  signer: string;
  key?: string | string[];
  keyring?: string | string[];
  first?: boolean;
}

/**
 * `logvm cosign`: M-of-N release signing. A further trusted person verifies
 * before signing: the bundle's chain against its manifest, and the
 * signatures made so far against the keys given (at least one must count,
 * none may be bad). Signing without checking anyone's signature needs
 * `--first`, said out loud. A key that already signed adds nothing toward M,
 * so no second signature of it is written. A bundle archive is read in
 * place (never unpacked) and rewritten with the new signature member, under
 * a temporary name renamed over it at the end.
 */
export const cosignCommand: CommandModule<object, CosignArgs> = {
  command: 'cosign <bundle>',
  describe: 'verify a bundle, then add another signature over its manifest',
  builder: (y) =>
    y
      .positional('bundle', { type: 'string', demandOption: true, describe: 'bundle directory or archive (.tar, .tar.gz, .tar.zst)' })
      .option('signer', { type: 'string', demandOption: true, describe: 'split-gpg[:KEYID], gpg[:KEYID] or key-file:PATH' })
      .option('key', { type: 'string', describe: 'trusted public key(s) the existing signatures must verify against (repeatable)' })
      .option('keyring', { type: 'string', describe: 'a keyring exported with gpg --export (repeatable)' })
      .option('first', { type: 'boolean', describe: 'sign without checking the existing signatures (only the chain is verified)' }) as never,
  handler: async (args) => {
    // Loaded on use: openpgp.js and friends stay out of `logvm append`.
    try {
      const { NO_TRUST, evaluateSignatures, requireThreshold, signatureIssuers } = await import('@appendlog/shared/signatures');
      const { openBundle, verifyBundleEntries } = await import('../bundle-io.js');
      const { addSignatureToArchive } = await import('../bundle-export.js');
      const { parseSignerSpec } = await import('../signers.js');
      const { loadTrust } = await import('./keys.js');
      const keyFiles = asList(args.key);
      const keyringFiles = asList(args.keyring);
      const haveKeys = keyFiles.length + keyringFiles.length > 0;
      if (!haveKeys && args.first !== true) {
        throw new AppendlogError('USAGE', 'cosign checks the existing signatures first: give the trusted keys with --key/--keyring, or say --first to sign without checking them');
      }
      if (haveKeys && args.first === true) throw new AppendlogError('USAGE', '--first means no keys to check against: give --key/--keyring or --first, not both');
      const signer = parseSignerSpec(args.signer);
      const trust = haveKeys ? await loadTrust({ keys: keyFiles, keyrings: keyringFiles }) : NO_TRUST;
      const bundle = await openBundle(args.bundle);
      let bytes: Buffer;
      let manifest: SealManifest;
      let verdict: Awaited<ReturnType<typeof evaluateSignatures>>;
      try {
        bytes = bundle.manifestBytes;
        manifest = parseManifest(bytes);
        verdict = await evaluateSignatures({ manifest: bytes, sealed: manifest.sealed, signatures: bundle.signatures, trust, now: Date.now() });
        if (haveKeys) requireThreshold(verdict, 1, trust);
        await verifyBundleEntries(bundle, manifest);
      } finally {
        bundle.close();
      }
      const signature = await signer.sign(bytes);
      const issuers = await signatureIssuers(signature);
      const had = verdict.results.filter((r) => issuers.includes(r.keyId));
      const log = `${manifest.vm}/${manifest.name} (seal #${manifest.sealIndex})`;
      if (had.length > 0) {
        await writeAll(process.stdout, `key ${issuers.join(', ')} already signed ${log} (${had.map((r) => escapeText(r.file)).join(', ')}): nothing added, one key counts once\n`);
        return;
      }
      let file: string;
      if (bundle.form === 'archive') {
        file = `${args.bundle}:${await addSignatureToArchive(args.bundle, signature, bytes)}`;
      } else {
        const dir = join(args.bundle, BUNDLE_FILES.signatures);
        mkdirSync(dir, { recursive: true });
        const taken = readdirSync(dir);
        let n = taken.length + 1;
        while (taken.includes(`${String(n).padStart(2, '0')}.asc`)) n++;
        file = join(dir, `${String(n).padStart(2, '0')}.asc`);
        writeFileSync(file, signature, { flag: 'wx' });
      }
      const checked = haveKeys
        ? `existing signatures checked: ${verdict.counted.length} trusted certificate(s) counted`
        : 'existing signatures NOT checked (--first)';
      await writeAll(process.stdout, `cosigned ${log}: ${file}, key ${issuers.join(', ')}; chain verified, ${checked}\n`);
    } catch (e) {
      reportError(e, 'logvm cosign');
    }
  },
};
