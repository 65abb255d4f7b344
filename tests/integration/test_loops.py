"""
Forwarding loops (issue 12, 2.10): a server that is one of shoal's own
binds would send every session back to shoal, each one making another,
until maxconn. It is refused wherever it comes from:

- a server line: `shoal -t` and the start fail with FILE:LINE, and a reload
  bringing one is refused (the old config keeps serving);
- `add server` on the admin socket: an error, the table unchanged;
- an announcement: verdict `policy`, counted, the table unchanged.

Both a bind's own address and, for a wildcard bind, a loopback address on
its port count. Peers: conftest's start_peer; every wait polls with a
deadline.
"""

import os
import signal
import socket
import subprocess

from conftest import SHOAL_BUILD, SLACK, alloc_port, wait_for
from discovery_helpers import counters, discovery_config, free_udp_port
import discovery_wire as wire
from test_admin import admin, admin_config, servers_table, sock_path

SHOAL = os.path.join(SHOAL_BUILD, "shoal")


def check(tmp_path, text):
    path = os.path.join(str(tmp_path), "loop.ini")
    with open(path, "w") as f:
        f.write(text)
    return path, subprocess.run([SHOAL, "-t", "-c", path],
                                capture_output=True, text=True, timeout=10)


def test_server_line_is_own_bind(tmp_path):
    port = alloc_port()
    for bind, server in (("127.0.0.1:%d" % port, "127.0.0.1:%d" % port),
                         ("0.0.0.0:%d" % port, "127.0.0.2:%d" % port),
                         ("[::]:%d" % port, "[::1]:%d" % port)):
        text = ("[frontend web]\nbind = %s\nbackend = app\n"
                "[backend app]\nserver = ok 127.0.0.1:%d\n"
                "server = self %s\n" % (bind, alloc_port(), server))
        path, r = check(tmp_path, text)
        want = ("%s:6: server app/self %s is shoal's own listen address "
                "(bind at line 2): every session would loop"
                % (path, server))
        assert r.returncode != 0 and want in r.stderr, (bind, r.stderr)
        # The start refuses it the same way, before binding anything.
        s = subprocess.run([SHOAL, "-c", path], capture_output=True,
                           text=True, timeout=10)
        assert s.returncode != 0 and want in s.stderr, s.stderr
    # Another port of the same address is no loop.
    text = ("[frontend web]\nbind = 127.0.0.1:%d\nbackend = app\n"
            "[backend app]\nserver = s 127.0.0.1:%d\n" % (port, port + 1))
    _, r = check(tmp_path, text)
    assert r.returncode == 0, r.stderr


def test_reload_and_admin_refuse_own_bind(start_peer, start_shoal,
                                          tmp_path):
    e = start_peer("echo", name="e1")
    sock = sock_path(tmp_path)
    bind = "127.0.0.1:%d" % alloc_port()
    sh = start_shoal(config_text=admin_config(sock, bind, [e]), binds=[bind],
                     allow_errors=(r"reload refused",))
    before = servers_table(sock)

    ans = admin(sock, "add server app/self %s" % bind)
    assert ans.startswith("error: %s is shoal's own listen address" % bind) \
        and "every session would loop" in ans, ans
    assert servers_table(sock) == before

    with open(sh.conf_path, "w") as f:
        f.write(admin_config(sock, bind, [e, ("self", bind)]))
    sh.send_signal(signal.SIGHUP)
    wait_for(lambda: "reload refused" in sh.log(), 5 * SLACK,
             what="reload refused")
    assert "is shoal's own listen address" in sh.log()
    assert "app/self" not in servers_table(sock)
    assert sh.alive()


def test_announced_own_bind_is_policy(start_shoal, tmp_path):
    dport = free_udp_port()
    port = alloc_port()
    bind = "0.0.0.0:%d" % port
    text = discovery_config(bind, dport, discovery=[
        ("auth", "none"), ("allow", "127.0.0.0/8"), ("interface", "lo")])
    sh = start_shoal(config_text=text, binds=["127.0.0.1:%d" % port],
                     allow_errors=(r"policy datagram",))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(wire.unsigned(pool="app", addr="127.0.0.1", port=port),
                 ("127.0.0.1", dport))
    wait_for(lambda: counters(sh)["policy"] == 1, 5 * SLACK,
             what="policy +1")
    assert "shoal's own listen addresses" in sh.log()
    assert "added by announcement" not in sh.log()
