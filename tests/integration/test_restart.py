"""
test_restart.py - restarts and upgrades that refuse no client.

  - systemd socket activation (systemd-socket-activate, no systemd as PID 1):
    shoal takes its listener from LISTEN_FDS; while it restarts, clients
    wait in the backlog of the socket the activator holds.
  - an inherited socket that no bind line has is refused with a message.
  - hand-over without systemd: a new shoal takes the listening sockets of
    the running one over its admin socket (shoal -x PATH), which then stops
    accepting and drains.
"""

import array
import os
import signal
import socket
import subprocess
import time

import peers
from conftest import (PYTHON, SHOAL_BIN, SLACK, alloc_port, render_config,
                      wait_for)

ACTIVATE = "/usr/bin/systemd-socket-activate"

# Restarts shoal RESTARTS times, as systemd does with Restart=always: each
# shoal gets fd 3 and LISTEN_PID set to its own pid.
RESTART_LOOP = r"""
n=0
while [ $n -le "$RESTARTS" ]; do
  sh -c 'LISTEN_PID=$$ exec "$0" -c "$1"' "$SHOAL" "$CONF"
  echo "exit $?" >&2
  n=$((n + 1))
done
"""


def echo_config(port, echo, extra_binds=()):
    fe = [("bind", "127.0.0.1:%d" % port)]
    fe += [("bind", b) for b in extra_binds]
    fe += [("backend", "app"), ("timeout_client", "10s")]
    be = [("server", "e1 %s" % echo.addr), ("check", "none"),
          ("timeout_connect", "1s"), ("retries", 2)]
    return render_config({"threads": 2, "grace": "3s"}, [("web", fe)],
                         [("app", be)])


