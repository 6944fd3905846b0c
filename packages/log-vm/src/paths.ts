import { homedir } from 'node:os';
import { join } from 'node:path';

/**
 * Default store location: where an AppVM keeps data across reboots (its
 * private volume, mounted as the home directory). --db and APPENDLOG_DB
 * override it.
 */
export function defaultDbPath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.APPENDLOG_DB) return env.APPENDLOG_DB;
  const dataHome = env.XDG_DATA_HOME && env.XDG_DATA_HOME.startsWith('/') ? env.XDG_DATA_HOME : join(env.HOME || homedir(), '.local', 'share');
  return join(dataHome, 'appendlog', 'logs.db');
}
