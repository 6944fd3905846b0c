import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { AppendlogError, type ErrorCode } from '@appendlog/shared';
import type { SignatureInput, SignatureReport } from '@appendlog/shared/signatures';

/** The trust material of verify-chain: --key and --keyring files, --signer pins. */
export interface TrustArgs {
  keys: string[];
  keyrings: string[];
  signers: string[];
}

export interface SignatureCheckInput {
  manifest: Buffer;
  sealed: number;
  signatures: SignatureInput[];
  threshold: number;
  now: number;
}

/**
 * A bundle's trust check (docs/FORMAT.md 6.4: G0, the trust material, then
 * the signatures over the manifest), run beside the entries instead of
 * before them. Loading openpgp.js, reading the keys and checking the
 * signatures is a fixed cost of a tenth of a second or more of a
 * verify-chain run (node --cpu-prof); on a thread of its own it overlaps the
 * entries, which keep the JS thread busy. What is reported does not change:
 * the caller waits for `trusted` before reporting any failure of its own
 * that comes before the signatures, and for `verify` before reporting an
 * entry failure, so the first failure in the documented order still wins.
 */
export interface SignatureCheck {
  /** Settles once the trust material is loaded; rejects with its coded error. */
  readonly trusted: Promise<void>;
  /** The signatures over the manifest against the trust material (rejects with the trust error first, if any). */
  verify(input: SignatureCheckInput): Promise<SignatureReport>;
  /** Ends the thread (idempotent). */
  close(): void;
}

/** A plain copy of a failure, to cross the thread boundary. */
export interface PlainError {
  code?: ErrorCode;
  message: string;
  seq?: number;
  line?: number;
}

export function toPlainError(e: unknown): PlainError {
  if (e instanceof AppendlogError) return { code: e.code, message: e.message, seq: e.seq, line: e.line };
  return { message: e instanceof Error ? e.message : String(e) };
}

function fromPlainError(p: PlainError): Error {
  return p.code !== undefined ? new AppendlogError(p.code, p.message, { seq: p.seq, line: p.line }) : new Error(p.message);
}

/**
 * Starts the check: on a worker thread (signature-worker.js beside this
 * module, as tsc builds them), else on this thread, the same computation,
 * started now and run between the entries' reads. The single-file verifier
 * (this code bundled into appendlog-verify-VERSION.cjs, where import.meta.url
 * names that file) always checks on its own thread: it must never run a
 * signature-worker.js that happens to lie beside it.
 */
export function startSignatureCheck(args: TrustArgs): SignatureCheck {
  const pre = prestarted;
  prestarted = undefined;
  if (pre !== undefined && !pre.gone) return threadCheck(pre.worker, args, true);
  const file = workerFile();
  if (file !== undefined) return threadCheck(file, args, false);
  return inlineCheck(args);
}

function workerFile(): URL | undefined {
  if (!import.meta.url.endsWith('/signature-check.js')) return undefined;
  const file = new URL('./signature-worker.js', import.meta.url);
  return existsSync(fileURLToPath(file)) ? file : undefined;
}

let prestarted: { worker: Worker; gone: boolean } | undefined;

/**
 * Starts the signature thread before the command line is parsed (cli.ts,
 * for `verify-chain` of a bundle): booting a thread and loading openpgp.js
 * there is some 0.2 s of CPU, which then runs on the second core while this
 * thread loads the command's modules, instead of after them (and beside the
 * entries' hashing). It waits for its arguments (startSignatureCheck) and
 * keeps nothing alive meanwhile: a run that never asks for it (a usage
 * error, --help) exits as before. One that died is not used.
 */
export function prestartSignatureWorker(): void {
  const file = workerFile();
  if (file === undefined || prestarted !== undefined) return;
  try {
    const worker = new Worker(file, { workerData: null, stdout: false, stderr: false });
    const entry = { worker, gone: false };
    worker.unref();
    worker.once('error', () => (entry.gone = true));
    worker.once('exit', () => (entry.gone = true));
    prestarted = entry;
  } catch {
    // no thread to be had now: startSignatureCheck will try again, or check inline
  }
}

function inlineCheck(args: TrustArgs): SignatureCheck {
  const trust = import('./commands/keys.js').then((m) => m.loadTrust(args));
  trust.catch(() => undefined);
  return {
    trusted: trust.then(() => undefined),
    verify: async (input) => {
      const { verifyManifestSignatures } = await import('@appendlog/shared/signatures');
      return verifyManifestSignatures({ ...input, trust: await trust });
    },
    close: () => undefined,
  };
}

type FromWorker = { type: 'trust'; error?: PlainError } | { type: 'report'; report?: SignatureReport; error?: PlainError };

function threadCheck(from: URL | Worker, args: TrustArgs, prestart: boolean): SignatureCheck {
  let worker: Worker;
  if (prestart) {
    worker = from as Worker;
    worker.ref();
    worker.postMessage({ type: 'args', args });
  } else {
    try {
      worker = new Worker(from as URL, { workerData: args, stdout: false, stderr: false });
    } catch {
      return inlineCheck(args); // no thread to be had (resource limits): the same check here
    }
  }
  let closed = false;
  let trustSettle: { resolve: () => void; reject: (e: Error) => void } | undefined;
  let reportSettle: { resolve: (r: SignatureReport) => void; reject: (e: Error) => void; input: SignatureCheckInput } | undefined;
  const trusted = new Promise<void>((resolve, reject) => (trustSettle = { resolve, reject }));
  trusted.catch(() => undefined);
  // The thread died without answering (it could not start, or ran out of
  // memory): whatever it still owed is computed here instead, so the answer
  // is the same and never an INTERNAL failure of the thread itself.
  let fallback: SignatureCheck | undefined;
  const takeOver = (): void => {
    fallback ??= inlineCheck(args);
    if (trustSettle !== undefined) fallback.trusted.then(trustSettle.resolve, trustSettle.reject);
    if (reportSettle !== undefined) fallback.verify(reportSettle.input).then(reportSettle.resolve, reportSettle.reject);
    trustSettle = undefined;
    reportSettle = undefined;
  };
  worker.on('message', (m: FromWorker) => {
    if (m.type === 'trust') {
      if (m.error !== undefined) trustSettle?.reject(fromPlainError(m.error));
      else trustSettle?.resolve();
      trustSettle = undefined;
    } else {
      if (m.error !== undefined) reportSettle?.reject(fromPlainError(m.error));
      else reportSettle?.resolve(m.report!);
      reportSettle = undefined;
    }
  });
  worker.on('error', () => takeOver());
  worker.on('exit', () => {
    if (!closed) takeOver();
  });
  return {
    trusted,
    verify: (input) =>
      new Promise<SignatureReport>((resolve, reject) => {
        reportSettle = { resolve, reject, input };
        if (fallback !== undefined) takeOver();
        else worker.postMessage(input);
      }),
    close: () => {
      if (closed) return;
      closed = true;
      void worker.terminate();
    },
  };
}
