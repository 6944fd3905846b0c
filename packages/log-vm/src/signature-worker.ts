// The worker thread of signature-check.ts: loads the trust material
// (workerData: TrustArgs) at once, then answers one request, the signatures
// over a manifest, with the report or the coded failure.
import { parentPort, workerData } from 'node:worker_threads';
import { verifyManifestSignatures } from '@appendlog/shared/signatures';
import { loadTrust } from './commands/keys.js';
import { toPlainError, type SignatureCheckInput, type TrustArgs } from './signature-check.js';

const port = parentPort!;
const trust = loadTrust(workerData as TrustArgs);
trust.then(
  () => port.postMessage({ type: 'trust' }),
  (e: unknown) => port.postMessage({ type: 'trust', error: toPlainError(e) }),
);

// Buffers arrive as plain Uint8Arrays: give them their Buffer methods back.
const buf = (u: Uint8Array): Buffer => Buffer.from(u.buffer, u.byteOffset, u.byteLength);

port.on('message', (input: SignatureCheckInput) => {
  void (async () => {
    try {
      const report = await verifyManifestSignatures({
        ...input,
        manifest: buf(input.manifest),
        signatures: input.signatures.map((s) => ({ ...s, bytes: buf(s.bytes) })),
        trust: await trust,
      });
      port.postMessage({ type: 'report', report });
    } catch (e) {
      port.postMessage({ type: 'report', error: toPlainError(e) });
    }
  })();
});
