"""
Health checks: down and up with timing bounds (S16), kill -9 of a backend
under a client loop (S07, S08), every check type (tcp, http, tls against
`openssl s_server`, send-expect), flapping (S17, scripted and with nft
reject in a namespace), 10 000 checks leak nothing (S18), passive health
(a server that accepts and resets every connection).

Servers start `checking` here (init_state = checking): these tests follow
the rise/fall machine from its first check; test_init_state covers the
default start as `up`.

Peers: peers.py (echo) through conftest's start_peer; the check-specific
servers of health_peers.py (http, script, line, silent, rst) through
conftest's start_hpeer. Timing bounds are generous and scaled by SLACK; every
wait polls with a deadline.
"""

import datetime
import os
import re
import socket
import statistics
import subprocess
import time

import pytest

import conftest
from peers import ClientLoop, echo_once
from conftest import SLACK, default_binds, render_config, wait_for


STATE_RE = re.compile(r"^server (\S+?)/(\S+): (\w+) -> (\w+) \((.*)\)$")
CHECK_RE = re.compile(r"^check (\S+?)/(\S+): ")
MS_RE = re.compile(r", (\d+)ms$")


# --------------------------------------------------------------------------
# Fixtures and helpers

@pytest.fixture
def procs():
    """Other subprocesses (openssl s_server, nft togglers): killed at
    teardown."""
    made = []
    yield made
    for p in made:
        if p.poll() is None:
            p.kill()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            pass


def log_time(ts):
    """'2026-11-22T19:52:25.429Z' -> seconds since the epoch."""
    d = datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ")
    return d.replace(tzinfo=datetime.timezone.utc).timestamp()


def timeline(lb):
    """shoal's log as events in order: dicts with kind 'state' (be, srv,
    old, new, reason, t), 'session' (the session fields, t) or 'check'."""
    out = []
    for ts, _, msg in lb.log_lines():
        m = STATE_RE.match(msg)
        if m:
            out.append({"kind": "state", "be": m.group(1),
                        "srv": m.group(2), "old": m.group(3),
                        "new": m.group(4), "reason": m.group(5),
                        "t": log_time(ts)})
        elif msg.startswith("session "):
            d = {k: v for k, v in conftest.KV_RE.findall(msg)}
            d["kind"] = "session"
            d["t"] = log_time(ts)
            d["server_name"] = d.get("server", "").split("/", 1)[-1]
            d["retries"] = int(d.get("retries", "0"))
            out.append(d)
        elif CHECK_RE.match(msg):
            out.append({"kind": "check", "t": log_time(ts), "msg": msg})
    return out


def transitions(lb, srv=None, be=None):
    return [e for e in timeline(lb) if e["kind"] == "state"
            and (srv is None or e["srv"] == srv)
            and (be is None or e["be"] == be)]


def wait_state(lb, srv, new, timeout, be=None, after=0):
    """Wait for the first transition of srv to `new` at index >= after
    among srv's transitions; returns it."""
    def find():
        tr = transitions(lb, srv, be)[after:]
        for e in tr:
            if e["new"] == new:
                return e
        return None
    try:
        return wait_for(find, timeout * SLACK, 0.01,
                        "%s -> %s" % (srv, new))
    except AssertionError:
        raise AssertionError("no %s -> %s within %.1fs; log:\n%s"
                             % (srv, new, timeout * SLACK,
                                lb.log()[-3000:]))


def check_ms(reason):
    m = MS_RE.search(reason)
    return int(m.group(1)) if m else None


def config(backends, binds, global_=None, frontend_backend=None):
    """Config text with one frontend 'web' (to the first backend unless
    frontend_backend) and the given backends [(name, [(k, v)...])]."""
    g = {"threads": 2, "log_level": "info", "grace": "5s"}
    g.update(global_ or {})
    fe = [("bind", b) for b in binds] + [
        ("backend", frontend_backend or backends[0][0]),
        ("timeout_client", "10s")]
    return render_config(g, [("web", fe)], backends)


