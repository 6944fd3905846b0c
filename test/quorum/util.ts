/**
 * Helpers for the multi-builder specifications in test/quorum: several
 * builders, each with its own build VM (a directory running the real
 * examples/quorum Makefile under logsend), its own log VM (its own store,
 * reached through the real rpc/qubes.AppendLog as qrexec runs it) and its
 * own seal key (a throwaway GNUPGHOME standing in for Split-GPG).
 */
import { cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { LOGVM, ROOT, RPC_SERVICE, logvm, run, type RunResult } from '../helpers.js';
import { gpgHome, type GpgHome } from '../seal/util.js';

export { EXIT } from '../exit-codes.js';
export const SENDER = join(ROOT, 'packages/log-sender/dist/cli.js');
export const EXAMPLE = join(ROOT, 'examples/quorum');
const sq = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

export interface Person {
  gpg: GpgHome;
  email: string;
  fingerprint: string;
  /** The armored public certificate. */
  pub: string;
}

export async function person(dir: string, who: string): Promise<Person> {
  const gpg = gpgHome(`aq-${who}-`);
  const email = `${who}@example.org`;
  const fingerprint = await gpg.genKey(`${who} <${email}>`, 'ed25519');
  const pub = await gpg.exportPublic(email, join(dir, `${who}.asc`));
  return { gpg, email, fingerprint, pub };
}

/** Upstream's deterministic source tarball (make source) and its detached signature by `signer`. */
export async function sourceRelease(dir: string, signer: Person): Promise<{ tarball: string; sig: string }> {
  const up = join(dir, 'upstream');
  mkdirSync(up);
  cpSync(join(EXAMPLE, 'src'), join(up, 'src'), { recursive: true });
  cpSync(join(EXAMPLE, 'Makefile'), join(up, 'Makefile'));
  const r = await run('make', ['-s', '-C', up, 'source']);
  expect(r.code, r.stderr).toBe(0);
  const tarball = join(up, 'hello-1.0-src.tar.gz');
  await signer.gpg.signDetached(signer.email, tarball, `${tarball}.asc`);
  return { tarball, sig: `${tarball}.asc` };
}

export interface Builder {
  n: number;
  vm: string;
  /** The build VM's work directory. */
  dir: string;
  /** The log VM's store. */
  db: string;
  key: Person;
}

export async function builder(root: string, n: number, key?: Person): Promise<Builder> {
  const dir = join(root, `vm${n}`);
  mkdirSync(dir);
  cpSync(join(EXAMPLE, 'Makefile'), join(dir, 'Makefile'));
  return { n, vm: `build-${n}`, dir, db: join(root, `log${n}.db`), key: key ?? (await person(root, `builder${n}`)) };
}

/**
 * `logsend --verify-input ... -- make ARGS` in the builder's build VM, into
 * its own log VM; `source` is copied in first (tarball and signature).
 */
export async function build(
  b: Builder,
  name: string,
  opts: { source: { tarball: string; sig: string }; keyring: string; make?: string[]; extra?: string[] },
): Promise<RunResult> {
  cpSync(opts.source.tarball, join(b.dir, 'hello-1.0-src.tar.gz'));
  cpSync(opts.source.sig, join(b.dir, 'hello-1.0-src.tar.gz.asc'));
  const service = serviceCommand(b);
  return run(
    process.execPath,
    [
      SENDER,
      '--transport',
      'command',
      '--command',
      service,
      '--name',
      name,
      '--verify-input',
      'hello-1.0-src.tar.gz',
      '--keyring',
      opts.keyring,
      '--input',
      'Makefile',
      '--artifact',
      'dist/hello-1.0.tar.gz',
      ...(opts.extra ?? []),
      '--',
      'make',
      ...(opts.make ?? ['dist']),
    ],
    { cwd: b.dir, env: { XDG_CONFIG_HOME: join(b.dir, '.config') }, timeoutMs: 120_000 },
  );
}

/** The builder's log VM behind the real service file, as qrexec would start it for its build VM. */
export function serviceCommand(b: Builder): string {
  return `QREXEC_REMOTE_DOMAIN=${b.vm} QREXEC_SERVICE_ARGUMENT="$APPENDLOG_ARGUMENT" APPENDLOG_DB=${sq(b.db)} APPENDLOG_LOGVM=${sq(LOGVM)} ${sq(RPC_SERVICE)}`;
}

/** `CMD | logsend --artifact ...` in pipe mode, in the builder's build VM. */
export function pipeBuild(b: Builder, name: string, input: string, args: string[]): Promise<RunResult> {
  return run(process.execPath, [SENDER, '--transport', 'command', '--command', serviceCommand(b), '--name', name, ...args], {
    cwd: b.dir,
    input,
    env: { XDG_CONFIG_HOME: join(b.dir, '.config') },
    timeoutMs: 120_000,
  });
}

export async function logvmOk(args: string[], opts: Parameters<typeof logvm>[1] = {}): Promise<RunResult> {
  const r = await logvm(args, opts);
  expect(r.code, `logvm ${args.join(' ')}: ${r.stderr}`).toBe(0);
  return r;
}

/** The builder's log VM seals the log with the builder's key and attests it; returns the evidence path. */
export async function publish(b: Builder, name: string, out: string, signer: Person = b.key): Promise<string> {
  await logvmOk(['seal', `${b.vm}/${name}`, '--signer', `gpg:${signer.email}`], { db: b.db, env: signer.gpg.env });
  await logvmOk(['attest', `${b.vm}/${name}`, '--out', out], { db: b.db });
  return out;
}

export interface Row {
  fingerprint: string;
  userIds: string[];
  agrees: boolean;
  evidences: Array<{
    source: string;
    kind: string;
    log: string;
    artifact: 'same' | 'different' | 'absent';
    inputs: 'same' | 'different';
    inputDifferences: Array<{ path: string; sha256: string | null; majority: string | null }>;
    exit: { code: number | null; signal: string | null } | null;
    rejectedInputs: number;
  }>;
}

export interface QuorumJson {
  ok: boolean;
  code?: string;
  agreeing: number;
  builders: number;
  threshold: number;
  verdict: string;
  rows: Row[];
  uncounted: Array<{ source: string; reason: string; message: string; log: string | null }>;
}

export async function verifyArtifact(file: string, evidences: string[], keys: string[], threshold: number, json = true): Promise<{ r: RunResult; out: QuorumJson | null; text: string }> {
  const args = ['verify-artifact', file, ...evidences.flatMap((e) => ['--evidence', e]), ...keys.flatMap((k) => ['--key', k]), '--threshold', String(threshold)];
  const r = await logvm(json ? [...args, '--json'] : args);
  const text = r.stdout.toString('utf8');
  return { r, out: json ? (JSON.parse(text) as QuorumJson) : null, text };
}

/** Rewrites an evidence file's manifest text with `edit`, keeping the file canonical (as an attacker would). */
export function editEvidence(src: string, dst: string, edit: (manifest: string) => string): void {
  const ev = JSON.parse(readFileSync(src, 'utf8')) as { format: string; manifest: string; signatures: string[] };
  const manifest = edit(ev.manifest);
  expect(manifest, 'the edit changed the manifest').not.toBe(ev.manifest);
  writeFileSync(dst, `${JSON.stringify({ format: ev.format, manifest, signatures: ev.signatures })}\n`);
}
