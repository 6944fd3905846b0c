import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, createWriteStream, existsSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, rmdirSync, statSync, unlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import {
  AppendlogError,
  BUILDLOG_MAX_SUBDIR_IN_NAME,
  BUILDLOG_XZ_THRESHOLD,
  buildLogSubdir,
  buildLogTarget,
  isAppendlogError,
  type BuildLogTarget,
} from '@appendlog/shared';
import { hookNotice, recordEvents, runHook, sealAtClose, skipSeal, type StepFailure } from './after-seal.js';
import type { ServiceConfig } from './config.js';
import { appendSession } from './ingest.js';
import { BufferedWriter, toCodedError } from './output.js';
import type { ByteSource } from './source.js';
import type { Store } from './store.js';

/**
 * The qubesbuilder.BuildLog-compatible service (docs/FORMAT.md section 13):
 * another front door to the same ingest path as qubes.AppendLog. The log VM
 * chooses the log's name from the source VM (QREXEC_REMOTE_DOMAIN), the
 * SUBDIR argument, the start time and a collision suffix, exactly as the
 * legacy service names its file; every byte received is stored as by
 * qubes.AppendLog. At a clean end it writes the legacy text file as a view
 * of the chain, prints its path relative to ~/QubesIncomingBuildLog as the
 * first stdout line (what the builder parses), then seals (sealOnClose),
 * exports, and runs ~/QubesIncomingBuildLog/post-log-hook FILE. A failure
 * after the log is stored never changes that line: it is recorded as a
 * chained event and returned.
 */
export const BUILDLOG_SERVICE = 'qubesbuilder.BuildLog';

export interface BuildLogOptions {
  store: Store;
  vm: string;
  /** QREXEC_SERVICE_ARGUMENT: SUBDIR, chosen by the (untrusted) caller. */
  argument: string;
  input: ByteSource;
  /** The log VM user's home: ~/QubesIncomingBuildLog is under it. */
  home: string;
  config: ServiceConfig;
  maxLine: number;
  commitIntervalMs: number;
  /**
   * Refuse (SESSION_LIMIT) when the VM already has this many live sessions,
   * counted with its qubes.AppendLog ones (7.4): each session is a process
   * of the log VM, so a flood of silent calls must not grow without bound.
   */
  maxSessionsPerVm?: number;
  signal?: AbortSignal;
  now?: () => number;
  /** Writes the first stdout line (the path) to the caller. */
  printPath: (line: string) => Promise<void>;
}

export interface BuildLogResult {
  /** The line printed, or null when none was (nothing usable at a path). */
  path: string | null;
  log: string | null;
  /** The session's own failure (nothing or only part stored): the exit status. */
  error: AppendlogError | null;
  /** Failures after the log was stored. */
  failures: StepFailure[];
}

/** O_EXCL on FILE and FILE.xz, as the legacy service does: both must be free. */
function reserve(file: string): boolean {
  let fd: number;
  try {
    fd = openSync(file, 'wx', 0o664);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  }
  closeSync(fd);
  try {
    closeSync(openSync(`${file}.xz`, 'wx', 0o664));
  } catch (e) {
    unlinkSync(file); // unlike the legacy loop, leave nothing behind
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  }
  return true;
}

function unreserve(file: string): void {
  for (const f of [file, `${file}.xz`]) rmSync(f, { force: true });
}

function fileError(what: string, e: unknown): AppendlogError {
  if (isAppendlogError(e)) return e;
  const code = (e as NodeJS.ErrnoException).code;
  return new AppendlogError('FILE_ERROR', `${what}: ${code ?? ''} ${(e as Error).message}`.replace(/\s+/g, ' '));
}

export async function buildLogSession(o: BuildLogOptions): Promise<BuildLogResult> {
  const now = o.now ?? Date.now;
  const start = now();
  const subdir = buildLogSubdir(o.argument);
  const incoming = join(o.home, 'QubesIncomingBuildLog');
  const dir = subdir === '' ? join(incoming, o.vm) : join(incoming, o.vm, subdir);
  let made: string | undefined;
  try {
    made = mkdirSync(dir, { recursive: true });
  } catch (e) {
    throw fileError('cannot create the log directory', e);
  }
  // A call refused at open (session limit, quota, sealed) leaves no
  // directory behind: the caller picks SUBDIR, so refused calls must not
  // grow the disk one directory each.
  const unmake = (): void => {
    if (made === undefined) return;
    for (let d = dir; d.length >= made.length; d = dirname(d)) {
      try {
        rmdirSync(d);
      } catch {
        return; // not empty (another session's file), or gone
      }
    }
  };
  const hash = subdir.length > BUILDLOG_MAX_SUBDIR_IN_NAME ? createHash('sha256').update(subdir, 'utf8').digest('hex') : undefined;

  // The legacy service picks the suffix at the end; the chain needs the name
  // at the start, so both the files and the store name are reserved now.
  let target: BuildLogTarget | undefined;
  let result: Awaited<ReturnType<typeof appendSession>> | undefined;
  for (let n = 0; result === undefined; n++) {
    target = buildLogTarget(o.vm, subdir, start, n, hash);
    const file = join(dir, target.file);
    let free: boolean;
    try {
      try {
        free = reserve(file);
      } catch (e) {
        // The directory was removed by a refused call of the same SUBDIR meanwhile (unmake): once more.
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
        mkdirSync(dir, { recursive: true });
        free = reserve(file);
      }
    } catch (e) {
      throw fileError('cannot create the log file', e);
    }
    if (!free) continue;
    try {
      result = await appendSession({
        store: o.store,
        vm: o.vm,
        name: target.name,
        argument: o.argument,
        input: o.input,
        maxLine: o.maxLine,
        commitIntervalMs: o.commitIntervalMs,
        signal: o.signal,
        open: { service: BUILDLOG_SERVICE, createOnly: true, ...(o.maxSessionsPerVm !== undefined ? { maxSessionsPerVm: o.maxSessionsPerVm } : {}) },
        openDetails: { path: target.path },
        openTime: start,
      });
    } catch (e) {
      unreserve(file);
      // Taken in the store (another session, or a name differing only in case): next suffix.
      if (isAppendlogError(e) && e.code === 'NAME_CONFLICT') continue;
      unmake();
      throw e;
    }
  }
  const t = target!;
  const file = join(dir, t.file);
  const log = `${o.vm}/${t.name}`;
  const clean = result.reason === 'eof' && result.error === null;
  if (!clean) {
    unreserve(file);
    const why = result.error !== null ? `${result.error.code}: ${result.error.message}` : `session closed with reason ${result.reason}`;
    // Cut by a seal (7.3): that seal records its outcome (seal-cut says where), so no seal-skipped.
    const failures = result.reason === 'sealed' ? [] : skipSeal(o.store, o.vm, t.name, o.config, why);
    const error =
      result.error ??
      (result.reason === 'signal'
        ? new AppendlogError('TERMINATED', 'terminated by a signal; the session was closed cleanly')
        : new AppendlogError('INPUT_ERROR', 'the input broke off; what arrived is stored and the session closed'));
    return { path: null, log, error, failures };
  }

  // The session has ended, but this process goes on (the text file, xz, the
  // seal, the hook can each take long): it keeps its VM's session slot until
  // it ends (7.4), or a VM could pile up such processes without bound.
  let slot: number | undefined;
  try {
    slot = o.store.holdSessionSlot(o.vm);
  } catch {
    // best effort: the steps still run and are recorded
  }
  try {
    return await afterCleanSession(o, t, dir, file, log, incoming);
  } finally {
    if (slot !== undefined) o.store.releaseSessionSlot(slot);
  }
}

