import { spawn } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { AppendlogError, isAppendlogError, type CanonicalValue } from '@appendlog/shared';
import { bundleDirOf, type ServiceConfig } from './config.js';
import { toCodedError } from './output.js';
import type { Store } from './store.js';

/**
 * What happens after a log is stored: the seal at the end of a clean session
 * (sealOnClose), the export of the bundle, and the hooks (postSealHook, and
 * for qubesbuilder.BuildLog the legacy post-log-hook). Every step's failure
 * leaves the stored log as it is: it is recorded as a chained event in
 * VM/logvm-events (docs/FORMAT.md 13.5) and returned, never thrown, so the
 * caller (a service whose stdout belongs to the build VM) only reports it.
 */
export interface StepFailure {
  step: 'seal' | 'export' | 'post-seal-hook' | 'post-log-hook' | 'file' | 'event';
  error: AppendlogError;
}

export interface HookResult {
  status: number | null;
  signal: string | null;
  /** Set when the program could not be started at all. */
  spawnError?: string;
}

/**
 * Runs a hook as the legacy service runs post-log-hook: argv only (no
 * shell), stdin, stdout and stderr on /dev/null (the service's stdout is the
 * build VM's), the service's environment (the legacy hook reads
 * QREXEC_REMOTE_DOMAIN), and waits for it.
 */
