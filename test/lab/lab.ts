/**
 * The real Qubes qrexec (../shared/qrexec-lab next to the clone, see its
 * README): dom0, a build VM and a log VM on this machine, with the real
 * qrexec-daemon, qrexec-agent (PAM), qrexec-client-vm and policy engine.
 * Suites using it skip, saying why, when the lab is absent or we are not root.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, run, type RunOptions, type RunResult } from '../helpers.js';

/** Where the lab's sources are: $APPENDLOG_QREXEC_LAB, else ../shared/qrexec-lab beside the clone (as in CI). */
export const LAB_SRC = process.env.APPENDLOG_QREXEC_LAB ?? join(ROOT, '../shared/qrexec-lab');

/** Why the lab cannot run here, or undefined. */
export function labUnavailable(): string | undefined {
  if (!existsSync(join(LAB_SRC, 'lab.sh'))) return `no qrexec lab at ${LAB_SRC} (set APPENDLOG_QREXEC_LAB)`;
  if (process.getuid?.() !== 0) return 'the qrexec lab needs root (mount namespaces)';
  return undefined;
}

/** The newest file in DIR whose name matches RE, or undefined. */
export function newest(dir: string, re: RegExp): string | undefined {
  if (!existsSync(dir)) return undefined;
  const hits = readdirSync(dir).filter((f) => re.test(f)).sort();
  return hits.length > 0 ? join(dir, hits.at(-1)!) : undefined;
}

export interface Lab {
  run: string;
  /** `lab.sh ARGS...` against this lab's run dir. */
  sh(args: string[], opts?: RunOptions): Promise<RunResult>;
  /** Stops every process of the lab and removes its run dir and build. */
  down(): Promise<void>;
}

/** Builds the lab (into a fresh directory, ~10 s) and starts it with `upArgs`. */
export async function labUp(upArgs: string[]): Promise<Lab> {
  const build = mkdtempSync(join(tmpdir(), 'appendlog-qrexec-lab-'));
  // The qubes' users run the lab's qrexec-client-vm from here.
  chmodSync(build, 0o755);
  const runDir = join(build, 'run');
  const env = { QREXEC_LAB: build };
  const b = spawnSync(join(LAB_SRC, 'build.sh'), [], { env: { ...process.env, ...env }, encoding: 'utf8', timeout: 600_000 });
  if (b.status !== 0) throw new Error(`qrexec-lab build.sh exited ${b.status}: ${b.stderr}${b.stdout}`);
  const sh = (args: string[], opts: RunOptions = {}): Promise<RunResult> =>
    run(join(LAB_SRC, 'lab.sh'), ['--run-dir', runDir, ...args], { timeoutMs: 120_000, ...opts, env: { ...env, ...opts.env } });
  const up = await sh(['up', ...upArgs]);
  if (up.code !== 0) {
    await sh(['down']);
    rmSync(build, { recursive: true, force: true });
    throw new Error(`lab.sh up exited ${up.code}: ${up.stderr}${up.stdout.toString('utf8')}`);
  }
  return {
    run: runDir,
    sh,
    async down() {
      await sh(['down']);
      rmSync(build, { recursive: true, force: true });
    },
  };
}
