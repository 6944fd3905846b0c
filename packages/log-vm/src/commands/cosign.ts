import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CommandModule } from 'yargs';
import { BUNDLE_FILES } from '@appendlog/shared';
import { asList, reportError, writeAll } from '../output.js';

interface CosignArgs {
  bundle: string;
  signer: string;
  key?: string | string[];
}


/**
 * `logvm cosign`: M-of-N release signing. A further trusted person checks the
 * bundle's chain against its manifest (and, with --key, the signatures made
 * so far), then adds a signature over the same manifest bytes.
 */

export const cosignCommand: CommandModule<object, CosignArgs> = {
  command: 'cosign <bundle>',
  describe: 'check a bundle, then add another signature over its manifest',
  builder: (y) =>
    y
      .positional('bundle', { type: 'string', demandOption: true, describe: 'bundle directory' })
      .option('signer', { type: 'string', demandOption: true, describe: 'split-gpg[:KEYID], gpg[:KEYID] or key-file:PATH' })
      .option('key', { type: 'string', describe: 'also check the existing signatures against this public key (repeatable)' }) as never,
  handler: async (args) => {
    // Loaded on use: openpgp.js and friends stay out of `logvm append`.
    try {
      const { checkSignatures, signatureIssuers } = await import('@appendlog/shared/signatures');
      const { readBundleManifest, readBundleSignatures, verifyBundleEntries } = await import('../bundle-io.js');
      const { parseSignerSpec } = await import('../signers.js');
      const { loadKeys } = await import('./keys.js');
      const signer = parseSignerSpec(args.signer);
      const { manifest, bytes } = readBundleManifest(args.bundle);
      const keyFiles = asList(args.key);
      if (keyFiles.length > 0) {
        await checkSignatures(bytes, readBundleSignatures(args.bundle), await loadKeys(keyFiles), 1);
      }
      await verifyBundleEntries(args.bundle, manifest);
      const signature = await signer.sign(bytes);
      const issuers = await signatureIssuers(signature);
      const dir = join(args.bundle, BUNDLE_FILES.signatures);
      mkdirSync(dir, { recursive: true });
      const taken = readdirSync(dir);
      let n = taken.length + 1;
      while (taken.includes(`${String(n).padStart(2, '0')}.asc`)) n++;
      const file = join(dir, `${String(n).padStart(2, '0')}.asc`);
      writeFileSync(file, signature, { flag: 'wx' });
      await writeAll(process.stdout, `cosigned ${manifest.vm}/${manifest.name} (seal #${manifest.sealIndex}): ${file}, key ${issuers.join(', ')}\n`);
    } catch (e) {
      reportError(e, 'logvm cosign');
    }
  },
};
