#!/usr/bin/env python3
"""Generates docs/vectors/vectors.json: known-answer vectors for the appendlog
v1 record format, written from the format description alone (python3 stdlib,
no appendlog code), so the TypeScript implementation is checked against an
independent reading of the spec rather than against itself.

Format (all integers big-endian):
  genesis  = "appendlog/v1/genesis" 0x00 || u8 version (1) || u8 len(vm) || vm
             || u8 len(name) || name || u64 created (ms since the Unix epoch)
  H0       = SHA-256(genesis)
  entry    = u64 seq || u64 time || u32 session || u8 kind || u8 flags
             || u32 len(payload) || payload                (26-byte header)
  Hn       = SHA-256("appendlog/v1/entry" 0x00 || Hn-1 || entry n)
Line scanner: split on 0x0a only; the payload excludes the newline; a final
line without newline gets NOEOL; a line longer than maxLine is cut into chunks
of exactly maxLine bytes flagged CONT, a chunk being cut only once a further
byte of the line is known to exist.

Also, from docs/FORMAT.md alone: the name rules (1.4, with re.fullmatch, since
Python's "$" matches before a final newline), strict JSON reading (5.1, json.loads
with hooks for repeated members, NaN/Infinity, fractions, integer range, and a
depth check before it recurses), claims (10.5, with UTF-16 lengths and a
canonical encoder that escapes lone surrogates, which json.dumps cannot encode),
close reasons (3.5) and the claims summary with its 2 MiB budget (8.4).

Run: python3 docs/vectors/gen_vectors.py   (rewrites vectors.json next to it)
The output is deterministic: re-running must not change the file.
"""
import hashlib
import json
import os

GENESIS_PREFIX = b"appendlog/v1/genesis\x00"
ENTRY_PREFIX = b"appendlog/v1/entry\x00"
FORMAT_VERSION = 1

LINE, STDOUT, STDERR = 0x01, 0x02, 0x03
SESSION_OPEN, SESSION_CLOSE, NOTICE = 0x10, 0x11, 0x12
SEAL, CLAIM = 0x20, 0x30
CONT, NOEOL = 0x01, 0x02

MAX_SAFE = 2**53 - 1


def u8(n):
    assert 0 <= n <= 0xFF
    return bytes([n])


def u32(n):
    assert 0 <= n <= 0xFFFFFFFF
    return n.to_bytes(4, "big")


def u64(n):
    assert 0 <= n <= MAX_SAFE, "the format limits u64 fields to 2^53 - 1"
    return n.to_bytes(8, "big")


def sha256(data):
    return hashlib.sha256(data).digest()


def encode_genesis(vm, name, created):
    vmb = vm.encode("utf-8")
    nameb = name.encode("utf-8")
    return (GENESIS_PREFIX + u8(FORMAT_VERSION) + u8(len(vmb)) + vmb
            + u8(len(nameb)) + nameb + u64(created))


def encode_entry(seq, time, session, kind, flags, payload):
    out = u64(seq) + u64(time) + u32(session) + u8(kind) + u8(flags) + u32(len(payload)) + payload
    assert len(out) == 26 + len(payload)
    return out


def entry_hash(prev, encoded):
    assert len(prev) == 32
    return sha256(ENTRY_PREFIX + prev + encoded)


def canonical_str(v):
    """A JSON string as section 5 writes it (ECMAScript JSON.stringify). Written out by
    hand: json.dumps(ensure_ascii=False) leaves a lone surrogate raw, and encoding
    that to UTF-8 then fails (a hostile sender can put one in a claim)."""
    out = ['"']
    for ch in v:
        c = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == '\\':
            out.append('\\\\')
        elif c in SHORT_ESCAPES:
            out.append(SHORT_ESCAPES[c])
        elif c < 0x20 or 0xD800 <= c <= 0xDFFF:
            out.append('\\u%04x' % c)
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


