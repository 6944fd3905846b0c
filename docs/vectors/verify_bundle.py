#!/usr/bin/env python3
"""An independent bundle chain checker, written from docs/FORMAT.md alone
(python3 standard library, no appendlog code): reads a bundle directory or a
bundle archive (section 9.6: .tar, gzip or zstd compressed, recognised by
their first bytes), version 1 (`entries.jsonl`, 9.3) or version 2
(`entries.bin`, 9.7), in one streaming pass and in bounded memory, and
checks the chain (6.1, 6.2) and the manifest (8.5 canonical form, genesis,
M3-M8) against it.

Not done here: OpenPGP signatures (check them with gpg, 9.4: this program
says which signature files or members it found), the claim rules of 10.5
(E7 for `claim` entries) and the claims summary (M9).

Usage: verify_bundle.py BUNDLE
Prints one JSON line: {"ok": true, ...} or {"ok": false, "code": CODE,
"seq": N or null, "message": TEXT}, and exits with the code's exit status
(section 11), 0 when everything checked is intact.
"""
import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import zlib

GENESIS_PREFIX = b"appendlog/v1/genesis\x00"
ENTRY_PREFIX = b"appendlog/v1/entry\x00"
MAX_SAFE = 2**53 - 1
MAX_PAYLOAD = 16 * 1024 * 1024
MAX_EVENT = 65536
MAX_MANIFEST = 4 << 20
MAX_SIG = 64 * 1024
MAX_SIGS = 64
MAX_README = 64 * 1024
MAX_RECORD = -(-MAX_PAYLOAD * 4 // 3) + 4096
TAG = 8
KINDS = {"line": 0x01, "stdout": 0x02, "stderr": 0x03, "session-open": 0x10,
         "session-close": 0x11, "notice": 0x12, "seal": 0x20, "claim": 0x30}
LINE_KINDS = (0x01, 0x02, 0x03)
REASONS = ("eof", "error", "signal", "refused", "quota", "lost", "idle")
EXIT = {"MALFORMED_BUNDLE": 20, "MANIFEST_INVALID": 21, "MANIFEST_MISMATCH": 22,
        "CHAIN_HASH_MISMATCH": 10, "SEQ_OUT_OF_ORDER": 11, "CHAIN_TRUNCATED": 12,
        "HEAD_MISMATCH": 13, "ENTRY_AFTER_SEAL": 14, "BAD_ENTRY": 15}
SIG_NAME = re.compile(r"^signatures/[A-Za-z0-9_-][A-Za-z0-9._-]{0,59}\.asc$")


class Fail(Exception):
    def __init__(self, code, message, seq=None):
        super().__init__(message)
        self.code, self.seq = code, seq


def malformed(msg):
    raise Fail("MALFORMED_BUNDLE", msg)


def sha256(b):
    return hashlib.sha256(b).digest()


def u64(n):
    return n.to_bytes(8, "big")


# ---------------------------------------------------------------------------
# Byte sources: a file, decompressed on the fly, read in pieces.

class Source:
    def __init__(self, path):
        self.f = open(path, "rb")
        head = self.f.read(4)
        self.f.seek(0)
        self.proc = None
        self.z = None
        if head[:2] == b"\x1f\x8b":
            self.z = zlib.decompressobj(wbits=31)
        elif head == b"\x28\xb5\x2f\xfd":
            # Python 3.14 has compression.zstd; before that, the zstd program.
            try:
                from compression import zstd  # type: ignore
                self.z = zstd.ZstdDecompressor()
            except ImportError:
                self.proc = subprocess.Popen(["zstd", "-dcq", "--", path], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
        self.buf = b""
        self.eof = False

    def _more(self):
        if self.proc is not None:
            data = self.proc.stdout.read(1 << 20)
            if not data:
                if self.proc.wait() != 0:
                    malformed("archive: zstd data is damaged")
                self.eof = True
            return data
        data = self.f.read(1 << 20)
        if self.z is None:
            if not data:
                self.eof = True
            return data
        if not data:
            self.eof = True
            if isinstance(self.z, type(zlib.decompressobj())) and not self.z.eof:
                malformed("archive: gzip data is damaged (truncated)")
            return b""
        try:
            out = self.z.decompress(data)
            # Concatenated gzip members are one stream (RFC 1952).
            while isinstance(self.z, type(zlib.decompressobj())) and self.z.eof and self.z.unused_data:
                rest = self.z.unused_data
                self.z = zlib.decompressobj(wbits=31)
                out += self.z.decompress(rest)
            return out
        except Exception as e:  # zlib.error, zstd errors
            malformed("archive: compressed data is damaged: %s" % e)

    def read(self, n):
        """Up to n bytes (fewer only at the end)."""
        while len(self.buf) < n and not self.eof:
            self.buf += self._more()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_some(self, n):
        if not self.buf and not self.eof:
            self.buf = self._more()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


# ---------------------------------------------------------------------------
# The archive form (9.6)

def tar_number(h, off, length, what, base256):
    f = h[off:off + length]
    if f[0] & 0x80:
        if not base256 or f[0] != 0x80:
            malformed("archive: %s field is not a non-negative number" % what)
        return int.from_bytes(f[1:], "big")
    m = re.fullmatch(rb" *([0-7]+)[ \x00]*", f)
    if not m:
        malformed("archive: %s field is not an octal number" % what)
    return int(m.group(1), 8)


def cstr(b):
    z = b.find(b"\x00")
    return (b if z < 0 else b[:z]).decode("utf-8", "strict")


class Archive:
    """Reads headers and members by the rules of 9.6, in one pass."""

    def __init__(self, src):
        self.src = src
        self.left = 0
        self.pad = 0
        self.seen = set()
        self.stage = 0
        self.last_sig = ""
        self.sigs = 0

    def skip(self):
        while self.left:
            if not self.body(1 << 20):
                break

    def body(self, n):
        n = min(n, self.left)
        if n == 0:
            return b""
        d = self.src.read_some(n)
        if not d:
            malformed("archive: truncated inside a member")
        self.left -= len(d)
        if self.left == 0 and self.pad:
            if len(self.src.read(self.pad)) != self.pad:
                malformed("archive: truncated inside a member's padding")
            self.pad = 0
        return d

    def whole(self):
        parts = []
        while self.left:
            parts.append(self.body(1 << 20))
        return b"".join(parts)

    def next(self):
        self.skip()
        h = self.src.read(512)
        if len(h) == 0:
            malformed("archive: truncated: no end-of-archive marker")
        if len(h) < 512:
            malformed("archive: truncated inside a header")
        if h == bytes(512):
            h2 = self.src.read(512)
            if h2 != bytes(512):
                malformed("archive: a zero block that is not the end-of-archive marker")
            while True:
                d = self.src.read_some(1 << 20)
                if not d:
                    return None
                if d.strip(b"\x00"):
                    malformed("archive: data after the end-of-archive marker")
        total = sum(h[:148]) + 8 * 0x20 + sum(h[156:])
        if tar_number(h, 148, 8, "checksum", False) != total:
            malformed("archive: bad header checksum")
        if h[257:265] not in (b"ustar\x0000", b"ustar  \x00"):
            malformed("archive: not a ustar header")
        t = chr(h[156]) if h[156] else "0"
        prefix, base = cstr(h[345:500]), cstr(h[0:100])
        name = prefix + "/" + base if prefix else base
        size = tar_number(h, 124, 12, "size", True)
        self.left = size
        self.pad = (512 - size % 512) % 512
        return self.admit(name, size, t)

    def admit(self, name, size, t):
        shown = json.dumps(name)
        if t in "12":
            malformed("archive: member %s is a link" % shown)
        if t in "xgLK":
            malformed("archive: member %s is a pax or GNU extension header" % shown)
        if t != "0":
            malformed("archive: member %s is not a regular file" % shown)
        if name.startswith("/"):
            malformed("archive: member %s has an absolute path" % shown)
        if ".." in name.split("/"):
            malformed("archive: member %s has a \"..\" path component" % shown)
        if name in self.seen:
            malformed("archive: duplicate member %s" % shown)
        self.seen.add(name)
        if self.stage == 4:
            malformed("archive: member %s after the entries" % shown)
        if name == "manifest.json":
            role, stage, limit = "manifest", 1, MAX_MANIFEST
        elif SIG_NAME.match(name):
            role, stage, limit = "signature", 2, MAX_SIG
            if name <= self.last_sig:
                malformed("archive: signature member %s is not in name order" % shown)
            self.sigs += 1
            if self.sigs > MAX_SIGS:
                malformed("archive: more than %d signature members" % MAX_SIGS)
            self.last_sig = name
        elif name == "README.txt":
            role, stage, limit = "readme", 3, MAX_README
        elif name in ("entries.jsonl", "entries.bin"):
            role, stage, limit = "entries", 4, MAX_SAFE
        else:
            malformed("archive: member %s is outside the bundle layout" % shown)
        if self.stage == 0 and role != "manifest":
            malformed("archive: the first member is %s, not manifest.json" % shown)
        if stage < self.stage:
            malformed("archive: member %s is out of order" % shown)
        if size > limit:
            malformed("archive: member %s is %d bytes, over its limit of %d" % (shown, size, limit))
        self.stage = stage
        return role, name, size


def open_bundle(path):
    """-> (manifest bytes, signature names, version, reader(n) of the entries, finish())."""
    if os.path.isdir(path):
        mp = os.path.join(path, "manifest.json")
        if not os.path.isfile(mp) or os.path.getsize(mp) > MAX_MANIFEST:
            malformed("manifest.json is missing, not a regular file or too large")
        with open(mp, "rb") as f:
            manifest = f.read()
        sd = os.path.join(path, "signatures")
        sigs = sorted(n for n in os.listdir(sd) if n.endswith(".asc")) if os.path.isdir(sd) else []
        v1, v2 = (os.path.exists(os.path.join(path, n)) for n in ("entries.jsonl", "entries.bin"))
        if v1 == v2:
            malformed("a bundle holds exactly one of entries.bin and entries.jsonl")
        ep = os.path.join(path, "entries.bin" if v2 else "entries.jsonl")
        if not os.path.isfile(ep):
            malformed("%s is not a regular file" % os.path.basename(ep))
        f = open(ep, "rb")
        return manifest, ["signatures/" + n for n in sigs], 2 if v2 else 1, f.read, lambda: None
    arc = Archive(Source(path))
    manifest, sigs = None, []
    while True:
        m = arc.next()
        if m is None:
            malformed("archive: %s" % ("empty archive" if arc.stage == 0 else "no entries member"))
        role, name, size = m
        if role == "manifest":
            manifest = arc.whole()
        elif role == "signature":
            arc.whole()
            sigs.append(name)
        elif role == "readme":
            arc.whole()
        else:
            version = 2 if name == "entries.bin" else 1
            break

    def finish():
        after = arc.next()
        if after is not None:
            malformed("archive: a member after the entries")

    return manifest, sigs, version, arc.body, finish


# ---------------------------------------------------------------------------
# Version 1 records (9.3)

RECORD = re.compile(
    rb'\{"seq":(0|[1-9][0-9]*),"time":(0|[1-9][0-9]*),"session":(0|[1-9][0-9]*),'
    rb'"kind":"([a-z-]+)","flags":(0|[1-9][0-9]*),'
    rb'(?:"text":"((?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*)"|"base64":"([A-Za-z0-9+/]*={0,2})")'
    rb',"hash":"([0-9a-f]{64})"\}')


def parse_record(line, n):
    if len(line) > MAX_RECORD:
        malformed("entries.jsonl line %d: too long" % n)
    try:
        line.decode("utf-8", "strict")
    except UnicodeDecodeError:
        malformed("entries.jsonl line %d: not UTF-8" % n)
    m = RECORD.fullmatch(line)
    if not m or m.group(4).decode() not in KINDS:
        malformed("entries.jsonl line %d: not a record in the fixed layout" % n)
    seq, time, session, flags = (int(m.group(i)) for i in (1, 2, 3, 5))
    if not (1 <= seq <= MAX_SAFE and time <= MAX_SAFE and session <= 0xFFFFFFFF and flags <= 255):
        malformed("entries.jsonl line %d: a number out of range" % n)
    if m.group(6) is not None:
        s = json.loads(b'"' + m.group(6) + b'"')
        # json.loads joins escaped surrogate pairs; a lone surrogate is U+FFFD (9.3 rule 10).
        payload = "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in s).encode("utf-8")
    else:
        b = m.group(7)
        if len(b) % 4:
            malformed("entries.jsonl line %d: base64 is not canonical" % n)
        payload = base64.b64decode(b, validate=True)
        if base64.b64encode(payload) != b:
            malformed("entries.jsonl line %d: base64 is not canonical" % n)
    if len(payload) > MAX_PAYLOAD:
        malformed("entries.jsonl line %d: payload too large" % n)
    enc = u64(seq) + u64(time) + session.to_bytes(4, "big") + bytes([KINDS[m.group(4).decode()], flags]) + len(payload).to_bytes(4, "big") + payload
    return enc, bytes.fromhex(m.group(8).decode())


def v1_records(read):
    buf, pos, n = b"", 0, 0
    while True:
        d = read(1 << 20)
        if not d:
            break
        buf = buf[pos:] + d
        pos = 0
        while True:
            i = buf.find(b"\n", pos)
            if i < 0:
                if len(buf) - pos > MAX_RECORD:
                    malformed("entries.jsonl line %d: too long" % (n + 1))
                break
            line, pos = buf[pos:i], i + 1
            n += 1
            if not line:
                malformed("entries.jsonl line %d: empty line" % n)
            yield parse_record(line, n)
    if pos < len(buf):
        yield parse_record(buf[pos:], n + 1)


def v2_records(read, next_seq):
    buf, pos = b"", 0

    def fill(need):
        nonlocal buf, pos
        while len(buf) - pos < need:
            d = read(max(1 << 20, need - (len(buf) - pos)))
            if not d:
                return False
            buf = buf[pos:] + d
            pos = 0
        return True

    while True:
        if not fill(26):
            if len(buf) > pos:
                malformed("entries.bin ends inside the record of seq %d" % next_seq())
            return
        length = int.from_bytes(buf[pos + 22:pos + 26], "big")
        if length > MAX_PAYLOAD:
            raise Fail("BAD_ENTRY", "seq %d: payload length over the format limit" % next_seq(), next_seq())
        need = 26 + length + TAG
        if not fill(need):
            malformed("entries.bin ends inside the record of seq %d" % next_seq())
        yield buf[pos:pos + 26 + length], buf[pos + 26 + length:pos + need]
        pos += need


# ---------------------------------------------------------------------------
# The chain (6.1, 6.2) and the manifest (8.5, M3-M8)

def strict_json(b, code):
    def pairs(ps):
        d = {}
        for k, v in ps:
            if k in d:
                raise Fail(code, "duplicate key %s" % json.dumps(k))
            d[k] = v
        return d
    try:
        return json.loads(b.decode("utf-8"), object_pairs_hook=pairs)
    except Fail:
        raise
    except Exception as e:
        raise Fail(code, "not JSON: %s" % e)


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def verify(path):
    mbytes, sigs, version, read, finish = open_bundle(path)
    m = strict_json(mbytes, "MANIFEST_INVALID")
    if not isinstance(m, dict) or canonical(m) + b"\n" != mbytes or m.get("format") != "appendlog-seal/1":
        raise Fail("MANIFEST_INVALID", "manifest is not canonical JSON of format appendlog-seal/1")
    vm, name = m["vm"].encode(), m["name"].encode()
    h = sha256(GENESIS_PREFIX + b"\x01" + bytes([len(vm)]) + vm + bytes([len(name)]) + name + u64(m["created"]))
    if h.hex() != m["genesis"]:
        raise Fail("MANIFEST_MISMATCH", "genesis differs from the manifest's")
    st = {"n": 0, "opened": 0, "lines": 0, "bytes": 0, "closed": set(), "closes": {}, "seal": None}
    records = v2_records(read, lambda: st["n"] + 1) if version == 2 else v1_records(read)
    for enc, stored in records:
        n = st["n"] + 1
        seq = int.from_bytes(enc[0:8], "big")
        session = int.from_bytes(enc[16:20], "big")
        kind, flags, length = enc[20], enc[21], int.from_bytes(enc[22:26], "big")
        payload = enc[26:]
        new = sha256(ENTRY_PREFIX + h + enc)
        changed = new[:len(stored)] != stored
        try:
            if st["seal"] is not None:
                raise Fail("ENTRY_AFTER_SEAL", "seq %d follows the seal" % seq, seq)
            if seq != n:
                raise Fail("SEQ_OUT_OF_ORDER", "expected seq %d, found %d" % (n, seq), n)
            if kind not in KINDS.values() or len(payload) != length:
                raise Fail("BAD_ENTRY", "seq %d: unknown kind or bad length" % n, n)
            if kind in LINE_KINDS:
                if flags not in (0, 1, 2):
                    raise Fail("BAD_ENTRY", "seq %d: invalid flags" % n, n)
            elif flags != 0 or length > MAX_EVENT:
                raise Fail("BAD_ENTRY", "seq %d: event with flags or too large" % n, n)
            if kind == 0x10:
                if session != st["opened"] + 1:
                    raise Fail("BAD_ENTRY", "seq %d: wrong session opened" % n, n)
                st["opened"] += 1
            elif kind == 0x20:
                if session != 0:
                    raise Fail("BAD_ENTRY", "seq %d: seal inside a session" % n, n)
            elif not 1 <= session <= st["opened"] or session in st["closed"]:
                raise Fail("BAD_ENTRY", "seq %d: entry of a session not open" % n, n)
            if kind == 0x11:
                try:
                    reason = json.loads(payload.decode("utf-8")).get("reason")
                except Exception:
                    reason = None
                if reason not in REASONS:
                    raise Fail("BAD_ENTRY", "seq %d: close without a known reason" % n, n)
                st["closes"][reason] = st["closes"].get(reason, 0) + 1
                st["closed"].add(session)
        except Fail as f:
            if f.code == "BAD_ENTRY" and changed:
                raise Fail("CHAIN_HASH_MISMATCH", "seq %d: entry changed" % n, n)
            raise
        if changed:
            raise Fail("CHAIN_HASH_MISMATCH", "seq %d: entry hash does not match its content and predecessor" % n, n)
        if kind in LINE_KINDS:
            st["lines"] += 1
            st["bytes"] += length
        if kind == 0x20:
            st["seal"] = (seq, int.from_bytes(enc[8:16], "big"), payload)
        h = new
        st["n"] = n
    finish()
    n = st["n"]
    if n < m["entries"]:
        raise Fail("CHAIN_TRUNCATED", "chain ends at seq %d, the manifest says %d" % (n, m["entries"]), n + 1)
    if n > m["entries"]:
        raise Fail("HEAD_MISMATCH", "chain longer than the manifest says", m["entries"] + 1)
    if h.hex() != m["head"]:
        raise Fail("HEAD_MISMATCH", "head differs from the manifest's", n)
    seal = st["seal"]
    want = canonical({"prevSeal": m["prevSeal"], "sealIndex": m["sealIndex"], "sealed": m["sealed"]})
    if seal is None or seal[0] != n or seal[1] != m["sealed"] or seal[2] != want:
        raise Fail("MANIFEST_MISMATCH", "the last entry is not the seal the manifest describes")
    if (st["lines"], st["bytes"], st["opened"], st["closes"]) != (m["lines"], m["bytes"], m["sessions"], m["closes"]):
        raise Fail("MANIFEST_MISMATCH", "counts differ from the manifest's")
    return {"ok": True, "version": version, "entries": n, "head": h.hex(), "log": "%s/%s" % (m["vm"], m["name"]),
            "signatures": sigs, "signaturesChecked": False}


def main():
    if len(sys.argv) != 2:
        print(__doc__.strip().split("\n\n")[-2], file=sys.stderr)
        sys.exit(2)
    try:
        out = verify(sys.argv[1])
    except Fail as f:
        print(json.dumps({"ok": False, "code": f.code, "seq": f.seq, "message": str(f)}))
        sys.exit(EXIT[f.code])
    except (KeyError, TypeError, ValueError) as e:
        print(json.dumps({"ok": False, "code": "MANIFEST_INVALID", "seq": None, "message": "manifest field: %s" % e}))
        sys.exit(EXIT["MANIFEST_INVALID"])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
