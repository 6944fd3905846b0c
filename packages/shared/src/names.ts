import { AppendlogError } from './errors.js';

/**
 * Log names come from the qrexec service argument, which the (untrusted)
 * calling VM chooses. dom0 rewrites every byte of the argument outside
 * [A-Za-z0-9_.+-] to `_` (qubes-core-qrexec), so `a/b`, `a:b` and `a b` all
 * arrive as `a_b`: a `_` can only be the trace of a rewrite, and names a user
 * typed differently would silently merge into one log. So `_` is reserved:
 * a new log name is 1-64 characters of [A-Za-z0-9.+-], the first one
 * alphanumeric (`+` does arrive unchanged). A name can never look like an
 * option or a path. (The `_framed.` prefix of framed mode is not part of
 * the name.)
 */
export const LOG_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9.+-]{0,63}$/;

/**
 * Names that may be met in stores and bundles made before `_` was reserved:
 * still readable (verify-chain, show, export), never created.
 */
export const STORED_LOG_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$/;

/**
 * Qubes VM names: a letter first, then letters, digits, `_`, `.` or `-`, at
 * most 31 characters (qrexec's qubes_pure_is_valid_qube_name accepts `.`;
 * qubes-core-admin is stricter). The source VM comes from
 * QREXEC_REMOTE_DOMAIN, set by dom0; we still check its shape before storing.
 */
export const VM_NAME_RE = /^[A-Za-z][A-Za-z0-9_.-]{0,30}$/;

/** Quote an untrusted value for an error message: printable, bounded, terminal-safe. */
export function quoteUntrusted(value: string, max = 80): string {
  // JSON.stringify escapes C0 controls and lone surrogates; escape what it
  // leaves that a terminal would act on (DEL, C1, bidi and line separators).
  const shown = JSON.stringify(value.length > max ? value.slice(0, max) : value).replace(
    /[\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff\ufff9-\ufffb]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
  return value.length > max ? `${shown}... (${value.length} characters)` : shown;
}

export function checkLogName(name: string | undefined): string {
  if (name === undefined || name === '') {
    throw new AppendlogError(
      'NAME_INVALID',
      'log name is empty: call the service as qubes.AppendLog+NAME (NAME: 1-64 of A-Z a-z 0-9 . + -, starting with a letter or digit)',
    );
  }
  if (!LOG_NAME_RE.test(name)) {
    const rewritten = name.includes('_') && STORED_LOG_NAME_RE.test(name);
    throw new AppendlogError(
      'NAME_INVALID',
      `log name ${quoteUntrusted(name)} refused: a name is 1-64 of A-Z a-z 0-9 . + -, starting with a letter or digit` +
        (rewritten ? '; `_` is reserved because dom0 turns every other character (/ : space ...) into `_`' : ''),
    );
  }
  return name;
}

/** A log name as found in a store or bundle (see STORED_LOG_NAME_RE). */
export function checkStoredLogName(name: string): string {
  if (!STORED_LOG_NAME_RE.test(name)) throw new AppendlogError('NAME_INVALID', `log name ${quoteUntrusted(name)} is not a log name`);
  return name;
}

export function checkVmName(vm: string | undefined): string {
  if (vm === undefined || vm === '') {
    throw new AppendlogError('VM_INVALID', 'source VM unknown: QREXEC_REMOTE_DOMAIN is not set (is this running under qrexec?)');
  }
  if (!VM_NAME_RE.test(vm)) {
    throw new AppendlogError('VM_INVALID', `source VM name ${quoteUntrusted(vm)} is not a valid Qubes VM name`);
  }
  return vm;
}

/** Parse `VM/NAME` as typed by an admin or auditor. */
export function parseLogRef(ref: string): { vm: string; name: string } {
  const slash = ref.indexOf('/');
  if (slash < 0) {
    throw new AppendlogError('USAGE', `expected VM/NAME, got ${quoteUntrusted(ref)}`);
  }
  // Reading: names of logs made before `_` was reserved stay reachable.
  return { vm: checkVmName(ref.slice(0, slash)), name: checkStoredLogName(ref.slice(slash + 1)) };
}
