"""
test_announce.py - shoal-announce's wrapper mode (-- CMD) and --target name
resolution, on loopback: a real shoal, a real announcer, and a small Python
service as the announcer's child.
"""

import os
import re
import signal
import socket
import sys
import time

import pytest

from conftest import SLACK, alloc_port, fmt_hostport, wait_for
from discovery_helpers import (Announcer, discovery_config, free_udp_port,
                               wait_line, write_keyfile, log_index)

KEY = bytes(range(0x20, 0x40))
REALM = "lab4w"

# The child: listens on argv[1], answers each connection with "hi\n" and
# keeps it until the peer closes; records signals in argv[2]; on SIGTERM
# exits with status 7 (so the announcer's exit status can be checked).
CHILD = r"""
import os, signal, socket, sys, threading, time
port, rec = int(sys.argv[1]), sys.argv[2]
exit_after = float(sys.argv[3]) if len(sys.argv) > 3 else 0
def note(what):
    with open(rec, "a") as f:
        f.write("%s %.3f\n" % (what, time.monotonic()))
signal.signal(signal.SIGTERM, lambda *_: (note("TERM"), os._exit(7)))
signal.signal(signal.SIGHUP, lambda *_: note("HUP"))
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen(64)
note("started")
if exit_after:
    time.sleep(exit_after)
    sys.exit(3)
def serve(c):
    try:
        c.sendall(b"hi\n")
        while c.recv(1024):
            pass
    except OSError:
        pass
    c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""


@pytest.fixture
def setup(start_shoal, tmp_path):
    dport = free_udp_port()
    keyfile = write_keyfile(tmp_path, {1: KEY})
    bind = fmt_hostport("127.0.0.1", alloc_port())
    cfg = discovery_config(
        bind, dport,
        backend=[("check", "tcp"), ("check_interval", "200ms"), ("rise", 1)],
        discovery=[("interface", "lo"), ("realm", REALM),
                   ("key_file", keyfile), ("allow", "127.0.0.0/8")])
    sh = start_shoal(config_text=cfg, binds=[bind])
    made = []

    def announcer(port, extra=(), child_args=(), env=None, target=None,
                  prefix=()):
        rec = os.path.join(str(tmp_path), "child-%d.rec" % port)
        args = ["--pool", "app", "--port", port, "--interval", "300ms",
                "--target", target or "127.0.0.1:%d" % dport,
                "--addr", "127.0.0.1", "--key-file", keyfile,
                "--realm", REALM] + list(extra)
        if child_args is not None:
            args += ["--", sys.executable, "-c", CHILD, str(port), rec] + \
                list(child_args)
        old = dict(os.environ)
        if env:
            os.environ.update(env)
        try:
            a = Announcer(args, tmp_path, "w%d" % port, prefix=prefix)
        finally:
            os.environ.clear()
            os.environ.update(old)
        a.rec = rec
        made.append(a)
        return a

    yield sh, announcer, dport
    for a in made:
        a.cleanup()


def rec_of(a):
    try:
        with open(a.rec) as f:
            return [ln.split()[0] for ln in f]
    except FileNotFoundError:
        return []


def connect_through(sh):
    c = socket.create_connection(sh.addr, timeout=2)
    assert c.recv(3) == b"hi\n"
    return c


def test_wrapper_drains_then_stops_child(setup):
    sh, announcer, _ = setup
    port = alloc_port()
    a = announcer(port)
    name = "127.0.0.1:%d" % port
    wait_line(sh, r"server app/%s: checking -> up|server app/%s: added"
              % (name, name), 3 * SLACK)
    held = wait_for(lambda: _try(connect_through, sh), 5 * SLACK,
                    what="a session through shoal")
    i0 = log_index(sh)
    t0 = time.monotonic()
    a.signal(signal.SIGTERM)
    wait_line(sh, r"server app/%s: removed \(leave\)" % name, 1 * SLACK,
              start=i0)
    # The session is still open: the child must not have been told to stop.
    time.sleep(1.0)
    assert "TERM" not in rec_of(a)
    assert a.proc.poll() is None
    held.close()
    assert a.wait(5 * SLACK) == 7       # the child's status
    took = time.monotonic() - t0
    assert rec_of(a).count("TERM") == 1
    assert "drained in" in a.log()
    assert took < 1.0 + 2.0 * SLACK, took


def test_wrapper_drain_timeout(setup):
    sh, announcer, _ = setup
    port = alloc_port()
    a = announcer(port, extra=["--drain-timeout", "700ms"])
    wait_for(lambda: _try(connect_through, sh), 5 * SLACK,
             what="a session through shoal")
    held = connect_through(sh)
    try:
        t0 = time.monotonic()
        a.signal(signal.SIGTERM)
        assert a.wait(5 * SLACK) == 7
        took = time.monotonic() - t0
        assert 0.7 <= took < 0.7 + 1.5 * SLACK, took
        assert re.search(r"--drain-timeout: \d+ connections? to port %d "
                         r"still open" % port, a.log()), a.log()
    finally:
        held.close()


def test_wrapper_child_exit_leaves_and_returns_status(setup):
    sh, announcer, _ = setup
    port = alloc_port()
    a = announcer(port, child_args=["1.5"])
    name = "127.0.0.1:%d" % port
    wait_line(sh, r"server app/%s: added" % name, 3 * SLACK)
    i0 = log_index(sh)
    assert a.wait(5 * SLACK) == 3
    wait_line(sh, r"server app/%s: removed \(leave\)" % name, 1 * SLACK,
              start=i0)
    assert "the service exited by itself (status 3)" in a.log()


def test_wrapper_forwards_sighup(setup):
    sh, announcer, _ = setup
    port = alloc_port()
    a = announcer(port)
    wait_for(lambda: "started" in rec_of(a), 5 * SLACK, what="child")
    a.signal(signal.SIGHUP)
    wait_for(lambda: "HUP" in rec_of(a), 2 * SLACK, what="HUP passed on")
    assert a.proc.poll() is None
    a.signal(signal.SIGTERM)
    assert a.wait(5 * SLACK) == 7


def test_wrapper_bad_command(setup):
    sh, announcer, _ = setup
    port = alloc_port()
    a = announcer(port, child_args=None,
                  extra=["--", "/nonexistent/command"])
    assert a.wait(5 * SLACK) == 127
    assert "cannot run /nonexistent/command" in a.log()


def test_target_name_resolved_again(setup, tmp_path):
    """A --target name that does not resolve at start is looked up again
    (every 5 s) and used as soon as it resolves."""
    sh, announcer, dport = setup
    hosts = os.path.join(str(tmp_path), "hosts")
    with open(hosts, "w") as f:
        f.write("127.0.0.1 localhost\n")
    # DNS questions for the name go to loopback, not to the host's servers.
    resolv = os.path.join(str(tmp_path), "resolv.conf")
    with open(resolv, "w") as f:
        f.write("nameserver 127.0.0.1\n")
    port = alloc_port()
    a = announcer(port, target="balancer.test:%d" % dport,
                  env={"CARES_HOSTS": hosts},
                  prefix=["unshare", "--mount", "sh", "-c",
                          'mount --bind "$0" /etc/resolv.conf && exec "$@"',
                          resolv])
    name = "127.0.0.1:%d" % port
    wait_for(lambda: "does not resolve" in a.log(), 3 * SLACK,
             what="the failed lookup logged")
    with open(hosts, "a") as f:
        f.write("127.0.0.1 balancer.test\n")
    t0 = time.monotonic()
    wait_line(sh, r"server app/%s: added" % name, 7 * SLACK)
    assert time.monotonic() - t0 < 6.5 * SLACK
    assert "--target balancer.test:%d: sending to 127.0.0.1" % dport \
        in a.log()
    a.signal(signal.SIGTERM)
    assert a.wait(5 * SLACK) == 7


def _try(fn, *args):
    try:
        return fn(*args)
    except (OSError, AssertionError):
        return None
