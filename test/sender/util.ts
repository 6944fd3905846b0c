/**
 * Helpers for the logsend specifications in test/sender.
 *
 * Everything runs as real processes: `logsend` (packages/log-sender/dist),
 * the real rpc/qubes.AppendLog service file, `logvm`, GnuPG, make, sqlite3.
 *
 * Qubes' qrexec-client-vm cannot run here, so each test writes a fake one: a
 * shell script called exactly as logsend calls the real one
 * (`qrexec-client-vm TARGET qubes.AppendLog+ARG`) that runs the service the
 * way qrexec would in the log VM: a clean environment holding only the
 * QREXEC_* variables dom0 sets (the calling VM's name among them), stdin and
 * stdout connected to the caller. A policy-denying variant behaves like the
 * real client on a refusal: "Request refused" on stderr, exit status 126.
 *
 * Exit codes are written out from the README table and the brief on purpose
 * instead of imported from src, so a change of a documented code shows up as
 * a failing test.
 */
import { chmodSync, cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { expect } from 'vitest';
import { LOGVM, ROOT, RPC_SERVICE, jsonLines, logvm, run, tempDir, type RunOptions, type RunResult } from '../helpers.js';

export const SENDER = join(ROOT, 'packages/log-sender/dist/cli.js');
/** The calling VM, as dom0 names it to the service (QREXEC_REMOTE_DOMAIN). */
export const VM = 'build-vm';

export { EXIT, type Code } from '../exit-codes.js';

/** Entry kinds (docs/FORMAT.md section 3.2), written out on purpose. */
export const KIND = {
  LINE: 0x01,
  STDOUT: 0x02,
  STDERR: 0x03,
  SESSION_OPEN: 0x10,
  SESSION_CLOSE: 0x11,
  NOTICE: 0x12,
  SEAL: 0x20,
  CLAIM: 0x30,
} as const;

/** A stack trace line: a coded error never prints one. */
export const STACK_TRACE = /\n\s+at \S/;

// ---------------------------------------------------------------------------
// logsend

export interface TimedResult extends RunResult {
  elapsedMs: number;
}

/**
 * `logsend ARGS...` as a separate process, with a config directory of its
 * own (no user or system config leaks in) and no APPENDLOG_* variables.
 */
export async function logsend(args: string[], opts: RunOptions & { home: string }): Promise<TimedResult> {
  const started = Date.now();
  const r = await run(process.execPath, [SENDER, ...args], {
    ...opts,
    env: { XDG_CONFIG_HOME: join(opts.home, 'config'), ...opts.env },
  });
  return { ...r, elapsedMs: Date.now() - started };
}

/** logsend's own status lines (`logsend: ...`), apart from what the build wrote. */
export function senderLines(stderr: string): string[] {
  return stderr.split('\n').filter((l) => l.startsWith('logsend: '));
}

// ---------------------------------------------------------------------------
// A fake qrexec-client-vm

export type QrexecBehaviour =
  /** Run the service as qrexec would. */
  | { kind: 'allow' }
  /** dom0 policy denies the call. */
  | { kind: 'refuse' }
  /** Run the service, and SIGKILL it once its log holds `lines` lines (the log VM dies mid-build). */
  | { kind: 'kill-after-lines'; lines: number };

export interface FakeQrexec {
  path: string;
  /** The argument vectors it was called with, one string per call. */
  calls(): string[];
}

const sq = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * Writes `dir/NAME` (default qrexec-client-vm): `NAME TARGET SERVICE+ARG`.
 * The service runs with the environment qrexec gives it and nothing else
 * (`env -i`): the caller's variables do not cross VMs.
 */
export function fakeQrexecClient(dir: string, db: string, behaviour: QrexecBehaviour = { kind: 'allow' }, name = 'qrexec-client-vm', vm = VM): FakeQrexec {
  const path = join(dir, name);
  const callsFile = `${path}.calls`;
  const service = [
    'env -i',
    `PATH=${sq(process.env.PATH ?? '/usr/bin:/bin')}`,
    `HOME=${sq(dir)}`,
    `QREXEC_REMOTE_DOMAIN=${sq(vm)}`,
    'QREXEC_SERVICE_ARGUMENT="$arg"',
    'QREXEC_SERVICE_FULL_NAME="$call"',
    // VM-to-VM: no QREXEC_REQUESTED_TARGET, an empty target type (qubes-core-qrexec).
    'QREXEC_REQUESTED_TARGET_TYPE=',
    `APPENDLOG_DB=${sq(db)}`,
    `APPENDLOG_LOGVM=${sq(LOGVM)}`,
    // The agent starts the service through a login shell, argument as $1.
    `/bin/sh -l -c 'exec "$0" "$1"' ${sq(RPC_SERVICE)} "$arg"`,
  ].join(' ');
  const lines = [
    '#!/bin/sh',
    `printf '%s\\n' "$*" >> ${sq(callsFile)}`,
    'target=$1',
    'call=$2',
    'service=${call%%+*}',
    'case $call in *+*) arg=${call#*+} ;; *) arg= ;; esac',
  ];
  if (behaviour.kind === 'refuse') {
    lines.push('echo "Request refused" >&2', 'exit 126');
  } else {
    lines.push('if [ "$service" != qubes.AppendLog ]; then echo "Request refused" >&2; exit 126; fi');
    if (behaviour.kind === 'allow') {
      lines.push(`exec ${service}`);
    } else {
      // In the background with the caller's stdin (a background job of a
      // non-interactive shell would otherwise read /dev/null).
      lines.push(
        'exec 3<&0',
        `${service} <&3 3<&- &`,
        'pid=$!',
        'exec 3<&-',
        'name=${arg#_framed.}',
        'i=0',
        'while [ $i -lt 200 ]; do',
        `  n=$(sqlite3 ${sq(db)} "SELECT h.lines FROM heads h JOIN logs l ON l.id = h.log_id WHERE l.vm = '${vm}' AND l.name = '$name'" 2>/dev/null)`,
        `  [ "\${n:-0}" -ge ${behaviour.lines} ] && break`,
        '  sleep 0.05',
        '  i=$((i + 1))',
        'done',
        'kill -KILL $pid',
        'wait $pid',
        'exit $?',
      );
    }
  }
  writeFileSync(path, `${lines.join('\n')}\n`);
  chmodSync(path, 0o755);
  return {
    path,
    calls: () => {
      try {
        return readFileSync(callsFile, 'utf8').split('\n').filter((l) => l !== '');
      } catch {
        return [];
      }
    },
  };
}

// ---------------------------------------------------------------------------
// GnuPG (standing in for Split-GPG in the log VM)

export const SIGNER_EMAIL = 'r@example.org';

export interface Signer {
  env: Record<string, string>;
  /** `--signer` value for `logvm seal`. */
  spec: string;
  /** The armored public key, for `verify-chain --key`. */
  pub: string;
  cleanup(): Promise<void>;
}

/** A throwaway GNUPGHOME with one ed25519 signing key without passphrase. */
export async function makeSigner(pubDir: string): Promise<Signer> {
  // mkdtemp gives 0700 and a short path (the agent socket lives there).
  const home = tempDir('appendlog-sender-gpg-');
  const env = { GNUPGHOME: home.dir };
  const gen = await run('gpg', ['--batch', '--pinentry-mode', 'loopback', '--passphrase', '', '--quick-gen-key', `R <${SIGNER_EMAIL}>`, 'ed25519', 'sign', 'never'], { env });
  expect(gen.code, `gpg --quick-gen-key: ${gen.stderr}`).toBe(0);
  const exp = await run('gpg', ['--batch', '--armor', '--export', SIGNER_EMAIL], { env });
  expect(exp.code, exp.stderr).toBe(0);
  const pub = join(pubDir, 'pub.asc');
  writeFileSync(pub, exp.stdout);
  return {
    env,
    spec: `gpg:${SIGNER_EMAIL}`,
    pub,
    async cleanup() {
      await run('gpgconf', ['--kill', 'gpg-agent'], { env });
      home.cleanup();
    },
  };
}

// ---------------------------------------------------------------------------
// logvm

/** `logvm` that must succeed. */
export async function logvmOk(args: string[], opts: Parameters<typeof logvm>[1] = {}): Promise<RunResult> {
  const r = await logvm(args, opts);
  expect(r.code, `logvm ${args.join(' ')}: ${r.stderr}`).toBe(0);
  return r;
}

export async function showText(db: string, ref: string): Promise<string> {
  return (await logvmOk(['show', ref], { db })).stdout.toString('utf8');
}

export async function showRaw(db: string, ref: string): Promise<Buffer> {
  return (await logvmOk(['show', '--raw', ref], { db })).stdout;
}

/** Lines of `logvm show` with stream mark `mark` (`|`, `E`, `!`, `*`, `C`, `#`), prefix removed. */
export function marked(show: string, mark: string): string[] {
  const out: string[] = [];
  for (const line of show.split('\n')) {
    // Fixed-width prefix: seq right-aligned in 8, space, mark, flag mark, space.
    const m = /^ *\d+ (.)(.) (.*)$/.exec(line);
    if (m !== null && m[1] === mark) out.push(m[3]!);
  }
  return out;
}

export interface VerifyJson {
  ok: boolean;
  code?: string;
  exitCode?: number;
  seq?: number | null;
  message?: string;
  log?: string;
  state?: string;
  entries?: number;
  lines?: number;
  sessions?: number;
  closes?: Record<string, number>;
  head?: string;
  claims?: Record<string, unknown> | null;
  artifacts?: Array<{ file: string; sha256: string; claimedPath: string }>;
}

/** `logvm verify-chain --json ARGS`: the parsed line and the exit status. */
export async function verifyJson(args: string[], opts: Parameters<typeof logvm>[1] = {}): Promise<{ result: VerifyJson; code: number | null; stderr: string }> {
  const r = await logvm(['verify-chain', '--json', ...args], opts);
  const text = r.stdout.toString('utf8').trim();
  let result: VerifyJson;
  try {
    result = JSON.parse(text) as VerifyJson;
  } catch {
    throw new Error(`verify-chain --json printed no JSON (exit ${r.code}): ${text.slice(0, 300)} / ${r.stderr.slice(0, 300)}`);
  }
  return { result, code: r.code, stderr: r.stderr };
}

/** Seals VM/NAME with `signer` and exports it to `out`; returns the bundle's records and manifest. */
export async function sealAndExport(db: string, ref: string, signer: Signer, out: string): Promise<Bundle> {
  await logvmOk(['seal', ref, '--signer', signer.spec], { db, env: signer.env });
  await logvmOk(['export', ref, '--out', out, '--bundle-version', '1'], { db });
  return readBundle(out);
}

// ---------------------------------------------------------------------------
// Bundles and the store, read as data

import type { Rec } from '../e2e-util.js';
export type { Rec } from '../e2e-util.js';

export interface Bundle {
  dir: string;
  records: Rec[];
  manifest: Record<string, unknown> & { claims?: Record<string, unknown> };
}

export function readBundle(dir: string): Bundle {
  const text = readFileSync(join(dir, 'entries.jsonl'), 'utf8');
  const records = text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Rec);
  const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as Bundle['manifest'];
  return { dir, records, manifest };
}