SHORT_ESCAPES = {0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r"}


def utf16_key(k):
    # Keys sort by UTF-16 code units (section 5); big-endian UTF-16 bytes sort the same way.
    return k.encode("utf-16-be", "surrogatepass")


def canonical_text(v):
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if type(v) is int:  # not isinstance: bool is an int in Python
        assert -MAX_SAFE <= v <= MAX_SAFE
        return str(v)
    if isinstance(v, str):
        return canonical_str(v)
    if isinstance(v, list):
        return "[" + ",".join(canonical_text(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ",".join(canonical_str(k) + ":" + canonical_text(v[k]) for k in sorted(v, key=utf16_key)) + "}"
    raise TypeError("no canonical encoding for %r" % (v,))


def canonical(obj):
    """Canonical JSON (section 5) as UTF-8 bytes. Lone surrogates are escaped, so the
    text is always encodable."""
    return canonical_text(obj).encode("utf-8")


def scan(data, max_line):
    """Reference line scanner over the whole input at once (no streaming)."""
    out = []

    def chunks(line, terminated):
        while len(line) > max_line:
            out.append((line[:max_line], CONT))
            line = line[max_line:]
        out.append((line, 0 if terminated else NOEOL))

    parts = data.split(b"\n")
    rest = parts.pop()  # bytes after the last newline (all of it if none)
    for p in parts:
        chunks(p, True)
    if rest:
        chunks(rest, False)
    return out


def hx(b):
    return b.hex()


# ---------------------------------------------------------------- genesis

GENESIS_CASES = [
    ("typical log identity", "work", "build-1", 1700000000000),
    ("created = 0 (u64 all zero)", "work", "build-1", 0),
    ("created = 2^53 - 1, the largest value the format allows", "work", "build-1", MAX_SAFE),
    ("created = 2^32: the high 32-bit word is 1, the low word 0", "work", "x", 2**32),
    ("created = 2^32 - 1: the high word is 0, the low word all ones", "work", "x", 2**32 - 1),
    ("shortest names: one-byte vm and name", "a", "0", 1),
    ("longest valid names: 31-byte vm, 64-byte log name", "v" + "m" * 30, "n" * 64, 1700000000000),
    ("name with dots, dashes and underscores", "sys-build", "release-1.2_x", 1712345678901),
    ("identity lengths are UTF-8 byte counts, not characters "
     "(the encoding layer does not validate names; 'ünï' is 3 characters, 5 bytes)",
     "work", "\u00fcn\u00ef", 1700000000000),
    ("vm and name are length-prefixed: 'ab'+'c' must differ from 'a'+'bc'", "ab", "c", 1700000000000),
    ("vm and name are length-prefixed: 'a'+'bc' must differ from 'ab'+'c'", "a", "bc", 1700000000000),
]

genesis = []
for comment, vm, name, created in GENESIS_CASES:
    enc = encode_genesis(vm, name, created)
    genesis.append({
        "comment": comment, "vm": vm, "name": name, "created": created,
        "encoding_hex": hx(enc), "hash_hex": hx(sha256(enc)),
    })

# ---------------------------------------------------------------- entries

OPEN_PAYLOAD = canonical({"argument": "b1", "mode": "raw", "pid": 123, "session": 1, "vm": "work"})
CLOSE_PAYLOAD = canonical({"bytes": 25, "lines": 4, "reason": "eof", "session": 1})
T = 1700000000123

ENTRY_CASES = [
    ("plain line", 1, T, 1, LINE, 0, b"hello world"),
    ("empty line: length 0, header only", 2, T, 1, LINE, 0, b""),
    ("NUL bytes are payload, not terminators", 3, T, 1, LINE, 0, b"a\x00b\x00"),
    ("carriage return kept byte for byte (CRLF input)", 4, T, 1, LINE, 0, b"dos line\r"),
    ("invalid UTF-8 (0xff, 0xfe, lone continuation 0x80) kept as is", 5, T, 1, LINE, 0, b"\xff\xfe\x80bad"),
    ("terminal escape sequences: CSI colour, OSC title, C1 CSI 0xc2 0x9b", 6, T, 1, LINE, 0,
     b"\x1b[31mred\x1b[0m \x1b]0;pwned\x07 \xc2\x9b2J"),
    ("CONT chunk of a long line", 7, T, 1, LINE, CONT, b"0123456789abcdef"),
    ("NOEOL: last line without a newline", 8, T, 1, LINE, NOEOL, b"tail"),
    ("stdout kind", 9, T, 2, STDOUT, 0, b"compiling"),
    ("stderr kind", 10, T, 2, STDERR, 0, b"warning: x"),
    ("session-open event with canonical JSON payload", 11, T, 1, SESSION_OPEN, 0, OPEN_PAYLOAD),
    ("session-close event with canonical JSON payload", 12, T, 1, SESSION_CLOSE, 0, CLOSE_PAYLOAD),
    ("notice event", 13, T, 1, NOTICE, 0, canonical({"notice": "quota", "session": 1})),
    ("claim made by the sender (exit status)", 14, T, 2, CLAIM, 0, canonical({"claim": "exit", "code": 0, "signal": None})),
    ("seal entry: kind 0x20, session 0", 15, T + 1, 0, SEAL, 0, canonical({"manifest": "m1"})),
    ("seq and time at 2^53 - 1, the largest values the format allows", MAX_SAFE, MAX_SAFE, 1, LINE, 0, b"x"),
    ("time 0 (the epoch)", 1, 0, 1, LINE, 0, b"epoch"),
    ("seq 2^32 and time 2^32 - 1: u64 high/low word boundary", 2**32, 2**32 - 1, 1, LINE, 0, b"w"),
    ("session 2^32 - 1, the largest u32", 1, T, 0xFFFFFFFF, LINE, 0, b"s"),
    ("payload of 300 bytes: every byte value 0..255 then 44 more; length needs two bytes",
     42, T, 7, LINE, 0, bytes(range(256)) + bytes(range(44))),
]

entries = []
for comment, seq, time, session, kind, flags, payload in ENTRY_CASES:
    entries.append({
        "comment": comment, "seq": seq, "time": time, "session": session, "kind": kind,
        "flags": flags, "payload_hex": hx(payload),
        "encoding_hex": hx(encode_entry(seq, time, session, kind, flags, payload)),
    })

# ---------------------------------------------------------------- chains


def chain(comment, vm, name, created, items):
    """items: (time, session, kind, flags, payload); seqs are assigned from 1."""
    h = sha256(encode_genesis(vm, name, created))
    rows, hashes = [], []
    for i, (time, session, kind, flags, payload) in enumerate(items):
        seq = i + 1
        h = entry_hash(h, encode_entry(seq, time, session, kind, flags, payload))
        rows.append({"seq": seq, "time": time, "session": session, "kind": kind,
                     "flags": flags, "payload_hex": hx(payload)})
        hashes.append(hx(h))
    return {"comment": comment, "vm": vm, "name": name, "created": created,
            "entries": rows, "hashes_hex": hashes, "head_hex": hx(h)}


def session_lines(data, max_line, time, session):
    return [(time, session, LINE, flags, p) for p, flags in scan(data, max_line)]


def close_payload(reason, session, lines):
    return canonical({"bytes": sum(len(p) for _, _, _, _, p in lines), "lines": len(lines),
                      "reason": reason, "session": session})


C0 = 1700000000000
s1 = session_lines(b"first\nsecond line\r\n\nlast-without-newline", 64, C0 + 10, 1)
chain1 = [(C0 + 5, 1, SESSION_OPEN, 0,
           canonical({"argument": "build-1", "mode": "raw", "pid": 4242, "session": 1, "vm": "work"}))]
chain1 += s1
chain1 += [(C0 + 20, 1, SESSION_CLOSE, 0, close_payload("eof", 1, s1))]

s2a = session_lines(b"\x1b[2J\x1b]0;owned\x07\nNUL\x00here\n\xff\xfe not utf-8\nabcdefghij\n", 4, C0 + 100, 1)
s2b = session_lines(b"second session\nno newline at end", 8, C0 + 200, 2)
chain2 = [(C0 + 99, 1, SESSION_OPEN, 0,
           canonical({"argument": "ci", "mode": "raw", "pid": 1, "session": 1, "vm": "sys-build"}))]
chain2 += s2a
chain2 += [(C0 + 150, 1, SESSION_CLOSE, 0, close_payload("error", 1, s2a))]
chain2 += [(C0 + 199, 2, SESSION_OPEN, 0,
            canonical({"argument": "ci", "mode": "raw", "pid": 2, "session": 2, "vm": "sys-build"}))]
chain2 += s2b
chain2 += [(C0 + 201, 2, NOTICE, 0, canonical({"notice": "quota", "session": 2}))]
chain2 += [(C0 + 202, 2, CLAIM, 0, canonical({"claim": "exit", "code": None, "signal": "SIGTERM"}))]
chain2 += [(C0 + 250, 2, SESSION_CLOSE, 0, close_payload("signal", 2, s2b))]
chain2 += [(C0 + 300, 0, SEAL, 0, canonical({"manifest": "opaque to the chain layer"}))]

chains = [
    chain("no entries: the head is H0, the genesis hash", "work", "empty", C0, []),
    chain("one raw session: open, lines (CRLF kept, empty line, NOEOL tail), close eof",
          "work", "build-1", C0, chain1),
    chain("two sessions with hostile bytes and CONT chunks (maxLine 4 / 8), a notice, an exit claim, "
          "closes 'error' and 'signal', then a seal with session 0",
          "sys-build", "release-1.2_x", C0, chain2),
    chain("a single seal entry directly after genesis", "a", "0", 0,
          [(0, 0, SEAL, 0, canonical({"manifest": "empty log"}))]),
]

# ---------------------------------------------------------------- scanner

SCANNER_CASES = [
    ("empty input: no entries", 4, b""),
    ("a lone newline: one empty line", 4, b"\n"),
    ("three newlines: three empty lines", 4, b"\n\n\n"),
    ("final line without newline gets NOEOL", 4, b"a\nb"),
    ("only 0x0a splits: CR, NUL, 0xff, ESC stay inside the payload", 16,
     b"a\rb\x00c\xff\x1b[0m\r\n\r"),
    ("a line of maxLine - 1 bytes", 4, b"abc\n"),
    ("a line of exactly maxLine bytes then newline: one entry, flags 0", 4, b"abcd\n"),
    ("a line of maxLine + 1 bytes: one CONT chunk and a 1-byte rest", 4, b"abcde\n"),
    ("a line of 2 * maxLine bytes then newline: CONT chunk and a full final chunk, "
     "no empty trailing entry", 4, b"abcdefgh\n"),
    ("exactly maxLine bytes then EOF: one entry with NOEOL, no CONT", 4, b"abcd"),
    ("2 * maxLine bytes then EOF: CONT chunk then a NOEOL chunk", 4, b"abcdefgh"),
    ("maxLine + 1 bytes then EOF", 4, b"abcde"),
    ("maxLine = 1: every byte its own chunk", 1, b"ab\n\nc"),
    ("a full line followed by a NOEOL line of exactly maxLine", 4, b"abcd\nefgh"),
    ("bare CR only, no newline", 4, b"\r"),
    ("CRLF ending: the CR is payload, so 9 letters + CR (3 * maxLine + 1 bytes) need a fourth chunk", 3,
     b"abcdefghi\r\n"),
    ("cuts are byte-exact, not UTF-8 aware: 'ab' + 'é' (0xc3 0xa9) is split inside the character", 3,
     "ab\u00e9\n".encode("utf-8")),
]

scanner = []
for comment, max_line, data in SCANNER_CASES:
    scanner.append({
        "comment": comment, "maxLine": max_line, "input_hex": hx(data),
        "lines": [{"payload_hex": hx(p), "flags": f} for p, f in scan(data, max_line)],
    })

# ---------------------------------------------------------------- names (FORMAT.md 1.4)

import re

# re.fullmatch, not re.match with "$": Python's "$" also matches before a final
# "\n", so "build-1\n" would pass (FORMAT.md 5.2). ASCII only.
LOG_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+-]{0,63}", re.ASCII)          # a new log (1.4: `_` reserved)
STORED_LOG_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}", re.ASCII)  # read from a manifest or store
VM_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,30}", re.ASCII)

