"""
test_fault.py - fault injection for teaching (issue 16): `shoalctl set
server B/S fault delay D | reset | blackhole | none` acts on the server's
new sessions; the stats page marks it while active, /stats.json carries
it, the timeline records it. Each fault is watched through what a user
sees: the client's wait, retries on another server, passive health.
"""

import socket
import subprocess
import time

import peers
from conftest import alloc_port, wait_for
from stats_helpers import fetch, fetch_json
from test_admin import SHOALCTL, admin


def page(port):
    return fetch(port, "/").text()


def srv(port, name):
    return next(x for x in fetch_json(port)["backends"][0]["servers"]
                if x["name"] == name)


def timed(addr):
    """One session: (bytes, seconds to the first byte)."""
    t0 = time.monotonic()
    s = peers.connect(addr)
    s.shutdown(socket.SHUT_WR)
    first = s.recv(1)
    t1 = time.monotonic()
    n, _, _ = peers.read_all(s)
    s.close()
    return len(first) + n, t1 - t0


def make(start_peer, start_shoal, tmp_path, balance="roundrobin"):
    s1 = start_peer("source", "--size", "50", name="s1")
    s2 = start_peer("source", "--size", "50", name="s2")
    sp, port = alloc_port(), alloc_port()
    sock = str(tmp_path / "admin.sock")
    text = ("[global]\nthreads = 2\nlog_level = info\n[frontend web]\n"
            "bind = 127.0.0.1:%d\nbackend = app\n[backend app]\n"
            "balance = %s\ntimeout_connect = 400ms\nretries = 2\n"
            "check = tcp\ncheck_interval = 300ms\nrise = 1\nfall = 3\n"
            "init_state = up\nserver = s1 %s\nserver = s2 %s\n"
            "[stats]\nbind = 127.0.0.1:%d\n[admin]\nsocket = %s\n"
            % (port, balance, s1.addr, s2.addr, sp, sock))
    sh = start_shoal(config_text=text, binds=["127.0.0.1:%d" % port])
    return sh, sp, sock


def test_delay_shows_as_time_to_first_byte(start_peer, start_shoal,
                                           tmp_path):
    sh, sp, sock = make(start_peer, start_shoal, tmp_path)
    out = subprocess.run([SHOALCTL, "-s", sock, "set", "server", "app/s1",
                          "fault", "delay", "300ms"], capture_output=True,
                         text=True, timeout=10)
    assert out.returncode == 0 and "ok: app/s1" in out.stdout, out
    assert srv(sp, "s1")["fault"] == {"kind": "delay", "delay_ms": 300}
    row = page(sp)
    row = row[row.index('data-server="app/s1"'):]
    assert "FAULT delay 300ms" in row[:row.index("</tr>")]
    waits = [timed(sh.addr) for _ in range(6)]
    assert all(n == 50 for n, _ in waits), waits
    slow = [t for _, t in waits if t >= 0.29]
    fast = [t for _, t in waits if t < 0.2]
    assert len(slow) == 3 and len(fast) == 3, waits   # roundrobin
    sh.wait_sessions(6)
    assert srv(sp, "s1")["latency"]["ttfb"]["p50"] >= 250
    assert srv(sp, "s2")["latency"]["ttfb"]["p50"] < 100
    assert srv(sp, "s1")["latency"]["connect"]["p99"] < 100
    admin(sock, "set server app/s1 fault none")
    assert srv(sp, "s1")["fault"] is None
    assert "FAULT" not in page(sp)
    assert all(t < 0.2 for _, t in (timed(sh.addr) for _ in range(4)))
    ev = [e["text"] for e in fetch_json(sp)["events"] if e["kind"] == "fault"]
    assert ev == ["fault delay 300ms", "fault none"], ev


def test_reset_retries_and_trips_passive_health(start_peer, start_shoal,
                                                tmp_path):
    """reset: every session still succeeds (retried on s2); s1's connect
    failures count, and three in a row take it down (passive health);
    its active check, which the fault does not touch, brings it back."""
    sh, sp, sock = make(start_peer, start_shoal, tmp_path)
    admin(sock, "set server app/s1 fault reset")
    for _ in range(8):
        n, t = timed(sh.addr)
        assert n == 50 and t < 0.3
    s1 = srv(sp, "s1")
    assert s1["connect_failures"] >= 3, s1
    assert any(e["kind"] == "state" and e["server"] == "s1" and
               "-> down" in e["text"] for e in fetch_json(sp)["events"])
    admin(sock, "set server app/s1 fault none")
    wait_for(lambda: srv(sp, "s1")["state"] == "up", 10, 0.1,
             "s1 up again by its check")


def test_blackhole_waits_for_timeout_connect_then_retries(start_peer,
                                                          start_shoal,
                                                          tmp_path):
    """blackhole: a session sent to s1 waits timeout_connect (400 ms)
    and is then served by s2; none is lost."""
    sh, sp, sock = make(start_peer, start_shoal, tmp_path)
    admin(sock, "set server app/s1 fault blackhole")
    waits = [timed(sh.addr) for _ in range(4)]
    assert all(n == 50 for n, _ in waits), waits
    held = [t for _, t in waits if t >= 0.38]
    assert 1 <= len(held) <= 3, waits
    assert all(t < 1.5 for _, t in waits), waits
    assert srv(sp, "s1")["fault"] == {"kind": "blackhole"}
    assert srv(sp, "s1")["connect_failures"] >= 1


def test_bad_fault_commands_are_refused(start_peer, start_shoal, tmp_path):
    sh, sp, sock = make(start_peer, start_shoal, tmp_path)
    for line, want in [
            ("set server app/s1 fault delay", "error: usage:"),
            ("set server app/s1 fault delay 0ms", "error: bad delay"),
            ("set server app/s1 fault delay 200", "error: bad delay"),
            ("set server app/s1 fault slow", "error: usage"),
            ("set server app/nope fault reset", "error:"),
            ("set server app/s1 state drain extra", "error: usage")]:
        assert admin(sock, line).startswith(want), line
    assert srv(sp, "s1")["fault"] is None
    assert all(n == 50 for n, _ in (timed(sh.addr) for _ in range(2)))
