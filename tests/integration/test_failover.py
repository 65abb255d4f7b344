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
    shoal does not spin (CPU < 5 % over 2.5 s). timeout_queue = 0: once
    passive health has marked both down a client would otherwise wait for
    one to come back (test_admin's test_no_eligible_server_is_a_wait)."""
    p1, p2 = alloc_port(), alloc_port()
    lb = start_shoal([("a", "127.0.0.1:%d" % p1), ("b", "127.0.0.1:%d" % p2)],
                     backend={"timeout_connect": "1s", "retries": 2,
                              "timeout_queue": "0s"},
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


def test_local_port_exhaustion_not_blamed(netns, start_peer, start_shoal):
    """Issue 12 §2.4: with this host's ephemeral ports exhausted, connect()
    fails with EADDRNOTAVAIL. That is shoal's shortage, not the server's:
    the sessions end RC, the log says what ran out (rate-limited), and the
    server is neither counted as failing nor marked down."""
    ns = netns()
    # Two ephemeral ports: shoal's third connection to the server has none.
    ns.run(["sysctl", "-q", "-w", "net.ipv4.ip_local_port_range=40000 40001"])
    e = start_peer("echo", name="e", netns=ns)
    port = 41100
    hosts = ["127.0.0.%d" % i for i in range(1, 7)]
    # Each client goes to another bind address, so the clients' own
    # ephemeral ports (unique per destination) do not run out.
    spare = "127.0.0.7"     # for the last client
    lb = start_shoal([e], binds=["%s:%d" % (h, port)
                                 for h in hosts + [spare]],
                     netns=ns, backend={"retries": 2})
    holders = []
    for h in hosts:
        p = start_peer("holder", "--count", 1, host=h, port=port, netns=ns)
        p.wait_events("ready", timeout=10 * SLACK)
        holders.append(p)
    sessions = lb.wait_sessions(4)   # 6 clients, 2 ports: 4 closed at once
    assert all(s["term"] == "RC" for s in sessions), sessions
    assert all(s["server_name"] == "e" for s in sessions), sessions
    log = lb.log()
    warns = [m for _, lvl, m in lb.log_lines()
             if lvl == "warn" and "out of local ports" in m]
    assert 1 <= len(warns) <= 2, warns      # rate-limited: 1/s
    assert "EADDRNOTAVAIL" in warns[0] or "assign requested address" \
        in warns[0], warns[0]
    assert "-> down" not in log, "the server was blamed:\n" + log[-2000:]
    # The two sessions that got a port still work; once they end, a new
    # client is served by the same server.
    for p in holders:
        p.kill()
    lb.wait_for(lambda: lb.established_on(port) == 0, 5,
                what="the held sessions closed")
    # The ports just freed sit in TIME_WAIT (reusable on loopback after
    # 1 s): try until a connection goes through, with a deadline.
    deadline = time.monotonic() + 5 * SLACK
    while True:
        cl = start_peer("client", "--count", 1, "--mode", "exchange",
                        "--size", 1000, host=spare, port=port, netns=ns)
        cl.wait_events("done", timeout=10 * SLACK)
        r = cl.conns()[0]
        if r.get("rx_len") == 1000 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert r.get("rx_err") is None and r.get("rx_len") == 1000 and \
        r.get("rx_sha") == r.get("tx_sha"), r
    assert "-> down" not in lb.log()