NAME_CASES = [
    ("log", "build-1", "a typical log name"),
    ("log", "build-1\n", "a trailing newline: refused (Python's re.match with $ would accept it)"),
    ("log", "\nbuild-1", "a leading newline: refused"),
    ("log", "n" * 64, "64 characters, the longest"),
    ("log", "n" * 65, "65 characters: refused"),
    ("log", "0", "one digit: allowed (first character alphanumeric)"),
    ("log", "-h", "looks like an option: refused"),
    ("log", ".", "a path component: refused"),
    ("log", "a/b", "a slash: refused"),
    ("log", "_framed.x", "the framed-mode prefix: refused (10.1)"),
    ("log", "release-1.2+x", "dots, dashes and + after the first character"),
    ("log", "release-1.2_x", "an underscore: reserved for new logs (dom0 rewrites other bytes to _)"),
    ("log-stored", "release-1.2_x", "an underscore: accepted when read from a manifest or store"),
    ("log-stored", "buildlog.log_2026-12-01_21-09-53", "a name the log VM makes itself"),
    ("log-stored", "x\n", "a trailing newline: refused here too"),
    ("log", "caf\u00e9", "non-ASCII: refused"),
    ("log", "a b", "a space: refused"),
    ("log", "", "empty: refused"),
    ("vm", "work", "a typical VM name"),
    ("vm", "work\n", "a trailing newline: refused"),
    ("vm", "sys-net.2_x", "letters, digits, _ . - after a first letter"),
    ("vm", "1work", "first character a digit: refused"),
    ("vm", "v" * 31, "31 characters, the longest"),
    ("vm", "v" * 32, "32 characters: refused"),
]

