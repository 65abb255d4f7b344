#!/usr/bin/python3
"""
tlscost.py - TLS termination: shoal against HAProxy and nginx doing the
same job, in the same run, each with one thread on its own CPU, with the
same certificate.

Loads (wrk, one thread, on CPU 0 with the backend; the proxy alone on
CPU 1):

  hs    new TLS connections: `Connection: close` over https, 50
        connections, to a 6-byte answer; req/s = handshakes/s, and the
        proxy's CPU time per handshake. Tickets off everywhere (shoal
        `tls_tickets = no`, HAProxy `no-tls-tickets`, nginx
        `ssl_session_tickets off`, and no session cache: HAProxy
        `tune.ssl.cachesize 0`, nginx's default): every handshake is a
        full one. Once with ECDSA P-256, once with RSA 2048.
  bulk  1 MiB bodies over TLS keep-alive, 10 connections: MB/s and the
        proxy's CPU time per MiB (ECDSA).

Targets: shoal (`tls = yes`, `threads = 1`), HAProxy (`mode tcp`, `bind
... ssl crt`, `nbthread 1`), nginx (`stream`, `listen ... ssl`,
`worker_processes 1`), each in front of one plain nginx HTTP backend.
All three must negotiate the same protocol and cipher suite (checked with
`openssl s_client` before the rounds): Debian 12's nginx 1.22 offers only
up to TLS 1.2 unless told (`ssl_protocols TLSv1.2 TLSv1.3`), and a TLS 1.2
handshake costs less CPU than a TLS 1.3 one.
Rounds interleave the targets (A B C A B C ...); per target the median.

Usage: bench/probes/tlscost.py [--shoal PATH] [--reps N] [--duration S]
                               [--only hs-ecdsa,hs-rsa,bulk]
Every process it starts is killed at the end.
"""

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from measure import median, proc_cpu                 # noqa: E402
from procs import Procs                              # noqa: E402
from restarts import free_port, wait_port            # noqa: E402

NGINX_STREAM_MOD = "/usr/lib/nginx/modules/ngx_stream_module.so"
UNITS = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}


class Bench(Procs):
    def __init__(self, d, shoal, bport):
        super().__init__(d, cpu="1")    # the proxies; the backend on 0
        self.d, self.shoal, self.bport = d, shoal, bport

    def shoal_target(self, name, pem):
        port = free_port()
        path = os.path.join(self.d, name + ".ini")
        with open(path, "w") as f:
            f.write("[global]\nthreads = 1\nlog_level = warn\nmaxconn = "
                    "20000\n[frontend web]\nbind = 127.0.0.1:%d\nbackend = "
                    "app\ntls = yes\ncert = %s\ntls_tickets = no\n"
                    "[backend app]\nserver = s1 127.0.0.1:%d\n"
                    % (port, pem, self.bport))
        p = self.spawn([self.shoal, "-c", path])
        wait_port(port)
        return port, p

    def haproxy_target(self, name, pem):
        port = free_port()
        path = os.path.join(self.d, name + ".cfg")
        with open(path, "w") as f:
            f.write("global\n  nbthread 1\n  maxconn 5000\n"
                    "  tune.ssl.cachesize 0\n"
                    "defaults\n  mode tcp\n  timeout connect 2s\n"
                    "  timeout client 60s\n  timeout server 60s\n"
                    "frontend f\n  bind 127.0.0.1:%d ssl crt %s "
                    "no-tls-tickets\n  default_backend b\nbackend b\n"
                    "  server s1 127.0.0.1:%d\n" % (port, pem, self.bport))
        p = self.spawn(["haproxy", "-db", "-f", path])
        wait_port(port)
        return port, p

    def nginx_target(self, name, crt, key):
        port = free_port()
        path = os.path.join(self.d, name + ".conf")
        with open(path, "w") as f:
            f.write("load_module %s;\ndaemon off;\nworker_processes 1;\n"
                    "pid %s/%s.pid;\nerror_log %s/%s.err warn;\n"
                    "events { worker_connections 20000; }\n"
                    "stream { server { listen 127.0.0.1:%d ssl backlog=4096;"
                    " ssl_certificate %s; ssl_certificate_key %s; "
                    "ssl_session_tickets off; ssl_protocols TLSv1.2 TLSv1.3;"
                    " proxy_pass 127.0.0.1:%d; } }\n"
                    % (NGINX_STREAM_MOD, self.d, name, self.d, name, port,
                       crt, key, self.bport))
        p = self.spawn(["nginx", "-p", self.d, "-c", path])
        wait_port(port)
        return port, p


