#!/bin/bash
# demo-lab.sh: the Qubes builder's log path, end to end, under the real qrexec
# (../shared/qrexec-lab, or $QREXEC_LAB_DIR). Run as root from a built
# checkout (npm ci). What it shows:
#   build VM: the builder's calling code (test/buildlog/builder_client.py) runs
#             `qrexec-client-vm dom0 qubesbuilder.BuildLog` and gets its path back;
#   dom0:     rpc/31-qubesbuilder-buildlog.policy redirects the call to the log VM;
#   log VM:   rpc/qubesbuilder.BuildLog stores the log, writes the text file,
#             seals it (gpg standing in for Split-GPG), postSealHook runs
#             `logvm publish`, and the QubesOS-style post-log-hook pushes both
#             to a "build-logs" repository (a bare repository in the log VM);
#   auditor:  a clone, git verify-commit, logvm verify-chain, logvm render | cmp.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
LAB_DIR=${QREXEC_LAB_DIR:-$ROOT/../shared/qrexec-lab}
[ -x "$LAB_DIR/lab.sh" ] || { echo "no qrexec lab at $LAB_DIR (set QREXEC_LAB_DIR)" >&2; exit 1; }
T=$(mktemp -d /tmp/appendlog-demo-XXXXXX); chmod 755 "$T"
RUN=$T/run
LAB() { "$LAB_DIR/lab.sh" --run-dir "$RUN" "$@"; }
trap 'LAB down >/dev/null 2>&1 || true; gpgconf --homedir "$T/gpg" --kill gpg-agent 2>/dev/null || true; rm -rf "$T"' EXIT
"$LAB_DIR/build.sh" >/dev/null

mkdir -m 700 "$T/gpg"
gpg --homedir "$T/gpg" --batch --passphrase '' --quick-gen-key 'Build log signer (demo) <logs@example.org>' ed25519 sign never 2>/dev/null
FPR=$(gpg --homedir "$T/gpg" --with-colons --list-keys | awk -F: '/^fpr/ {print $10; exit}')
gpg --homedir "$T/gpg" --armor --export-secret-keys "$FPR" > "$T/secret.asc"; chmod 644 "$T/secret.asc"
gpg --homedir "$T/gpg" --armor --export "$FPR" > "$T/public.asc"
printf '%s\n' '> starting build with log' 'make[1]: Entering directory /builder' $'\e[32mOK\e[0m built hello-1.0.tar.gz' '> done' > "$T/messages.txt"

cat > "$T/user-setup.sh" <<EOF
set -eu
gpg --batch --import '$T/secret.asc' 2>/dev/null
echo '$FPR:6:' | gpg --batch --import-ownertrust 2>/dev/null
git config --global user.name 'Build bot'; git config --global user.email bot@example.org
git config --global user.signingkey $FPR; git config --global commit.gpgsign true; git config --global gpg.program gpg
git init -q --bare --initial-branch=main ~/build-logs.git
git clone -q ~/build-logs.git ~/QubesIncomingBuildLog 2>/dev/null
cd ~/QubesIncomingBuildLog && git checkout -q -b main && echo logs > README.md && git add README.md && git commit -qm init && git push -q origin main
cat > post-log-hook <<'H'
#!/bin/sh
exec >>~/logs-upload.log 2>&1
set -e
cd ~/QubesIncomingBuildLog
git fetch origin
[ "\$(git log -1 --format=%G? origin/main)" = G ]
git merge --ff-only origin/main
git add "\$1"
git commit -m "Add \$(realpath --relative-to=. "\$1")"
git push origin main
H
chmod +x post-log-hook; echo post-log-hook > .git/info/exclude
mkdir -p ~/bin ~/.config/appendlog
printf '#!/bin/sh\nexec logvm publish "\$1" --git ~/QubesIncomingBuildLog\n' > ~/bin/post-seal-publish; chmod +x ~/bin/post-seal-publish
echo '{"sealOnClose": "gpg:$FPR", "postSealHook": "/home/user/bin/post-seal-publish", "gitGpgProgram": "gpg"}' > ~/.config/appendlog/logvm.json
EOF
printf '#!/bin/sh\nrunuser -l user -c "sh %s/user-setup.sh"\n' "$T" > "$T/log-setup.sh"; chmod 755 "$T/log-setup.sh"

LAB up --service "$ROOT/rpc/qubesbuilder.BuildLog" --policy "$ROOT/rpc/31-qubesbuilder-buildlog.policy" \
  --log-bind "$ROOT:/home/user/appendlog" --log-bin logvm=/home/user/appendlog/packages/log-vm/bin/logvm.js \
  --log-setup "$T/log-setup.sh" \
  --build-copy "$ROOT/test/buildlog/builder_client.py:/home/user/" --build-copy "$T/messages.txt:/home/user/" >/dev/null

echo '== dom0 policy'; grep -v '^#' "$ROOT/rpc/31-qubesbuilder-buildlog.policy" | grep .
echo '== build VM: the builder calls qrexec-client-vm dom0 qubesbuilder.BuildLog'
OUT=$(LAB build-vm python3 /home/user/builder_client.py /home/user/messages.txt); echo "$OUT"
P=$(printf '%s' "$OUT" | python3 -c 'import json,sys; print(json.load(sys.stdin)["log_file"])')
N=buildlog.${P#*/}
echo "== log VM: ~/QubesIncomingBuildLog/$P"; LAB log-vm cat "QubesIncomingBuildLog/$P"
echo '== log VM: logvm list'; LAB log-vm logvm list
echo '== log VM: the build-logs repository (what the hook pushed)'; LAB log-vm git -C build-logs.git log --format='%h %G? %s' main
echo '== log VM: its events'; LAB log-vm logvm show build-vm/logvm-events
echo '== auditor: a clone, the commit signatures, the sealed bundle, the text against the seal'
LAB log-vm -c "set -e; git clone -q ~/build-logs.git /tmp/audit-\$\$ && cd /tmp/audit-\$\$ && git verify-commit HEAD HEAD~1 2>&1 | grep -c 'Good signature' && logvm verify-chain build-vm/$N --key '$T/public.asc' && logvm render build-vm/$N | cmp - $P && echo 'text log == rendering of the sealed chain'; rm -rf /tmp/audit-\$\$"