NAME_RULES = {"log": LOG_NAME, "log-stored": STORED_LOG_NAME, "vm": VM_NAME}
names = [{"comment": c, "kind": k, "name": n, "valid": bool(NAME_RULES[k].fullmatch(n))} for k, n, c in NAME_CASES]

# ---------------------------------------------------------------- strict JSON (FORMAT.md 5.1)

MAX_JSON_DEPTH = 32


class Refused(Exception):
    pass


def json_depth_ok(text):
    """Nesting depth outside strings, checked before json.loads recurses (5.2)."""
    depth, in_str, esc = 0, False, False
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return False
        elif ch in "]}":
            depth -= 1
    return True


def strict_json(data):
    """FORMAT.md 5.1 with the standard library: strict UTF-8, no repeated member,
    integers only within 2^53 - 1, no NaN/Infinity, depth <= 32."""
    try:
        text = data.decode("utf-8")  # not utf-8-sig: a BOM stays and is a syntax error
    except UnicodeDecodeError:
        raise Refused("not UTF-8")
    if not json_depth_ok(text):
        raise Refused("nesting deeper than %d" % MAX_JSON_DEPTH)

    def pairs(items):
        seen = set()
        for k, _ in items:
            if k in seen:
                raise Refused("repeated member")
            seen.add(k)
        return dict(items)

    def no_float(tok):
        raise Refused("fraction or exponent")

    def int_in_range(tok):
        v = int(tok)
        if not -MAX_SAFE <= v <= MAX_SAFE:
            raise Refused("integer out of range")
        return v

    def no_constant(tok):
        raise Refused(tok)

    try:
        return json.loads(text, object_pairs_hook=pairs, parse_float=no_float, parse_int=int_in_range,
                          parse_constant=no_constant)
    except ValueError as e:  # JSONDecodeError
        raise Refused(str(e))