def model(script, rise, fall, state="checking"):
    """The rise/fall machine in Python: transitions [(index, old, new)]."""
    ok_run = fail_run = 0
    out = []
    for i, ok in enumerate(script):
        if ok:
            ok_run, fail_run = ok_run + 1, 0
            if state != "up" and ok_run >= rise:
                out.append((i, state, "up"))
                state, ok_run, fail_run = "up", 0, 0
        else:
            ok_run, fail_run = 0, fail_run + 1
            if state != "down" and fail_run >= fall:
                out.append((i, state, "down"))
                state, ok_run, fail_run = "down", 0, 0
    return out


def peer_port(ss_line):
    """The peer's port of an `ss -tan` line (-1 for '*')."""
    p = ss_line.split()[4].rsplit(":", 1)[1]
    return int(p) if p.isdigit() else -1


def nl3_with_checks(lb, check_ports, timeout=2.0):
    """NL3 when some checks may be in flight (to servers that never
    answer): within `timeout`, every shoal socket in ESTABLISHED is a
    check to one of check_ports, none is in CLOSE-WAIT or FIN-WAIT-2, and
    the fd count less those check sockets is back to the baseline."""
    deadline = time.monotonic() + timeout * SLACK
    while True:
        socks = lb.ss(("ESTAB", "CLOSE-WAIT", "FIN-WAIT-2"))
        other = [x for x in socks if not (x.startswith("ESTAB")
                                          and peer_port(x) in check_ports)]
        checks = len(socks) - len(other)
        fds = lb.fd_count()
        if not other and fds - checks <= lb.fd_baseline:
            break
        if time.monotonic() > deadline:
            raise AssertionError("NL3: fd %d - %d checks > baseline %d; "
                                 "sockets:\n%s" % (fds, checks,
                                                    lb.fd_baseline,
                                                    "\n".join(socks)))
        time.sleep(0.02)
    assert lb.alive()


def one_line_per_transition(tr):
    """Consecutive state lines chain (each old = previous new) and never
    repeat a state."""
    for a, b in zip(tr, tr[1:]):
        assert b["old"] == a["new"], (a, b)
        assert b["new"] != b["old"], b


# --------------------------------------------------------------------------
# S16: down after fall checks, up after rise checks, nothing to a down one

def test_down_and_up_timing(start_peer, start_shoal):
    """S16 without traffic, so only active checks decide: DOWN within
    [(fall-1)*I, fall*I + I], UP within [(rise-1)*I, rise*I + I]; while
    down no session goes to the server; one log line per transition."""
    I, rise, fall = 0.3, 2, 3
    e = [start_peer("echo", name="e%d" % i) for i in (1, 2, 3)]
    t0 = time.time()
    lb = start_shoal(e, backend={"check": "tcp", "check_interval": "300ms",
                                 "check_timeout": "300ms",
                                 "init_state": "checking", "rise": rise,
                                 "fall": fall})
    for p in e:
        up = wait_state(lb, p.name, "up", rise * I + 2)
        assert up["old"] == "checking" and up["reason"].startswith("L4OK")
        # Not before rise checks: the first within one interval, then
        # rise-1 more intervals.
        assert up["t"] - t0 >= (rise - 1) * I - 0.05, up
    assert [s for s in lb.sessions()] == []

    e1 = e[0]
    e1.kill()
    t_kill = time.time()
    down = wait_state(lb, "e1", "down", fall * I + I + 2, after=1)
    d = down["t"] - t_kill
    assert down["old"] == "up" and down["reason"].startswith("L4CON"), down
    assert (fall - 1) * I - 0.05 <= d <= fall * I + I + 0.2 * SLACK, d

    # While e1 is down, no session goes (or even tries to go) to it.
    for _ in range(12):
        assert echo_once(lb.addr) is None
    sess = lb.wait_sessions(12)
    assert all(s["server_name"] in ("e2", "e3") for s in sess), sess
    assert all(s["retries"] == 0 for s in sess), sess

    e1b = start_peer("echo", name="e1", port=e1.port)
    t_restart = time.time()
    up = wait_state(lb, "e1", "up", rise * I + I + 2, after=2)
    u = up["t"] - t_restart
    assert up["old"] == "down" and up["reason"].startswith("L4OK"), up
    assert (rise - 1) * I - 0.05 <= u <= rise * I + I + 0.2 * SLACK, u
    # Back in rotation.
    for _ in range(9):
        assert echo_once(lb.addr) is None
    sess = lb.wait_sessions(21)[12:]
    assert sum(1 for s in sess if s["server_name"] == "e1") == 3, sess
    assert len(e1b.wait_events("conn", 3, pred=lambda c: c.get("rx_len")
                               == 64)) >= 3

    tr = transitions(lb, "e1")
    assert [(x["old"], x["new"]) for x in tr] == [
        ("checking", "up"), ("up", "down"), ("down", "up")], tr
    one_line_per_transition(tr)
    print("S16: down %.0f ms after kill, up %.0f ms after restart"
          % (d * 1000, u * 1000))
    lb.check_nl3()


