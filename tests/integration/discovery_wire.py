"""
discovery_wire.py - an independent Python implementation of the shoal
announcement datagram v1 (docs/discovery-protocol.md), for the integration
tests: it builds valid, signed datagrams and every kind of broken one, so the
tests can send exactly what they mean to.

It is written from the document, not from discovery/codec.c: the test vector
in docs/discovery-protocol.md and tests/unit/test_codec.c must come out of
both byte for byte (see test_vector_python in test_discovery.py).
"""

import hashlib
import hmac
import ipaddress
import struct
import time

MAGIC = 0x5348
VERSION = 1
TYPE_ANNOUNCE = 1
UP, DRAINING, LEAVING = 1, 2, 3
AUTH_NONE, AUTH_HMAC = 0, 1
TAG_LEN = 32
CONTEXT = b"shoal-announce-v1\0"
HDR = struct.Struct(">HBBBBBBHHHHIIQQ16s")   # offsets 0..55

# The pinned test vector (docs/discovery-protocol.md, "Test vector").
VECTOR_KEY = bytes(range(32))
VECTOR_KEY_ID = 1
VECTOR_REALM = "ait-lab4"
VECTOR_FIELDS = dict(state=UP, addr="192.168.42.11", port=3000, weight=2,
                     ttl=3500, seq=42, instance=0x0123456789ABCDEF,
                     timestamp=1767225600000, pool="app", label="web-1",
                     maxconn=100)


def tag(key, realm, body):
    """HMAC-SHA256(key, "shoal-announce-v1\\0" realm "\\0" + body)."""
    return hmac.new(key, CONTEXT + realm.encode() + b"\0" + body,
                    hashlib.sha256).digest()


def now_ms():
    return int(time.time() * 1000)


def body(state=UP, addr="127.0.0.1", port=9000, weight=1, ttl=3500, seq=1,
         instance=1, timestamp=None, pool="app", label=None, maxconn=None,
         tlvs=b"", key_id=1, auth=AUTH_HMAC, flags=None, reserved=0,
         magic=MAGIC, version=VERSION, type_=TYPE_ANNOUNCE, length=None,
         pool_len=None, addr_bytes=None, extra=b""):
    """The bytes before the tag. Every header field can be overridden to
    build broken datagrams; `length` defaults to the real length."""
    ip = ipaddress.ip_address(addr)
    if addr_bytes is None:
        addr_bytes = ip.packed.ljust(16, b"\0")
    if flags is None:
        flags = 1 if ip.version == 6 else 0
    if timestamp is None:
        timestamp = now_ms()
    pb = pool.encode()
    t = b""
    if label is not None:
        lb = label.encode()
        t += bytes([1, len(lb)]) + lb
    if maxconn is not None:
        t += bytes([2, 4]) + struct.pack(">I", maxconn)
    t += tlvs
    rest = bytes([len(pb) if pool_len is None else pool_len]) + pb + t + extra
    n = HDR.size + len(rest)
    hdr = HDR.pack(magic, version, type_, state, flags, key_id, auth,
                   n if length is None else length, port, weight, reserved,
                   ttl, seq, instance, timestamp, addr_bytes)
    return hdr + rest


def signed(key=VECTOR_KEY, realm="shoal", key_id=1, **kw):
    """A datagram signed with key under realm."""
    b = body(key_id=key_id, auth=AUTH_HMAC, **kw)
    return b + tag(key, realm, b)


def unsigned(**kw):
    """An unsigned datagram (auth 0, key id 0, no tag)."""
    kw.setdefault("key_id", 0)
    return body(auth=AUTH_NONE, **kw)


def vector():
    """The test vector datagram."""
    return signed(key=VECTOR_KEY, realm=VECTOR_REALM, key_id=VECTOR_KEY_ID,
                  **VECTOR_FIELDS)


def flip(data, byte, bit=0):
    """data with one bit flipped."""
    b = bytearray(data)
    b[byte] ^= 1 << bit
    return bytes(b)


def keyfile_line(key_id, key):
    return "%d %s\n" % (key_id, key.hex())


if __name__ == "__main__":
    v = vector()
    print("datagram (%d bytes):" % len(v))
    for i in range(0, len(v), 16):
        print("  %04x  %s" % (i, " ".join("%02x" % c for c in v[i:i + 16])))
    print("tag:", v[-TAG_LEN:].hex())