def accepts(f, data):
    try:
        f(data)
        return True
    except Refused:
        return False


JSON_CASES = [
    (b'{"a":1,"b":[true,false,null],"c":"x"}', "plain object"),
    (b' {"a" : 1}\r\n', "JSON whitespace around tokens"),
    (b'{"reason":"eof","reason":"lost"}', "a repeated member: refused (JSON.parse keeps the last, others the first)"),
    (b'{"a":1,"\\u0061":2}', "a repeated member spelled with an escape: refused"),
    (b'{"a":{"a":1}}', "the same name in nested objects is fine"),
    (b'NaN', "NaN is not JSON"),
    (b'{"code":Infinity}', "Infinity is not JSON"),
    (b'[-Infinity]', "-Infinity is not JSON"),
    (b'\xef\xbb\xbf{}', "a UTF-8 BOM before the value: refused"),
    (b'[' * 32 + b']' * 32, "32 nested arrays: the limit"),
    (b'[' * 33 + b']' * 33, "33 nested arrays: refused"),
    (b'[' * 10000, "10000 nested arrays: refused before recursing (json.loads alone raises RecursionError)"),
    (b'1.0', "a fraction: refused (integers only)"),
    (b'1e3', "an exponent: refused"),
    (b'9007199254740991', "2^53 - 1: the largest integer"),
    (b'9007199254740992', "2^53: refused"),
    (b'-9007199254740991', "-(2^53 - 1): the smallest integer"),
    (b'-9007199254740992', "-2^53: refused"),
    (b'-0', "-0 reads as 0"),
    (b'01', "a leading zero: refused"),
    (b'"\\ud800"', "a lone surrogate escape is valid JSON"),
    (b'"\xed\xa0\x80"', "an encoded surrogate (ED A0 80) is not UTF-8: refused"),
    (b'"\xff"', "invalid UTF-8: refused"),
    (b'"a\nb"', "a raw newline inside a string: refused"),
    (b'[1,]', "a trailing comma: refused"),
    (b'{"a":1}{"a":1}', "two values: refused"),
]

