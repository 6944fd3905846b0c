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


def canonical(obj):
    """Canonical JSON: sorted keys, no whitespace, integers only (ASCII keys here,
    so code-point order equals the UTF-16 order the spec asks for)."""
    def check(v):
        if isinstance(v, bool) or v is None or isinstance(v, str):
            return
        if isinstance(v, int):
            assert -MAX_SAFE <= v <= MAX_SAFE
            return
        if isinstance(v, dict):
            for k, x in v.items():
                assert isinstance(k, str)
                check(x)
            return
        if isinstance(v, list):
            for x in v:
                check(x)
            return
        raise TypeError("no canonical encoding for %r" % (v,))
    check(obj)
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


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

doc = {
    "comment": "appendlog v1 known-answer vectors, generated by docs/vectors/gen_vectors.py "
               "(python3 stdlib only, independent of the TypeScript code). Integers big-endian; "
               "hashes SHA-256 with the prefixes 'appendlog/v1/genesis\\0' and 'appendlog/v1/entry\\0'. "
               "Chains number entries from seq 1; hashes_hex[i] is the hash of entries[i].",
    "genesis": genesis,
    "entries": entries,
    "chains": chains,
    "scanner": scanner,
}

path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vectors.json")
with open(path, "w", encoding="utf-8") as f:
    json.dump(doc, f, indent=2, ensure_ascii=False)
    f.write("\n")
print("wrote %s: %d genesis, %d entries, %d chains, %d scanner cases"
      % (path, len(genesis), len(entries), len(chains), len(scanner)))
