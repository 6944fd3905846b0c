// The worker thread of signature-check.ts: loads the trust material
// (workerData: TrustArgs, or the first message {type: 'args'} when the
// thread was started before the arguments were parsed: prestart) at once,
// then answers one request, the signatures over a manifest, with the report
// or the coded failure.
import { parentPort, workerData } from 'node:worker_threads';
import { verifyManifestSignatures } from '@appendlog/shared/signatures';
import { loadTrust } from './commands/keys.js';
import { toPlainError, type SignatureCheckInput, type TrustArgs } from './signature-check.js';

const port = parentPort!;
let trust: ReturnType<typeof loadTrust> | undefined;
const start = (args: TrustArgs): void => {
  const t = loadTrust(args);
  trust = t;
  t.then(
    () => port.postMessage({ type: 'trust' }),
    (e: unknown) => port.postMessage({ type: 'trust', error: toPlainError(e) }),
  );
};
if (workerData !== null && workerData !== undefined) start(workerData as TrustArgs);

// Buffers arrive as plain Uint8Arrays: give them their Buffer methods back.
const buf = (u: Uint8Array): Buffer => Buffer.from(u.buffer, u.byteOffset, u.byteLength);

port.on('message', (m: SignatureCheckInput | { type: 'args'; args: TrustArgs }) => {
  if ('type' in m) {
    if (trust === undefined) start(m.args);
    return;
  }
  const input = m;
  void (async () => {
    try {
      const report = await verifyManifestSignatures({
        ...input,
        manifest: buf(input.manifest),
        signatures: input.signatures.map((s) => ({ ...s, bytes: buf(s.bytes) })),
        trust: await trust!,
      });
      port.postMessage({ type: 'report', report });
    } catch (e) {
      port.postMessage({ type: 'report', error: toPlainError(e) });
    }
  })();
});