class Supervised:
    """A process group we started (activator + shells + shoal); its log."""

    def __init__(self, cmd, tmp_path, env=None):
        self.log_path = str(tmp_path / "supervised.log")
        self.logf = open(self.log_path, "ab")
        e = dict(os.environ)
        e.update(env or {})
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                     stdout=self.logf, stderr=self.logf,
                                     env=e, start_new_session=True)

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def ready_pids(self):
        """pids of the shoal processes that logged "ready", in order."""
        out = []
        for line in self.log().splitlines():
            if " info: ready: " in line:
                out.append(int(line.rsplit("pid ", 1)[1]))
        return out

    def close(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(10)
        self.logf.close()


def trigger(port):
    """systemd-socket-activate starts its program at the first connection
    (once it listens)."""
    def once():
        try:
            peers.connect(("127.0.0.1", port), timeout=2).close()
            return True
        except OSError:
            return False
    wait_for(once, 10 * SLACK, what="the activator's socket")


def test_socket_activation_restarts_refuse_nobody(start_peer, tmp_path):
    """5 restarts under socket activation while 4 clients loop: every
    exchange succeeds, each shoal says it took systemd's socket."""
    echo = start_peer("echo")
    port = alloc_port()
    conf = tmp_path / "shoal.conf"
    conf.write_text(echo_config(port, echo))
    restarts = 5
    # The activator passes only the variables named with -E.
    sup = Supervised([ACTIVATE, "-l", "127.0.0.1:%d" % port, "--fdname=web",
                      "-E", "SHOAL=" + SHOAL_BIN, "-E", "CONF=%s" % conf,
                      "-E", "RESTARTS=%d" % restarts,
                      "/bin/sh", "-c", RESTART_LOOP], tmp_path)
    loops = []
    try:
        trigger(port)
        wait_for(lambda: sup.ready_pids(), 10 * SLACK, what="first ready")
        loops = [peers.ClientLoop(("127.0.0.1", port), gap=0.002,
                                  limit=20000).start() for _ in range(4)]
        for i in range(restarts):
            pid = sup.ready_pids()[-1]
            time.sleep(0.3)
            os.kill(pid, signal.SIGTERM)
            wait_for(lambda: len(sup.ready_pids()) >= i + 2,
                     10 * SLACK, what="restart %d ready" % (i + 1))
        time.sleep(0.3)
        for lp in loops:
            lp.stop()
        results = [r for lp in loops for r in lp.results]
        failures = [f for lp in loops for f in lp.failures()]
        pids = sup.ready_pids()
        assert len(set(pids)) == restarts + 1, pids
        log = sup.log()
        assert log.count("systemd passed 1 listening socket") == \
            restarts + 1, log[-3000:]
        assert failures == [], "%d of %d exchanges failed: %s" % (
            len(failures), len(results), failures[:5])
        assert len(results) > 200, "only %d exchanges" % len(results)
        print("socket activation: %d exchanges, %d restarts, 0 failed"
              % (len(results), restarts))
        assert "exit 0" in log and "exit 1" not in log, log[-3000:]
    finally:
        for lp in loops:
            lp.stop_ev.set()
        sup.close()


def test_socket_activation_unused_socket_refused(start_peer, tmp_path):
    """A passed socket that no bind line has: shoal refuses to start and
    names it (a forgotten bind must not leave a port nobody serves)."""
    echo = start_peer("echo")
    port, other = alloc_port(), alloc_port()
    conf = tmp_path / "shoal.conf"
    conf.write_text(echo_config(port, echo))
    sup = Supervised([ACTIVATE, "-l", "127.0.0.1:%d" % port,
                      "-l", "127.0.0.1:%d" % other, SHOAL_BIN, "-c",
                      str(conf)], tmp_path)
    try:
        trigger(port)
        rc = sup.proc.wait(10 * SLACK)
        assert rc == 1
        log = sup.log()
        assert ("systemd socket 127.0.0.1:%d (fd 4): no bind line has "
                "that address" % other) in log, log
        assert "ready" not in log
    finally:
        sup.close()


def test_socket_activation_named_and_unbound_binds(start_peer, tmp_path):
    """A socket named after a frontend serves that frontend; a bind with no
    passed socket is bound by shoal itself; both answer."""
    echo = start_peer("echo")
    port, own = alloc_port(), alloc_port()
    conf = tmp_path / "shoal.conf"
    conf.write_text(echo_config(port, echo,
                                extra_binds=["127.0.0.1:%d" % own]))
    sup = Supervised([ACTIVATE, "-l", "127.0.0.1:%d" % port, "--fdname=web",
                      SHOAL_BIN, "-c", str(conf)], tmp_path)
    try:
        trigger(port)
        wait_for(lambda: sup.ready_pids(), 10 * SLACK, what="ready")
        for p in (port, own):
            assert peers.echo_once(("127.0.0.1", p)) is None
        pid = sup.ready_pids()[0]
        os.kill(pid, signal.SIGTERM)
        assert sup.proc.wait(10 * SLACK) == 0
    finally:
        sup.close()


def handover_config(port, echo, admin_path, stats_port, threads=2):
    fe = [("bind", "127.0.0.1:%d" % port), ("backend", "app"),
          ("timeout_client", "10s")]
    be = [("server", "e1 %s" % echo.addr), ("check", "none"),
          ("timeout_connect", "1s"), ("retries", 2)]
    text = render_config({"threads": threads, "grace": "3s"}, [("web", fe)],
                         [("app", be)])
    return text + "\n[stats]\nbind = 127.0.0.1:%d\n\n[admin]\nsocket = %s\n" \
        % (stats_port, admin_path)


def takeover_prefix():
    """Run shoal with -x $X appended to its usual arguments."""
    return ["/bin/sh", "-c", 'exec "$0" "$@" -x "$X"']


def test_handover_upgrades_refuse_nobody(start_peer, start_shoal, tmp_path):
    """5 hand-overs (shoal -x ADMIN_SOCKET) while 4 clients loop: every
    exchange succeeds; each old shoal stops accepting, frees its stats and
    admin ports for the new one, drains and exits 0; threads change on the
    way (2 -> 3 -> 1 -> 2 ...) and every passed socket stays served."""
    echo = start_peer("echo")
    port, stats_port = alloc_port(), alloc_port()
    admin_path = str(tmp_path / "admin.sock")
    old = start_shoal(config_text=handover_config(port, echo, admin_path,
                                                  stats_port),
                      binds=["127.0.0.1:%d" % port])
    loops = [peers.ClientLoop(("127.0.0.1", port), gap=0.002,
                              limit=20000).start() for _ in range(4)]
    try:
        for i, threads in enumerate((3, 1, 2, 4, 2)):
            time.sleep(0.3)
            new = start_shoal(
                config_text=handover_config(port, echo, admin_path,
                                            stats_port, threads),
                binds=["127.0.0.1:%d" % port],
                prefix=takeover_prefix(),
                env={"X": admin_path})
            assert old.wait_exit(10 * SLACK) == 0, old.log()[-2000:]
            assert "admin stop: stopped accepting" in old.log()
            log = new.log()
            assert "took " in log and "from the shoal at" in log, log
            assert "hand-over: previous shoal: ok: stopping" in log, log
            old = new
        time.sleep(0.3)
    finally:
        for lp in loops:
            lp.stop()
    # The last one held more at ready (hand-over in progress, sessions):
    # its baseline for the teardown's NL3 check is taken once idle.
    old.wait_for(lambda: old.established_on(port) == 0, 5,
                 what="client sessions ended")
    old.rebaseline()
    results = [r for lp in loops for r in lp.results]
    failures = [f for lp in loops for f in lp.failures()]
    assert failures == [], "%d of %d exchanges failed: %s" % (
        len(failures), len(results), failures[:5])
    assert len(results) > 200, "only %d exchanges" % len(results)
    print("hand-over: %d exchanges, 5 upgrades, 0 failed" % len(results))
    # The last one serves alone, with its stats page.
    assert peers.echo_once(("127.0.0.1", port)) is None
    r = subprocess.run(["curl", "-sf", "-o", "/dev/null",
                        "http://127.0.0.1:%d/stats.json" % stats_port],
                       timeout=10)
    assert r.returncode == 0


def test_handover_errors_are_clear(start_peer, start_shoal, tmp_path):
    """-x at a path where nothing answers: shoal refuses to start and says
    so."""
    echo = start_peer("echo")
    port, stats_port = alloc_port(), alloc_port()
    nowhere = str(tmp_path / "nothing.sock")
    conf = tmp_path / "x.conf"
    conf.write_text(handover_config(port, echo, str(tmp_path / "a.sock"),
                                    stats_port))
    r = subprocess.run([SHOAL_BIN, "-c", str(conf), "-x", nowhere],
                       capture_output=True, text=True, timeout=10 * SLACK)
    assert r.returncode == 1
    assert "-x %s: cannot reach the running shoal" % nowhere in r.stderr


def test_get_listeners_only_over_unix(start_peer, start_shoal, tmp_path):
    """The admin TCP listener has no file mode to guard it: get listeners
    is refused there, and shoal keeps serving."""
    echo = start_peer("echo")
    port, stats_port, aport = alloc_port(), alloc_port(), alloc_port()
    text = handover_config(port, echo, str(tmp_path / "a.sock"), stats_port)
    text += "bind = 127.0.0.1:%d\n" % aport
    sh = start_shoal(config_text=text, binds=["127.0.0.1:%d" % port])
    s = peers.connect(("127.0.0.1", aport), timeout=5)
    try:
        s.sendall(b"get listeners\n")
        got = b""
        while not got.endswith(b"\n\n"):
            b = s.recv(4096)
            if not b:
                break
            got += b
    finally:
        s.close()
    assert got.startswith(b"error: get listeners: only over the unix "
                          b"socket"), got
    assert peers.echo_once(sh.addr) is None


def _admin_unix(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10 * SLACK)
    s.connect(path)
    return s


def _read_answers(s, count, fds):
    """Read count answers (each ends with an empty line), collecting the
    fds passed along them; returns the text."""
    got = b""
    space = socket.CMSG_SPACE(256 * array.array("i").itemsize)
    while got.count(b"\n\n") < count:
        data, anc, flags, _ = s.recvmsg(65536, space)
        assert not flags & socket.MSG_CTRUNC, "fds truncated"
        for level, kind, raw in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                a = array.array("i")
                a.frombytes(raw[:len(raw) - len(raw) % a.itemsize])
                fds.extend(a)
        if not data:
            break
        got += data
    return got.decode()


def test_get_listeners_many_sockets(start_peer, start_shoal, tmp_path):
    """120 binds on 2 threads are 240 listening sockets: more than one
    sendmsg carries (200). A client that pipelines another command before
    get listeners receives both answers whole and exactly one socket per
    listener line, each listening on the address its line names; shoal
    keeps no copy once they are passed, and keeps serving."""
    echo = start_peer("echo")
    port, stats_port = alloc_port(), alloc_port()
    admin_path = str(tmp_path / "admin.sock")
    binds = ["127.0.1.%d:%d" % (k, port) for k in range(1, 121)]
    fe = [("bind", b) for b in binds] + [("backend", "app"),
                                         ("timeout_client", "10s")]
    be = [("server", "e1 %s" % echo.addr), ("check", "none")]
    text = render_config({"threads": 2, "grace": "3s"}, [("web", fe)],
                         [("app", be)])
    text += "\n[admin]\nsocket = %s\n" % admin_path
    sh = start_shoal(config_text=text, binds=binds)
    base = sh.fd_count()
    fds = []
    s = _admin_unix(admin_path)
    try:
        s.sendall(b"show info\nget listeners\n")
        text = _read_answers(s, 2, fds)
    finally:
        s.close()
    try:
        info, listeners = text.split("\n\n")[:2]
        assert "state: running" in info, info
        lines = [ln for ln in listeners.splitlines()
                 if ln.startswith("listener ")]
        assert len(lines) == 240, listeners[:500]
        assert len(fds) == 240, "%d fds for 240 lines" % len(fds)
        assert "pid %d" % sh.pid in listeners
        named = sorted(ln.split()[2] for ln in lines)
        seen = []
        for fd in fds:
            ls = socket.socket(fileno=fd)
            try:
                assert ls.getsockopt(socket.SOL_SOCKET,
                                     socket.SO_ACCEPTCONN) == 1
                h, p = ls.getsockname()[:2]
                seen.append("%s:%d" % (h, p))
            finally:
                ls.detach()
        assert sorted(seen) == named
    finally:
        for fd in fds:
            os.close(fd)
    # The dups were closed once passed: the fd count is back.
    sh.wait_for(lambda: sh.fd_count() <= base, 5 * SLACK,
                what="fds back to %d" % base)
    assert peers.echo_once(("127.0.1.77", port)) is None


def test_stop_closes_listeners_answers_clients(start_peer, start_shoal,
                                               tmp_path):
    """admin stop: the admin socket file and the stats port are free at
    once (a successor binds them), while an admin client and a stats
    client connected before the stop are still answered during the
    drain."""
    echo = start_peer("echo")
    port, stats_port = alloc_port(), alloc_port()
    admin_path = str(tmp_path / "admin.sock")
    text = handover_config(port, echo, admin_path, stats_port)
    text = text.replace("grace = 3s", "grace = 8s")
    assert "grace = 8s" in text
    sh = start_shoal(config_text=text, binds=["127.0.0.1:%d" % port])
    held = peers.connect(("127.0.0.1", port))   # keeps shoal draining
    early = _admin_unix(admin_path)
    stats = peers.connect(("127.0.0.1", stats_port))
    try:
        held.sendall(b"x" * 8)                  # relayed: a session
        assert len(held.recv(8)) > 0
        s = _admin_unix(admin_path)
        s.sendall(b"stop\n")
        got = _read_answers(s, 1, [])
        s.close()
        assert got.startswith("ok: stopping"), got
        wait_for(lambda: not os.path.exists(admin_path), 5 * SLACK,
                 what="admin socket file removed")
        succ = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            succ.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            succ.bind(("127.0.0.1", stats_port))   # the port is free
            succ.listen(1)
        finally:
            succ.close()
        assert sh.alive()
        early.sendall(b"show info\n")
        got = _read_answers(early, 1, [])
        assert "state: stopping" in got, got
        stats.sendall(b"GET /stats.json HTTP/1.1\r\nHost: x\r\n"
                      b"Connection: close\r\n\r\n")
        body = peers.recv_all(stats)
        assert body.startswith(b"HTTP/1.1 200"), body[:200]
        assert b'"stopping":true' in body
    finally:
        early.close()
        stats.close()
        held.close()
    assert sh.wait_exit(10 * SLACK) == 0
