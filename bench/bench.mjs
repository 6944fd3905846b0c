#!/usr/bin/env node
/**
 * npm run bench [-- --large] [-- --runs N] [-- --json FILE] [-- --no-peers]
 *
 * Measures appendlog on a deterministic build-log corpus (bench/corpus.mjs),
 * through the real service path (rpc/qubes.AppendLog fed on stdin), beside
 * the physical limits measured on the same corpus in the same run (cat,
 * sha256sum, openssl) and, when installed, systemd's sealed journal
 * (systemd-journal-remote --seal=yes, journalctl --verify --verify-key).
 * Every figure is the median of --runs runs (default 3) with min-max.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync, createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { cpus, totalmem, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { corpusLines, writeCorpus } from './corpus.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const LOGVM = join(root, 'packages/log-vm/dist/cli.js');
const LOGSEND = join(root, 'packages/log-sender/dist/cli.js');
const RPC = join(root, 'rpc/qubes.AppendLog');
const TIME = existsSync('/usr/bin/time') ? '/usr/bin/time' : null;

const argv = process.argv.slice(2);
const flag = (f) => argv.includes(f);
const opt = (f, d) => {
  const i = argv.indexOf(f);
  return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1] : d;
};
const LINES = Number(opt('--lines', flag('--large') ? 10_000_000 : 1_000_000));
const RUNS = Math.max(1, Number(opt('--runs', 3)));
const JSON_OUT = opt('--json', null);
const PEERS = !flag('--no-peers');
const GIB_LINE = !flag('--no-gib');

for (const f of [LOGVM, LOGSEND]) {
  if (!existsSync(f)) {
    console.error(`bench: ${f} is missing; run npm ci (or npm run build) first`);
    process.exit(2);
  }
}

const work = mkdtempSync(join(tmpdir(), 'appendlog-bench-'));
process.on('exit', () => rmSync(work, { recursive: true, force: true }));
const corpus = join(work, 'corpus.log');

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const summary = (xs) => ({ median: median(xs), min: Math.min(...xs), max: Math.max(...xs), runs: xs });

/**
 * Runs `sh -c script`, returns wall seconds; throws on failure. Dirty pages
 * of what ran before (the corpus, earlier stores) are written out first,
 * untimed: on ext4 an fsync can have to write other files' dirty data too,
 * so without it a row that syncs (ingest commits) would pay for the rows
 * before it.
 */
function sh(script, env = {}) {
  spawnSync('sync');
  const t0 = process.hrtime.bigint();
  const r = spawnSync('/bin/sh', ['-c', script], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8', maxBuffer: 1 << 24 });
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.status !== 0) throw new Error(`bench: failed (${r.status}): ${script}\n${r.stderr}`);
  return secs;
}

/** Peak RSS (MB) written by /usr/bin/time -f %M -o FILE. */
const readRss = (file) => (existsSync(file) ? Number(readFileSync(file, 'utf8').trim().split('\n').pop()) / 1024 : null);
const timed = (file) => (TIME ? `${TIME} -f %M -o "${file}" ` : '');

function hashBackend() {
  const r = spawnSync(process.execPath, ['-e', `import('${join(root, 'packages/shared/dist/index.js')}').then(m => console.log(m.hashBackend()))`], { encoding: 'utf8' });
  return r.stdout.trim();
}

