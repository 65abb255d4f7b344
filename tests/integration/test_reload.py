"""
test_reload.py - SIGHUP reloads (S21, S22) and what a reload must keep.

  S21  reload under load: wrk -c 32 keep-alive plus a loop of new
       connections through one frontend (HTTP demo backends), six long
       paced downloads through another, SIGHUP every 1.5 s alternating two
       valid configs (10 reloads): no socket error, no non-2xx, no refused
       connection, every download intact.
  S22  a broken file: the error is logged with FILE:LINE, STATUS= says so,
       the old config keeps serving, `show info` shows the error; fixing
       the file and reloading clears it.
  Also: a server that is down stays down across a reload (not one
  connection reaches it, polled right after SIGHUP); binds added, removed
  and moved between frontends (the untouched one never refuses); a server
  removed by a reload finishes its transfer and leaves the table;
  announced and admin-added servers survive a reload.
"""

import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

import peers
from conftest import SLACK, parse_hostport, wait_for
from test_admin import (admin, admin_config, info, new_bind, servers_table,
                        shoalctl, sock_path)
from discovery_helpers import ANNOUNCE_BIN, free_udp_port

MiB = 1 << 20


def reloads_done(sh):
    return sum(1 for _, _, m in sh.log_lines() if m.startswith("reload done"))


def hup(sh, text):
    """Write the config and SIGHUP; wait until that reload is applied."""
    n = reloads_done(sh)
    with open(sh.conf_path, "w") as f:
        f.write(text)
    sh.send_signal(signal.SIGHUP)
    wait_for(lambda: reloads_done(sh) > n, 5 * SLACK, 0.005,
             what="reload done")


class ConnLoop:
    """New connections one after another to addr (an HTTP GET with
    Connection: close, or just connect+close with http=False); counts
    each outcome by error name."""

    def __init__(self, addr, http=True, gap=0.002):
        self.addr, self.http, self.gap = addr, http, gap
        self.ok = 0
        self.errors = {}
        self.stopped = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stopped.is_set():
            try:
                s = peers.connect(self.addr, timeout=5 * SLACK)
                try:
                    if self.http:
                        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                        n, _, err = peers.read_all(s)
                        if err or n == 0:
                            raise OSError(err or "empty answer")
                finally:
                    s.close()
                self.ok += 1
            except OSError as e:
                k = peers.errname(e) if e.errno else str(e)
                self.errors[k] = self.errors.get(k, 0) + 1
            time.sleep(self.gap)

    def stop(self):
        self.stopped.set()
        self.t.join(15 * SLACK)
        return self.ok, self.errors


class PacedDownload:
    """Read a `size` byte download through shoal at about `rate` B/s."""

    def __init__(self, addr, size, rate):
        self.res = None
        self.got = 0
        self.t = threading.Thread(target=self.run,
                                  args=(addr, size, rate), daemon=True)
        self.t.start()

    def run(self, addr, size, rate):
        import hashlib
        h = hashlib.sha256()
        err = None
        t0 = time.monotonic()
        try:
            s = peers.connect(addr, timeout=30 * SLACK)
        except OSError as e:
            self.res = (0, None, peers.errname(e))
            return
        try:
            buf = bytearray(256 * 1024)
            mv = memoryview(buf)
            while True:
                k = s.recv_into(mv)
                if k == 0:
                    break
                h.update(mv[:k])
                self.got += k
                ahead = self.got / rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
        except OSError as e:
            err = peers.errname(e)
        finally:
            s.close()
        self.res = (self.got, h.hexdigest(), err)

    def wait(self, timeout):
        self.t.join(timeout)
        assert self.res is not None, "download still running"
        return self.res


# --------------------------------------------------------------------------
# S21

