"""
Limits: connect-and-say-nothing flood against maxconn (S14), fd exhaustion
under prlimit (S15), per-server maxconn and the queue (S20).
"""

import re
import threading
import time

import pytest

import peers
from conftest import SLACK

EMFILE_RE = re.compile(r"(?i)emfile|too many open files")


@pytest.mark.parametrize("where", ["global", "frontend"])
def test_say_nothing_flood(where, start_peer, start_shoal):
    """S14: 2 x maxconn holders connect and say nothing (maxconn = 20 in
    [global], or 10 in the frontend). shoal never holds more than maxconn
    client sessions (ss: its established sockets on the frontend port); the
    rest wait in the listen backlog. The holders are closed by
    timeout_client (1s); a normal client, queued in the backlog behind the
    second wave of holders, is served within 2 x timeout_client + 1 s.
    CPU < 20 %."""
    maxconn = 20 if where == "global" else 10
    echo = start_peer("echo")
    fe = {"timeout_client": "1s"}
    g = {}
    if where == "global":
        g["maxconn"] = maxconn
    else:
        fe["maxconn"] = maxconn
    lb = start_shoal([echo], frontend=fe, global_=g,
                     backend={"timeout_server": "10s"})
    cpu0 = lb.cpu_seconds()
    w0 = time.monotonic()
    holders = start_peer("holder", "--count", 2 * maxconn,
                         host=lb.addr[0], port=lb.port)
    ready = holders.wait_events("ready")[0]
    assert ready["connected"] == 2 * maxconn, ready
    res = {}

    def normal_client():
        t0 = time.monotonic()
        try:
            r = peers.exchange(lb.addr, 1024, 77, timeout=10)
            res.update(r)
        except OSError as e:
            res["err"] = peers.errname(e)
        res["served_after"] = time.monotonic() - t0

    t = threading.Thread(target=normal_client, daemon=True)
    t.start()
    peak = 0
    deadline = time.monotonic() + 10 * SLACK
    while (t.is_alive() or len(holders.select("closed")) < 2 * maxconn) \
            and time.monotonic() < deadline:
        peak = max(peak, lb.established_on(lb.port))
        time.sleep(0.05)
    t.join(1)
    assert peak <= maxconn, "shoal held %d client sessions (maxconn %d)" % (
        peak, maxconn)
    assert peak >= maxconn // 2, "only %d sessions were accepted" % peak
    assert res.get("rx_sha") == peers.stream_digest(77, 1024), res
    assert res["served_after"] <= 2 * 1.0 + 1.0 * SLACK, res
    closed = holders.wait_events("closed", 2 * maxconn, timeout=5 * SLACK)
    assert all(c["after"] <= 2 * 1.2 + 0.5 * SLACK for c in closed), closed
    cpu = lb.cpu_seconds() - cpu0
    wall = time.monotonic() - w0
    assert cpu < 0.2 * wall, "CPU %.2fs over %.2fs" % (cpu, wall)
    terms = {s["term"] for s in lb.wait_sessions(2 * maxconn + 1)}
    assert terms <= {"cD", "--"}, terms
    lb.check_nl3()


@pytest.mark.parametrize("nofile", [64, 65])
def test_emfile(nofile, start_peer, start_shoal):
    """S15: shoal under prlimit --nofile=64:64 (and 65, so that the last
    free fd is hit by accept() in one case and by the backend socket() in
    the other); 200 holders connect and stay. shoal survives, does not spin
    (CPU over 5 s < 0.5 s), logs about EMFILE at most once a second, and
    after the holders close serves a new client within 1 s."""
    echo = start_peer("echo")
    lb = start_shoal([echo], prefix=["prlimit", "--nofile=%d:%d" % (
                         nofile, nofile)],
                     frontend={"timeout_client": "60s"},
                     backend={"timeout_server": "60s"},
                     allow_errors=[EMFILE_RE.pattern])
    holders = start_peer("holder", "--count", 200, "--connect-timeout", 5,
                         host=lb.addr[0], port=lb.port)
    ready = holders.wait_events("ready", timeout=15)[0]
    assert ready["connected"] >= 100, ready
    # Wait until shoal has taken what it can (fd count stable for 0.3 s).
    hist = []

    def settled():
        hist.append(lb.fd_count())
        return len(hist) >= 6 and len(set(hist[-6:])) == 1
    lb.wait_for(settled, 5, interval=0.05, what="fd count to settle")
    fds = lb.fd_count()
    log0 = len(lb.log())
    window = 5.0
    cpu = lb.cpu_over(window)
    assert lb.alive()
    new_log = lb.log()[log0:]
    emfile_lines = [l for l in new_log.splitlines() if EMFILE_RE.search(l)]
    assert cpu < 0.5, "CPU %.2fs over %.0fs at the fd limit (fds %d)" % (
        cpu, window, fds)
    assert len(emfile_lines) <= window + 1, \
        "%d EMFILE log lines in %.0fs" % (len(emfile_lines), window)
    held = lb.established_on(lb.port)
    assert held < 200, "shoal holds %d sessions with 64 fds" % held
    holders.stop()
    t0 = time.monotonic()
    r = None
    while time.monotonic() - t0 < 5 * SLACK:
        try:
            r = peers.exchange(lb.addr, 1024, 88, timeout=5 * SLACK)
            if r["rx_sha"] == peers.stream_digest(88, 1024):
                break
        except OSError:
            pass
        time.sleep(0.02)
    served = time.monotonic() - t0
    assert r and r["rx_sha"] == peers.stream_digest(88, 1024), r
    assert served <= 1.0 * SLACK, "served %.2fs after the holders closed" \
        % served
    lb.check_nl3(timeout=5)


