"""
A reload is all or nothing, key files included (issue 12, 2.3): a
discovery key file that cannot be used (group-readable, missing, no key
left) refuses the whole reload: `shoalctl reload` exits non-zero with the
reason, `show info` and the stats keep it as last_reload_error, the reload
counters do not move, the old keys stay valid and the new ones are
refused. A usable file rotates the keys.

Announcements are crafted datagrams (discovery_wire) sent over loopback;
verdicts are read from shoal's debug log (discovery_helpers.counters).
"""

import json
import os

from conftest import SLACK, alloc_port, wait_for
from discovery_helpers import (counters, discovery_config, free_udp_port,
                               write_keyfile)
import discovery_wire as wire
from test_admin import admin, info, shoalctl, sock_path

K1 = bytes(range(32))
K2 = bytes(range(100, 132))
REALM = "lab"


def announce(sh, dport, key, key_id, port, seq):
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(wire.signed(key=key, realm=REALM, key_id=key_id,
                             addr="127.0.0.1", port=port, seq=seq),
                 ("127.0.0.1", dport))


def verdict_after(sh, dport, key, key_id, port, seq):
    """Send one announcement; the verdict whose counter moved."""
    before = counters(sh)
    announce(sh, dport, key, key_id, port, seq)

    def moved():
        now = counters(sh)
        d = [k for k in now if now[k] != before.get(k, 0)]
        return d[0] if d else None
    return wait_for(moved, 5 * SLACK, what="a verdict")


def test_reload_refused_on_bad_key_file(start_shoal, tmp_path):
    dport = free_udp_port()
    bind = "127.0.0.1:%d" % alloc_port()
    sock = sock_path(tmp_path)
    keyfile = write_keyfile(tmp_path, {1: K1})

    def cfg():
        return discovery_config(bind, dport, discovery=[
            ("key_file", keyfile), ("realm", REALM),
            ("allow", "127.0.0.0/8"), ("interface", "lo")],
            extra="\n[admin]\nsocket = %s\n" % sock)
    sh = start_shoal(config_text=cfg(), binds=[bind],
                     allow_errors=(r"reload refused", r"discovery: "))
    p = alloc_port()
    assert verdict_after(sh, dport, K1, 1, p, 1) == "ok"
    seq = 2

    # Only a new key, but group-readable; then missing; then no key.
    def group_readable():
        write_keyfile(tmp_path, {2: K2}, mode=0o640)

    def missing():
        os.unlink(keyfile)

    def empty():
        write_keyfile(tmp_path, {})

    for break_it, why in ((group_readable, "group"),
                          (missing, "No such file"),
                          (empty, "no key")):
        break_it()
        r = shoalctl("reload", sock=sock)
        assert r.returncode != 0, (why, r.stdout, r.stderr)
        out = r.stdout + r.stderr
        assert "reload refused" in out and why in out, out
        i = info(sock)
        assert i["reloads"] == "0" and why in i["last_reload_error"], i
        js = json.loads(admin(sock, "show stat json"))
        assert why in js["info"]["reload_error"], js["info"]
        assert js["info"]["reloads"] == 0
        # The old key still admits, the new one is still unknown.
        assert verdict_after(sh, dport, K1, 1, p, seq) == "ok"
        assert verdict_after(sh, dport, K2, 2, p, seq + 1) == "unknown_key"
        seq += 2

    # A usable file: the keys rotate.
    write_keyfile(tmp_path, {2: K2})
    r = shoalctl("reload", sock=sock)
    assert r.returncode == 0, r.stdout + r.stderr
    i = info(sock)
    assert i["reloads"] == "1" and i["last_reload_error"] == "-", i
    assert verdict_after(sh, dport, K1, 1, p, seq) == "unknown_key"
    assert verdict_after(sh, dport, K2, 2, p, seq + 1) == "ok"
