import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { AppendlogError } from '@appendlog/shared';
import { signDetached, signatureIssuers } from '@appendlog/shared/signatures';

/**
 * Signers make a detached, ASCII-armored OpenPGP signature over the seal
 * manifest's exact bytes.
 *
 *   split-gpg[:KEYID]  qubes-gpg-client-wrapper (Split-GPG): the key stays in
 *                      the vault VM named by QUBES_GPG_DOMAIN (or
 *                      /rw/config/gpg-split-domain, read by the wrapper).
 *   gpg[:KEYID]        plain gpg, same options, for a non-Qubes log host.
 *   key-file:PATH      openpgp.js with an armored private key file; its
 *                      passphrase from APPENDLOG_KEY_PASSPHRASE or the file
 *                      named by APPENDLOG_KEY_PASSPHRASE_FILE, never argv.
 */
export interface Signer {
  readonly spec: string;
  sign(data: Buffer): Promise<string>;
}

const KEYID_RE = /^(?:0x)?[0-9A-Fa-f]{8,40}$|^[^\s-][^\s]{0,254}$/;

export function parseSignerSpec(spec: string, env: NodeJS.ProcessEnv = process.env): Signer {
  const colon = spec.indexOf(':');
  const kind = colon < 0 ? spec : spec.slice(0, colon);
  const arg = colon < 0 ? undefined : spec.slice(colon + 1);
  switch (kind) {
    case 'split-gpg':
      return new GpgCommandSigner(spec, env.APPENDLOG_SPLIT_GPG ?? 'qubes-gpg-client-wrapper', checkKeyId(arg), env);
    case 'gpg':
      return new GpgCommandSigner(spec, env.APPENDLOG_GPG ?? 'gpg', checkKeyId(arg), env);
    case 'key-file':
      if (!arg) throw new AppendlogError('USAGE', 'key-file signer needs a path: key-file:PATH');
      return new KeyFileSigner(spec, arg, env);
    default:
      throw new AppendlogError('USAGE', `unknown signer ${JSON.stringify(spec)}: use split-gpg[:KEYID], gpg[:KEYID] or key-file:PATH`);
  }
}

function checkKeyId(arg: string | undefined): string | undefined {
  if (arg === undefined || arg === '') return undefined;
  // A key ID, fingerprint or user ID; never something gpg could read as an option.
  if (!KEYID_RE.test(arg)) throw new AppendlogError('USAGE', `signer key ${JSON.stringify(arg)} is not a key ID, fingerprint or user ID`);
  return arg;
}

/**
 * Runs a gpg-compatible command with only options Split-GPG's server accepts:
 * `--batch -u KEYID --digest-algo SHA512 -a -b --status-fd 2`. The manifest
 * goes on stdin, the armored signature comes back on stdout, and the status
 * lines on stderr must report SIG_CREATED.
 */
export class GpgCommandSigner implements Signer {
  constructor(
    readonly spec: string,
    private readonly command: string,
    private readonly keyId: string | undefined,
    private readonly env: NodeJS.ProcessEnv,
  ) {}

  args(): string[] {
    return ['--batch', ...(this.keyId ? ['-u', this.keyId] : []), '--digest-algo', 'SHA512', '-a', '-b', '--status-fd', '2'];
  }

  async sign(data: Buffer): Promise<string> {
    const { code, signal, stdout, stderr, spawnError } = await runSigner(this.command, this.args(), data, this.env);
    if (spawnError !== undefined) {
      throw new AppendlogError('SIGNER_FAILED', `cannot run ${this.command}: ${spawnError.message}` + (this.spec.startsWith('split-gpg') ? ' (is qubes-gpg-split installed in this VM?)' : ''));
    }
    const status = stderr.split('\n').filter((l) => l.startsWith('[GNUPG:] '));
    const created = status.some((l) => l.startsWith('[GNUPG:] SIG_CREATED '));
    const message = stderr
      .split('\n')
      .filter((l) => l.trim() !== '' && !l.startsWith('[GNUPG:] '))
      .join('; ')
      .slice(0, 500);
    if (code === 126 && this.spec.startsWith('split-gpg')) {
      // qrexec-client-vm exits 126 whenever dom0 ends the request without
      // connecting it: a policy deny, or a vault VM that could not be started.
      throw new AppendlogError('SIGNER_REFUSED', `${this.command}: the qubes.Gpg call was refused by dom0 or the vault VM could not be started (exit 126)`);
    }
    if (code !== 0 || !created) {
      // Split-GPG: the vault's user said no, or the call was not connected
      // (qrexec-client-vm exits 126 then).
      const refused =
        code === 126 ||
        status.some((l) => /^\[GNUPG:\] (FAILURE sign|ERROR .*(cancel|denied))/i.test(l)) ||
        /refused|denied|cancel/i.test(message);
      throw new AppendlogError(
        refused ? 'SIGNER_REFUSED' : 'SIGNER_FAILED',
        `${this.command} ${refused ? 'refused to sign' : 'failed'} (exit ${code ?? signal}${created ? '' : ', no SIG_CREATED status'})${message ? `: ${message}` : ''}`,
      );
    }
    const armored = stdout.toString('utf8');
    await signatureIssuers(armored);
    return armored;
  }
}

export class KeyFileSigner implements Signer {
  constructor(
    readonly spec: string,
    private readonly path: string,
    private readonly env: NodeJS.ProcessEnv,
  ) {}

  async sign(data: Buffer): Promise<string> {
    let armored: string;
    try {
      armored = readFileSync(this.path, 'utf8');
    } catch (e) {
      throw new AppendlogError('KEY_INVALID', `cannot read key file ${this.path}: ${(e as Error).message}`);
    }
    let passphrase = this.env.APPENDLOG_KEY_PASSPHRASE;
    const file = this.env.APPENDLOG_KEY_PASSPHRASE_FILE;
    if (passphrase === undefined && file) {
      try {
        passphrase = readFileSync(file, 'utf8').replace(/\r?\n$/, '');
      } catch (e) {
        throw new AppendlogError('KEY_INVALID', `cannot read passphrase file ${file}: ${(e as Error).message}`);
      }
    }
    return signDetached(data, armored, passphrase);
  }
}

interface SignerRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
  spawnError?: Error;
}

const MAX_SIGNER_OUTPUT = 1 << 20;

function runSigner(command: string, args: string[], input: Buffer, env: NodeJS.ProcessEnv): Promise<SignerRun> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let outLen = 0;
    let errLen = 0;
    let spawnError: Error | undefined;
    child.stdout.on('data', (d: Buffer) => {
      if ((outLen += d.length) <= MAX_SIGNER_OUTPUT) out.push(d);
    });
    child.stderr.on('data', (d: Buffer) => {
      if ((errLen += d.length) <= MAX_SIGNER_OUTPUT) err.push(d);
    });
    child.stdin.on('error', () => undefined);
    child.on('error', (e) => {
      spawnError = e;
    });
    child.on('close', (code, signal) => {
      resolve({ code, signal, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString('utf8'), spawnError });
    });
    child.stdin.end(input);
  });
}
