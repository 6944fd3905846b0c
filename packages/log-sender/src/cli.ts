#!/usr/bin/env node
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { basename, join } from 'node:path';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { AppendlogError, EXIT_CODES, LOG_NAME_RE, VERSION, checkLogName, isAppendlogError, jsonErrorWithoutInput } from '@appendlog/shared';
import { send } from './sender.js';
import { expandVerifyPairs } from './files.js';
import { loadKeyring } from './keyring.js';
import type { TransportSpec } from './transport.js';

/**
 * logsend [options] -- CMD ARGS...   run a build, log it to the log VM
 * CMD | logsend [options]            log a pipe
 *
 * Settings come from options, then the environment (APPENDLOG_TARGET,
 * APPENDLOG_TRANSPORT, APPENDLOG_COMMAND), then a JSON config file
 * ($XDG_CONFIG_HOME/appendlog/logsend.json, else /etc/appendlog/logsend.json)
 * with the keys target, transport and command.
 */
interface Config {
  target?: string;
  transport?: string;
  command?: string;
}

function readConfig(): Config {
  const home = process.env.XDG_CONFIG_HOME || join(process.env.HOME || homedir(), '.config');
  for (const path of [join(home, 'appendlog/logsend.json'), '/etc/appendlog/logsend.json']) {
    if (!existsSync(path)) continue;
    try {
      let v: unknown;
      try {
        v = JSON.parse(readFileSync(path, 'utf8'));
      } catch (e) {
        throw new Error(`not valid JSON (${jsonErrorWithoutInput(e)})`);
      }
      if (v === null || typeof v !== 'object') throw new Error('not a JSON object');
      const c = v as Record<string, unknown>;
      const str = (k: string): string | undefined => (typeof c[k] === 'string' ? (c[k] as string) : undefined);
      return { target: str('target'), transport: str('transport'), command: str('command') };
    } catch (e) {
      throw new AppendlogError('USAGE', `config ${path}: ${(e as Error).message}`);
    }
  }
  return {};
}

/** A repeatable option (not declared `array`, which would swallow the command after it). */
const list = (v: string | string[] | undefined): string[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);

/** A log name from the command and the time, within the qrexec argument charset. */
export function defaultName(command: string[], now = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  const base = (command.length > 0 ? basename(command[0]!) : 'pipe').replace(/[^A-Za-z0-9_.-]/g, '_').replace(/^[^A-Za-z0-9]+/, '');
  const name = `${base || 'build'}-${stamp}`.slice(0, 64);
  return LOG_NAME_RE.test(name) ? name : `build-${stamp}`;
}

const parser = yargs(hideBin(process.argv))
  .scriptName('logsend')
  .usage('$0 [options] -- CMD ARGS...\nCMD | $0 [options]\n\nStream a build log to the Qubes log VM (qubes.AppendLog), failing closed.')
  .parserConfiguration({ 'halt-at-non-option': true })
  .option('target', { type: 'string', describe: 'log VM (qrexec target); default $APPENDLOG_TARGET, config, else "logvm"' })
  .option('name', { type: 'string', describe: 'log name (default: command and time)' })
  .option('transport', { choices: ['qrexec', 'command'] as const, describe: 'qrexec (default) or command' })
  .option('command', { type: 'string', describe: 'with --transport command: a shell command whose stdin/stdout reach the service' })
  .option('input', { type: 'string', describe: 'file or glob hashed before the build (repeatable)' })
  .option('artifact', { type: 'string', describe: 'file or glob hashed after the build (repeatable)' })
  .option('verify-input', { type: 'string', describe: 'FILE=SIGNATURE (or FILE / glob, signature FILE.asc): check against --keyring before the build (repeatable)' })
  .option('keyring', { type: 'string', describe: 'armored certificates of the source signers, for --verify-input (repeatable)' })
  .option('receipts', { type: 'string', describe: 'append the receipts of the log VM to this file (JSON lines)' })
  .option('connect-timeout', { type: 'number', default: 300, describe: 'seconds to wait for the log VM to acknowledge the session before the build starts' })
  .option('on-log-failure', { choices: ['stop', 'continue'] as const, default: 'stop' as const, describe: 'stop the build when the log fails, or let it finish (and still exit non-zero)' })
  .option('qrexec-client', { type: 'string', default: process.env.APPENDLOG_QREXEC_CLIENT ?? 'qrexec-client-vm', hidden: true })
  // Completion is an option, not a `completion` command: `logsend completion`
  // must stay free to run a build tool of that name.
  .completion('completion', false)
  .option('completion-script', { type: 'boolean', describe: 'print a bash/zsh completion script and exit' })
  .strict()
  .version(VERSION)
  .help()
  .fail((msg, err) => {
    if (err) throw err;
    process.stderr.write(`logsend: USAGE: ${msg}\n(see logsend --help)\n`);
    process.exit(EXIT_CODES.USAGE);
  });
const argv = await parser.parseAsync();

if (argv['completion-script']) {
  parser.showCompletionScript();
  process.exit(0);
}

try {
  const command = argv._.map(String);
  if (command[0] === '--') command.shift();
  const config = readConfig();
  const kind = argv.transport ?? process.env.APPENDLOG_TRANSPORT ?? config.transport ?? 'qrexec';
  let transport: TransportSpec;
  if (kind === 'command') {
    const cmd = argv.command ?? process.env.APPENDLOG_COMMAND ?? config.command;
    if (!cmd) throw new AppendlogError('USAGE', '--transport command needs --command CMD (or APPENDLOG_COMMAND)');
    transport = { kind: 'command', command: cmd };
  } else if (kind === 'qrexec') {
    const target = argv.target ?? process.env.APPENDLOG_TARGET ?? config.target ?? 'logvm';
    transport = { kind: 'qrexec', target, client: argv['qrexec-client'] };
  } else {
    throw new AppendlogError('USAGE', `unknown transport ${JSON.stringify(kind)}: qrexec or command`);
  }
  const name = checkLogName(argv.name ?? defaultName(command));
  if (command.length === 0 && process.stdin.isTTY) {
    throw new AppendlogError('USAGE', 'give a command after --, or pipe the build into logsend');
  }
  const verifySpecs = list(argv['verify-input']);
  const keyringFiles = list(argv.keyring);
  if (verifySpecs.length > 0 && keyringFiles.length === 0) throw new AppendlogError('USAGE', '--verify-input needs --keyring KEYS (the certificates of the source signers)');
  if (keyringFiles.length > 0 && verifySpecs.length === 0) throw new AppendlogError('USAGE', '--keyring is only used with --verify-input');
  const verifyInputs = verifySpecs.length > 0 ? await expandVerifyPairs(verifySpecs) : [];
  const keyring = keyringFiles.length > 0 ? await loadKeyring(keyringFiles) : undefined;
  const res = await send({
    verifyInputs,
    keyring,
    name,
    transport,
    command,
    inputs: list(argv.input),
    artifacts: list(argv.artifact),
    receipts: argv.receipts,
    onLogFailure: argv['on-log-failure'],
    connectTimeoutMs: argv['connect-timeout'] * 1000,
  });
  process.exitCode = res.exitCode;
} catch (e) {
  const err = isAppendlogError(e) ? e : new AppendlogError('INTERNAL', String((e as Error)?.stack ?? e));
  process.stderr.write(`logsend: ${err.code}: ${err.message}\n`);
  process.exitCode = err.exitCode;
}
