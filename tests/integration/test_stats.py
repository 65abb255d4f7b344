"""
test_stats.py - the stats listener ([stats] bind): "/" rendered in real
headless Chromium (DOM checked for every server and its state, screenshot
kept), /stats.json and /metrics against known traffic, a strict Prometheus
parse, bad and slow HTTP clients, idle stats connections next to relaying,
1000 servers, and reloads that move, remove and add the listener.

The screenshot goes to tests/artifacts/stats-page.png; it is copied to
docs/stats-page.png when that file is missing or SHOAL_UPDATE_DOCS=1.
"""

import os
import random
import select
import shutil
import signal
import socket
import threading
import time

import pytest

import discovery_wire as w
from conftest import SHOAL_BUILD, SLACK, alloc_port, wait_for
from discovery_helpers import Sender, free_udp_port
import peers
from peers import exchange, recv_all
from stats_helpers import (ARTIFACTS, ROOT, PageDom, admin_command,
                           check_common_headers,
                           chromium, cross_check_prometheus, fetch,
                           fetch_json, http_get, http_raw,
                           metric, parse_prometheus, servers_by_id,
                           stats_config)

VERDICTS = ("ok", "malformed", "unknown_key", "bad_mac", "stale", "replay",
            "policy", "cap")
STATES = ("up", "down", "checking", "drain", "maint")

# The stable fields of /stats.json (DESIGN.md section 7) and the documented
# additions (docs/operations.md).
INFO_FIELDS = {"version", "pid", "uptime_s", "threads", "sessions_active",
               "sessions_total", "maxconn", "config", "reloads",
               "reload_error", "stopping", "refresh_s"}
FRONTEND_FIELDS = {"name", "binds", "sessions_active", "sessions_total",
                   "backend", "rate", "maxconn"}
BACKEND_FIELDS = {"name", "balance", "servers", "check_type", "discovery",
                  "servers_up", "servers_total", "sessions_active",
                  "sessions_total"}
SERVER_FIELDS = {"name", "address", "source", "state", "weight",
                 "sessions_active", "sessions_total", "bytes_in", "bytes_out",
                 "connect_failures", "check", "last_change_s", "label",
                 "admin", "health", "maxconn", "backup"}
CHECK_FIELDS = {"result", "duration_ms", "detail", "age_s"}


def start_stats_shoal(start_shoal, frontends, backends, refresh="1s",
                      discovery=None, global_=None, extra="", **kw):
    """shoal with [stats] on 127.0.0.1:<new port>; sh.stats_port set."""
    sp = alloc_port()
    cfg = stats_config("127.0.0.1:%d" % sp, frontends, backends,
                       refresh=refresh, discovery=discovery, global_=global_,
                       extra=extra)
    binds = [v for k, v in frontends[0][1] if k == "bind"]
    sh = start_shoal(config_text=cfg, binds=binds, **kw)
    sh.stats_port = sp
    wait_for(lambda: port_open(sp), 5 * SLACK, what="stats listener")
    return sh


def port_open(port, host="127.0.0.1"):
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


def closed_by_peer(s, timeout):
    """True if the peer closed s (EOF or reset) within timeout."""
    r, _, _ = select.select([s], [], [], timeout)
    if not r:
        return False
    try:
        return s.recv(4096) == b""
    except OSError:
        return True


def disc_section(dport):
    return [("group", "239.255.76.66"), ("port", dport), ("interface", "lo"),
            ("auth", "none"), ("allow", "127.0.0.0/8"), ("max_skew", "10s")]


# --------------------------------------------------------------------------