async function main() {
  const machine = {
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    memGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    hashBackend: hashBackend(),
  };
  console.log(`appendlog benchmark: ${LINES.toLocaleString('en')} lines, ${RUNS} runs, ${machine.cores} x ${machine.cpu}, Node ${machine.node}, hashing: ${machine.hashBackend}`);
  const t0 = Date.now();
  const { bytes } = await writeCorpus(corpus, LINES);
  console.log(`corpus: ${(bytes / 1e6).toFixed(1)} MB, mean ${(bytes / LINES - 1).toFixed(1)} bytes/line (generated in ${((Date.now() - t0) / 1000).toFixed(1)} s)\n`);
  const results = { machine, corpus: { lines: LINES, bytes }, limits: {}, appendlog: {}, peers: {} };
  const rate = (secs) => ({ linesPerSec: LINES / secs, mbPerSec: bytes / 1e6 / secs });

  // Physical limits on the same corpus.
  const limit = (name, script) => {
    const xs = [];
    for (let i = 0; i < RUNS; i++) xs.push(sh(script, { C: corpus }));
    results.limits[name] = { seconds: summary(xs), ...rate(median(xs)) };
  };
  limit('cat | cat', 'cat "$C" | cat >/dev/null');
  limit('sha256sum', 'sha256sum "$C" >/dev/null');
  if (spawnSync('openssl', ['version']).status === 0) limit('openssl dgst -sha256', 'openssl dgst -sha256 "$C" >/dev/null');

  // Ingest through the real service path: cat corpus | rpc/qubes.AppendLog.
  const dbFor = (i) => join(work, `store-${i}.db`);
  const ingest = [];
  const ingestRss = [];
  for (let i = 0; i < RUNS; i++) {
    rmSync(dbFor(i), { force: true });
    const rss = join(work, `rss-${i}`);
    ingest.push(
      sh(`cat "$C" | ${timed(rss)}"$RPC" >/dev/null`, {
        C: corpus,
        RPC,
        QREXEC_REMOTE_DOMAIN: 'bench',
        QREXEC_SERVICE_ARGUMENT: 'raw',
        APPENDLOG_DB: dbFor(i),
        APPENDLOG_LOGVM: LOGVM,
      }),
    );
    ingestRss.push(readRss(rss));
  }
  results.appendlog['ingest raw (rpc/qubes.AppendLog)'] = { seconds: summary(ingest), ...rate(median(ingest)), peakRssMB: summary(ingestRss.filter((x) => x !== null)) };

  // Through logsend's framed mode (pipe mode), into a fresh store each run.
  const framed = [];
  const framedRss = [];
  for (let i = 0; i < RUNS; i++) {
    const db = join(work, `framed-${i}.db`);
    const rss = join(work, `frss-${i}`);
    framed.push(
      sh(`cat "$C" | node "$LOGSEND" --transport command --name framed --command '${timed(rss)}env QREXEC_REMOTE_DOMAIN=bench QREXEC_SERVICE_ARGUMENT="$APPENDLOG_ARGUMENT" "$RPC"' >/dev/null`, {
        C: corpus,
        RPC,
        LOGSEND,
        APPENDLOG_DB: db,
        APPENDLOG_LOGVM: LOGVM,
      }),
    );
    framedRss.push(readRss(rss));
  }
  results.appendlog['ingest framed (logsend | service)'] = { seconds: summary(framed), ...rate(median(framed)), peakRssMB: summary(framedRss.filter((x) => x !== null)) };

  // Commit latency: lines arriving one by one; when is each visible in the store?
  results.appendlog['commit latency'] = await commitLatency();

  // verify-chain on the store, seal, export in every form, verify-chain on each.
  const key = await makeKey();
  const verifyStore = [];
  const seal = [];
  // Bundle forms (docs/FORMAT.md 9.6, 9.7): directory (version 2 and 1) and archives.
  const forms = [
    { label: 'directory', out: 'bundle', args: '' },
    { label: '.tar', out: 'bundle.tar', args: '' },
    { label: '.tar.gz', out: 'bundle.tar.gz', args: '' },
    { label: '.tar.zst', out: 'bundle.tar.zst', args: '' },
    { label: 'directory, version 1 (entries.jsonl)', out: 'bundle-v1', args: '--bundle-version 1' },
  ];
  const exp = forms.map(() => []);
  const ver = forms.map(() => []);
  // The single-file verifier (scripts/build-verifier.mjs, as `make` builds it),
  // built from this tree into the bench's directory; benched on the
  // uncompressed forms (directory and .tar).
  const single = buildVerifier();
  const singleForms = ['directory', '.tar'];
  const verSingle = singleForms.map(() => []);
  results.sizes = {};
  for (let i = 0; i < RUNS; i++) {
    const env = { APPENDLOG_DB: dbFor(i), L: LOGVM };
    verifyStore.push(sh('node "$L" verify-chain --store bench/raw >/dev/null', env));
    seal.push(sh(`node "$L" seal bench/raw --signer key-file:${key.priv} >/dev/null`, env));
    forms.forEach((f, k) => {
      const out = join(work, `${i}-${f.out}`);
      exp[k].push(sh(`node "$L" export bench/raw --out "${out}" ${f.args} >/dev/null`, env));
      ver[k].push(sh(`node "$L" verify-chain "${out}" --key "${key.pub}" >/dev/null`, env));
      const si = singleForms.indexOf(f.label);
      if (si >= 0 && single) verSingle[si].push(sh(`node "${single.file}" "${out}" --key "${key.pub}" >/dev/null`, env));
      if (i === 0) results.sizes[f.label] = statSync(out).isDirectory() ? duBytes(out) : statSync(out).size;
      rmSync(out, { recursive: true, force: true });
    });
  }
  results.appendlog['verify-chain store'] = { seconds: summary(verifyStore), ...rate(median(verifyStore)) };
  forms.forEach((f, k) => {
    results.appendlog[`verify-chain bundle ${f.label}`] = { seconds: summary(ver[k]), ...rate(median(ver[k])) };
  });
  singleForms.forEach((label, k) => {
    if (verSingle[k].length) results.appendlog[`verify-chain bundle ${label}, single-file verifier`] = { seconds: summary(verSingle[k]), ...rate(median(verSingle[k])) };
  });
  results.appendlog['seal (openpgp.js key-file)'] = { seconds: summary(seal) };
  forms.forEach((f, k) => {
    results.appendlog[`export ${f.label}`] = { seconds: summary(exp[k]), ...rate(median(exp[k])) };
  });
  results.bundleBytes = results.sizes.directory;
  results.storeBytes = statSync(dbFor(0)).size;

  // One 1 GiB line with no newline (NUL bytes), streamed.
  if (GIB_LINE) {
    const xs = [];
    const rs = [];
    for (let i = 0; i < RUNS; i++) {
      const db = join(work, `gib-${i}.db`);
      const rss = join(work, `grss-${i}`);
      xs.push(sh(`head -c 1073741824 /dev/zero | ${timed(rss)}"$RPC" >/dev/null`, { RPC, QREXEC_REMOTE_DOMAIN: 'bench', QREXEC_SERVICE_ARGUMENT: 'gib', APPENDLOG_DB: db, APPENDLOG_LOGVM: LOGVM }));
      rs.push(readRss(rss));
      rmSync(db, { force: true });
      rmSync(`${db}-wal`, { force: true });
    }
    results.appendlog['1 GiB line, no newline'] = { seconds: summary(xs), mbPerSec: 1073.741824 / median(xs), peakRssMB: summary(rs.filter((x) => x !== null)) };
  }

  if (PEERS) await journald(results);
  results.targets = targets(results);
  report(results);
  if (JSON_OUT) writeFileSync(JSON_OUT, `${JSON.stringify(results, null, 2)}\n`);
}