export function runHook(path: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<HookResult> {
  return new Promise((resolve) => {
    let spawnError: string | undefined;
    const child = spawn(path, args, { stdio: 'ignore', env });
    child.on('error', (e) => {
      spawnError = e.message;
    });
    child.on('close', (status, signal) => resolve({ status, signal, ...(spawnError !== undefined ? { spawnError } : {}) }));
  });
}

function hookFailed(which: string, path: string, r: HookResult): AppendlogError | null {
  if (r.spawnError !== undefined) return new AppendlogError('HOOK_FAILED', `${which} ${path} could not be started: ${r.spawnError}`);
  if (r.status === 0) return null;
  return new AppendlogError('HOOK_FAILED', `${which} ${path} ${r.signal !== null ? `was killed by ${r.signal}` : `exited ${r.status}`}`);
}

/** Records events, never failing the caller: if even the event cannot be stored, the failure is returned too. */
export function recordEvents(store: Store, vm: string, notices: Array<Record<string, CanonicalValue>>, failures: StepFailure[]): void {
  try {
    store.recordEvents(vm, notices);
  } catch (e) {
    failures.push({ step: 'event', error: toCodedError(e) });
  }
}

function headOf(store: Store, vm: string, name: string): string | null {
  try {
    const log = store.requireLog(vm, name);
    return store.getHead(log.id).head.toString('hex');
  } catch {
    return null;
  }
}

export interface AfterSealResult {
  bundle: string | null;
  failures: StepFailure[];
}

/**
 * After a seal: exports the bundle to bundleDir/VM/NAME, then runs
 * postSealHook BUNDLE VM/NAME. The hook's exit status is recorded as an
 * event whatever it is.
 */
export async function afterSeal(store: Store, vm: string, name: string, config: ServiceConfig, opts: { export?: boolean } = {}): Promise<AfterSealResult> {
  const failures: StepFailure[] = [];
  const log = `${vm}/${name}`;
  const wantExport = opts.export === true || config.postSealHook !== undefined;
  if (!wantExport) return { bundle: null, failures };
  const dir = join(bundleDirOf(config), vm);
  const bundle = join(dir, name);
  try {
    mkdirSync(dir, { recursive: true, mode: 0o755 });
    const { exportBundle } = await import('./bundle-io.js');
    await exportBundle(store, vm, name, bundle);
  } catch (e) {
    const error = toCodedError(e);
    failures.push({ step: 'export', error });
    recordEvents(store, vm, [{ notice: 'export-failed', log, head: headOf(store, vm, name), detail: `${error.code}: ${error.message}` }], failures);
    return { bundle: existsSync(join(bundle, 'manifest.json')) ? bundle : null, failures };
  }
  const hook = config.postSealHook;
  if (hook !== undefined) {
    const r = await runHook(hook, [bundle, log]);
    const err = hookFailed('postSealHook', hook, r);
    if (err !== null) failures.push({ step: 'post-seal-hook', error: err });
    recordEvents(store, vm, [hookNotice('post-seal-hook', hook, log, headOf(store, vm, name), r)], failures);
  }
  return { bundle, failures };
}

export function hookNotice(hook: string, path: string, log: string, head: string | null, r: HookResult): Record<string, CanonicalValue> {
  return {
    notice: 'hook',
    hook,
    path,
    log,
    head,
    status: r.status,
    signal: r.signal,
    detail: r.spawnError !== undefined ? `could not be started: ${r.spawnError}` : r.status === 0 ? 'exited 0' : r.signal !== null ? `killed by ${r.signal}` : `exited ${r.status}`,
  };
}

export interface SealAtCloseResult {
  sealed: boolean;
  bundle: string | null;
  failures: StepFailure[];
}

/**
 * sealOnClose: seals the log with the configured signer. sealLog claims the
 * log and signs outside the store's write lock (Split-GPG may wait minutes
 * for the vault's user), so other logs, of any VM, go on meanwhile. A
 * refusal leaves the log open and is recorded (by sealLog itself once the
 * claim was taken, with the release of the claim).
 */
export async function sealAtClose(store: Store, vm: string, name: string, config: ServiceConfig, opts: { export?: boolean } = {}): Promise<SealAtCloseResult> {
  if (config.sealOnClose === undefined) return { sealed: false, bundle: null, failures: [] };
  // The session has ended, but this process goes on (it may wait behind
  // other seals of the store, one at a time): it keeps its VM's session slot
  // meanwhile (7.4), or a VM could pile up waiting processes without bound.
  let slot: number | undefined;
  try {
    slot = store.holdSessionSlot(vm);
  } catch {
    // Best effort: the seal is still attempted and recorded.
  }
  try {
    return await sealAtCloseHeld(store, vm, name, config, opts);
  } finally {
    if (slot !== undefined) store.releaseSessionSlot(slot);
  }
}

async function sealAtCloseHeld(store: Store, vm: string, name: string, config: ServiceConfig, opts: { export?: boolean }): Promise<SealAtCloseResult> {
  const failures: StepFailure[] = [];
  const spec = config.sealOnClose!;
  const log = `${vm}/${name}`;
  try {
    const { parseSignerSpec } = await import('./signers.js');
    const { sealLog } = await import('./seal.js');
    await sealLog(store, vm, name, parseSignerSpec(spec));
  } catch (e) {
    const error = isAppendlogError(e) ? e : toCodedError(e);
    // Sealed meanwhile by another seal (a second session of the log that
    // ended at the same moment, or the admin): not a failure, and that seal
    // records its own steps; a seal-failed here would say the log stayed open.
    if (error.code === 'LOG_SEALED' && sealedNow(store, vm, name)) return { sealed: false, bundle: null, failures };
    failures.push({ step: 'seal', error });
    const { sealFailureRecorded } = await import('./seal.js');
    if (sealFailureRecorded(e)) return { sealed: false, bundle: null, failures };
    recordEvents(store, vm, [{ notice: 'seal-failed', log, head: headOf(store, vm, name), signer: spec, detail: `${error.code}: ${error.message}` }], failures);
    return { sealed: false, bundle: null, failures };
  }
  const after = await afterSeal(store, vm, name, config, opts);
  return { sealed: true, bundle: after.bundle, failures: [...failures, ...after.failures] };
}

function sealedNow(store: Store, vm: string, name: string): boolean {
  try {
    return store.getHead(store.requireLog(vm, name).id).sealed === 1;
  } catch {
    return false;
  }
}

/**
 * A session that did not end cleanly is not sealed: the log stays open,
 * flagged in the store, with a chained seal-skipped event saying why.
 */
export function skipSeal(store: Store, vm: string, name: string, config: ServiceConfig, why: string): StepFailure[] {
  const failures: StepFailure[] = [];
  if (config.sealOnClose === undefined) return failures;
  try {
    store.flagLog(store.requireLog(vm, name), `not sealed: ${why}`);
  } catch (e) {
    failures.push({ step: 'event', error: toCodedError(e) });
  }
  recordEvents(store, vm, [{ notice: 'seal-skipped', log: `${vm}/${name}`, head: headOf(store, vm, name), detail: why }], failures);
  return failures;
}
