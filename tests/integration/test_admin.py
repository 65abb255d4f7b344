"""
test_admin.py - the admin socket and shoalctl.

Every command, good and bad: a bad one gets a clear "error: ..." answer
and changes nothing (checked with `show servers` and with traffic); the
socket's permissions and life cycle (0600, parent made 0750, stale file
replaced, live socket refused, removed at exit); shoalctl's exit codes and
stdin mode; the client limits (line length, 16 clients, a client that
does not read); and the steering itself under traffic: drain (no new
session after the answer, running ones finish intact), maint (checks
stop), add (traffic once its checks pass), del (refused while active,
then allowed after a drain, the transfer finishes), shutdown sessions
(clients see an RST), the TCP bind.

The helpers at the top (Admin, shoalctl, admin_config, servers_table)
are also used by test_reload.py.
"""

import hashlib
import os
import re
import socket
import stat
import subprocess
import threading
import time

import pytest

import peers
from conftest import (SHOAL_BUILD, SLACK, alloc_port, fmt_hostport,
                      run_shoal_start, server_line, wait_for)

SHOALCTL = os.path.join(SHOAL_BUILD, "shoalctl")
KiB = 1024
MiB = 1 << 20


# --------------------------------------------------------------------------
# Helpers (shared with test_reload.py)

