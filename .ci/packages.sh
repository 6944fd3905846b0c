#!/usr/bin/env bash
# Builds the packages the way a Qubes builder would, from the committed
# source (git archive HEAD) and the vendored npm dependencies, with NO network
# (unshare -n): the .deb with dpkg-buildpackage, the VM and dom0 .rpms with
# rpmbuild (Debian's rpm; --nodeps, as Fedora's BuildRequires do not exist
# here). Then checks what each package holds, and what it must not hold.
#
#   .ci/packages.sh [OUT]     (default build/pkg; needs root for unshare -n)
#   CHECK_ONLY=1 .ci/packages.sh [OUT]    only check packages built before
set -euo pipefail
cd "$(dirname "$0")/.."
V=$(cat version)
OUT=$(realpath -m "${1:-build/pkg}")
DEPS=appendlog-deps-$V.tar.gz
if [ -z "${CHECK_ONLY:-}" ]; then
rm -rf "$OUT" && mkdir -p "$OUT"

# The vendored tarball is reproducible: `make vendor` from package-lock.json
# gives the bytes the committed .sha512 names, unless the lockfile changed.
committed=$(cat "$DEPS.sha512")
make -s vendor
if [ "$(cat "$DEPS.sha512")" != "$committed" ]; then
  echo "packages: WARNING: package-lock.json changed since $DEPS.sha512 was committed; run 'make vendor' and commit $DEPS.sha512 (building with the new tarball)"
fi
make -s srctar
SRC=build/dist/appendlog-$V.tar.gz

echo "packages: dpkg-buildpackage (no network)"
mkdir -p "$OUT/deb"
tar xzf "$SRC" -C "$OUT/deb"
cp "$DEPS" "$OUT/deb/appendlog-$V/"
(cd "$OUT/deb/appendlog-$V" && unshare -n dpkg-buildpackage -b -uc -us) > "$OUT/deb.log" 2>&1 || { tail -50 "$OUT/deb.log"; exit 1; }

echo "packages: rpmbuild (no network)"
mkdir -p "$OUT/rpm/SOURCES" "$OUT/rpm/SPECS"
cp "$SRC" "$DEPS" "$OUT/rpm/SOURCES/"
for s in qubes-appendlog qubes-appendlog-dom0; do
  make -s "rpm_spec/$s.spec"
  cp "rpm_spec/$s.spec" "$OUT/rpm/SPECS/"
  unshare -n rpmbuild -bb --nodeps --define "_topdir $OUT/rpm" "$OUT/rpm/SPECS/$s.spec" > "$OUT/rpm-$s.log" 2>&1 || { tail -50 "$OUT/rpm-$s.log"; exit 1; }
done

fi

DEB=$(ls "$OUT"/deb/qubes-appendlog_"$V"-*_amd64.deb)
RPM=$(ls "$OUT"/rpm/RPMS/x86_64/qubes-appendlog-"$V"-*.x86_64.rpm)
RPM0=$(ls "$OUT"/rpm/RPMS/noarch/qubes-appendlog-dom0-"$V"-*.noarch.rpm)
dpkg-deb -c "$DEB" | awk '{print $6}' | sed 's|^\./|/|; s|/$||' | sort > "$OUT/deb.files"
rpm -qlp "$RPM" 2>/dev/null | sort > "$OUT/rpm.files"
rpm -qlp "$RPM0" 2>/dev/null | sort > "$OUT/rpm-dom0.files"

