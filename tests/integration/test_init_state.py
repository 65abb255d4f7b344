"""
init_state: the health a server of the config file starts with when its
backend has checks (docs/configuration.md).

- By default (`init_state = up`) a client loop that starts hitting shoal's
  port the moment it opens gets no error in the first 5 s with `check =
  http` against healthy servers; with `init_state = checking` (the old
  behaviour) the same loop gets errors until `rise` checks passed.
- An `up` server that fails its checks leaves after `fall` checks, the
  first one at once; clients never see it fail (retries).
- A `down` server (per server line) gets no traffic until `rise` checks
  pass, and is checked at once.
- Runtime additions still start `checking`: test_admin (add server) and
  test_discovery (announced servers) assert it.

Peers: conftest's http_backends (dist/demo-backend.py) and start_peer;
every wait polls with a deadline.
"""

import socket
import threading
import time

from conftest import SLACK, alloc_port, wait_for
from peers import echo_once


def http_once(addr, timeout=5.0):
    """One HTTP/1.0 GET through shoal: None if an HTTP answer came back,
    else an error string."""
    try:
        s = socket.create_connection(addr, timeout=timeout)
    except OSError as e:
        return "connect: %s" % e
    try:
        s.sendall(b"GET / HTTP/1.0\r\nHost: t\r\n\r\n")
        got = b""
        while True:
            b = s.recv(4096)
            if not b:
                break
            got += b
        return None if got.startswith(b"HTTP/1.") else \
            "closed after %d bytes" % len(got)
    except OSError as e:
        return "io: %s" % e
    finally:
        s.close()


class OpenLoop:
    """Sequential GETs from before shoal starts: refusals before the port
    first accepts are not counted; from then on, for `window` seconds,
    every failure is (a bounded loop: at most `limit` requests)."""

    def __init__(self, addr, window=5.0, limit=20000, gap=0.002):
        self.addr, self.window, self.limit, self.gap = addr, window, limit, gap
        self.t_open = None
        self.ok = 0
        self.errors = []
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        give_up = time.monotonic() + 30 * SLACK
        for _ in range(self.limit):
            now = time.monotonic()
            if self.t_open is None:
                if now > give_up:
                    return
                try:
                    socket.create_connection(self.addr, timeout=1).close()
                except OSError:
                    time.sleep(0.001)
                    continue
                self.t_open = time.monotonic()
                continue
            if now - self.t_open > self.window:
                return
            err = http_once(self.addr)
            if err is None:
                self.ok += 1
            else:
                self.errors.append((round(now - self.t_open, 3), err))
            time.sleep(self.gap)

    def join(self):
        self.t.join(60 * SLACK)
        assert not self.t.is_alive(), "client loop did not stop"
        assert self.t_open is not None, "shoal's port never opened"


def start_counted(start_shoal, servers, port, **backend):
    loop = OpenLoop(("127.0.0.1", port))
    be = {"check": "http", "timeout_connect": "1s"}
    be.update(backend)
    sh = start_shoal(servers=servers, binds=["127.0.0.1:%d" % port],
                     backend=be, wait=False)
    loop.join()
    sh.wait_ready()
    return sh, loop


def test_default_up_no_error_at_start(start_shoal, http_backends):
    """check = http, default interval: the first 5 s after the port opens
    cost no client an error (before init_state: 100-700)."""
    sh, loop = start_counted(start_shoal, http_backends, alloc_port())
    assert loop.ok > 50, "too few requests to say anything: %d" % loop.ok
    assert loop.errors == [], "%d errors in the first 5 s, first: %s" % (
        len(loop.errors), loop.errors[:3])
    assert "checking -> up" not in sh.log()


def test_checking_refuses_until_rise(start_shoal, http_backends):
    """init_state = checking keeps the old start: no server is eligible
    until `rise` checks passed, so the same loop gets errors."""
    sh, loop = start_counted(start_shoal, http_backends, alloc_port(),
                             init_state="checking", check_interval="1s",
                             timeout_queue="0ms", retries=0)
    assert loop.errors, "no error although every server was checking"
    assert loop.errors[0][0] < 1.0, loop.errors[:3]
    wait_for(lambda: sh.log().count("checking -> up") == 3,
             timeout=10 * SLACK, what="3 servers up after rise checks")


def test_up_server_that_fails_leaves_after_fall(start_shoal, start_peer):
    """A dead server starting up: the first check runs at once, it leaves
    after `fall` failures (checks at 0 and 1 s: down near 1 s, where a
    server starting `checking` would need up to 2 s), and retries hide it
    from clients meanwhile."""
    good = start_peer("echo", name="good")
    dead = ("dead", "127.0.0.1:%d" % alloc_port())
    sh = start_shoal(servers=[good, dead],
                     backend={"check": "tcp", "check_interval": "1s",
                              "fall": 2, "rise": 2},
                     allow_errors=(r"app/dead",))
    t0 = sh.t_ready
    for _ in range(10):
        assert echo_once(sh.addr) is None
    wait_for(lambda: "server app/dead: up -> down" in sh.log(),
             timeout=5 * SLACK, what="dead server down")
    took = time.monotonic() - t0
    assert took < 1.0 + 0.5 * SLACK, "down after %.2fs" % took
    assert "server app/good: up -> down" not in sh.log()


def test_down_server_waits_for_rise(start_shoal, start_peer):
    """init_state=down on a server line: no traffic until `rise` checks
    pass; the first check runs at once (up after the second, 500 ms)."""
    a = start_peer("echo", name="a")
    b = start_peer("echo", name="b")
    b.server_opts = "init_state=down"
    sh = start_shoal(servers=[a, b],
                     backend={"check": "tcp", "check_interval": "500ms",
                              "rise": 2})
    t0 = sh.t_ready
    for _ in range(10):
        assert echo_once(sh.addr) is None
    if "server app/b: down -> up" not in sh.log():
        s = sh.wait_sessions(10)
        assert {x["server_name"] for x in s} == {"a"}, s
    wait_for(lambda: "server app/b: down -> up" in sh.log(),
             timeout=5 * SLACK, what="b up after rise")
    assert time.monotonic() - t0 < 0.5 + 1.0 * SLACK

