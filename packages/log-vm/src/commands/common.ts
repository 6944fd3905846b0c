import type { Argv } from 'yargs';
import { defaultDbPath } from '../paths.js';
import { Store } from '../store.js';

export interface DbArgs {
  db?: string;
}

export function withDb<T>(y: Argv<T>): Argv<T & DbArgs> {
  return y.option('db', {
    type: 'string',
    describe: 'store file (default $APPENDLOG_DB, else $XDG_DATA_HOME/appendlog/logs.db)',
  }) as Argv<T & DbArgs>;
}

export function dbPath(args: DbArgs): string {
  return args.db ?? defaultDbPath();
}

/** Opens an existing store; only `append` creates one. */
export function openStore(args: DbArgs, create = false): Store {
  return Store.open(dbPath(args), { create });
}
