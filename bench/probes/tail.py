#!/usr/bin/python3
"""
tail.py - the latency tail of bulk keep-alive transfers: 1 MiB bodies,
`wrk -t1 -c50 --latency`, shoal against HAProxy (`mode tcp`, and with
`option splice-auto`) and nginx `stream`, each one thread on CPU 1, wrk
and the nginx backend on CPU 0. Rounds interleave the targets; per target
the median of p50, p99, MB/s and the proxy's CPU time per GiB.

Usage: bench/probes/tail.py [--shoal PATH ...] [--reps N] [--duration S]
  --shoal may be given several times (NAME=PATH) to compare builds.
Every process it starts is killed at the end.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from measure import median                           # noqa: E402
from tlscost import tree_cpu as proc_cpu             # noqa: E402
from restarts import free_port, wait_port            # noqa: E402
from procs import Procs                              # noqa: E402

NGINX_STREAM_MOD = "/usr/lib/nginx/modules/ngx_stream_module.so"
UNITS = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}
TIME = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def latency(out, pct):
    m = re.search(r"^\s+%d(?:\.0+)?%%\s+([\d.]+)(us|ms|s)" % pct, out, re.M)
    return float(m.group(1)) * TIME[m.group(2)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shoal", action="append",
                    help="NAME=PATH (default shoal=build/shoal)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--no-others", action="store_true",
                    help="only the shoal builds")
    ap.add_argument("--chart", help="also draw p50/p99 and CPU per GiB "
                    "(gnuplot) into this PNG")
    a = ap.parse_args()
    shoals = dict(s.split("=", 1) for s in (a.shoal or [
        "shoal=" + os.path.join(ROOT, "build", "shoal")]))
    d = tempfile.mkdtemp(prefix="shoal-tail-")
    os.chmod(d, 0o755)          # nginx workers (www-data) read the body
    bport = free_port()
    with open(os.path.join(d, "1m"), "wb") as f:
        f.write(os.urandom(1 << 20))
    os.chmod(os.path.join(d, "1m"), 0o644)
    with open(os.path.join(d, "b.conf"), "w") as f:
        f.write("daemon off;\nworker_processes 1;\npid %s/b.pid;\n"
                "error_log %s/b.err;\nevents { worker_connections 4096; }\n"
                "http { access_log off; keepalive_requests 1000000; server {"
                " listen 127.0.0.1:%d; location = /1m { alias %s/1m; } } }\n"
                % (d, d, bport, d))
    procs = Procs(d)
    spawn = procs.spawn

    targets = {}
    res = {}
    try:
        spawn(["nginx", "-p", d, "-c", os.path.join(d, "b.conf")], "0")
        wait_port(bport)
        for name, path in shoals.items():
            port = free_port()
            ini = os.path.join(d, name + ".ini")
            with open(ini, "w") as f:
                f.write("[global]\nthreads = 1\nlog_level = warn\n"
                        "[frontend f]\nbind = 127.0.0.1:%d\nbackend = b\n"
                        "[backend b]\nserver = s 127.0.0.1:%d\n"
                        % (port, bport))
            targets[name] = (port, spawn([path, "-c", ini], "1"))
        if not a.no_others:
            for name, splice in (("haproxy", ""),
                                 ("haproxy-splice", "  option splice-auto\n")):
                port = free_port()
                cfg = os.path.join(d, name + ".cfg")
                with open(cfg, "w") as f:
                    f.write("global\n  nbthread 1\ndefaults\n  mode tcp\n"
                            "  timeout connect 2s\n  timeout client 60s\n"
                            "  timeout server 60s\n%sfrontend f\n"
                            "  bind 127.0.0.1:%d\n  default_backend b\n"
                            "backend b\n  server s 127.0.0.1:%d\n"
                            % (splice, port, bport))
                targets[name] = (port, spawn(["haproxy", "-db", "-f", cfg],
                                             "1"))
            port = free_port()
            cfg = os.path.join(d, "nginx.conf")
            with open(cfg, "w") as f:
                f.write("load_module %s;\ndaemon off;\nworker_processes 1;\n"
                        "pid %s/n.pid;\nerror_log %s/n.err;\nevents { "
                        "worker_connections 4096; }\nstream { server { "
                        "listen 127.0.0.1:%d; proxy_pass 127.0.0.1:%d; } }\n"
                        % (NGINX_STREAM_MOD, d, d, port, bport))
            targets["nginx"] = (port, spawn(["nginx", "-p", d, "-c", cfg],
                                            "1"))
        for port, _ in targets.values():
            wait_port(port)
        for rep in range(a.reps):
            for name, (port, p) in targets.items():
                c0 = proc_cpu(p.pid)
                out = subprocess.run(
                    ["taskset", "-c", "0", "wrk", "-t1", "-c50",
                     "-d%ds" % a.duration, "--latency",
                     "http://127.0.0.1:%d/1m" % port],
                    capture_output=True, text=True,
                    timeout=a.duration + 60).stdout
                c1 = proc_cpu(p.pid)
                m = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", out)
                mbs = float(m.group(1)) * UNITS[m.group(2)] / (1 << 20)
                row = (latency(out, 50), latency(out, 99), mbs,
                       (c1 - c0) * 1e3 / (mbs * a.duration / 1024))
                res.setdefault(name, []).append(row)
                print("%-16s rep %d: p50 %6.1f ms  p99 %6.1f ms  %7.1f MB/s"
                      "  %6.0f ms CPU/GiB" % ((name, rep) + row), flush=True)
    finally:
        procs.cleanup()
    print("\n| target | p50 ms | p99 ms (min–max) | MB/s | CPU ms/GiB |")
    print("| --- | --- | --- | --- | --- |")
    for name, rows in res.items():
        print("| %s | %.1f | %.1f (%.1f–%.1f) | %.0f | %.0f |" % (
            name, median(r[0] for r in rows), median(r[1] for r in rows),
            min(r[1] for r in rows), max(r[1] for r in rows),
            median(r[2] for r in rows), median(r[3] for r in rows)))
    if a.chart:
        dat = os.path.join(d, "chart.dat")
        with open(dat, "w") as f:
            for name, rows in res.items():
                f.write('"%s" %.1f %.1f %.0f\n' % (
                    name, median(r[0] for r in rows),
                    median(r[1] for r in rows), median(r[3] for r in rows)))
        subprocess.run(["gnuplot"], text=True, check=True, input="""
set terminal pngcairo size 1000,420 font ",10"
set output '%s'
set multiplot layout 1,2
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set yrange [0:*]
set title "1 MiB keep-alive, wrk -c50: latency ms (lower is better)"
plot '%s' using 2:xtic(1) title 'p50', '' using 3 title 'p99'
set title "proxy CPU ms per GiB (lower is better)"
plot '%s' using 4:xtic(1) notitle
unset multiplot
""" % (a.chart, dat, dat))


if __name__ == "__main__":
    sys.exit(main())
