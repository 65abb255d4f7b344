"""
Idle timeouts: a trickling client survives (S12); idle sessions are closed
within the timeout +-20 % (S13), with the right termination code.
"""

import socket
import threading
import time

import peers
from conftest import SLACK

T = 1.0  # timeout_client and timeout_server, seconds


def time_to_close(s, since, limit=10.0):
    """Wait for the peer to close s (EOF or error); seconds since `since`,
    and how it ended."""
    s.settimeout(limit)
    try:
        while True:
            b = s.recv(65536)
            if not b:
                how = "EOF"
                break
    except OSError as e:
        how = peers.errname(e)
    return time.monotonic() - since, how


def within(dt, t):
    return 0.8 * t <= dt <= 1.2 * t + 0.05 * SLACK


def test_trickling_client_survives(start_peer, start_shoal):
    """S12: 1 byte every 0.5 x timeout for 3 x timeout (timeout_client =
    timeout_server = 1s): the session is not cut and every byte arrives."""
    echo = start_peer("echo")
    lb = start_shoal([echo], frontend={"timeout_client": "1s"},
                     backend={"timeout_server": "1s"})
    tr = start_peer("trickle", "--interval", T / 2, "--duration", 3 * T,
                    host=lb.addr[0], port=lb.port)
    ev = tr.wait_events("conn", timeout=3 * T + 10)[0]
    assert ev["rx_err"] is None, ev
    assert ev["tx_len"] >= 5 and ev["rx_len"] == ev["tx_len"], ev
    assert ev["rx_sha"] == ev["tx_sha"]
    s = lb.wait_sessions(1)[0]
    assert s["term"] == "--" and s["bytes_in"] == ev["tx_len"], s
    lb.check_nl3()


def test_idle_sessions_closed(start_peer, start_shoal):
    """S13: timeout_client = timeout_server = 1s. A client that says
    nothing, and one that goes quiet after 1 KiB (echoed back), are both
    closed 1s +-20 % after their last activity; NL3."""
    echo = start_peer("echo")
    lb = start_shoal([echo], frontend={"timeout_client": "1s"},
                     backend={"timeout_server": "1s"})
    out = {}

    def silent():
        t0 = time.monotonic()
        s = peers.connect(lb.addr)
        out["silent"] = time_to_close(s, t0)
        s.close()

    def quiet_after_1k():
        s = peers.connect(lb.addr)
        s.sendall(peers.stream_bytes(5, 1024))
        got = b""
        while len(got) < 1024:
            b = s.recv(1024 - len(got))
            assert b
            got += b
        t0 = time.monotonic()
        out["quiet"] = time_to_close(s, t0)
        out["echo_ok"] = got == peers.stream_bytes(5, 1024)
        s.close()

    ts = [threading.Thread(target=f) for f in (silent, quiet_after_1k)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(15)
    assert out["echo_ok"]
    for k in ("silent", "quiet"):
        dt, how = out[k]
        assert within(dt, T), "%s connection closed after %.3fs (%s)" % (
            k, dt, how)
    sessions = lb.wait_sessions(2)
    assert all(s["term"] in ("cD", "sD") for s in sessions), sessions
    lb.check_nl3()


def test_client_idle_timeout_term(start_peer, start_shoal):
    """S13: timeout_client = 1s < timeout_server = 5s: a silent client is
    closed after 1s +-20 %, term cD."""
    echo = start_peer("echo")
    lb = start_shoal([echo], frontend={"timeout_client": "1s"},
                     backend={"timeout_server": "5s"})
    t0 = time.monotonic()
    s = peers.connect(lb.addr)
    dt, how = time_to_close(s, t0)
    s.close()
    assert within(dt, T), "closed after %.3fs (%s)" % (dt, how)
    sess = lb.wait_sessions(1)[0]
    assert sess["term"] == "cD", sess
    lb.check_nl3()


def test_server_idle_timeout_term(start_peer, start_shoal):
    """S13: timeout_server = 1s < timeout_client = 5s: after a 1 KiB
    exchange both sides go quiet; closed after 1s +-20 %, term sD."""
    echo = start_peer("echo")
    lb = start_shoal([echo], frontend={"timeout_client": "5s"},
                     backend={"timeout_server": "1s"})
    s = peers.connect(lb.addr)
    s.sendall(b"x" * 1024)
    got = 0
    while got < 1024:
        got += len(s.recv(4096))
    t0 = time.monotonic()
    dt, how = time_to_close(s, t0)
    s.close()
    assert within(dt, T), "closed after %.3fs (%s)" % (dt, how)
    sess = lb.wait_sessions(1)[0]
    assert sess["term"] == "sD", sess
    lb.check_nl3()


def test_half_closed_session_idle_timeout(start_peer, start_shoal):
    """S13 (half-closed): the client sends its request and SHUT_WR; the
    backend (a tag server that holds the connection) never answers more.
    The session does not linger: it is closed by an idle timeout."""
    tag = start_peer("tag", name="t")
    lb = start_shoal([tag], frontend={"timeout_client": "1s"},
                     backend={"timeout_server": "1s"})
    s = peers.connect(lb.addr)
    assert peers.read_line(s) == "t"
    t0 = time.monotonic()
    s.shutdown(socket.SHUT_WR)
    # The tag server reads to EOF and closes once shoal forwards the FIN,
    # so this closes at once; with no FIN forwarded, the idle timeout
    # closes it. Either way it must end within the timeout.
    dt, how = time_to_close(s, t0)
    s.close()
    assert dt <= 1.2 * T + 0.05 * SLACK, "closed after %.3fs" % dt
    lb.wait_sessions(1)
    lb.check_nl3()
