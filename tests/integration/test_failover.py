"""
Failover: refused backend (S08), blackholed backend inside a network
namespace (S09), no backend alive, refused or blackholed (S10).
"""

import hashlib
import time

import peers
from conftest import SLACK, alloc_port


def blackhole(ns, ports):
    """nft rule in namespace ns: drop every packet to these TCP ports, so
    a connect() to them hangs until shoal's timeout_connect."""
    ns.nft("""
table inet shoaltest {
    chain out {
        type filter hook output priority 0; policy accept;
        tcp dport { %s } drop
    }
}
""" % ", ".join(str(p) for p in ports))


def test_refused_backend_failover(start_peer, start_shoal):
    """S08: server a has no listener, b is up; 100 sequential clients all
    succeed through b; the session log shows the retries (never more than
    configured) and no session on a."""
    dead = alloc_port()
    b = start_peer("tag", "--close", name="b")
    lb = start_shoal([("a", "127.0.0.1:%d" % dead), b],
                     backend={"retries": 2}, expect_errors=True)
    t0 = time.monotonic()
    got = [peers.read_tag(lb.addr) for _ in range(100)]
    elapsed = time.monotonic() - t0
    assert got == ["b"] * 100, [g for g in got if g != "b"]
    assert elapsed < 20 * SLACK
    sessions = lb.wait_sessions(100)
    assert all(s["server"] == "app/b" and s["term"] == "--"
               for s in sessions), [s for s in sessions
                                    if s["server"] != "app/b"][:3]
    assert all(0 <= s["retries"] <= 2 for s in sessions)
    assert any(s["retries"] >= 1 for s in sessions), \
        "no session shows a retry although a refuses"
    lb.check_nl3()


def test_first_bytes_survive_refused_retry(start_peer, start_shoal):
    """The client's first bytes, read while connecting and sent right after
    connect(), are kept when that send finds the server refusing: the next
    server gets them intact (also when the client's FIN came with them,
    before the connect), and no session is cut."""
    dead = alloc_port()
    b = start_peer("echo", name="b")
    lb = start_shoal([("a", "127.0.0.1:%d" % dead), b],
                     backend={"retries": 2}, expect_errors=True)
    n = 20
    for i in range(n):
        size = 100 + 997 * i
        r = peers.exchange(lb.addr, size, 50 + i)
        assert r["tx_err"] is None and r["rx_err"] is None, r
        assert r["rx_len"] == size, r
        assert r["rx_sha"] == peers.stream_digest(50 + i, size), r
    # Bytes and FIN already sent when shoal accepts.
    for i in range(n):
        msg = b"early %d\n" % i
        got = peers.download(lb.addr, request=msg, shut=True, timeout=10)
        assert got == (len(msg), hashlib.sha256(msg).hexdigest(), None), got
    sessions = lb.wait_sessions(2 * n)
    assert all(x["server"] == "app/b" and x["term"] == "--"
               for x in sessions), [x for x in sessions
                                    if x["term"] != "--"][:3]
    assert any(x["retries"] >= 1 for x in sessions), \
        "no session shows a retry although a refuses"
    lb.check_nl3()


def test_blackholed_backend_netns(netns, start_peer, start_shoal):
    """S09: in a namespace of its own, an nft rule drops everything to
    server a's port. With timeout_connect = 500ms every client is served by
    b; each connection costs at most timeout_connect + 200 ms; sessions that
    tried a show retries=1."""
    ns = netns()
    a = start_peer("tag", "--close", name="a", netns=ns)
    b = start_peer("tag", "--close", name="b", netns=ns)
    blackhole(ns, [a.port])
    tc = 0.5
    lb = start_shoal([a, b], netns=ns, expect_errors=True,
                     backend={"timeout_connect": "500ms", "retries": 1})
    n = 8
    cl = start_peer("client", "--count", n, "--mode", "tag",
                    "--timeout", 10, host=lb.addr[0], port=lb.port,
                    netns=ns)
    cl.wait_events("done", timeout=n * (tc + 0.5) * SLACK + 5)
    res = cl.conns()
    assert len(res) == n
    assert [r.get("tag") for r in res] == ["b"] * n, res
    worst = max(r["total"] for r in res)
    assert worst <= tc + 0.2 * SLACK, "p100 latency %.3fs > " \
        "timeout_connect + 200ms: %s" % (worst, [r["total"] for r in res])
    sessions = lb.wait_sessions(n)
    assert all(s["server"] == "app/b" for s in sessions), sessions
    retried = [s for s in sessions if s["retries"] == 1]
    assert retried, "no session went through the blackholed server first"
    assert len(a.accepts()) == 0
    lb.check_nl3()


