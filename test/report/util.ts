/**
 * Logs for the report specifications, made the real way: `logsend` runs a
 * build (a shell script) and streams it over the command transport into the
 * real rpc/qubes.AppendLog service file, as qrexec would run it; `logvm seal`
 * signs with real GnuPG (standing in for Split-GPG) and `logvm export`
 * writes the bundle the auditor gets.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { LOGVM, ROOT, RPC_SERVICE, logvm, run, type RunResult } from '../helpers.js';
import { SENDER, makeSigner, type Signer } from '../sender/util.js';

export { makeSigner, type Signer };
export const VM = 'build-vm';

/** Runs `script` (sh) under logsend in `cwd`, logged as VM/NAME in `db`; returns logsend's result. */
export async function logBuild(
  db: string,
  name: string,
  cwd: string,
  script: string,
  opts: { inputs?: string[]; artifacts?: string[]; extra?: string[] } = {},
): Promise<RunResult> {
  const scriptPath = join(cwd, `${name}.sh`);
  writeFileSync(scriptPath, script);
  const transport = `QREXEC_REMOTE_DOMAIN=${VM} QREXEC_SERVICE_ARGUMENT="$APPENDLOG_ARGUMENT" APPENDLOG_DB='${db}' APPENDLOG_LOGVM='${LOGVM}' '${RPC_SERVICE}'`;
  const args = ['--transport', 'command', '--command', transport, '--name', name];
  for (const i of opts.inputs ?? []) args.push('--input', i);
  for (const a of opts.artifacts ?? []) args.push('--artifact', a);
  args.push(...(opts.extra ?? []));
  return run(process.execPath, [SENDER, ...args, '--', 'sh', scriptPath], { cwd, env: { XDG_CONFIG_HOME: join(cwd, '.config') } });
}

export async function logvmOk(args: string[], opts: Parameters<typeof logvm>[1] = {}): Promise<RunResult> {
  const r = await logvm(args, opts);
  expect(r.code, `logvm ${args.join(' ')}: ${r.stderr}`).toBe(0);
  return r;
}

export async function sealAndExport(db: string, ref: string, signer: Signer, out: string): Promise<void> {
  await logvmOk(['seal', ref, '--signer', signer.spec], { db, env: signer.env });
  await logvmOk(['export', ref, '--out', out, '--bundle-version', '1'], { db });
}

export { ROOT };
