"""
conftest.py - fixtures of shoal's integration tests.

  free_port     function returning a TCP port free on 127.0.0.1 and ::1
  netns         factory of network namespaces ("shoal-t-<pid>-<n>"), always
                deleted (with every process inside) at teardown
  start_peer    factory of harness peers (peers.py subprocesses), killed at
                teardown
  start_shoal   factory of shoal processes: writes a generated config to
                tmp_path, starts the binary with stderr to a file, polls the
                log for "ready". At teardown every shoal the test did not stop
                must still be alive; it is stopped with SIGTERM and must exit
                0; before that, its fd count must be back to the baseline
                taken at ready and it must own no ESTABLISHED, CLOSE_WAIT or
                FIN_WAIT2 socket (NL3); its log must hold no sanitizer
                report and no error-level line unless the test declared it
                expected them.

The binary is $SHOAL_BUILD/shoal: SHOAL_BUILD must name a build directory
(tests/run.sh and meson test set it).
"""

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = os.path.join(HERE, "peers.py")
HPEERS = os.path.join(HERE, "health_peers.py")   # check-specific servers
DEMO = os.path.join(HERE, "..", "..", "dist", "demo-backend.py")
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") \
    else sys.executable
SHOAL_BUILD = os.environ.get("SHOAL_BUILD", "")
SHOAL_BIN = os.path.join(SHOAL_BUILD, "shoal") if SHOAL_BUILD else ""
NO_BUILD_MSG = ("SHOAL_BUILD is not set: point it at a build directory, "
                "e.g. SHOAL_BUILD=$PWD/build /usr/bin/python3 -m pytest "
                "tests/integration (tests/run.sh and meson test set it)")

SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "runtime error:",
                     "UndefinedBehaviorSanitizer", "ThreadSanitizer")
LOG_RE = re.compile(r"^(\S+)\s+(error|warn|info|debug):\s?(.*)$")
KV_RE = re.compile(r"(\w+)=(\S*)")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024

# Slack multiplier for timing bounds (e.g. SHOAL_TEST_SLACK=2 on a slow
# machine); sanitizer builds get 2 by default, ThreadSanitizer 3.
SLACK = float(os.environ.get(
    "SHOAL_TEST_SLACK", "3" if "tsan" in SHOAL_BUILD.lower() else
    "2" if "asan" in SHOAL_BUILD.lower() else "1"))


def pytest_report_header(config):
    return "shoal binary: %s (slack x%g)" % (SHOAL_BIN, SLACK)


# --------------------------------------------------------------------------
# Generic helpers

def wait_for(pred, timeout=5.0, interval=0.02, what="condition"):
    """Poll pred() until it returns something truthy; return that value.

    Raises AssertionError naming `what` when the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s"
                                 % (timeout, what))
        time.sleep(interval)


def fmt_hostport(host, port):
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


def parse_hostport(s):
    """"127.0.0.1:80" or "[::1]:80" -> (host, port)."""
    if s.startswith("["):
        host, rest = s[1:].split("]", 1)
        return host, int(rest[1:])
    host, port = s.rsplit(":", 1)
    return host, int(port)


_used_ports = set()
_port_lock = threading.Lock()


def _port_free(port):
    for fam, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        s = socket.socket(fam, socket.SOCK_STREAM)
        try:
            if fam == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind((host, port))
        except OSError:
            return False
        finally:
            s.close()
    return True


def alloc_port():
    """A port free on 127.0.0.1 and [::1], below the ephemeral range (so no
    outgoing connection takes it meanwhile), never handed out twice."""
    with _port_lock:
        rng = random.Random(os.getpid() ^ int(time.time() * 1000))
        for _ in range(5000):
            p = rng.randrange(20000, 32000)
            if p in _used_ports:
                continue
            if _port_free(p):
                _used_ports.add(p)
                return p
    raise RuntimeError("no free port found")


def proc_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


# --------------------------------------------------------------------------
# Network namespaces

_netns_seq = [0]
_netns_alive = set()


class Netns:
    """A network namespace with lo up. Commands run in it via `ip netns
    exec`, which execs in place (the pid of Popen is the program's)."""

    def __init__(self):
        _netns_seq[0] += 1
        self.name = "shoal-t-%d-%d" % (os.getpid(), _netns_seq[0])
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        _netns_alive.add(self.name)
        self.run(["ip", "link", "set", "lo", "up"])

    @property
    def prefix(self):
        return ["ip", "netns", "exec", self.name]

    def run(self, cmd, check=True, input=None, timeout=20):
        return subprocess.run(self.prefix + cmd, check=check, input=input,
                              capture_output=True, text=True,
                              timeout=timeout)

    def nft(self, ruleset):
        """Load an nft ruleset (text) inside the namespace."""
        return self.run(["nft", "-f", "-"], input=ruleset)

    def pids(self):
        r = subprocess.run(["ip", "netns", "pids", self.name],
                           capture_output=True, text=True)
        return [int(x) for x in r.stdout.split()]

    def destroy(self):
        if self.name not in _netns_alive:
            return
        for _ in range(50):
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)
        subprocess.run(["ip", "netns", "del", self.name],
                       capture_output=True)
        _netns_alive.discard(self.name)