def test_kill_under_client_loop(start_peer, start_shoal):
    """kill -9 of one of three backends while a client loop runs (retries
    2): zero failed client connections, the server is marked down within
    fall*I + I, no connection to it afterwards; restarted, it is back in
    rotation after rise checks and not before."""
    I, rise, fall = 0.2, 2, 3
    e = [start_peer("echo", name="e%d" % i) for i in (1, 2, 3)]
    lb = start_shoal(e, backend={"check": "tcp", "check_interval": "200ms",
                                 "check_timeout": "200ms",
                                 "init_state": "checking", "rise": rise,
                                 "fall": fall, "retries": 2})
    for p in e:
        wait_state(lb, p.name, "up", rise * I + 2)
    loop = ClientLoop(lb.addr, gap=0.005).start()
    try:
        wait_for(lambda: len(loop.results) >= 30, 10 * SLACK,
                 what="30 client exchanges")
        with loop.lock:
            e[0].kill()
            t_kill = time.time()
        down = wait_state(lb, "e1", "down", fall * I + I + 2, after=1)
        n_at_down = len(loop.results)
        wait_for(lambda: len(loop.results) >= n_at_down + 60, 10 * SLACK,
                 what="60 more exchanges while e1 is down")
        e1b = start_peer("echo", name="e1", port=e[0].port)
        t_restart = time.time()
        up = wait_state(lb, "e1", "up", rise * I + I + 2, after=2)
        # Wait until e1 carries traffic again.
        wait_for(lambda: any(s["server_name"] == "e1" and s["t"] > up["t"]
                             for s in timeline(lb)
                             if s["kind"] == "session"),
                 5, what="a session to the restarted e1")
    finally:
        loop.stop()

    assert loop.failures() == [], loop.failures()[:5]
    d = down["t"] - t_kill
    assert d <= fall * I + I + 0.2 * SLACK, d
    tl = timeline(lb)
    sessions = [s for s in tl if s["kind"] == "session"]
    assert len(sessions) == len(loop.results), (len(sessions),
                                                len(loop.results))
    # The failed attempts on e1 were retried on another server.
    retried = [s for s in sessions if s["retries"] >= 1]
    assert retried, "no session needed a retry (was e1 ever tried?)"
    assert all(s["t"] <= down["t"] + 0.05 for s in retried), retried
    # Nothing to e1 between its down and its up line.
    during = [s for s in sessions if down["t"] < s["t"] < up["t"]]
    assert during and all(s["server_name"] != "e1" for s in during)
    # Rise checks before traffic: the first session of the new e1 follows
    # the up line, which comes >= (rise-1)*I after the restart.
    first_new = min(s["t"] for s in sessions
                    if s["server_name"] == "e1" and s["t"] > t_restart)
    assert first_new >= up["t"]
    assert up["t"] - t_restart >= (rise - 1) * I - 0.05
    assert len(e1b.conns()) >= 1
    print("kill -9 -> down: %.0f ms (%s); client exchanges %d, failed %d, "
          "retried %d" % (d * 1000, down["reason"], len(loop.results),
                          len(loop.failures()), len(retried)))
    lb.check_nl3()


# --------------------------------------------------------------------------
# Check types

