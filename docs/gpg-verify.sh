#!/bin/sh
# gpg-verify.sh: a second opinion on a bundle's signatures with plain GnuPG,
# applying the counting rules of docs/FORMAT.md 6.4 (M of N). It checks the
# signatures over manifest.json only; check the chain with
# `logvm verify-chain` or the independent outline in FORMAT.md 9.4.
#
#   sh docs/gpg-verify.sh [--now EPOCH] [--signer FPR]... BUNDLE M KEYFILE...
#
# KEYFILE: the trusted public keys, armored or binary, one or more per file
# (gpg --export output works). --signer pins primary fingerprints (only those
# count). --now verifies as of another time (gpg --faked-system-time).
# Prints one line per signature ("FILE: counted FPR" or "FILE: not counted
# (why)"), then "OK ..." and exits 0 if at least M distinct primary
# fingerprints counted; exits 1 otherwise, 2 on a BAD signature (the
# manifest was changed after a trusted key signed it).
#
# Why not just count VALIDSIG: gpg prints VALIDSIG for expired and revoked
# keys too (EXPKEYSIG, REVKEYSIG), for SHA-1 digests, and for signatures
# made at any time. So a signature counts only if
#   - gpg said GOODSIG, or EXPKEYSIG/REVKEYSIG and the key listing shows the
#     expiry, or a superseded (1) / retired (3) revocation, came after the
#     signature was made (a revocation with another reason or none: never);
#     never EXPSIG, BADSIG or ERRSIG;
#   - VALIDSIG shows a v4 binary (class 00) signature with digest SHA-256 (8),
#     SHA-384 (9), SHA-512 (10), SHA3-256 (12) or SHA3-512 (14);
#   - its time is >= the manifest's sealed time - 300 s and <= now + 300 s.
# And one primary fingerprint (the last VALIDSIG field) counts once.
set -eu

now=$(date +%s)
faked=
pins=
while [ $# -gt 0 ]; do
  case $1 in
    --now) now=$2; faked="--faked-system-time ${2}!"; shift 2 ;;
    --signer) pins="$pins $(printf %s "$2" | tr a-f A-F)"; shift 2 ;;
    *) break ;;
  esac
done
[ $# -ge 3 ] || { echo "usage: $0 [--now EPOCH] [--signer FPR]... BUNDLE M KEYFILE..." >&2; exit 64; }
bundle=$1 m=$2; shift 2
skew=300

# The manifest is canonical JSON: "sealed" occurs once, unescaped, at the top level.
sealed_ms=$(sed -n 's/.*[,{]"sealed":\([0-9][0-9]*\)[,}].*/\1/p' "$bundle/manifest.json")
[ -n "$sealed_ms" ] || { echo "manifest.json has no sealed time" >&2; exit 64; }
sealed=$((sealed_ms / 1000))

GNUPGHOME=$(mktemp -d)
export GNUPGHOME
trap 'gpgconf --kill gpg-agent >/dev/null 2>&1 || true; rm -rf "$GNUPGHOME"' EXIT
# shellcheck disable=SC2086
g() { gpg --batch --no-tty --quiet $faked --trust-model always "$@"; }
for k in "$@"; do g --import "$k" 2>/dev/null; done

# Expiry (field 7) and revocations (rev records: created field 6, class and
# reason field 11 as "20x,RR" / "28x,RR") of key $1 (a primary or subkey
# fingerprint), and of its primary $2, as "kind created reason" lines.
key_facts() {
  g --with-colons --fixed-list-mode --list-sigs "$2" 2>/dev/null | awk -F: -v want="$1" -v prim="$2" '
    $1 == "pub" || $1 == "sub" { kind = $1; ex = $7; pend = 1; next }
    $1 == "fpr" && pend { cur = $10; pend = 0; if (cur == want || cur == prim) { if (ex != "") print "exp", ex; rel = 1 } else rel = 0; next }
    $1 == "uid" { rel = 0; next }
    $1 == "rev" && rel && ($11 ~ /^20x/ || $11 ~ /^28x/) { split($11, c, ","); print "rev", $6, (c[2] == "" ? "none" : c[2]) }'
}

counted=
n=0
for sig in "$bundle"/signatures/*.asc; do
  [ -f "$sig" ] || continue
  name=signatures/${sig##*/}
  # One record per signature in the file: STATE FPR TIME VERSION HASH CLASS PRIMARY
  g --status-fd 1 --verify "$sig" "$bundle/manifest.json" 2>/dev/null | awk '
    $1 != "[GNUPG:]" { next }
    $2 == "NEWSIG" { if (st != "") print st, v; st = "none"; v = "-"; next }
    $2 == "GOODSIG" || $2 == "EXPKEYSIG" || $2 == "REVKEYSIG" || $2 == "EXPSIG" || $2 == "BADSIG" || $2 == "ERRSIG" { st = $2; next }
    $2 == "VALIDSIG" { v = $3 " " $5 " " $7 " " $10 " " $11 " " $12; next }
    END { if (st != "") print st, v }' > "$GNUPGHOME/records" || true
  while read -r st fpr t ver hash class prim; do
    why=
    case $st in
      BADSIG) echo "$name: BAD signature: the manifest was changed after a trusted key signed it"; exit 2 ;;
      GOODSIG | EXPKEYSIG | REVKEYSIG) ;;
      EXPSIG) why="the signature itself expired" ;;
      ERRSIG) why="not checkable (unknown key or unsupported algorithm)" ;;
      *) why="no verdict from gpg" ;;
    esac
    if [ -z "$why" ]; then
      if [ "$ver" != 4 ]; then why="version $ver signature"
      elif [ "$class" != 00 ]; then why="class $class, not a binary document signature"
      else case $hash in 8 | 9 | 10 | 12 | 14) ;; *) why="digest algorithm $hash is weaker than SHA-256" ;; esac
      fi
    fi
    if [ -z "$why" ]; then
      if [ "$t" -lt $((sealed - skew)) ]; then why="made before the seal (back-dated)"
      elif [ "$t" -gt $((now + skew)) ]; then why="made after now"
      fi
    fi
    if [ -z "$why" ]; then
      facts=$(key_facts "$fpr" "$prim")
      # Hard revocations first: never counts.
      why=$(printf '%s\n' "$facts" | awk -v t="$t" '
        $1 == "rev" && $3 != "01" && $3 != "03" { print "key revoked (reason " $3 "): never counts"; exit }')
      [ -n "$why" ] || why=$(printf '%s\n' "$facts" | awk -v t="$t" '
        $1 == "rev" && t >= $2 { print "key retired or superseded before it signed"; exit }
        $1 == "exp" && t >= $2 { print "key expired before it signed"; exit }')
    fi
    if [ -z "$why" ] && [ -n "$pins" ]; then
      case " $pins " in *" $prim "*) ;; *) why="not among the --signer fingerprints" ;; esac
    fi
    if [ -n "$why" ]; then
      echo "$name: not counted ($why)"
    else
      echo "$name: counted $prim"
      case " $counted " in *" $prim "*) ;; *) counted="$counted $prim"; n=$((n + 1)) ;; esac
    fi
  done < "$GNUPGHOME/records"
done
if [ "$n" -ge "$m" ]; then
  echo "OK: $n distinct trusted certificate(s) counted, $m required"
  exit 0
fi
echo "FAIL: $n distinct trusted certificate(s) counted, $m required"
exit 1