/**
 * The single-file verifier, built by scripts/build-verifier.mjs into the
 * bench's directory (esbuild is a dev dependency); null if it cannot be built.
 * It carries no addon (only `node` is needed), so it hashes with node:crypto.
 */
function buildVerifier() {
  const dir = join(work, 'verifier');
  const r = spawnSync(process.execPath, [join(root, 'scripts/build-verifier.mjs'), dir], { encoding: 'utf8' });
  const version = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version;
  const file = join(dir, `appendlog-verify-${version}.cjs`);
  if (r.status !== 0 || !existsSync(file)) {
    console.log(`bench: the single-file verifier could not be built (${(r.stderr || '').trim().split('\n').pop()}); its rows are left out\n`);
    return null;
  }
  return { file };
}

function duBytes(dir) {
  const r = spawnSync('du', ['-sb', dir], { encoding: 'utf8' });
  return Number(r.stdout.split('\t')[0]);
}

async function makeKey() {
  const openpgp = await import(join(root, 'node_modules/openpgp/dist/node/openpgp.mjs'));
  const { privateKey, publicKey } = await openpgp.generateKey({ type: 'ecc', curve: 'curve25519', userIDs: [{ name: 'Bench Release', email: 'bench@example.org' }], format: 'armored' });
  const priv = join(work, 'release.key');
  const pub = join(work, 'release.asc');
  writeFileSync(priv, privateKey, { mode: 0o600 });
  writeFileSync(pub, publicKey);
  return { priv, pub };
}