def test_http_check_500_then_200(start_hpeer, start_shoal, tmp_path):
    """http: the request is as specified; 500 -> down after exactly fall
    answers (L7STS: HTTP 500); 200 again -> up after exactly rise."""
    rise, fall = 2, 3
    status = tmp_path / "status"
    status.write_text("200")
    h = start_hpeer("http", "--status-file", str(status), name="h1")
    lb = start_shoal([h], backend={
        "check": "http", "check_http": "GET /healthz",
        "check_host": "health.test", "check_interval": "100ms",
        "check_timeout": "500ms", "init_state": "checking",
        "rise": rise, "fall": fall})
    up = wait_state(lb, "h1", "up", 3)
    assert up["reason"].startswith("L7OK: HTTP 200"), up
    req = h.wait_events("req", 1)[0]
    assert req["line"] == "GET /healthz HTTP/1.1", req
    assert req["headers"] == ["Host: health.test", "Connection: close",
                              "User-Agent: shoal-check"], req

    status.write_text("500")
    down = wait_state(lb, "h1", "down", 3, after=1)
    assert down["reason"].startswith("L7STS: HTTP 500"), down
    served = [r for r in h.select("req") if r["t"] <= down["t"] + 0.005]
    tail = [r["status"] for r in served][-(fall + 1):]
    assert tail == [200] + [500] * fall, tail

    status.write_text("200")
    up2 = wait_state(lb, "h1", "up", 3, after=2)
    assert up2["reason"].startswith("L7OK: HTTP 200"), up2
    served = [r for r in h.select("req") if r["t"] <= up2["t"] + 0.005]
    tail = [r["status"] for r in served][-(rise + 1):]
    assert tail == [500] + [200] * rise, tail
    one_line_per_transition(transitions(lb, "h1"))
    lb.check_nl3()


def test_silent_server_times_out(start_hpeer, start_shoal):
    """A server that accepts and never answers: http check -> L7TOUT
    after check_timeout -> down; the timeout is what the log reports."""
    q = start_hpeer("silent", name="q1")
    lb = start_shoal([q], backend={
        "check": "http", "check_interval": "100ms",
        "check_timeout": "300ms", "init_state": "checking",
        "rise": 2, "fall": 2})
    down = wait_state(lb, "q1", "down", 3)
    assert down["old"] == "checking"
    assert down["reason"].startswith("L7TOUT"), down
    ms = check_ms(down["reason"])
    assert 290 <= ms <= 300 + 200 * SLACK, down
    nl3_with_checks(lb, {q.port})


def make_cert(d, name, cn="localhost"):
    key, crt = os.path.join(d, name + ".key"), os.path.join(d, name + ".pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec",
                    "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", key, "-out", crt, "-days", "2",
                    "-subj", "/CN=" + cn,
                    "-addext", "subjectAltName=DNS:" + cn],
                   check=True, capture_output=True, timeout=30)
    return key, crt


def tcp_ready(addr, timeout):
    def probe():
        try:
            socket.create_connection(addr, timeout=0.5).close()
            return True
        except OSError:
            return False
    wait_for(probe, timeout, 0.05, "listener on %s:%d" % addr)


def test_tls_check(start_peer, start_hpeer, start_shoal, procs, tmp_path,
                   free_port):
    """tls against `openssl s_server` with a self-signed certificate: up
    (L6OK) without verification, with the right CA and SNI; down (L6RSP)
    against a plain TCP server, with the wrong CA (verify error) and with
    a name the certificate does not carry; L6TOUT against a silent one."""
    key, crt = make_cert(str(tmp_path), "srv")
    _, other = make_cert(str(tmp_path), "other")
    port = free_port()
    sp = subprocess.Popen(
        ["openssl", "s_server", "-accept", "127.0.0.1:%d" % port,
         "-cert", crt, "-key", key, "-www", "-quiet"],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
        stderr=open(os.path.join(str(tmp_path), "s_server.err"), "w"))
    procs.append(sp)
    tcp_ready(("127.0.0.1", port), 10 * SLACK)
    plain = start_peer("echo", name="plain")
    silent = start_hpeer("silent", name="silent")
    tls = "t1 127.0.0.1:%d" % port
    common = [("check", "tls"), ("check_interval", "200ms"),
              ("check_timeout", "500ms"), ("init_state", "checking"),
              ("rise", 2), ("fall", 2)]
    text = config([
        ("noverify", [("server", tls),
                      ("server", "plain " + plain.addr),
                      ("server", "silent " + silent.addr)] + common),
        ("ca", [("server", tls), ("check_sni", "localhost"),
                ("check_ca_file", crt)] + common),
        ("badca", [("server", tls), ("check_sni", "localhost"),
                   ("check_ca_file", other)] + common),
        ("badname", [("server", tls), ("check_sni", "wrong.test"),
                     ("check_ca_file", crt)] + common),
    ], default_binds())
    lb = start_shoal(config_text=text)
    up = wait_state(lb, "t1", "up", 5, be="noverify")
    assert up["reason"].startswith("L6OK: TLSv1."), up
    up = wait_state(lb, "t1", "up", 5, be="ca")
    assert up["reason"].startswith("L6OK"), up
    down = wait_state(lb, "plain", "down", 5, be="noverify")
    assert down["reason"].startswith("L6RSP"), down
    down = wait_state(lb, "silent", "down", 5, be="noverify")
    assert down["reason"].startswith("L6TOUT"), down
    down = wait_state(lb, "t1", "down", 5, be="badca")
    assert down["reason"].startswith("L6RSP: verify: "), down
    down = wait_state(lb, "t1", "down", 5, be="badname")
    assert down["reason"].startswith("L6RSP: verify: "), down
    assert sp.poll() is None, "s_server died"
    nl3_with_checks(lb, {silent.port, port})


