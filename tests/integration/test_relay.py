"""
Relaying: bytes exact in both directions (S01), over IPv4, IPv6 and mixed
families (S25), server speaks first (S02), half-close both ways (S03, S04),
RST propagated both ways (S05, S06), backend killed mid-transfer (S07).
"""

import hashlib
import signal
import socket
import threading
import time

import pytest

import peers
from conftest import SLACK, default_binds

MiB = 1 << 20
SIZES = [0, 1, 1024, 64 * 1024 + 1, 64 * MiB]

FAMILIES = {
    "v4-v4": ("ipv4", "127.0.0.1"),
    "v6-v6": ("ipv6", "::1"),
    "v4-v6": ("ipv4", "::1"),
    "v6-v4": ("ipv6", "127.0.0.1"),
}


def client_port(addr):
    return str(addr).rsplit(":", 1)[1]


def session_of(sessions, local):
    """The session line whose client port is the port of `local`."""
    port = client_port(local)
    found = [s for s in sessions if client_port(s.get("client", "")) == port]
    assert len(found) == 1, "no single session for client %s in %r" % (
        local, sessions)
    return found[0]


def recv_exact(s, n):
    data = bytearray()
    while len(data) < n:
        b = s.recv(min(n - len(data), 1 << 20))
        if not b:
            break
        data += b
    return bytes(data)


@pytest.mark.parametrize("combo", list(FAMILIES))
def test_bytes_exact_sizes(combo, start_peer, start_shoal):
    """S01/S25: echo through shoal for 0, 1, 1 KiB, 64 KiB+1 and 64 MiB;
    SHA-256 on both ends, per family combination (frontend-backend)."""
    front, back_host = FAMILIES[combo]
    e1 = start_peer("echo", host=back_host, name="e1")
    e2 = start_peer("echo", host=back_host, name="e2")
    lb = start_shoal([e1, e2], binds=default_binds(front))
    locals_ = []
    for i, size in enumerate(SIZES):
        seed = 100 + i
        r = lb_exchange(lb, size, seed)
        locals_.append(r["local"])
        want = peers.stream_digest(seed, size)
        assert r["tx_err"] is None and r["rx_err"] is None, (size, r)
        assert r["tx_len"] == size and r["rx_len"] == size, (size, r)
        assert r["tx_sha"] == want and r["rx_sha"] == want, size
        # The backend received exactly the client's bytes too.
        lb.wait_for(lambda: len(e1.conns()) + len(e2.conns()) >= i + 1, 5,
                    what="echo conn events")
        conns = e1.conns() + e2.conns()
        assert any(c["rx_sha"] == want and c["rx_len"] == size
                   and c["rx_err"] is None for c in conns), (size, conns)
    sessions = lb.wait_sessions(len(SIZES))
    for r_size, local in zip(SIZES, locals_):
        s = session_of(sessions, local)
        assert s["bytes_in"] == r_size and s["bytes_out"] == r_size, s
        assert s["term"] == "--", s
        assert s["frontend"] == "web", s
    lb.check_nl3()


def lb_exchange(lb, size, seed):
    return peers.exchange(lb.addr, size, seed, timeout=60)


def test_two_binds_both_families(start_peer, start_shoal):
    """S25: one frontend bound on 127.0.0.1 and [::1]: both relay."""
    e = start_peer("echo")
    binds = default_binds("ipv4") + default_binds("ipv6")
    lb = start_shoal([e], binds=binds)
    for b in binds:
        host, port = b.rsplit(":", 1)
        r = peers.exchange((host.strip("[]"), int(port)), 65537, 12)
        assert r["rx_sha"] == peers.stream_digest(12, 65537), b
        assert r["rx_err"] is None
    lb.wait_sessions(2)
    lb.check_nl3()


def test_download_from_source(start_peer, start_shoal):
    """S01: 64 MiB from a `source` backend; the source's digest, the
    client's and the expected one agree; the session counts the bytes."""
    size = 64 * MiB
    src = start_peer("source", "--size", size, "--seed", 21)
    lb = start_shoal([src])
    n, sha, err = peers.download(lb.addr)
    assert err is None and n == size
    assert sha == peers.stream_digest(21, size)
    ev = src.wait_events("conn")[0]
    assert ev["tx_sha"] == sha and ev["tx_err"] is None
    s = lb.wait_sessions(1)[0]
    assert s["bytes_out"] == size and s["bytes_in"] == 0 and s["term"] == "--"
    lb.check_nl3()


