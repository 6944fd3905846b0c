import { spawn, type ChildProcess } from 'node:child_process';
import { FRAMED_ARG_PREFIX } from '@appendlog/shared';

/**
 * How frames reach `logvm append` in the log VM.
 *   qrexec   qrexec-client-vm TARGET qubes.AppendLog+_framed.NAME (the default)
 *   command  any command whose stdin/stdout reach the service, run with
 *            `sh -c`; it gets APPENDLOG_NAME and APPENDLOG_ARGUMENT
 *            (_framed.NAME) in its environment, e.g.
 *            ssh loghost logvm append --vm build1 --name "$APPENDLOG_NAME" --framed
 */
export type TransportSpec = { kind: 'qrexec'; target: string; client: string } | { kind: 'command'; command: string };

export const QREXEC_SERVICE = 'qubes.AppendLog';

export function serviceArgument(name: string): string {
  return `${FRAMED_ARG_PREFIX}${name}`;
}

export function describeTransport(t: TransportSpec, name: string): string {
  return t.kind === 'qrexec' ? `${t.client} ${t.target} ${QREXEC_SERVICE}+${serviceArgument(name)}` : `sh -c ${JSON.stringify(t.command)}`;
}

export function startTransport(t: TransportSpec, name: string): ChildProcess {
  const env = { ...process.env, APPENDLOG_NAME: name, APPENDLOG_ARGUMENT: serviceArgument(name) };
  if (t.kind === 'qrexec') {
    return spawn(t.client, [t.target, `${QREXEC_SERVICE}+${serviceArgument(name)}`], { stdio: ['pipe', 'pipe', 'pipe'], env });
  }
  return spawn('/bin/sh', ['-c', t.command], { stdio: ['pipe', 'pipe', 'pipe'], env });
}
