"""
test_clientid.py - client identity at L4 (lb/clientid.c): the PROXY
protocol header from a balancer in front (accept_proxy, accept_proxy_from,
timeout_proxy), access lists (allow, deny) and per-source limits
(maxconn_per_source, rate_per_source).

The sender in front is HAProxy 2.6 (`send-proxy`, `send-proxy-v2`), software
nobody here wrote; raw sockets only for what no correct sender produces
(split, stalled, malformed and oversized headers). Clients come from
several loopback addresses (127.0.0.0/8 is all loopback) and ::1. Every
refusal is checked three ways: what the client sees, the session log's
termination code, the frontend's counter in /stats.json and /metrics.
"""

import json
import os
import socket
import struct
import subprocess
import threading
import time
import urllib.request

import pytest

import peers
from conftest import SLACK, alloc_port, run_shoal_check, wait_for
from test_reload import hup

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"
HAPROXY = "/usr/sbin/haproxy"


def v2_header(src, dst, sport, dport, tlvs=b"", cmd=1):
    """A PROXY v2 header (IPv4 or IPv6 by the addresses)."""
    if cmd == 0:
        return V2_SIG + bytes([0x20, 0x00]) + struct.pack("!H", 0)
    if ":" in src:
        fam, addrs = 0x21, socket.inet_pton(socket.AF_INET6, src) + \
            socket.inet_pton(socket.AF_INET6, dst)
    else:
        fam, addrs = 0x11, socket.inet_aton(src) + socket.inet_aton(dst)
    body = addrs + struct.pack("!HH", sport, dport) + tlvs
    return V2_SIG + bytes([0x21, fam]) + struct.pack("!H", len(body)) + body


def stats_port_config(fe_extra, servers, stats_port, balance="roundrobin",
                      binds=None):
    """A whole config text: frontend web (+ fe_extra lines), backend app,
    [stats]."""
    lines = ["[global]", "threads = 2", "grace = 2s", "",
             "[frontend web]"]
    for b in binds:
        lines.append("bind = %s" % b)
    lines += ["backend = app", "timeout_client = 10s"] + list(fe_extra)
    lines += ["", "[backend app]", "balance = %s" % balance,
              "timeout_connect = 1s", "retries = 1"]
    for s in servers:
        lines.append("server = %s %s" % (s.name, s.addr))
    lines += ["", "[stats]", "bind = 127.0.0.1:%d" % stats_port]
    return "\n".join(lines) + "\n"


def start(start_shoal, fe_extra, servers, balance="roundrobin"):
    sp = alloc_port()
    binds = ["127.0.0.1:%d" % alloc_port()]
    sh = start_shoal(config_text=stats_port_config(
        fe_extra, servers, sp, balance, binds), binds=binds)
    sh.stats_port = sp
    return sh


def refused(sh):
    with urllib.request.urlopen("http://127.0.0.1:%d/stats.json"
                                % sh.stats_port, timeout=5) as r:
        return json.load(r)["frontends"][0]["refused"]


def metric(sh, reason):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics"
                                % sh.stats_port, timeout=5) as r:
        text = r.read().decode()
    key = 'shoal_frontend_refused_total{frontend="web",reason="%s"} ' % reason
    for line in text.splitlines():
        if line.startswith(key):
            return int(line.split()[-1])
    raise AssertionError("no %s in /metrics" % key.strip())


def terms(sh, term):
    return [s for s in sh.sessions() if s.get("term") == term]


def outcome(addr, data=b"", bind=None, chunks=None, timeout=5.0):
    """Connect (from bind), send data (in pieces of `chunks` bytes, paced),
    read to EOF. Returns the bytes read, or 'reset' / 'timeout'."""
    try:
        s = peers.connect(addr, bind=bind, timeout=timeout * SLACK)
    except ConnectionRefusedError:
        return "refused"
    except ConnectionResetError:
        return "reset"
    try:
        step = chunks or max(1, len(data))
        for i in range(0, len(data), step):
            s.sendall(data[i:i + step])
            if chunks:
                time.sleep(0.002)
        out = b""
        while True:
            b = s.recv(65536)
            if not b:
                return out
            out += b
    except ConnectionResetError:
        return "reset"
    except socket.timeout:
        return "timeout"
    finally:
        s.close()


# --------------------------------------------------------------------------
# HAProxy in front, sending the header