def test_page_in_chromium(start_shoal, start_peer, start_hpeer, tmp_path):
    """A realistic page (up, down, checking, drain, maint; static and
    announced servers; traffic; discovery verdicts) rendered by headless
    Chromium:
    every server of /stats.json is a row with its state; screenshot kept."""
    echo = {n: start_peer("echo", name=n, wait=False)
            for n in ("web1", "web2", "ann4", "ann5", "cache1", "cache2")}
    http = {n: start_hpeer("http", name=n, wait=False)
            for n in ("api1", "api2", "api3")}
    for p in list(echo.values()) + list(http.values()):
        p.wait_ready()
    dead = [alloc_port(), alloc_port()]
    fw, fa, fc = alloc_port(), alloc_port(), alloc_port()
    dport = free_udp_port()
    frontends = [
        ("web", [("bind", "127.0.0.1:%d" % fw), ("bind", "[::1]:%d" % fw),
                 ("backend", "web")]),
        ("api", [("bind", "127.0.0.1:%d" % fa), ("backend", "api"),
                 ("maxconn", 500)]),
        ("cache", [("bind", "127.0.0.1:%d" % fc), ("backend", "cache")]),
    ]
    backends = [
        ("web", [("balance", "roundrobin"),
                 ("server", "web1 %s weight=2" % echo["web1"].addr),
                 ("server", "web2 %s weight=2" % echo["web2"].addr),
                 ("server", "web3 127.0.0.1:%d" % dead[0]),
                 ("check", "tcp"), ("check_interval", "300ms"),
                 ("rise", 1), ("fall", 1), ("timeout_connect", "1s"),
                 ("discovery", "yes"), ("max_discovered", 8)]),
        ("api", [("balance", "leastconn"),
                 ("server", "api1 %s maxconn=100" % http["api1"].addr),
                 ("server", "api2 %s maxconn=100" % http["api2"].addr),
                 ("server", "api3 %s backup" % http["api3"].addr),
                 ("check", "http"), ("check_http", "GET /health"),
                 ("check_interval", "500ms"), ("rise", 1), ("fall", 2)]),
        ("cache", [("balance", "source"),
                   ("server", "cache1 %s" % echo["cache1"].addr),
                   ("server", "cache2 %s" % echo["cache2"].addr),
                   ("server", "cache3 127.0.0.1:%d" % dead[1]),
                   ("check", "tcp"), ("check_interval", "1s"),
                   ("init_state", "checking"), ("rise", 60), ("fall", 1)]),
    ]
    admin_sock = str(tmp_path / "admin.sock")
    sh = start_stats_shoal(start_shoal, frontends, backends, refresh="2s",
                           discovery=disc_section(dport),
                           extra="\n[admin]\nsocket = %s\n" % admin_sock)
    sp = sh.stats_port
    # An operator puts one server in maintenance (the admin socket).
    ans = admin_command(admin_sock, "set server cache/cache2 state maint")
    assert ans.startswith("ok"), ans

    # Two announced servers (one draining) and two refused datagrams.
    snd = Sender(dport)
    inst = random.getrandbits(63)
    snd.send(w.unsigned(port=echo["ann4"].port, pool="web", ttl=60000,
                        label="web-4 (container 3f2a)", instance=inst))
    snd.send(w.unsigned(port=echo["ann5"].port, pool="web", ttl=60000,
                        state=w.DRAINING, label="web-5", instance=inst + 1))
    snd.send(b"\x00junk")
    snd.send(w.unsigned(port=9999, pool="nope", instance=inst + 2))
    snd.close()

    want = {"web/web1": "up", "web/web2": "up", "web/web3": "down",
            "web/127.0.0.1:%d" % echo["ann4"].port: "up",
            "web/127.0.0.1:%d" % echo["ann5"].port: "drain",
            "api/api1": "up", "api/api2": "up", "api/api3": "up",
            "cache/cache1": "checking", "cache/cache2": "maint",
            "cache/cache3": "down"}

    def settled():
        doc = fetch_json(sp)
        got = {k: s["state"] for k, s in servers_by_id(doc).items()}
        return doc if got == want else None
    wait_for(settled, 10 * SLACK, 0.05, "every server in its state")

    # Traffic: exchanges to web, HTTP requests to api, in the background
    # until the page was captured (so the rate column is not all zero).
    stop = threading.Event()
    errors = []

    def traffic():
        rng = random.Random(7)
        i = 0
        while not stop.is_set():
            try:
                r = exchange(("127.0.0.1", fw), rng.randrange(1, 300000),
                             seed=i, timeout=10)
                if r["rx_len"] != r["tx_len"]:
                    errors.append(r)
                s = socket.create_connection(("127.0.0.1", fa), timeout=5)
                s.sendall(b"GET /items/%d HTTP/1.0\r\n\r\n" % i)
                while s.recv(4096):
                    pass
                s.close()
            except OSError as e:
                errors.append(repr(e))
            i += 1
            stop.wait(0.08)
    t = threading.Thread(target=traffic, daemon=True)
    t.start()
    try:
        wait_for(lambda: fetch_json(sp)["frontends"][0]["rate"] > 0,
                 6 * SLACK, 0.1, "a non-zero rate on frontend web")
        url = "http://127.0.0.1:%d/" % sp
        dom_text = chromium(url, str(tmp_path / "chromium-dom"),
                            dump_dom=True)
        os.makedirs(ARTIFACTS, exist_ok=True)
        shot = os.path.join(ARTIFACTS, "stats-page.png")
        if os.path.exists(shot):
            os.unlink(shot)
        chromium(url, str(tmp_path / "chromium-shot"), screenshot=shot)
    finally:
        stop.set()
        t.join(15)
    assert not errors, errors[:3]
    doc = fetch_json(sp)
    assert {k: s["state"] for k, s in servers_by_id(doc).items()} == want

    # The DOM: every server, its state as attribute, class and badge.
    dom = PageDom(dom_text)
    assert dom.title == "shoal stats"
    assert dom.meta_refresh == "2"
    assert not dom.external, dom.external
    assert set(dom.servers) == set(want), sorted(dom.servers)
    for sid, state in want.items():
        row = dom.servers[sid]
        assert row["state"] == state, (sid, row)
        assert "state-%s" % state in row["classes"], (sid, row)
        assert row["badge"].strip().lower() == state, (sid, row)
    assert dom.servers["web/127.0.0.1:%d" % echo["ann4"].port]["source"] \
        == "announced"
    assert dom.servers["web/web1"]["source"] == "static"
    assert "web-4 (container 3f2a)" in dom_text
    assert dom.frontends == ["web", "api", "cache"]
    assert dom.backends == {"web": {"up": 3, "total": 5},
                            "api": {"up": 3, "total": 3},
                            "cache": {"up": 0, "total": 3}}
    assert dom.verdicts["malformed"].strip() == "1", dom.verdicts
    assert dom.verdicts["policy"].strip() == "1", dom.verdicts
    assert set(dom.verdicts) == set(VERDICTS)
    assert "version" in dom_text and "uptime" in dom_text \
        and "pid</span>%d" % sh.pid in dom_text

    with open(shot, "rb") as f:
        png = f.read()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20000, len(png)
    docs_png = os.path.join(ROOT, "docs", "stats-page.png")
    if os.environ.get("SHOAL_UPDATE_DOCS") == "1" \
            or not os.path.exists(docs_png):
        shutil.copyfile(shot, docs_png)