def test_upload_to_sink(start_peer, start_shoal):
    """S01: 64 MiB + 1 to a `sink` backend, then half-close; the sink's
    (length, SHA-256) equals the client's."""
    size = 64 * MiB + 1
    sink = start_peer("sink")
    lb = start_shoal([sink])
    r = peers.upload(lb.addr, size, 22)
    assert r["tx_err"] is None and r["tx_len"] == size
    assert r["rx_len"] == 0 and r["rx_err"] is None
    ev = sink.wait_events("conn")[0]
    assert ev["rx_len"] == size and ev["rx_err"] is None
    assert ev["rx_sha"] == peers.stream_digest(22, size) == r["tx_sha"]
    s = lb.wait_sessions(1)[0]
    assert s["bytes_in"] == size and s["bytes_out"] == 0 and s["term"] == "--"
    lb.check_nl3()


def test_server_speaks_first(start_peer, start_shoal):
    """S02: the banner reaches the client before it sends anything, within
    100 ms (x2 slack); then an S01-style exchange on the same connection."""
    ban = start_peer("banner", "--banner", "HELO\n")
    lb = start_shoal([ban])
    t0 = time.monotonic()
    s = peers.connect(lb.addr)
    try:
        s.settimeout(5)
        got = recv_exact(s, 5)
        dt = time.monotonic() - t0
        assert got == b"HELO\n"
        assert dt < 0.2 * SLACK, "banner after %.3fs" % dt
        r = peers.exchange_sock(s, 64 * 1024 + 1, 23, timeout=20)
    finally:
        s.close()
    want = peers.stream_digest(23, 64 * 1024 + 1)
    assert r["rx_err"] is None and r["rx_sha"] == want == r["tx_sha"]
    sess = lb.wait_sessions(1)[0]
    assert sess["bytes_out"] == 5 + 64 * 1024 + 1 and sess["term"] == "--"
    lb.check_nl3()


@pytest.mark.parametrize("k", range(1, 9))
def test_fin_right_after_burst_down(k, start_peer, start_shoal):
    """S01/S04 (NL2): a backend writes k x 16 KiB and its FIN while shoal
    is stopped (SIGSTOP), so shoal wakes up to a burst of data followed by
    EOF in its socket. The client must get every byte and then the FIN at
    once (within 1 s), not only when an idle timeout fires."""
    size = k * 16 * 1024
    src = start_peer("source", "--size", size, "--seed", 7, "--delay", 0.2)
    lb = start_shoal([src], frontend={"timeout_client": "5s"},
                     backend={"timeout_server": "5s"},
                     global_={"grace": "1s"})
    s = peers.connect(lb.addr)
    try:
        src.wait_events("accept")
        lb.send_signal(signal.SIGSTOP)
        try:
            src.wait_events("sent", timeout=1.0)
        finally:
            lb.send_signal(signal.SIGCONT)
        t0 = time.monotonic()
        s.settimeout(2.0 * SLACK)
        n, sha, err = peers.read_all(s)
        dt = time.monotonic() - t0
    finally:
        s.close()
    assert n == size and sha == peers.stream_digest(7, size), (n, size)
    assert err is None, "%d bytes arrived, then no FIN for %.1fs (%s)" % (
        n, dt, err)
    assert dt <= 1.0 * SLACK
    sess = lb.wait_sessions(1)[0]
    assert sess["term"] == "--" and sess["bytes_out"] == size, sess
    lb.check_nl3()


@pytest.mark.parametrize("k", range(1, 9))
def test_fin_right_after_burst_up(k, start_peer, start_shoal):
    """S01/S03 (NL2), the other direction: the client writes k x 16 KiB
    and SHUT_WR while shoal is stopped; the backend must get every byte and
    then EOF within 1 s."""
    size = k * 16 * 1024
    sink = start_peer("sink")
    lb = start_shoal([sink], frontend={"timeout_client": "5s"},
                     backend={"timeout_server": "5s"},
                     global_={"grace": "1s"})
    s = peers.connect(lb.addr)
    try:
        sink.wait_events("accept")
        lb.send_signal(signal.SIGSTOP)
        try:
            def send():
                peers.send_seeded(s, 8, size)
                s.shutdown(socket.SHUT_WR)
            t = threading.Thread(target=send, daemon=True)
            t.start()
            t.join(1.0)
        finally:
            lb.send_signal(signal.SIGCONT)
        t0 = time.monotonic()
        t.join(5)
        try:
            ev = sink.wait_events("conn", timeout=3.0 * SLACK)[0]
        except AssertionError:
            ev = None
        dt = time.monotonic() - t0
    finally:
        s.close()
    assert ev is not None, "backend got no EOF within %.1fs after a " \
        "%d-byte burst and FIN" % (dt, size)
    assert ev["rx_len"] == size and ev["rx_err"] is None, ev
    assert ev["rx_sha"] == peers.stream_digest(8, size)
    assert dt <= 1.0 * SLACK, "backend got EOF %.2fs after the burst" % dt
    lb.wait_sessions(1)
    lb.check_nl3()