def test_send_expect(start_hpeer, start_shoal):
    """send-expect: PING -> +PONG is up (L7OK); a wrong reply is down
    (L7RSP, the reply quoted); a silent server times out (L7TOUT); an
    empty check_send waits for the server's banner."""
    good = start_hpeer("line", name="pong")
    bad = start_hpeer("line", "--expect", "HELLO", name="err")
    silent = start_hpeer("silent", name="mute")
    banner = start_hpeer("line", "--banner", "+OK ready\\r\\n", name="bnr")
    common = [("check_interval", "100ms"), ("check_timeout", "300ms"),
              ("init_state", "checking"),
              ("rise", 2), ("fall", 2)]
    text = config([
        ("redis", [("server", "pong " + good.addr),
                   ("server", "err " + bad.addr),
                   ("server", "mute " + silent.addr),
                   ("check", "send-expect"), ("check_send", "PING\\r\\n"),
                   ("check_expect", "+PONG")] + common),
        ("banner", [("server", "bnr " + banner.addr),
                    ("check", "send-expect"),
                    ("check_expect", "+OK")] + common),
    ], default_binds())
    lb = start_shoal(config_text=text)
    up = wait_state(lb, "pong", "up", 3)
    assert up["reason"].startswith("L7OK"), up
    line = good.wait_events("line", 1)[0]
    assert line["good"] is True
    down = wait_state(lb, "err", "down", 3)
    assert down["reason"].startswith('L7RSP: unexpected reply "-ERR'), down
    down = wait_state(lb, "mute", "down", 3)
    assert down["reason"].startswith("L7TOUT"), down
    up = wait_state(lb, "bnr", "up", 3)
    assert up["reason"].startswith("L7OK"), up
    nl3_with_checks(lb, {silent.port, good.port, bad.port, banner.port})


# --------------------------------------------------------------------------
# S17: flapping

def test_flapping_scripted(start_hpeer, start_shoal):
    """S17, deterministic: an http server whose k-th answer follows a
    script (200/500). shoal's transitions must be exactly those of the
    rise 2 / fall 3 machine on the answers it got: alternation never
    changes state, and one log line per transition."""
    rise, fall, I = 2, 3, 0.05
    script = ("10" * 5 + "11" + "01" * 5 + "001" * 3 + "000" + "10" * 4
              + "11" + "000")
    p = start_hpeer("script", "--pattern", script, name="f1")
    lb = start_shoal([p], backend={
        "check": "http", "check_interval": "50ms", "check_timeout": "1s",
        "init_state": "checking",
        "rise": rise, "fall": fall})
    p.wait_events("req", len(script) + 2, timeout=20 * SLACK)
    assert lb.stop() == 0
    got = [r["status"] == 200 for r in sorted(p.select("req"),
                                              key=lambda r: r["n"])]
    assert [r["n"] for r in p.select("req")] == list(
        range(1, len(got) + 1)), "checks overlapped or were lost"
    tr = transitions(lb, "f1")
    seen = [(x["old"], x["new"]) for x in tr]
    # shoal may have stopped before reading the very last answer.
    want = [[(a, b) for _, a, b in model(got[:n], rise, fall)]
            for n in (len(got), len(got) - 1)]
    assert seen in want, (seen, want[0])
    assert len(seen) >= 4, seen
    one_line_per_transition(tr)
    # No cycle faster than the thresholds allow.
    for a, b in zip(tr, tr[1:]):
        need = (fall if b["new"] == "down" else rise) * I
        assert b["t"] - a["t"] >= need * 0.8, (a, b)


