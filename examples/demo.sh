#!/usr/bin/env bash
# The whole pipeline on one plain Linux machine: a real build's output goes
# through rpc/qubes.AppendLog exactly as qrexec runs it (stdin pipe and the
# QREXEC_* variables), then the log VM admin lists, shows, verifies and seals
# it (plain gpg with a throwaway key stands in for Split-GPG), exports the
# bundle, and an auditor verifies it with logvm and with plain gpg. Last, a
# line of the bundle is rewritten and verification names the entry.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/appendlog-demo.XXXXXX")
export APPENDLOG_DB="$work/logs.db"
export APPENDLOG_LOGVM="$root/packages/log-vm/dist/cli.js"
logvm() { node "$root/packages/log-vm/dist/cli.js" "$@"; }
logsend() { node "$root/packages/log-sender/dist/cli.js" "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

cp -r "$root/examples/hello" "$work/hello"
name="hello-$(date +%Y%m%d-%H%M%S)"

step "build VM: make 2>&1 | qrexec-client-vm logvm qubes.AppendLog+$name   (qrexec simulated)"
(cd "$work/hello" && make 2>&1) |
  QREXEC_REMOTE_DOMAIN=build-vm QREXEC_SERVICE_ARGUMENT="$name" \
  QREXEC_SERVICE_FULL_NAME="qubes.AppendLog+$name" "$root/rpc/qubes.AppendLog"

step "log VM: logvm list"
logvm list
step "log VM: logvm show build-vm/$name   (escape sequences made visible)"
logvm show "build-vm/$name"
step "log VM: logvm verify-chain --store build-vm/$name"
logvm verify-chain --store "build-vm/$name"

step "build VM, with logsend: stream tags, input and artifact hashes, exit status, receipts"
# A release script as they are written: it checks the source tarball, and
# when the check fails it prints so and carries on (the seed of this
# project). The report's "look here first" finds those lines.
cat >"$work/hello/release.sh" <<'EOF'
echo "verifying hello-1.0.tar.gz"
sha256sum -c SHA256SUMS || echo "warning: source verification failed, continuing anyway" >&2
make
EOF
printf 'hello 1.0 sources\n' >"$work/hello/hello-1.0.tar.gz"
echo "0000000000000000000000000000000000000000000000000000000000000000  hello-1.0.tar.gz" >"$work/hello/SHA256SUMS"
(cd "$work/hello" && make clean >/dev/null &&
  logsend --transport command --name "$name-logsend" --input hello.c --input hello-1.0.tar.gz --artifact hello --receipts "$work/receipts.jsonl" \
    --command "QREXEC_REMOTE_DOMAIN=build-vm QREXEC_SERVICE_ARGUMENT=\"\$APPENDLOG_ARGUMENT\" '$root/rpc/qubes.AppendLog'" -- sh release.sh)
logvm show "build-vm/$name-logsend"

if ! command -v gpg >/dev/null 2>&1; then
  echo "gpg is not installed (apt-get install gnupg): skipping seal, export and audit"
  exit 0
fi
export GNUPGHOME="$work/gnupg"
mkdir -m 700 "$GNUPGHOME"
gpg --batch --quiet --passphrase '' --quick-gen-key 'Demo Release Key <release@example.org>' ed25519 sign never 2>/dev/null
gpg --batch --armor --export release@example.org >"$work/release.asc"

step "log VM: logvm seal build-vm/$name-logsend --signer gpg:release@example.org   (split-gpg:KEY on Qubes)"
logvm seal "build-vm/$name-logsend" --signer gpg:release@example.org
step "log VM: logvm export build-vm/$name-logsend --out bundle"
logvm export "build-vm/$name-logsend" --out "$work/bundle"
ls -l "$work/bundle"

step "auditor: logvm verify-chain bundle --key release.asc --receipt receipts.jsonl --artifact hello"
logvm verify-chain "$work/bundle" --key "$work/release.asc" --receipt "$work/receipts.jsonl" --artifact "$work/hello/hello"
step "auditor: gpg --verify bundle/signatures/01.asc bundle/manifest.json"
gpg --verify "$work/bundle/signatures/01.asc" "$work/bundle/manifest.json"
step "auditor: logvm show bundle --grep 'fail|warn'   (the bundle, read like journalctl)"
logvm show "$work/bundle" --grep 'fail|warn'
step "auditor: logvm report bundle --key release.asc --out report.html   (open it in a browser)"
logvm report "$work/bundle" --key "$work/release.asc" --out "$work/report.html"
# A picture of its first screen, when Debian's chromium is installed
# (DEMO_SCREENSHOT=docs/report.png npm run demo refreshes the README's).
if [ -x /usr/bin/chromium ]; then
  shot=${DEMO_SCREENSHOT:-$work/report.png}
  node "$root/scripts/report-screenshot.mjs" "$work/report.html" "$shot" 1200 900 &&
    { ! command -v pngquant >/dev/null 2>&1 || pngquant --quality 60-85 --speed 1 --force --output "$shot" "$shot"; } &&
    echo "screenshot: $shot"
fi

step "attacker turns 'FAILED' into 'PASSED' in the exported log (entries.bin); the auditor checks again"
python3 - "$work/bundle/entries.bin" <<'PY'
import sys
path = sys.argv[1]
data = open(path, 'rb').read()
assert data.count(b'hello-1.0.tar.gz: FAILED') == 1, 'the line to change is not in the bundle'
open(path, 'wb').write(data.replace(b'hello-1.0.tar.gz: FAILED', b'hello-1.0.tar.gz: PASSED'))
PY
set +e
logvm verify-chain "$work/bundle" --key "$work/release.asc"
code=$?
set -e
echo "verify-chain exit code: $code (10 = CHAIN_HASH_MISMATCH)"
[ "$code" -eq 10 ]
step "done: files in $work"