def test_json_and_metrics_count_exactly(start_shoal, start_peer):
    """Known exchanges -> sessions, bytes in/out exact in /stats.json and
    /metrics; per-verdict discovery counters; the contract's fields."""
    s1 = start_peer("echo", name="s1", wait=False)
    s2 = start_peer("echo", name="s2", wait=False)
    s1.wait_ready()
    s2.wait_ready()
    fp = alloc_port()
    dport = free_udp_port()
    frontends = [("web", [("bind", "127.0.0.1:%d" % fp), ("backend", "app"),
                          ("timeout_client", "10s")])]
    backends = [("app", [("balance", "roundrobin"),
                         ("server", "s1 %s" % s1.addr),
                         ("server", "s2 %s weight=3" % s2.addr),
                         ("timeout_connect", "1s"), ("discovery", "yes")])]
    sh = start_stats_shoal(start_shoal, frontends, backends,
                           discovery=disc_section(dport))
    sp = sh.stats_port

    doc0 = fetch_json(sp)
    assert doc0["frontends"][0]["sessions_total"] == 0
    sizes = [1, 100, 1000, 4096, 65537, 200000, 12345, 777]
    for i, n in enumerate(sizes):
        r = exchange(sh.addr, n, seed=i)
        assert r["rx_len"] == n and r["rx_sha"] == r["tx_sha"], r
    sess = sh.wait_sessions(len(sizes))
    per = {"s1": [0, 0, 0], "s2": [0, 0, 0]}
    for x in sess:
        p = per[x["server_name"]]
        p[0] += 1
        p[1] += x["bytes_in"]
        p[2] += x["bytes_out"]
    total = sum(sizes)

    # Discovery: one of each refused kind the loopback setup can make.
    snd = Sender(dport)
    snd.send(b"\x53\x48junk")                            # malformed
    snd.send(w.unsigned(port=9999, pool="nope"))          # policy
    snd.close()
    doc = wait_for(lambda: (lambda d: d if d["discovery"]["malformed"] == 1
                            and d["discovery"]["policy"] == 1 else None)(
        fetch_json(sp)), 5 * SLACK, 0.05, "discovery counters")

    # The contract (DESIGN.md 7) and the documented additions.
    assert set(doc) == {"info", "frontends", "backends", "discovery",
                        "announcements", "dns", "events"}
    # the timeline: the static server joining at start, oldest first
    assert doc["events"][0]["kind"] == "table", doc["events"]
    assert doc["events"][0]["text"].startswith("joined (static, ")
    assert [e["seq"] for e in doc["events"]] == sorted(
        e["seq"] for e in doc["events"])
    assert INFO_FIELDS <= set(doc["info"]), doc["info"]
    assert set(doc["discovery"]) == set(VERDICTS)
    for v in VERDICTS:
        want = 1 if v in ("malformed", "policy") else 0
        assert doc["discovery"][v] == want, (v, doc["discovery"])
    fe = doc["frontends"][0]
    assert FRONTEND_FIELDS <= set(fe), fe
    assert fe["name"] == "web" and fe["binds"] == ["127.0.0.1:%d" % fp]
    assert fe["sessions_total"] == len(sizes) and fe["sessions_active"] == 0
    assert doc["info"]["sessions_total"] == len(sizes)
    assert doc["info"]["sessions_active"] == 0
    assert doc["info"]["pid"] == sh.pid and doc["info"]["threads"] == 2
    assert doc["info"]["config"] == sh.conf_path
    be = doc["backends"][0]
    assert BACKEND_FIELDS <= set(be), be
    assert be["name"] == "app" and be["balance"] == "roundrobin"
    assert be["servers_up"] == 2 and be["servers_total"] == 2
    assert be["sessions_total"] == len(sizes)
    got_in = got_out = 0
    for s in be["servers"]:
        assert SERVER_FIELDS <= set(s), s
        assert CHECK_FIELDS <= set(s["check"]), s
        assert s["source"] == "static" and s["state"] == "up"
        assert s["check"]["result"] == "" and s["check"]["age_s"] is None
        n, bin_, bout = per[s["name"]]
        assert s["sessions_total"] == n, (s, per)
        assert s["bytes_in"] == bin_ and s["bytes_out"] == bout, (s, per)
        assert s["sessions_active"] == 0 and s["connect_failures"] == 0
        assert isinstance(s["last_change_s"], (int, float))
        got_in += s["bytes_in"]
        got_out += s["bytes_out"]
    assert got_in == total and got_out == total
    assert {s["name"]: s["weight"] for s in be["servers"]} == \
        {"s1": 1, "s2": 3}
    assert {s["name"]: s["address"] for s in be["servers"]} == \
        {"s1": s1.addr, "s2": s2.addr}

    # /metrics: a strict parse, then the same numbers.
    r = fetch(sp, "/metrics")
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    fams = parse_prometheus(r.text())
    print("reference parsers: %s" % (cross_check_prometheus(r.text())
                                     or "none installed"))
    assert metric(fams, "shoal_frontend_sessions_total",
                  frontend="web") == len(sizes)
    assert metric(fams, "shoal_frontend_sessions_active", frontend="web") == 0
    assert metric(fams, "shoal_sessions_total") == len(sizes)
    for name, (n, bin_, bout) in per.items():
        lb = {"backend": "app", "server": name}
        assert metric(fams, "shoal_server_sessions_total", **lb) == n
        assert metric(fams, "shoal_server_bytes_in_total", **lb) == bin_
        assert metric(fams, "shoal_server_bytes_out_total", **lb) == bout
        assert metric(fams, "shoal_server_connect_failures_total", **lb) == 0
        assert metric(fams, "shoal_server_sessions_active", **lb) == 0
        assert metric(fams, "shoal_server_up", **lb) == 1
        for st in STATES:
            assert metric(fams, "shoal_server_state", state=st, **lb) == \
                (1 if st == "up" else 0)
    for v in VERDICTS:
        assert metric(fams, "shoal_discovery_datagrams_total", verdict=v) \
            == doc["discovery"][v]
    for f, d in fams.items():
        assert f.startswith("shoal_"), f
        assert d["type"] in ("counter", "gauge", "histogram"), (f, d["type"])

    # The rate: sessions/s over the last refresh period (1 s here).
    fe_rates = []

    def rate_seen():
        fe_rates.append(fetch_json(sp)["frontends"][0]["rate"])
        return fe_rates[-1] > 0
    # The exchanges are over: new traffic makes a rate appear.
    for i in range(5):
        exchange(sh.addr, 10, seed=100 + i)
    wait_for(rate_seen, 3 * SLACK, 0.05, "a rate")
    # At most every session so far in one period of about 1 s.
    assert 0 < max(fe_rates) <= (len(sizes) + 5) / 0.9, fe_rates

    # HEAD and HTTP/1.0: same headers, no body.
    for path, ctype in (("/", "text/html"), ("/stats.json",
                                            "application/json"),
                        ("/metrics", "text/plain")):
        h = http_get(sp, path, method="HEAD")
        assert h.status == 200 and h.body == b"", (path, h.raw[:200])
        check_common_headers(h, ctype)
        assert int(h.headers["content-length"]) > 100
        g = http_get(sp, path, version="HTTP/1.0", extra="")
        assert g.status == 200
        check_common_headers(g, ctype)
        assert int(g.headers["content-length"]) == len(g.body)
    # Query strings are ignored.
    assert http_get(sp, "/stats.json?x=1").status == 200
    sh.check_nl3()


