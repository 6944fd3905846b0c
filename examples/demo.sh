#!/usr/bin/env bash
# The whole pipeline on one plain Linux machine: a real build's output goes
# through rpc/qubes.AppendLog exactly as qrexec runs it (stdin pipe and the
# QREXEC_* variables), then the log VM admin lists, shows, verifies and seals
# it (plain gpg with a throwaway key stands in for Split-GPG), exports the
# bundle, and an auditor verifies it with logvm and with plain gpg. Last, one
# byte of the bundle is changed and verification names the entry.
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
step "log VM: logvm verify-chain build-vm/$name"
logvm verify-chain "build-vm/$name"

step "build VM, with logsend: stream tags, input and artifact hashes, exit status, receipts"
(cd "$work/hello" && make clean >/dev/null &&
  logsend --transport command --name "$name-logsend" --input hello.c --artifact hello --receipts "$work/receipts.jsonl" \
    --command "QREXEC_REMOTE_DOMAIN=build-vm QREXEC_SERVICE_ARGUMENT=\"\$APPENDLOG_ARGUMENT\" '$root/rpc/qubes.AppendLog'" -- make)
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

step "attacker edits line 3 of the exported log; the auditor checks again"
sed -i '3s/"text":"./"text":"X/' "$work/bundle/entries.jsonl"
set +e
logvm verify-chain "$work/bundle" --key "$work/release.asc"
code=$?
set -e
echo "verify-chain exit code: $code (10 = CHAIN_HASH_MISMATCH)"
[ "$code" -eq 10 ]
step "done: files in $work"
