#!/usr/bin/python3
"""
restarts.py - errors seen by `ab -n 20000 -c 20` while the proxy restarts 5
times, shoal against HAProxy, on the same nginx backend.

  shoal-plain      SIGTERM, wait for the exit, start a new shoal
  shoal-socket     systemd socket activation (systemd-socket-activate holds
                   the socket; each new shoal gets it via LISTEN_FDS)
  shoal-handover   new shoal -x ADMIN_SOCKET (takes the sockets, old drains)
  haproxy-plain    SIGTERM, wait for the exit, start a new haproxy
  haproxy-reload   haproxy -x STATS_SOCKET -sf OLDPID (expose-fd listeners)

Usage: bench/probes/restarts.py [--shoal PATH] [--runs N] [--only NAME]
Everything runs on 127.0.0.1 with ports of its own; every process it starts
is killed at the end. Prints one line per run and a summary table.
"""

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

from procs import Procs

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
RESTART_LOOP = r"""
while :; do
  sh -c 'LISTEN_PID=$$ exec "$0" -c "$1"' "$SHOAL" "$CONF"
  [ -e "$DIR/stop" ] && exit 0
done
"""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, timeout=10):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return True
        except OSError:
            time.sleep(0.01)
    raise RuntimeError("port %d never answered" % port)


class Run:
    def __init__(self, d, shoal, backend_port):
        self.d = d
        self.shoal = shoal
        self.bport = backend_port
        self.port = free_port()
        self.procs = Procs(d)

    def spawn(self, cmd, **kw):
        return self.procs.spawn(cmd, **kw)

    def cleanup(self):
        open(os.path.join(self.d, "stop"), "w").close()
        self.procs.cleanup()

    # -- shoal
    def shoal_conf(self):
        path = os.path.join(self.d, "shoal.ini")
        with open(path, "w") as f:
            f.write("[global]\nthreads = 2\ngrace = 5s\nlog_level = warn\n"
                    "[frontend web]\nbind = 127.0.0.1:%d\nbackend = app\n"
                    "[backend app]\ncheck = none\nserver = s1 127.0.0.1:%d\n"
                    "[admin]\nsocket = %s/admin.sock\n"
                    % (self.port, self.bport, self.d))
        return path

    def shoal_pids(self):
        out = subprocess.run(["pgrep", "-f", "-x", "%s -c %s" % (
            self.shoal, os.path.join(self.d, "shoal.ini"))],
            capture_output=True, text=True).stdout.split()
        return sorted(int(x) for x in out)

    # each restart function returns after the new process serves
    def start_shoal_plain(self):
        self.cur = self.spawn([self.shoal, "-c", self.shoal_conf()])
        wait_port(self.port)

    def restart_shoal_plain(self):
        self.cur.send_signal(signal.SIGTERM)
        self.cur.wait(30)
        self.start_shoal_plain()

    def start_shoal_socket(self):
        conf = self.shoal_conf()
        self.spawn(["systemd-socket-activate", "-l", "127.0.0.1:%d"
                    % self.port, "--fdname=web", "-E", "SHOAL=" + self.shoal,
                    "-E", "CONF=" + conf, "-E", "DIR=" + self.d,
                    "/bin/sh", "-c", RESTART_LOOP])
        wait_port(self.port)
        self.wait_pid_change(None)

    def wait_pid_change(self, old, timeout=10):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            pids = [p for p in self.shoal_pids() if p != old]
            if pids:
                return pids[0]
            time.sleep(0.005)
        raise RuntimeError("no new shoal")

    def restart_shoal_socket(self):
        old = self.wait_pid_change(None)
        os.kill(old, signal.SIGTERM)
        self.wait_pid_change(old)

    def start_shoal_handover(self):
        self.start_shoal_plain()

    def restart_shoal_handover(self):
        old = self.cur
        self.cur = self.spawn([self.shoal, "-c", self.shoal_conf(), "-x",
                               os.path.join(self.d, "admin.sock")])
        old.wait(30)

    # -- haproxy
    def hap_conf(self):
        path = os.path.join(self.d, "haproxy.cfg")
        with open(path, "w") as f:
            f.write("global\n  stats socket %s/hap.sock mode 600 level admin "
                    "expose-fd listeners\n  nbthread 2\n"
                    "defaults\n  mode tcp\n  timeout connect 2s\n"
                    "  timeout client 60s\n  timeout server 60s\n"
                    "frontend f\n  bind 127.0.0.1:%d\n  default_backend b\n"
                    "backend b\n  server s1 127.0.0.1:%d\n"
                    % (self.d, self.port, self.bport))
        return path

    def start_haproxy_plain(self):
        self.cur = self.spawn(["haproxy", "-db", "-f", self.hap_conf()])
        wait_port(self.port)

    def restart_haproxy_plain(self):
        self.cur.send_signal(signal.SIGTERM)
        self.cur.wait(30)
        self.start_haproxy_plain()

    def start_haproxy_reload(self):
        self.start_haproxy_plain()

    def restart_haproxy_reload(self):
        old = self.cur
        self.cur = self.spawn(["haproxy", "-db", "-f", self.hap_conf(),
                               "-x", os.path.join(self.d, "hap.sock"),
                               "-sf", str(old.pid)])
        old.wait(30)