json_vectors = [{"comment": c, "bytes_hex": hx(b), "valid": accepts(strict_json, b)} for b, c in JSON_CASES]

# ---------------------------------------------------------------- claims (FORMAT.md 10.5)

HEX64_RE = re.compile(r"[0-9a-f]{64}")
SIGNAL_RE = re.compile(r"SIG[A-Z0-9]{1,12}")
FRAME_PROTOCOL = "appendlog-frames/1"


def units(s):
    """Length in UTF-16 code units, as the spec counts (JavaScript's String.length)."""
    return len(s.encode("utf-16-le", "surrogatepass")) // 2


def is_int(v):
    return type(v) is int  # bool is an int in Python: True must not pass as 1


def parse_claim(data):
    v = strict_json(data)
    if not isinstance(v, dict):
        raise Refused("not an object")
    keys = sorted(v)
    kind = v.get("claim")
    if kind == "hello":
        if keys != ["claim", "command", "hostname", "protocol", "sender"] or v["protocol"] != FRAME_PROTOCOL:
            raise Refused("hello")
        if not (isinstance(v["sender"], str) and units(v["sender"]) <= 64 and isinstance(v["hostname"], str)
                and units(v["hostname"]) <= 255 and isinstance(v["command"], list) and len(v["command"]) <= 4096
                and all(isinstance(a, str) and units(a) <= 16384 for a in v["command"])):
            raise Refused("hello fields")
    elif kind in ("input", "artifact"):
        if keys != ["claim", "path", "sha256", "size"]:
            raise Refused("file members")
        if not (isinstance(v["path"], str) and 0 < units(v["path"]) <= 1024 and isinstance(v["sha256"], str)
                and HEX64_RE.fullmatch(v["sha256"]) and is_int(v["size"]) and 0 <= v["size"] <= MAX_SAFE):
            raise Refused("file fields")
    elif kind == "exit":
        if keys != ["claim", "code", "signal"]:
            raise Refused("exit members")
        if not (v["code"] is None or (is_int(v["code"]) and -2**31 <= v["code"] <= 2**31 - 1)):
            raise Refused("exit code")
        if not (v["signal"] is None or (isinstance(v["signal"], str) and SIGNAL_RE.fullmatch(v["signal"]))):
            raise Refused("exit signal")
    else:
        raise Refused("unknown claim")
    if canonical(v) != data:
        raise Refused("not canonical")
    return v


SHA_E = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def file_claim(kind, path, size=0, sha=SHA_E):
    return canonical({"claim": kind, "path": path, "sha256": sha, "size": size})


CLAIM_CASES = [
    (file_claim("input", "Makefile"), "a canonical input claim"),
    (file_claim("input", "\ud800x"), "a path with a lone surrogate, escaped lowercase: valid "
     "(json.dumps(ensure_ascii=False) cannot encode it; canonical() escapes it)"),
    (b'{"claim":"input","path":"\\uD800x","sha256":"' + SHA_E.encode() + b'","size":0}',
     "the same with an upper-case escape: not canonical, refused"),
    (b'{"claim":"input","path":"\xed\xa0\x80x","sha256":"' + SHA_E.encode() + b'","size":0}',
     "the surrogate as raw bytes ED A0 80: not UTF-8, refused"),
    (file_claim("input", "\U0001F600" * 512), "512 emoji = 1024 UTF-16 units: the longest path"),
    (file_claim("input", "a" + "\U0001F600" * 512), "1025 UTF-16 units (513 code points): refused"),
    (file_claim("input", "a", size=MAX_SAFE), "size 2^53 - 1"),
    (b'{"claim":"input","path":"a","sha256":"' + SHA_E.encode() + b'","size":9007199254740992}', "size 2^53: refused"),
    (b'{"claim":"input","path":"a","sha256":"' + SHA_E.encode() + b'","size":-1}', "size -1: refused"),
    (b'{"claim":"input","path":"a","sha256":"' + SHA_E.encode() + b'","size":true}', "size true: refused (bool is not an integer)"),
    (b'{"claim":"input","path":"a","sha256":"' + SHA_E.encode() + b'","size":1.0}', "size 1.0: refused"),
    (b'{"claim":"input","path":"a","path":"a","sha256":"' + SHA_E.encode() + b'","size":0}', "a repeated member: refused"),
    (b'\xef\xbb\xbf' + file_claim("input", "a"), "a BOM before the claim: refused"),
    (b'{"path":"a","claim":"input","sha256":"' + SHA_E.encode() + b'","size":0}', "members out of order: not canonical, refused"),
    (canonical({"claim": "exit", "code": 2**31 - 1, "signal": None}), "exit code 2^31 - 1"),
    (canonical({"claim": "exit", "code": -2**31, "signal": None}), "exit code -2^31"),
    (canonical({"claim": "exit", "code": 2**31, "signal": None}), "exit code 2^31: refused"),
    (canonical({"claim": "exit", "code": None, "signal": "SIGKILL"}), "killed by a signal"),
    (canonical({"claim": "exit", "code": None, "signal": "SIGKILL\n"}), "a signal name with a trailing newline: refused"),
    (canonical({"claim": "hello", "command": ["make", "\u001b[2J"], "hostname": "b", "protocol": FRAME_PROTOCOL,
                "sender": "logsend/0.1.0"}), "a hello claim; control characters in the command are escaped"),
]