def cert(d, name, rsa):
    key, crt = os.path.join(d, name + ".key"), os.path.join(d, name + ".crt")
    alg = ["-newkey", "rsa:2048"] if rsa else \
        ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
    subprocess.run(["openssl", "req", "-x509"] + alg +
                   ["-nodes", "-keyout", key, "-out", crt, "-days", "2",
                    "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=DNS:localhost"],
                   check=True, capture_output=True)
    pem = os.path.join(d, name + ".pem")
    with open(pem, "w") as f:
        f.write(open(crt).read() + open(key).read())
    return crt, key, pem


def negotiated(port):
    """Protocol and cipher suite a default client gets from the target."""
    out = subprocess.run(["openssl", "s_client", "-brief", "-connect",
                          "127.0.0.1:%d" % port], input="", text=True,
                         capture_output=True, timeout=10).stderr
    proto = re.search(r"Protocol version: (\S+)", out)
    suite = re.search(r"Ciphersuite: (\S+)", out)
    return "%s %s" % (proto.group(1) if proto else "?",
                      suite.group(1) if suite else "?")


def tree_cpu(pid):
    """CPU seconds of pid and its children (nginx's worker is a child)."""
    total = proc_cpu(pid)
    for e in os.listdir("/proc"):
        if not e.isdigit():
            continue
        try:
            st = open("/proc/%s/stat" % e).read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(st[1]) == pid:
            total += proc_cpu(int(e))
    return total