def ab_run(port, n, c, tag, d):
    out = os.path.join(d, "ab-%s.txt" % tag)
    f = open(out, "w")
    p = subprocess.Popen(["ab", "-r", "-n", str(n), "-c", str(c),
                          "http://127.0.0.1:%d/" % port], stdout=f,
                         stderr=subprocess.STDOUT)
    return p, out, f


def parse_ab(path):
    text = open(path).read()

    def num(pat):
        m = re.search(pat, text)
        return int(m.group(1)) if m else None
    return {"complete": num(r"Complete requests:\s+(\d+)"),
            "failed": num(r"Failed requests:\s+(\d+)"),
            "non2xx": num(r"Non-2xx responses:\s+(\d+)") or 0,
            "aborted": "aborted" in text or "apr_" in text,
            "tail": text.strip().splitlines()[-1] if text.strip() else ""}


def one(name, shoal, bport, n, c, restarts, gap):
    d = tempfile.mkdtemp(prefix="shoal-restarts-")
    r = Run(d, shoal, bport)
    try:
        getattr(r, "start_" + name.replace("-", "_"))()
        ab, out, f = ab_run(r.port, n, c, name, d)
        done = 0
        t0 = time.monotonic()
        while done < restarts and ab.poll() is None:
            time.sleep(gap)
            getattr(r, "restart_" + name.replace("-", "_"))()
            done += 1
        ab.wait(300)
        f.close()
        res = parse_ab(out)
        res["restarts"] = done
        res["seconds"] = round(time.monotonic() - t0, 2)
        return res
    finally:
        r.cleanup()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shoal", default=os.path.join(ROOT, "build", "shoal"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", action="append")
    ap.add_argument("-n", type=int, default=20000)
    ap.add_argument("-c", type=int, default=20)
    ap.add_argument("--gap", type=float, default=0.25,
                    help="seconds between restarts")
    a = ap.parse_args()
    d = tempfile.mkdtemp(prefix="shoal-restarts-nginx-")
    bport = free_port()
    with open(os.path.join(d, "nginx.conf"), "w") as f:
        f.write("worker_processes 2;\npid %s/nginx.pid;\nerror_log %s/err;\n"
                "events { worker_connections 4096; }\nhttp { access_log off;"
                " server { listen 127.0.0.1:%d; location / { return 200 "
                "\"hello\\n\"; } } }\n" % (d, d, bport))
    ng = subprocess.Popen(["nginx", "-p", d, "-c", os.path.join(d,
                          "nginx.conf"), "-g", "daemon off;"],
                          start_new_session=True)
    names = a.only or ["shoal-plain", "shoal-socket", "shoal-handover",
                       "haproxy-plain", "haproxy-reload"]
    rows = []
    try:
        wait_port(bport)
        for name in names:
            for i in range(a.runs):
                res = one(name, a.shoal, bport, a.n, a.c, 5, a.gap)
                print("%-15s run %d: %s" % (name, i + 1, res), flush=True)
                rows.append((name, res))
    finally:
        os.killpg(ng.pid, signal.SIGTERM)
        ng.wait(10)
    print("\n| target | runs | restarts each | complete | failed "
          "| aborted runs |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in names:
        rs = [r for nm, r in rows if nm == name]
        print("| %s | %d | %s | %s | %s | %d |" % (
            name, len(rs), "/".join(str(r["restarts"]) for r in rs),
            "/".join(str(r["complete"]) for r in rs),
            "/".join(str(r["failed"]) for r in rs),
            sum(1 for r in rs if r["aborted"])))


if __name__ == "__main__":
    sys.exit(main())
