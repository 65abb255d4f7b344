"""
test_weights.py - effective weights (issue 16): a server that comes back
ramps up over [backend] slowstart; the weight balancing uses is shown next
to the configured one in /stats.json, on the stats page and in `show
servers`.

Timing bounds are generous: the ramp is checked against its own clock
(effective_weight read with the time since the server came back), and
the share of traffic only as "well below half" early and "half" once
slow start is over.
"""

import socket
import time

import peers
from conftest import alloc_port, wait_for
from stats_helpers import fetch, fetch_json
from test_admin import admin, servers_table


def server(port, name):
    """The server of that name in /stats.json, or None."""
    d = fetch_json(port)["backends"][0]
    return next((x for x in d["servers"] if x["name"] == name), None)


def one(addr):
    s = peers.connect(addr)
    s.shutdown(socket.SHUT_WR)
    n, _, err = peers.read_all(s)
    s.close()
    assert n == 10 and err is None


def totals(port):
    d = fetch_json(port)["backends"][0]
    return {x["name"]: x["sessions_total"] for x in d["servers"]}


def test_slowstart_ramps_a_returning_server(start_peer, start_shoal,
                                            tmp_path):
    """slowstart = 6s, roundrobin over s1 and s2. s2 leaves (maint) and
    comes back (ready): its effective weight starts near 5 % of 1 and grows
    with time (checked against the seconds since it came back, +-1 s), its
    share of 40 sessions in the first second is under a quarter, and once
    slow start is over the two split 20/20 again. The effective weight is
    shown in `show servers` and on the page."""
    s1 = start_peer("source", "--size", "10", name="s1")
    s2 = start_peer("source", "--size", "10", name="s2")
    sp, port = alloc_port(), alloc_port()
    sock = str(tmp_path / "admin.sock")
    text = ("[global]\nthreads = 2\n[frontend web]\nbind = 127.0.0.1:%d\n"
            "backend = app\n[backend app]\nslowstart = 6s\n"
            "server = s1 %s\nserver = s2 %s\n[stats]\nbind = 127.0.0.1:%d\n"
            "[admin]\nsocket = %s\n" % (port, s1.addr, s2.addr, sp, sock))
    sh = start_shoal(config_text=text, binds=["127.0.0.1:%d" % port])
    # At start both ramp together: equal shares from the first session.
    for _ in range(20):
        one(sh.addr)
    assert totals(sp) == {"s1": 10, "s2": 10}

    # Wait out the start ramp, then take s2 out and back.
    wait_for(lambda: server(sp, "s1")["effective_weight"] == 1, 15, 0.2,
             "s1 at full weight after the start ramp")
    admin(sock, "set server app/s2 state maint")
    assert server(sp, "s2")["effective_weight"] is None
    admin(sock, "set server app/s2 state ready")
    back = time.monotonic()
    w0 = server(sp, "s2")["effective_weight"]
    assert 0 < w0 <= 0.25, w0
    before = totals(sp)
    for _ in range(40):
        one(sh.addr)
    early = time.monotonic() - back
    after = totals(sp)
    got2 = after["s2"] - before["s2"]
    assert early < 2.0, "40 sessions took %.1f s" % early
    assert got2 <= 10, "s2 took %d of 40 in its first %.1f s" % (got2, early)

    # The ramp follows the clock: at t seconds, about t/6 (HAProxy-like
    # linear growth from 5 %), within a second either way.
    seen = []
    while True:
        t = time.monotonic() - back
        w = server(sp, "s2")["effective_weight"]
        seen.append((round(t, 2), w))
        if w == 1:
            break
        assert max(0.05, (t - 1.5) / 6) <= w <= min(1, (t + 1.5) / 6), seen
        assert t < 12, seen
        time.sleep(0.5)
    assert t >= 4.5, "full weight after %.1f s of a 6 s slow start" % t
    assert len({w for _, w in seen}) >= 4, seen   # it grew in steps

    before = totals(sp)
    for _ in range(40):
        one(sh.addr)
    after = totals(sp)
    assert after["s2"] - before["s2"] == 20
    tab = servers_table(sock)
    assert tab["app/s2"]["eff_weight"] == "1.00"
    assert tab["app/s2"]["load"] == "-"


def test_effective_weight_on_the_page_and_in_show_servers(start_peer,
                                                          start_shoal,
                                                          tmp_path):
    """While a server ramps, the page shows "1 -> 0.xx" in its weight cell
    and `show servers` the same number in eff_weight; a server in maint
    has none ("-", null)."""
    s1 = start_peer("source", "--size", "10", name="s1")
    s2 = start_peer("source", "--size", "10", name="s2")
    sp, port = alloc_port(), alloc_port()
    sock = str(tmp_path / "admin.sock")
    text = ("[global]\nthreads = 1\n[frontend web]\nbind = 127.0.0.1:%d\n"
            "backend = app\n[backend app]\nslowstart = 1m\n"
            "server = s1 %s\nserver = s2 %s\n[stats]\nbind = 127.0.0.1:%d\n"
            "[admin]\nsocket = %s\n" % (port, s1.addr, s2.addr, sp, sock))
    start_shoal(config_text=text, binds=["127.0.0.1:%d" % port])
    admin(sock, "set server app/s2 state maint")
    tab = servers_table(sock)
    assert tab["app/s2"]["eff_weight"] == "-"
    assert server(sp, "s2")["effective_weight"] is None
    w = float(tab["app/s1"]["eff_weight"])
    assert 0 < w < 0.5, tab["app/s1"]
    page = fetch(sp, "/").text()
    row = page[page.index('data-server="app/s1"'):]
    row = row[:row.index("</tr>")]
    assert "effective weight" in row and "&rarr;" in row, row


