/**
 * Helpers for the seal / export / verify specifications in test/seal.
 *
 * Real GnuPG stands in for Split-GPG: every test file gets a throwaway
 * GNUPGHOME with its own keys, passed to `logvm` as GNUPGHOME, and the
 * agent it started is stopped again in afterAll. Bundles are tampered with as
 * files, the way an attacker holding a copy of the bundle would.
 *
 * The exit codes are written out from the README table ("Exit codes") on
 * purpose instead of imported from src, so a change of a documented code
 * shows up as a failing test.
 */
import { chmodSync, cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { ChainHasher, KIND_NAMES, encodeEntry } from '../../packages/shared/src/index.js';
import { ROOT, logvm, run, tempDir, type RunResult } from '../helpers.js';

export { EXIT, type Code } from '../exit-codes.js';
import { EXIT, type Code } from '../exit-codes.js';

export const SQLITE3 = '/usr/bin/sqlite3';

// ---------------------------------------------------------------------------
// GnuPG

export interface GpgHome {
  home: string;
  env: Record<string, string>;
  /** Runs gpg in this home. */
  gpg(args: string[], input?: string | Buffer): Promise<RunResult>;
  /** Generates a key without a passphrase (or with one); returns its fingerprint. */
  genKey(uid: string, algo: 'ed25519' | 'rsa2048' | 'rsa3072', passphrase?: string): Promise<string>;
  /** Writes the armored public key of `who` to `path`. */
  exportPublic(who: string, path: string): Promise<string>;
  /** Writes the armored secret key of `who` (as `gpg --export-secret-keys --armor`). */
  exportSecret(who: string, path: string, passphrase?: string): Promise<string>;
  /** Imports an armored key file. */
  importKey(path: string): Promise<void>;
  /** A detached armored signature over `dataPath` by `who`, as the signers make it. */
  signDetached(who: string, dataPath: string, sigPath: string): Promise<void>;
  /** `gpg --verify SIG DATA`. */
  verify(sigPath: string, dataPath: string): Promise<RunResult>;
  /** Stops the gpg-agent this home started, then removes the home. */
  cleanup(): Promise<void>;
}

export function gpgHome(prefix = 'appendlog-gpg-'): GpgHome {
  // mkdtemp makes it 0700, as gpg wants; the path stays short for the agent socket.
  const { dir: home, cleanup: rm } = tempDir(prefix);
  const env = { GNUPGHOME: home };
  const gpg = (args: string[], input?: string | Buffer): Promise<RunResult> => run('gpg', ['--batch', '--no-tty', ...args], { env, input });
  const ok = async (args: string[], input?: string | Buffer): Promise<RunResult> => {
    const r = await gpg(args, input);
    expect(r.code, `gpg ${args.join(' ')}: ${r.stderr}`).toBe(0);
    return r;
  };
  return {
    home,
    env,
    gpg,
    async genKey(uid, algo, passphrase = '') {
      await ok(['--pinentry-mode', 'loopback', '--passphrase', passphrase, '--quick-gen-key', uid, algo, 'sign', 'never']);
      const r = await ok(['--with-colons', '--list-keys', uid]);
      const fpr = /^fpr:+([0-9A-F]{40}):/m.exec(r.stdout.toString('utf8'));
      expect(fpr, `fingerprint of ${uid}`).not.toBeNull();
      return fpr![1]!;
    },
    async exportPublic(who, path) {
      const r = await ok(['--armor', '--export', who]);
      writeFileSync(path, r.stdout);
      return path;
    },
    async exportSecret(who, path, passphrase = '') {
      const r = await ok(['--pinentry-mode', 'loopback', '--passphrase', passphrase, '--armor', '--export-secret-keys', who]);
      writeFileSync(path, r.stdout, { mode: 0o600 });
      return path;
    },
    async importKey(path) {
      await ok(['--import', path]);
    },
    async signDetached(who, dataPath, sigPath) {
      await ok(['--yes', '-u', who, '--digest-algo', 'SHA512', '-a', '-b', '-o', sigPath, dataPath]);
    },
    verify(sigPath, dataPath) {
      return gpg(['--status-fd', '1', '--verify', sigPath, dataPath]);
    },
    async cleanup() {
      await run('gpgconf', ['--kill', 'gpg-agent'], { env });
      rm();
    },
  };
}

/**
 * A gpg-compatible command for APPENDLOG_GPG / APPENDLOG_SPLIT_GPG: a shell
 * script `body` in `dir`. Every call appends its arguments to `${path}.calls`.
 */
export function signerScript(dir: string, name: string, body: string): { path: string; calls: () => string[] } {
  const path = join(dir, name);
  const log = `${path}.calls`;
  writeFileSync(path, `#!/bin/sh\nprintf '%s\\n' "$*" >> '${log}'\n${body}\n`);
  chmodSync(path, 0o755);
  return {
    path,
    calls: () => {
      try {
        return readFileSync(log, 'utf8').split('\n').filter((l) => l !== '');
      } catch {
        return [];
      }
    },
  };
}

// ---------------------------------------------------------------------------
// Building logs

/**
 * Copies examples/hello to a fresh directory under `dir` and runs the real
 * `make -C COPY`, stdout and stderr interleaved as `make 2>&1 | qrexec-client-vm`
 * would send them.
 */
export async function helloMake(dir: string): Promise<Buffer> {
  const copy = join(dir, 'hello');
  mkdirSync(copy);
  cpSync(join(ROOT, 'examples/hello'), copy, { recursive: true });
  const r = await run('sh', ['-c', 'make -C "$1" 2>&1', 'sh', copy]);
  expect(r.code, `make failed: ${r.stdout.toString()}${r.stderr}`).toBe(0);
  return r.stdout;
}

/** `logvm` that must succeed. */
export async function logvmOk(args: string[], opts: Parameters<typeof logvm>[1] = {}): Promise<RunResult> {
  const r = await logvm(args, opts);
  expect(r.code, `logvm ${args.join(' ')}: ${r.stderr}`).toBe(0);
  return r;
}

// ---------------------------------------------------------------------------
// Bundles

import type { Rec } from '../e2e-util.js';
export type { Rec } from '../e2e-util.js';

/** A copy of a bundle directory for one attack. */
export function copyBundle(src: string, dest: string): string {
  cpSync(src, dest, { recursive: true });
  return dest;
}

export function entriesPath(bundle: string): string {
  return join(bundle, 'entries.jsonl');
}

export function readLines(bundle: string): string[] {
  const text = readFileSync(entriesPath(bundle), 'utf8');
  expect(text.endsWith('\n')).toBe(true);
  return text.slice(0, -1).split('\n');
}

export function writeLines(bundle: string, lines: string[]): void {
  writeFileSync(entriesPath(bundle), `${lines.join('\n')}\n`);
}

export function readRecords(bundle: string): Rec[] {
  return readLines(bundle).map((l) => JSON.parse(l) as Rec);
}

/** Serialises records in the exporter's field order. */
export function recordLine(r: Rec): string {
  const body = r.text !== undefined ? `"text":${JSON.stringify(r.text)}` : `"base64":${JSON.stringify(r.base64)}`;
  return `{"seq":${r.seq},"time":${r.time},"session":${r.session},"kind":${JSON.stringify(r.kind)},"flags":${r.flags},${body},"hash":${JSON.stringify(r.hash)}}`;
}

export function writeRecords(bundle: string, recs: Rec[]): void {
  writeLines(bundle, recs.map(recordLine));
}

const KIND_BY_NAME = new Map(Object.entries(KIND_NAMES).map(([k, v]) => [v, Number(k)]));

/** A record's canonical entry encoding (docs/FORMAT.md 3.1), which is what gets hashed. */
export function encodeRecord(r: Rec): Buffer {
  const kind = KIND_BY_NAME.get(r.kind);
  expect(kind, `kind ${r.kind}`).toBeDefined();
  const payload = r.text !== undefined ? Buffer.from(r.text, 'utf8') : Buffer.from(r.base64!, 'base64');
  return encodeEntry({ seq: r.seq, time: r.time, session: r.session, kind: kind!, flags: r.flags, payload });
}

/**
 * Recomputes the chain hash of records[from..] after an edit, starting from
 * the (unchanged) hash of records[from-1], with the project's ChainHasher:
 * what an attacker who rewrites a line and everything after it would do.
 */
export function rehashFrom(recs: Rec[], from: number): Rec[] {
  expect(from).toBeGreaterThanOrEqual(1);
  const hasher = new ChainHasher(Buffer.from(recs[from - 1]!.hash, 'hex'));
  return recs.map((r, i) => {
    if (i < from) return r;
    return { ...r, hash: Buffer.from(hasher.push(encodeRecord(r))).toString('hex') };
  });
}

export interface VerifyOutcome {
  human: RunResult;
  /** With `json: true`: the --json run and its parsed line. */
  json?: RunResult;
  result?: Record<string, unknown>;
}

/**
 * `logvm verify-chain ARGS`; with `json`, also `--json` side by side (the
 * machine form carries the seq for failures whose message has none).
 */
export async function verifyChain(args: string[], opts: Parameters<typeof logvm>[1] & { json?: boolean } = {}): Promise<VerifyOutcome> {
  const { json: withJson = false, ...runOpts } = opts;
  const [human, json] = await Promise.all([
    logvm(['verify-chain', ...args], runOpts),
    withJson ? logvm(['verify-chain', '--json', ...args], runOpts) : Promise.resolve(undefined),
  ]);
  if (json === undefined) return { human };
  const text = json.stdout.toString('utf8').trim();
  let result: Record<string, unknown>;
  try {
    result = JSON.parse(text) as Record<string, unknown>;
  } catch {
    throw new Error(`verify-chain --json printed no JSON (exit ${json.code}): ${text.slice(0, 500)} / ${json.stderr.slice(0, 500)}`);
  }
  return { human, json, result };
}

/**
 * The verification failed with `code` and its documented exit status, said
 * FAIL and never OK; with `seq`, the failure names that seq (in the message,
 * and in the --json result when there is one).
 */
export function expectFailure(o: VerifyOutcome, code: Code, seq?: number, { seqInMessage = true } = {}): void {
  const { human, json, result } = o;
  expect(human.code, `exit status; stderr: ${human.stderr}`).toBe(EXIT[code]);
  expect(human.stderr).toContain(`FAIL: ${code}:`);
  expect(human.stdout.toString('utf8')).not.toContain('OK');
  expect(human.stderr).not.toMatch(/\n\s+at /); // a coded message, no stack trace
  if (seq !== undefined && seqInMessage) expect(human.stderr).toMatch(new RegExp(`seq ${seq}\\b`));
  if (json !== undefined) {
    expect(json.code, `--json exit status; stdout: ${json.stdout.toString()}`).toBe(EXIT[code]);
    // (The --json line itself may contain "OK" inside a code such as SEAL_CHAIN_BROKEN.)
    expect(json.stdout.toString('utf8')).not.toMatch(/^OK|"ok":true/m);
    expect(result).toMatchObject({ ok: false, code, exitCode: EXIT[code] });
    if (seq !== undefined) expect(result!.seq).toBe(seq);
  }
}

export function expectOk(o: VerifyOutcome): void {
  expect(o.human.code, o.human.stderr).toBe(0);
  expect(o.human.stdout.toString('utf8')).toMatch(/^OK /);
  if (o.json !== undefined) {
    expect(o.json.code, o.json.stderr).toBe(0);
    expect(o.result).toMatchObject({ ok: true });
  }
}
