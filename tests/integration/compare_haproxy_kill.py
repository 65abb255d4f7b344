#!/usr/bin/python3
"""
compare_haproxy_kill.py - kill -9 one of three backends, measure how long
until the load balancer marks it down and what clients see meanwhile, for
shoal and for HAProxy configured the same way. Not part of the test run.

    /usr/bin/python3 tests/integration/compare_haproxy_kill.py \
        [--lb shoal,haproxy] [--mode traffic,idle] [--runs 1] [--inter 2]

Both balancers: mode tcp, roundrobin over three echo backends (peers.py),
tcp checks every --inter seconds, rise 2, fall 3, connect timeout 1s,
retries 2 (HAProxy: `option redispatch`). Modes:
  traffic  a sequential client loop (64-byte echo exchanges, ~100/s) runs
           across the kill; the kill happens between two of its
           connections (a connection cut by a kill -9 is lost whatever the
           balancer does)
  idle     no traffic: only active checks can notice the kill

The kill comes at a random phase of the check cycle. Measured: time from
the kill to "marked down" (shoal: the timestamp of its
"up -> down" log line; HAProxy: `show stat` on its stats socket, polled every
5 ms), client connections that failed, and the slowest client exchange
around the kill. Everything runs on 127.0.0.1; every process is killed at
the end.
"""

import argparse
import datetime
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from peers import ClientLoop, recv_all

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = os.path.join(HERE, "peers.py")
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") \
    else sys.executable
if not os.environ.get("SHOAL_BUILD"):
    sys.exit("SHOAL_BUILD is not set: point it at a build directory "
             "(e.g. SHOAL_BUILD=$PWD/build)")
SHOAL = os.path.join(os.environ["SHOAL_BUILD"], "shoal")
HAPROXY = os.environ.get("HAPROXY", "haproxy")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_for(pred, timeout, what, interval=0.01):
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            raise RuntimeError("timed out waiting for " + what)
        time.sleep(interval)


