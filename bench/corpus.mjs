/**
 * Deterministic, realistic build-log corpus: compiler invocations and
 * warnings, test runner output, stack traces, some long lines (512 B - 4 KB),
 * about 0.5 % lines with invalid UTF-8, ANSI colour codes. Mean ~80 bytes.
 * Same seed, same bytes: runs and machines compare like with like.
 */
import { createWriteStream } from 'node:fs';
import { once } from 'node:events';

function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const DIRS = ['src/core', 'src/net', 'src/util', 'lib/crypto', 'drivers/xen', 'tools/qrexec', 'test/unit'];
const WORDS = ['buffer', 'parse', 'domain', 'vchan', 'policy', 'handle', 'service', 'token', 'frame', 'socket', 'state', 'queue'];
const FUNCS = ['main', 'handle_request', 'parse_header', 'vchan_send', 'policy_eval', 'qrexec_process_io', 'do_fork_exec', 'read_frame'];

export function* corpusLines(count, seed = 42) {
  const rnd = mulberry32(seed);
  const pick = (arr) => arr[Math.floor(rnd() * arr.length)];
  const word = () => pick(WORDS);
  const file = () => `${pick(DIRS)}/${word()}_${word()}.c`;
  for (let i = 0; i < count; i++) {
    const r = rnd();
    let line;
    if (r < 0.3) line = `gcc -O2 -Wall -Wextra -fPIC -Iinclude -c ${file()} -o build/${word()}.o`;
    else if (r < 0.42) line = `${file()}:${1 + Math.floor(rnd() * 2000)}:${1 + Math.floor(rnd() * 80)}: \x1b[35mwarning:\x1b[0m unused variable '${word()}' [-Wunused-variable]`;
    else if (r < 0.62) line = `\x1b[32m[ PASS ]\x1b[0m test_${word()}_${word()} (${Math.floor(rnd() * 900)} ms)`;
    else if (r < 0.7) line = `    at ${pick(FUNCS)} (${file()}:${1 + Math.floor(rnd() * 900)})`;
    else if (r < 0.78) line = `  CC      ${file()}`;
    else if (r < 0.8) line = `\x1b[31m[ FAIL ]\x1b[0m test_${word()}: expected ${Math.floor(rnd() * 100)} got ${Math.floor(rnd() * 100)}`;
    else if (r < 0.995) line = `make[${1 + Math.floor(rnd() * 3)}]: Entering directory '/home/user/build/${pick(DIRS)}' ${word()} ${word()}`;
    else {
      const n = 512 + Math.floor(rnd() * 3584);
      let s = 'LDFLAGS=';
      while (s.length < n) s += `-l${word()} `;
      line = s.slice(0, n);
    }
    let buf = Buffer.from(line, 'utf8');
    if (rnd() < 0.005) {
      buf = Buffer.concat([buf, Buffer.from([0xff, 0xfe, 0xc0, 0x80])]);
    }
    yield buf;
  }
}

/** Writes the corpus to `path`; returns { lines, bytes }. */
export async function writeCorpus(path, count, seed = 42) {
  const out = createWriteStream(path);
  let bytes = 0;
  const nl = Buffer.from('\n');
  let parts = [];
  let size = 0;
  for (const line of corpusLines(count, seed)) {
    parts.push(line, nl);
    size += line.length + 1;
    if (size > 1 << 20) {
      if (!out.write(Buffer.concat(parts))) await once(out, 'drain');
      bytes += size;
      parts = [];
      size = 0;
    }
  }
  out.write(Buffer.concat(parts));
  bytes += size;
  out.end();
  await once(out, 'finish');
  return { lines: count, bytes };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [path = 'corpus.log', n = '1000000'] = process.argv.slice(2);
  console.log(await writeCorpus(path, Number(n)));
}