class Haproxy:
    def __init__(self, tmp_path, target, version, binds):
        self.binds = binds
        opt = "send-proxy-v2" if version == 2 else "send-proxy"
        cfg = ["global", "  log stderr format raw local0 info",
               "defaults", "  mode tcp", "  log global",
               "  timeout connect 2s", "  timeout client 10s",
               "  timeout server 10s", "frontend fe"]
        cfg += ["  bind %s" % b for b in binds]
        cfg += ["  default_backend be", "backend be",
                "  server s %s %s" % (target, opt)]
        path = os.path.join(str(tmp_path), "haproxy-v%d.cfg" % version)
        with open(path, "w") as f:
            f.write("\n".join(cfg) + "\n")
        self.proc = subprocess.Popen([HAPROXY, "-db", "-f", path],
                                     stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)

    def wait_ready(self, addrs):
        def up():
            for host, port in addrs:
                try:
                    socket.create_connection((host, port), 0.5).close()
                except OSError:
                    return False
            return True
        wait_for(up, 10 * SLACK, 0.05, what="haproxy listening")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def haproxy(tmp_path):
    made = []

    def make(target, version, binds):
        h = Haproxy(tmp_path, target, version, binds)
        made.append(h)
        return h
    yield make
    for h in made:
        h.stop()


@pytest.mark.parametrize("version", [1, 2])
def test_haproxy_header_gives_the_client_address(start_peer, start_shoal,
                                                  haproxy, version):
    """HAProxy (send-proxy / send-proxy-v2) in front of shoal
    (accept_proxy): for IPv4 clients from 127.0.0.2 and .3 and an IPv6
    client from ::1, shoal's session log names the real client address and
    port, not HAProxy's; the server answers each one."""
    tag = start_peer("tag", "--close", name="t1")
    sh = start(start_shoal, ["accept_proxy = yes",
                             "accept_proxy_from = 127.0.0.1 ::1"], [tag])
    p4, p6 = alloc_port(), alloc_port()
    hp = haproxy("127.0.0.1:%d" % sh.port, version,
                 ["127.0.0.1:%d" % p4, "[::1]:%d" % p6])
    hp.wait_ready([("127.0.0.1", p4), ("::1", p6)])
    seen = []
    for bind, target in (("127.0.0.2", ("127.0.0.1", p4)),
                         ("127.0.0.3", ("127.0.0.1", p4)),
                         ("::1", ("::1", p6))):
        s = peers.connect(target, bind=bind, timeout=5 * SLACK)
        local = s.getsockname()
        data = peers.recv_all(s)
        s.close()
        assert data.startswith(b"t1"), (bind, data)
        host = local[0]
        seen.append("[%s]:%d" % (host, local[1]) if ":" in host
                    else "%s:%d" % (host, local[1]))
    for want in seen:
        sh.wait_sessions(1, pred=lambda x, w=want: x["client"] == w)
    assert all(r == 0 for r in refused(sh).values())


def test_header_split_into_segments_and_app_bytes_untouched(start_peer,
                                                            start_shoal):
    """A v1 and a v2 header sent one byte per segment, followed by
    application bytes: the server (an echo) gets exactly the application
    bytes, never a byte of the header; the log names the header's client."""
    echo = start_peer("echo")
    sh = start(start_shoal, ["accept_proxy = yes",
                             "accept_proxy_from = 127.0.0.1"], [echo])
    app = b"hello through the header\n" * 40
    h1 = b"PROXY TCP4 198.51.100.7 192.0.2.1 40001 80\r\n"
    h2 = v2_header("2001:db8::7", "2001:db8::1", 40002, 80)
    for hdr, client in ((h1, "198.51.100.7:40001"),
                        (h2, "[2001:db8::7]:40002")):
        s = peers.connect(sh.addr, timeout=5 * SLACK)
        for i in range(len(hdr)):
            s.sendall(hdr[i:i + 1])
            time.sleep(0.001)
        s.sendall(app)
        s.shutdown(socket.SHUT_WR)
        got = peers.recv_all(s)
        s.close()
        assert got == app
        sh.wait_sessions(1, pred=lambda x, c=client: x["client"] == c)


