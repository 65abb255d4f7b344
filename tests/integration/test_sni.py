"""
test_sni.py - routing by the TLS ClientHello's server name without
decrypting (`[frontend] route = PATTERN BACKEND`, `timeout_preread`):
shoal reads the ClientHello, picks the backend, and replays the bytes
untouched to the server.

Real TLS on both ends: `openssl s_server` backends, each with its own
certificate, and `openssl s_client` / curl as clients (the certificate a
client sees tells which backend it reached). Hand-made ClientHellos
(Python) only for what clients do not send on their own: one split into
1-byte segments, a 16 KiB one over two records, a stalled one.
"""

import hashlib
import json
import os
import socket
import struct
import subprocess
import time
import urllib.request

import pytest

import peers
from conftest import SLACK, alloc_port, run_shoal_check, wait_for


def make_cert(d, name):
    key, crt = os.path.join(d, name + ".key"), os.path.join(d, name + ".crt")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec",
                    "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", crt, "-days", "2",
                    "-subj", "/CN=" + name,
                    "-addext", "subjectAltName=DNS:" + name],
                   check=True, capture_output=True, timeout=30)
    return crt, key


def listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), 0.5).close()
        return True
    except OSError:
        return False


@pytest.fixture
def tls_servers(tmp_path):
    """start(name) -> port of an `openssl s_server -www` with a certificate
    for CN=name."""
    procs = []

    def start(name):
        crt, key = make_cert(str(tmp_path), name)
        port = alloc_port()
        procs.append(subprocess.Popen(
            ["openssl", "s_server", "-quiet", "-www", "-accept", str(port),
             "-cert", crt, "-key", key],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL))
        wait_for(lambda: listening(port), 10 * SLACK, 0.05,
                 what="s_server " + name)
        return port
    yield start
    for p in procs:
        p.terminate()
        p.wait(5)


def reached(port, sni):
    """The CN of the certificate a client asking for sni gets (None: no
    handshake)."""
    args = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port]
    args += ["-servername", sni] if sni else ["-noservername"]
    r = subprocess.run(args, input="", capture_output=True, text=True,
                       timeout=20)
    for line in r.stdout.splitlines():
        if line.startswith("subject="):
            return line.split("CN", 1)[1].strip(" =")
    return None


def config(port, stats_port, routes, backends, default="dflt",
           extra=()):
    lines = ["[global]", "threads = 2", "grace = 2s", "",
             "[frontend tls]", "bind = 127.0.0.1:%d" % port,
             "backend = %s" % default, "timeout_preread = 1s"]
    lines += ["route = %s %s" % r for r in routes] + list(extra)
    for name, addr in backends.items():
        lines += ["", "[backend %s]" % name, "timeout_connect = 1s",
                  "server = s1 %s" % addr]
    lines += ["", "[stats]", "bind = 127.0.0.1:%d" % stats_port]
    return "\n".join(lines) + "\n"


def start(start_shoal, routes, backends, default="dflt"):
    port, sp = alloc_port(), alloc_port()
    sh = start_shoal(config_text=config(port, sp, routes, backends, default),
                     binds=["127.0.0.1:%d" % port])
    sh.stats_port = sp
    return sh


def preread(sh):
    with urllib.request.urlopen("http://127.0.0.1:%d/stats.json"
                                % sh.stats_port, timeout=5) as r:
        return json.load(r)["frontends"][0]["preread"]


def test_routes_by_sni(start_shoal, tls_servers):
    """Exact names and *.suffix, first match wins; an unknown name and no
    SNI at all go to the frontend's backend. Each client completes a real
    TLS handshake with the server its name chose (its certificate says
    so), and curl gets that server's page through shoal."""
    ports = {n: tls_servers(n) for n in ("api.test", "wild.test",
                                         "default.test")}
    sh = start(start_shoal,
               [("api.test", "api"), ("*.apps.test", "wild"),
                ("x.apps.test", "api")],          # shadowed by the wildcard
               {"api": "127.0.0.1:%d" % ports["api.test"],
                "wild": "127.0.0.1:%d" % ports["wild.test"],
                "dflt": "127.0.0.1:%d" % ports["default.test"]})
    assert reached(sh.port, "api.test") == "api.test"
    assert reached(sh.port, "API.test") == "api.test"     # case-insensitive
    assert reached(sh.port, "one.apps.test") == "wild.test"
    assert reached(sh.port, "x.apps.test") == "wild.test"  # first match
    assert reached(sh.port, "other.test") == "default.test"
    assert reached(sh.port, None) == "default.test"
    r = subprocess.run(["curl", "-sk", "--resolve",
                        "api.test:%d:127.0.0.1" % sh.port,
                        "https://api.test:%d/" % sh.port],
                       capture_output=True, text=True, timeout=20)
    assert "s_server -quiet -www" in r.stdout, r.stdout[:300]
    sh.wait_sessions(1, pred=lambda x: x.get("sni") == "api.test")
    c = preread(sh)
    assert c["routed"] >= 5 and c["unmatched"] == 1 and \
        c["no_sni"] == 1, c


