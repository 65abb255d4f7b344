"""
discovery_helpers.py - what test_discovery.py needs beyond conftest.py:
shoal configs with a [discovery] section, key files, shoal-announce
processes, a datagram sender, the receiver's counters (read from its debug
log: one line per datagram with every counter), and a small LAN of network
namespaces joined by a bridge.
"""

import os
import re
import signal
import socket
import subprocess
import time

from conftest import SHOAL_BUILD, alloc_port, fmt_hostport

ANNOUNCE_BIN = os.path.join(SHOAL_BUILD, "shoal-announce")
VERDICTS = ("ok", "malformed", "unknown_key", "bad_mac", "stale", "replay",
            "policy", "cap")
COUNTERS_RE = re.compile(r"discovery: datagram from (\S+) pool (\S+): (\w+) "
                         r"\((.*)\) counters (.*)$")


def write_keyfile(tmp_path, keys, name="discovery.key", mode=0o600):
    """keys: {id: bytes}. Returns the path of a key file with that mode."""
    path = os.path.join(str(tmp_path), name)
    with open(path, "w") as f:
        f.write("# shoal discovery keys (test)\n")
        for kid, key in keys.items():
            f.write("%d %s\n" % (kid, key.hex()))
    os.chmod(path, mode)
    return path


def discovery_config(bind, dport, backend=(), discovery=(), servers=(),
                     log_level="debug", extra=""):
    """A shoal config: frontend web on `bind` -> backend app (discovery
    yes), [discovery] on port dport. backend / discovery: (key, value)
    pairs appended to (or, if repeated, after) the defaults."""
    lines = ["[global]", "threads = 2", "log_level = %s" % log_level,
             "grace = 5s", "",
             "[frontend web]", "bind = %s" % bind, "backend = app",
             "timeout_client = 10s", "",
             "[backend app]", "timeout_connect = 1s", "timeout_server = 10s",
             "retries = 2", "discovery = yes"]
    lines += ["server = %s" % s for s in servers]
    lines += ["%s = %s" % kv for kv in backend]
    lines += ["", "[discovery]", "port = %d" % dport]
    lines += ["%s = %s" % kv for kv in discovery]
    return "\n".join(lines) + "\n" + extra


class Announcer:
    """A shoal-announce process, stderr to a file."""

    def __init__(self, args, tmp_path, name, netns=None, prefix=()):
        self.log_path = os.path.join(str(tmp_path), "announce-%s-%d.log"
                                     % (name, int(time.monotonic() * 1000)))
        self.logf = open(self.log_path, "wb")
        cmd = list(prefix) + [ANNOUNCE_BIN] + [str(a) for a in args]
        if netns is not None:
            cmd = netns.prefix + cmd
        self.t_start = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                     stdout=self.logf, stderr=self.logf)
        self.pid = self.proc.pid

    def signal(self, sig):
        if self.proc.poll() is None:
            os.kill(self.pid, sig)

    def stop(self, timeout=5.0):
        """SIGTERM; return the exit code."""
        self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self):
        self.signal(signal.SIGKILL)
        return self.wait(5)

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def cleanup(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.logf.close()


def counters(sh):
    """The receiver's counters after the last datagram (zeros if none)."""
    last = dict.fromkeys(VERDICTS, 0)
    for _, lvl, msg in sh.log_lines():
        m = COUNTERS_RE.search(msg)
        if m:
            last = {k: int(v) for k, v in
                    (kv.split("=") for kv in m.group(5).split())}
    return last


def verdicts(sh):
    """[(source, pool, verdict, reason)] of every datagram, in order."""
    out = []
    for _, _, msg in sh.log_lines():
        m = COUNTERS_RE.search(msg)
        if m:
            out.append(m.groups()[:4])
    return out


def log_index(sh):
    return len(sh.log_lines())


def find_line(sh, pattern, start=0):
    """The first log message at index >= start matching pattern, or None."""
    rx = re.compile(pattern)
    for _, _, msg in sh.log_lines()[start:]:
        if rx.search(msg):
            return msg
    return None


def wait_line(sh, pattern, timeout, start=0, interval=0.01):
    """Poll the log until pattern appears (at index >= start); return the
    seconds waited. Raises AssertionError on timeout."""
    t0 = time.monotonic()
    while True:
        if find_line(sh, pattern, start) is not None:
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise AssertionError("no log line /%s/ after %.1fs; log tail:\n%s"
                                 % (pattern, timeout, sh.log()[-3000:]))
        time.sleep(interval)


def count_lines(sh, pattern):
    rx = re.compile(pattern)
    return sum(1 for _, _, m in sh.log_lines() if rx.search(m))


def table_events(sh, server):
    """Lines that change the table for one server (added, removed,
    draining, up again), as a list of messages."""
    rx = re.compile(r"server app/%s: (added by announcement|removed|"
                    r"announced )" % re.escape(server))
    return [m for _, _, m in sh.log_lines() if rx.search(m)]


class Sender:
    """A UDP socket sending datagrams to shoal's discovery port."""

    def __init__(self, dport, src="127.0.0.1", dst="127.0.0.1"):
        fam = socket.AF_INET6 if ":" in dst else socket.AF_INET
        self.s = socket.socket(fam, socket.SOCK_DGRAM)
        self.s.bind((src, 0))
        self.dst = (dst, dport)

    def send(self, data):
        self.s.sendto(data, self.dst)

    def close(self):
        self.s.close()


def free_udp_port():
    """A port free for TCP (conftest) and for UDP on the wildcard."""
    for _ in range(50):
        p = alloc_port()
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind(("0.0.0.0", p))
            return p
        except OSError:
            continue
        finally:
            s.close()
    raise RuntimeError("no free UDP port")


# --------------------------------------------------------------------------
# A LAN of namespaces: "sw" holds a bridge; every host gets eth0 on it.

class Lan:
    """hosts: names; host i gets 10.77.0.(i+1)/24 and fd77::(i+1)/64."""

    def __init__(self, netns, hosts):
        self.sw = netns()
        self.sw.run(["ip", "link", "add", "br0", "type", "bridge",
                     "mcast_snooping", "0"])
        self.sw.run(["ip", "link", "set", "br0", "up"])
        self.ns = {}
        self.v4 = {}
        self.v6 = {}
        for i, h in enumerate(hosts):
            ns = netns()
            port = "p%d" % i
            self.sw.run(["ip", "link", "add", port, "type", "veth", "peer",
                         "name", "eth0", "netns", ns.name])
            self.sw.run(["ip", "link", "set", port, "master", "br0"])
            self.sw.run(["ip", "link", "set", port, "up"])
            self.v4[h] = "10.77.0.%d" % (i + 1)
            self.v6[h] = "fd77::%d" % (i + 1)
            ns.run(["ip", "addr", "add", self.v4[h] + "/24", "dev", "eth0"])
            ns.run(["ip", "-6", "addr", "add", self.v6[h] + "/64", "dev",
                    "eth0", "nodad"])
            ns.run(["ip", "link", "set", "eth0", "up"])
            self.ns[h] = ns

    def hostport(self, h, port, v6=False):
        return fmt_hostport(self.v6[h] if v6 else self.v4[h], port)