def test_client_half_close(start_peer, start_shoal):
    """S03: request then SHUT_WR; the backend reads to EOF, then replies
    1 MiB and closes. The backend sees the whole request before EOF, the
    client the whole reply, then a clean EOF."""
    req = 1 * MiB + 3
    sink = start_peer("sink", "--reply-size", MiB, "--reply-seed", 31)
    lb = start_shoal([sink])
    r = peers.upload(lb.addr, req, 30)
    assert r["tx_err"] is None and r["tx_len"] == req
    assert r["rx_err"] is None, r
    assert r["rx_len"] == MiB and r["rx_sha"] == peers.stream_digest(31, MiB)
    ev = sink.wait_events("conn")[0]
    assert ev["rx_len"] == req and ev["rx_err"] is None
    assert ev["rx_sha"] == peers.stream_digest(30, req)
    assert ev["tx_len"] == MiB and ev["tx_err"] is None
    s = lb.wait_sessions(1)[0]
    assert (s["bytes_in"], s["bytes_out"], s["term"]) == (req, MiB, "--"), s
    lb.check_nl3()


def test_backend_half_close(start_peer, start_shoal):
    """S04: the backend sends 1 MiB and SHUT_WR while the client keeps
    uploading 1 MiB for ~1 s, then closes. Both digests match; the client
    sees the backend's EOF before it stops uploading; shoal closes both
    sides within 1 s after the second FIN."""
    hc = start_peer("halfclose", "--size", MiB, "--seed", 41)
    lb = start_shoal([hc])
    s = peers.connect(lb.addr, timeout=20)
    rx = {}

    def reader():
        n, sha, err = peers.read_all(s)
        rx.update(len=n, sha=sha, err=err, eof_at=time.monotonic())

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    # 1 MiB in 16 slices of 64 KiB, 1/16 s apart: about 1 s of upload.
    n, sha, err = peers.send_seeded(s, 42, MiB, pace=(64 * 1024, 1 / 16))
    assert err is None and n == MiB
    t_fin = time.monotonic()
    s.shutdown(socket.SHUT_WR)
    t.join(10)
    assert rx["err"] is None and rx["len"] == MiB
    assert rx["sha"] == peers.stream_digest(41, MiB)
    assert rx["eof_at"] < t_fin, "backend FIN reached the client only " \
        "after the client stopped uploading"
    sess = lb.wait_sessions(1, timeout=1.0)[0]
    t_closed = time.monotonic()
    assert t_closed - t_fin <= 1.0 * SLACK + 0.1
    s.close()
    ev = hc.wait_events("conn")[0]
    assert ev["rx_err"] is None and ev["rx_len"] == MiB
    assert ev["rx_sha"] == peers.stream_digest(42, MiB) == sha
    assert (sess["bytes_in"], sess["bytes_out"], sess["term"]) == \
        (MiB, MiB, "--"), sess
    lb.check_nl3()


def test_client_rst_propagated(start_peer, start_shoal):
    """S05: the client uploads (of 16 MiB) 4 MiB and aborts with
    SO_LINGER {1,0}. Within 1 s the backend sees ECONNRESET (never a clean
    EOF), holding a prefix of what was sent; term CD; NL3."""
    sink = start_peer("sink")
    lb = start_shoal([sink], expect_errors=True)
    s = peers.connect(lb.addr)
    n, sha, err = peers.send_seeded(s, 50, 16 * MiB, limit=4 * MiB)
    assert err is None and n == 4 * MiB
    t_rst = time.monotonic()
    peers.rst_close(s)
    ev = sink.wait_events("conn", timeout=1.0 * SLACK + 0.5)[0]
    dt = time.monotonic() - t_rst
    assert ev["rx_err"] == "ECONNRESET", ev
    assert dt <= 1.0 * SLACK + 0.1, "backend learnt of the abort after " \
        "%.2fs" % dt
    assert ev["rx_len"] <= 4 * MiB
    assert ev["rx_sha"] == peers.stream_digest(50, ev["rx_len"])
    sess = lb.wait_sessions(1)[0]
    assert sess["term"] == "CD", sess
    lb.check_nl3()