def s21_config(sock, web_bind, bulk_bind, webs, srcs, variant):
    """Two frontends; the variants differ in a timeout, a weight and a
    connect timeout (all applied in place)."""
    a = variant == 0
    lines = ["[global]", "threads = 2", "log_level = info", "grace = 5s",
             "maxconn = 10000", "",
             "[frontend web]", "bind = %s" % web_bind, "backend = app",
             "timeout_client = %s" % ("10s" if a else "11s"), "",
             "[frontend bulk]", "bind = %s" % bulk_bind, "backend = bulk",
             "timeout_client = 30s", "",
             "[backend app]", "balance = roundrobin",
             "timeout_connect = %s" % ("1s" if a else "2s"),
             "timeout_server = 10s", "retries = 2", "check = tcp",
             "check_interval = 500ms", "rise = 2", "fall = 3"]
    for i, (name, addr) in enumerate(webs):
        w = 2 if (i == 0 and not a) else 1
        lines.append("server = %s %s weight=%d" % (name, addr, w))
    lines += ["", "[backend bulk]", "balance = leastconn",
              "timeout_connect = 1s", "timeout_server = 30s"]
    for p in srcs:
        lines.append("server = %s %s" % (p.name, p.addr))
    lines += ["", "[admin]", "socket = %s" % sock, ""]
    return "\n".join(lines)