def test_bad_http_and_slow_clients(start_shoal, start_peer):
    """POST/PUT -> 405 with Allow; unknown path -> 404; bad line -> 400;
    HTTP/2.0 -> 505; an overlong head -> 431 and close; a slowloris does
    not delay another client and is closed at the 5 s read deadline."""
    s1 = start_peer("echo", name="s1")
    fp = alloc_port()
    sh = start_stats_shoal(
        start_shoal,
        [("web", [("bind", "127.0.0.1:%d" % fp), ("backend", "app")])],
        [("app", [("server", "s1 %s" % s1.addr)])])
    sp = sh.stats_port

    # A slowloris: one byte a second, never an end of head.
    slow = socket.create_connection(("127.0.0.1", sp), timeout=5)
    slow_closed = {}

    def slowloris():
        t0 = time.monotonic()
        req = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
        for i in range(len(req)):
            try:
                slow.send(req[i:i + 1])
            except OSError:
                break
            if closed_by_peer(slow, 1.0):
                break
        slow_closed["after"] = time.monotonic() - t0
    t = threading.Thread(target=slowloris, daemon=True)
    t.start()

    # Meanwhile everything else is answered at once.
    t0 = time.monotonic()
    r = http_get(sp, "/stats.json")
    assert r.status == 200 and time.monotonic() - t0 < 0.5 * SLACK
    for method in ("POST", "PUT", "DELETE", "OPTIONS"):
        r = http_get(sp, "/", method=method,
                     extra="Content-Length: 5\r\n" if method == "POST"
                     else "")
        assert r.status == 405, (method, r.raw[:200])
        assert r.headers["allow"] == "GET, HEAD"
        check_common_headers(r, "text/plain")
    # A POST with its body in flight: the 405 still arrives intact.
    r = http_raw(sp, b"POST /stats.json HTTP/1.1\r\nHost: x\r\n"
                 b"Content-Length: 100000\r\n\r\n" + b"x" * 50000)
    assert r.status == 405, r.raw[:200]
    for path in ("/nope", "/stats.json/", "/metrics.txt", "/index.html",
                 "/../etc/passwd"):
        r = http_get(sp, path)
        assert r.status == 404, (path, r.raw[:200])
        check_common_headers(r, "text/plain")
        assert int(r.headers["content-length"]) == len(r.body)
    for raw, code in ((b"HELLO\r\n\r\n", 400),
                      (b"GET /\r\n\r\n", 400),
                      (b"GET / HTTP/2.0\r\n\r\n", 505),
                      (b"GET  / HTTP/1.1\r\n\r\n", 400),
                      (b"GET / FTP/1.0\r\n\r\n", 400),
                      (b"GET / HTTP/1.1\n\n", 200),
                      (b"\r\nGET /metrics HTTP/1.0\r\n\r\n", 200)):
        r = http_raw(sp, raw)
        assert r.status == code, (raw, r.raw[:200])
    # Over 8 KiB of head: 431, and the connection is closed.
    s = socket.create_connection(("127.0.0.1", sp), timeout=5)
    s.sendall(b"GET / HTTP/1.1\r\n" + b"X-Long: " + b"a" * 9000 + b"\r\n")
    data = recv_all(s)
    s.close()
    assert data.startswith(b"HTTP/1.1 431 "), data[:200]
    # Just under the limit is fine.
    r = http_get(sp, "/stats.json", extra="X-Pad: %s\r\n" % ("p" * 7900))
    assert r.status == 200

    t.join(10 * SLACK)
    assert "after" in slow_closed, "slowloris never closed"
    assert 4.0 <= slow_closed["after"] <= 5.0 + 1.5 * SLACK, slow_closed
    slow.close()
    assert http_get(sp, "/").status == 200
    sh.check_nl3()