fail=0
# grep -c, not grep -q, after a pipe: -q stops at the first match, the writer
# then dies of SIGPIPE, and pipefail turns a found match into a failure.
must() { grep -qxF "$2" "$OUT/$1" || { echo "packages: $1 lacks $2"; fail=1; }; }
# (grep -m: no `grep | head` here, whose SIGPIPE under pipefail would hide a match)
mustnot() { local hit; hit=$(grep -E -m3 "$2" "$OUT/$1" || true); if [ -n "$hit" ]; then echo "packages: $1 must not hold $(echo "$hit" | tr '\n' ' ')"; fail=1; fi; }
for f in deb.files rpm.files; do
  for p in /usr/bin/logvm /usr/bin/logsend /etc/qubes-rpc/qubes.AppendLog \
    /usr/lib/appendlog/packages/log-vm/bin/logvm.js /usr/lib/appendlog/packages/log-sender/bin/logsend.js \
    /usr/lib/appendlog/packages/log-vm/dist/cli.js /usr/lib/appendlog/packages/log-vm/dist/yargs.js /usr/lib/appendlog/packages/shared/dist/index.js \
    /usr/lib/appendlog/node_modules/better-sqlite3/build/Release/better_sqlite3.node \
    /usr/lib/appendlog/node_modules/zstd-napi/build/Release/binding.node \
    /usr/lib/appendlog/node_modules/openpgp/package.json /usr/lib/appendlog/node_modules/yargs/package.json \
    /usr/lib/appendlog/node_modules/@appendlog/shared \
    /usr/share/bash-completion/completions/logvm /usr/share/bash-completion/completions/logsend; do
    must "$f" "$p"
  done
  for s in rpc/*; do case "$s" in *.policy) ;; *) must "$f" "/etc/qubes-rpc/$(basename "$s")" ;; esac; done
  # No sources, no dev tools, no build leftovers, no policy (that is dom0's).
  mustnot "$f" '/src/.*\.ts$|^/usr/lib/appendlog/packages/.*\.(map|d\.ts)$|/node_modules/(typescript|esbuild|vitest|vite|@types|undici-types|fast-check)(/|$)|(better-sqlite3|zstd-napi)/(deps|src)(/|$)|/obj\.target(/|$)|\.o$|/etc/qubes/policy\.d'
done
must deb.files /usr/share/man/man1/logvm.1.gz
must deb.files /usr/share/man/man1/logsend.1.gz
grep -qE '^/usr/share/man/man1/logvm\.1' "$OUT/rpm.files" || { echo "packages: rpm lacks the logvm man page"; fail=1; }
for p in rpc/*.policy; do must rpm-dom0.files "/etc/qubes/policy.d/$(basename "$p")"; done
mustnot rpm-dom0.files '^/usr|qubes-rpc'
# The dom0 policy is a config file rpm never overwrites once edited.
rpm -qp --configfiles "$RPM0" 2>/dev/null | grep -c '^/etc/qubes/policy.d/30-appendlog.policy$' >/dev/null || { echo "packages: the dom0 policy is not a %config file"; fail=1; }
rpm -qp --requires "$RPM" 2>/dev/null | grep -cE '^nodejs >= 20.19' >/dev/null || { echo "packages: the rpm does not require nodejs >= 20.19"; fail=1; }
dpkg-deb -f "$DEB" Depends | grep -cE 'nodejs \(>= 20.19\)' >/dev/null || { echo "packages: the deb does not depend on nodejs (>= 20.19)"; fail=1; }
# The programs must be executable (dh_fixperms makes *.js 0644 unless told).
for p in ./usr/lib/appendlog/packages/log-vm/bin/logvm.js ./usr/lib/appendlog/packages/log-sender/bin/logsend.js ./etc/qubes-rpc/qubes.AppendLog; do
  dpkg-deb -c "$DEB" | awk -v p="$p" '$6 == p { print $1 }' | grep -cx -- '-rwxr-xr-x' >/dev/null || { echo "packages: $p is not executable in the deb"; fail=1; }
  rpm -qlvp "$RPM" 2>/dev/null | awk -v p="${p#.}" '$9 == p { print $1 }' | grep -cx -- '-rwxr-xr-x' >/dev/null || { echo "packages: ${p#.} is not executable in the rpm"; fail=1; }
done
[ "$fail" = 0 ] || exit 1
echo "packages: $(wc -l < "$OUT/deb.files") paths in $(basename "$DEB"), $(wc -l < "$OUT/rpm.files") in $(basename "$RPM"), $(wc -l < "$OUT/rpm-dom0.files") in $(basename "$RPM0"): file lists checked"
ls -la "$DEB" "$RPM" "$RPM0"
