/**
 * End-to-end test harness: runs the built binaries and the real rpc/ service
 * file as separate processes, the way qrexec runs them (stdin/stdout pipes and
 * QREXEC_* variables), against real SQLite files in throwaway directories.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Readable } from 'node:stream';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const LOGVM = join(ROOT, 'packages/log-vm/dist/cli.js');
export const RPC_SERVICE = join(ROOT, 'rpc/qubes.AppendLog');

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
}

export interface RunOptions {
  input?: Buffer | string | Readable;
  env?: Record<string, string | undefined>;
  cwd?: string;
  timeoutMs?: number;
}

/** A fresh directory, removed by the returned cleanup. */
export function tempDir(prefix = 'appendlog-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Environment for children: no inherited APPENDLOG_* or QREXEC_* values. */
export function baseEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith('APPENDLOG_') && !k.startsWith('QREXEC_')) env[k] = v;
  }
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

export function run(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  const child = spawn(cmd, args, { env: baseEnv(opts.env), cwd: opts.cwd, stdio: ['pipe', 'pipe', 'pipe'] });
  return collect(child, opts);
}

export function collect(child: ChildProcess, opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on('data', (d: Buffer) => out.push(d));
    child.stderr!.on('data', (d: Buffer) => err.push(d));
    child.stdin!.on('error', () => undefined); // the child may refuse and close early
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolvePromise({ code, signal, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString('utf8') });
    });
    const input = opts.input;
    if (input === undefined) child.stdin!.end();
    else if (typeof input === 'string' || Buffer.isBuffer(input)) child.stdin!.end(input);
    else input.pipe(child.stdin!);
  });
}

/** `logvm ARGS...` with the store at `db`. */
export function logvm(args: string[], opts: RunOptions & { db?: string } = {}): Promise<RunResult> {
  const env = { ...(opts.db ? { APPENDLOG_DB: opts.db } : {}), ...opts.env };
  return run(process.execPath, [LOGVM, ...args], { ...opts, env });
}

/** Environment of rpc/qubes.AppendLog as qrexec sets it for a call VM -> log VM. */
export function qrexecEnv(vm: string | undefined, argument: string | undefined, db: string): Record<string, string | undefined> {
  return {
    QREXEC_REMOTE_DOMAIN: vm,
    QREXEC_SERVICE_ARGUMENT: argument,
    QREXEC_SERVICE_FULL_NAME: argument === undefined ? 'qubes.AppendLog' : `qubes.AppendLog+${argument}`,
    // As qrexec sets them for a VM-to-VM call (qubes-core-qrexec): no
    // QREXEC_REQUESTED_TARGET, and QREXEC_REQUESTED_TARGET_TYPE empty.
    QREXEC_REQUESTED_TARGET_TYPE: '',
    APPENDLOG_DB: db,
    APPENDLOG_LOGVM: LOGVM,
  };
}

/**
 * Runs rpc/qubes.AppendLog as qrexec would, feeding `input` on stdin: the
 * agent starts the service through a login shell, with the argument as $1.
 */
export function callService(vm: string | undefined, argument: string | undefined, db: string, opts: RunOptions = {}): Promise<RunResult> {
  return run('/bin/sh', ['-l', '-c', 'exec "$0" "$@"', RPC_SERVICE, ...(argument === undefined ? [] : [argument])], {
    ...opts,
    env: { ...qrexecEnv(vm, argument, db), ...opts.env },
  });
}

/** The service's JSON lines on stdout (receipts, errors). */
export function jsonLines(stdout: Buffer): Array<Record<string, unknown>> {
  return stdout
    .toString('utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}