def wrk(port, duration, path, close, conns):
    cmd = ["taskset", "-c", "0", "wrk", "-t1", "-c%d" % conns,
           "-d%ds" % duration, "--timeout", "10s"]
    if close:
        cmd += ["-H", "Connection: close"]
    return subprocess.run(cmd + ["https://localhost:%d%s" % (port, path)],
                          capture_output=True, text=True,
                          timeout=duration + 60).stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shoal", default=os.path.join(ROOT, "build", "shoal"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--only", help="loads: hs-ecdsa,hs-rsa,bulk "
                    "(default: all)")
    ap.add_argument("--chart", help="also draw the medians (gnuplot) "
                    "into this PNG")
    a = ap.parse_args()
    d = tempfile.mkdtemp(prefix="shoal-tlscost-")
    os.chmod(d, 0o755)          # nginx workers (www-data) read the body
    bport = free_port()
    with open(os.path.join(d, "1m"), "wb") as f:
        f.write(os.urandom(1 << 20))
    os.chmod(os.path.join(d, "1m"), 0o644)
    with open(os.path.join(d, "backend.conf"), "w") as f:
        f.write("daemon off;\nworker_processes 1;\npid %s/backend.pid;\n"
                "error_log %s/backend.err;\nevents { worker_connections "
                "20000; }\nhttp { access_log off; keepalive_requests "
                "1000000; server { listen 127.0.0.1:%d backlog=4096; "
                "location = /1m { alias %s/1m; } location / { return 200 "
                "\"hello\\n\"; } } }\n" % (d, d, bport, d))
    b = Bench(d, a.shoal, bport)
    loads = {"hs-ecdsa": ("/", True, 50), "hs-rsa": ("/", True, 50),
             "bulk": ("/1m", False, 10)}
    if a.only:
        loads = {k: v for k, v in loads.items() if k in a.only.split(",")}
    res = {}
    try:
        b.spawn(["nginx", "-p", d, "-c", os.path.join(d, "backend.conf")],
                cpu="0")
        wait_port(bport)
        ec = cert(d, "ec", False)
        rsa = cert(d, "rsa", True)
        for load, (path, close, conns) in loads.items():
            crt, key, pem = rsa if load == "hs-rsa" else ec
            targets = {
                "shoal": b.shoal_target("shoal-" + load, pem),
                "haproxy": b.haproxy_target("haproxy-" + load, pem),
                "nginx": b.nginx_target("nginx-" + load, crt, key),
            }
            got = {name: negotiated(port)
                   for name, (port, _) in targets.items()}
            for name, what in got.items():
                print("%-8s %-8s negotiates %s" % (load, name, what))
            if len(set(got.values())) != 1:
                sys.exit("targets negotiate different TLS: not comparable")
            for rep in range(a.reps):
                for name, (port, p) in targets.items():
                    c0 = tree_cpu(p.pid)
                    out = wrk(port, a.duration, path, close, conns)
                    c1 = tree_cpu(p.pid)
                    n = int(re.search(r"(\d+) requests in", out).group(1))
                    m = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", out)
                    mbs = float(m.group(1)) * UNITS[m.group(2)] / (1 << 20)
                    err = re.search(r"Socket errors.*|Non-2xx.*", out)
                    cpu = c1 - c0
                    per = cpu * 1e6 / n if close else \
                        cpu * 1e3 / (mbs * a.duration / 1024)
                    row = (n / a.duration, mbs, per)
                    res.setdefault((load, name), []).append(row)
                    print("%-8s %-8s rep %d: %7.0f req/s %8.1f MB/s  %s %6.1f"
                          " %s" % (load, name, rep, row[0], mbs,
                                   "us/handshake" if close else "ms/GiB",
                                   per, err.group(0) if err else ""),
                          flush=True)
            for _, p in targets.values():
                os.killpg(p.pid, signal.SIGKILL)
    finally:
        b.cleanup()
    print("\n| load | target | req/s | MB/s | proxy CPU | vs HAProxy | vs "
          "nginx |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    med = {k: tuple(median(r[i] for r in v) for i in range(3))
           for k, v in res.items()}
    for (load, name), (rps, mbs, per) in med.items():
        h, n = med[(load, "haproxy")], med[(load, "nginx")]
        unit = "µs/handshake" if load != "bulk" else "ms/GiB"
        key = 0 if load != "bulk" else 1
        print("| %s | %s | %.0f | %.1f | %.1f %s | %.2f× rate, %.2f× CPU | "
              "%.2f× rate, %.2f× CPU |" % (
                  load, name, rps, mbs, per, unit,
                  (rps, mbs)[key] / (h[0], h[1])[key], per / h[2],
                  (rps, mbs)[key] / (n[0], n[1])[key], per / n[2]))
    if a.chart:
        chart(med, a.chart, d)


def chart(med, png, d):
    """Two panels: rate (handshakes/s, MB/s) and proxy CPU per unit."""
    dat = os.path.join(d, "chart.dat")
    loads = [l for l in ("hs-ecdsa", "hs-rsa", "bulk")
             if (l, "shoal") in med]
    with open(dat, "w") as f:
        for l in loads:
            f.write('"%s" %s\n' % (
                {"hs-ecdsa": "ECDSA hs/s", "hs-rsa": "RSA hs/s",
                 "bulk": "1 MiB MB/s"}[l],
                " ".join("%.1f %.1f" % ((med[(l, t)][0] if l != "bulk" else
                                        med[(l, t)][1]), med[(l, t)][2])
                         for t in ("shoal", "haproxy", "nginx"))))
    gp = """set terminal pngcairo size 1000,420 font ",10"
set output '%s'
set multiplot layout 1,2
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set key top right
set yrange [0:*]
set title "TLS termination, one thread: rate (higher is better)"
plot '%s' using 2:xtic(1) title 'shoal', '' using 4 title 'HAProxy', \
     '' using 6 title 'nginx'
set title "proxy CPU: µs/handshake, ms/GiB (lower is better)"
plot '%s' using 3:xtic(1) title 'shoal', '' using 5 title 'HAProxy', \
     '' using 7 title 'nginx'
unset multiplot
""" % (png, dat, dat)
    subprocess.run(["gnuplot"], input=gp, text=True, check=True)


if __name__ == "__main__":
    sys.exit(main())