def test_backend_rst_propagated(start_peer, start_shoal):
    """S06: the backend aborts with an RST after 4 MiB of 16 MiB. The client
    sees ECONNRESET, not a clean EOF; what it got is a prefix; term SD."""
    src = start_peer("source", "--size", 16 * MiB, "--seed", 60,
                     "--rst-after", 4 * MiB)
    lb = start_shoal([src], expect_errors=True)
    n, sha, err = peers.download(lb.addr, timeout=20)
    assert err == "ECONNRESET", "client saw %s after %d bytes" % (err, n)
    assert n <= 4 * MiB
    assert sha == peers.stream_digest(60, n)
    assert src.wait_events("conn")[0].get("rst")
    sess = lb.wait_sessions(1)[0]
    assert sess["term"] == "SD", sess
    lb.check_nl3()


def test_backend_killed_mid_transfer(start_peer, start_shoal):
    """S07: kill -9 the backend during a 256 MiB download. The client sends
    a small request the source never reads, so the kernel of the dead
    backend answers with an RST (a killed sender with nothing unread would
    send a FIN, which no proxy could tell from a normal end). The client
    sees an error, not a clean EOF, holding a prefix. Afterwards new
    connections are all served by the surviving backend."""
    size = 256 * MiB
    a = start_peer("source", "--size", size, "--seed", 70, name="a")
    b = start_peer("source", "--size", size, "--seed", 70, name="b")
    lb = start_shoal([a, b], expect_errors=True)
    s = peers.connect(lb.addr, timeout=20)
    s.sendall(b"GET\n")
    first = recv_exact(s, 8 * MiB)
    assert len(first) == 8 * MiB
    victim = lb.wait_for(lambda: [p for p in (a, b) if p.accepts()], 5,
                         what="backend accept")[0]
    survivor = b if victim is a else a
    victim.kill()
    n, sha, err = peers.read_all(s)
    s.close()
    assert err is not None, "clean EOF after %d bytes from a killed " \
        "backend" % (len(first) + n)
    assert len(first) + n < size
    assert first == peers.stream_bytes(70, len(first))
    assert sha == peers.range_digest(70, len(first), len(first) + n)
    sess = lb.wait_sessions(1)[0]
    assert sess["term"] == "SD", sess
    # The dead backend refuses now: 10 new clients still get data.
    for i in range(10):
        c = peers.connect(lb.addr, timeout=10)
        got = recv_exact(c, 64 * 1024)
        peers.rst_close(c)
        assert got == peers.stream_bytes(70, 64 * 1024), "client %d" % i
    # The peer reports its accepts asynchronously: wait for the 10th.
    survivor.wait_events("accept", 10, timeout=5)
    lb.wait_sessions(11)
    lb.check_nl3()


def pipe_fds(lb):
    return [t for t in lb.fd_targets() if "pipe:" in t]


@pytest.mark.parametrize("splice", ["yes", "no"])
def test_splice_setting(splice, start_peer, start_shoal):
    """[global] splice: a streaming download goes through pipes (splice)
    only when it is on; either way, and with io_collect set, every byte
    arrives intact, and no pipe is left once the session ends."""
    size = 32 * MiB
    src = start_peer("source", "--size", size, "--seed", 23)
    lb = start_shoal([src], global_={"splice": splice,
                                     "io_collect": "300us"})
    s = peers.connect(lb.addr, timeout=30)
    h = hashlib.sha256()
    got = 0
    try:
        # Read 4 MiB, then pause: the session is streaming and open.
        while got < 4 * MiB:
            b = s.recv(65536)
            assert b, "EOF after %d bytes" % got
            h.update(b)
            got += len(b)
        during = pipe_fds(lb)
        n, _, err = peers.read_all(s, h)
        assert err is None, err
        got += n
    finally:
        s.close()
    assert got == size and h.hexdigest() == peers.stream_digest(23, size)
    if splice == "yes":
        assert len(during) >= 2, lb.fd_targets()
    else:
        assert during == [], during
    lb.wait_sessions(1)
    # The worker has no session left: its pooled pipes are gone too.
    deadline = time.monotonic() + 5
    while pipe_fds(lb) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pipe_fds(lb) == []
    lb.check_nl3()
