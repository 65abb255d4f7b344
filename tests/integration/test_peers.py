"""
Self-tests of the harness peers, without shoal: a broken peer must not be
mistaken for a broken load balancer.
"""

import socket
import time

import pytest

import peers

pytestmark = pytest.mark.peers_only
MiB = 1 << 20


def test_seeded_stream_prefix_property():
    a = peers.stream_bytes(1, MiB + 5)
    b = peers.stream_bytes(1, 1000)
    assert a[:1000] == b
    assert peers.stream_digest(1, 1000) == peers.range_digest(1, 0, 1000)
    import hashlib
    assert peers.range_digest(1, 10, MiB + 5) == \
        hashlib.sha256(a[10:]).hexdigest()


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_echo_exact(host, start_peer):
    e = start_peer("echo", host=host)
    for size in (0, 1, 65537, 4 * MiB):
        r = peers.exchange(e.sockaddr, size, 9)
        assert r["rx_err"] is None and r["tx_err"] is None
        assert r["rx_sha"] == r["tx_sha"] == peers.stream_digest(9, size)
    evs = e.wait_events("conn", 4)
    assert [x["rx_len"] for x in evs] == [0, 1, 65537, 4 * MiB]


def test_source_sink_and_rst(start_peer):
    src = start_peer("source", "--size", 3 * MiB + 7, "--seed", 4)
    n, sha, err = peers.download(src.sockaddr)
    assert (n, sha, err) == (3 * MiB + 7, peers.stream_digest(4, n), None)
    assert src.wait_events("sent")[0]["tx_len"] == n
    rst = start_peer("source", "--size", 8 * MiB, "--rst-after", MiB)
    n, sha, err = peers.download(rst.sockaddr)
    assert err == "ECONNRESET" and n <= MiB
    assert sha == peers.stream_digest(1, n)
    sink = start_peer("sink", "--reply-size", 1000, "--reply-seed", 6)
    r = peers.upload(sink.sockaddr, 2 * MiB, 5)
    assert r["rx_sha"] == peers.stream_digest(6, 1000)
    ev = sink.wait_events("conn")[0]
    assert ev["rx_sha"] == peers.stream_digest(5, 2 * MiB)
    rsink = start_peer("sink", "--rst-after", 65536)
    s = peers.connect(rsink.sockaddr)
    n, _, err = peers.send_seeded(s, 1, 16 * MiB)
    s.close()
    assert err in ("ECONNRESET", "EPIPE"), err


def test_rst_er(start_peer):
    r0 = start_peer("rst")
    n, _, err = peers.download(r0.sockaddr)
    assert n == 0 and err == "ECONNRESET"
    r1 = start_peer("rst", "--size", 4 * MiB, "--rst-after", 100000)
    n, sha, err = peers.download(r1.sockaddr)
    assert err == "ECONNRESET" and n <= 100000
    assert sha == peers.stream_digest(1, n)


def test_client_rst_seen_by_sink(start_peer):
    sink = start_peer("sink")
    s = peers.connect(sink.sockaddr)
    s.sendall(b"x" * 1000)
    peers.rst_close(s)
    assert sink.wait_events("conn")[0]["rx_err"] == "ECONNRESET"


def test_banner_tag_halfclose(start_peer):
    b = start_peer("banner", "--banner", "HI\n")
    s = peers.connect(b.sockaddr)
    assert peers.read_line(s) == "HI"
    s.close()
    t = start_peer("tag", "--close", name="zz")
    assert peers.read_tag(t.sockaddr) == "zz"
    h = start_peer("halfclose", "--size", MiB, "--seed", 3)
    s = peers.connect(h.sockaddr)
    n, sha, err = peers.read_all(s)
    assert (n, sha, err) == (MiB, peers.stream_digest(3, MiB), None)
    s.sendall(b"more")
    s.shutdown(socket.SHUT_WR)
    ev = h.wait_events("conn")[0]
    assert ev["rx_len"] == 4 and ev["rx_err"] is None
    s.close()


def test_holder_reports_closes(start_peer):
    e = start_peer("echo")
    hd = start_peer("holder", "--count", 5, host="127.0.0.1", port=e.port)
    assert hd.wait_events("ready")[0]["connected"] == 5
    e.kill()
    closed = hd.wait_events("closed", 5)
    assert all(c["how"] in ("EOF", "ECONNRESET") for c in closed)


def test_client_and_trickle(start_peer):
    t = start_peer("tag", "--close", name="q")
    cl = start_peer("client", "--count", 3, host="127.0.0.1", port=t.port)
    cl.wait_events("done")
    assert [c["tag"] for c in cl.conns()] == ["q"] * 3
    e = start_peer("echo")
    t0 = time.monotonic()
    tr = start_peer("trickle", "--interval", 0.1, "--duration", 0.5,
                    host="127.0.0.1", port=e.port)
    ev = tr.wait_events("conn")[0]
    assert ev["rx_sha"] == ev["tx_sha"] and ev["tx_len"] >= 4
    assert time.monotonic() - t0 < 5
