import { readFileSync } from 'node:fs';
import { AppendlogError } from '@appendlog/shared';

/**
 * "Look here first": the lines of a build log that usually matter. Each
 * pattern is tested against a line's text with ANSI escape sequences
 * removed; a line counts once per pattern it matches. The list is meant to
 * grow: `logvm report --patterns FILE` adds patterns from a JSON file
 *   [{"id": "my-tool", "title": "my-tool errors", "regex": "^my-tool: error", "flags": "i"}]
 * (README, "logvm report"). The stderr group is not a pattern: it holds the
 * lines logsend tagged as stderr.
 */
export interface HighlightPattern {
  id: string;
  title: string;
  /** Why a reader should look at these lines. */
  why: string;
  re: RegExp;
}

export const DEFAULT_PATTERNS: readonly HighlightPattern[] = [
  {
    id: 'error',
    title: 'errors',
    why: 'compiler and tool errors: gcc/clang "file:line:col: error:", "fatal error:", rustc "error[E…]:", MSVC "error C…:", "ERROR:"',
    re: /(?:^|[\s:])(?:fatal )?error(?:\[E\d+\])?:|\berror [A-Z]{1,3}\d{3,5}:|^error(?:\[E\d+\])?:/i,
  },
  {
    id: 'linker-error',
    title: 'linker errors',
    why: 'undefined references, missing libraries, collect2/ld failures',
    re: /undefined reference to|\bld(?:\.\w+)?: (?:cannot find|error)|collect2: error|linker command failed|undefined symbol:/,
  },
  {
    id: 'failed',
    title: 'FAILED',
    why: 'test runners and tools saying FAILED / FAIL / FAILURE',
    re: /\bFAIL(?:ED|URE)?\b/,
  },
  {
    id: 'bad-signature',
    title: 'BAD signature',
    why: 'gpg "BAD signature", a signature that does not verify',
    re: /\bBAD signature\b|signature (?:verification )?(?:failed|is invalid)|bad signature/i,
  },
  {
    id: 'verification-failed',
    title: 'verification failed',
    why: 'source or checksum verification that failed (the line a build script may print and then ignore)',
    re: /verification failed|checksum (?:mismatch|failed|did not match)|sha\d+sum: WARNING|: FAILED(?: open or read)?$|hash mismatch|does not match (?:the )?(?:expected|checksum)/i,
  },
  {
    id: 'no-such-file',
    title: 'No such file',
    why: 'missing files and commands',
    re: /No such file(?: or directory)?|command not found|not found \(required by/,
  },
  {
    id: 'exit-status',
    title: 'non-zero exit statuses',
    why: 'make "*** … Error N", "exit status N", "exited with code N", "returned non-zero"',
    re: /\*\*\* \[.*\] Error [1-9]\d*|\bError [1-9]\d*(?: \(ignored\))?$|exit (?:status|code):? [1-9]\d*|exited with (?:status|code) [1-9]\d*|returned (?:a )?non-zero|non-zero exit|Killed by signal|Segmentation fault|core dumped/i,
  },
  {
    id: 'permission-denied',
    title: 'Permission denied',
    why: 'permission and access errors',
    re: /Permission denied|Operation not permitted|EACCES/,
  },
];

interface PatternFileEntry {
  id?: unknown;
  title?: unknown;
  why?: unknown;
  regex?: unknown;
  flags?: unknown;
}

/** Reads a --patterns file: a JSON array of {id, title, regex, flags?, why?}. */
export function loadPatternFile(path: string): HighlightPattern[] {
  let v: unknown;
  try {
    v = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new AppendlogError('USAGE', `--patterns ${path}: not a readable JSON file (${(e as Error).message})`);
  }
  if (!Array.isArray(v) || v.length > 1000) throw new AppendlogError('USAGE', `--patterns ${path}: expected a JSON array of at most 1000 patterns`);
  return v.map((raw: unknown, i) => {
    const p = (raw ?? {}) as PatternFileEntry;
    const where = `--patterns ${path}[${i}]`;
    if (typeof p.id !== 'string' || !/^[a-z0-9][a-z0-9-]{0,63}$/.test(p.id)) throw new AppendlogError('USAGE', `${where}: id must be 1-64 of a-z 0-9 -`);
    if (typeof p.regex !== 'string') throw new AppendlogError('USAGE', `${where}: regex must be a string`);
    const flags = typeof p.flags === 'string' ? p.flags : '';
    if (!/^[imsu]*$/.test(flags)) throw new AppendlogError('USAGE', `${where}: flags may only be i, m, s, u`);
    let re: RegExp;
    try {
      re = new RegExp(p.regex, flags);
    } catch (e) {
      throw new AppendlogError('USAGE', `${where}: ${(e as Error).message}`);
    }
    return { id: p.id, title: typeof p.title === 'string' ? p.title : p.id, why: typeof p.why === 'string' ? p.why : `from ${path}`, re };
  });
}

/**
 * One test for "any pattern", so most lines (which match none) are tested
 * once. Case-insensitive, it only ever widens a match, so it never misses a
 * line. Null when a pattern has other flags (m, s, u change what the
 * pattern means; `u` also makes the combined test ten times slower): then
 * each pattern is tested on its own.
 */
export function anyOf(patterns: readonly HighlightPattern[]): RegExp | null {
  if (patterns.length === 0) return /(?!)/;
  if (patterns.some((p) => p.re.flags.replace('i', '') !== '')) return null;
  try {
    return new RegExp(patterns.map((p) => `(?:${p.re.source})`).join('|'), 'i');
  } catch {
    return null;
  }
}

// CSI and OSC sequences, so "\e[31merror:\e[0m" is matched as "error:".
// eslint-disable-next-line no-control-regex
const ANSI = /\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])/g;

export function stripAnsi(text: string): string {
  return text.indexOf('\x1b') < 0 ? text : text.replace(ANSI, '');
}
