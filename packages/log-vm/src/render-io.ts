import { ChainRenderer, parseManifest, type RenderFormat } from '@appendlog/shared';
import { openBundle, verifiedBundleEntries } from './bundle-io.js';
import { storedEntries } from './entries.js';
import type { BufferedWriter } from './output.js';
import type { LogRow, Store } from './store.js';

/**
 * `logvm render` and the qubesbuilder.BuildLog text file: a chain, from the
 * store or from a bundle, through the pure ChainRenderer into a writer, one
 * block (or 4096 bundle records) in memory at a time.
 */
export async function renderStoredLog(store: Store, log: LogRow, format: RenderFormat, out: BufferedWriter): Promise<void> {
  const r = new ChainRenderer(format, log.vm);
  for (const e of storedEntries(store, log.id)) {
    const h = e.header;
    for (const b of r.push({ time: h.time, session: h.session, kind: h.kind, flags: h.flags, payload: e.payload })) await out.write(b);
  }
  for (const b of r.end()) await out.write(b);
  await out.flush();
}

/**
 * Renders a bundle (directory or archive, version 1 or 2, read in place).
 * The caller has verified it first; the chain is checked again as it is
 * rendered (verifiedBundleEntries), so what is rendered is what verified.
 */
export async function renderBundle(target: string, vm: string, format: RenderFormat, out: BufferedWriter): Promise<void> {
  const bundle = await openBundle(target);
  try {
    const r = new ChainRenderer(format, vm);
    const manifest = parseManifest(bundle.manifestBytes);
    for await (const batch of verifiedBundleEntries(bundle, manifest)) {
      for (const e of batch) {
        const h = e.header;
        for (const b of r.push({ time: h.time, session: h.session, kind: h.kind, flags: h.flags, payload: e.payload })) await out.write(Buffer.from(b));
      }
    }
    for (const b of r.end()) await out.write(b);
    await out.flush();
  } finally {
    bundle.close();
  }
}