/** A record's payload bytes. */
export function payloadOf(r: Rec): Buffer {
  return r.text !== undefined ? Buffer.from(r.text, 'utf8') : Buffer.from(r.base64 ?? '', 'base64');
}

/** A record's payload parsed as JSON (claims and log-VM events). */
export function jsonOf(r: Rec | StoredEntry): Record<string, unknown> {
  const bytes = 'payload' in r ? r.payload : payloadOf(r);
  return JSON.parse(bytes.toString('utf8')) as Record<string, unknown>;
}

export interface StoredEntry {
  seq: number;
  session: number;
  kind: number;
  flags: number;
  payload: Buffer;
}

/**
 * A log's entries straight from the store (read-only), decoding the 26-byte
 * headers of docs/FORMAT.md section 3.1: seq u64, time u64, session u32,
 * kind u8, flags u8, length u32, all big-endian.
 */
export function storedEntries(db: string, ref: string): StoredEntry[] {
  const [vm, name] = ref.split('/') as [string, string];
  const conn = new Database(db, { readonly: true, fileMustExist: true });
  try {
    const rows = conn
      .prepare('SELECT b.data FROM blocks b JOIN logs l ON l.id = b.log_id WHERE l.vm = ? AND l.name = ? ORDER BY b.first_seq')
      .all(vm, name) as Array<{ data: Buffer }>;
    const out: StoredEntry[] = [];
    for (const { data } of rows) {
      let off = 0;
      while (off < data.length) {
        const length = data.readUInt32BE(off + 22);
        out.push({
          seq: Number(data.readBigUInt64BE(off)),
          session: data.readUInt32BE(off + 16),
          kind: data[off + 20]!,
          flags: data[off + 21]!,
          payload: Buffer.from(data.subarray(off + 26, off + 26 + length)),
        });
        off += 26 + length;
      }
    }
    return out;
  } finally {
    conn.close();
  }
}