async function afterCleanSession(o: BuildLogOptions, t: BuildLogTarget, dir: string, file: string, log: string, incoming: string): Promise<BuildLogResult> {
  const failures: StepFailure[] = [];
  // The text file: a view of the chain, written next to the reservation and renamed over it.
  let relative: string;
  let written: string;
  try {
    written = await writeTextFile(o.store, o.vm, t.name, dir, t.file);
    relative = written === file ? t.path : `${t.path}.xz`;
  } catch (e) {
    const error = fileError('cannot write the text log', e);
    unreserve(file);
    failures.push({ step: 'file', error });
    recordEvents(o.store, o.vm, [{ notice: 'file-failed', log, head: null, detail: `${error.code}: ${error.message}` }], failures);
    return { path: null, log, error, failures };
  }
  await o.printPath(`${relative}\n`);

  const sealed = await sealAtClose(o.store, o.vm, t.name, o.config, { export: true });
  failures.push(...sealed.failures);

  const hook = join(incoming, 'post-log-hook');
  if (existsSync(hook)) {
    const r = await runHook(hook, [written]);
    if (r.spawnError !== undefined || r.status !== 0) {
      failures.push({ step: 'post-log-hook', error: new AppendlogError('HOOK_FAILED', `post-log-hook ${r.spawnError !== undefined ? 'could not be started' : r.signal !== null ? `was killed by ${r.signal}` : `exited ${r.status}`}`) });
    }
    let head: string | null = null;
    try {
      head = o.store.getHead(o.store.requireLog(o.vm, t.name).id).head.toString('hex');
    } catch {
      head = null;
    }
    recordEvents(o.store, o.vm, [hookNotice('post-log-hook', hook, log, head, r)], failures);
  }
  return { path: relative, log, error: null, failures };
}

/**
 * Renders the log in the legacy format into `dir/.FILE.partial`, fsyncs it,
 * renames it over the reserved FILE, and compresses it with `xz --force`
 * (as the legacy service does) when it is larger than 10 MiB. Returns the
 * file that holds the log: FILE or FILE.xz (the other reservation is removed).
 */
async function writeTextFile(store: Store, vm: string, name: string, dir: string, fileName: string): Promise<string> {
  const file = join(dir, fileName);
  const partial = join(dir, `.${fileName}.partial`);
  const stream = createWriteStream(partial, { mode: 0o664, flags: 'w' });
  const failed = new Promise<never>((_, reject) => stream.once('error', reject));
  failed.catch(() => undefined);
  try {
    const out = new BufferedWriter(stream, 256 * 1024);
    // Loaded after the session: render-io brings the bundle reader (and openpgp.js) with it.
    const { renderStoredLog } = await import('./render-io.js');
    await Promise.race([renderStoredLog(store, store.requireLog(vm, name), 'buildlog', out), failed]);
    await Promise.race([new Promise<void>((resolve, reject) => stream.end((err?: Error | null) => (err ? reject(err) : resolve()))), failed]);
    const fd = openSync(partial, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(partial, file);
  } catch (e) {
    stream.destroy();
    rmSync(partial, { force: true });
    throw e;
  }
  if (statSync(file).size <= BUILDLOG_XZ_THRESHOLD) {
    rmSync(`${file}.xz`, { force: true });
    return file;
  }
  const status = await new Promise<number | null>((resolve) => {
    const child = spawn('xz', ['--force', '--', file], { stdio: 'ignore' });
    child.on('error', () => resolve(null));
    child.on('close', (code) => resolve(code));
  });
  if (status !== 0 || !existsSync(`${file}.xz`) || existsSync(file)) {
    throw new AppendlogError('FILE_ERROR', `xz --force failed on the text log (${status === null ? 'xz could not be started' : `exit ${status}`})`);
  }
  return `${file}.xz`;
}