claims_vectors = [{"comment": c, "bytes_hex": hx(b), "valid": accepts(parse_claim, b)} for b, c in CLAIM_CASES]

# ---------------------------------------------------------------- close payloads (E7, 3.5)

CLOSE_REASONS = ("eof", "error", "signal", "refused", "quota", "lost")


def parse_close(data):
    v = strict_json(data)
    if not isinstance(v, dict) or not isinstance(v.get("reason"), str) or v["reason"] not in CLOSE_REASONS:
        raise Refused("reason")
    return v


CLOSE_CASES = [(close_payload(r, 1, []), "reason %s: in the closed set" % r) for r in CLOSE_REASONS] + [
    (canonical({"bytes": 0, "lines": 0, "reason": "sealed", "session": 1}), "reason sealed: not in the closed set (3.5)"),
    (canonical({"bytes": 0, "lines": 0, "session": 1}), "no reason"),
    (b'{"reason":"eof","reason":"eof","session":1}', "a repeated member, even with equal values: refused"),
    (b'{"session":1,"reason":"eof"}', "not canonical: still valid (canonical form is not required for a close)"),
    (b'{"reason":"eof","detail":"\xff"}', "invalid UTF-8 in the detail: refused"),
    (b'{"reason":"eof","x":' + b'[' * 32 + b']' * 32 + b'}', "33 levels of nesting: refused"),
    (b'{"reason":"eof","lines":1e0}', "a number with an exponent: refused"),
]

closes = [{"comment": c, "payload_hex": hx(b), "valid": accepts(parse_close, b)} for b, c in CLOSE_CASES]

# ---------------------------------------------------------------- claims summary (FORMAT.md 8.4)

MAX_SUMMARY_FILES = 1000
MAX_SUMMARY_FILE_BYTES = 2 * 1024 * 1024


def summarize(claims):
    """The summary of 8.4 for hello/input/artifact/exit claims, budget exactly as written."""
    if not claims:
        return None
    lists = {"input": [], "artifact": []}
    omitted = {"input": 0, "artifact": 0}
    budget = 0
    hello = exit_ = None
    for c in claims:
        if c["claim"] == "hello":
            hello = c
        elif c["claim"] == "exit":
            exit_ = c
        else:
            f = {"path": c["path"], "sha256": c["sha256"], "size": c["size"]}
            cost = len(canonical(f)) + 1
            if len(lists[c["claim"]]) >= MAX_SUMMARY_FILES or budget + cost > MAX_SUMMARY_FILE_BYTES:
                omitted[c["claim"]] += 1  # and go on: a later, smaller file may fit
            else:
                lists[c["claim"]].append(f)
                budget += cost
    out = {"inputs": lists["input"], "artifacts": lists["artifact"]}
    if omitted["input"] + omitted["artifact"] > 0:
        out["omitted"] = {"artifacts": omitted["artifact"], "inputs": omitted["input"]}
    if exit_ is not None:
        out["exit"] = {"code": exit_["code"], "signal": exit_["signal"]}
    if hello is not None:
        out["hostname"] = hello["hostname"]
        out["command"] = hello["command"]
    return out


def expand(groups):
    """Groups {"claim", "count", "path_prefix", "path_fill", "path_fill_len"} or a literal claim."""
    out = []
    for g in groups:
        if "count" not in g:
            out.append(g)
            continue
        for i in range(g["count"]):
            path = g["path_prefix"] + "%05d" % i + g.get("path_fill", "") * g.get("path_fill_len", 0)
            out.append({"claim": g["claim"], "path": path, "sha256": SHA_E, "size": i})
    return out