def test_idle_stats_clients_do_not_block_relaying(start_shoal, start_peer):
    """100 idle stats connections: at most 64 are held, each one past 64
    takes the slot of the oldest that has sent no request head; a real
    request still gets a slot and its answer; relaying is untouched; the
    fd count is back to baseline after."""
    s1 = start_peer("echo", name="s1")
    fp = alloc_port()
    sh = start_stats_shoal(
        start_shoal,
        [("web", [("bind", "127.0.0.1:%d" % fp), ("backend", "app")])],
        [("app", [("server", "s1 %s" % s1.addr)])])
    sp = sh.stats_port
    sh.check_nl3()          # the probe of start_stats_shoal is gone
    base = sh.fd_baseline
    idle = []
    for _ in range(100):
        idle.append(socket.create_connection(("127.0.0.1", sp), timeout=5))
    # 64 are kept: the newest; the 36 oldest gave way, closed at once.
    wait_for(lambda: sh.fd_count() == base + 64, 3 * SLACK, 0.02,
             "64 stats clients held")
    closed = [s for s in idle[:36] if closed_by_peer(s, 2.0)]
    assert len(closed) == 36, len(closed)
    assert not any(closed_by_peer(s, 0) for s in idle[36:])
    # A real request while the 64 are there: answered, in the slot of the
    # oldest idle one (they are closed by the read deadline 5 s after they
    # were accepted anyway).
    t0 = time.monotonic()
    r = http_get(sp, "/stats.json")
    assert r.status == 200 and time.monotonic() - t0 < 0.5 * SLACK
    assert closed_by_peer(idle[36], 2.0)
    assert sh.fd_count() <= base + 64
    fams = parse_prometheus(fetch(sp, "/metrics").text())
    assert metric(fams, "shoal_stats_clients_evicted_total") >= 37
    assert metric(fams, "shoal_stats_clients_refused_total") == 0
    # Relaying does not notice.
    for i in range(20):
        t0 = time.monotonic()
        r = exchange(sh.addr, 50000, seed=i, timeout=5)
        assert r["rx_len"] == 50000 and r["rx_sha"] == r["tx_sha"], r
        assert time.monotonic() - t0 < 1.0 * SLACK
    for s in idle:
        s.close()
    sh.check_nl3()
    assert sh.fd_count() == base
    assert fetch_json(sp)["frontends"][0]["sessions_total"] == 20