def test_server_maxconn_spills_to_other(start_peer, start_shoal):
    """S20: server a has maxconn=1 and holds one long connection; 10 new
    clients (held open together) all go to b, none waits for the queue."""
    a = start_peer("tag", name="a")
    a.server_opts = "maxconn=1"
    b = start_peer("tag", name="b")
    lb = start_shoal([a, b], backend={"timeout_queue": "2s"})
    held = []
    try:
        for _ in range(3):
            s, t = peers.open_tagged(lb.addr)
            held.append(s)
            if t == "a":
                break
        else:
            pytest.fail("no connection reached server a")
        nb = len(held) - 1
        for i in range(10):
            t0 = time.monotonic()
            s, t = peers.open_tagged(lb.addr, timeout=5)
            dt = time.monotonic() - t0
            held.append(s)
            assert t == "b", "client %d went to %s" % (i, t)
            assert dt < 0.5 * SLACK, "client %d waited %.2fs" % (i, dt)
    finally:
        for s in held:
            s.close()
    sessions = lb.wait_sessions(11 + nb)
    assert sum(1 for s in sessions if s["server_name"] == "a") == 1
    lb.check_nl3()


def hold_both(lb):
    held = {}
    for _ in range(4):
        s, t = peers.open_tagged(lb.addr)
        if t in held:
            s.close()
        else:
            held[t] = s
        if len(held) == 2:
            return held
    raise AssertionError("could not hold a and b: %s" % list(held))


def test_server_maxconn_queue_timeout(start_peer, start_shoal):
    """S20: every server full (maxconn=1 each, both held): a new client is
    closed after timeout_queue (1s +-20 %) without reaching a server; term
    sQ."""
    a = start_peer("tag", name="a")
    b = start_peer("tag", name="b")
    a.server_opts = b.server_opts = "maxconn=1"
    lb = start_shoal([a, b], backend={"timeout_queue": "1s"},
                     expect_errors=True)
    held = hold_both(lb)
    closed_before = len(lb.sessions())
    try:
        t0 = time.monotonic()
        s = peers.connect(lb.addr)
        data = b""
        s.settimeout(10)
        try:
            while True:
                x = s.recv(100)
                if not x:
                    break
                data += x
        except OSError:
            pass
        dt = time.monotonic() - t0
        s.close()
        assert data == b"", "queued client got %r" % data
        assert 0.8 <= dt <= 1.2 + 0.05 * SLACK, "closed after %.3fs" % dt
        sq = lb.wait_sessions(closed_before + 1)[-1]
        assert sq["term"] == "sQ", sq
    finally:
        for s in held.values():
            s.close()
    lb.wait_sessions(closed_before + 3)
    lb.check_nl3()


def test_server_maxconn_queue_served(start_peer, start_shoal):
    """S20: every server full; a new client waits in the queue and is
    served by the server whose slot frees up, well within timeout_queue."""
    a = start_peer("tag", name="a")
    b = start_peer("tag", name="b")
    a.server_opts = b.server_opts = "maxconn=1"
    lb = start_shoal([a, b], backend={"timeout_queue": "3s"})
    held = hold_both(lb)
    out = {}

    def queued():
        t0 = time.monotonic()
        s, t = peers.open_tagged(lb.addr, timeout=10)
        out.update(tag=t, at=time.monotonic(), waited=time.monotonic() - t0)
        s.close()

    def to_server(port):
        return len([l for l in lb.ss(("ESTAB",))
                    if l.split()[4].endswith(":%d" % port)])

    th = threading.Thread(target=queued, daemon=True)
    th.start()
    # Queued: shoal accepted the client (3 client sessions) but opened
    # nothing more to the servers (still the one held session each).
    lb.wait_for(lambda: lb.established_on(lb.port) == 3, 5,
                what="the third client accepted")
    assert to_server(a.port) == 1 and to_server(b.port) == 1, \
        lb.ss(("ESTAB",))
    assert not out, "client was not queued: %s" % out
    t_free = time.monotonic()
    held.pop("a").close()
    th.join(5)
    for s in held.values():
        s.close()
    assert out.get("tag") == "a", out
    assert out["at"] - t_free <= 0.5 * SLACK, out
    lb.wait_sessions(3)
    lb.check_nl3()
