import { fstatSync } from 'node:fs';
import net from 'node:net';
import type { Readable } from 'node:stream';

/**
 * Where `logvm append` reads the sender's bytes from. `run` hands every chunk
 * to `onData` synchronously (the chunk is valid only during the call) and
 * settles at end of input; `destroy` stops reading.
 *
 * Under qrexec stdin is a pipe or a socket: it is read into one reused 64 KiB
 * buffer (net.Socket `onread`), so streaming a gigabyte allocates nothing per
 * read and memory stays flat. Anything else (a file, a terminal) is read as
 * an ordinary stream.
 */
export interface ByteSource {
  run(onData: (chunk: Buffer) => void): Promise<void>;
  destroy(): void;
}

export function streamSource(input: Readable): ByteSource {
  return {
    async run(onData) {
      for await (const chunk of input as AsyncIterable<Buffer>) onData(chunk);
    },
    destroy() {
      input.destroy();
    },
  };
}

export function stdinSource(): ByteSource {
  let st;
  try {
    st = fstatSync(0);
  } catch {
    return streamSource(process.stdin);
  }
  if (!st.isFIFO() && !st.isSocket()) return streamSource(process.stdin);
  const buffer = Buffer.allocUnsafe(64 * 1024);
  let handler: (chunk: Buffer) => void = () => undefined;
  let failed: unknown;
  // `onread` is a documented net.Socket option (Node 15.8+) missing from @types/node 20.
  const socket = new net.Socket({
    fd: 0,
    readable: true,
    writable: false,
    allowHalfOpen: true,
    onread: {
      buffer,
      callback: (n: number, buf: Uint8Array): boolean => {
        try {
          handler((buf as Buffer).subarray(0, n));
        } catch (e) {
          failed = e;
          socket.destroy();
        }
        return true;
      },
    },
  } as net.SocketConstructorOpts);
  return {
    run(onData) {
      handler = onData;
      return new Promise((resolve, reject) => {
        socket.once('end', () => resolve());
        socket.once('error', (e) => reject(e));
        socket.once('close', () => (failed !== undefined ? reject(failed) : resolve()));
      });
    },
    destroy() {
      socket.destroy();
    },
  };
}