def test_flapping_nft(netns, start_peer, start_shoal, procs):
    """S17 with nft: inside a namespace, a rule rejecting (tcp reset) the
    backend's port is added and removed in an irregular rhythm. Every
    transition is backed by enough checks (up -> down >= fall intervals
    after the previous change, down -> up >= rise), one line each."""
    rise, fall, I = 2, 3, 0.1
    ns = netns()
    e = start_peer("echo", name="e1", netns=ns)
    ns.nft("table inet flap {\n chain out {\n"
           "  type filter hook output priority 0; policy accept;\n"
           " }\n}\n")
    lb = start_shoal([e], netns=ns, backend={
        "check": "tcp", "check_interval": "100ms", "check_timeout": "100ms",
        "init_state": "checking",
        "rise": rise, "fall": fall})
    wait_state(lb, "e1", "up", 3)
    # (reject?, seconds): short flickers and long enough runs.
    rhythm = [(True, 0.12), (False, 0.15), (True, 0.45), (False, 0.12),
              (True, 0.15), (False, 0.35), (True, 0.2), (False, 0.12),
              (True, 0.5), (False, 0.4), (True, 0.12), (False, 0.3)]
    rule = "inet flap out tcp dport %d reject with tcp reset" % e.port
    for reject, secs in rhythm:
        if reject:
            ns.run(["nft", "add", "rule"] + rule.split())
        else:
            ns.run(["nft", "flush", "chain", "inet", "flap", "out"])
        time.sleep(secs)
    ns.run(["nft", "flush", "chain", "inet", "flap", "out"])
    wait_for(lambda: transitions(lb, "e1")[-1]["new"] == "up",
             5 * SLACK, what="e1 up at the end")
    tr = transitions(lb, "e1")
    one_line_per_transition(tr)
    assert any(x["new"] == "down" for x in tr), tr
    for a, b in zip(tr, tr[1:]):
        need = (fall if b["new"] == "down" else rise) * I
        assert b["t"] - a["t"] >= need - 0.05, (a, b)
        if b["new"] == "down":
            assert b["reason"].startswith("L4CON: connection refused"), b
    lb.check_nl3()


# --------------------------------------------------------------------------
# S18: 10 000 checks leak nothing