def test_s21_reload_under_load(start_peer, start_shoal, http_backends,
                               tmp_path):
    size, rate, nstreams = 96 * MiB, 7 * MiB, 6
    srcs = [start_peer("source", "--size", size, "--seed", 21,
                       name="src%d" % i) for i in (1, 2)]
    sock = sock_path(tmp_path)
    web, bulk = new_bind(), new_bind()
    configs = [s21_config(sock, web, bulk, http_backends, srcs, v)
               for v in (0, 1)]
    sh = start_shoal(config_text=configs[0], binds=[web, bulk])
    sh.sock = sock
    wait_for(lambda: all(r["state"] == "up" for r in
                         servers_table(sock, "app").values()), 5 * SLACK,
             what="web backends up")
    expect = peers.stream_digest(21, size)
    bulk_addr, web_addr = parse_hostport(bulk), parse_hostport(web)

    downloads = [PacedDownload(bulk_addr, size, rate)
                 for _ in range(nstreams)]
    wrk = subprocess.Popen(["wrk", "-t", "2", "-c", "32", "-d", "15s",
                            "--timeout", "5s", "http://%s/" % web],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
    loop = ConnLoop(web_addr)
    inflight = []
    try:
        time.sleep(1.0)
        t0 = time.monotonic()
        for i in range(10):
            inflight.append(sum(d.res is None for d in downloads))
            hup(sh, configs[(i + 1) % 2])
            next_at = t0 + 1.5 * (i + 1)
            time.sleep(max(0.0, next_at - time.monotonic()))
        out, _ = wrk.communicate(timeout=60)
    finally:
        if wrk.poll() is None:
            wrk.kill()
            wrk.wait(5)
    ok, errors = loop.stop()
    print(out, "new connections:", ok, "downloads in flight:", inflight)
    assert wrk.returncode == 0, out
    assert "Socket errors" not in out, out
    assert "Non-2xx" not in out, out
    m = re.search(r"(\d+) requests in", out)
    assert m and int(m.group(1)) > 500, out
    assert not errors and ok > 100, (ok, errors)
    # The downloads spanned (at least) the first eight reloads.
    assert min(inflight[:8]) == nstreams, inflight
    for d in downloads:
        n, sha, err = d.wait(60 * SLACK)
        assert (n, sha, err) == (size, expect, None), (n, err)
    assert reloads_done(sh) == 10
    log = sh.log()
    assert "reload refused" not in log
    assert "removed by reload" not in log and "added by reload" not in log
    i = info(sock)
    assert i["reloads"] == "10" and i["last_reload_error"] == "-", i
    bulk_sessions = [s for s in sh.sessions()
                     if str(s["server"]).startswith("bulk/")]
    assert len(bulk_sessions) == nstreams
    assert all(s["term"] == "--" and s["bytes_out"] == size
               for s in bulk_sessions), bulk_sessions
    # The web servers kept their counters: nothing was rebuilt.
    t = servers_table(sock, "app")
    assert sum(r["total"] for r in t.values()) >= ok
    sh.check_nl3(timeout=5)


# --------------------------------------------------------------------------
# S22

def test_s22_broken_config_keeps_serving(start_peer, start_shoal, tmp_path):
    s1 = start_peer("echo", name="s1")
    s2 = start_peer("echo", name="s2")
    sock = sock_path(tmp_path)
    bind = new_bind()
    good = admin_config(sock, bind, [s1, s2])
    # A fake systemd notify socket, to see STATUS=.
    nsock = os.path.join(str(tmp_path), "notify.sock")
    ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ns.bind(nsock)
    ns.settimeout(0.2)
    try:
        sh = start_shoal(config_text=good, binds=[bind],
                         env={"NOTIFY_SOCKET": nsock},
                         allow_errors=[r"^reload refused: "])
        sh.sock = sock
        loop = ConnLoop(sh.addr, http=False)
        bad = good.replace("timeout_client = 10s",
                           "timeout_client = 10s\nbogus_key = 1")
        lineno = bad.splitlines().index("bogus_key = 1") + 1
        with open(sh.conf_path, "w") as f:
            f.write(bad)
        _drain(ns)
        sh.send_signal(signal.SIGHUP)
        msg = wait_for(lambda: _find(sh, r"^reload refused: "), 5 * SLACK,
                       what="reload refused")
        want = "%s:%d: " % (sh.conf_path, lineno)
        assert want in msg and "bogus_key" in msg, msg
        lvl = [l for _, l, m in sh.log_lines() if m == msg]
        assert lvl == ["error"], lvl
        notes = _recv_all(ns, 2 * SLACK, until="STATUS=reload refused")
        assert "RELOADING=1" in notes and "MONOTONIC_USEC=" in notes, notes
        assert "STATUS=reload refused: %s" % want in notes, notes
        assert "READY=1" in notes.split("RELOADING=1", 1)[1], notes
        # The old configuration keeps serving, untouched.
        i = info(sock)
        assert i["last_reload_error"].startswith(want), i
        assert i["reloads"] == "0"
        r = shoalctl("show", "info", sock=sock)
        assert r.returncode == 0 and "last_reload_error: " + want in r.stdout
        t = servers_table(sock)
        assert sorted(t) == ["app/s1", "app/s2"]
        for k in range(4):
            assert peers.exchange(sh.addr, 1000, k)["rx_len"] == 1000
        # Fixed: the next reload applies and clears the error.
        hup(sh, good.replace("timeout_client = 10s", "timeout_client = 9s"))
        i = info(sock)
        assert i["reloads"] == "1" and i["last_reload_error"] == "-", i
        ok, errors = loop.stop()
        assert not errors and ok > 10, (ok, errors)
        sh.check_nl3()
    finally:
        ns.close()


def _find(sh, pattern):
    for _, _, m in sh.log_lines():
        if re.search(pattern, m):
            return m
    return None


def _drain(ns):
    try:
        while True:
            ns.recv(4096)
    except OSError:
        pass


def _recv_all(ns, timeout, until):
    out = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            out.append(ns.recv(4096).decode())
        except socket.timeout:
            continue
        if until in out[-1]:
            # take the READY=1 that follows too
            try:
                out.append(ns.recv(4096).decode())
            except socket.timeout:
                pass
            break
    return "\n".join(out)


# --------------------------------------------------------------------------
# What a reload keeps

@pytest.mark.parametrize("checks", ["same_checks", "new_checks"])
def test_down_server_stays_down(start_hpeer, start_shoal, tmp_path, checks):
    """A server that is down gets nothing right after a reload (with the
    check settings unchanged, and with new ones: checks restart from the
    server's current state)."""
    status = os.path.join(str(tmp_path), "h2.status")
    with open(status, "w") as f:
        f.write("500\n")
    h1 = start_hpeer("http", name="h1")
    h2 = start_hpeer("http", "--status-file", status, name="h2")
    sock = sock_path(tmp_path)
    bind = new_bind()
    be = [("check", "http"), ("check_http", "HEAD /health"),
          ("check_interval", "200ms"), ("rise", 2), ("fall", 2),
          ("init_state", "checking")]

    def cfg(variant):
        b = dict(be)
        if variant:
            b["timeout_server"] = "9s"
            if checks == "new_checks":
                b["check_interval"] = "300ms"
        return admin_config(sock, bind, [h1, h2], backend=list(b.items()))

    sh = start_shoal(config_text=cfg(0), binds=[bind])
    sh.sock = sock
    wait_for(lambda: servers_table(sock)["app/h1"]["state"] == "up",
             5 * SLACK, what="h1 up")
    assert servers_table(sock)["app/h2"]["state"] in ("checking", "down")
    addr = sh.addr

    def traffic(p):
        return p.select("req", pred=lambda e: "/traffic" in e["line"])

    def burst(n):
        res = []

        def one():
            try:
                peers.download(addr, b"GET /traffic HTTP/1.0\r\n\r\n",
                               timeout=5)
                res.append(True)
            except OSError:
                res.append(False)
        ts = [threading.Thread(target=one) for _ in range(n)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(20)
        return res

    for variant in (1, 0, 1):
        n = reloads_done(sh)
        with open(sh.conf_path, "w") as f:
            f.write(cfg(variant))
        sh.send_signal(signal.SIGHUP)
        # Poll right away, while the reload is being applied.
        res = burst(40)
        wait_for(lambda: reloads_done(sh) > n, 5 * SLACK, what="reload")
        res += burst(40)
        assert all(res), res.count(False)
    # (a peer logs a request just after answering it)
    wait_for(lambda: len(traffic(h1)) == 240, 2 * SLACK,
             what="240 requests logged by h1")
    assert traffic(h2) == [], traffic(h2)[:3]
    assert servers_table(sock)["app/h2"]["state"] in ("checking", "down")
    assert not [m for _, _, m in sh.log_lines()
                if re.match(r"server app/h2: \w+ -> up", m)]
    # It is still checked, and comes up when it gets healthy.
    with open(status, "w") as f:
        f.write("200\n")
    wait_for(lambda: servers_table(sock)["app/h2"]["state"] == "up",
             5 * SLACK, what="h2 up")


def test_reload_binds_added_removed_moved(start_peer, start_shoal, tmp_path):
    s1 = start_peer("tag", "--close", name="s1")
    o1 = start_peer("tag", "--close", name="o1")
    sock = sock_path(tmp_path)
    keep, gone, new, moved = (new_bind() for _ in range(4))

    def cfg(web_binds, other_binds):
        text = admin_config(sock, web_binds[0], [s1])
        text = text.replace("bind = %s\n" % web_binds[0], "".join(
            "bind = %s\n" % b for b in web_binds))
        text += ("\n[frontend other]\n" + "".join(
            "bind = %s\n" % b for b in other_binds) + "backend = oth\n"
            "\n[backend oth]\nserver = o1 %s\n" % o1.addr)
        return text

    sh = start_shoal(config_text=cfg([keep, gone, moved], [new_bind()]),
                     binds=[keep])
    sh.sock = sock

    def tag(b):
        return peers.read_tag(parse_hostport(b), timeout=5)

    assert tag(keep) == tag(gone) == tag(moved) == "s1"
    with pytest.raises(ConnectionRefusedError):
        peers.connect(parse_hostport(new), timeout=2)
    loop = ConnLoop(parse_hostport(keep), http=False)
    wait_for(lambda: loop.ok >= 10, 5 * SLACK, what="traffic before the reload")
    hup(sh, cfg([keep, new], [moved]))

    def listening(b):
        port = ":%d" % parse_hostport(b)[1]
        return len([l for l in sh.ss(("LISTEN",))
                    if l.split()[3].endswith(port)])
    # The workers apply listener changes at wake-up: wait for both.
    wait_for(lambda: listening(gone) == 0 and listening(new) == 2,
             5 * SLACK, what="every worker dropped gone and bound new")
    sh.fd_baseline -= 2     # 4 addresses x 2 workers before, 3 x 2 now
    n = loop.ok
    wait_for(lambda: loop.ok >= n + 11, 5 * SLACK,
             what="traffic on the kept bind after the reload")
    ok, errors = loop.stop()
    assert not errors and ok > 20, (ok, errors)
    assert tag(keep) == "s1"
    assert tag(new) == "s1"
    assert tag(moved) == "o1"
    with pytest.raises(ConnectionRefusedError):
        peers.connect(parse_hostport(gone), timeout=2)
    # Every worker dropped it: no listener left in shoal's table.
    port = parse_hostport(gone)[1]
    assert not [l for l in sh.ss(("LISTEN",))
                if l.split()[3].endswith(":%d" % port)]
    sh.check_nl3()


def test_reload_removes_server_with_transfer(start_peer, start_shoal,
                                             tmp_path):
    size = 48 * MiB
    a = start_peer("source", "--size", size, "--seed", 5, name="a")
    b = start_peer("source", "--size", size, "--seed", 5, name="b")
    sock = sock_path(tmp_path)
    bind = new_bind()
    sh = start_shoal(config_text=admin_config(sock, bind, [a, b]),
                     binds=[bind])
    sh.sock = sock
    d = PacedDownload(sh.addr, size, 16 * MiB)
    wait_for(lambda: d.got > MiB, 5 * SLACK, what="download started")
    t = servers_table(sock)
    on = "a" if t["app/a"]["cur"] == 1 else "b"
    other = {"a": b, "b": a}[on]
    hup(sh, admin_config(sock, bind, [other]))
    t = servers_table(sock)
    assert list(t) == ["app/%s" % other.name], t
    assert "server app/%s: removed by reload (1 sessions finish on it)" \
        % on in sh.log()
    # New sessions go to the other one at once.
    n0 = len(sh.sessions())
    for _ in range(2):
        peers.download(sh.addr, b"", timeout=10)
    assert d.res is None, "the transfer ended before the reload was tested"
    got = d.wait(30 * SLACK)
    assert got == (size, peers.stream_digest(5, size), None), got[::2]
    ses = sh.wait_sessions(n0 + 3)
    mine = [s for s in ses if s["server_name"] == on]
    assert len(mine) == 1 and mine[0]["term"] == "--" and \
        mine[0]["bytes_out"] == size, mine
    sh.check_nl3()


def test_announced_and_admin_servers_survive_reload(start_peer, start_shoal,
                                                    tmp_path):
    s1 = start_peer("tag", "--close", name="s1")
    ann = start_peer("tag", "--close", name="ann")
    adm = start_peer("tag", "--close", name="adm")
    sock = sock_path(tmp_path)
    bind = new_bind()
    dport = free_udp_port()

    def cfg(timeout):
        text = admin_config(sock, bind, [s1], backend=[
            ("check", "tcp"), ("check_interval", "200ms"), ("rise", 2),
            ("discovery", "yes"), ("timeout_server", timeout)])
        return text + ("\n[discovery]\nport = %d\ngroup = 239.255.76.66\n"
                       "interface = lo\nauth = none\nallow = 127.0.0.0/8\n"
                       % dport)

    sh = start_shoal(config_text=cfg("10s"), binds=[bind])
    sh.sock = sock
    announcer = subprocess.Popen(
        [ANNOUNCE_BIN, "--pool", "app", "--port", str(ann.port),
         "--addr", "127.0.0.1", "--target", "127.0.0.1:%d" % dport,
         "--interval", "200ms", "--label", "ann-label"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        assert admin(sock, "add server app/adm %s weight=2" % adm.addr) \
            .startswith("ok: ")
        ann_name = "app/127.0.0.1:%d" % ann.port

        def all_up():
            t = servers_table(sock)
            return len(t) == 3 and all(r["state"] == "up"
                                       for r in t.values()) and t
        wait_for(all_up, 5 * SLACK, what="three servers up")
        for _ in range(8):
            peers.read_tag(sh.addr)
        before = servers_table(sock)
        assert before[ann_name]["source"] == "announced"
        assert before[ann_name]["label"] == "ann-label"
        assert before["app/adm"]["source"] == "admin"
        assert before["app/adm"]["weight"] == 2
        assert "ann" in [r[0] for r in _discovery_rows(sock)]
        for timeout in ("11s", "10s"):
            hup(sh, cfg(timeout))
            after = servers_table(sock)
            assert set(after) == set(before), after
            for n in after:
                assert after[n]["state"] == "up", after
                assert after[n]["source"] == before[n]["source"]
                assert after[n]["weight"] == before[n]["weight"]
                assert after[n]["total"] >= before[n]["total"] > 0, \
                    (n, before[n], after[n])
        tags = [peers.read_tag(sh.addr) for _ in range(8)]
        assert set(tags) == {"s1", "ann", "adm"}, tags
        assert "removed" not in "".join(
            m for _, _, m in sh.log_lines() if "reload" in m)
    finally:
        announcer.terminate()
        announcer.wait(5)


def _discovery_rows(sock):
    """`show discovery` rows as lists, plus a fake first column 'ann' for
    the rows whose label is ann-label (to keep the assertion short)."""
    rows = []
    for line in admin(sock, "show discovery").splitlines()[1:-1]:
        f = line.split()
        rows.append(["ann" if f[-1] == "ann-label" else f[0]] + f)
    return rows


def test_reload_to_checked_backend_no_client_refused(start_peer, start_shoal):
    """A reload that moves the frontend to a new backend whose server is
    still being checked: clients arriving meanwhile wait for it
    (timeout_queue) instead of being closed; none is refused."""
    a = start_peer("tag", name="a")
    b = start_peer("tag", name="b")
    bind = new_bind()

    def cfg(backend):
        return "\n".join([
            "[global]", "threads = 2", "log_level = info", "grace = 5s", "",
            "[frontend web]", "bind = %s" % bind, "backend = %s" % backend,
            "timeout_client = 10s", "",
            "[backend app]", "server = a %s" % a.addr, "",
            "[backend next]", "server = b %s" % b.addr, "check = tcp",
            "check_interval = 300ms", "rise = 2", "timeout_queue = 5s", ""])
    sh = start_shoal(config_text=cfg("app"), binds=[bind])
    tags, stop = [], threading.Event()

    def loop():
        while not stop.is_set():
            try:
                s, t = peers.open_tagged(sh.addr, timeout=10 * SLACK)
                s.close()
            except OSError as e:
                t = "error %s" % e
            tags.append(t)
    th = threading.Thread(target=loop, daemon=True)
    th.start()
    wait_for(lambda: tags.count("a") >= 5, 5 * SLACK, what="a serving")
    hup(sh, cfg("next"))
    wait_for(lambda: tags.count("b") >= 5, 10 * SLACK, what="b serving")
    stop.set()
    th.join(15 * SLACK)
    bad = [t for t in tags if t not in ("a", "b")]
    assert not bad, "%d of %d clients not served: %r" % (
        len(bad), len(tags), bad[:5])
    waited = [s["queue_ms"] for s in sh.sessions()
              if s["server_name"] == "b"]
    print("\n%d clients, %d to b; longest wait for b %d ms"
          % (len(tags), len(waited), max(waited)))