def test_no_backend_refused(start_shoal):
    """S10: both servers refuse. 50 clients are closed at once (well within
    timeout_connect x (retries+1) + 200 ms); term SC, server app/-; then
    shoal does not spin (CPU < 5 % over 2.5 s)."""
    p1, p2 = alloc_port(), alloc_port()
    lb = start_shoal([("a", "127.0.0.1:%d" % p1), ("b", "127.0.0.1:%d" % p2)],
                     backend={"timeout_connect": "1s", "retries": 2},
                     expect_errors=True)
    bound = 1.0 * 3 + 0.2
    worst = 0.0
    for i in range(50):
        t0 = time.monotonic()
        n, sha, err = peers.download(lb.addr, timeout=bound * SLACK + 2)
        dt = time.monotonic() - t0
        worst = max(worst, dt)
        assert n == 0 and err != "TIMEOUT", (i, err)
    assert worst <= 0.2 * SLACK, "refused backends: a client waited " \
        "%.3fs" % worst
    sessions = lb.wait_sessions(50)
    assert all(s["term"] == "SC" for s in sessions), sessions[:3]
    assert all(s["server"] == "app/-" for s in sessions), sessions[:3]
    assert all(s["retries"] <= 2 for s in sessions)
    lb.check_nl3()
    cpu = lb.cpu_over(2.5)
    assert cpu < 0.05 * 2.5, "shoal used %.2fs CPU in 2.5s idle" % cpu
    assert lb.alive()


def test_no_backend_blackholed_netns(netns, start_peer, start_shoal):
    """S10 (blackholed): both servers' ports are dropped; with
    timeout_connect = 300ms and retries = 1, every client is closed within
    300ms x 2 + 200 ms (term sC, or SC once passive failure detection has
    marked both down); shoal does not spin afterwards."""
    ns = netns()
    p1, p2 = 41001, 41002
    blackhole(ns, [p1, p2])
    lb = start_shoal([("a", "127.0.0.1:%d" % p1), ("b", "127.0.0.1:%d" % p2)],
                     netns=ns, expect_errors=True,
                     backend={"timeout_connect": "300ms", "retries": 1})
    n = 4
    cl = start_peer("client", "--count", n, "--mode", "tag",
                    "--timeout", 10, host=lb.addr[0], port=lb.port,
                    netns=ns)
    cl.wait_events("done", timeout=20 * SLACK)
    res = cl.conns()
    assert len(res) == n
    bound = 0.3 * 2 + 0.2 * SLACK
    for r in res:
        assert r.get("tag") == "" and r.get("err") in (None, "ECONNRESET"), r
        assert r["total"] <= bound, "client closed after %.3fs > %.3fs" % (
            r["total"], bound)
    # The first client found both servers fresh: two timed-out attempts.
    assert res[0]["total"] >= 0.5, "closed before both connects timed " \
        "out: %s" % res[0]
    sessions = lb.wait_sessions(n)
    assert sessions[0]["term"] == "sC" and sessions[0]["retries"] == 1, \
        sessions[0]
    # Later ones may find the servers passively marked down (then SC at
    # once, without an attempt).
    assert all(s["term"] in ("sC", "SC") and s["retries"] <= 1
               for s in sessions), sessions
    lb.check_nl3()
    cpu = lb.cpu_over(2.0)
    assert cpu < 0.05 * 2.0, "shoal used %.2fs CPU in 2s idle" % cpu