def test_checks_leak_nothing(netns, start_hpeer, start_shoal, free_port):
    """S18: inside a namespace, checks every 10 ms against refusing ports,
    a port blackholed with an nft drop rule and a server that accepts and
    never answers (tcp and send-expect checks). After 10 000 checks shoal's
    fd count is flat (±2), its RSS within 2 MiB, and it leaves no
    TIME_WAIT or FIN_WAIT2 behind."""
    ns = netns()
    dead, hole = free_port(), free_port()
    ns.nft("table inet hole {\n chain out {\n"
           "  type filter hook output priority 0; policy accept;\n"
           "  tcp dport %d drop\n }\n}\n" % hole)
    silent = start_hpeer("silent", name="q", netns=ns)
    ref, bh, qa = ("127.0.0.1:%d" % dead, "127.0.0.1:%d" % hole,
                   silent.addr)
    common = [("check_interval", "10ms"), ("check_timeout", "30ms"),
              ("init_state", "checking"),
              ("rise", 2), ("fall", 3)]
    l4 = [("server", "r%d %s" % (i, ref)) for i in range(4)] + \
        [("server", "b%d %s" % (i, bh)) for i in range(4)] + \
        [("server", "q%d %s" % (i, qa)) for i in range(4)]
    l7 = [("server", "r%d %s" % (i, ref)) for i in range(2)] + \
        [("server", "b%d %s" % (i, bh)) for i in range(2)] + \
        [("server", "q%d %s" % (i, qa)) for i in range(4)]
    nservers = len(l4) + len(l7)
    text = config([
        ("l4", l4 + [("check", "tcp")] + common),
        ("l7", l7 + [("check", "send-expect"), ("check_send", "PING\\r\\n"),
                     ("check_expect", "+PONG")] + common),
    ], default_binds(), global_={"log_level": "debug", "threads": 1})
    lb = start_shoal(config_text=text, netns=ns)

    def nchecks():
        return sum(1 for _, _, m in lb.log_lines() if CHECK_RE.match(m))

    check_ports = {dead, hole, silent.port}

    def sample():
        """(fds not used by checks, check sockets): ss lists every socket
        of shoal's with its peer; a leaked check socket stays listed."""
        fds = lb.fd_count()
        checks = sum(1 for x in lb.ss() if peer_port(x) in check_ports)
        return fds - checks, checks

    wait_for(lambda: nchecks() >= 1000, 30 * SLACK, 0.1, "1000 checks")
    static, inflight, rss = [], [], []
    rss0 = lb.rss_kb()
    deadline = time.monotonic() + 60 * SLACK
    while nchecks() < 11000:
        assert time.monotonic() < deadline, "checks too slow: %d" % nchecks()
        st, ck = sample()
        static.append(st)
        inflight.append(ck)
        rss.append(lb.rss_kb())
        time.sleep(0.05)
    # Medians: a check may open or close between the two reads (fd count,
    # then ss), which moves one sample either way; most samples read the
    # steady count, and a leak raises that count itself.
    base = statistics.median_low(static[:20])
    end = statistics.median_low(static[-20:])
    assert abs(end - base) <= 2, (base, end, static)
    # At most one socket per server, ever: no check socket outlives its
    # check (a leak would grow this past nservers within 10 000 checks).
    assert max(inflight) <= nservers, inflight
    assert rss[-1] <= rss0 + 2048, (rss0, rss[-1])
    fds = [a + b for a, b in zip(static, inflight)]
    # Nothing of shoal's lingers: checks close with an RST.
    r = ns.run(["ss", "-tanH"])
    lines = r.stdout.splitlines()
    tw = [x for x in lines if x.startswith("TIME-WAIT")]
    fw2 = [x for x in lines if x.startswith("FIN-WAIT-2")]
    assert len(tw) <= 5, tw[:10]
    assert fw2 == [], fw2
    res = {}
    for e in transitions(lb):
        res[(e["be"], e["srv"])] = e["reason"].split(":")[0]
    for i in range(4):
        assert res[("l4", "r%d" % i)] == "L4CON"
        assert res[("l4", "b%d" % i)] == "L4TOUT"
        assert lb.log().count("server l4/q%d: checking -> up" % i) == 1
        assert res[("l7", "q%d" % i)] == "L7TOUT"
    # One line per transition: no server logged more than one change.
    assert len(transitions(lb)) == nservers, transitions(lb)
    print("S18: %d checks; fds %d..%d, without check sockets %d -> %d; "
          "check sockets <= %d; RSS %d -> %d kB; TIME_WAIT %d"
          % (nchecks(), min(fds), max(fds), base, end, max(inflight), rss0,
             rss[-1], len(tw)))


# --------------------------------------------------------------------------
# Passive health

def test_passive_reset_server(start_peer, start_hpeer, start_shoal):
    """A server that accepts and resets every connection before a byte is
    marked down by traffic alone (check = none): after exactly `fall`
    failed sessions; then no session goes to it; after one check_interval
    it is retried (nginx fail_timeout) and goes down again."""
    rst = start_hpeer("rst", name="s1")
    e2 = start_peer("echo", name="s2")
    lb = start_shoal([rst, e2], backend={"check": "none",
                                         "check_interval": "1500ms",
                                         "fall": 3})
    # A failed session to s1 is either seen by the client (reset after
    # the connect) or retried on s2 (reset seen as a failed connect);
    # both count, and s1 is down after `fall` of them (+1: the wake-up
    # of the control loop races the next client).
    for _ in range(60):
        echo_once(lb.addr)
        if transitions(lb, "s1"):
            break
    down = wait_state(lb, "s1", "down", 2)
    assert down["reason"] == "passive: 3 consecutive failures from traffic", \
        down
    rst.wait_events("rst", 3, timeout=2 * SLACK)
    # Down: every client is served, by s2 (events of s1 may still be in
    # the pipe meanwhile: counted after).
    for _ in range(20):
        assert echo_once(lb.addr) is None
    hit = len(rst.select("rst"))
    assert 3 <= hit <= 4, hit
    up = wait_state(lb, "s1", "up", 3, after=1)
    assert up["reason"] == "passive: retry after 1500ms", up
    assert 1.4 <= up["t"] - down["t"] <= 1.5 + 0.3 * SLACK, (down, up)
    for _ in range(60):
        echo_once(lb.addr)
        if len(transitions(lb, "s1")) >= 3:
            break
    down2 = wait_state(lb, "s1", "down", 2, after=2)
    assert down2["reason"].startswith("passive: "), down2
    rst.wait_events("rst", hit + 3, timeout=2 * SLACK)
    for _ in range(10):
        assert echo_once(lb.addr) is None
    assert 3 <= len(rst.select("rst")) - hit <= 4
    sess = [s for s in timeline(lb) if s["kind"] == "session"]
    assert not [s for s in sess if down["t"] + 0.05 < s["t"] < up["t"]
                and s["server_name"] == "s1"]
    one_line_per_transition(transitions(lb, "s1"))
    lb.check_nl3()


