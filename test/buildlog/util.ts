/**
 * Helpers for the qubesbuilder.BuildLog specifications.
 *
 * The caller is the builder's own calling code (builder_client.py: Popen of
 * `qrexec-client-vm dom0 qubesbuilder.BuildLog`, a logging.StreamHandler on
 * its stdin, the builder's regex on its stdout). Here `qrexec-client-vm` is a
 * stand-in shell script on PATH that does what dom0 and the log VM's agent do
 * for the policy line `qubesbuilder.BuildLog * build-vm dom0 allow
 * target=logvm`: rewrite the argument as dom0 does (bytes outside
 * [A-Za-z0-9_.+-] become `_`), then run the real rpc/qubesbuilder.BuildLog
 * in a clean environment with only what qrexec sets (QREXEC_REMOTE_DOMAIN,
 * QREXEC_SERVICE_ARGUMENT, an empty QREXEC_REQUESTED_TARGET_TYPE), the
 * argument as $1 when it is not empty, and the log VM user's HOME.
 * test/buildlog/lab.test.ts runs the same client through the real qrexec.
 */
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { LOGVM, ROOT, run, type RunOptions, type RunResult } from '../helpers.js';

export const RPC_BUILDLOG = join(ROOT, 'rpc/qubesbuilder.BuildLog');
export const BUILDER_CLIENT = join(ROOT, 'test/buildlog/builder_client.py');
export const VM = 'build-vm';
/** The builder's regex for the first stdout line (github-action.py). */
export const BUILDER_RE = /^.*[\S\w.-]+\/log_[\S\w.-]+$/;
/** One line of the legacy format: `%F %T.%f +0000 VM: line` or `... +0000 > text`. */
export const LEGACY_LINE = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6} \+0000 (?:build-vm: [\x20-\x7e]*|> [\x20-\x7e]*)$/;

const sq = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

export interface LogVmHome {
  /** The log VM user's home: QubesIncomingBuildLog, the store, the config are under it. */
  home: string;
  db: string;
  incoming: string;
  /** Directory holding the stand-in qrexec-client-vm (put first on PATH). */
  bin: string;
}

export function logVmHome(dir: string): LogVmHome {
  const home = join(dir, 'logvm-home');
  const bin = join(dir, 'bin');
  mkdirSync(home, { recursive: true });
  mkdirSync(bin, { recursive: true });
  return { home, db: join(home, '.local/share/appendlog/logs.db'), incoming: join(home, 'QubesIncomingBuildLog'), bin };
}

/**
 * Writes the stand-in `qrexec-client-vm` into h.bin. `serviceEnv` is what the
 * log VM's environment adds (the admin's APPENDLOG_* settings, GNUPGHOME).
 */
export function fakeQrexecClient(h: LogVmHome, serviceEnv: Record<string, string> = {}, vm = VM): string {
  const path = join(h.bin, 'qrexec-client-vm');
  const extra = Object.entries(serviceEnv).map(([k, v]) => `${k}=${sq(v)}`);
  writeFileSync(
    path,
    [
      '#!/bin/sh',
      'target=$1; call=$2',
      'service=${call%%+*}',
      'case $call in *+*) arg=${call#*+} ;; *) arg= ;; esac',
      // dom0's policy: this service, from this VM, to dom0 (redirected) or to logvm.
      'if [ "$service" != qubesbuilder.BuildLog ] || { [ "$target" != dom0 ] && [ "$target" != logvm ]; }; then echo "Request refused" >&2; exit 126; fi',
      // dom0 rewrites the argument (qrexec-daemon sanitize_name).
      `arg=$(printf '%s' "$arg" | LC_ALL=C tr -c 'A-Za-z0-9_.+-' '_')`,
      'set --; [ -n "$arg" ] && set -- "$arg"',
      `exec env -i PATH=${sq(process.env.PATH ?? '/usr/bin:/bin')} HOME=${sq(h.home)} USER=user ` +
        `QREXEC_REMOTE_DOMAIN=${sq(vm)} QREXEC_SERVICE_ARGUMENT="$arg" QREXEC_SERVICE_FULL_NAME="qubesbuilder.BuildLog+$arg" ` +
        `QREXEC_REQUESTED_TARGET_TYPE= APPENDLOG_LOGVM=${sq(LOGVM)} ${extra.join(' ')} ${sq(RPC_BUILDLOG)} "$@"`,
      '',
    ].join('\n'),
  );
  chmodSync(path, 0o755);
  return path;
}

export interface BuilderResult {
  log_file?: string | null;
  url?: string;
  exception?: string;
  returncode?: number;
}

/** Runs the builder's calling code with `messages` (one log record each). */
export async function builderLogs(h: LogVmHome, dir: string, messages: string[], subdir?: string, opts: RunOptions = {}): Promise<{ result: BuilderResult; run: RunResult }> {
  const file = join(dir, `messages-${Date.now()}-${Math.random().toString(16).slice(2)}.txt`);
  writeFileSync(file, messages.map((m) => `${m}\n`).join(''), 'utf8');
  const r = await run('/usr/bin/python3', [BUILDER_CLIENT, file, ...(subdir !== undefined ? [subdir] : [])], {
    ...opts,
    env: { PATH: `${h.bin}:${process.env.PATH ?? '/usr/bin:/bin'}`, ...opts.env },
  });
  const text = r.stdout.toString('utf8').trim();
  let result: BuilderResult;
  try {
    result = JSON.parse(text) as BuilderResult;
  } catch {
    throw new Error(`builder client printed no JSON (exit ${r.code}): ${text} / ${r.stderr}`);
  }
  return { result, run: r };
}

/** Runs rpc/qubesbuilder.BuildLog directly as qrexec would (for arguments dom0 would never pass). */
export function callBuildLog(h: LogVmHome, argument: string | undefined, input: Buffer | string, env: Record<string, string> = {}, vm: string | null = VM): Promise<RunResult> {
  return run(RPC_BUILDLOG, argument ? [argument] : [], {
    input,
    env: {
      HOME: h.home,
      QREXEC_REMOTE_DOMAIN: vm ?? undefined,
      QREXEC_SERVICE_ARGUMENT: argument ?? '',
      QREXEC_REQUESTED_TARGET_TYPE: '',
      APPENDLOG_LOGVM: LOGVM,
      ...env,
    },
  });
}

/** The bytes the builder's StreamHandler sends for these records: UTF-8, one `\n` each. */
export function sentBytes(messages: string[]): Buffer {
  return Buffer.from(messages.map((m) => `${m}\n`).join(''), 'utf8');
}