def test_header_deadline_and_others_unaffected(start_peer, start_shoal):
    """A header that never completes is closed after timeout_proxy (cP,
    counted); while it stalls, other clients are served at once."""
    tag = start_peer("tag", "--close", name="t1")
    sh = start(start_shoal, ["accept_proxy = yes",
                             "accept_proxy_from = 127.0.0.1",
                             "timeout_proxy = 1s"], [tag])
    stalls = [peers.connect(sh.addr, timeout=5 * SLACK) for _ in range(20)]
    t0 = time.monotonic()
    for s in stalls:
        s.sendall(b"PROXY TCP4 10.0.0.1")
    good = b"PROXY TCP4 10.0.0.2 10.0.0.3 1 2\r\n"
    for _ in range(10):
        assert outcome(sh.addr, good).startswith(b"t1")
    assert time.monotonic() - t0 < 0.9, "served behind stalled headers"
    for s in stalls:
        s.settimeout(5 * SLACK)
        try:
            assert s.recv(10) == b""
        except ConnectionResetError:
            pass
        s.close()
    took = time.monotonic() - t0
    assert 0.9 <= took <= 1.0 + 2 * SLACK, took
    sh.wait_sessions(20, pred=lambda x: x["term"] == "cP")
    assert refused(sh)["proxy_timeout"] == 20
    assert metric(sh, "proxy_timeout") == 20


def test_peer_outside_accept_proxy_from_is_refused(start_peer, start_shoal):
    """Only accept_proxy_from may send a header: a connection from
    127.0.0.2 when only 127.0.0.1 is trusted is refused at once (PF),
    header or not, and never reaches the server."""
    tag = start_peer("tag", "--close", name="t1")
    sh = start(start_shoal, ["accept_proxy = yes",
                             "accept_proxy_from = 127.0.0.1/32"], [tag])
    hdr = b"PROXY TCP4 10.1.1.1 10.0.0.3 1 2\r\n"
    assert outcome(sh.addr, hdr, bind="127.0.0.2") in (b"", "reset")
    assert outcome(sh.addr, hdr, bind="127.0.0.1").startswith(b"t1")
    sh.wait_sessions(1, pred=lambda x: x["term"] == "PF")
    assert refused(sh)["proxy_from"] == 1
    wait_for(lambda: len(tag.accepts()) >= 1, 5 * SLACK)
    assert len(tag.accepts()) == 1


