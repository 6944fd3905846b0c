#!/usr/bin/env bash
# M of N independent builders, end to end on one machine (npm run demo:quorum).
#
# Upstream publishes a signed source tarball. Three builders each have their
# own build VM (a work directory), their own log VM (their own store, reached
# through rpc/qubes.AppendLog exactly as qrexec runs it) and their own seal
# key (a throwaway GNUPGHOME standing in for Split-GPG). Each one verifies
# the source before building (logsend --verify-input), builds, seals its own
# log and publishes a small evidence file (logvm attest). A downloader then
# checks that 2 of the 3 agree on the tarball they downloaded.
#
# Builders 1 and 2 are honest. Builder 3 first gets a modified source whose
# signature fails (the build is refused), then a source signed by a key
# upstream never used (refused), and finally builds the real source with a
# changed toolchain flag (CFLAGS=-O0): a different binary.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/appendlog-quorum.XXXXXX")
[ -n "${KEEP:-}" ] || trap 'for h in "$work"/gpg-*; do GNUPGHOME=$h gpgconf --kill gpg-agent 2>/dev/null || true; done; rm -rf "$work"' EXIT
export APPENDLOG_LOGVM="$root/packages/log-vm/dist/cli.js"
logvm() { node "$root/packages/log-vm/dist/cli.js" "$@"; }
logsend() { node "$root/packages/log-sender/dist/cli.js" "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
# `status CMD...`: run it, print its exit status, never stop the demo.
status() { set +e; "$@"; local s=$?; set -e; echo "(exit status $s)"; return 0; }

newkey() { # newkey HOME "User ID"
  mkdir -m 700 "$work/gpg-$1"
  GNUPGHOME="$work/gpg-$1" gpg --batch --quiet --passphrase '' --quick-gen-key "$2" ed25519 sign never 2>/dev/null
  GNUPGHOME="$work/gpg-$1" gpg --batch --armor --export >"$work/$1.asc"
}

step "upstream: a deterministic source tarball, signed (key 'upstream')"
newkey upstream 'Upstream Release <upstream@example.org>'
newkey mallory 'Mallory <mallory@example.net>'
mkdir "$work/upstream"
cp -r "$root/examples/quorum/src" "$root/examples/quorum/Makefile" "$work/upstream/"
make -s -C "$work/upstream" source
GNUPGHOME="$work/gpg-upstream" gpg --batch -a -b -o "$work/upstream/hello-1.0-src.tar.gz.asc" "$work/upstream/hello-1.0-src.tar.gz"
sha256sum "$work/upstream/hello-1.0-src.tar.gz"

# builder N: a build VM directory, a log VM store, a seal key.
for n in 1 2 3; do
  newkey "builder$n" "Builder $n <builder$n@example.org>"
  mkdir "$work/vm$n"
  cp "$root/examples/quorum/Makefile" "$work/vm$n/"
  cp "$work/upstream.asc" "$work/vm$n/upstream.asc"
done

# build N NAME [make args...]: logsend in builder N's build VM, into its own log VM.
build() {
  local n=$1 name=$2; shift 2
  (cd "$work/vm$n" && logsend --transport command --name "$name" \
    --command "QREXEC_REMOTE_DOMAIN=build-$n QREXEC_SERVICE_ARGUMENT=\"\$APPENDLOG_ARGUMENT\" APPENDLOG_DB='$work/log$n.db' '$root/rpc/qubes.AppendLog'" \
    --verify-input hello-1.0-src.tar.gz --keyring upstream.asc --input Makefile --artifact dist/hello-1.0.tar.gz -- make "$@")
}
# publish N NAME: builder N's log VM seals the log with its key and writes the evidence file.
publish() {
  local n=$1 name=$2
  GNUPGHOME="$work/gpg-builder$n" logvm seal --db "$work/log$n.db" "build-$n/$name" --signer "gpg:builder$n@example.org"
  logvm attest --db "$work/log$n.db" "build-$n/$name" --out "$work/$name.builder$n.evidence.json"
}

for n in 1 2; do
  step "builder $n (honest): logsend --verify-input hello-1.0-src.tar.gz --keyring upstream.asc ... -- make"
  cp "$work/upstream/hello-1.0-src.tar.gz" "$work/upstream/hello-1.0-src.tar.gz.asc" "$work/vm$n/"
  build "$n" hello-1.0
  publish "$n" hello-1.0
done

step "builder 3 gets a MODIFIED source (one line of hello.c changed, upstream's signature kept)"
mkdir -p "$work/evil/hello-1.0"
tar -xzf "$work/upstream/hello-1.0-src.tar.gz" -C "$work/evil"
sed -i 's/agreed on/agreed on, and a backdoor/' "$work/evil/hello-1.0/hello.c"
tar --sort=name --mtime=@1700000000 --owner=0 --group=0 --numeric-owner -C "$work/evil" -cf - hello-1.0 | gzip -n -9 >"$work/vm3/hello-1.0-src.tar.gz"
cp "$work/upstream/hello-1.0-src.tar.gz.asc" "$work/vm3/"
status build 3 hello-1.0-tampered
publish 3 hello-1.0-tampered
logvm show --db "$work/log3.db" build-3/hello-1.0-tampered

step "builder 3, variant: the modified source signed by a key upstream never used (Mallory's)"
GNUPGHOME="$work/gpg-mallory" gpg --batch --yes -a -b -o "$work/vm3/hello-1.0-src.tar.gz.asc" "$work/vm3/hello-1.0-src.tar.gz"
status build 3 hello-1.0-untrusted

step "builder 3, variant: the real source, but a changed toolchain flag (make dist CFLAGS=-O0)"
cp "$work/upstream/hello-1.0-src.tar.gz" "$work/upstream/hello-1.0-src.tar.gz.asc" "$work/vm3/"
build 3 hello-1.0 dist CFLAGS=-O0
publish 3 hello-1.0

step "what each builder publishes: a small evidence file (the signed manifest and its signatures)"
ls -l "$work"/*.evidence.json
# The project publishes its builders' certificates as one keyring.
cat "$work/builder1.asc" "$work/builder2.asc" "$work/builder3.asc" >"$work/builders.asc"
K=(--keyring "$work/builders.asc")
mkdir "$work/downloads" && cp "$work/vm1/dist/hello-1.0.tar.gz" "$work/downloads/hello-1.0.tar.gz"
E=("$work/hello-1.0.builder1.evidence.json" "$work/hello-1.0.builder2.evidence.json" "$work/hello-1.0.builder3.evidence.json")

step "downloader: logvm verify-artifact hello-1.0.tar.gz --evidence (x3) --keyring builders.asc --threshold 2"
status logvm verify-artifact "$work/downloads/hello-1.0.tar.gz" --evidence "${E[0]}" --evidence "${E[1]}" --evidence "${E[2]}" "${K[@]}" --threshold 2

step "downloader: the same with --threshold 3 (all three must agree)"
status logvm verify-artifact "$work/downloads/hello-1.0.tar.gz" --evidence "${E[0]}" --evidence "${E[1]}" --evidence "${E[2]}" "${K[@]}" --threshold 3

step "logvm compare: where builder 3 parts from builder 1"
logvm compare "${E[0]}" "${E[2]}" "${K[@]}"

step "logvm compare: builder 1 against builder 3's refused build"
logvm compare "${E[0]}" "$work/hello-1.0-tampered.builder3.evidence.json" "${K[@]}"

step "full bundle instead of an evidence file: the log itself is re-checked"
logvm export --db "$work/log1.db" build-1/hello-1.0 --out "$work/bundle1"
status logvm verify-artifact "$work/downloads/hello-1.0.tar.gz" --evidence "$work/bundle1" --evidence "${E[1]}" --key "$work/builder1.asc" --key "$work/builder2.asc" --threshold 2
