import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { jsonErrorWithoutInput } from '@appendlog/shared';
import { AppendlogError } from './errors.js';

/**
 * Service settings for `logvm append`, which qrexec starts with no options
 * of the admin's: command-line options win, then APPENDLOG_* variables, then
 * $XDG_CONFIG_HOME/appendlog/logvm.json (in an AppVM's home, so it
 * persists), then the defaults.
 *
 *   { "maxLine": 65536, "commitIntervalMs": 50, "quotaLogMiB": 4096,
 *     "quotaVmMiB": 16384, "maxStoreMiB": 0 }
 */
export interface ServiceConfig {
  maxLine?: number;
  commitIntervalMs?: number;
  quotaLogMiB?: number;
  quotaVmMiB?: number;
  /** 0 or absent: no cap beyond the disk. */
  maxStoreMiB?: number;
}

const KEYS = ['maxLine', 'commitIntervalMs', 'quotaLogMiB', 'quotaVmMiB', 'maxStoreMiB'] as const;

export function readServiceConfig(env: NodeJS.ProcessEnv = process.env): ServiceConfig {
  const home = env.XDG_CONFIG_HOME && env.XDG_CONFIG_HOME.startsWith('/') ? env.XDG_CONFIG_HOME : join(env.HOME || homedir(), '.config');
  const path = join(home, 'appendlog', 'logvm.json');
  const out: ServiceConfig = {};
  if (existsSync(path)) {
    let v: unknown;
    try {
      v = JSON.parse(readFileSync(path, 'utf8'));
    } catch (e) {
      throw new AppendlogError('USAGE', `config ${path}: not valid JSON (${jsonErrorWithoutInput(e)})`);
    }
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new AppendlogError('USAGE', `config ${path}: not a JSON object`);
    for (const [k, val] of Object.entries(v as Record<string, unknown>)) {
      if (!(KEYS as readonly string[]).includes(k)) throw new AppendlogError('USAGE', `config ${path}: unknown setting ${k}`);
      if (typeof val !== 'number' || !Number.isSafeInteger(val) || val < 0) throw new AppendlogError('USAGE', `config ${path}: ${k} must be a non-negative integer`);
      out[k as (typeof KEYS)[number]] = val;
    }
  }
  const fromEnv = (name: string): number | undefined => {
    const raw = env[name];
    if (raw === undefined || raw === '') return undefined;
    const n = Number(raw);
    if (!Number.isSafeInteger(n) || n < 0) throw new AppendlogError('USAGE', `${name} must be a non-negative integer`);
    return n;
  };
  out.quotaLogMiB = fromEnv('APPENDLOG_QUOTA_LOG_MIB') ?? out.quotaLogMiB;
  out.quotaVmMiB = fromEnv('APPENDLOG_QUOTA_VM_MIB') ?? out.quotaVmMiB;
  out.maxStoreMiB = fromEnv('APPENDLOG_MAX_STORE_MIB') ?? out.maxStoreMiB;
  out.maxLine = fromEnv('APPENDLOG_MAX_LINE') ?? out.maxLine;
  out.commitIntervalMs = fromEnv('APPENDLOG_COMMIT_INTERVAL_MS') ?? out.commitIntervalMs;
  return out;
}