def client_hello(sni, pad=0):
    """A TLS 1.2-style ClientHello record(s) for sni with a padding
    extension of pad bytes; split into records of at most 16 KiB."""
    ext = b""
    name = sni.encode()
    sn = struct.pack("!BH", 0, len(name)) + name
    ext += struct.pack("!HH", 0, len(sn) + 2) + struct.pack("!H", len(sn)) + sn
    if pad:
        ext += struct.pack("!HH", 21, pad) + b"\0" * pad
    body = (b"\x03\x03" + os.urandom(32) + b"\x00" +
            struct.pack("!H", 4) + b"\x13\x01\xc0\x2f" + b"\x01\x00" +
            struct.pack("!H", len(ext)) + ext)
    hs = b"\x01" + struct.pack("!I", len(body))[1:] + body
    out = b""
    for i in range(0, len(hs), 16384):
        frag = hs[i:i + 16384]
        out += b"\x16\x03\x01" + struct.pack("!H", len(frag)) + frag
    return out


def test_split_big_and_plain_bytes_reach_the_server_untouched(
        start_shoal, start_peer):
    """The server gets exactly the client's bytes, whatever the preread
    saw: a 16 KiB ClientHello over two records sent one byte per segment
    (routed by its name), then plain text (not TLS: the default backend).
    Each server is a sink that reports the SHA-256 of what it got."""
    routed = start_peer("sink", name="routed")
    dflt = start_peer("sink", name="dflt")
    sh = start(start_shoal, [("big.test", "r")],
               {"r": routed.addr, "dflt": dflt.addr})
    hello = client_hello("big.test", pad=16400)
    assert len(hello) > 16384 + 5
    s = peers.connect(sh.addr, timeout=10 * SLACK)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for i in range(len(hello)):
        s.sendall(hello[i:i + 1])
    s.sendall(b"after the hello")
    s.shutdown(socket.SHUT_WR)
    peers.recv_all(s)
    s.close()
    want = hashlib.sha256(hello + b"after the hello").hexdigest()
    ev = routed.wait_events("conn", 1, timeout=30 * SLACK)[0]
    assert ev["rx_sha"] == want and ev["rx_len"] == len(hello) + 15, ev
    plain = b"GET / HTTP/1.0\r\n\r\n"
    s = peers.connect(sh.addr, timeout=10)
    s.sendall(plain)
    s.shutdown(socket.SHUT_WR)
    peers.recv_all(s)
    s.close()
    ev = dflt.wait_events("conn", 1, timeout=10 * SLACK)[0]
    assert ev["rx_sha"] == hashlib.sha256(plain).hexdigest(), ev
    c = preread(sh)
    assert c["routed"] == 1 and c["not_tls"] == 1, c


def test_stalled_hello_goes_on_after_timeout_preread(start_shoal,
                                                     start_peer):
    """A client that sends half a ClientHello and waits: after
    timeout_preread (1 s) the session goes to the default backend with the
    bytes read so far (the server decides what to make of them); other
    clients are routed meanwhile."""
    routed = start_peer("sink", name="routed")
    dflt = start_peer("sink", name="dflt")
    sh = start(start_shoal, [("a.test", "r")],
               {"r": routed.addr, "dflt": dflt.addr})
    hello = client_hello("a.test")
    s = peers.connect(sh.addr, timeout=10)
    s.sendall(hello[:20])
    t0 = time.monotonic()
    other = peers.connect(sh.addr, timeout=10)
    other.sendall(hello)
    other.shutdown(socket.SHUT_WR)
    peers.recv_all(other)
    other.close()
    routed.wait_events("conn", 1, timeout=5)
    assert time.monotonic() - t0 < 0.9
    wait_for(lambda: dflt.accepts(), 3 * SLACK, 0.02, what="timed out")
    took = time.monotonic() - t0
    assert 0.9 <= took <= 1.0 + 1.5 * SLACK, took
    s.shutdown(socket.SHUT_WR)
    peers.recv_all(s)
    s.close()
    ev = dflt.wait_events("conn", 1, timeout=5)[0]
    assert ev["rx_sha"] == hashlib.sha256(hello[:20]).hexdigest(), ev
    assert preread(sh)["timeout"] == 1


@pytest.mark.parametrize("line,msg", [
    ("route = a.test nowhere", "route to backend 'nowhere' is not defined"),
    ("route = a*.test dflt", "bad route pattern"),
    ("route = a.test", "expected PATTERN BACKEND"),
])
def test_config_errors(tmp_path, line, msg):
    path = str(tmp_path / "bad.ini")
    with open(path, "w") as f:
        f.write("[frontend tls]\nbind = 127.0.0.1:%d\nbackend = dflt\n%s\n"
                "[backend dflt]\nserver = s 127.0.0.1:9\n"
                % (alloc_port(), line))
    rc, out = run_shoal_check(path)
    assert rc != 0 and "%s:4:" % path in out and msg in out, out
