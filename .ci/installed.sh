#!/usr/bin/env bash
# Installs the .deb built by .ci/packages.sh on this machine (apt, as an
# admin would; its only dependency, nodejs >= 20.19, is already here) and
# runs the INSTALLED tools, from /usr/bin and /etc/qubes-rpc, as a log VM
# and a build VM would, as an unprivileged user. Then removes the package.
set -euo pipefail
cd "$(dirname "$0")/.."
PKG=$(realpath "${1:-build/pkg}")
DEB=$(ls "$PKG"/deb/qubes-appendlog_*_amd64.deb)
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq "$DEB" >/dev/null
# A new user each run, so no store of an earlier run (same machine) is in its home.
userdel -r appendlog-ci >/dev/null 2>&1 || true
trap 'dpkg --purge qubes-appendlog >/dev/null; userdel -r appendlog-ci >/dev/null 2>&1 || true' EXIT
dpkg -L qubes-appendlog | grep -E '^/usr/bin/|^/etc/qubes-rpc/|^/usr/share/man/' 

useradd -m appendlog-ci
W=$(sudo -u appendlog-ci mktemp -d 2>/dev/null || su appendlog-ci -s /bin/sh -c 'mktemp -d')
as() { su appendlog-ci -s /bin/bash -c "cd '$W' && $1"; }
cp -r examples/hello "$W/hello" && chown -R appendlog-ci "$W/hello"

set -x
command -v logvm logsend
readlink -f /usr/bin/logvm
as 'logvm --version && logsend --version'
man -w logvm logsend 2>/dev/null || ls /usr/share/man/man1/logvm.1.gz /usr/share/man/man1/logsend.1.gz
bash -c 'source /usr/share/bash-completion/completions/logvm && complete -p logvm'
# the service as qrexec runs it, a real build piped in
as 'make -C hello 2>&1 | QREXEC_REMOTE_DOMAIN=build-vm QREXEC_SERVICE_ARGUMENT=ci-raw /etc/qubes-rpc/qubes.AppendLog'
# logsend through the installed service
as "make -C hello clean >/dev/null; logsend --transport command --command 'QREXEC_REMOTE_DOMAIN=build-vm QREXEC_SERVICE_ARGUMENT=\"\$APPENDLOG_ARGUMENT\" /etc/qubes-rpc/qubes.AppendLog' --name ci-framed --artifact hello/hello --receipts r.jsonl -- make -C hello"
as 'logvm list'
# seal (a throwaway gpg key standing in for Split-GPG), export, verify
as 'export GNUPGHOME=$PWD/gnupg; mkdir -m 700 gnupg; gpg --batch --pinentry-mode loopback --passphrase "" --quick-gen-key "CI <ci@example.org>" ed25519 sign never 2>/dev/null; gpg --armor --export ci@example.org > pub.asc; logvm seal build-vm/ci-framed --signer gpg:ci@example.org; logvm export build-vm/ci-framed --out bundle; logvm verify-chain bundle --key pub.asc --receipt r.jsonl --artifact hello/hello; gpgconf --kill gpg-agent'
# the one-file forms, .tar.zst through the packaged zstd-napi on the system Node
as 'for f in bundle.tar bundle.tar.gz bundle.tar.zst; do logvm export build-vm/ci-framed --out $f && logvm verify-chain $f --key pub.asc --artifact hello/hello || exit 1; done'
# a refused name, as the build VM would see it
if as 'echo x | QREXEC_REMOTE_DOMAIN=build-vm QREXEC_SERVICE_ARGUMENT=-h /etc/qubes-rpc/qubes.AppendLog'; then echo "installed: -h was accepted"; exit 1; fi
set +x
rm -rf "$W"
echo "installed: the .deb's tools ran end to end"