// ---------------------------------------------------------------------------
// Builds

/** Copies examples/hello to `dir/NAME` and adds a target that writes to both streams, in a known order. */
export function helloProject(dir: string, name: string): string {
  const copy = join(dir, name);
  mkdirSync(copy);
  cpSync(join(ROOT, 'examples/hello'), copy, { recursive: true });
  const makefile = join(copy, 'Makefile');
  writeFileSync(
    makefile,
    `${readFileSync(makefile, 'utf8')}
# Added by test/sender: both streams, spaced out so their order is fixed.
both:
\t@echo "both: stdout line 1"
\t@sleep 0.2
\t@echo "both: stderr line 1" >&2
\t@sleep 0.2
\t@echo "both: stdout line 2"
\t@echo "both: stderr line 2 (no newline)" | tr -d '\\n' >&2

.PHONY: both
`,
  );
  return copy;
}

/** `sha256sum FILE` through the real coreutils tool. */
export async function sha256sum(path: string): Promise<string> {
  const r = await run('sha256sum', [path]);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout.toString('utf8').split(' ')[0]!;
}

/** Lines of a byte string, newline removed; a last line without newline is kept. */
export function linesOf(b: Buffer | string): string[] {
  const s = typeof b === 'string' ? b : b.toString('utf8');
  const parts = s.split('\n');
  if (parts[parts.length - 1] === '') parts.pop();
  return parts;
}

export { jsonLines };