class Admin:
    """One connection to the admin socket: a unix path or (host, port)."""

    def __init__(self, target, timeout=5.0 * SLACK):
        if isinstance(target, str):
            self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        else:
            fam = socket.AF_INET6 if ":" in target[0] else socket.AF_INET
            self.s = socket.socket(fam, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        self.s.connect(target)
        self.buf = b""

    def send(self, data):
        self.s.sendall(data)

    def answer(self):
        """The next answer, without the empty line that ends it."""
        while b"\n\n" not in self.buf:
            b = self.s.recv(65536)
            if not b:
                raise EOFError("admin connection closed; got %r" % self.buf)
            self.buf += b
        a, self.buf = self.buf.split(b"\n\n", 1)
        return a.decode(errors="replace")

    def cmd(self, line):
        self.send(line.encode() + b"\n")
        return self.answer()

    def eof(self, timeout=2.0):
        """True if the server closes the connection (nothing more sent)."""
        self.s.settimeout(timeout)
        try:
            return self.buf == b"" and self.s.recv(4096) == b""
        except OSError:
            return False

    def close(self):
        self.s.close()


def admin(target, line):
    """One command on a fresh connection: its answer."""
    a = Admin(target)
    try:
        return a.cmd(line)
    finally:
        a.close()


def shoalctl(*args, sock=None, input=None, timeout=15):
    """Run shoalctl [-s sock] args... -> CompletedProcess (text)."""
    cmd = [SHOALCTL]
    if sock is not None:
        cmd += ["-s", sock]
    cmd += [str(a) for a in args]
    return subprocess.run(cmd, input=input, capture_output=True, text=True,
                          timeout=timeout,
                          stdin=None if input is not None
                          else subprocess.DEVNULL)


COLUMNS = ("server", "address", "source", "state", "weight", "cur", "total",
           "bytes_in", "bytes_out", "conn_fail", "check", "label",
           "conn_p95_ms", "ttfb_p95_ms", "eff_weight", "load")


def servers_table(target, backend=None):
    """`show servers` as {"app/s1": {column: value}} (numbers as int)."""
    ans = admin(target, "show servers" + (" " + backend if backend else ""))
    lines = ans.splitlines()
    assert lines and lines[0].split() == list(COLUMNS), ans
    out = {}
    for line in lines[1:]:
        f = line.split(None, len(COLUMNS) - 1)
        row = dict(zip(COLUMNS, f))
        for k in ("weight", "cur", "total", "bytes_in", "bytes_out",
                  "conn_fail"):
            row[k] = int(row[k])
        out[row["server"]] = row
    return out


def info(target):
    """`show info` as a dict of strings."""
    out = {}
    for line in admin(target, "show info").splitlines():
        k, v = line.split(": ", 1)
        out[k] = v
    return out


def admin_config(sock, bind, servers=(), backend=(), admin=(), frontend=(),
                 global_=(), extra=""):
    """A full config: frontend web on `bind` -> backend app, [admin] with
    the unix socket `sock`. backend/admin/frontend/global_: (key, value)
    pairs replacing the defaults of the same key, or added."""
    def section(head, defaults, extra_items, pre=()):
        given = dict(extra_items)
        out = ["", head] + list(pre)
        out += ["%s = %s" % (k, given.pop(k, v)) for k, v in defaults]
        return out + ["%s = %s" % kv for kv in extra_items if kv[0] in given]

    lines = section("[global]", [("threads", 2), ("log_level", "info"),
                                 ("grace", "5s")], global_)[1:]
    lines += section("[frontend web]", [("backend", "app"),
                                        ("timeout_client", "10s")],
                     frontend, pre=["bind = %s" % bind])
    lines += section("[backend app]", [
        ("balance", "roundrobin"), ("timeout_connect", "1s"),
        ("timeout_server", "10s"), ("retries", 2)], backend,
        pre=["server = %s" % server_line(s) for s in servers])
    lines += section("[admin]", [("socket", sock)], admin)
    return "\n".join(lines) + "\n" + extra


def new_bind():
    return fmt_hostport("127.0.0.1", alloc_port())


def sock_path(tmp_path, name="admin.sock"):
    p = os.path.join(str(tmp_path), "run", name)
    assert len(p) < 100, "tmp_path too long for a unix socket: %s" % p
    return p


def start_admin_shoal(start_shoal, tmp_path, servers=(), **kw):
    sock = sock_path(tmp_path)
    bind = new_bind()
    sh = start_shoal(config_text=admin_config(sock, bind, servers, **kw),
                     binds=[bind])
    sh.sock = sock
    return sh


def runs_servers(sh, runs):
    """The server of each run of a client loop, in run order. Loopback
    reuses TIME_WAIT ports (tcp_tw_reuse), so one client address may
    stand for several runs: its log lines are taken in order."""
    by_client = {}
    for s in sh.sessions():
        by_client.setdefault(str(s["client"]), []).append(s["server_name"])
    return [by_client[l].pop(0) for l, _, _ in runs]


def wait_state(sh, name, state, timeout=5.0):
    return wait_for(lambda: servers_table(sh.sock).get(name, {}).get(
        "state") == state, timeout * SLACK,
        what="%s state %s" % (name, state))


class Echoer:
    """A long session through shoal to an echo server: sends `step` bytes
    of stream `seed` every `gap` s and reads them back, until stop();
    then SHUT_WR and reads the rest. Result: sent/received lengths and
    digests, error."""

    def __init__(self, addr, seed, step=16 * KiB, gap=0.02):
        self.s = peers.connect(addr, timeout=10 * SLACK)
        self.local = peers.fmt_addr(self.s.getsockname())
        self.seed, self.step, self.gap = seed, step, gap
        self.stopped = threading.Event()
        self.res = None
        self.rounds = 0
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        data = peers.stream_bytes(self.seed, 4 * MiB)
        htx, hrx = hashlib.sha256(), hashlib.sha256()
        off = ntx = nrx = 0
        err = None
        try:
            while not self.stopped.is_set():
                piece = data[off:off + self.step]
                off = (off + self.step) % (len(data) - self.step)
                self.s.sendall(piece)
                htx.update(piece)
                ntx += len(piece)
                got = 0
                while got < len(piece):
                    b = self.s.recv(len(piece) - got)
                    if not b:
                        raise EOFError("EOF mid-echo")
                    hrx.update(b)
                    got += len(b)
                nrx += got
                self.rounds += 1
                time.sleep(self.gap)
            self.s.shutdown(socket.SHUT_WR)
            n, _, e = peers.read_all(self.s, hrx)
            nrx += n
            err = e
        except (OSError, EOFError) as e:
            err = peers.errname(e) if isinstance(e, OSError) else str(e)
        finally:
            self.s.close()
        self.res = {"tx_len": ntx, "tx_sha": htx.hexdigest(),
                    "rx_len": nrx, "rx_sha": hrx.hexdigest(), "err": err}

    def stop(self, timeout=10.0):
        self.stopped.set()
        self.t.join(timeout * SLACK)
        assert self.res is not None, "echo session did not finish"
        return self.res

    def intact(self, timeout=10.0):
        r = self.stop(timeout)
        assert r["err"] is None and r["tx_len"] == r["rx_len"] and \
            r["tx_sha"] == r["rx_sha"] and self.rounds > 0, r
        return r


class Loop:
    """A client loop: short sessions one after the other (exchange of
    `size` bytes) until stop(). Records (local address, start time,
    result) per connection."""

    def __init__(self, addr, size=1 * KiB):
        self.addr = addr
        self.size = size
        self.runs = []
        self.errors = []
        self.stopped = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        seed = 1
        while not self.stopped.is_set():
            t0 = time.monotonic()
            try:
                s = peers.connect(self.addr, timeout=5 * SLACK)
            except OSError as e:
                self.errors.append(("connect", peers.errname(e)))
                time.sleep(0.01)
                continue
            local = peers.fmt_addr(s.getsockname())
            try:
                r = peers.exchange_sock(s, self.size, seed, timeout=5 * SLACK)
            finally:
                s.close()
            ok = (r["rx_err"] is None and r["tx_err"] is None
                  and r["rx_len"] == self.size)
            if not ok:
                self.errors.append(("exchange", r))
            self.runs.append((local, t0, ok))
            seed += 1
            time.sleep(0.005)

    def stop(self):
        self.stopped.set()
        self.t.join(15 * SLACK)
        return self.runs


# --------------------------------------------------------------------------
# The socket itself

def test_socket_mode_parent_dir_and_removal(start_peer, start_shoal,
                                            tmp_path):
    s1 = start_peer("echo", name="s1")
    sh = start_admin_shoal(start_shoal, tmp_path, [s1])
    st = os.stat(sh.sock)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
    dst = os.stat(os.path.dirname(sh.sock))
    assert stat.S_IMODE(dst.st_mode) == 0o750, oct(dst.st_mode)
    assert "(unix, mode 0600)" in sh.log()
    assert sh.stop() == 0
    assert not os.path.exists(sh.sock), "socket file left behind"


def test_stale_socket_replaced_live_one_refused(start_peer, start_shoal,
                                                tmp_path):
    s1 = start_peer("echo", name="s1")
    sock = sock_path(tmp_path)
    os.makedirs(os.path.dirname(sock), mode=0o750)
    # A stale socket file: bound, never listening, closed.
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(sock)
    dead.close()
    assert os.path.exists(sock)
    bind = new_bind()
    sh = start_shoal(config_text=admin_config(sock, bind, [s1]),
                     binds=[bind])
    assert "replacing the stale socket" in sh.log()
    assert admin(sock, "show info").startswith("version: ")

    # A second shoal on the same socket path must refuse to start.
    conf2 = os.path.join(str(tmp_path), "second.conf")
    with open(conf2, "w") as f:
        f.write(admin_config(sock, new_bind(), [s1]))
    rc, out = run_shoal_start(conf2, timeout=10 * SLACK)
    assert rc not in (0, None), out
    assert "another process answers on it" in out, out
    # ...and leave the first one's socket alone.
    assert admin(sock, "show info").startswith("version: ")

    # A path that is not a socket is never removed.
    other = os.path.join(str(tmp_path), "run", "notasocket")
    with open(other, "w") as f:
        f.write("precious\n")
    conf3 = os.path.join(str(tmp_path), "third.conf")
    with open(conf3, "w") as f:
        f.write(admin_config(other, new_bind(), [s1]))
    rc, out = run_shoal_start(conf3, timeout=10 * SLACK)
    assert rc not in (0, None) and "is not a socket" in out, out
    assert open(other).read() == "precious\n"


# --------------------------------------------------------------------------
# Commands

def test_help_info_and_tables(start_peer, start_shoal, tmp_path):
    s1 = start_peer("echo", name="s1")
    s2 = start_peer("echo", name="s2")
    sh = start_admin_shoal(start_shoal, tmp_path, [s1, s2])
    h = admin(sh.sock, "help")
    for c in ("show info", "show servers [BACKEND]", "show stat json",
              "show discovery", "set server B/S state ready|drain|maint",
              "set server B/S weight N", "add server B/S ADDR:PORT",
              "del server B/S", "shutdown sessions server B/S", "reload"):
        assert c in h, h
    i = info(sh.sock)
    assert i["pid"] == str(sh.pid)
    assert i["threads"] == "2"
    assert i["config"] == sh.conf_path
    assert i["reloads"] == "0" and i["last_reload_error"] == "-"
    for k in ("version", "uptime", "sessions_active", "sessions_total",
              "bad_commands"):
        assert k in i, i

    for _ in range(4):
        assert peers.exchange(sh.addr, 1000, 3)["rx_len"] == 1000
    # A session counts in `total` when it starts, leaves `cur` when it is
    # closed: wait for both.
    t = wait_for(lambda: (lambda t: t if t["app/s1"]["total"] +
                          t["app/s2"]["total"] == 4 and
                          t["app/s1"]["cur"] + t["app/s2"]["cur"] == 0
                          else None)(servers_table(sh.sock)), 5 * SLACK,
                 what="totals")
    for n, p in (("app/s1", s1), ("app/s2", s2)):
        r = t[n]
        assert r["address"] == p.addr and r["source"] == "static"
        assert r["state"] == "up" and r["weight"] == 1 and r["cur"] == 0
        assert r["total"] == 2 and r["bytes_in"] == 2000 \
            and r["bytes_out"] == 2000, r
        assert r["check"] == "none" and r["label"] == "-"
    assert servers_table(sh.sock, "app").keys() == t.keys()

    doc = admin(sh.sock, "show stat json")
    import json
    j = json.loads(doc)
    names = [s["name"] for b in j["backends"] for s in b["servers"]]
    assert sorted(names) == ["s1", "s2"], doc[:500]

    d = admin(sh.sock, "show discovery").splitlines()
    assert d[0].split()[:3] == ["pool", "address", "instance"], d
    assert d[-1] == ("verdicts: ok=0 malformed=0 unknown_key=0 bad_mac=0 "
                     "stale=0 replay=0 policy=0 cap=0"), d

    # Several commands on one connection, CRLF accepted, quit closes.
    a = Admin(sh.sock)
    a.send(b"show info\r\nshow servers\nquit\n")
    assert a.answer().startswith("version: ")
    assert a.answer().startswith("server ")
    assert a.answer() == "bye"
    assert a.eof()
    a.close()


BAD = [
    # (line, expected answer pattern)
    (b"", r"^error: empty command \(try help\)$"),
    (b"   \t ", r"^error: empty command"),
    (b"frobnicate", r"^error: unknown command 'frobnicate' \(try help\)$"),
    (b"show", r"^error: unknown command 'show'"),
    (b"show nonsense", r"^error: unknown command 'show nonsense'"),
    (b"SHOW INFO", r"^error: unknown command 'SHOW INFO'"),
    (b"show info now", r"^error: usage: show info$"),
    (b"show servers nope", r"^error: unknown backend 'nope'$"),
    (b"show servers app extra", r"^error: usage: show servers \[BACKEND\]$"),
    (b"set server app/s9 state drain", r"^error: unknown server app/s9$"),
    (b"set server nope/s1 state drain", r"^error: unknown backend 'nope'$"),
    (b"set server s1 state drain",
     r"^error: bad server 's1': expected BACKEND/SERVER"),
    (b"set server app/s1 state sleepy",
     r"^error: bad state 'sleepy': expected ready, drain or maint$"),
    (b"set server app/s1 state", r"^error: usage: set server B/S state "),
    (b"set server app/s1 weight 257",
     r"^error: bad weight '257': out of range \(0 to 256\)$"),
    (b"set server app/s1 weight -1", r"^error: bad weight '-1'"),
    (b"set server app/s1 weight two",
     r"^error: bad weight 'two': expected a decimal number"),
    (b"set server app/s1 color red", r"^error: usage: set server "),
    (b"add server app/s3", r"^error: usage: add server B/S ADDR:PORT"),
    (b"add server app/s3 127.0.0:80", r"^error: bad address '127.0.0:80'"),
    (b"add server app/s3 127.0.0.1", r"^error: bad address '127.0.0.1': "),
    (b"add server app/s3 ::1:80",
     r"^error: bad address '::1:80': IPv6 addresses need brackets"),
    (b"add server app/s3 0.0.0.0:80",
     r"^error: bad address '0.0.0.0:80': unspecified"),
    (b"add server app/s3 224.0.0.1:80",
     r"^error: bad address '224.0.0.1:80': multicast"),
    (b"add server app/s3 127.0.0.1:70000", r"^error: bad address "),
    (b"add server app/s 3 127.0.0.1:80", r"^error: bad address '3'"),
    (b"add server app/s:3 127.0.0.1:80", r"^error: bad server name 's:3'"),
    (b"add server app/s1 127.0.0.1:80",
     r"^error: server app/s1 exists \(127\.0\.0\.1:\d+, static\)"),
    (b"add server app/s3 127.0.0.1:80 weight=999",
     r"^error: bad weight '999'"),
    (b"add server app/s3 127.0.0.1:80 color=red",
     r"^error: bad option 'color=red'"),
    (b"add server app/s3 127.0.0.1:80 weight=1 weight=2",
     r"^error: bad option 'weight=2'"),
    (b"add server nope/s3 127.0.0.1:80", r"^error: unknown backend 'nope'"),
    (b"del server app/s9", r"^error: unknown server app/s9$"),
    (b"del server app", r"^error: bad server 'app'"),
    (b"del server", r"^error: usage: del server B/S$"),
    (b"shutdown sessions server app/zz", r"^error: unknown server app/zz$"),
    (b"shutdown sessions", r"^error: unknown command 'shutdown sessions'"),
    (b"\x00\x01\xff\xfe", r"^error: unknown command '\\x00\\x01\\xff\\xfe' "
     r"\(control characters; try help\)$"),
    (b"help\x00me", r"^error: unknown command 'help\\x00me'"),
    (b"\xc3\xa9t\xc3\xa9", r"^error: unknown command '\\xc3\\xa9t"),
    (b"x" * 4095, r"^error: unknown command 'x{40}\.\.\.'"),
]


def test_bad_commands_change_nothing(start_peer, start_shoal, tmp_path):
    s1 = start_peer("echo", name="s1")
    s2 = start_peer("echo", name="s2")
    sh = start_admin_shoal(start_shoal, tmp_path, [s1, s2])
    before = servers_table(sh.sock)
    a = Admin(sh.sock)
    for line, pattern in BAD:
        a.send(line + b"\n")
        ans = a.answer()
        assert len(ans.splitlines()) == 1, (line, ans)
        assert re.search(pattern, ans), (line, ans, pattern)
    # The connection is still usable after all that.
    assert a.cmd("show info").startswith("version: ")
    a.close()
    assert info(sh.sock)["bad_commands"] == str(len(BAD))
    after = servers_table(sh.sock)
    assert after == before, (before, after)
    assert "s3" not in admin(sh.sock, "show stat json")
    # Traffic still goes to both servers, round robin.
    for i in range(6):
        assert peers.exchange(sh.addr, 100, i)["rx_len"] == 100
    sh.wait_sessions(6)
    split = [s["server_name"] for s in sh.sessions()]
    assert split.count("s1") == 3 and split.count("s2") == 3, split
    # No change was logged.
    assert not [m for _, _, m in sh.log_lines()
                if re.search(r"server app/s\d: (admin|weight|added|removed)",
                             m)]
    sh.check_nl3()


def test_overlong_line_and_garbage(start_peer, start_shoal, tmp_path):
    s1 = start_peer("echo", name="s1")
    sh = start_admin_shoal(start_shoal, tmp_path, [s1])

    # 4095 bytes and LF fit; 4096 without LF do not: answer, then close.
    a = Admin(sh.sock)
    a.send(b"y" * 4095 + b"\n")
    assert a.answer().startswith("error: unknown command 'yyyy")
    a.send(b"z" * 6000 + b"\n")
    assert a.answer() == \
        "error: line too long (at most 4095 bytes): closing"
    assert a.eof()
    a.close()

    # Random binary garbage, with and without newlines: errors only, and
    # the connection survives as long as no line is overlong.
    import random
    rng = random.Random(5)
    a = Admin(sh.sock)
    blob = bytes(rng.randrange(256) for _ in range(3000)).replace(
        b"\n", b"#") + b"\n"
    a.send(blob)
    assert a.answer().startswith("error: unknown command")
    lines = [bytes(rng.randrange(256) for _ in range(50)).replace(b"\n", b"")
             for _ in range(20)]
    a.send(b"\n".join(lines) + b"\n")
    for _ in lines:
        assert a.answer().startswith("error: "), lines
    assert a.cmd("show info").startswith("version: ")
    a.close()
    assert servers_table(sh.sock)["app/s1"]["state"] == "up"
    assert peers.exchange(sh.addr, 1000, 1)["rx_len"] == 1000
    # The last line may come without LF: it still runs at EOF.
    a = Admin(sh.sock)
    a.send(b"show info")
    a.s.shutdown(socket.SHUT_WR)
    assert a.answer().startswith("version: ")
    assert a.eof()
    a.close()


def test_shoalctl_exit_codes_and_stdin(start_peer, start_shoal, tmp_path):
    s1 = start_peer("echo", name="s1")
    sh = start_admin_shoal(start_shoal, tmp_path, [s1])

    r = shoalctl("show", "info", sock=sh.sock)
    assert r.returncode == 0 and r.stdout.startswith("version: "), r
    assert not r.stdout.endswith("\n\n"), repr(r.stdout)
    r = shoalctl("show", "servers", "app", sock=sh.sock)
    assert r.returncode == 0 and "app/s1" in r.stdout, r
    r = shoalctl("set", "server", "app/s9", "state", "drain", sock=sh.sock)
    assert r.returncode == 1, r
    assert r.stdout.strip() == "error: unknown server app/s9", r
    r = shoalctl("set", "server", "app/s1", "weight", "-3", sock=sh.sock)
    assert r.returncode == 1 and "bad weight" in r.stdout, r
    # Connection and usage trouble: 2, message on stderr.
    r = shoalctl("show", "info", sock=os.path.join(str(tmp_path), "nope"))
    assert r.returncode == 2 and "cannot connect" in r.stderr, r
    r = shoalctl("show", "info", sock="127.0.0.1:%d" % alloc_port())
    assert r.returncode == 2 and "Connection refused" in r.stderr, r
    r = shoalctl("show", "info", sock="not-a-target")
    assert r.returncode == 2 and "bad socket" in r.stderr, r
    r = shoalctl("--bogus")
    assert r.returncode == 2 and "usage:" in r.stderr, r
    r = shoalctl("-t", "0", "show", "info", sock=sh.sock)
    assert r.returncode == 2 and "bad timeout" in r.stderr, r
    r = shoalctl("--help")
    assert r.returncode == 0 and "usage: shoalctl" in r.stdout, r
    for word in ("show servers", "set server B/S state", "add server",
                 "del server", "shutdown sessions", "Exit status",
                 "RUNTIME_DIRECTORY"):
        assert word in r.stdout, (word, r.stdout)
    r = shoalctl("--version")
    assert r.returncode == 0 and r.stdout.startswith("shoalctl "), r
    # Default socket: $RUNTIME_DIRECTORY/admin.sock.
    env = dict(os.environ, RUNTIME_DIRECTORY=os.path.dirname(sh.sock))
    r = subprocess.run([SHOALCTL, "show", "info"], capture_output=True,
                       text=True, env=env, timeout=15,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0 and "pid: %d" % sh.pid in r.stdout, r
    # Commands from stdin: every answer printed; 1 if any failed.
    r = shoalctl(sock=sh.sock, input="# a comment\nshow info\n\n"
                 "set server app/s1 weight 300\nshow servers\n")
    assert r.returncode == 1, r
    assert r.stdout.startswith("version: "), r.stdout
    assert "error: bad weight '300'" in r.stdout and "app/s1" in r.stdout
    r = shoalctl(sock=sh.sock, input="show info\nshow servers\n")
    assert r.returncode == 0, r
    # Nothing changed by any of it.
    assert servers_table(sh.sock)["app/s1"]["weight"] == 1
    assert shoalctl("set", "server", "app/s1", "weight", "2",
                    sock=sh.sock).returncode == 0
    assert servers_table(sh.sock)["app/s1"]["weight"] == 2
    assert "server app/s1: weight 1 -> 2 (admin)" in sh.log()


def test_client_limit_and_a_client_that_does_not_read(start_peer,
                                                       start_shoal, tmp_path):
    s1 = start_peer("echo", name="s1")
    sh = start_admin_shoal(start_shoal, tmp_path, [s1])
    held = [Admin(sh.sock) for _ in range(16)]
    extra = Admin(sh.sock)
    assert extra.answer().startswith("error: too many admin clients")
    assert extra.eof()
    extra.close()
    held.pop().close()
    ok = wait_for(lambda: _try_info(sh.sock), 3 * SLACK, what="a slot")
    assert ok.startswith("version: ")
    # Counted (a try before shoal saw the close may be refused too).
    assert int(re.search(r"\nadmin_clients_refused: (\d+)\n", ok)
               .group(1)) >= 1, ok

    # A client sends 300 commands and reads nothing: shoal stops reading
    # it (bounded output) and keeps serving everyone else.
    for a in held:
        a.close()
    wait_for(lambda: "admin_clients: 1\n" in (_try_info(sh.sock) or ""),
             3 * SLACK, what="the held clients gone")
    greedy = Admin(sh.sock)
    greedy.send(b"show stat json\n" * 300)
    time.sleep(0.3)
    t0 = time.monotonic()
    assert info(sh.sock)["state"] == "running"
    assert time.monotonic() - t0 < 1.0 * SLACK
    assert peers.exchange(sh.addr, 1000, 1)["rx_len"] == 1000
    # Then it reads: all 300 answers arrive, in order.
    greedy.s.settimeout(20 * SLACK)
    for _ in range(300):
        assert greedy.answer().startswith("{")
    greedy.close()


def test_idle_timeout(start_peer, start_shoal, tmp_path):
    """[admin] timeout: a client that says nothing is closed after it (and
    logged); one that sends a command more often than that stays."""
    s1 = start_peer("echo", name="s1")
    sh = start_admin_shoal(start_shoal, tmp_path, [s1],
                           admin=[("timeout", "1s")],
                           global_=[("log_level", "debug")])
    busy_answers = []

    def keep_busy(a):
        for _ in range(7):      # 2.8 s, a command every 0.4 s
            busy_answers.append(a.cmd("show info"))
            time.sleep(0.4)

    quiet = Admin(sh.sock)
    busy = Admin(sh.sock)
    t0 = time.monotonic()
    t = threading.Thread(target=keep_busy, args=(busy,), daemon=True)
    t.start()
    assert quiet.eof(timeout=3 * SLACK)
    closed_after = time.monotonic() - t0
    assert 0.9 <= closed_after <= 1.0 + 1.0 * SLACK, closed_after
    t.join(10 * SLACK)
    assert len(busy_answers) == 7
    assert all(x.startswith("version: ") for x in busy_answers)
    assert busy.cmd("show info").startswith("version: ")
    busy.close()
    quiet.close()
    wait_for(lambda: "closed (idle timeout)" in sh.log(), 3 * SLACK,
             what="the idle close logged")


def _try_info(sock):
    try:
        a = Admin(sock)
        try:
            ans = a.cmd("show info")
        finally:
            a.close()
    except (OSError, EOFError):
        return None
    return None if ans.startswith("error:") else ans


def test_tcp_admin_bind(start_peer, start_shoal, tmp_path):
    s1 = start_peer("echo", name="s1")
    port4, port6 = alloc_port(), alloc_port()
    sh = start_admin_shoal(start_shoal, tmp_path, [s1],
                           admin=[("bind", "127.0.0.1:%d" % port4)])
    assert "listening on 127.0.0.1:%d (TCP)" % port4 in sh.log()
    r = shoalctl("show", "servers", sock="127.0.0.1:%d" % port4)
    assert r.returncode == 0 and "app/s1" in r.stdout, r
    a = Admin(("127.0.0.1", port4))
    assert a.cmd("show info").startswith("version: ")
    assert a.cmd("set server app/s1 state drain").startswith("ok: ")
    assert a.cmd("set server app/s1 state ready").startswith("ok: ")
    a.close()
    # The unix socket works beside it.
    assert admin(sh.sock, "show info").startswith("version: ")

    # IPv6, and a reload moving the TCP bind: the old port closes.
    with open(sh.conf_path, "w") as f:
        f.write(admin_config(sh.sock, sh.binds[0], [s1],
                             admin=[("bind", "[::1]:%d" % port6)]))
    r = shoalctl("reload", sock="127.0.0.1:%d" % port4)
    assert r.returncode == 0 and r.stdout.startswith("ok: reloaded"), r
    r = shoalctl("show", "info", sock="[::1]:%d" % port6)
    assert r.returncode == 0, r
    with pytest.raises(ConnectionRefusedError):
        Admin(("127.0.0.1", port4))


# --------------------------------------------------------------------------
# Steering under traffic

def test_drain_under_load(start_peer, start_shoal, tmp_path):
    """No new session goes to a drained server once the answer is back;
    its running long sessions finish intact; ready brings it back."""
    s1 = start_peer("echo", name="s1")
    s2 = start_peer("echo", name="s2")
    sh = start_admin_shoal(start_shoal, tmp_path, [s1, s2])
    longs = [Echoer(sh.addr, 10 + i) for i in range(4)]
    wait_for(lambda: all(e.rounds > 2 for e in longs), 5 * SLACK,
             what="long sessions running")
    t = servers_table(sh.sock)
    assert t["app/s1"]["cur"] == 2 and t["app/s2"]["cur"] == 2, t
    loop = Loop(sh.addr)
    wait_for(lambda: len(loop.runs) > 20, 5 * SLACK, what="client loop")

    ans = admin(sh.sock, "set server app/s1 state drain")
    t_drain = time.monotonic()
    assert re.match(r"^ok: app/s1 up -> drain \(\d+ active sessions\)$",
                    ans), ans

    def runs_since(t0):
        return len([r for r in list(loop.runs) if r[1] > t0])
    wait_for(lambda: runs_since(t_drain) > 25, 10 * SLACK,
             what="client runs while s1 drains")
    t = servers_table(sh.sock)
    assert t["app/s1"]["state"] == "drain" and t["app/s1"]["cur"] >= 2, t
    # The long sessions on the drained server still flow.
    r0 = [e.rounds for e in longs]
    wait_for(lambda: all(e.rounds > r for e, r in zip(longs, r0)),
             5 * SLACK, what="every long session moving on")

    ans = admin(sh.sock, "set server app/s1 state ready")
    t_ready = time.monotonic()
    assert ans.startswith("ok: app/s1 drain -> up"), ans
    wait_for(lambda: runs_since(t_ready) > 10, 10 * SLACK,
             what="client runs after ready")
    runs = loop.stop()
    assert not loop.errors, loop.errors[:5]
    for e in longs:
        e.intact()
    sh.wait_sessions(len(runs) + 4)
    served = runs_servers(sh, runs)
    during = [srv for srv, (_, t0, _) in zip(served, runs)
              if t_drain < t0 < t_ready]
    after = [srv for srv, (_, t0, _) in zip(served, runs) if t0 > t_ready]
    assert len(during) > 20, len(during)
    assert set(during) == {"s2"}, during
    assert "s1" in after and "s2" in after, after
    assert all(s["term"] == "--" for s in sh.sessions())
    assert sh.log().count("server app/s1: admin ready -> drain (admin)") == 1
    sh.check_nl3()


def test_maint_stops_checks(start_hpeer, start_shoal, tmp_path):
    h1 = start_hpeer("http", name="h1")
    h2 = start_hpeer("http", name="h2")
    sh = start_admin_shoal(start_shoal, tmp_path, [h1, h2], backend=[
        ("check", "http"), ("check_http", "HEAD /health"),
        ("check_interval", "100ms"), ("check_timeout", "500ms"),
        ("rise", 2), ("fall", 2)])
    wait_state(sh, "app/h1", "up")

    def checks(p):
        return len(p.select("req", pred=lambda e: "/health" in e["line"]))

    assert admin(sh.sock, "set server app/h1 state maint").startswith(
        "ok: app/h1 up -> maint")
    time.sleep(0.3)
    n1, n2 = checks(h1), checks(h2)
    time.sleep(1.0)
    assert checks(h1) == n1, "h1 still checked in maint"
    assert checks(h2) >= n2 + 5, "h2 not checked"
    assert servers_table(sh.sock)["app/h1"]["state"] == "maint"
    # No traffic to it either.
    for _ in range(4):
        peers.download(sh.addr, b"GET /t HTTP/1.0\r\n\r\n")
    assert not h1.select("req", pred=lambda e: "/t " in e["line"])
    # Back to ready: checking, then up after rise checks.
    ans = admin(sh.sock, "set server app/h1 state ready")
    assert ans.startswith("ok: app/h1 maint -> checking"), ans
    wait_state(sh, "app/h1", "up", timeout=3)
    # shoal saw the rise checks' answers; the peer's own record of the
    # second request may land a moment later
    sh.wait_for(lambda: checks(h1) >= n1 + 2, timeout=3,
                what="the rise checks in h1's log")


def test_add_server_gets_traffic_after_checks(start_peer, start_shoal,
                                              tmp_path):
    s1 = start_peer("echo", name="s1")
    s2 = start_peer("echo", name="s2")
    sh = start_admin_shoal(start_shoal, tmp_path, [s1], backend=[
        ("check", "tcp"), ("check_interval", "300ms"), ("rise", 3),
        ("fall", 2)])
    wait_state(sh, "app/s1", "up")
    ans = admin(sh.sock, "add server app/s2 %s weight=1" % s2.addr)
    t_add = time.monotonic()
    assert ans == "ok: app/s2 added (%s, weight 1, checking)" % s2.addr, ans
    row = servers_table(sh.sock)["app/s2"]
    assert row["source"] == "admin" and row["state"] == "checking", row
    # Until its checks pass, no session goes to it.
    early = 0
    while time.monotonic() - t_add < 0.5:
        assert peers.exchange(sh.addr, 100, 1)["rx_len"] == 100
        early += 1
    t = servers_table(sh.sock)
    if t["app/s2"]["state"] == "checking":
        assert t["app/s2"]["total"] == 0, t
    wait_state(sh, "app/s2", "up", timeout=5)
    n0 = len(sh.sessions())
    for i in range(10):
        assert peers.exchange(sh.addr, 100, i)["rx_len"] == 100
    sh.wait_sessions(n0 + 10)
    late = [s["server_name"] for s in sh.sessions()[n0:]]
    assert late.count("s1") == 5 and late.count("s2") == 5, late
    assert len(re.findall(r"server app/s2: added \(admin: ", sh.log())) == 1
    # Weight steering applies at once on every worker.
    assert admin(sh.sock, "set server app/s2 weight 0").startswith("ok: ")
    n0 = len(sh.sessions())
    for i in range(6):
        assert peers.exchange(sh.addr, 100, i)["rx_len"] == 100
    sh.wait_sessions(n0 + 6)
    assert {s["server_name"] for s in sh.sessions()[n0:]} == {"s1"}
    sh.check_nl3()


def test_del_server_refused_while_active_then_drained(start_peer,
                                                      start_shoal, tmp_path):
    s1 = start_peer("echo", name="s1")
    s2 = start_peer("echo", name="s2")
    sh = start_admin_shoal(start_shoal, tmp_path, [s1, s2])
    longs = [Echoer(sh.addr, 20 + i) for i in range(2)]
    wait_for(lambda: all(e.rounds > 2 for e in longs), 5 * SLACK,
             what="long sessions running")
    assert servers_table(sh.sock)["app/s1"]["cur"] == 1
    ans = admin(sh.sock, "del server app/s1")
    assert ans == ("error: app/s1 has 1 active session: drain it first "
                   "(set server app/s1 state drain)"), ans
    assert "app/s1" in servers_table(sh.sock)
    assert admin(sh.sock, "set server app/s1 state drain").startswith("ok:")
    ans = admin(sh.sock, "del server app/s1")
    assert ans == "ok: app/s1 removed (1 active session finishes on it)", ans
    t = servers_table(sh.sock)
    assert "app/s1" not in t and "app/s2" in t, t
    # The running transfers go on and finish intact; new ones go to s2.
    r0 = [e.rounds for e in longs]
    for i in range(4):
        assert peers.exchange(sh.addr, 100, i)["rx_len"] == 100
    time.sleep(0.5)
    assert all(e.rounds > r for e, r in zip(longs, r0))
    for e in longs:
        e.intact()
    sh.wait_sessions(6)
    ses = sh.sessions()
    assert [s["server_name"] for s in ses if s["bytes_in"] == 100] == \
        ["s2"] * 4
    assert sorted(s["server_name"] for s in ses if s["bytes_in"] > 100) == \
        ["s1", "s2"]
    assert all(s["term"] == "--" for s in ses)
    # Deleting a ready server without sessions needs no drain. (A session
    # leaves `cur` just after its log line: wait for it.)
    wait_for(lambda: servers_table(sh.sock)["app/s2"]["cur"] == 0,
             2 * SLACK, what="s2 idle")
    assert admin(sh.sock, "del server app/s2").startswith("ok: app/s2 "
                                                          "removed (0")
    assert servers_table(sh.sock) == {}
    assert admin(sh.sock, "del server app/s2") == \
        "error: unknown server app/s2"
    # And the name can be used again.
    assert admin(sh.sock, "add server app/s1 %s" % s2.addr).startswith("ok:")
    assert peers.exchange(sh.addr, 100, 1)["rx_len"] == 100
    sh.check_nl3()


def test_shutdown_sessions(start_peer, start_shoal, tmp_path):
    s1 = start_peer("echo", name="s1")
    s2 = start_peer("echo", name="s2")
    sh = start_admin_shoal(start_shoal, tmp_path, [s1, s2])
    socks = []
    for i in range(6):
        s = peers.connect(sh.addr, timeout=5 * SLACK)
        s.sendall(b"ping")
        assert s.recv(4) == b"ping"
        socks.append(s)
    t = servers_table(sh.sock)
    assert t["app/s1"]["cur"] == 3 and t["app/s2"]["cur"] == 3, t
    ans = admin(sh.sock, "shutdown sessions server app/s1")
    assert ans == "ok: closing 3 sessions of app/s1", ans
    # The workers close them right after the answer.
    wait_for(lambda: servers_table(sh.sock)["app/s1"]["cur"] == 0,
             2 * SLACK, what="sessions of s1 closed")
    reset, alive = 0, 0
    for s in socks:
        s.settimeout(2 * SLACK)
        try:
            s.sendall(b"again")
            b = s.recv(5)
            assert b == b"again", b
            alive += 1
        except ConnectionResetError:
            reset += 1
        except BrokenPipeError:
            reset += 1
    assert (reset, alive) == (3, 3)
    for s in socks:
        s.close()
    sh.wait_sessions(6)
    terms = sorted((s["server_name"], s["term"]) for s in sh.sessions())
    assert terms == [("s1", "KD")] * 3 + [("s2", "--")] * 3, terms
    # The server itself stays and takes new sessions.
    assert servers_table(sh.sock)["app/s1"]["state"] == "up"
    for i in range(2):
        assert peers.exchange(sh.addr, 10, i)["rx_len"] == 10
    sh.check_nl3()


def test_reload_command(start_peer, start_shoal, tmp_path):
    s1 = start_peer("echo", name="s1")
    sh = start_admin_shoal(start_shoal, tmp_path, [s1])
    text = open(sh.conf_path).read()
    assert "grace = 5s\n" in text
    with open(sh.conf_path, "w") as f:
        f.write(text.replace("grace = 5s\n", "grace = 5s\nbogus = 1\n"))
    ans = admin(sh.sock, "reload")
    m = re.match(r"^error: reload refused: (\S+):(\d+): (.*); still running "
                 r"the previous configuration$", ans)
    assert m and m.group(1) == sh.conf_path, ans
    assert m.group(2) == "5" and "unknown key 'bogus'" in m.group(3), ans
    assert info(sh.sock)["last_reload_error"].startswith(
        "%s:%s: " % (sh.conf_path, m.group(2)))
    with open(sh.conf_path, "w") as f:
        f.write(text.replace("timeout_client = 10s", "timeout_client = 9s"))
    assert admin(sh.sock, "reload") == \
        "ok: reloaded %s (reload 1)" % sh.conf_path
    i = info(sh.sock)
    assert i["reloads"] == "1" and i["last_reload_error"] == "-", i
    assert peers.exchange(sh.addr, 100, 1)["rx_len"] == 100
    # The refused reload is logged at error level, and only that.
    sh.allow_errors = [re.compile(r"^reload refused: ")]


# --------------------------------------------------------------------------
# No eligible server is a wait (issue 12 §1)

def test_no_eligible_server_is_a_wait(start_peer, start_shoal, tmp_path):
    """A client that arrives while no server is eligible waits (up to
    timeout_queue) and is served as soon as one becomes eligible; if none
    does, it is closed after timeout_queue (SC), no server blamed."""
    a = start_peer("tag", name="a")
    sh = start_admin_shoal(start_shoal, tmp_path, [a],
                           backend=[("timeout_queue", "2s")])
    assert admin(sh.sock, "set server app/a state maint").startswith("ok")
    out = {}

    def client():
        t0 = time.monotonic()
        try:
            s, tag = peers.open_tagged(sh.addr, timeout=10)
            s.close()
        except OSError as e:
            tag = "error %s" % e
        out.update(tag=tag, at=time.monotonic(), waited=time.monotonic() - t0)

    th = threading.Thread(target=client, daemon=True)
    th.start()
    # Waiting: accepted by shoal, nothing opened towards the server.
    sh.wait_for(lambda: sh.established_on(sh.port) == 1 or out, 5,
                what="the client accepted")
    assert not out, "the client was not kept waiting: %s" % out
    assert not [l for l in sh.ss(("ESTAB",))
                if l.split()[4].endswith(":%d" % a.port)]
    t_ready = time.monotonic()
    assert admin(sh.sock, "set server app/a state ready").startswith("ok")
    th.join(5 * SLACK)
    assert out.get("tag") == "a", out
    print("\nwaited %.3fs; served %.3fs after the server became eligible"
          % (out["waited"], out["at"] - t_ready))
    assert out["at"] - t_ready <= 0.2 * SLACK, out
    s1 = sh.wait_sessions(1)[-1]
    assert s1["term"] == "--" and s1["server_name"] == "a", s1

    # Nothing becomes eligible: closed after timeout_queue, as before.
    assert admin(sh.sock, "set server app/a state maint").startswith("ok")
    t0 = time.monotonic()
    n, _, err = peers.download(sh.addr, timeout=10)
    dt = time.monotonic() - t0
    assert n == 0, (n, err)
    assert 2.0 <= dt <= 2.0 + 0.3 * SLACK, "closed after %.3fs" % dt
    s2 = sh.wait_sessions(2)[-1]
    assert s2["term"] == "SC" and s2["server"] == "app/-", s2
    assert servers_table(sh.sock)["app/a"]["conn_fail"] == 0