def test_thousand_servers_fast(start_shoal):
    """1000 servers (check = none): /, /stats.json and /metrics each come
    in well under a second, with every server in them."""
    n = 1000
    fp = alloc_port()
    servers = [("server", "s%04d 127.0.0.1:%d" % (i, 40000 + i))
               for i in range(n)]
    sh = start_stats_shoal(
        start_shoal,
        [("web", [("bind", "127.0.0.1:%d" % fp), ("backend", "big")])],
        [("big", [("balance", "leastconn")] + servers)],
        global_={"threads": 1})
    sp = sh.stats_port
    times = {}
    for path in ("/", "/stats.json", "/metrics"):
        best = None
        for _ in range(3):
            r = fetch(sp, path)
            best = r.elapsed if best is None else min(best, r.elapsed)
        times[path] = (best, len(r.body))
        assert best < 0.25 * SLACK, (path, best)
        if path == "/":
            dom = PageDom(r.text())
            assert len(dom.servers) == n
            assert all(x["state"] == "up" for x in dom.servers.values())
        elif path == "/stats.json":
            import json
            doc = json.loads(r.body)
            assert len(doc["backends"][0]["servers"]) == n
        else:
            fams = parse_prometheus(r.text())
            cross_check_prometheus(r.text())
            assert len(fams["shoal_server_up"]["samples"]) == n
            assert len(fams["shoal_server_state"]["samples"]) == 5 * n
    print("1000 servers: %s" % {k: ("%.1f ms" % (t * 1000), "%d bytes" % b)
                                for k, (t, b) in times.items()})


def test_reload_moves_removes_and_adds_the_listener(start_shoal, start_peer,
                                                    tmp_path):
    """SIGHUP: a new [stats] bind is bound first and the old one closed; a
    bind that fails keeps the old one (warned); removing [stats] closes it;
    adding it back opens it."""
    s1 = start_peer("echo", name="s1")
    fp = alloc_port()
    fe = [("web", [("bind", "127.0.0.1:%d" % fp), ("backend", "app")])]
    be = [("app", [("server", "s1 %s" % s1.addr)])]
    sh = start_stats_shoal(start_shoal, fe, be)
    a = sh.stats_port

    def reload_to(stats_bind, n):
        with open(sh.conf_path, "w") as f:
            f.write(stats_config(stats_bind, fe, be))
        sh.send_signal(signal.SIGHUP)
        wait_for(lambda: sh.log().count("reload done") >= n, 5 * SLACK,
                 what="reload %d" % n)

    b = alloc_port()
    reload_to("127.0.0.1:%d" % b, 1)
    assert fetch_json(b)["info"]["reloads"] == 1
    assert not port_open(a)

    # A port someone else holds: the old listener stays.
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    c = alloc_port()
    holder.bind(("127.0.0.1", c))
    holder.listen(1)
    try:
        reload_to("127.0.0.1:%d" % c, 2)
        assert "cannot listen on 127.0.0.1:%d" % c in sh.log()
        assert fetch_json(b)["info"]["reloads"] == 2
    finally:
        holder.close()

    reload_to(None, 3)
    assert not port_open(b)
    d = alloc_port()
    reload_to("127.0.0.1:%d" % d, 4)
    doc = fetch_json(d)
    assert doc["info"]["reloads"] == 4
    r = exchange(sh.addr, 1000, seed=1)
    assert r["rx_len"] == 1000
    sh.check_nl3()


BAD_EXPOSITIONS = [
    ("no newline at end", "# HELP a_total x\n# TYPE a_total counter\n"
     "a_total 1"),
    ("sample without TYPE", "a 1\n"),
    ("TYPE twice", "# HELP a x\n# TYPE a gauge\n# TYPE a gauge\na 1\n"),
    ("bad metric name", "# HELP 1a x\n# TYPE 1a gauge\n1a 1\n"),
    ("bad label name", "# HELP a x\n# TYPE a gauge\na{1b=\"x\"} 1\n"),
    ("bad escape", "# HELP a x\n# TYPE a gauge\na{b=\"\\t\"} 1\n"),
    ("unterminated value", "# HELP a x\n# TYPE a gauge\na{b=\"x} 1\n"),
    ("interleaved", "# HELP a x\n# TYPE a gauge\n# HELP b x\n"
     "# TYPE b gauge\nb 1\na 1\n"),
    ("counter without _total", "# HELP a x\n# TYPE a counter\na 1\n"),
    ("series twice", "# HELP a x\n# TYPE a gauge\na{b=\"1\"} 1\n"
     "a{b=\"1\"} 2\n"),
    ("bad value", "# HELP a x\n# TYPE a gauge\na one\n"),
    ("label twice", "# HELP a x\n# TYPE a gauge\na{b=\"1\",b=\"2\"} 1\n"),
    ("empty line", "# HELP a x\n# TYPE a gauge\n\na 1\n"),
]