function sessionOpen(reader) {
  try {
    return reader.prepare('SELECT 1 FROM logs WHERE name = ?').get('latency') !== undefined;
  } catch {
    return false;
  }
}

/**
 * Lines written one every 10 ms for 3 s to the service, while a reader
 * polls the store every 2 ms for the committed count; latency is the time
 * from writing a line to seeing it committed.
 */
async function commitLatency() {
  const Database = (await import(join(root, 'node_modules/better-sqlite3/lib/index.js'))).default;
  const db = join(work, 'latency.db');
  const child = spawn(RPC, [], { env: { ...process.env, QREXEC_REMOTE_DOMAIN: 'bench', QREXEC_SERVICE_ARGUMENT: 'latency', APPENDLOG_DB: db, APPENDLOG_LOGVM: LOGVM }, stdio: ['pipe', 'ignore', 'inherit'] });
  const sent = [];
  const seen = [];
  let reader = null;
  const poll = setInterval(() => {
    try {
      reader ??= existsSync(db) ? new Database(db, { readonly: true, fileMustExist: true }) : null;
      if (reader === null) return;
      const row = reader.prepare('SELECT lines FROM heads h JOIN logs l ON l.id = h.log_id WHERE l.name = ?').get('latency');
      const n = row?.lines ?? 0;
      const t = performance.now();
      while (seen.length < n) seen.push(t);
    } catch {
      // the schema may not exist yet
    }
  }, 2);
  // Start once the service has opened its session (Node start-up is not commit latency).
  for (let waited = 0; waited < 10_000 && !(reader !== null && sessionOpen(reader)); waited += 20) await new Promise((r) => setTimeout(r, 20));
  for (let i = 0; i < 300; i++) {
    sent.push(performance.now());
    child.stdin.write(`latency line ${i}\n`);
    await new Promise((r) => setTimeout(r, 10));
  }
  await new Promise((r) => setTimeout(r, 300));
  clearInterval(poll);
  child.stdin.end();
  await once(child, 'close');
  reader?.close();
  const lat = sent.slice(0, seen.length).map((t, i) => seen[i] - t);
  const s = [...lat].sort((a, b) => a - b);
  return { lines: sent.length, committedSeen: seen.length, medianMs: median(lat), p99Ms: s[Math.floor(s.length * 0.99)] ?? null, maxMs: Math.max(...lat) };
}

/**
 * systemd's sealed journal on the same corpus: journal export format in,
 * systemd-journal-remote --seal=yes, then journalctl --verify --verify-key.
 * Sealing needs an FSS key in /var/log/journal/MACHINE-ID/fss; an existing
 * one is moved aside and put back afterwards.
 */
