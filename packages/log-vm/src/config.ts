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
 *     "quotaVmMiB": 16384, "maxStoreMiB": 0,
 *     "sealOnClose": "split-gpg:KEYID", "postSealHook": "/home/user/bin/hook",
 *     "bundleDir": "/home/user/bundles" }
 */
export interface ServiceConfig {
  maxLine?: number;
  commitIntervalMs?: number;
  /** Sessions one VM may have open at once (all its logs); 0 = default 16. */
  sessionsPerVm?: number;
  /** A session that sends nothing for this long is closed (reason idle); 0 = default 10 min. */
  idleTimeoutMs?: number;
  quotaLogMiB?: number;
  quotaVmMiB?: number;
  /** 0 or absent: no cap beyond the disk. */
  maxStoreMiB?: number;
  /** Seal each log when its session ends cleanly, with this signer spec (`split-gpg:KEYID`, ...). */
  sealOnClose?: string;
  /** Absolute path of a program run after each seal as `HOOK BUNDLE VM/NAME`, stdio on /dev/null. */
  postSealHook?: string;
  /** Where bundles are exported after a seal by the service or when a postSealHook runs: DIR/VM/NAME. */
  bundleDir?: string;
  /** The gpg program `logvm publish` has git sign commits with (default qubes-gpg-client-wrapper). */
  gitGpgProgram?: string;
  /** The key `logvm publish` signs commits with (default: git's user.signingkey). */
  publishSigningKey?: string;
}

const KEYS = ['maxLine', 'commitIntervalMs', 'quotaLogMiB', 'quotaVmMiB', 'maxStoreMiB', 'sessionsPerVm', 'idleTimeoutMs'] as const;
const STRING_KEYS = ['sealOnClose', 'postSealHook', 'bundleDir', 'gitGpgProgram', 'publishSigningKey'] as const;
type StringKey = (typeof STRING_KEYS)[number];
/** Settings that name a file must be absolute: qrexec starts the service in the home directory, an admin's shell elsewhere. */
const ABSOLUTE: readonly StringKey[] = ['postSealHook', 'bundleDir'];

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
      if ((STRING_KEYS as readonly string[]).includes(k)) {
        if (typeof val !== 'string') throw new AppendlogError('USAGE', `config ${path}: ${k} must be a string`);
        out[k as StringKey] = checkString(k as StringKey, val, `config ${path}`);
        continue;
      }
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
  out.sessionsPerVm = fromEnv('APPENDLOG_SESSIONS_PER_VM') ?? out.sessionsPerVm;
  out.idleTimeoutMs = fromEnv('APPENDLOG_IDLE_TIMEOUT_MS') ?? out.idleTimeoutMs;
  const strEnv: Record<StringKey, string> = {
    sealOnClose: 'APPENDLOG_SEAL_ON_CLOSE',
    postSealHook: 'APPENDLOG_POST_SEAL_HOOK',
    bundleDir: 'APPENDLOG_BUNDLE_DIR',
    gitGpgProgram: 'APPENDLOG_GIT_GPG_PROGRAM',
    publishSigningKey: 'APPENDLOG_PUBLISH_KEY',
  };
  for (const k of STRING_KEYS) {
    const raw = env[strEnv[k]];
    // Set but empty turns a setting of the config file off.
    if (raw !== undefined) out[k] = raw === '' ? undefined : checkString(k, raw, strEnv[k]);
  }
  for (const k of STRING_KEYS) if (out[k] === '') delete out[k];
  return out;
}

function checkString(k: StringKey, v: string, where: string): string {
  if (v === '') return v;
  if (v.length > 4096 || /[\0\n]/.test(v)) throw new AppendlogError('USAGE', `${where}: ${k} is not a usable value`);
  if (ABSOLUTE.includes(k) && !v.startsWith('/')) throw new AppendlogError('USAGE', `${where}: ${k} must be an absolute path`);
  return v;
}

/** Where the bundles of a VM's logs are exported after a seal: the setting, else $XDG_DATA_HOME/appendlog/bundles. */
export function bundleDirOf(config: ServiceConfig, env: NodeJS.ProcessEnv = process.env): string {
  if (config.bundleDir !== undefined) return config.bundleDir;
  const dataHome = env.XDG_DATA_HOME && env.XDG_DATA_HOME.startsWith('/') ? env.XDG_DATA_HOME : join(env.HOME || homedir(), '.local', 'share');
  return join(dataHome, 'appendlog', 'bundles');
}