@pytest.mark.peers_only
@pytest.mark.parametrize("why,text", BAD_EXPOSITIONS,
                         ids=[b[0] for b in BAD_EXPOSITIONS])
def test_prometheus_parser_is_strict(why, text):
    """The test's own exposition parser rejects what Prometheus rejects."""
    with pytest.raises(ValueError):
        parse_prometheus(text)
    good = ("# HELP a_total x\n# TYPE a_total counter\n"
            "a_total{b=\"q\\\"\\\\\\n\",c=\"\"} 1.5e3\n# a comment\n"
            "# HELP g y\n# TYPE g gauge\ng -Inf\ng{x=\"1\"} NaN 1700000\n")
    fams = parse_prometheus(good)
    assert fams["a_total"]["samples"] == [({"b": "q\"\\\n", "c": ""}, 1500.0)]


# --------------------------------------------------------------------------
# Hostile clients (issue 12: slow readers, slowloris, HTTP/0.9)

def echo_stats_shoal(start_shoal, start_peer):
    """shoal with one frontend to one echo server, and [stats]."""
    s1 = start_peer("echo", name="s1")
    fp = alloc_port()
    return start_stats_shoal(
        start_shoal,
        [("web", [("bind", "127.0.0.1:%d" % fp), ("backend", "app")])],
        [("app", [("server", "s1 %s" % s1.addr)])])


def _rss_mb(sh):
    return sh.rss_kb() / 1024.0


def test_slow_readers_do_not_pin_documents(start_shoal, tmp_path):
    """10 000 servers; 64 clients ask for / or /metrics and never read. The
    memory they hold is a couple of documents, not 64 of them, and it is
    given back once they leave; a normal client then gets the whole
    document. (Sanitizer builds load 10 000 servers too slowly and keep
    freed memory in quarantine: there 2000 servers, and the memory is not
    measured.)"""
    sanitized = "san" in os.path.basename(SHOAL_BUILD.rstrip("/"))
    n = 2000 if sanitized else 10000
    fp = alloc_port()
    # 127.0.0.2: no server may be one of shoal's own binds (127.0.0.1).
    servers = [("server", "s%05d 127.0.0.2:%d" % (i, 20000 + i % 30000))
               for i in range(n)]
    sh = start_stats_shoal(
        start_shoal,
        [("web", [("bind", "127.0.0.1:%d" % fp), ("backend", "big")])],
        [("big", servers)], global_={"threads": 1})
    sp = sh.stats_port
    sizes = {p: len(fetch(sp, p, timeout=20 * SLACK).body)
             for p in ("/", "/metrics")}
    sh.check_nl3()
    r0 = _rss_mb(sh)
    holders = []
    for i in range(64):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", sp))
        s.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n"
                  % (b"/metrics" if i % 2 else b"/"))
        holders.append(s)

    # Every request was answered (its first bytes wait in our socket).
    def all_answered():
        r, _, _ = select.select(holders, [], [], 0)
        return len(r) == len(holders)
    wait_for(all_answered, 30 * SLACK, 0.05, "64 answers started")
    held = _rss_mb(sh) - r0
    doc_mb = (sizes["/"] + sizes["/metrics"]) / 2**20
    print("10000 servers: / %d B, /metrics %d B; RSS %.0f MB, +%.0f MB "
          "while 64 slow readers hold them" % (sizes["/"], sizes["/metrics"],
                                               r0, held))
    # At most two copies of each document, plus the clients' buffers.
    assert sanitized or held <= 2 * doc_mb + 16, (held, doc_mb)
    for s in holders:
        s.close()
    # Given back once they are gone.
    if not sanitized:
        wait_for(lambda: _rss_mb(sh) <= r0 + 8, 5 * SLACK, 0.1,
                 "RSS back near %.0f MB (now %.0f)" % (r0, _rss_mb(sh)))
        print("RSS %.0f MB after they left" % _rss_mb(sh))
    r = http_get(sp, "/metrics", timeout=20 * SLACK)
    assert r.status == 200 and int(r.headers["content-length"]) == len(r.body)
    fams = parse_prometheus(r.text())
    assert len(fams["shoal_server_up"]["samples"]) == n
    sh.check_nl3()


def _slowloris(port, nconn, stop, counts, rate=3000, most=40000):
    """nconn connections that send part of a request head and reconnect
    when shoal closes them (at most `rate` reconnects a second, `most`
    connections in all), until stop is set (bounded by the caller)."""
    import selectors
    sel = selectors.DefaultSelector()
    partial = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: "
    owed = nconn            # connections to (re)open
    t0 = time.monotonic()

    def open_one():
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        sel.register(s, selectors.EVENT_WRITE, "connecting")
        counts["opened"] += 1

    while not stop.is_set():
        allowed = nconn + int((time.monotonic() - t0) * rate)
        while owed > 0 and counts["opened"] < min(allowed, most):
            open_one()
            owed -= 1
        for key, ev in sel.select(0.01):
            s = key.fileobj
            sel.unregister(s)
            if key.data == "connecting":
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                    try:
                        s.send(partial)
                        sel.register(s, selectors.EVENT_READ, "holding")
                        continue
                    except OSError:
                        pass
            else:
                try:
                    if s.recv(4096) != b"":
                        sel.register(s, selectors.EVENT_READ, "holding")
                        continue
                except OSError:
                    pass
                counts["closed"] += 1
            s.close()
            owed += 1
    for key in list(sel.get_map().values()):
        key.fileobj.close()
    sel.close()