# --------------------------------------------------------------------------
# Memory: every check type under valgrind, then a clean exit

@pytest.mark.valgrind
def test_checks_under_valgrind(start_peer, start_hpeer, start_shoal, procs,
                               tmp_path, free_port):
    """tcp, http, tls (with verification) and send-expect checks, passing
    and failing, for a few seconds under memcheck:
    no error, no leak at exit (health_stop frees every check state and
    TLS context)."""
    key, crt = make_cert(str(tmp_path), "srv")
    port = free_port()
    procs.append(subprocess.Popen(
        ["openssl", "s_server", "-accept", "127.0.0.1:%d" % port,
         "-cert", crt, "-key", key, "-www", "-quiet"],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL))
    tcp_ready(("127.0.0.1", port), 10 * SLACK)
    echo = start_peer("echo", name="echo")
    h200 = start_hpeer("http", name="h200")
    h500 = start_hpeer("http", "--status", "500", name="h500")
    pong = start_hpeer("line", name="pong")
    mute = start_hpeer("silent", name="mute")
    dead = "dead 127.0.0.1:%d" % free_port()
    common = [("check_interval", "100ms"), ("check_timeout", "200ms"),
              ("init_state", "checking"),
              ("rise", 1), ("fall", 1)]
    text = config([
        ("tcp", [("server", "echo " + echo.addr), ("server", dead),
                 ("check", "tcp")] + common),
        ("http", [("server", "h200 " + h200.addr),
                  ("server", "h500 " + h500.addr),
                  ("server", "mute " + mute.addr), ("check", "http")]
         + common),
        ("tls", [("server", "t1 127.0.0.1:%d" % port),
                 ("server", "plain " + echo.addr),
                 ("check", "tls"), ("check_sni", "localhost"),
                 ("check_ca_file", crt)] + common),
        ("se", [("server", "pong " + pong.addr),
                ("server", "mute " + mute.addr),
                ("check", "send-expect"), ("check_send", "PING\\r\\n"),
                ("check_expect", "+PONG")] + common),
    ], default_binds(), frontend_backend="tcp")
    lb = start_shoal(config_text=text, prefix=[
        # "all": the check states and TLS contexts hang off static lists,
        # so forgetting to free them shows as "still reachable" only.
        "valgrind", "--quiet", "--error-exitcode=99", "--leak-check=full",
        "--show-leak-kinds=all", "--errors-for-leak-kinds=all"], wait=False)
    lb.wait_ready(timeout=60)
    for be, srv, state in (("tcp", "echo", "up"), ("tcp", "dead", "down"),
                           ("http", "h200", "up"), ("http", "h500", "down"),
                           ("http", "mute", "down"), ("tls", "t1", "up"),
                           ("tls", "plain", "down"), ("se", "pong", "up"),
                           ("se", "mute", "down")):
        wait_state(lb, srv, state, 20, be=be)
    rc = lb.stop(timeout=60)
    log = lb.log()
    assert rc == 0, log[-4000:]
    assert "definitely lost" not in log and "possibly lost" not in log, \
        log[-4000:]
    assert "still reachable" not in log, log[-4000:]