class Procs:
    def __init__(self):
        self.procs = []

    def start(self, cmd, **kw):
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, **kw)
        self.procs.append(p)
        return p

    def killall(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass


def start_echo(procs, name, port=0):
    p = procs.start([PYTHON, PEERS, "echo", "--port", str(port), "--name",
                     name], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                    text=True)
    line = p.stdout.readline()
    if not line.startswith("READY "):
        raise RuntimeError("echo %s did not start" % name)
    # Drain its events so the pipe never fills.
    threading.Thread(target=lambda: [None for _ in p.stdout],
                     daemon=True).start()
    return p, int(line.split()[1])


# --------------------------------------------------------------------------
# The two balancers

class ShoalLB:
    name = "shoal"

    def __init__(self, procs, d, port, backends, inter):
        self.log = os.path.join(d, "shoal.log")
        conf = os.path.join(d, "shoal.conf")
        with open(conf, "w") as f:
            f.write("[global]\nthreads = 2\ngrace = 1s\n\n"
                    "[frontend web]\nbind = 127.0.0.1:%d\nbackend = app\n"
                    "timeout_client = 10s\n\n"
                    "[backend app]\nbalance = roundrobin\n" % port)
            for name, p in backends:
                f.write("server = %s 127.0.0.1:%d\n" % (name, p))
            f.write("timeout_connect = 1s\ntimeout_server = 10s\n"
                    "retries = 2\ncheck = tcp\ncheck_interval = %gs\n"
                    "check_timeout = 1s\nrise = 2\nfall = 3\n"
                    "init_state = checking\n" % inter)
        self.p = procs.start([SHOAL, "-c", conf], stdout=open(self.log, "w"),
                             stderr=subprocess.STDOUT)
        self.names = [n for n, _ in backends]

    def lines(self):
        with open(self.log) as f:
            return f.read().splitlines()

    def all_up(self):
        text = "\n".join(self.lines())
        return all(re.search(r"server app/%s: checking -> up" % n, text)
                   for n in self.names)

    def down_time(self, name):
        """Epoch time of name's up -> down line, or None."""
        for line in self.lines():
            if "server app/%s: up -> down" % name in line:
                ts = line.split()[0]
                d = datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ")
                return (d.replace(tzinfo=datetime.timezone.utc).timestamp(),
                        line.split("(", 1)[1].rstrip(")"))
        return None


class HaproxyLB:
    name = "haproxy"

    def __init__(self, procs, d, port, backends, inter):
        self.sock = os.path.join(d, "haproxy.sock")
        self.log = os.path.join(d, "haproxy.log")
        conf = os.path.join(d, "haproxy.cfg")
        with open(conf, "w") as f:
            f.write("global\n  stats socket %s mode 600 level admin\n"
                    "  log stderr format raw local0 info\n\n"
                    "defaults\n  mode tcp\n  log global\n"
                    "  timeout connect 1s\n  timeout client 10s\n"
                    "  timeout server 10s\n  retries 2\n"
                    "  option redispatch\n\n"
                    "frontend web\n  bind 127.0.0.1:%d\n"
                    "  default_backend app\n\n"
                    "backend app\n  balance roundrobin\n" % (self.sock, port))
            for name, p in backends:
                f.write("  server %s 127.0.0.1:%d check inter %gs rise 2 "
                        "fall 3\n" % (name, p, inter))
        self.p = procs.start([HAPROXY, "-db", "-f", conf],
                             stdout=open(self.log, "w"),
                             stderr=subprocess.STDOUT)
        self.names = [n for n, _ in backends]

    def stat(self):
        try:
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(1)
            s.connect(self.sock)
            s.sendall(b"show stat\n")
            data = recv_all(s)
            s.close()
        except OSError:
            return {}
        lines = data.decode().splitlines()
        if not lines:
            return {}
        head = lines[0].lstrip("# ").split(",")
        out = {}
        for line in lines[1:]:
            row = dict(zip(head, line.split(",")))
            if row.get("pxname") == "app":
                out[row.get("svname")] = row
        return out

    def all_up(self):
        st = self.stat()
        return all(n in st and st[n]["status"] == "UP"
                   and st[n]["check_status"] == "L4OK" for n in self.names)

    def down_time(self, name):
        st = self.stat().get(name)
        if st and st["status"].startswith("DOWN"):
            return time.time(), "%s %s" % (st["check_status"],
                                          st.get("check_desc", ""))
        return None


# --------------------------------------------------------------------------

def run_one(kind, mode, inter):
    procs = Procs()
    d = tempfile.mkdtemp(prefix="shoal-cmp-")
    try:
        backends = []
        peers = {}
        for n in ("e1", "e2", "e3"):
            p, port = start_echo(procs, n)
            backends.append((n, port))
            peers[n] = p
        port = free_port()
        cls = ShoalLB if kind == "shoal" else HaproxyLB
        lb = cls(procs, d, port, backends, inter)
        wait_for(lb.all_up, 10 * inter + 10, "%s: all servers up" % kind,
                 0.05)
        loop = None
        # Kill at a random phase of the check cycle: right after "all up"
        # both balancers have just checked, which would bias the figures.
        phase = random.uniform(0, inter)
        if mode == "traffic":
            loop = ClientLoop(("127.0.0.1", port), timeout=10.0,
                              limit=100000)
            loop.start()
            wait_for(lambda: len(loop.results) >= 50, 20, "client warm-up")
            time.sleep(phase)
            with loop.lock:
                peers["e1"].kill()
                t_kill = time.time()
        else:
            time.sleep(phase)
            peers["e1"].kill()
            t_kill = time.time()
        got = wait_for(lambda: lb.down_time("e1"), 6 * inter + 10,
                       "%s: e1 down" % kind, 0.005)
        t_down, why = got
        if loop is not None:
            end = time.time() + 1.0
            wait_for(lambda: time.time() > end and len(loop.results) > 0,
                     5, "a second more of traffic")
            loop.stop()
        res = {"lb": kind, "mode": mode, "down_ms": (t_down - t_kill) * 1000,
               "why": why}
        if loop is not None:
            around = [r for r in loop.results if r[0] >= t_kill - 0.1]
            res.update(
                clients=len(loop.results),
                failed=sum(1 for r in loop.results if r[2] is not None),
                errors=sorted({r[2] for r in loop.results if r[2]})[:3],
                slowest_ms=max((r[1] for r in around), default=0) * 1000,
                after_kill=len(around))
        return res
    finally:
        procs.killall()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lb", default="shoal,haproxy")
    ap.add_argument("--mode", default="traffic,idle")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--inter", type=float, default=2.0)
    args = ap.parse_args()
    rows = []
    for kind in args.lb.split(","):
        for mode in args.mode.split(","):
            for i in range(args.runs):
                r = run_one(kind, mode, args.inter)
                rows.append(r)
                extra = ""
                if "clients" in r:
                    extra = ("; clients %d (%d after the kill), failed %d%s, "
                             "slowest exchange %.0f ms"
                             % (r["clients"], r["after_kill"], r["failed"],
                                " " + str(r["errors"]) if r["errors"] else "",
                                r["slowest_ms"]))
                print("%-7s %-7s run %d: kill -9 -> down %6.0f ms (%s)%s"
                      % (kind, mode, i + 1, r["down_ms"], r["why"], extra),
                      flush=True)
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(1))
    sys.exit(main())
