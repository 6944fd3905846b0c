import { createWriteStream, existsSync, statSync } from 'node:fs';
import type { CommandModule } from 'yargs';
import { AppendlogError, parseLogRef, type RenderFormat } from '@appendlog/shared';
import { BufferedWriter, asList, reportError } from '../output.js';
import { openStore, withDb, type DbArgs } from './common.js';

interface RenderArgs extends DbArgs {
  target: string;
  format: RenderFormat;
  key?: string | string[];
  out?: string;
}

/**
 * `logvm render`: a log as text. `buildlog` is the legacy qubesbuilder.BuildLog
 * format (timestamps, `VM:` prefix, every byte outside 0x20-0x7e as `.`),
 * byte for byte the file the compatible service writes; `text` is the lines
 * alone, escaped as `logvm show` escapes them. A bundle is verified against
 * its manifest before anything is printed (with --key, its signatures too).
 */
export const renderCommand: CommandModule<object, RenderArgs> = {
  command: 'render <target>',
  describe: 'write a log (VM/NAME, or a bundle directory) as text: the legacy build-log format or escaped lines',
  builder: (y) =>
    withDb(y)
      .positional('target', { type: 'string', demandOption: true, describe: 'VM/NAME in the store, or a bundle directory or archive' })
      .option('format', { choices: ['buildlog', 'text'] as const, default: 'buildlog' as RenderFormat, describe: 'buildlog: the legacy qubesbuilder.BuildLog file; text: the lines, escaped' })
      .option('key', { type: 'string', describe: 'bundle only: trusted public key; its signatures must verify too (repeatable)' })
      .option('out', { type: 'string', describe: 'write to this file instead of stdout' }) as never,
  handler: async (args) => {
    try {
      // Opened only once what is rendered has been checked: a refused bundle leaves no file.
      let stream: NodeJS.WritableStream & { end: (cb?: (e?: Error | null) => void) => unknown } = process.stdout;
      const open = (): BufferedWriter => {
        if (args.out !== undefined) stream = createWriteStream(args.out, { flags: 'wx' });
        return new BufferedWriter(stream as never, 256 * 1024);
      };
      const { looksLikeArchive } = await import('../archive-io.js');
      const isBundle = existsSync(args.target) && (statSync(args.target).isDirectory() || looksLikeArchive(args.target));
      if (isBundle) {
        const { verifyBundle, verifyBundleEntries, openBundle } = await import('../bundle-io.js');
        const { parseManifest } = await import('@appendlog/shared');
        const { renderBundle } = await import('../render-io.js');
        const keys = asList(args.key);
        let vm: string;
        if (keys.length > 0) {
          const { loadTrust } = await import('./keys.js');
          vm = (await verifyBundle(args.target, await loadTrust({ keys }), 1)).manifest.vm;
        } else {
          const bundle = await openBundle(args.target);
          try {
            const manifest = parseManifest(bundle.manifestBytes);
            await verifyBundleEntries(bundle, manifest);
            vm = manifest.vm;
          } finally {
            bundle.close();
          }
        }
        await renderBundle(args.target, vm, args.format, open());
      } else {
        if (asList(args.key).length > 0) throw new AppendlogError('USAGE', '--key is for a bundle; a store log is checked with logvm verify-chain');
        const { vm, name } = parseLogRef(args.target);
        const { renderStoredLog } = await import('../render-io.js');
        const store = openStore(args);
        try {
          const log = store.requireLog(vm, name);
          await renderStoredLog(store, log, args.format, open());
        } finally {
          store.close();
        }
      }
      if (stream !== process.stdout) await new Promise<void>((resolve, reject) => stream.end((e?: Error | null) => (e ? reject(e) : resolve())));
    } catch (e) {
      reportError(e, 'logvm render');
    }
  },
};