def pytest_sessionfinish(session, exitstatus):
    # Belt and braces: nothing of ours may outlive the run.
    r = subprocess.run(["ip", "netns", "list"], capture_output=True,
                       text=True)
    mine = "shoal-t-%d-" % os.getpid()
    for line in r.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith(mine):
            ns = Netns.__new__(Netns)
            ns.name = name
            _netns_alive.add(name)
            ns.destroy()


@pytest.fixture
def netns():
    """Factory: netns() -> Netns; every namespace is deleted at teardown."""
    made = []

    def make():
        ns = Netns()
        made.append(ns)
        return ns

    yield make
    for ns in reversed(made):
        ns.destroy()


# --------------------------------------------------------------------------
# Peers

class Peer:
    """One peers.py (or `script`) subprocess; its stdout is parsed by a
    reader thread."""

    def __init__(self, kind, args, host, port, name, netns, tmpdir, seq,
                 script=PEERS):
        self.kind = kind
        self.name = name or kind
        self.host = host
        self.netns = netns
        cmd = [PYTHON, script, kind, "--host", host, "--port", str(port),
               "--name", self.name] + [str(a) for a in args]
        if netns is not None:
            cmd = netns.prefix + cmd
        self.errpath = os.path.join(tmpdir, "peer-%d-%s.err" % (seq, self.name))
        self.errfile = open(self.errpath, "w")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE,
                                     stderr=self.errfile, text=True,
                                     bufsize=1)
        self.pid = self.proc.pid
        self.port = None
        self.events = []
        self.lines = []
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            with self.cond:
                self.lines.append(line)
                if line.startswith("READY "):
                    self.port = int(line.split()[1])
                elif line.startswith("{"):
                    try:
                        self.events.append(json.loads(line))
                    except ValueError:
                        pass
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def wait_ready(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.port is None:
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None
                                 and not self.reader.is_alive()):
                    raise AssertionError(
                        "peer %s not ready: %s" % (self.name, self.stderr()))
                self.cond.wait(min(left, 0.1))
        return self

    @property
    def addr(self):
        """Address as written in a shoal config: 127.0.0.1:P or [::1]:P."""
        return fmt_hostport(self.host, self.port)

    @property
    def sockaddr(self):
        return (self.host, self.port)

    def select(self, ev=None, pred=None):
        with self.cond:
            return [e for e in self.events
                    if (ev is None or e.get("ev") == ev)
                    and (pred is None or pred(e))]

    def wait_events(self, ev, count=1, timeout=10.0, pred=None):
        """Wait until at least `count` events `ev` (matching pred) exist."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                got = [e for e in self.events if e.get("ev") == ev
                       and (pred is None or pred(e))]
                if len(got) >= count:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        "peer %s: %d/%d %r events after %.1fs; stderr: %s"
                        % (self.name, len(got), count, ev, timeout,
                           self.stderr()))
                self.cond.wait(min(left, 0.1))

    def conns(self):
        return self.select("conn")

    def accepts(self):
        return self.select("accept")

    def stderr(self):
        try:
            with open(self.errpath) as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    def alive(self):
        return self.proc.poll() is None

    def send_signal(self, sig):
        if self.proc.poll() is None:
            os.kill(self.pid, sig)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)

    def stop(self, timeout=5.0):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.reader.join(2)
        return self.proc.returncode

    def wait_exit(self, timeout=30.0):
        rc = self.proc.wait(timeout)
        self.reader.join(2)
        return rc

    def cleanup(self):
        try:
            self.kill()
        except Exception:
            pass
        try:
            self.proc.stdout.close()
        except Exception:
            pass
        self.errfile.close()


@pytest.fixture
def start_peer(netns, tmp_path):
    """Factory: start_peer(kind, *args, host=, port=0, name=, netns=,
    wait=True) -> Peer. Server peers are waited for (READY); all peers are
    killed at teardown."""
    made = []

    def start(kind, *args, host="127.0.0.1", port=0, name=None, netns=None,
              wait=True, timeout=10.0):
        p = Peer(kind, list(args), host, port, name, netns, str(tmp_path),
                 len(made) + 1)
        made.append(p)
        if wait:
            p.wait_ready(timeout)
        return p

    yield start
    for p in made:
        p.cleanup()


@pytest.fixture
def start_hpeer(tmp_path):
    """Factory: start_hpeer(kind, *args, host=, port=0, name=, netns=,
    wait=True) -> Peer running health_peers.py (http, script, line,
    silent, rst servers); waited for (READY) unless wait=False; killed at
    teardown."""
    made = []

    def start(kind, *args, host="127.0.0.1", port=0, name=None, netns=None,
              wait=True):
        p = Peer(kind, list(args), host, port, name, netns, str(tmp_path),
                 1000 + len(made), script=HPEERS)
        made.append(p)
        return p.wait_ready() if wait else p

    yield start
    for p in made:
        p.cleanup()


@pytest.fixture
def http_backends():
    """Three HTTP demo backends on loopback: [(name, "127.0.0.1:port")]."""
    procs, out = [], []
    try:
        for i in range(3):
            port = alloc_port()
            name = "web%d" % (i + 1)
            p = subprocess.Popen([PYTHON, DEMO, name, str(port)],
                                 stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
            procs.append(p)
            out.append((name, "127.0.0.1:%d" % port))
        for name, addr in out:
            wait_for(lambda: subprocess.run(
                ["curl", "-sf", "-o", "/dev/null", "http://%s/" % addr],
                timeout=5).returncode == 0, timeout=10,
                what="backend %s" % addr)
        yield out
    finally:
        for p in procs:
            p.kill()
            p.wait(5)


# --------------------------------------------------------------------------
# shoal

def _render_value(v):
    if isinstance(v, bool):
        return "yes" if v else "no"
    return str(v)


def render_config(global_opts, frontends, backends):
    """INI text. global_opts: dict; frontends/backends: lists of
    (name, [(key, value), ...]); a value of None omits the key."""
    out = ["[global]"]
    for k, v in global_opts.items():
        if v is not None:
            out.append("%s = %s" % (k, _render_value(v)))
    for kind, sections in (("frontend", frontends), ("backend", backends)):
        for name, items in sections:
            out.append("")
            out.append("[%s %s]" % (kind, name))
            for k, v in items:
                if v is not None:
                    out.append("%s = %s" % (k, _render_value(v)))
    return "\n".join(out) + "\n"


def server_line(spec):
    """A `server =` value from a Peer, "NAME ADDR [opts]", or a tuple
    (name, addr[, opts]); a Peer may carry .server_opts."""
    if isinstance(spec, Peer):
        opts = getattr(spec, "server_opts", "")
        return ("%s %s %s" % (spec.name, spec.addr, opts)).strip()
    if isinstance(spec, (tuple, list)):
        return " ".join(str(x) for x in spec if x)
    return str(spec)


class Shoal:
    """A running shoal process and its observers."""

    def __init__(self, config_text, binds, tmpdir, seq, prefix=(),
                 netns=None, expect_errors=False, allow_errors=(),
                 env=None):
        self.config_text = config_text
        self.binds = binds
        self.netns = netns
        self.expect_errors = expect_errors
        self.allow_errors = [re.compile(p) for p in allow_errors]
        self.conf_path = os.path.join(tmpdir, "shoal-%d.conf" % seq)
        self.log_path = os.path.join(tmpdir, "shoal-%d.log" % seq)
        with open(self.conf_path, "w") as f:
            f.write(config_text)
        e = dict(os.environ)
        e["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0"
        e["UBSAN_OPTIONS"] = "print_stacktrace=1"
        if env:
            e.update(env)
        cmd = list(prefix) + [SHOAL_BIN, "-c", self.conf_path]
        if netns is not None:
            cmd = netns.prefix + cmd
        self.cmd = cmd
        self.logf = open(self.log_path, "ab")
        self.t_start = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                     stdout=self.logf, stderr=self.logf,
                                     env=e)
        self.pid = self.proc.pid
        self.stopped = False
        self.returncode = None
        self.fd_baseline = None
        self.rss_baseline = None
        # Teardown's NL3 check; a test that changes what shoal holds for
        # good (listeners added by a reload...) re-takes the baseline with
        # rebaseline(), one that cannot know it sets this to False.
        self.check_fds = True

    # -- addresses
    @property
    def addr(self):
        """(host, port) of the first bind of the first frontend."""
        return parse_hostport(self.binds[0])

    @property
    def port(self):
        return self.addr[1]

    # -- life cycle
    def wait_ready(self, timeout=10.0 * SLACK):
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError("shoal exited (rc=%s) before ready:\n%s"
                                     % (self.proc.returncode,
                                        self.log()[-3000:]))
            if any("ready" in m for _, _, m in self.log_lines()):
                break
            if time.monotonic() > deadline:
                raise AssertionError("shoal not ready after %.1fs:\n%s"
                                     % (timeout, self.log()[-3000:]))
            time.sleep(0.01)
        self.t_ready = time.monotonic()
        self.rebaseline()
        self.rss_baseline = self.rss_kb()
        return self

    def rebaseline(self, timeout=1.0):
        """Take the fd baseline: the count once it has been stable for 3
        reads, or the last read after `timeout` s. At ready, and again
        when what shoal holds changed for good (a reload added a listener,
        a hand-over ended)."""
        last, same = None, 0
        end = time.monotonic() + timeout
        while time.monotonic() < end and same < 3:
            n = self.fd_count()
            same = same + 1 if n == last else 0
            last = n
            time.sleep(0.03)
        self.fd_baseline = last

    def alive(self):
        return self.proc.poll() is None and proc_alive(self.pid)

    def send_signal(self, sig):
        os.kill(self.pid, sig)

    def stop(self, timeout=None, sig=signal.SIGTERM):
        """SIGTERM (by default), wait, return the exit code (-N: killed by
        signal N; None if it had to be SIGKILLed after `timeout`)."""
        if timeout is None:
            timeout = 15.0 * SLACK
        self.stopped = True
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                self.returncode = None
                self.logf.close()
                return None
        self.returncode = self.proc.returncode
        self.logf.close()
        return self.returncode

    def wait_exit(self, timeout):
        self.proc.wait(timeout)
        self.stopped = True
        self.returncode = self.proc.returncode
        self.logf.close()
        return self.returncode

    # -- observers
    def fd_count(self):
        return len(os.listdir("/proc/%d/fd" % self.pid))

    def fd_targets(self):
        out = []
        d = "/proc/%d/fd" % self.pid
        for fd in sorted(os.listdir(d), key=int):
            try:
                out.append("%s -> %s" % (fd, os.readlink(os.path.join(d, fd))))
            except OSError:
                pass
        return out

    def status(self, key):
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        return None

    def rss_kb(self):
        return self.status("VmRSS")

    def hwm_kb(self):
        return self.status("VmHWM")

    def cpu_seconds(self):
        with open("/proc/%d/stat" % self.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        # fields[0] is field 3 (state): utime is field 14, stime field 15
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def cpu_over(self, seconds):
        """CPU seconds shoal used during the next `seconds` of wall time."""
        c0 = self.cpu_seconds()
        time.sleep(seconds)
        return self.cpu_seconds() - c0

    def is_asan(self):
        try:
            with open("/proc/%d/maps" % self.pid) as f:
                return "libasan" in f.read()
        except OSError:
            return "asan" in SHOAL_BUILD.lower()

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def log_lines(self):
        """[(timestamp, level, message)] of the well-formed log lines."""
        out = []
        for line in self.log().splitlines():
            m = LOG_RE.match(line)
            if m:
                out.append(m.groups())
        return out

    def sessions(self):
        """The session lines parsed into dicts (values kept as strings,
        numeric ones also converted to int)."""
        out = []
        for _, _, msg in self.log_lines():
            if not msg.startswith("session "):
                continue
            d = {}
            for k, v in KV_RE.findall(msg):
                d[k] = int(v) if re.fullmatch(r"-?\d+", v) else v
            if "server" in d:
                d["server_name"] = str(d["server"]).split("/", 1)[-1]
            out.append(d)
        return out

    def wait_sessions(self, n, timeout=10.0, pred=None):
        """Wait until at least n session lines (matching pred) exist."""
        def enough():
            s = [x for x in self.sessions() if pred is None or pred(x)]
            return s if len(s) >= n else None
        try:
            return wait_for(enough, timeout * SLACK, 0.02)
        except AssertionError:
            raise AssertionError("%d/%d session lines after %.1fs; log:\n%s"
                                 % (len([x for x in self.sessions()
                                         if pred is None or pred(x)]),
                                    n, timeout * SLACK, self.log()[-3000:]))

    def wait_for(self, pred, timeout=5.0, interval=0.02, what="condition"):
        return wait_for(pred, timeout * SLACK, interval, what)

    SS_STATES = {"ESTAB": "established", "CLOSE-WAIT": "close-wait",
                 "FIN-WAIT-2": "fin-wait-2", "FIN-WAIT-1": "fin-wait-1",
                 "LISTEN": "listening", "TIME-WAIT": "time-wait",
                 "SYN-SENT": "syn-sent", "LAST-ACK": "last-ack"}

    def ss(self, states=None):
        """Lines of `ss -tnp` (in shoal's namespace) owned by shoal, each
        starting with the state (ESTAB, CLOSE-WAIT, ...). `states` filters
        in the kernel, so a busy socket table (thousands of TIME-WAIT from
        earlier tests) does not make the dump slow or inconsistent."""
        cmd = ["ss", "-tnpH"]
        if states:
            for st in states:
                cmd += ["state", self.SS_STATES[st]]
        else:
            cmd.insert(1, "-a")
        if self.netns is not None:
            cmd = self.netns.prefix + cmd
        for _ in range(3):
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode == 0:
                break
        tag = "pid=%d," % self.pid
        out = []
        for line in r.stdout.splitlines():
            if tag not in line:
                continue
            if states and len(states) == 1:
                line = states[0] + " " + line  # ss omits a lone state
            out.append(line)
        return out

    def established_on(self, port):
        """Established sockets owned by shoal with local port `port` (the
        client sessions of a frontend)."""
        n = 0
        for line in self.ss(("ESTAB",)):
            local = line.split()[3]
            if local.rsplit(":", 1)[1] == str(port):
                n += 1
        return n

    def checked_servers(self):
        """Addresses ("127.0.0.1:80") of the servers shoal health-checks
        (every server of a backend whose `check` is not none)."""
        out, checked, addrs = set(), False, []
        for line in self.config_text.splitlines() + ["["]:
            line = line.strip()
            if line.startswith("["):
                if checked:
                    out.update(addrs)
                checked, addrs = False, []
                continue
            k, _, v = line.partition("=")
            k, v = k.strip(), v.strip()
            if k == "check" and v and v != "none":
                checked = True
            elif k == "server" and len(v.split()) >= 2:
                addrs.append(v.split()[1])
        return out

    def resolving_backends(self):
        """Backends with `resolve` or `resolve_srv`: each may hold one DNS
        query socket at any moment (c-ares keeps it while it retries a
        resolver that does not answer)."""
        return sum(1 for line in self.config_text.splitlines()
                   if line.split("=")[0].strip() in ("resolve",
                                                     "resolve_srv"))

    def check_nl3(self, timeout=2.0, rss_slack_kb=None, in_flight_checks=0):
        """NL3: within `timeout` s the fd count is back to the baseline and
        shoal owns no ESTABLISHED, CLOSE_WAIT or FIN_WAIT2 socket.
        in_flight_checks > 0 tolerates that many health-check sockets to
        checked servers (the teardown passes one per checked server)."""
        bad_states = ("ESTAB", "CLOSE-WAIT", "FIN-WAIT-2")
        checked = self.checked_servers() if in_flight_checks else set()
        deadline = time.monotonic() + timeout * SLACK
        assert self.alive(), "shoal died:\n" + self.log()[-3000:]
        while True:
            fds = self.fd_count()
            socks = [l for l in self.ss(bad_states)
                     if l.split()[4] not in checked]
            if abs(fds - self.fd_baseline) <= in_flight_checks \
                    and not socks:
                break
            if time.monotonic() > deadline:
                raise AssertionError(
                    "NL3: fd count %d (baseline %d), sockets:\n%s\nfds:\n%s"
                    % (fds, self.fd_baseline, "\n".join(socks),
                       "\n".join(self.fd_targets())))
            time.sleep(0.02)
        if rss_slack_kb is not None:
            rss = self.rss_kb()
            assert rss <= self.rss_baseline + rss_slack_kb, \
                "NL3: RSS %d kB > baseline %d kB + %d kB" % (
                    rss, self.rss_baseline, rss_slack_kb)
        assert self.alive(), "shoal died:\n" + self.log()[-3000:]

    # -- teardown
    def finish(self):
        """Teardown checks; returns a list of problems (empty = fine)."""
        problems = []
        if not self.stopped and self.alive() and self.check_fds \
                and self.fd_baseline is not None:
            try:
                # Health checks open and close sockets all along: one may
                # be in flight per checked server (and may have been at
                # the baseline); so may a DNS query per resolving backend.
                self.check_nl3(in_flight_checks=len(self.checked_servers())
                               + self.resolving_backends())
            except AssertionError as e:
                problems.append("teardown: %s" % e)
        if not self.stopped:
            if not self.alive():
                try:
                    self.proc.wait(2)
                except subprocess.TimeoutExpired:
                    pass
                problems.append("shoal is not alive at teardown (rc=%s)"
                                % self.proc.poll())
                self.stopped = True
                self.returncode = self.proc.returncode
                self.logf.close()
            else:
                rc = self.stop()
                if rc != 0:
                    problems.append("shoal exit code after SIGTERM: %s" % rc)
        log = self.log()
        for m in SANITIZER_MARKERS:
            if m in log:
                problems.append("sanitizer output (%s) in shoal log" % m)
                break
        if not self.expect_errors:
            errs = [msg for _, lvl, msg in self.log_lines()
                    if lvl == "error"
                    and not any(p.search(msg) for p in self.allow_errors)]
            if errs:
                problems.append("unexpected error-level log lines: %s"
                                % errs[:5])
        if problems:
            problems.append("log tail (%s):\n%s" % (self.log_path,
                                                     log[-4000:]))
        return problems

    def cleanup(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        if not self.logf.closed:
            self.logf.close()


def default_binds(family="ipv4"):
    host = "::1" if family == "ipv6" else "127.0.0.1"
    return [fmt_hostport(host, alloc_port())]


@pytest.fixture
def start_shoal(start_peer, tmp_path):
    """Factory building a config and starting shoal:

    start_shoal(servers, balance=, binds=, frontend={}, backend={},
                global_={}, config_text=, prefix=(), netns=None,
                expect_errors=False, allow_errors=(), wait=True)

    servers: Peers (name and address taken from the peer; .server_opts
    appended), "NAME ADDR [opts]" strings or tuples. Defaults: threads = 2,
    timeout_connect = 1s, retries = 2, timeouts 10s, grace = 5s."""
    made = []

    def start(servers=(), balance="roundrobin", binds=None, frontend=None,
              backend=None, global_=None, config_text=None, prefix=(),
              netns=None, expect_errors=False, allow_errors=(), wait=True,
              env=None):
        if binds is None:
            binds = default_binds()
        if config_text is None:
            g = {"threads": 2, "log_level": "info", "grace": "5s"}
            g.update(global_ or {})
            fe = [("bind", b) for b in binds] + [("backend", "app"),
                                                 ("timeout_client", "10s")]
            fe = _merge(fe, frontend or {})
            be = [("balance", balance)]
            be += [("server", server_line(s)) for s in servers]
            be += [("timeout_connect", "1s"), ("timeout_server", "10s"),
                   ("retries", 2)]
            be = _merge(be, backend or {})
            config_text = render_config(g, [("web", fe)], [("app", be)])
        sh = Shoal(config_text, binds, str(tmp_path), len(made) + 1,
                   prefix=prefix, netns=netns, expect_errors=expect_errors,
                   allow_errors=allow_errors, env=env)
        made.append(sh)
        if wait:
            sh.wait_ready()
        return sh

    yield start
    problems = []
    for sh in made:
        try:
            p = sh.finish()
        finally:
            sh.cleanup()
        problems += p
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def _merge(items, overrides):
    """Replace keys of an item list by those in overrides (None removes)."""
    out = []
    done = set()
    for k, v in items:
        if k in overrides:
            if k not in done:
                done.add(k)
                out.append((k, overrides[k]))
            continue
        out.append((k, v))
    for k, v in overrides.items():
        if k not in done:
            out.append((k, v))
    return out


@pytest.fixture
def free_port():
    return alloc_port


def run_shoal_check(conf_path, timeout=10.0):
    """`shoal -t -c FILE` -> (exit code, stderr text)."""
    r = subprocess.run([SHOAL_BIN, "-t", "-c", conf_path],
                       capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    return r.returncode, r.stderr + r.stdout


def run_shoal_start(conf_path, timeout=5.0):
    """`shoal -c FILE` expected to refuse the config: (exit code, output).
    If it is still running after `timeout` it is killed and rc is None."""
    p = subprocess.Popen([SHOAL_BIN, "-c", conf_path], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True)
    try:
        out, _ = p.communicate(timeout=timeout)
        return p.returncode, out
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGTERM)
        try:
            out, _ = p.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate()
        return None, out


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "peers_only: tests of the harness itself (no shoal)")
    config.addinivalue_line(
        "markers", "valgrind: runs shoal under valgrind (normal build only: "
        "tests/run.sh deselects it in the sanitizer pass)")


@pytest.fixture(autouse=True)
def _need_binary(request):
    if "peers_only" in request.keywords:
        return
    if not SHOAL_BUILD:
        pytest.fail(NO_BUILD_MSG, pytrace=False)
    if not os.access(SHOAL_BIN, os.X_OK):
        pytest.fail("shoal binary not built: %s (set SHOAL_BUILD)"
                    % SHOAL_BIN, pytrace=False)
