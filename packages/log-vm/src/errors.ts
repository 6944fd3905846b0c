/**
 * The log VM uses the shared coded errors (one table of codes and exit codes
 * for the whole project, README "Exit codes"); this module adds the mapping
 * from storage-layer failures to codes.
 */
import { AppendlogError } from '@appendlog/shared';

export { AppendlogError, isAppendlogError, EXIT_CODES, type ErrorCode } from '@appendlog/shared';

/** Turns a better-sqlite3 / fs failure into a coded STORE_ERROR with the reason. */
export function storeError(what: string, e: unknown): AppendlogError {
  if (e instanceof AppendlogError) return e;
  const code = (e as { code?: unknown }).code;
  const detail = typeof code === 'string' ? `${code}: ${(e as Error).message}` : String((e as Error)?.message ?? e);
  const full = code === 'SQLITE_FULL' || /disk is full|database or disk is full|ENOSPC/i.test(detail);
  return new AppendlogError('STORE_ERROR', `${what}: ${full ? 'disk full: ' : ''}${detail}`, { cause: e });
}