BAD_HEADERS = [
    ("not a header", b"GET / HTTP/1.0\r\n\r\n"),
    ("v1 bad family", b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n"),
    ("v1 bad address", b"PROXY TCP4 1.2.3.400 5.6.7.8 1 2\r\n"),
    ("v1 port out of range", b"PROXY TCP4 1.2.3.4 5.6.7.8 70000 2\r\n"),
    ("v1 no CRLF in 107 bytes", b"PROXY TCP4 " + b"1" * 120),
    ("v2 bad version", V2_SIG + b"\x31\x11\x00\x0c" + b"\x00" * 12),
    ("v2 length above 4096", V2_SIG + b"\x21\x11\xff\xff" + b"\x00" * 64),
    ("v2 TLV overrunning", V2_SIG + b"\x21\x11\x00\x10" + b"\x00" * 12 +
     b"\xee\x00\x10\x00"),
]


def test_malformed_and_oversized_headers_are_refused(start_peer,
                                                     start_shoal):
    """Each malformed or oversized header is refused (CP, counted); a v2
    header with unknown TLVs and a v2 LOCAL (a check from the balancer in
    front) are accepted; a good client is served after all of them."""
    tag = start_peer("tag", "--close", name="t1")
    sh = start(start_shoal, ["accept_proxy = yes",
                             "accept_proxy_from = 127.0.0.1"], [tag])
    for what, data in BAD_HEADERS:
        r = outcome(sh.addr, data)
        assert r in (b"", "reset"), (what, r)
    sh.wait_sessions(len(BAD_HEADERS), pred=lambda x: x["term"] == "CP")
    assert refused(sh)["proxy_header"] == len(BAD_HEADERS)
    assert len(tag.accepts()) == 0
    tlvs = bytes([0xe0, 0, 3]) + b"abc" + bytes([0xf1, 0, 0])
    assert outcome(sh.addr, v2_header("192.0.2.9", "192.0.2.1", 5, 6,
                                      tlvs)).startswith(b"t1")
    assert outcome(sh.addr, v2_header(None, None, 0, 0, cmd=0)) \
        .startswith(b"t1")
    sh.wait_sessions(1, pred=lambda x: x["client"] == "192.0.2.9:5")
    # LOCAL keeps the peer's own address
    sh.wait_sessions(1, pred=lambda x: x["client"].startswith("127.0.0.1:")
                     and x["term"] != "CP")


def test_balance_source_uses_the_header_address(start_peer, start_shoal):
    """balance = source behind a balancer: every connection comes from
    127.0.0.1, but the header's client addresses decide: the same client
    always lands on the same server, and 60 clients spread over all three."""
    srv = [start_peer("tag", "--close", name="s%d" % i) for i in range(3)]
    sh = start(start_shoal, ["accept_proxy = yes",
                             "accept_proxy_from = 127.0.0.1"], srv,
               balance="source")
    where = {}
    for i in range(60):
        ip = "10.20.%d.%d" % (i // 200, 1 + i % 200)
        hdr = ("PROXY TCP4 %s 10.0.0.1 %d 80\r\n" % (ip, 1000 + i)).encode()
        a = outcome(sh.addr, hdr)
        b = outcome(sh.addr, hdr.replace(b" %d 80" % (1000 + i),
                                         b" %d 80" % (2000 + i)))
        assert a == b, (ip, a, b)
        where[ip] = a.split(b"\n")[0]
    assert set(where.values()) == {b"s0", b"s1", b"s2"}


def test_allow_and_deny(start_peer, start_shoal):
    """allow = 127.0.0.0/8 ::1 with deny = 127.0.0.3 127.0.0.64/26: .2 and
    ::1 are served; .3 and .100 are refused (deny wins over allow) before
    any server is touched (PA); nothing outside allow gets in either."""
    tag = start_peer("tag", "--close", name="t1")
    p = alloc_port()
    sp = alloc_port()
    binds = ["127.0.0.1:%d" % p, "[::1]:%d" % p]
    sh = start_shoal(config_text=stats_port_config(
        ["allow = 127.0.0.0/8 ::1", "deny = 127.0.0.3, 127.0.0.64/26"],
        [tag], sp, binds=binds), binds=binds)
    sh.stats_port = sp
    assert outcome(("127.0.0.1", p), bind="127.0.0.2").startswith(b"t1")
    assert outcome(("::1", p), bind="::1").startswith(b"t1")
    assert outcome(("127.0.0.1", p), bind="127.0.0.3") in (b"", "reset")
    assert outcome(("127.0.0.1", p), bind="127.0.0.100") in (b"", "reset")
    assert outcome(("127.0.0.1", p), bind="127.0.0.63").startswith(b"t1")
    sh.wait_sessions(2, pred=lambda x: x["term"] == "PA")
    wait_for(lambda: len(tag.accepts()) >= 3, 5 * SLACK)
    assert len(tag.accepts()) == 3
    assert refused(sh)["acl"] == 2 and metric(sh, "acl") == 2


def test_maxconn_per_source(start_peer, start_shoal):
    """maxconn_per_source = 3: a fourth connection from 127.0.0.2 while it
    holds three is refused (PL); 127.0.0.3 is not affected; once one of
    the three ends, 127.0.0.2 gets in again."""
    tag = start_peer("tag", name="t1")      # holds the connection open
    sh = start(start_shoal, ["maxconn_per_source = 3"], [tag])
    held = [peers.open_tagged(sh.addr, bind="127.0.0.2")[0]
            for _ in range(3)]
    assert outcome(sh.addr, bind="127.0.0.2", timeout=2) in (b"", "reset")
    others = [peers.open_tagged(sh.addr, bind="127.0.0.3") for _ in range(3)]
    assert all(t == "t1" for _, t in others)
    held[0].close()
    sh.wait_sessions(1, pred=lambda x: x["term"] != "PL" and
                     x["client"].startswith("127.0.0.2:"))
    s, t = peers.open_tagged(sh.addr, bind="127.0.0.2")
    assert t == "t1"
    for x in held[1:] + [s] + [o for o, _ in others]:
        x.close()
    sh.wait_sessions(1, pred=lambda x: x["term"] == "PL")
    assert refused(sh)["conn_per_source"] == 1


def test_rate_per_source_with_ab(http_backends, start_shoal):
    """rate_per_source = 20/s: ab from 127.0.0.1 opening 300 connections
    as fast as it can gets most refused (PR), about 20 per second admitted;
    meanwhile a client from 127.0.0.2 making 10 requests is never refused."""
    class B:
        def __init__(self, name, addr):
            self.name, self.addr = name, addr
    sh = start(start_shoal, ["rate_per_source = 20/s"],
               [B(n, a) for n, a in http_backends[:1]])
    results = []

    def other():
        for _ in range(10):
            r = outcome(sh.addr, b"GET / HTTP/1.0\r\n\r\n", bind="127.0.0.2")
            results.append(r)
            time.sleep(0.1)
    t = threading.Thread(target=other)
    t0 = time.monotonic()
    t.start()
    ab = subprocess.run(["ab", "-r", "-n", "300", "-c", "4",
                         "http://127.0.0.1:%d/" % sh.port],
                        capture_output=True, text=True, timeout=60 * SLACK)
    took = time.monotonic() - t0
    t.join(30)
    assert all(isinstance(r, bytes) and r.startswith(b"HTTP/1.")
               for r in results), results
    assert "Complete requests:      300" in ab.stdout, ab.stdout
    n = refused(sh)["rate_per_source"]
    assert n > 100, (n, ab.stdout)
    assert metric(sh, "rate_per_source") == n
    mine = sh.wait_sessions(300, pred=lambda x: x["client"].startswith(
        "127.0.0.1:"))
    admitted = [x for x in mine if x["term"] != "PR"]
    assert len(mine) - len(admitted) == n
    # a burst of 20, then 20 per second of the run (generous slack)
    assert 20 <= len(admitted) <= 20 + 20 * (took + 1) + 5, \
        (len(admitted), took)


def test_reload_changes_lists_and_refuses_bad_ones(start_peer, start_shoal):
    """A reload that adds a deny applies to new connections while a held
    session from that address goes on; a reload with a bad network is
    refused whole (FILE:LINE in the log) and the lists stay as they were."""
    tag = start_peer("tag", name="t1")
    sh = start(start_shoal, ["allow = 127.0.0.0/8"], [tag])
    held, t = peers.open_tagged(sh.addr, bind="127.0.0.4")
    assert t == "t1"
    text = open(sh.conf_path).read()
    hup(sh, text.replace("allow = 127.0.0.0/8",
                         "allow = 127.0.0.0/8\ndeny = 127.0.0.4"))
    assert outcome(sh.addr, bind="127.0.0.4", timeout=2) in (b"", "reset")
    held.sendall(b"still here")
    held.settimeout(0.3)
    with pytest.raises(socket.timeout):
        held.recv(10)           # tag holds it open: no EOF, no reset
    held.close()
    n = sum(1 for _, _, m in sh.log_lines() if m.startswith("reload"))
    with open(sh.conf_path, "w") as f:
        f.write(text.replace("allow = 127.0.0.0/8", "allow = 127.0.0.0/33"))
    sh.send_signal(1)
    wait_for(lambda: any("reload refused" in m and "prefix length" in m
                         for _, _, m in sh.log_lines()), 5 * SLACK)
    assert outcome(sh.addr, bind="127.0.0.4", timeout=2) in (b"", "reset")
    s, t = peers.open_tagged(sh.addr, bind="127.0.0.5")
    assert t == "t1"
    s.close()
    assert n >= 1
    sh.expect_errors = True


CONF_ERRORS = [
    ("accept_proxy = yes", "accept_proxy = yes needs accept_proxy_from"),
    ("accept_proxy_from = 10.0.0.0/8",
     "accept_proxy_from without accept_proxy = yes"),
    ("allow = 10.0.0.1/8", "host bits set after /8"),
    ("deny = fd00::/129", "prefix length must be 0-128"),
    ("allow = ,", "allow needs at least one network"),
    ("rate_per_source = 10/m", "expected N/s"),
    ("rate_per_source = 2000000/s", "out of range"),
    ("maxconn_per_source = -1", "out of range"),
    ("timeout_proxy = 0ms", "timeout_proxy 0ms out of range"),
]


@pytest.mark.parametrize("line,msg", CONF_ERRORS)
def test_config_errors_name_file_and_line(tmp_path, line, msg):
    """Each bad client-identity line is refused by `shoal -t` with
    FILE:LINE: and a message naming the problem."""
    path = str(tmp_path / "bad.ini")
    with open(path, "w") as f:
        f.write("[frontend web]\nbind = 127.0.0.1:%d\nbackend = app\n%s\n"
                "\n[backend app]\nserver = a 127.0.0.1:9\n"
                % (alloc_port(), line))
    rc, out = run_shoal_check(path)
    assert rc != 0
    assert "%s:" % path in out and msg in out, out
    loc = out.split("%s:" % path, 1)[1].split(":", 1)[0]
    assert loc.isdigit() and int(loc) in (2, 3, 4), out