async function journald(results) {
  const remote = ['/lib/systemd/systemd-journal-remote', '/usr/lib/systemd/systemd-journal-remote'].find((p) => existsSync(p));
  if (!remote || spawnSync('journalctl', ['--version']).status !== 0 || !existsSync('/etc/machine-id')) {
    console.log('peers: systemd-journal-remote not installed (apt-get install systemd-journal-remote); skipped\n');
    return;
  }
  const mid = readFileSync('/etc/machine-id', 'utf8').trim();
  const dir = `/var/log/journal/${mid}`;
  const fss = join(dir, 'fss');
  const backup = existsSync(fss) ? `${fss}.appendlog-bench-backup` : null;
  try {
    mkdirSync(dir, { recursive: true });
    if (backup) renameSync(fss, backup);
    const setup = spawnSync('journalctl', ['--setup-keys', '--force', '--interval=15min'], { encoding: 'utf8' });
    if (setup.status !== 0) throw new Error(`journalctl --setup-keys: ${setup.stderr}`);
    const verifyKey = setup.stdout.trim();
    const exportFile = join(work, 'corpus.export');
    await writeJournalExport(exportFile);
    const ingest = [];
    const verify = [];
    for (let i = 0; i < RUNS; i++) {
      // journal-remote rotates its output file as it fills: verify every file it wrote.
      const dir = join(work, `journal-${i}`);
      rmSync(dir, { recursive: true, force: true });
      mkdirSync(dir);
      ingest.push(sh(`"${remote}" --seal=yes --output="${dir}/remote.journal" - < "${exportFile}" 2>/dev/null`));
      verify.push(sh(`journalctl --verify --verify-key="${verifyKey}" --directory="${dir}" 2>/dev/null`));
      const count = spawnSync('sh', ['-c', `journalctl --directory="${dir}" -q -o cat | wc -l`], { encoding: 'utf8' }).stdout.trim();
      if (Number(count) < LINES) throw new Error(`journald holds ${count} entries, not ${LINES}`);
      rmSync(dir, { recursive: true, force: true });
    }
    const rate = (secs) => ({ linesPerSec: LINES / secs });
    results.peers['journald sealed ingest (systemd-journal-remote --seal=yes)'] = { seconds: summary(ingest), ...rate(median(ingest)) };
    results.peers['journald verify (journalctl --verify --verify-key)'] = { seconds: summary(verify), ...rate(median(verify)) };
  } catch (e) {
    console.log(`peers: journald skipped: ${e.message}\n`);
  } finally {
    rmSync(fss, { force: true });
    if (backup) renameSync(backup, fss);
  }
}

/** The corpus in journal export format; lines with control bytes use the binary field form. */
async function writeJournalExport(path) {
  const out = createWriteStream(path);
  const start = BigInt(Date.now()) * 1000n;
  let i = 0n;
  let parts = [];
  let size = 0;
  for (const line of corpusLines(LINES)) {
    const head = Buffer.from(`__REALTIME_TIMESTAMP=${start + i}\n__MONOTONIC_TIMESTAMP=${i + 1n}\n_BOOT_ID=0123456789abcdef0123456789abcdef\n`);
    let msg;
    if (line.some((b) => b < 0x20 || b === 0x7f)) {
      const len = Buffer.alloc(8);
      len.writeBigUInt64LE(BigInt(line.length));
      msg = Buffer.concat([Buffer.from('MESSAGE\n'), len, line, Buffer.from('\n\n')]);
    } else {
      msg = Buffer.concat([Buffer.from('MESSAGE='), line, Buffer.from('\n\n')]);
    }
    parts.push(head, msg);
    size += head.length + msg.length;
    i++;
    if (size > 1 << 20) {
      if (!out.write(Buffer.concat(parts))) await once(out, 'drain');
      parts = [];
      size = 0;
    }
  }
  out.write(Buffer.concat(parts));
  out.end();
  await once(out, 'finish');
}

/**
 * Issue 14's targets, judged on this run's medians: verify-chain on an
 * uncompressed bundle and export at least 0.5 x sha256sum's MB/s; raw ingest
 * at least 8 x journald's sealed ingest (lines/s); the service's peak RSS at
 * most 100 MB. A target whose reference was not measured is 'not measured'.
 */
function targets(r) {
  const out = {};
  const sha = r.limits.sha256sum;
  const jIngest = r.peers['journald sealed ingest (systemd-journal-remote --seal=yes)'];
  const judge = (row, target, value, goal, higher = true) => {
    if (r.appendlog[row] === undefined) return;
    const met = value === undefined ? null : higher ? value >= goal : value <= goal;
    (out[row] ??= []).push({ target, value: value ?? null, met });
  };
  for (const row of ['verify-chain bundle directory', 'verify-chain bundle .tar', 'export directory', 'export .tar']) {
    judge(row, '0.5 x sha256sum', sha ? r.appendlog[row]?.mbPerSec / sha.mbPerSec : undefined, 0.5);
  }
  const raw = 'ingest raw (rpc/qubes.AppendLog)';
  judge(raw, '8 x journald sealed ingest', jIngest ? r.appendlog[raw]?.linesPerSec / jIngest.linesPerSec : undefined, 8);
  for (const row of [raw, 'ingest framed (logsend | service)']) {
    judge(row, 'peak RSS <= 100 MB', r.appendlog[row]?.peakRssMB?.runs?.length ? r.appendlog[row].peakRssMB.max : undefined, 100, false);
  }
  return out;
}