def test_load_reports_bend_weights(start_peer, start_shoal, tmp_path):
    """Two announced servers of weight 1, one reporting load 0 and the
    other 90 through --load-cmd: the loaded one's effective weight is at
    the 10 % floor (ceil(1.6)/16 = 0.125) and it takes about 1/9 of new
    sessions; when its command prints garbage the announcer reports
    nothing and the server is back at its configured weight (a bad report
    never lowers a server). --weight-file sets the announced weight, and
    --load auto reports the host's CPU use."""
    from discovery_helpers import (Announcer, discovery_config,
                                   free_udp_port, write_keyfile)
    key = bytes(range(0x40, 0x60))
    dport, sp = free_udp_port(), alloc_port()
    keyfile = write_keyfile(tmp_path, {1: key})
    bind = "127.0.0.1:%d" % alloc_port()
    cfg = discovery_config(
        bind, dport, log_level="info",
        backend=[("check", "tcp"), ("check_interval", "200ms"),
                 ("rise", 1)],
        discovery=[("realm", "w"), ("key_file", keyfile),
                   ("allow", "127.0.0.0/8")],
        extra="[stats]\nbind = 127.0.0.1:%d\n" % sp)
    sh = start_shoal(config_text=cfg, binds=[bind])
    s1 = start_peer("source", "--size", "10", name="s1")
    s2 = start_peer("source", "--size", "10", name="s2")
    s3 = start_peer("source", "--size", "10", name="s3")
    f1, f2, w1 = (tmp_path / "load1", tmp_path / "load2",
                  tmp_path / "weight1")
    f1.write_text("0\n")
    f2.write_text("90\n")
    w1.write_text("3\n")
    made = []

    def announce(peer, *extra):
        a = Announcer(["--pool", "app", "--port", peer.port, "--interval",
                       "300ms", "--target", "127.0.0.1:%d" % dport,
                       "--addr", "127.0.0.1", "--key-file", keyfile,
                       "--realm", "w"] + list(extra), tmp_path,
                      "p%d" % peer.port)
        made.append(a)
        return a

    try:
        def reporting(name):
            x = server(sp, name)
            return x if x is not None and x["load"] is not None else None

        announce(s1, "--load-cmd", "cat %s" % f1, "--weight-file", w1)
        announce(s2, "--load-cmd", "cat %s" % f2)
        n1, n2 = "127.0.0.1:%d" % s1.port, "127.0.0.1:%d" % s2.port

        def both_loaded():
            d = fetch_json(sp)["backends"][0]
            srv = {x["name"]: x for x in d["servers"]}
            ok = all(n in srv and srv[n]["state"] == "up" and
                     srv[n]["load"] is not None for n in (n1, n2))
            return srv if ok else None
        srv = wait_for(both_loaded, 15, 0.1, "both servers up, with loads")
        assert srv[n1]["weight"] == 3, srv[n1]      # from --weight-file
        assert srv[n1]["load"]["value"] == 0
        assert srv[n1]["effective_weight"] == 3
        assert srv[n2]["load"]["value"] == 90
        # the connections to its port (this test's sessions, if any)
        assert srv[n2]["load"]["connections"] >= 0
        assert srv[n2]["effective_weight"] == 0.125, srv[n2]
        before = totals(sp)
        for _ in range(100):
            one(sh.addr)
        after = totals(sp)
        got2 = after[n2] - before.get(n2, 0)
        # 2 of every 50 units (48 + 2): 4 of 100; a reload of the pool
        # mid-way may move the cursor, hence the margin.
        assert 1 <= got2 <= 10, (got2, after)

        f2.write_text("saturated\n")        # garbage: no report
        wait_for(lambda: server(sp, n2)["load"] is None, 10, 0.1,
                 "no load reported by " + n2)
        assert server(sp, n2)["effective_weight"] == 1
        w1.write_text("1\n")
        wait_for(lambda: server(sp, n1)["weight"] == 1, 10, 0.1,
                 "weight 1 from the file")
        assert "--load-cmd printed 'saturated'" in made[1].log()

        announce(s3, "--load", "auto")
        n3 = "127.0.0.1:%d" % s3.port
        x = wait_for(lambda: reporting(n3), 10, 0.1, n3 + " reporting")
        assert 0 <= x["load"]["value"] <= 100
        assert 80 <= x["load"]["interval_ms"] <= 400, x["load"]

        # A command that leaves a process holding its output: what it
        # printed counts, and the report does not flap.
        s4 = start_peer("source", "--size", "10", name="s4")
        announce(s4, "--load-cmd", "echo 33; sleep 4 &")
        n4 = "127.0.0.1:%d" % s4.port
        x = wait_for(lambda: reporting(n4), 10, 0.1, n4 + " reporting")
        assert x["load"]["value"] == 33
        until = time.monotonic() + 2.5        # it holds, every 0.1 s
        while time.monotonic() < until:
            assert (server(sp, n4)["load"] or {}).get("value") == 33
            time.sleep(0.1)
        assert "server app/%s: no longer reports its load" % n4 \
            not in sh.log()
    finally:
        for a in made:
            a.cleanup()