HELLO1 = {"claim": "hello", "command": ["make"], "hostname": "b1", "protocol": FRAME_PROTOCOL, "sender": "logsend/0.1.0"}
HELLO2 = {"claim": "hello", "command": ["make", "all"], "hostname": "b2", "protocol": FRAME_PROTOCOL, "sender": "logsend/0.1.0"}

SUMMARY_CASES = [
    ("no claims: no summary", []),
    ("the last hello and the last exit win; files in seq order", [
        HELLO1, {"claim": "input", "path": "Makefile", "sha256": SHA_E, "size": 0},
        {"claim": "exit", "code": 1, "signal": None}, HELLO2,
        {"claim": "artifact", "path": "a.out", "sha256": SHA_E, "size": 7},
        {"claim": "input", "path": "Makefile", "sha256": SHA_E, "size": 0},
        {"claim": "exit", "code": None, "signal": "SIGTERM"}]),
    ("1001 inputs: the 1001st is omitted by the count limit", [
        {"claim": "input", "count": 1001, "path_prefix": "src/f"}]),
    ("the 2 MiB budget: 400 inputs whose paths are 1000 control characters (6 bytes each in canonical JSON) "
     "exhaust it; a small input and a small artifact after them still fit and are listed (the fold goes on)", [
        {"claim": "input", "count": 400, "path_prefix": "big", "path_fill": "\u0001", "path_fill_len": 1000},
        {"claim": "input", "path": "small", "sha256": SHA_E, "size": 1},
        {"claim": "artifact", "path": "out", "sha256": SHA_E, "size": 2},
        {"claim": "artifact", "count": 3, "path_prefix": "bigout", "path_fill": "\u0001", "path_fill_len": 1000}]),
]

summaries = []
for comment, groups in SUMMARY_CASES:
    claims_list = expand(groups)
    summ = summarize(claims_list)
    entry = {"comment": comment, "claims": groups, "summary_present": summ is not None}
    if summ is not None:
        text = canonical(summ)
        entry.update({"summary_sha256": hashlib.sha256(text).hexdigest(), "inputs_listed": len(summ["inputs"]),
                      "artifacts_listed": len(summ["artifacts"]), "omitted": summ.get("omitted")})
        if len(text) < 2000:
            entry["summary"] = text.decode("utf-8")
    summaries.append(entry)

# ---------------------------------------------------------------- entries.jsonl records are exactly JSON (9.3, 5.1)

# Every record the fixed-layout reader accepts must also be read by Python's
# json (and so by jq) to the same values; checked here for records with
# escapes, a lone surrogate and a BOM in the payload.
for rec in [
    '{"seq":1,"time":0,"session":1,"kind":"line","flags":0,"text":"a\\u001b[0m\\ud800\\"\\\\","hash":"' + "0" * 64 + '"}',
    '{"seq":2,"time":1,"session":1,"kind":"line","flags":0,"text":"\ufeffx","hash":"' + "0" * 64 + '"}',
    '{"seq":3,"time":2,"session":1,"kind":"line","flags":0,"base64":"/w==","hash":"' + "0" * 64 + '"}',
]:
    strict_json(rec.encode("utf-8"))

doc = {
    "comment": "appendlog v1 known-answer vectors, generated by docs/vectors/gen_vectors.py "
               "(python3 stdlib only, independent of the TypeScript code). Integers big-endian; "
               "hashes SHA-256 with the prefixes 'appendlog/v1/genesis\\0' and 'appendlog/v1/entry\\0'. "
               "Chains number entries from seq 1; hashes_hex[i] is the hash of entries[i].",
    "genesis": genesis,
    "entries": entries,
    "chains": chains,
    "scanner": scanner,
    "names": names,
    "json": json_vectors,
    "claims": claims_vectors,
    "closes": closes,
    "summaries": summaries,
}

path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vectors.json")
with open(path, "w", encoding="utf-8") as f:
    json.dump(doc, f, indent=2, ensure_ascii=False)
    f.write("\n")
print("wrote %s: %d genesis, %d entries, %d chains, %d scanner, %d names, %d json, %d claims, %d closes, %d summaries"
      % (path, len(genesis), len(entries), len(chains), len(scanner), len(names), len(json_vectors),
         len(claims_vectors), len(closes), len(summaries)))