function report(r) {
  const fmt = (n, d = 0) => n.toLocaleString('en', { maximumFractionDigits: d, minimumFractionDigits: d });
  const secs = (s) => `${fmt(s.median, 3)} s [${fmt(s.min, 3)}-${fmt(s.max, 3)}]`;
  const cat = r.limits['cat | cat'];
  const sha = r.limits.sha256sum;
  const jIngest = r.peers['journald sealed ingest (systemd-journal-remote --seal=yes)'];
  const jVerify = r.peers['journald verify (journalctl --verify --verify-key)'];
  console.log('physical limits, same corpus, same run (median [min-max]):');
  for (const [k, v] of Object.entries(r.limits)) console.log(`  ${k.padEnd(38)} ${secs(v.seconds).padEnd(28)} ${fmt(v.mbPerSec)} MB/s`);
  console.log('\nappendlog:');
  for (const [k, v] of Object.entries(r.appendlog)) {
    if (k === 'commit latency') continue;
    const parts = [`  ${k.padEnd(38)} ${secs(v.seconds).padEnd(28)}`];
    if (v.linesPerSec) parts.push(`${fmt(v.linesPerSec)} lines/s`, `${fmt(v.mbPerSec, 1)} MB/s`);
    else if (v.mbPerSec) parts.push(`${fmt(v.mbPerSec, 1)} MB/s`);
    if (v.peakRssMB?.runs?.length) parts.push(`peak RSS ${fmt(v.peakRssMB.median, 1)} MB [${fmt(v.peakRssMB.min, 1)}-${fmt(v.peakRssMB.max, 1)}]`);
    if (v.mbPerSec && cat) parts.push(`= ${fmt(v.mbPerSec / cat.mbPerSec, 3)} x cat, ${fmt(v.mbPerSec / sha.mbPerSec, 3)} x sha256sum`);
    if (k.startsWith('ingest') && jIngest) parts.push(`= ${fmt(v.linesPerSec / jIngest.linesPerSec, 1)} x journald`);
    if (k.startsWith('verify') && jVerify) parts.push(`= ${fmt(v.linesPerSec / jVerify.linesPerSec, 1)} x journald verify`);
    console.log(parts.join('  '));
    for (const t of r.targets?.[k] ?? []) {
      const value = t.value === null ? '' : t.target.startsWith('peak') ? ` (max ${fmt(t.value, 1)} MB)` : ` (${fmt(t.value, 3)} x)`;
      console.log(`  ${''.padEnd(38)} target ${t.target}: ${t.met === null ? 'not measured' : t.met ? 'met' : 'NOT met'}${value}`);
    }
  }
  const l = r.appendlog['commit latency'];
  console.log(`  ${'commit latency (line -> committed)'.padEnd(38)} median ${fmt(l.medianMs, 1)} ms, p99 ${fmt(l.p99Ms ?? 0, 1)} ms, max ${fmt(l.maxMs, 1)} ms (${l.committedSeen}/${l.lines} lines seen)`);
  console.log(`\nsizes for ${fmt(r.corpus.bytes / 1e6, 1)} MB of log: store ${fmt(r.storeBytes / 1e6, 1)} MB (${fmt(r.storeBytes / r.corpus.bytes, 2)} x)`);
  for (const [k, v] of Object.entries(r.sizes ?? {})) console.log(`  bundle ${k.padEnd(38)} ${fmt(v / 1e6, 1).padStart(7)} MB = ${fmt(v / r.corpus.bytes, 2)} x the log`);
  if (Object.keys(r.peers).length) {
    console.log('\npeers, same corpus, same run:');
    for (const [k, v] of Object.entries(r.peers)) console.log(`  ${k.padEnd(58)} ${secs(v.seconds).padEnd(28)} ${fmt(v.linesPerSec)} lines/s`);
  }
}

await main();