def test_slowloris_does_not_lock_out_real_requests(start_shoal, start_peer):
    """500 connections send partial heads and reconnect when closed (the 64
    slots are always full of them); 45 real requests made meanwhile are all
    answered: an incomplete head loses its slot to a new client."""
    sh = echo_stats_shoal(start_shoal, start_peer)
    sp = sh.stats_port
    stop = threading.Event()
    counts = {"opened": 0, "closed": 0}
    t = threading.Thread(target=_slowloris, args=(sp, 500, stop, counts),
                         daemon=True)
    t.start()
    answered = []

    def probe():
        try:
            r = http_get(sp, "/stats.json", timeout=3 * SLACK)
            answered.append(r.status == 200)
        except (OSError, AssertionError):
            answered.append(False)
    try:
        # The flood holds the slots before the first probe.
        wait_for(lambda: counts["opened"] >= 500, 5 * SLACK,
                 what="500 slowloris connections")
        wait_for(lambda: sh.fd_count() >= sh.fd_baseline + 64, 5 * SLACK,
                 what="the flood holding the 64 slots")
        probes = []
        for _ in range(45):
            p = threading.Thread(target=probe, daemon=True)
            p.start()
            probes.append(p)
            time.sleep(0.1)
        for p in probes:
            p.join(10 * SLACK)
    finally:
        stop.set()
        t.join(10 * SLACK)
    print("slowloris: %d of 45 real requests answered (%d flood "
          "connections opened, %d closed by shoal)"
          % (sum(answered), counts["opened"], counts["closed"]))
    # The flood was on the whole time: it never ran out of connections.
    assert counts["opened"] < 40000, counts
    assert sum(answered) == 45, sum(answered)
    assert sh.alive()
    assert http_get(sp, "/").status == 200
    fams = parse_prometheus(fetch(sp, "/metrics").text())
    assert metric(fams, "shoal_stats_clients_evicted_total") >= 500
    sh.check_nl3()


def test_http09_request_is_answered_at_once(start_shoal, start_peer):
    """A request line with no HTTP version (HTTP/0.9 "GET /") or a bad one
    is answered 400 (505 for an unknown version) as soon as the line is
    complete, without waiting for a head that will never come."""
    sh = echo_stats_shoal(start_shoal, start_peer)
    sp = sh.stats_port
    for raw, code in ((b"GET /\r\n", 400), (b"GET /\n", 400),
                      (b"HELLO\r\n", 400), (b"GET / HTTP/2.0\r\n", 505),
                      (b"GET / FTP/1.0\r\n", 400)):
        s = socket.create_connection(("127.0.0.1", sp), timeout=5)
        t0 = time.monotonic()
        s.sendall(raw)          # and nothing more: no end of head
        data = recv_all(s)
        took = time.monotonic() - t0
        s.close()
        assert data.startswith(b"HTTP/1.1 %d " % code), (raw, data[:100])
        assert took < 1.0 * SLACK, (raw, took)
    sh.check_nl3()


def test_healthz_liveness_probe(start_shoal, start_peer):
    """GET /healthz answers 200 "ok" while shoal serves (HEAD too, with no
    body); once SIGTERM stops it, a probe on a stats connection opened
    before answers 503 and new probes find the port closed: keepalived's
    track_script (dist/keepalived) moves the address away."""
    sh = echo_stats_shoal(start_shoal, start_peer)
    sp = sh.stats_port
    s = socket.create_connection(("127.0.0.1", sp), timeout=5)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    data = recv_all(s)
    s.close()
    assert data.startswith(b"HTTP/1.1 200 ") and \
        data.endswith(b"\r\n\r\nok: 2 workers, 1 frontends\n"), data
    s = socket.create_connection(("127.0.0.1", sp), timeout=5)
    s.sendall(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    data = recv_all(s)
    s.close()
    assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"\r\n\r\n")
    held = peers.connect(sh.addr, timeout=5)       # keeps shoal in grace
    held.sendall(b"x")
    assert held.recv(1) == b"x"
    probe = socket.create_connection(("127.0.0.1", sp), timeout=5)
    sh.send_signal(signal.SIGTERM)
    sh.wait_for(lambda: not port_open(sp), 5, what="stats port closed")
    probe.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    data = recv_all(probe)
    probe.close()
    assert data.startswith(b"HTTP/1.1 503 ") and \
        data.endswith(b"stopping\n"), data
    held.close()
    assert sh.wait_exit(10 * SLACK) == 0
